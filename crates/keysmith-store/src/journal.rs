//! The audit log as an append-only journal beside the engine: segment files
//! under `<data dir>/audit`, each a run of frames, one frame per committer
//! cycle that wrote audit records.
//!
//! A frame is `[length: u32][first id: 16][last id: 16][sealed records]`:
//! the length of what follows it, the least and greatest audit id (ULIDs,
//! which are not secret: the engine's paths hold them too) of the frame's
//! records, then the records (schema byte and postcard) sealed like every
//! value of the store, with the segment, the frame's offset and both ids as
//! associated data. The seal's tag is the frame's checksum: a frame that
//! was altered, torn or moved does not open.
//!
//! Durability rides on the engine's: the committer appends a cycle's frame and
//! syncs it before it applies the cycle's engine batch, which records where
//! the journal ends ([`end_path`]); that batch is then flushed. So what
//! the engine holds says which frames belong to durable commits, and opening the
//! store cuts the journal back to it: a frame whose batch never became
//! durable (a crash, a failed write) is dropped with it, a torn tail too.
//!
//! Retention hides the records up to a mark ([`purged_path`], in the engine) and
//! deletes the segments wholly before it. Records are read by scanning the
//! segments that may hold ids after a page's start, decrypting only the
//! frames whose id range reaches past it.
use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use keysmith_core::{audit::AuditRecord, error::reasons, Error, Result};
use parking_lot::Mutex;

use crate::{
    codec::{decode, encode, path},
    layout::META,
    sealing::Sealer,
};

/// A segment is closed once it holds this many bytes: retention frees
/// space a segment at a time, and a page reads a segment or two.
pub const SEGMENT_BYTES: u64 = 2 << 20;
const FRAME_HEADER: usize = 4 + 16 + 16;
/// The directory of the journal, under the data directory.
pub const DIR: &str = "audit";

/// Where the journal's durable part ends: a segment and the length of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    pub fn encode(self) -> Vec<u8> {
        [self.segment.to_be_bytes(), self.offset.to_be_bytes()].concat()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let segment = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let offset = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self { segment, offset })
    }
}

/// The engine fact that says where the journal's committed part ends.
pub fn end_path() -> Vec<u8> {
    path(META, &[b"audit-journal-end"])
}

/// The engine fact holding the greatest audit id retention has purged.
pub fn purged_path() -> Vec<u8> {
    path(META, &[b"audit-purged-through"])
}

/// What the journal knows of a segment without reading it.
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// Its committed length.
    len: u64,
    /// The least and greatest id of its records (`u128::MAX`, 0 when empty).
    first: u128,
    last: u128,
}

struct Inner {
    segments: BTreeMap<u64, Segment>,
    /// The segment appended to, opened for writing.
    file: Option<(u64, File)>,
    /// Records with ids up to this one are purged (0: none).
    purged_through: u128,
}

pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn io(what: &str, at: &Path, e: std::io::Error) -> Error {
    Error::unavailable(
        reasons::STORE_UNAVAILABLE,
        format!("audit journal: cannot {what} {}: {e}", at.display()),
    )
}

fn segment_name(no: u64) -> String {
    format!("{no:016x}.seg")
}

/// An audit id as the number it is; an id that is not a ULID sorts first.
pub fn id_number(id: &str) -> u128 {
    ulid::Ulid::from_string(id).map_or(0, u128::from)
}

/// A frame's associated data: where it is and what ids it claims.
fn frame_aad(segment: u64, offset: u64, first: u128, last: u128) -> Vec<u8> {
    [
        &b"keysmith audit journal "[..],
        &segment.to_be_bytes(),
        &offset.to_be_bytes(),
        &first.to_be_bytes(),
        &last.to_be_bytes(),
    ]
    .concat()
}

/// One frame as read from a segment.
struct Frame<'a> {
    offset: u64,
    first: u128,
    last: u128,
    sealed: &'a [u8],
}

/// The whole frames of `bytes`, in order; stops at a torn one.
fn frames(bytes: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = bytes.get(at..)?;
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let body = rest.get(4..4 + len)?;
        if len < 32 {
            return None;
        }
        let frame = Frame {
            offset: at as u64,
            first: u128::from_be_bytes(body[..16].try_into().ok()?),
            last: u128::from_be_bytes(body[16..32].try_into().ok()?),
            sealed: &body[32..],
        };
        at += 4 + len;
        Some(frame)
    })
}

impl Journal {
    /// Opens the journal in `data_dir`, cut back to `end` (what the engine says
    /// is committed; `None`: nothing is), with the records up to
    /// `purged_through` hidden.
    pub fn open(data_dir: &Path, end: Option<Position>, purged_through: u128) -> Result<Self> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let journal = Self {
            dir,
            inner: Mutex::new(Inner {
                segments: BTreeMap::new(),
                file: None,
                purged_through,
            }),
        };
        journal.recover(end)?;
        Ok(journal)
    }

    fn segment_path(&self, no: u64) -> PathBuf {
        self.dir.join(segment_name(no))
    }

    /// Cuts the journal back to `end`: later segments go, the last one is
    /// truncated; then reads every segment's frame headers.
    pub fn recover(&self, end: Option<Position>) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.file = None;
        inner.segments.clear();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io("read", &self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(no) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            found.push(no);
        }
        found.sort_unstable();
        for no in found {
            let at = self.segment_path(no);
            let keep = match end {
                Some(end) if no < end.segment => None,
                Some(end) if no == end.segment => Some(end.offset),
                _ => Some(0),
            };
            if keep == Some(0) && end.is_none_or(|e| no != e.segment) {
                std::fs::remove_file(&at).map_err(|e| io("remove", &at, e))?;
                continue;
            }
            if let Some(len) = keep {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&at)
                    .map_err(|e| io("open", &at, e))?;
                file.set_len(len).map_err(|e| io("truncate", &at, e))?;
                file.sync_all().map_err(|e| io("sync", &at, e))?;
            }
            let bytes = std::fs::read(&at).map_err(|e| io("read", &at, e))?;
            let mut segment = Segment {
                len: bytes.len() as u64,
                first: u128::MAX,
                last: 0,
            };
            for frame in frames(&bytes) {
                segment.first = segment.first.min(frame.first);
                segment.last = segment.last.max(frame.last);
            }
            inner.segments.insert(no, segment);
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Appends one frame holding `records` and syncs it; returns where the
    /// journal ends now, for the committer to record in the engine.
    pub fn append(&self, sealer: &Sealer, records: &[AuditRecord]) -> Result<Position> {
        let mut inner = self.inner.lock();
        let (no, len) = match inner.segments.last_key_value() {
            Some((no, s)) if s.len < SEGMENT_BYTES => (*no, s.len),
            Some((no, _)) => (no + 1, 0),
            None => (1, 0),
        };
        if inner.file.as_ref().is_none_or(|(open, _)| *open != no) {
            let at = self.segment_path(no);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&at)
                .map_err(|e| io("open", &at, e))?;
            if len == 0 {
                // A new segment's name must survive a crash too.
                inner.segments.insert(
                    no,
                    Segment {
                        len: 0,
                        first: u128::MAX,
                        last: 0,
                    },
                );
                sync_dir(&self.dir)?;
            }
            inner.file = Some((no, file));
        }
        let first = records.iter().map(|r| id_number(&r.id)).min().unwrap_or(0);
        let last = records.iter().map(|r| id_number(&r.id)).max().unwrap_or(0);
        let sealed = sealer.seal(&frame_aad(no, len, first, last), &encode(&records)?)?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + sealed.len());
        frame.extend_from_slice(&((32 + sealed.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&first.to_be_bytes());
        frame.extend_from_slice(&last.to_be_bytes());
        frame.extend_from_slice(&sealed);
        let at = self.segment_path(no);
        let (_, file) = inner.file.as_mut().expect("opened above");
        file.write_all(&frame)
            .and_then(|_| file.sync_data())
            .map_err(|e| io("append to", &at, e))?;
        let segment = inner.segments.get_mut(&no).expect("inserted above");
        segment.len += frame.len() as u64;
        segment.first = segment.first.min(first);
        segment.last = segment.last.max(last);
        Ok(Position {
            segment: no,
            offset: segment.len,
        })
    }

    /// The records of a segment, decrypted, from the frames whose ids reach
    /// past `after`. A segment purged meanwhile reads as empty.
    fn read_segment(
        &self,
        sealer: &Sealer,
        no: u64,
        len: u64,
        after: u128,
    ) -> Result<Vec<AuditRecord>> {
        let at = self.segment_path(no);
        let mut bytes = match std::fs::read(&at) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &at, e)),
        };
        bytes.truncate(len as usize);
        let mut out = Vec::new();
        for frame in frames(&bytes) {
            if frame.last <= after && after != 0 {
                continue;
            }
            if Sealer::key_of(frame.sealed).is_none() {
                return Err(Error::internal("an audit journal frame is not sealed"));
            }
            let plain = sealer.open(
                &frame_aad(no, frame.offset, frame.first, frame.last),
                frame.sealed,
            )?;
            out.extend(decode::<Vec<AuditRecord>>(&plain)?);
        }
        Ok(out)
    }

    /// A property's records after `after` (exclusive) in id order, at most
    /// `limit`.
    pub fn page(
        &self,
        sealer: &Sealer,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        let (segments, purged_through) = {
            let inner = self.inner.lock();
            (inner.segments.clone(), inner.purged_through)
        };
        let after_number = after.map_or(0, id_number);
        let floor = after_number.max(purged_through);
        let mut page: Vec<AuditRecord> = Vec::new();
        for (no, segment) in segments {
            if segment.len == 0 || (segment.last <= floor && floor != 0) {
                continue;
            }
            // Once the page is full, a segment whose first id comes after
            // its last record has nothing for it (ids grow with time, so
            // that is every later segment but the few a late record
            // reaches back from).
            if page.len() >= limit
                && page
                    .last()
                    .is_some_and(|r| id_number(&r.id) < segment.first)
            {
                continue;
            }
            for record in self.read_segment(sealer, no, segment.len, floor)? {
                if record.property_id != property_id
                    || after.is_some_and(|a| record.id.as_str() <= a)
                    || (purged_through != 0 && id_number(&record.id) <= purged_through)
                {
                    continue;
                }
                page.push(record);
            }
            page.sort_by(|a, b| a.id.cmp(&b.id));
            page.truncate(limit);
        }
        Ok(page)
    }

    /// The mark that purges at most `limit` of the records with ids before
    /// `before`, and how many it purges; `None` when none are left.
    pub fn purge_mark(
        &self,
        sealer: &Sealer,
        before: u128,
        limit: usize,
    ) -> Result<Option<(u128, usize)>> {
        let (segments, purged_through) = {
            let inner = self.inner.lock();
            (inner.segments.clone(), inner.purged_through)
        };
        let mut ids: Vec<u128> = Vec::new();
        for (no, segment) in segments {
            if segment.len == 0 || segment.last <= purged_through || segment.first >= before {
                continue;
            }
            // Enough found already, all before anything this segment holds.
            if ids.len() >= limit && ids.last().is_some_and(|last| *last < segment.first) {
                continue;
            }
            for record in self.read_segment(sealer, no, segment.len, purged_through)? {
                let id = id_number(&record.id);
                if id > purged_through && id < before {
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            ids.truncate(limit);
        }
        Ok(ids.last().map(|last| (*last, ids.len())))
    }

    /// Hides the records up to `through` (its mark is durable in the engine) and
    /// deletes the segments every record of which it hides, but the one
    /// appended to.
    pub fn purge_through(&self, through: u128) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.purged_through = inner.purged_through.max(through);
        let newest = inner.segments.keys().next_back().copied();
        let gone: Vec<u64> = inner
            .segments
            .iter()
            .filter(|(no, s)| Some(**no) != newest && s.last <= inner.purged_through)
            .map(|(no, _)| *no)
            .collect();
        for no in gone {
            if inner.file.as_ref().is_some_and(|(open, _)| *open == no) {
                inner.file = None;
            }
            let at = self.segment_path(no);
            match std::fs::remove_file(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &at, e)),
            }
            inner.segments.remove(&no);
        }
        Ok(())
    }

    /// Seals again with the current data key every frame sealed with
    /// another: each such segment is rewritten into a new file that takes
    /// its place, so that the old bytes leave the disk. A frame keeps its
    /// length, so the committed positions stay as they are. Returns how
    /// many frames were sealed again.
    pub fn reseal(&self, sealer: &Sealer) -> Result<usize> {
        let numbers: Vec<u64> = self.inner.lock().segments.keys().copied().collect();
        let current = sealer.current();
        let mut resealed = 0;
        for no in numbers {
            // The committer waits while one segment is rewritten.
            let mut inner = self.inner.lock();
            let Some(segment) = inner.segments.get(&no).copied() else {
                continue;
            };
            let at = self.segment_path(no);
            let mut bytes = std::fs::read(&at).map_err(|e| io("read", &at, e))?;
            bytes.truncate(segment.len as usize);
            let mut out = Vec::with_capacity(bytes.len());
            let mut changed = 0;
            for frame in frames(&bytes) {
                let aad = frame_aad(no, frame.offset, frame.first, frame.last);
                let sealed = if Sealer::key_of(frame.sealed).is_some_and(|k| k != current) {
                    changed += 1;
                    sealer.seal(&aad, &sealer.open(&aad, frame.sealed)?)?
                } else {
                    frame.sealed.to_vec()
                };
                out.extend_from_slice(&((32 + sealed.len()) as u32).to_be_bytes());
                out.extend_from_slice(&frame.first.to_be_bytes());
                out.extend_from_slice(&frame.last.to_be_bytes());
                out.extend_from_slice(&sealed);
            }
            if changed == 0 {
                continue;
            }
            let fresh = self.dir.join(format!("{}.new", segment_name(no)));
            let mut file = File::create(&fresh).map_err(|e| io("create", &fresh, e))?;
            file.write_all(&out)
                .and_then(|_| file.sync_all())
                .map_err(|e| io("write", &fresh, e))?;
            std::fs::rename(&fresh, &at).map_err(|e| io("replace", &at, e))?;
            sync_dir(&self.dir)?;
            if inner.file.as_ref().is_some_and(|(open, _)| *open == no) {
                inner.file = None;
            }
            resealed += changed;
        }
        Ok(resealed)
    }

    /// Links every segment into `other_data_dir`'s journal directory: a
    /// rewrite of the store into a fresh directory keeps the journal.
    pub fn link_into(data_dir: &Path, other_data_dir: &Path) -> Result<()> {
        let from = data_dir.join(DIR);
        let to = other_data_dir.join(DIR);
        std::fs::create_dir_all(&to).map_err(|e| io("create", &to, e))?;
        let Ok(entries) = std::fs::read_dir(&from) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let target = to.join(entry.file_name());
            std::fs::hard_link(entry.path(), &target).map_err(|e| io("link", &target, e))?;
        }
        sync_dir(&to)
    }

    /// The bytes of the journal's files.
    pub fn bytes(data_dir: &Path) -> u64 {
        std::fs::read_dir(data_dir.join(DIR))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Makes the creation, removal or renaming of a file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", dir, e))
}

/// The purge mark as the engine stores it.
pub fn decode_mark(bytes: &[u8]) -> u128 {
    bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u128::from_be_bytes)
}
