//! `FakeSeam`: starting and stopping the fake, and the Rust control API
//! tests use to seed data, drive the background steps, switch faults on and
//! look at what clients did. The fallible operations below are shared with
//! the HTTP control routes (`routes/fake.rs`); the Rust methods panic on
//! misuse (an unknown workspace is a bug in the test), HTTP answers errors.

use std::net::SocketAddr;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::FakeSeamConfig;
use crate::core::Core;
use crate::counts::RequestCounts;
use crate::errors::ApiError;
use crate::events::{ACCESS_GRANT_ACCESS_TO_DOOR_LOST, ACS_ENTRANCE_ADDED, ACS_ENTRANCE_REMOVED};
use crate::faults::Fault;
use crate::ids::Kind;
use crate::model::{
    AccessMethodSnapshot, AcsSystem, Caps, Encoder, Endpoint, Entrance, EntranceSeed,
    GrantSnapshot, Space, UserIdentitySnapshot,
};
use crate::server;
use crate::state::{Workspace, World};
use crate::webhooks::{new_secret, DeliveryAttempt};

// ------------------------------------------------------ fallible operations

fn workspace_not_found() -> ApiError {
    ApiError::not_found("workspace")
}

/// Adds a workspace under the name `workspace_id` (its handle here); answers
/// the `workspace_id` clients see (a UUID).
pub(crate) fn add_workspace(
    core: &Arc<Core>,
    workspace_id: &str,
    api_key: &str,
) -> Result<String, ApiError> {
    if workspace_id.is_empty() || api_key.is_empty() {
        return Err(ApiError::invalid_input(
            "workspace_id and api_key must not be empty",
        ));
    }
    core.change(|w| {
        if let Some(owner) = w.api_keys.get(api_key) {
            if owner != workspace_id {
                return Err(ApiError::duplicate(
                    "api_key",
                    "This API key belongs to another workspace",
                ));
            }
        }
        w.api_keys.insert(api_key.into(), workspace_id.into());
        let World { workspaces, fx, .. } = w;
        let ws = workspaces
            .entry(workspace_id.into())
            .or_insert_with(|| Workspace {
                id: workspace_id.into(),
                uuid: fx.ids.mint(Kind::Workspace),
                ..Workspace::default()
            });
        Ok(ws.uuid.clone())
    })
}

/// Adds an acs system under the name `handle`; answers its `acs_system_id`.
pub(crate) fn add_acs_system(
    core: &Arc<Core>,
    workspace: &str,
    handle: &str,
    name: &str,
    requires_reservation_for_guest_cards: bool,
) -> Result<String, ApiError> {
    if handle.is_empty() {
        return Err(ApiError::invalid_input("acs_system_id must not be empty"));
    }
    core.change(|w| {
        let (ws, fx) = w.split(workspace).ok_or_else(workspace_not_found)?;
        if ws.system_handles.contains_key(handle) {
            return Err(ApiError::duplicate(
                "acs_system_id",
                "An acs system with this id already exists in the workspace",
            ));
        }
        let connected_account_id = fx.ids.mint(Kind::ConnectedAccount);
        let acs_system_id = fx.ids.mint(Kind::AcsSystem);
        // Seam's entrances and grants do not show a system's name: it is
        // only logged.
        tracing::info!(
            workspace,
            handle,
            acs_system_id,
            name,
            requires_reservation_for_guest_cards,
            "acs system added"
        );
        ws.system_handles
            .insert(handle.into(), acs_system_id.clone());
        ws.systems.insert(
            acs_system_id.clone(),
            AcsSystem {
                requires_reservation_for_guest_cards,
                connected_account_id,
            },
        );
        Ok(acs_system_id)
    })
}

pub(crate) fn add_entrance(
    core: &Arc<Core>,
    workspace: &str,
    system: &str,
    seed: EntranceSeed,
) -> Result<String, ApiError> {
    core.change(|w| {
        let (ws, fx) = w.split(workspace).ok_or_else(workspace_not_found)?;
        let acs_system_id = ws
            .system_id(system)
            .ok_or_else(|| ApiError::not_found("acs_system"))?;
        let acs_system_id = acs_system_id.as_str();
        let connected_account_id = ws
            .systems
            .get(acs_system_id)
            .map(|s| s.connected_account_id.clone())
            .unwrap_or_default();
        let space_ids: Vec<String> = match seed.space_key {
            None => Vec::new(),
            Some(key) => match ws.space_by_key(&key) {
                Some(space) => vec![space.id.clone()],
                None => {
                    let id = fx.ids.mint(Kind::Space);
                    ws.spaces.insert(
                        id.clone(),
                        Space {
                            id: id.clone(),
                            key,
                            created_at: Timestamp::now(),
                        },
                    );
                    vec![id]
                }
            },
        };
        let id = fx.ids.mint(Kind::Entrance);
        ws.entrances.insert(
            id.clone(),
            Entrance {
                id: id.clone(),
                acs_system_id: acs_system_id.into(),
                display_name: seed.display_name,
                space_ids,
                caps: Caps {
                    reservation: seed.can_belong_to_reservation,
                    card: seed.can_unlock_with_card,
                    code: seed.can_unlock_with_code,
                    mobile_key: seed.can_unlock_with_mobile_key,
                },
                created_at: Timestamp::now(),
            },
        );
        fx.emit(
            ws,
            ACS_ENTRANCE_ADDED,
            json!({
                "acs_entrance_id": id,
                "acs_system_id": acs_system_id,
                "connected_account_id": connected_account_id,
            }),
        );
        Ok(id)
    })
}

/// Removes an entrance (as when a door is taken out of the access system):
/// live grants targeting it lose access to it (`access_to_door_lost`). The
/// grant itself shows nothing: the warnings of Seam's definition name no
/// such case.
pub(crate) fn remove_entrance(
    core: &Arc<Core>,
    workspace: &str,
    acs_entrance_id: &str,
) -> Result<(), ApiError> {
    core.change(|w| {
        let (ws, fx) = w.split(workspace).ok_or_else(workspace_not_found)?;
        let entrance = ws
            .entrances
            .remove(acs_entrance_id)
            .ok_or_else(|| ApiError::not_found("acs_entrance"))?;
        let connected_account_id = ws
            .systems
            .get(&entrance.acs_system_id)
            .map(|s| s.connected_account_id.clone());
        let affected: Vec<String> = ws
            .grants
            .values()
            .filter(|g| !g.deleting && g.entrance_ids.iter().any(|e| e == acs_entrance_id))
            .map(|g| g.id.clone())
            .collect();
        fx.emit(
            ws,
            ACS_ENTRANCE_REMOVED,
            json!({
                "acs_entrance_id": acs_entrance_id,
                "acs_system_id": entrance.acs_system_id,
                "connected_account_id": connected_account_id,
            }),
        );
        for grant_id in affected {
            fx.emit(
                ws,
                ACCESS_GRANT_ACCESS_TO_DOOR_LOST,
                json!({ "access_grant_id": grant_id, "acs_entrance_id": acs_entrance_id }),
            );
        }
        Ok(())
    })
}

pub(crate) fn add_encoder(
    core: &Arc<Core>,
    workspace: &str,
    acs_system_id: &str,
    display_name: &str,
) -> Result<String, ApiError> {
    core.change(|w| {
        let (ws, fx) = w.split(workspace).ok_or_else(workspace_not_found)?;
        let acs_system_id = ws
            .system_id(acs_system_id)
            .ok_or_else(|| ApiError::not_found("acs_system"))?;
        let id = fx.ids.mint(Kind::Encoder);
        ws.encoders.insert(
            id.clone(),
            Encoder {
                id: id.clone(),
                acs_system_id,
                display_name: display_name.into(),
                created_at: Timestamp::now(),
                next: Default::default(),
            },
        );
        Ok(id)
    })
}

pub(crate) fn add_webhook(
    core: &Arc<Core>,
    workspace: &str,
    url: &str,
) -> Result<String, ApiError> {
    if reqwest::Url::parse(url).is_err() {
        return Err(ApiError::invalid_input("url must be an absolute URL"));
    }
    core.change(|w| {
        let ws = w
            .workspaces
            .get_mut(workspace)
            .ok_or_else(workspace_not_found)?;
        let secret = new_secret();
        ws.endpoints.push(Endpoint {
            url: url.into(),
            secret: secret.clone(),
        });
        Ok(secret)
    })
}

pub(crate) fn issue_pending(core: &Arc<Core>) {
    core.change(|w| w.each_workspace(|ws, fx| ws.issue_all_pending(fx)));
}

pub(crate) fn finish_deletions(core: &Arc<Core>) {
    core.change(|w| w.each_workspace(|ws, fx| ws.finish_all_deletions(fx)));
}

pub(crate) fn finish_encodings(core: &Arc<Core>) {
    core.change(|w| w.each_workspace(|ws, fx| ws.finish_all_encodings(fx)));
}

fn read_workspace<T>(
    core: &Core,
    workspace: &str,
    f: impl FnOnce(&Workspace) -> T,
) -> Result<T, ApiError> {
    core.read(|w| {
        w.workspace(workspace)
            .map(f)
            .ok_or_else(workspace_not_found)
    })
}

// ------------------------------------------------------------- the handle

struct Inner {
    core: Arc<Core>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle gone: stop serving, delivering and timing.
        let _ = self.shutdown.send(true);
    }
}

/// A running fake Seam Connect. Cheap to clone; all clones control the same
/// server, which stops with `shutdown` or when the last clone is dropped.
#[derive(Clone)]
pub struct FakeSeam {
    inner: Arc<Inner>,
}

/// Panics with the fake's name: control-API misuse is a bug in the test.
fn expect<T>(r: Result<T, ApiError>) -> T {
    r.unwrap_or_else(|e| panic!("fake-seam control API: {} ({})", e.message, e.kind))
}

impl FakeSeam {
    /// Starts a fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeSeamConfig) -> std::io::Result<FakeSeam> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: FakeSeamConfig) -> std::io::Result<FakeSeam> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let core = Core::new(config, format!("http://{addr}"), stop.clone())?;
        let server = tokio::spawn(server::serve(listener, core.clone(), stop));
        tracing::info!(%addr, "fake Seam Connect listening");
        Ok(FakeSeam {
            inner: Arc::new(Inner {
                core,
                addr,
                shutdown,
                server: parking_lot::Mutex::new(Some(server)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT`, the Seam base URL for clients.
    pub fn base_url(&self) -> String {
        self.inner.core.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops serving, delivering webhooks and running background steps.
    /// Open connections are dropped.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let task = self.inner.server.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    // ------------------------------------------------------------ set-up

    /// Adds a workspace reachable with `api_key` (`Authorization: Bearer`).
    /// Adding another key to an existing workspace is allowed.
    /// Adds a workspace under the name `workspace` (what the other control
    /// methods take) and answers its `workspace_id` (a UUID, what clients see).
    pub fn add_workspace(&self, workspace: &str, api_key: &str) -> String {
        expect(add_workspace(&self.inner.core, workspace, api_key))
    }

    /// Adds an access system under the name `system` (what `add_entrance`
    /// and `add_encoder` take) and answers its `acs_system_id` (a UUID).
    /// `requires_reservation_for_guest_cards` makes it Visionline-like: a
    /// card for its reservation-capable entrances needs a `reservation_key`.
    pub fn add_acs_system(
        &self,
        workspace: &str,
        system: &str,
        name: &str,
        requires_reservation_for_guest_cards: bool,
    ) -> String {
        expect(add_acs_system(
            &self.inner.core,
            workspace,
            system,
            name,
            requires_reservation_for_guest_cards,
        ))
    }

    /// Adds an entrance to a system (its name or `acs_system_id`); returns
    /// its `acs_entrance_id`. Emits `acs_entrance.added`.
    pub fn add_entrance(
        &self,
        workspace: &str,
        acs_system_id: &str,
        entrance: EntranceSeed,
    ) -> String {
        expect(add_entrance(
            &self.inner.core,
            workspace,
            acs_system_id,
            entrance,
        ))
    }

    /// Removes an entrance; emits `acs_entrance.removed` and
    /// `access_grant.access_to_door_lost` for grants targeting it.
    pub fn remove_entrance(&self, workspace: &str, acs_entrance_id: &str) {
        expect(remove_entrance(
            &self.inner.core,
            workspace,
            acs_entrance_id,
        ))
    }

    /// Adds a card encoder to a system; returns its `acs_encoder_id`.
    pub fn add_encoder(&self, workspace: &str, acs_system_id: &str, display_name: &str) -> String {
        expect(add_encoder(
            &self.inner.core,
            workspace,
            acs_system_id,
            display_name,
        ))
    }

    /// The next `count` grants created in `workspace` get no access
    /// methods: when they would be issued, the grant gets Seam's error
    /// `cannot_create_requested_access_methods` instead (with the event
    /// `access_grant.could_not_create_requested_access_methods`), and its
    /// methods stay unissued. (How Seam shows this beyond the error and the
    /// event is not documented; this is the fake's choice.)
    pub fn refuse_access_methods(&self, workspace: &str, count: u32) {
        expect(self.inner.core.change(|w| {
            let ws = w
                .workspaces
                .get_mut(workspace)
                .ok_or_else(workspace_not_found)?;
            ws.refuse_access_methods = count;
            Ok(())
        }))
    }

    /// The `space_id` of the space seeded with this `space_key`.
    pub fn space_id(&self, workspace: &str, space_key: &str) -> String {
        expect(read_workspace(&self.inner.core, workspace, |ws| {
            ws.space_by_key(space_key).map(|s| s.id.clone())
        }))
        .unwrap_or_else(|| panic!("fake-seam control API: no space {space_key:?}"))
    }

    /// The `workspace_id` (a UUID) of the workspace seeded as `workspace`.
    pub fn workspace_id(&self, workspace: &str) -> String {
        expect(read_workspace(&self.inner.core, workspace, |ws| {
            ws.uuid.clone()
        }))
    }

    /// Everything that did not keep to Seam's API definition so far: members
    /// it does not define, required ones missing, values outside its enums
    /// or formats, in the fake's answers and events and in its clients'
    /// requests (which Seam accepts when only extra members are wrong: it
    /// ignores them). Tests assert this is empty.
    pub fn contract_violations(&self) -> Vec<String> {
        self.inner.core.violations()
    }

    /// Registers a webhook endpoint for every event of the workspace;
    /// returns its Svix signing secret (`whsec_<base64>`).
    pub fn add_webhook(&self, workspace: &str, url: &str) -> String {
        expect(add_webhook(&self.inner.core, workspace, url))
    }

    // ------------------------------------------------- background steps

    /// Issues every pending access method now (and reissues revoked ones).
    pub fn issue_pending(&self) {
        issue_pending(&self.inner.core)
    }

    /// Ends the teardown of every deleted grant now.
    pub fn finish_deletions(&self) {
        finish_deletions(&self.inner.core)
    }

    /// Ends every pending encoding action attempt now.
    pub fn finish_encodings(&self) {
        finish_encodings(&self.inner.core)
    }

    /// Resolves when no background step is waiting for its delay (steps
    /// with no delay configured wait for the control API and do not count).
    pub async fn settled(&self) {
        self.inner.core.settled().await
    }

    // --------------------------------------------------------- snapshots

    pub fn grants(&self, workspace: &str) -> Vec<GrantSnapshot> {
        expect(read_workspace(&self.inner.core, workspace, |ws| {
            ws.grants.values().map(|g| g.snapshot()).collect()
        }))
    }

    pub fn access_methods(&self, workspace: &str) -> Vec<AccessMethodSnapshot> {
        expect(read_workspace(&self.inner.core, workspace, |ws| {
            ws.methods.values().map(|m| m.snapshot()).collect()
        }))
    }

    pub fn user_identities(&self, workspace: &str) -> Vec<UserIdentitySnapshot> {
        expect(read_workspace(&self.inner.core, workspace, |ws| {
            ws.user_identities.values().map(|u| u.snapshot()).collect()
        }))
    }

    /// Every event of the workspace as `/events/list` shows it, oldest first.
    pub fn events(&self, workspace: &str) -> Vec<Value> {
        expect(read_workspace(&self.inner.core, workspace, |ws| {
            ws.events.iter().map(|e| e.to_json()).collect()
        }))
    }

    // ------------------------------------------------------------ faults

    /// Arms a fault for the next `count` matching requests
    /// ([`crate::UNTIL_CLEARED`]: until `clear_faults`).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.inner.core.faults.arm(fault, count)
    }

    pub fn clear_faults(&self) {
        self.inner.core.faults.clear()
    }

    pub fn counts(&self) -> RequestCounts {
        self.inner.core.counts.snapshot()
    }

    pub fn reset_counts(&self) {
        self.inner.core.counts.reset()
    }

    // ---------------------------------------------------------- webhooks

    /// Resolves when every webhook delivery is done (delivered or out of
    /// attempts). No polling: a watch on the count of unfinished deliveries.
    pub async fn webhooks_idle(&self) {
        self.inner.core.webhooks.idle().await
    }

    /// Every delivery attempt so far, in the order made.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.inner.core.webhooks.attempts()
    }
}
