//! The listings: keysmith's keys (AIP-158 pages over the store's indexes)
//! and the keys one driver holds on its side, for reconciliation.
use std::sync::Arc;

use crate::{
    driver::ListArgs,
    error::{bounded, quoted, reasons, Error, Result},
    key::{AccessKey, KeyState},
    listed::ListedKey,
    page,
    request::{ListDriverKeysRequest, ListKeysRequest},
    store::{KeyIndex, KeyScan},
};

use super::{AccessService, DriverKeyPage, HeldKey, KeyPage};

/// Listing scans at most this many index entries per page size unit, so a
/// selective filter yields a short page rather than an unbounded scan.
const SCAN_FACTOR: usize = 8;

impl AccessService {
    /// A page of a property's keys, filtered (AIP-158). Reads only.
    ///
    /// Checks the request ([`ListKeysRequest::validate`]: `INVALID_PAGE_SIZE`,
    /// `INVALID_PAGE_TOKEN`, the ids); NotFound `PROPERTY_NOT_FOUND`;
    /// `INVALID_PAGE_TOKEN` for a token of another query, caller or version
    /// ([`page::decode`]). Walks the most selective index
    /// the filters allow (reservation, then holder, then entrance, else the
    /// whole property) in key id order, leaving ended keys (revoked, or
    /// expired) out unless they are asked for (`include_revoked`, or their
    /// state in `states`). States are judged at one reading of the clock. Each page
    /// scans a bounded number of index entries, so a selective filter may
    /// answer a short page that still has a next one.
    pub fn list_keys(&self, req: &ListKeysRequest) -> Result<KeyPage> {
        let page_size = req.validate()?;
        self.router.require_property(&req.property_id)?;
        let mut after = page::decode(req)?;
        let now = self.clock.now();
        let wants_ended = req.include_revoked
            || req.states.contains(&KeyState::Revoked)
            || req.states.contains(&KeyState::Expired);
        let index = if let Some(rk) = &req.reservation_key {
            KeyIndex::Reservation(rk.clone())
        } else if let Some(holder) = &req.holder_id {
            KeyIndex::Holder(holder.clone())
        } else if let Some(entrance) = &req.entrance_id {
            KeyIndex::Entrance(entrance.clone())
        } else {
            KeyIndex::Property
        };
        let matches = |k: &AccessKey| {
            (wants_ended || !matches!(k.state(now), KeyState::Revoked | KeyState::Expired))
                && req
                    .reservation_key
                    .as_deref()
                    .is_none_or(|rk| k.reservation_key() == Some(rk))
                && req.holder_id.as_deref().is_none_or(|h| k.holder.id == h)
                && req
                    .entrance_id
                    .as_deref()
                    .is_none_or(|e| k.entrances.iter().any(|ke| ke.entrance_id == e))
                && (req.states.is_empty() || req.states.contains(&k.state(now)))
        };
        let budget = page_size * SCAN_FACTOR;
        let mut scanned = 0;
        let mut keys = Vec::with_capacity(page_size);
        loop {
            let chunk = self.store.scan_keys(&KeyScan {
                property_id: &req.property_id,
                index: index.clone(),
                live_only: !wants_ended,
                after: after.as_deref(),
                limit: (page_size + 1).min(budget - scanned).max(1),
            })?;
            let exhausted = chunk.is_empty();
            for key in chunk {
                scanned += 1;
                after = Some(key.key_id.clone());
                if matches(key.key()) {
                    if keys.len() == page_size {
                        // One more match exists: the page is full.
                        let last: &Arc<ListedKey> = keys.last().expect("page_size > 0");
                        return Ok(KeyPage {
                            next_page_token: Some(page::encode(req, &last.key_id)),
                            keys,
                        });
                    }
                    keys.push(key);
                }
                if scanned >= budget {
                    // Bounded work per page: continue from here next time.
                    return Ok(KeyPage {
                        next_page_token: after.map(|a| page::encode(req, &a)),
                        keys,
                    });
                }
            }
            if exhausted {
                return Ok(KeyPage {
                    keys,
                    next_page_token: None,
                });
            }
        }
    }

    /// The keys one driver holds on its side for a property, each with the
    /// state keysmith has for it, so that an operator can reconcile the two.
    pub async fn list_driver_keys(&self, req: &ListDriverKeysRequest) -> Result<DriverKeyPage> {
        let page_size = req.validate()?;
        self.router.require_property(&req.property_id)?;
        let driver = self.router.find_driver(&req.driver).ok_or_else(|| {
            Error::not_found(
                reasons::DRIVER_NOT_FOUND,
                format!("no driver named {} is registered", quoted(&req.driver)),
            )
            .with_context("driver", bounded(&req.driver))
            .with_violation("driver", "no such driver")
        })?;
        self.require(driver.as_ref(), |c| c.list, "list")?;
        let reply = driver
            .list(ListArgs {
                property_id: req.property_id.clone(),
                page_size,
                page_token: (!req.page_token.is_empty()).then(|| req.page_token.clone()),
            })
            .await?;
        let now = self.clock.now();
        let mut keys = Vec::with_capacity(reply.keys.len());
        for record in reply.keys {
            let keysmith_state = self
                .store
                .key(&req.property_id, &record.key_id)?
                .map(|k| k.state(now));
            keys.push(HeldKey {
                record,
                keysmith_state,
            });
        }
        Ok(DriverKeyPage {
            keys,
            next_page_token: reply.next_page_token,
        })
    }
}
