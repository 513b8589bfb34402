//! Opaque page tokens bound to the query that produced them (AIP-158).
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    error::{reasons, Error, Result},
    request::ListKeysRequest,
};

#[derive(Serialize, Deserialize)]
struct Token {
    version: u8,
    query: [u8; 16],
    after: String,
}

const VERSION: u8 = 1;

/// A digest of everything in the query except the page size and token.
fn query_digest(req: &ListKeysRequest) -> [u8; 16] {
    let mut states: Vec<&str> = req.states.iter().map(|s| s.as_str()).collect();
    states.sort_unstable();
    states.dedup();
    let canonical = (
        &req.property_id,
        &req.reservation_key,
        &req.entrance_id,
        &req.holder_id,
        states,
        req.include_revoked,
        &req.caller,
    );
    let bytes = postcard::to_stdvec(&canonical).unwrap_or_default();
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The token of the page that continues after key id `after`, bound to
/// `req`'s filters and caller (not to its page size, which may change from
/// page to page). Opaque to callers: URL-safe base64.
pub fn encode(req: &ListKeysRequest, after: &str) -> String {
    let token = Token {
        version: VERSION,
        query: query_digest(req),
        after: after.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(postcard::to_stdvec(&token).unwrap_or_default())
}

/// The key id to continue after, if the request carries a token.
///
/// InvalidArgument `INVALID_PAGE_TOKEN` for a token that is not this
/// service's, comes from another version of it, or belongs to another query
/// or caller (the filters of the first page must be kept).
pub fn decode(req: &ListKeysRequest) -> Result<Option<String>> {
    if req.page_token.is_empty() {
        return Ok(None);
    }
    let invalid =
        |why: &str| Error::invalid_field(reasons::INVALID_PAGE_TOKEN, "page_token", why.to_owned());
    let bytes = URL_SAFE_NO_PAD
        .decode(&req.page_token)
        .map_err(|_| invalid("is not a page token of this service"))?;
    let token: Token =
        postcard::from_bytes(&bytes).map_err(|_| invalid("is not a page token of this service"))?;
    if token.version != VERSION {
        return Err(invalid("comes from another version of this service"));
    }
    if token.query != query_digest(req) {
        return Err(invalid(
            "belongs to another query: keep the filters of the first page",
        ));
    }
    Ok(Some(token.after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> ListKeysRequest {
        ListKeysRequest {
            property_id: "hotel".into(),
            reservation_key: Some("stay-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_round_trips_for_the_same_query_whatever_the_page_size() {
        let mut q = query();
        q.page_token = encode(&q, "01ABC");
        q.page_size = 7;
        assert_eq!(decode(&q).unwrap().as_deref(), Some("01ABC"));
    }

    #[test]
    fn a_token_from_another_query_is_refused() {
        let mut q = query();
        let token = encode(&q, "01ABC");
        q.reservation_key = Some("stay-2".into());
        q.page_token = token;
        assert_eq!(
            decode(&q).unwrap_err().reason(),
            reasons::INVALID_PAGE_TOKEN
        );
    }

    #[test]
    fn a_token_from_another_caller_is_refused() {
        let mut q = query();
        q.caller = "front-desk".into();
        let token = encode(&q, "01ABC");
        q.caller = "housekeeping".into();
        q.page_token = token;
        assert_eq!(
            decode(&q).unwrap_err().reason(),
            reasons::INVALID_PAGE_TOKEN
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        for junk in ["", "!!!", "AAAA", "////", &"A".repeat(900)] {
            let mut q = query();
            q.page_token = junk.to_owned();
            if !junk.is_empty() {
                assert!(decode(&q).is_err(), "{junk}");
            }
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::key::KeyState;

        fn states() -> impl Strategy<Value = Vec<KeyState>> {
            prop::collection::vec(
                prop::sample::select(vec![
                    KeyState::Issuing,
                    KeyState::Active,
                    KeyState::EncodingRequired,
                    KeyState::Revoked,
                    KeyState::Expired,
                    KeyState::Revoking,
                    KeyState::Failed,
                ]),
                0..4,
            )
        }

        prop_compose! {
            fn query()(
                property_id in ".{0,12}",
                reservation_key in proptest::option::of(".{0,12}"),
                entrance_id in proptest::option::of(".{0,12}"),
                holder_id in proptest::option::of(".{0,12}"),
                states in states(),
                include_revoked in any::<bool>(),
                caller in ".{0,12}",
                page_size in any::<i32>(),
            ) -> ListKeysRequest {
                ListKeysRequest {
                    property_id,
                    page_size,
                    page_token: String::new(),
                    reservation_key,
                    entrance_id,
                    holder_id,
                    states,
                    include_revoked,
                    caller,
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// encode then decode gives the key id back, whatever the page
            /// size and the order of the states asked for.
            #[test]
            fn a_token_round_trips(mut q in query(), after in ".{0,40}", size in any::<i32>()) {
                q.page_token = encode(&q, &after);
                q.page_size = size;
                q.states.reverse();
                prop_assert_eq!(decode(&q).unwrap(), Some(after));
            }

            /// A token made for one caller or filter is refused for any other.
            #[test]
            fn a_token_is_bound_to_its_query(q in query(), other in query(), after in ".{0,40}") {
                let mut other = other;
                other.page_token = encode(&q, &after);
                let same = {
                    let mut a = q.states.iter().map(|s| s.as_str()).collect::<Vec<_>>();
                    let mut b = other.states.iter().map(|s| s.as_str()).collect::<Vec<_>>();
                    a.sort_unstable();
                    a.dedup();
                    b.sort_unstable();
                    b.dedup();
                    (&q.property_id, &q.reservation_key, &q.entrance_id, &q.holder_id, a, q.include_revoked, &q.caller)
                        == (&other.property_id, &other.reservation_key, &other.entrance_id, &other.holder_id, b, other.include_revoked, &other.caller)
                };
                let decoded = decode(&other);
                if same {
                    prop_assert_eq!(decoded.unwrap(), Some(after));
                } else {
                    prop_assert_eq!(decoded.unwrap_err().reason(), reasons::INVALID_PAGE_TOKEN);
                }
            }

            /// Whatever a caller sends as a token, text or well-formed
            /// base64 of any bytes: a typed refusal, never a panic.
            #[test]
            fn any_other_token_is_refused(
                mut q in query(),
                text in ".{1,64}",
                bytes in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                for token in [text, URL_SAFE_NO_PAD.encode(&bytes)] {
                    if token.is_empty() {
                        continue;
                    }
                    q.page_token = token;
                    let err = decode(&q).unwrap_err();
                    prop_assert_eq!(err.reason(), reasons::INVALID_PAGE_TOKEN);
                    prop_assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
                }
            }
        }
    }
}
