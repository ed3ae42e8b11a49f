//! [`Fleet::fingerprint`]: 64-bit FNV-1a over a canonical binary rendering of every object.
//!
//! The rendering is written here by hand (not `Debug`, not serde, not `std::hash`), so it
//! changes only when the fleet does: integers little-endian, floats as their IEEE bits,
//! strings length-prefixed, enums by name, each object behind a tag. A field added to a model
//! type is not covered until it is added here.

use meridian_common::model::{
    Dataset, Gpu, Ipv4Net, MigConfig, Region, ResidencyRule, Server, ServerState, Site, Tenant,
};

use super::Fleet;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.bytes(&[0]),
            Some(s) => {
                self.bytes(&[1]);
                self.str(s);
            }
        }
    }

    fn net(&mut self, n: &Ipv4Net) {
        self.bytes(&n.addr().octets());
        self.bytes(&[n.prefix_len()]);
    }

    fn rule(&mut self, r: &ResidencyRule) {
        self.len(r.terms.len());
        for t in &r.terms {
            self.str(&t.to_string());
        }
    }
}

/// A unit enum's variant name (derived `Debug` of a field-less variant is its name).
fn name<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

fn site(h: &mut Fnv, s: &Site) {
    h.str("site");
    h.str(s.id.as_str());
    h.str(s.name.as_str());
    h.str(&name(&s.tier));
    h.f64(s.location.lat);
    h.f64(s.location.lon);
    h.str(s.country.as_str());
    h.len(s.certifications.len());
    for c in &s.certifications {
        h.str(&name(c));
    }
    h.len(s.pools.len());
    for p in &s.pools {
        h.str(p.as_str());
    }
    h.net(&s.gateway_range);
    h.u64(s.price_per_gpu_hour);
    h.str(&name(&s.state));
}

fn gpu(h: &mut Fnv, g: &Gpu) {
    h.u64(u64::from(g.index));
    h.str(g.model.as_str());
    h.u64(g.memory_mib);
    match &g.mig {
        MigConfig::Disabled => h.str("mig-off"),
        MigConfig::Enabled { instances } => {
            h.str("mig-on");
            h.len(instances.len());
            for i in instances {
                h.str(i.profile.name());
                h.bytes(&[i.placement]);
            }
        }
    }
    h.str(&name(&g.health));
}

fn server(h: &mut Fnv, s: &Server) {
    h.str("server");
    h.str(s.id.as_str());
    h.str(s.site.as_str());
    h.str(&s.bmc.url);
    h.str(&name(&s.bmc.vendor));
    h.str(&s.serial);
    h.u64(u64::from(s.cpu_cores));
    h.u64(s.memory_mib);
    h.len(s.gpus.len());
    for g in &s.gpus {
        gpu(h, g);
    }
    match &s.dpu {
        None => h.bytes(&[0]),
        Some(d) => {
            h.bytes(&[1]);
            h.str(&d.model);
            h.str(&d.serial);
            h.str(&name(&d.mode));
        }
    }
    h.opt_str(s.pool.as_ref().map(|p| p.as_str()));
    match &s.state {
        ServerState::Failed { reason } => {
            h.str("Failed");
            h.str(reason);
        }
        other => h.str(&name(other)),
    }
}

fn region(h: &mut Fnv, r: &Region) {
    h.str("region");
    h.str(r.id.as_str());
    h.str(r.name.as_str());
    h.f64(r.location.lat);
    h.f64(r.location.lon);
    h.str(r.country.as_str());
    h.u64(r.population);
}

fn dataset(h: &mut Fnv, d: &Dataset) {
    h.str("dataset");
    h.str(d.id.as_str());
    h.str(d.tenant.as_str());
    h.str(d.name.as_str());
    h.u64(d.size_bytes);
    h.len(d.replicas.len());
    for r in &d.replicas {
        h.str(r.as_str());
    }
    h.rule(&d.residency);
}

fn tenant(h: &mut Fnv, t: &Tenant) {
    h.str("tenant");
    h.str(t.id.as_str());
    h.str(t.name.as_str());
    let q = &t.quotas;
    h.len(q.gpus_per_model.len());
    for (model, n) in &q.gpus_per_model {
        h.str(model.as_str());
        h.u64(u64::from(*n));
    }
    h.u64(u64::from(q.mig_slices));
    h.u64(u64::from(q.concurrent_reservations));
    h.u64(u64::from(q.sites));
    h.rule(&t.residency);
    let w = &t.weights;
    for v in [w.latency, w.data, w.price, w.packing] {
        h.f64(v);
    }
    h.u64(u64::from(t.max_priority));
    match &t.network {
        None => h.bytes(&[0]),
        Some(n) => {
            h.bytes(&[1]);
            h.u64(u64::from(n.vni));
            h.u64(u64::from(n.table));
            h.net(&n.supernet);
        }
    }
}

pub(crate) fn fingerprint(fleet: &Fleet) -> u64 {
    let mut h = Fnv(FNV_OFFSET);
    h.str("meridian-fleet-v1");
    h.len(fleet.sites.len());
    fleet.sites.iter().for_each(|s| site(&mut h, s));
    h.len(fleet.servers.len());
    fleet.servers.iter().for_each(|s| server(&mut h, s));
    h.len(fleet.regions.len());
    fleet.regions.iter().for_each(|r| region(&mut h, r));
    h.len(fleet.datasets.len());
    fleet.datasets.iter().for_each(|d| dataset(&mut h, d));
    h.len(fleet.tenants.len());
    fleet.tenants.iter().for_each(|t| tenant(&mut h, t));
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 64 test vectors.
        let mut h = Fnv(FNV_OFFSET);
        h.bytes(b"");
        assert_eq!(h.0, 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv(FNV_OFFSET);
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv(FNV_OFFSET);
        h.bytes(b"foobar");
        assert_eq!(h.0, 0x8594_4171_f739_67e8);
    }
}
