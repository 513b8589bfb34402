//! Seam delivers events through Svix: `svix-id`, `svix-timestamp` and
//! `svix-signature` (space-separated `v1,<base64>` entries), HMAC-SHA256 of
//! `"{id}.{timestamp}.{raw body}"` keyed with the base64-decoded part of the
//! `whsec_...` secret.
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use keysmith_core::Secret;
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvixError {
    Missing,
    BadSecret,
    Stale,
    Mismatch,
}

impl std::fmt::Display for SvixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing or malformed svix headers",
            Self::BadSecret => "the webhook secret is not a whsec_ base64 secret",
            Self::Stale => "the timestamp is outside the tolerance",
            Self::Mismatch => "no signature matches",
        })
    }
}

/// The fewest bytes a signing key may have: the keys Svix makes are 24
/// random bytes (as is the key of Svix's published reference vector,
/// `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`).
pub const MIN_KEY_BYTES: usize = 24;

/// Why a configured `webhook_secret` cannot sign anything, or `None`. The
/// answer never contains the secret or anything decoded from it.
pub fn secret_weakness(secret: &Secret<String>) -> Option<String> {
    let Some(encoded) = secret.expose().strip_prefix("whsec_") else {
        return Some("is not a Svix secret (whsec_ followed by the base64 key)".into());
    };
    match STANDARD.decode(encoded) {
        Ok(key) => keysmith_core::secret::key_weakness(&key, MIN_KEY_BYTES)
            .map(|why| format!("has a key that {why}")),
        Err(_) => Some("is not a Svix secret: the part after whsec_ is not base64".into()),
    }
}

/// The key of a secret strong enough to sign with; a weak one (an empty
/// key above all: an HMAC anybody can compute) verifies nothing.
fn key(secret: &Secret<String>) -> Result<Vec<u8>, SvixError> {
    if secret_weakness(secret).is_some() {
        return Err(SvixError::BadSecret);
    }
    let encoded = secret.expose().strip_prefix("whsec_").unwrap_or_default();
    STANDARD.decode(encoded).map_err(|_| SvixError::BadSecret)
}

/// The `v1,<base64>` signature of a delivery, for tests and fakes.
pub fn sign(
    secret: &Secret<String>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SvixError> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key(secret)?).map_err(|_| SvixError::BadSecret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

pub fn verify(
    secret: &Secret<String>,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_seconds: i64,
) -> Result<(), SvixError> {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return Err(SvixError::Missing);
    };
    let t: i64 = timestamp.trim().parse().map_err(|_| SvixError::Missing)?;
    let key = key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SvixError::BadSecret)?;
    mac.update(format!("{id}.{t}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matched = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|sig| subtle::ConstantTimeEq::ct_eq(sig.as_slice(), expected.as_slice()).into());
    if !matched {
        return Err(SvixError::Mismatch);
    }
    // Checked after the signature, so that a stale answer means a genuine
    // but late delivery.
    // In i128: `t` is the caller's, and `now - i64::MIN` overflows i64.
    let age = i128::from(now_unix) - i128::from(t);
    if age.unsigned_abs() > u128::from(tolerance_seconds.unsigned_abs()) {
        return Err(SvixError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret<String> {
        Secret::new(format!(
            "whsec_{}",
            STANDARD.encode(b"a very secret signing key")
        ))
    }

    /// Svix's published reference vector (the `svix` package's own
    /// webhook tests and its "verifying manually" documentation).
    #[test]
    fn svixs_reference_vector() {
        let s = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            sign(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap(),
            expected
        );
        assert_eq!(
            verify(
                &s,
                Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
                Some("1614265330"),
                Some(expected),
                body,
                1_614_265_330,
                300
            ),
            Ok(())
        );
    }

    /// An HMAC under an empty key is one anybody can compute: neither an
    /// empty secret, nor `whsec_`, nor a short or repetitive key signs or
    /// verifies anything.
    #[test]
    fn a_delivery_signed_with_an_empty_or_weak_key_is_refused() {
        let body = br#"{"event_id":"e1"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"").unwrap();
        mac.update(b"msg_1.1900000000.");
        mac.update(body);
        let forged = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        for weak in [
            String::new(),
            "whsec_".to_owned(),
            format!("whsec_{}", STANDARD.encode(b"short")),
            format!("whsec_{}", STANDARD.encode([7u8; 32])),
            STANDARD.encode(b"a very secret signing key"),
        ] {
            let s = Secret::new(weak.clone());
            assert!(secret_weakness(&s).is_some(), "{weak:?}");
            assert_eq!(
                verify(
                    &s,
                    Some("msg_1"),
                    Some("1900000000"),
                    Some(&forged),
                    body,
                    1_900_000_000,
                    300
                ),
                Err(SvixError::BadSecret),
                "{weak:?}"
            );
            assert!(sign(&s, "msg_1", 1_900_000_000, body).is_err());
        }
        assert!(secret_weakness(&secret()).is_none());
    }

    /// The timestamp is the caller's: the most distant ones are stale, not
    /// an overflow.
    #[test]
    fn an_extreme_timestamp_is_stale() {
        let s = secret();
        let body = b"{}";
        for t in [i64::MIN, i64::MAX] {
            let sig = sign(&s, "msg_1", t, body).unwrap();
            assert_eq!(
                verify(
                    &s,
                    Some("msg_1"),
                    Some(&t.to_string()),
                    Some(&sig),
                    body,
                    1_900_000_000,
                    300
                ),
                Err(SvixError::Stale)
            );
        }
    }

    #[test]
    fn a_signed_delivery_verifies_and_a_tampered_one_does_not() {
        let s = secret();
        let body = br#"{"event_id":"e1","event_type":"access_method.issued"}"#;
        let sig = sign(&s, "msg_1", 1_900_000_000, body).unwrap();
        let ok = verify(
            &s,
            Some("msg_1"),
            Some("1900000000"),
            Some(&sig),
            body,
            1_900_000_010,
            300,
        );
        assert_eq!(ok, Ok(()));
        let several = format!("v1,AAAA {sig}");
        assert_eq!(
            verify(
                &s,
                Some("msg_1"),
                Some("1900000000"),
                Some(&several),
                body,
                1_900_000_010,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &s,
                Some("msg_1"),
                Some("1900000000"),
                Some(&sig),
                b"{}",
                1_900_000_010,
                300
            ),
            Err(SvixError::Mismatch)
        );
        assert_eq!(
            verify(
                &s,
                Some("msg_2"),
                Some("1900000000"),
                Some(&sig),
                body,
                1_900_000_010,
                300
            ),
            Err(SvixError::Mismatch)
        );
        assert_eq!(
            verify(
                &s,
                Some("msg_1"),
                Some("1900000000"),
                Some(&sig),
                body,
                1_900_001_000,
                300
            ),
            Err(SvixError::Stale)
        );
        assert_eq!(
            verify(
                &s,
                None,
                Some("1900000000"),
                Some(&sig),
                body,
                1_900_000_010,
                300
            ),
            Err(SvixError::Missing)
        );
    }

    /// Found by the property below: a genuine signature over a timestamp
    /// 2^63 seconds before now overflowed the freshness check (a panic in
    /// debug builds; accepted as fresh in release).
    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale_not_an_overflow() {
        let s = secret();
        let body = b"{}";
        let now = 1_900_000_000;
        for t in [i64::MIN, now - (1 << 62) - (1 << 62), i64::MAX] {
            let sig = sign(&s, "msg_1", t, body).unwrap();
            assert_eq!(
                verify(
                    &s,
                    Some("msg_1"),
                    Some(&t.to_string()),
                    Some(&sig),
                    body,
                    now,
                    300
                ),
                Err(SvixError::Stale),
                "t = {t}"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn secret_of(key: &[u8]) -> Secret<String> {
            Secret::new(format!("whsec_{}", STANDARD.encode(key)))
        }

        /// Keys as strong as a configured secret must be (a weak one signs
        /// and verifies nothing: `secret_weakness`).
        fn strong_key() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(any::<u8>(), MIN_KEY_BYTES..48)
                .prop_filter("a key strong enough to sign with", |key| {
                    keysmith_core::secret::key_weakness(key, MIN_KEY_BYTES).is_none()
                })
        }

        /// Instants as a sender may stamp them, the extremes included.
        fn instant() -> impl Strategy<Value = i64> {
            prop_oneof![
                1_700_000_000i64..1_800_000_000,
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// What is signed verifies when fresh and is Stale otherwise,
            /// whatever the two clocks say (no overflow on the way).
            #[test]
            fn a_signed_delivery_verifies_exactly_when_fresh(
                key in strong_key(),
                id in "[a-zA-Z0-9_]{0,24}",
                body in prop::collection::vec(any::<u8>(), 0..200),
                signed_at in instant(),
                now in instant(),
            ) {
                let s = secret_of(&key);
                let sig = sign(&s, &id, signed_at, &body).unwrap();
                let fresh = (i128::from(now) - i128::from(signed_at)).abs() <= 300;
                let expected = if fresh { Ok(()) } else { Err(SvixError::Stale) };
                prop_assert_eq!(
                    verify(&s, Some(&id), Some(&signed_at.to_string()), Some(&sig), &body, now, 300),
                    expected
                );
            }

            /// A changed body, id, timestamp or secret is refused.
            #[test]
            fn a_tampered_delivery_is_refused(
                key in strong_key(),
                other_key in strong_key(),
                id in "[a-zA-Z0-9_]{0,24}",
                body in prop::collection::vec(any::<u8>(), 1..200),
                at in any::<prop::sample::Index>(),
                t in 1_700_000_000i64..1_800_000_000,
            ) {
                let s = secret_of(&key);
                let sig = sign(&s, &id, t, &body).unwrap();
                let ts = t.to_string();
                let check = |secret: &Secret<String>, id: &str, ts: &str, body: &[u8]| {
                    verify(secret, Some(id), Some(ts), Some(&sig), body, t, 300)
                };
                let mut tampered = body.clone();
                tampered[at.index(body.len())] ^= 0x20;
                prop_assert_eq!(check(&s, &id, &ts, &tampered), Err(SvixError::Mismatch));
                prop_assert_eq!(check(&s, &format!("{id}x"), &ts, &body), Err(SvixError::Mismatch));
                prop_assert_eq!(check(&s, &id, &(t + 1).to_string(), &body), Err(SvixError::Mismatch));
                // HMAC pads keys with zeros: a key and itself plus zeros are one key.
                let same = other_key.iter().rposition(|b| *b != 0).map(|n| &other_key[..=n])
                    == key.iter().rposition(|b| *b != 0).map(|n| &key[..=n]);
                if !same {
                    prop_assert_eq!(check(&secret_of(&other_key), &id, &ts, &body), Err(SvixError::Mismatch));
                }
            }

            /// Whatever arrives in the headers: a typed answer, never a panic.
            #[test]
            fn any_headers_are_answered(
                secret in ".{0,30}",
                id in proptest::option::of(".{0,20}"),
                ts in proptest::option::of(prop_oneof![".{0,20}", any::<i64>().prop_map(|t| t.to_string())]),
                sigs in proptest::option::of(".{0,120}"),
                body in prop::collection::vec(any::<u8>(), 0..64),
                now in instant(),
            ) {
                let result = verify(
                    &Secret::new(secret),
                    id.as_deref(),
                    ts.as_deref(),
                    sigs.as_deref(),
                    &body,
                    now,
                    300,
                );
                prop_assert!(result.is_err() || sigs.is_some());
            }
        }
    }
}
