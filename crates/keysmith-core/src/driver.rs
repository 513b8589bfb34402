//! The driver contract. Every argument and reply is plain data (no handles,
//! no callbacks), so the same contract can cross a bytes-only plugin ABI.
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    capability::{CredentialMode, DriverCapability, EntranceCapability},
    error::Result,
    key::{Behaviour, Credential, Holder, ReservationRef, Role, Warning},
    secret::Secret,
    time::Window,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverKind {
    BuiltIn,
    Plugin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    pub name: String,
    pub version: String,
    pub kind: DriverKind,
    pub capability: DriverCapability,
}

/// An entrance as a driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntranceSpec {
    pub property_id: String,
    pub entrance_id: String,
    pub name: String,
    pub space_ids: Vec<String>,
    pub capability: EntranceCapability,
}

/// One entrance of a request, with the reservation behaviour the core chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntranceTarget {
    pub entrance_id: String,
    pub behaviour: Behaviour,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueArgs {
    pub key_id: String,
    pub property_id: String,
    pub holder: Holder,
    pub role: Role,
    pub window: Window,
    /// Set when at least one entrance has reservation behaviour.
    pub reservation: Option<ReservationRef>,
    pub entrances: Vec<EntranceTarget>,
    pub modes: Vec<CredentialMode>,
    pub pin: Option<Secret<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IssuedState {
    /// Credentials are deliverable now.
    Active,
    /// The provider issues asynchronously; credentials follow.
    Issuing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueReply {
    pub credentials: Vec<Credential>,
    pub state: IssuedState,
    pub warnings: Vec<Warning>,
    /// The driver's own id for what it issued, handed back on later calls.
    pub driver_ref: Option<String>,
}

/// The part of a key that belongs to one driver, as later calls need it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySlice {
    pub key_id: String,
    pub property_id: String,
    pub holder: Holder,
    pub role: Role,
    pub window: Window,
    pub reservation: Option<ReservationRef>,
    pub entrances: Vec<EntranceTarget>,
    pub credentials: Vec<Credential>,
    pub driver_ref: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeArgs {
    pub key: KeySlice,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RevokeReply {
    pub warnings: Vec<Warning>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateArgs {
    pub key: KeySlice,
    pub new_window: Window,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateReply {
    /// The credentials after the change (unchanged data for offline ones).
    pub credentials: Vec<Credential>,
    /// Offline credentials do not carry the change until re-encoded.
    pub encoding_required: bool,
    pub warnings: Vec<Warning>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodeArgs {
    pub key: KeySlice,
    pub encoder_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodeReply {
    pub credentials: Vec<Credential>,
    pub warnings: Vec<Warning>,
}

/// A lock system or PMS behind some entrances. The core checks capabilities
/// and the reservation rules before calling; a driver only provisions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshArgs {
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshReply {
    pub credentials: Vec<Credential>,
    pub state: ProvisionState,
    pub warnings: Vec<Warning>,
}

/// Which keys a driver holds on its side for one property, a page at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListArgs {
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
    pub key_id: String,
    pub driver_ref: Option<String>,
    pub holder_id: String,
    pub entrance_ids: Vec<String>,
    pub window: Window,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// Only keys still in force at the driver: a revoked key is not listed.
    pub keys: Vec<DriverKeyRecord>,
    pub next_page_token: Option<String>,
}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    fn info(&self) -> DriverInfo;

    /// Every entrance this driver serves, across properties.
    async fn entrances(&self) -> Result<Vec<EntranceSpec>>;

    async fn issue(&self, args: IssueArgs) -> Result<IssueReply>;

    async fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply>;

    async fn update(&self, args: UpdateArgs) -> Result<UpdateReply>;

    async fn encode(&self, args: EncodeArgs) -> Result<EncodeReply>;

    /// Reads where an asynchronously issued key stands now. Only drivers
    /// whose capability says `refresh` are asked.
    async fn refresh(&self, _args: RefreshArgs) -> Result<RefreshReply> {
        Err(crate::error::Error::new(
            crate::error::ErrorKind::Unsupported,
            crate::error::reasons::OPERATION_NOT_SUPPORTED,
            format!("driver {:?} does not refresh keys", self.info().name),
        ))
    }

    /// The keys this driver holds on its side for one property, for
    /// reconciliation. Only drivers whose capability says `list` are asked.
    async fn list(&self, _args: ListArgs) -> Result<ListReply> {
        Err(crate::error::Error::new(
            crate::error::ErrorKind::Unsupported,
            crate::error::reasons::OPERATION_NOT_SUPPORTED,
            format!("driver {:?} does not list its keys", self.info().name),
        ))
    }
}
