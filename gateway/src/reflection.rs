//! Server reflection (v1 and v1alpha) for every routed service, from the
//! contracts' descriptor set, so `grpcurl` at the gateway can list, describe
//! and call everything behind it.

use tonic::service::Routes;

use crate::GatewayError;

pub const HEALTH: &str = "grpc.health.v1.Health";
pub const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
pub const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Adds both reflection services, advertising `services` plus health and
/// reflection themselves.
pub fn add(routes: Routes, services: &[String]) -> Result<Routes, GatewayError> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(focusforge_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so tools can decode rich errors.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for name in
            services
                .iter()
                .map(String::as_str)
                .chain([HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA])
        {
            b = b.with_service_name(name);
        }
        b
    };
    let err = |e: tonic_reflection::server::Error| GatewayError::Reflection(e.to_string());
    Ok(routes
        .add_service(builder().build_v1().map_err(err)?)
        .add_service(builder().build_v1alpha().map_err(err)?))
}
