//! RPCs counted and timed by method and status code.
//!
//! The methods are those of the descriptor sets keysmith serves (its own,
//! health, reflection v1 and v1alpha), read once at start: a path that is
//! none of them is counted as `unknown`, so that a client cannot make up
//! label values. Each (method, code) pair gets its handles the first time it
//! occurs; a call then finds them by index, without the registry.
use std::{collections::HashMap, sync::OnceLock, time::Duration};

use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::Code;

/// Every gRPC status code, as Prometheus labels and logs spell them.
const CODES: usize = 17;

pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A known method, or `unknown`.
pub struct Method {
    pub service: String,
    pub name: String,
    /// `Service/Method`, as the access log names it.
    pub full_name: String,
    /// By code, made when the code first occurs.
    calls: [OnceLock<CallHandles>; CODES],
}

struct CallHandles {
    calls: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Method {
    fn new(service: &str, name: &str) -> Self {
        Self {
            service: service.to_owned(),
            name: name.to_owned(),
            full_name: format!("{service}/{name}"),
            calls: Default::default(),
        }
    }

    /// Counts one call that ended with `code` after `took`.
    pub fn record(&self, code: Code, took: Duration) {
        let handles = self.calls[code as usize].get_or_init(|| {
            let labels = [
                ("service", self.service.clone()),
                ("method", self.name.clone()),
                ("code", code_name(code).to_owned()),
            ];
            CallHandles {
                calls: metrics::counter!("keysmith_rpc_requests_total", &labels),
                seconds: metrics::histogram!("keysmith_rpc_duration_seconds", &labels),
            }
        });
        handles.calls.increment(1);
        handles.seconds.record(took.as_secs_f64());
    }
}

pub struct RpcMetrics {
    /// By HTTP/2 path, `/package.Service/Method`.
    by_path: HashMap<String, usize>,
    /// The last one is `unknown`.
    methods: Vec<Method>,
}

impl RpcMetrics {
    /// Every method of the descriptor sets keysmith serves.
    pub fn new() -> Self {
        let sets = [
            keysmith_api::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut by_path = HashMap::new();
        let mut methods = Vec::new();
        for set in sets {
            // Compiled in: decoding cannot fail but for a broken build.
            let Ok(set) = FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    let full = format!("{}.{}", file.package(), service.name());
                    for method in &service.method {
                        let path = format!("/{full}/{}", method.name());
                        if by_path.insert(path, methods.len()).is_none() {
                            methods.push(Method::new(&full, method.name()));
                        }
                    }
                }
            }
        }
        methods.push(Method::new("unknown", "unknown"));
        Self { by_path, methods }
    }

    /// The index of an HTTP/2 path's method; `unknown`'s for any other
    /// path.
    pub fn index(&self, path: &str) -> usize {
        self.by_path
            .get(path)
            .copied()
            .unwrap_or(self.methods.len() - 1)
    }

    pub fn is_unknown(&self, index: usize) -> bool {
        index == self.methods.len() - 1
    }

    pub fn at(&self, index: usize) -> &Method {
        &self.methods[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method<'a>(rpc: &'a RpcMetrics, path: &str) -> &'a Method {
        rpc.at(rpc.index(path))
    }

    #[test]
    fn every_served_method_is_known_and_anything_else_is_unknown() {
        let rpc = RpcMetrics::new();
        let issue = method(&rpc, "/keysmith.v1.AccessService/Issue");
        assert_eq!(
            (issue.service.as_str(), issue.name.as_str()),
            ("keysmith.v1.AccessService", "Issue")
        );
        let check = method(&rpc, "/grpc.health.v1.Health/Check");
        assert_eq!(check.name, "Check");
        let reflection = method(
            &rpc,
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        );
        assert_eq!(
            reflection.service,
            "grpc.reflection.v1alpha.ServerReflection"
        );
        let made_up = method(&rpc, "/keysmith.v1.AccessService/Nope\n");
        assert_eq!(
            (made_up.service.as_str(), made_up.name.as_str()),
            ("unknown", "unknown")
        );
    }

    #[test]
    fn codes_index_in_order() {
        for i in 0..CODES as i32 {
            assert_eq!(Code::from_i32(i) as usize, i as usize);
        }
    }
}
