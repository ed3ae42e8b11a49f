//! Driver wiring: the one place where the agent's configuration becomes drivers. Every
//! `[[servers]]` table gets a Redfish BMC driver, its DPU a BlueField driver and its GPUs the
//! chosen inventory; every `[[switches]]` table an NVUE client; `[gateway]` the netlink host
//! driver and the nftables gateway driver of the gateway node; every `[[host_network]]` a
//! netlink host driver of that container/VM host; and they are handed to the site
//! reconciler. Building reads the credential, CA and base-configuration files the
//! configuration names, so call it before binding anything: an error is a configuration error
//! naming the key. A new kind of driver is wired here and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use meridian_common::config::ConfigError;
use meridian_drivers::bmc::{AuthMode, RedfishBmc, RedfishConfig};
use meridian_drivers::dpu::{BfbImage, BlueFieldDpu, DpuMode};
use meridian_drivers::gpu::{GpuInventory, NvmlInventory};
use meridian_drivers::http_client::TlsTrust;
use meridian_drivers::nvue::{NvueClient, NvueConfig};
use meridian_drivers::storage::{OntapArray, OntapConfig};
use meridian_drivers::{NetlinkHost, NftGateway};

use crate::config::{
    Access, AgentConfig, DpuModeConfig, GatewayConfig, GpuInventoryKind, HostNetworkConfig,
    ReconcilerConfig, ServerConfig, StorageConfig, SwitchConfig, read_file,
};
use crate::reconcile::desired::{BfbWant, DpuWant};
use crate::reconcile::fabric::{ManagedSwitch, SwitchLayout};
use crate::reconcile::gateway::{GatewayLayout, ManagedGateway};
use crate::reconcile::host::ManagedHost;
use crate::reconcile::server::ManagedDpu;
use crate::reconcile::storage::ManagedStorage;
use crate::reconcile::{
    RetryPolicy, ServerDrivers, ServerSpec, SiteReconciler, SiteReconcilerConfig, SystemClock,
};

/// The site reconciler over the configured servers and switches, with Redfish BMC drivers,
/// the chosen GPU driver and NVUE switch drivers; `None` when neither servers nor switches
/// are configured.
pub fn site_reconciler(config: &AgentConfig) -> Result<Option<SiteReconciler>, ConfigError> {
    if config.servers.is_empty()
        && config.switches.is_empty()
        && config.gateway.is_none()
        && config.storage.is_none()
    {
        return Ok(None);
    }
    let r = &config.reconciler;
    let mut nvml: Option<Arc<dyn GpuInventory>> = None;
    let mut specs = Vec::new();
    for (i, s) in config.servers.iter().enumerate() {
        let key = |k: &str| format!("servers[{i}].{k}");
        let mut cfg = redfish(&s.access(), &key, r)?;
        cfg.system = s.system.clone();
        let bmc = RedfishBmc::new(cfg)
            .map_err(|e| ConfigError::invalid(key("bmc_url"), e.to_string()))?;
        let gpus = match s.gpu_inventory {
            GpuInventoryKind::None => None,
            GpuInventoryKind::Nvml => Some(
                nvml.get_or_insert_with(|| Arc::new(NvmlInventory::open(Some(&r.nvml_library))))
                    .clone(),
            ),
        };
        let dpu = match &s.dpu {
            None => None,
            Some(d) => {
                let dkey = |k: &str| format!("servers[{i}].dpu.{k}");
                let driver = BlueFieldDpu::new(redfish(&d.access(), &dkey, r)?)
                    .map_err(|e| ConfigError::invalid(dkey("bmc_url"), e.to_string()))?;
                let bfb = match (&d.bfb_url, &d.bfb_version) {
                    (Some(url), Some(version)) => Some(BfbWant {
                        image: BfbImage {
                            url: url.clone(),
                            credentials: None,
                        },
                        version: version.clone(),
                    }),
                    _ => None,
                };
                Some(ManagedDpu {
                    driver: Arc::new(driver),
                    want: DpuWant {
                        mode: match d.mode {
                            DpuModeConfig::Dpu => DpuMode::Dpu,
                            DpuModeConfig::Nic => DpuMode::Nic,
                        },
                        bfb,
                    },
                })
            }
        };
        specs.push(ServerSpec {
            id: s.id.clone(),
            bmc_url: s.bmc_url.clone(),
            drivers: ServerDrivers {
                bmc: Arc::new(bmc),
                gpus,
                dpu,
            },
        });
    }
    let settings = SiteReconcilerConfig {
        retry: RetryPolicy {
            initial: Duration::from_millis(r.retry_initial_ms),
            max: Duration::from_millis(r.retry_max_ms),
            transient_attempts: r.transient_attempts,
            permanent_attempts: r.permanent_attempts,
        },
        resync: Duration::from_millis(r.resync_ms),
        power_poll: Duration::from_millis(r.power_poll_ms),
        transition_timeout: Duration::from_millis(r.bmc_operation_timeout_ms),
    };
    let switches = switches(&config.switches, &config.servers, r)?;
    let gateway = config
        .gateway
        .as_ref()
        .map(|g| gateway(g, &config.switches))
        .transpose()?;
    let hosts = config
        .host_network
        .iter()
        .enumerate()
        .map(|(i, h)| host(i, h))
        .collect::<Result<Vec<_>, _>>()?;
    let storage = config.storage.as_ref().map(|s| storage(s, r)).transpose()?;
    Ok(Some(
        SiteReconciler::with_resources(specs, switches, gateway, settings, Arc::new(SystemClock))
            .with_hosts(hosts)
            .with_storage(storage)
            .with_utilisation(config.utilisation()),
    ))
}

/// The storage array's ONTAP driver (reads the credential and CA files).
fn storage(s: &StorageConfig, r: &ReconcilerConfig) -> Result<ManagedStorage, ConfigError> {
    let key = |k: &str| format!("storage.{k}");
    let access = s.access();
    let (username, password) = access.credentials(&key)?;
    let mut cfg = OntapConfig::new(
        s.url.clone(),
        username,
        password,
        s.svm.clone(),
        s.aggregate.clone(),
    );
    cfg.tls_roots = access.roots(&key)?.unwrap_or_default();
    cfg.request_timeout = Duration::from_millis(r.bmc_request_timeout_ms);
    cfg.job_timeout = Duration::from_millis(r.bmc_operation_timeout_ms);
    let array =
        OntapArray::new(cfg).map_err(|e| ConfigError::invalid(key("url"), e.to_string()))?;
    Ok(ManagedStorage {
        array: Arc::new(array),
    })
}

/// The Redfish driver's settings (reads the credential and CA files).
fn redfish(
    access: &Access<'_>,
    key: &dyn Fn(&str) -> String,
    r: &ReconcilerConfig,
) -> Result<RedfishConfig, ConfigError> {
    let (username, password) = access.credentials(key)?;
    let mut cfg = RedfishConfig::new(access.url.to_owned(), username, password);
    cfg.tls = if access.tls_insecure {
        Some(TlsTrust::InsecureAcceptAny)
    } else {
        access.roots(key)?.map(TlsTrust::Roots)
    };
    cfg.auth = if access.basic_auth {
        AuthMode::Basic
    } else {
        AuthMode::SessionThenBasic
    };
    cfg.request_timeout = Duration::from_millis(r.bmc_request_timeout_ms);
    cfg.attempts = r.bmc_attempts;
    cfg.power_timeout = Duration::from_millis(r.bmc_operation_timeout_ms);
    cfg.media_timeout = Duration::from_millis(r.bmc_operation_timeout_ms);
    Ok(cfg)
}

/// The switch drivers and layouts (reads the credential, CA and base-configuration files).
fn switches(
    switches: &[SwitchConfig],
    servers: &[ServerConfig],
    r: &ReconcilerConfig,
) -> Result<Vec<ManagedSwitch>, ConfigError> {
    let mut out = Vec::with_capacity(switches.len());
    for (i, s) in switches.iter().enumerate() {
        let key = |k: &str| format!("switches[{i}].{k}");
        let access = s.access();
        let (username, password) = access.credentials(&key)?;
        let mut cfg = NvueConfig::new(s.nvue_url.clone(), username, password);
        cfg.tls_roots = access.roots(&key)?.unwrap_or_default();
        if let Some(file) = &s.base_config_file {
            let text = read_file(key("base_config_file"), file)?;
            cfg.base = serde_json::from_slice(&text).map_err(|e| {
                ConfigError::invalid(key("base_config_file"), format!("{}: {e}", file.display()))
            })?;
        }
        cfg.request_timeout = Duration::from_millis(r.bmc_request_timeout_ms);
        cfg.attempts = r.bmc_attempts;
        cfg.apply_timeout = Duration::from_millis(r.bmc_operation_timeout_ms);
        let driver = NvueClient::new(cfg)
            .map_err(|e| ConfigError::invalid(key("nvue_url"), e.to_string()))?;
        let ports = servers
            .iter()
            .filter_map(|srv| {
                let p = srv.switch.as_ref().filter(|p| p.name == s.name)?;
                Some((srv.id.clone(), (p.bond.clone(), p.ports.clone())))
            })
            .collect();
        out.push(ManagedSwitch {
            name: s.name.clone(),
            driver: Arc::new(driver),
            layout: SwitchLayout {
                vtep: s.vtep,
                asn: s.asn,
                uplinks: s.uplinks.clone(),
                private_range: s.private_range,
                l3_vni_base: s.l3_vni_base,
                svi_offset: s.svi_offset,
                ports,
            },
        });
    }
    Ok(out)
}

/// A container/VM host's netlink driver. Its namespace (when named) and uplink must exist now.
fn host(i: usize, h: &HostNetworkConfig) -> Result<ManagedHost, ConfigError> {
    let key = |k: &str| format!("host_network[{i}].{k}");
    require_link(h.netns.as_deref(), &key("netns"), &h.uplink, &key("uplink"))?;
    Ok(ManagedHost {
        server: h.server.clone(),
        uplink: h.uplink.clone(),
        driver: Arc::new(NetlinkHost::new(h.netns.clone(), h.tenant_netns_prefix())),
    })
}

/// Refuses a namespace `netns` (when named) that does not exist, naming `netns_key`, and an
/// interface `link` that is not in it, naming `link_key`.
fn require_link(
    netns: Option<&str>,
    netns_key: &str,
    link: &str,
    link_key: &str,
) -> Result<(), ConfigError> {
    if let Some(ns) = netns
        && !std::path::Path::new("/run/netns").join(ns).exists()
    {
        return Err(ConfigError::invalid(
            netns_key,
            format!("no network namespace {ns} (/run/netns/{ns} does not exist)"),
        ));
    }
    let mut ip = std::process::Command::new("ip");
    if let Some(ns) = netns {
        ip.args(["-n", ns]);
    }
    let found = ip
        .args(["-o", "link", "show", "dev", link])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            ConfigError::invalid(
                link_key,
                format!("cannot run `ip` to look for it (is iproute2 installed?): {e}"),
            )
        })?
        .success();
    if !found {
        return Err(ConfigError::invalid(
            link_key,
            format!(
                "no interface {link} {}",
                netns.map_or("on this node".to_owned(), |ns| format!("in namespace {ns}"))
            ),
        ));
    }
    Ok(())
}

/// The gateway node's drivers (netlink and nftables, in `netns` when one is named) and layout.
/// The namespace and the WAN interface must exist now: a typo is a configuration error, not a
/// reconcile failure later.
fn gateway(g: &GatewayConfig, switches: &[SwitchConfig]) -> Result<ManagedGateway, ConfigError> {
    require_link(
        g.netns.as_deref(),
        "gateway.netns",
        &g.wan_interface,
        "gateway.wan_interface",
    )?;
    Ok(ManagedGateway {
        // The gateway owns no workload namespaces: an empty prefix deletes none.
        host: Arc::new(NetlinkHost::new(g.netns.clone(), "")),
        wan: Arc::new(NftGateway::new(g.nft_table.clone(), g.netns.clone())),
        layout: GatewayLayout {
            wan_interface: g.wan_interface.clone(),
            wan_next_hop: g.wan_next_hop,
            egress_address: g.egress_address,
            underlay_address: g.underlay_address,
            leaf_vteps: g.leaf_vteps(switches),
            public_range: g.public_range,
        },
    })
}
