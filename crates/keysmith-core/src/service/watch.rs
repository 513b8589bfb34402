//! WatchKeys: a property's key changes as they are stored, from a resume
//! token or from now.
//!
//! A watch that resumes first reads what it missed from the change log;
//! once it has read to the head it subscribes to the live feed, reads the
//! log once more up to the head it subscribed at (the changes made between
//! its last read and its subscription), and then takes changes live,
//! skipping any it read from the log. Nothing is missed, nothing repeated:
//! every change has one sequence number and the watch delivers them in
//! increasing order.
use std::{collections::VecDeque, sync::Arc};

use crate::{
    changes::{Ended, KeyChange, ResumeToken, Subscription},
    error::{reasons, Error, ErrorKind, Result},
    key::AccessKey,
    request::Violations,
    store::Store,
};

use super::AccessService;

/// Change log records read at a time.
const PAGE: usize = 256;

/// WatchKeys: which changes, and from where.
#[derive(Clone, Debug, Default)]
pub struct WatchKeysRequest {
    /// The property whose keys are watched.
    pub property_id: String,
    /// Only keys of this reservation_key, whatever their incarnation.
    pub reservation_key: Option<String>,
    /// Only keys that open this entrance.
    pub entrance_id: Option<String>,
    /// Only keys of this holder.
    pub holder_id: Option<String>,
    /// The token of the last change received, to resume after it; `None`
    /// to watch from now.
    pub resume_token: Option<String>,
}

impl WatchKeysRequest {
    fn validate(&self) -> Result<()> {
        let mut v = Violations::default();
        v.id("property_id", &self.property_id);
        for (field, value) in [
            ("reservation_key", &self.reservation_key),
            ("entrance_id", &self.entrance_id),
            ("holder_id", &self.holder_id),
        ] {
            if let Some(value) = value {
                v.optional_id(field, value);
            }
        }
        v.finish()
    }

    /// Whether the watch delivers a change of `key` (the filters combine).
    fn matches(&self, key: &AccessKey) -> bool {
        self.reservation_key
            .as_deref()
            .is_none_or(|rk| key.reservation_key() == Some(rk))
            && self.holder_id.as_deref().is_none_or(|h| key.holder.id == h)
            && self
                .entrance_id
                .as_deref()
                .is_none_or(|e| key.entrances.iter().any(|ke| ke.entrance_id == e))
    }
}

/// What a watch delivers.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// First, once: the watch is established and delivers every change
    /// after `resume_token`'s position (the head of the log for a watch
    /// from now).
    Started {
        /// Where the watch stands.
        resume_token: String,
    },
    /// A change of a key, and the token to resume after it.
    Change {
        /// The change, with the key as it stored it.
        change: Arc<KeyChange>,
        /// Resumes after this change.
        resume_token: String,
    },
}

/// A watch under way; [`KeyWatch::next`] gives its events in order.
pub struct KeyWatch {
    store: Arc<dyn Store>,
    request: WatchKeysRequest,
    incarnation: String,
    /// The last sequence number delivered or passed over by the filters.
    position: u64,
    started: bool,
    /// Read from the log or received live, not yet delivered.
    backlog: VecDeque<Arc<KeyChange>>,
    /// Subscribed: the subscription, and the head at subscription, up to
    /// which the log is read before changes are taken live.
    live: Option<(Subscription, u64)>,
    /// Whether the log has been read up to the head at subscription.
    caught_up: bool,
}

impl AccessService {
    /// Starts a watch of a property's key changes (see [`KeyWatch`]).
    ///
    /// Errors: the ids (`INVALID_ARGUMENT`), `PROPERTY_NOT_FOUND`;
    /// `INVALID_RESUME_TOKEN` for a token that is not one, or is another
    /// property's; FAILED_PRECONDITION `RESUME_TOKEN_EXPIRED` when the
    /// changes after the token are no longer kept (retention), or the token
    /// is of another store or of a position this store does not have: the
    /// client lists the keys again and watches from a new token.
    pub fn watch_keys(&self, request: WatchKeysRequest) -> Result<KeyWatch> {
        request.validate()?;
        self.router.require_property(&request.property_id)?;
        let store = self.store.clone();
        let incarnation = store.incarnation().to_owned();
        let mut head = store.change_feed().head(&request.property_id);
        let position = match &request.resume_token {
            None => head,
            Some(token) => {
                let token = ResumeToken::decode(token)?;
                if token.property_id != request.property_id {
                    return Err(Error::invalid_field(
                        reasons::INVALID_RESUME_TOKEN,
                        "resume_token",
                        "was given by a watch of another property",
                    ));
                }
                if token.incarnation != incarnation {
                    return Err(expired(
                        "the resume token is of another store, or of this one before it \
                         was made anew",
                    ));
                }
                if token.sequence > head {
                    // Another process on the store may have made the change
                    // and this one not published it yet.
                    store.catch_up_changes(&request.property_id)?;
                    head = store.change_feed().head(&request.property_id);
                }
                if token.sequence > head {
                    return Err(expired(
                        "the resume token is ahead of this store's changes (restored from \
                         an earlier copy?)",
                    ));
                }
                let purged = store.changes_purged_through(&request.property_id)?;
                if token.sequence < purged {
                    return Err(expired(
                        "the changes after the resume token are past \
                         storage.change_retention_hours and no longer kept",
                    ));
                }
                token.sequence
            }
        };
        Ok(KeyWatch {
            store,
            request,
            incarnation,
            position,
            started: false,
            backlog: VecDeque::new(),
            live: None,
            caught_up: false,
        })
    }
}

impl KeyWatch {
    /// The next event: `Started` first, then each change that passes the
    /// filters, in sequence order. Waits for changes as long as it takes.
    ///
    /// Ends with an error the client resumes from: RESOURCE_EXHAUSTED
    /// `WATCH_BUFFER_OVERFLOW` when the watcher fell further behind than
    /// its buffer (its metadata carries the `resume_token` to resume with),
    /// FAILED_PRECONDITION `RESUME_TOKEN_EXPIRED` when retention purged
    /// changes it had yet to read.
    pub async fn next(&mut self) -> Result<WatchEvent> {
        if !self.started {
            self.started = true;
            return Ok(WatchEvent::Started {
                resume_token: self.token(self.position),
            });
        }
        loop {
            if let Some(change) = self.backlog.pop_front() {
                if let Some(event) = self.pass(change) {
                    return Ok(event);
                }
                continue;
            }
            if !self.caught_up {
                self.read_log()?;
                continue;
            }
            let Some((subscription, _)) = self.live.as_mut() else {
                return Err(Error::internal("a watch caught up without subscribing"));
            };
            match subscription.recv().await {
                Ok(changes) => self.backlog.extend(changes),
                Err(Ended::Skipped) => {
                    return Err(expired(
                        "changes this watch had yet to get were purged \
                         (storage.change_retention_hours) before this server could read them",
                    ));
                }
                Err(Ended::Overflowed) => {
                    return Err(Error::new(
                        ErrorKind::ResourceExhausted,
                        reasons::WATCH_BUFFER_OVERFLOW,
                        "the watcher fell further behind than its buffer \
                         (server.watch_buffer changes): resume with the resume_token of \
                         the last change received",
                    )
                    .with_context("resume_token", self.token(self.position)));
                }
            }
        }
    }

    /// Reads the next page of the log into the backlog. Before subscribing
    /// it reads to the head as it is now; with nothing left there it
    /// subscribes, and reads to the head it subscribed at.
    fn read_log(&mut self) -> Result<()> {
        let property_id = self.request.property_id.clone();
        let upto = match &self.live {
            Some((_, subscribed_at)) => *subscribed_at,
            None => self.store.change_feed().head(&property_id),
        };
        if self.position >= upto {
            match self.live {
                Some(_) => self.caught_up = true,
                None => {
                    self.live = Some(self.subscribe());
                }
            }
            return Ok(());
        }
        let page = self
            .store
            .changes_after(&property_id, self.position, PAGE)?;
        // Sequences have no gap: a missing next one was purged meanwhile.
        if page.first().is_none_or(|c| c.sequence != self.position + 1) {
            return Err(expired(
                "changes after the resume token were purged (storage.change_retention_hours) \
                 while the watch read them",
            ));
        }
        // Only what is durable (up to the head): later records are taken
        // live once published.
        self.backlog.extend(
            page.into_iter()
                .take_while(|c| c.sequence <= upto)
                .map(Arc::new),
        );
        Ok(())
    }

    fn subscribe(&self) -> (Subscription, u64) {
        let (head, subscription) = self
            .store
            .change_feed()
            .subscribe(&self.request.property_id);
        (subscription, head)
    }

    /// The event for `change`, if it is new to this watch and passes the
    /// filters.
    fn pass(&mut self, change: Arc<KeyChange>) -> Option<WatchEvent> {
        if change.sequence <= self.position {
            return None;
        }
        self.position = change.sequence;
        if !self.request.matches(&change.key) {
            return None;
        }
        Some(WatchEvent::Change {
            resume_token: change.resume_token(&self.incarnation),
            change,
        })
    }

    fn token(&self, sequence: u64) -> String {
        ResumeToken {
            incarnation: self.incarnation.clone(),
            property_id: self.request.property_id.clone(),
            sequence,
        }
        .encode()
    }
}

fn expired(why: &str) -> Error {
    Error::failed_precondition(
        reasons::RESUME_TOKEN_EXPIRED,
        format!("{why}: list the keys again (ListKeys), then watch from the token a new WatchKeys starts with"),
    )
}
