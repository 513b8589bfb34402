//! How many connections may be open, overall and per client address, and
//! each open connection's [`Activity`].
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;

use super::Activity;
use crate::config::ServerConfig;

/// The connection limits of `[server]`.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionSettings {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&ServerConfig> for ConnectionSettings {
    fn from(c: &ServerConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            max_connections_per_peer: c.max_connections_per_peer,
            handshake_timeout: Duration::from_millis(c.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        }
    }
}

/// The open connections: counted overall and per client address, and
/// found by their client address (which tells a request's connection).
pub struct ConnectionLimits {
    settings: ConnectionSettings,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    open: HashMap<SocketAddr, Arc<Activity>>,
    per_peer: HashMap<IpAddr, usize>,
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyFromPeer,
}

/// An admitted connection's place in the limits, given back when dropped.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl ConnectionLimits {
    pub fn new(settings: ConnectionSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            table: Mutex::new(Table::default()),
        })
    }

    /// Admits a connection from `peer`, accepted at `now`, if the limits
    /// allow one more.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr, now: Instant) -> Result<Admitted, Refusal> {
        let s = &self.settings;
        let mut table = self.table.lock();
        if table.open.len() >= s.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        let from_peer = table.per_peer.entry(peer.ip()).or_insert(0);
        if *from_peer >= s.max_connections_per_peer {
            return Err(Refusal::TooManyFromPeer);
        }
        *from_peer += 1;
        let activity = Arc::new(Activity::new(now, s.handshake_timeout, s.idle_timeout));
        // A client address is one live connection's; should a new one come
        // from it before the old one's place is given back, the new one is
        // the one found from now on.
        table.open.insert(peer, activity.clone());
        Ok(Admitted {
            limits: self.clone(),
            peer,
            activity,
        })
    }

    /// The activity of the open connection from `peer`.
    pub fn activity(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.table.lock().open.get(&peer).cloned()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.table.lock().open.len()
    }

    fn release(&self, peer: SocketAddr, activity: &Arc<Activity>) {
        let mut table = self.table.lock();
        if table
            .open
            .get(&peer)
            .is_some_and(|a| Arc::ptr_eq(a, activity))
        {
            table.open.remove(&peer);
        }
        if let Some(n) = table.per_peer.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                table.per_peer.remove(&peer.ip());
            }
        }
    }
}

impl Admitted {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limits.release(self.peer, &self.activity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_peer: usize) -> Arc<ConnectionLimits> {
        ConnectionLimits::new(ConnectionSettings {
            max_connections: total,
            max_connections_per_peer: per_peer,
            handshake_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        })
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_past_its_limit_is_refused_until_one_of_its_connections_closes() {
        let l = limits(10, 2);
        let now = Instant::now();
        let a = l.admit(addr("127.0.0.1:1000"), now).ok().unwrap();
        let _b = l.admit(addr("127.0.0.1:1001"), now).ok().unwrap();
        let refused = l.admit(addr("127.0.0.1:1002"), now).err();
        assert_eq!(refused, Some(Refusal::TooManyFromPeer));
        assert!(l.admit(addr("127.0.0.2:1000"), now).is_ok(), "another peer");
        drop(a);
        assert!(l.admit(addr("127.0.0.1:1002"), now).is_ok());
    }

    #[test]
    fn past_the_overall_limit_every_peer_is_refused() {
        let l = limits(2, 10);
        let now = Instant::now();
        let a = l.admit(addr("127.0.0.1:1000"), now).ok().unwrap();
        let _b = l.admit(addr("127.0.0.2:1000"), now).ok().unwrap();
        let refused = l.admit(addr("127.0.0.3:1000"), now).err();
        assert_eq!(refused, Some(Refusal::TooManyConnections));
        drop(a);
        let _c = l.admit(addr("127.0.0.3:1000"), now).ok().unwrap();
        assert_eq!(l.open(), 2);
    }

    #[test]
    fn a_connection_is_found_by_its_client_address_while_open() {
        let l = limits(10, 10);
        let peer = addr("127.0.0.1:1000");
        let a = l.admit(peer, Instant::now()).ok().unwrap();
        assert!(l.activity(peer).is_some());
        drop(a);
        assert!(l.activity(peer).is_none());
        assert!(l.table.lock().per_peer.is_empty(), "no empty entries kept");
    }
}
