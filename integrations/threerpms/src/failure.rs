//! How a failure is judged: whether it stops the whole hotel for a while
//! (3RPMS unreachable or blocking, the API key refused), or belongs to one
//! event or one room stay, which is retried with back-off and then parked
//! so that the hotel's other work goes on; and whether it is permanent.
use keysmith_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::errors::reasons;

/// Whether an error is about 3RPMS or keysmith's access to it as a whole:
/// every event would fail the same way, so the hotel's queue waits (as long
/// as a suspected block lasts) instead of blaming, and parking, each event.
pub fn hotel_wide(error: &Error) -> bool {
    match error.kind() {
        ErrorKind::Unavailable => error.reason() != reasons::UPSTREAM_BAD_ANSWER,
        ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => true,
        ErrorKind::FailedPrecondition => error.reason() == reasons::UPSTREAM_CONFIGURATION,
        _ => false,
    }
}

/// One failure of an event or a room stay's step, as kept in the
/// dead-letter list and logged: never credential data, never 3RPMS's own
/// message (which may quote what was sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A validation or schema error, or a refusal by keysmith's rules:
    /// trying the same thing again cannot help, so it is parked sooner.
    pub permanent: bool,
    /// keysmith's reason code, message and what 3RPMS said of the cause.
    pub reason: String,
}

impl Failure {
    pub fn of(error: &Error) -> Self {
        let permanent = match error.kind() {
            ErrorKind::InvalidArgument
            | ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::FailedPrecondition
            | ErrorKind::Unsupported => true,
            // No category from 3RPMS: the query's shape was refused.
            ErrorKind::Internal => error.reason() == reasons::UPSTREAM_ERROR,
            _ => false,
        };
        let mut reason = format!("{}: {}", error.reason(), error.message());
        for (key, value) in error.metadata() {
            if matches!(*key, "upstream_category" | "upstream_argument_path") {
                reason.push_str(&format!(" ({key} {value})"));
            }
        }
        Self { permanent, reason }
    }
}

/// A room stay whose step failed in a round; the rest of the round went on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StayFailure {
    pub stay_id: String,
    pub failure: Failure,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_stops_the_hotel_and_a_refused_query_is_one_events() {
        let blocked = crate::errors::blocked(std::time::Duration::from_secs(60));
        assert!(hotel_wide(&blocked));
        let bad_answer = crate::errors::bad_answer("shape");
        assert!(!hotel_wide(&bad_answer));
        let schema = crate::errors::upstream(
            &[crate::errors::GraphqlError {
                message: "Unknown field \"x\"".into(),
                extensions: None,
            }],
            false,
        );
        assert!(!hotel_wide(&schema));
        let failure = Failure::of(&schema);
        assert!(failure.permanent);
        assert!(
            !failure.reason.contains("Unknown field"),
            "3RPMS's message is not kept: {}",
            failure.reason
        );
    }
}
