//! Validation of a [`SiteIntent`]: generation, networks, and that no GPU is booked twice.
//!
//! Two allocations on one server conflict when their windows overlap (no window means
//! "always") and either is bare metal, or they share a whole GPU, or they are MIG instances
//! on the same GPU whose memory slices overlap. The intent does not carry GPU models, so MIG
//! overlap uses the smallest geometry any model gives the profile name: a reported conflict is
//! always real, and the agent checks the exact geometry against its GPUs.

use std::collections::{BTreeMap, HashMap};

use super::model::{Allocation, AllocationMode, ServerActionKind, SiteIntent};
use crate::check::raw::check_url;
use crate::check::{Problems, ValidationError, check_unique, limits};
use crate::gpu::GpuModel;
use crate::ids::{TenantId, windows_overlap};
use crate::placement::GpuSlot;
use crate::tenant::validate::{check_table, check_vni, gateway_in};
use crate::workload::validate::IMAGE_SCHEMES;

/// Every problem with `intent`, or `Ok`.
pub fn validate_site_intent(intent: &SiteIntent) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    if intent.generation.get() < 1 {
        p.push("generation", "must be at least 1, got 0");
    }
    for (field, len) in [
        ("networks", intent.networks.len()),
        ("allocations", intent.allocations.len()),
        ("exposures", intent.exposures.len()),
        ("volumes", intent.volumes.len()),
        ("server_actions", intent.server_actions.len()),
        ("pools", intent.pools.len()),
        ("peers", intent.peers.len()),
    ] {
        p.max_len(field, len, limits::MAX_INTENT_ENTRIES);
    }
    networks(&mut p, intent);
    peers(&mut p, intent);
    addresses(&mut p, intent);
    allocations(&mut p, &intent.allocations);
    exposures(&mut p, intent);
    for (i, v) in intent.volumes.iter().enumerate() {
        p.range(
            format!("volumes[{i}].size_mib"),
            v.size_mib,
            1,
            limits::MAX_STORAGE_MIB,
        );
    }
    check_unique(
        &mut p,
        "volumes",
        intent.volumes.iter().map(|v| (&v.tenant, &v.name)),
        "volume (same tenant and name)",
    );
    for (i, a) in intent.server_actions.iter().enumerate() {
        if a.request.get() == 0 {
            p.push(
                format!("server_actions[{i}].request"),
                "must be at least 1 (the operator's request ID)",
            );
        }
        if let ServerActionKind::Provision { image } = &a.action
            && let Err(e) = check_url(
                &format!("server_actions[{i}].action.image"),
                image,
                IMAGE_SCHEMES,
            )
        {
            p.add(e);
        }
    }
    check_unique(
        &mut p,
        "server_actions",
        intent.server_actions.iter().map(|a| a.request),
        "request (a request is one action)",
    );
    check_unique(
        &mut p,
        "pools",
        intent.pools.iter().map(|a| &a.server),
        "server (a server is in one pool)",
    );
    p.finish()
}

fn networks(p: &mut Problems, intent: &SiteIntent) {
    for (i, n) in intent.networks.iter().enumerate() {
        check_vni(p, format!("networks[{i}].vni"), n.vni);
        check_table(p, format!("networks[{i}].table"), n.table);
        if !gateway_in(&n.subnet, n.gateway) {
            p.push(
                format!("networks[{i}].gateway"),
                format!("{} must be a host address inside {}", n.gateway, n.subnet),
            );
        }
    }
    check_unique(
        p,
        "networks",
        intent.networks.iter().map(|n| &n.tenant),
        "tenant (one network per tenant)",
    );
    let mut vni_owner: HashMap<u32, &TenantId> = HashMap::new();
    for (i, n) in intent.networks.iter().enumerate() {
        if let Some(owner) = vni_owner.insert(n.vni, &n.tenant)
            && *owner != n.tenant
        {
            p.push(
                format!("networks[{i}].vni"),
                format!("VNI {} is already used by tenant {owner}", n.vni),
            );
        }
    }
}

/// A peer names a tenant with a network here, another site, a usable endpoint other than
/// this site's own, and a subnet holding its gateway that overlaps neither the tenant's subnet
/// here nor its other peers'.
fn peers(p: &mut Problems, intent: &SiteIntent) {
    if !intent.peers.is_empty() && intent.tunnel_endpoint.is_none() {
        p.push(
            "tunnel_endpoint",
            "is required when the intent has peers (the local end of their tunnels)",
        );
    }
    if let Some(ep) = intent.tunnel_endpoint
        && !usable_endpoint(ep)
    {
        p.push(
            "tunnel_endpoint",
            format!("{ep} is not a unicast address a tunnel can use"),
        );
    }
    let subnet_of: HashMap<&TenantId, _> = intent
        .networks
        .iter()
        .map(|n| (&n.tenant, n.subnet))
        .collect();
    for (i, peer) in intent.peers.iter().enumerate() {
        let field = |f: &str| format!("peers[{i}].{f}");
        match subnet_of.get(&peer.tenant) {
            None => p.push(
                field("tenant"),
                format!("tenant {} has no network on this site", peer.tenant),
            ),
            Some(own) if own.overlaps(&peer.subnet) => p.push(
                field("subnet"),
                format!(
                    "{} overlaps tenant {}'s subnet {own} on this site",
                    peer.subnet, peer.tenant
                ),
            ),
            Some(_) => {}
        }
        if peer.site == intent.site {
            p.push(field("site"), "must be another site than the intent's own");
        }
        if !usable_endpoint(peer.endpoint) || Some(peer.endpoint) == intent.tunnel_endpoint {
            p.push(
                field("endpoint"),
                format!(
                    "{} must be a unicast address other than this site's tunnel endpoint",
                    peer.endpoint
                ),
            );
        }
        if !gateway_in(&peer.subnet, peer.gateway) {
            p.push(
                field("gateway"),
                format!(
                    "{} must be a host address inside {}",
                    peer.gateway, peer.subnet
                ),
            );
        }
        if let Some((j, other)) = intent.peers[..i]
            .iter()
            .enumerate()
            .find(|(_, o)| o.tenant == peer.tenant && o.subnet.overlaps(&peer.subnet))
        {
            p.push(
                field("subnet"),
                format!(
                    "{} overlaps peers[{j}].subnet {} of the same tenant",
                    peer.subnet, other.subnet
                ),
            );
        }
    }
    check_unique(
        p,
        "peers",
        intent.peers.iter().map(|x| (&x.tenant, &x.site)),
        "peer (same tenant and site)",
    );
}

fn usable_endpoint(ip: std::net::Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback())
}

/// An allocation's address lies in its tenant's subnet on this site.
fn addresses(p: &mut Problems, intent: &SiteIntent) {
    for (i, a) in intent.allocations.iter().enumerate() {
        let Some(addr) = a.address else { continue };
        let subnet = intent
            .networks
            .iter()
            .find(|n| n.tenant == a.tenant)
            .map(|n| (n.subnet, n.gateway));
        match subnet {
            Some((net, gw))
                if net.contains(addr)
                    && addr != gw
                    && addr != net.addr()
                    && addr != net.broadcast() => {}
            Some((net, _)) => p.push(
                format!("allocations[{i}].address"),
                format!("{addr} must be a host address of {net} other than its gateway"),
            ),
            None => p.push(
                format!("allocations[{i}].address"),
                format!("tenant {} has no network on this site", a.tenant),
            ),
        }
    }
}

fn exposures(p: &mut Problems, intent: &SiteIntent) {
    let subnet_of: HashMap<&TenantId, _> = intent
        .networks
        .iter()
        .map(|n| (&n.tenant, n.subnet))
        .collect();
    for (i, e) in intent.exposures.iter().enumerate() {
        if e.public_port == 0 {
            p.push(
                format!("exposures[{i}].public_port"),
                "must be between 1 and 65535, got 0",
            );
        }
        if e.backend_port == 0 {
            p.push(
                format!("exposures[{i}].backend_port"),
                "must be between 1 and 65535, got 0",
            );
        }
        if let Some(subnet) = subnet_of.get(&e.tenant)
            && !subnet.contains(e.backend_ip)
        {
            p.push(
                format!("exposures[{i}].backend_ip"),
                format!(
                    "{} must be inside the tenant's subnet {subnet}",
                    e.backend_ip
                ),
            );
        }
    }
    check_unique(
        p,
        "exposures",
        intent
            .exposures
            .iter()
            .map(|e| (e.public_ip, e.public_port, e.protocol)),
        "public address, port and protocol",
    );
}

fn allocations(p: &mut Problems, allocs: &[Allocation]) {
    for (i, a) in allocs.iter().enumerate() {
        if let Some(image) = &a.image
            && let Err(e) = check_url(&format!("allocations[{i}].image"), image, IMAGE_SCHEMES)
        {
            p.add(e);
        }
        match &a.slot {
            GpuSlot::None => {}
            GpuSlot::WholeGpus { indices } => {
                let field = format!("allocations[{i}].slot.indices");
                if indices.is_empty() {
                    p.push(&field, "must list at least one GPU");
                }
                p.max_len(&field, indices.len(), limits::MAX_GPUS_PER_SERVER);
                check_unique(p, &field, indices, "GPU index");
            }
            GpuSlot::Mig { placement, .. } => {
                if *placement > 7 {
                    p.push(
                        format!("allocations[{i}].slot.placement"),
                        format!("must be a memory slice from 0 to 7, got {placement}"),
                    );
                }
            }
        }
    }
    // Exact duplicates first; they are not reported again as conflicts.
    let mut first_of: HashMap<(&_, &_, &GpuSlot), usize> = HashMap::new();
    let mut duplicate = vec![false; allocs.len()];
    for (i, a) in allocs.iter().enumerate() {
        if let Some(first) = first_of.insert((&a.workload, &a.server, &a.slot), i) {
            first_of.insert((&a.workload, &a.server, &a.slot), first);
            duplicate[i] = true;
            p.push(
                format!("allocations[{i}]"),
                format!(
                    "duplicates allocations[{first}] (same workload, server and slot); list it once"
                ),
            );
        }
    }
    let mut by_server: BTreeMap<&_, Vec<usize>> = BTreeMap::new();
    for (i, a) in allocs.iter().enumerate() {
        if !duplicate[i] {
            by_server.entry(&a.server).or_default().push(i);
        }
    }
    for (server, idx) in by_server {
        if idx.len() > limits::MAX_ALLOCATIONS_PER_SERVER {
            p.push(
                "allocations",
                format!(
                    "server {server} has {} allocations, at most {} are allowed",
                    idx.len(),
                    limits::MAX_ALLOCATIONS_PER_SERVER
                ),
            );
            continue;
        }
        for (n, &j) in idx.iter().enumerate() {
            for &i in &idx[..n] {
                if let Some(why) = conflict(&allocs[i], &allocs[j]) {
                    p.push(
                        format!("allocations[{j}].slot"),
                        format!("overlaps allocations[{i}] on server {server} ({why}) in time"),
                    );
                    break;
                }
            }
        }
    }
}

/// Why two allocations on the same server cannot both hold, if they cannot.
fn conflict(a: &Allocation, b: &Allocation) -> Option<String> {
    if !windows_overlap(a.window.as_ref(), b.window.as_ref()) {
        return None;
    }
    if a.mode == AllocationMode::BareMetal || b.mode == AllocationMode::BareMetal {
        return Some("bare metal takes the whole server".into());
    }
    match (&a.slot, &b.slot) {
        (GpuSlot::WholeGpus { indices: x }, GpuSlot::WholeGpus { indices: y }) => {
            x.iter().find(|g| y.contains(g)).map(|g| format!("GPU {g}"))
        }
        (GpuSlot::WholeGpus { indices }, GpuSlot::Mig { gpu_index, .. })
        | (GpuSlot::Mig { gpu_index, .. }, GpuSlot::WholeGpus { indices }) => indices
            .contains(gpu_index)
            .then(|| format!("GPU {gpu_index}")),
        (
            GpuSlot::Mig {
                gpu_index: g1,
                profile: p1,
                placement: s1,
            },
            GpuSlot::Mig {
                gpu_index: g2,
                profile: p2,
                placement: s2,
            },
        ) => (g1 == g2 && (s1 == s2 || mig_mask(p1.name(), *s1) & mig_mask(p2.name(), *s2) != 0))
            .then(|| format!("MIG memory slices of GPU {g1}")),
        _ => None,
    }
}

/// The smallest memory-slice mask any model gives `profile` at `placement` (0 if invalid).
fn mig_mask(profile: &str, placement: u8) -> u16 {
    let slices = GpuModel::ALL
        .iter()
        .filter_map(|m| m.mig_profile(profile))
        .map(|s| s.memory_slices)
        .min()
        .unwrap_or(0);
    if placement > 7 || slices == 0 {
        return 0;
    }
    ((1u16 << slices) - 1) << placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::MigProfile;
    use crate::ids::{Generation, TimeWindow, Timestamp};
    use crate::net::Ipv4Net;

    const INTENT: &str = r#"
        site = "fra-1"
        generation = 7

        [[networks]]
        tenant = "acme"
        vni = 1001
        table = 1001
        subnet = "10.64.1.0/24"
        gateway = "10.64.1.1"

        [[networks]]
        tenant = "globex"
        vni = 1002
        table = 1002
        subnet = "10.64.1.0/24"
        gateway = "10.64.1.1"

        [[allocations]]
        workload = "train"
        tenant = "acme"
        server = "srv-1"
        slot = { whole_gpus = { indices = [0, 1] } }
        mode = "container"
        image = "oci://registry/train:1"
        window = { start = 0, end = 1000 }

        [[allocations]]
        workload = "infer"
        tenant = "globex"
        server = "srv-1"
        slot = { mig = { gpu_index = 2, profile = "3g.40gb", placement = 4 } }
        mode = "virtual_machine"

        [[allocations]]
        workload = "infer"
        tenant = "globex"
        server = "srv-1"
        slot = { mig = { gpu_index = 2, profile = "4g.40gb", placement = 0 } }
        mode = "virtual_machine"

        [[allocations]]
        workload = "later"
        tenant = "acme"
        server = "srv-1"
        slot = { whole_gpus = { indices = [0] } }
        mode = "container"
        window = { start = 1000, end = 2000 }

        [[allocations]]
        workload = "bm"
        tenant = "acme"
        server = "srv-2"
        slot = "none"
        mode = "bare_metal"
        image = "https://images/ubuntu.iso"

        [[exposures]]
        tenant = "acme"
        workload = "train"
        public_ip = "203.0.113.10"
        public_port = 443
        protocol = "tcp"
        backend_ip = "10.64.1.20"
        backend_port = 8443

        [[volumes]]
        tenant = "acme"
        name = "scratch"
        size_mib = 1048576

        [[server_actions]]
        server = "srv-2"
        action = { provision = { image = "https://images/ubuntu.iso" } }
        request = 7

        [[server_actions]]
        server = "srv-3"
        action = { power = "cycle" }
        request = 8

        [[server_actions]]
        server = "srv-4"
        action = "clean"
        request = 9

        [[pools]]
        server = "srv-1"
        pool = "training"
    "#;

    fn intent() -> SiteIntent {
        toml::from_str(INTENT).unwrap()
    }

    fn mig(gpu_index: u32, profile: &str, placement: u8) -> GpuSlot {
        GpuSlot::Mig {
            gpu_index,
            profile: MigProfile::parse_any(profile).unwrap(),
            placement,
        }
    }

    fn window(start: i64, end: i64) -> Option<TimeWindow> {
        Some(TimeWindow::new(Timestamp(start), Timestamp(end)).unwrap())
    }

    /// A copy of allocation `i` with a new workload name, pushed at the end.
    fn copy_of(s: &mut SiteIntent, i: usize) -> &mut Allocation {
        let mut a = s.allocations[i].clone();
        a.workload = "other".parse().unwrap();
        s.allocations.push(a);
        s.allocations.last_mut().unwrap()
    }

    type Case = (&'static str, fn(&mut SiteIntent), &'static [&'static str]);

    /// Adds acme's subnet 10.64.2.0/24 at `site` as a peer, and this site's endpoint.
    fn with_peer(s: &mut SiteIntent, site: &str) {
        s.tunnel_endpoint = Some("198.51.100.1".parse().unwrap());
        s.peers.push(crate::intent::model::TenantPeer {
            tenant: "acme".parse().unwrap(),
            site: site.parse().unwrap(),
            endpoint: "198.51.100.17".parse().unwrap(),
            subnet: Ipv4Net::parse("10.64.2.0/24").unwrap(),
            gateway: "10.64.2.1".parse().unwrap(),
        });
    }

    #[test]
    fn table() {
        assert_eq!(validate_site_intent(&intent()), Ok(()));
        let cases: &[Case] = &[
            (
                "generation zero",
                |s| s.generation = Generation::new(0),
                &["generation"],
            ),
            (
                "generation u64::MAX",
                |s| s.generation = Generation::new(u64::MAX),
                &[],
            ),
            ("vni zero", |s| s.networks[0].vni = 0, &["networks[0].vni"]),
            (
                "vni too big",
                |s| s.networks[0].vni = 16_777_216,
                &["networks[0].vni"],
            ),
            (
                "vni u32::MAX",
                |s| s.networks[0].vni = u32::MAX,
                &["networks[0].vni"],
            ),
            (
                "vni shared",
                |s| s.networks[1].vni = 1001,
                &["networks[1].vni"],
            ),
            (
                "table local",
                |s| s.networks[0].table = 255,
                &["networks[0].table"],
            ),
            (
                "gateway outside",
                |s| s.networks[0].gateway = "10.64.2.1".parse().unwrap(),
                &["networks[0].gateway"],
            ),
            (
                "gateway is network address",
                |s| s.networks[0].gateway = "10.64.1.0".parse().unwrap(),
                &["networks[0].gateway"],
            ),
            (
                "two networks for a tenant",
                |s| {
                    let mut n = s.networks[0].clone();
                    n.vni = 1003;
                    s.networks.push(n);
                },
                &["networks[2]"],
            ),
            (
                "exact duplicate allocation",
                |s| s.allocations.push(s.allocations[0].clone()),
                &["allocations[5]"],
            ),
            (
                "whole GPU booked twice",
                |s| {
                    copy_of(s, 0).slot = GpuSlot::WholeGpus {
                        indices: vec![1, 5],
                    };
                },
                &["allocations[5].slot"],
            ),
            (
                "whole GPU booked twice, disjoint windows",
                |s| {
                    let a = copy_of(s, 0);
                    a.slot = GpuSlot::WholeGpus { indices: vec![1] };
                    a.window = window(1000, 3000);
                },
                &[],
            ),
            (
                "whole GPU booked twice, open window",
                |s| {
                    let a = copy_of(s, 0);
                    a.slot = GpuSlot::WholeGpus { indices: vec![1] };
                    a.window = None;
                },
                &["allocations[5].slot"],
            ),
            (
                "same MIG placement twice",
                |s| {
                    copy_of(s, 1);
                },
                &["allocations[5].slot"],
            ),
            (
                "overlapping MIG slices",
                |s| copy_of(s, 1).slot = mig(2, "2g.20gb", 2),
                &["allocations[5].slot"],
            ),
            (
                "overlapping MIG slices, other GPU",
                |s| copy_of(s, 1).slot = mig(3, "2g.20gb", 2),
                &[],
            ),
            (
                "MIG on a whole-booked GPU",
                |s| copy_of(s, 1).slot = mig(1, "1g.10gb", 0),
                &["allocations[5].slot"],
            ),
            (
                "second allocation on bare-metal server",
                |s| {
                    let a = copy_of(s, 4);
                    a.mode = AllocationMode::Container;
                    a.slot = mig(0, "1g.10gb", 0);
                },
                &["allocations[5].slot"],
            ),
            (
                "MIG placement out of range",
                |s| s.allocations[1].slot = mig(2, "1g.10gb", 200),
                &["allocations[1].slot.placement"],
            ),
            (
                "empty GPU list",
                |s| s.allocations[0].slot = GpuSlot::WholeGpus { indices: vec![] },
                &["allocations[0].slot.indices"],
            ),
            (
                "repeated GPU index",
                |s| {
                    s.allocations[0].slot = GpuSlot::WholeGpus {
                        indices: vec![0, 0],
                    }
                },
                &["allocations[0].slot.indices[1]"],
            ),
            (
                "bad image",
                |s| s.allocations[0].image = Some("registry/train".into()),
                &["allocations[0].image"],
            ),
            (
                "public port zero",
                |s| s.exposures[0].public_port = 0,
                &["exposures[0].public_port"],
            ),
            (
                "backend port zero",
                |s| s.exposures[0].backend_port = 0,
                &["exposures[0].backend_port"],
            ),
            (
                "backend outside subnet",
                |s| s.exposures[0].backend_ip = "192.168.0.1".parse().unwrap(),
                &["exposures[0].backend_ip"],
            ),
            (
                "public port taken twice",
                |s| s.exposures.push(s.exposures[0].clone()),
                &["exposures[1]"],
            ),
            (
                "volume zero size",
                |s| s.volumes[0].size_mib = 0,
                &["volumes[0].size_mib"],
            ),
            (
                "volume u64::MAX",
                |s| s.volumes[0].size_mib = u64::MAX,
                &["volumes[0].size_mib"],
            ),
            (
                "volume twice",
                |s| s.volumes.push(s.volumes[0].clone()),
                &["volumes[1]"],
            ),
            (
                "provision without scheme",
                |s| {
                    s.server_actions[0].action = ServerActionKind::Provision {
                        image: "\u{0}".repeat(10 << 20),
                    }
                },
                &["server_actions[0].action.image"],
            ),
            (
                "request zero",
                |s| s.server_actions[1].request = 0.into(),
                &["server_actions[1].request"],
            ),
            (
                "one request twice",
                |s| s.server_actions[2].request = s.server_actions[0].request,
                &["server_actions[2]"],
            ),
            (
                "server in two pools",
                |s| {
                    let mut a = s.pools[0].clone();
                    a.pool = "other".parse().unwrap();
                    s.pools.push(a);
                },
                &["pools[1]"],
            ),
            ("a peer and its endpoint", |s| with_peer(s, "ams-1"), &[]),
            (
                "peers without a tunnel endpoint",
                |s| {
                    with_peer(s, "ams-1");
                    s.tunnel_endpoint = None;
                },
                &["tunnel_endpoint"],
            ),
            (
                "a peer of a tenant with no network here",
                |s| {
                    with_peer(s, "ams-1");
                    s.peers[0].tenant = "initech".parse().unwrap();
                },
                &["peers[0].tenant"],
            ),
            (
                "a peer subnet overlapping the tenant's own",
                |s| {
                    with_peer(s, "ams-1");
                    s.peers[0].subnet = Ipv4Net::parse("10.64.0.0/16").unwrap();
                    s.peers[0].gateway = "10.64.9.1".parse().unwrap();
                },
                &["peers[0].subnet"],
            ),
            (
                "two peers of one tenant overlapping",
                |s| {
                    with_peer(s, "ams-1");
                    with_peer(s, "par-1");
                },
                &["peers[1].subnet"],
            ),
            (
                "a peer on the intent's own site",
                |s| with_peer(s, "fra-1"),
                &["peers[0].site"],
            ),
            (
                "a peer at this site's own endpoint",
                |s| {
                    with_peer(s, "ams-1");
                    s.peers[0].endpoint = s.tunnel_endpoint.unwrap();
                },
                &["peers[0].endpoint"],
            ),
            (
                "a peer gateway outside its subnet",
                |s| {
                    with_peer(s, "ams-1");
                    s.peers[0].gateway = "10.99.0.1".parse().unwrap();
                },
                &["peers[0].gateway"],
            ),
            (
                "an allocation address in its tenant's subnet",
                |s| s.allocations[0].address = Some("10.64.1.20".parse().unwrap()),
                &[],
            ),
            (
                "an allocation address outside its tenant's subnet",
                |s| s.allocations[0].address = Some("10.65.1.20".parse().unwrap()),
                &["allocations[0].address"],
            ),
            (
                "an allocation address on the gateway",
                |s| s.allocations[0].address = Some("10.64.1.1".parse().unwrap()),
                &["allocations[0].address"],
            ),
        ];
        for (label, mutate, want) in cases {
            let mut s = intent();
            mutate(&mut s);
            let mut got: Vec<String> = match validate_site_intent(&s) {
                Ok(()) => vec![],
                Err(e) => {
                    assert!(
                        e.to_string().len() < 2000,
                        "case {label:?}: report too long"
                    );
                    e.fields().into_iter().map(String::from).collect()
                }
            };
            got.sort();
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "case {label:?}");
        }
    }

    #[test]
    fn many_allocations_on_one_server_are_bounded() {
        let mut s = intent();
        let a = s.allocations[0].clone();
        s.allocations = (0..5000)
            .map(|i| {
                let mut a = a.clone();
                a.workload = format!("w{i}").parse().unwrap();
                a.slot = GpuSlot::None;
                a
            })
            .collect();
        let e = validate_site_intent(&s).unwrap_err();
        assert_eq!(e.fields(), vec!["allocations"]);
    }

    #[test]
    fn mig_masks_are_conservative() {
        // 1g.10gb is one slice on H100-80GB (two on A100-40GB): @0 and @1 do not conflict.
        assert_eq!(mig_mask("1g.10gb", 0) & mig_mask("1g.10gb", 1), 0);
        assert_ne!(mig_mask("3g.40gb", 0) & mig_mask("1g.10gb", 3), 0);
        assert_eq!(mig_mask("7g.80gb", 0), 0xff);
        assert_eq!(mig_mask("7g.80gb", 9), 0);
    }

    #[test]
    fn round_trip() {
        let s = intent();
        let again: SiteIntent = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        assert!(toml::from_str::<SiteIntent>(&format!("{INTENT}\n[extra]\na = 1")).is_err());
    }
}
