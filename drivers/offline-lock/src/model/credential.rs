//! What an offline-lock credential carries, and how it is sealed so the lock can tell a
//! genuine credential from a forged or tampered one.
//!
//! Sealed form: `"KSC1." + base64url-nopad(postcard(payload)) + "." + base64url-nopad(tag)`
//! where `tag = HMAC-SHA256(key, "KSC1." + payload part)`. The tag is checked in constant
//! time before anything is decoded.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Sequence, UnixSeconds};

type HmacSha256 = Hmac<Sha256>;

/// Version prefix of a sealed credential (part of the authenticated data).
pub const SEALED_PREFIX: &str = "KSC1.";

/// Longest sealed string [`CredentialCodec::open`] will look at; anything longer is
/// rejected as [`CredentialError::Invalid`] before any work is done.
pub const MAX_SEALED_LEN: usize = 16 * 1024;

/// Length in bytes of the HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Length of the tag in base64url without padding: ceil(32 * 4 / 3).
const TAG_B64_LEN: usize = 43;

/// Who the credential belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialRole {
    /// A guest: sequence semantics (override / join) apply on reservation-capable locks.
    Guest,
    /// A staff member of a level (e.g. "housekeeping", "maintenance", "master"): each level
    /// has its own code at the lock; staff never touch guest state.
    Staff { level: String },
}

/// One lock a credential opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockGrant {
    pub lock_id: String,
    /// The sequence value for that lock. `None` = common door (lobby, gym): no sequence
    /// semantics.
    pub sequence: Option<Sequence>,
}

/// The data a credential carries. Valid while `starts_at <= t < ends_at` (lock clock).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialPayload {
    pub property_code: String,
    pub card_id: String,
    pub copy: u16,
    pub role: CredentialRole,
    pub locks: Vec<LockGrant>,
    pub starts_at: UnixSeconds,
    /// Exclusive end of the validity window.
    pub ends_at: UnixSeconds,
    pub new_key_time: UnixSeconds,
    pub deadbolt_override: bool,
}

impl CredentialPayload {
    /// The grant for `lock_id`, if this credential lists that lock.
    pub fn grant_for(&self, lock_id: &str) -> Option<&LockGrant> {
        self.locks.iter().find(|g| g.lock_id == lock_id)
    }

    /// The staff level, or `None` for a guest credential.
    pub fn staff_level(&self) -> Option<&str> {
        match &self.role {
            CredentialRole::Guest => None,
            CredentialRole::Staff { level } => Some(level.as_str()),
        }
    }
}

impl fmt::Debug for CredentialPayload {
    /// Prints who the credential is for and where/when it works, never the sequence values
    /// or any sealed data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct LockIds<'a>(&'a [LockGrant]);
        impl fmt::Debug for LockIds<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|g| &g.lock_id))
                    .finish()
            }
        }
        f.debug_struct("CredentialPayload")
            .field("card_id", &self.card_id)
            .field("copy", &self.copy)
            .field("role", &self.role)
            .field("locks", &LockIds(&self.locks))
            .field("starts_at", &self.starts_at)
            .field("ends_at", &self.ends_at)
            .finish_non_exhaustive()
    }
}

/// Why a sealed credential could not be opened. Deliberately a single variant: the caller
/// learns nothing about which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Malformed, tampered with, sealed under another key, or not a credential at all.
    Invalid,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialError::Invalid => f.write_str("invalid credential"),
        }
    }
}

impl std::error::Error for CredentialError {}

/// Seals and opens credentials with an HMAC-SHA256 key.
#[derive(Clone)]
pub struct CredentialCodec {
    mac: HmacSha256,
}

impl fmt::Debug for CredentialCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCodec").finish_non_exhaustive()
    }
}

impl CredentialCodec {
    /// A codec keyed with `secret` (any length; HMAC hashes long keys).
    pub fn new(secret: &[u8]) -> Self {
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Self { mac }
    }

    /// Opaque, tamper-evident string:
    /// `"KSC1." + b64url(postcard(payload)) + "." + b64url(hmac("KSC1." + payload part))`.
    pub fn seal(&self, payload: &CredentialPayload) -> String {
        let bytes = postcard::to_stdvec(payload)
            .expect("serialising a credential payload into a Vec cannot fail");
        let mut out = String::with_capacity(
            SEALED_PREFIX.len() + bytes.len().div_ceil(3) * 4 + 1 + TAG_B64_LEN,
        );
        out.push_str(SEALED_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&bytes, &mut out);
        let tag = self.tag(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        out
    }

    /// Verifies the tag in constant time, then decodes. Any malformation, tampering or wrong
    /// key gives `Err(CredentialError::Invalid)`; never panics.
    pub fn open(&self, data: &str) -> Result<CredentialPayload, CredentialError> {
        use CredentialError::Invalid;
        if data.len() > MAX_SEALED_LEN {
            return Err(Invalid);
        }
        let rest = data.strip_prefix(SEALED_PREFIX).ok_or(Invalid)?;
        let (payload_b64, tag_b64) = rest.split_once('.').ok_or(Invalid)?;
        if tag_b64.len() != TAG_B64_LEN {
            return Err(Invalid);
        }
        // Canonical decoding only (the engine rejects non-zero trailing bits), so one tag
        // has exactly one textual form.
        let presented_tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| Invalid)?;
        if presented_tag.len() != TAG_LEN {
            return Err(Invalid);
        }
        let signed = &data[..SEALED_PREFIX.len() + payload_b64.len()];
        let expected = self.tag(signed.as_bytes());
        if !bool::from(expected.as_slice().ct_eq(presented_tag.as_slice())) {
            return Err(Invalid);
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| Invalid)?;
        let (payload, trailing) =
            postcard::take_from_bytes::<CredentialPayload>(&bytes).map_err(|_| Invalid)?;
        if !trailing.is_empty() {
            return Err(Invalid);
        }
        Ok(payload)
    }

    /// HMAC-SHA256 over `signed` (the `"KSC1." + payload part` text).
    pub(super) fn tag(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }
}
