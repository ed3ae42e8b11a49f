//! [`Tenant`] and its parts, [`Dataset`] and [`Region`].

use meridian_proto::v1 as proto;

use super::dataset::Dataset;
use super::model::{Quotas, ScoreWeights, Tenant, TenantNetwork};
use super::region::Region;
use crate::gpu::wire::gpu_model;
use crate::jurisdiction::wire::{jurisdiction, residency, residency_to_wire};
use crate::wire::{AtField, ConvertError, id, ids, optional, required, to_wire};

impl From<Quotas> for proto::Quotas {
    fn from(q: Quotas) -> Self {
        Self {
            gpus_per_model: q
                .gpus_per_model
                .into_iter()
                .map(|(model, n)| (model.as_str().to_owned(), n))
                .collect(),
            mig_slices: q.mig_slices,
            concurrent_reservations: q.concurrent_reservations,
            sites: q.sites,
            storage_mib: q.storage_mib,
        }
    }
}

impl TryFrom<proto::Quotas> for Quotas {
    type Error = ConvertError;

    /// Map keys are exact model names, so two keys never name the same model.
    fn try_from(q: proto::Quotas) -> Result<Self, ConvertError> {
        Ok(Self {
            gpus_per_model: q
                .gpus_per_model
                .into_iter()
                .map(|(model, n)| Ok((gpu_model(&model)?, n)))
                .collect::<Result<_, ConvertError>>()
                .at("gpus_per_model")?,
            mig_slices: q.mig_slices,
            concurrent_reservations: q.concurrent_reservations,
            sites: q.sites,
            storage_mib: q.storage_mib,
        })
    }
}

impl From<ScoreWeights> for proto::ScoreWeights {
    fn from(w: ScoreWeights) -> Self {
        Self {
            latency: w.latency,
            data: w.data,
            price: w.price,
            packing: w.packing,
        }
    }
}

impl TryFrom<proto::ScoreWeights> for ScoreWeights {
    type Error = ConvertError;

    /// Never fails: ranges and finiteness are [`validate`](crate::validate)'s.
    fn try_from(w: proto::ScoreWeights) -> Result<Self, ConvertError> {
        Ok(Self {
            latency: w.latency,
            data: w.data,
            price: w.price,
            packing: w.packing,
        })
    }
}

impl From<TenantNetwork> for proto::TenantNetwork {
    fn from(n: TenantNetwork) -> Self {
        Self {
            vni: n.vni,
            table: n.table,
            supernet: Some(n.supernet.into()),
        }
    }
}

impl TryFrom<proto::TenantNetwork> for TenantNetwork {
    type Error = ConvertError;

    fn try_from(n: proto::TenantNetwork) -> Result<Self, ConvertError> {
        Ok(Self {
            vni: n.vni,
            table: n.table,
            supernet: required(n.supernet, "supernet")?,
        })
    }
}

impl From<Tenant> for proto::Tenant {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.into(),
            name: t.name.into(),
            quotas: Some(t.quotas.into()),
            residency: residency_to_wire(t.residency),
            weights: Some(t.weights.into()),
            max_priority: t.max_priority,
            network: t.network.map(Into::into),
        }
    }
}

impl TryFrom<proto::Tenant> for Tenant {
    type Error = ConvertError;

    fn try_from(t: proto::Tenant) -> Result<Self, ConvertError> {
        Ok(Self {
            id: id(&t.id).at("id")?,
            name: id(&t.name).at("name")?,
            quotas: required(t.quotas, "quotas")?,
            residency: residency(t.residency, "residency")?,
            weights: required(t.weights, "weights")?,
            max_priority: t.max_priority,
            network: optional(t.network, "network")?,
        })
    }
}

impl From<Dataset> for proto::Dataset {
    fn from(d: Dataset) -> Self {
        Self {
            id: d.id.into(),
            tenant: d.tenant.into(),
            name: d.name.into(),
            size_bytes: d.size_bytes,
            replicas: to_wire(d.replicas),
            residency: residency_to_wire(d.residency),
        }
    }
}

impl TryFrom<proto::Dataset> for Dataset {
    type Error = ConvertError;

    fn try_from(d: proto::Dataset) -> Result<Self, ConvertError> {
        Ok(Self {
            id: id(&d.id).at("id")?,
            tenant: id(&d.tenant).at("tenant")?,
            name: id(&d.name).at("name")?,
            size_bytes: d.size_bytes,
            replicas: ids(d.replicas, "replicas")?,
            residency: residency(d.residency, "residency")?,
        })
    }
}

impl From<Region> for proto::Region {
    fn from(r: Region) -> Self {
        Self {
            id: r.id.into(),
            name: r.name.into(),
            location: Some(r.location.into()),
            country: r.country.into(),
            population: r.population,
        }
    }
}

impl TryFrom<proto::Region> for Region {
    type Error = ConvertError;

    fn try_from(r: proto::Region) -> Result<Self, ConvertError> {
        Ok(Self {
            id: id(&r.id).at("id")?,
            name: id(&r.name).at("name")?,
            location: required(r.location, "location")?,
            country: jurisdiction(&r.country).at("country")?,
            population: r.population,
        })
    }
}

#[cfg(test)]
mod tests {
    use meridian_proto::v1 as proto;

    use crate::testkit::{Mutation, any_invalid, failures, tenant};
    use crate::wire::ConvertProblem;

    #[test]
    fn tenant_failures() {
        use ConvertProblem::*;
        let cases: &[(&str, Mutation<proto::Tenant>, &str, ConvertProblem)] = &[
            ("missing quotas", |t| t.quotas = None, "quotas", Missing),
            ("missing weights", |t| t.weights = None, "weights", Missing),
            (
                "unknown quota model",
                |t| {
                    t.quotas
                        .as_mut()
                        .unwrap()
                        .gpus_per_model
                        .insert("B200".into(), 1);
                },
                "quotas.gpus_per_model",
                any_invalid(),
            ),
            (
                "duplicate residency",
                |t| t.residency = vec!["EU".into(), "CH".into(), "EU".into()],
                "residency[2]",
                Duplicate,
            ),
            (
                "missing supernet",
                |t| t.network.as_mut().unwrap().supernet = None,
                "network.supernet",
                Missing,
            ),
            (
                "bad supernet",
                |t| {
                    t.network.as_mut().unwrap().supernet = Some(proto::Ipv4Net {
                        addr: "10.64.0.0/16".into(),
                        prefix_len: 16,
                    })
                },
                "network.supernet.addr",
                any_invalid(),
            ),
        ];
        failures(tenant(), cases);
    }
}
