//! A loaded plugin as one of keysmith's drivers: each operation is encoded,
//! run on a blocking thread through the C table, and its answer decoded.
//! Whatever goes wrong inside (a panic, bytes that break the contract)
//! fails that one call with INTERNAL; the server keeps serving.
use std::sync::Arc;

use async_trait::async_trait;
use keysmith_core::{
    driver::{
        EncodeArgs, EncodeReply, EntranceSpec, IssueArgs, IssueReply, ListArgs, ListReply,
        RefreshArgs, RefreshReply, RevokeArgs, RevokeReply, UpdateArgs, UpdateReply,
    },
    Driver, DriverInfo, Error, Result,
};
use keysmith_plugin::{
    abi::methods,
    convert::{self, protocol_error},
    proto::{self as pb, driver_response::Result as Reply},
};
use prost::Message;

use crate::instance::Instance;

pub struct PluginDriverHandle {
    /// Read once at load: the core asks for it on every request.
    info: DriverInfo,
    instance: Arc<Instance>,
}

impl PluginDriverHandle {
    pub(crate) fn new(info: DriverInfo, instance: Arc<Instance>) -> Self {
        Self { info, instance }
    }

    /// Runs `method` on a blocking thread (the plugin may block; keysmith's
    /// runtime is never lent to it) and returns its reply, or its error.
    async fn invoke(&self, method: &'static str, request: impl Message) -> Result<Reply> {
        let bytes = request.encode_to_vec();
        let instance = self.instance.clone();
        let response = tokio::task::spawn_blocking(move || instance.call(method, &bytes))
            .await
            // The blocking task itself cannot panic (the plugin catches its
            // own panics); it fails when the runtime shuts down under it.
            .map_err(|_| {
                Error::internal(format!("the call to the plugin's {method} did not finish"))
            })
            .and_then(|answer| answer)
            .map_err(|e| e.with_context("driver", self.info.name.clone()))?;
        match response.result {
            Some(Reply::Error(e)) => Err(convert::error_from_proto(e)),
            Some(reply) => Ok(reply),
            None => Err(
                protocol_error(format!("the plugin answered {method} with nothing"))
                    .with_context("driver", self.info.name.clone()),
            ),
        }
    }

    fn unexpected(&self, method: &str, reply: Reply) -> Error {
        let got = match reply {
            Reply::Error(_) => "an error",
            Reply::Info(_) => "info",
            Reply::Entrances(_) => "entrances",
            Reply::Issue(_) => "issue",
            Reply::Revoke(_) => "revoke",
            Reply::Update(_) => "update",
            Reply::Encode(_) => "encode",
            Reply::Refresh(_) => "refresh",
            Reply::List(_) => "list",
        };
        protocol_error(format!(
            "the plugin answered {method} with a reply to {got}"
        ))
        .with_context("driver", self.info.name.clone())
    }

    fn name(&self) -> &str {
        &self.info.name
    }
}

#[async_trait]
impl Driver for PluginDriverHandle {
    fn info(&self) -> DriverInfo {
        self.info.clone()
    }

    async fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        match self
            .invoke(methods::ENTRANCES, pb::EntrancesRequest {})
            .await?
        {
            Reply::Entrances(r) => convert::entrances_from_proto(r),
            other => Err(self.unexpected(methods::ENTRANCES, other)),
        }
    }

    async fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        let request = convert::issue_args_to_proto(&args);
        match self.invoke(methods::ISSUE, request).await? {
            Reply::Issue(r) => convert::issue_reply_from_proto(r, self.name()),
            other => Err(self.unexpected(methods::ISSUE, other)),
        }
    }

    async fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply> {
        let request = convert::revoke_args_to_proto(&args);
        match self.invoke(methods::REVOKE, request).await? {
            Reply::Revoke(r) => Ok(convert::revoke_reply_from_proto(r)),
            other => Err(self.unexpected(methods::REVOKE, other)),
        }
    }

    async fn update(&self, args: UpdateArgs) -> Result<UpdateReply> {
        let request = convert::update_args_to_proto(&args);
        match self.invoke(methods::UPDATE, request).await? {
            Reply::Update(r) => convert::update_reply_from_proto(r, self.name()),
            other => Err(self.unexpected(methods::UPDATE, other)),
        }
    }

    async fn encode(&self, args: EncodeArgs) -> Result<EncodeReply> {
        let request = convert::encode_args_to_proto(&args);
        match self.invoke(methods::ENCODE, request).await? {
            Reply::Encode(r) => convert::encode_reply_from_proto(r, self.name()),
            other => Err(self.unexpected(methods::ENCODE, other)),
        }
    }

    async fn refresh(&self, args: RefreshArgs) -> Result<RefreshReply> {
        let request = convert::refresh_args_to_proto(&args);
        match self.invoke(methods::REFRESH, request).await? {
            Reply::Refresh(r) => convert::refresh_reply_from_proto(r, self.name()),
            other => Err(self.unexpected(methods::REFRESH, other)),
        }
    }

    async fn list(&self, args: ListArgs) -> Result<ListReply> {
        let request = convert::list_args_to_proto(&args);
        match self.invoke(methods::LIST, request).await? {
            Reply::List(r) => convert::list_reply_from_proto(r),
            other => Err(self.unexpected(methods::LIST, other)),
        }
    }
}
