//! Generated code for Attune's gRPC contracts (`proto/attune/**`), and the encoded
//! descriptor set that server reflection serves.
//!
//! This is the only crate that runs code generation. Each package is a module path
//! mirroring its proto package: `attune.consent.v1` is [`consent::v1`].

pub use prost;
pub use prost_types;
pub use tonic;

/// Every Attune file descriptor, encoded: register it with server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/attune_descriptor.bin"));

macro_rules! proto_package {
    ($name:ident, $package:literal) => {
        pub mod $name {
            #[allow(clippy::all, clippy::pedantic, missing_docs)]
            pub mod v1 {
                tonic::include_proto!($package);
            }
        }
    };
}

proto_package!(common, "attune.common.v1");
proto_package!(consent, "attune.consent.v1");
proto_package!(privacy, "attune.privacy.v1");
proto_package!(profile, "attune.profile.v1");
proto_package!(recommendation, "attune.recommendation.v1");
proto_package!(loyalty, "attune.loyalty.v1");
proto_package!(delivery, "attune.delivery.v1");
proto_package!(gateway, "attune.gateway.v1");
