//! [`Site`], its enums, and [`GeoPoint`].

use meridian_proto::v1 as proto;

use super::model::{Certification, GeoPoint, Site, SiteState, SiteTier};
use crate::jurisdiction::wire::jurisdiction;
use crate::wire::{
    AtField, ConvertError, enum_in, enum_out, id, ids, required, to_wire, unique_with, wire_enum,
};

wire_enum!(SiteTier <=> SiteTier { Edge, Core });
wire_enum!(Certification <=> Certification {
    Iso27001, Soc2, Hipaa, PciDss, Sovereign, Gxp,
});
wire_enum!(SiteState <=> SiteState {
    Pending, Enrolled, Online, Disconnected, Degraded, Decommissioned,
});

impl From<Site> for proto::Site {
    fn from(s: Site) -> Self {
        Self {
            id: s.id.into(),
            name: s.name.into(),
            tier: enum_out(s.tier),
            location: Some(s.location.into()),
            country: s.country.into(),
            certifications: s.certifications.into_iter().map(enum_out).collect(),
            pools: to_wire(s.pools),
            gateway_range: Some(s.gateway_range.into()),
            price_per_gpu_hour: s.price_per_gpu_hour,
            state: enum_out(s.state),
            storage_mib: s.storage_mib,
        }
    }
}

impl TryFrom<proto::Site> for Site {
    type Error = ConvertError;

    fn try_from(s: proto::Site) -> Result<Self, ConvertError> {
        Ok(Self {
            id: id(&s.id).at("id")?,
            name: id(&s.name).at("name")?,
            tier: enum_in(s.tier).at("tier")?,
            location: required(s.location, "location")?,
            country: jurisdiction(&s.country).at("country")?,
            certifications: unique_with(s.certifications, "certifications", "", enum_in)?,
            pools: ids(s.pools, "pools")?,
            gateway_range: required(s.gateway_range, "gateway_range")?,
            price_per_gpu_hour: s.price_per_gpu_hour,
            state: enum_in(s.state).at("state")?,
            storage_mib: s.storage_mib,
        })
    }
}

impl From<GeoPoint> for proto::GeoPoint {
    fn from(g: GeoPoint) -> Self {
        Self {
            lat: g.lat,
            lon: g.lon,
        }
    }
}

impl TryFrom<proto::GeoPoint> for GeoPoint {
    type Error = ConvertError;

    /// Never fails: ranges and finiteness are [`validate`](crate::validate)'s.
    fn try_from(g: proto::GeoPoint) -> Result<Self, ConvertError> {
        Ok(Self {
            lat: g.lat,
            lon: g.lon,
        })
    }
}
