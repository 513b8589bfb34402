//! The driver contract. Every argument and reply is plain data (no handles,
//! no callbacks), so the same contract can cross a bytes-only plugin ABI.
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    capability::{CredentialMode, DriverCapability, EntranceCapability},
    error::{reasons, Error, ErrorKind, Result},
    key::{Behaviour, Credential, Holder, ReservationRef, Role, Warning},
    secret::Secret,
    time::Window,
};

/// Whether a driver is compiled into keysmith or loaded from a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverKind {
    /// Compiled into keysmith.
    BuiltIn,
    /// Loaded from a shared library at start-up.
    Plugin,
}

/// A driver as keysmith lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// The name keysmith knows it by: on every key's entrances, in errors.
    pub name: String,
    /// The driver's own version.
    pub version: String,
    /// Built in or a plugin.
    pub kind: DriverKind,
    /// What it can do; keysmith asks for nothing else.
    pub capability: DriverCapability,
}

/// An entrance as a driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntranceSpec {
    /// The property (hotel) it belongs to.
    pub property_id: String,
    /// Unique within the property, across drivers.
    pub entrance_id: String,
    /// For people.
    pub name: String,
    /// The spaces (a room, a suite, a floor) it belongs to: a request for a
    /// space is a request for its entrances.
    pub space_ids: Vec<String>,
    /// What it accepts.
    pub capability: EntranceCapability,
}

/// A card encoder as a driver reports it: where a card credential is
/// written before it opens a door (EncodeKey takes its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// The property (hotel) it serves.
    pub property_id: String,
    /// The id EncodeKey takes as `encoder_id`.
    pub encoder_id: String,
    /// For people (its name at the front desk).
    pub name: String,
}

/// One entrance of a request, with the reservation behaviour the core chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntranceTarget {
    /// The entrance.
    pub entrance_id: String,
    /// Override, join or standard access, as the core decided.
    pub behaviour: Behaviour,
}

/// What [`Driver::issue`] is asked to provision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueArgs {
    /// keysmith's id for the key: unique, stable across retries of the
    /// same call, the driver's idempotency key.
    pub key_id: String,
    /// The property.
    pub property_id: String,
    /// Who it is for.
    pub holder: Holder,
    /// Guest or staff.
    pub role: Role,
    /// When it opens.
    pub window: Window,
    /// Set when at least one entrance has reservation behaviour.
    pub reservation: Option<ReservationRef>,
    /// This driver's entrances of the key, each with its behaviour.
    pub entrances: Vec<EntranceTarget>,
    /// The credentials to issue, each a mode the entrances take.
    pub modes: Vec<CredentialMode>,
    /// A PIN chosen by the caller (only when `caller_pin`).
    pub pin: Option<Secret<String>>,
}

/// Whether issued credentials are deliverable now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IssuedState {
    /// Credentials are deliverable now.
    Active,
    /// The provider issues asynchronously; credentials follow (keysmith
    /// refreshes the key until they do).
    Issuing,
}

/// What [`Driver::issue`] answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueReply {
    /// One per requested mode (pending ones while issuing).
    pub credentials: Vec<Credential>,
    /// Deliverable now, or later.
    pub state: IssuedState,
    /// What the caller should know.
    pub warnings: Vec<Warning>,
    /// The driver's own id for what it issued (a grant id), handed back on
    /// every later call for this key as [`KeySlice::driver_ref`].
    pub driver_ref: Option<String>,
}

/// The part of a key that belongs to one driver, as later calls need it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySlice {
    /// keysmith's id for the key.
    pub key_id: String,
    /// The property.
    pub property_id: String,
    /// Who it is for.
    pub holder: Holder,
    /// Guest or staff.
    pub role: Role,
    /// Its current window (the new one in [`Driver::encode`]).
    pub window: Window,
    /// Its reservation and incarnation, when it has one.
    pub reservation: Option<ReservationRef>,
    /// This driver's entrances of the key.
    pub entrances: Vec<EntranceTarget>,
    /// The credentials this driver issued for the key.
    pub credentials: Vec<Credential>,
    /// What the driver answered as [`IssueReply::driver_ref`].
    pub driver_ref: Option<String>,
}

/// What [`Driver::revoke`] is asked to withdraw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeArgs {
    /// The key's part at this driver.
    pub key: KeySlice,
}

/// What [`Driver::revoke`] answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RevokeReply {
    /// What the caller should know (an offline credential still opening).
    pub warnings: Vec<Warning>,
}

/// What [`Driver::update`] is asked to change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateArgs {
    /// The key's part at this driver, with its current window.
    pub key: KeySlice,
    /// The window it is to have.
    pub new_window: Window,
}

/// What [`Driver::update`] answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateReply {
    /// The credentials after the change (unchanged data for offline ones).
    pub credentials: Vec<Credential>,
    /// Offline credentials do not carry the change until re-encoded.
    pub encoding_required: bool,
    /// What the caller should know.
    pub warnings: Vec<Warning>,
}

/// What [`Driver::encode`] is asked to re-encode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodeArgs {
    /// The key's part at this driver, with its new window.
    pub key: KeySlice,
    /// The encoder (a desk's card writer) to use, when the driver has several.
    pub encoder_id: Option<String>,
}

/// What [`Driver::encode`] answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodeReply {
    /// The re-encoded credentials, replacing the key's at this driver.
    pub credentials: Vec<Credential>,
    /// What the caller should know.
    pub warnings: Vec<Warning>,
}

/// What [`Driver::refresh`] is asked about.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshArgs {
    /// The key's part at this driver.
    pub key: KeySlice,
}

/// Where a driver's part of a key stands, for drivers that issue credentials
/// asynchronously (an online lock platform provisioning access methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisionState {
    /// Still being provisioned: some credential is not issued yet.
    Issuing,
    /// Every credential is issued and usable.
    Active,
    /// A credential must be encoded (a card) before it opens.
    EncodingRequired,
    /// The provider reported that it cannot deliver some requested
    /// credential; the reply's warnings say what it reported. Final for
    /// this key: keysmith stops refreshing it.
    Failed,
}

/// What [`Driver::refresh`] answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshReply {
    /// The credentials as they stand now.
    pub credentials: Vec<Credential>,
    /// Where the key stands at this driver.
    pub state: ProvisionState,
    /// What the caller should know.
    pub warnings: Vec<Warning>,
}

/// What [`Driver::forget`] is told: keysmith purged a key past its retention.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForgetArgs {
    /// The key's part at this driver, as it was last stored.
    pub key: KeySlice,
    /// Every key of the key's reservation (any incarnation) is purged too:
    /// what the driver kept for the reservation can go.
    pub reservation_forgotten: bool,
}

/// Which keys a driver holds on its side for one property, a page at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListArgs {
    /// The property.
    pub property_id: String,
    /// At least 1; the core caps it. A driver may answer fewer.
    pub page_size: u32,
    /// The driver's own token from its previous page; None for the first.
    pub page_token: Option<String>,
}

/// A key as the driver holds it: what reconciliation compares with
/// keysmith's own record. Never a credential's secret data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverKeyRecord {
    /// keysmith's id for the key.
    pub key_id: String,
    /// The driver's own id for it.
    pub driver_ref: Option<String>,
    /// Whom the driver thinks it is for.
    pub holder_id: String,
    /// The entrances it opens there.
    pub entrance_ids: Vec<String>,
    /// Its window there.
    pub window: Window,
}

/// What [`Driver::list`] answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// Only keys still in force at the driver: a revoked key is not listed.
    pub keys: Vec<DriverKeyRecord>,
    /// The driver's token for the next page; None after the last.
    pub next_page_token: Option<String>,
}

/// A lock system, an online access platform or a plugin behind some
/// entrances.
///
/// keysmith's core checks the capabilities and the reservation rules before
/// it calls, so a driver only provisions: it never decides whether a
/// request is allowed, and it is never asked for an operation its
/// [`DriverCapability`] does not declare. A key can span several drivers;
/// each is called with its own part of the key ([`KeySlice`]) and in the
/// entrance order of the key. When one fails the core undoes, or records
/// for a retry, what the others did; so every call below may be repeated
/// for the same key and must then have the effect of one call.
///
/// Errors carry a kind (the gRPC code the caller gets), a stable reason,
/// and say whether retrying can help ([`Error::is_temporary`]): a provider
/// that cannot be reached is `Unavailable`, a refusal by the provider's
/// rules keeps its meaning (`FailedPrecondition`, `InvalidArgument`). No
/// error, log or Debug output may hold a credential's data or a secret.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The driver's name, version, kind and capability. Cheap and constant.
    fn info(&self) -> DriverInfo;

    /// Every entrance this driver serves, across properties. Called at
    /// start and on every refresh of the entrances; an entrance missing from
    /// a later answer is reported as having disappeared.
    async fn entrances(&self) -> Result<Vec<EntranceSpec>>;

    /// Provisions a new key at this driver's entrances of it.
    ///
    /// Requires `issue`. Idempotent by `args.key_id`: a second call for a
    /// key already issued (a retry after a lost answer) must find what the
    /// first made, never provision it twice. The core has checked that every
    /// entrance is this driver's and takes every mode, and chose each
    /// entrance's reservation behaviour: `Override` starts a new stay of
    /// `args.reservation` (a newer incarnation overrides older ones at first
    /// use), `Join` carries the reservation's existing value, `Standard`
    /// ignores reservations.
    async fn issue(&self, args: IssueArgs) -> Result<IssueReply>;

    /// Withdraws the key at this driver's entrances.
    ///
    /// Requires `revoke`. Idempotent: revoking a key this driver no longer
    /// holds succeeds. A driver whose doors never hear of revocations
    /// (offline locks) succeeds and says so in a warning.
    async fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply>;

    /// Gives the key a new window.
    ///
    /// Requires `update`. Idempotent: updating to the window the key has is
    /// harmless. The core also calls it with the key's previous window to
    /// put back a change another driver could not make. Credentials that
    /// carry the window themselves (cards) answer `encoding_required`.
    async fn update(&self, args: UpdateArgs) -> Result<UpdateReply>;

    /// Re-encodes the key's credentials after a change, as joiners of the
    /// key's reservation (never overriding its co-guests).
    ///
    /// Requires `encode`. Called only for keys whose credentials at this
    /// driver say `encoding_required`; after success they no longer do.
    async fn encode(&self, args: EncodeArgs) -> Result<EncodeReply>;

    /// Reads where an asynchronously issued key stands now, without
    /// changing it.
    ///
    /// Requires `refresh`: keysmith then asks it for every key of this
    /// driver still `Issuing`, now and then, and on RefreshKey.
    async fn refresh(&self, _args: RefreshArgs) -> Result<RefreshReply> {
        Err(unsupported(&self.info().name, "refresh keys"))
    }

    /// Tells the driver that keysmith purged an ended key (revoked, or
    /// expired) past its retention, so that it can drop what it keeps for
    /// it (PINs at a keypad, a reservation's sequence values).
    ///
    /// Needs no capability; the default keeps everything. Idempotent. A
    /// failure is logged and not retried: the key is gone from keysmith.
    async fn forget(&self, _args: ForgetArgs) -> Result<()> {
        Ok(())
    }

    /// The keys this driver holds on its side for one property, for
    /// reconciliation, a page at a time in a stable order.
    ///
    /// Requires `list`. Never returns credential data.
    async fn list(&self, _args: ListArgs) -> Result<ListReply> {
        Err(unsupported(&self.info().name, "list its keys"))
    }

    /// The card encoders of one property at this driver, whose ids EncodeKey
    /// takes. A driver that encodes without naming an encoder (or not at
    /// all) has none: the default answers an empty list. Reads only; the
    /// order is the driver's, stable between calls.
    async fn encoders(&self, _property_id: &str) -> Result<Vec<EncoderSpec>> {
        Ok(Vec::new())
    }
}

fn unsupported(driver: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        reasons::OPERATION_NOT_SUPPORTED,
        format!("driver {driver:?} does not {what}"),
    )
}
