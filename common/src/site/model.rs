//! Sites: where they are, what they are certified for, and their lifecycle state.
//!
//! A [`Site`] as stored by central. Its fields are typed (IDs, country, prefix), so the
//! remaining rules (coordinates in range, sizes bounded) are checked by
//! [`validate_site`](crate::validate::validate_site).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::{Name, PoolId, SiteId};
use crate::jurisdiction::Jurisdiction;
use crate::net::Ipv4Net;

/// Mean Earth radius in km, for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A point on Earth in degrees (WGS 84). Valid when both are finite, `lat` in `-90..=90` and
/// `lon` in `-180..=180` (checked by validation, not by construction).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoPoint {
    /// Latitude in degrees, north positive.
    pub lat: f64,
    /// Longitude in degrees, east positive.
    pub lon: f64,
}

impl GeoPoint {
    /// Whether the coordinates are finite and in range.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }

    /// Great-circle (haversine) distance in km.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = la2 - la1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// Size class of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteTier {
    /// A small site near users.
    Edge,
    /// A large data centre.
    Core,
}

/// A compliance certification a site holds and a workload may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Certification {
    /// ISO/IEC 27001.
    Iso27001,
    /// SOC 2.
    Soc2,
    /// HIPAA.
    Hipaa,
    /// PCI DSS.
    PciDss,
    /// Sovereign cloud (operated under local jurisdiction only).
    Sovereign,
    /// GxP (life sciences).
    Gxp,
}

/// Lifecycle state of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    /// Created by an operator; no agent has enrolled yet.
    Pending,
    /// The agent enrolled but has not reported yet.
    Enrolled,
    /// The agent is connected and reporting.
    Online,
    /// The agent's channel is down.
    Disconnected,
    /// Connected but not fully working.
    Degraded,
    /// Retired; takes no workloads.
    Decommissioned,
}

/// A site as stored by central.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site's ID.
    pub id: SiteId,
    /// Its name.
    pub name: Name,
    /// Edge or core.
    pub tier: SiteTier,
    /// Where it is.
    pub location: GeoPoint,
    /// The country it is in.
    pub country: Jurisdiction,
    /// Certifications it holds.
    #[serde(default)]
    pub certifications: BTreeSet<Certification>,
    /// Its server pools.
    #[serde(default)]
    pub pools: Vec<PoolId>,
    /// Public IPv4 prefix of its WAN gateway.
    pub gateway_range: Ipv4Net,
    /// Price in micro-units of the provider's currency per GPU-hour.
    pub price_per_gpu_hour: u64,
    /// Lifecycle state.
    pub state: SiteState,
    /// Capacity of the site's external storage array for tenant volumes, in MiB (0: the site
    /// has no array and takes no workload that asks for storage).
    #[serde(default)]
    pub storage_mib: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geo() {
        let fra = GeoPoint {
            lat: 50.11,
            lon: 8.68,
        };
        let par = GeoPoint {
            lat: 48.86,
            lon: 2.35,
        };
        let d = fra.distance_km(&par);
        assert!((470.0..490.0).contains(&d), "{d}");
        assert_eq!(fra.distance_km(&fra), 0.0);
        assert!(
            !GeoPoint {
                lat: f64::NAN,
                lon: 0.0
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                lat: 0.0,
                lon: f64::INFINITY
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                lat: 90.5,
                lon: 0.0
            }
            .is_valid()
        );
        assert!(
            GeoPoint {
                lat: -90.0,
                lon: 180.0
            }
            .is_valid()
        );
    }

    #[test]
    fn site_serde() {
        let text = r#"
            id = "fra-1"
            name = "frankfurt-1"
            tier = "core"
            location = { lat = 50.11, lon = 8.68 }
            country = "DE"
            certifications = ["iso27001", "pci_dss"]
            pools = ["default"]
            gateway_range = "203.0.113.0/24"
            price_per_gpu_hour = 2500000
            state = "online"
        "#;
        let site: Site = toml::from_str(text).unwrap();
        assert!(site.certifications.contains(&Certification::PciDss));
        let again: Site = toml::from_str(&toml::to_string(&site).unwrap()).unwrap();
        assert_eq!(again, site);
        let unknown = format!("{text}\ncolour = \"blue\"");
        assert!(toml::from_str::<Site>(&unknown).is_err());
    }
}
