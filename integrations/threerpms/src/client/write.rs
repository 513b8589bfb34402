//! Writes to 3RPMS: a plan of removals, assignments, creations and
//! deletions, batched within the batch limit, create-and-assign pairs in one
//! request through `@chain`, and a refused step isolated from the rest.
use keysmith_core::{ErrorKind, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{field, Client, IdOnly};
use crate::{model::NewKey, queries, transport::Operation};

/// Changes to make in 3RPMS, sent in this order: removals (a stay takes one
/// key, so an old key leaves before a new one comes), assignments of existing
/// keys, new keys created and assigned, then deletions of keys no stay holds.
#[derive(Clone, Debug, Default)]
pub struct WritePlan {
    pub removals: Vec<Assignment>,
    pub assignments: Vec<Assignment>,
    pub creations: Vec<Creation>,
    pub deletions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub room_stay_id: String,
    pub key_id: String,
}

#[derive(Clone, Debug)]
pub struct Creation {
    pub room_stay_id: String,
    pub key: NewKey,
}

impl WritePlan {
    pub fn is_empty(&self) -> bool {
        self.removals.is_empty()
            && self.assignments.is_empty()
            && self.creations.is_empty()
            && self.deletions.is_empty()
    }
}

/// The 3RPMS key created for each stay of the plan's creations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub created: Vec<Assignment>,
    pub requests: usize,
    /// Steps 3RPMS refused as invalid, each alone in its request; the rest
    /// of the plan was carried out.
    pub rejected: Vec<Rejected>,
}

/// A step of a plan that 3RPMS refused.
#[derive(Debug)]
pub struct Rejected {
    pub room_stay_id: Option<String>,
    pub key_id: Option<String>,
    pub error: keysmith_core::Error,
}

impl PartialEq for Rejected {
    fn eq(&self, other: &Self) -> bool {
        self.room_stay_id == other.room_stay_id && self.key_id == other.key_id
    }
}

impl Eq for Rejected {}

fn new_key_input(key: &NewKey) -> Value {
    match key {
        NewKey::Pin(pin) => json!({ "roomAccessPin": { "pin": pin.expose() } }),
        NewKey::KeyStorage { pin, compartment } => json!({
            "roomAccessKeyStorage": { "pin": pin.expose(), "compartment": compartment.expose() }
        }),
        NewKey::Qr(data) => json!({ "roomAccessQR": { "qrData": data.expose() } }),
    }
}

impl Client {
    /// Carries out a plan in as few requests as the batch limit allows. Each
    /// request is all-or-nothing at 3RPMS. A request refused as invalid is
    /// split until the refused step is alone (see `WriteOutcome::rejected`);
    /// any other failure stops the plan there: the requests before it have
    /// happened, none after it is sent, and the caller reconciles from a
    /// fresh read.
    pub async fn write(&self, plan: &WritePlan) -> Result<WriteOutcome> {
        for creation in &plan.creations {
            creation.key.validate()?;
        }
        // Steps of one or two operations that must share a request.
        let mut steps: Vec<Vec<Operation>> = Vec::new();
        for a in &plan.removals {
            steps.push(vec![Operation::mutation(
                queries::REMOVE_KEY,
                json!({ "roomStayId": a.room_stay_id, "roomAccessKeyId": a.key_id }),
            )]);
        }
        for a in &plan.assignments {
            steps.push(vec![Operation::mutation(
                queries::ADD_KEY,
                json!({ "roomStayId": a.room_stay_id, "roomAccessKeyId": a.key_id }),
            )]);
        }
        let first_creation = steps.len();
        for c in &plan.creations {
            steps.push(vec![
                Operation::mutation(
                    queries::CREATE_KEY_CHAINED,
                    json!({ "input": new_key_input(&c.key) }),
                ),
                // The key id comes from the create, through @chain.
                Operation::mutation(queries::ADD_KEY, json!({ "roomStayId": c.room_stay_id })),
            ]);
        }
        let after_creations = steps.len();
        for key_id in &plan.deletions {
            steps.push(vec![Operation::mutation(
                queries::DELETE_KEY,
                json!({ "roomAccessKeyId": key_id }),
            )]);
        }

        // Groups of steps, one request each, within the batch limit.
        let mut groups: std::collections::VecDeque<Vec<usize>> = Default::default();
        let mut group = Vec::new();
        let mut size = 0;
        for (i, step) in steps.iter().enumerate() {
            if size + step.len() > self.batch_limit && !group.is_empty() {
                groups.push_back(std::mem::take(&mut group));
                size = 0;
            }
            size += step.len();
            group.push(i);
        }
        if !group.is_empty() {
            groups.push_back(group);
        }

        let mut outcome = WriteOutcome::default();
        while let Some(group) = groups.pop_front() {
            let request: Vec<Operation> = group
                .iter()
                .flat_map(|&i| steps[i].iter().cloned())
                .collect();
            outcome.requests += 1;
            let answers = match self.transport.send(&request).await {
                Ok(answers) => answers,
                // One bad step fails its whole request (all-or-nothing), and
                // would fail it again on every retry: halve the request until
                // the bad step stands alone, so the others still go through.
                Err(e) if e.kind() == ErrorKind::InvalidArgument && group.len() > 1 => {
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push_front(second.to_vec());
                    groups.push_front(first.to_vec());
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::InvalidArgument => {
                    let step = group[0];
                    let (room_stay_id, key_id) = if step < plan.removals.len() {
                        let a = &plan.removals[step];
                        (Some(a.room_stay_id.clone()), Some(a.key_id.clone()))
                    } else if step < first_creation {
                        let a = &plan.assignments[step - plan.removals.len()];
                        (Some(a.room_stay_id.clone()), Some(a.key_id.clone()))
                    } else if step < after_creations {
                        (
                            Some(plan.creations[step - first_creation].room_stay_id.clone()),
                            None,
                        )
                    } else {
                        (None, Some(plan.deletions[step - after_creations].clone()))
                    };
                    outcome.rejected.push(Rejected {
                        room_stay_id,
                        key_id,
                        error: e,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut answers = answers.into_iter();
            for step in group {
                let is_creation = (first_creation..after_creations).contains(&step);
                if is_creation {
                    let created = answers.next().unwrap_or(Value::Null);
                    let _assigned = answers.next();
                    #[derive(Deserialize)]
                    struct Created {
                        #[serde(rename = "roomAccessKey")]
                        key: IdOnly,
                    }
                    let created: Created = field(created, "createRoomAccessKey")?;
                    outcome.created.push(Assignment {
                        room_stay_id: plan.creations[step - first_creation].room_stay_id.clone(),
                        key_id: created.key.id,
                    });
                } else {
                    answers.next();
                }
            }
        }
        Ok(outcome)
    }
}
