//! A host that runs containers or VMs for a tenant, as a [`Resource`]: the agent owns that
//! kernel (unlike a bare-metal tenant's), so it gives each replica of the host's server its
//! place in the tenant's network. The host's uplink port is the server's access port on the
//! leaf switch, which puts it in the tenant's segment while the tenant has an allocation on
//! the server (the switch does the VXLAN); on the host the uplink becomes the port of the
//! tenant's bridge, and the replica gets a network namespace joined to that bridge by a veth
//! pair, with its address from the intent and a default route via the tenant's gateway.
//!
//! The want is rendered from the held intent ([`host_want`], pure): the container and VM
//! allocations of the server whose window is open and that carry an address. An untagged
//! uplink sits in one tenant's segment, so a host whose server carries two tenants' container
//! allocations at once fails the generation naming both (the switch leaves such a server in
//! no segment). Replicas of one tenant on one host share its namespace with the lowest address.
//! The [`HostNetwork`] driver compares with the kernel itself, so the plan is always to
//! converge; a tenant whose last allocation ends leaves nothing behind (bridge, veth,
//! namespace; the uplink is released, not deleted).
//!
//! [`HostNetwork`]: meridian_drivers::HostNetwork

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use meridian_common::ids::{Generation, ServerId, TenantId, Timestamp};
use meridian_common::model::{AllocationMode, SiteIntent};
use meridian_drivers::{HostNetwork, HostNetworkSpec, HostTenant};

use super::desired::window_state;
use super::resource::{Cx, NodeBook, Resource};
use super::{Action, ReconcileError};

/// A container/VM host the agent configures (from `[[host_network]]`).
#[derive(Clone)]
pub struct ManagedHost {
    /// The server whose container and VM allocations run on this host.
    pub server: ServerId,
    /// The host's port cabled to the leaf switch.
    pub uplink: String,
    /// Its kernel networking.
    pub driver: Arc<dyn HostNetwork>,
}

impl fmt::Debug for ManagedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedHost")
            .field("server", &self.server)
            .field("uplink", &self.uplink)
            .field("driver", &self.driver)
            .finish()
    }
}

/// Why the intent cannot be put on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostWantError {
    /// Two tenants' container or VM allocations on one host at once.
    #[error(
        "server {server} runs containers or VMs of tenants {first} and {second} at once; its one uplink can sit in one tenant's segment"
    )]
    TwoTenants {
        server: ServerId,
        first: TenantId,
        second: TenantId,
    },
    /// An allocation of a tenant the intent has no network for.
    #[error(
        "allocation {workload} on {server} names tenant {tenant}, which has no network in the intent"
    )]
    NoNetwork {
        workload: String,
        server: ServerId,
        tenant: TenantId,
    },
}

/// What the intent asks of one host at one instant.
#[derive(Debug)]
pub struct HostWant {
    pub generation: Generation,
    pub spec: Result<HostNetworkSpec, HostWantError>,
    pub next_change: Option<Timestamp>,
}

/// The host's part of `intent` at `now`. Pure.
pub fn host_want(intent: &SiteIntent, host: &ManagedHost, now: Timestamp) -> HostWant {
    let mut next_change = None;
    let mut tenants: BTreeMap<&TenantId, Ipv4Addr> = BTreeMap::new();
    let mut error = None;
    for a in intent.allocations.iter().filter(|a| {
        a.server == host.server && a.mode != AllocationMode::BareMetal && a.address.is_some()
    }) {
        let (active, next) = window_state(a.window, now);
        next_change = match (next_change, next) {
            (Some(x), Some(y)) => Some(std::cmp::min(x, y)),
            (x, y) => x.or(y),
        };
        let Some(address) = a.address.filter(|_| active) else {
            continue;
        };
        if !intent.networks.iter().any(|n| n.tenant == a.tenant) {
            error.get_or_insert(HostWantError::NoNetwork {
                workload: a.workload.to_string(),
                server: host.server.clone(),
                tenant: a.tenant.clone(),
            });
        }
        let lowest = tenants.entry(&a.tenant).or_insert(address);
        *lowest = (*lowest).min(address);
    }
    let mut names = tenants.keys();
    if let (Some(first), Some(second)) = (names.next(), names.next()) {
        error.get_or_insert(HostWantError::TwoTenants {
            server: host.server.clone(),
            first: (*first).clone(),
            second: (*second).clone(),
        });
    }
    let spec = match error {
        Some(e) => Err(e),
        None => Ok(HostNetworkSpec {
            vtep: Ipv4Addr::UNSPECIFIED,
            tenants: intent
                .networks
                .iter()
                .filter_map(|n| {
                    tenants.get(&n.tenant).map(|addr| HostTenant {
                        network: n.clone(),
                        remote_vteps: Vec::new(),
                        workload: Some(*addr),
                        peers: Vec::new(),
                    })
                })
                .collect(),
            router: None,
            access_port: Some(host.uplink.clone()),
        }),
    };
    HostWant {
        generation: intent.generation,
        spec,
        next_change,
    }
}

/// The host's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStep {
    /// Hand the driver the whole want (it changes only what differs).
    Converge,
}

/// A host and what its worker remembers between passes.
#[derive(Debug)]
pub(crate) struct HostInstance {
    host: ManagedHost,
    book: NodeBook,
}

impl HostInstance {
    pub(crate) fn new(host: ManagedHost) -> Self {
        HostInstance {
            host,
            book: NodeBook::default(),
        }
    }
}

#[async_trait]
impl Resource for HostInstance {
    type Want = HostWant;
    type Observed = ();
    type Step = HostStep;
    const KIND: &'static str = "host";
    const DRIVER: &'static str = "netlink";

    fn observe_driver() -> Option<&'static str> {
        None
    }

    fn want(&self, intent: Option<&SiteIntent>, now: Timestamp) -> Option<HostWant> {
        Some(host_want(intent?, &self.host, now))
    }

    fn next_change(want: &HostWant) -> Option<Timestamp> {
        want.next_change
    }

    async fn observe(&mut self, want: &HostWant, _cx: &Cx<'_>) -> Result<(), ReconcileError> {
        self.book.start_pass();
        want.spec.as_ref().map(|_| ()).map_err(|e| e.clone().into())
    }

    fn plan(&self, _want: &HostWant, _observed: &()) -> HostStep {
        HostStep::Converge
    }

    async fn execute(
        &mut self,
        HostStep::Converge: HostStep,
        want: &HostWant,
        _observed: (),
        _cx: &Cx<'_>,
    ) -> Result<Action, ReconcileError> {
        let Ok(spec) = &want.spec else {
            return Ok(Action::AwaitChange);
        };
        let report =
            self.host
                .driver
                .apply(spec)
                .await
                .map_err(|source| ReconcileError::HostNetwork {
                    step: "converge the host's tenant network",
                    source,
                })?;
        self.book.converged(
            want.generation,
            report.changed().then(|| report.to_string()),
        );
        Ok(Action::AwaitChange)
    }

    fn failed(&mut self, want: &HostWant, error: ReconcileError, cx: &Cx<'_>) -> Action {
        let action = self
            .book
            .failed(&error, want.generation, &cx.env.config.retry);
        tracing::warn!(server = %self.host.server, error = %meridian_common::telemetry::error_chain(&error), failures = self.book.failures(), "host network not in line with the intent");
        action
    }

    fn report(&mut self, _want: &HostWant, _action: Action, cx: &Cx<'_>) {
        cx.report_events(&format!("host/{}", self.host.server), &mut self.book.events);
        if let Some(status) = self.book.outcome.take() {
            let server = self.host.server.clone();
            cx.env.status.send_modify(|s| {
                s.hosts.insert(server, status);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use meridian_common::ids::{SiteId, TimeWindow, WorkloadId};
    use meridian_common::model::{Allocation, GpuSlot, Ipv4Net, TenantNetworkIntent};
    use meridian_drivers::NetlinkHost;

    use super::*;

    fn host() -> ManagedHost {
        ManagedHost {
            server: ServerId::parse("srv-1").unwrap(),
            uplink: "eth0".into(),
            driver: Arc::new(NetlinkHost::new(None, "mt-")),
        }
    }

    fn network(tenant: &str, third: u8) -> TenantNetworkIntent {
        TenantNetworkIntent {
            tenant: TenantId::parse(tenant).unwrap(),
            vni: 10_000 + u32::from(third),
            table: 1_000 + u32::from(third),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, third, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(10, 0, third, 1),
        }
    }

    fn alloc(tenant: &str, server: &str, mode: AllocationMode, addr: [u8; 4]) -> Allocation {
        Allocation {
            workload: WorkloadId::parse("llm").unwrap(),
            tenant: TenantId::parse(tenant).unwrap(),
            server: ServerId::parse(server).unwrap(),
            slot: GpuSlot::None,
            mode,
            image: None,
            window: None,
            address: Some(Ipv4Addr::from(addr)),
        }
    }

    fn intent(allocations: Vec<Allocation>) -> SiteIntent {
        SiteIntent {
            networks: vec![network("acme", 1), network("globex", 2)],
            allocations,
            ..SiteIntent::empty(SiteId::parse("edge-1").unwrap(), Generation::new(4))
        }
    }

    #[test]
    fn the_hosts_container_replica_gets_its_tenant_on_the_uplink() {
        let i = intent(vec![
            alloc("acme", "srv-1", AllocationMode::Container, [10, 0, 1, 7]),
            alloc("acme", "srv-1", AllocationMode::Container, [10, 0, 1, 5]),
            alloc("globex", "srv-2", AllocationMode::Container, [10, 0, 2, 5]),
            alloc("globex", "srv-1", AllocationMode::BareMetal, [10, 0, 2, 6]),
        ]);
        let spec = host_want(&i, &host(), Timestamp::from_millis(0))
            .spec
            .unwrap();
        assert_eq!(spec.access_port.as_deref(), Some("eth0"));
        assert_eq!(spec.router, None);
        assert_eq!(spec.tenants.len(), 1);
        assert_eq!(spec.tenants[0].network.tenant.as_str(), "acme");
        assert_eq!(spec.tenants[0].workload, Some(Ipv4Addr::new(10, 0, 1, 5)));
    }

    #[test]
    fn windows_open_and_close_the_hosts_tenant() {
        let mut a = alloc(
            "acme",
            "srv-1",
            AllocationMode::VirtualMachine,
            [10, 0, 1, 5],
        );
        a.window = Some(
            TimeWindow::new(Timestamp::from_millis(1_000), Timestamp::from_millis(2_000)).unwrap(),
        );
        let i = intent(vec![a]);
        let before = host_want(&i, &host(), Timestamp::from_millis(500));
        assert!(before.spec.unwrap().tenants.is_empty());
        assert_eq!(before.next_change, Some(Timestamp::from_millis(1_000)));
        let during = host_want(&i, &host(), Timestamp::from_millis(1_500));
        assert_eq!(during.spec.unwrap().tenants.len(), 1);
        assert_eq!(during.next_change, Some(Timestamp::from_millis(2_000)));
        let after = host_want(&i, &host(), Timestamp::from_millis(2_000));
        assert!(after.spec.unwrap().tenants.is_empty());
        assert_eq!(after.next_change, None);
    }

    #[test]
    fn two_tenants_on_one_host_fail_naming_both() {
        let i = intent(vec![
            alloc("acme", "srv-1", AllocationMode::Container, [10, 0, 1, 5]),
            alloc("globex", "srv-1", AllocationMode::Container, [10, 0, 2, 5]),
        ]);
        let e = host_want(&i, &host(), Timestamp::from_millis(0))
            .spec
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("acme") && text.contains("globex"), "{text}");
        assert!(!ReconcileError::from(e).is_transient());
    }
}
