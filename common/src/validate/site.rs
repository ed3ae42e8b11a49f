//! Validation of [`Site`]s and [`Server`]s (including GPUs and their MIG layouts).

use std::net::Ipv4Addr;

use crate::model::{GeoPoint, MigConfig, MigGeometry, Server, ServerState, Site};

use super::raw::{check_text, check_url};
use super::{Problems, ValidationError, check_unique, limits};

/// Every problem with `site`, or `Ok`.
pub fn validate_site(site: &Site) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    check_location(&mut p, "location", &site.location);
    p.max_len(
        "certifications",
        site.certifications.len(),
        limits::MAX_CERTIFICATIONS,
    );
    p.max_len("pools", site.pools.len(), limits::MAX_POOLS);
    check_unique(&mut p, "pools", &site.pools, "pool");
    let net = site.gateway_range;
    let first = net.addr();
    if net.prefix_len() < 8 {
        p.push(
            "gateway_range",
            format!("prefix length must be 8 to 32, got /{}", net.prefix_len()),
        );
    } else if first.is_unspecified()
        || first.is_loopback()
        || first.is_multicast()
        || first == Ipv4Addr::BROADCAST
        || first.octets()[0] >= 240
    {
        p.push(
            "gateway_range",
            format!("{net} is not a routable unicast prefix; give the gateway's public prefix"),
        );
    }
    p.at_most(
        "price_per_gpu_hour",
        site.price_per_gpu_hour,
        limits::MAX_PRICE_PER_GPU_HOUR,
        " micro-units",
    );
    p.finish()
}

/// Checks a point: finite, `lat` in `-90..=90`, `lon` in `-180..=180`.
pub(crate) fn check_location(p: &mut Problems, field: &str, g: &GeoPoint) {
    if !g.lat.is_finite() || !(-90.0..=90.0).contains(&g.lat) {
        p.push(
            format!("{field}.lat"),
            format!(
                "must be a finite number from -90 to 90 degrees, got {}",
                g.lat
            ),
        );
    }
    if !g.lon.is_finite() || !(-180.0..=180.0).contains(&g.lon) {
        p.push(
            format!("{field}.lon"),
            format!(
                "must be a finite number from -180 to 180 degrees, got {}",
                g.lon
            ),
        );
    }
}

/// Every problem with `server`, or `Ok`: BMC URL, text fields, sizes, GPU indices, and that
/// each GPU's MIG instances are a valid layout for its model.
pub fn validate_server(server: &Server) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    if let Err(e) = check_url("bmc.url", &server.bmc.url, &["https", "http"]) {
        p.add(e);
    }
    if let Err(e) = check_text("serial", &server.serial, limits::MAX_SHORT_TEXT) {
        p.add(e);
    }
    p.at_most("cpu_cores", server.cpu_cores, limits::MAX_CPU_CORES, "");
    p.at_most(
        "memory_mib",
        server.memory_mib,
        limits::MAX_MEMORY_MIB,
        " MiB (16 TiB)",
    );
    p.max_len("gpus", server.gpus.len(), limits::MAX_GPUS_PER_SERVER);
    let shown_gpus = server.gpus.iter().take(limits::MAX_GPUS_PER_SERVER);
    check_unique(
        &mut p,
        "gpus",
        shown_gpus.clone().map(|g| g.index),
        "GPU index",
    );
    for (i, gpu) in shown_gpus.enumerate() {
        if let MigConfig::Enabled { instances } = &gpu.mig {
            match MigGeometry::new(gpu.model) {
                Err(e) => p.push(format!("gpus[{i}].mig"), e.to_string()),
                Ok(mut geometry) => {
                    for (j, inst) in instances.iter().enumerate().take(16) {
                        if let Err(e) = geometry.place(inst.profile, inst.placement) {
                            p.push(format!("gpus[{i}].mig.instances[{j}]"), e.to_string());
                        }
                    }
                    if instances.len() > 8 {
                        p.push(
                            format!("gpus[{i}].mig.instances"),
                            format!("at most 8 instances fit a GPU, got {}", instances.len()),
                        );
                    }
                }
            }
        }
    }
    if let Some(dpu) = &server.dpu {
        if let Err(e) = check_text("dpu.model", &dpu.model, limits::MAX_SHORT_TEXT) {
            p.add(e);
        }
        if let Err(e) = check_text("dpu.serial", &dpu.serial, limits::MAX_SHORT_TEXT) {
            p.add(e);
        }
    }
    if let ServerState::Failed { reason } = &server.state
        && reason.len() > limits::MAX_REASON_LEN
    {
        p.push(
            "state.reason",
            format!(
                "is {} bytes long, at most {} are allowed",
                reason.len(),
                limits::MAX_REASON_LEN
            ),
        );
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PoolId;
    use crate::model::{
        BmcEndpoint, BmcVendor, Dpu, DpuMode, Gpu, GpuHealth, GpuModel, Ipv4Net, MigInstance,
        MigProfile,
    };

    const SITE: &str = r#"
        id = "fra-1"
        name = "frankfurt-1"
        tier = "core"
        location = { lat = 50.11, lon = 8.68 }
        country = "DE"
        certifications = ["iso27001"]
        pools = ["default", "training"]
        gateway_range = "203.0.113.0/24"
        price_per_gpu_hour = 2500000
        state = "online"
    "#;

    fn site() -> Site {
        toml::from_str(SITE).unwrap()
    }

    fn fields(r: Result<(), ValidationError>) -> Vec<String> {
        let mut v: Vec<String> = match r {
            Ok(()) => vec![],
            Err(e) => e.fields().into_iter().map(String::from).collect(),
        };
        v.sort();
        v
    }

    fn sorted(want: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    type SiteCase = (&'static str, fn(&mut Site), &'static [&'static str]);

    #[test]
    fn site_table() {
        assert_eq!(validate_site(&site()), Ok(()));
        let cases: &[SiteCase] = &[
            ("lat NaN", |s| s.location.lat = f64::NAN, &["location.lat"]),
            (
                "lon inf",
                |s| s.location.lon = f64::INFINITY,
                &["location.lon"],
            ),
            (
                "lat -inf",
                |s| s.location.lat = f64::NEG_INFINITY,
                &["location.lat"],
            ),
            (
                "lat 90.0001",
                |s| s.location.lat = 90.0001,
                &["location.lat"],
            ),
            ("lon -180.5", |s| s.location.lon = -180.5, &["location.lon"]),
            (
                "both NaN",
                |s| {
                    s.location = GeoPoint {
                        lat: f64::NAN,
                        lon: f64::NAN,
                    }
                },
                &["location.lat", "location.lon"],
            ),
            (
                "poles fine",
                |s| {
                    s.location = GeoPoint {
                        lat: -90.0,
                        lon: 180.0,
                    }
                },
                &[],
            ),
            (
                "duplicate pool",
                |s| s.pools.push(PoolId::parse("default").unwrap()),
                &["pools[2]"],
            ),
            (
                "too many pools",
                |s| {
                    s.pools = (0..65)
                        .map(|i| PoolId::parse(&format!("p{i}")).unwrap())
                        .collect()
                },
                &["pools"],
            ),
            (
                "gateway /0",
                |s| s.gateway_range = Ipv4Net::parse("0.0.0.0/0").unwrap(),
                &["gateway_range"],
            ),
            (
                "gateway loopback",
                |s| s.gateway_range = Ipv4Net::parse("127.0.0.0/8").unwrap(),
                &["gateway_range"],
            ),
            (
                "gateway multicast",
                |s| s.gateway_range = Ipv4Net::parse("224.0.0.0/24").unwrap(),
                &["gateway_range"],
            ),
            (
                "price u64::MAX",
                |s| s.price_per_gpu_hour = u64::MAX,
                &["price_per_gpu_hour"],
            ),
            ("price zero fine", |s| s.price_per_gpu_hour = 0, &[]),
        ];
        for (label, mutate, want) in cases {
            let mut s = site();
            mutate(&mut s);
            assert_eq!(fields(validate_site(&s)), sorted(want), "case {label:?}");
        }
    }

    fn gpu(index: u32, model: GpuModel, mig: MigConfig) -> Gpu {
        Gpu {
            index,
            model,
            memory_mib: model.nominal_memory_mib(),
            mig,
            health: GpuHealth::Healthy,
        }
    }

    fn inst(name: &str, placement: u8) -> MigInstance {
        MigInstance {
            profile: MigProfile::parse_any(name).unwrap(),
            placement,
        }
    }

    fn server() -> Server {
        Server {
            id: "srv-1".parse().unwrap(),
            site: "fra-1".parse().unwrap(),
            bmc: BmcEndpoint {
                url: "https://10.0.0.5".into(),
                vendor: BmcVendor::Dell,
            },
            serial: "SN-123".into(),
            cpu_cores: 64,
            memory_mib: 1 << 20,
            gpus: vec![
                gpu(0, GpuModel::H100_80GB, MigConfig::Disabled),
                gpu(
                    1,
                    GpuModel::H100_80GB,
                    MigConfig::Enabled {
                        instances: vec![inst("3g.40gb", 4), inst("4g.40gb", 0)],
                    },
                ),
            ],
            dpu: Some(Dpu {
                model: "BlueField-3".into(),
                serial: "MT123".into(),
                mode: DpuMode::Dpu,
            }),
            pool: None,
            state: ServerState::Available,
        }
    }

    type ServerCase = (&'static str, fn(&mut Server), &'static [&'static str]);

    #[test]
    fn server_table() {
        assert_eq!(validate_server(&server()), Ok(()));
        let cases: &[ServerCase] = &[
            ("bmc oci", |s| s.bmc.url = "oci://x".into(), &["bmc.url"]),
            ("bmc empty", |s| s.bmc.url = String::new(), &["bmc.url"]),
            ("serial empty", |s| s.serial = String::new(), &["serial"]),
            (
                "serial control",
                |s| s.serial = "SN\u{1b}[2J".into(),
                &["serial"],
            ),
            (
                "serial 10 MB",
                |s| s.serial = "S".repeat(10 << 20),
                &["serial"],
            ),
            ("cpu u32::MAX", |s| s.cpu_cores = u32::MAX, &["cpu_cores"]),
            (
                "memory u64::MAX",
                |s| s.memory_mib = u64::MAX,
                &["memory_mib"],
            ),
            (
                "duplicate GPU index",
                |s| s.gpus.push(gpu(0, GpuModel::L4, MigConfig::Disabled)),
                &["gpus[2]"],
            ),
            (
                "too many GPUs",
                |s| {
                    s.gpus = (0..65)
                        .map(|i| gpu(i, GpuModel::L4, MigConfig::Disabled))
                        .collect()
                },
                &["gpus"],
            ),
            (
                "MIG on L40S",
                |s| s.gpus[0] = gpu(0, GpuModel::L40S, MigConfig::Enabled { instances: vec![] }),
                &["gpus[0].mig"],
            ),
            (
                "overlapping MIG instances",
                |s| {
                    s.gpus[0].mig = MigConfig::Enabled {
                        instances: vec![inst("3g.40gb", 0), inst("2g.20gb", 2)],
                    }
                },
                &["gpus[0].mig.instances[1]"],
            ),
            (
                "MIG odd placement",
                |s| {
                    s.gpus[0].mig = MigConfig::Enabled {
                        instances: vec![inst("1g.20gb", 1)],
                    }
                },
                &["gpus[0].mig.instances[0]"],
            ),
            (
                "MIG profile of another model",
                |s| {
                    s.gpus[0].mig = MigConfig::Enabled {
                        instances: vec![inst("1g.6gb", 0)],
                    }
                },
                &["gpus[0].mig.instances[0]"],
            ),
            (
                "eight small instances",
                |s| {
                    s.gpus[0].mig = MigConfig::Enabled {
                        instances: (0..8).map(|p| inst("1g.10gb", p)).collect(),
                    }
                },
                &["gpus[0].mig.instances[7]"],
            ),
            (
                "hostile MIG list",
                |s| {
                    s.gpus[0].mig = MigConfig::Enabled {
                        instances: (0..100_000).map(|_| inst("7g.80gb", 255)).collect(),
                    }
                },
                &[
                    "gpus[0].mig.instances",
                    "gpus[0].mig.instances[0]",
                    "gpus[0].mig.instances[1]",
                    "gpus[0].mig.instances[2]",
                    "gpus[0].mig.instances[3]",
                    "gpus[0].mig.instances[4]",
                    "gpus[0].mig.instances[5]",
                    "gpus[0].mig.instances[6]",
                    "gpus[0].mig.instances[7]",
                    "gpus[0].mig.instances[8]",
                    "gpus[0].mig.instances[9]",
                    "gpus[0].mig.instances[10]",
                    "gpus[0].mig.instances[11]",
                    "gpus[0].mig.instances[12]",
                    "gpus[0].mig.instances[13]",
                    "gpus[0].mig.instances[14]",
                    "gpus[0].mig.instances[15]",
                ],
            ),
            (
                "DPU empty serial",
                |s| s.dpu.as_mut().unwrap().serial = String::new(),
                &["dpu.serial"],
            ),
            (
                "huge failure reason",
                |s| {
                    s.state = ServerState::Failed {
                        reason: "x".repeat(5000),
                    }
                },
                &["state.reason"],
            ),
        ];
        for (label, mutate, want) in cases {
            let mut s = server();
            mutate(&mut s);
            let r = validate_server(&s);
            if let Err(e) = &r {
                assert!(
                    e.to_string().len() < 4000,
                    "case {label:?}: report too long"
                );
            }
            assert_eq!(fields(r), sorted(want), "case {label:?}");
        }
    }
}
