//! What the layers and handlers learn about a call that its access-log line
//! reports: who called (the token id) and for which property. The layer
//! that observes the call opens the notes; the auth layer and the handlers,
//! which run inside it, fill them in. With trace export on, the notes also
//! carry the call's span, for the driver calls made on its behalf.
use std::sync::{Arc, OnceLock};

use super::server_span::SpanParent;

tokio::task_local! {
    static NOTES: Arc<CallNotes>;
}

/// Filled in at most once each; the first note wins.
#[derive(Debug, Default)]
pub struct CallNotes {
    caller: OnceLock<String>,
    property: OnceLock<String>,
    span: OnceLock<SpanParent>,
}

impl CallNotes {
    pub fn caller(&self) -> Option<&str> {
        self.caller.get().map(String::as_str)
    }

    pub fn property(&self) -> Option<&str> {
        self.property.get().map(String::as_str)
    }

    /// The call's span, when it is exported.
    pub(super) fn span(&self) -> Option<&SpanParent> {
        self.span.get()
    }

    pub(super) fn note_span(&self, span: SpanParent) {
        let _ = self.span.set(span);
    }

    /// Runs `f` with the notes of the call being served, if any.
    pub(super) fn of_current_call<R>(f: impl FnOnce(&CallNotes) -> R) -> Option<R> {
        NOTES.try_with(|notes| f(notes)).ok()
    }

    /// Runs `f` (which makes the call's future) with these notes open.
    pub(super) fn open_for<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        NOTES.sync_scope(self.clone(), f)
    }

    /// `future` with these notes open whenever it is polled.
    pub(super) fn open_while<F: std::future::Future>(
        self: &Arc<Self>,
        future: F,
    ) -> impl std::future::Future<Output = F::Output> {
        NOTES.scope(self.clone(), future)
    }
}

/// The caller's token id, as the auth layer identified it. Never the token.
pub fn note_caller(token_id: &str) {
    let _ = NOTES.try_with(|notes| notes.caller.set(token_id.to_owned()));
}

/// The property the request names, once the handler has decoded it.
pub fn note_property(property_id: &str) {
    let _ = NOTES.try_with(|notes| notes.property.set(property_id.to_owned()));
}
