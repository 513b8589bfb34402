//! keysmith's wire API, generated from `proto/` at build time.

pub mod codec;

pub mod v1 {
    tonic::include_proto!("keysmith.v1");
}

pub mod sim {
    pub mod v1 {
        tonic::include_proto!("keysmith.sim.v1");
    }
}

/// The encoded `FileDescriptorSet` of every keysmith proto and its imports,
/// and of google.rpc's Status and error details (what keysmith's errors
/// carry), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keysmith_descriptor.bin"));
