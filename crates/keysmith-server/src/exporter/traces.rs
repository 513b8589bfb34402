//! OpenTelemetry trace export: spans go in batches over OTLP/gRPC to the
//! collector `[tracing]` names. Set up here only, when enabled; the observe
//! layer makes the spans (`observe/server_span.rs`).
//!
//! Each server has its own tracer provider, never the process's global
//! one: several servers in one process (as in the tests) export apart.
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{
    runtime,
    trace::{
        span_processor_with_async_runtime::BatchSpanProcessor, BatchConfigBuilder, Sampler,
        SdkTracer, SdkTracerProvider,
    },
    Resource,
};

use crate::config::TracingConfig;

/// The instrumentation scope every keysmith span is recorded under.
const SCOPE: &str = "keysmith-server";

/// A running trace export: the batch task on the tokio runtime and the
/// exporter's connection to the collector.
pub struct TraceExport {
    /// Taken by [`TraceExport::shutdown`].
    provider: Option<SdkTracerProvider>,
    tracer: SdkTracer,
}

impl TraceExport {
    /// Starts exporting to `config.endpoint`. The connection is made at the
    /// first export, so a collector that is down does not stop the start;
    /// the batches it misses are dropped (and said so in the log).
    pub fn start(config: &TracingConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.export_timeout_ms);
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(timeout)
            .build()
            .with_context(|| format!("cannot export traces to {}", config.endpoint))?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
            .with_max_export_timeout(timeout)
            .build();
        let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // A call in a sampled trace is kept, one in a trace its caller
            // dropped is not; a new trace is kept at the configured ratio.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer(SCOPE);
        Ok(Self {
            provider: Some(provider),
            tracer,
        })
    }

    pub fn tracer(&self) -> SdkTracer {
        self.tracer.clone()
    }

    /// Sends the spans still batched and stops the batch task. The
    /// provider waits for the task on this thread, so it runs on a
    /// blocking thread while the runtime goes on driving the export.
    pub async fn shutdown(mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        let shut = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match shut {
            Ok(Ok(())) => tracing::debug!("trace export flushed and stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "trace export did not stop cleanly"),
            Err(error) => tracing::warn!(%error, "trace export did not stop cleanly"),
        }
    }
}

/// A server task dropped before it stopped (its runtime shut down) never
/// ran [`TraceExport::shutdown`]. The provider would then shut itself
/// down, blocking, where it is dropped: on a runtime thread that the
/// batch task may need. A thread of its own waits instead.
impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            std::thread::spawn(move || provider.shutdown());
        }
    }
}
