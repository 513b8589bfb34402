//! Logging with tracing: an env filter (RUST_LOG wins over the config) and
//! text or JSON output.
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// The storage engines' own log records, whatever the filter says
/// otherwise: they are their internals (fjall's and its LSM-tree's; sled's,
/// which opens only to move a store it wrote into fjall). sled's at debug or
/// trace are also written while a thread that used sled is exiting
/// (crossbeam-epoch runs sled's deferred work from the thread's locals as
/// they are destroyed), where the fmt layer's own thread-local buffer is
/// already gone: it panics there, which aborts the process (seen as `thread
/// local panicked on drop` when the store closed).
pub const QUIET_ENGINES: &str = "sled=warn,fjall=warn,lsm_tree=warn";

/// Installs the global subscriber; a second call (as in tests) is a no-op.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = QUIET_ENGINES.split(',').fold(filter, |filter, directive| {
        filter.add_directive(directive.parse().expect("a valid directive"))
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match log.format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
}
