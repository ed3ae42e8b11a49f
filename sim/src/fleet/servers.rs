//! Servers: 4 x 8 GPUs per edge site, 256 x 8 GPUs per core site.
//!
//! At an edge site exactly one server of four carries MIG-capable GPUs (A100-80GB or
//! H100-80GB), so a quarter of the edge GPUs are MIG-capable; the other three carry L40S or
//! L4. About half of the MIG-capable edge servers run with MIG on, each GPU with one of a few
//! realistic layouts (`7 x 1g.10gb`, `4g.40gb + 3g.40gb`, ...). Core sites hold HGX-class
//! H100-80GB or H200-141GB servers with a BlueField-3 DPU; some inference servers run MIG.
//! BMC endpoints are names under `meridian.invalid`, never addresses.

use meridian_common::model::{
    BmcEndpoint, BmcVendor, Dpu, DpuMode, Gpu, GpuHealth, GpuModel, MigConfig, MigInstance, Server,
    ServerState, Site, SiteTier,
};

use super::draw::Draw;
use super::sites::{CORE_POOLS, EDGE_POOLS};
use super::{CORE_SERVERS_PER_SITE, EDGE_SERVERS_PER_SITE, GPUS_PER_SERVER, id};

/// MIG layouts for the 7-compute / 8-memory-slice family, as (profile index in
/// [`GpuModel::mig_profiles`], placement). Index 0 is `1g` small, 1 `1g` large, 2 `2g`,
/// 3 `3g`, 4 `4g`, 5 `7g`.
const LAYOUTS: &[&[(usize, u8)]] = &[
    // 7 x 1g.10gb
    &[(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6)],
    // 4g.40gb + 3g.40gb
    &[(4, 0), (3, 4)],
    // 3g.40gb + 3g.40gb
    &[(3, 0), (3, 4)],
    // 2g.20gb + 2g.20gb + 3g.40gb
    &[(2, 0), (2, 2), (3, 4)],
    // 4g.40gb + 2g.20gb + 1g.10gb
    &[(4, 0), (2, 4), (0, 6)],
    // 4 x 1g.20gb
    &[(1, 0), (1, 2), (1, 4), (1, 6)],
    // 7g.80gb
    &[(5, 0)],
];

fn mig_layout(model: GpuModel, layout: &[(usize, u8)]) -> MigConfig {
    let profiles = model.mig_profiles();
    let instances = layout
        .iter()
        .map(|(p, placement)| MigInstance {
            profile: profiles[*p].profile(),
            placement: *placement,
        })
        .collect();
    MigConfig::Enabled { instances }
}

fn gpus(rng: &mut Draw, model: GpuModel, mig: bool) -> Vec<Gpu> {
    (0..GPUS_PER_SERVER as u32)
        .map(|index| Gpu {
            index,
            model,
            memory_mib: model.nominal_memory_mib(),
            mig: if mig {
                mig_layout(model, LAYOUTS[rng.index(LAYOUTS.len())])
            } else {
                MigConfig::Disabled
            },
            health: GpuHealth::Healthy,
        })
        .collect()
}

fn serial_prefix(vendor: BmcVendor) -> &'static str {
    match vendor {
        BmcVendor::Dell => "DL",
        BmcVendor::Hpe => "HP",
        BmcVendor::Lenovo => "LN",
        BmcVendor::Supermicro => "SM",
        BmcVendor::Nvidia => "NV",
        BmcVendor::Generic => "GN",
    }
}

const GIB: u64 = 1024;

pub(crate) fn generate(sites: &[Site], rng: &mut Draw) -> Vec<Server> {
    let total: usize = sites
        .iter()
        .map(|s| match s.tier {
            SiteTier::Core => CORE_SERVERS_PER_SITE,
            SiteTier::Edge => EDGE_SERVERS_PER_SITE,
        })
        .sum();
    let mut servers = Vec::with_capacity(total);
    for site in sites {
        match site.tier {
            SiteTier::Core => core_site(rng, site, &mut servers),
            SiteTier::Edge => edge_site(rng, site, &mut servers),
        }
    }
    servers
}

struct Hw {
    vendor: BmcVendor,
    cpu_cores: u32,
    memory_mib: u64,
    gpus: Vec<Gpu>,
    dpu: Option<Dpu>,
    pool: &'static str,
}

fn push(rng: &mut Draw, site: &Site, index: usize, width: usize, hw: Hw, out: &mut Vec<Server>) {
    let server_id = format!("srv-{}-{index:0width$}", site.id);
    let serial = format!("{}{:07}{}", serial_prefix(hw.vendor), out.len(), rng.hex(4));
    out.push(Server {
        bmc: BmcEndpoint {
            url: format!("https://bmc-{server_id}.{}.meridian.invalid", site.id),
            vendor: hw.vendor,
        },
        id: id(&server_id),
        site: site.id.clone(),
        serial,
        cpu_cores: hw.cpu_cores,
        memory_mib: hw.memory_mib,
        gpus: hw.gpus,
        dpu: hw.dpu,
        pool: Some(id(hw.pool)),
        state: ServerState::Available,
    });
}

fn edge_site(rng: &mut Draw, site: &Site, out: &mut Vec<Server>) {
    let vendor = *rng.pick(&[
        BmcVendor::Dell,
        BmcVendor::Hpe,
        BmcVendor::Lenovo,
        BmcVendor::Supermicro,
    ]);
    let mig_server = rng.index(EDGE_SERVERS_PER_SITE);
    for index in 0..EDGE_SERVERS_PER_SITE {
        let hw = if index == mig_server {
            let model = if rng.percent(60) {
                GpuModel::H100_80GB
            } else {
                GpuModel::A100_80GB
            };
            let mig = rng.percent(50);
            Hw {
                vendor,
                cpu_cores: *rng.pick(&[48, 64]),
                memory_mib: *rng.pick(&[1024, 2048]) * GIB,
                gpus: gpus(rng, model, mig),
                dpu: None,
                pool: EDGE_POOLS[1],
            }
        } else {
            let model = if rng.percent(55) {
                GpuModel::L40S
            } else {
                GpuModel::L4
            };
            Hw {
                vendor,
                cpu_cores: *rng.pick(&[32, 48, 64]),
                memory_mib: *rng.pick(&[256, 384, 512]) * GIB,
                gpus: gpus(rng, model, false),
                dpu: None,
                pool: EDGE_POOLS[0],
            }
        };
        push(rng, site, index, 2, hw, out);
    }
}

fn core_site(rng: &mut Draw, site: &Site, out: &mut Vec<Server>) {
    let vendor = *rng.pick(&[BmcVendor::Nvidia, BmcVendor::Supermicro, BmcVendor::Dell]);
    let model = if rng.percent(60) {
        GpuModel::H100_80GB
    } else {
        GpuModel::H200_141GB
    };
    // Three quarters train, one quarter serves inference (some of it on MIG).
    let training = CORE_SERVERS_PER_SITE * 3 / 4;
    for index in 0..CORE_SERVERS_PER_SITE {
        let inference = index >= training;
        let mig = inference && rng.percent(15);
        let hw = Hw {
            vendor,
            cpu_cores: *rng.pick(&[112, 128]),
            memory_mib: 2048 * GIB,
            gpus: gpus(rng, model, mig),
            dpu: Some(Dpu {
                model: "BlueField-3".to_owned(),
                serial: format!("MT{}", rng.hex(10)),
                mode: DpuMode::Dpu,
            }),
            pool: CORE_POOLS[usize::from(inference)],
        };
        push(rng, site, index, 3, hw, out);
    }
}

#[cfg(test)]
mod tests {
    use meridian_common::model::MigGeometry;

    use super::*;

    #[test]
    fn layouts_are_valid_on_every_eight_slice_model() {
        for model in [
            GpuModel::A100_80GB,
            GpuModel::H100_80GB,
            GpuModel::H100_94GB,
            GpuModel::H200_141GB,
            GpuModel::A100_40GB,
        ] {
            for layout in LAYOUTS {
                let MigConfig::Enabled { instances } = mig_layout(model, layout) else {
                    unreachable!()
                };
                MigGeometry::with_instances(model, &instances)
                    .unwrap_or_else(|e| panic!("{model} {layout:?}: {e}"));
            }
        }
    }
}
