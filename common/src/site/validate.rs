//! Validation of [`Site`]s, and of the [`GeoPoint`]s of sites and regions.

use std::net::Ipv4Addr;

use super::model::{GeoPoint, Site};
use crate::check::{Problems, ValidationError, check_unique, limits};

/// Every problem with `site`, or `Ok`.
pub fn validate_site(site: &Site) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    check_location(&mut p, "location", &site.location);
    p.max_len(
        "certifications",
        site.certifications.len(),
        limits::MAX_CERTIFICATIONS,
    );
    p.max_len("pools", site.pools.len(), limits::MAX_POOLS);
    check_unique(&mut p, "pools", &site.pools, "pool");
    let net = site.gateway_range;
    let first = net.addr();
    if net.prefix_len() < 8 {
        p.push(
            "gateway_range",
            format!("prefix length must be 8 to 32, got /{}", net.prefix_len()),
        );
    } else if first.is_unspecified()
        || first.is_loopback()
        || first.is_multicast()
        || first == Ipv4Addr::BROADCAST
        || first.octets()[0] >= 240
    {
        p.push(
            "gateway_range",
            format!("{net} is not a routable unicast prefix; give the gateway's public prefix"),
        );
    }
    p.at_most(
        "price_per_gpu_hour",
        site.price_per_gpu_hour,
        limits::MAX_PRICE_PER_GPU_HOUR,
        " micro-units",
    );
    p.at_most(
        "storage_mib",
        site.storage_mib,
        limits::MAX_SITE_STORAGE_MIB,
        " MiB",
    );
    p.finish()
}

/// Checks a point: finite, `lat` in `-90..=90`, `lon` in `-180..=180`.
pub(crate) fn check_location(p: &mut Problems, field: &str, g: &GeoPoint) {
    if !g.lat.is_finite() || !(-90.0..=90.0).contains(&g.lat) {
        p.push(
            format!("{field}.lat"),
            format!(
                "must be a finite number from -90 to 90 degrees, got {}",
                g.lat
            ),
        );
    }
    if !g.lon.is_finite() || !(-180.0..=180.0).contains(&g.lon) {
        p.push(
            format!("{field}.lon"),
            format!(
                "must be a finite number from -180 to 180 degrees, got {}",
                g.lon
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PoolId;
    use crate::net::Ipv4Net;
    use crate::testkit::{fields, sorted};

    const SITE: &str = r#"
        id = "fra-1"
        name = "frankfurt-1"
        tier = "core"
        location = { lat = 50.11, lon = 8.68 }
        country = "DE"
        certifications = ["iso27001"]
        pools = ["default", "training"]
        gateway_range = "203.0.113.0/24"
        price_per_gpu_hour = 2500000
        state = "online"
    "#;

    fn site() -> Site {
        toml::from_str(SITE).unwrap()
    }

    type SiteCase = (&'static str, fn(&mut Site), &'static [&'static str]);

    #[test]
    fn site_table() {
        assert_eq!(validate_site(&site()), Ok(()));
        let cases: &[SiteCase] = &[
            ("lat NaN", |s| s.location.lat = f64::NAN, &["location.lat"]),
            (
                "lon inf",
                |s| s.location.lon = f64::INFINITY,
                &["location.lon"],
            ),
            (
                "lat -inf",
                |s| s.location.lat = f64::NEG_INFINITY,
                &["location.lat"],
            ),
            (
                "lat 90.0001",
                |s| s.location.lat = 90.0001,
                &["location.lat"],
            ),
            ("lon -180.5", |s| s.location.lon = -180.5, &["location.lon"]),
            (
                "both NaN",
                |s| {
                    s.location = GeoPoint {
                        lat: f64::NAN,
                        lon: f64::NAN,
                    }
                },
                &["location.lat", "location.lon"],
            ),
            (
                "poles fine",
                |s| {
                    s.location = GeoPoint {
                        lat: -90.0,
                        lon: 180.0,
                    }
                },
                &[],
            ),
            (
                "duplicate pool",
                |s| s.pools.push(PoolId::parse("default").unwrap()),
                &["pools[2]"],
            ),
            (
                "too many pools",
                |s| {
                    s.pools = (0..65)
                        .map(|i| PoolId::parse(&format!("p{i}")).unwrap())
                        .collect()
                },
                &["pools"],
            ),
            (
                "gateway /0",
                |s| s.gateway_range = Ipv4Net::parse("0.0.0.0/0").unwrap(),
                &["gateway_range"],
            ),
            (
                "gateway loopback",
                |s| s.gateway_range = Ipv4Net::parse("127.0.0.0/8").unwrap(),
                &["gateway_range"],
            ),
            (
                "gateway multicast",
                |s| s.gateway_range = Ipv4Net::parse("224.0.0.0/24").unwrap(),
                &["gateway_range"],
            ),
            (
                "price u64::MAX",
                |s| s.price_per_gpu_hour = u64::MAX,
                &["price_per_gpu_hour"],
            ),
            ("price zero fine", |s| s.price_per_gpu_hour = 0, &[]),
        ];
        for (label, mutate, want) in cases {
            let mut s = site();
            mutate(&mut s);
            assert_eq!(fields(validate_site(&s)), sorted(want), "case {label:?}");
        }
    }
}
