//! The in-memory database: workspaces (each API key belongs to one) holding
//! everything else, so no request can see another workspace's data.
//!
//! Changes do not perform their side effects themselves: they record events
//! and timers in [`Effects`], which `Core::change` carries out once the lock
//! is released (webhooks sent, background steps scheduled).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::events::Event;
use crate::ids::{Ids, Kind};
use crate::model::{
    AccessMethod, AcsSystem, ActionAttempt, Encoder, Endpoint, Entrance, Grant, Space, UserIdentity,
};

/// A background step, run after the configured delay or by the control API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Issue (or reissue) one access method, if still in that round.
    Issue {
        workspace: String,
        method_id: String,
        generation: u64,
    },
    /// End the teardown of a deleted grant.
    FinishDeletion { workspace: String, grant_id: String },
    /// End an encoding action attempt.
    FinishEncoding {
        workspace: String,
        attempt_id: String,
    },
}

/// Side effects of a change, carried out after the lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    pub ids: Ids,
    /// The fake's own URL, for links it hands out (instant keys).
    pub base_url: String,
    pub events: Vec<Event>,
    pub timers: Vec<Timer>,
}

impl Effects {
    /// Appends an event to the workspace's log and queues it for webhooks.
    /// `fields` must be a JSON object (anything else is ignored).
    pub fn emit(&mut self, ws: &mut Workspace, event_type: &'static str, fields: Value) {
        let fields = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let event = Event {
            id: self.ids.mint(Kind::Event),
            workspace: ws.id.clone(),
            workspace_id: ws.uuid.clone(),
            event_type,
            at: Timestamp::now(),
            fields,
        };
        ws.events.push(event.clone());
        self.events.push(event);
    }

    pub fn schedule(&mut self, timer: Timer) {
        self.timers.push(timer);
    }
}

#[derive(Default)]
pub(crate) struct Workspace {
    /// The name the test seeded it under (its control-API handle).
    pub id: String,
    /// Its `workspace_id` as clients see it.
    pub uuid: String,
    /// By `acs_system_id`.
    pub systems: BTreeMap<String, AcsSystem>,
    /// A seeded system's name -> its `acs_system_id`.
    pub system_handles: BTreeMap<String, String>,
    /// By `space_id`.
    pub spaces: BTreeMap<String, Space>,
    /// All maps keyed by id are in creation order (ids are sequential).
    pub entrances: BTreeMap<String, Entrance>,
    pub encoders: BTreeMap<String, Encoder>,
    pub user_identities: BTreeMap<String, UserIdentity>,
    pub grants: BTreeMap<String, Grant>,
    pub methods: BTreeMap<String, AccessMethod>,
    pub attempts: BTreeMap<String, ActionAttempt>,
    pub events: Vec<Event>,
    pub endpoints: Vec<Endpoint>,
    /// How many of the next grants get no access methods
    /// (`FakeSeam::refuse_access_methods`).
    pub refuse_access_methods: u32,
}

impl Workspace {
    pub fn grant_by_key(&self, key: &str) -> Option<&Grant> {
        self.grants.values().find(|g| g.key.as_deref() == Some(key))
    }

    pub fn identity_by_key(&self, key: &str) -> Option<&UserIdentity> {
        self.user_identities
            .values()
            .find(|u| u.key.as_deref() == Some(key))
    }

    /// A grant and its methods as Seam JSON.
    pub fn grant_json(&self, grant: &Grant) -> Value {
        let methods: Vec<&AccessMethod> = grant
            .method_ids()
            .filter_map(|id| self.methods.get(id))
            .collect();
        grant.to_json(&self.uuid, &methods)
    }

    pub fn entrance_json(&self, e: &Entrance) -> Value {
        e.to_json(self.systems.get(&e.acs_system_id))
    }

    /// The `acs_system_id` of a system seeded as `handle` (or given by id).
    pub fn system_id(&self, handle: &str) -> Option<String> {
        if self.systems.contains_key(handle) {
            return Some(handle.to_string());
        }
        self.system_handles.get(handle).cloned()
    }

    /// The `space_id` of the space with this `space_key`.
    pub fn space_by_key(&self, key: &str) -> Option<&Space> {
        self.spaces.values().find(|s| s.key == key)
    }
}

#[derive(Default)]
pub(crate) struct World {
    /// API key -> workspace id.
    pub api_keys: HashMap<String, String>,
    pub workspaces: BTreeMap<String, Workspace>,
    pub fx: Effects,
}

impl World {
    pub fn workspace(&self, id: &str) -> Option<&Workspace> {
        self.workspaces.get(id)
    }

    /// A workspace to change, and where its side effects go.
    pub fn split(&mut self, id: &str) -> Option<(&mut Workspace, &mut Effects)> {
        let ws = self.workspaces.get_mut(id)?;
        Some((ws, &mut self.fx))
    }
}
