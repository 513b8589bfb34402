//! A [`PluginDriver`] registered as a built-in driver, with no ABI between:
//! for embedding a driver that was written as a plugin, and for measuring
//! what the plugin boundary costs against the same driver built in.
use async_trait::async_trait;
use keysmith_driver::{
    driver::{
        EncodeArgs, EncodeReply, EntranceSpec, IssueArgs, IssueReply, ListArgs, ListReply,
        RefreshArgs, RefreshReply, RevokeArgs, RevokeReply, UpdateArgs, UpdateReply,
    },
    Driver, DriverInfo, DriverKind, Result,
};

use crate::driver::{PluginDriver, PluginInfo};

/// A [`PluginDriver`] that is a [`Driver`] of kind `BuiltIn`: its methods
/// are called directly, on the caller's task, with no bytes or ABI between.
pub struct InProcess<D> {
    driver: D,
    info: DriverInfo,
}

impl<D: PluginDriver> InProcess<D> {
    /// Registered under the name the driver reports.
    pub fn new(driver: D) -> Self {
        let PluginInfo {
            name,
            version,
            capability,
        } = driver.info();
        Self {
            driver,
            info: DriverInfo {
                name,
                version,
                kind: DriverKind::BuiltIn,
                capability,
            },
        }
    }

    /// Registered under `name` instead.
    pub fn named(name: impl Into<String>, driver: D) -> Self {
        let mut this = Self::new(driver);
        this.info.name = name.into();
        this
    }
}

// The driver's calls are quick and synchronous here, as a built-in driver's
// are: they run on the caller's task, like the offline lock's do.
#[async_trait]
impl<D: PluginDriver> Driver for InProcess<D> {
    fn info(&self) -> DriverInfo {
        self.info.clone()
    }

    async fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        self.driver.entrances()
    }

    async fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        self.driver.issue(args)
    }

    async fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply> {
        self.driver.revoke(args)
    }

    async fn update(&self, args: UpdateArgs) -> Result<UpdateReply> {
        self.driver.update(args)
    }

    async fn encode(&self, args: EncodeArgs) -> Result<EncodeReply> {
        self.driver.encode(args)
    }

    async fn refresh(&self, args: RefreshArgs) -> Result<RefreshReply> {
        self.driver.refresh(args)
    }

    async fn list(&self, args: ListArgs) -> Result<ListReply> {
        self.driver.list(args)
    }
}
