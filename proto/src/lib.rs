//! Meridian's protobuf definitions (package `meridian.v1`) and the prost/tonic code generated
//! from them. The bottom of the workspace: it depends on no other Meridian crate.
//!
//! The `.proto` sources live in `proto/meridian/v1/`:
//!
//! - `domain.proto`: the domain model on the wire (sites, servers, tenants, workload specs,
//!   placements, site intents, site reports). It mirrors `meridian-common`'s model field for
//!   field; the conversions there do all validation.
//! - `agent.proto`: the QUIC agent channel (`AgentMessage` / `CentralMessage` envelopes,
//!   enrolment, the bootstrap file).
//! - `placement.proto`, `fleet.proto`, `tenants.proto`: the gRPC services
//!   [`PlacementService`](v1::placement_service_server::PlacementService),
//!   [`FleetService`](v1::fleet_service_server::FleetService) and
//!   [`TenantService`](v1::tenant_service_server::TenantService), plus the records central
//!   stores (`AuditRecord`, `ApiTokenRecord`, `BootstrapTokenRecord`).
//!
//! The code is generated at build time with the pure-Rust `protox` compiler, so no system
//! `protoc` is needed.
//!
//! Wire conventions: IDs are strings; time is `int64` milliseconds since the Unix epoch;
//! generations and sequences are `uint64`; every enum has an `*_UNSPECIFIED = 0` value, and
//! prost keeps enum fields as `i32`, so an unknown or unspecified value decodes fine and must be
//! rejected by the conversion into the model.

/// Generated messages, enums, clients and servers of package `meridian.v1`.
pub mod v1 {
    tonic::include_proto!("meridian.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of every `meridian.v1` file and its imports
/// (with source info, so comments are included), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("meridian_descriptor");
