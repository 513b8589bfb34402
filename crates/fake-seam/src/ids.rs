//! Identifiers. Seam's ids are UUIDs (`format: uuid` in its OpenAPI
//! document; other strings are rejected as invalid input), so the fake's are
//! UUID-shaped too, but sequential, as in Seam's own fake: the first group
//! names the kind of object and the last one counts per kind. Tests can
//! predict them and a reader can tell a grant id from a method id.
//!
//! Workspaces, acs systems and spaces are seeded under a name the test
//! chooses (its handle in the control API) and get a minted id too: that id
//! is what clients see, as every id Seam hands out is a UUID.

/// What an id names; the discriminant is the id's first group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    ConnectedAccount = 1,
    Entrance = 2,
    Encoder = 3,
    UserIdentity = 4,
    AccessGrant = 5,
    AccessMethod = 6,
    ActionAttempt = 7,
    Event = 8,
    Credential = 9,
    Request = 10,
    Workspace = 11,
    AcsSystem = 12,
    Space = 13,
}

const KINDS: usize = 14;

/// Per-kind counters of one fake.
#[derive(Default)]
pub(crate) struct Ids {
    next: [u64; KINDS],
}

impl Ids {
    pub fn mint(&mut self, kind: Kind) -> String {
        let slot = &mut self.next[kind as usize];
        *slot += 1;
        format_id(kind, *slot)
    }
}

pub(crate) fn format_id(kind: Kind, n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", kind as usize, n)
}

/// The shape zod's `.uuid()` accepts: 8-4-4-4-12 hex digits, any version.
pub(crate) fn is_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_uuids_in_creation_order() {
        let mut ids = Ids::default();
        let a = ids.mint(Kind::AccessGrant);
        let b = ids.mint(Kind::AccessGrant);
        assert_eq!(a, "00000005-0000-4000-8000-000000000001");
        assert!(is_uuid(&a) && is_uuid(&b));
        // Sorting by id is sorting by creation: pagination relies on it.
        assert!(a < b);
        assert!(!is_uuid("room-101"));
        assert!(!is_uuid("00000005-0000-4000-8000-00000000000g"));
    }
}
