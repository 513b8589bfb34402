//! The webhook endpoint registered in 3RPMS for each property, with the
//! secret that signs its deliveries.
//!
//! 3RPMS shows a secret only once, when the endpoint is created, so the
//! record is written (and synced) before anything else relies on it.
//!
//! Rotation: replacing the record with one of another secret keeps the old
//! secret as "retired" for [`RETIRED_SECRET_GRACE`], because deliveries
//! 3RPMS signed with it (retries of the replaced endpoint) may still be on
//! their way. Verification accepts the current secret and every retired one
//! within the grace period; at most [`MAX_RETIRED_SECRETS`] are kept, newest
//! first, so a burst of rotations cannot grow the set verified against.
//!
//! Stored as JSON under `wh/{property}\0endpoint` in the driver's state.
use std::time::Duration;

use keysmith_core::{
    reasons,
    store::{DriverState, StateSection},
    Error, Result, Secret,
};
use serde::{Deserialize, Serialize};

use super::keys;

/// How long a replaced secret still verifies deliveries.
pub const RETIRED_SECRET_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many replaced secrets are kept at most.
pub const MAX_RETIRED_SECRETS: usize = 4;

const MAX_ENDPOINT_ID_LEN: usize = 128;

/// The endpoint 3RPMS delivers a property's events to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub endpoint_id: String,
    pub secret: Secret<String>,
    /// False while the endpoint must not be relied on (set up only halfway,
    /// or switched off): deliveries are then answered 503 and retried.
    pub enabled: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    current: EndpointRecord,
    /// Newest first.
    #[serde(default)]
    retired: Vec<Retired>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Retired {
    endpoint_id: String,
    secret: Secret<String>,
    retired_at: i64,
    /// Still enabled at 3RPMS: a replacement could not switch it off yet
    /// (it counts toward 3RPMS's limit of active endpoints).
    #[serde(default)]
    still_active: bool,
}

/// The current endpoint of the property, if one was registered.
pub fn load(state: &dyn DriverState, property_id: &str) -> Result<Option<EndpointRecord>> {
    Ok(read(state, &endpoint_key(property_id)?)?.map(|stored| stored.current))
}

/// Registers `record` as the property's endpoint, retiring the previous
/// secret if it differs, and returns once that is durable.
pub async fn store(
    state: &dyn DriverState,
    property_id: &str,
    record: &EndpointRecord,
) -> Result<()> {
    store_at(
        state,
        property_id,
        record,
        jiff::Timestamp::now().as_second(),
    )
    .await
}

pub(crate) async fn store_at(
    state: &dyn DriverState,
    property_id: &str,
    record: &EndpointRecord,
    now_unix: i64,
) -> Result<()> {
    validate(record)?;
    let key = endpoint_key(property_id)?;
    {
        // The read-modify-write is one section (every replica's rotations
        // wait for it): two concurrent rotations could otherwise each drop
        // the secret the other retired.
        let mut section = state.section(&key)?;
        let mut retired = match read_in(section.as_ref(), &key)? {
            Some(previous) => {
                let mut retired = previous.retired;
                if previous.current.secret != record.secret {
                    retired.insert(
                        0,
                        Retired {
                            // Created disabled and never enabled: nothing to
                            // switch off at 3RPMS.
                            still_active: previous.current.enabled
                                && previous.current.endpoint_id != record.endpoint_id,
                            endpoint_id: previous.current.endpoint_id,
                            secret: previous.current.secret,
                            retired_at: now_unix,
                        },
                    );
                }
                retired
            }
            None => Vec::new(),
        };
        // A secret brought back into service is current, not retired. One
        // past its grace is dropped, unless 3RPMS still has it enabled.
        retired
            .retain(|r| r.secret != record.secret && (r.still_active || within_grace(r, now_unix)));
        let (active, mut quiet): (Vec<Retired>, Vec<Retired>) =
            retired.into_iter().partition(|r| r.still_active);
        quiet.truncate(MAX_RETIRED_SECRETS);
        let mut retired = active;
        retired.extend(quiet);
        retired.sort_by_key(|r| std::cmp::Reverse(r.retired_at));
        let stored = Stored {
            current: record.clone(),
            retired,
        };
        let value = serde_json::to_vec(&stored).map_err(|e| {
            Error::internal(format!("cannot encode a webhook endpoint record: {e}"))
        })?;
        section.apply(vec![(key, Some(value))]);
        section.commit()?;
    }
    state.sync().await
}

/// Replaced endpoints still enabled at 3RPMS, newest first: each must be
/// switched off (or removed by the operator) to stay within 3RPMS's limit
/// of active endpoints.
pub fn still_active(state: &dyn DriverState, property_id: &str) -> Result<Vec<String>> {
    Ok(read(state, &endpoint_key(property_id)?)?
        .map(|stored| {
            stored
                .retired
                .into_iter()
                .filter(|r| r.still_active)
                .map(|r| r.endpoint_id)
                .collect()
        })
        .unwrap_or_default())
}

/// Records that a replaced endpoint is no longer enabled at 3RPMS.
pub async fn mark_inactive(
    state: &dyn DriverState,
    property_id: &str,
    endpoint_id: &str,
) -> Result<()> {
    let key = endpoint_key(property_id)?;
    {
        let mut section = state.section(&key)?;
        let Some(mut stored) = read_in(section.as_ref(), &key)? else {
            return Ok(());
        };
        for r in &mut stored.retired {
            if r.endpoint_id == endpoint_id {
                r.still_active = false;
            }
        }
        let value = serde_json::to_vec(&stored).map_err(|e| {
            Error::internal(format!("cannot encode a webhook endpoint record: {e}"))
        })?;
        section.apply(vec![(key, Some(value))]);
        section.commit()?;
    }
    state.sync().await
}

/// The secrets a delivery for the property may be signed with: the current
/// one first, then those retired within the grace period. None when no
/// endpoint is registered or it is disabled.
pub fn verifying_secrets(
    state: &dyn DriverState,
    property_id: &str,
    now_unix: i64,
) -> Result<Option<Vec<Secret<String>>>> {
    let Some(stored) = read(state, &endpoint_key(property_id)?)? else {
        return Ok(None);
    };
    if !stored.current.enabled {
        return Ok(None);
    }
    let mut secrets = vec![stored.current.secret];
    secrets.extend(
        stored
            .retired
            .into_iter()
            .filter(|r| within_grace(r, now_unix))
            .map(|r| r.secret),
    );
    Ok(Some(secrets))
}

fn within_grace(retired: &Retired, now_unix: i64) -> bool {
    let grace = i64::try_from(RETIRED_SECRET_GRACE.as_secs()).unwrap_or(i64::MAX);
    now_unix.saturating_sub(retired.retired_at) <= grace
}

fn validate(record: &EndpointRecord) -> Result<()> {
    if record.endpoint_id.is_empty() {
        return Err(Error::invalid_field(
            reasons::FIELD_REQUIRED,
            "endpoint_id",
            "is required",
        ));
    }
    if record.endpoint_id.len() > MAX_ENDPOINT_ID_LEN {
        return Err(Error::invalid_field(
            reasons::FIELD_TOO_LONG,
            "endpoint_id",
            format!("must be at most {MAX_ENDPOINT_ID_LEN} bytes"),
        ));
    }
    // Anyone can sign with an empty key, so it would authenticate nothing.
    if record.secret.expose().is_empty() {
        return Err(Error::invalid_field(
            reasons::FIELD_REQUIRED,
            "secret",
            "is required",
        ));
    }
    Ok(())
}

fn endpoint_key(property_id: &str) -> Result<Vec<u8>> {
    let mut key = keys::property_prefix(property_id)?;
    key.extend_from_slice(b"endpoint");
    Ok(key)
}

fn read(state: &dyn DriverState, key: &[u8]) -> Result<Option<Stored>> {
    decode(state.get(key)?)
}

/// The record as `section` reads it.
fn read_in(section: &dyn StateSection, key: &[u8]) -> Result<Option<Stored>> {
    decode(section.get(key)?)
}

fn decode(value: Option<Vec<u8>>) -> Result<Option<Stored>> {
    value
        .map(|value| {
            // serde_json's message could quote the stored value, which holds
            // a secret, so only the position is reported.
            serde_json::from_slice::<Stored>(&value).map_err(|e| {
                Error::internal(format!(
                    "the stored webhook endpoint record cannot be decoded ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use keysmith_core::{store::Store, ErrorKind};
    use keysmith_store::EmbeddedStore;

    use super::*;

    const DAY: i64 = 24 * 3600;

    fn open(dir: &Path) -> (EmbeddedStore, Arc<dyn DriverState>) {
        let store = EmbeddedStore::open_with_test_key(dir).unwrap();
        let state = store.driver_state("3rpms").unwrap();
        (store, state)
    }

    fn record(endpoint_id: &str, secret: &str) -> EndpointRecord {
        EndpointRecord {
            endpoint_id: endpoint_id.into(),
            secret: Secret::new(secret.into()),
            enabled: true,
        }
    }

    fn exposed(secrets: Option<Vec<Secret<String>>>) -> Vec<String> {
        secrets
            .unwrap_or_default()
            .into_iter()
            .map(Secret::into_inner)
            .collect()
    }

    #[tokio::test]
    async fn a_record_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, state) = open(dir.path());
            assert_eq!(load(&*state, "hotel").unwrap(), None);
            super::store(&*state, "hotel", &record("we_1", "whsec_1"))
                .await
                .unwrap();
            store.close();
        }
        let (_store, state) = open(dir.path());
        assert_eq!(
            load(&*state, "hotel").unwrap(),
            Some(record("we_1", "whsec_1"))
        );
        assert_eq!(load(&*state, "other").unwrap(), None);
    }

    #[tokio::test]
    async fn a_replaced_secret_verifies_until_its_grace_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let state = &*state;
        store_at(state, "hotel", &record("we_1", "old"), 0)
            .await
            .unwrap();
        store_at(state, "hotel", &record("we_2", "new"), 10 * DAY)
            .await
            .unwrap();
        assert_eq!(load(state, "hotel").unwrap(), Some(record("we_2", "new")));
        assert_eq!(
            exposed(verifying_secrets(state, "hotel", 10 * DAY).unwrap()),
            ["new", "old"]
        );
        assert_eq!(
            exposed(verifying_secrets(state, "hotel", 17 * DAY).unwrap()),
            ["new", "old"]
        );
        assert_eq!(
            exposed(verifying_secrets(state, "hotel", 17 * DAY + 1).unwrap()),
            ["new"]
        );
    }

    #[tokio::test]
    async fn storing_the_same_secret_again_retires_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let state = &*state;
        store_at(state, "hotel", &record("we_1", "s"), 0)
            .await
            .unwrap();
        store_at(state, "hotel", &record("we_1", "s"), 1)
            .await
            .unwrap();
        assert_eq!(
            exposed(verifying_secrets(state, "hotel", 1).unwrap()),
            ["s"]
        );
    }

    #[tokio::test]
    async fn a_secret_brought_back_is_not_listed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let state = &*state;
        for (secret, at) in [("a", 0), ("b", 1), ("a", 2)] {
            store_at(state, "hotel", &record("we", secret), at)
                .await
                .unwrap();
        }
        assert_eq!(
            exposed(verifying_secrets(state, "hotel", 2).unwrap()),
            ["a", "b"]
        );
    }

    #[tokio::test]
    async fn only_the_newest_retired_secrets_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let state = &*state;
        for i in 0..10 {
            store_at(state, "hotel", &record("we", &format!("s{i}")), i)
                .await
                .unwrap();
        }
        assert_eq!(
            exposed(verifying_secrets(state, "hotel", 10).unwrap()),
            ["s9", "s8", "s7", "s6", "s5"]
        );
    }

    #[tokio::test]
    async fn a_disabled_or_missing_endpoint_verifies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let state = &*state;
        assert!(verifying_secrets(state, "hotel", 0).unwrap().is_none());
        let mut disabled = record("we_1", "s");
        disabled.enabled = false;
        store_at(state, "hotel", &disabled, 0).await.unwrap();
        assert!(verifying_secrets(state, "hotel", 0).unwrap().is_none());
        assert_eq!(load(state, "hotel").unwrap(), Some(disabled));
    }

    #[tokio::test]
    async fn incomplete_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let state = &*state;
        for bad in [
            record("", "s"),
            record("we", ""),
            record(&"x".repeat(MAX_ENDPOINT_ID_LEN + 1), "s"),
        ] {
            let err = super::store(state, "hotel", &bad).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
        assert_eq!(load(state, "hotel").unwrap(), None);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_that_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let key = endpoint_key("hotel").unwrap();
        state
            .apply(vec![(
                key,
                Some(br#"{"current":{"secret":"whsec_leak","enabled":1}}"#.to_vec()),
            )])
            .unwrap();
        let err = load(&*state, "hotel").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err.to_string().contains("whsec_leak"));
        assert!(!format!("{err:?}").contains("whsec_leak"));
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let shown = format!("{:?}", record("we_1", "whsec_visible"));
        assert!(!shown.contains("whsec_visible"));
        assert!(shown.contains("we_1"));
    }
}
