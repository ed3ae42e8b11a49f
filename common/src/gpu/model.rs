//! GPUs, GPU models and the MIG (Multi-Instance GPU) catalogue and geometry.
//!
//! The catalogue is NVIDIA's `nvidia-smi mig -lgipp` table as written in
//! `docs/domain-model.md`: A100/H100/H200 GPUs have 7 compute slices and 8 memory slices, the
//! A30 has 4 and 4, L40S and L4 have no MIG. A GPU instance of a profile occupies
//! `memory_slices` consecutive memory slices starting at one of its `placements`; the compute
//! slices of all instances on a GPU add up to at most the GPU's compute slices.
//! [`MigGeometry`] enforces exactly that (a memory-slice bitmask plus a compute-slice sum), so
//! two instances it accepted never overlap.
//!
//! A [`MigProfile`] is a profile *name* (`1g.10gb`); the same name can mean different
//! geometry on different models (`1g.10gb` is one memory slice on H100-80GB but two on
//! A100-40GB), so the geometry is always looked up with the model:
//! [`MigProfile::spec_for`] / [`GpuModel::mig_profile`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::jurisdiction::shown;

/// A GPU model Meridian knows. The string names (`H100-80GB`) are the ones used in specs.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GpuModel {
    /// NVIDIA A100 40 GB.
    #[serde(rename = "A100-40GB")]
    A100_40GB,
    /// NVIDIA A100 80 GB.
    #[serde(rename = "A100-80GB")]
    A100_80GB,
    /// NVIDIA H100 80 GB.
    #[serde(rename = "H100-80GB")]
    H100_80GB,
    /// NVIDIA H100 94 GB (NVL).
    #[serde(rename = "H100-94GB")]
    H100_94GB,
    /// NVIDIA H200 141 GB.
    #[serde(rename = "H200-141GB")]
    H200_141GB,
    /// NVIDIA A30 24 GB.
    #[serde(rename = "A30-24GB")]
    A30_24GB,
    /// NVIDIA L40S (48 GB, no MIG).
    #[serde(rename = "L40S")]
    L40S,
    /// NVIDIA L4 (24 GB, no MIG).
    #[serde(rename = "L4")]
    L4,
}

/// Why a GPU model name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{shown} is not a known GPU model (A100-40GB, A100-80GB, H100-80GB, H100-94GB, \
     H200-141GB, A30-24GB, L40S, L4)"
)]
pub struct GpuModelError {
    /// The input, quoted, or its length when long.
    pub shown: String,
}

/// One MIG profile of one GPU model: its geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MigProfileSpec {
    /// The profile name (`1g.10gb`).
    pub name: &'static str,
    /// Compute slices it takes.
    pub compute_slices: u8,
    /// Consecutive memory slices it takes.
    pub memory_slices: u8,
    /// Its memory in GB, as in the name.
    pub memory_gb: u16,
    /// The memory-slice positions it may start at.
    pub placements: &'static [u8],
}

impl MigProfileSpec {
    /// The profile as a name value.
    pub fn profile(&self) -> MigProfile {
        MigProfile(self.name)
    }

    /// The memory-slice bitmask the profile occupies when started at `placement`.
    pub fn memory_mask(&self, placement: u8) -> u16 {
        ((1u16 << self.memory_slices) - 1) << placement
    }
}

const P_0_TO_6: &[u8] = &[0, 1, 2, 3, 4, 5, 6];
const P_EVEN_4: &[u8] = &[0, 2, 4, 6];
const P_EVEN_3: &[u8] = &[0, 2, 4];
const P_HALVES: &[u8] = &[0, 4];
const P_0: &[u8] = &[0];
const P_0_TO_3: &[u8] = &[0, 1, 2, 3];
const P_0_2: &[u8] = &[0, 2];

/// The six profiles of the 7-compute / 8-memory-slice family, given the names and sizes.
macro_rules! eight_slice_family {
    ($($name:literal = $gb:literal),* $(,)?) => {{
        const SHAPES: [(u8, u8, &[u8]); 6] = [
            (1, 1, P_0_TO_6),
            (1, 2, P_EVEN_4),
            (2, 2, P_EVEN_3),
            (3, 4, P_HALVES),
            (4, 4, P_0),
            (7, 8, P_0),
        ];
        const NAMES: [(&str, u16); 6] = [$(($name, $gb)),*];
        [
            spec(NAMES[0], SHAPES[0]),
            spec(NAMES[1], SHAPES[1]),
            spec(NAMES[2], SHAPES[2]),
            spec(NAMES[3], SHAPES[3]),
            spec(NAMES[4], SHAPES[4]),
            spec(NAMES[5], SHAPES[5]),
        ]
    }};
}

const fn spec(
    (name, memory_gb): (&'static str, u16),
    shape: (u8, u8, &'static [u8]),
) -> MigProfileSpec {
    MigProfileSpec {
        name,
        compute_slices: shape.0,
        memory_slices: shape.1,
        memory_gb,
        placements: shape.2,
    }
}

static MIG_80GB: [MigProfileSpec; 6] = eight_slice_family!(
    "1g.10gb" = 10,
    "1g.20gb" = 20,
    "2g.20gb" = 20,
    "3g.40gb" = 40,
    "4g.40gb" = 40,
    "7g.80gb" = 80,
);
static MIG_A100_40GB: [MigProfileSpec; 6] = eight_slice_family!(
    "1g.5gb" = 5,
    "1g.10gb" = 10,
    "2g.10gb" = 10,
    "3g.20gb" = 20,
    "4g.20gb" = 20,
    "7g.40gb" = 40,
);
static MIG_H100_94GB: [MigProfileSpec; 6] = eight_slice_family!(
    "1g.12gb" = 12,
    "1g.24gb" = 24,
    "2g.24gb" = 24,
    "3g.47gb" = 47,
    "4g.47gb" = 47,
    "7g.94gb" = 94,
);
static MIG_H200_141GB: [MigProfileSpec; 6] = eight_slice_family!(
    "1g.18gb" = 18,
    "1g.35gb" = 35,
    "2g.35gb" = 35,
    "3g.71gb" = 71,
    "4g.71gb" = 71,
    "7g.141gb" = 141,
);
static MIG_A30: [MigProfileSpec; 3] = [
    spec(("1g.6gb", 6), (1, 1, P_0_TO_3)),
    spec(("2g.12gb", 12), (2, 2, P_0_2)),
    spec(("4g.24gb", 24), (4, 4, P_0)),
];

impl GpuModel {
    /// Every model.
    pub const ALL: [GpuModel; 8] = [
        Self::A100_40GB,
        Self::A100_80GB,
        Self::H100_80GB,
        Self::H100_94GB,
        Self::H200_141GB,
        Self::A30_24GB,
        Self::L40S,
        Self::L4,
    ];

    /// The model's name as used in specs (`H100-80GB`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::A100_40GB => "A100-40GB",
            Self::A100_80GB => "A100-80GB",
            Self::H100_80GB => "H100-80GB",
            Self::H100_94GB => "H100-94GB",
            Self::H200_141GB => "H200-141GB",
            Self::A30_24GB => "A30-24GB",
            Self::L40S => "L40S",
            Self::L4 => "L4",
        }
    }

    /// Parses a model name (exact).
    pub fn parse(s: &str) -> Result<Self, GpuModelError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| GpuModelError { shown: shown(s) })
    }

    /// The model's nominal memory in MiB.
    pub const fn nominal_memory_mib(self) -> u64 {
        match self {
            Self::A100_40GB => 40 * 1024,
            Self::A100_80GB | Self::H100_80GB => 80 * 1024,
            Self::H100_94GB => 94 * 1024,
            Self::H200_141GB => 141 * 1024,
            Self::A30_24GB | Self::L4 => 24 * 1024,
            Self::L40S => 48 * 1024,
        }
    }

    /// The MIG profiles of this model; empty when it is not MIG capable.
    pub fn mig_profiles(self) -> &'static [MigProfileSpec] {
        match self {
            Self::A100_80GB | Self::H100_80GB => &MIG_80GB,
            Self::A100_40GB => &MIG_A100_40GB,
            Self::H100_94GB => &MIG_H100_94GB,
            Self::H200_141GB => &MIG_H200_141GB,
            Self::A30_24GB => &MIG_A30,
            Self::L40S | Self::L4 => &[],
        }
    }

    /// Whether the model supports MIG.
    pub fn is_mig_capable(self) -> bool {
        !self.mig_profiles().is_empty()
    }

    /// The profile named `name` on this model.
    pub fn mig_profile(self, name: &str) -> Option<&'static MigProfileSpec> {
        self.mig_profiles().iter().find(|p| p.name == name)
    }

    /// Total MIG compute slices (0 when not MIG capable).
    pub const fn mig_compute_slices(self) -> u8 {
        match self {
            Self::A30_24GB => 4,
            Self::L40S | Self::L4 => 0,
            _ => 7,
        }
    }

    /// Total MIG memory slices (0 when not MIG capable).
    pub const fn mig_memory_slices(self) -> u8 {
        match self {
            Self::A30_24GB => 4,
            Self::L40S | Self::L4 => 0,
            _ => 8,
        }
    }
}

impl fmt::Display for GpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GpuModel {
    type Err = GpuModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a MIG profile or instance is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigError {
    /// The model has no MIG.
    #[error("{model} does not support MIG (MIG-capable: A100, H100, H200, A30)")]
    NotMigCapable {
        /// The model.
        model: GpuModel,
    },
    /// The name is not a profile of any model.
    #[error("{shown} is not a known MIG profile name (e.g. 1g.10gb, 3g.40gb, 7g.80gb)")]
    UnknownProfileName {
        /// The input, quoted, or its length when long.
        shown: String,
    },
    /// The profile does not exist on this model.
    #[error("{model} has no MIG profile {shown}; its profiles are {allowed}")]
    UnknownProfile {
        /// The model.
        model: GpuModel,
        /// The profile, quoted, or its length when long.
        shown: String,
        /// The model's profile names, comma separated.
        allowed: String,
    },
    /// The profile cannot start at this memory slice.
    #[error("{profile} cannot start at memory slice {placement}; allowed placements: {allowed:?}")]
    InvalidPlacement {
        /// The profile.
        profile: MigProfile,
        /// The requested placement.
        placement: u8,
        /// Where it may start.
        allowed: &'static [u8],
    },
    /// The memory slices are already taken by another instance.
    #[error("{profile} at memory slice {placement} overlaps an instance already on the GPU")]
    Overlap {
        /// The profile.
        profile: MigProfile,
        /// The requested placement.
        placement: u8,
    },
    /// Not enough compute slices are left.
    #[error("{profile} needs {needed} compute slices but only {free} are free")]
    ComputeExhausted {
        /// The profile.
        profile: MigProfile,
        /// Compute slices it needs.
        needed: u8,
        /// Compute slices still free.
        free: u8,
    },
}

/// A MIG profile name known to at least one model (`1g.10gb`). Its geometry depends on the
/// model: see [`MigProfile::spec_for`].
/// Serialised as its name; deserialisation accepts only known names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigProfile(&'static str);

impl Serialize for MigProfile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for MigProfile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse_any(&name).map_err(serde::de::Error::custom)
    }
}

impl MigProfile {
    /// Parses `name` as a profile of `model`; refuses non-MIG models and names the model lacks.
    pub fn parse(model: GpuModel, name: &str) -> Result<Self, MigError> {
        if !model.is_mig_capable() {
            return Err(MigError::NotMigCapable { model });
        }
        model
            .mig_profile(name)
            .map(MigProfileSpec::profile)
            .ok_or_else(|| unknown_profile(model, name))
    }

    /// Parses a profile name known to any model (used when the model is not at hand, e.g. in
    /// deserialisation; check it with [`MigProfile::spec_for`] once the model is known).
    pub fn parse_any(name: &str) -> Result<Self, MigError> {
        GpuModel::ALL
            .iter()
            .flat_map(|m| m.mig_profiles())
            .find(|p| p.name == name)
            .map(MigProfileSpec::profile)
            .ok_or_else(|| MigError::UnknownProfileName { shown: shown(name) })
    }

    /// The profile name.
    pub const fn name(&self) -> &'static str {
        self.0
    }

    /// The geometry of this profile on `model`.
    pub fn spec_for(&self, model: GpuModel) -> Result<&'static MigProfileSpec, MigError> {
        if !model.is_mig_capable() {
            return Err(MigError::NotMigCapable { model });
        }
        model
            .mig_profile(self.0)
            .ok_or_else(|| unknown_profile(model, self.0))
    }
}

fn unknown_profile(model: GpuModel, name: &str) -> MigError {
    let allowed: Vec<&str> = model.mig_profiles().iter().map(|p| p.name).collect();
    MigError::UnknownProfile {
        model,
        shown: shown(name),
        allowed: allowed.join(", "),
    }
}

impl fmt::Display for MigProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for MigProfile {
    type Err = MigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_any(s)
    }
}

impl TryFrom<String> for MigProfile {
    type Error = MigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse_any(&s)
    }
}

impl From<MigProfile> for String {
    fn from(p: MigProfile) -> String {
        p.0.to_owned()
    }
}

/// A GPU instance: a profile started at a memory slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigInstance {
    /// The profile.
    pub profile: MigProfile,
    /// The first memory slice it occupies.
    pub placement: u8,
}

/// Which slices of one GPU are taken. Built from the instances already on it; answers whether
/// one more fits and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigGeometry {
    model: GpuModel,
    memory_used: u16,
    compute_used: u8,
}

impl MigGeometry {
    /// An empty GPU of `model`; refuses non-MIG models.
    pub fn new(model: GpuModel) -> Result<Self, MigError> {
        if !model.is_mig_capable() {
            return Err(MigError::NotMigCapable { model });
        }
        Ok(Self {
            model,
            memory_used: 0,
            compute_used: 0,
        })
    }

    /// A GPU of `model` holding `instances`; refuses the first instance that does not fit.
    pub fn with_instances(model: GpuModel, instances: &[MigInstance]) -> Result<Self, MigError> {
        let mut g = Self::new(model)?;
        for i in instances {
            g.place(i.profile, i.placement)?;
        }
        Ok(g)
    }

    /// The model.
    pub fn model(&self) -> GpuModel {
        self.model
    }

    /// Compute slices in use.
    pub fn used_compute_slices(&self) -> u8 {
        self.compute_used
    }

    /// Compute slices still free.
    pub fn free_compute_slices(&self) -> u8 {
        self.model
            .mig_compute_slices()
            .saturating_sub(self.compute_used)
    }

    /// Bitmask of the memory slices in use (bit `i` = slice `i`).
    pub fn used_memory_mask(&self) -> u16 {
        self.memory_used
    }

    /// Whether `profile` can be started at `placement`; the error says why not.
    pub fn check(&self, profile: MigProfile, placement: u8) -> Result<(), MigError> {
        let spec = profile.spec_for(self.model)?;
        if !spec.placements.contains(&placement) {
            return Err(MigError::InvalidPlacement {
                profile,
                placement,
                allowed: spec.placements,
            });
        }
        if self.memory_used & spec.memory_mask(placement) != 0 {
            return Err(MigError::Overlap { profile, placement });
        }
        let free = self.free_compute_slices();
        if spec.compute_slices > free {
            return Err(MigError::ComputeExhausted {
                profile,
                needed: spec.compute_slices,
                free,
            });
        }
        Ok(())
    }

    /// Whether `profile` fits at `placement`.
    pub fn fits(&self, profile: MigProfile, placement: u8) -> bool {
        self.check(profile, placement).is_ok()
    }

    /// The placements where `profile` fits now (empty if none, or the profile is not this
    /// model's).
    pub fn free_placements(&self, profile: MigProfile) -> Vec<u8> {
        match profile.spec_for(self.model) {
            Ok(spec) => spec
                .placements
                .iter()
                .copied()
                .filter(|p| self.fits(profile, *p))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Records `profile` at `placement`; refuses (and changes nothing) when it does not fit.
    pub fn place(&mut self, profile: MigProfile, placement: u8) -> Result<(), MigError> {
        self.check(profile, placement)?;
        let spec = profile.spec_for(self.model)?;
        self.memory_used |= spec.memory_mask(placement);
        self.compute_used += spec.compute_slices;
        Ok(())
    }
}

/// Whether MIG is on for a GPU, and which instances it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigConfig {
    /// MIG is off: the GPU is used whole.
    Disabled,
    /// MIG is on with these GPU instances.
    Enabled {
        /// The instances.
        instances: Vec<MigInstance>,
    },
}

/// Health of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuHealth {
    /// Usable.
    Healthy,
    /// Usable but reporting errors (ECC, thermal, ...).
    Degraded,
    /// Not usable.
    Failed,
}

/// One GPU in a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// Position in the server (0-based).
    pub index: u32,
    /// The model.
    pub model: GpuModel,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// MIG mode and instances.
    pub mig: MigConfig,
    /// Health.
    pub health: GpuHealth,
}

impl Gpu {
    /// The MIG geometry of this GPU (`None` when MIG is off); errors when its instances are
    /// not a valid layout for its model.
    pub fn mig_geometry(&self) -> Result<Option<MigGeometry>, MigError> {
        match &self.mig {
            MigConfig::Disabled => Ok(None),
            MigConfig::Enabled { instances } => {
                MigGeometry::with_instances(self.model, instances).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(model: GpuModel, name: &str) -> MigProfile {
        MigProfile::parse(model, name).unwrap()
    }

    #[test]
    fn model_names_round_trip() {
        for m in GpuModel::ALL {
            assert_eq!(GpuModel::parse(m.as_str()).unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
        }
        assert!(GpuModel::parse("h100-80gb").is_err());
        assert!(GpuModel::parse("").is_err());
        assert!(
            GpuModel::parse(&"H".repeat(10 << 20))
                .unwrap_err()
                .to_string()
                .len()
                < 200
        );
    }

    #[test]
    fn catalogue_matches_the_table() {
        let h = GpuModel::H100_80GB;
        let rows: Vec<(&str, u8, u8, &[u8])> = h
            .mig_profiles()
            .iter()
            .map(|s| (s.name, s.compute_slices, s.memory_slices, s.placements))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("1g.10gb", 1, 1, &[0, 1, 2, 3, 4, 5, 6][..]),
                ("1g.20gb", 1, 2, &[0, 2, 4, 6][..]),
                ("2g.20gb", 2, 2, &[0, 2, 4][..]),
                ("3g.40gb", 3, 4, &[0, 4][..]),
                ("4g.40gb", 4, 4, &[0][..]),
                ("7g.80gb", 7, 8, &[0][..]),
            ]
        );
        assert_eq!(GpuModel::A100_80GB.mig_profiles(), h.mig_profiles());
        assert_eq!(
            GpuModel::A100_40GB
                .mig_profile("1g.10gb")
                .unwrap()
                .memory_slices,
            2
        );
        assert_eq!(
            GpuModel::H200_141GB
                .mig_profile("7g.141gb")
                .unwrap()
                .memory_gb,
            141
        );
        assert_eq!(GpuModel::H100_94GB.mig_profiles().len(), 6);
        assert!(!GpuModel::L40S.is_mig_capable());
        assert!(!GpuModel::L4.is_mig_capable());
        for m in GpuModel::ALL {
            for s in m.mig_profiles() {
                for &pl in s.placements {
                    assert!(
                        pl + s.memory_slices <= m.mig_memory_slices(),
                        "{m} {}",
                        s.name
                    );
                }
                assert!(s.compute_slices <= m.mig_compute_slices());
            }
        }
    }

    #[test]
    fn profile_parsing() {
        assert!(MigProfile::parse(GpuModel::H100_80GB, "1g.10gb").is_ok());
        assert!(matches!(
            MigProfile::parse(GpuModel::L40S, "1g.10gb"),
            Err(MigError::NotMigCapable { .. })
        ));
        assert!(matches!(
            MigProfile::parse(GpuModel::H100_80GB, "1g.5gb"),
            Err(MigError::UnknownProfile { .. })
        ));
        assert!(MigProfile::parse_any("1g.5gb").is_ok());
        assert!(MigProfile::parse_any("9g.1tb").is_err());
        let five = MigProfile::parse_any("1g.5gb").unwrap();
        assert!(five.spec_for(GpuModel::H100_80GB).is_err());
        assert!(five.spec_for(GpuModel::A100_40GB).is_ok());
    }

    #[test]
    fn seven_small_instances_fit_an_eighth_does_not() {
        let m = GpuModel::H100_80GB;
        let small = p(m, "1g.10gb");
        let mut g = MigGeometry::new(m).unwrap();
        for _ in 0..7 {
            let free = g.free_placements(small);
            g.place(small, free[0]).unwrap();
        }
        assert_eq!(g.free_compute_slices(), 0);
        assert!(g.free_placements(small).is_empty());
        // Memory slice 7 is free but is not a 1g.10gb placement.
        assert!(matches!(
            g.check(small, 7),
            Err(MigError::InvalidPlacement { .. })
        ));
        assert!(matches!(g.check(small, 3), Err(MigError::Overlap { .. })));
    }

    #[test]
    fn mixed_layouts() {
        let m = GpuModel::H100_80GB;
        let g = MigGeometry::with_instances(
            m,
            &[
                MigInstance {
                    profile: p(m, "3g.40gb"),
                    placement: 4,
                },
                MigInstance {
                    profile: p(m, "4g.40gb"),
                    placement: 0,
                },
            ],
        )
        .unwrap();
        assert_eq!(g.free_compute_slices(), 0);
        assert_eq!(g.used_memory_mask(), 0xff);

        let one_twenty = p(m, "1g.20gb");
        let empty = MigGeometry::new(m).unwrap();
        assert!(matches!(
            empty.check(one_twenty, 1),
            Err(MigError::InvalidPlacement { .. })
        ));
        assert_eq!(empty.free_placements(one_twenty), vec![0, 2, 4, 6]);

        // Overlapping instances are refused.
        assert!(matches!(
            MigGeometry::with_instances(
                m,
                &[
                    MigInstance {
                        profile: p(m, "3g.40gb"),
                        placement: 0
                    },
                    MigInstance {
                        profile: p(m, "2g.20gb"),
                        placement: 2
                    },
                ],
            ),
            Err(MigError::Overlap { .. })
        ));
        // Compute exhausted although memory is free: 3g@0 + 3g@4 take 6 of 7 compute slices
        // and all 8 memory slices; before that 4g@0 + 2g@4 leaves slice 6/7 for a 1g.
        let mut g = MigGeometry::new(m).unwrap();
        g.place(p(m, "4g.40gb"), 0).unwrap();
        g.place(p(m, "2g.20gb"), 4).unwrap();
        assert_eq!(g.free_placements(p(m, "1g.10gb")), vec![6]);
        g.place(p(m, "1g.10gb"), 6).unwrap();
        assert!(matches!(
            g.check(p(m, "1g.10gb"), 6),
            Err(MigError::Overlap { .. })
        ));
        // A full 7g blocks everything.
        let mut full = MigGeometry::new(m).unwrap();
        full.place(p(m, "7g.80gb"), 0).unwrap();
        for s in m.mig_profiles() {
            assert!(full.free_placements(s.profile()).is_empty());
        }
    }

    #[test]
    fn compute_limit_on_its_own() {
        // 2g@0, 2g@2, 2g@4 use 6 compute; 1g.20gb@6 would make 7 (fits); then nothing fits.
        let m = GpuModel::A100_80GB;
        let mut g = MigGeometry::new(m).unwrap();
        for pl in [0, 2, 4] {
            g.place(p(m, "2g.20gb"), pl).unwrap();
        }
        assert!(g.fits(p(m, "1g.20gb"), 6));
        g.place(p(m, "1g.10gb"), 6).unwrap();
        assert_eq!(g.free_compute_slices(), 0);
        let before = g;
        assert!(g.place(p(m, "1g.10gb"), 6).is_err());
        assert_eq!(g, before, "a refused place changes nothing");
    }

    #[test]
    fn a30_geometry() {
        let m = GpuModel::A30_24GB;
        assert_eq!(m.mig_compute_slices(), 4);
        let small = p(m, "1g.6gb");
        let mut g = MigGeometry::new(m).unwrap();
        assert_eq!(g.free_placements(small), vec![0, 1, 2, 3]);
        assert_eq!(g.free_placements(p(m, "2g.12gb")), vec![0, 2]);
        g.place(p(m, "2g.12gb"), 2).unwrap();
        assert_eq!(g.free_placements(small), vec![0, 1]);
        assert!(g.free_placements(p(m, "4g.24gb")).is_empty());
        g.place(small, 0).unwrap();
        g.place(small, 1).unwrap();
        assert_eq!(g.free_compute_slices(), 0);
        assert!(matches!(
            g.check(p(m, "2g.12gb"), 1),
            Err(MigError::InvalidPlacement { .. })
        ));
        // An H100 profile on an A30 is refused by name.
        let h = MigProfile::parse_any("1g.10gb").unwrap();
        assert!(matches!(
            g.check(h, 0),
            Err(MigError::UnknownProfile { .. })
        ));
        assert!(MigGeometry::new(GpuModel::L4).is_err());
    }

    #[test]
    fn hostile_placements() {
        let m = GpuModel::H100_80GB;
        let g = MigGeometry::new(m).unwrap();
        for pl in [7, 8, 200, u8::MAX] {
            assert!(!g.fits(p(m, "1g.10gb"), pl));
        }
    }

    #[test]
    fn gpu_serde() {
        let gpu: Gpu = toml::from_str(
            r#"
            index = 0
            model = "H100-80GB"
            memory_mib = 81920
            health = "healthy"
            mig = { enabled = { instances = [ { profile = "3g.40gb", placement = 4 } ] } }
            "#,
        )
        .unwrap();
        assert_eq!(
            gpu.mig_geometry().unwrap().unwrap().used_compute_slices(),
            3
        );
        let text = toml::to_string(&gpu).unwrap();
        assert_eq!(toml::from_str::<Gpu>(&text).unwrap(), gpu);
        let disabled: Gpu = toml::from_str(
            "index = 1\nmodel = \"L40S\"\nmemory_mib = 1\nhealth = \"failed\"\nmig = \"disabled\"",
        )
        .unwrap();
        assert_eq!(disabled.mig_geometry().unwrap(), None);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever is attempted, the accepted instances never share a memory slice, never
            /// exceed the compute slices, and a refusal always has a real reason.
            #[test]
            fn geometry_never_overbooks(
                model_idx in 0usize..6,
                tries in proptest::collection::vec((0usize..6, 0u8..10), 0..20),
            ) {
                let model = GpuModel::ALL[model_idx];
                let profiles = model.mig_profiles();
                let mut g = MigGeometry::new(model).unwrap();
                let mut placed: Vec<(&MigProfileSpec, u8)> = Vec::new();
                for (pi, placement) in tries {
                    let spec = &profiles[pi % profiles.len()];
                    let mask = u32::from(spec.memory_mask(placement.min(8)));
                    let used: u32 = placed.iter().map(|(s, p)| u32::from(s.memory_mask(*p))).sum();
                    let compute: u8 = placed.iter().map(|(s, _)| s.compute_slices).sum();
                    let legal = spec.placements.contains(&placement)
                        && used & mask == 0
                        && compute + spec.compute_slices <= model.mig_compute_slices();
                    prop_assert_eq!(g.place(spec.profile(), placement).is_ok(), legal);
                    if legal {
                        placed.push((spec, placement));
                    }
                }
                prop_assert!(g.used_compute_slices() <= model.mig_compute_slices());
            }
        }
    }
}
