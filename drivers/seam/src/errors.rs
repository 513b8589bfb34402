//! Seam's errors in keysmith's terms. Seam documents no type codes for the
//! reservation rules, only status and title, so those are recognised by
//! status and message and mapped to the reasons the core uses for the same
//! rules; everything else by status and `error.type`.
use std::time::Duration;

use keysmith_core::{reasons as core, Error, ErrorKind};
use serde::Deserialize;

pub mod reasons {
    pub const SEAM_INVALID_INPUT: &str = "SEAM_INVALID_INPUT";
    pub const SEAM_UNAUTHORIZED: &str = "SEAM_UNAUTHORIZED";
    pub const SEAM_NOT_FOUND: &str = "SEAM_NOT_FOUND";
    pub const SEAM_CONFLICT: &str = "SEAM_CONFLICT";
    pub const SEAM_UNAVAILABLE: &str = "SEAM_UNAVAILABLE";
    pub const SEAM_BAD_ANSWER: &str = "SEAM_BAD_ANSWER";
    pub const SEAM_ERROR: &str = "SEAM_ERROR";
    pub const SEAM_ISSUANCE_FAILED: &str = "SEAM_ISSUANCE_FAILED";
    pub const SEAM_ENCODING_FAILED: &str = "SEAM_ENCODING_FAILED";
}

#[derive(Debug, Deserialize)]
pub struct SeamError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub validation_errors: Option<serde_json::Value>,
}

/// The keysmith error for a Seam error answer.
pub fn from_answer(status: u16, error: Option<SeamError>, request_id: Option<&str>) -> Error {
    let (kind_str, message) = error
        .as_ref()
        .map(|e| (e.kind.as_str(), e.message.as_str()))
        .unwrap_or(("", ""));
    let lower = message.to_ascii_lowercase();
    let rule = |reason: &'static str, kind: ErrorKind| Error::new(kind, reason, message.to_owned());
    let mut out = match status {
        400 if lower.contains("reservation_key not supported")
            || lower.contains("no targeted entrances support reservation") =>
        {
            rule(
                core::RESERVATION_KEY_NOT_SUPPORTED,
                ErrorKind::InvalidArgument,
            )
        }
        400 if lower.contains("reservation_key") && lower.contains("required") => {
            rule(core::RESERVATION_KEY_REQUIRED, ErrorKind::InvalidArgument)
        }
        409 if lower.contains("entrance change requires cleanup") => rule(
            core::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP,
            ErrorKind::FailedPrecondition,
        ),
        409 if lower.contains("joiner") => rule(
            core::RESERVATION_JOINER_ENTRANCE_SET_CONFLICT,
            ErrorKind::FailedPrecondition,
        ),
        409 if lower.contains("time frames must overlap") => rule(
            core::RESERVATION_TIME_FRAMES_MUST_OVERLAP,
            ErrorKind::FailedPrecondition,
        ),
        400 => {
            let mut e = Error::new(
                ErrorKind::InvalidArgument,
                reasons::SEAM_INVALID_INPUT,
                format!("Seam refused the request: {message}"),
            );
            if let Some(serde_json::Value::Object(fields)) =
                error.as_ref().and_then(|e| e.validation_errors.as_ref())
            {
                for (field, detail) in fields {
                    e = e.with_violation(field.clone(), detail.to_string());
                }
            }
            e
        }
        // The API key is keysmith's configuration, not the caller's: an
        // operator's problem, said without the key.
        401 | 403 => Error::failed_precondition(
            reasons::SEAM_UNAUTHORIZED,
            "Seam refused keysmith's API key for this workspace; check the configuration",
        ),
        404 => Error::not_found(reasons::SEAM_NOT_FOUND, format!("Seam: {message}")),
        409 => Error::new(
            ErrorKind::AlreadyExists,
            reasons::SEAM_CONFLICT,
            format!("Seam: {message}"),
        ),
        429 | 500..=599 => Error::unavailable(
            reasons::SEAM_UNAVAILABLE,
            format!("Seam is unavailable (HTTP {status})"),
        )
        .with_retry_after(Duration::from_secs(5)),
        _ => Error::new(
            ErrorKind::Internal,
            reasons::SEAM_ERROR,
            format!("Seam answered HTTP {status}: {message}"),
        ),
    };
    if !kind_str.is_empty() {
        out = out.with_context("seam_error_type", kind_str.to_owned());
    }
    out = out.with_context("http_status", status.to_string());
    if let Some(id) = request_id {
        out = out.with_context("seam_request_id", id.to_owned());
    }
    out
}

pub fn unavailable(message: impl Into<String>) -> Error {
    Error::unavailable(reasons::SEAM_UNAVAILABLE, message).with_retry_after(Duration::from_secs(5))
}

pub fn bad_answer(what: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        reasons::SEAM_BAD_ANSWER,
        format!("Seam answered in an unexpected shape: {}", what.into()),
    )
    .set_temporary()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(status: u16, message: &str) -> Error {
        from_answer(
            status,
            Some(SeamError {
                kind: "invalid_input".into(),
                message: message.into(),
                validation_errors: None,
            }),
            Some("req_1"),
        )
    }

    #[test]
    fn the_guides_rules_map_to_the_cores_reasons() {
        assert_eq!(
            e(400, "reservation_key not supported.").reason(),
            core::RESERVATION_KEY_NOT_SUPPORTED
        );
        assert_eq!(
            e(409, "Reservation entrance change requires cleanup.").reason(),
            core::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
        );
        assert_eq!(
            e(409, "Reservation joiner entrance set conflict.").reason(),
            core::RESERVATION_JOINER_ENTRANCE_SET_CONFLICT
        );
        assert_eq!(
            e(409, "Reservation time frames must overlap.").reason(),
            core::RESERVATION_TIME_FRAMES_MUST_OVERLAP
        );
        assert_eq!(e(401, "Unauthorized").kind(), ErrorKind::FailedPrecondition);
        assert_eq!(e(404, "access_grant not found").kind(), ErrorKind::NotFound);
        assert_eq!(e(503, "").kind(), ErrorKind::Unavailable);
        assert!(e(429, "").retry_after().is_some());
    }

    #[test]
    fn validation_errors_become_field_violations() {
        let err = from_answer(
            400,
            Some(SeamError {
                kind: "invalid_input".into(),
                message: "Invalid input".into(),
                validation_errors: Some(serde_json::json!({"starts_at": {"_errors": ["bad"]}})),
            }),
            None,
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(err.violations()[0].field, "starts_at");
    }
}
