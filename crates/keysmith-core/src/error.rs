//! One error type for the whole domain, in the manner of OpenDAL: a kind that
//! decides the gRPC code, a stable UPPER_SNAKE reason, whether retrying can
//! help, and context that is safe to show (never a secret).
use std::{fmt, time::Duration};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, from the caller's point of view.
/// Exhaustive on purpose: every mapping of a kind (to a gRPC code, to the
/// plugin protocol) is a `match` without a wildcard, so a new kind does not
/// compile until each of them says what it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed; retrying it unchanged cannot succeed.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The request is well formed but conflicts with the current state.
    FailedPrecondition,
    PermissionDenied,
    Unauthenticated,
    /// A driver or provider cannot be reached now; retrying later may succeed.
    Unavailable,
    /// The operation is not supported by the driver of an entrance.
    Unsupported,
    ResourceExhausted,
    /// keysmith itself failed: a bug or a broken store.
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStatus {
    Permanent,
    Temporary,
}

/// A field of the request that is wrong, and why (AIP-193 BadRequest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Boxed so that `Result<T>` stays small on the happy path.
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

    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, reason, message)
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, reason, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, reasons::INTERNAL, message)
    }

    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, reason, message)
    }

    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.metadata.push((key, value.into()));
        self
    }

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

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.0.retry_after = Some(after);
        self.0.status = ErrorStatus::Temporary;
        self
    }

    pub fn set_temporary(mut self) -> Self {
        self.0.status = ErrorStatus::Temporary;
        self
    }

    pub fn set_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
    pub fn reason(&self) -> &'static str {
        self.0.reason
    }
    pub fn message(&self) -> &str {
        &self.0.message
    }
    pub fn is_temporary(&self) -> bool {
        self.0.status == ErrorStatus::Temporary
    }
    pub fn metadata(&self) -> &[(&'static str, String)] {
        &self.0.metadata
    }
    pub fn violations(&self) -> &[FieldViolation] {
        &self.0.violations
    }
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

/// The stable reasons keysmith reports in `ErrorInfo.reason`.
pub mod reasons {
    pub const INTERNAL: &str = "INTERNAL";
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    pub const FIELD_REQUIRED: &str = "FIELD_REQUIRED";
    pub const FIELD_INVALID: &str = "FIELD_INVALID";
    pub const FIELD_TOO_LONG: &str = "FIELD_TOO_LONG";
    pub const INVALID_TIME_WINDOW: &str = "INVALID_TIME_WINDOW";
    pub const INVALID_PIN: &str = "INVALID_PIN";
    pub const INVALID_PAGE_SIZE: &str = "INVALID_PAGE_SIZE";
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    pub const PROPERTY_NOT_FOUND: &str = "PROPERTY_NOT_FOUND";
    pub const ENTRANCE_NOT_FOUND: &str = "ENTRANCE_NOT_FOUND";
    pub const SPACE_NOT_FOUND: &str = "SPACE_NOT_FOUND";
    pub const KEY_NOT_FOUND: &str = "KEY_NOT_FOUND";
    pub const RESERVATION_NOT_FOUND: &str = "RESERVATION_NOT_FOUND";
    pub const CREDENTIAL_MODE_NOT_SUPPORTED: &str = "CREDENTIAL_MODE_NOT_SUPPORTED";
    pub const OPERATION_NOT_SUPPORTED: &str = "OPERATION_NOT_SUPPORTED";
    pub const STAFF_NOT_SUPPORTED: &str = "STAFF_NOT_SUPPORTED";
    pub const PIN_NOT_SUPPORTED: &str = "PIN_NOT_SUPPORTED";
    pub const PIN_IN_USE: &str = "PIN_IN_USE";
    pub const RESERVATION_KEY_NOT_SUPPORTED: &str = "RESERVATION_KEY_NOT_SUPPORTED";
    pub const RESERVATION_KEY_REQUIRED: &str = "RESERVATION_KEY_REQUIRED";
    pub const RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF: &str = "RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF";
    pub const RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP: &str =
        "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP";
    pub const RESERVATION_JOINER_ENTRANCE_SET_CONFLICT: &str =
        "RESERVATION_JOINER_ENTRANCE_SET_CONFLICT";
    pub const RESERVATION_TIME_FRAMES_MUST_OVERLAP: &str = "RESERVATION_TIME_FRAMES_MUST_OVERLAP";
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    pub const KEY_REVOKED: &str = "KEY_REVOKED";
    pub const KEY_EXPIRED: &str = "KEY_EXPIRED";
    pub const ENCODING_NOT_REQUIRED: &str = "ENCODING_NOT_REQUIRED";
    pub const DRIVER_FAILED: &str = "DRIVER_FAILED";
    pub const DRIVER_UNAVAILABLE: &str = "DRIVER_UNAVAILABLE";
    pub const TOKEN_MISSING: &str = "TOKEN_MISSING";
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    pub const SCOPE_MISSING: &str = "SCOPE_MISSING";
    pub const AUTH_RATE_LIMITED: &str = "AUTH_RATE_LIMITED";
    pub const TOKEN_RATE_LIMITED: &str = "TOKEN_RATE_LIMITED";
    pub const TOKEN_CONCURRENCY_LIMITED: &str = "TOKEN_CONCURRENCY_LIMITED";
    pub const DRIVER_NOT_FOUND: &str = "DRIVER_NOT_FOUND";
    /// A key's driver was removed from the configuration.
    pub const DRIVER_NOT_CONFIGURED: &str = "DRIVER_NOT_CONFIGURED";
}
