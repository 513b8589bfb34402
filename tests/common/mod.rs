//! Starts the real keysmith server on an ephemeral port with a fresh data
//! directory and connects the generated clients to it.
#![allow(dead_code)]

pub mod metrics;
pub mod plugins;
pub mod postgres;
pub mod process;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use keysmith_api::{
    sim::v1::{self as sim, lock_simulator_service_client::LockSimulatorServiceClient},
    v1::{self as pb, access_service_client::AccessServiceClient},
};
use keysmith_core::{service::Clock, Timestamp};
use keysmith_server::{Config, Running, Source};
use keysmith_store_postgres::testing::{TestDatabase, URL_VARIABLE};
use tonic::{transport::Channel, Code, Status};
use tonic_types::StatusExt;

pub const PROPERTY: &str = "demo-hotel";
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

/// A clock the test moves by hand.
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn new(unix_seconds: i64) -> Self {
        Self(AtomicI64::new(unix_seconds))
    }
    pub fn set(&self, unix_seconds: i64) {
        self.0.store(unix_seconds, Ordering::SeqCst);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.0.load(Ordering::SeqCst))
    }
}

pub struct TestServer {
    pub running: Option<Running>,
    /// The connection, for clients of other services.
    pub channel: Channel,
    pub client: AccessServiceClient<Channel>,
    pub sim: LockSimulatorServiceClient<Channel>,
    pub clock: Arc<TestClock>,
    pub data_dir: PathBuf,
    /// Holds the data directory (`data`) and the key-encryption key (`kek`),
    /// apart, as keysmith requires.
    pub root: PathBuf,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database the server stores in, when the tests run
    /// on PostgreSQL (see [`backend`]); kept across restarts.
    database: Option<Arc<TestDatabase>>,
}

/// The variable that runs the end-to-end tests on another store:
/// `KEYSMITH_TEST_BACKEND=postgres` (with `KEYSMITH_TEST_POSTGRES_URL`
/// naming the server) puts every server `TestServer::start` and
/// `start_with` make on a fresh PostgreSQL database of its own. Unset, or
/// `embedded` (`sled`, its former name), they use the embedded default.
pub const BACKEND_VARIABLE: &str = "KEYSMITH_TEST_BACKEND";

/// Whether this run's servers store in PostgreSQL.
pub fn run_on_postgres() -> bool {
    match std::env::var(BACKEND_VARIABLE).as_deref() {
        Ok("postgres") => true,
        Ok("embedded" | "sled") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_VARIABLE}={other}: expected embedded or postgres"),
    }
}

/// A database for a server of this run, when the run is on PostgreSQL.
async fn backend() -> Option<Arc<TestDatabase>> {
    if !run_on_postgres() {
        return None;
    }
    let database = TestDatabase::create(
        "KEYSMITH_TEST_BACKEND=postgres",
        "KEYSMITH_TEST_BACKEND=postgres cargo test",
    )
    .await
    .unwrap_or_else(|| panic!("{BACKEND_VARIABLE}=postgres needs {URL_VARIABLE}"));
    Some(Arc::new(database))
}

/// The embedded default, on an ephemeral loopback port, with data in
/// `root/data` and the key-encryption key, made at the first start, in
/// `root/kek`.
pub fn config(root: &std::path::Path) -> Config {
    let mut config = Config::load_with_env(Source::Embedded, false).expect("default config");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.data_dir = root.join("data");
    config.storage.encryption.key_file = Some(root.join("kek"));
    config
}

/// "Now" in tests: a fixed, round instant well in the future of the build.
pub const T0: i64 = 1_900_000_000;

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The default configuration as `edit` changes it, on this run's
    /// backend (`KEYSMITH_TEST_BACKEND`).
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = backend().await;
        let mut c = config(dir.path());
        if let Some(database) = &database {
            postgres::store_in(&mut c, database);
        }
        edit(&mut c);
        let mut server = Self::start_in(c, Arc::new(TestClock(AtomicI64::new(T0)))).await;
        server._dir = Some(dir);
        server.database = database;
        server
    }

    pub async fn start_in(config: Config, clock: Arc<TestClock>) -> Self {
        let data_dir = config.storage.data_dir.clone();
        let root = data_dir
            .parent()
            .expect("the data directory has a parent")
            .to_path_buf();
        let running = keysmith_server::start_with_clock(config, clock.clone())
            .await
            .expect("server starts");
        let url = format!("http://{}", running.addr);
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        Self {
            running: Some(running),
            channel: channel.clone(),
            client: AccessServiceClient::new(channel.clone()),
            sim: LockSimulatorServiceClient::new(channel),
            clock,
            data_dir,
            root,
            _dir: None,
            database: None,
        }
    }

    /// The configuration a restart starts from: the default on this
    /// server's root and, on PostgreSQL, its database.
    pub fn base_config(&self) -> Config {
        let mut c = config(&self.root);
        if let Some(database) = &self.database {
            postgres::store_in(&mut c, database);
        }
        c
    }

    /// Stops gracefully and starts again on the same data directory.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Stops gracefully and starts again on the same data directory, with
    /// the default configuration as `edit` changes it.
    pub async fn restart_with(mut self, edit: impl FnOnce(&mut Config)) -> Self {
        // Stopped already when a test started other servers on its data.
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
        let mut c = config(&self.root);
        if let Some(database) = &self.database {
            postgres::store_in(&mut c, database);
        }
        edit(&mut c);
        let dir = self._dir.take();
        let mut next = Self::start_in(c, self.clock.clone()).await;
        next._dir = dir;
        next.database = self.database.take();
        next
    }

    pub async fn issue(&self, req: pb::IssueRequest) -> Result<pb::AccessKey, Status> {
        self.client
            .clone()
            .issue(req)
            .await
            .map(|r| r.into_inner().key.expect("a key"))
    }

    pub async fn present(&self, entrance: &str, data: &str, at: i64) -> sim::PresentResponse {
        self.sim
            .clone()
            .present(sim::PresentRequest {
                property_id: PROPERTY.into(),
                entrance_id: entrance.into(),
                credential_data: data.into(),
                at: Some(ts(at)),
            })
            .await
            .expect("present")
            .into_inner()
    }

    pub async fn lock_state(&self, entrance: &str) -> sim::LockState {
        self.sim
            .clone()
            .get_lock_state(sim::GetLockStateRequest {
                property_id: PROPERTY.into(),
                entrance_id: entrance.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn revoke_key(&self, key_id: &str) -> Result<pb::RevokeResponse, Status> {
        self.client
            .clone()
            .revoke(pb::RevokeRequest {
                property_id: PROPERTY.into(),
                request_id: String::new(),
                target: Some(pb::revoke_request::Target::KeyId(key_id.into())),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn revoke_reservation(&self, rk: &str) -> Result<pb::RevokeResponse, Status> {
        self.client
            .clone()
            .revoke(pb::RevokeRequest {
                property_id: PROPERTY.into(),
                request_id: String::new(),
                target: Some(pb::revoke_request::Target::ReservationKey(rk.into())),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list(&self, req: pb::ListKeysRequest) -> Result<pb::ListKeysResponse, Status> {
        self.client
            .clone()
            .list_keys(req)
            .await
            .map(|r| r.into_inner())
    }

    /// UpdateKey with a new window.
    pub async fn update_window(
        &self,
        key_id: &str,
        starts_at: i64,
        ends_at: i64,
    ) -> Result<pb::AccessKey, Status> {
        self.client
            .clone()
            .update_key(pb::UpdateKeyRequest {
                property_id: PROPERTY.into(),
                request_id: String::new(),
                key_id: key_id.into(),
                starts_at: Some(ts(starts_at)),
                ends_at: Some(ts(ends_at)),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&self, key_id: &str) -> Result<pb::AccessKey, Status> {
        self.client
            .clone()
            .get_key(pb::GetKeyRequest {
                property_id: PROPERTY.into(),
                key_id: key_id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

pub fn ts(unix_seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_seconds,
        nanos: 0,
    }
}

/// A guest card for `entrances` from `start` to `end` (unix seconds).
pub fn guest(holder: &str, entrances: &[&str], start: i64, end: i64, rk: &str) -> pb::IssueRequest {
    pb::IssueRequest {
        property_id: PROPERTY.into(),
        request_id: String::new(),
        holder_id: holder.into(),
        holder_name: String::new(),
        entrance_ids: entrances.iter().map(|s| s.to_string()).collect(),
        space_ids: vec![],
        starts_at: Some(ts(start)),
        ends_at: Some(ts(end)),
        reservation_key: rk.into(),
        role: pb::Role::Guest as i32,
        modes: vec![pb::CredentialMode::Card as i32],
        pin: String::new(),
    }
}

pub fn card(key: &pb::AccessKey) -> String {
    key.credentials
        .iter()
        .find_map(|c| match &c.data {
            Some(pb::credential::Data::CardData(d)) => Some(d.clone()),
            _ => None,
        })
        .expect("a card credential")
}

pub fn pin(key: &pb::AccessKey) -> String {
    key.credentials
        .iter()
        .find_map(|c| match &c.data {
            Some(pb::credential::Data::Pin(d)) => Some(d.clone()),
            _ => None,
        })
        .expect("a PIN credential")
}

/// The code and ErrorInfo reason of a failed call, checking the domain.
pub fn reason(status: &Status) -> (Code, String) {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "keysmith.dev");
    (status.code(), info.reason.clone())
}

pub fn violations(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

pub fn behaviours(key: &pb::AccessKey) -> Vec<(String, pb::ReservationBehaviour)> {
    key.entrances
        .iter()
        .map(|e| (e.entrance_id.clone(), e.behaviour()))
        .collect()
}

/// Server reflection as clients use it: v1, and v1alpha, which grpcurl 1.8.6
/// asks. The two versions are one protocol in two packages, so one macro
/// writes the same helpers for each.
pub mod reflection {
    macro_rules! reflection_client {
        ($version:ident) => {
            pub mod $version {
                use prost::Message;
                use prost_types::FileDescriptorProto;
                use tonic::{transport::Channel, Code, Status};
                use tonic_reflection::pb::$version::{
                    server_reflection_client::ServerReflectionClient,
                    server_reflection_request::MessageRequest,
                    server_reflection_response::MessageResponse, ServerReflectionRequest,
                };

                /// One request on its own stream; a reflection error as a Status.
                async fn ask(
                    channel: &Channel,
                    request: MessageRequest,
                ) -> Result<MessageResponse, Status> {
                    let request = ServerReflectionRequest {
                        host: String::new(),
                        message_request: Some(request),
                    };
                    let mut answers = ServerReflectionClient::new(channel.clone())
                        .server_reflection_info(tokio_stream::iter([request]))
                        .await?
                        .into_inner();
                    let answer = answers.message().await?.expect("a reflection answer");
                    match answer.message_response.expect("a reflection message") {
                        MessageResponse::ErrorResponse(e) => {
                            Err(Status::new(Code::from(e.error_code), e.error_message))
                        }
                        other => Ok(other),
                    }
                }

                fn files(answer: MessageResponse) -> Vec<FileDescriptorProto> {
                    let MessageResponse::FileDescriptorResponse(files) = answer else {
                        panic!("not a file descriptor answer: {answer:?}");
                    };
                    files
                        .file_descriptor_proto
                        .iter()
                        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).unwrap())
                        .collect()
                }

                /// The services reflection lists, sorted.
                pub async fn services(channel: &Channel) -> Vec<String> {
                    let answer = ask(channel, MessageRequest::ListServices(String::new()))
                        .await
                        .expect("list services");
                    let MessageResponse::ListServicesResponse(list) = answer else {
                        panic!("not a service list: {answer:?}");
                    };
                    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                    names.sort();
                    names
                }

                /// The files reflection gives for a fully qualified symbol.
                pub async fn file_containing_symbol(
                    channel: &Channel,
                    symbol: &str,
                ) -> Result<Vec<FileDescriptorProto>, Status> {
                    ask(channel, MessageRequest::FileContainingSymbol(symbol.into()))
                        .await
                        .map(files)
                }

                /// The files reflection gives for a file name (an import).
                pub async fn file_by_filename(
                    channel: &Channel,
                    name: &str,
                ) -> Result<Vec<FileDescriptorProto>, Status> {
                    ask(channel, MessageRequest::FileByFilename(name.into()))
                        .await
                        .map(files)
                }
            }
        };
    }

    reflection_client!(v1);
    reflection_client!(v1alpha);
}

/// The next message of a watch: within 30 s, and not an error.
pub async fn next(stream: &mut tonic::Streaming<pb::WatchKeysResponse>) -> pb::WatchKeysResponse {
    tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
        .await
        .expect("a change within 30 s")
        .expect("a message, not an error")
        .expect("the watch goes on")
}
