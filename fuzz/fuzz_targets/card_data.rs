//! Sealed card data as the lock reads it (`KSC1.` credentials,
//! `CredentialCodec::open`), then the lock's decision on what it read.
//!
//! Random text never carries a valid tag, so most of it stops at the HMAC;
//! half the inputs are therefore signed here with the lock's key (the same
//! HMAC-SHA256 over `"KSC1." + payload part` the format documents), which
//! sends arbitrary bytes into the postcard decoding behind the tag and,
//! when they decode, into `LockState::present`.
#![no_main]

use arbitrary::Arbitrary;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use keysmith_offline_lock::model::{
    credential::SEALED_PREFIX, CredentialCodec, CredentialError, LockConfig, LockState, Presented,
};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzzing-site-secret-0123456789ab";

#[derive(Arbitrary, Debug)]
enum Card {
    /// Whatever a reader could be handed.
    Text(String),
    /// An authentic tag over arbitrary payload bytes.
    Signed(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    card: Card,
    lock_id: String,
    property_code: String,
    reservation_capable: bool,
    look_ahead: u16,
    invalid_credentials_advance: bool,
    guest_sequence: u16,
    clock_skew_seconds: i64,
    deadbolt_engaged: bool,
    guest_cancelled: bool,
    blocked: bool,
    at: i64,
}

fn sign(payload: &[u8]) -> String {
    let mut sealed = format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(sealed.as_bytes());
    sealed.push('.');
    sealed.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    sealed
}

fuzz_target!(|input: Input| {
    let codec = CredentialCodec::new(SECRET);
    let text = match &input.card {
        Card::Text(text) => text.clone(),
        Card::Signed(payload) => sign(payload),
    };
    let opened = codec.open(&text);
    let Ok(payload) = opened else {
        assert_eq!(opened, Err(CredentialError::Invalid));
        return;
    };
    // What opens was sealed with this key, and seals back to a credential
    // that opens to the same payload; another key opens nothing.
    assert_eq!(codec.open(&codec.seal(&payload)), Ok(payload.clone()));
    assert_eq!(
        CredentialCodec::new(b"another key").open(&text),
        Err(CredentialError::Invalid)
    );
    // Debug output shows neither the sealed text nor the sequence values.
    let shown = format!("{payload:?}");
    assert!(!shown.contains(SEALED_PREFIX));

    let mut config = if input.reservation_capable {
        LockConfig::room(input.property_code, input.lock_id)
    } else {
        LockConfig::common_door(input.property_code, input.lock_id)
    };
    config.look_ahead = input.look_ahead;
    config.invalid_credentials_advance = input.invalid_credentials_advance;
    config.audit_capacity = 4;
    let mut state = LockState {
        guest_sequence: input.guest_sequence,
        clock_skew_seconds: input.clock_skew_seconds,
        deadbolt_engaged: input.deadbolt_engaged,
        guest_cancelled: input.guest_cancelled,
        blocked: input.blocked,
        ..LockState::default()
    };
    // The card as the lock holds the property's payloads: presented twice,
    // so that a first override is followed by the same card again.
    let first = state.present(&config, Presented::Credential(&payload), input.at);
    let second = state.present(&config, Presented::Credential(&payload), input.at);
    assert!(state.audit.len() <= 4);
    if first.granted && !first.overrode && !state.deadbolt_engaged {
        assert!(second.granted, "{first:?} then {second:?}");
    }
});
