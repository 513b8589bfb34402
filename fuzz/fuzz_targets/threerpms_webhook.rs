//! 3RPMS deliveries: the `3rpms-signature` header checked against the
//! endpoint's secrets (`webhook::verify`), and the event parser behind it
//! (`WebhookEvent::parse`). Nothing panics, parse errors are
//! INVALID_ARGUMENT; what is signed with a secret verifies exactly when it
//! is fresh, and any change to its body, timestamp or secret is refused.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use keysmith_core::{ErrorKind, Secret};
use keysmith_threerpms::webhook::{
    event::MAX_EVENT_ID_LEN, sign, verify, SignatureError, WebhookEvent,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    header: String,
    body: Vec<u8>,
    secrets: Vec<String>,
    now: i64,
    tolerance: u16,
    signed_at: i64,
    tamper_at: usize,
}

fuzz_target!(|input: Input| {
    let secrets: Vec<Secret<String>> = input.secrets.iter().cloned().map(Secret::new).collect();
    let tolerance = Duration::from_secs(input.tolerance.into());
    let _ = verify(&input.header, &input.body, &secrets, input.now, tolerance);
    match WebhookEvent::parse(&input.body) {
        Ok(event) => assert!(!event.id.is_empty() && event.id.len() <= MAX_EVENT_ID_LEN),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument),
    }

    // A delivery signed with the endpoint's last secret.
    let Some(secret) = input.secrets.last().filter(|s| !s.is_empty()) else {
        return;
    };
    let header = |t: i64, signature: &str| format!("t={t},signature={signature}");
    let signature = sign(secret, input.signed_at, &input.body);
    let check = |header: &str, body: &[u8], secrets: &[Secret<String>]| {
        verify(header, body, secrets, input.now, tolerance)
    };
    let fresh =
        (i128::from(input.now) - i128::from(input.signed_at)).abs() <= i128::from(input.tolerance);
    let expected = if fresh {
        Ok(())
    } else {
        Err(SignatureError::Stale)
    };
    let signed = header(input.signed_at, &signature);
    assert_eq!(check(&signed, &input.body, &secrets), expected);

    let mut body = input.body.clone();
    let at = input.tamper_at % body.len().max(1);
    match body.get_mut(at) {
        Some(b) => *b ^= 1,
        None => body.push(b'x'),
    }
    assert_eq!(
        check(&signed, &body, &secrets),
        Err(SignatureError::Mismatch)
    );
    if let Some(other) = input.signed_at.checked_add(1) {
        assert_eq!(
            check(&header(other, &signature), &input.body, &secrets),
            Err(SignatureError::Mismatch)
        );
    }
    let others: Vec<Secret<String>> = input
        .secrets
        .iter()
        .map(|s| format!("{s}x"))
        // HMAC pads its key with zeros: "k" and "k\0" are one key.
        .filter(|s| sign(s, input.signed_at, &input.body) != signature)
        .map(Secret::new)
        .collect();
    assert_eq!(
        check(&signed, &input.body, &others),
        Err(SignatureError::Mismatch)
    );
});
