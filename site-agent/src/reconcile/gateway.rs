//! The site's gateway node as a [`Resource`]: the kernel networking of the node the agent owns
//! (a bridge and VXLAN device per tenant towards the site's leaf VTEPs, a routing table and
//! policy rules per tenant, the WAN as every table's default route) through its
//! [`HostNetwork`] driver, and the WAN edge (every published endpoint as DNAT, SNAT per tenant
//! subnet, a default-drop forward chain) through its [`WanGateway`] driver.
//!
//! The want is rendered from the held intent ([`gateway_want`], pure): every tenant network of
//! the intent, every exposure. Both drivers take the whole want and compare it with the kernel
//! themselves (an unchanged kernel is not touched), so the plan is always to converge; the
//! observation is the gateway's counters per rule, reported when they change. A tenant gone
//! from the intent leaves nothing behind at the next pass: its devices, table, rules and nft
//! rules are removed. A gateway flushed by hand is restored at the next resync, with or without
//! central.
//!
//! [`HostNetwork`]: meridian_drivers::HostNetwork
//! [`WanGateway`]: meridian_drivers::WanGateway

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use meridian_common::ids::{Generation, Timestamp};
use meridian_common::model::{Ipv4Net, Severity, SiteIntent};
use meridian_drivers::{
    ChangeReport, GatewayCounters, GatewaySpec, HostNetwork, HostNetworkSpec, HostPeer, HostTenant,
    RouterRole, WanGateway,
};

use super::egress::{self, EgressMeter};
use super::resource::{Cx, NodeBook, Resource};
use super::{Action, ReconcileError};

/// Where the gateway node sits: its interfaces and addresses (from `[gateway]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayLayout {
    /// The WAN-facing device.
    pub wan_interface: String,
    /// The WAN next hop: every tenant table's default route.
    pub wan_next_hop: Ipv4Addr,
    /// The address tenant egress is translated to.
    pub egress_address: Ipv4Addr,
    /// This node's VTEP (underlay) address.
    pub underlay_address: Ipv4Addr,
    /// The site's leaf VTEPs: where tenant traffic of the site's servers comes from.
    pub leaf_vteps: Vec<Ipv4Addr>,
    /// The site's public range: every exposure's public address must lie in it.
    pub public_range: Option<Ipv4Net>,
}

/// The gateway node's drivers and layout.
#[derive(Clone)]
pub struct ManagedGateway {
    pub host: Arc<dyn HostNetwork>,
    pub wan: Arc<dyn WanGateway>,
    pub layout: GatewayLayout,
}

impl fmt::Debug for ManagedGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedGateway")
            .field("host", &self.host)
            .field("wan", &self.wan)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Why the intent cannot be put on this gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayWantError {
    /// An exposure's public address is outside the gateway's public range.
    #[error(
        "exposure of {workload} on {public_ip}:{port} is outside the gateway's public range {range}"
    )]
    OutsidePublicRange {
        workload: String,
        public_ip: Ipv4Addr,
        port: u16,
        range: Ipv4Net,
    },
    /// Central's tunnel endpoint for this site is not the address the gateway holds.
    #[error(
        "the intent's tunnel endpoint {intent} is not this gateway's egress address {configured}: set gateway.egress_address to the first host address of the site's gateway range"
    )]
    TunnelEndpoint {
        intent: Ipv4Addr,
        configured: Ipv4Addr,
    },
}

/// The gateway node's two specs for `intent` (whose exposures are those to publish now,
/// [`SiteIntent::published_exposures`]). Pure.
pub fn gateway_want(
    intent: &SiteIntent,
    layout: &GatewayLayout,
) -> Result<(HostNetworkSpec, GatewaySpec), GatewayWantError> {
    if let Some(range) = layout.public_range
        && let Some(e) = intent
            .exposures
            .iter()
            .find(|e| !range.contains(e.public_ip))
    {
        return Err(GatewayWantError::OutsidePublicRange {
            workload: e.workload.to_string(),
            public_ip: e.public_ip,
            port: e.public_port,
            range,
        });
    }
    if let Some(ep) = intent.tunnel_endpoint
        && !intent.peers.is_empty()
        && ep != layout.egress_address
    {
        return Err(GatewayWantError::TunnelEndpoint {
            intent: ep,
            configured: layout.egress_address,
        });
    }
    let host = HostNetworkSpec {
        vtep: layout.underlay_address,
        tenants: intent
            .networks
            .iter()
            .map(|n| HostTenant {
                network: n.clone(),
                remote_vteps: layout.leaf_vteps.clone(),
                workload: None,
                peers: intent
                    .peers
                    .iter()
                    .filter(|p| p.tenant == n.tenant)
                    .map(|p| HostPeer {
                        endpoint: p.endpoint,
                        subnet: p.subnet,
                        gateway: p.gateway,
                    })
                    .collect(),
            })
            .collect(),
        router: Some(RouterRole {
            uplink: layout.wan_interface.clone(),
            next_hop: layout.wan_next_hop,
            tunnel_endpoint: intent.tunnel_endpoint,
        }),
        access_port: None,
    };
    let wan = GatewaySpec::for_site(intent, layout.wan_interface.clone(), layout.egress_address);
    Ok((host, wan))
}

/// What the held intent asks of the gateway.
#[derive(Debug)]
pub struct GatewayWant {
    pub generation: Generation,
    /// When the exposures to publish change by themselves (a window opens or ends).
    pub next_change: Option<Timestamp>,
    pub specs: Result<(HostNetworkSpec, GatewaySpec), GatewayWantError>,
}

/// The gateway's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayStep {
    /// Hand both drivers the whole want (they change only what differs).
    Converge,
}

/// The plan for the gateway. Pure.
pub fn plan(_want: &GatewayWant) -> GatewayStep {
    GatewayStep::Converge
}

/// The gateway node and what its worker remembers between passes.
#[derive(Debug)]
pub(crate) struct GatewayInstance {
    gateway: ManagedGateway,
    book: NodeBook,
    /// The packet counters last reported, by rule comment.
    counters: BTreeMap<String, u64>,
    /// Egress bytes per tenant and period; loaded from the agent's store at the first pass.
    meter: Option<EgressMeter>,
}

impl GatewayInstance {
    pub(crate) fn new(gateway: ManagedGateway) -> Self {
        GatewayInstance {
            gateway,
            book: NodeBook::default(),
            counters: BTreeMap::new(),
            meter: None,
        }
    }
}

/// The published endpoints' packet counts, one line per rule that moved since `before`.
fn counter_lines(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> Vec<String> {
    now.iter()
        .filter(|(rule, n)| before.get(*rule) != Some(n) && rule.contains(" dnat "))
        .map(|(rule, n)| format!("{rule}: {n} packets"))
        .collect()
}

fn joined(what: &str, report: &ChangeReport) -> Option<String> {
    report.changed().then(|| format!("{what}: {report}"))
}

#[async_trait]
impl Resource for GatewayInstance {
    type Want = GatewayWant;
    type Observed = Option<GatewayCounters>;
    type Step = GatewayStep;
    const KIND: &'static str = "gateway";
    const DRIVER: &'static str = "gateway";

    fn want(&self, intent: Option<&SiteIntent>, now: Timestamp) -> Option<GatewayWant> {
        let intent = intent?;
        let (exposures, next_change) = intent.published_exposures(now);
        let visible = SiteIntent {
            exposures,
            ..intent.clone()
        };
        Some(GatewayWant {
            generation: intent.generation,
            next_change,
            specs: gateway_want(&visible, &self.gateway.layout),
        })
    }

    fn next_change(want: &GatewayWant) -> Option<Timestamp> {
        want.next_change
    }

    async fn observe(
        &mut self,
        want: &GatewayWant,
        _cx: &Cx<'_>,
    ) -> Result<Option<GatewayCounters>, ReconcileError> {
        self.book.start_pass();
        want.specs.as_ref().map_err(|e| e.clone())?;
        self.gateway
            .wan
            .counters()
            .await
            .map_err(|source| ReconcileError::Gateway {
                step: "read the gateway's counters",
                source,
            })
    }

    fn plan(&self, want: &GatewayWant, _observed: &Self::Observed) -> GatewayStep {
        plan(want)
    }

    async fn execute(
        &mut self,
        GatewayStep::Converge: GatewayStep,
        want: &GatewayWant,
        counters: Self::Observed,
        cx: &Cx<'_>,
    ) -> Result<Action, ReconcileError> {
        let Ok((host, wan)) = &want.specs else {
            return Ok(Action::AwaitChange);
        };
        // Egress is counted before the apply below may replace the ruleset (and its counters).
        let meter = self.meter.get_or_insert_with(|| {
            let stored = cx.link.store.progress(egress::RECORD_KEY).ok().flatten();
            EgressMeter::decode(stored.as_deref()).unwrap_or_default()
        });
        let before = meter.clone();
        let egress = counters
            .as_ref()
            .and_then(|c| meter.read(cx.now, &c.egress_bytes));
        let host =
            self.gateway
                .host
                .apply(host)
                .await
                .map_err(|source| ReconcileError::HostNetwork {
                    step: "converge the gateway node's tenant networks",
                    source,
                })?;
        let nft = self
            .gateway
            .wan
            .apply(wan)
            .await
            .map_err(|source| ReconcileError::Gateway {
                step: "apply the gateway's ruleset",
                source,
            })?;
        let changed: Vec<String> = [joined("host", &host), joined("nft", &nft)]
            .into_iter()
            .flatten()
            .collect();
        self.book.converged(
            want.generation,
            (!changed.is_empty()).then(|| changed.join("; ")),
        );
        if let Some(meter) = self.meter.as_mut() {
            if nft.changed() {
                meter.restarted();
            }
            if *meter != before {
                cx.commit_reports(
                    &egress.into_iter().collect::<Vec<_>>(),
                    &[(egress::RECORD_KEY.to_vec(), Some(meter.encode()))],
                    "gateway egress",
                );
            }
        }
        if let Some(now) = counters.map(|c| c.packets) {
            let moved = counter_lines(&self.counters, &now);
            if !moved.is_empty() {
                self.book
                    .events
                    .push((Severity::Info, format!("endpoints: {}", moved.join("; "))));
            }
            self.counters = now;
        }
        Ok(Action::AwaitChange)
    }

    fn failed(&mut self, want: &GatewayWant, error: ReconcileError, cx: &Cx<'_>) -> Action {
        let action = self
            .book
            .failed(&error, want.generation, &cx.env.config.retry);
        tracing::warn!(error = %meridian_common::telemetry::error_chain(&error), failures = self.book.failures(), "gateway not in line with the intent");
        action
    }

    fn report(&mut self, _want: &GatewayWant, _action: Action, cx: &Cx<'_>) {
        cx.report_events("gateway", &mut self.book.events);
        if let Some(status) = self.book.outcome.take() {
            cx.env.status.send_modify(|s| s.gateway = Some(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use meridian_common::ids::{SiteId, TenantId, WorkloadId};
    use meridian_common::model::{Exposure, Protocol, TenantNetworkIntent};

    use super::*;

    fn layout() -> GatewayLayout {
        GatewayLayout {
            wan_interface: "wan0".into(),
            wan_next_hop: Ipv4Addr::new(198, 51, 100, 1),
            egress_address: Ipv4Addr::new(198, 51, 100, 2),
            underlay_address: Ipv4Addr::new(172, 31, 1, 3),
            leaf_vteps: vec![Ipv4Addr::new(172, 31, 1, 1)],
            public_range: Some(Ipv4Net::new(Ipv4Addr::new(198, 51, 100, 0), 24).unwrap()),
        }
    }

    fn intent(public_ip: Ipv4Addr) -> SiteIntent {
        let tenant = TenantId::parse("acme").unwrap();
        SiteIntent {
            networks: vec![TenantNetworkIntent {
                tenant: tenant.clone(),
                vni: 10_101,
                table: 1_000,
                subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 1, 0), 24).unwrap(),
                gateway: Ipv4Addr::new(10, 0, 1, 1),
            }],
            exposures: vec![Exposure {
                tenant,
                workload: WorkloadId::parse("llm").unwrap(),
                public_ip,
                public_port: 443,
                protocol: Protocol::Tcp,
                backend_ip: Ipv4Addr::new(10, 0, 1, 2),
                backend_port: 8000,
            }],
            ..SiteIntent::empty(SiteId::parse("edge-1").unwrap(), Generation::new(3))
        }
    }

    #[test]
    fn every_tenant_network_and_exposure_is_wanted_on_the_gateway() {
        let (host, wan) =
            gateway_want(&intent(Ipv4Addr::new(198, 51, 100, 10)), &layout()).unwrap();
        assert_eq!(host.vtep, Ipv4Addr::new(172, 31, 1, 3));
        assert_eq!(host.tenants.len(), 1);
        assert_eq!(
            host.tenants[0].remote_vteps,
            vec![Ipv4Addr::new(172, 31, 1, 1)]
        );
        assert_eq!(host.tenants[0].workload, None);
        assert_eq!(
            host.router,
            Some(RouterRole {
                uplink: "wan0".into(),
                next_hop: Ipv4Addr::new(198, 51, 100, 1),
                tunnel_endpoint: None,
            })
        );
        assert_eq!(wan.exposures.len(), 1);
        assert_eq!(wan.tenants[0].interface, "mbr10101");
        assert_eq!(wan.egress_address, Ipv4Addr::new(198, 51, 100, 2));
    }

    #[test]
    fn a_tenants_peers_become_its_tunnel_on_the_gateway() {
        let mut i = intent(Ipv4Addr::new(198, 51, 100, 10));
        i.tunnel_endpoint = Some(Ipv4Addr::new(198, 51, 100, 2));
        i.peers = vec![meridian_common::model::TenantPeer {
            tenant: TenantId::parse("acme").unwrap(),
            site: SiteId::parse("edge-2").unwrap(),
            endpoint: Ipv4Addr::new(192, 0, 2, 1),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(10, 0, 2, 1),
        }];
        let (host, wan) = gateway_want(&i, &layout()).unwrap();
        assert_eq!(
            host.tenants[0].peers,
            vec![HostPeer {
                endpoint: Ipv4Addr::new(192, 0, 2, 1),
                subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 24).unwrap(),
                gateway: Ipv4Addr::new(10, 0, 2, 1),
            }]
        );
        assert_eq!(
            host.router.unwrap().tunnel_endpoint,
            Some(Ipv4Addr::new(198, 51, 100, 2))
        );
        assert_eq!(wan.tunnel_sources, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(wan.tenants[0].tunnel.is_some());
        // Central's endpoint for the site must be the address the gateway holds.
        i.tunnel_endpoint = Some(Ipv4Addr::new(198, 51, 100, 9));
        let e = gateway_want(&i, &layout()).unwrap_err();
        assert!(e.to_string().contains("gateway.egress_address"), "{e}");
    }

    #[test]
    fn a_reservations_endpoint_is_published_only_while_its_window_is_open() {
        use meridian_common::ids::{ServerId, TimeWindow};
        use meridian_common::model::{Allocation, AllocationMode, GpuSlot};
        let mut i = intent(Ipv4Addr::new(198, 51, 100, 10));
        let t = Timestamp::from_millis;
        // No allocation of the workload here: published.
        assert_eq!(i.published_exposures(t(0)).0.len(), 1);
        i.allocations.push(Allocation {
            workload: WorkloadId::parse("llm").unwrap(),
            tenant: TenantId::parse("acme").unwrap(),
            server: ServerId::parse("srv-1").unwrap(),
            slot: GpuSlot::None,
            mode: AllocationMode::Container,
            image: None,
            window: Some(TimeWindow::new(t(1_000), t(2_000)).unwrap()),
            address: None,
        });
        assert_eq!(i.published_exposures(t(500)), (vec![], Some(t(1_000))));
        let (during, next) = i.published_exposures(t(1_500));
        assert_eq!((during.len(), next), (1, Some(t(2_000))));
        assert_eq!(i.published_exposures(t(2_000)), (vec![], None));
    }

    #[test]
    fn an_exposure_outside_the_public_range_is_refused_by_name() {
        let e = gateway_want(&intent(Ipv4Addr::new(203, 0, 113, 10)), &layout()).unwrap_err();
        assert!(e.to_string().contains("llm"), "{e}");
        assert!(e.to_string().contains("198.51.100.0/24"), "{e}");
        assert!(!ReconcileError::from(e).is_transient());
    }

    #[test]
    fn only_endpoint_counters_that_moved_are_reported() {
        let before = BTreeMap::from([
            ("acme/llm dnat tcp/443".to_owned(), 3),
            ("acme snat".to_owned(), 1),
        ]);
        let now = BTreeMap::from([
            ("acme/llm dnat tcp/443".to_owned(), 5),
            ("acme snat".to_owned(), 9),
        ]);
        assert_eq!(
            counter_lines(&before, &now),
            vec!["acme/llm dnat tcp/443: 5 packets".to_owned()]
        );
        assert!(counter_lines(&now, &now).is_empty());
    }
}
