//! The lock: its configuration, its small state, and the decision it takes locally when a
//! credential is presented (see `offline-lock-semantics.md`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::credential::CredentialPayload;
use super::{Sequence, UnixSeconds};

/// Onity's default look-ahead window (Saflok allows 1 to 15).
pub const DEFAULT_LOOK_AHEAD: u16 = 50;
/// Onity's audit trail size.
pub const DEFAULT_AUDIT_CAPACITY: usize = 500;
/// keysmith's choice (no vendor text gives one): a lock's block list is small.
pub const DEFAULT_BLOCKED_CARDS_CAPACITY: usize = 256;

fn default_blocked_cards_capacity() -> usize {
    DEFAULT_BLOCKED_CARDS_CAPACITY
}

/// How a presented sequence value compares with the stored one, at 16 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceOrder {
    /// Older than the stored value (or exactly half the space away: ambiguous, treated as
    /// older so it never opens).
    Behind,
    Equal,
    /// Newer by this many steps (1 ..= 32767).
    Ahead(u16),
}

/// Serial-number comparison at 16 bits (RFC 1982 style): how far `value` is ahead of
/// `stored`. `sequence_ahead(65535, 0) == Ahead(1)`. A distance of exactly 32768 is
/// undefined in RFC 1982; it is reported as `Behind`.
pub fn sequence_ahead(stored: Sequence, value: Sequence) -> SequenceOrder {
    match value.wrapping_sub(stored) {
        0 => SequenceOrder::Equal,
        d @ 1..=0x7FFF => SequenceOrder::Ahead(d),
        _ => SequenceOrder::Behind,
    }
}

/// What the lock is, as programmed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockConfig {
    pub property_code: String,
    pub lock_id: String,
    /// Rooms: true. Lobby / gym / pool: false (common doors: the guest path checks the lock
    /// is on the credential and the window only; never sequence, never overrides).
    pub reservation_capable: bool,
    /// How far beyond the stored value a credential may be and still be accepted
    /// (Saflok 1..15, Onity default 50).
    pub look_ahead: u16,
    /// Audit ring buffer size (Onity: 500). Oldest records are dropped first.
    pub audit_capacity: usize,
    /// How many card ids the block list holds; the one blocked first is
    /// dropped to make room.
    #[serde(default = "default_blocked_cards_capacity")]
    pub blocked_cards_capacity: usize,
    /// The \[I\] option of step 5: when true, a guest credential rejected only for its window
    /// (not yet valid / expired) but carrying a newer sequence within the look-ahead still
    /// advances the lock (it is still rejected). Default false: only a credential that is
    /// otherwise valid updates the lock.
    #[serde(default)]
    pub invalid_credentials_advance: bool,
}

impl LockConfig {
    /// A room lock with Onity defaults (look-ahead 50, 500 audit records, option off).
    pub fn room(property_code: impl Into<String>, lock_id: impl Into<String>) -> Self {
        Self {
            property_code: property_code.into(),
            lock_id: lock_id.into(),
            reservation_capable: true,
            look_ahead: DEFAULT_LOOK_AHEAD,
            audit_capacity: DEFAULT_AUDIT_CAPACITY,
            blocked_cards_capacity: DEFAULT_BLOCKED_CARDS_CAPACITY,
            invalid_credentials_advance: false,
        }
    }

    /// A common door (lobby, gym, pool): no sequence semantics.
    pub fn common_door(property_code: impl Into<String>, lock_id: impl Into<String>) -> Self {
        Self {
            reservation_capable: false,
            ..Self::room(property_code, lock_id)
        }
    }
}

/// What the lock remembers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockState {
    /// The current guest sequence value.
    pub guest_sequence: Sequence,
    /// New-key time of the credential that last set `guest_sequence` (Saflok).
    pub last_new_key_at: Option<UnixSeconds>,
    /// Per staff level: that level's current code.
    pub staff_sequences: BTreeMap<String, Sequence>,
    /// Deadbolt / privacy engaged: only credentials with the override bit open.
    pub deadbolt_engaged: bool,
    /// Guest-cancel (inhibit): every guest credential is rejected except a strictly newer
    /// one within the look-ahead, whose use clears the flag.
    pub guest_cancelled: bool,
    /// Lock blocked: only staff credentials open.
    pub blocked: bool,
    /// Card ids rejected whatever they carry, the one blocked first first.
    /// (Stored as a sequence, as the set it replaced was.)
    pub blocked_card_ids: VecDeque<String>,
    /// Drift of the lock's clock: lock time = real time + skew.
    pub clock_skew_seconds: i64,
    /// Most recent events, oldest first.
    pub audit: VecDeque<AuditRecord>,
}

/// One audit trail entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, by the lock's clock.
    pub lock_time: UnixSeconds,
    /// The presented card id; empty when the credential was unreadable.
    pub card_id: String,
    pub granted: bool,
    pub reason: Reason,
    /// True when this event changed the guest sequence (a guest code change).
    pub overrode: bool,
    /// The sequence value the credential carried for this lock, if any.
    pub sequence: Option<Sequence>,
}

/// Why the lock decided as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Opened: common door, staff, or guest credential without sequence semantics.
    Granted,
    /// Opened: guest credential carrying the stored value (joiner / copy); no state change.
    Joined,
    /// Opened: newer guest credential within the look-ahead; the lock adopted its value.
    Overridden,
    /// Unreadable, tampered or unauthenticated credential.
    Invalid,
    WrongProperty,
    /// The lock is blocked and the credential is not staff.
    Blocked,
    /// Guest-cancel (inhibit) in force.
    GuestCancelled,
    /// The card id is on the lock's block list.
    CardBlocked,
    /// This lock is not on the credential.
    WrongRoom,
    NotYetValid,
    Expired,
    /// Guest sequence older than the stored one.
    Superseded,
    /// Sequence newer than the stored one by more than the look-ahead.
    OutOfWindow,
    /// Deadbolt engaged and the credential has no override bit.
    Deadbolt,
    /// Staff code older than the level's stored code.
    StaffSuperseded,
    /// A PIN the keypad does not know.
    UnknownPin,
}

impl Reason {
    /// The snake_case name used in audit exports and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Granted => "granted",
            Reason::Joined => "joined",
            Reason::Overridden => "overridden",
            Reason::Invalid => "invalid",
            Reason::WrongProperty => "wrong_property",
            Reason::Blocked => "blocked",
            Reason::GuestCancelled => "guest_cancelled",
            Reason::CardBlocked => "card_blocked",
            Reason::WrongRoom => "wrong_room",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::Superseded => "superseded",
            Reason::OutOfWindow => "out_of_window",
            Reason::Deadbolt => "deadbolt",
            Reason::StaffSuperseded => "staff_superseded",
            Reason::UnknownPin => "unknown_pin",
        }
    }

    /// Whether this reason stands for an opening.
    pub fn is_grant(self) -> bool {
        matches!(self, Reason::Granted | Reason::Joined | Reason::Overridden)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was presented at the reader.
#[derive(Clone, Copy, Debug)]
pub enum Presented<'a> {
    /// A credential that was read and authenticated (e.g. by `CredentialCodec::open`).
    Credential(&'a CredentialPayload),
    /// Nothing usable: `Unreadable(Reason::Invalid)` for a tampered / unauthenticated card,
    /// `Unreadable(Reason::UnknownPin)` for a PIN the keypad does not know. Never opens; a
    /// success reason given here is recorded as `Invalid`.
    Unreadable(Reason),
}

/// The lock's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub granted: bool,
    pub reason: Reason,
    /// True when the presentation changed the guest sequence (a guest override).
    pub overrode: bool,
    /// The lock's clock when it decided.
    pub lock_time: UnixSeconds,
}

/// Internal result of the decision, before it is stamped and audited.
#[derive(Clone, Copy)]
struct Outcome {
    granted: bool,
    reason: Reason,
    overrode: bool,
}

impl Outcome {
    fn reject(reason: Reason) -> Self {
        Self {
            granted: false,
            reason,
            overrode: false,
        }
    }

    fn open(reason: Reason) -> Self {
        Self {
            granted: true,
            reason,
            overrode: false,
        }
    }
}

/// `NotYetValid` / `Expired` when `t` is outside `starts_at <= t < ends_at`.
fn window_violation(credential: &CredentialPayload, t: UnixSeconds) -> Option<Reason> {
    if t < credential.starts_at {
        Some(Reason::NotYetValid)
    } else if t >= credential.ends_at {
        Some(Reason::Expired)
    } else {
        None
    }
}

impl LockState {
    /// Whether `card_id` is on the block list.
    pub fn is_card_blocked(&self, card_id: &str) -> bool {
        self.blocked_card_ids.iter().any(|id| id == card_id)
    }

    /// Puts `card_id` on the block list, dropping the card blocked first
    /// when the list is full. Blocking a card already blocked changes nothing.
    pub fn block_card(&mut self, card_id: &str, capacity: usize) {
        if self.is_card_blocked(card_id) {
            return;
        }
        self.blocked_card_ids.push_back(card_id.to_owned());
        while self.blocked_card_ids.len() > capacity {
            self.blocked_card_ids.pop_front();
        }
    }

    /// Takes `card_id` off the block list.
    pub fn unblock_card(&mut self, card_id: &str) {
        self.blocked_card_ids.retain(|id| id != card_id);
    }

    /// The lock's own clock: real time + skew. Every window is judged by it.
    pub fn lock_time(&self, real_time: UnixSeconds) -> UnixSeconds {
        real_time.saturating_add(self.clock_skew_seconds)
    }

    /// Decide, update state, append exactly one audit record (dropping the oldest past
    /// capacity).
    pub fn present(
        &mut self,
        cfg: &LockConfig,
        presented: Presented<'_>,
        real_time: UnixSeconds,
    ) -> Decision {
        let lock_time = self.lock_time(real_time);
        let (card_id, sequence, outcome) = match presented {
            Presented::Unreadable(reason) => {
                let reason = if reason.is_grant() {
                    Reason::Invalid
                } else {
                    reason
                };
                (String::new(), None, Outcome::reject(reason))
            }
            Presented::Credential(credential) => {
                let sequence = credential
                    .grant_for(&cfg.lock_id)
                    .and_then(|grant| grant.sequence);
                let outcome = self.decide(cfg, credential, lock_time);
                (credential.card_id.clone(), sequence, outcome)
            }
        };
        self.record(
            cfg,
            AuditRecord {
                lock_time,
                card_id,
                granted: outcome.granted,
                reason: outcome.reason,
                overrode: outcome.overrode,
                sequence,
            },
        );
        Decision {
            granted: outcome.granted,
            reason: outcome.reason,
            overrode: outcome.overrode,
            lock_time,
        }
    }

    /// Steps 1 to 4 of the notes, then the staff or guest path.
    fn decide(
        &mut self,
        cfg: &LockConfig,
        credential: &CredentialPayload,
        t: UnixSeconds,
    ) -> Outcome {
        if credential.property_code != cfg.property_code {
            return Outcome::reject(Reason::WrongProperty);
        }
        let staff_level = credential.staff_level();
        if self.blocked && staff_level.is_none() {
            return Outcome::reject(Reason::Blocked);
        }
        if self.is_card_blocked(&credential.card_id) {
            return Outcome::reject(Reason::CardBlocked);
        }
        match staff_level {
            Some(level) => self.staff_path(cfg, credential, level, t),
            None => self.guest_path(cfg, credential, t),
        }
    }

    fn deadbolt_blocks(&self, credential: &CredentialPayload) -> bool {
        self.deadbolt_engaged && !credential.deadbolt_override
    }

    /// Step 5.
    fn guest_path(
        &mut self,
        cfg: &LockConfig,
        credential: &CredentialPayload,
        t: UnixSeconds,
    ) -> Outcome {
        let grant = credential.grant_for(&cfg.lock_id);
        // Sequence semantics only on reservation-capable locks, for grants that carry one.
        let presented = if cfg.reservation_capable {
            grant.and_then(|g| g.sequence)
        } else {
            None
        };
        let order = presented.map(|value| (value, sequence_ahead(self.guest_sequence, value)));
        let newer_within = match order {
            Some((_, SequenceOrder::Ahead(distance))) => distance <= cfg.look_ahead,
            _ => false,
        };

        // Guest-cancel: everything but a strictly newer credential within the look-ahead.
        if self.guest_cancelled && !newer_within {
            return Outcome::reject(Reason::GuestCancelled);
        }
        if grant.is_none() {
            return Outcome::reject(Reason::WrongRoom);
        }
        if let Some(reason) = window_violation(credential, t) {
            if cfg.invalid_credentials_advance && newer_within && !self.deadbolt_blocks(credential)
            {
                if let Some((value, _)) = order {
                    self.adopt_guest(value, credential.new_key_time);
                    return Outcome {
                        granted: false,
                        reason,
                        overrode: true,
                    };
                }
            }
            return Outcome::reject(reason);
        }

        let Some((value, order)) = order else {
            // Common door, or no sequence for this lock: lock listed + window only.
            if self.deadbolt_blocks(credential) {
                return Outcome::reject(Reason::Deadbolt);
            }
            return Outcome::open(Reason::Granted);
        };

        match order {
            SequenceOrder::Behind => Outcome::reject(Reason::Superseded),
            SequenceOrder::Ahead(distance) if distance > cfg.look_ahead => {
                Outcome::reject(Reason::OutOfWindow)
            }
            // A new key presented with the deadbolt engaged neither opens nor overrides.
            _ if self.deadbolt_blocks(credential) => Outcome::reject(Reason::Deadbolt),
            SequenceOrder::Equal => Outcome::open(Reason::Joined),
            SequenceOrder::Ahead(_) => {
                self.adopt_guest(value, credential.new_key_time);
                Outcome {
                    granted: true,
                    reason: Reason::Overridden,
                    overrode: true,
                }
            }
        }
    }

    /// Step 6: lock listed, shift covers `t`, the level's code current. Never touches guest
    /// state.
    fn staff_path(
        &mut self,
        cfg: &LockConfig,
        credential: &CredentialPayload,
        level: &str,
        t: UnixSeconds,
    ) -> Outcome {
        let Some(grant) = credential.grant_for(&cfg.lock_id) else {
            return Outcome::reject(Reason::WrongRoom);
        };
        if let Some(reason) = window_violation(credential, t) {
            return Outcome::reject(reason);
        }
        let mut adopt = None;
        if let Some(value) = grant.sequence {
            match self.staff_sequences.get(level) {
                // First code seen for this level: accept and store it.
                None => adopt = Some(value),
                Some(&stored) => match sequence_ahead(stored, value) {
                    SequenceOrder::Behind => return Outcome::reject(Reason::StaffSuperseded),
                    SequenceOrder::Equal => {}
                    SequenceOrder::Ahead(distance) if distance <= cfg.look_ahead => {
                        adopt = Some(value);
                    }
                    SequenceOrder::Ahead(_) => return Outcome::reject(Reason::OutOfWindow),
                },
            }
        }
        if self.deadbolt_blocks(credential) {
            return Outcome::reject(Reason::Deadbolt);
        }
        if let Some(value) = adopt {
            self.staff_sequences.insert(level.to_owned(), value);
        }
        Outcome::open(Reason::Granted)
    }

    fn adopt_guest(&mut self, value: Sequence, new_key_time: UnixSeconds) {
        self.guest_sequence = value;
        self.last_new_key_at = Some(new_key_time);
        self.guest_cancelled = false;
    }

    fn record(&mut self, cfg: &LockConfig, record: AuditRecord) {
        self.audit.push_back(record);
        while self.audit.len() > cfg.audit_capacity {
            self.audit.pop_front();
        }
    }
}
