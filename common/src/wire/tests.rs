//! Round trips (model -> protobuf -> bytes -> protobuf -> model) on populated values of every
//! concept, the failure table of sites and servers, and the tests of the machinery itself
//! (every enum, error display). The tests of one concept's conversion live in its `wire.rs`;
//! the fixtures and drivers are `crate::testkit`'s.

use std::fmt::Debug;

use meridian_proto::v1 as proto;

use super::ConvertProblem;
use crate::ids::Generation;
use crate::model::*;
use crate::testkit::*;
use crate::validate;

#[test]
fn round_trip_site_server_tenant_dataset_region() {
    validate::validate_site(&site()).unwrap();
    validate::validate_server(&server()).unwrap();
    validate::validate_tenant(&tenant()).unwrap();
    validate::validate_dataset(&dataset()).unwrap();
    validate::validate_region(&region()).unwrap();

    let wire = assert_round_trip::<_, proto::Site>(site());
    assert_eq!(wire.certifications, vec![1, 4, 5]);
    assert_eq!(wire.gateway_range.unwrap().addr, "203.0.113.0");
    assert_round_trip::<_, proto::Server>(server());
    let wire = assert_round_trip::<_, proto::Server>(bare_server());
    assert_eq!(wire.bmc.unwrap().vendor, "HPE");
    let wire = assert_round_trip::<_, proto::Tenant>(tenant());
    assert_eq!(wire.residency, vec!["CH", "country:NA", "EU"]);
    assert_round_trip::<_, proto::Tenant>(Tenant {
        network: None,
        quotas: Quotas::default(),
        residency: ResidencyRule::anywhere(),
        ..tenant()
    });
    assert_round_trip::<_, proto::Dataset>(dataset());
    assert_round_trip::<_, proto::Region>(region());
}

#[test]
fn round_trip_workload_and_placement() {
    validate::validate_workload_spec(&spec()).unwrap();
    assert_round_trip::<_, proto::WorkloadSpec>(spec());
    let mut bare = spec();
    bare.resources.accelerator = Accelerator::WholeGpus {
        model: GpuModel::A100_80GB,
        count: 8,
    };
    bare.constraints = Constraints::default();
    bare.window = None;
    bare.image = None;
    bare.expose.clear();
    assert_round_trip::<_, proto::WorkloadSpec>(bare.clone());
    bare.resources.accelerator = Accelerator::None;
    assert_round_trip::<_, proto::WorkloadSpec>(bare);

    let states = [
        ReservationState::Pending,
        ReservationState::Approved,
        ReservationState::Active,
        ReservationState::Completed,
        ReservationState::Canceled,
        ReservationState::Failed {
            reason: "no capacity in the EU".into(),
        },
        // The model allows an empty reason; it survives the trip.
        ReservationState::Failed {
            reason: String::new(),
        },
    ];
    for state in states {
        assert_round_trip::<_, proto::Workload>(workload(state));
    }

    let wire = assert_round_trip::<_, proto::Placement>(placement());
    assert_eq!(
        wire.rejections
            .iter()
            .map(|r| (r.reason, r.count))
            .collect::<Vec<_>>(),
        vec![(2, 12), (7, 3), (10, 1)]
    );
}

#[test]
fn round_trip_intent_and_reports() {
    validate::validate_site_intent(&intent()).unwrap();
    let wire = assert_round_trip::<_, proto::SiteIntent>(intent());
    assert_eq!(wire.networks[0].gateway, "10.64.3.1");
    assert_round_trip::<_, proto::SiteIntent>(SiteIntent::empty(i("edge-9"), Generation::new(1)));
    for body in report_bodies() {
        assert_round_trip::<_, proto::SiteReport>(report(body));
    }
}

#[test]
fn round_trip_parts() {
    let h100 = GpuModel::H100_80GB;
    assert_round_trip::<_, proto::MigConfig>(MigConfig::Disabled);
    assert_round_trip::<_, proto::MigConfig>(server().gpus[0].mig.clone());
    assert_round_trip::<_, proto::MigInstance>(MigInstance {
        profile: profile(h100, "7g.80gb"),
        placement: 0,
    });
    assert_round_trip::<_, proto::Gpu>(server().gpus[0].clone());
    assert_round_trip::<_, proto::Dpu>(server().dpu.unwrap());
    assert_round_trip::<_, proto::BmcEndpoint>(server().bmc);
    assert_round_trip::<_, proto::Quotas>(tenant().quotas);
    assert_round_trip::<_, proto::ScoreWeights>(tenant().weights);
    assert_round_trip::<_, proto::TenantNetwork>(tenant().network.unwrap());
    assert_round_trip::<_, proto::GeoPoint>(site().location);
    assert_round_trip::<_, proto::Ipv4Net>(net("0.0.0.0/0"));
    assert_round_trip::<_, proto::Ipv4Net>(net("192.0.2.7/32"));
    assert_round_trip::<_, proto::TimeWindow>(window(i64::MIN, i64::MAX));
    assert_round_trip::<_, proto::ReservationState>(ReservationState::Active);
    assert_round_trip::<_, proto::ServerState>(ServerState::Inspecting);
    assert_round_trip::<_, proto::AllocationState>(AllocationStatus::Ended);
    assert_round_trip::<_, proto::Assignment>(placement().assignments[0].clone());
    assert_round_trip::<_, proto::GpuSlot>(GpuSlot::None);
    assert_round_trip::<_, proto::ScoreBreakdown>(placement().score);
    for vendor in crate::server::wire::BMC_VENDORS {
        assert_round_trip::<_, proto::BmcEndpoint>(BmcEndpoint {
            url: "https://bmc".into(),
            vendor,
        });
    }
}

/// Every known enum number converts and comes back; 0 and the next number are refused.
#[test]
fn every_enum_value() {
    fn check<M>(known: i32)
    where
        M: super::WireEnum + Copy + Debug,
    {
        for raw in 1..=known {
            let m: M = super::enum_in(raw).unwrap();
            assert_eq!(super::enum_out(m), raw);
        }
        assert_eq!(
            super::enum_in::<M>(0).unwrap_err().problem,
            ConvertProblem::Unspecified
        );
        assert_eq!(
            super::enum_in::<M>(known + 1).unwrap_err().problem,
            ConvertProblem::UnknownEnum(known + 1)
        );
    }
    check::<Protocol>(2);
    check::<SiteTier>(2);
    check::<Certification>(6);
    check::<SiteState>(6);
    check::<DpuMode>(2);
    check::<GpuHealth>(3);
    check::<WorkloadKind>(6);
    check::<RejectReason>(11);
    check::<AllocationMode>(3);
    check::<PowerAction>(4);
    check::<Severity>(3);
}

#[test]
fn site_and_server_failures() {
    use ConvertProblem::*;
    let site_cases: &[(&str, Mutation<proto::Site>, &str, ConvertProblem)] = &[
        ("unspecified tier", |s| s.tier = 0, "tier", Unspecified),
        ("unknown state", |s| s.state = -1, "state", UnknownEnum(-1)),
        (
            "missing location",
            |s| s.location = None,
            "location",
            Missing,
        ),
        (
            "missing gateway",
            |s| s.gateway_range = None,
            "gateway_range",
            Missing,
        ),
        (
            "duplicate certification",
            |s| s.certifications = vec![1, 4, 1],
            "certifications[2]",
            Duplicate,
        ),
        (
            "bad gateway address",
            |s| s.gateway_range.as_mut().unwrap().addr = "203.0.113.300".into(),
            "gateway_range.addr",
            any_invalid(),
        ),
        (
            "gateway prefix over 32",
            |s| s.gateway_range.as_mut().unwrap().prefix_len = 33,
            "gateway_range.prefix_len",
            any_invalid(),
        ),
        (
            "gateway prefix over u8",
            |s| s.gateway_range.as_mut().unwrap().prefix_len = 300,
            "gateway_range.prefix_len",
            OutOfRange {
                value: 300,
                max: 255,
            },
        ),
        (
            "gateway with host bits",
            |s| s.gateway_range.as_mut().unwrap().addr = "203.0.113.7".into(),
            "gateway_range.addr",
            any_invalid(),
        ),
        (
            "bad country",
            |s| s.country = "de".into(),
            "country",
            any_invalid(),
        ),
        (
            "bad pool id",
            |s| s.pools[1] = "Training".into(),
            "pools[1]",
            any_invalid(),
        ),
    ];
    failures(site(), site_cases);

    let server_cases: &[(&str, Mutation<proto::Server>, &str, ConvertProblem)] = &[
        (
            "MIG profile of another model",
            |s| s.gpus[0].mig.as_mut().unwrap().instances[1].profile = "2g.10gb".into(),
            "gpus[0].mig.instances[1].profile",
            any_invalid(),
        ),
        (
            "MIG placement over u8",
            |s| s.gpus[0].mig.as_mut().unwrap().instances[2].placement = 256,
            "gpus[0].mig.instances[2].placement",
            OutOfRange {
                value: 256,
                max: 255,
            },
        ),
        (
            "instances while MIG is off",
            |s| {
                let instances = s.gpus[0].mig.as_ref().unwrap().instances.clone();
                let off = s.gpus[2].mig.as_mut().unwrap();
                off.instances = instances;
            },
            "gpus[2].mig.instances",
            any_invalid(),
        ),
        (
            "missing MIG config",
            |s| s.gpus[1].mig = None,
            "gpus[1].mig",
            Missing,
        ),
        (
            "unspecified health",
            |s| s.gpus[1].health = 0,
            "gpus[1].health",
            Unspecified,
        ),
        (
            "unknown GPU model",
            |s| s.gpus[2].model = "RTX-4090".into(),
            "gpus[2].model",
            any_invalid(),
        ),
        (
            "unspecified DPU mode",
            |s| s.dpu.as_mut().unwrap().mode = 0,
            "dpu.mode",
            Unspecified,
        ),
        (
            "unknown BMC vendor",
            |s| s.bmc.as_mut().unwrap().vendor = "Acme BMC".into(),
            "bmc.vendor",
            any_invalid(),
        ),
        ("missing bmc", |s| s.bmc = None, "bmc", Missing),
        ("missing state", |s| s.state = None, "state", Missing),
        (
            "unspecified phase",
            |s| s.state.as_mut().unwrap().phase = 0,
            "state.phase",
            Unspecified,
        ),
        (
            "bad pool",
            |s| s.pool = Some(String::new()),
            "pool",
            any_invalid(),
        ),
        (
            "bad site",
            |s| s.site = "fra 1".into(),
            "site",
            any_invalid(),
        ),
    ];
    failures(server(), server_cases);
}

#[test]
fn errors_display_and_feed_validation() {
    let mut wire = proto::Workload::from(workload(ReservationState::Pending));
    wire.spec.as_mut().unwrap().expose[0].port = 70_000;
    let err = Workload::try_from(wire).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.expose[0].port: 70000 is out of range; at most 65535 is allowed"
    );
    let v: validate::ValidationError = err.into();
    assert_eq!(v.fields(), vec!["spec.expose[0].port"]);
    let top = SiteTier::try_from(proto::SiteTier::Unspecified).unwrap_err();
    assert_eq!(top.field, "");
    assert_eq!(top.to_string(), "is unspecified (0); set one of its values");
}
