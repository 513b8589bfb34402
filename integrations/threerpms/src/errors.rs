//! 3RPMS's errors in keysmith's terms. 3RPMS classifies its errors by
//! `extensions.category`; keysmith maps the category and never the message
//! text, which 3RPMS may reword or translate. The upstream message travels in
//! the ErrorInfo metadata for the operator.
use std::time::Duration;

use keysmith_core::{Error, ErrorKind};
use serde::Deserialize;

pub mod reasons {
    pub const UPSTREAM_VALIDATION: &str = "THREERPMS_VALIDATION";
    pub const UPSTREAM_AUTH: &str = "THREERPMS_AUTH";
    pub const UPSTREAM_CONFIGURATION: &str = "THREERPMS_CONFIGURATION";
    pub const UPSTREAM_ERROR: &str = "THREERPMS_ERROR";
    pub const UPSTREAM_UNAVAILABLE: &str = "THREERPMS_UNAVAILABLE";
    pub const UPSTREAM_RATE_LIMITED: &str = "THREERPMS_RATE_LIMITED";
    pub const UPSTREAM_BAD_ANSWER: &str = "THREERPMS_BAD_ANSWER";
    pub const INVALID_COMPARTMENT: &str = "INVALID_COMPARTMENT";
    pub const INVALID_QR_DATA: &str = "INVALID_QR_DATA";
    pub const HOTEL_NOT_CONFIGURED: &str = "THREERPMS_HOTEL_NOT_CONFIGURED";
    pub const ROOM_STAY_NOT_FOUND: &str = "ROOM_STAY_NOT_FOUND";
    pub const RESERVATION_NOT_FOUND: &str = "THREERPMS_RESERVATION_NOT_FOUND";
    pub const WEBHOOK_ALREADY_REGISTERED: &str = "WEBHOOK_ALREADY_REGISTERED";
    pub const WEBHOOK_URL_NOT_CONFIGURED: &str = "WEBHOOK_URL_NOT_CONFIGURED";
    pub const WEBHOOK_RETIREMENT_UNSUPPORTED: &str = "WEBHOOK_RETIREMENT_UNSUPPORTED";
}

/// One entry of a GraphQL `errors` array.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphqlError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub extensions: Option<Extensions>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Extensions {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default, rename = "argumentPath")]
    pub argument_path: Option<serde_json::Value>,
}

impl GraphqlError {
    fn category(&self) -> Option<&str> {
        self.extensions.as_ref()?.category.as_deref()
    }
}

/// The keysmith error for the first error of an answer. An `auth` error on a
/// request with mutations is most likely a read-only key (PERMISSION_DENIED);
/// on a read, the key itself is wrong or disabled (UNAUTHENTICATED).
pub fn upstream(errors: &[GraphqlError], mutation: bool) -> Error {
    let first = errors.first();
    let category = first.and_then(GraphqlError::category);
    let (kind, reason) = match category {
        Some("validation") => (ErrorKind::InvalidArgument, reasons::UPSTREAM_VALIDATION),
        Some("auth") if mutation => (ErrorKind::PermissionDenied, reasons::UPSTREAM_AUTH),
        Some("auth") => (ErrorKind::Unauthenticated, reasons::UPSTREAM_AUTH),
        Some("configuration") => (
            ErrorKind::FailedPrecondition,
            reasons::UPSTREAM_CONFIGURATION,
        ),
        // Syntax and schema errors carry no category: keysmith sent a query
        // 3RPMS does not accept, which is keysmith's fault, not the caller's.
        _ => (ErrorKind::Internal, reasons::UPSTREAM_ERROR),
    };
    let message = match category {
        Some("validation") => "3RPMS rejected the request as invalid",
        Some("auth") => "3RPMS refused the API key for this request",
        Some("configuration") => "the hotel is not set up in 3RPMS for this",
        _ => "3RPMS did not accept keysmith's request",
    };
    let mut error = Error::new(kind, reason, message);
    if let Some(first) = first {
        error = error.with_context("upstream_message", first.message.clone());
        if let Some(category) = category {
            error = error.with_context("upstream_category", category);
        }
        if let Some(path) = first
            .extensions
            .as_ref()
            .and_then(|e| e.argument_path.as_ref())
        {
            error = error.with_context("upstream_argument_path", path.to_string());
        }
    }
    if errors.len() > 1 {
        error = error.with_context("upstream_errors", errors.len().to_string());
    }
    error
}

pub fn unavailable(message: impl Into<String>) -> Error {
    Error::unavailable(reasons::UPSTREAM_UNAVAILABLE, message)
        .with_retry_after(Duration::from_secs(5))
}

pub fn blocked(retry_after: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        reasons::UPSTREAM_RATE_LIMITED,
        "3RPMS appears to block keysmith for exceeding its rate limit; keysmith is not sending \
         until the block ends",
    )
    .with_retry_after(retry_after)
    .with_context("retry_after_seconds", retry_after.as_secs().to_string())
}

pub fn bad_answer(what: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        reasons::UPSTREAM_BAD_ANSWER,
        format!("3RPMS answered in an unexpected shape: {}", what.into()),
    )
    .set_temporary()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(category: Option<&str>) -> GraphqlError {
        GraphqlError {
            message: "Die PIN ist ungültig".into(),
            extensions: Some(Extensions {
                category: category.map(str::to_owned),
                argument_path: None,
            }),
        }
    }

    #[test]
    fn categories_map_to_kinds_and_keep_the_upstream_message() {
        for (category, mutation, kind) in [
            (Some("validation"), true, ErrorKind::InvalidArgument),
            (Some("auth"), true, ErrorKind::PermissionDenied),
            (Some("auth"), false, ErrorKind::Unauthenticated),
            (Some("configuration"), false, ErrorKind::FailedPrecondition),
            (None, false, ErrorKind::Internal),
            (Some("something-new"), true, ErrorKind::Internal),
        ] {
            let e = upstream(&[error(category)], mutation);
            assert_eq!(e.kind(), kind, "{category:?}");
            assert!(e
                .metadata()
                .iter()
                .any(|(k, v)| *k == "upstream_message" && v == "Die PIN ist ungültig"));
        }
    }
}
