//! Emulated hardware of one site: a Redfish BMC emulator (GPU-server profile), a BlueField-3
//! DPU BMC emulator and a fake NVML per server, shaped after the server central's fleet
//! generator describes (GPU models, MIG layouts); one NVUE leaf-switch emulator the servers
//! are cabled to (`bond<n>` over `swp<n>`); and the real site reconciler of the agent over
//! them all. Every fourth server's DPU starts in NIC mode, so the reconciler switches it to
//! DPU mode (and resets it) before the server's first allocation. The switch carries every
//! tenant network of the site's intent and puts allocated servers' bonds into their tenant's
//! VLAN.
//!
//! What the agent then reports (Redfish + NVML inspection) is what central learns about the
//! site's servers: the generator's records of these sites are not loaded. GPU models the fake
//! NVML names the way real NVML does; MIG layouts are set up on 80 GB GPUs (the profiles the
//! fake knows), other GPUs come up with MIG off.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use meridian_agent::reconcile::desired::DpuWant;
use meridian_agent::reconcile::fabric::DEFAULT_L3_VNI_BASE;
use meridian_agent::reconcile::gateway::{GatewayLayout, ManagedGateway};
use meridian_agent::reconcile::server::ManagedDpu;
use meridian_agent::reconcile::storage::ManagedStorage;
use meridian_agent::reconcile::{
    Clock, ManagedSwitch, RetryPolicy, ServerDrivers, ServerSpec, SiteReconciler,
    SiteReconcilerConfig, SwitchLayout,
};
use meridian_common::model::{GpuModel, Ipv4Net, MigConfig, Server};
use meridian_drivers::bmc::{RedfishBmc, RedfishConfig};
use meridian_drivers::dpu::{BlueFieldDpu, DpuMode as WantedMode};
use meridian_drivers::gateway::DEFAULT_TABLE;
use meridian_drivers::gpu::GpuInventory;
use meridian_drivers::nvue::{NvueClient, NvueConfig};
use meridian_drivers::storage::{OntapArray, OntapConfig};
use meridian_drivers::{NetlinkHost, NftGateway, WanGateway};
use serde_json::Value;

use meridian_emulators::nvml::{FakeGpu, FakeNvml};
use meridian_emulators::nvue::{NvueEmulator, NvueEmulatorConfig};
use meridian_emulators::ontap::{OntapEmulator, OntapEmulatorConfig};
use meridian_emulators::redfish::{BmcEmulator, BmcEmulatorError, BmcProfile, DpuMode, RunningBmc};

/// How long the emulated BMCs take per power phase (real ones: tens of seconds).
pub const POWER_DELAY: Duration = Duration::from_millis(200);

/// How long an emulated DPU takes to reset (real ones: minutes).
pub const DPU_RESET_DELAY: Duration = Duration::from_millis(100);

/// How long each state of an emulated switch's revision apply lasts (real ones: seconds).
pub const SWITCH_STEP_DELAY: Duration = Duration::from_millis(20);

/// Why a site's hardware could not be emulated.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("cannot start a BMC emulator")]
    Bmc(#[from] BmcEmulatorError),
    #[error("cannot start the NVUE switch emulator")]
    Switch(#[source] std::io::Error),
    #[error("cannot start the ONTAP storage emulator")]
    Storage(#[source] std::io::Error),
    #[error("cannot make the site's gateway namespace: {0}")]
    Gateway(String),
}

/// The name NVML gives a GPU model, and its memory in GiB.
fn nvml_name(model: GpuModel) -> (&'static str, u64) {
    match model {
        GpuModel::A100_40GB => ("NVIDIA A100-SXM4-40GB", 40),
        GpuModel::A100_80GB => ("NVIDIA A100-SXM4-80GB", 80),
        GpuModel::H100_80GB => ("NVIDIA H100 80GB HBM3", 80),
        GpuModel::H100_94GB => ("NVIDIA H100 NVL", 94),
        GpuModel::H200_141GB => ("NVIDIA H200", 141),
        GpuModel::A30_24GB => ("NVIDIA A30", 24),
        GpuModel::L40S => ("NVIDIA L40S", 48),
        GpuModel::L4 => ("NVIDIA L4", 24),
    }
}

/// GPUs the fake sets up MIG on: the 80 GB family, whose profiles it knows.
fn fake_mig(model: GpuModel) -> bool {
    matches!(model, GpuModel::A100_80GB | GpuModel::H100_80GB)
}

/// Why the reconciler over a site's hardware could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReconcilerError {
    #[error("Redfish driver")]
    Bmc(#[from] meridian_drivers::BmcError),
    #[error("BlueField driver")]
    Dpu(#[from] meridian_drivers::dpu::DpuError),
    #[error("NVUE driver")]
    Switch(#[from] meridian_drivers::FabricError),
    #[error("ONTAP driver")]
    Storage(#[from] meridian_drivers::StorageError),
}

/// One emulated server.
#[derive(Debug)]
pub struct EmulatedServer {
    pub server: Server,
    pub bmc: RunningBmc,
    pub gpus: Arc<FakeNvml>,
    /// Its BlueField-3 DPU's BMC.
    pub dpu: RunningBmc,
    /// Whether the DPU started in NIC mode.
    pub dpu_started_as_nic: bool,
    /// Its access bond on the site's switch, and the bond's member port.
    pub bond: (String, String),
}

/// A site's emulated servers and leaf switch.
#[derive(Debug)]
pub struct SiteHardware {
    pub servers: Vec<EmulatedServer>,
    /// The leaf switch every server is cabled to.
    pub switch: NvueEmulator,
    /// The switch's VTEP address.
    pub vtep: Ipv4Addr,
    /// The site's gateway node, in a network namespace of its own (only when run as root).
    pub gateway: Option<GatewayNode>,
    /// The site's storage array (tenant volumes), sized as the site's record says.
    pub array: OntapEmulator,
}

/// A site's gateway node emulated by a network namespace of its own: a `wan0` holding
/// the first address of the site's gateway range. The agent's real netlink and nftables
/// drivers keep it as the site's intent asks (tenant bridges, tables, rules; every exposure
/// published). Deleted with everything in it when dropped.
#[derive(Debug)]
pub struct GatewayNode {
    pub netns: String,
    pub layout: GatewayLayout,
}

impl GatewayNode {
    /// Makes namespace `netns` for a site whose gateway range is `public` and whose leaf
    /// switch has VTEP `leaf_vtep`.
    pub fn create(
        netns: String,
        public: Ipv4Net,
        leaf_vtep: Ipv4Addr,
    ) -> Result<GatewayNode, HardwareError> {
        let egress = Ipv4Addr::from(u32::from(public.addr()) + 1);
        let next_hop = Ipv4Addr::from(u32::from(public.broadcast()) - 1);
        let [_, _, hi, lo] = leaf_vtep.octets();
        let node = GatewayNode {
            layout: GatewayLayout {
                wan_interface: "wan0".into(),
                wan_next_hop: next_hop,
                egress_address: egress,
                underlay_address: Ipv4Addr::new(10, 254, hi, lo),
                leaf_vteps: vec![leaf_vtep],
                public_range: Some(public),
            },
            netns,
        };
        let ns = node.netns.as_str();
        let wan = format!("{egress}/{}", public.prefix_len());
        for args in [
            vec!["ip", "netns", "add", ns],
            vec!["ip", "-n", ns, "link", "set", "lo", "up"],
            // A veth pair inside the namespace stands for the WAN link (this kernel may lack the
            // dummy device).
            vec![
                "ip", "-n", ns, "link", "add", "wan0", "type", "veth", "peer", "name", "wanp",
            ],
            vec!["ip", "-n", ns, "link", "set", "wanp", "up"],
            vec!["ip", "-n", ns, "addr", "add", &wan, "dev", "wan0"],
            vec!["ip", "-n", ns, "link", "set", "wan0", "up"],
        ] {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .map_err(|e| HardwareError::Gateway(format!("{}: {e}", args.join(" "))))?;
            if !out.status.success() {
                return Err(HardwareError::Gateway(format!(
                    "{}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(node)
    }

    /// The agent's drivers for it.
    pub fn managed(&self) -> ManagedGateway {
        ManagedGateway {
            host: Arc::new(NetlinkHost::new(Some(self.netns.clone()), "")),
            wan: Arc::new(NftGateway::new(DEFAULT_TABLE, Some(self.netns.clone()))),
            layout: self.layout.clone(),
        }
    }

    /// Endpoints its ruleset publishes now (its DNAT rules), read from the kernel.
    pub async fn published(&self) -> usize {
        NftGateway::new(DEFAULT_TABLE, Some(self.netns.clone()))
            .counters()
            .await
            .ok()
            .flatten()
            .map_or(0, |c| {
                c.packets.keys().filter(|k| k.contains(" dnat ")).count()
            })
    }
}

impl Drop for GatewayNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// What a site's emulated switch carries (read from its applied configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchView {
    /// Tenant VRFs (every VRF but `default` and `mgmt`).
    pub vrfs: Vec<String>,
    /// Bonds with an access VLAN: (bond, VLAN).
    pub bonds_in_vlans: Vec<(String, u64)>,
}

impl SwitchView {
    /// The view of an applied NVUE tree.
    pub fn of(applied: &Value) -> SwitchView {
        let vrfs = applied["vrf"]
            .as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| *k != "default" && *k != "mgmt")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let bonds_in_vlans = applied["interface"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v["type"] == "bond")
                    .filter_map(|(k, v)| {
                        v["bridge"]["domain"]["br_default"]["access"]
                            .as_u64()
                            .map(|vlan| (k.clone(), vlan))
                    })
                    .collect()
            })
            .unwrap_or_default();
        SwitchView {
            vrfs,
            bonds_in_vlans,
        }
    }
}

impl SiteHardware {
    /// Starts an emulated BMC, DPU BMC and fake GPUs for each of `servers` and the site's
    /// switch (`gpu_serial` numbers the fake GPUs' UUIDs, unique over the simulation;
    /// `site_number` gives the switch its VTEP address).
    pub async fn start(
        servers: &[Server],
        gpu_serial: &mut u32,
        site_number: usize,
        gateway: Option<(String, Ipv4Net)>,
        storage_mib: u64,
    ) -> Result<SiteHardware, HardwareError> {
        let array = OntapEmulator::start(OntapEmulatorConfig {
            aggregate_size: storage_mib.saturating_mul(1 << 20),
            job_delay: Duration::from_millis(5),
            ..OntapEmulatorConfig::default()
        })
        .map_err(HardwareError::Storage)?;
        let switch = NvueEmulator::start(NvueEmulatorConfig {
            step_delay: SWITCH_STEP_DELAY,
            ..NvueEmulatorConfig::default()
        })
        .map_err(HardwareError::Switch)?;
        let n = u16::try_from(site_number % 65_536).expect("below 65536");
        let [hi, lo] = n.to_be_bytes();
        let vtep = Ipv4Addr::new(10, 255, hi, lo);
        let mut out = Vec::with_capacity(servers.len());
        for (k, server) in servers.iter().enumerate() {
            let names: Vec<&str> = server.gpus.iter().map(|g| nvml_name(g.model).0).collect();
            let bmc = BmcEmulator::new(BmcProfile::gpu_server(names))
                .power_delay(POWER_DELAY)
                .start()
                .await?;
            let gpus = server
                .gpus
                .iter()
                .map(|g| {
                    *gpu_serial += 1;
                    let (name, memory) = nvml_name(g.model);
                    let mig = fake_mig(g.model);
                    let mut fake = FakeGpu::model(*gpu_serial, name, memory, mig);
                    if let (true, MigConfig::Enabled { instances }) = (mig, &g.mig) {
                        fake = fake.mig_enabled();
                        for (slot, instance) in instances.iter().enumerate() {
                            fake = fake.with_mig_device(slot as u32, instance.profile.name());
                        }
                    }
                    fake
                })
                .collect();
            let nic = k % 4 == 3;
            let dpu = BmcEmulator::new(BmcProfile::bluefield3().dpu_mode(if nic {
                DpuMode::NicMode
            } else {
                DpuMode::DpuMode
            }))
            .power_delay(DPU_RESET_DELAY)
            .start()
            .await?;
            out.push(EmulatedServer {
                server: server.clone(),
                bmc,
                gpus: Arc::new(FakeNvml::with_gpus(gpus)),
                dpu,
                dpu_started_as_nic: nic,
                bond: (format!("bond{}", k + 1), format!("swp{}", k + 1)),
            });
        }
        let gateway = gateway
            .map(|(netns, public)| GatewayNode::create(netns, public, vtep))
            .transpose()?;
        Ok(SiteHardware {
            servers: out,
            switch,
            vtep,
            gateway,
            array,
        })
    }

    /// What the switch carries now.
    pub fn switch_view(&self) -> SwitchView {
        SwitchView::of(&self.switch.applied())
    }

    /// DPUs in DPU mode now.
    pub fn dpus_in_dpu_mode(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.dpu.dpu_mode() == Some(DpuMode::DpuMode))
            .count()
    }

    /// The agent's site reconciler over this hardware: the real Redfish driver against each
    /// server's emulated BMC, the real BlueField driver against its DPU's (wanting DPU mode),
    /// the fake NVML as the GPU driver and the real NVUE driver against the switch; converged
    /// servers and the switch are looked at again every `resync`.
    pub fn reconciler(
        &self,
        resync: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<SiteReconciler, ReconcilerError> {
        let redfish = |bmc: &RunningBmc| {
            let (user, password) = bmc.credentials();
            let mut cfg = RedfishConfig::new(bmc.url(), user, password);
            cfg.request_timeout = Duration::from_secs(10);
            cfg.poll_interval = Duration::from_millis(50);
            cfg.power_timeout = Duration::from_secs(60);
            cfg.media_timeout = Duration::from_secs(60);
            cfg.task_timeout = Duration::from_secs(60);
            cfg
        };
        let mut specs = Vec::with_capacity(self.servers.len());
        for s in &self.servers {
            let gpus: Arc<dyn GpuInventory> = s.gpus.clone();
            specs.push(ServerSpec {
                id: s.server.id.clone(),
                bmc_url: s.bmc.url(),
                drivers: ServerDrivers {
                    bmc: Arc::new(RedfishBmc::new(redfish(&s.bmc))?),
                    gpus: Some(gpus),
                    dpu: Some(ManagedDpu {
                        driver: Arc::new(BlueFieldDpu::new(redfish(&s.dpu))?),
                        want: DpuWant {
                            mode: WantedMode::Dpu,
                            bfb: None,
                        },
                    }),
                },
            });
        }
        let defaults = NvueEmulatorConfig::default();
        let mut nvue = NvueConfig::new(self.switch.url(), defaults.username, defaults.password);
        nvue.request_timeout = Duration::from_secs(10);
        nvue.poll_interval = Duration::from_millis(20);
        nvue.apply_timeout = Duration::from_secs(60);
        let switch = ManagedSwitch {
            name: "leaf-1".into(),
            driver: Arc::new(NvueClient::new(nvue)?),
            layout: SwitchLayout {
                vtep: self.vtep,
                asn: 65_000
                    + u32::from(
                        u16::from_be_bytes([self.vtep.octets()[2], self.vtep.octets()[3]]) % 1_000,
                    ),
                uplinks: vec!["swp31".into(), "swp32".into()],
                private_range: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("valid"),
                l3_vni_base: DEFAULT_L3_VNI_BASE,
                svi_offset: 1,
                ports: self
                    .servers
                    .iter()
                    .map(|s| {
                        (
                            s.server.id.clone(),
                            (s.bond.0.clone(), vec![s.bond.1.clone()]),
                        )
                    })
                    .collect(),
            },
        };
        let config = SiteReconcilerConfig {
            retry: RetryPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                ..RetryPolicy::default()
            },
            resync,
            power_poll: Duration::from_millis(50),
            transition_timeout: Duration::from_secs(60),
        };
        let a = self.array.config();
        let mut ontap =
            OntapConfig::new(self.array.url(), a.username, a.password, a.svm, a.aggregate);
        ontap.job_poll = Duration::from_millis(10);
        ontap.request_timeout = Duration::from_secs(10);
        let storage = ManagedStorage {
            array: Arc::new(OntapArray::new(ontap)?),
        };
        Ok(SiteReconciler::with_resources(
            specs,
            vec![switch],
            self.gateway.as_ref().map(GatewayNode::managed),
            config,
            clock,
        )
        .with_storage(Some(storage)))
    }

    /// GPUs of these servers.
    pub fn gpus(&self) -> usize {
        self.servers.iter().map(|s| s.server.gpus.len()).sum()
    }

    /// Stops the BMC emulator of server `index` (it refuses connections from now on, as a
    /// server that lost power or its network would); the server stays in the list.
    pub async fn stop_bmc(&mut self, index: usize) {
        if let Some(s) = self.servers.get_mut(index) {
            s.bmc.stop().await;
        }
    }

    /// Stops every emulator.
    pub async fn shutdown(self) {
        for s in self.servers {
            s.bmc.shutdown().await;
            s.dpu.shutdown().await;
        }
        drop(self.switch);
    }
}
