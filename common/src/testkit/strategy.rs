//! Proptest strategies the conversion property tests build their values from.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::Ipv4Addr;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use crate::gpu::{GpuModel, MigProfile};
use crate::ids::{TimeWindow, TypedId};
use crate::jurisdiction::ResidencyRule;
use crate::net::Protocol;
use crate::placement::GpuSlot;
use crate::site::Certification;

pub(crate) fn typed<T: TypedId + Debug + 'static>() -> impl Strategy<Value = T> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?".prop_map(|s| T::parse(&s).unwrap())
}

pub(crate) fn model() -> impl Strategy<Value = GpuModel> {
    select(GpuModel::ALL.to_vec())
}

pub(crate) fn mig_pair() -> impl Strategy<Value = (GpuModel, MigProfile)> {
    let pairs: Vec<(GpuModel, MigProfile)> = GpuModel::ALL
        .iter()
        .flat_map(|m| m.mig_profiles().iter().map(move |p| (*m, p.profile())))
        .collect();
    select(pairs)
}

pub(crate) fn window() -> impl Strategy<Value = TimeWindow> {
    (any::<i64>(), 1..=i64::MAX).prop_map(|(start, len)| {
        let end = start.saturating_add(len);
        let start = if end == start { start - 1 } else { start };
        super::window(start, end)
    })
}

pub(crate) fn residency_rule() -> impl Strategy<Value = ResidencyRule> {
    let terms = [
        "EU",
        "EEA",
        "CH",
        "US",
        "country:NA",
        "NA",
        "APAC",
        "JP",
        "DE",
    ];
    subsequence(terms.to_vec(), 0..=terms.len()).prop_map(|t| super::residency(&t))
}

pub(crate) fn certifications() -> impl Strategy<Value = BTreeSet<Certification>> {
    use Certification::*;
    let all = vec![Iso27001, Soc2, Hipaa, PciDss, Sovereign, Gxp];
    subsequence(all.clone(), 0..=all.len()).prop_map(|c| c.into_iter().collect())
}

pub(crate) fn protocol() -> impl Strategy<Value = Protocol> {
    select(vec![Protocol::Tcp, Protocol::Udp])
}

pub(crate) fn slot() -> impl Strategy<Value = GpuSlot> {
    prop_oneof![
        Just(GpuSlot::None),
        vec(any::<u32>(), 0..4).prop_map(|indices| GpuSlot::WholeGpus { indices }),
        (any::<u32>(), mig_pair(), any::<u8>()).prop_map(|(gpu_index, (_, profile), placement)| {
            GpuSlot::Mig {
                gpu_index,
                profile,
                placement,
            }
        }),
    ]
}

pub(crate) fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
