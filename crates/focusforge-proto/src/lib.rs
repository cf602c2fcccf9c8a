//! Generated code for the FocusForge protobuf contracts (`proto/focusforge/**`).
//!
//! Each package is a module named after its proto package; the encoded
//! [`FILE_DESCRIPTOR_SET`] backs server reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `focusforge.common.v1`
pub mod common {
    pub mod v1 {
        tonic::include_proto!("focusforge.common.v1");
    }
}

/// `focusforge.chain.v1`
pub mod chain {
    pub mod v1 {
        tonic::include_proto!("focusforge.chain.v1");
    }
}

/// `focusforge.memory.v1`
pub mod memory {
    pub mod v1 {
        tonic::include_proto!("focusforge.memory.v1");
    }
}

/// `focusforge.tasks.v1`
pub mod tasks {
    pub mod v1 {
        tonic::include_proto!("focusforge.tasks.v1");
    }
}

/// `focusforge.users.v1`
pub mod users {
    pub mod v1 {
        tonic::include_proto!("focusforge.users.v1");
    }
}

/// `focusforge.planner.v1`
pub mod planner {
    pub mod v1 {
        tonic::include_proto!("focusforge.planner.v1");
    }
}

/// `focusforge.jobs.v1`
pub mod jobs {
    pub mod v1 {
        tonic::include_proto!("focusforge.jobs.v1");
    }
}

/// `focusforge.mcp.v1`
pub mod mcp {
    pub mod v1 {
        tonic::include_proto!("focusforge.mcp.v1");
    }
}

/// The encoded `FileDescriptorSet` of every FocusForge contract, including the
/// well-known types they import.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/focusforge_descriptor.bin"));

/// The domain of `google.rpc.ErrorInfo` details in FocusForge errors.
pub const ERROR_DOMAIN: &str = "focusforge.dev";
