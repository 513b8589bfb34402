//! The background half of Seam's asynchronous operations, run by timers or
//! the control API: issuing (and reissuing) access methods, ending the
//! teardown of deleted grants, and ending card encodings. Each step checks
//! that it still applies (a grant deleted meanwhile is not issued, an old
//! round's timer does not issue a newer round), so running one twice or late
//! is harmless.

use std::collections::BTreeSet;

use jiff::Timestamp;
use rand::Rng as _;
use serde_json::{json, Value};

use crate::events::*;
use crate::ids::Kind;
use crate::model::{AccessMode, AttemptStatus, Pending, SimulatedEncode};
use crate::state::{Effects, Timer, Workspace, World};
use crate::time::render;

impl World {
    /// Runs a timer's step.
    pub fn fire(&mut self, timer: &Timer) {
        match timer {
            Timer::Issue {
                workspace,
                method_id,
                generation,
            } => {
                if let Some((ws, fx)) = self.split(workspace) {
                    ws.issue_method(fx, method_id, Some(*generation));
                }
            }
            Timer::FinishDeletion {
                workspace,
                grant_id,
            } => {
                if let Some((ws, fx)) = self.split(workspace) {
                    ws.finish_deletion(fx, grant_id);
                }
            }
            Timer::FinishEncoding {
                workspace,
                attempt_id,
            } => {
                if let Some((ws, fx)) = self.split(workspace) {
                    ws.finish_encoding(fx, attempt_id);
                }
            }
        }
    }

    /// Applies `f` to every workspace.
    pub fn each_workspace(&mut self, mut f: impl FnMut(&mut Workspace, &mut Effects)) {
        let fx = &mut self.fx;
        for ws in self.workspaces.values_mut() {
            f(ws, fx);
        }
    }
}

/// `{access_method_id, access_grant_ids, access_grant_keys}` of method events.
fn method_fields(method_id: &str, grant_id: &str, grant_key: Option<&str>) -> Value {
    json!({
        "access_method_id": method_id,
        "access_grant_ids": [grant_id],
        "access_grant_keys": grant_key.map(|k| vec![k]).unwrap_or_default(),
    })
}

impl Workspace {
    /// Codes of live code methods of other grants sharing a door with
    /// `grant_id`: a lock cannot hold one code twice.
    fn codes_in_use(&self, grant_id: &str) -> BTreeSet<String> {
        let Some(grant) = self.grants.get(grant_id) else {
            return BTreeSet::new();
        };
        let doors: BTreeSet<&String> = grant.entrance_ids.iter().collect();
        self.grants
            .values()
            .filter(|g| g.id != grant_id && !g.deleting)
            .filter(|g| g.entrance_ids.iter().any(|e| doors.contains(e)))
            .flat_map(|g| g.method_ids())
            .filter_map(|id| self.methods.get(id))
            .filter_map(|m| m.code.clone())
            .collect()
    }

    /// Issues one method if it is pending (in round `generation`, if given).
    pub fn issue_method(&mut self, fx: &mut Effects, method_id: &str, generation: Option<u64>) {
        let Some(method) = self.methods.get(method_id) else {
            return;
        };
        let Some(pending) = method.pending else {
            return;
        };
        if generation.is_some_and(|g| g != method.generation) || method.deleting {
            return;
        }
        let grant_id = method.grant_id.clone();
        let Some(grant) = self.grants.get(&grant_id) else {
            return;
        };
        if grant.deleting {
            return;
        }
        if grant.methods_refused {
            self.refuse_methods(fx, &grant_id);
            return;
        }
        let grant_key = grant.key.clone();
        let mode = method.mode;
        // A code is chosen at first issue (the requested one if free, else
        // another: Seam's definition has no warning for that, so a client
        // compares the code with the one it asked for) and kept when
        // reissued.
        let code = match (mode, &method.code) {
            (AccessMode::Code, Some(code)) => Some(code.clone()),
            (AccessMode::Code, None) => {
                let taken = self.codes_in_use(&grant_id);
                let requested = grant
                    .requested
                    .iter()
                    .find(|r| r.method_id == method_id)
                    .and_then(|r| r.code.clone());
                match requested {
                    Some(c) if !taken.contains(&c) => Some(c),
                    _ => Some(free_code(&taken)),
                }
            }
            _ => None,
        };
        let now = Timestamp::now();
        let Some(method) = self.methods.get_mut(method_id) else {
            return;
        };
        method.pending = None;
        method.issued_at = Some(now);
        method.code = code.clone();
        if mode == AccessMode::Card {
            // A plastic card holds its validity: it must be (re)encoded.
            method.is_encoding_required = true;
        }
        if mode == AccessMode::MobileKey {
            // Points at the fake, which does not serve it: a placeholder
            // with the shape of Seam's Instant Key links.
            method.instant_key_url =
                Some(format!("{}/_fake/instant_keys/{method_id}", fx.base_url));
        }
        if pending == Pending::Reissue {
            method.reissue_count += 1;
        }
        let mut fields = method_fields(method_id, &grant_id, grant_key.as_deref());
        if let Some(code) = &code {
            fields["code"] = json!(code);
        }
        let event = match pending {
            Pending::Issue => ACCESS_METHOD_ISSUED,
            Pending::Reissue => ACCESS_METHOD_REISSUED,
        };
        fx.emit(self, event, fields);
        if mode == AccessMode::Card {
            let fields = method_fields(method_id, &grant_id, grant_key.as_deref());
            fx.emit(self, ACCESS_METHOD_CARD_ENCODING_REQUIRED, fields);
        }
        self.after_issue(fx, &grant_id);
    }

    /// Grant-level consequences of an issue: the first time every method is
    /// issued, the "access granted" events.
    fn after_issue(&mut self, fx: &mut Effects, grant_id: &str) {
        let Some(grant) = self.grants.get(grant_id) else {
            return;
        };
        let statuses: Vec<Option<Pending>> = grant
            .method_ids()
            .filter_map(|id| self.methods.get(id))
            .map(|m| m.pending)
            .collect();
        let all_issued = statuses.iter().all(Option::is_none);
        let first_full = all_issued && !grant.fully_granted;
        let doors = grant.entrance_ids.clone();
        let Some(grant) = self.grants.get_mut(grant_id) else {
            return;
        };
        if first_full {
            grant.fully_granted = true;
            for door in doors {
                fx.emit(
                    self,
                    ACCESS_GRANT_ACCESS_GRANTED_TO_DOOR,
                    json!({ "access_grant_id": grant_id, "acs_entrance_id": door }),
                );
            }
            fx.emit(
                self,
                ACCESS_GRANT_ACCESS_GRANTED_TO_ALL_DOORS,
                json!({ "access_grant_id": grant_id }),
            );
        }
    }

    /// The grant's access methods cannot be created: it gets Seam's error
    /// `cannot_create_requested_access_methods` and the event
    /// `access_grant.could_not_create_requested_access_methods` (once); its
    /// methods stay unissued.
    fn refuse_methods(&mut self, fx: &mut Effects, grant_id: &str) {
        const CODE: &str = "cannot_create_requested_access_methods";
        const MESSAGE: &str =
            "The requested access methods could not be created for the targeted entrances.";
        let Some(grant) = self.grants.get_mut(grant_id) else {
            return;
        };
        if grant.errors.iter().any(|e| e.code == CODE) {
            return;
        }
        grant.errors.push(crate::model::Notice::new(CODE, MESSAGE));
        fx.emit(
            self,
            ACCESS_GRANT_COULD_NOT_CREATE_REQUESTED_ACCESS_METHODS,
            json!({ "access_grant_id": grant_id, "error_message": MESSAGE }),
        );
    }

    /// Issues every pending method of live grants, in creation order.
    pub fn issue_all_pending(&mut self, fx: &mut Effects) {
        let pending: Vec<String> = self
            .methods
            .values()
            .filter(|m| m.pending.is_some())
            .map(|m| m.id.clone())
            .collect();
        for id in pending {
            self.issue_method(fx, &id, None);
        }
    }

    /// Ends the teardown of a deleted grant: its methods and then the grant
    /// are deleted and disappear.
    pub fn finish_deletion(&mut self, fx: &mut Effects, grant_id: &str) {
        if !self.grants.get(grant_id).is_some_and(|g| g.deleting) {
            return;
        }
        let Some(grant) = self.grants.remove(grant_id) else {
            return;
        };
        for method_id in grant.method_ids() {
            if self.methods.remove(method_id).is_some() {
                let fields = method_fields(method_id, &grant.id, grant.key.as_deref());
                fx.emit(self, ACCESS_METHOD_DELETED, fields);
            }
        }
        fx.emit(
            self,
            ACCESS_GRANT_DELETED,
            json!({ "access_grant_id": grant.id }),
        );
    }

    pub fn finish_all_deletions(&mut self, fx: &mut Effects) {
        let deleting: Vec<String> = self
            .grants
            .values()
            .filter(|g| g.deleting)
            .map(|g| g.id.clone())
            .collect();
        for id in deleting {
            self.finish_deletion(fx, &id);
        }
    }

    /// Ends a pending encoding: as the encoder was told to simulate, else
    /// a success if the card is issued and still there.
    pub fn finish_encoding(&mut self, fx: &mut Effects, attempt_id: &str) {
        let Some(attempt) = self.attempts.get(attempt_id) else {
            return;
        };
        if !matches!(attempt.status, AttemptStatus::Pending) {
            return;
        }
        let (method_id, encoder_id) = (
            attempt.access_method_id.clone(),
            attempt.acs_encoder_id.clone(),
        );
        let simulated = self
            .encoders
            .get_mut(&encoder_id)
            .and_then(|e| e.next.pop_front());
        let status = match simulated {
            Some(SimulatedEncode::Fail { error_type }) => AttemptStatus::Error {
                message: format!("Simulated encoding failure: {error_type}"),
                kind: error_type,
            },
            Some(SimulatedEncode::Succeed) | None => self.encode_card(fx, &method_id, &encoder_id),
        };
        if let Some(attempt) = self.attempts.get_mut(attempt_id) {
            attempt.status = status;
        }
    }

    /// Writes an issued card method onto a card.
    fn encode_card(
        &mut self,
        fx: &mut Effects,
        method_id: &str,
        encoder_id: &str,
    ) -> AttemptStatus {
        let uncategorized = |message: &str| AttemptStatus::Error {
            kind: "uncategorized_error".into(),
            message: message.into(),
        };
        let Some(method) = self.methods.get(method_id) else {
            return uncategorized("The access method no longer exists.");
        };
        if method.deleting {
            return uncategorized("The access method is being deleted.");
        }
        if !method.is_issued() {
            return uncategorized("The access method is not issued yet.");
        }
        let window = self
            .grants
            .get(&method.grant_id)
            .map(|g| (g.starts_at, g.ends_at));
        let system_id = self
            .encoders
            .get(encoder_id)
            .map(|e| e.acs_system_id.clone())
            .unwrap_or_default();
        let connected_account_id = self
            .systems
            .get(&system_id)
            .map(|s| s.connected_account_id.clone());
        let card_number = format!("{:010}", rand::rng().random_range(0..10_000_000_000u64));
        let credential = json!({
            "acs_credential_id": fx.ids.mint(Kind::Credential),
            "acs_system_id": system_id,
            "connected_account_id": connected_account_id,
            "display_name": "Plastic Card",
            "access_method": "card",
            "card_number": card_number,
            "created_at": render(Timestamp::now()),
            "starts_at": window.map(|w| render(w.0)),
            "ends_at": window.and_then(|w| w.1).map(render),
            "is_issued": true,
            "is_managed": true,
            "workspace_id": self.uuid,
            "errors": [],
            "warnings": [],
        });
        if let Some(method) = self.methods.get_mut(method_id) {
            method.is_encoding_required = false;
        }
        AttemptStatus::Success(credential)
    }

    pub fn finish_all_encodings(&mut self, fx: &mut Effects) {
        let pending: Vec<String> = self
            .attempts
            .values()
            .filter(|a| matches!(a.status, AttemptStatus::Pending))
            .map(|a| a.id.clone())
            .collect();
        for id in pending {
            self.finish_encoding(fx, &id);
        }
    }
}

/// A random 6-digit code not in `taken`.
fn free_code(taken: &BTreeSet<String>) -> String {
    let mut rng = rand::rng();
    for _ in 0..64 {
        let c = format!("{:06}", rng.random_range(0..1_000_000u32));
        if !taken.contains(&c) {
            return c;
        }
    }
    // Practically unreachable; a scan always finds one among a million.
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !taken.contains(c))
        .unwrap_or_else(|| "000000".into())
}
