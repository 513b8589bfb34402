//! `GET /metrics` over HTTP/1.1, on the metrics address alone (never the
//! gRPC port), until the server stops.
use std::{future::IntoFuture, sync::Arc, time::Duration};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{net::TcpListener, sync::watch};

use super::sampled::Sampler;

/// Prometheus's text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histograms are drained even when nobody scrapes, so that
/// they do not grow without bound.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    sampler: Arc<Sampler>,
}

/// Serves the endpoint on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    sampler: Arc<Sampler>,
    mut stop: watch::Receiver<bool>,
) {
    let upkeep = {
        let handle = handle.clone();
        let mut stop = stop.clone();
        async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => handle.run_upkeep(),
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { handle, sampler });
    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    });
    let (served, ()) = tokio::join!(served.into_future(), upkeep);
    if let Err(error) = served {
        tracing::error!(%error, "the metrics endpoint failed");
    }
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let sampler = scrape.sampler.clone();
    // Reading the store blocks; the runtime's threads serve gRPC.
    if let Err(error) = tokio::task::spawn_blocking(move || sampler.sample_if_stale()).await {
        tracing::warn!(%error, "metrics: sampling the store failed");
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        scrape.handle.render(),
    )
}
