//! One OpenTelemetry span per call, when trace export is on
//! (`[tracing]`): kind SERVER, named `Service/Method`, with OTel's RPC
//! attributes and keysmith's caller and property, continuing the caller's
//! trace from its W3C `traceparent` (and `tracestate`) headers.
//!
//! Each driver call made for the call is a child span of it
//! ([`DriverSpans`]), named `driver operation`.
//!
//! A span carries only what the access-log line does: never a token, a
//! secret, a request body or an error message.
use std::time::SystemTime;

use keysmith_core::service::{DriverCall, DriverCallWatcher};
use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _},
    Context, KeyValue,
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{SdkTracer, Span},
};
use tonic::Code;

use super::{access_log, notes::CallNotes, rpc_metrics::code_name, rpc_metrics::Method};

/// Where a call's span is made.
#[derive(Clone)]
pub struct ServerSpans {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl ServerSpans {
    pub fn new(tracer: SdkTracer) -> Self {
        Self {
            tracer,
            propagator: TraceContextPropagator::new(),
        }
    }

    /// Starts the span of a call to `method` with these request headers.
    /// A missing or malformed `traceparent` starts a new trace.
    /// Its context, when sampled, goes into the call's `notes` for the
    /// driver calls' spans.
    pub fn start(&self, method: &Method, headers: &http::HeaderMap, notes: &CallNotes) -> Span {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        let span = self
            .tracer
            .span_builder(method.full_name.clone())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", method.service.clone()),
                KeyValue::new("rpc.method", method.name.clone()),
            ])
            .start_with_context(&self.tracer, &parent);
        if span.is_recording() {
            notes.note_span(SpanParent {
                tracer: self.tracer.clone(),
                context: Context::new().with_remote_span_context(span.span_context().clone()),
            });
        }
        span
    }
}

/// A call's span, as the parent of the spans made on its behalf.
#[derive(Debug)]
pub struct SpanParent {
    tracer: SdkTracer,
    context: Context,
}

/// Makes each driver call a child span of the call it was made for; a
/// driver call made apart from any exported call (the key follower's, the
/// sweeper's) is no span.
pub struct DriverSpans;

impl DriverCallWatcher for DriverSpans {
    fn ended(&self, call: &DriverCall<'_>) {
        CallNotes::of_current_call(|notes| {
            let Some(parent) = notes.span() else {
                return;
            };
            let ended = SystemTime::now();
            let started = ended.checked_sub(call.took).unwrap_or(ended);
            let mut span = parent
                .tracer
                .span_builder(format!("{} {}", call.driver, call.operation))
                .with_kind(SpanKind::Internal)
                .with_start_time(started)
                .with_attributes([
                    KeyValue::new("keysmith.driver", call.driver.to_owned()),
                    KeyValue::new("keysmith.driver.operation", call.operation),
                    KeyValue::new("keysmith.driver.outcome", call.outcome),
                ])
                .start_with_context(&parent.tracer, &parent.context);
            if call.outcome != "ok" {
                span.set_status(Status::error(call.outcome));
            }
            span.end_with_timestamp(ended);
        });
    }
}

/// Ends `span` with the call's code and what the layers noted about it.
pub fn end(mut span: Span, code: Code, notes: &CallNotes) {
    if span.is_recording() {
        span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
        // A token id comes from the configuration, not from the client.
        if let Some(caller) = notes.caller() {
            span.set_attribute(KeyValue::new("keysmith.caller_id", caller.to_owned()));
        }
        if let Some(property) = notes.property() {
            span.set_attribute(KeyValue::new(
                "keysmith.property_id",
                access_log::bounded(property),
            ));
        }
        if code != Code::Ok {
            span.set_status(Status::error(code_name(code)));
        }
    }
    span.end();
}
