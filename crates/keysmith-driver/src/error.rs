//! One error type for the whole domain, in the manner of OpenDAL: a kind that
//! decides the gRPC code, a stable UPPER_SNAKE reason, whether retrying can
//! help, and context that is safe to show (never a secret).
use std::{fmt, time::Duration};

/// A result whose error is keysmith's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, from the caller's point of view.
/// Exhaustive on purpose: every mapping of a kind (to a gRPC code, to the
/// plugin protocol) is a `match` without a wildcard, so a new kind does not
/// compile until each of them says what it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed; retrying it unchanged cannot succeed.
    InvalidArgument,
    /// What the request names does not exist (or is not the caller's).
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// The request is well formed but conflicts with the current state.
    FailedPrecondition,
    /// The caller may not do this.
    PermissionDenied,
    /// The caller did not say who it is.
    Unauthenticated,
    /// A driver or provider cannot be reached now; retrying later may succeed.
    Unavailable,
    /// The operation is not supported by the driver of an entrance.
    Unsupported,
    /// A limit was reached; retrying later may succeed.
    ResourceExhausted,
    /// keysmith itself failed: a bug or a broken store.
    Internal,
}

/// Whether retrying the same request can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStatus {
    /// Retrying unchanged fails the same way.
    Permanent,
    /// Retrying later may succeed.
    Temporary,
}

/// A field of the request that is wrong, and why (AIP-193 BadRequest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's name in the request.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// keysmith's one error type, in the manner of OpenDAL: a kind, a stable
/// reason, a message and context that are safe to show, whether retrying can
/// help, and the field violations of bad input. Boxed so that `Result<T>`
/// stays small on the happy path.
#[derive(Debug)]
pub struct Error(Box<ErrorInner>);

#[derive(Debug)]
struct ErrorInner {
    kind: ErrorKind,
    reason: &'static str,
    message: String,
    status: ErrorStatus,
    metadata: Vec<(&'static str, String)>,
    violations: Vec<FieldViolation>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a reason from [`reasons`] and a message
    /// safe to show; temporary when the kind says retrying may help.
    pub fn new(kind: ErrorKind, reason: &'static str, message: impl Into<String>) -> Self {
        let status = match kind {
            ErrorKind::Unavailable | ErrorKind::ResourceExhausted => ErrorStatus::Temporary,
            _ => ErrorStatus::Permanent,
        };
        Self(Box::new(ErrorInner {
            kind,
            reason,
            message: message.into(),
            status,
            metadata: Vec::new(),
            violations: Vec::new(),
            retry_after: None,
            source: None,
        }))
    }

    /// Bad input in one field.
    pub fn invalid_field(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let description = description.into();
        Self::new(
            ErrorKind::InvalidArgument,
            reason,
            format!("{field}: {description}"),
        )
        .with_violation(field, description)
    }

    /// Something the request names does not exist.
    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, reason, message)
    }

    /// The request conflicts with the current state.
    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, reason, message)
    }

    /// keysmith itself failed (reason INTERNAL).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, reasons::INTERNAL, message)
    }

    /// Something cannot be reached now; retrying later may succeed.
    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, reason, message)
    }

    /// Adds context (ErrorInfo metadata): never a secret.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.metadata.push((key, value.into()));
        self
    }

    /// Adds a field violation (BadRequest).
    pub fn with_violation(
        mut self,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.0.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
        self
    }

    /// Says when retrying may succeed (RetryInfo); makes the error temporary.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.0.retry_after = Some(after);
        self.0.status = ErrorStatus::Temporary;
        self
    }

    /// Marks the error as one a retry may get past.
    pub fn set_temporary(mut self) -> Self {
        self.0.status = ErrorStatus::Temporary;
        self
    }

    /// Keeps the underlying error, for logs only (never sent to callers).
    pub fn set_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// What went wrong, from the caller's point of view.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
    /// The stable UPPER_SNAKE reason.
    pub fn reason(&self) -> &'static str {
        self.0.reason
    }
    /// The message, safe to show.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// Whether retrying may succeed.
    pub fn is_temporary(&self) -> bool {
        self.0.status == ErrorStatus::Temporary
    }
    /// The context, as ErrorInfo metadata.
    pub fn metadata(&self) -> &[(&'static str, String)] {
        &self.0.metadata
    }
    /// The field violations of bad input.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.0.violations
    }
    /// When retrying may succeed, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {})",
            self.0.message, self.0.kind, self.0.reason
        )?;
        if let Some(source) = &self.0.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|s| s as _)
    }
}

/// How many characters of a caller's value an error message quotes.
pub const QUOTED_CHARS: usize = 64;

/// A caller's value as an error message may show it: at most its first
/// [`QUOTED_CHARS`] characters, escaped (`escape_debug`, so no control,
/// format or bidi character reaches a terminal or a log as it is), in
/// quotes, with "…" when cut. Every message that names a caller's value
/// goes through here: a 70 KB property id echoed whole once made the error
/// trailers larger than clients accept (they saw RESOURCE_EXHAUSTED instead
/// of NOT_FOUND).
pub fn quoted(value: &str) -> String {
    let (prefix, cut) = escaped_prefix(value);
    format!("\"{prefix}\"{}", if cut { "…" } else { "" })
}

/// A caller's value as ErrorInfo metadata may carry it: [`quoted`]'s
/// prefix and escaping, without the quotes.
pub fn bounded(value: &str) -> String {
    let (mut prefix, cut) = escaped_prefix(value);
    if cut {
        prefix.push('…');
    }
    prefix
}

fn escaped_prefix(value: &str) -> (String, bool) {
    let mut out = String::with_capacity(value.len().min(QUOTED_CHARS * 2));
    let mut chars = value.chars();
    for c in chars.by_ref().take(QUOTED_CHARS) {
        out.extend(c.escape_debug());
    }
    (out, chars.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_value_is_short_escaped_and_says_when_it_was_cut() {
        assert_eq!(quoted("room-101"), "\"room-101\"");
        assert_eq!(quoted("a\u{202E}b\n"), "\"a\\u{202e}b\\n\"");
        let long = "x".repeat(70_000);
        let q = quoted(&long);
        assert_eq!(q, format!("\"{}\"…", "x".repeat(QUOTED_CHARS)));
        assert_eq!(bounded(&long), format!("{}…", "x".repeat(QUOTED_CHARS)));
        assert_eq!(bounded("x\u{200B}"), "x\\u{200b}");
    }
}

/// The stable reasons keysmith reports in `ErrorInfo.reason`.
pub mod reasons {
    /// keysmith itself failed; nothing the caller can fix.
    pub const INTERNAL: &str = "INTERNAL";
    /// keysmith's store cannot be written or read now.
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    /// A data key rotation is still sealing records again: one at a time.
    pub const ROTATION_IN_PROGRESS: &str = "ROTATION_IN_PROGRESS";
    /// A key-encryption key cannot be read, or does not open the store's
    /// data keys.
    pub const KEY_ENCRYPTION_KEY_INVALID: &str = "KEY_ENCRYPTION_KEY_INVALID";
    /// A required field is missing.
    pub const FIELD_REQUIRED: &str = "FIELD_REQUIRED";
    /// A field has a value keysmith does not accept.
    pub const FIELD_INVALID: &str = "FIELD_INVALID";
    /// A field is longer than keysmith accepts.
    pub const FIELD_TOO_LONG: &str = "FIELD_TOO_LONG";
    /// A window ends before it starts, or has ended.
    pub const INVALID_TIME_WINDOW: &str = "INVALID_TIME_WINDOW";
    /// A PIN is not 4 to 8 digits.
    pub const INVALID_PIN: &str = "INVALID_PIN";
    /// A negative page size.
    pub const INVALID_PAGE_SIZE: &str = "INVALID_PAGE_SIZE";
    /// A page token that is not this query's (or this caller's).
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    /// A WatchKeys resume token that is not one of this service's, or is
    /// another property's.
    pub const INVALID_RESUME_TOKEN: &str = "INVALID_RESUME_TOKEN";
    /// A WatchKeys resume token whose next changes are no longer kept (past
    /// `storage.change_retention_hours`, or of a store made anew): list the
    /// keys again, then watch from a new WatchKeys.
    pub const RESUME_TOKEN_EXPIRED: &str = "RESUME_TOKEN_EXPIRED";
    /// A watcher fell further behind than its buffer: it resumes with the
    /// resume token of the last change it received.
    pub const WATCH_BUFFER_OVERFLOW: &str = "WATCH_BUFFER_OVERFLOW";
    /// No such property, or not one the caller may see.
    pub const PROPERTY_NOT_FOUND: &str = "PROPERTY_NOT_FOUND";
    /// No such entrance at the property.
    pub const ENTRANCE_NOT_FOUND: &str = "ENTRANCE_NOT_FOUND";
    /// No such space at the property.
    pub const SPACE_NOT_FOUND: &str = "SPACE_NOT_FOUND";
    /// No such key at the property.
    pub const KEY_NOT_FOUND: &str = "KEY_NOT_FOUND";
    /// No such reservation at the property.
    pub const RESERVATION_NOT_FOUND: &str = "RESERVATION_NOT_FOUND";
    /// An entrance or driver does not take a requested credential mode.
    pub const CREDENTIAL_MODE_NOT_SUPPORTED: &str = "CREDENTIAL_MODE_NOT_SUPPORTED";
    /// A driver's capability does not include the operation.
    pub const OPERATION_NOT_SUPPORTED: &str = "OPERATION_NOT_SUPPORTED";
    /// A driver issues no staff keys.
    pub const STAFF_NOT_SUPPORTED: &str = "STAFF_NOT_SUPPORTED";
    /// A driver does not take a PIN chosen by the caller.
    pub const PIN_NOT_SUPPORTED: &str = "PIN_NOT_SUPPORTED";
    /// The chosen PIN is held by another key at one of the entrances.
    pub const PIN_IN_USE: &str = "PIN_IN_USE";
    /// Rule 1: a reservation_key without a reservation-capable entrance.
    pub const RESERVATION_KEY_NOT_SUPPORTED: &str = "RESERVATION_KEY_NOT_SUPPORTED";
    /// A guest key without a reservation_key where one is required.
    pub const RESERVATION_KEY_REQUIRED: &str = "RESERVATION_KEY_REQUIRED";
    /// Staff keys never take a reservation_key.
    pub const RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF: &str = "RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF";
    /// Rule 2: other doors than the reservation's; clear it first.
    pub const RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP: &str =
        "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP";
    /// Rule 3: a joiner with more doors than the reservation's.
    pub const RESERVATION_JOINER_ENTRANCE_SET_CONFLICT: &str =
        "RESERVATION_JOINER_ENTRANCE_SET_CONFLICT";
    /// Rule 4: a window that misses another key of the reservation.
    pub const RESERVATION_TIME_FRAMES_MUST_OVERLAP: &str = "RESERVATION_TIME_FRAMES_MUST_OVERLAP";
    /// A request_id already used for a different request.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    /// The key is revoked (or being revoked).
    pub const KEY_REVOKED: &str = "KEY_REVOKED";
    /// The key has expired.
    pub const KEY_EXPIRED: &str = "KEY_EXPIRED";
    /// EncodeKey for a key whose credentials are up to date.
    pub const ENCODING_NOT_REQUIRED: &str = "ENCODING_NOT_REQUIRED";
    /// A driver failed in a way it did not explain.
    pub const DRIVER_FAILED: &str = "DRIVER_FAILED";
    /// A driver or its provider cannot be reached now.
    pub const DRIVER_UNAVAILABLE: &str = "DRIVER_UNAVAILABLE";
    /// No bearer token.
    pub const TOKEN_MISSING: &str = "TOKEN_MISSING";
    /// A bearer token keysmith does not know.
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    /// The token's scopes do not include what the call needs.
    pub const SCOPE_MISSING: &str = "SCOPE_MISSING";
    /// Too many failed authentications from this address.
    pub const AUTH_RATE_LIMITED: &str = "AUTH_RATE_LIMITED";
    /// The token made too many requests this minute.
    pub const TOKEN_RATE_LIMITED: &str = "TOKEN_RATE_LIMITED";
    /// The token has too many requests in flight.
    pub const TOKEN_CONCURRENCY_LIMITED: &str = "TOKEN_CONCURRENCY_LIMITED";
    /// Too many health checks are being served at once.
    pub const HEALTH_CHECKS_LIMITED: &str = "HEALTH_CHECKS_LIMITED";
    /// The request did not fully arrive within `server.request_body_timeout_ms`.
    pub const REQUEST_BODY_TIMEOUT: &str = "REQUEST_BODY_TIMEOUT";
    /// The request is larger than `server.max_request_bytes`.
    pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";
    /// The client stopped sending the request before it was complete.
    pub const REQUEST_INCOMPLETE: &str = "REQUEST_INCOMPLETE";
    /// The request is not a well-formed gRPC message of the method: bytes
    /// that are not its protobuf message, a frame cut short, a compressed
    /// flag with no `grpc-encoding`, no message at all, or more than one.
    pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
    /// The request's `content-type` is not `application/grpc` or
    /// `application/grpc+proto` (answered HTTP 415).
    pub const UNSUPPORTED_CONTENT_TYPE: &str = "UNSUPPORTED_CONTENT_TYPE";
    /// No driver by that name.
    pub const DRIVER_NOT_FOUND: &str = "DRIVER_NOT_FOUND";
    /// A key's driver was removed from the configuration.
    pub const DRIVER_NOT_CONFIGURED: &str = "DRIVER_NOT_CONFIGURED";
}
