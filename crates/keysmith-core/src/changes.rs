//! The change log of a property's keys, as WatchKeys delivers it.
//!
//! Every stored change of a key (issued, a new state, a new window or new
//! credentials, revoked, expired by the sweeper) gets the next number of its
//! property's change sequence, and its record is written in the same atomic
//! commit as the change itself: the log has exactly what is stored, in
//! order, and survives a restart. Once the commit is durable the store
//! publishes the change to this module's [`ChangeFeed`], where the watchers
//! of the property take it live. A watcher that reconnects reads what it
//! missed from the log (see `service::watch`).
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    error::{reasons, Error, Result},
    key::AccessKey,
    listed::ListedKey,
    time::Timestamp,
};

/// What happened to a key. Stored in change records: new kinds are added at
/// the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The key was stored for the first time.
    Issued,
    /// Its state changed (ISSUING to ACTIVE, ENCODING_REQUIRED, REVOKING,
    /// FAILED, ...), other than to revoked or expired.
    StateChanged,
    /// Its window or its credentials changed, in the same state.
    Updated,
    /// Its revocation completed.
    Revoked,
    /// The sweeper recorded that its window ended.
    Expired,
}

impl ChangeKind {
    /// What storing `new` over `old` (`None`: the key is new) is, or `None`
    /// when nothing a caller can see changed.
    pub fn between(old: Option<&AccessKey>, new: &AccessKey) -> Option<Self> {
        let Some(old) = old else {
            return Some(ChangeKind::Issued);
        };
        if old == new {
            return None;
        }
        Some(if old.stored_state == new.stored_state {
            ChangeKind::Updated
        } else {
            match new.stored_state {
                crate::KeyState::Revoked => ChangeKind::Revoked,
                crate::KeyState::Expired => ChangeKind::Expired,
                _ => ChangeKind::StateChanged,
            }
        })
    }
}

/// One entry of a property's change log: the key as the change stored it.
/// The key carries credential data, so a store seals the record as it seals
/// the key itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyChange {
    /// The property whose sequence numbered it.
    pub property_id: String,
    /// Its place in the property's sequence: 1 for the first change, one
    /// more for each later one.
    pub sequence: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// When the change was made, by the service's clock; retention counts
    /// from it.
    pub at: Timestamp,
    /// The key as stored by the change, shared by every watcher it goes
    /// to with the encodings they make of it (stored as the plain key).
    #[serde(with = "as_access_key")]
    pub key: Arc<ListedKey>,
    /// Its resume token, made once for every watcher it goes to.
    #[serde(skip)]
    token: std::sync::OnceLock<String>,
}

impl KeyChange {
    /// The token that resumes after this change, in the store of
    /// `incarnation`.
    pub fn resume_token(&self, incarnation: &str) -> String {
        self.token
            .get_or_init(|| {
                ResumeToken {
                    incarnation: incarnation.to_owned(),
                    property_id: self.property_id.clone(),
                    sequence: self.sequence,
                }
                .encode()
            })
            .clone()
    }
}

/// A [`ListedKey`] in the stored form of its [`AccessKey`].
mod as_access_key {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::{key::AccessKey, listed::ListedKey};

    pub fn serialize<S: Serializer>(key: &Arc<ListedKey>, s: S) -> Result<S::Ok, S::Error> {
        key.key().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<ListedKey>, D::Error> {
        AccessKey::deserialize(d).map(ListedKey::new)
    }
}

/// A change waiting for its sequence number: the store numbers it as it
/// commits it.
#[derive(Clone, Debug)]
pub struct PendingChange {
    /// What happened.
    pub kind: ChangeKind,
    /// When, by the service's clock.
    pub at: Timestamp,
    /// The key as stored.
    pub key: AccessKey,
}

impl PendingChange {
    /// The changes a set of key writes makes, in write order (`at`: when
    /// they were made).
    pub fn of<'a>(
        keys: impl IntoIterator<Item = &'a (AccessKey, Option<AccessKey>)>,
        at: Option<Timestamp>,
    ) -> Vec<Self> {
        keys.into_iter()
            .filter_map(|(new, old)| {
                ChangeKind::between(old.as_ref(), new).map(|kind| PendingChange {
                    kind,
                    at: at.unwrap_or(new.updated_at),
                    key: new.clone(),
                })
            })
            .collect()
    }

    /// The change with its number.
    pub fn numbered(self, sequence: u64) -> KeyChange {
        KeyChange {
            property_id: self.key.property_id.clone(),
            sequence,
            kind: self.kind,
            at: self.at,
            key: ListedKey::new(self.key),
            token: Default::default(),
        }
    }
}

/// Where a watcher stands in one store's change log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeToken {
    /// The store's incarnation: a store made anew (or another store) has
    /// other sequences, so a token of another incarnation is stale.
    pub incarnation: String,
    /// The property whose sequence it counts.
    pub property_id: String,
    /// The last change delivered (0: none yet).
    pub sequence: u64,
}

/// Bumped if the token's form changes; a token of another version is stale.
const TOKEN_VERSION: u8 = 1;

impl ResumeToken {
    /// The opaque form given to clients.
    pub fn encode(&self) -> String {
        let bytes = postcard::to_stdvec(&(TOKEN_VERSION, self)).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a token a client gave back; `INVALID_RESUME_TOKEN` when it is
    /// not one.
    pub fn decode(token: &str) -> Result<Self> {
        let invalid = || {
            Error::invalid_field(
                reasons::INVALID_RESUME_TOKEN,
                "resume_token",
                "is not a resume token of this service",
            )
        };
        if token.len() > 1024 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        match postcard::from_bytes::<(u8, ResumeToken)>(&bytes) {
            Ok((TOKEN_VERSION, token)) => Ok(token),
            _ => Err(invalid()),
        }
    }
}

/// The watchers' side of the change logs: each property's last durable
/// sequence number, and its watchers, each with a bounded buffer of its
/// own.
///
/// The store publishes each commit's changes at once: every watcher of the
/// property gets them in its buffer (one wake per commit, however many
/// changes it holds). A watcher that has yet to take some changes and
/// whose buffer would then hold more than `capacity` is marked overflowed
/// and gets nothing more: it learns it on its next receive and resumes from
/// the log. Publishing never waits for a watcher.
pub struct ChangeFeed {
    capacity: usize,
    properties: Mutex<HashMap<String, Channel>>,
}

#[derive(Default)]
struct Channel {
    /// The last sequence number whose change is durable and published.
    head: u64,
    watchers: Vec<Arc<Buffer>>,
}

/// One watcher's buffer.
#[derive(Default)]
struct Buffer {
    changes: Mutex<BufferState>,
    wake: Notify,
}

#[derive(Default)]
struct BufferState {
    pending: VecDeque<Arc<KeyChange>>,
    overflowed: bool,
    /// Changes it had yet to get can no longer be published ([`ChangeFeed::skip_to`]).
    skipped: bool,
    /// The receiver is gone: the next publish drops the buffer.
    closed: bool,
}

/// A watcher's end of the feed: the changes published after it subscribed.
pub struct Subscription {
    buffer: Arc<Buffer>,
}

/// Why a watcher's subscription gets nothing more.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The watcher fell further behind than its buffer.
    Overflowed,
    /// The feed skipped changes the watcher had yet to get: they were
    /// purged from the log before this process could publish them
    /// ([`ChangeFeed::skip_to`]).
    Skipped,
}

impl Subscription {
    /// The changes published since the last receive, in sequence order;
    /// waits for some.
    pub async fn recv(&mut self) -> std::result::Result<Vec<Arc<KeyChange>>, Ended> {
        loop {
            {
                let mut state = self.buffer.changes.lock();
                if state.skipped {
                    return Err(Ended::Skipped);
                }
                if state.overflowed {
                    return Err(Ended::Overflowed);
                }
                if !state.pending.is_empty() {
                    return Ok(state.pending.drain(..).collect());
                }
            }
            // A publish between the check and here leaves a permit: the
            // wait returns at once.
            self.buffer.wake.notified().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.buffer.changes.lock();
        state.closed = true;
        state.pending.clear();
    }
}

impl ChangeFeed {
    /// A feed whose watchers may each fall `capacity` changes behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            properties: Mutex::new(HashMap::new()),
        }
    }

    /// What the store found durable at open.
    pub fn set_head(&self, property_id: &str, head: u64) {
        let mut properties = self.properties.lock();
        let channel = properties.entry(property_id.to_owned()).or_default();
        channel.head = channel.head.max(head);
    }

    /// The property's last durable sequence number (0: no change yet).
    pub fn head(&self, property_id: &str) -> u64 {
        self.properties
            .lock()
            .get(property_id)
            .map_or(0, |c| c.head)
    }

    /// Subscribes to the property's changes: the head at this instant, and
    /// every change published after it.
    pub fn subscribe(&self, property_id: &str) -> (u64, Subscription) {
        let mut properties = self.properties.lock();
        let channel = properties.entry(property_id.to_owned()).or_default();
        let buffer = Arc::new(Buffer::default());
        channel.watchers.push(buffer.clone());
        (channel.head, Subscription { buffer })
    }

    /// Publishes changes that are durable now, in sequence order. Never
    /// waits: a watcher whose buffer is full is marked overflowed.
    pub fn publish(&self, changes: Vec<KeyChange>) {
        if changes.is_empty() {
            return;
        }
        let mut by_property: Vec<(String, Vec<Arc<KeyChange>>)> = Vec::new();
        for change in changes {
            match by_property
                .iter_mut()
                .find(|(p, _)| *p == change.property_id)
            {
                Some((_, list)) => list.push(Arc::new(change)),
                None => by_property.push((change.property_id.clone(), vec![Arc::new(change)])),
            }
        }
        let mut properties = self.properties.lock();
        for (property_id, list) in by_property {
            let channel = properties.entry(property_id).or_default();
            if let Some(last) = list.last() {
                channel.head = channel.head.max(last.sequence);
            }
            channel.watchers.retain(|watcher| {
                let mut state = watcher.changes.lock();
                if state.closed {
                    return false;
                }
                if !state.overflowed {
                    // A watcher that has taken everything takes a commit
                    // whole, however large: only one that is behind
                    // overflows.
                    if !state.pending.is_empty() && state.pending.len() + list.len() > self.capacity
                    {
                        state.overflowed = true;
                        state.pending.clear();
                    } else {
                        state.pending.extend(list.iter().cloned());
                    }
                    drop(state);
                    watcher.wake.notify_one();
                }
                true
            });
        }
    }

    /// Moves the property's head on to `head` without publishing the
    /// changes up to it, which can no longer be read (a process that was
    /// not listening while the change log was purged past them): every
    /// watcher of the property is ended ([`Ended::Skipped`]) rather than
    /// left waiting for them, and resumes from the log, which refuses its
    /// token if it is too old. Nothing happens when the head is there
    /// already.
    pub fn skip_to(&self, property_id: &str, head: u64) {
        let mut properties = self.properties.lock();
        let channel = properties.entry(property_id.to_owned()).or_default();
        if channel.head >= head {
            return;
        }
        channel.head = head;
        for watcher in channel.watchers.drain(..) {
            let mut state = watcher.changes.lock();
            state.skipped = true;
            state.pending.clear();
            drop(state);
            watcher.wake.notify_one();
        }
    }

    /// How many watch the property now.
    pub fn watchers(&self, property_id: &str) -> usize {
        self.properties
            .lock()
            .get(property_id)
            .map_or(0, |c| c.watchers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_garbage_is_refused() {
        let token = ResumeToken {
            incarnation: "inc".into(),
            property_id: "p".into(),
            sequence: 42,
        };
        assert_eq!(ResumeToken::decode(&token.encode()).unwrap(), token);
        for bad in ["", "!!", "AAAA", &"A".repeat(2000)] {
            let error = ResumeToken::decode(bad).unwrap_err();
            assert_eq!(error.reason(), reasons::INVALID_RESUME_TOKEN);
        }
    }

    #[tokio::test]
    async fn the_feed_keeps_heads_and_overflows_slow_watchers_only() {
        let feed = ChangeFeed::new(2);
        feed.set_head("p", 5);
        let (head, mut slow) = feed.subscribe("p");
        let (_, mut quick) = feed.subscribe("p");
        assert_eq!(head, 5);
        let change = |sequence| KeyChange {
            property_id: "p".into(),
            sequence,
            kind: ChangeKind::Updated,
            at: Timestamp::from_micros(0),
            key: ListedKey::new(a_key()),
            token: Default::default(),
        };
        feed.publish(vec![change(6), change(7)]);
        let got: Vec<u64> = quick
            .recv()
            .await
            .unwrap()
            .iter()
            .map(|c| c.sequence)
            .collect();
        assert_eq!(got, vec![6, 7]);
        feed.publish(vec![change(8)]);
        assert_eq!(feed.head("p"), 8);
        assert_eq!(slow.recv().await.unwrap_err(), Ended::Overflowed);
        assert_eq!(quick.recv().await.unwrap()[0].sequence, 8);
        drop(slow);
        feed.publish(vec![change(9)]);
        assert_eq!(feed.watchers("p"), 1);
    }

    fn a_key() -> AccessKey {
        use crate::{key::Holder, time::Window, Role};
        AccessKey {
            key_id: "k".into(),
            property_id: "p".into(),
            holder: Holder {
                id: "h".into(),
                name: None,
            },
            entrances: Vec::new(),
            window: Window {
                starts_at: Timestamp::from_micros(0),
                ends_at: Timestamp::from_micros(1),
            },
            reservation: None,
            role: Role::Guest,
            modes: Vec::new(),
            credentials: Vec::new(),
            stored_state: crate::KeyState::Active,
            warnings: Vec::new(),
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            revoked_at: None,
            driver_refs: Default::default(),
        }
    }
}
