//! What an operator or a test does at a simulated door: present a credential,
//! read a lock's state and audit trail, skew its clock, set its flags.
use keysmith_driver::{
    error::{bounded, quoted},
    reasons, Error, Result, Timestamp,
};

use crate::{
    driver::OfflineLock,
    model::{credential::SEALED_PREFIX, AuditRecord, Decision, LockState, Presented},
    state::{self, Lock},
};

/// A lock's state as an operator sees it.
#[derive(Clone, Debug)]
pub struct LockView {
    pub property_id: String,
    pub entrance_id: String,
    pub reservation_capable: bool,
    pub look_ahead: u16,
    pub audit_capacity: usize,
    pub state: LockState,
}

/// Flags to change at a lock; None leaves a flag as it is.
#[derive(Clone, Debug, Default)]
pub struct FlagChange {
    pub deadbolt_engaged: Option<bool>,
    pub guest_cancelled: Option<bool>,
    pub blocked: Option<bool>,
    pub block_card_ids: Vec<String>,
    pub unblock_card_ids: Vec<String>,
}

const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

impl OfflineLock {
    /// Presents credential data (sealed card, mobile-key or QR data, or a PIN
    /// typed at the keypad) at an entrance at real time `at`.
    pub async fn present(
        &self,
        property_id: &str,
        entrance_id: &str,
        data: &str,
        at: Timestamp,
    ) -> Result<Decision> {
        if data.is_empty() || data.len() > MAX_CREDENTIAL_LEN {
            return Err(Error::invalid_field(
                reasons::FIELD_INVALID,
                "credential_data",
                format!("must be 1 to {MAX_CREDENTIAL_LEN} bytes"),
            ));
        }
        let decision = self.with_lock(property_id, entrance_id, |lock, codec| {
            let opened;
            let presented = if data.starts_with(SEALED_PREFIX) {
                match codec.open(data) {
                    Ok(p) => {
                        opened = p;
                        Presented::Credential(&opened)
                    }
                    Err(_) => Presented::Unreadable(crate::model::Reason::Invalid),
                }
            } else if data.bytes().all(|b| b.is_ascii_digit()) {
                let lock_time = lock.state.lock_time(at.unix_seconds());
                match lock
                    .pins
                    .typed(data, lock_time)
                    .and_then(|e| codec.open(e.sealed.expose()).ok())
                {
                    Some(p) => {
                        opened = p;
                        Presented::Credential(&opened)
                    }
                    None => Presented::Unreadable(crate::model::Reason::UnknownPin),
                }
            } else {
                Presented::Unreadable(crate::model::Reason::Invalid)
            };
            lock.state
                .present(&lock.config, presented, at.unix_seconds())
        })?;
        self.store.sync().await?;
        Ok(decision)
    }

    pub fn lock_state(&self, property_id: &str, entrance_id: &str) -> Result<LockView> {
        self.read_lock(property_id, entrance_id, view)
    }

    pub async fn set_clock_skew(
        &self,
        property_id: &str,
        entrance_id: &str,
        skew_seconds: i64,
    ) -> Result<LockView> {
        const MAX_SKEW: u64 = 10 * 365 * 86_400;
        // unsigned_abs: `abs` of i64::MIN overflows (a panic in debug
        // builds; in release it stays negative and passed this check).
        if skew_seconds.unsigned_abs() > MAX_SKEW {
            return Err(Error::invalid_field(
                reasons::FIELD_INVALID,
                "skew_seconds",
                "must be within ten years",
            ));
        }
        let view = self.with_lock(property_id, entrance_id, |lock, _| {
            lock.state.clock_skew_seconds = skew_seconds;
            view(lock)
        })?;
        self.store.sync().await?;
        Ok(view)
    }

    pub async fn set_flags(
        &self,
        property_id: &str,
        entrance_id: &str,
        change: FlagChange,
    ) -> Result<LockView> {
        let view = self.with_lock(property_id, entrance_id, |lock, _| {
            let s = &mut lock.state;
            if let Some(v) = change.deadbolt_engaged {
                s.deadbolt_engaged = v;
            }
            if let Some(v) = change.guest_cancelled {
                s.guest_cancelled = v;
            }
            if let Some(v) = change.blocked {
                s.blocked = v;
            }
            for id in &change.block_card_ids {
                s.block_card(id, lock.config.blocked_cards_capacity);
            }
            for id in &change.unblock_card_ids {
                s.unblock_card(id);
            }
            view(lock)
        })?;
        self.store.sync().await?;
        Ok(view)
    }

    /// The lock's audit trail, oldest first.
    pub fn audit_events(&self, property_id: &str, entrance_id: &str) -> Result<Vec<AuditRecord>> {
        self.read_lock(property_id, entrance_id, |lock| {
            lock.state.audit.iter().cloned().collect()
        })
    }

    /// Reads one lock as its stored state has it now.
    fn read_lock<T>(
        &self,
        property_id: &str,
        entrance_id: &str,
        read: impl FnOnce(&Lock) -> T,
    ) -> Result<T> {
        self.transact(property_id, &[entrance_id], None, |sim, _| {
            sim.lock(entrance_id)
                .map(read)
                .ok_or_else(|| no_lock(property_id, entrance_id))
        })
    }

    /// Runs `f` on one lock, as its stored state has it, and
    /// writes the lock's state through to the store.
    fn with_lock<T>(
        &self,
        property_id: &str,
        entrance_id: &str,
        f: impl FnOnce(&mut Lock, &crate::model::CredentialCodec) -> T,
    ) -> Result<T> {
        self.transact(property_id, &[entrance_id], None, |sim, changes| {
            let lock = sim
                .lock_mut(entrance_id)
                .ok_or_else(|| no_lock(property_id, entrance_id))?;
            let out = f(lock, &self.codec);
            changes.push((
                state::lock_key(property_id, entrance_id),
                Some(state::encode(&lock.state)?),
            ));
            Ok(out)
        })
    }
}

fn view(lock: &Lock) -> LockView {
    LockView {
        property_id: lock.config.property_code.clone(),
        entrance_id: lock.config.lock_id.clone(),
        reservation_capable: lock.config.reservation_capable,
        look_ahead: lock.config.look_ahead,
        audit_capacity: lock.config.audit_capacity,
        state: lock.state.clone(),
    }
}

fn no_lock(property_id: &str, entrance_id: &str) -> Error {
    Error::not_found(
        reasons::ENTRANCE_NOT_FOUND,
        format!(
            "property {} has no simulated lock {}",
            quoted(property_id),
            quoted(entrance_id)
        ),
    )
    .with_context("entrance_id", bounded(entrance_id))
}
