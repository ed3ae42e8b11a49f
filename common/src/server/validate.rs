//! Validation of [`Server`]s (including GPUs and their MIG layouts).

use super::model::{Server, ServerState};
use crate::check::raw::{check_text, check_url};
use crate::check::{Problems, ValidationError, check_unique, limits};
use crate::gpu::{MigConfig, MigGeometry};

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
    use crate::gpu::{Gpu, GpuHealth, GpuModel, MigInstance, MigProfile};
    use crate::server::{BmcEndpoint, BmcVendor, Dpu, DpuMode};
    use crate::testkit::{fields, sorted};

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
