//! Stores what keysmith remembers of the stays it keeps keys for: a record
//! per stay, a generation per stay, and the revocations a round decided
//! and has not yet seen through, in the 3RPMS driver-state tree.
//!
//! The records are keysmith's half of every reconciliation (3RPMS says what
//! the stays are, the records what keysmith did about them), so their keys
//! and encoding are data on disk: changing either needs a migration.
use std::{collections::BTreeMap, sync::Arc};

use jiff::civil::Date;
use keysmith_core::{store::DriverState, Error, Result};
use serde::{Deserialize, Serialize};

/// What keysmith remembers of a stay it keeps a key for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StayRecord {
    pub stay_id: String,
    pub room_setup_id: String,
    pub arrival: Date,
    pub departure: Date,
    /// keysmith's key; a split stay shares its key with the stay it came from.
    pub key_id: String,
    /// The 3RPMS room access key keysmith created for it, once published.
    pub rpms_key_id: Option<String>,
    /// A digest of the credential published with it, to notice when the
    /// lock driver's credential changes (a re-encoded QR code).
    pub published_digest: Option<[u8; 32]>,
}

/// Puts (`Some`) and deletes (`None`) for [`StayRecords::commit`], applied
/// together.
pub type Changes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// One hotel's stay records and generations.
#[derive(Clone)]
pub struct StayRecords {
    state: Arc<dyn DriverState>,
    property_id: String,
}

impl StayRecords {
    pub fn new(state: Arc<dyn DriverState>, property_id: &str) -> Self {
        Self {
            state,
            property_id: property_id.to_owned(),
        }
    }

    /// Every stay keysmith keeps a key for, by stay id.
    pub fn all(&self) -> Result<BTreeMap<String, StayRecord>> {
        self.state
            .scan_prefix(&record_prefix(&self.property_id))?
            .into_iter()
            .map(|(_, v)| decode::<StayRecord>(&v).map(|r| (r.stay_id.clone(), r)))
            .collect()
    }

    /// How many times keysmith has ended its key for a stay: a cancelled and
    /// re-activated stay gets a new key, not the revoked one replayed.
    pub fn generation(&self, stay_id: &str) -> Result<u32> {
        Ok(self
            .state
            .get(&generation_key(&self.property_id, stay_id))?
            .map(|v| decode::<u32>(&v))
            .transpose()?
            .unwrap_or(0))
    }

    /// Adds to `changes` the write of a record.
    pub fn put(&self, record: &StayRecord, changes: &mut Changes) -> Result<()> {
        changes.push((
            record_key(&self.property_id, &record.stay_id),
            Some(encode(record)?),
        ));
        Ok(())
    }

    /// Adds to `changes` the removal of a stay's record.
    pub fn remove(&self, stay_id: &str, changes: &mut Changes) {
        changes.push((record_key(&self.property_id, stay_id), None));
    }

    /// Adds to `changes` one more generation for a stay whose key ended.
    pub fn bump_generation(&self, stay_id: &str, changes: &mut Changes) -> Result<()> {
        let next = self.generation(stay_id)?.saturating_add(1);
        changes.push((
            generation_key(&self.property_id, stay_id),
            Some(encode(&next)?),
        ));
        Ok(())
    }

    /// Applies `changes` at once and waits until they are durable.
    pub async fn commit(&self, changes: Changes) -> Result<()> {
        self.state.apply(changes)?;
        self.state.sync().await
    }

    /// Adds to `changes` a revocation to see through: written with the end
    /// of the stay's record, so that a revocation that fails (a driver
    /// down, the key left `REVOKING`) or a crash before it is retried by
    /// every round until it is done, though no record names the key.
    pub fn put_pending_revocation(
        &self,
        key_id: &str,
        stay_id: &str,
        changes: &mut Changes,
    ) -> Result<()> {
        changes.push((
            pending_key(&self.property_id, key_id),
            Some(encode(&stay_id.to_owned())?),
        ));
        Ok(())
    }

    /// Adds to `changes` the end of a pending revocation.
    pub fn remove_pending_revocation(&self, key_id: &str, changes: &mut Changes) {
        changes.push((pending_key(&self.property_id, key_id), None));
    }

    /// Revocations not seen through yet: key id and the stay it was for.
    pub fn pending_revocations(&self) -> Result<Vec<(String, String)>> {
        let prefix = pending_prefix(&self.property_id);
        self.state
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(k, v)| {
                let key_id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                Ok((key_id, decode::<String>(&v)?))
            })
            .collect()
    }

    /// Forgets a 3RPMS key that 3RPMS deleted, on every record that held it,
    /// and returns those stays: each needs a new 3RPMS key.
    pub async fn forget_published_key(&self, rpms_key_id: &str) -> Result<Vec<String>> {
        let mut changes = Changes::new();
        let mut stays = Vec::new();
        for (stay_id, mut record) in self.all()? {
            if record.rpms_key_id.as_deref() == Some(rpms_key_id) {
                record.rpms_key_id = None;
                self.put(&record, &mut changes)?;
                stays.push(stay_id);
            }
        }
        self.commit(changes).await?;
        Ok(stays)
    }
}

// The property segment ends with NUL, which no property id contains, so that
// one property's prefix never covers another's ("a" and "a/stay").
fn record_prefix(property: &str) -> Vec<u8> {
    format!("sync/{property}\0stay/").into_bytes()
}

fn record_key(property: &str, stay_id: &str) -> Vec<u8> {
    let mut k = record_prefix(property);
    k.extend_from_slice(stay_id.as_bytes());
    k
}

fn generation_key(property: &str, stay_id: &str) -> Vec<u8> {
    format!("sync/{property}\0generation/{stay_id}").into_bytes()
}

fn pending_prefix(property: &str) -> Vec<u8> {
    format!("sync/{property}\0revoke/").into_bytes()
}

fn pending_key(property: &str, key_id: &str) -> Vec<u8> {
    let mut k = pending_prefix(property);
    k.extend_from_slice(key_id.as_bytes());
    k
}

const SCHEMA: u8 = 1;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![SCHEMA];
    out.extend(
        postcard::to_stdvec(value).map_err(|e| Error::internal(format!("3RPMS state: {e}")))?,
    );
    Ok(out)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&SCHEMA, rest)) => {
            postcard::from_bytes(rest).map_err(|e| Error::internal(format!("3RPMS state: {e}")))
        }
        _ => Err(Error::internal("3RPMS state: unknown schema version")),
    }
}

#[cfg(test)]
mod tests {
    use keysmith_core::store::Store;
    use keysmith_store::EmbeddedStore;

    use super::*;

    fn record(stay_id: &str, key_id: &str, rpms_key_id: Option<&str>) -> StayRecord {
        StayRecord {
            stay_id: stay_id.to_owned(),
            room_setup_id: "rs-101".into(),
            arrival: Date::constant(2030, 3, 17),
            departure: Date::constant(2030, 3, 19),
            key_id: key_id.to_owned(),
            rpms_key_id: rpms_key_id.map(str::to_owned),
            published_digest: None,
        }
    }

    #[tokio::test]
    async fn records_and_generations_are_kept_per_property() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        let state = store.driver_state("3rpms").unwrap();
        let a = StayRecords::new(state.clone(), "a");
        // A property whose id starts with another's must not share its records.
        let a_stay = StayRecords::new(state, "a/stay");
        let mut changes = Changes::new();
        a.put(&record("s1", "k1", Some("rk1")), &mut changes)
            .unwrap();
        a.bump_generation("s1", &mut changes).unwrap();
        a.commit(changes).await.unwrap();

        assert_eq!(
            a.all().unwrap().into_values().collect::<Vec<_>>(),
            vec![record("s1", "k1", Some("rk1"))]
        );
        assert_eq!(a.generation("s1").unwrap(), 1);
        assert_eq!(a.generation("s2").unwrap(), 0);
        assert!(a_stay.all().unwrap().is_empty());
        assert_eq!(a_stay.generation("s1").unwrap(), 0);

        let mut changes = Changes::new();
        a.remove("s1", &mut changes);
        a.commit(changes).await.unwrap();
        assert!(a.all().unwrap().is_empty());
        assert_eq!(
            a.generation("s1").unwrap(),
            1,
            "the generation outlives the record"
        );
    }

    #[tokio::test]
    async fn pending_revocations_outlive_a_reopen_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
            let records = StayRecords::new(store.driver_state("3rpms").unwrap(), "h");
            let mut changes = Changes::new();
            records
                .put_pending_revocation("k1", "s1", &mut changes)
                .unwrap();
            records
                .put_pending_revocation("k2", "s2", &mut changes)
                .unwrap();
            records.commit(changes).await.unwrap();
            store.close();
        }
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        let records = StayRecords::new(store.driver_state("3rpms").unwrap(), "h");
        assert_eq!(
            records.pending_revocations().unwrap(),
            [
                ("k1".to_owned(), "s1".to_owned()),
                ("k2".into(), "s2".into())
            ]
        );
        assert!(records.all().unwrap().is_empty(), "not stay records");
        let mut changes = Changes::new();
        records.remove_pending_revocation("k1", &mut changes);
        records.commit(changes).await.unwrap();
        assert_eq!(
            records.pending_revocations().unwrap(),
            [("k2".to_owned(), "s2".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_deleted_3rpms_key_is_forgotten_on_every_stay_that_held_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        let records = StayRecords::new(store.driver_state("3rpms").unwrap(), "h");
        let mut changes = Changes::new();
        for r in [
            record("s1", "k1", Some("rk1")),
            record("s2", "k1", Some("rk1")),
            record("s3", "k3", Some("rk3")),
        ] {
            records.put(&r, &mut changes).unwrap();
        }
        records.commit(changes).await.unwrap();

        let stays = records.forget_published_key("rk1").await.unwrap();

        assert_eq!(stays, ["s1", "s2"]);
        let all = records.all().unwrap();
        assert_eq!(all["s1"].rpms_key_id, None);
        assert_eq!(all["s2"].rpms_key_id, None);
        assert_eq!(all["s3"].rpms_key_id.as_deref(), Some("rk3"));
    }
}
