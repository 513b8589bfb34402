//! RefreshKey: asks the drivers that issue asynchronously where a key
//! stands and stores what they answer: credentials as they get issued, and
//! the key's state (issuing, active, encoding required).
use crate::{
    driver::{ProvisionState, RefreshArgs},
    error::Result,
    key::{AccessKey, KeyState},
    store::StoredAnswer,
};

use super::{
    driver_calls::DriverOperation,
    drivers_of,
    envelope::{Begun, Envelope, Method},
    fanout::Done,
    replace_credentials, AccessService,
};

impl AccessService {
    /// Asks the key's drivers that issue asynchronously (capability `refresh`)
    /// where it stands, and stores what they answer: their credentials, and
    /// the state `FAILED` if any cannot deliver a credential, else `ISSUING`
    /// while any is still issuing, else `ENCODING_REQUIRED` if any says so,
    /// else `ACTIVE`.
    ///
    /// An internal mutation: no request_id and no audit record (the follower of
    /// issuing keys and the RefreshKey RPC call it). It does not check the ids:
    /// a caller's ids go through [`AccessService::get_key`] first. NotFound
    /// `KEY_NOT_FOUND` for an unknown key. A revoked or revoking key, or one
    /// with no such driver, is answered as stored without asking anyone, and an
    /// unchanged answer writes nothing. A failed key is final: answered as
    /// stored too. A refresh only reads at the drivers:
    /// when one fails nothing is stored, its error is answered, and the next
    /// refresh asks again. Safe to repeat.
    pub async fn refresh_key(&self, property_id: &str, key_id: &str) -> Result<AccessKey> {
        let first = self.require_key(property_id, key_id)?;
        let envelope = Envelope::internal(Method::RefreshKey, property_id)
            .locking_reservation(first.reservation_key())
            .locking_key(key_id);
        let mut m = match self.begin(envelope).await? {
            Begun::Replayed(answer) => return answer.into_key(),
            Begun::Fresh(m) => m,
        };
        let old = m.require_key(key_id).await?;
        if matches!(
            old.stored_state,
            KeyState::Revoked | KeyState::Revoking | KeyState::Expired | KeyState::Failed
        ) {
            return Ok(old);
        }
        let refreshable: Vec<String> = drivers_of(&old)
            .into_iter()
            .filter(|name| {
                self.router
                    .find_driver(name)
                    .is_some_and(|d| d.info().capability.refresh)
            })
            .collect();
        if refreshable.is_empty() {
            return Ok(old);
        }
        let out = self
            .fan_out(
                &old,
                &refreshable,
                DriverOperation::Refresh,
                |driver, slice| async move { driver.refresh(RefreshArgs { key: slice }).await },
            )
            .await;
        // A refresh only reads: when a driver cannot answer, nothing is
        // stored and the next refresh asks again.
        if let Some(stopped) = out.stopped {
            return Err(stopped.error);
        }
        let mut key = old.clone();
        let mut states = Vec::with_capacity(out.done.len());
        for Done { driver, reply } in out.done {
            replace_credentials(&mut key, &driver, reply.credentials);
            for w in reply.warnings {
                if !key.warnings.contains(&w) {
                    key.warnings.push(w);
                }
            }
            states.push(reply.state);
        }
        // A credential that cannot be delivered fails the key, whatever the
        // other drivers say: it would not open everywhere it should.
        key.stored_state = if states.contains(&ProvisionState::Failed) {
            KeyState::Failed
        } else if states.contains(&ProvisionState::Issuing) {
            KeyState::Issuing
        } else if states.contains(&ProvisionState::EncodingRequired) {
            KeyState::EncodingRequired
        } else {
            KeyState::Active
        };
        if key.credentials == old.credentials
            && key.stored_state == old.stored_state
            && key.warnings == old.warnings
        {
            return Ok(old);
        }
        key.updated_at = m.now;
        m.put_key(key.clone(), Some(old));
        m.commit(&StoredAnswer::key(&key), None).await?;
        Ok(key)
    }
}
