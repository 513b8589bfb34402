//! The commits of every keysmith on the database, to this one's feed.
//!
//! Each transaction that logs changes notifies [`CHANNEL`] of its
//! properties' new heads (`write.rs`); PostgreSQL delivers a notification
//! only once its transaction has committed, and to every session that
//! listens. This process's commits are published at once, without waiting
//! for it; another process's are read from the change log here, when its
//! notification arrives, and handed to the [`Publisher`], which puts them
//! in order and drops what it published already.
//!
//! One connection of its own listens (not the pool's: a pooled connection
//! is reset and shared). Notifications sent while it is away are lost, so
//! each time it is listening again it catches up every property whose head
//! in the database is beyond the feed's. That catch-up also publishes a
//! change held for an earlier one this process never learned of: one whose
//! COMMIT's outcome was unknown here, and turned out committed.
//!
//! A property whose changes the listener missed and can no longer read
//! (the change log was purged past the feed's head while it was away:
//! retention shorter than the time away) has its feed moved on to the
//! oldest change still logged, and its watchers ended as a too-old resume
//! token is (`Publisher::skip_to`): they list and watch again rather than
//! wait for changes that will never come.
//!
//! The same connection hears the drivers' signals (`signals.rs`).
//!
//! Known cost: PostgreSQL serializes the commits of transactions that
//! notified (a lock held until each has committed, so that notifications
//! arrive in commit order).
use std::{collections::HashMap, future::poll_fn, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use keysmith_core::Result;
use keysmith_store::sealing::Sealer;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::{
    db_error,
    publish::Publisher,
    signals::{self, Signals},
};

/// The channel of the heads' notifications. The payload is the new head,
/// a space, and the property id: no secret.
pub(crate) const CHANNEL: &str = "keysmith_changes";

/// Change log records read at a time.
const PAGE: usize = 256;

/// The listener task, ended by [`Listener::stop`] or when dropped.
pub(crate) struct Listener {
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts listening on a connection of its own made from `config`, and
    /// keeps reconnecting (with back-off) until stopped.
    pub(crate) fn start(
        mut config: Config,
        sealer: Arc<Sealer>,
        publisher: Arc<Publisher>,
        signals: Arc<Signals>,
    ) -> Self {
        // The connection only reads: without keepalives a database that
        // went away silently (a network partition) would never be noticed.
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        // On the I/O runtime, with the pool's connections (blocking.rs).
        let task = crate::blocking::spawn(async move {
            let mut delays = reconnect_backoff().build();
            loop {
                let ended = match Session::open(&config, &signals).await {
                    Ok(session) => {
                        let ended = session.follow(&sealer, &publisher, &signals).await;
                        // Listening worked: the next failure starts the
                        // back-off afresh.
                        delays = reconnect_backoff().build();
                        ended
                    }
                    Err(e) => Err(e),
                };
                let delay = delays.next().unwrap_or(MAX_DELAY);
                match ended {
                    Ok(()) => tracing::warn!(
                        ?delay,
                        "the change listener's PostgreSQL connection closed: reconnecting"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        ?delay,
                        "the change listener lost PostgreSQL: reconnecting"
                    ),
                }
                tokio::time::sleep(delay).await;
            }
        });
        Self { task }
    }

    /// Stops listening (the connection closes with the task).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MAX_DELAY: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before each reconnect: soon at first, then every few
/// seconds, for as long as it takes.
fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(MAX_DELAY)
        .without_max_times()
        .with_jitter()
}

/// A listening connection: its client, and the notifications its
/// connection task receives.
struct Session {
    client: Client,
    notifications: mpsc::UnboundedReceiver<(String, u64)>,
}

impl Session {
    async fn open(config: &Config, signals: &Arc<Signals>) -> Result<Self> {
        let (client, mut connection) = config.connect(NoTls).await.map_err(db_error)?;
        let (sender, notifications) = mpsc::unbounded_channel();
        let signals = signals.clone();
        // Drives the connection (the client's queries too) and passes the
        // notifications on; ends when the connection does, or once the
        // client is dropped.
        tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                        match parse(n.payload()) {
                            Some(head) => {
                                if sender.send(head).is_err() {
                                    break;
                                }
                            }
                            None => tracing::warn!(
                                "a notification on {CHANNEL} that is not a property's head"
                            ),
                        }
                    }
                    // A wake is cheap and never blocks: called here.
                    Ok(AsyncMessage::Notification(n)) if n.channel() == signals::CHANNEL => {
                        signals.delivered(n.payload())
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the change listener's connection failed");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {}", signals::CHANNEL))
            .await
            .map_err(db_error)?;
        Ok(Self {
            client,
            notifications,
        })
    }

    /// Catches up every property, then follows the notifications until
    /// the connection ends.
    async fn follow(
        mut self,
        sealer: &Sealer,
        publisher: &Publisher,
        signals: &Signals,
    ) -> Result<()> {
        // Listening already: a signal after this is heard, one before it
        // may have been missed.
        signals.missed();
        // A commit after this read is notified.
        let rows = self
            .client
            .query("SELECT property_id, head FROM change_heads", &[])
            .await
            .map_err(db_error)?;
        for row in rows {
            let head: i64 = row.get(1);
            catch_up(&self.client, sealer, publisher, row.get(0), head as u64).await?;
        }
        tracing::debug!("the change listener is listening");
        while let Some((property_id, head)) = self.notifications.recv().await {
            // Everything that arrived meanwhile, each property once, at its
            // highest head.
            let mut heads = HashMap::from([(property_id, head)]);
            while let Ok((property_id, head)) = self.notifications.try_recv() {
                let known = heads.entry(property_id).or_default();
                *known = (*known).max(head);
            }
            for (property_id, head) in heads {
                catch_up(&self.client, sealer, publisher, &property_id, head).await?;
            }
        }
        Ok(())
    }
}

/// A notification's payload: the head, a space, the property id.
fn parse(payload: &str) -> Option<(String, u64)> {
    let (head, property_id) = payload.split_once(' ')?;
    Some((property_id.to_owned(), head.parse().ok()?))
}

/// Publishes `property_id`'s changes up to `head` (committed) that the feed
/// has yet to publish, read on `client`. Nothing to read (the common case:
/// the notification of this process's own commit) costs no query. Changes
/// the log no longer holds are skipped, ending the property's watchers.
pub(crate) async fn catch_up(
    client: &Client,
    sealer: &Sealer,
    publisher: &Publisher,
    property_id: &str,
    head: u64,
) -> Result<()> {
    let mut after = publisher.head(property_id);
    while after < head {
        let changes = crate::changes_after(client, sealer, property_id, after, PAGE).await?;
        // Up to a committed head the log has no gap (numbers are given in
        // commit order), so a first change past the next number, or none,
        // means retention purged what the feed has yet to publish.
        let first = changes.first().map(|c| c.sequence);
        if first != Some(after + 1) {
            let resumed = first.map_or(head, |first| first - 1);
            tracing::warn!(
                property_id,
                published = after,
                resumed,
                "changes this keysmith missed were purged from the change log before it \
                 read them (listener away longer than storage.change_retention_hours): \
                 ending the property's watches, which resume from the log"
            );
            publisher.skip_to(property_id, resumed);
        }
        let Some(last) = changes.last() else {
            break;
        };
        after = last.sequence;
        publisher.committed(changes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_payload_is_a_head_and_a_property() {
        assert_eq!(parse("42 demo-hotel"), Some(("demo-hotel".into(), 42)));
        assert_eq!(parse("7 a b"), Some(("a b".into(), 7)));
        assert_eq!(parse("demo-hotel"), None);
        assert_eq!(parse("x demo-hotel"), None);
    }
}
