//! The world behind the API and the rules that change it. Every API mutation
//! records how to undo itself, so a request whose batch fails can be rolled
//! back without clobbering changes other clients or the control API made in
//! the meantime (a whole-state snapshot would).

mod control;

use std::collections::HashMap;

use crate::config::Access;
use crate::errors::{arg_path, ApiError, ApiResult, Msg};
use crate::model::{
    long_id, Endpoint, Hotel, Key, KeyKind, WebhookEndpointStatus, MAX_ACTIVE_ENDPOINTS,
    WEBHOOK_EVENTS,
};

#[derive(Clone, Debug)]
pub(crate) struct ApiKey {
    pub hotel: String,
    pub integration: String,
    pub access: Access,
}

/// Who is calling: resolved from the bearer token once per HTTP request.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub hotel: String,
    pub integration: String,
    pub access: Access,
}

#[derive(Default)]
pub(crate) struct World {
    pub hotels: HashMap<String, Hotel>,
    pub api_keys: HashMap<String, ApiKey>,
}

/// A change to data that webhooks announce.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub hotel: String,
    pub kind: &'static str,
    pub object_id: String,
    pub updated_fields: Option<Vec<&'static str>>,
}

impl Event {
    pub fn new(hotel: &str, kind: &'static str, object_id: &str) -> Self {
        Event {
            hotel: hotel.to_string(),
            kind,
            object_id: object_id.to_string(),
            updated_fields: None,
        }
    }

    fn updated(hotel: &str, kind: &'static str, object_id: &str, fields: &[&'static str]) -> Self {
        Event {
            updated_fields: Some(fields.to_vec()),
            ..Event::new(hotel, kind, object_id)
        }
    }
}

/// How to take back one API mutation.
#[derive(Clone, Debug)]
pub(crate) enum Undo {
    ForgetKey {
        hotel: String,
        key_id: String,
    },
    Unassign {
        hotel: String,
        stay_id: String,
        key_id: String,
    },
    Reassign {
        hotel: String,
        stay_id: String,
        key_id: String,
    },
    RestoreKey {
        hotel: String,
        key: Key,
    },
    ForgetEndpoint {
        hotel: String,
        endpoint_id: String,
    },
    RestoreEndpointStatus {
        hotel: String,
        endpoint_id: String,
        status: WebhookEndpointStatus,
    },
}

/// The undo records of one HTTP request, newest last.
#[derive(Default)]
pub(crate) struct UndoLog(parking_lot::Mutex<Vec<Undo>>);

impl UndoLog {
    pub fn push(&self, undo: Undo) {
        self.0.lock().push(undo);
    }

    pub fn take(&self) -> Vec<Undo> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// Checks a PIN: 1-10 ASCII letters/digits, letters all upper or all lower.
pub(crate) fn check_pin(pin: &str) -> Result<(), Msg> {
    if pin.is_empty() {
        return Err(Msg::PinEmpty);
    }
    if pin.chars().count() > 10 {
        return Err(Msg::PinTooLong);
    }
    if !pin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Msg::PinNotAlphanumeric);
    }
    let upper = pin.chars().any(|c| c.is_ascii_uppercase());
    let lower = pin.chars().any(|c| c.is_ascii_lowercase());
    if upper && lower {
        return Err(Msg::PinMixedCase);
    }
    Ok(())
}

pub(crate) fn check_compartment(compartment: &str) -> Result<(), Msg> {
    if compartment.is_empty() {
        return Err(Msg::CompartmentEmpty);
    }
    if compartment.chars().count() > 10 {
        return Err(Msg::CompartmentTooLong);
    }
    if !compartment.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Msg::CompartmentNotAlphanumeric);
    }
    Ok(())
}

pub(crate) fn check_qr_data(qr: &str) -> Result<(), Msg> {
    if qr.is_empty() {
        return Err(Msg::QrDataEmpty);
    }
    if qr.chars().count() > 512 {
        return Err(Msg::QrDataTooLong);
    }
    Ok(())
}

/// The vendor delivers to HTTPS only. Plain http is taken for loopback
/// addresses alone, so that tests and demos on one machine can receive
/// deliveries without a certificate.
fn check_webhook_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match (u.scheme(), u.host_str()) {
        ("https", Some(_)) => true,
        ("http", Some(host)) => is_loopback(host),
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Active endpoints of one integration in a hotel.
fn active_endpoints(h: &Hotel, integration: &str) -> usize {
    h.endpoints
        .iter()
        .filter(|(_, e)| e.integration == integration && e.status == WebhookEndpointStatus::Enabled)
        .count()
}

impl World {
    /// Resolves a bearer token to its hotel and integration.
    pub fn authenticate(&self, token: Option<&str>) -> ApiResult<Principal> {
        let token = token.ok_or(ApiError::auth(Msg::MissingApiKey))?;
        let key = self
            .api_keys
            .get(token)
            .ok_or(ApiError::auth(Msg::UnknownApiKey))?;
        if key.access == Access::Disabled {
            return Err(ApiError::auth(Msg::DisabledApiKey));
        }
        Ok(Principal {
            hotel: key.hotel.clone(),
            integration: key.integration.clone(),
            access: key.access,
        })
    }

    pub fn hotel(&self, hotel: &str) -> Option<&Hotel> {
        self.hotels.get(hotel)
    }

    /// The caller's hotel. Keys are only issued for existing hotels and
    /// hotels are never removed, but a request path must not panic, so a
    /// missing hotel is reported like an unknown key.
    fn hotel_mut(&mut self, hotel: &str) -> ApiResult<&mut Hotel> {
        self.hotels
            .get_mut(hotel)
            .ok_or(ApiError::auth(Msg::UnknownApiKey))
    }

    fn configured_hotel_mut(&mut self, hotel: &str) -> ApiResult<&mut Hotel> {
        let h = self.hotel_mut(hotel)?;
        if !h.configured {
            return Err(ApiError::configuration(Msg::RoomAccessKeysNotConfigured));
        }
        Ok(h)
    }

    // ---------------------------------------------------------------- API

    pub fn create_key(
        &mut self,
        p: &Principal,
        kind: KeyKind,
        undo: &UndoLog,
    ) -> ApiResult<String> {
        let h = self.configured_hotel_mut(&p.hotel)?;
        let id = h.new_alnum_id();
        h.keys.insert(
            id.clone(),
            Key {
                id: id.clone(),
                integration: p.integration.clone(),
                kind,
            },
        );
        undo.push(Undo::ForgetKey {
            hotel: p.hotel.clone(),
            key_id: id.clone(),
        });
        Ok(id)
    }

    /// Checks that the key exists in the caller's hotel and was made by the
    /// caller's integration.
    fn own_key<'h>(h: &'h Hotel, p: &Principal, key_id: &str, path: &str) -> ApiResult<&'h Key> {
        let key = h.keys.get(key_id).ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownRoomAccessKey(key_id.into()),
                arg_path!["input", path],
            )
        })?;
        if key.integration != p.integration {
            return Err(ApiError::validation(
                Msg::NotOwnRoomAccessKey(key_id.into()),
                arg_path!["input", path],
            ));
        }
        Ok(key)
    }

    pub fn add_key(
        &mut self,
        p: &Principal,
        stay_id: &str,
        key_id: &str,
        undo: &UndoLog,
    ) -> ApiResult<()> {
        let h = self.configured_hotel_mut(&p.hotel)?;
        let stay = h.stays.get(stay_id).ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownRoomStay(stay_id.into()),
                arg_path!["input", "roomStayId"],
            )
        })?;
        Self::own_key(h, p, key_id, "roomAccessKeyId")?;
        // One key per stay, even the same one again: the client must remove
        // before it adds.
        if stay.key_id.is_some() {
            return Err(ApiError::validation(
                Msg::RoomStayAlreadyHasKey(stay_id.into()),
                arg_path!["input", "roomStayId"],
            ));
        }
        if let Some(stay) = h.stays.get_mut(stay_id) {
            stay.key_id = Some(key_id.to_string());
        }
        undo.push(Undo::Unassign {
            hotel: p.hotel.clone(),
            stay_id: stay_id.into(),
            key_id: key_id.into(),
        });
        Ok(())
    }

    pub fn remove_key(
        &mut self,
        p: &Principal,
        stay_id: &str,
        key_id: &str,
        undo: &UndoLog,
    ) -> ApiResult<()> {
        let h = self.configured_hotel_mut(&p.hotel)?;
        let stay = h.stays.get(stay_id).ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownRoomStay(stay_id.into()),
                arg_path!["input", "roomStayId"],
            )
        })?;
        Self::own_key(h, p, key_id, "roomAccessKeyId")?;
        if stay.key_id.as_deref() != Some(key_id) {
            return Err(ApiError::validation(
                Msg::KeyNotOnRoomStay {
                    stay: stay_id.into(),
                    key: key_id.into(),
                },
                arg_path!["input", "roomAccessKeyId"],
            ));
        }
        if let Some(stay) = h.stays.get_mut(stay_id) {
            stay.key_id = None;
        }
        undo.push(Undo::Reassign {
            hotel: p.hotel.clone(),
            stay_id: stay_id.into(),
            key_id: key_id.into(),
        });
        Ok(())
    }

    pub fn delete_key(&mut self, p: &Principal, key_id: &str, undo: &UndoLog) -> ApiResult<()> {
        let h = self.configured_hotel_mut(&p.hotel)?;
        Self::own_key(h, p, key_id, "roomAccessKeyId")?;
        if !h.stays_with_key(key_id).is_empty() {
            return Err(ApiError::validation(
                Msg::KeyStillAssigned(key_id.into()),
                arg_path!["input", "roomAccessKeyId"],
            ));
        }
        if let Some(key) = h.keys.remove(key_id) {
            undo.push(Undo::RestoreKey {
                hotel: p.hotel.clone(),
                key,
            });
        }
        Ok(())
    }

    /// Registers an endpoint; returns its id and its secret.
    pub fn create_endpoint(
        &mut self,
        p: &Principal,
        url: &str,
        status: WebhookEndpointStatus,
        events: &[String],
        undo: &UndoLog,
    ) -> ApiResult<(String, String)> {
        if !check_webhook_url(url) {
            return Err(ApiError::validation(
                Msg::InvalidWebhookUrl,
                arg_path!["input", "url"],
            ));
        }
        if events.is_empty() {
            return Err(ApiError::validation(
                Msg::NoWebhookEvents,
                arg_path!["input", "events"],
            ));
        }
        if let Some((i, bad)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| !WEBHOOK_EVENTS.contains(&e.as_str()))
        {
            return Err(ApiError::validation(
                Msg::UnknownWebhookEvent(bad.clone()),
                arg_path!["input", "events", i],
            ));
        }
        let h = self.hotel_mut(&p.hotel)?;
        if status == WebhookEndpointStatus::Enabled
            && active_endpoints(h, &p.integration) >= MAX_ACTIVE_ENDPOINTS
        {
            return Err(ApiError::validation(
                Msg::TooManyActiveEndpoints {
                    max: MAX_ACTIVE_ENDPOINTS,
                },
                arg_path!["input"],
            ));
        }
        let mut id = long_id();
        while h.endpoints.contains(&id) {
            id = long_id();
        }
        let secret = long_id();
        let mut unique_events: Vec<String> = Vec::new();
        for e in events {
            if !unique_events.contains(e) {
                unique_events.push(e.clone());
            }
        }
        h.endpoints.insert(
            id.clone(),
            Endpoint {
                id: id.clone(),
                integration: p.integration.clone(),
                url: url.to_string(),
                status,
                events: unique_events,
                secret: secret.clone(),
                consecutive_failures: 0,
            },
        );
        undo.push(Undo::ForgetEndpoint {
            hotel: p.hotel.clone(),
            endpoint_id: id.clone(),
        });
        Ok((id, secret))
    }

    pub fn update_endpoint(
        &mut self,
        p: &Principal,
        id: &str,
        status: Option<WebhookEndpointStatus>,
        undo: &UndoLog,
    ) -> ApiResult<()> {
        let h = self.hotel_mut(&p.hotel)?;
        let unknown = || {
            ApiError::validation(
                Msg::UnknownWebhookEndpoint(id.into()),
                arg_path!["input", "id"],
            )
        };
        let current = h.endpoints.get(id).ok_or_else(unknown)?.status;
        if status == Some(WebhookEndpointStatus::Enabled)
            && current != WebhookEndpointStatus::Enabled
            && active_endpoints(h, &p.integration) >= MAX_ACTIVE_ENDPOINTS
        {
            return Err(ApiError::validation(
                Msg::TooManyActiveEndpoints {
                    max: MAX_ACTIVE_ENDPOINTS,
                },
                arg_path!["input", "status"],
            ));
        }
        let endpoint = h.endpoints.get_mut(id).ok_or_else(unknown)?;
        if let Some(status) = status {
            undo.push(Undo::RestoreEndpointStatus {
                hotel: p.hotel.clone(),
                endpoint_id: id.into(),
                status: endpoint.status,
            });
            endpoint.status = status;
            if status == WebhookEndpointStatus::Enabled {
                endpoint.consecutive_failures = 0;
            }
        }
        Ok(())
    }

    /// Takes back API mutations, newest first. Each step is tolerant of the
    /// world having moved on (a stay deleted through the control API, ...).
    pub fn roll_back(&mut self, undos: Vec<Undo>) {
        for undo in undos.into_iter().rev() {
            match undo {
                Undo::ForgetKey { hotel, key_id } => {
                    if let Some(h) = self.hotels.get_mut(&hotel) {
                        h.keys.remove(&key_id);
                        for stay in h.stays.values_mut() {
                            if stay.key_id.as_deref() == Some(key_id.as_str()) {
                                stay.key_id = None;
                            }
                        }
                    }
                }
                Undo::Unassign {
                    hotel,
                    stay_id,
                    key_id,
                } => {
                    if let Some(stay) = self
                        .hotels
                        .get_mut(&hotel)
                        .and_then(|h| h.stays.get_mut(&stay_id))
                    {
                        if stay.key_id.as_deref() == Some(key_id.as_str()) {
                            stay.key_id = None;
                        }
                    }
                }
                Undo::Reassign {
                    hotel,
                    stay_id,
                    key_id,
                } => {
                    if let Some(h) = self.hotels.get_mut(&hotel) {
                        let key_exists = h.keys.contains(&key_id);
                        if let Some(stay) = h.stays.get_mut(&stay_id) {
                            if key_exists && stay.key_id.is_none() {
                                stay.key_id = Some(key_id);
                            }
                        }
                    }
                }
                Undo::RestoreKey { hotel, key } => {
                    if let Some(h) = self.hotels.get_mut(&hotel) {
                        if !h.keys.contains(&key.id) {
                            h.keys.insert(key.id.clone(), key);
                        }
                    }
                }
                Undo::ForgetEndpoint { hotel, endpoint_id } => {
                    if let Some(h) = self.hotels.get_mut(&hotel) {
                        h.endpoints.remove(&endpoint_id);
                    }
                }
                Undo::RestoreEndpointStatus {
                    hotel,
                    endpoint_id,
                    status,
                } => {
                    if let Some(e) = self
                        .hotels
                        .get_mut(&hotel)
                        .and_then(|h| h.endpoints.get_mut(&endpoint_id))
                    {
                        e.status = status;
                    }
                }
            }
        }
    }
}
