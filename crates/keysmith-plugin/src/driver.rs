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
    /// The driver's name for itself. A plugin host registers the driver under
    /// the name its configuration gives (and logs a mismatch);
    /// [`InProcess::new`](crate::InProcess::new) uses this one.
    pub name: String,
    /// The plugin's own version, as keysmith lists it.
    pub version: String,
    /// What the driver can do. keysmith asks for nothing else, and refuses the
    /// rest itself with `OPERATION_NOT_SUPPORTED`.
    pub capability: DriverCapability,
}

/// A driver as a plugin: the same operations as keysmith's
/// [`Driver`](keysmith_driver::Driver) trait, synchronous, with the same
/// contract: each method requires the capability flag of the same name, and
/// every one may be repeated for the same key with the effect of one call.
/// keysmith calls them on a blocking thread, possibly several at once, so
/// implementations are `Send + Sync` and guard their state.
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
    /// The driver's name, version and capability. Read once, when the plugin
    /// is loaded: later changes are not seen.
    fn info(&self) -> PluginInfo;

    /// Every entrance this driver serves, across properties, as
    /// [`Driver::entrances`](keysmith_driver::Driver::entrances). Asked at
    /// start and on every refresh of the entrances; an entrance missing from
    /// a later answer is reported as having disappeared.
    fn entrances(&self) -> Result<Vec<EntranceSpec>>;

    /// Provisions a new key at this driver's entrances of it, as
    /// [`Driver::issue`](keysmith_driver::Driver::issue).
    ///
    /// Requires `issue`. Idempotent by `args.key_id`: a retry after a lost
    /// answer must find what the first call made, never provision it twice.
    /// Each entrance's behaviour (standard, override, join) is already decided,
    /// and every entrance is this driver's and takes every mode.
    fn issue(&self, args: IssueArgs) -> Result<IssueReply>;

    /// Withdraws the key at this driver's entrances, as
    /// [`Driver::revoke`](keysmith_driver::Driver::revoke).
    ///
    /// Requires `revoke`. Idempotent: revoking a key this driver no longer
    /// holds succeeds. Offline doors never hear of it: succeed and say so in a
    /// warning.
    fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply>;

    /// Gives the key a new window, as
    /// [`Driver::update`](keysmith_driver::Driver::update).
    ///
    /// Asked only when the capability says `update`. Idempotent: keysmith
    /// also calls it with the key's previous window to put back a change
    /// another driver could not make. Credentials that carry the window
    /// themselves (cards) answer `encoding_required`.
    fn update(&self, _args: UpdateArgs) -> Result<UpdateReply> {
        Err(unsupported("update"))
    }

    /// Re-encodes the key's credentials after a change, joining the key's
    /// reservation (never overriding its co-guests), as
    /// [`Driver::encode`](keysmith_driver::Driver::encode).
    ///
    /// Asked only when the capability says `encode`, and only for keys whose
    /// credentials at this driver say `encoding_required`; after success
    /// they no longer do.
    fn encode(&self, _args: EncodeArgs) -> Result<EncodeReply> {
        Err(unsupported("encode"))
    }

    /// Reads where an asynchronously issued key stands now, without
    /// changing it, as [`Driver::refresh`](keysmith_driver::Driver::refresh).
    ///
    /// Asked only when the capability says `refresh`: keysmith then asks it
    /// for every key of this driver still issuing, now and then, and on
    /// RefreshKey.
    fn refresh(&self, _args: RefreshArgs) -> Result<RefreshReply> {
        Err(unsupported("refresh"))
    }

    /// The keys this driver holds on its side for one property, a page at a
    /// time in a stable order, for reconciliation, as
    /// [`Driver::list`](keysmith_driver::Driver::list).
    ///
    /// Asked only when the capability says `list`. Never returns credential
    /// data.
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
