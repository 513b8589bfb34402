//! An OTLP/gRPC trace receiver that only counts: a stand-in for a
//! collector when measuring what trace export costs keysmith
//! (BENCHMARKS.md, "Trace export").
//!
//! ```text
//! cargo run --release -p keysmith-examples --example otlp_sink -- 127.0.0.1:4317
//! ```
//!
//! Prints, every 10 seconds when something arrived, the exports and spans
//! received so far.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    spans: AtomicU64,
}

struct Sink(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    let counts = Arc::new(Counts::default());
    let report = counts.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let spans = report.spans.load(Ordering::Relaxed);
            if spans != last {
                last = spans;
                println!(
                    "exports {} spans {spans}",
                    report.exports.load(Ordering::Relaxed)
                );
            }
        }
    });
    println!("receiving OTLP/gRPC traces on {addr}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink(counts)))
        .serve(addr)
        .await?;
    Ok(())
}
