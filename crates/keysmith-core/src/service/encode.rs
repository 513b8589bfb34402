//! EncodeKey: re-encodes the credentials a window change left out of date.
//! An encoded card cannot be un-encoded, so when one driver fails the others'
//! new credentials are kept, the key stays ENCODING_REQUIRED with a warning
//! naming the driver, and a retry encodes only what is left.
use crate::{
    driver::EncodeArgs,
    error::{reasons, Error, Result},
    key::{warnings, AccessKey, KeyState},
    request::EncodeKeyRequest,
    store::StoredAnswer,
};

use super::{
    add_warnings,
    driver_calls::DriverOperation,
    driver_pending, drivers_of,
    envelope::{Begun, Envelope},
    fanout::Done,
    key_revoked, replace_credentials, AccessService,
};

impl AccessService {
    /// Re-encodes the credentials of an `ENCODING_REQUIRED` key, at each
    /// driver whose credentials need it.
    ///
    /// Checks the request's content ([`EncodeKeyRequest::validate`]); NotFound
    /// `KEY_NOT_FOUND`; FailedPrecondition `KEY_REVOKED` for a key revoked or
    /// being revoked, `ENCODING_NOT_REQUIRED` for a key in any other state; and,
    /// before any driver is asked, `DRIVER_NOT_CONFIGURED` or
    /// `OPERATION_NOT_SUPPORTED` unless each of those drivers can encode.
    ///
    /// An encoded card cannot be un-encoded, so when a driver fails the others'
    /// new credentials are stored, the key stays `ENCODING_REQUIRED` with an
    /// `ENCODE_INCOMPLETE` warning naming the driver, the progress is audited
    /// with the failure, and the driver's error is answered; a retry encodes
    /// only what is left. On success the key is `ACTIVE`.
    ///
    /// Idempotent by request_id: a retry of a completed encoding gets the
    /// first answer.
    pub async fn encode_key(&self, req: EncodeKeyRequest) -> Result<AccessKey> {
        let envelope = Envelope::of(&req)?;
        let first = self.require_key(&req.property_id, &req.key_id)?;
        let envelope = envelope
            .locking_reservation(first.reservation_key())
            .locking_key(&req.key_id);
        let mut m = match self.begin(envelope).await? {
            Begun::Replayed(answer) => return answer.into_key(),
            Begun::Fresh(m) => m,
        };
        let old = m.require_key(&req.key_id).await?;
        if matches!(old.stored_state, KeyState::Revoked | KeyState::Revoking) {
            return Err(key_revoked(&old));
        }
        if old.stored_state != KeyState::EncodingRequired {
            return Err(Error::failed_precondition(
                reasons::ENCODING_NOT_REQUIRED,
                format!("key {} does not need re-encoding", old.key_id),
            )
            .with_context("key_id", old.key_id.clone()));
        }
        let pending: Vec<String> = drivers_of(&old)
            .into_iter()
            .filter(|name| {
                old.credentials
                    .iter()
                    .any(|c| &c.driver == name && c.encoding_required)
            })
            .collect();
        for name in &pending {
            let driver = self.router.driver(name)?;
            self.require(driver.as_ref(), |c| c.encode, "encode")?;
        }

        let out = self
            .fan_out(&old, &pending, DriverOperation::Encode, |driver, slice| {
                let encoder_id = req.encoder_id.clone();
                async move {
                    driver
                        .encode(EncodeArgs {
                            key: slice,
                            encoder_id,
                        })
                        .await
                }
            })
            .await;
        let mut key = old.clone();
        key.updated_at = m.now;
        key.warnings
            .retain(|w| w.code != warnings::ENCODE_INCOMPLETE);
        for Done { driver, reply } in out.done {
            replace_credentials(&mut key, &driver, reply.credentials);
            add_warnings(&mut key.warnings, reply.warnings);
        }
        if let Some(stopped) = out.stopped {
            key.warnings.push(driver_pending(
                warnings::ENCODE_INCOMPLETE,
                &stopped.driver,
                &stopped.error,
                "re-encode its credentials",
            ));
            m.put_key(key.clone(), Some(old));
            m.commit_progress(std::slice::from_ref(&key), &stopped.error)
                .await?;
            return Err(stopped.error);
        }
        key.warnings
            .retain(|w| w.code != warnings::ENCODING_REQUIRED);
        key.stored_state = KeyState::Active;
        m.put_key(key.clone(), Some(old));
        m.commit(&StoredAnswer::key(&key), None).await?;
        Ok(key)
    }
}
