//! The mutation envelope: what every change of keys shares. It validates
//! the request, fingerprints it, begins a store transaction holding the
//! request's locks, answers a known request_id with its first answer (AIP-155),
//! and at the end writes the audit record and the idempotency record in the
//! same atomic commit as the change. An operation only computes its answer
//! and its writes.
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    audit::{AuditOrigin, AuditRecord},
    error::{bounded, reasons, Error, Result},
    key::AccessKey,
    request::{EncodeKeyRequest, IssueRequest, RevokeRequest, UpdateKeyRequest},
    reservation::Reservation,
    store::{IdempotencyRecord, LockName, StoredAnswer, Transaction},
    time::Timestamp,
};

use super::{AccessService, Revocation};

/// The operations that change keys. Each name is stored in idempotency and
/// audit records, so a name never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// [`AccessService::issue`].
    Issue,
    /// [`AccessService::revoke`].
    Revoke,
    /// [`AccessService::update_key`].
    UpdateKey,
    /// [`AccessService::encode_key`].
    EncodeKey,
    /// [`AccessService::refresh_key`]: internal, with no request_id.
    RefreshKey,
    /// [`AccessService::sweep`]: expiry and retention, internal.
    Sweep,
}

impl Method {
    /// The name stored in idempotency and audit records and hashed into
    /// request fingerprints: the gRPC method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Issue => "Issue",
            Method::Revoke => "Revoke",
            Method::UpdateKey => "UpdateKey",
            Method::EncodeKey => "EncodeKey",
            Method::RefreshKey => "RefreshKey",
            Method::Sweep => "Sweep",
        }
    }
}

/// A request that changes keys, as the envelope needs to see it.
pub(super) trait MutationRequest: Serialize {
    const METHOD: Method;
    /// Checks the request's content; nothing is read or written before.
    fn validate(&self) -> Result<()>;
    fn property_id(&self) -> &str;
    fn request_id(&self) -> Option<&str>;
    fn origin(&self) -> Option<&AuditOrigin>;
}

macro_rules! mutation_request {
    ($request:ty, $method:expr) => {
        impl MutationRequest for $request {
            const METHOD: Method = $method;
            fn validate(&self) -> Result<()> {
                <$request>::validate(self)
            }
            fn property_id(&self) -> &str {
                &self.property_id
            }
            fn request_id(&self) -> Option<&str> {
                self.request_id.as_deref()
            }
            fn origin(&self) -> Option<&AuditOrigin> {
                self.origin.as_ref()
            }
        }
    };
}

mutation_request!(IssueRequest, Method::Issue);
mutation_request!(RevokeRequest, Method::Revoke);
mutation_request!(UpdateKeyRequest, Method::UpdateKey);
mutation_request!(EncodeKeyRequest, Method::EncodeKey);

/// A validated mutation, before it begins.
pub(super) struct Envelope {
    method: Method,
    property_id: String,
    request_id: Option<String>,
    origin: Option<AuditOrigin>,
    /// A digest of the request, to tell a retry from a reuse of its id.
    fingerprint: [u8; 32],
    locks: Vec<LockName>,
}

impl Envelope {
    /// Validates `request` and prepares its envelope.
    pub fn of<R: MutationRequest>(request: &R) -> Result<Self> {
        request.validate()?;
        let property_id = request.property_id().to_owned();
        let request_id = request.request_id().map(str::to_owned);
        let mut locks = Vec::with_capacity(2);
        if let Some(id) = &request_id {
            locks.push(LockName::Request {
                property_id: property_id.clone(),
                request_id: id.clone(),
            });
        }
        Ok(Self {
            method: R::METHOD,
            fingerprint: fingerprint(R::METHOD, request),
            property_id,
            request_id,
            origin: request.origin().cloned(),
            locks,
        })
    }

    /// A change of a key outside any request (the follower's refresh): no
    /// request_id to remember and nobody to audit.
    pub fn internal(method: Method, property_id: &str) -> Self {
        Self {
            method,
            property_id: property_id.to_owned(),
            request_id: None,
            origin: None,
            fingerprint: [0; 32],
            locks: Vec::new(),
        }
    }

    /// Also holds `names`.
    pub fn locking(mut self, names: impl IntoIterator<Item = LockName>) -> Self {
        self.locks.extend(names);
        self
    }

    /// Also holds the key, so that no other change (the sweeper's) is made
    /// from a version this mutation is replacing.
    pub fn locking_key(mut self, key_id: &str) -> Self {
        self.locks.push(LockName::Key {
            property_id: self.property_id.clone(),
            key_id: key_id.to_owned(),
        });
        self
    }

    /// Also holds the reservation, so that its rules are judged and its
    /// members changed by one mutation at a time.
    pub fn locking_reservation(mut self, reservation_key: Option<&str>) -> Self {
        if let Some(rk) = reservation_key {
            self.locks.push(LockName::Reservation {
                property_id: self.property_id.clone(),
                reservation_key: rk.to_owned(),
            });
        }
        self
    }
}

/// How a mutation begins: a retry gets its first answer back.
pub(super) enum Begun<'s> {
    Replayed(StoredAnswer),
    Fresh(Mutation<'s>),
}

/// A mutation under way: its transaction, and the time it is judged at.
pub(super) struct Mutation<'s> {
    envelope: Envelope,
    pub tx: Box<dyn Transaction + 's>,
    pub now: Timestamp,
}

impl AccessService {
    /// Begins `envelope`: takes its locks, then answers a known request_id
    /// with its first answer, or refuses the id's reuse for another request.
    pub(super) async fn begin(&self, envelope: Envelope) -> Result<Begun<'_>> {
        let mut tx = self.store.begin(envelope.locks.clone()).await?;
        if let Some(request_id) = &envelope.request_id {
            if let Some(record) = tx.idempotency(&envelope.property_id, request_id).await? {
                if record.method != envelope.method.as_str()
                    || record.fingerprint != envelope.fingerprint
                {
                    return Err(Error::invalid_field(
                        reasons::REQUEST_ID_REUSED,
                        "request_id",
                        "was already used for a different request",
                    )
                    .with_context("request_id", bounded(request_id))
                    .with_context("first_method", record.method));
                }
                return Ok(Begun::Replayed(record.answer));
            }
        }
        let now = self.clock.now();
        // The change log records each key change at the instant the
        // mutation is judged at, the service's clock, not the store's.
        tx.writes().changed_at = Some(now);
        Ok(Begun::Fresh(Mutation { envelope, tx, now }))
    }
}

impl Mutation<'_> {
    pub fn property_id(&self) -> &str {
        &self.envelope.property_id
    }

    /// The key, read inside the transaction.
    pub async fn require_key(&mut self, key_id: &str) -> Result<AccessKey> {
        let property_id = self.envelope.property_id.clone();
        self.tx
            .key(&property_id, key_id)
            .await?
            .ok_or_else(|| super::key_not_found(&property_id, key_id))
    }

    pub async fn reservation(&mut self, reservation_key: &str) -> Result<Option<Reservation>> {
        let property_id = self.envelope.property_id.clone();
        self.tx.reservation(&property_id, reservation_key).await
    }

    /// Writes the new version of a key (`old`: the version it replaces).
    pub fn put_key(&mut self, key: AccessKey, old: Option<AccessKey>) {
        self.tx.writes().keys.push((key, old));
    }

    pub fn put_reservation(&mut self, reservation: Reservation) {
        self.tx.writes().reservations.push(reservation);
    }

    /// Commits the change with its audit record and, for a request with a
    /// request_id, the answer to give its retries. Durable on return.
    pub async fn commit(
        mut self,
        answer: &StoredAnswer,
        audited_reservation: Option<&str>,
    ) -> Result<()> {
        self.audit(answer.keys(), audited_reservation, None);
        if let Some(request_id) = &self.envelope.request_id {
            let record = IdempotencyRecord {
                property_id: self.envelope.property_id.clone(),
                request_id: request_id.clone(),
                method: self.envelope.method.as_str().to_owned(),
                fingerprint: self.envelope.fingerprint,
                answer: answer.clone(),
                created_at: self.now,
            };
            self.tx.writes().idempotency.push(record);
        }
        self.tx.commit().await
    }

    /// Commits what a mutation that stopped part-way did (some drivers
    /// done, the others named in the keys' warnings), audited with the
    /// failure. No answer is remembered: a retry of the same request_id
    /// runs again and completes it.
    pub async fn commit_progress(mut self, keys: &[AccessKey], failure: &Error) -> Result<()> {
        self.audit(keys, None, Some(failure));
        self.tx.commit().await
    }

    fn audit(
        &mut self,
        keys: &[AccessKey],
        reservation_key: Option<&str>,
        failure: Option<&Error>,
    ) {
        let Some(origin) = &self.envelope.origin else {
            return;
        };
        let mut record = AuditRecord::change(
            origin,
            self.envelope.method.as_str(),
            &self.envelope.property_id,
            keys,
            reservation_key,
            self.now,
        );
        record.id = self.tx.audit_id(self.now);
        if let Some(error) = failure {
            record.failed(error);
        }
        self.tx.writes().audit.push(record);
    }
}

impl StoredAnswer {
    pub(super) fn key(key: &AccessKey) -> Self {
        StoredAnswer::Key(Box::new(key.clone()))
    }

    pub(super) fn revocation(revocation: &Revocation) -> Self {
        StoredAnswer::Revoked {
            keys: revocation.keys.clone(),
            warnings: revocation.warnings.clone(),
        }
    }

    /// The keys the answer shows, for the audit record.
    fn keys(&self) -> &[AccessKey] {
        match self {
            StoredAnswer::Key(key) => std::slice::from_ref(key),
            StoredAnswer::Revoked { keys, .. } => keys,
        }
    }

    pub(super) fn into_key(self) -> Result<AccessKey> {
        match self {
            StoredAnswer::Key(key) => Ok(*key),
            StoredAnswer::Revoked { .. } => Err(Error::internal("stored answer of another kind")),
        }
    }

    pub(super) fn into_revocation(self) -> Result<Revocation> {
        match self {
            StoredAnswer::Revoked { keys, warnings } => Ok(Revocation { keys, warnings }),
            StoredAnswer::Key(_) => Err(Error::internal("stored answer of another kind")),
        }
    }
}

/// The method name and the request, hashed: the same as the records of
/// earlier builds, so their retries are still recognised.
fn fingerprint(method: Method, request: &impl Serialize) -> [u8; 32] {
    let bytes = postcard::to_stdvec(&(method.as_str(), request)).unwrap_or_default();
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_one_earlier_builds_stored() {
        // Earlier builds hashed ("Issue", request) with postcard: the
        // method's name must not change, or stored request_ids would be
        // refused as reused.
        let request = ("p", 7u32);
        let expected: [u8; 32] =
            Sha256::digest(postcard::to_stdvec(&("Issue", &request)).unwrap()).into();
        assert_eq!(fingerprint(Method::Issue, &request), expected);
        assert_ne!(fingerprint(Method::Revoke, &request), expected);
    }
}
