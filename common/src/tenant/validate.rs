//! Validation of [`Tenant`]s, [`Dataset`]s and [`Region`]s.

use super::dataset::Dataset;
use super::model::Tenant;
use super::region::Region;
use crate::check::{Problems, ValidationError, check_unique, limits};
use crate::net::Ipv4Net;
use crate::site::validate::check_location;

/// Every problem with `tenant`, or `Ok`: weights finite in `0..=100`, and a usable network.
pub fn validate_tenant(tenant: &Tenant) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    let w = &tenant.weights;
    for (name, value) in [
        ("latency", w.latency),
        ("data", w.data),
        ("price", w.price),
        ("packing", w.packing),
    ] {
        if !value.is_finite() || !(0.0..=100.0).contains(&value) {
            p.push(
                format!("weights.{name}"),
                format!("must be a finite number from 0 to 100, got {value}"),
            );
        }
    }
    p.at_most(
        "quotas.storage_mib",
        tenant.quotas.storage_mib,
        crate::check::limits::MAX_SITE_STORAGE_MIB,
        " MiB",
    );
    if let Some(n) = &tenant.network {
        check_vni(&mut p, "network.vni", n.vni);
        check_table(&mut p, "network.table", n.table);
        if n.supernet.prefix_len() > 30 {
            p.push(
                "network.supernet",
                format!(
                    "prefix length must be at most /30 to hold subnets, got /{}",
                    n.supernet.prefix_len()
                ),
            );
        }
    }
    p.finish()
}

/// Checks a VXLAN network identifier.
pub(crate) fn check_vni(p: &mut Problems, field: impl Into<String>, vni: u32) {
    p.range(field, vni, 1, limits::MAX_VNI);
}

/// Checks a VRF routing table number.
pub(crate) fn check_table(p: &mut Problems, field: impl Into<String>, table: u32) {
    if limits::RESERVED_TABLES.contains(&table) {
        p.push(
            field,
            format!("table {table} is reserved (0, 253, 254, 255); pick another number"),
        );
    }
}

/// Checks that `gateway` is a usable host address of `subnet`.
pub(crate) fn gateway_in(subnet: &Ipv4Net, gateway: std::net::Ipv4Addr) -> bool {
    subnet.contains(gateway)
        && (subnet.prefix_len() >= 31
            || (gateway != subnet.addr() && gateway != subnet.broadcast()))
}

/// Every problem with `dataset`, or `Ok`: replica sites bounded and unique.
pub fn validate_dataset(dataset: &Dataset) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    p.max_len("replicas", dataset.replicas.len(), limits::MAX_DATASETS);
    check_unique(&mut p, "replicas", &dataset.replicas, "site");
    p.finish()
}

/// Every problem with `region`, or `Ok`: coordinates and population in range.
pub fn validate_region(region: &Region) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    check_location(&mut p, "location", &region.location);
    p.at_most("population", region.population, limits::MAX_POPULATION, "");
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SiteId;
    use crate::site::GeoPoint;
    use crate::testkit::{fields, sorted};

    fn tenant() -> Tenant {
        toml::from_str(
            r#"
            id = "acme"
            name = "acme"
            residency = ["EEA"]
            max_priority = 10
            weights = { latency = 50, data = 20, price = 20, packing = 10 }
            network = { vni = 1001, table = 1001, supernet = "10.64.0.0/16" }
            "#,
        )
        .unwrap()
    }

    type TenantCase = (&'static str, fn(&mut Tenant), &'static [&'static str]);

    #[test]
    fn tenant_table() {
        assert_eq!(validate_tenant(&tenant()), Ok(()));
        let cases: &[TenantCase] = &[
            (
                "weight NaN",
                |t| t.weights.latency = f64::NAN,
                &["weights.latency"],
            ),
            (
                "weight inf",
                |t| t.weights.data = f64::INFINITY,
                &["weights.data"],
            ),
            (
                "weight negative",
                |t| t.weights.price = -0.5,
                &["weights.price"],
            ),
            (
                "weight over 100",
                |t| t.weights.packing = 100.5,
                &["weights.packing"],
            ),
            (
                "weights at bounds",
                |t| {
                    t.weights.latency = 0.0;
                    t.weights.data = 100.0;
                },
                &[],
            ),
            (
                "vni zero",
                |t| t.network.as_mut().unwrap().vni = 0,
                &["network.vni"],
            ),
            (
                "vni over 24 bits",
                |t| t.network.as_mut().unwrap().vni = 16_777_216,
                &["network.vni"],
            ),
            (
                "vni u32::MAX",
                |t| t.network.as_mut().unwrap().vni = u32::MAX,
                &["network.vni"],
            ),
            (
                "vni max fine",
                |t| t.network.as_mut().unwrap().vni = 16_777_215,
                &[],
            ),
            (
                "table main",
                |t| t.network.as_mut().unwrap().table = 254,
                &["network.table"],
            ),
            (
                "table zero",
                |t| t.network.as_mut().unwrap().table = 0,
                &["network.table"],
            ),
            (
                "supernet too small",
                |t| t.network.as_mut().unwrap().supernet = "10.0.0.0/31".parse().unwrap(),
                &["network.supernet"],
            ),
            ("no network", |t| t.network = None, &[]),
        ];
        for (label, mutate, want) in cases {
            let mut t = tenant();
            mutate(&mut t);
            assert_eq!(fields(validate_tenant(&t)), sorted(want), "case {label:?}");
        }
    }

    fn dataset() -> Dataset {
        toml::from_str(
            r#"
            id = "weights"
            tenant = "acme"
            name = "llama-weights"
            size_bytes = 140000000000
            replicas = ["fra-1", "par-1"]
            residency = ["EU"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn dataset_table() {
        assert_eq!(validate_dataset(&dataset()), Ok(()));
        type Case = (&'static str, fn(&mut Dataset), &'static [&'static str]);
        let cases: &[Case] = &[
            (
                "duplicate replica",
                |d| d.replicas.push(SiteId::parse("fra-1").unwrap()),
                &["replicas[2]"],
            ),
            (
                "too many replicas",
                |d| {
                    d.replicas = (0..65)
                        .map(|i| SiteId::parse(&format!("s{i}")).unwrap())
                        .collect()
                },
                &["replicas"],
            ),
            ("u64::MAX size fine", |d| d.size_bytes = u64::MAX, &[]),
            ("no replicas fine", |d| d.replicas.clear(), &[]),
        ];
        for (label, mutate, want) in cases {
            let mut d = dataset();
            mutate(&mut d);
            assert_eq!(fields(validate_dataset(&d)), sorted(want), "case {label:?}");
        }
    }

    #[test]
    fn region_table() {
        let base: Region = toml::from_str(
            "id = \"paris\"\nname = \"paris\"\nlocation = { lat = 48.86, lon = 2.35 }\n\
             country = \"FR\"\npopulation = 12000000",
        )
        .unwrap();
        assert_eq!(validate_region(&base), Ok(()));
        type Case = (&'static str, fn(&mut Region), &'static [&'static str]);
        let cases: &[Case] = &[
            ("NaN lat", |r| r.location.lat = f64::NAN, &["location.lat"]),
            (
                "inf both",
                |r| {
                    r.location = GeoPoint {
                        lat: f64::INFINITY,
                        lon: f64::NEG_INFINITY,
                    }
                },
                &["location.lat", "location.lon"],
            ),
            (
                "population u64::MAX",
                |r| r.population = u64::MAX,
                &["population"],
            ),
        ];
        for (label, mutate, want) in cases {
            let mut r = base.clone();
            mutate(&mut r);
            assert_eq!(fields(validate_region(&r)), sorted(want), "case {label:?}");
        }
    }
}
