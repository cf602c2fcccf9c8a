//! Generated code for the FocusForge protobuf contracts (`proto/focusforge/**`).
//!
//! Each package is a module named after its proto package (`focusforge.mood.v1`
//! is `mood::v1`), found by the build script; the encoded
//! [`FILE_DESCRIPTOR_SET`] backs server reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/modules.rs"));

/// What every generated service server can do beyond tonic's traits, so the
/// service kit mounts any of them the same way.
pub trait Server {
    /// Refuses request messages over `limit` bytes (`RESOURCE_EXHAUSTED`).
    fn max_request_bytes(self, limit: usize) -> Self;
}

/// The encoded `FileDescriptorSet` of every FocusForge contract, including the
/// well-known types they import.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/focusforge_descriptor.bin"));

/// The domain of `google.rpc.ErrorInfo` details in FocusForge errors.
pub const ERROR_DOMAIN: &str = "focusforge.dev";
