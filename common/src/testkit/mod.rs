//! Test helpers shared by the tests of several concepts: realistic, fully populated values
//! of every wire-converted type (each valid by `validate::*`), the round-trip and failure-table
//! drivers of the conversion tests, the field-list helpers of the validation tables, and (in
//! [`strategy`]) the proptest strategies the conversion property tests build on.

use std::fmt::Debug;
use std::net::Ipv4Addr;

use prost::Message;

use crate::check::ValidationError;
use crate::gpu::{Gpu, GpuHealth, GpuModel, MigConfig, MigInstance, MigProfile};
use crate::ids::{Generation, Sequence, TimeWindow, Timestamp, TypedId};
use crate::intent::{
    Allocation, AllocationMode, Exposure, PoolAssignment, PowerAction, ServerAction,
    ServerActionKind, SiteIntent, StorageVolume, TenantNetworkIntent,
};
use crate::jurisdiction::{Jurisdiction, ResidencyRule};
use crate::net::{Ipv4Net, Protocol};
use crate::placement::{Assignment, GpuSlot, Placement, RejectReason, ScoreBreakdown};
use crate::report::{AllocationStatus, ReportBody, Severity, SiteReport};
use crate::server::{BmcEndpoint, BmcVendor, Dpu, DpuMode, Server, ServerState};
use crate::site::{Certification, GeoPoint, Site, SiteState, SiteTier};
use crate::tenant::{Dataset, Quotas, Region, ScoreWeights, Tenant, TenantNetwork};
use crate::wire::{ConvertError, ConvertProblem};
use crate::workload::{
    Accelerator, Constraints, LatencyConstraint, PortExposure, ReservationState, Resources, Spread,
    Workload, WorkloadKind, WorkloadSpec,
};

pub(crate) mod strategy;

// ---------------------------------------------------------------------------------------------
// Fixtures: realistic, fully populated, and valid by `validate::*`
// ---------------------------------------------------------------------------------------------

pub(crate) fn i<T: TypedId>(s: &str) -> T {
    T::parse(s).unwrap()
}

pub(crate) fn net(s: &str) -> Ipv4Net {
    Ipv4Net::parse(s).unwrap()
}

pub(crate) fn window(start: i64, end: i64) -> TimeWindow {
    TimeWindow::new(Timestamp::from_millis(start), Timestamp::from_millis(end)).unwrap()
}

pub(crate) fn residency(terms: &[&str]) -> ResidencyRule {
    ResidencyRule::parse(terms).unwrap()
}

pub(crate) fn profile(model: GpuModel, name: &str) -> MigProfile {
    MigProfile::parse(model, name).unwrap()
}

pub(crate) fn site() -> Site {
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
        storage_mib: 100 * 1024 * 1024,
        state: SiteState::Online,
    }
}

pub(crate) fn server() -> Server {
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

pub(crate) fn bare_server() -> Server {
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

pub(crate) fn tenant() -> Tenant {
    Tenant {
        id: i("acme"),
        name: i("acme-corp"),
        quotas: Quotas {
            gpus_per_model: [(GpuModel::H100_80GB, 16), (GpuModel::L40S, 4)].into(),
            mig_slices: 14,
            concurrent_reservations: 20,
            sites: 3,
            storage_mib: 10 * 1024 * 1024,
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

pub(crate) fn dataset() -> Dataset {
    Dataset {
        id: i("weights"),
        tenant: i("acme"),
        name: i("llama-weights"),
        size_bytes: 140_000_000_000,
        replicas: vec![i("fra-1"), i("par-1")],
        residency: residency(&["EU"]),
    }
}

pub(crate) fn region() -> Region {
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

pub(crate) fn spec() -> WorkloadSpec {
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

pub(crate) fn workload(state: ReservationState) -> Workload {
    Workload {
        id: i("wl-1"),
        tenant: i("acme"),
        spec: spec(),
        state,
        created_at: Timestamp::from_millis(1_699_999_000_000),
    }
}

pub(crate) fn placement() -> Placement {
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

pub(crate) fn intent() -> SiteIntent {
    SiteIntent {
        peers: vec![crate::intent::model::TenantPeer {
            tenant: i("acme"),
            site: i("par-1"),
            endpoint: Ipv4Addr::new(198, 51, 100, 17),
            subnet: net("10.64.4.0/24"),
            gateway: Ipv4Addr::new(10, 64, 4, 1),
        }],
        tunnel_endpoint: Some(Ipv4Addr::new(198, 51, 100, 1)),
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
                address: Some(Ipv4Addr::new(10, 64, 3, 20)),
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
                address: None,
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
                address: None,
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
                request: 1.into(),
            },
            ServerAction {
                server: i("srv-5"),
                action: ServerActionKind::Provision {
                    image: "https://images.example/ubuntu-24.04.iso".into(),
                },
                request: 2.into(),
            },
            ServerAction {
                server: i("srv-6"),
                action: ServerActionKind::Clean,
                request: 3.into(),
            },
        ],
        pools: vec![PoolAssignment {
            server: i("srv-1"),
            pool: i("training"),
        }],
    }
}

pub(crate) fn report(body: ReportBody) -> SiteReport {
    SiteReport {
        site: i("fra-1"),
        sequence: Sequence::new(7001),
        generation: Generation::new(42),
        at: Timestamp::from_millis(1_700_000_123_456),
        body,
    }
}

pub(crate) fn report_bodies() -> Vec<ReportBody> {
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
            pending: vec![i("srv-9")],
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
            period: Some(crate::report::MetricsPeriod {
                start: Timestamp::from_millis(1_800_000_000_000),
                length_ms: 60_000,
                gpus: vec![crate::report::GpuUtilisation {
                    server: i("srv-1"),
                    gpu: 3,
                    mig_slot: None,
                    samples: 12,
                    busy_samples: 12,
                    busy_pct: 73.5,
                    memory_busy_pct: 20.25,
                    memory_used_pct: 50.0,
                }],
            }),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Conversions: round trips and failure tables
// ---------------------------------------------------------------------------------------------

/// model -> proto -> bytes -> proto -> model gives back the value; returns the wire form.
pub(crate) fn assert_round_trip<M, P>(value: M) -> P
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

pub(crate) type Mutation<P> = fn(&mut P);

/// Applies each mutation to the wire form of `value` and checks the error's path and problem.
pub(crate) fn failures<M, P>(value: M, cases: &[(&str, Mutation<P>, &str, ConvertProblem)])
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

pub(crate) fn any_invalid() -> ConvertProblem {
    ConvertProblem::Invalid(String::new())
}

// ---------------------------------------------------------------------------------------------
// Validation tables
// ---------------------------------------------------------------------------------------------

/// The sorted field paths of a validation result (none for `Ok`).
pub(crate) fn fields(r: Result<(), ValidationError>) -> Vec<String> {
    let mut v: Vec<String> = match r {
        Ok(()) => vec![],
        Err(e) => e.fields().into_iter().map(String::from).collect(),
    };
    v.sort();
    v
}

/// `want` as sorted owned strings, to compare with [`fields`].
pub(crate) fn sorted(want: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
