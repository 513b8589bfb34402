//! Seam's Svix deliveries: `svix::verify` with arbitrary headers, body,
//! secret and clock, and the event parser behind it. Nothing panics; what
//! keysmith signs itself verifies exactly when it is fresh, and any change
//! to its body, id, timestamp or secret is refused.
#![no_main]

use arbitrary::Arbitrary;
use keysmith_core::Secret;
use keysmith_seam::{
    svix::{self, SvixError},
    webhook::Event,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    secret: String,
    id: Option<String>,
    timestamp: Option<String>,
    signatures: Option<String>,
    body: Vec<u8>,
    now: i64,
    tolerance: u16,
    /// The timestamp keysmith's own signature is made for.
    signed_at: i64,
    tamper_at: usize,
}

fuzz_target!(|input: Input| {
    let secret = Secret::new(input.secret);
    let tolerance = i64::from(input.tolerance);
    // Whatever arrives.
    let _ = svix::verify(
        &secret,
        input.id.as_deref(),
        input.timestamp.as_deref(),
        input.signatures.as_deref(),
        &input.body,
        input.now,
        tolerance,
    );
    let _ = serde_json::from_slice::<Event>(&input.body);

    // A delivery signed with the secret: accepted when fresh, Stale when not.
    let id = input.id.unwrap_or_default();
    let Ok(signature) = svix::sign(&secret, &id, input.signed_at, &input.body) else {
        return;
    };
    let timestamp = input.signed_at.to_string();
    let check = |id: &str, timestamp: &str, body: &[u8], secret: &Secret<String>| {
        svix::verify(
            secret,
            Some(id),
            Some(timestamp),
            Some(&signature),
            body,
            input.now,
            tolerance,
        )
    };
    let fresh =
        (i128::from(input.now) - i128::from(input.signed_at)).abs() <= i128::from(tolerance);
    let expected = if fresh { Ok(()) } else { Err(SvixError::Stale) };
    assert_eq!(check(&id, &timestamp, &input.body, &secret), expected);

    // Tampered: one byte of the body changed, or one more byte.
    let mut body = input.body.clone();
    let at = input.tamper_at % body.len().max(1);
    match body.get_mut(at) {
        Some(b) => *b ^= 1,
        None => body.push(b'x'),
    }
    assert_eq!(
        check(&id, &timestamp, &body, &secret),
        Err(SvixError::Mismatch)
    );
    // Another id, another timestamp.
    assert_eq!(
        check(&format!("{id}x"), &timestamp, &input.body, &secret),
        Err(SvixError::Mismatch)
    );
    if let Some(other) = input.signed_at.checked_add(1) {
        assert_eq!(
            check(&id, &other.to_string(), &input.body, &secret),
            Err(SvixError::Mismatch)
        );
    }
    // Another secret (another key, once base64-decoded).
    let other = Secret::new("whsec_b3RoZXIgc2VjcmV0IGtleQ==".to_owned());
    if svix::sign(&other, &id, input.signed_at, &input.body).as_deref() != Ok(&signature) {
        assert_eq!(
            check(&id, &timestamp, &input.body, &other),
            Err(SvixError::Mismatch)
        );
    }
});
