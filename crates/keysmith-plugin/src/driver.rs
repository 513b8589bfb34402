//! What a plugin author implements: an ordinary, synchronous Rust trait on
//! keysmith's own argument and reply types.
use keysmith_driver::{
    driver::{
        EncodeArgs, EncodeReply, EntranceSpec, IssueArgs, IssueReply, ListArgs, ListReply,
        RefreshArgs, RefreshReply, RevokeArgs, RevokeReply, UpdateArgs, UpdateReply,
    },
    reasons, DriverCapability, Error, ErrorKind, Result,
};

/// Who a plugin driver is. keysmith reads it once, when it loads the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub capability: DriverCapability,
}

/// A driver as a plugin: the same operations as keysmith's `Driver` trait,
/// synchronous. keysmith calls them on a blocking thread, possibly several
/// at once, so implementations are `Send + Sync` and guard their state.
///
/// Async work: keep your own runtime (a `tokio::runtime::Runtime` created
/// in your constructor, used with `block_on`). keysmith's runtime is never
/// shared across the plugin boundary, and a plugin must not assume one.
///
/// keysmith checks capabilities and applies the reservation rules before
/// calling: `issue` receives each entrance's behaviour (standard, override,
/// join) already decided. Return errors with keysmith's kinds and UPPER_SNAKE
/// reasons; they reach the caller as they are. Never put a PIN or card data
/// in an error, a log line or a panic message.
pub trait PluginDriver: Send + Sync + 'static {
    fn info(&self) -> PluginInfo;

    /// Every entrance this driver serves, across properties.
    fn entrances(&self) -> Result<Vec<EntranceSpec>>;

    fn issue(&self, args: IssueArgs) -> Result<IssueReply>;

    fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply>;

    /// Asked only when the capability says `update`.
    fn update(&self, _args: UpdateArgs) -> Result<UpdateReply> {
        Err(unsupported("update"))
    }

    /// Asked only when the capability says `encode`.
    fn encode(&self, _args: EncodeArgs) -> Result<EncodeReply> {
        Err(unsupported("encode"))
    }

    /// Asked only when the capability says `refresh`.
    fn refresh(&self, _args: RefreshArgs) -> Result<RefreshReply> {
        Err(unsupported("refresh"))
    }

    /// Asked only when the capability says `list`.
    fn list(&self, _args: ListArgs) -> Result<ListReply> {
        Err(unsupported("list"))
    }
}

fn unsupported(operation: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        reasons::OPERATION_NOT_SUPPORTED,
        format!("this driver does not support {operation}"),
    )
}
