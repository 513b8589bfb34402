//! The operations of the access service as plain domain requests. The gRPC
//! edge converts its messages into these; validation of content lives here.
use serde::{Deserialize, Serialize};
use unicode_general_category::{get_general_category, GeneralCategory};

use crate::{
    audit::AuditOrigin,
    capability::CredentialMode,
    error::{reasons, Error, Result},
    key::{Holder, KeyState, Role},
    secret::Secret,
    time::{Timestamp, Window},
};

/// The longest identifier accepted, in bytes: property, key, entrance,
/// space, holder and encoder ids, reservation_key, request_id.
pub const MAX_ID_LEN: usize = 128;
/// The longest display name accepted (a holder's name), in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The most entrances and spaces one Issue may name, together.
pub const MAX_TARGETS: usize = 100;
/// How far from now keysmith takes an instant: a key's window must end
/// within it, and the lock simulator presents a credential at most this far
/// before or after now. Ten years (of 366 days) is longer than any stay or
/// staff badge keysmith has seen, and short enough that every instant it
/// keeps, and every lock clock skewed from one (ten years at most), fits
/// every clock representation a client may use (a protobuf Timestamp ends
/// in 9999).
pub const HORIZON_SECONDS: i64 = 10 * 366 * 86_400;
/// The page size of a listing that asks for none (page_size 0).
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page a listing answers: a larger page_size is capped, not
/// refused.
pub const MAX_PAGE_SIZE: usize = 500;

/// Issue: a new key for one holder at some entrances of one property.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The property whose entrances the key is to open.
    pub property_id: String,
    /// The caller's idempotency key (AIP-155): a retry with the same
    /// request_id and the same content gets the first answer back; the same
    /// request_id with other content is refused (`REQUEST_ID_REUSED`). Without
    /// one, every call issues a new key.
    pub request_id: Option<String>,
    /// Who the key is for.
    pub holder: Holder,
    /// Entrances named directly.
    pub entrance_ids: Vec<String>,
    /// Spaces (a room, a suite) whose entrances the key is to open too. With
    /// `entrance_ids`: at least one, at most [`MAX_TARGETS`] together.
    pub space_ids: Vec<String>,
    /// When the key is to open; it must end after it starts, and not have
    /// ended.
    pub window: Window,
    /// The stay the key belongs to, one per stay and shared by its co-guests:
    /// guests only. Required at a door that overrides the previous guest by
    /// reservation.
    pub reservation_key: Option<String>,
    /// Guest or staff.
    pub role: Role,
    /// The credentials to issue, at least one: every entrance must take every
    /// mode.
    pub modes: Vec<CredentialMode>,
    /// A PIN chosen by the caller, 4 to 8 digits: only with the PIN mode, and
    /// only at drivers that take one (`caller_pin`). Never logged or shown.
    pub pin: Option<Secret<String>>,
    /// Who asks, for the audit log. Not part of the request's identity:
    /// a retry from another connection is the same request.
    #[serde(skip)]
    pub origin: Option<AuditOrigin>,
}

/// What a Revoke withdraws.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RevokeTarget {
    /// One key, by key id.
    Key(String),
    /// Every key of a reservation, by reservation_key. This also clears the
    /// reservation: the next key of that reservation_key starts a new stay.
    Reservation(String),
}

/// Revoke: withdraw one key, or every key of a reservation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// The property of the key or reservation.
    pub property_id: String,
    /// The caller's idempotency key (AIP-155), as for [`IssueRequest::request_id`].
    pub request_id: Option<String>,
    /// The key, or the reservation, to revoke.
    pub target: RevokeTarget,
    /// Who asks, for the audit log. Not part of the request's identity:
    /// a retry from another connection is the same request.
    #[serde(skip)]
    pub origin: Option<AuditOrigin>,
}

/// ListKeys: a page of keysmith's keys of one property, filtered. The
/// filters combine (every one given must match).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListKeysRequest {
    /// The property whose keys are listed.
    pub property_id: String,
    /// Negative is refused, 0 means the default, above the maximum is capped.
    pub page_size: i32,
    /// The `next_page_token` of the previous page, empty for the first. Valid
    /// only with the same filters and caller.
    pub page_token: String,
    /// Only keys of this reservation_key, whatever their incarnation.
    pub reservation_key: Option<String>,
    /// Only keys that open this entrance.
    pub entrance_id: Option<String>,
    /// Only keys of this holder.
    pub holder_id: Option<String>,
    /// Only keys in one of these states as seen now (`EXPIRED` included);
    /// empty for any state.
    pub states: Vec<KeyState>,
    /// Also revoked keys, which are left out otherwise. Asking for the
    /// `REVOKED` state includes them too.
    pub include_revoked: bool,
    /// Who lists (a token id). Page tokens are bound to it, so one caller's
    /// token cannot be replayed by another.
    pub caller: String,
}

/// Which keys one driver holds on its side (an admin's reconciliation).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListDriverKeysRequest {
    /// The property whose keys the driver is asked about.
    pub property_id: String,
    /// The driver's name.
    pub driver: String,
    /// Negative is refused, 0 means the default, above the maximum is capped.
    pub page_size: i32,
    /// The driver's own page token, passed through as it gave it.
    pub page_token: String,
}

/// UpdateKey: give a key a new window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateKeyRequest {
    /// The key's property.
    pub property_id: String,
    /// The caller's idempotency key (AIP-155), as for [`IssueRequest::request_id`].
    pub request_id: Option<String>,
    /// The key to change.
    pub key_id: String,
    /// The new window: it must end after it starts, not have ended, and
    /// overlap the window of every other key of the key's reservation.
    pub window: Window,
    /// Who asks, for the audit log. Not part of the request's identity:
    /// a retry from another connection is the same request.
    #[serde(skip)]
    pub origin: Option<AuditOrigin>,
}

/// EncodeKey: re-encode the credentials a window change left out of date.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodeKeyRequest {
    /// The key's property.
    pub property_id: String,
    /// The caller's idempotency key (AIP-155), as for [`IssueRequest::request_id`].
    pub request_id: Option<String>,
    /// The key to re-encode.
    pub key_id: String,
    /// The encoder (a desk's card writer) to use, passed to the drivers as it
    /// is; `None` leaves the choice to them.
    pub encoder_id: Option<String>,
    /// Who asks, for the audit log. Not part of the request's identity:
    /// a retry from another connection is the same request.
    #[serde(skip)]
    pub origin: Option<AuditOrigin>,
}

/// Collects every field violation of a request before failing, so that a
/// caller sees all of them at once.
#[derive(Default)]
pub struct Violations {
    first_reason: Option<&'static str>,
    list: Vec<(String, String)>,
}

impl Violations {
    /// Records that `field` is wrong and `why`. The first reason added becomes
    /// the error's reason.
    pub fn add(&mut self, reason: &'static str, field: impl Into<String>, why: impl Into<String>) {
        self.first_reason.get_or_insert(reason);
        self.list.push((field.into(), why.into()));
    }

    /// A required identifier: present (`FIELD_REQUIRED`), then as
    /// [`Violations::optional_id`].
    pub fn id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(reasons::FIELD_REQUIRED, field, "is required");
        } else {
            self.optional_id(field, value);
        }
    }

    /// An identifier that may be empty: at most [`MAX_ID_LEN`] bytes
    /// (`FIELD_TOO_LONG`), every character an [`id_char`] (`FIELD_INVALID`).
    pub fn optional_id(&mut self, field: &str, value: &str) {
        if value.len() > MAX_ID_LEN {
            self.add(
                reasons::FIELD_TOO_LONG,
                field,
                format!("must be at most {MAX_ID_LEN} bytes"),
            );
        } else if !value.chars().all(id_char) {
            self.add(
                reasons::FIELD_INVALID,
                field,
                "must not contain whitespace, control, format or bidi characters",
            );
        }
    }

    /// A display name: at most [`MAX_NAME_LEN`] bytes (`FIELD_TOO_LONG`), with
    /// no control characters (`FIELD_INVALID`).
    pub fn name(&mut self, field: &str, value: &str) {
        if value.len() > MAX_NAME_LEN {
            self.add(
                reasons::FIELD_TOO_LONG,
                field,
                format!("must be at most {MAX_NAME_LEN} bytes"),
            );
        } else if value.chars().any(|c| c.is_control() || is_format(c)) {
            self.add(
                reasons::FIELD_INVALID,
                field,
                "must not contain control, format or bidi characters",
            );
        }
    }

    /// An instant at most [`HORIZON_SECONDS`] before or after `now`
    /// (`FIELD_INVALID`).
    pub fn near(&mut self, field: &str, t: Timestamp, now: Timestamp) {
        let distance = i128::from(t.unix_seconds()) - i128::from(now.unix_seconds());
        if distance.unsigned_abs() > HORIZON_SECONDS as u128 {
            self.add(
                reasons::FIELD_INVALID,
                field,
                "must be within ten years of now",
            );
        }
    }

    /// A window that ends after it starts (`INVALID_TIME_WINDOW`, on
    /// `ends_at`). Whether it has ended is judged later, by the operation, at
    /// its own reading of the clock.
    pub fn window(&mut self, window: &Window) {
        if window.ends_at <= window.starts_at {
            self.add(
                reasons::INVALID_TIME_WINDOW,
                "ends_at",
                "must be after starts_at",
            );
        }
    }

    /// `Ok` when nothing was recorded; else one InvalidArgument error with the
    /// first reason, a message naming every violation, and each violation as a
    /// field violation (AIP-193 BadRequest).
    pub fn finish(self) -> Result<()> {
        let Some(reason) = self.first_reason else {
            return Ok(());
        };
        let message = self
            .list
            .iter()
            .map(|(f, why)| format!("{f} {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = Error::new(crate::error::ErrorKind::InvalidArgument, reason, message);
        for (field, why) in self.list {
            error = error.with_violation(field, why);
        }
        Err(error)
    }
}

/// Whether `c` may be part of an identifier: any Unicode character but
/// whitespace, control characters (Cc), and format characters (Cf), which
/// include the invisible ones (U+200B zero width space, U+FEFF byte order
/// mark, U+00AD soft hyphen...) and the bidi controls (U+200E, U+200F,
/// U+202A to U+202E, U+2066 to U+2069). Ids that look the same must be the
/// same id, and an id must print as what it is, in a terminal or a log.
pub fn id_char(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || is_format(c))
}

/// Unicode general category Cf.
fn is_format(c: char) -> bool {
    get_general_category(c) == GeneralCategory::Format
}

/// Checks a new window against the clock's `now`, as Issue and UpdateKey
/// do once they have read it: it must not have ended (`INVALID_TIME_WINDOW`)
/// and must end within [`HORIZON_SECONDS`] of now (`INVALID_TIME_WINDOW`).
pub fn check_window_at(window: &Window, now: Timestamp) -> Result<()> {
    if window.has_ended(now) {
        return Err(Error::invalid_field(
            reasons::INVALID_TIME_WINDOW,
            "ends_at",
            "is in the past",
        ));
    }
    if window.ends_at > now.saturating_add_seconds(HORIZON_SECONDS) {
        return Err(Error::invalid_field(
            reasons::INVALID_TIME_WINDOW,
            "ends_at",
            "must be within ten years of now",
        ));
    }
    Ok(())
}

/// A PIN chosen by a caller: 4 to 8 digits.
pub fn check_pin(pin: &str) -> bool {
    (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

impl IssueRequest {
    /// Checks the content, reading nothing: the ids, the holder, one to
    /// [`MAX_TARGETS`] entrances and spaces, a window that ends after it
    /// starts, at least one mode, and a PIN of 4 to 8 digits (`INVALID_PIN`)
    /// only with the PIN mode. Every violation is reported at once
    /// ([`Violations::finish`]).
    pub fn validate(&self) -> Result<()> {
        let mut v = Violations::default();
        v.id("property_id", &self.property_id);
        if let Some(id) = &self.request_id {
            v.optional_id("request_id", id);
        }
        v.id("holder_id", &self.holder.id);
        if let Some(name) = &self.holder.name {
            v.name("holder_name", name);
        }
        if self.entrance_ids.is_empty() && self.space_ids.is_empty() {
            v.add(
                reasons::FIELD_REQUIRED,
                "entrance_ids",
                "at least one entrance or space is required",
            );
        }
        if self.entrance_ids.len() + self.space_ids.len() > MAX_TARGETS {
            v.add(
                reasons::FIELD_TOO_LONG,
                "entrance_ids",
                format!("at most {MAX_TARGETS} entrances and spaces together"),
            );
        }
        for (i, id) in self.entrance_ids.iter().enumerate() {
            v.id(&format!("entrance_ids[{i}]"), id);
        }
        for (i, id) in self.space_ids.iter().enumerate() {
            v.id(&format!("space_ids[{i}]"), id);
        }
        v.window(&self.window);
        if let Some(key) = &self.reservation_key {
            v.optional_id("reservation_key", key);
        }
        if self.modes.is_empty() {
            v.add(
                reasons::FIELD_REQUIRED,
                "modes",
                "at least one credential mode is required",
            );
        }
        if let Some(pin) = &self.pin {
            if !check_pin(pin.expose()) {
                v.add(reasons::INVALID_PIN, "pin", "must be 4 to 8 digits");
            } else if !self.modes.contains(&CredentialMode::Pin) {
                v.add(
                    reasons::FIELD_INVALID,
                    "pin",
                    "is only allowed when the PIN mode is requested",
                );
            }
        }
        v.finish()
    }
}

impl RevokeRequest {
    /// Checks the content, reading nothing: the property id, the request_id,
    /// and the key id or reservation_key of the target.
    pub fn validate(&self) -> Result<()> {
        let mut v = Violations::default();
        v.id("property_id", &self.property_id);
        if let Some(id) = &self.request_id {
            v.optional_id("request_id", id);
        }
        match &self.target {
            RevokeTarget::Key(id) => v.id("key_id", id),
            RevokeTarget::Reservation(key) => v.id("reservation_key", key),
        }
        v.finish()
    }
}

impl UpdateKeyRequest {
    /// Checks the content, reading nothing: the ids and a window that ends
    /// after it starts.
    pub fn validate(&self) -> Result<()> {
        let mut v = Violations::default();
        v.id("property_id", &self.property_id);
        if let Some(id) = &self.request_id {
            v.optional_id("request_id", id);
        }
        v.id("key_id", &self.key_id);
        v.window(&self.window);
        v.finish()
    }
}

impl EncodeKeyRequest {
    /// Checks the content, reading nothing: the ids, the encoder id included.
    pub fn validate(&self) -> Result<()> {
        let mut v = Violations::default();
        v.id("property_id", &self.property_id);
        if let Some(id) = &self.request_id {
            v.optional_id("request_id", id);
        }
        v.id("key_id", &self.key_id);
        if let Some(id) = &self.encoder_id {
            v.optional_id("encoder_id", id);
        }
        v.finish()
    }
}

impl ListKeysRequest {
    /// The page size to use.
    pub fn validate(&self) -> Result<usize> {
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
        if self.page_size < 0 {
            v.add(
                reasons::INVALID_PAGE_SIZE,
                "page_size",
                "must not be negative",
            );
        }
        if self.page_token.len() > 1024 {
            v.add(
                reasons::INVALID_PAGE_TOKEN,
                "page_token",
                "is not a page token of this service",
            );
        }
        v.finish()?;
        Ok(match self.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        })
    }
}

impl ListDriverKeysRequest {
    /// Checks the fields and returns the page size to ask the driver for.
    pub fn validate(&self) -> Result<u32> {
        let mut v = Violations::default();
        v.id("property_id", &self.property_id);
        v.id("driver", &self.driver);
        if self.page_size < 0 {
            v.add(
                reasons::INVALID_PAGE_SIZE,
                "page_size",
                "must not be negative",
            );
        }
        if self.page_token.len() > 1024 {
            v.add(
                reasons::INVALID_PAGE_TOKEN,
                "page_token",
                "is not a page token of this driver",
            );
        }
        v.finish()?;
        Ok(match self.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        } as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue() -> IssueRequest {
        IssueRequest {
            property_id: "hotel".into(),
            request_id: None,
            holder: Holder {
                id: "guest-1".into(),
                name: None,
            },
            entrance_ids: vec!["room-101".into()],
            space_ids: vec![],
            window: Window {
                starts_at: Timestamp::from_unix_seconds(10),
                ends_at: Timestamp::from_unix_seconds(20),
            },
            reservation_key: None,
            role: Role::Guest,
            modes: vec![CredentialMode::Card],
            pin: None,
            origin: None,
        }
    }

    #[test]
    fn a_good_request_passes() {
        issue().validate().unwrap();
    }

    #[test]
    fn every_violation_is_reported_with_its_field() {
        let mut r = issue();
        r.property_id.clear();
        r.window.ends_at = r.window.starts_at;
        r.modes.clear();
        r.holder.id = "x".repeat(MAX_ID_LEN + 1);
        let err = r.validate().unwrap_err();
        assert_eq!(err.reason(), reasons::FIELD_REQUIRED);
        let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["property_id", "holder_id", "ends_at", "modes"]);
    }

    #[test]
    fn pins_are_four_to_eight_digits_and_need_the_pin_mode() {
        assert!(check_pin("1234") && check_pin("12345678"));
        assert!(!check_pin("123") && !check_pin("123456789") && !check_pin("12a4"));
        let mut r = issue();
        r.pin = Some(Secret::new("1234".into()));
        let err = r.validate().unwrap_err();
        assert_eq!(err.violations()[0].field, "pin");
        r.modes.push(CredentialMode::Pin);
        r.validate().unwrap();
        r.pin = Some(Secret::new("12".into()));
        assert_eq!(r.validate().unwrap_err().reason(), reasons::INVALID_PIN);
    }

    #[test]
    fn the_pin_never_reaches_an_error_message() {
        let mut r = issue();
        r.pin = Some(Secret::new("98x7".into()));
        let err = r.validate().unwrap_err();
        assert!(!format!("{err} {err:?}").contains("98x7"));
    }

    #[test]
    fn ids_refuse_invisible_and_direction_changing_characters() {
        for bad in [
            "guest\u{202E}1",
            "guest\u{200B}1",
            "\u{FEFF}guest",
            "guest\u{2066}1",
            "guest\u{00AD}1",
            "guest\u{0007}",
            "guest 1",
        ] {
            let mut r = issue();
            r.holder.id = bad.into();
            r.reservation_key = Some(bad.into());
            r.request_id = Some(bad.into());
            let err = r.validate().unwrap_err();
            assert_eq!(err.reason(), reasons::FIELD_INVALID, "{bad:?}");
            let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
            assert_eq!(fields, ["request_id", "holder_id", "reservation_key"]);
        }
        // Letters of any script, digits and punctuation stay ids.
        for good in [
            "guest-1",
            "Müller_2030",
            "客人:42",
            "a@b.example",
            "stay/7#1",
        ] {
            let mut r = issue();
            r.holder.id = good.into();
            r.validate().unwrap();
        }
        let mut r = issue();
        r.holder.name = Some("Ana\u{202E}".into());
        assert_eq!(
            r.validate().unwrap_err().violations()[0].field,
            "holder_name"
        );
    }

    #[test]
    fn a_window_must_end_within_the_horizon() {
        let now = Timestamp::from_unix_seconds(1_900_000_000);
        let window = |ends: i64| Window {
            starts_at: now,
            ends_at: now.saturating_add_seconds(ends),
        };
        check_window_at(&window(HORIZON_SECONDS), now).unwrap();
        let err = check_window_at(&window(HORIZON_SECONDS + 1), now).unwrap_err();
        assert_eq!(err.reason(), reasons::INVALID_TIME_WINDOW);
        assert_eq!(err.violations()[0].field, "ends_at");
        let past = Window {
            starts_at: now.saturating_add_seconds(-10),
            ends_at: now.saturating_add_seconds(-1),
        };
        assert!(check_window_at(&past, now).is_err());
        let mut v = Violations::default();
        v.near("at", now.saturating_add_seconds(-HORIZON_SECONDS), now);
        v.near("at", Timestamp::from_unix_seconds(i64::MIN), now);
        let err = v.finish().unwrap_err();
        assert_eq!(err.violations().len(), 1);
    }

    #[test]
    fn page_size_is_defaulted_capped_and_never_negative() {
        let mut r = ListKeysRequest {
            property_id: "hotel".into(),
            ..Default::default()
        };
        assert_eq!(r.validate().unwrap(), DEFAULT_PAGE_SIZE);
        r.page_size = 10_000;
        assert_eq!(r.validate().unwrap(), MAX_PAGE_SIZE);
        r.page_size = -1;
        assert_eq!(
            r.validate().unwrap_err().reason(),
            reasons::INVALID_PAGE_SIZE
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::time::Timestamp;

        /// Identifiers as a careless or hostile caller sends them: any
        /// characters, sometimes too long.
        fn id() -> impl Strategy<Value = String> {
            prop_oneof!["[a-z0-9-]{0,12}", ".{0,16}", "[a-z]{120,140}",]
        }

        fn mode() -> impl Strategy<Value = CredentialMode> {
            prop::sample::select(vec![
                CredentialMode::Pin,
                CredentialMode::Card,
                CredentialMode::MobileKey,
                CredentialMode::Qr,
                CredentialMode::KeyStorage,
            ])
        }

        prop_compose! {
            fn issue()(
                property_id in id(),
                request_id in proptest::option::of(id()),
                holder_id in id(),
                holder_name in proptest::option::of(".{0,20}"),
                entrance_ids in prop::collection::vec(id(), 0..4),
                space_ids in prop::collection::vec(id(), 0..3),
                starts in any::<i64>(),
                ends in any::<i64>(),
                reservation_key in proptest::option::of(id()),
                staff in any::<bool>(),
                modes in prop::collection::vec(mode(), 0..3),
                pin in proptest::option::of("[0-9a-z]{0,10}"),
            ) -> IssueRequest {
                IssueRequest {
                    property_id,
                    request_id,
                    holder: Holder { id: holder_id, name: holder_name },
                    entrance_ids,
                    space_ids,
                    window: Window {
                        starts_at: Timestamp::from_micros(starts),
                        ends_at: Timestamp::from_micros(ends),
                    },
                    reservation_key,
                    role: if staff { Role::Staff } else { Role::Guest },
                    modes,
                    pin: pin.map(Secret::new),
                    origin: None,
                }
            }
        }

        /// The text of every field but the PIN, to tell whether the PIN
        /// could have reached an error through another field.
        fn other_fields(r: &IssueRequest) -> String {
            let mut all = vec![r.property_id.clone(), r.holder.id.clone()];
            all.extend(r.request_id.clone());
            all.extend(r.holder.name.clone());
            all.extend(r.reservation_key.clone());
            all.extend(r.entrance_ids.iter().cloned());
            all.extend(r.space_ids.iter().cloned());
            all.join("\n")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Validation never panics; a refusal is INVALID_ARGUMENT with a
            /// field violation per problem, and never shows the PIN.
            #[test]
            fn issue_validation_is_total_and_typed(r in issue()) {
                if let Err(err) = r.validate() {
                    prop_assert_eq!(err.kind(), crate::error::ErrorKind::InvalidArgument);
                    prop_assert!(!err.violations().is_empty());
                    if let Some(pin) = &r.pin {
                        let pin = pin.expose();
                        if pin.len() >= 4 && !other_fields(&r).contains(pin.as_str()) {
                            let shown = format!("{err} {err:?}");
                            prop_assert!(!shown.contains(pin.as_str()), "{}", shown);
                        }
                    }
                }
            }

            /// What passes validation has what the API documents.
            #[test]
            fn what_passes_is_well_formed(r in issue()) {
                if r.validate().is_ok() {
                    prop_assert!(!r.property_id.is_empty() && r.property_id.len() <= MAX_ID_LEN);
                    prop_assert!(!r.holder.id.is_empty());
                    let targets = r.entrance_ids.len() + r.space_ids.len();
                    prop_assert!((1..=MAX_TARGETS).contains(&targets));
                    prop_assert!(r.window.starts_at < r.window.ends_at);
                    prop_assert!(!r.modes.is_empty());
                    if let Some(pin) = &r.pin {
                        prop_assert!(check_pin(pin.expose()));
                        prop_assert!(r.modes.contains(&CredentialMode::Pin));
                    }
                }
            }

            /// Listing requests: any page size and token length, a typed
            /// answer, and a page size within the documented bounds.
            #[test]
            fn list_validation_is_total(
                property_id in id(),
                page_size in any::<i32>(),
                token_len in 0usize..2048,
                holder_id in proptest::option::of(id()),
            ) {
                let r = ListKeysRequest {
                    property_id,
                    page_size,
                    page_token: "A".repeat(token_len),
                    holder_id,
                    ..Default::default()
                };
                match r.validate() {
                    Ok(size) => prop_assert!((1..=MAX_PAGE_SIZE).contains(&size)),
                    Err(err) => {
                        prop_assert_eq!(err.kind(), crate::error::ErrorKind::InvalidArgument);
                        prop_assert!(!err.violations().is_empty());
                    }
                }
            }
        }
    }
}
