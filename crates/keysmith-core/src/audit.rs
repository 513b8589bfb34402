//! The audit log: who issued, changed, revoked or read the secrets of which
//! key, when, and from where.
//!
//! A change's record is written in the same atomic write as the change
//! itself (the request carries its [`AuditOrigin`]), so no change is ever
//! stored without its record, and both are durable before the answer.
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, ErrorKind},
    key::AccessKey,
    time::Timestamp,
};

/// Who asks for a change, as the audit log names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditOrigin {
    /// A token id, or the component acting on its own ("3rpms-sync").
    pub actor: String,
    /// The caller's address, for calls that came over the network.
    pub peer: Option<String>,
    /// Whether the answer will carry credential data to this caller.
    pub reads_secrets: bool,
}

/// One audited action, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// A ULID: records of one property sort by it in the order written.
    pub id: String,
    /// When the action was judged: the mutation's one reading of the clock.
    pub at: Timestamp,
    /// Who acted: the origin's [`AuditOrigin::actor`].
    pub actor: String,
    /// The RPC or operation: "Issue", "Revoke", "UpdateKey", ...
    pub action: String,
    /// The property acted on.
    pub property_id: String,
    /// The keys the answer showed: the key issued or changed, or every key a
    /// revocation targeted.
    pub key_ids: Vec<String>,
    /// The reservation_key the request acted on: set for an Issue into a
    /// reservation and for a Revoke by reservation_key.
    pub reservation_key: Option<String>,
    /// The caller's address, when the call came over the network.
    pub peer: Option<String>,
    /// "OK", or the gRPC code name of the refusal.
    pub outcome: String,
    /// The refusal's reason.
    pub reason: Option<String>,
    /// Whether the answer carried credential data.
    pub secrets_returned: bool,
}

/// Makes audit record ids: ULIDs that carry the record's time (keysmith's
/// clock), so that retention, which purges by id, judges a record by when it
/// was written, and that grow in the order records are made within one
/// millisecond. A store keeps one and gives each record its id as it is
/// written, so that ids follow that store's own clock only.
#[derive(Default)]
pub struct AuditIds(Mutex<(u64, Option<ulid::Generator>)>);

impl AuditIds {
    /// The next id for a record made at `at`. An `at` earlier than the last
    /// one (a clock stepped back) gets an id of its own time rather than one
    /// after the last.
    pub fn next(&self, at: Timestamp) -> String {
        let millis = u64::try_from(at.as_micros().max(0) / 1_000).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        let mut ids = self.0.lock();
        let (last_millis, generator) = &mut *ids;
        let generator = generator.get_or_insert_with(ulid::Generator::new);
        let id = if millis >= *last_millis {
            *last_millis = millis;
            generator
                .generate_from_datetime(time)
                .unwrap_or_else(|_| ulid::Ulid::from_datetime(time))
        } else {
            ulid::Ulid::from_datetime(time)
        };
        id.to_string()
    }
}

impl AuditRecord {
    /// A record of `action` by `origin` on `property_id`, with the outcome
    /// "OK" and no id yet (the store gives it one as it is written, see
    /// [`AuditIds`]); the caller fills in the keys and, for a refusal,
    /// [`AuditRecord::failed`].
    pub fn new(origin: &AuditOrigin, action: &str, property_id: &str, at: Timestamp) -> Self {
        Self {
            id: String::new(),
            at,
            actor: origin.actor.clone(),
            action: action.to_owned(),
            property_id: property_id.to_owned(),
            key_ids: Vec::new(),
            reservation_key: None,
            peer: origin.peer.clone(),
            outcome: "OK".into(),
            reason: None,
            secrets_returned: false,
        }
    }

    /// The record of a change to `keys`, answered to `origin`.
    pub fn change(
        origin: &AuditOrigin,
        action: &str,
        property_id: &str,
        keys: &[AccessKey],
        reservation_key: Option<&str>,
        at: Timestamp,
    ) -> Self {
        let mut record = Self::new(origin, action, property_id, at);
        record.key_ids = keys.iter().map(|k| k.key_id.clone()).collect();
        record.reservation_key = reservation_key.map(str::to_owned);
        record.secrets_returned =
            origin.reads_secrets && keys.iter().any(AccessKey::carries_credential_data);
        record
    }

    /// Records a refusal or failure: the outcome becomes the gRPC code name
    /// `error` is answered with ([`code_name`]), and its reason is kept.
    pub fn failed(&mut self, error: &Error) {
        self.outcome = code_name(error.kind()).to_owned();
        self.reason = Some(error.reason().to_owned());
    }
}

/// The gRPC code name a kind is answered with.
pub fn code_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::AlreadyExists => "ALREADY_EXISTS",
        ErrorKind::FailedPrecondition | ErrorKind::Unsupported => "FAILED_PRECONDITION",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
        ErrorKind::Internal => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_in_the_order_records_are_made() {
        let at = Timestamp::from_unix_seconds(0);
        let ids_of_this_store = AuditIds::default();
        // Another store's later clock does not disturb this one's order.
        let other = AuditIds::default();
        let ids: Vec<String> = (0..100)
            .map(|i| {
                other.next(Timestamp::from_unix_seconds(1_000 + i));
                ids_of_this_store.next(at)
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
