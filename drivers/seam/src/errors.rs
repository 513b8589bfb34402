//! Seam's errors in keysmith's terms. The reservation refusals map to the
//! reasons the core uses for the same rules ([`REFUSALS`]); everything else
//! by status and `error.type`.
//!
//! Seam's API definition (`@seamapi/types`) names no error type for the
//! reservation refusals, and its reservation guide gives each a status, a
//! title and (but for the Visionline rule) a message, without saying which
//! text an answer's `message` carries. So a refusal is recognised by its
//! type where Seam gives one that names the rule, and otherwise by any text
//! the guide documents for it, compared without case, punctuation at the
//! end, or line breaks.
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

/// One of Seam's reservation refusals, as its reservation guide documents
/// it, and the core's reason for the same rule.
pub struct Refusal {
    /// The HTTP status the guide gives.
    pub status: u16,
    /// The core's reason for the rule.
    pub reason: &'static str,
    pub kind: ErrorKind,
    /// Error types that would name the rule (none is documented).
    pub types: &'static [&'static str],
    /// Every text the guide gives for it: its title and its message.
    pub texts: &'static [&'static str],
}

/// The guide's reservation refusals.
pub const REFUSALS: &[Refusal] = &[
    Refusal {
        status: 400,
        reason: core::RESERVATION_KEY_NOT_SUPPORTED,
        kind: ErrorKind::InvalidArgument,
        types: &["reservation_key_not_supported"],
        texts: &[
            "reservation_key not supported.",
            "No targeted entrances support reservation behavior. Remove reservation_key or include at least one reservation-capable entrance.",
        ],
    },
    Refusal {
        status: 400,
        reason: core::RESERVATION_KEY_REQUIRED,
        kind: ErrorKind::InvalidArgument,
        types: &["reservation_key_required_for_guest_cards"],
        // The guide gives this one a title only.
        texts: &["reservation_key required for guest cards."],
    },
    Refusal {
        status: 409,
        reason: core::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP,
        kind: ErrorKind::FailedPrecondition,
        types: &["reservation_entrance_change_requires_cleanup"],
        texts: &[
            "Reservation entrance change requires cleanup.",
            "To change the doors for this reservation, delete the existing access grants first.",
        ],
    },
    Refusal {
        status: 409,
        reason: core::RESERVATION_JOINER_ENTRANCE_SET_CONFLICT,
        kind: ErrorKind::FailedPrecondition,
        types: &["reservation_joiner_entrance_set_conflict"],
        texts: &[
            "Reservation joiner entrance set conflict.",
            "Joiner access grants must use the same or a subset of the reservation-capable doors.",
        ],
    },
    Refusal {
        status: 409,
        reason: core::RESERVATION_TIME_FRAMES_MUST_OVERLAP,
        kind: ErrorKind::FailedPrecondition,
        types: &["reservation_time_frames_must_overlap"],
        texts: &[
            "Reservation time frames must overlap.",
            "Access grants in the same reservation must have overlapping time frames.",
        ],
    },
];

/// A text as compared: lower case, words separated by one space, no
/// trailing full stop.
fn normalised(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .trim_end_matches('.')
        .to_owned()
}

/// The reservation refusal an answer is, if any.
pub fn refusal(status: u16, kind: &str, message: &str) -> Option<&'static Refusal> {
    if let Some(r) = REFUSALS.iter().find(|r| r.types.contains(&kind)) {
        return Some(r);
    }
    let said = normalised(message);
    REFUSALS.iter().find(|r| {
        r.status == status
            && r.texts
                .iter()
                .any(|t| !said.is_empty() && said.contains(&normalised(t)))
    })
}

/// The keysmith error for a Seam error answer.
pub fn from_answer(status: u16, error: Option<SeamError>, request_id: Option<&str>) -> Error {
    let (kind_str, message) = error
        .as_ref()
        .map(|e| (e.kind.as_str(), e.message.as_str()))
        .unwrap_or(("", ""));
    let mut out = match (status, refusal(status, kind_str, message)) {
        (_, Some(r)) => Error::new(r.kind, r.reason, message.to_owned()),
        (400, None) => {
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
        (401 | 403, None) => Error::failed_precondition(
            reasons::SEAM_UNAUTHORIZED,
            "Seam refused keysmith's API key for this workspace; check the configuration",
        ),
        (404, None) => Error::not_found(reasons::SEAM_NOT_FOUND, format!("Seam: {message}")),
        (409, None) => Error::new(
            ErrorKind::AlreadyExists,
            reasons::SEAM_CONFLICT,
            format!("Seam: {message}"),
        ),
        (429 | 500..=599, None) => Error::unavailable(
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

    /// Every text the guide gives for a refusal (title and message, as it
    /// breaks its lines too) maps to the core's reason.
    #[test]
    fn each_text_the_guide_documents_is_recognised() {
        for r in REFUSALS {
            for text in r.texts {
                let wrapped = text.replacen(' ', "\n", 3);
                for said in [text.to_string(), wrapped, text.to_uppercase()] {
                    let err = from_answer(
                        r.status,
                        Some(SeamError {
                            kind: "conflict".into(),
                            message: said.clone(),
                            validation_errors: None,
                        }),
                        None,
                    );
                    assert_eq!(err.reason(), r.reason, "{said:?}");
                    assert_eq!(err.kind(), r.kind, "{said:?}");
                }
            }
            // A type naming the rule is enough, whatever the text.
            let by_type = from_answer(
                r.status,
                Some(SeamError {
                    kind: r.types[0].into(),
                    message: "Conflict".into(),
                    validation_errors: None,
                }),
                None,
            );
            assert_eq!(by_type.reason(), r.reason);
        }
        // Another 409 stays Seam's conflict.
        assert_eq!(e(409, "Something else.").reason(), reasons::SEAM_CONFLICT);
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
