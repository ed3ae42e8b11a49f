//! Encode/decode round trips of fully populated messages, plain and length-delimited (the
//! agent channel frames messages with a length prefix).

use std::collections::BTreeMap;

use meridian_proto::v1::{
    self, AgentMessage, Allocation, AllocationMode, AllocationPhase, AllocationState,
    AllocationStateReport, Assignment, BmcEndpoint, CentralMessage, Certification, Constraints,
    CreateWorkloadRequest, Dpu, DpuMode, EnrollError, EnrollErrorCode, EnrollResponse, Event,
    EventSeverity, Exposure, Gpu, GpuHealth, GpuSlot, GpuUtilisation, Heartbeat, Hello, IntentAck,
    IntentAckStatus, IntentPush, Inventory, Ipv4Net, LatencyConstraint, Metrics, MigConfig,
    MigInstance, Placement, PoolAssignment, PortExposure, PowerAction, Quotas, RejectReason,
    Rejection, ReportAck, ReportBatch, Resources, RttReport, ScoreBreakdown, Server, ServerAction,
    ServerPhase, ServerState, ServerStateReport, SiteIntent, SiteReport, SiteTier, Spread,
    StorageVolume, TenantNetworkIntent, TimeWindow, TransportProtocol, WorkloadKind, WorkloadSpec,
    accelerator, agent_message, central_message, enroll_response, gpu_slot, server_action,
    site_report,
};
use prost::Message;

/// Asserts that `msg` survives plain and length-delimited encoding unchanged.
fn assert_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    assert!(
        !bytes.is_empty(),
        "a populated message encodes to something"
    );
    let decoded = M::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(&decoded, msg);

    let framed = msg.encode_length_delimited_to_vec();
    let decoded = M::decode_length_delimited(framed.as_slice()).expect("decodes framed");
    assert_eq!(&decoded, msg);

    // Encoding is deterministic (maps are BTreeMaps): the same message, the same bytes.
    assert_eq!(decoded.encode_to_vec(), bytes);
}

fn window() -> TimeWindow {
    TimeWindow {
        start: 1_767_225_600_000,
        end: 1_767_312_000_000,
    }
}

fn net(addr: &str, prefix_len: u32) -> Ipv4Net {
    Ipv4Net {
        addr: addr.to_owned(),
        prefix_len,
    }
}

fn mig_slot() -> GpuSlot {
    GpuSlot {
        kind: Some(gpu_slot::Kind::Mig(gpu_slot::Mig {
            gpu_index: 3,
            profile: "3g.40gb".to_owned(),
            placement: 4,
        })),
    }
}

fn workload_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "llama-serve".to_owned(),
        kind: WorkloadKind::InferenceEndpoint as i32,
        resources: Some(Resources {
            accelerator: Some(v1::Accelerator {
                kind: Some(accelerator::Kind::Mig(accelerator::Mig {
                    model: "H100-80GB".to_owned(),
                    profile: "3g.40gb".to_owned(),
                })),
            }),
            cpu_cores: 16,
            memory_mib: 131_072,
            storage_mib: 512_000,
        }),
        replicas: 3,
        constraints: Some(Constraints {
            latency: Some(LatencyConstraint {
                from_regions: vec!["fra-metro".to_owned(), "ams-metro".to_owned()],
                max_rtt_ms: 20,
            }),
            residency: vec!["EU".to_owned(), "CH".to_owned()],
            certifications: vec![
                Certification::Iso27001 as i32,
                Certification::Sovereign as i32,
            ],
            datasets: vec!["weights-70b".to_owned()],
            spread: Some(Spread {
                min_sites: 2,
                max_per_site: 2,
            }),
            colocate: false,
            tier: Some(SiteTier::Edge as i32),
            pin_server: Some("srv-007".to_owned()),
        }),
        window: Some(window()),
        priority: 7,
        image: Some("oci://registry.example/llama:1.2".to_owned()),
        expose: vec![
            PortExposure {
                port: 443,
                protocol: TransportProtocol::Tcp as i32,
            },
            PortExposure {
                port: 4789,
                protocol: TransportProtocol::Udp as i32,
            },
        ],
    }
}

fn site_intent() -> SiteIntent {
    SiteIntent {
        peers: vec![],
        tunnel_endpoint: None,
        site: "fra-edge-1".to_owned(),
        generation: 42,
        networks: vec![TenantNetworkIntent {
            tenant: "acme".to_owned(),
            vni: 10_042,
            table: 1042,
            subnet: Some(net("10.42.1.0", 24)),
            gateway: "10.42.1.1".to_owned(),
        }],
        allocations: vec![
            Allocation {
                address: None,
                workload: "wl-1".to_owned(),
                tenant: "acme".to_owned(),
                server: "srv-001".to_owned(),
                slot: Some(mig_slot()),
                mode: AllocationMode::Container as i32,
                image: Some("oci://registry.example/llama:1.2".to_owned()),
                window: Some(window()),
            },
            Allocation {
                address: None,
                workload: "wl-2".to_owned(),
                tenant: "acme".to_owned(),
                server: "srv-002".to_owned(),
                slot: Some(GpuSlot {
                    kind: Some(gpu_slot::Kind::WholeGpus(gpu_slot::WholeGpus {
                        indices: vec![0, 1, 2, 3, 4, 5, 6, 7],
                    })),
                }),
                mode: AllocationMode::BareMetal as i32,
                image: None,
                window: None,
            },
            Allocation {
                address: None,
                workload: "wl-3".to_owned(),
                tenant: "acme".to_owned(),
                server: "srv-003".to_owned(),
                slot: Some(GpuSlot {
                    kind: Some(gpu_slot::Kind::None(gpu_slot::NoGpu {})),
                }),
                mode: AllocationMode::VirtualMachine as i32,
                image: Some("https://images.example/debian-13.qcow2".to_owned()),
                window: None,
            },
        ],
        exposures: vec![Exposure {
            tenant: "acme".to_owned(),
            workload: "wl-1".to_owned(),
            public_ip: "203.0.113.10".to_owned(),
            public_port: 443,
            protocol: TransportProtocol::Tcp as i32,
            backend_ip: "10.42.1.17".to_owned(),
            backend_port: 8443,
        }],
        volumes: vec![StorageVolume {
            tenant: "acme".to_owned(),
            name: "scratch".to_owned(),
            size_mib: 1_048_576,
        }],
        server_actions: vec![
            ServerAction {
                server: "srv-004".to_owned(),
                action: Some(server_action::Action::Power(PowerAction::Cycle as i32)),
                request: 41,
            },
            ServerAction {
                server: "srv-005".to_owned(),
                action: Some(server_action::Action::Provision(server_action::Provision {
                    image: "https://images.example/ubuntu-24.04.img".to_owned(),
                })),
                request: 42,
            },
            ServerAction {
                server: "srv-006".to_owned(),
                action: Some(server_action::Action::Clean(server_action::Clean {})),
                request: 43,
            },
        ],
        pools: vec![PoolAssignment {
            server: "srv-001".to_owned(),
            pool: "inference".to_owned(),
        }],
    }
}

fn server() -> Server {
    Server {
        id: "srv-001".to_owned(),
        site: "fra-edge-1".to_owned(),
        bmc: Some(BmcEndpoint {
            url: "https://10.0.0.11".to_owned(),
            vendor: "Supermicro".to_owned(),
        }),
        serial: "S1234567".to_owned(),
        cpu_cores: 112,
        memory_mib: 2_097_152,
        gpus: vec![
            Gpu {
                index: 0,
                model: "H100-80GB".to_owned(),
                memory_mib: 81_559,
                mig: Some(MigConfig {
                    enabled: true,
                    instances: vec![
                        MigInstance {
                            profile: "3g.40gb".to_owned(),
                            placement: 0,
                        },
                        MigInstance {
                            profile: "1g.10gb".to_owned(),
                            placement: 6,
                        },
                    ],
                }),
                health: GpuHealth::Healthy as i32,
            },
            Gpu {
                index: 1,
                model: "H100-80GB".to_owned(),
                memory_mib: 81_559,
                mig: Some(MigConfig {
                    enabled: false,
                    instances: vec![],
                }),
                health: GpuHealth::Degraded as i32,
            },
        ],
        dpu: Some(Dpu {
            model: "BlueField-3".to_owned(),
            serial: "MT2245X00001".to_owned(),
            mode: DpuMode::Dpu as i32,
        }),
        pool: Some("inference".to_owned()),
        state: Some(ServerState {
            phase: ServerPhase::Allocated as i32,
            failure_reason: String::new(),
        }),
    }
}

fn report(sequence: u64, body: site_report::Body) -> SiteReport {
    SiteReport {
        site: "fra-edge-1".to_owned(),
        sequence,
        generation: 41,
        at: 1_767_225_601_000 + i64::try_from(sequence).expect("small"),
        body: Some(body),
    }
}

#[test]
fn workload_spec_round_trips() {
    let spec = workload_spec();
    assert_round_trip(&spec);
    // Wrapped in its RPC request too.
    assert_round_trip(&CreateWorkloadRequest {
        spec: Some(spec),
        tenant: "acme".to_owned(),
    });
}

#[test]
fn workload_spec_accelerator_variants_round_trip() {
    for kind in [
        accelerator::Kind::None(accelerator::NoGpu {}),
        accelerator::Kind::WholeGpus(accelerator::WholeGpus {
            model: "L40S".to_owned(),
            count: 4,
        }),
    ] {
        let mut spec = workload_spec();
        spec.resources = Some(Resources {
            accelerator: Some(v1::Accelerator {
                kind: Some(kind.clone()),
            }),
            ..spec.resources.expect("set")
        });
        assert_round_trip(&spec);
        let decoded = WorkloadSpec::decode(spec.encode_to_vec().as_slice()).expect("decodes");
        let got = decoded
            .resources
            .and_then(|r| r.accelerator)
            .and_then(|a| a.kind);
        assert_eq!(got, Some(kind));
    }
}

#[test]
fn empty_oneof_variant_is_distinct_from_absent() {
    // `Accelerator::None` must survive the wire even though its message is empty: a required
    // choice that was made is not the same as no choice at all.
    let chosen = v1::Accelerator {
        kind: Some(accelerator::Kind::None(accelerator::NoGpu {})),
    };
    let decoded = v1::Accelerator::decode(chosen.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, chosen);
    let absent = v1::Accelerator::default();
    assert!(absent.encode_to_vec().is_empty());
    assert_ne!(decoded, absent);
}

#[test]
fn site_intent_round_trips() {
    assert_round_trip(&site_intent());
    assert_round_trip(&CentralMessage {
        kind: Some(central_message::Kind::IntentPush(IntentPush {
            generation: 42,
            intent: Some(site_intent()),
        })),
    });
}

#[test]
fn agent_messages_round_trip() {
    let batch = ReportBatch {
        first_sequence: 100,
        reports: vec![
            report(
                100,
                site_report::Body::Event(Event {
                    severity: EventSeverity::Warning as i32,
                    resource: "srv-002".to_owned(),
                    message: "GPU 3 XID 79".to_owned(),
                }),
            ),
            report(
                101,
                site_report::Body::ServerState(ServerStateReport {
                    server: "srv-002".to_owned(),
                    state: Some(ServerState {
                        phase: ServerPhase::Failed as i32,
                        failure_reason: "GPU fell off the bus".to_owned(),
                    }),
                }),
            ),
            report(
                102,
                site_report::Body::Inventory(Inventory {
                    servers: vec![server()],
                    pending: vec!["srv-9".into()],
                }),
            ),
            report(
                103,
                site_report::Body::AllocationState(AllocationStateReport {
                    workload: "wl-1".to_owned(),
                    server: "srv-001".to_owned(),
                    state: Some(AllocationState {
                        phase: AllocationPhase::Applied as i32,
                        failure_reason: String::new(),
                    }),
                }),
            ),
            report(
                104,
                site_report::Body::Rtt(RttReport {
                    region: "fra-metro".to_owned(),
                    rtt_ms: 3,
                }),
            ),
            report(
                105,
                site_report::Body::Metrics(Metrics {
                    gpu_utilisation_pct: 87.5,
                    power_watts: 10_400.0,
                    period_start_ms: 1_800_000_000_000,
                    period_ms: 60_000,
                    gpus: vec![GpuUtilisation {
                        server: "srv-1".to_owned(),
                        gpu: 2,
                        mig_slot: Some(1),
                        samples: 12,
                        busy_samples: 0,
                        busy_pct: 0.0,
                        memory_busy_pct: 0.0,
                        memory_used_pct: 31.5,
                    }],
                }),
            ),
        ],
        dropped: 2,
    };

    let messages = [
        agent_message::Kind::Hello(Hello {
            site: "fra-edge-1".to_owned(),
            agent_version: "0.1.0".to_owned(),
            applied_generation: 41,
            last_acked_sequence: 99,
            held_generation: 42,
        }),
        agent_message::Kind::IntentAck(IntentAck {
            generation: 42,
            status: IntentAckStatus::Failed as i32,
            reason: "server srv-009 unknown".to_owned(),
        }),
        agent_message::Kind::ReportBatch(batch),
        agent_message::Kind::CertRenewRequest(v1::CertRenewRequest {
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
                    .to_owned(),
        }),
        agent_message::Kind::Heartbeat(Heartbeat {
            sent_at: 1_767_225_600_123,
        }),
    ];
    for message in messages {
        assert_round_trip(&AgentMessage {
            kind: Some(message),
        });
    }

    // Central's side and enrolment, for completeness.
    assert_round_trip(&CentralMessage {
        kind: Some(central_message::Kind::ReportAck(ReportAck {
            high_water_sequence: 105,
        })),
    });
    assert_round_trip(&EnrollResponse {
        outcome: Some(enroll_response::Outcome::Error(EnrollError {
            code: EnrollErrorCode::TokenUsed as i32,
            message: "token already used".to_owned(),
        })),
    });
}

#[test]
fn placement_and_quotas_round_trip() {
    assert_round_trip(&Placement {
        workload: "wl-1".to_owned(),
        tenant: "acme".to_owned(),
        assignments: vec![Assignment {
            replica: 0,
            site: "fra-edge-1".to_owned(),
            server: "srv-001".to_owned(),
            slot: Some(mig_slot()),
        }],
        window: Some(window()),
        score: Some(ScoreBreakdown {
            total: 0.81,
            latency: 0.9,
            data: 1.0,
            price: 0.5,
            packing: 0.75,
        }),
        rejections: vec![
            Rejection {
                reason: RejectReason::Residency as i32,
                count: 9_120,
            },
            Rejection {
                reason: RejectReason::Capacity as i32,
                count: 31,
            },
        ],
        explanation: "best of 849 feasible sites".to_owned(),
        decided_at: 1_767_225_600_500,
    });

    let quotas = Quotas {
        gpus_per_model: BTreeMap::from([("H100-80GB".to_owned(), 16), ("L40S".to_owned(), 64)]),
        mig_slices: 56,
        concurrent_reservations: 10,
        sites: 5,
        storage_mib: 512 * 1024,
    };
    assert_round_trip(&quotas);
}
