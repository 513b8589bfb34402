//! For keysmith's tests only: a library that claims driver ABI 99, which
//! keysmith must refuse at start-up, naming it and both versions. Its
//! driver is never created.
use keysmith_driver::{
    driver::{EntranceSpec, IssueArgs, IssueReply, RevokeArgs, RevokeReply},
    Error, Result,
};
use keysmith_plugin::{PluginDriver, PluginInfo};

/// The ABI version this library pretends to speak.
pub const CLAIMED_ABI_VERSION: u32 = 99;

struct FromTheFuture;

impl PluginDriver for FromTheFuture {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "from-the-future".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capability: Default::default(),
        }
    }
    fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        Ok(Vec::new())
    }
    fn issue(&self, _args: IssueArgs) -> Result<IssueReply> {
        Err(Error::internal(
            "keysmith refuses this library before creating a driver",
        ))
    }
    fn revoke(&self, _args: RevokeArgs) -> Result<RevokeReply> {
        Ok(RevokeReply::default())
    }
}

keysmith_plugin::export_driver!(
    |_config: &[u8]| Ok(FromTheFuture),
    abi_version = CLAIMED_ABI_VERSION
);
