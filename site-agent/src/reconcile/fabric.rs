//! What the site's leaf switches must carry for the held intent: the pure part of switch
//! reconciliation ([`fabric_want`]), and the switch as the reconciler holds it
//! ([`ManagedSwitch`]).
//!
//! Every tenant network of the intent becomes a VRF with its L2 VNI, a VLAN, an anycast SVI
//! gateway and an ingress ACL on every switch (so a tenant's servers can land on any leaf).
//! A server's access bond joins its tenant's VLAN while one of that tenant's allocations on it
//! is active (its window open, or no window), and leaves it when the last one ends, so a
//! server between tenants sits in no tenant segment. What the intent does not say is derived
//! here, the same on every switch of every site:
//!
//! - the VRF's **L3 VNI** is `l3_vni_base + table` (the VRF table is unique per tenant across
//!   the fleet; central's default VNI pool ends at 16,000,000, the default base is 16,500,000);
//! - the **VLAN** is local to the switch: `100 + vni % 3900`, moved up to the next free one
//!   (wrapping within 100..=3999) when two tenants of one switch meet, in VNI order;
//! - the switch's own **SVI address** is the `svi_offset`-th address below the subnet's
//!   broadcast address (the anycast gateway is the intent's `gateway`).
//!
//! A server that carries allocations of two tenants at once (MIG slices) cannot put its one
//! access bond into both VLANs: it joins none, and [`FabricWant::shared_servers`] names it so
//! the reconciler reports it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use meridian_common::ids::{ServerId, TenantId, Timestamp};
use meridian_common::model::{Ipv4Net, SiteIntent};

use meridian_drivers::{FabricSpec, FabricTenant, SwitchFabric};

/// The first tenant VLAN.
pub const FIRST_VLAN: u16 = 100;
/// The last tenant VLAN (4000 and up are reserved on Cumulus Linux).
pub const LAST_VLAN: u16 = 3_999;
/// The default of [`SwitchLayout::l3_vni_base`].
pub const DEFAULT_L3_VNI_BASE: u32 = 16_500_000;

/// A switch's side of the fabric that the intent does not carry (site configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchLayout {
    /// The VTEP (loopback) address, also the BGP router id.
    pub vtep: Ipv4Addr,
    /// The switch's BGP autonomous system.
    pub asn: u32,
    /// Fabric uplinks (BGP unnumbered, L2VPN EVPN).
    pub uplinks: Vec<String>,
    /// The range a tenant may not reach beyond its own subnet (the ingress ACL's deny).
    pub private_range: Ipv4Net,
    /// L3 VNI of a tenant's VRF = this + its VRF table.
    pub l3_vni_base: u32,
    /// The switch's own SVI address is this many addresses below the subnet's broadcast (1:
    /// the last usable address); two switches of one site need different offsets.
    pub svi_offset: u32,
    /// The access bond of each server cabled to this switch: (bond name, member ports).
    pub ports: BTreeMap<ServerId, (String, Vec<String>)>,
}

/// A switch the site reconciler keeps in line with the intent.
#[derive(Clone)]
pub struct ManagedSwitch {
    /// Its name in reports (`switch/<name>`).
    pub name: String,
    pub driver: Arc<dyn SwitchFabric>,
    pub layout: SwitchLayout,
}

impl fmt::Debug for ManagedSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedSwitch")
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("layout", &self.layout)
            .finish()
    }
}

/// What a switch must carry at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricWant {
    pub spec: FabricSpec,
    /// When an allocation window opens or closes next (the spec changes then).
    pub next_change: Option<Timestamp>,
    /// Servers left out of every tenant VLAN because they carry several tenants at once.
    pub shared_servers: Vec<(ServerId, Vec<TenantId>)>,
}

/// Why a switch cannot be given a spec for the intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FabricWantError {
    #[error("tenant {tenant}: L3 VNI {base} + table {table} is beyond the VNI range")]
    L3VniRange {
        tenant: TenantId,
        base: u32,
        table: u32,
    },
    #[error("{0} tenant networks do not fit in the switch's VLANs 100-3999")]
    TooManyTenants(usize),
    #[error("tenant {tenant}: subnet {subnet} has no address {offset} below its broadcast")]
    SviOffset {
        tenant: TenantId,
        subnet: Ipv4Net,
        offset: u32,
    },
}

/// The spec `layout`'s switch must carry for `intent` at `now`.
pub fn fabric_want(
    intent: &SiteIntent,
    layout: &SwitchLayout,
    now: Timestamp,
) -> Result<FabricWant, FabricWantError> {
    let mut networks: Vec<_> = intent.networks.iter().collect();
    networks.sort_by_key(|n| n.vni);
    let span = u32::from(LAST_VLAN - FIRST_VLAN) + 1;
    if networks.len() > span as usize {
        return Err(FabricWantError::TooManyTenants(networks.len()));
    }

    // Tenants on each cabled server now, and the next window boundary.
    let mut on_server: BTreeMap<&ServerId, BTreeSet<&TenantId>> = BTreeMap::new();
    let mut next_change: Option<Timestamp> = None;
    for a in &intent.allocations {
        let (active, next) = super::desired::window_state(a.window, now);
        if let Some(t) = next {
            next_change = Some(next_change.map_or(t, |n| n.min(t)));
        }
        if active && layout.ports.contains_key(&a.server) {
            on_server.entry(&a.server).or_default().insert(&a.tenant);
        }
    }
    let mut shared_servers = Vec::new();
    let mut bonds_of: BTreeMap<&TenantId, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for (server, tenants) in &on_server {
        if tenants.len() > 1 {
            shared_servers.push((
                (*server).clone(),
                tenants.iter().map(|t| (*t).clone()).collect(),
            ));
            continue;
        }
        if let Some(tenant) = tenants.first() {
            bonds_of
                .entry(tenant)
                .or_default()
                .push(layout.ports[*server].clone());
        }
    }

    let mut used = BTreeSet::new();
    let mut tenants = Vec::with_capacity(networks.len());
    for n in networks {
        let l3_vni = layout
            .l3_vni_base
            .checked_add(n.table)
            .filter(|v| *v <= meridian_common::validate::limits::MAX_VNI)
            .ok_or_else(|| FabricWantError::L3VniRange {
                tenant: n.tenant.clone(),
                base: layout.l3_vni_base,
                table: n.table,
            })?;
        let mut slot = n.vni % span;
        while !used.insert(slot) {
            slot = (slot + 1) % span;
        }
        let vlan = FIRST_VLAN + u16::try_from(slot).expect("below the span");
        let svi = u32::from(n.subnet.broadcast())
            .checked_sub(layout.svi_offset)
            .map(Ipv4Addr::from)
            .filter(|a| {
                layout.svi_offset > 0
                    && n.subnet.contains(*a)
                    && *a != n.subnet.addr()
                    && *a != n.gateway
            })
            .ok_or_else(|| FabricWantError::SviOffset {
                tenant: n.tenant.clone(),
                subnet: n.subnet,
                offset: layout.svi_offset,
            })?;
        tenants.push(FabricTenant {
            network: n.clone(),
            l3_vni,
            vlan,
            svi_address: svi,
            bonds: bonds_of.remove(&n.tenant).unwrap_or_default(),
        });
    }
    Ok(FabricWant {
        spec: FabricSpec {
            vtep: layout.vtep,
            asn: layout.asn,
            uplinks: layout.uplinks.clone(),
            private_range: layout.private_range,
            tenants,
        },
        next_change,
        shared_servers,
    })
}

#[cfg(test)]
mod tests {
    use meridian_common::ids::{Generation, SiteId, TimeWindow, WorkloadId};
    use meridian_common::model::{Allocation, AllocationMode, GpuSlot, TenantNetworkIntent};

    use super::*;

    fn layout() -> SwitchLayout {
        SwitchLayout {
            vtep: Ipv4Addr::new(10, 255, 0, 1),
            asn: 65101,
            uplinks: vec!["swp31".into()],
            private_range: Ipv4Net::parse("10.0.0.0/8").unwrap(),
            l3_vni_base: DEFAULT_L3_VNI_BASE,
            svi_offset: 1,
            ports: (1..=3)
                .map(|i| {
                    (
                        ServerId::parse(&format!("srv-{i}")).unwrap(),
                        (format!("bond{i}"), vec![format!("swp{i}")]),
                    )
                })
                .collect(),
        }
    }

    fn network(tenant: &str, vni: u32, table: u32, third: u8) -> TenantNetworkIntent {
        TenantNetworkIntent {
            tenant: TenantId::parse(tenant).unwrap(),
            vni,
            table,
            subnet: Ipv4Net::parse(&format!("10.1.{third}.0/24")).unwrap(),
            gateway: Ipv4Addr::new(10, 1, third, 1),
        }
    }

    fn alloc(workload: &str, tenant: &str, server: &str, window: Option<(i64, i64)>) -> Allocation {
        Allocation {
            address: None,
            workload: WorkloadId::parse(workload).unwrap(),
            tenant: TenantId::parse(tenant).unwrap(),
            server: ServerId::parse(server).unwrap(),
            slot: GpuSlot::None,
            mode: AllocationMode::BareMetal,
            image: None,
            window: window.map(|(s, e)| {
                TimeWindow::new(Timestamp::from_millis(s), Timestamp::from_millis(e)).unwrap()
            }),
        }
    }

    fn intent(networks: Vec<TenantNetworkIntent>, allocations: Vec<Allocation>) -> SiteIntent {
        SiteIntent {
            peers: vec![],
            tunnel_endpoint: None,
            site: SiteId::parse("edge-1").unwrap(),
            generation: Generation::new(3),
            networks,
            allocations,
            exposures: Vec::new(),
            volumes: Vec::new(),
            server_actions: Vec::new(),
            pools: Vec::new(),
        }
    }

    #[test]
    fn tenants_get_vrfs_vlans_svis_and_the_bonds_of_their_active_servers() {
        let i = intent(
            vec![
                network("tb", 10_002, 1_002, 2),
                network("ta", 10_001, 1_001, 1),
            ],
            vec![
                alloc("w-1", "ta", "srv-1", None),
                alloc("w-2", "tb", "srv-2", Some((1_000, 2_000))),
                alloc("w-3", "tb", "srv-3", Some((5_000, 6_000))),
                // Not cabled to this switch: ignored.
                alloc("w-4", "ta", "srv-9", None),
            ],
        );
        let w = fabric_want(&i, &layout(), Timestamp::from_millis(1_500)).unwrap();
        let t = &w.spec.tenants;
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].network.tenant.as_str(), "ta");
        assert_eq!(t[0].l3_vni, DEFAULT_L3_VNI_BASE + 1_001);
        assert_eq!(t[0].vlan, 100 + (10_001 % 3_900) as u16);
        assert_eq!(t[0].svi_address, Ipv4Addr::new(10, 1, 1, 254));
        assert_eq!(t[0].bonds, vec![("bond1".into(), vec!["swp1".into()])]);
        assert_eq!(t[1].bonds, vec![("bond2".into(), vec!["swp2".into()])]);
        assert_eq!(w.next_change, Some(Timestamp::from_millis(2_000)));
        meridian_drivers::nvue::validate(&w.spec).unwrap();

        // Before any window: srv-2 in no VLAN, the next change is w-2's start.
        let w = fabric_want(&i, &layout(), Timestamp::from_millis(0)).unwrap();
        assert!(w.spec.tenants[1].bonds.is_empty());
        assert_eq!(w.next_change, Some(Timestamp::from_millis(1_000)));
        // Between the windows, and after them all: nothing pending.
        let w = fabric_want(&i, &layout(), Timestamp::from_millis(7_000)).unwrap();
        assert!(w.spec.tenants[1].bonds.is_empty());
        assert_eq!(w.next_change, None);
    }

    #[test]
    fn vlans_are_stable_and_collisions_move_up_in_vni_order() {
        // 10_000 and 13_900 meet at the same VLAN; the higher VNI moves up one.
        let i = intent(
            vec![network("tb", 13_900, 7, 2), network("ta", 10_000, 6, 1)],
            Vec::new(),
        );
        let w = fabric_want(&i, &layout(), Timestamp::from_millis(0)).unwrap();
        let vlans: Vec<u16> = w.spec.tenants.iter().map(|t| t.vlan).collect();
        let first = 100 + (10_000 % 3_900) as u16;
        assert_eq!(vlans, vec![first, first + 1]);
        // The top of the range wraps to the bottom.
        let i = intent(
            vec![network("ta", 3_899, 6, 1), network("tb", 7_799, 7, 2)],
            Vec::new(),
        );
        let w = fabric_want(&i, &layout(), Timestamp::from_millis(0)).unwrap();
        let vlans: Vec<u16> = w.spec.tenants.iter().map(|t| t.vlan).collect();
        assert_eq!(vlans, vec![LAST_VLAN, FIRST_VLAN]);
    }

    #[test]
    fn a_server_of_two_tenants_joins_neither_vlan() {
        let i = intent(
            vec![
                network("ta", 10_001, 1_001, 1),
                network("tb", 10_002, 1_002, 2),
            ],
            vec![
                alloc("w-1", "ta", "srv-1", None),
                alloc("w-2", "tb", "srv-1", None),
            ],
        );
        let w = fabric_want(&i, &layout(), Timestamp::from_millis(0)).unwrap();
        assert!(w.spec.tenants.iter().all(|t| t.bonds.is_empty()));
        assert_eq!(w.shared_servers.len(), 1);
        assert_eq!(w.shared_servers[0].1.len(), 2);
    }

    #[test]
    fn impossible_layouts_are_named() {
        let mut l = layout();
        l.l3_vni_base = 16_777_000;
        let i = intent(vec![network("ta", 10_001, 1_001, 1)], Vec::new());
        assert!(matches!(
            fabric_want(&i, &l, Timestamp::from_millis(0)),
            Err(FabricWantError::L3VniRange { .. })
        ));
        let mut l = layout();
        // 254 below the broadcast of a /24 is the gateway (.1).
        l.svi_offset = 254;
        assert!(matches!(
            fabric_want(&i, &l, Timestamp::from_millis(0)),
            Err(FabricWantError::SviOffset { .. })
        ));
        l.svi_offset = 0;
        assert!(fabric_want(&i, &l, Timestamp::from_millis(0)).is_err());
    }
}
