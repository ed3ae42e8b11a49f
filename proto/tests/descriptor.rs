//! The embedded descriptor set (for gRPC reflection) is complete and follows our conventions.

use std::collections::BTreeSet;

use meridian_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::Type;
use prost_types::{FileDescriptorProto, FileDescriptorSet, ServiceDescriptorProto};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

fn meridian_files(fds: &FileDescriptorSet) -> Vec<&FileDescriptorProto> {
    fds.file
        .iter()
        .filter(|f| f.name().starts_with("meridian/"))
        .collect()
}

fn service<'a>(fds: &'a FileDescriptorSet, name: &str) -> &'a ServiceDescriptorProto {
    fds.file
        .iter()
        .filter(|f| f.package() == "meridian.v1")
        .flat_map(|f| &f.service)
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("service {name} missing"))
}

fn method_names(service: &ServiceDescriptorProto) -> Vec<&str> {
    service.method.iter().map(|m| m.name()).collect()
}

#[test]
fn lists_the_five_files_and_their_imports() {
    let fds = descriptor_set();
    let names: BTreeSet<&str> = fds.file.iter().map(|f| f.name()).collect();
    for name in [
        "meridian/v1/domain.proto",
        "meridian/v1/agent.proto",
        "meridian/v1/placement.proto",
        "meridian/v1/fleet.proto",
        "meridian/v1/tenants.proto",
        // Imports are included so a reflection client can resolve every type.
        "google/protobuf/field_mask.proto",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    for file in meridian_files(&fds) {
        assert_eq!(file.package(), "meridian.v1", "{}", file.name());
        assert_eq!(file.syntax(), "proto3", "{}", file.name());
        assert!(
            file.source_code_info.is_some(),
            "{} lacks source info (comments)",
            file.name()
        );
    }
}

#[test]
fn lists_the_three_services_and_their_methods() {
    let fds = descriptor_set();
    let services: BTreeSet<&str> = fds
        .file
        .iter()
        .flat_map(|f| &f.service)
        .map(|s| s.name())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "CostService",
            "FleetService",
            "PlacementService",
            "TenantService",
            "UsageService"
        ])
    );
    assert_eq!(
        method_names(service(&fds, "CostService")),
        [
            "SetCostInputs",
            "GetCostInputs",
            "GetEndpointCost",
            "GetSiteCost",
            "SizeFleet",
            "GetBreakEven",
        ]
    );

    let placement = service(&fds, "PlacementService");
    assert_eq!(
        method_names(placement),
        [
            "CreateWorkload",
            "GetWorkload",
            "ListWorkloads",
            "DeleteWorkload",
            "DryRun",
            "WatchWorkload",
        ]
    );
    for method in &placement.method {
        let streaming = method.name() == "WatchWorkload";
        assert_eq!(method.server_streaming(), streaming, "{}", method.name());
        assert!(!method.client_streaming(), "{}", method.name());
    }
    let watch = placement
        .method
        .iter()
        .find(|m| m.name() == "WatchWorkload")
        .expect("present");
    assert_eq!(watch.output_type(), ".meridian.v1.WorkloadEvent");

    assert_eq!(
        method_names(service(&fds, "FleetService")),
        [
            "CreateSite",
            "GetSite",
            "ListSites",
            "UpdateSite",
            "DecommissionSite",
            "RevokeSite",
            "GetSiteDrift",
            "ListServers",
            "GetServer",
            "RequestServerAction",
            "ListServerActions",
            "CreateRegion",
            "ListRegions",
            "CreateDataset",
            "GetDataset",
            "ListDatasets",
            "DeleteDataset",
            "CreateBootstrapToken",
            "ListBootstrapTokens",
            "RevokeBootstrapToken",
        ]
    );
    assert_eq!(
        method_names(service(&fds, "TenantService")),
        [
            "CreateTenant",
            "GetTenant",
            "ListTenants",
            "UpdateTenant",
            "DeleteTenant",
            "CreateUser",
            "ListUsers",
            "DeleteUser",
            "SetUserPassword",
            "CreateApiToken",
            "ListApiTokens",
            "RevokeApiToken",
            "GetQuotaUsage",
        ]
    );

    // The generated servers name the same services.
    use meridian_proto::v1::{
        fleet_service_server, placement_service_server, tenant_service_server,
    };
    assert_eq!(
        placement_service_server::SERVICE_NAME,
        "meridian.v1.PlacementService"
    );
    assert_eq!(
        fleet_service_server::SERVICE_NAME,
        "meridian.v1.FleetService"
    );
    assert_eq!(
        tenant_service_server::SERVICE_NAME,
        "meridian.v1.TenantService"
    );
}

#[test]
fn rpcs_take_and_return_wrapper_messages() {
    // Google API style: every RPC has its own `<Method>Request` and `<Method>Response` (or a
    // streamed event), never a bare domain message.
    let fds = descriptor_set();
    for file in meridian_files(&fds) {
        for service in &file.service {
            for method in &service.method {
                let name = method.name();
                assert_eq!(method.input_type(), format!(".meridian.v1.{name}Request"));
                if !method.server_streaming() {
                    assert_eq!(method.output_type(), format!(".meridian.v1.{name}Response"));
                }
            }
        }
    }
}

/// `SiteTier` -> `SITE_TIER`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[test]
fn enums_start_unspecified_and_prefix_their_values() {
    let fds = descriptor_set();
    let mut seen = BTreeSet::new();
    for file in meridian_files(&fds) {
        let nested = file
            .message_type
            .iter()
            .flat_map(|m| &m.enum_type)
            .collect::<Vec<_>>();
        assert!(nested.is_empty(), "enums are top-level in {}", file.name());
        for e in &file.enum_type {
            seen.insert(e.name());
            let prefix = format!("{}_", screaming_snake(e.name()));
            let first = e.value.first().expect("enum has values");
            assert_eq!(first.number(), 0, "{}", e.name());
            assert_eq!(first.name(), format!("{prefix}UNSPECIFIED"), "{}", e.name());
            for value in &e.value {
                assert!(
                    value.name().starts_with(&prefix),
                    "{} value {} lacks prefix {prefix}",
                    e.name(),
                    value.name()
                );
            }
        }
    }
    for name in [
        "SiteTier",
        "SiteState",
        "ServerPhase",
        "ReservationPhase",
        "RejectReason",
        "IntentAckStatus",
        "EnrollErrorCode",
        "Role",
    ] {
        assert!(seen.contains(name), "enum {name} missing from {seen:?}");
    }
}

#[test]
fn ids_and_times_use_the_agreed_scalar_types() {
    let fds = descriptor_set();
    for file in meridian_files(&fds) {
        let mut messages: Vec<_> = file.message_type.iter().collect();
        let mut i = 0;
        while i < messages.len() {
            messages.extend(&messages[i].nested_type);
            i += 1;
        }
        for message in messages {
            for field in &message.field {
                let name = field.name();
                let what = format!("{}.{name}", message.name());
                if name.ends_with("_at") || name == "at" || name == "start" || name == "end" {
                    assert_eq!(
                        field.r#type(),
                        Type::Int64,
                        "{what}: times are int64 unix millis"
                    );
                }
                if name == "generation"
                    || name.ends_with("_generation")
                    || name.ends_with("sequence")
                {
                    assert_eq!(field.r#type(), Type::Uint64, "{what}: uint64");
                }
                if name.ends_with("_mib") || name.ends_with("_bytes") {
                    assert_eq!(field.r#type(), Type::Uint64, "{what}: sizes are uint64");
                }
            }
        }
    }
}
