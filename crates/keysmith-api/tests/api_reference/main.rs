//! docs/api.md is what the protos say: this test renders the reference from
//! the descriptor set keysmith-api builds and fails when the file differs.
//! `KEYSMITH_BLESS=1` writes it instead.

mod markdown;

use std::path::PathBuf;

use prost::Message;

const REGENERATE: &str = "KEYSMITH_BLESS=1 cargo test -p keysmith-api --test api_reference";

#[test]
fn docs_api_md_is_generated_from_the_protos() {
    let set = prost_types::FileDescriptorSet::decode(keysmith_api::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set keysmith-api builds decodes");
    let rendered = markdown::render(&set, REGENERATE);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    if std::env::var_os("KEYSMITH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/api.md differs from what the protos generate: run `{REGENERATE}` to regenerate it"
    );
}

#[test]
fn the_reference_describes_every_rpc_field_and_enum_value_with_its_comment() {
    let set = prost_types::FileDescriptorSet::decode(keysmith_api::FILE_DESCRIPTOR_SET).unwrap();
    let rendered = markdown::render(&set, REGENERATE);
    for expected in [
        // A service, a server-streaming RPC and its comment.
        "### Service `AccessService` (`keysmith/v1/access.proto`)",
        "| `WatchKeys` | [`keysmith.v1.WatchKeysRequest`](#keysmith.v1.WatchKeysRequest) | stream [`keysmith.v1.WatchKeysResponse`](#keysmith.v1.WatchKeysResponse) | Every change to a property's keys",
        // A field with its type, label and comment; a oneof member; a map.
        "| `entrance_ids` | 5 | `string` | repeated |",
        "| `key_id` | 3 | `string` | oneof `target` |",
        "| `staff_sequences` | 7 | map<`string`, `uint32`> |",
        "| `starts_at` | 7 | `google.protobuf.Timestamp` |",
        // An enum value with its trailing comment.
        "| `ROLE_UNSPECIFIED` | 0 | treated as ROLE_GUEST |",
        // The other packages.
        "## Package `keysmith.sim.v1`",
        "### Service `PmsService` (`keysmith/v1/pms.proto`)",
        // A reason named by an RPC's comment.
        "| `RESUME_TOKEN_EXPIRED` | [`keysmith.v1.AccessService.WatchKeys`](#keysmith.v1.AccessService) |",
    ] {
        assert!(
            rendered.contains(expected),
            "the reference lacks {expected:?}"
        );
    }
    // Enum values, their ends and gRPC codes are not reasons.
    for not_a_reason in [
        "KEY_STATE_ACTIVE",
        "ENCODING_REQUIRED",
        "FAILED_PRECONDITION",
    ] {
        assert!(
            !rendered.contains(&format!("| `{not_a_reason}` | [")),
            "{not_a_reason} is listed as a reason"
        );
    }
    // The API comes first.
    assert!(
        rendered.find("## Package `keysmith.v1`") < rendered.find("## Package `keysmith.sim.v1`")
    );
}
