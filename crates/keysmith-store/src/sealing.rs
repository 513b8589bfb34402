//! Envelope encryption of everything the store keeps: every record's value
//! (keys with their credentials, idempotency answers, reservations, audit
//! records, the drivers' own state, which holds PINs and vendor secrets) is
//! sealed with XChaCha20-Poly1305 under a data key, and each data key is
//! kept wrapped by the key-encryption key that keysmith reads from a file or
//! the environment named in its configuration, never from the data
//! directory.
//!
//! A sealed value is `[2][data key id: u32][nonce: 24 bytes][ciphertext]`.
//! The associated data is the record's own path in the tree, so a sealed
//! value copied under another record (another key, property or field) does
//! not open. Nonces are random: XChaCha20's 192-bit nonces make collisions
//! negligible at any number of records.
//!
//! Values written before sealing existed start with `1` (plain postcard) and
//! are read as they are until the upgrade to layout 6 seals them.
use std::{collections::BTreeMap, fmt, path::Path, sync::Arc};

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use keysmith_core::{error::reasons, Error, Result};
use parking_lot::RwLock;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::codec::path;

/// The first byte of a sealed value.
pub const SEALED: u8 = 2;
/// The first byte of a value written before sealing (plain postcard).
pub const PLAIN: u8 = 1;
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const HEADER: usize = 1 + 4 + NONCE_BYTES;

/// A key-encryption key: 32 random bytes, with the id that wrapped data
/// keys name it by.
#[derive(Clone)]
pub struct KeyEncryptionKey {
    id: String,
    key: [u8; KEY_BYTES],
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// A key from its text form: the base64 of 32 bytes, surrounding
    /// whitespace ignored (as `keysmith encryption generate-key` writes).
    pub fn from_text(id: &str, text: &str) -> Result<Self> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| key_error(id, "is not base64"))?;
        let key: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| key_error(id, "is not 32 bytes (base64 of 32 random bytes)"))?;
        if id.is_empty() {
            return Err(key_error(id, "has no id"));
        }
        Ok(Self {
            id: id.to_owned(),
            key,
        })
    }

    /// A new random key.
    pub fn generate(id: &str) -> Self {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self {
            id: id.to_owned(),
            key,
        }
    }

    /// The text form to keep in a key file.
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    /// Reads a key file.
    pub fn from_file(id: &str, file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| key_error(id, &format!("cannot be read from {}: {e}", file.display())))?;
        Self::from_text(id, &text)
    }

    /// Writes a new key file readable by its owner only; refuses to replace
    /// one.
    pub fn write_new_file(&self, file: &Path) -> Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options.open(file).map_err(|e| {
            key_error(
                &self.id,
                &format!("cannot be created at {}: {e}", file.display()),
            )
        })?;
        writeln!(out, "{}", self.to_text())
            .and_then(|_| out.sync_all())
            .map_err(|e| key_error(&self.id, &format!("cannot be written: {e}")))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fixed key known to everyone, for tests only.
    pub fn insecure_for_tests() -> Self {
        Self {
            id: "insecure-test-key".into(),
            key: [7; KEY_BYTES],
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.key).into())
    }
}

fn key_error(id: &str, what: &str) -> Error {
    Error::new(
        keysmith_core::ErrorKind::FailedPrecondition,
        reasons::KEY_ENCRYPTION_KEY_INVALID,
        format!("the key-encryption key {id:?} {what}"),
    )
}

/// The key-encryption keys keysmith is given: the current one, which wraps
/// every data key, and earlier ones that may still wrap some (a rotation
/// under way).
#[derive(Clone, Debug)]
pub struct KeyRing {
    pub current: KeyEncryptionKey,
    pub previous: Vec<KeyEncryptionKey>,
}

impl KeyRing {
    pub fn new(current: KeyEncryptionKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    fn find(&self, id: &str) -> Option<&KeyEncryptionKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

/// A data key as stored: wrapped by a key-encryption key.
#[derive(Serialize, Deserialize)]
struct WrappedDataKey {
    kek_id: String,
    nonce: [u8; NONCE_BYTES],
    wrapped: Vec<u8>,
}

/// Where the data keys are kept, in the tree.
pub fn data_key_path(id: u32) -> Vec<u8> {
    path(crate::layout::META, &[b"dek", &id.to_be_bytes()])
}

pub fn data_key_prefix() -> Vec<u8> {
    path(crate::layout::META, &[b"dek"])
}

pub fn current_data_key_path() -> Vec<u8> {
    path(crate::layout::META, &[b"dek-current"])
}

fn wrap_aad(id: u32) -> Vec<u8> {
    [&b"keysmith data key "[..], &id.to_be_bytes()].concat()
}

/// The data keys in use, and which one seals new values.
struct Keys {
    current: u32,
    ciphers: BTreeMap<u32, Arc<XChaCha20Poly1305>>,
    raw: BTreeMap<u32, [u8; KEY_BYTES]>,
    ring: KeyRing,
}

/// Records to store, path and value.
pub type Writes = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads a shared store's data keys as it keeps them (each id with its
/// wrapped form, and the current one's id): how a sealer learns a data key
/// another process made (see [`Sealer::load_unknown_keys_from`]).
pub type KeyLoader = Arc<dyn Fn() -> Result<(Vec<(u32, Vec<u8>)>, Option<u32>)> + Send + Sync>;

/// Seals and opens record values.
pub struct Sealer {
    keys: RwLock<Keys>,
    /// Where to look for a data key a value names and this sealer does not
    /// hold: set for a store that several processes share.
    loader: RwLock<Option<KeyLoader>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

/// What [`Sealer::open_keys`] found: the sealer, and the data keys to
/// store (id and wrapped form).
pub struct OpenedKeys {
    pub sealer: Arc<Sealer>,
    /// Data keys that were wrapped with a previous key-encryption key,
    /// wrapped now with the current one.
    pub rewrapped: Vec<(u32, Vec<u8>)>,
    /// The first data key of a store that had none, which is to be the
    /// current one.
    pub created: Option<(u32, Vec<u8>)>,
}

/// What [`Sealer::open_store`] found, for the logs.
pub struct Opened {
    pub sealer: Arc<Sealer>,
    /// Data keys that were wrapped with a previous key and are now wrapped
    /// with the current one: the writes that store it.
    pub rewrapped: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the store had no data key yet (a new store, or one written
    /// before sealing): the writes that store the first one.
    pub created: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Sealer {
    /// Reads the store's data keys from the store's tree and unwraps them with
    /// `ring` (see [`Sealer::open_keys`]).
    pub fn open_store(tree: &crate::kv::Tree, ring: KeyRing) -> Result<Opened> {
        let mut stored = Vec::new();
        for entry in tree.scan_prefix(data_key_prefix()) {
            let (k, v) = entry.map_err(crate::store_error)?;
            let Some(id) = k
                .get(k.len() - 4..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
            else {
                continue;
            };
            stored.push((id, v.to_vec()));
        }
        let current = tree
            .get(current_data_key_path())
            .map_err(crate::store_error)?
            .and_then(|v| <[u8; 4]>::try_from(&v[..]).ok())
            .map(u32::from_be_bytes);
        let opened = Self::open_keys(stored, current, ring)?;
        let as_writes = |keys: Vec<(u32, Vec<u8>)>| {
            keys.into_iter()
                .map(|(id, wrapped)| (data_key_path(id), wrapped))
                .collect::<Vec<_>>()
        };
        let mut created = Vec::new();
        if let Some((id, wrapped)) = opened.created {
            created.push((data_key_path(id), wrapped));
            created.push((current_data_key_path(), id.to_be_bytes().to_vec()));
        }
        Ok(Opened {
            sealer: opened.sealer,
            rewrapped: as_writes(opened.rewrapped),
            created,
        })
    }

    /// Unwraps a store's data keys, as it keeps them (each id with its
    /// wrapped form, and the id of the one that seals new values), with
    /// `ring`; any store keeps them this way, the embedded store's tree or a database. A
    /// data key wrapped with a key the ring does not hold, or that does not
    /// open with it, is refused, naming the key. A store with no current
    /// data key gets a new one, to store.
    pub fn open_keys(
        stored: Vec<(u32, Vec<u8>)>,
        current: Option<u32>,
        ring: KeyRing,
    ) -> Result<OpenedKeys> {
        let mut ciphers = BTreeMap::new();
        let mut raw = BTreeMap::new();
        let mut rewrapped = Vec::new();
        for (id, v) in stored {
            let (key, kek_id) = unwrap(&ring, id, &v)?;
            if kek_id != ring.current.id {
                rewrapped.push((id, wrap(&ring.current, id, &key)?));
            }
            ciphers.insert(id, Arc::new(XChaCha20Poly1305::new((&key).into())));
            raw.insert(id, key);
        }
        let mut created = None;
        let current = match current {
            Some(id) => id,
            None => {
                let id = ciphers.keys().max().map_or(1, |m| m + 1);
                let key = new_data_key();
                created = Some((id, wrap(&ring.current, id, &key)?));
                ciphers.insert(id, Arc::new(XChaCha20Poly1305::new((&key).into())));
                raw.insert(id, key);
                id
            }
        };
        if !ciphers.contains_key(&current) {
            return Err(Error::internal(format!(
                "the store names data key {current} as current but does not hold it"
            )));
        }
        Ok(OpenedKeys {
            sealer: Arc::new(Self {
                keys: RwLock::new(Keys {
                    current,
                    ciphers,
                    raw,
                    ring,
                }),
                loader: RwLock::new(None),
            }),
            rewrapped,
            created,
        })
    }

    /// Seals `plain` as the value of the record at `path`.
    pub fn seal(&self, path: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let keys = self.keys.read();
        let cipher = &keys.ciphers[&keys.current];
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: path,
                },
            )
            .map_err(|_| Error::internal("sealing a record failed"))?;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.push(SEALED);
        out.extend_from_slice(&keys.current.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens the sealed value of the record at `path`; a value written
    /// before sealing is returned as it is (its first byte is [`PLAIN`]).
    pub fn open(&self, path: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        match value.first() {
            Some(&PLAIN) => Ok(value.to_vec()),
            Some(&SEALED) if value.len() >= HEADER => {
                let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
                let known = self.keys.read().ciphers.get(&id).cloned();
                let cipher = match known {
                    Some(cipher) => cipher,
                    None => self.load_unknown(id)?,
                };
                cipher
                    .decrypt(
                        XNonce::from_slice(&value[5..HEADER]),
                        Payload {
                            msg: &value[HEADER..],
                            aad: path,
                        },
                    )
                    .map_err(|_| {
                        Error::internal(
                            "a record does not open: it was altered, or moved from another record",
                        )
                    })
            }
            _ => Err(Error::internal("a record of an unknown form")),
        }
    }

    /// The data key a sealed value names; None for a plain one.
    pub fn key_of(value: &[u8]) -> Option<u32> {
        (value.first() == Some(&SEALED) && value.len() >= HEADER)
            .then(|| u32::from_be_bytes([value[1], value[2], value[3], value[4]]))
    }

    /// The data key that seals new values.
    pub fn current(&self) -> u32 {
        self.keys.read().current
    }

    /// The ids of the data keys the store holds.
    pub fn data_keys(&self) -> Vec<u32> {
        self.keys.read().ciphers.keys().copied().collect()
    }

    /// The id of the key-encryption key that wraps the data keys.
    pub fn key_encryption_key_id(&self) -> String {
        self.keys.read().ring.current.id.clone()
    }

    /// Wraps every data key with `new`, which becomes the current
    /// key-encryption key: the writes to store, then [`Sealer::use_ring`].
    pub fn rewrap_all(&self, new: &KeyEncryptionKey) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let keys = self.keys.read();
        keys.raw
            .iter()
            .map(|(id, key)| Ok((data_key_path(*id), wrap(new, *id, key)?)))
            .collect()
    }

    /// Makes `new` the current key-encryption key, the old one a previous.
    pub fn use_key_encryption_key(&self, new: KeyEncryptionKey) {
        let mut keys = self.keys.write();
        let old = std::mem::replace(&mut keys.ring.current, new);
        keys.ring.previous.retain(|k| k.id != old.id);
        keys.ring.previous.push(old);
    }

    /// A new data key, wrapped with the current key-encryption key: the
    /// writes that store it and make it current, then
    /// [`Sealer::use_data_key`].
    pub fn new_data_key(&self) -> Result<(u32, [u8; KEY_BYTES], Writes)> {
        let keys = self.keys.read();
        let id = keys.ciphers.keys().max().map_or(1, |m| m + 1);
        let key = new_data_key();
        let writes = vec![
            (data_key_path(id), wrap(&keys.ring.current, id, &key)?),
            (current_data_key_path(), id.to_be_bytes().to_vec()),
        ];
        Ok((id, key, writes))
    }

    /// Seals new values with data key `id` from now on.
    pub fn use_data_key(&self, id: u32, key: [u8; KEY_BYTES]) {
        let mut keys = self.keys.write();
        keys.ciphers
            .insert(id, Arc::new(XChaCha20Poly1305::new((&key).into())));
        keys.raw.insert(id, key);
        keys.current = id;
    }

    /// Forgets data key `id` (no record uses it any more).
    pub fn forget_data_key(&self, id: u32) {
        let mut keys = self.keys.write();
        if keys.current != id {
            keys.ciphers.remove(&id);
            keys.raw.remove(&id);
        }
    }

    // What a store that several processes share needs: another process may
    // make, rewrap or delete data keys, and this one learns of it.

    /// From now on, a value sealed with a data key this sealer does not
    /// hold makes it read the store's data keys with `loader` (once per
    /// such value) before it gives up: another process made that key.
    pub fn load_unknown_keys_from(&self, loader: KeyLoader) {
        *self.loader.write() = Some(loader);
    }

    /// The data key `id`, after reading the store's data keys again.
    fn load_unknown(&self, id: u32) -> Result<Arc<XChaCha20Poly1305>> {
        let loader = self.loader.read().clone();
        if let Some(loader) = loader {
            let (stored, current) = loader()?;
            self.learn(stored, current)?;
        }
        self.keys.read().ciphers.get(&id).cloned().ok_or_else(|| {
            Error::internal(format!(
                "a record is sealed with data key {id}, which the store does not hold"
            ))
        })
    }

    /// Brings the data keys in line with the store's, as it keeps them
    /// (see [`Sealer::open_keys`]): a key newer than the current one that
    /// this sealer does not hold is unwrapped with its key-encryption keys
    /// (refused, naming the key that wraps it, when it holds none that
    /// does), one the store no longer keeps is forgotten, and `current`,
    /// when newer, seals new values. Whether anything changed.
    pub fn learn(&self, stored: Vec<(u32, Vec<u8>)>, current: Option<u32>) -> Result<bool> {
        let (ring, newest_held) = {
            let keys = self.keys.read();
            (keys.ring.clone(), keys.current)
        };
        let held = self.data_keys();
        let mut new = Vec::new();
        for (id, wrapped) in &stored {
            // Every key older than the current one was read at the start:
            // one not held any more was forgotten, and a reading older than
            // that does not bring it back.
            if !held.contains(id) && *id > newest_held {
                new.push((*id, unwrap(&ring, *id, wrapped)?.0));
            }
        }
        let mut keys = self.keys.write();
        let mut changed = !new.is_empty();
        for (id, key) in new {
            keys.ciphers
                .insert(id, Arc::new(XChaCha20Poly1305::new((&key).into())));
            keys.raw.insert(id, key);
        }
        // Data key ids only grow: a read older than the last rotation
        // this sealer took part in never takes it back.
        if let Some(current) = current.filter(|c| *c > keys.current && keys.ciphers.contains_key(c))
        {
            keys.current = current;
            changed = true;
        }
        let current = keys.current;
        let gone: Vec<u32> = keys
            .ciphers
            .keys()
            .copied()
            .filter(|id| *id != current && !stored.iter().any(|(s, _)| s == id))
            .collect();
        for id in &gone {
            keys.ciphers.remove(id);
            keys.raw.remove(id);
        }
        Ok(changed || !gone.is_empty())
    }

    /// The id of the key-encryption key that wraps a stored data key.
    pub fn wrapped_with(wrapped: &[u8]) -> Result<String> {
        let stored: WrappedDataKey = postcard::from_bytes(wrapped)
            .map_err(|e| Error::internal(format!("a data key record: {e}")))?;
        Ok(stored.kek_id)
    }

    /// A new data key to be stored as `id`: the key, and its wrapped form
    /// (by the current key-encryption key); then [`Sealer::use_data_key`].
    pub fn make_data_key(&self, id: u32) -> Result<([u8; KEY_BYTES], Vec<u8>)> {
        let key = new_data_key();
        let wrapped = wrap(&self.keys.read().ring.current, id, &key)?;
        Ok((key, wrapped))
    }

    /// The data keys `ids` wrapped with `new` (each must be held): the
    /// wrapped forms to store, then [`Sealer::use_key_encryption_key`].
    pub fn rewrap(&self, ids: &[u32], new: &KeyEncryptionKey) -> Result<Vec<(u32, Vec<u8>)>> {
        let keys = self.keys.read();
        ids.iter()
            .map(|id| {
                let key = keys.raw.get(id).ok_or_else(|| {
                    Error::internal(format!("data key {id} is not held, to rewrap"))
                })?;
                Ok((*id, wrap(new, *id, key)?))
            })
            .collect()
    }
}

fn unwrap(ring: &KeyRing, id: u32, wrapped: &[u8]) -> Result<([u8; KEY_BYTES], String)> {
    let stored: WrappedDataKey = postcard::from_bytes(wrapped)
        .map_err(|e| Error::internal(format!("a data key record: {e}")))?;
    let kek = ring.find(&stored.kek_id).ok_or_else(|| {
        refused(format!(
            "the store's data keys are wrapped with the key-encryption key {:?}, which \
             this configuration does not give (storage.encryption.key_id is {:?}); give \
             that key, as the current one or in storage.encryption.previous",
            stored.kek_id, ring.current.id
        ))
    })?;
    let key = kek
        .cipher()
        .decrypt(
            XNonce::from_slice(&stored.nonce),
            Payload {
                msg: &stored.wrapped,
                aad: &wrap_aad(id),
            },
        )
        .map_err(|_| {
            refused(format!(
                "the key-encryption key given as {:?} does not open this store's data \
                 keys: it is not the key they were wrapped with (a wrong key file?)",
                kek.id
            ))
        })?;
    let key: [u8; KEY_BYTES] = key
        .try_into()
        .map_err(|_| Error::internal("a data key of the wrong length"))?;
    Ok((key, stored.kek_id))
}

fn new_data_key() -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    key
}

fn wrap(kek: &KeyEncryptionKey, id: u32, key: &[u8; KEY_BYTES]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let wrapped = kek
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: key,
                aad: &wrap_aad(id),
            },
        )
        .map_err(|_| Error::internal("wrapping a data key failed"))?;
    postcard::to_stdvec(&WrappedDataKey {
        kek_id: kek.id.clone(),
        nonce,
        wrapped,
    })
    .map_err(|e| Error::internal(format!("encoding a data key: {e}")))
}

fn refused(message: String) -> Error {
    Error::new(
        keysmith_core::ErrorKind::FailedPrecondition,
        reasons::KEY_ENCRYPTION_KEY_INVALID,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Arc<Sealer> {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::kv::open(
            dir.path(),
            crate::kv::Memory {
                cache_bytes: 1 << 20,
                write_buffer_bytes: 1 << 20,
            },
        )
        .unwrap();
        let tree = db.open_tree("t").unwrap();
        Sealer::open_store(&tree, KeyRing::new(KeyEncryptionKey::generate("k1")))
            .unwrap()
            .sealer
    }

    #[test]
    fn a_sealed_value_opens_only_at_its_own_path_and_unaltered() {
        let s = sealer();
        let sealed = s.seal(b"K/hotel/k1", b"PIN 482913").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"482913"), "no plaintext");
        assert_eq!(s.open(b"K/hotel/k1", &sealed).unwrap(), b"PIN 482913");
        assert!(
            s.open(b"K/hotel/k2", &sealed).is_err(),
            "moved to another record"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(s.open(b"K/hotel/k1", &altered).is_err());
        assert_eq!(Sealer::key_of(&sealed), Some(s.current()));
    }

    /// Two processes on one shared store: one makes a data key, the other
    /// reads it when a value names it, and forgets the old key once the
    /// store does, whatever older reading comes later.
    #[test]
    fn a_sealer_learns_a_data_key_another_made_and_forgets_a_deleted_one() {
        let ring = KeyRing::new(KeyEncryptionKey::generate("k1"));
        let opened = Sealer::open_keys(Vec::new(), None, ring.clone()).unwrap();
        let (first, first_wrapped) = opened.created.unwrap();
        let a = opened.sealer;
        let b = Sealer::open_keys(vec![(first, first_wrapped.clone())], Some(first), ring)
            .unwrap()
            .sealer;
        let second = first + 1;
        let (key, second_wrapped) = a.make_data_key(second).unwrap();
        a.use_data_key(second, key);
        let sealed = a.seal(b"K/hotel/k1", b"PIN 482913").unwrap();
        assert!(
            b.open(b"K/hotel/k1", &sealed).is_err(),
            "no loader: unknown"
        );

        let both = vec![(first, first_wrapped), (second, second_wrapped.clone())];
        let stored = both.clone();
        b.load_unknown_keys_from(Arc::new(move || Ok((stored.clone(), Some(second)))));
        assert_eq!(b.open(b"K/hotel/k1", &sealed).unwrap(), b"PIN 482913");
        assert_eq!(b.current(), second, "seals with the new key from now on");

        assert!(b
            .learn(vec![(second, second_wrapped)], Some(second))
            .unwrap());
        assert_eq!(b.data_keys(), [second]);
        assert!(!b.learn(both, Some(first)).unwrap(), "an older reading");
        assert_eq!((b.data_keys(), b.current()), (vec![second], second));
    }

    #[test]
    fn a_key_file_round_trips_and_a_bad_one_is_refused_by_name() {
        let k = KeyEncryptionKey::generate("k1");
        let back = KeyEncryptionKey::from_text("k1", &format!("  {}\n", k.to_text())).unwrap();
        assert_eq!(back.key, k.key);
        let err = KeyEncryptionKey::from_text("k9", "c2hvcnQ=").unwrap_err();
        assert!(err.message().contains("\"k9\""), "{}", err.message());
        assert!(
            !format!("{k:?}").contains(&k.to_text()),
            "Debug hides the key"
        );
    }
}
