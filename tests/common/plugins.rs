//! Builds the plugins the tests load (the keypad example and the
//! ABI-99 test plugin) with the cargo that runs the tests, once per test
//! binary, into a target directory of their own: a plugin is built as a
//! workspace member on its own, with its own feature set, and a separate
//! directory keeps that build from invalidating the tests' own artefacts.
use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    path::{Path, PathBuf},
    process::Command,
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
    BUILT.get_or_init(build)
}

fn build() -> BuiltPlugins {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", "keysmith-keypad-plugin"])
        .args([
            "-p",
            "keysmith-faulty-plugin",
            "-p",
            "keysmith-testkit-plugin",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building the test plugins failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let library = |crate_name: &str| {
        let path = target_dir
            .join("debug")
            .join(format!("{DLL_PREFIX}{crate_name}{DLL_SUFFIX}"));
        assert!(path.is_file(), "{} was not built", path.display());
        path
    };
    BuiltPlugins {
        keypad: library("keysmith_keypad_plugin"),
        faulty: library("keysmith_faulty_plugin"),
        testkit: library("keysmith_testkit_plugin"),
    }
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
