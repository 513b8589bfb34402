//! The plugins the tests load: the keypad example, the ABI-99 test plugin
//! and the test kit. They are dev-dependencies of this package, so cargo
//! builds each library with the tests, once, beside the test binaries (a
//! dependency's cdylib lands in the same `deps` directory); nothing is
//! built while a test runs.
use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use keysmith_server::config::PluginConfig;

/// The holder id for which the keypad's fault injection panics in issue.
pub const PANICKING_HOLDER: &str = "crash-test-dummy";

pub struct BuiltPlugins {
    pub keypad: PathBuf,
    /// Claims driver ABI 99.
    pub faulty: PathBuf,
    /// Fails and issues asynchronously as each test's holder ids ask.
    pub testkit: PathBuf,
}

pub fn built() -> &'static BuiltPlugins {
    static BUILT: OnceLock<BuiltPlugins> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let deps = exe.parent().expect("the test binary's directory");
        let library = |crate_name: &str| {
            let path = deps.join(format!("{DLL_PREFIX}{crate_name}{DLL_SUFFIX}"));
            assert!(
                path.is_file(),
                "{} was not built with the tests (is it a dev-dependency?)",
                path.display()
            );
            path
        };
        BuiltPlugins {
            keypad: library("keysmith_keypad_plugin"),
            faulty: library("keysmith_faulty_plugin"),
            testkit: library("keysmith_testkit_plugin"),
        }
    })
}

/// The keypad plugin serving three doors of the test property: two rooms
/// (reservation-capable) and a gate.
pub fn keypad(path: &Path) -> PluginConfig {
    serde_json::from_value(serde_json::json!({
        "name": "keypad",
        "path": path,
        "config": {
            "properties": [{
                "property_id": super::PROPERTY,
                "doors": [
                    { "id": "keypad-501", "name": "Room 501", "spaces": ["suite-501"] },
                    { "id": "keypad-502", "name": "Room 502" },
                    { "id": "keypad-gate", "name": "Garden gate", "kind": "common" },
                ],
            }],
            "faults": { "panic_on_issue_for_holder": PANICKING_HOLDER },
        },
    }))
    .expect("a plugin stanza")
}

/// The test-kit plugin as the driver `name`, serving `doors` of the test
/// property (cards, not reservation-capable); with `flaky`, holders named
/// `flaky-<operation>` fail that operation once.
pub fn testkit(path: &Path, name: &str, doors: &[&str], flaky: bool) -> PluginConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "path": path,
        "config": {
            "properties": [{ "property_id": super::PROPERTY, "doors": doors }],
            "flaky": flaky,
        },
    }))
    .expect("a plugin stanza")
}
