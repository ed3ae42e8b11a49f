//! [`HostNetwork`] over netlink (`rtnetlink` / `netlink-packet-route`).
//!
//! Per tenant on a node: a bridge `mbr<vni>`, a VXLAN device `mvx<vni>` (the VNI, the node's
//! VTEP address as local address, UDP port 4789, MAC learning on, one all-zeros FDB entry per
//! remote VTEP for head-end replication of broadcast and unknown unicast) enslaved to it, and,
//! where the node hosts a workload of the tenant, a veth pair `mvh<vni>`/`mvp<vni>` whose peer
//! lives in the tenant's network namespace with the workload address and a default route via
//! the tenant gateway.
//!
//! On a node with the [`RouterRole`] (the site gateway), each tenant's gateway address sits on
//! its bridge, and the tenant is separated by routing tables and rules, because this kernel
//! has no VRF devices: rule `iif mbr<vni> lookup <table>` (explicit to-table action), followed
//! at the next priority by `iif mbr<vni> unreachable`, so a tenant's packets never fall
//! through to the main table where the other tenants' connected routes live. Table `<table>`
//! holds the tenant subnet on its bridge and the default route to the WAN.
//!
//! # Across sites
//!
//! A tenant spread over several sites has its sites joined gateway to gateway by a routed
//! VXLAN tunnel of its own over the WAN. On the gateway node, a tenant with [`HostPeer`]s (its
//! subnets at other sites, each behind that site's gateway at a tunnel endpoint) gets a VXLAN
//! device `msx<vni>`: the tenant's VNI, the node's WAN address ([`RouterRole::tunnel_endpoint`])
//! as local address, UDP port [`SITE_TUNNEL_PORT`] (8472: the same VNI already runs on 4789 in
//! `mvx<vni>`, and Linux refuses two VXLAN devices with one VNI on one port), learning on, MTU
//! 1450, one all-zeros FDB entry per peer endpoint. It is a layer-3 device, in no bridge: it
//! holds the tenant's gateway address as a /32 (so its ARP speaks with the tenant's own
//! address), the tenant's table routes each peer subnet `via <peer gateway> dev msx<vni>
//! onlink`, and the rules `iif msx<vni> lookup <table>` / `iif msx<vni> unreachable` (at the
//! bridge rules' priorities) keep what comes out of the tunnel in the tenant's table. Every
//! tenant's table prohibits the other tenants' peer subnets as it does their local ones.
//!
//! Reverse-path filtering: a cross-site packet's source is routable only through the tenant's
//! table, which the kernel's source check does not consult (it looks up with `iif lo`), so
//! the driver sets `net.ipv4.conf.msx<vni>.rp_filter` to 0 and refuses to build tunnels while
//! `net.ipv4.conf.all.rp_filter` is not 0 (the kernel uses the larger of the two), with an
//! error saying so ([`HostNetworkError::RpFilter`]): the node-wide setting is the operator's.
//!
//! # Access mode
//!
//! A host cabled to a leaf switch whose uplink port sits in its tenant's segment (the switch
//! does the VXLAN) is driven with [`HostNetworkSpec::access_port`]: the tenant's bridge gets
//! that port instead of a VXLAN device, and the workload's veth as usual. An untagged port is
//! in one segment, so such a node carries at most one tenant. When the tenant goes, the port
//! is released (deleting the bridge releases it; it is the host's NIC and is never deleted).
//!
//! Every step reads the kernel state first, compares, and only then adds, replaces or
//! deletes, so applying the same spec twice reports no change. Tenants that disappear from
//! the spec are removed with all their devices, routes, rules and namespaces.
//!
//! Netlink sockets act in the namespace they were created in. The driver opens them on a
//! short-lived thread that first enters the target namespace with `setns(2)` (nix's safe
//! wrapper, so no `unsafe` here); namespaces are created and deleted with `ip netns`, because
//! rtnetlink's `NetworkNamespace::add` forks, which is unsound in a threaded process.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use tokio::process::Command;

use futures_util::{StreamExt, TryStreamExt};
use meridian_common::model::{Ipv4Net, TenantNetworkIntent};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::sys::{AsyncSocket, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, IpVersion, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan};

use crate::{ChangeReport, HostNetwork};

/// The IANA VXLAN port, always set explicitly (0 would mean Linux's legacy 8472).
pub const VXLAN_PORT: u16 = 4789;
/// UDP port of the site-to-site tunnels `msx<vni>`: Linux's legacy VXLAN port. It must differ
/// from [`VXLAN_PORT`], because the tenant's VNI already runs on that port in `mvx<vni>` and Linux
/// refuses two VXLAN devices with the same VNI and port.
pub const SITE_TUNNEL_PORT: u16 = 8472;
/// MTU of tenant devices: a 1500-byte underlay less the 50 bytes of VXLAN encapsulation.
pub const TENANT_MTU: u32 = 1450;
/// Default priority of the per-tenant to-table rules (the unreachable rule uses the next).
pub const DEFAULT_RULE_PRIORITY: u32 = 1000;
const NETNS_DIR: &str = "/run/netns";
const RP_FILTER_ALL: &str = "/proc/sys/net/ipv4/conf/all/rp_filter";

/// Why the host network could not be converged.
#[derive(Debug, thiserror::Error)]
pub enum HostNetworkError {
    /// A netlink request failed.
    #[error("netlink: cannot {what}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// A network namespace could not be opened or entered.
    #[error("cannot enter network namespace {name} (does /run/netns/{name} exist?)")]
    Namespace {
        /// The namespace.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command could not run.
    #[error("cannot run `{command}` (is iproute2 installed?)")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
    /// A sysctl could not be read or written.
    #[error("cannot read or write sysctl {path}")]
    Sysctl {
        /// The /proc/sys path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The spec is inconsistent.
    #[error("invalid host network spec: {0}")]
    Spec(String),
    /// Site-to-site tunnels are wanted but the node filters reverse paths.
    #[error(
        "net.ipv4.conf.all.rp_filter is {value} on the gateway node{}: site-to-site tunnels \
         need it 0 (a packet from a tenant's other site has a source routable only in the \
         tenant's table, which reverse-path filtering does not consult; the driver sets \
         rp_filter 0 on its msx devices, and the kernel applies the larger of the two): \
         set net.ipv4.conf.all.rp_filter=0",
        netns.as_deref().map(|n| format!(" (namespace {n})")).unwrap_or_default()
    )]
    RpFilter {
        /// The node's namespace (`None`: the agent's own).
        netns: Option<String>,
        /// The value found.
        value: String,
    },
    /// The worker thread died.
    #[error("the netlink worker thread panicked")]
    Worker,
}

/// One tenant on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTenant {
    /// The tenant's network (VNI, table, subnet, gateway) from the site intent.
    pub network: TenantNetworkIntent,
    /// VTEP addresses of the other nodes carrying this tenant (flood list).
    pub remote_vteps: Vec<Ipv4Addr>,
    /// The address of this node's workload of the tenant, if it hosts one; the workload gets
    /// its own network namespace joined to the tenant bridge by a veth pair.
    pub workload: Option<Ipv4Addr>,
    /// The tenant's subnets at its other sites, reached through the site-to-site tunnel
    /// `msx<vni>` (only with the [`RouterRole`] and its `tunnel_endpoint`).
    pub peers: Vec<HostPeer>,
}

/// A tenant's subnet at another site, behind that site's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPeer {
    /// The other site's tunnel endpoint (its gateway node's WAN address).
    pub endpoint: Ipv4Addr,
    /// The tenant's subnet there.
    pub subnet: Ipv4Net,
    /// The tenant's gateway address there: the next hop through the tunnel.
    pub gateway: Ipv4Addr,
}

/// The gateway role: the node routes tenant traffic to and from the WAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterRole {
    /// The WAN-facing device.
    pub uplink: String,
    /// The WAN next hop for tenant egress (the default route of every tenant table).
    pub next_hop: Ipv4Addr,
    /// This node's WAN address: the local end of every site-to-site tunnel. Needed by tenants
    /// with [`HostTenant::peers`].
    pub tunnel_endpoint: Option<Ipv4Addr>,
}

/// Everything this node's tenant networking must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetworkSpec {
    /// This node's VTEP (underlay) address (unused in access mode).
    pub vtep: Ipv4Addr,
    /// The tenants carried by this node.
    pub tenants: Vec<HostTenant>,
    /// Set on the site's gateway node.
    pub router: Option<RouterRole>,
    /// Access mode: the node's uplink port, which sits in its tenant's segment on the leaf
    /// switch (the switch does the VXLAN). The tenant's bridge gets this existing port instead
    /// of a VXLAN device; at most one tenant may be carried so.
    pub access_port: Option<String>,
}

/// The real [`HostNetwork`]: netlink into the node's network namespace.
#[derive(Debug, Clone)]
pub struct NetlinkHost {
    netns: Option<String>,
    tenant_netns_prefix: String,
    rule_priority: u32,
}

impl NetlinkHost {
    /// A driver for the node's namespace `netns` (`None`: the agent's own). Tenant workload
    /// namespaces are named `<tenant_netns_prefix><tenant>`; the prefix also marks which
    /// namespaces the driver owns (and may delete).
    pub fn new(netns: Option<String>, tenant_netns_prefix: impl Into<String>) -> Self {
        Self {
            netns,
            tenant_netns_prefix: tenant_netns_prefix.into(),
            rule_priority: DEFAULT_RULE_PRIORITY,
        }
    }

    /// Uses `priority` (and `priority + 1`) for the per-tenant rules.
    pub fn with_rule_priority(mut self, priority: u32) -> Self {
        self.rule_priority = priority;
        self
    }

    /// The name of a tenant's workload namespace on this node.
    pub fn tenant_netns(&self, network: &TenantNetworkIntent) -> String {
        format!("{}{}", self.tenant_netns_prefix, network.tenant)
    }

    /// Device names of a tenant with VNI `vni`: (bridge, vxlan, host veth, namespace veth).
    pub fn device_names(vni: u32) -> (String, String, String, String) {
        (
            format!("mbr{vni}"),
            format!("mvx{vni}"),
            format!("mvh{vni}"),
            format!("mvp{vni}"),
        )
    }

    /// The name of the site-to-site tunnel device of a tenant with VNI `vni`.
    pub fn tunnel_name(vni: u32) -> String {
        format!("msx{vni}")
    }

    /// Whether tenant `t` gets a site-to-site tunnel on this node, and its local end.
    fn tunnel_local(spec: &HostNetworkSpec, t: &HostTenant) -> Option<Ipv4Addr> {
        spec.router
            .as_ref()
            .and_then(|r| r.tunnel_endpoint)
            .filter(|_| !t.peers.is_empty())
    }

    fn check(&self, spec: &HostNetworkSpec) -> Result<(), HostNetworkError> {
        if let (Some(port), [first, second, ..]) = (&spec.access_port, spec.tenants.as_slice()) {
            return Err(HostNetworkError::Spec(format!(
                "access port {port} sits in one tenant's segment, but tenants {} and {} both \
                 want this node",
                first.network.tenant, second.network.tenant
            )));
        }
        let local_end = spec.router.as_ref().and_then(|r| r.tunnel_endpoint);
        let mut vnis = BTreeSet::new();
        let mut tenants = BTreeSet::new();
        for t in &spec.tenants {
            let n = &t.network;
            if n.vni == 0 || n.vni > 0x00FF_FFFF {
                return Err(HostNetworkError::Spec(format!(
                    "VNI {} out of range",
                    n.vni
                )));
            }
            if !vnis.insert(n.vni) || !tenants.insert(n.tenant.clone()) {
                return Err(HostNetworkError::Spec(format!(
                    "tenant {} or VNI {} appears twice",
                    n.tenant, n.vni
                )));
            }
            if matches!(n.table, 0 | 253..=255) {
                return Err(HostNetworkError::Spec(format!(
                    "table {} of tenant {} is reserved",
                    n.table, n.tenant
                )));
            }
            if let Some(w) = t.workload
                && !n.subnet.contains(w)
            {
                return Err(HostNetworkError::Spec(format!(
                    "workload {w} of tenant {} is outside {}",
                    n.tenant, n.subnet
                )));
            }
            check_peers(t, local_end)?;
        }
        Ok(())
    }
}

/// A tenant's peers: only with a tunnel endpoint, each subnet apart from the tenant's own and
/// the other peers', each gateway inside its subnet, no endpoint equal to the local one.
fn check_peers(t: &HostTenant, local_end: Option<Ipv4Addr>) -> Result<(), HostNetworkError> {
    let n = &t.network;
    let spec_err = |what: String| {
        Err(HostNetworkError::Spec(format!(
            "tenant {}: {what}",
            n.tenant
        )))
    };
    if t.peers.is_empty() {
        return Ok(());
    }
    let Some(local) = local_end else {
        return spec_err(
            "peers at other sites need the router role with a tunnel endpoint on this node".into(),
        );
    };
    for (i, p) in t.peers.iter().enumerate() {
        if p.subnet.overlaps(&n.subnet) {
            return spec_err(format!(
                "peer subnet {} overlaps the tenant's subnet {} here",
                p.subnet, n.subnet
            ));
        }
        if let Some(q) = t.peers[..i].iter().find(|q| q.subnet.overlaps(&p.subnet)) {
            return spec_err(format!(
                "peer subnets {} (behind {}) and {} (behind {}) overlap",
                q.subnet, q.endpoint, p.subnet, p.endpoint
            ));
        }
        if !p.subnet.contains(p.gateway) {
            return spec_err(format!(
                "peer gateway {} is outside its subnet {}",
                p.gateway, p.subnet
            ));
        }
        if p.endpoint == local {
            return spec_err(format!(
                "peer {} has this node's own tunnel endpoint {local}",
                p.subnet
            ));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl HostNetwork for NetlinkHost {
    async fn apply(&self, desired: &HostNetworkSpec) -> Result<ChangeReport, HostNetworkError> {
        self.check(desired)?;
        let mut report = ChangeReport::default();
        let node = Netns::open(self.netns.as_deref()).await?;
        if desired
            .tenants
            .iter()
            .any(|t| Self::tunnel_local(desired, t).is_some())
        {
            let value = node.read_sysctl(RP_FILTER_ALL).await?;
            if value != "0" {
                return Err(HostNetworkError::RpFilter {
                    netns: self.netns.clone(),
                    value,
                });
            }
        }
        converge_node(self, &node, desired, &mut report).await?;
        // Workload namespaces: each through a netlink socket opened inside it.
        for t in &desired.tenants {
            if let Some(addr) = t.workload {
                let name = self.tenant_netns(&t.network);
                let (_, _, _, peer) = Self::device_names(t.network.vni);
                let ns = Netns::open(Some(&name)).await?;
                let mut r = ChangeReport::default();
                converge_workload(&ns.handle, &peer, addr, &t.network, &mut r).await?;
                report
                    .changes
                    .extend(r.changes.into_iter().map(|c| format!("{name}: {c}")));
            }
        }
        Ok(report)
    }
}

/// Makes the existing links `ports` of namespace `netns` (`None`: the current one) the ports of
/// bridge `bridge` and brings them up; names that are not links there are skipped. Other ports
/// of the bridge (except the driver's own `mvx*`/`mvh*` devices) are released. Idempotent: an
/// empty report when nothing had to change. Used by the NVUE emulator to attach a switch's
/// access ports to the bridge [`NetlinkHost`] made for a VNI; [`NetlinkHost`] uses the same
/// steps for a host's access port ([`HostNetworkSpec::access_port`]).
pub async fn attach_ports(
    netns: Option<&str>,
    bridge: &str,
    ports: &[String],
) -> Result<ChangeReport, HostNetworkError> {
    let ns = Netns::open(netns).await?;
    let mut r = ChangeReport::default();
    converge_bridge_ports(&ns.handle, bridge, ports, &mut r).await?;
    Ok(r)
}

/// [`attach_ports`] on an open connection.
async fn converge_bridge_ports(
    handle: &Handle,
    bridge: &str,
    ports: &[String],
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let all = links(handle).await?;
    let br = all
        .get(bridge)
        .ok_or_else(|| HostNetworkError::Spec(format!("bridge {bridge} does not exist")))?
        .index;
    for (name, link) in &all {
        let own = name.starts_with("mvx") || name.starts_with("mvh");
        if link.controller == Some(br) && !own && !ports.contains(name) {
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(link.index)
                        .nocontroller()
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("release {name} from {bridge}")))?;
            r.push(format!("release {name} from {bridge}"));
        }
    }
    for name in ports {
        if let Some(link) = all.get(name) {
            ensure_link_state(handle, name, link, None, Some(br), r).await?;
        }
    }
    Ok(())
}

/// One network namespace as the driver reaches it: a netlink connection whose socket was
/// opened inside the namespace (a socket keeps the namespace it was made in) and is driven by
/// the caller's runtime, and the namespace's name for what only a thread inside it can do
/// (its sysctls).
struct Netns {
    name: Option<String>,
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Netns {
    /// Opens a netlink connection into `ns` (`None`: the agent's own namespace).
    async fn open(ns: Option<&str>) -> Result<Self, HostNetworkError> {
        let runtime = tokio::runtime::Handle::current();
        let name = ns.map(str::to_owned);
        let socket = on_netns_thread(name.clone(), move || {
            // The socket registers with the caller's reactor, not a runtime of its own.
            let _entered = runtime.enter();
            <TokioSocket as AsyncSocket>::new(NETLINK_ROUTE)
        })
        .await?
        .map_err(|source| HostNetworkError::Namespace {
            name: name.clone().unwrap_or_default(),
            source,
        })?;
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        Ok(Self {
            name,
            handle,
            connection: tokio::spawn(conn),
        })
    }

    /// Sets `/proc/sys/<path>` to `value` inside this namespace, unless it already is.
    async fn ensure_sysctl(
        &self,
        path: impl Into<String>,
        value: &'static str,
        r: &mut ChangeReport,
    ) -> Result<(), HostNetworkError> {
        let path = path.into();
        let p = path.clone();
        if on_netns_thread(self.name.clone(), move || ensure_sysctl(&p, value)).await?? {
            r.push(format!("sysctl {path}={value}"));
        }
        Ok(())
    }

    /// The value of `/proc/sys/<path>` inside this namespace, trimmed.
    async fn read_sysctl(&self, path: &'static str) -> Result<String, HostNetworkError> {
        on_netns_thread(self.name.clone(), move || {
            std::fs::read_to_string(path)
                .map(|v| v.trim().to_owned())
                .map_err(|source| HostNetworkError::Sysctl {
                    path: path.to_owned(),
                    source,
                })
        })
        .await?
    }
}

/// Runs `f` on a short-lived thread that first enters namespace `ns` (`None`: the current one),
/// and waits for it without blocking the runtime. Entering a namespace changes the calling
/// thread for good, so this never runs on a runtime or blocking-pool thread.
async fn on_netns_thread<T, F>(ns: Option<String>, f: F) -> Result<T, HostNetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let name = ns.clone().unwrap_or_default();
    std::thread::Builder::new()
        .name("meridian-netns".into())
        .spawn(move || {
            let entered = match &ns {
                Some(name) => enter_netns(name),
                None => Ok(()),
            };
            let _ = tx.send(entered.map(|()| f()));
        })
        .map_err(|source| HostNetworkError::Namespace { name, source })?;
    rx.await.map_err(|_| HostNetworkError::Worker)?
}

fn enter_netns(name: &str) -> Result<(), HostNetworkError> {
    let path = Path::new(NETNS_DIR).join(name);
    let err = |source| HostNetworkError::Namespace {
        name: name.to_owned(),
        source,
    };
    let file = File::open(&path).map_err(err)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| err(std::io::Error::from(e)))
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> HostNetworkError {
    let what = what.into();
    move |source| HostNetworkError::Netlink { what, source }
}

async fn ip_cmd(args: &[&str]) -> Result<(), HostNetworkError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|source| HostNetworkError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(HostNetworkError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The namespaces under /run/netns.
fn list_netns() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What the driver needs to know of a link.
#[derive(Debug, Clone)]
struct Link {
    index: u32,
    up: bool,
    mtu: Option<u32>,
    controller: Option<u32>,
    kind: Option<InfoKind>,
    vxlan: Vec<InfoVxlan>,
}

fn link_of(msg: &LinkMessage) -> (Option<String>, Link) {
    let mut name = None;
    let mut link = Link {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        mtu: None,
        controller: None,
        kind: None,
        vxlan: Vec::new(),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.clone()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => link.vxlan = v.clone(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (name, link)
}

async fn links(handle: &Handle) -> Result<BTreeMap<String, Link>, HostNetworkError> {
    let msgs: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            let (name, link) = link_of(m);
            name.map(|n| (n, link))
        })
        .collect())
}

fn vxlan_matches(link: &Link, vni: u32, local: Ipv4Addr, port: u16) -> bool {
    let has = |want: &InfoVxlan| link.vxlan.iter().any(|a| a == want);
    link.kind == Some(InfoKind::Vxlan)
        && has(&InfoVxlan::Id(vni))
        && has(&InfoVxlan::Local(local))
        && has(&InfoVxlan::Port(port))
        && has(&InfoVxlan::Learning(true))
}

/// A VXLAN device as the driver makes it: MAC learning on, MTU [`TENANT_MTU`], up.
struct VxlanDevice<'a> {
    name: &'a str,
    vni: u32,
    local: Ipv4Addr,
    port: u16,
    /// The bridge it is a port of (`None`: in no bridge, a layer-3 device).
    controller: Option<u32>,
}

/// Makes `dev` exist as described: a link of that name that is not such a VXLAN device (or, for
/// a device in no bridge, one that sits in a bridge) is deleted and made again; `all` is
/// refreshed after a change. Link state and MTU are the caller's to check.
async fn ensure_vxlan(
    handle: &Handle,
    dev: VxlanDevice<'_>,
    all: &mut BTreeMap<String, Link>,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let VxlanDevice {
        name,
        vni,
        local,
        port,
        controller,
    } = dev;
    if all.get(name).is_some_and(|l| {
        !vxlan_matches(l, vni, local, port) || (controller.is_none() && l.controller.is_some())
    }) {
        let idx = all[name].index;
        delete_link(handle, name, idx, r).await?;
        all.remove(name);
    }
    if !all.contains_key(name) {
        let mut msg = LinkVxlan::new(name, vni)
            .local(local)
            .port(port)
            .learning(true)
            .mtu(TENANT_MTU);
        if let Some(bridge) = controller {
            msg = msg.controller(bridge);
        }
        handle
            .link()
            .add(msg.up().build())
            .execute()
            .await
            .map_err(nl(format!("add vxlan {name}")))?;
        r.push(format!(
            "add vxlan {name} vni {vni} local {local} port {port}"
        ));
        *all = links(handle).await?;
    }
    Ok(())
}

async fn delete_link(
    handle: &Handle,
    name: &str,
    index: u32,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    match handle.link().del(index).execute().await {
        Ok(()) => {
            r.push(format!("delete link {name}"));
            Ok(())
        }
        // Already gone (a veth peer or a namespace took it with it).
        Err(rtnetlink::Error::NetlinkError(e)) if e.code.map(|c| c.get()) == Some(-ENODEV) => {
            Ok(())
        }
        Err(e) => Err(nl(format!("delete link {name}"))(e)),
    }
}

/// `ENODEV`: the device is already gone.
const ENODEV: i32 = 19;

/// Brings `name` up, to `mtu` and under `controller`, if it is not already.
async fn ensure_link_state(
    handle: &Handle,
    name: &str,
    link: &Link,
    mtu: Option<u32>,
    controller: Option<u32>,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let mut msg = LinkUnspec::new_with_index(link.index);
    let mut what = Vec::new();
    if let Some(c) = controller
        && link.controller != Some(c)
    {
        msg = msg.controller(c);
        what.push("controller");
    }
    if let Some(m) = mtu
        && link.mtu != Some(m)
    {
        msg = msg.mtu(m);
        what.push("mtu");
    }
    if !link.up {
        msg = msg.up();
        what.push("up");
    }
    if what.is_empty() {
        return Ok(());
    }
    handle
        .link()
        .set(msg.build())
        .execute()
        .await
        .map_err(nl(format!("set link {name}")))?;
    r.push(format!("set link {name} {}", what.join(",")));
    Ok(())
}

async fn converge_node(
    host: &NetlinkHost,
    node: &Netns,
    spec: &HostNetworkSpec,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let handle = &node.handle;
    if spec.router.is_some() {
        node.ensure_sysctl("/proc/sys/net/ipv4/ip_forward", "1", r)
            .await?;
    }

    // Removal first: tenants this driver owns that are no longer desired.
    let rule_msgs = managed_rules(handle, host.rule_priority).await?;
    let mut stale_tables = BTreeSet::new();
    for (msg, key) in &rule_msgs {
        let keep = spec.router.is_some()
            && spec.tenants.iter().any(|t| {
                rule_keys(spec, t, host.rule_priority)
                    .iter()
                    .any(|k| k == key)
            });
        if !keep {
            if key.action == RuleAction::ToTable
                && !spec
                    .tenants
                    .iter()
                    .any(|t| t.network.table == key.table && spec.router.is_some())
            {
                stale_tables.insert(key.table);
            }
            handle
                .rule()
                .del(msg.clone())
                .execute()
                .await
                .map_err(nl("delete rule"))?;
            r.push(format!(
                "delete rule prio {} iif {} {:?} {}",
                key.priority, key.iif, key.action, key.table
            ));
        }
    }
    for table in stale_tables {
        for (msg, key) in table_routes(handle, table).await? {
            handle
                .route()
                .del(msg)
                .execute()
                .await
                .map_err(nl(format!("delete route in table {table}")))?;
            r.push(format!("delete route {key} table {table}"));
        }
    }
    let all = links(handle).await?;
    for (name, link) in &all {
        let Some((prefix, vni)) = ["mbr", "mvx", "mvh", "msx"].iter().find_map(|p| {
            let vni = name.strip_prefix(p)?.parse::<u32>().ok()?;
            Some((*p, vni))
        }) else {
            continue;
        };
        let keep = spec.tenants.iter().any(|t| {
            t.network.vni == vni
                && match prefix {
                    "mvx" => spec.access_port.is_none(),
                    "mvh" => t.workload.is_some(),
                    "msx" => NetlinkHost::tunnel_local(spec, t).is_some(),
                    _ => true,
                }
        });
        if !keep {
            delete_link(handle, name, link.index, r).await?;
        }
    }
    let wanted_ns: BTreeSet<String> = spec
        .tenants
        .iter()
        .filter(|t| t.workload.is_some())
        .map(|t| host.tenant_netns(&t.network))
        .collect();
    if !host.tenant_netns_prefix.is_empty() {
        for ns in list_netns() {
            if ns.starts_with(&host.tenant_netns_prefix) && !wanted_ns.contains(&ns) {
                ip_cmd(&["netns", "del", &ns]).await?;
                r.push(format!("delete netns {ns}"));
            }
        }
    }

    // Then every desired tenant.
    for t in &spec.tenants {
        converge_tenant(host, node, spec, t, r).await?;
    }
    Ok(())
}

/// Sets sysctl `path` to `value` in the calling thread's namespace; whether it changed.
fn ensure_sysctl(path: &str, value: &str) -> Result<bool, HostNetworkError> {
    let err = |source| HostNetworkError::Sysctl {
        path: path.to_owned(),
        source,
    };
    let current = std::fs::read_to_string(path).map_err(err)?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(path, value).map_err(err)?;
    Ok(true)
}

async fn converge_tenant(
    host: &NetlinkHost,
    node: &Netns,
    spec: &HostNetworkSpec,
    t: &HostTenant,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let handle = &node.handle;
    let n = &t.network;
    let (br, _, vh, vp) = NetlinkHost::device_names(n.vni);
    let mut all = links(handle).await?;

    // Bridge.
    if all
        .get(&br)
        .is_some_and(|l| l.kind != Some(InfoKind::Bridge))
    {
        let idx = all[&br].index;
        delete_link(handle, &br, idx, r).await?;
        all.remove(&br);
    }
    if !all.contains_key(&br) {
        handle
            .link()
            .add(LinkBridge::new(&br).mtu(TENANT_MTU).up().build())
            .execute()
            .await
            .map_err(nl(format!("add bridge {br}")))?;
        r.push(format!("add bridge {br}"));
        all = links(handle).await?;
    }
    let br_link = all[&br].clone();
    ensure_link_state(handle, &br, &br_link, None, None, r).await?;

    if let Some(port) = &spec.access_port {
        // Access mode: the uplink port is the bridge's way to the segment (no VXLAN here).
        if !all.contains_key(port) {
            return Err(HostNetworkError::Spec(format!(
                "access port {port} of tenant {} does not exist",
                n.tenant
            )));
        }
        converge_bridge_ports(handle, &br, std::slice::from_ref(port), r).await?;
        all = links(handle).await?;
    } else {
        converge_vxlan(handle, spec, t, &br_link, &mut all, r).await?;
    }

    // Workload namespace and veth.
    if t.workload.is_some() {
        let ns = host.tenant_netns(n);
        if !list_netns().contains(&ns) {
            ip_cmd(&["netns", "add", &ns]).await?;
            r.push(format!("add netns {ns}"));
            // A fresh namespace: any old host side is dangling.
            if let Some(l) = all.get(&vh) {
                delete_link(handle, &vh, l.index, r).await?;
                all.remove(&vh);
            }
        }
        if !all.contains_key(&vh) {
            if let Some(l) = all.get(&vp) {
                delete_link(handle, &vp, l.index, r).await?;
            }
            handle
                .link()
                .add(LinkVeth::new(&vh, &vp).mtu(TENANT_MTU).build())
                .execute()
                .await
                .map_err(nl(format!("add veth {vh}")))?;
            all = links(handle).await?;
            let peer = all
                .get(&vp)
                .ok_or_else(|| HostNetworkError::Spec(format!("veth peer {vp} vanished")))?;
            let nsfile = File::open(PathBuf::from(NETNS_DIR).join(&ns)).map_err(|source| {
                HostNetworkError::Namespace {
                    name: ns.clone(),
                    source,
                }
            })?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(peer.index)
                        .setns_by_fd(nsfile.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("move {vp} into {ns}")))?;
            r.push(format!("add veth {vh} peer {vp} in {ns}"));
            all = links(handle).await?;
        }
        let vh_link = all[&vh].clone();
        ensure_link_state(
            handle,
            &vh,
            &vh_link,
            Some(TENANT_MTU),
            Some(br_link.index),
            r,
        )
        .await?;
    }

    // Gateway role: address, tunnel, table, rules.
    if let Some(router) = &spec.router {
        let gw = (n.gateway, n.subnet.prefix_len());
        converge_addresses(handle, &br, br_link.index, &[gw], r).await?;
        let uplink = all.get(&router.uplink).ok_or_else(|| {
            HostNetworkError::Spec(format!("uplink {} does not exist", router.uplink))
        })?;
        let mut want = vec![
            RouteKey {
                kind: RouteType::Unicast,
                dst: n.subnet.addr(),
                len: n.subnet.prefix_len(),
                oif: Some(br_link.index),
                gateway: None,
                onlink: false,
            },
            RouteKey {
                kind: RouteType::Unicast,
                dst: Ipv4Addr::UNSPECIFIED,
                len: 0,
                oif: Some(uplink.index),
                gateway: Some(router.next_hop),
                onlink: false,
            },
        ];
        if let Some(local) = NetlinkHost::tunnel_local(spec, t) {
            let tunnel = converge_tunnel(node, t, local, &mut all, r).await?;
            for p in &t.peers {
                want.push(RouteKey {
                    kind: RouteType::Unicast,
                    dst: p.subnet.addr(),
                    len: p.subnet.prefix_len(),
                    oif: Some(tunnel),
                    gateway: Some(p.gateway),
                    onlink: true,
                });
            }
        }
        for s in prohibited(spec, t) {
            want.push(RouteKey {
                kind: RouteType::Prohibit,
                dst: s.addr(),
                len: s.prefix_len(),
                oif: None,
                gateway: None,
                onlink: false,
            });
        }
        converge_table(handle, n.table, &want, r).await?;
        let have: Vec<RuleKey> = managed_rules(handle, host.rule_priority)
            .await?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        for key in rule_keys(spec, t, host.rule_priority) {
            if !have.contains(&key) {
                let mut req = handle
                    .rule()
                    .add()
                    .v4()
                    .input_interface(key.iif.clone())
                    .priority(key.priority)
                    .action(key.action);
                if key.action == RuleAction::ToTable {
                    req = req.table_id(key.table);
                }
                req.execute()
                    .await
                    .map_err(nl(format!("add rule iif {}", key.iif)))?;
                r.push(format!(
                    "add rule prio {} iif {} {:?} {}",
                    key.priority, key.iif, key.action, key.table
                ));
            }
        }
    } else {
        converge_addresses(handle, &br, br_link.index, &[], r).await?;
    }
    Ok(())
}

/// The prefixes prohibited in tenant `t`'s table: the other tenants' subnets, here and at their
/// other sites, so the default route to the WAN never carries a packet towards them. One that
/// overlaps `t`'s own subnets is left out (`t`'s own route wins; the two could not share a
/// prefix in one table).
fn prohibited(spec: &HostNetworkSpec, t: &HostTenant) -> BTreeSet<Ipv4Net> {
    let own: Vec<Ipv4Net> = std::iter::once(t.network.subnet)
        .chain(t.peers.iter().map(|p| p.subnet))
        .collect();
    spec.tenants
        .iter()
        .filter(|o| o.network.vni != t.network.vni)
        .flat_map(|o| std::iter::once(o.network.subnet).chain(o.peers.iter().map(|p| p.subnet)))
        .filter(|s| !own.iter().any(|o| o.overlaps(s)))
        .collect()
}

/// The tenant's VXLAN device `mvx<vni>` in its bridge: VNI, local VTEP, port 4789, learning,
/// the flood list.
async fn converge_vxlan(
    handle: &Handle,
    spec: &HostNetworkSpec,
    t: &HostTenant,
    br_link: &Link,
    all: &mut BTreeMap<String, Link>,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let n = &t.network;
    let (_, vx, ..) = NetlinkHost::device_names(n.vni);
    ensure_vxlan(
        handle,
        VxlanDevice {
            name: &vx,
            vni: n.vni,
            local: spec.vtep,
            port: VXLAN_PORT,
            controller: Some(br_link.index),
        },
        all,
        r,
    )
    .await?;
    let vx_link = all[&vx].clone();
    ensure_link_state(
        handle,
        &vx,
        &vx_link,
        Some(TENANT_MTU),
        Some(br_link.index),
        r,
    )
    .await?;
    converge_fdb(handle, &vx, vx_link.index, &t.remote_vteps, r).await?;
    Ok(())
}

/// The tenant's site-to-site tunnel `msx<vni>`: VNI, local = the node's tunnel endpoint, port
/// 8472, learning, in no bridge, up, the tenant gateway as /32, reverse-path filtering off, one
/// flood entry per peer endpoint. Returns its index.
async fn converge_tunnel(
    node: &Netns,
    t: &HostTenant,
    local: Ipv4Addr,
    all: &mut BTreeMap<String, Link>,
    r: &mut ChangeReport,
) -> Result<u32, HostNetworkError> {
    let handle = &node.handle;
    let n = &t.network;
    let sx = NetlinkHost::tunnel_name(n.vni);
    ensure_vxlan(
        handle,
        VxlanDevice {
            name: &sx,
            vni: n.vni,
            local,
            port: SITE_TUNNEL_PORT,
            controller: None,
        },
        all,
        r,
    )
    .await?;
    let link = all
        .get(&sx)
        .ok_or_else(|| HostNetworkError::Spec(format!("tunnel {sx} vanished")))?
        .clone();
    ensure_link_state(handle, &sx, &link, Some(TENANT_MTU), None, r).await?;
    node.ensure_sysctl(format!("/proc/sys/net/ipv4/conf/{sx}/rp_filter"), "0", r)
        .await?;
    converge_addresses(handle, &sx, link.index, &[(n.gateway, 32)], r).await?;
    let endpoints: Vec<Ipv4Addr> = t
        .peers
        .iter()
        .map(|p| p.endpoint)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    converge_fdb(handle, &sx, link.index, &endpoints, r).await?;
    Ok(link.index)
}

/// Inside the tenant namespace: loopback and peer up, the workload address, the default
/// route via the tenant gateway.
async fn converge_workload(
    handle: &Handle,
    peer: &str,
    addr: Ipv4Addr,
    n: &TenantNetworkIntent,
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let all = links(handle).await?;
    if let Some(lo) = all.get("lo") {
        ensure_link_state(handle, "lo", lo, None, None, r).await?;
    }
    let link = all
        .get(peer)
        .ok_or_else(|| HostNetworkError::Spec(format!("{peer} is missing in the namespace")))?
        .clone();
    ensure_link_state(handle, peer, &link, Some(TENANT_MTU), None, r).await?;
    converge_addresses(
        handle,
        peer,
        link.index,
        &[(addr, n.subnet.prefix_len())],
        r,
    )
    .await?;
    let want = [RouteKey {
        kind: RouteType::Unicast,
        dst: Ipv4Addr::UNSPECIFIED,
        len: 0,
        oif: Some(link.index),
        gateway: Some(n.gateway),
        onlink: false,
    }];
    converge_table(handle, 254, &want, r).await
}

async fn converge_addresses(
    handle: &Handle,
    name: &str,
    index: u32,
    want: &[(Ipv4Addr, u8)],
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("list addresses of {name}")))?;
    let mut have = Vec::new();
    for m in msgs {
        if m.header.index != index {
            continue;
        }
        let a = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = a {
            let key = (ip, m.header.prefix_len);
            if want.contains(&key) {
                have.push(key);
            } else {
                handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(nl(format!("delete address {ip} of {name}")))?;
                r.push(format!("delete address {ip}/{} on {name}", key.1));
            }
        }
    }
    for &(ip, len) in want {
        if !have.contains(&(ip, len)) {
            handle
                .address()
                .add(index, IpAddr::V4(ip), len)
                .execute()
                .await
                .map_err(nl(format!("add address {ip} to {name}")))?;
            r.push(format!("add address {ip}/{len} on {name}"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteKey {
    kind: RouteType,
    dst: Ipv4Addr,
    len: u8,
    oif: Option<u32>,
    gateway: Option<Ipv4Addr>,
    /// `onlink`: the gateway is taken to be on the link without a connected route to it.
    onlink: bool,
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == RouteType::Prohibit {
            f.write_str("prohibit ")?;
        }
        write!(f, "{}/{}", self.dst, self.len)?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(o) = self.oif {
            write!(f, " oif {o}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// The unicast routes of `table` the driver manages (static ones, not the kernel's own).
async fn table_routes(
    handle: &Handle,
    table: u32,
) -> Result<Vec<(RouteMessage, RouteKey)>, HostNetworkError> {
    let msgs: Vec<RouteMessage> = handle
        .route()
        .get(rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes"))?;
    Ok(msgs
        .into_iter()
        .filter(|m| {
            route_table(m) == table
                && matches!(m.header.kind, RouteType::Unicast | RouteType::Prohibit)
                && m.header.protocol == RouteProtocol::Static
        })
        .map(|m| {
            let mut key = RouteKey {
                kind: m.header.kind,
                dst: Ipv4Addr::UNSPECIFIED,
                len: m.header.destination_prefix_length,
                oif: None,
                gateway: None,
                onlink: m.header.flags.contains(RouteFlags::Onlink),
            };
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => key.dst = *d,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => key.gateway = Some(*g),
                    RouteAttribute::Oif(o) => key.oif = Some(*o),
                    _ => {}
                }
            }
            (m, key)
        })
        .collect())
}

async fn converge_table(
    handle: &Handle,
    table: u32,
    want: &[RouteKey],
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let mut have = Vec::new();
    for (msg, key) in table_routes(handle, table).await? {
        if want.contains(&key) {
            have.push(key);
        } else {
            handle
                .route()
                .del(msg)
                .execute()
                .await
                .map_err(nl(format!("delete route {key}")))?;
            r.push(format!("delete route {key} table {table}"));
        }
    }
    for key in want {
        if have.contains(key) {
            continue;
        }
        let mut b = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(key.dst, key.len)
            .table_id(table)
            .protocol(RouteProtocol::Static);
        if let Some(o) = key.oif {
            b = b.output_interface(o);
        }
        if key.onlink {
            b = b.onlink();
        }
        match (key.kind, key.gateway) {
            (RouteType::Prohibit, _) => b = b.kind(RouteType::Prohibit),
            (_, Some(g)) => b = b.gateway(g),
            (_, None) => b = b.scope(RouteScope::Link),
        }
        handle
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(nl(format!("add route {key} table {table}")))?;
        r.push(format!("add route {key} table {table}"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RuleKey {
    priority: u32,
    iif: String,
    action: RuleAction,
    table: u32,
}

/// A tenant's rules: for its bridge, and for its tunnel where it has one, `iif <dev> lookup
/// <table>` at `priority` and `iif <dev> unreachable` at the next.
fn rule_keys(spec: &HostNetworkSpec, t: &HostTenant, priority: u32) -> Vec<RuleKey> {
    let n = &t.network;
    let (br, ..) = NetlinkHost::device_names(n.vni);
    let mut devices = vec![br];
    if NetlinkHost::tunnel_local(spec, t).is_some() {
        devices.push(NetlinkHost::tunnel_name(n.vni));
    }
    devices
        .into_iter()
        .flat_map(|iif| {
            [
                RuleKey {
                    priority,
                    iif: iif.clone(),
                    action: RuleAction::ToTable,
                    table: n.table,
                },
                RuleKey {
                    priority: priority + 1,
                    iif,
                    action: RuleAction::Unreachable,
                    table: 0,
                },
            ]
        })
        .collect()
}

/// The rules the driver owns: at its two priorities, on an `mbr*` or `msx*` input interface.
async fn managed_rules(
    handle: &Handle,
    priority: u32,
) -> Result<Vec<(RuleMessage, RuleKey)>, HostNetworkError> {
    let msgs: Vec<RuleMessage> = handle
        .rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list rules"))?;
    let mut out = Vec::new();
    for m in msgs {
        let mut key = RuleKey {
            priority: 0,
            iif: String::new(),
            action: m.header.action,
            table: 0,
        };
        for a in &m.attributes {
            match a {
                RuleAttribute::Priority(p) => key.priority = *p,
                RuleAttribute::Iifname(i) => key.iif = i.clone(),
                RuleAttribute::Table(t) => key.table = *t,
                _ => {}
            }
        }
        if key.action == RuleAction::ToTable && key.table == 0 {
            key.table = u32::from(m.header.table);
        }
        if key.action != RuleAction::ToTable {
            key.table = 0;
        }
        if (key.priority == priority || key.priority == priority + 1)
            && (key.iif.starts_with("mbr") || key.iif.starts_with("msx"))
        {
            out.push((m, key));
        }
    }
    Ok(out)
}

/// The VXLAN flood list: one all-zeros FDB entry per remote VTEP.
async fn converge_fdb(
    handle: &Handle,
    name: &str,
    index: u32,
    remotes: &[Ipv4Addr],
    r: &mut ChangeReport,
) -> Result<(), HostNetworkError> {
    let msgs: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("list fdb of {name}")))?;
    let mut have = Vec::new();
    for m in msgs {
        if m.header.ifindex != index {
            continue;
        }
        let zero = m
            .attributes
            .iter()
            .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l == &[0u8; 6]));
        let dst = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
            // Bridge-family messages carry the remote VTEP as raw bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
            }
            _ => None,
        });
        let (true, Some(dst)) = (zero, dst) else {
            continue;
        };
        if remotes.contains(&dst) {
            have.push(dst);
        } else {
            handle
                .neighbours()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("delete fdb {dst} of {name}")))?;
            r.push(format!("delete fdb 00:00:00:00:00:00 dst {dst} dev {name}"));
        }
    }
    for &dst in remotes {
        if have.contains(&dst) {
            continue;
        }
        // `bridge fdb append 00:00:00:00:00:00 dev <vx> dst <remote>`: rtnetlink's builder
        // has no append flag, so the request is built here.
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let mut h = handle.clone();
        let mut resp = h.request(req).map_err(nl(format!("append fdb {dst}")))?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(e) = m.payload
                && e.code.is_some()
            {
                return Err(nl(format!("append fdb {dst} to {name}"))(
                    rtnetlink::Error::NetlinkError(e),
                ));
            }
        }
        r.push(format!("append fdb 00:00:00:00:00:00 dst {dst} dev {name}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::TenantId;

    fn tenant(name: &str, vni: u32, site: u8) -> HostTenant {
        let second = u8::try_from(vni - 10000).unwrap();
        HostTenant {
            network: TenantNetworkIntent {
                tenant: TenantId::parse(name).unwrap(),
                vni,
                table: vni - 10000 + 100,
                subnet: Ipv4Net::new(Ipv4Addr::new(10, second, site, 0), 24).unwrap(),
                gateway: Ipv4Addr::new(10, second, site, 1),
            },
            remote_vteps: vec![Ipv4Addr::new(172, 31, 0, 1)],
            workload: None,
            peers: vec![],
        }
    }

    fn peer(t: &HostTenant, site: u8) -> HostPeer {
        let [a, b, ..] = t.network.subnet.addr().octets();
        HostPeer {
            endpoint: Ipv4Addr::new(203, 0, 113, 16 * (site - 1) + 1),
            subnet: Ipv4Net::new(Ipv4Addr::new(a, b, site, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(a, b, site, 1),
        }
    }

    /// Site 1's gateway: tenant A (10.1.1.0/24) also on sites 2 and 3, tenant B only here.
    fn gateway_spec() -> HostNetworkSpec {
        let mut a = tenant("tenant-a", 10001, 1);
        a.peers = vec![peer(&a, 2), peer(&a, 3)];
        HostNetworkSpec {
            vtep: Ipv4Addr::new(172, 31, 0, 3),
            tenants: vec![a, tenant("tenant-b", 10002, 1)],
            router: Some(RouterRole {
                uplink: "wan0".into(),
                next_hop: Ipv4Addr::new(203, 0, 113, 14),
                tunnel_endpoint: Some(Ipv4Addr::new(203, 0, 113, 1)),
            }),
            access_port: None,
        }
    }

    fn refusal(spec: &HostNetworkSpec) -> String {
        match NetlinkHost::new(None, "t-").check(spec) {
            Err(HostNetworkError::Spec(why)) => why,
            other => panic!("expected a spec error, got {other:?}"),
        }
    }

    #[test]
    fn a_gateway_with_peers_passes_the_check() {
        NetlinkHost::new(None, "t-").check(&gateway_spec()).unwrap();
    }

    #[test]
    fn peers_need_the_router_role_and_a_tunnel_endpoint() {
        let mut s = gateway_spec();
        s.router.as_mut().unwrap().tunnel_endpoint = None;
        let why = refusal(&s);
        assert!(
            why.contains("tenant-a") && why.contains("tunnel endpoint"),
            "{why}"
        );
        s.router = None;
        let why = refusal(&s);
        assert!(
            why.contains("tenant-a") && why.contains("router role"),
            "{why}"
        );
        // Without peers neither is needed.
        s.tenants[0].peers.clear();
        NetlinkHost::new(None, "t-").check(&s).unwrap();
    }

    #[test]
    fn inconsistent_peers_are_refused_naming_the_tenant() {
        let mut s = gateway_spec();
        s.tenants[0].peers[1].subnet = Ipv4Net::parse("10.1.0.0/16").unwrap();
        s.tenants[0].peers[1].gateway = Ipv4Addr::new(10, 1, 9, 1);
        let why = refusal(&s);
        assert!(
            why.contains("tenant-a") && why.contains("overlaps"),
            "{why}"
        );

        let mut s = gateway_spec();
        s.tenants[0].peers[1].subnet = Ipv4Net::parse("10.1.2.128/25").unwrap();
        s.tenants[0].peers[1].gateway = Ipv4Addr::new(10, 1, 2, 129);
        let why = refusal(&s);
        assert!(
            why.contains("tenant-a")
                && why.contains("10.1.2.0/24")
                && why.contains("10.1.2.128/25"),
            "{why}"
        );

        let mut s = gateway_spec();
        s.tenants[0].peers[0].gateway = Ipv4Addr::new(10, 1, 3, 1);
        let why = refusal(&s);
        assert!(why.contains("tenant-a") && why.contains("outside"), "{why}");

        let mut s = gateway_spec();
        s.tenants[0].peers[0].endpoint = Ipv4Addr::new(203, 0, 113, 1);
        let why = refusal(&s);
        assert!(
            why.contains("tenant-a") && why.contains("own tunnel endpoint"),
            "{why}"
        );
    }

    #[test]
    fn access_mode_carries_one_tenant() {
        let mut s = HostNetworkSpec {
            vtep: Ipv4Addr::UNSPECIFIED,
            tenants: vec![tenant("tenant-a", 10001, 1), tenant("tenant-b", 10002, 1)],
            router: None,
            access_port: Some("eth0".into()),
        };
        let why = refusal(&s);
        assert!(
            why.contains("eth0") && why.contains("tenant-a") && why.contains("tenant-b"),
            "{why}"
        );
        s.tenants.pop();
        NetlinkHost::new(None, "t-").check(&s).unwrap();
    }

    #[test]
    fn a_tunnel_gets_the_bridge_rules_for_its_device() {
        let s = gateway_spec();
        let keys = rule_keys(&s, &s.tenants[0], 1000);
        let shown: Vec<(u32, &str, RuleAction, u32)> = keys
            .iter()
            .map(|k| (k.priority, k.iif.as_str(), k.action, k.table))
            .collect();
        assert_eq!(
            shown,
            [
                (1000, "mbr10001", RuleAction::ToTable, 101),
                (1001, "mbr10001", RuleAction::Unreachable, 0),
                (1000, "msx10001", RuleAction::ToTable, 101),
                (1001, "msx10001", RuleAction::Unreachable, 0),
            ]
        );
        assert_eq!(rule_keys(&s, &s.tenants[1], 1000).len(), 2);
        assert_eq!(NetlinkHost::tunnel_local(&s, &s.tenants[1]), None);
        assert_eq!(
            NetlinkHost::tunnel_local(&s, &s.tenants[0]),
            Some(Ipv4Addr::new(203, 0, 113, 1))
        );
    }

    #[test]
    fn each_table_prohibits_the_other_tenants_subnets_here_and_elsewhere() {
        let mut s = gateway_spec();
        let b = s.tenants[1].clone();
        s.tenants[1].peers = vec![peer(&b, 2)];
        let nets = |v: &[&str]| -> BTreeSet<Ipv4Net> {
            v.iter().map(|n| Ipv4Net::parse(n).unwrap()).collect()
        };
        assert_eq!(
            prohibited(&s, &s.tenants[0]),
            nets(&["10.2.1.0/24", "10.2.2.0/24"])
        );
        assert_eq!(
            prohibited(&s, &s.tenants[1]),
            nets(&["10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24"])
        );
        // A prefix of another tenant overlapping one of the tenant's own is left out.
        s.tenants[1].peers[0].subnet = Ipv4Net::parse("10.1.2.0/25").unwrap();
        assert_eq!(prohibited(&s, &s.tenants[0]), nets(&["10.2.1.0/24"]));
    }
}
