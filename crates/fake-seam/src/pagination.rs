//! Seam's cursor pagination: request `limit` and `page_cursor`, answer
//! `pagination: {has_next_page, next_page_cursor, next_page_url}`.
//!
//! Lists are in creation order, which is id order (ids are sequential), so
//! a cursor is "the last id of the previous page" and survives inserts and
//! deletions in between. Like Seam's own fake, a cursor is bound to its
//! query (route and filters, not the limit): reusing it with other filters
//! is invalid input rather than a silently wrong page. Cursors are opaque
//! (base64url JSON); clients must not build or parse them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::validate::{Obj, Str, Validator};

/// `limit` when none is given: 500 on most lists.
pub const DEFAULT_LIMIT: u64 = 500;
/// `limit` when none is given on `/acs/entrances/list`.
pub const ENTRANCES_DEFAULT_LIMIT: u64 = 900;

/// Which page a list request asks for.
pub(crate) struct PageRequest {
    pub limit: usize,
    after: Option<String>,
    fingerprint: String,
}

/// One page of items and, if more follow, the cursor of the next page.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Reads `limit` and `page_cursor`; issues go to `v`.
pub(crate) fn read(obj: &Obj, v: &mut Validator, route: &str, default_limit: u64) -> PageRequest {
    let limit = obj.positive_int(v, "limit").unwrap_or(default_limit);
    let fingerprint = fingerprint(route, obj.map());
    let after = obj
        .string(v, "page_cursor", Str::NULLABLE)
        .value()
        .and_then(|cursor| match decode(&cursor) {
            Some((after, q)) if q == fingerprint => Some(after),
            Some(_) => {
                v.issue(
                    obj.path_of("page_cursor"),
                    "Page cursor does not belong to this query",
                );
                None
            }
            None => {
                v.issue(obj.path_of("page_cursor"), "Invalid page cursor");
                None
            }
        });
    PageRequest {
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        after,
        fingerprint,
    }
}

impl PageRequest {
    /// Takes the requested page from `items`, which must be in id order.
    pub fn page<'k, T>(&self, items: impl IntoIterator<Item = (&'k str, T)>) -> Page<T> {
        let mut rest = items
            .into_iter()
            .filter(|(id, _)| self.after.as_deref().is_none_or(|after| *id > after));
        let mut page = Vec::new();
        let mut last_id = None;
        for (id, item) in rest.by_ref().take(self.limit) {
            page.push(item);
            last_id = Some(id);
        }
        let next_cursor = match (rest.next(), last_id) {
            (Some(_), Some(last)) => Some(encode(last, &self.fingerprint)),
            _ => None,
        };
        Page {
            items: page,
            next_cursor,
        }
    }
}

/// The `pagination` member of a list answer.
pub(crate) fn json(next_cursor: Option<&str>, base_url: &str, route: &str) -> Value {
    json!({
        "has_next_page": next_cursor.is_some(),
        "next_page_cursor": next_cursor,
        // Informational, as in Seam: the next page is fetched by POSTing the
        // same body with `page_cursor`.
        "next_page_url": next_cursor.map(|c| format!("{base_url}{route}?page_cursor={c}")),
    })
}

fn encode(after: &str, fingerprint: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({ "after": after, "q": fingerprint }).to_string())
}

fn decode(cursor: &str) -> Option<(String, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        v.get("after")?.as_str()?.to_string(),
        v.get("q")?.as_str()?.to_string(),
    ))
}

/// A hash of the route and the filters (every member but `limit` and
/// `page_cursor`), independent of member order.
fn fingerprint(route: &str, body: &Map<String, Value>) -> String {
    let filters: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| *k != "limit" && *k != "page_cursor")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(canonical(&Value::Object(filters)).as_bytes());
    hex::encode(&hasher.finalize()[..12])
}

/// JSON with object members sorted, whatever map type serde_json uses.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<PageRequest, Validator> {
        let map = body.as_object().unwrap().clone();
        let mut v = Validator::new();
        let req = read(&Obj::root(&map), &mut v, "/things/list", 2);
        if v.is_clean() {
            Ok(req)
        } else {
            Err(v)
        }
    }

    #[test]
    fn pages_follow_cursors_to_the_end() {
        let ids = ["a", "b", "c", "d", "e"];
        let items = || ids.iter().map(|id| (*id, *id));
        let first = request(json!({"x": 1})).ok().unwrap().page(items());
        assert_eq!(first.items, ["a", "b"]);
        let cursor = first.next_cursor.unwrap();
        let second = request(json!({"page_cursor": cursor, "x": 1, "limit": 3}))
            .ok()
            .unwrap()
            .page(items());
        assert_eq!(second.items, ["c", "d", "e"]);
        assert!(second.next_cursor.is_none());
    }

    #[test]
    fn a_cursor_is_bound_to_its_query_and_opaque() {
        let items = ["a", "b", "c"].map(|id| (id, id));
        let cursor = request(json!({"x": 1}))
            .ok()
            .unwrap()
            .page(items)
            .next_cursor
            .unwrap();
        assert!(request(json!({"x": 2, "page_cursor": cursor})).is_err());
        assert!(request(json!({"page_cursor": "not a cursor"})).is_err());
        // Member order does not matter.
        let a = fingerprint("/r", json!({"a": 1, "b": [1, 2]}).as_object().unwrap());
        let b = fingerprint("/r", json!({"b": [1, 2], "a": 1}).as_object().unwrap());
        assert_eq!(a, b);
    }
}
