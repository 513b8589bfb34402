//! Every rule the fake honours, exercised over real HTTP on 127.0.0.1.
//! One test binary (modules below) keeps linking cheap. No test sleeps to
//! synchronise: background steps are driven by the control API or awaited
//! with `settled()` / `webhooks_idle()`.

mod binary;
mod common;
mod control_routes;
mod entrances;
mod events;
mod faults;
mod grants;
mod methods;
mod pagination;
mod reservations;
mod transport;
mod user_identities;
mod webhooks;
