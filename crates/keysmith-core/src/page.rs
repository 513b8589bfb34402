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
}
