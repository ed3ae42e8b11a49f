//! Round trips (model -> protobuf -> bytes -> protobuf -> model) on populated values, a
//! proptest round trip for `WorkloadSpec` and `SiteIntent`, and a table of failures with their
//! exact field paths.

use std::fmt::Debug;
use std::net::Ipv4Addr;

use meridian_proto::v1 as proto;
use prost::Message;

use super::{ConvertError, ConvertProblem};
use crate::ids::{
    DatasetId, Generation, Name, PoolId, RegionId, Sequence, ServerId, SiteId, TenantId,
    TimeWindow, Timestamp, TypedId, WorkloadId,
};
use crate::model::*;
use crate::validate;

// ---------------------------------------------------------------------------------------------
// Fixtures: realistic, fully populated, and valid by `validate::*`
// ---------------------------------------------------------------------------------------------

fn i<T: TypedId>(s: &str) -> T {
    T::parse(s).unwrap()
}

fn net(s: &str) -> Ipv4Net {
    Ipv4Net::parse(s).unwrap()
}

fn window(start: i64, end: i64) -> TimeWindow {
    TimeWindow::new(Timestamp::from_millis(start), Timestamp::from_millis(end)).unwrap()
}

fn residency(terms: &[&str]) -> ResidencyRule {
    ResidencyRule::parse(terms).unwrap()
}

fn profile(model: GpuModel, name: &str) -> MigProfile {
    MigProfile::parse(model, name).unwrap()
}

fn site() -> Site {
    Site {
        id: i("fra-1"),
        name: i("frankfurt-1"),
        tier: SiteTier::Core,
        location: GeoPoint {
            lat: 50.11,
            lon: 8.68,
        },
        country: Jurisdiction::parse("DE").unwrap(),
        certifications: [
            Certification::Iso27001,
            Certification::PciDss,
            Certification::Sovereign,
        ]
        .into(),
        pools: vec![i("default"), i("training")],
        gateway_range: net("203.0.113.0/24"),
        price_per_gpu_hour: 2_500_000,
        state: SiteState::Online,
    }
}

fn server() -> Server {
    let h100 = GpuModel::H100_80GB;
    Server {
        id: i("srv-1"),
        site: i("fra-1"),
        bmc: BmcEndpoint {
            url: "https://10.0.0.5".into(),
            vendor: BmcVendor::Supermicro,
        },
        serial: "SN-0042".into(),
        cpu_cores: 96,
        memory_mib: 2 * 1024 * 1024,
        gpus: vec![
            Gpu {
                index: 0,
                model: h100,
                memory_mib: 81_920,
                mig: MigConfig::Enabled {
                    instances: vec![
                        MigInstance {
                            profile: profile(h100, "3g.40gb"),
                            placement: 0,
                        },
                        MigInstance {
                            profile: profile(h100, "2g.20gb"),
                            placement: 4,
                        },
                        MigInstance {
                            profile: profile(h100, "1g.10gb"),
                            placement: 6,
                        },
                    ],
                },
                health: GpuHealth::Healthy,
            },
            Gpu {
                index: 1,
                model: h100,
                memory_mib: 81_920,
                mig: MigConfig::Enabled { instances: vec![] },
                health: GpuHealth::Degraded,
            },
            Gpu {
                index: 2,
                model: GpuModel::L40S,
                memory_mib: 49_152,
                mig: MigConfig::Disabled,
                health: GpuHealth::Failed,
            },
        ],
        dpu: Some(Dpu {
            model: "BlueField-3".into(),
            serial: "MT2301X0001".into(),
            mode: DpuMode::Dpu,
        }),
        pool: Some(i("training")),
        state: ServerState::Failed {
            reason: "PSU 2 lost input power".into(),
        },
    }
}

fn bare_server() -> Server {
    Server {
        id: i("srv-2"),
        bmc: BmcEndpoint {
            url: "https://10.0.0.6".into(),
            vendor: BmcVendor::Hpe,
        },
        gpus: vec![],
        dpu: None,
        pool: None,
        state: ServerState::Available,
        ..server()
    }
}

fn tenant() -> Tenant {
    Tenant {
        id: i("acme"),
        name: i("acme-corp"),
        quotas: Quotas {
            gpus_per_model: [(GpuModel::H100_80GB, 16), (GpuModel::L40S, 4)].into(),
            mig_slices: 14,
            concurrent_reservations: 20,
            sites: 3,
        },
        residency: residency(&["EU", "CH", "country:NA"]),
        weights: ScoreWeights {
            latency: 40.0,
            data: 30.0,
            price: 20.5,
            packing: 9.5,
        },
        max_priority: 10,
        network: Some(TenantNetwork {
            vni: 1001,
            table: 1001,
            supernet: net("10.64.0.0/16"),
        }),
    }
}

fn dataset() -> Dataset {
    Dataset {
        id: i("weights"),
        tenant: i("acme"),
        name: i("llama-weights"),
        size_bytes: 140_000_000_000,
        replicas: vec![i("fra-1"), i("par-1")],
        residency: residency(&["EU"]),
    }
}

fn region() -> Region {
    Region {
        id: i("paris"),
        name: i("paris-metro"),
        location: GeoPoint {
            lat: 48.86,
            lon: 2.35,
        },
        country: Jurisdiction::parse("FR").unwrap(),
        population: 12_000_000,
    }
}

fn spec() -> WorkloadSpec {
    WorkloadSpec {
        name: i("chat-api"),
        kind: WorkloadKind::InferenceEndpoint,
        resources: Resources {
            accelerator: Accelerator::Mig {
                model: GpuModel::H100_80GB,
                profile: profile(GpuModel::H100_80GB, "3g.40gb"),
            },
            cpu_cores: 32,
            memory_mib: 262_144,
            storage_mib: 1_048_576,
        },
        replicas: 4,
        constraints: Constraints {
            latency: Some(LatencyConstraint {
                from: vec![i("paris"), i("berlin")],
                max_rtt_ms: 20,
            }),
            residency: residency(&["EU", "CH"]),
            certifications: [Certification::Iso27001, Certification::Soc2].into(),
            datasets: vec![i("weights")],
            spread: Some(Spread {
                min_sites: 2,
                max_per_site: 2,
            }),
            colocate: false,
            tier: Some(SiteTier::Edge),
            pin_server: Some(i("srv-1")),
        },
        window: Some(window(1_700_000_000_000, 1_700_086_400_000)),
        priority: 5,
        image: Some("oci://registry.example/chat:1.2".into()),
        expose: vec![
            PortExposure {
                port: 443,
                protocol: Protocol::Tcp,
            },
            PortExposure {
                port: 443,
                protocol: Protocol::Udp,
            },
        ],
    }
}

fn workload(state: ReservationState) -> Workload {
    Workload {
        id: i("wl-1"),
        tenant: i("acme"),
        spec: spec(),
        state,
        created_at: Timestamp::from_millis(1_699_999_000_000),
    }
}

fn placement() -> Placement {
    Placement {
        workload: i("wl-1"),
        tenant: i("acme"),
        assignments: vec![
            Assignment {
                replica: 0,
                site: i("fra-1"),
                server: i("srv-1"),
                slot: GpuSlot::Mig {
                    gpu_index: 0,
                    profile: profile(GpuModel::H100_80GB, "3g.40gb"),
                    placement: 4,
                },
            },
            Assignment {
                replica: 1,
                site: i("par-1"),
                server: i("srv-7"),
                slot: GpuSlot::WholeGpus {
                    indices: vec![2, 3],
                },
            },
            Assignment {
                replica: 2,
                site: i("par-1"),
                server: i("srv-8"),
                slot: GpuSlot::None,
            },
        ],
        window: Some(window(1_700_000_000_000, 1_700_086_400_000)),
        score: ScoreBreakdown {
            total: 0.8125,
            latency: 0.4,
            data: 0.2,
            price: 0.15,
            packing: 0.0625,
        },
        rejections: [
            (RejectReason::Residency, 12),
            (RejectReason::Capacity, 3),
            (RejectReason::Quota, 1),
        ]
        .into(),
        explanation: "fra-1 and par-1 are the cheapest EU sites within 20 ms of paris".into(),
        decided_at: Timestamp::from_millis(1_699_999_500_000),
    }
}

fn intent() -> SiteIntent {
    SiteIntent {
        site: i("fra-1"),
        generation: Generation::new(42),
        networks: vec![TenantNetworkIntent {
            tenant: i("acme"),
            vni: 1001,
            table: 1001,
            subnet: net("10.64.3.0/24"),
            gateway: Ipv4Addr::new(10, 64, 3, 1),
        }],
        allocations: vec![
            Allocation {
                workload: i("wl-1"),
                tenant: i("acme"),
                server: i("srv-1"),
                slot: GpuSlot::Mig {
                    gpu_index: 0,
                    profile: profile(GpuModel::H100_80GB, "3g.40gb"),
                    placement: 4,
                },
                mode: AllocationMode::Container,
                image: Some("oci://registry.example/chat:1.2".into()),
                window: Some(window(1_700_000_000_000, 1_700_086_400_000)),
            },
            Allocation {
                workload: i("wl-2"),
                tenant: i("acme"),
                server: i("srv-2"),
                slot: GpuSlot::WholeGpus {
                    indices: vec![0, 1],
                },
                mode: AllocationMode::VirtualMachine,
                image: None,
                window: None,
            },
            Allocation {
                workload: i("wl-3"),
                tenant: i("acme"),
                server: i("srv-3"),
                slot: GpuSlot::None,
                mode: AllocationMode::BareMetal,
                image: Some("https://images.example/ubuntu-24.04.iso".into()),
                window: None,
            },
        ],
        exposures: vec![Exposure {
            tenant: i("acme"),
            workload: i("wl-1"),
            public_ip: Ipv4Addr::new(203, 0, 113, 10),
            public_port: 443,
            protocol: Protocol::Tcp,
            backend_ip: Ipv4Addr::new(10, 64, 3, 20),
            backend_port: 8443,
        }],
        volumes: vec![StorageVolume {
            tenant: i("acme"),
            name: i("scratch"),
            size_mib: 1_048_576,
        }],
        server_actions: vec![
            ServerAction {
                server: i("srv-4"),
                action: ServerActionKind::Power(PowerAction::Cycle),
            },
            ServerAction {
                server: i("srv-5"),
                action: ServerActionKind::Provision {
                    image: "https://images.example/ubuntu-24.04.iso".into(),
                },
            },
            ServerAction {
                server: i("srv-6"),
                action: ServerActionKind::Clean,
            },
        ],
        pools: vec![PoolAssignment {
            server: i("srv-1"),
            pool: i("training"),
        }],
    }
}

fn report(body: ReportBody) -> SiteReport {
    SiteReport {
        site: i("fra-1"),
        sequence: Sequence::new(7001),
        generation: Generation::new(42),
        at: Timestamp::from_millis(1_700_000_123_456),
        body,
    }
}

fn report_bodies() -> Vec<ReportBody> {
    vec![
        ReportBody::Event {
            severity: Severity::Warning,
            resource: "server/srv-1".into(),
            message: "fan 3 at 95%".into(),
        },
        ReportBody::ServerState {
            server: i("srv-1"),
            state: ServerState::Cleaning,
        },
        ReportBody::Inventory {
            servers: vec![server(), bare_server()],
        },
        ReportBody::AllocationState {
            workload: i("wl-1"),
            server: i("srv-1"),
            state: AllocationStatus::Failed {
                reason: "image pull failed".into(),
            },
        },
        ReportBody::AllocationState {
            workload: i("wl-2"),
            server: i("srv-2"),
            state: AllocationStatus::Applied,
        },
        ReportBody::Rtt {
            region: i("paris"),
            rtt_ms: 9,
        },
        ReportBody::Metrics {
            gpu_utilisation_pct: 73.5,
            power_watts: 18_250.0,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// model -> proto -> bytes -> proto -> model gives back the value; returns the wire form.
fn assert_round_trip<M, P>(value: M) -> P
where
    M: Clone + PartialEq + Debug + TryFrom<P, Error = ConvertError>,
    P: Message + Default + Clone + PartialEq + Debug + From<M>,
{
    let wire = P::from(value.clone());
    let decoded = P::decode(wire.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, wire, "bytes round trip");
    let back = M::try_from(decoded).expect("converts back");
    assert_eq!(back, value);
    wire
}

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
    for vendor in super::server::BMC_VENDORS {
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
    check::<RejectReason>(10);
    check::<AllocationMode>(3);
    check::<PowerAction>(3);
    check::<Severity>(3);
}

// ---------------------------------------------------------------------------------------------
// Failures: exact field paths
// ---------------------------------------------------------------------------------------------

type Mutation<P> = fn(&mut P);

/// Applies each mutation to the wire form of `value` and checks the error's path and problem.
fn failures<M, P>(value: M, cases: &[(&str, Mutation<P>, &str, ConvertProblem)])
where
    M: Clone + Debug + TryFrom<P, Error = ConvertError>,
    P: Clone + From<M>,
{
    let wire = P::from(value);
    for (name, mutate, field, problem) in cases {
        let mut bad = wire.clone();
        mutate(&mut bad);
        let err = M::try_from(bad).expect_err(name);
        assert_eq!(err.field, *field, "{name}: {err}");
        match (problem, &err.problem) {
            // The message is the parser's; only the kind is fixed here.
            (ConvertProblem::Invalid(_), ConvertProblem::Invalid(msg)) => {
                assert!(!msg.is_empty() && msg.len() < 300, "{name}: {msg}")
            }
            (want, got) => assert_eq!(got, want, "{name}"),
        }
        assert!(err.to_string().len() < 400, "{name}: {err}");
    }
}

fn any_invalid() -> ConvertProblem {
    ConvertProblem::Invalid(String::new())
}

fn accel(s: &mut proto::WorkloadSpec) -> &mut proto::Accelerator {
    s.resources.as_mut().unwrap().accelerator.as_mut().unwrap()
}

fn constraints(s: &mut proto::WorkloadSpec) -> &mut proto::Constraints {
    s.constraints.as_mut().unwrap()
}

#[test]
fn workload_spec_failures() {
    use ConvertProblem::*;
    use proto::accelerator::{Kind, Mig};
    let huge = "a".repeat(10 * 1024 * 1024);
    let cases: &[(&str, Mutation<proto::WorkloadSpec>, &str, ConvertProblem)] = &[
        ("unknown kind", |s| s.kind = 99, "kind", UnknownEnum(99)),
        ("unspecified kind", |s| s.kind = 0, "kind", Unspecified),
        (
            "unknown certification",
            |s| constraints(s).certifications[1] = 42,
            "constraints.certifications[1]",
            UnknownEnum(42),
        ),
        (
            "unspecified tier",
            |s| constraints(s).tier = Some(0),
            "constraints.tier",
            Unspecified,
        ),
        (
            "unspecified protocol",
            |s| s.expose[1].protocol = 0,
            "expose[1].protocol",
            Unspecified,
        ),
        (
            "missing resources",
            |s| s.resources = None,
            "resources",
            Missing,
        ),
        (
            "missing constraints",
            |s| s.constraints = None,
            "constraints",
            Missing,
        ),
        (
            "absent accelerator oneof",
            |s| accel(s).kind = None,
            "resources.accelerator.kind",
            Missing,
        ),
        (
            "missing accelerator",
            |s| s.resources.as_mut().unwrap().accelerator = None,
            "resources.accelerator",
            Missing,
        ),
        (
            "bad region id",
            |s| {
                constraints(s).latency.as_mut().unwrap().from_regions[1] = "Berlin".into();
            },
            "constraints.latency.from_regions[1]",
            any_invalid(),
        ),
        (
            "bad pin server",
            |s| constraints(s).pin_server = Some("srv_1".into()),
            "constraints.pin_server",
            any_invalid(),
        ),
        (
            "bad dataset id",
            |s| constraints(s).datasets[0] = String::new(),
            "constraints.datasets[0]",
            any_invalid(),
        ),
        (
            "MIG profile of another model",
            |s| {
                accel(s).kind = Some(Kind::Mig(Mig {
                    model: "H100-80GB".into(),
                    profile: "1g.5gb".into(),
                }))
            },
            "resources.accelerator.mig.profile",
            any_invalid(),
        ),
        (
            "MIG on a non-MIG model",
            |s| {
                accel(s).kind = Some(Kind::Mig(Mig {
                    model: "L40S".into(),
                    profile: "1g.10gb".into(),
                }))
            },
            "resources.accelerator.mig.profile",
            any_invalid(),
        ),
        (
            "unknown GPU model",
            |s| {
                accel(s).kind = Some(Kind::Mig(Mig {
                    model: "h100".into(),
                    profile: "1g.10gb".into(),
                }))
            },
            "resources.accelerator.mig.model",
            any_invalid(),
        ),
        (
            "duplicate certification",
            |s| constraints(s).certifications = vec![1, 4, 1],
            "constraints.certifications[2]",
            Duplicate,
        ),
        (
            "duplicate residency term, spelt differently",
            |s| constraints(s).residency = vec!["DE".into(), "country:DE".into()],
            "constraints.residency[1]",
            Duplicate,
        ),
        (
            "unknown residency term",
            |s| constraints(s).residency[1] = "ATLANTIS".into(),
            "constraints.residency[1]",
            any_invalid(),
        ),
        (
            "port over u16",
            |s| s.expose[0].port = 70_000,
            "expose[0].port",
            OutOfRange {
                value: 70_000,
                max: 65_535,
            },
        ),
        (
            "window end before start",
            |s| s.window.as_mut().unwrap().end = 0,
            "window.end",
            any_invalid(),
        ),
        (
            "bad name",
            |s| s.name = "Chat API".into(),
            "name",
            any_invalid(),
        ),
    ];
    failures(spec(), cases);

    // A 10 MB name is refused without echoing it.
    let mut wire = proto::WorkloadSpec::from(spec());
    wire.name = huge;
    let err = WorkloadSpec::try_from(wire).unwrap_err();
    assert_eq!(err.field, "name");
    assert!(err.to_string().len() < 200, "{}", err.to_string().len());
    assert!(err.to_string().contains("10485760"), "{err}");
}

#[test]
fn workload_failures_nest_paths() {
    let cases: &[(&str, Mutation<proto::Workload>, &str, ConvertProblem)] = &[
        (
            "latency region deep inside",
            |w| {
                let c = w.spec.as_mut().unwrap().constraints.as_mut().unwrap();
                c.latency.as_mut().unwrap().from_regions[0] = "-x".into();
            },
            "spec.constraints.latency.from_regions[0]",
            any_invalid(),
        ),
        (
            "unknown phase",
            |w| w.state.as_mut().unwrap().phase = 17,
            "state.phase",
            ConvertProblem::UnknownEnum(17),
        ),
        (
            "reason without FAILED",
            |w| w.state.as_mut().unwrap().failure_reason = "why".into(),
            "state.failure_reason",
            any_invalid(),
        ),
        (
            "missing state",
            |w| w.state = None,
            "state",
            ConvertProblem::Missing,
        ),
        (
            "missing spec",
            |w| w.spec = None,
            "spec",
            ConvertProblem::Missing,
        ),
        ("bad id", |w| w.id = "WL-1".into(), "id", any_invalid()),
    ];
    failures(workload(ReservationState::Approved), cases);
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
fn tenant_failures() {
    use ConvertProblem::*;
    let cases: &[(&str, Mutation<proto::Tenant>, &str, ConvertProblem)] = &[
        ("missing quotas", |t| t.quotas = None, "quotas", Missing),
        ("missing weights", |t| t.weights = None, "weights", Missing),
        (
            "unknown quota model",
            |t| {
                t.quotas
                    .as_mut()
                    .unwrap()
                    .gpus_per_model
                    .insert("B200".into(), 1);
            },
            "quotas.gpus_per_model",
            any_invalid(),
        ),
        (
            "duplicate residency",
            |t| t.residency = vec!["EU".into(), "CH".into(), "EU".into()],
            "residency[2]",
            Duplicate,
        ),
        (
            "missing supernet",
            |t| t.network.as_mut().unwrap().supernet = None,
            "network.supernet",
            Missing,
        ),
        (
            "bad supernet",
            |t| {
                t.network.as_mut().unwrap().supernet = Some(proto::Ipv4Net {
                    addr: "10.64.0.0/16".into(),
                    prefix_len: 16,
                })
            },
            "network.supernet.addr",
            any_invalid(),
        ),
    ];
    failures(tenant(), cases);
}

#[test]
fn placement_failures() {
    use ConvertProblem::*;
    use proto::gpu_slot::Kind;
    let cases: &[(&str, Mutation<proto::Placement>, &str, ConvertProblem)] = &[
        (
            "duplicate rejection reason",
            |p| {
                p.rejections.push(proto::Rejection {
                    reason: proto::RejectReason::Capacity.into(),
                    count: 1,
                })
            },
            "rejections[3].reason",
            Duplicate,
        ),
        (
            "unspecified rejection reason",
            |p| p.rejections[0].reason = 0,
            "rejections[0].reason",
            Unspecified,
        ),
        ("missing score", |p| p.score = None, "score", Missing),
        (
            "absent slot oneof",
            |p| p.assignments[2].slot.as_mut().unwrap().kind = None,
            "assignments[2].slot.kind",
            Missing,
        ),
        (
            "unknown MIG profile",
            |p| {
                if let Some(Kind::Mig(m)) = &mut p.assignments[0].slot.as_mut().unwrap().kind {
                    m.profile = "9g.1tb".into();
                }
            },
            "assignments[0].slot.mig.profile",
            any_invalid(),
        ),
        (
            "MIG placement over u8",
            |p| {
                if let Some(Kind::Mig(m)) = &mut p.assignments[0].slot.as_mut().unwrap().kind {
                    m.placement = 1 << 20;
                }
            },
            "assignments[0].slot.mig.placement",
            OutOfRange {
                value: 1 << 20,
                max: 255,
            },
        ),
    ];
    failures(placement(), cases);
}

#[test]
fn intent_failures() {
    use ConvertProblem::*;
    use proto::gpu_slot::Kind;
    let cases: &[(&str, Mutation<proto::SiteIntent>, &str, ConvertProblem)] = &[
        (
            "bad server id",
            |i| i.allocations[1].server = "Srv_2".into(),
            "allocations[1].server",
            any_invalid(),
        ),
        (
            "MIG profile unknown to every model",
            |i| {
                if let Some(Kind::Mig(m)) = &mut i.allocations[0].slot.as_mut().unwrap().kind {
                    m.profile = "3g.41gb".into();
                }
            },
            "allocations[0].slot.mig.profile",
            any_invalid(),
        ),
        (
            "unspecified mode",
            |i| i.allocations[2].mode = 0,
            "allocations[2].mode",
            Unspecified,
        ),
        (
            "missing slot",
            |i| i.allocations[2].slot = None,
            "allocations[2].slot",
            Missing,
        ),
        (
            "public port over u16",
            |i| i.exposures[0].public_port = 65_536,
            "exposures[0].public_port",
            OutOfRange {
                value: 65_536,
                max: 65_535,
            },
        ),
        (
            "backend port over u16",
            |i| i.exposures[0].backend_port = u32::MAX,
            "exposures[0].backend_port",
            OutOfRange {
                value: u64::from(u32::MAX),
                max: 65_535,
            },
        ),
        (
            "bad backend address",
            |i| i.exposures[0].backend_ip = "10.64.3".into(),
            "exposures[0].backend_ip",
            any_invalid(),
        ),
        (
            "bad gateway",
            |i| i.networks[0].gateway = String::new(),
            "networks[0].gateway",
            any_invalid(),
        ),
        (
            "missing subnet",
            |i| i.networks[0].subnet = None,
            "networks[0].subnet",
            Missing,
        ),
        (
            "bad subnet",
            |i| i.networks[0].subnet.as_mut().unwrap().addr = "10.64.3.9".into(),
            "networks[0].subnet.addr",
            any_invalid(),
        ),
        (
            "absent action oneof",
            |i| i.server_actions[2].action = None,
            "server_actions[2].action",
            Missing,
        ),
        (
            "unspecified power action",
            |i| i.server_actions[0].action = Some(proto::server_action::Action::Power(0)),
            "server_actions[0].power",
            Unspecified,
        ),
        (
            "unknown power action",
            |i| i.server_actions[0].action = Some(proto::server_action::Action::Power(4)),
            "server_actions[0].power",
            UnknownEnum(4),
        ),
        (
            "bad volume name",
            |i| i.volumes[0].name = "x".repeat(64),
            "volumes[0].name",
            any_invalid(),
        ),
        (
            "bad pool",
            |i| i.pools[0].pool = "-".into(),
            "pools[0].pool",
            any_invalid(),
        ),
        (
            "bad site",
            |i| i.site = "FRA-1".into(),
            "site",
            any_invalid(),
        ),
    ];
    failures(intent(), cases);
}

#[test]
fn report_failures() {
    use ConvertProblem::*;
    use proto::site_report::Body;
    fn inventory(r: &mut proto::SiteReport) -> &mut proto::Inventory {
        match r.body.as_mut() {
            Some(Body::Inventory(i)) => i,
            _ => unreachable!(),
        }
    }
    let cases: &[(&str, Mutation<proto::SiteReport>, &str, ConvertProblem)] = &[
        ("absent body oneof", |r| r.body = None, "body", Missing),
        (
            "deep MIG profile",
            |r| {
                let mig = inventory(r).servers[0].gpus[0].mig.as_mut().unwrap();
                mig.instances[0].profile = "3g.47gb".into();
            },
            "inventory.servers[0].gpus[0].mig.instances[0].profile",
            any_invalid(),
        ),
        (
            "deep missing state",
            |r| inventory(r).servers[1].state = None,
            "inventory.servers[1].state",
            Missing,
        ),
        (
            "unknown severity",
            |r| {
                r.body = Some(Body::Event(proto::Event {
                    severity: 9,
                    resource: "gateway".into(),
                    message: "x".into(),
                }))
            },
            "event.severity",
            UnknownEnum(9),
        ),
        (
            "allocation reason without FAILED",
            |r| {
                r.body = Some(Body::AllocationState(proto::AllocationStateReport {
                    workload: "wl-1".into(),
                    server: "srv-1".into(),
                    state: Some(proto::AllocationState {
                        phase: proto::AllocationPhase::Applied.into(),
                        failure_reason: "oops".into(),
                    }),
                }))
            },
            "allocation_state.state.failure_reason",
            any_invalid(),
        ),
        (
            "server state missing",
            |r| {
                r.body = Some(Body::ServerState(proto::ServerStateReport {
                    server: "srv-1".into(),
                    state: None,
                }))
            },
            "server_state.state",
            Missing,
        ),
        (
            "bad region",
            |r| {
                r.body = Some(Body::Rtt(proto::RttReport {
                    region: "Paris".into(),
                    rtt_ms: 3,
                }))
            },
            "rtt.region",
            any_invalid(),
        ),
        (
            "NaN utilisation",
            |r| {
                r.body = Some(Body::Metrics(proto::Metrics {
                    gpu_utilisation_pct: f64::NAN,
                    power_watts: 1.0,
                }))
            },
            "metrics.gpu_utilisation_pct",
            any_invalid(),
        ),
        (
            "utilisation over 100 %",
            |r| {
                r.body = Some(Body::Metrics(proto::Metrics {
                    gpu_utilisation_pct: 150.0,
                    power_watts: 1.0,
                }))
            },
            "metrics.gpu_utilisation_pct",
            any_invalid(),
        ),
        (
            "negative power",
            |r| {
                r.body = Some(Body::Metrics(proto::Metrics {
                    gpu_utilisation_pct: 50.0,
                    power_watts: -3.0,
                }))
            },
            "metrics.power_watts",
            any_invalid(),
        ),
        (
            "infinite power",
            |r| {
                r.body = Some(Body::Metrics(proto::Metrics {
                    gpu_utilisation_pct: 50.0,
                    power_watts: f64::INFINITY,
                }))
            },
            "metrics.power_watts",
            any_invalid(),
        ),
    ];
    let inventory_report = report(ReportBody::Inventory {
        servers: vec![server(), bare_server()],
    });
    failures(inventory_report, cases);
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

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

mod prop {
    use super::*;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};

    fn typed<T: TypedId + Debug + 'static>() -> impl Strategy<Value = T> {
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?".prop_map(|s| T::parse(&s).unwrap())
    }

    fn model() -> impl Strategy<Value = GpuModel> {
        select(GpuModel::ALL.to_vec())
    }

    fn mig_pair() -> impl Strategy<Value = (GpuModel, MigProfile)> {
        let pairs: Vec<(GpuModel, MigProfile)> = GpuModel::ALL
            .iter()
            .flat_map(|m| m.mig_profiles().iter().map(move |p| (*m, p.profile())))
            .collect();
        select(pairs)
    }

    fn accelerator() -> impl Strategy<Value = Accelerator> {
        prop_oneof![
            Just(Accelerator::None),
            (model(), any::<u32>())
                .prop_map(|(model, count)| Accelerator::WholeGpus { model, count }),
            mig_pair().prop_map(|(model, profile)| Accelerator::Mig { model, profile }),
        ]
    }

    fn window() -> impl Strategy<Value = TimeWindow> {
        (any::<i64>(), 1..=i64::MAX).prop_map(|(start, len)| {
            let end = start.saturating_add(len);
            let start = if end == start { start - 1 } else { start };
            super::window(start, end)
        })
    }

    fn residency_rule() -> impl Strategy<Value = ResidencyRule> {
        let terms = [
            "EU",
            "EEA",
            "CH",
            "US",
            "country:NA",
            "NA",
            "APAC",
            "JP",
            "DE",
        ];
        subsequence(terms.to_vec(), 0..=terms.len()).prop_map(|t| super::residency(&t))
    }

    fn certifications() -> impl Strategy<Value = std::collections::BTreeSet<Certification>> {
        use Certification::*;
        let all = vec![Iso27001, Soc2, Hipaa, PciDss, Sovereign, Gxp];
        subsequence(all.clone(), 0..=all.len()).prop_map(|c| c.into_iter().collect())
    }

    fn protocol() -> impl Strategy<Value = Protocol> {
        select(vec![Protocol::Tcp, Protocol::Udp])
    }

    fn constraints() -> impl Strategy<Value = Constraints> {
        (
            option::of(
                (vec(typed::<RegionId>(), 0..4), any::<u32>())
                    .prop_map(|(from, max_rtt_ms)| LatencyConstraint { from, max_rtt_ms }),
            ),
            residency_rule(),
            certifications(),
            vec(typed::<DatasetId>(), 0..4),
            option::of(
                (any::<u32>(), any::<u32>()).prop_map(|(min_sites, max_per_site)| Spread {
                    min_sites,
                    max_per_site,
                }),
            ),
            any::<bool>(),
            option::of(select(vec![SiteTier::Edge, SiteTier::Core])),
            option::of(typed::<ServerId>()),
        )
            .prop_map(
                |(latency, residency, certifications, datasets, spread, colocate, tier, pin)| {
                    Constraints {
                        latency,
                        residency,
                        certifications,
                        datasets,
                        spread,
                        colocate,
                        tier,
                        pin_server: pin,
                    }
                },
            )
    }

    fn spec() -> impl Strategy<Value = WorkloadSpec> {
        use WorkloadKind::*;
        (
            typed::<Name>(),
            select(vec![
                InferenceEndpoint,
                BareMetal,
                VirtualMachine,
                KubernetesCluster,
                BatchJob,
                RanFunction,
            ]),
            (accelerator(), any::<u32>(), any::<u64>(), any::<u64>()),
            any::<u32>(),
            constraints(),
            option::of(window()),
            any::<u32>(),
            option::of(".{0,40}"),
            vec(
                (any::<u16>(), protocol())
                    .prop_map(|(port, protocol)| PortExposure { port, protocol }),
                0..4,
            ),
        )
            .prop_map(
                |(
                    name,
                    kind,
                    (accelerator, cpu_cores, memory_mib, storage_mib),
                    replicas,
                    constraints,
                    window,
                    priority,
                    image,
                    expose,
                )| {
                    WorkloadSpec {
                        name,
                        kind,
                        resources: Resources {
                            accelerator,
                            cpu_cores,
                            memory_mib,
                            storage_mib,
                        },
                        replicas,
                        constraints,
                        window,
                        priority,
                        image,
                        expose,
                    }
                },
            )
    }

    fn slot() -> impl Strategy<Value = GpuSlot> {
        prop_oneof![
            Just(GpuSlot::None),
            vec(any::<u32>(), 0..4).prop_map(|indices| GpuSlot::WholeGpus { indices }),
            (any::<u32>(), mig_pair(), any::<u8>()).prop_map(
                |(gpu_index, (_, profile), placement)| {
                    GpuSlot::Mig {
                        gpu_index,
                        profile,
                        placement,
                    }
                }
            ),
        ]
    }

    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    fn intent() -> impl Strategy<Value = SiteIntent> {
        let network = (
            typed::<TenantId>(),
            any::<u32>(),
            any::<u32>(),
            (ipv4(), 0u8..=32),
            ipv4(),
        )
            .prop_map(
                |(tenant, vni, table, (addr, len), gateway)| TenantNetworkIntent {
                    tenant,
                    vni,
                    table,
                    subnet: Ipv4Net::new(addr, len).unwrap(),
                    gateway,
                },
            );
        let allocation = (
            typed::<WorkloadId>(),
            typed::<TenantId>(),
            typed::<ServerId>(),
            slot(),
            select(vec![
                AllocationMode::BareMetal,
                AllocationMode::VirtualMachine,
                AllocationMode::Container,
            ]),
            option::of(".{0,30}"),
            option::of(window()),
        )
            .prop_map(
                |(workload, tenant, server, slot, mode, image, window)| Allocation {
                    workload,
                    tenant,
                    server,
                    slot,
                    mode,
                    image,
                    window,
                },
            );
        let exposure = (
            typed::<TenantId>(),
            typed::<WorkloadId>(),
            (ipv4(), any::<u16>()),
            protocol(),
            (ipv4(), any::<u16>()),
        )
            .prop_map(
                |(
                    tenant,
                    workload,
                    (public_ip, public_port),
                    protocol,
                    (backend_ip, backend_port),
                )| {
                    Exposure {
                        tenant,
                        workload,
                        public_ip,
                        public_port,
                        protocol,
                        backend_ip,
                        backend_port,
                    }
                },
            );
        let volume = (typed::<TenantId>(), typed::<Name>(), any::<u64>()).prop_map(
            |(tenant, name, size_mib)| StorageVolume {
                tenant,
                name,
                size_mib,
            },
        );
        let action_kind = prop_oneof![
            select(vec![PowerAction::On, PowerAction::Off, PowerAction::Cycle])
                .prop_map(ServerActionKind::Power),
            ".{0,30}".prop_map(|image| ServerActionKind::Provision { image }),
            Just(ServerActionKind::Clean),
        ];
        let action = (typed::<ServerId>(), action_kind)
            .prop_map(|(server, action)| ServerAction { server, action });
        let pool = (typed::<ServerId>(), typed::<PoolId>())
            .prop_map(|(server, pool)| PoolAssignment { server, pool });
        (
            typed::<SiteId>(),
            any::<u64>(),
            vec(network, 0..3),
            vec(allocation, 0..4),
            vec(exposure, 0..3),
            vec(volume, 0..3),
            vec(action, 0..3),
            vec(pool, 0..3),
        )
            .prop_map(
                |(
                    site,
                    generation,
                    networks,
                    allocations,
                    exposures,
                    volumes,
                    server_actions,
                    pools,
                )| {
                    SiteIntent {
                        site,
                        generation: Generation::new(generation),
                        networks,
                        allocations,
                        exposures,
                        volumes,
                        server_actions,
                        pools,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn workload_spec_round_trips(spec in spec()) {
            assert_round_trip::<_, proto::WorkloadSpec>(spec);
        }

        #[test]
        fn site_intent_round_trips(intent in intent()) {
            assert_round_trip::<_, proto::SiteIntent>(intent);
        }

        /// Any enum number and any string in an ID field: an error or a value, never a panic,
        /// and an error always names a field.
        #[test]
        fn hostile_wire_values_never_panic(
            kind in any::<i32>(),
            name in "\\PC{0,80}",
            port in any::<u32>(),
        ) {
            let mut wire = proto::WorkloadSpec::from(super::spec());
            wire.kind = kind;
            wire.name = name;
            wire.expose[0].port = port;
            if let Err(e) = WorkloadSpec::try_from(wire) {
                prop_assert!(!e.field.is_empty());
                prop_assert!(e.to_string().len() < 400);
            }
        }
    }
}
