//! Validation of a tenant's [`WorkloadSpec`].
//!
//! Checks every bound and cross-field rule the types cannot express: replicas, window length,
//! GPU counts, MIG profile vs model, latency goal, lists (bounded, no duplicates), spread vs
//! replicas, colocate vs spread, resource sizes, image URL, exposed ports.

use super::model::{Accelerator, WorkloadSpec};
use crate::check::raw::{check_url, window_in_range, window_length};
use crate::check::{Problems, ValidationError, check_unique, limits};
use crate::gpu::MigError;

/// URL schemes a workload image may use.
pub(crate) const IMAGE_SCHEMES: &[&str] = &["https", "http", "oci"];

/// Every problem with `spec`, or `Ok`.
pub fn validate_workload_spec(spec: &WorkloadSpec) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    p.range("replicas", spec.replicas, 1, limits::MAX_REPLICAS);
    if let Some(w) = &spec.window
        && let Err(e) = window_in_range("window", w).and_then(|()| window_length("window", w))
    {
        p.add(e);
    }
    resources(&mut p, spec);
    constraints(&mut p, spec);
    if let Some(image) = &spec.image
        && let Err(e) = check_url("image", image, IMAGE_SCHEMES)
    {
        p.add(e);
    }
    p.max_len("expose", spec.expose.len(), limits::MAX_EXPOSED_PORTS);
    for (i, e) in spec.expose.iter().enumerate() {
        if e.port == 0 {
            p.push(
                format!("expose[{i}].port"),
                "must be between 1 and 65535, got 0",
            );
        }
        if limits::RESERVED_GATEWAY_PORTS.contains(&(e.port, e.protocol)) {
            p.push(
                format!("expose[{i}].port"),
                format!(
                    "{}/{} is reserved by the site gateway (22/tcp SSH, 179/tcp BGP, \
                     4789/udp VXLAN, 8472/udp site-to-site tunnels); expose another port",
                    e.port,
                    e.protocol.as_str()
                ),
            );
        }
    }
    check_unique(
        &mut p,
        "expose",
        spec.expose.iter().map(|e| (e.port, e.protocol)),
        "port and protocol",
    );
    p.finish()
}

fn resources(p: &mut Problems, spec: &WorkloadSpec) {
    let r = &spec.resources;
    match r.accelerator {
        Accelerator::None => {}
        Accelerator::WholeGpus { count, .. } => p.range(
            "resources.accelerator.count",
            count,
            1,
            limits::MAX_GPUS_PER_REPLICA,
        ),
        Accelerator::Mig { model, profile } => match profile.spec_for(model) {
            Ok(_) => {}
            Err(e @ MigError::NotMigCapable { .. }) => {
                p.push("resources.accelerator.model", e.to_string());
            }
            Err(e) => p.push("resources.accelerator.profile", e.to_string()),
        },
    }
    p.at_most(
        "resources.cpu_cores",
        r.cpu_cores,
        limits::MAX_CPU_CORES,
        "",
    );
    p.at_most(
        "resources.memory_mib",
        r.memory_mib,
        limits::MAX_MEMORY_MIB,
        " MiB (16 TiB)",
    );
    p.at_most(
        "resources.storage_mib",
        r.storage_mib,
        limits::MAX_STORAGE_MIB,
        " MiB (1 PiB)",
    );
}

fn constraints(p: &mut Problems, spec: &WorkloadSpec) {
    let c = &spec.constraints;
    if let Some(l) = &c.latency {
        p.range(
            "constraints.latency.max_rtt_ms",
            l.max_rtt_ms,
            1,
            limits::MAX_RTT_MS,
        );
        if l.from.is_empty() {
            p.push(
                "constraints.latency.from",
                "must name at least one region when a latency goal is set",
            );
        }
        p.max_len(
            "constraints.latency.from",
            l.from.len(),
            limits::MAX_LATENCY_REGIONS,
        );
        check_unique(p, "constraints.latency.from", &l.from, "region");
    }
    p.max_len(
        "constraints.certifications",
        c.certifications.len(),
        limits::MAX_CERTIFICATIONS,
    );
    p.max_len(
        "constraints.datasets",
        c.datasets.len(),
        limits::MAX_DATASETS,
    );
    check_unique(p, "constraints.datasets", &c.datasets, "dataset");
    if let Some(s) = &c.spread {
        if s.min_sites < 1 {
            p.push("constraints.spread.min_sites", "must be at least 1, got 0");
        }
        if s.max_per_site < 1 {
            p.push(
                "constraints.spread.max_per_site",
                "must be at least 1, got 0",
            );
        }
        if s.min_sites > spec.replicas {
            p.push(
                "constraints.spread.min_sites",
                format!(
                    "must be at most replicas ({}), got {}",
                    spec.replicas, s.min_sites
                ),
            );
        }
        if c.colocate && s.min_sites > 1 {
            p.push(
                "constraints.colocate",
                "contradicts constraints.spread.min_sites > 1; colocate puts every replica on \
                 one site",
            );
        }
        if c.colocate && s.max_per_site >= 1 && s.max_per_site < spec.replicas {
            p.push(
                "constraints.colocate",
                format!(
                    "contradicts constraints.spread.max_per_site ({}) < replicas ({})",
                    s.max_per_site, spec.replicas
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{GpuModel, MigProfile};
    use crate::ids::{DatasetId, Name, RegionId, TimeWindow, Timestamp};
    use crate::net::Protocol;
    use crate::site::Certification;
    use crate::workload::{LatencyConstraint, PortExposure, Spread};

    const SPEC: &str = r#"
        name = "chat-api"
        kind = "inference_endpoint"
        replicas = 4
        priority = 5
        image = "oci://registry.example/chat:1.2"
        window = { start = 1700000000000, end = 1700086400000 }
        expose = [ { port = 443, protocol = "tcp" }, { port = 443, protocol = "udp" } ]

        [resources]
        accelerator = { whole_gpus = { model = "H100-80GB", count = 2 } }
        cpu_cores = 32
        memory_mib = 262144
        storage_mib = 1048576

        [constraints]
        residency = ["EU", "CH"]
        certifications = ["iso27001"]
        datasets = ["weights"]
        spread = { min_sites = 2, max_per_site = 2 }
        tier = "edge"
        latency = { from = ["paris", "berlin"], max_rtt_ms = 20 }
    "#;

    fn base() -> WorkloadSpec {
        toml::from_str(SPEC).expect("the sample spec parses")
    }

    fn mig(model: GpuModel, profile: &str) -> Accelerator {
        Accelerator::Mig {
            model,
            profile: MigProfile::parse_any(profile).unwrap(),
        }
    }

    fn region(s: &str) -> RegionId {
        RegionId::parse(s).unwrap()
    }

    fn ds(s: &str) -> DatasetId {
        DatasetId::parse(s).unwrap()
    }

    fn window_days(days: i64) -> Option<TimeWindow> {
        let start = 1_700_000_000_000;
        Some(
            TimeWindow::new(
                Timestamp::from_millis(start),
                Timestamp::from_millis(start + days * 24 * 3600 * 1000),
            )
            .unwrap(),
        )
    }

    fn window(start: i64, end: i64) -> Option<TimeWindow> {
        Some(TimeWindow::new(Timestamp(start), Timestamp(end)).unwrap())
    }

    fn spread(s: &mut WorkloadSpec, min_sites: u32, max_per_site: u32) {
        s.constraints.spread = Some(Spread {
            min_sites,
            max_per_site,
        });
    }

    type Case = (&'static str, fn(&mut WorkloadSpec), &'static [&'static str]);

    #[test]
    fn table() {
        assert_eq!(validate_workload_spec(&base()), Ok(()));
        let cases: &[Case] = &[
            (
                "replicas zero",
                |s| s.replicas = 0,
                &["replicas", "constraints.spread.min_sites"],
            ),
            ("replicas max", |s| s.replicas = 10_000, &[]),
            ("replicas too many", |s| s.replicas = 10_001, &["replicas"]),
            (
                "replicas u32::MAX",
                |s| s.replicas = u32::MAX,
                &["replicas"],
            ),
            ("no window is fine", |s| s.window = None, &[]),
            (
                "366-day window is fine",
                |s| s.window = window_days(366),
                &[],
            ),
            (
                "367-day window",
                |s| s.window = window_days(367),
                &["window"],
            ),
            (
                "extreme window",
                |s| s.window = window(i64::MIN, i64::MAX),
                &["window.start"],
            ),
            (
                "window at the start of time",
                |s| s.window = window(i64::MIN, i64::MIN + 1),
                &["window.start"],
            ),
            (
                "window at the end of time",
                |s| s.window = window(i64::MAX - 1, i64::MAX),
                &["window.end"],
            ),
            (
                "window in 1970",
                |s| s.window = window(0, 3_600_000),
                &["window.start"],
            ),
            (
                "window ending past 2100",
                |s| s.window = window(4_102_444_000_000, 4_102_444_900_000),
                &["window.end"],
            ),
            (
                "window on the range's edges",
                |s| s.window = window(946_684_800_000, 946_684_800_000 + 3_600_000),
                &[],
            ),
            (
                "zero GPUs",
                |s| {
                    s.resources.accelerator = Accelerator::WholeGpus {
                        model: GpuModel::L40S,
                        count: 0,
                    }
                },
                &["resources.accelerator.count"],
            ),
            (
                "64 GPUs is fine",
                |s| {
                    s.resources.accelerator = Accelerator::WholeGpus {
                        model: GpuModel::L40S,
                        count: 64,
                    }
                },
                &[],
            ),
            (
                "65 GPUs",
                |s| {
                    s.resources.accelerator = Accelerator::WholeGpus {
                        model: GpuModel::L40S,
                        count: 65,
                    }
                },
                &["resources.accelerator.count"],
            ),
            (
                "u32::MAX GPUs",
                |s| {
                    s.resources.accelerator = Accelerator::WholeGpus {
                        model: GpuModel::L40S,
                        count: u32::MAX,
                    }
                },
                &["resources.accelerator.count"],
            ),
            (
                "no accelerator",
                |s| s.resources.accelerator = Accelerator::None,
                &[],
            ),
            (
                "MIG profile of the model",
                |s| s.resources.accelerator = mig(GpuModel::H100_80GB, "3g.40gb"),
                &[],
            ),
            (
                "MIG on A30",
                |s| s.resources.accelerator = mig(GpuModel::A30_24GB, "2g.12gb"),
                &[],
            ),
            (
                "MIG profile of another model",
                |s| s.resources.accelerator = mig(GpuModel::H100_80GB, "1g.5gb"),
                &["resources.accelerator.profile"],
            ),
            (
                "MIG on a model without MIG",
                |s| s.resources.accelerator = mig(GpuModel::L40S, "1g.10gb"),
                &["resources.accelerator.model"],
            ),
            ("1024 cores fine", |s| s.resources.cpu_cores = 1024, &[]),
            (
                "1025 cores",
                |s| s.resources.cpu_cores = 1025,
                &["resources.cpu_cores"],
            ),
            (
                "u32::MAX cores",
                |s| s.resources.cpu_cores = u32::MAX,
                &["resources.cpu_cores"],
            ),
            (
                "16 TiB memory fine",
                |s| s.resources.memory_mib = 16 * 1024 * 1024,
                &[],
            ),
            (
                "memory over 16 TiB",
                |s| s.resources.memory_mib = 16 * 1024 * 1024 + 1,
                &["resources.memory_mib"],
            ),
            (
                "u64::MAX memory",
                |s| s.resources.memory_mib = u64::MAX,
                &["resources.memory_mib"],
            ),
            (
                "storage over 1 PiB",
                |s| s.resources.storage_mib = u64::MAX,
                &["resources.storage_mib"],
            ),
            (
                "rtt zero",
                |s| s.constraints.latency.as_mut().unwrap().max_rtt_ms = 0,
                &["constraints.latency.max_rtt_ms"],
            ),
            (
                "rtt u32::MAX",
                |s| s.constraints.latency.as_mut().unwrap().max_rtt_ms = u32::MAX,
                &["constraints.latency.max_rtt_ms"],
            ),
            (
                "latency without regions",
                |s| s.constraints.latency.as_mut().unwrap().from.clear(),
                &["constraints.latency.from"],
            ),
            (
                "too many latency regions",
                |s| {
                    s.constraints.latency.as_mut().unwrap().from =
                        (0..65).map(|i| region(&format!("r{i}"))).collect()
                },
                &["constraints.latency.from"],
            ),
            (
                "duplicate latency region",
                |s| {
                    s.constraints
                        .latency
                        .as_mut()
                        .unwrap()
                        .from
                        .push(region("paris"))
                },
                &["constraints.latency.from[2]"],
            ),
            (
                "both latency fields bad",
                |s| {
                    s.constraints.latency = Some(LatencyConstraint {
                        from: vec![],
                        max_rtt_ms: 10_001,
                    })
                },
                &["constraints.latency.max_rtt_ms", "constraints.latency.from"],
            ),
            (
                "64 datasets fine",
                |s| s.constraints.datasets = (0..64).map(|i| ds(&format!("d{i}"))).collect(),
                &[],
            ),
            (
                "65 datasets",
                |s| s.constraints.datasets = (0..65).map(|i| ds(&format!("d{i}"))).collect(),
                &["constraints.datasets"],
            ),
            (
                "duplicate dataset",
                |s| s.constraints.datasets = vec![ds("a"), ds("b"), ds("a")],
                &["constraints.datasets[2]"],
            ),
            (
                "every certification is fine",
                |s| {
                    s.constraints.certifications = [
                        Certification::Iso27001,
                        Certification::Soc2,
                        Certification::Hipaa,
                        Certification::PciDss,
                        Certification::Sovereign,
                        Certification::Gxp,
                    ]
                    .into()
                },
                &[],
            ),
            (
                "spread min_sites zero",
                |s| spread(s, 0, 4),
                &["constraints.spread.min_sites"],
            ),
            (
                "spread max_per_site zero",
                |s| spread(s, 2, 0),
                &["constraints.spread.max_per_site"],
            ),
            (
                "spread min_sites over replicas",
                |s| spread(s, 5, 1),
                &["constraints.spread.min_sites"],
            ),
            (
                "spread u32::MAX both",
                |s| spread(s, u32::MAX, u32::MAX),
                &["constraints.spread.min_sites"],
            ),
            (
                "colocate with spread over sites",
                |s| s.constraints.colocate = true,
                &["constraints.colocate", "constraints.colocate"],
            ),
            (
                "colocate with one site",
                |s| {
                    s.constraints.colocate = true;
                    spread(s, 1, 4);
                },
                &[],
            ),
            (
                "colocate without spread",
                |s| {
                    s.constraints.colocate = true;
                    s.constraints.spread = None;
                },
                &[],
            ),
            ("empty image", |s| s.image = Some(String::new()), &["image"]),
            (
                "ftp image",
                |s| s.image = Some("ftp://x/y".into()),
                &["image"],
            ),
            (
                "image with newline",
                |s| s.image = Some("https://x/y\n".into()),
                &["image"],
            ),
            (
                "image too long",
                |s| s.image = Some(format!("https://{}", "a".repeat(2041))),
                &["image"],
            ),
            (
                "image exactly 2048",
                |s| s.image = Some(format!("https://{}", "a".repeat(2040))),
                &[],
            ),
            (
                "port zero",
                |s| {
                    s.expose.push(PortExposure {
                        port: 0,
                        protocol: Protocol::Tcp,
                    })
                },
                &["expose[2].port"],
            ),
            (
                "a port the gateway reserves",
                |s| {
                    s.expose.push(PortExposure {
                        port: 4789,
                        protocol: Protocol::Udp,
                    })
                },
                &["expose[2].port"],
            ),
            (
                "the site-to-site tunnel port",
                |s| {
                    s.expose.push(PortExposure {
                        port: 8472,
                        protocol: Protocol::Udp,
                    })
                },
                &["expose[2].port"],
            ),
            (
                "duplicate port",
                |s| {
                    s.expose.push(PortExposure {
                        port: 443,
                        protocol: Protocol::Tcp,
                    })
                },
                &["expose[2]"],
            ),
            (
                "too many ports",
                |s| {
                    s.expose = (1..=33)
                        .map(|port| PortExposure {
                            port,
                            protocol: Protocol::Udp,
                        })
                        .collect()
                },
                &["expose"],
            ),
            (
                "everything at once",
                |s| {
                    s.replicas = 0;
                    s.resources.cpu_cores = u32::MAX;
                    s.image = Some("x".into());
                    s.constraints.spread = None;
                },
                &["replicas", "resources.cpu_cores", "image"],
            ),
        ];
        for (label, mutate, want) in cases {
            let mut spec = base();
            mutate(&mut spec);
            let got = match validate_workload_spec(&spec) {
                Ok(()) => vec![],
                Err(e) => {
                    for p in e.problems() {
                        assert!(p.message.len() < 200, "{label}: long message {p}");
                    }
                    e.fields().into_iter().map(String::from).collect::<Vec<_>>()
                }
            };
            let mut got_sorted = got.clone();
            got_sorted.sort();
            let mut want_sorted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want_sorted.sort();
            assert_eq!(got_sorted, want_sorted, "case {label:?}: got {got:?}");
        }
    }

    #[test]
    fn toml_round_trip() {
        let spec = base();
        assert_eq!(spec.name, Name::parse("chat-api").unwrap());
        let text = toml::to_string(&spec).unwrap();
        let again: WorkloadSpec = toml::from_str(&text).unwrap();
        assert_eq!(again, spec);
        // A MIG spec round-trips too.
        let mut m = base();
        m.resources.accelerator = mig(GpuModel::H200_141GB, "1g.18gb");
        m.constraints = Default::default();
        let again: WorkloadSpec = toml::from_str(&toml::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let cases = [
            format!("{SPEC}\n[extra]\nx = 1"),
            SPEC.replace("priority = 5", "priority = 5\nprio = 5"),
            SPEC.replace("tier = \"edge\"", "tier = \"edge\"\ncolocated = true"),
            SPEC.replace("cpu_cores = 32", "cpu_cores = 32\ngpus = 2"),
            SPEC.replace("max_rtt_ms = 20", "max_rtt_ms = 20, p99 = true"),
        ];
        for text in cases {
            assert!(toml::from_str::<WorkloadSpec>(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn bad_typed_values_fail_to_parse() {
        let cases = [
            SPEC.replace("chat-api", "Chat API"),
            SPEC.replace("\"EU\", \"CH\"", "\"EU\", \"ATLANTIS\""),
            SPEC.replace("H100-80GB", "H100"),
            SPEC.replace("end = 1700086400000", "end = 1700000000000"),
            SPEC.replace("\"paris\"", "\"\""),
            SPEC.replace("kind = \"inference_endpoint\"", "kind = \"daemon\""),
        ];
        for text in cases {
            assert!(toml::from_str::<WorkloadSpec>(&text).is_err(), "{text}");
        }
    }
}
