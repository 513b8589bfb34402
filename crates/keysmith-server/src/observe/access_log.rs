//! One line per call, at INFO under the target `keysmith::access`: the
//! method, the status code, the latency, who called (the token id, never
//! the token) and the property the request named. Filter it like any other
//! target (`keysmith::access=off` silences it).
//!
//! What a client sent is bounded and escaped before it is logged: a method
//! keysmith does not serve, or a property id, at most [`MAX_CHARS`]
//! characters, control characters escaped.
use std::time::Duration;

use tonic::Code;

use super::{notes::CallNotes, rpc_metrics::code_name};

pub const TARGET: &str = "keysmith::access";

/// The most characters of a client's value that a line carries.
pub const MAX_CHARS: usize = 64;

/// Logs the call to `method` (`Service/Method`, or the [`bounded`] path of
/// an unknown one) that ended with `code` after `took`.
pub fn log(method: &str, code: Code, took: Duration, notes: &CallNotes) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let code = code_name(code);
    // To the microsecond: a line carries no long runs of digits, which
    // would read like PINs to whoever scans logs for leaked secrets.
    let latency_ms = took.as_micros() as f64 / 1000.0;
    // A token id comes from the configuration, not from the client.
    let caller = notes.caller().unwrap_or("-");
    match notes.property() {
        Some(property) => tracing::info!(
            target: TARGET,
            method,
            code,
            latency_ms,
            caller,
            property = %bounded(property),
            "call"
        ),
        None => tracing::info!(target: TARGET, method, code, latency_ms, caller, "call"),
    }
}

/// At most [`MAX_CHARS`] characters of `value`, each control or
/// non-printing character escaped, so that a line stays one line.
pub fn bounded(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_CHARS));
    for c in value.chars().take(MAX_CHARS) {
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if value.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_value_is_cut_and_escaped() {
        assert_eq!(bounded("demo-hotel"), "demo-hotel");
        assert_eq!(bounded("a\nb\"c"), "a\\nb\\\"c");
        let long = "x".repeat(200);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
