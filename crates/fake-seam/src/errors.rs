//! Seam's error answer: an HTTP status and
//! `{"error": {"type", "message", "validation_errors"?, "request_id"}, "ok": false}`.
//! The types used are the documented ones (`invalid_input`, `unauthorized`,
//! `<resource>_not_found`, `duplicate_*`, `internal_server_error`); the
//! reservation rules have no documented type, see `rules.rs`.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub kind: String,
    pub message: String,
    /// zod's `format()` of the issues, for schema violations only.
    pub validation_errors: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, kind: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.into(),
            message: message.into(),
            validation_errors: None,
        }
    }

    /// 400 `invalid_input` without per-field details (a rule, not a schema).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_input", message)
    }

    /// 400 `invalid_input` for schema violations, with `validation_errors`.
    pub fn validation(message: impl Into<String>, validation_errors: Value) -> Self {
        ApiError {
            validation_errors: Some(validation_errors),
            ..Self::invalid_input(message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    /// 404 `<resource>_not_found`, e.g. `access_grant_not_found`.
    pub fn not_found(resource: &str) -> Self {
        let words = resource.replace('_', " ");
        let mut message = String::with_capacity(words.len() + 10);
        let mut chars = words.chars();
        if let Some(first) = chars.next() {
            message.extend(first.to_uppercase());
            message.push_str(chars.as_str());
        }
        message.push_str(" not found");
        Self::new(404, format!("{resource}_not_found"), message)
    }

    /// 409 `duplicate_<what>`, e.g. `duplicate_access_grant_key`.
    pub fn duplicate(what: &str, message: impl Into<String>) -> Self {
        Self::new(409, format!("duplicate_{what}"), message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal_server_error", message)
    }

    /// The answer body; `request_id` repeats the `seam-request-id` header,
    /// as Seam's error bodies do.
    pub fn body(&self, request_id: &str) -> Value {
        let mut error = json!({
            "type": self.kind,
            "message": self.message,
            "request_id": request_id,
        });
        if let Some(v) = &self.validation_errors {
            error["validation_errors"] = v.clone();
        }
        json!({ "error": error, "ok": false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_resource() {
        let e = ApiError::not_found("access_grant");
        assert_eq!((e.status, e.kind.as_str()), (404, "access_grant_not_found"));
        assert_eq!(e.message, "Access grant not found");
        let body = e.body("req-1");
        assert_eq!(body["ok"], false);
        assert_eq!(body["error"]["request_id"], "req-1");
        assert!(body["error"].get("validation_errors").is_none());
    }
}
