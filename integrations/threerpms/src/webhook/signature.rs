//! The `3rpms-signature` header: `t=<unix>,signature=<hex>[,signature=<hex>...]`,
//! each signature an HMAC-SHA256 of `<t>.<raw body>` under an endpoint secret.
//!
//! The MAC is computed once per secret and then compared with every
//! signature of the header, so a header stuffed with signatures costs a
//! 32-byte comparison each, not a pass over the body each.
use std::time::Duration;

use hmac::{Hmac, Mac};
use keysmith_core::Secret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The name of the header 3RPMS signs its deliveries with.
pub const SIGNATURE_HEADER: &str = "3rpms-signature";

/// How far a delivery's timestamp may be from the local clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

const MAC_LEN: usize = 32;

/// Why a delivery was refused. The variants carry nothing from the request,
/// so neither the signature nor anything derived from a secret can reach a
/// log through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    /// No timestamp, a timestamp that is not an integer, or no signature in
    /// the form 3RPMS uses.
    #[error("the signature header is malformed")]
    Malformed,
    /// Authentic, but signed too long ago or too far ahead: a replay, or a
    /// clock that is off.
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches a secret of the endpoint")]
    Mismatch,
}

/// Checks a delivery against every secret the endpoint may have signed with.
///
/// Accepts when any signature of the header matches any secret, so that a
/// delivery signed before a secret rotation still verifies. The timestamp is
/// checked only after the signature, so `Stale` always means "authentic but
/// late" (look at the clocks) and `Mismatch` "not signed by a secret we
/// know" (a forgery or a wrong secret).
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[Secret<String>],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    let parsed = parse(header)?;

    let mut matched = false;
    for secret in secrets {
        let Some(expected) = mac(secret.expose(), parsed.t_text, body) else {
            continue;
        };
        for candidate in &parsed.signatures {
            // `|=` rather than an early exit: which signature matched, and
            // how soon, stays out of the timing.
            matched |= bool::from(expected.ct_eq(candidate));
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }

    let age = i128::from(now_unix) - i128::from(parsed.t);
    if age.abs() > i128::from(tolerance.as_secs()) {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The lowercase hex signature 3RPMS would send for `body` at time `t`;
/// empty for an empty or weak secret, which [`verify`] never accepts.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    mac(secret, &t.to_string(), body)
        .map(hex::encode)
        .unwrap_or_default()
}

/// The fewest bytes an endpoint secret may have. 3RPMS documents no
/// length; 16 bytes is the least that can hold 128 bits (the secrets of the
/// fake, and of every webhook signer keysmith knows, are longer).
pub const MIN_SECRET_BYTES: usize = 16;

/// Why an endpoint secret cannot verify anything, or `None`
/// ([`keysmith_core::secret::key_weakness`]): never the secret itself.
pub fn secret_weakness(secret: &str) -> Option<String> {
    keysmith_core::secret::key_weakness(secret.as_bytes(), MIN_SECRET_BYTES)
}

/// The MAC of `<t>.<body>`, or None for an empty or weak secret: an HMAC
/// under an empty key is one anybody can compute, and one under a short
/// key one anybody can guess, so such a secret verifies nothing.
fn mac(secret: &str, t_text: &str, body: &[u8]) -> Option<[u8; MAC_LEN]> {
    if secret_weakness(secret).is_some() {
        return None;
    }
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(t_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().into())
}

struct Parsed<'a> {
    t: i64,
    /// The timestamp exactly as sent: the signed payload starts with these
    /// bytes, which a re-formatted integer would not reproduce for, say, a
    /// leading zero.
    t_text: &'a str,
    signatures: Vec<[u8; MAC_LEN]>,
}

fn parse(header: &str) -> Result<Parsed<'_>, SignatureError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for item in header.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let (key, value) = item.split_once('=').ok_or(SignatureError::Malformed)?;
        let value = value.trim();
        match key.trim() {
            "t" => {
                // Two timestamps leave it open which one was signed.
                if t.is_some() {
                    return Err(SignatureError::Malformed);
                }
                let parsed = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed)?;
                t = Some((parsed, value));
            }
            "signature" => {
                // A value of another length or alphabet cannot be an
                // HMAC-SHA256; skipping it keeps the others usable.
                let mut raw = [0u8; MAC_LEN];
                if hex::decode_to_slice(value, &mut raw).is_ok() {
                    signatures.push(raw);
                }
            }
            // Room for schemes 3RPMS may add beside `signature`.
            _ => {}
        }
    }
    let (t, t_text) = t.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    Ok(Parsed {
        t,
        t_text,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"room_stay.updated"}"#;

    fn secrets(values: &[&str]) -> Vec<Secret<String>> {
        values.iter().map(|s| Secret::new(s.to_string())).collect()
    }

    fn check(header: &str, body: &[u8], keys: &[&str]) -> Result<(), SignatureError> {
        verify(header, body, &secrets(keys), NOW, DEFAULT_TOLERANCE)
    }

    #[test]
    fn a_correct_signature_verifies() {
        let header = format!(
            "t={NOW},signature={}",
            sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY)
        );
        assert_eq!(check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]), Ok(()));
    }

    /// An HMAC under an empty or short key is one anybody can compute or
    /// guess: a delivery signed with one never verifies, even against the
    /// same weak secret.
    #[test]
    fn an_empty_or_weak_secret_verifies_nothing() {
        for weak in ["", "key", "whsec_short", "aaaaaaaaaaaaaaaaaaaaaaaa"] {
            assert!(secret_weakness(weak).is_some(), "{weak:?}");
            let mut mac = HmacSha256::new_from_slice(weak.as_bytes()).unwrap();
            mac.update(format!("{NOW}.").as_bytes());
            mac.update(BODY);
            let header = format!(
                "t={NOW},signature={}",
                hex::encode(mac.finalize().into_bytes())
            );
            assert_eq!(
                check(&header, BODY, &[weak]),
                Err(SignatureError::Mismatch),
                "{weak:?}"
            );
        }
    }

    #[test]
    fn sign_is_lowercase_hex_of_the_timestamped_body() {
        // An independent check: HMAC-SHA256(key, "1.x").
        const KEY: &str = "a-key-of-sixteen-bytes-or-more";
        let mut mac = HmacSha256::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(b"1.x");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sign(KEY, 1, b"x"), expected);
        // A weak secret signs nothing, so it can verify nothing.
        assert_eq!(sign("key", 1, b"x"), "");
        assert_eq!(expected.len(), 64);
        assert!(expected
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let good = sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY);
        let other = sign("whsec_other_5f9c2e7d1b3a8640", NOW, BODY);
        let header = format!("t={NOW},signature={other},signature={good}");
        assert_eq!(check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]), Ok(()));
        let header = format!("t={NOW}, signature={good} , signature={other}");
        assert_eq!(check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]), Ok(()));
    }

    #[test]
    fn an_old_secret_still_verifies_during_a_rotation() {
        let header = format!(
            "t={NOW},signature={}",
            sign("whsec_old_5f9c2e7d1b3a8640", NOW, BODY)
        );
        assert_eq!(
            check(
                &header,
                BODY,
                &["whsec_new_5f9c2e7d1b3a8640", "whsec_old_5f9c2e7d1b3a8640"]
            ),
            Ok(())
        );
        assert_eq!(
            check(&header, BODY, &["whsec_new_5f9c2e7d1b3a8640"]),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let header = format!(
            "t={NOW},signature={}",
            sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY)
        );
        let mut tampered = BODY.to_vec();
        tampered[8] ^= 1;
        assert_eq!(
            check(&header, &tampered, &["whsec_a_5f9c2e7d1b3a8640"]),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_timestamp_is_part_of_what_is_signed() {
        let sig = sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY);
        let header = format!("t={},signature={sig}", NOW + 1);
        assert_eq!(
            check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_timestamp_is_signed_as_sent() {
        let mut mac = HmacSha256::new_from_slice(b"whsec_a_5f9c2e7d1b3a8640").unwrap();
        mac.update(format!("0{NOW}.").as_bytes());
        mac.update(BODY);
        let sig = hex::encode(mac.finalize().into_bytes());
        let header = format!("t=0{NOW},signature={sig}");
        assert_eq!(check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]), Ok(()));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let tolerance = DEFAULT_TOLERANCE.as_secs() as i64;
        for t in [NOW - tolerance - 1, NOW + tolerance + 1, NOW - 86_400] {
            let header = format!(
                "t={t},signature={}",
                sign("whsec_a_5f9c2e7d1b3a8640", t, BODY)
            );
            assert_eq!(
                check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
                Err(SignatureError::Stale),
                "t = {t}"
            );
        }
        for t in [NOW - tolerance, NOW + tolerance] {
            let header = format!(
                "t={t},signature={}",
                sign("whsec_a_5f9c2e7d1b3a8640", t, BODY)
            );
            assert_eq!(
                check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
                Ok(()),
                "t = {t}"
            );
        }
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        for t in [i64::MIN, i64::MAX] {
            let header = format!(
                "t={t},signature={}",
                sign("whsec_a_5f9c2e7d1b3a8640", t, BODY)
            );
            assert_eq!(
                check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
                Err(SignatureError::Stale)
            );
        }
    }

    #[test]
    fn a_missing_header_is_refused() {
        assert_eq!(
            check("", BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check("   ", BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let sig = sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY);
        for header in [
            format!("signature={sig}"),
            format!("t={NOW}"),
            format!("t=soon,signature={sig}"),
            format!("t={NOW},t={NOW},signature={sig}"),
            format!("t={NOW},signature=not-hex"),
            format!("t={NOW},signature={}", &sig[..62]),
            format!("t={NOW},{sig}"),
            "garbage".to_string(),
            "t=,signature=".to_string(),
        ] {
            assert_eq!(
                check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn unknown_schemes_and_unusable_entries_are_skipped() {
        let sig = sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY);
        let header = format!("t={NOW},v0=abc,signature=zz,signature={sig},");
        assert_eq!(check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]), Ok(()));
    }

    #[test]
    fn uppercase_hex_is_the_same_signature() {
        let sig = sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY).to_uppercase();
        let header = format!("t={NOW},signature={sig}");
        assert_eq!(check(&header, BODY, &["whsec_a_5f9c2e7d1b3a8640"]), Ok(()));
    }

    #[test]
    fn without_secrets_nothing_verifies() {
        let header = format!(
            "t={NOW},signature={}",
            sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY)
        );
        assert_eq!(check(&header, BODY, &[]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        // Anyone can compute an HMAC under the empty key.
        let mut mac = HmacSha256::new_from_slice(b"").unwrap();
        mac.update(format!("{NOW}.").as_bytes());
        mac.update(BODY);
        let sig = hex::encode(mac.finalize().into_bytes());
        let header = format!("t={NOW},signature={sig}");
        assert_eq!(check(&header, BODY, &[""]), Err(SignatureError::Mismatch));
        assert_eq!(sign("", NOW, BODY), "");
    }

    #[test]
    fn errors_show_nothing_of_the_request() {
        let sig = sign("whsec_a_5f9c2e7d1b3a8640", NOW, BODY);
        let header = format!("t={NOW},signature={sig}");
        let err = check(&header, b"other", &["whsec_a_5f9c2e7d1b3a8640"]).unwrap_err();
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(&sig));
            assert!(!shown.contains("whsec_a_5f9c2e7d1b3a8640"));
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Secrets as strong as an endpoint's must be (a weak one verifies
        /// nothing: `MIN_SECRET_BYTES`).
        fn strong_secret() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9_]{16,40}".prop_filter("a secret strong enough to sign with", |secret| {
                keysmith_core::secret::key_weakness(secret.as_bytes(), MIN_SECRET_BYTES).is_none()
            })
        }

        fn instant() -> impl Strategy<Value = i64> {
            prop_oneof![
                NOW - 1_000..NOW + 1_000,
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// What a secret of the endpoint signed verifies when fresh and
            /// is Stale otherwise, whatever the clocks say.
            #[test]
            fn a_signed_delivery_verifies_exactly_when_fresh(
                secret in strong_secret(),
                body in prop::collection::vec(any::<u8>(), 0..200),
                t in instant(),
                now in instant(),
            ) {
                let header = format!("t={t},signature={}", sign(&secret, t, &body));
                let fresh = (i128::from(now) - i128::from(t)).abs() <= 300;
                let expected = if fresh { Ok(()) } else { Err(SignatureError::Stale) };
                prop_assert_eq!(
                    verify(&header, &body, &secrets(&[&secret]), now, DEFAULT_TOLERANCE),
                    expected
                );
            }

            /// A changed body, timestamp or secret is refused.
            #[test]
            fn a_tampered_delivery_is_refused(
                secret in strong_secret(),
                other in strong_secret(),
                body in prop::collection::vec(any::<u8>(), 1..200),
                at in any::<prop::sample::Index>(),
            ) {
                let header = format!("t={NOW},signature={}", sign(&secret, NOW, &body));
                let mut tampered = body.clone();
                tampered[at.index(body.len())] ^= 0x20;
                prop_assert_eq!(check(&header, &tampered, &[&secret]), Err(SignatureError::Mismatch));
                let moved = format!("t={},signature={}", NOW + 1, sign(&secret, NOW, &body));
                prop_assert_eq!(check(&moved, &body, &[&secret]), Err(SignatureError::Mismatch));
                if other != secret {
                    prop_assert_eq!(check(&header, &body, &[&other]), Err(SignatureError::Mismatch));
                }
            }

            /// Any header and body: a typed answer, never a panic, and no
            /// acceptance without a secret.
            #[test]
            fn any_header_is_answered(
                header in prop_oneof![
                    ".{0,120}",
                    (any::<i64>(), "[0-9a-fA-F]{0,70}").prop_map(|(t, s)| format!("t={t},signature={s}")),
                ],
                body in prop::collection::vec(any::<u8>(), 0..64),
                now in instant(),
            ) {
                let _ = check(&header, &body, &["whsec_a"]);
                prop_assert!(verify(&header, &body, &[], now, DEFAULT_TOLERANCE).is_err());
                prop_assert!(check(&header, &body, &[""]).is_err());
            }
        }
    }
}
