//! What each RPC needs, by its HTTP/2 path. A method missing from the table
//! needs the administrator scope, so a new RPC is closed until classified
//! (and a test fails until it is).
use super::Scope;

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed (health checks).
    Open,
    /// Server reflection, as `auth.reflection` says.
    Reflection,
    /// A valid token with this scope.
    Scoped(Scope),
}

const TABLE: &[(&str, Access)] = {
    use Access::Scoped;
    use Scope::*;
    &[
        ("/keysmith.v1.AccessService/Issue", Scoped(KeysIssue)),
        ("/keysmith.v1.AccessService/Revoke", Scoped(KeysRevoke)),
        ("/keysmith.v1.AccessService/ListKeys", Scoped(KeysRead)),
        ("/keysmith.v1.AccessService/GetKey", Scoped(KeysRead)),
        ("/keysmith.v1.AccessService/RefreshKey", Scoped(KeysRead)),
        // The keys as ListKeys shows them, as they change.
        ("/keysmith.v1.AccessService/WatchKeys", Scoped(KeysRead)),
        // Both change what a key opens, as issuing does.
        ("/keysmith.v1.AccessService/UpdateKey", Scoped(KeysIssue)),
        ("/keysmith.v1.AccessService/EncodeKey", Scoped(KeysIssue)),
        // What EncodeKey needs to be called with: whoever encodes lists them.
        ("/keysmith.v1.AccessService/ListEncoders", Scoped(KeysIssue)),
        ("/keysmith.v1.AccessService/ListEntrances", Scoped(Admin)),
        ("/keysmith.v1.AccessService/ListDrivers", Scoped(Admin)),
        // Reconciliation: what a driver holds, beside keysmith's own view.
        ("/keysmith.v1.AccessService/ListDriverKeys", Scoped(Admin)),
        ("/keysmith.v1.PmsService/GetRoomStayKey", Scoped(KeysRead)),
        (
            "/keysmith.v1.PmsService/ListReservationRoomKeys",
            Scoped(KeysRead),
        ),
        (
            "/keysmith.v1.PmsService/ListRoomStayLinks",
            Scoped(KeysRead),
        ),
        // Issues, updates and revokes keys to match the PMS.
        ("/keysmith.v1.PmsService/SyncRoomStays", Scoped(KeysIssue)),
        (
            "/keysmith.v1.PmsService/RegisterWebhookEndpoint",
            Scoped(Admin),
        ),
        // What was set aside and why: no key data.
        ("/keysmith.v1.PmsService/ListParkedItems", Scoped(KeysRead)),
        // Re-runs work keysmith set aside after it failed again and again:
        // an operator's decision, once the cause is fixed.
        ("/keysmith.v1.PmsService/RetryParkedItem", Scoped(Admin)),
        ("/keysmith.v1.AuditService/ListAuditRecords", Scoped(Admin)),
        // Keys that protect every property: the service also asks for a
        // token for every property.
        (
            "/keysmith.v1.EncryptionService/GetEncryptionStatus",
            Scoped(Admin),
        ),
        (
            "/keysmith.v1.EncryptionService/RotateKeyEncryptionKey",
            Scoped(Admin),
        ),
        (
            "/keysmith.v1.EncryptionService/RotateDataKey",
            Scoped(Admin),
        ),
    ]
};

const OPEN_SERVICES: &[&str] = &["/grpc.health.v1.Health/"];
const REFLECTION_SERVICES: &[&str] = &[
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

pub fn access(path: &str) -> Access {
    if OPEN_SERVICES.iter().any(|s| path.starts_with(s)) {
        return Access::Open;
    }
    if REFLECTION_SERVICES.iter().any(|s| path.starts_with(s)) {
        return Access::Reflection;
    }
    TABLE
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, a)| *a)
        // The lock simulator and anything not classified yet.
        .unwrap_or(Access::Scoped(Scope::Admin))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    /// Every keysmith RPC in the served descriptor set is classified, apart
    /// from the lock simulator, which is administration as a whole.
    #[test]
    fn every_rpc_is_classified() {
        let set = FileDescriptorSet::decode(keysmith_api::FILE_DESCRIPTOR_SET).unwrap();
        let mut unclassified = Vec::new();
        for file in &set.file {
            let package = file.package();
            if !package.starts_with("keysmith.") || package.starts_with("keysmith.sim.") {
                continue;
            }
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    if !TABLE.iter().any(|(p, _)| *p == path) {
                        unclassified.push(path);
                    }
                }
            }
        }
        assert!(unclassified.is_empty(), "classify: {unclassified:?}");
    }

    #[test]
    fn health_is_open_and_the_unknown_needs_an_administrator() {
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(
            access("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Access::Reflection
        );
        assert_eq!(
            access("/keysmith.sim.v1.LockSimulatorService/Present"),
            Access::Scoped(Scope::Admin)
        );
        assert_eq!(
            access("/keysmith.v1.AccessService/Nope"),
            Access::Scoped(Scope::Admin)
        );
    }
}
