//! What an emulated BMC is: its resource IDs, inventory, firmware, advertised values and
//! vendor quirks. Two shapes: a GPU server ([`BmcProfile::gpu_server`]) and a BlueField-3 DPU
//! BMC ([`BmcProfile::bluefield3`]); the builder methods adjust either.

use std::fmt;
use std::time::Duration;

/// `PowerState` of a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
    /// On its way on.
    PoweringOn,
    /// On its way off.
    PoweringOff,
}

impl PowerState {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::Off => "Off",
            Self::PoweringOn => "PoweringOn",
            Self::PoweringOff => "PoweringOff",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ResetType` values of `ComputerSystem.Reset` (DSP8010 `Resource.ResetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetType {
    /// Turn on.
    On,
    /// Turn off now.
    ForceOff,
    /// Shut down the OS, then turn off.
    GracefulShutdown,
    /// Shut down the OS, then restart.
    GracefulRestart,
    /// Restart now.
    ForceRestart,
    /// Non-maskable interrupt.
    Nmi,
    /// Turn on now.
    ForceOn,
    /// Press the power button (toggles).
    PushPowerButton,
    /// Off, then on.
    PowerCycle,
}

impl ResetType {
    /// Every value, in schema order.
    pub const ALL: [ResetType; 9] = [
        Self::On,
        Self::ForceOff,
        Self::GracefulShutdown,
        Self::GracefulRestart,
        Self::ForceRestart,
        Self::Nmi,
        Self::ForceOn,
        Self::PushPowerButton,
        Self::PowerCycle,
    ];

    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::ForceOff => "ForceOff",
            Self::GracefulShutdown => "GracefulShutdown",
            Self::GracefulRestart => "GracefulRestart",
            Self::ForceRestart => "ForceRestart",
            Self::Nmi => "Nmi",
            Self::ForceOn => "ForceOn",
            Self::PushPowerButton => "PushPowerButton",
            Self::PowerCycle => "PowerCycle",
        }
    }

    /// Parses the Redfish string.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// `BootSourceOverrideEnabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideEnabled {
    /// No override: boot from the normal boot order.
    Disabled,
    /// Override the next boot only, then go back to `Disabled`.
    Once,
    /// Override every boot.
    Continuous,
}

impl OverrideEnabled {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "Disabled",
            Self::Once => "Once",
            Self::Continuous => "Continuous",
        }
    }

    /// Parses the Redfish string.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Disabled, Self::Once, Self::Continuous]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// The system's boot source override as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOverride {
    /// `BootSourceOverrideTarget` (`None`, `Pxe`, `Cd`, `Hdd`...).
    pub target: String,
    /// `BootSourceOverrideEnabled`.
    pub enabled: OverrideEnabled,
    /// `BootSourceOverrideMode` (`UEFI` or `Legacy`).
    pub mode: String,
}

/// One boot of the emulated host, as recorded when power-on completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRecord {
    /// Where it booted from: the override target when an override applied, else `Hdd`.
    pub source: String,
    /// Whether an override (once or continuous) chose the source.
    pub overridden: bool,
    /// The virtual media image it booted, for a `Cd`/`Usb` boot with media inserted.
    pub image: Option<String>,
}

/// Where the VirtualMedia collections live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaLocation {
    /// No virtual media at all.
    None,
    /// Under `Systems/{id}/VirtualMedia` (newer services).
    System,
    /// Under `Managers/{id}/VirtualMedia` (older services).
    Manager,
    /// Under both: one CD device each.
    Both,
}

/// BlueField operating mode (`Oem.Nvidia.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DpuMode {
    /// The Arm cores own the eSwitch (the BlueField-3 DPU default).
    DpuMode,
    /// The card behaves like a ConnectX NIC.
    NicMode,
}

impl DpuMode {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DpuMode => "DpuMode",
            Self::NicMode => "NicMode",
        }
    }

    /// Parses the Redfish string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DpuMode" => Some(Self::DpuMode),
            "NicMode" => Some(Self::NicMode),
            _ => None,
        }
    }
}

/// One processor of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSpec {
    /// Resource id (`CPU0`, `GPU3`).
    pub id: String,
    /// `ProcessorType` (`CPU`, `GPU`...).
    pub kind: String,
    /// `Model`, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
    /// `Manufacturer`.
    pub manufacturer: String,
    /// `TotalCores` (0 leaves it out).
    pub cores: u32,
}

/// One firmware inventory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareSpec {
    /// Resource id (`BMC`, `DPU_OS`).
    pub id: String,
    /// `Version` at start.
    pub version: String,
    /// `Updateable`.
    pub updateable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    GpuServer,
    Bluefield3,
}

/// The shape of an emulated BMC. Start from [`BmcProfile::gpu_server`] or
/// [`BmcProfile::bluefield3`]; every other method adjusts it.
#[derive(Debug, Clone)]
pub struct BmcProfile {
    pub(crate) kind: Kind,
    pub(crate) system_id: String,
    pub(crate) manager_id: String,
    pub(crate) chassis_id: String,
    pub(crate) manufacturer: String,
    pub(crate) model: String,
    pub(crate) processors: Vec<ProcessorSpec>,
    pub(crate) dimms: u32,
    pub(crate) dimm_mib: u64,
    pub(crate) reset_types: Vec<ResetType>,
    pub(crate) boot_targets: Vec<String>,
    pub(crate) boot_modes: Vec<String>,
    pub(crate) media: MediaLocation,
    pub(crate) media_id: String,
    pub(crate) usb_media_id: Option<String>,
    pub(crate) eject_lag: Option<Duration>,
    pub(crate) firmware: Vec<FirmwareSpec>,
    pub(crate) redundant_on_conflict: bool,
    pub(crate) session_limit_forbidden: bool,
    pub(crate) initial_power: PowerState,
    pub(crate) initial_dpu_mode: DpuMode,
    pub(crate) host_keeps_rshim: bool,
    pub(crate) hgx_gpus: Vec<String>,
}

fn both_boot_modes() -> Vec<String> {
    vec!["UEFI".into(), "Legacy".into()]
}

impl BmcProfile {
    /// A GPU server: two CPUs, 16 DIMMs of 64 GiB, one GPU processor per entry of `gpus` (its
    /// model name, e.g. `NVIDIA H100 80GB HBM3`), a CD at `Systems/{id}/VirtualMedia`,
    /// firmware `BMC`, `BIOS` and one entry per GPU. IDs are Dell-like
    /// (`System.Embedded.1`, `iDRAC.Embedded.1`) so that a client building paths instead of
    /// following links fails.
    pub fn gpu_server<I, S>(gpus: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut processors: Vec<ProcessorSpec> = (0..2)
            .map(|i| ProcessorSpec {
                id: format!("CPU{i}"),
                kind: "CPU".into(),
                model: "Intel(R) Xeon(R) Platinum 8480+".into(),
                manufacturer: "Intel(R) Corporation".into(),
                cores: 56,
            })
            .collect();
        let mut firmware = vec![
            FirmwareSpec {
                id: "BMC".into(),
                version: "7.10.30.00".into(),
                updateable: true,
            },
            FirmwareSpec {
                id: "BIOS".into(),
                version: "2.3.5".into(),
                updateable: true,
            },
        ];
        for (i, model) in gpus.into_iter().enumerate() {
            processors.push(ProcessorSpec {
                id: format!("GPU{i}"),
                kind: "GPU".into(),
                model: model.into(),
                manufacturer: "NVIDIA".into(),
                cores: 0,
            });
            firmware.push(FirmwareSpec {
                id: format!("GPU{i}_Firmware"),
                version: "96.00.89.00.01".into(),
                updateable: false,
            });
        }
        Self {
            kind: Kind::GpuServer,
            system_id: "System.Embedded.1".into(),
            manager_id: "iDRAC.Embedded.1".into(),
            chassis_id: "System.Embedded.1".into(),
            manufacturer: "Meridian Emulated".into(),
            model: "GPU Server 8x".into(),
            processors,
            dimms: 16,
            dimm_mib: 65_536,
            reset_types: vec![
                ResetType::On,
                ResetType::ForceOff,
                ResetType::GracefulShutdown,
                ResetType::GracefulRestart,
                ResetType::ForceRestart,
                ResetType::Nmi,
                ResetType::PushPowerButton,
                ResetType::PowerCycle,
            ],
            boot_targets: ["None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "UefiHttp"]
                .map(String::from)
                .to_vec(),
            boot_modes: both_boot_modes(),
            media: MediaLocation::System,
            media_id: "CD".into(),
            usb_media_id: None,
            eject_lag: None,
            firmware,
            redundant_on_conflict: false,
            session_limit_forbidden: false,
            initial_power: PowerState::Off,
            initial_dpu_mode: DpuMode::DpuMode,
            host_keeps_rshim: false,
            hgx_gpus: Vec::new(),
        }
    }

    /// A BlueField-3 DPU BMC: `Systems/Bluefield` (16 Arm cores, 32 GiB), `Managers/Bluefield_BMC`,
    /// `Chassis/Card1`; firmware `DPU_OS`, `DPU_NIC`, `DPU_UEFI`, `DPU_SYS_IMAGE`, `BMC_Firmware`,
    /// `Bluefield_FW_ERoT`; no virtual media; mode `DpuMode`; RShim owned by the host.
    pub fn bluefield3() -> Self {
        let fw = |id: &str, version: &str| FirmwareSpec {
            id: id.into(),
            version: version.into(),
            updateable: true,
        };
        Self {
            kind: Kind::Bluefield3,
            system_id: "Bluefield".into(),
            manager_id: "Bluefield_BMC".into(),
            chassis_id: "Card1".into(),
            manufacturer: "Nvidia".into(),
            model: "BlueField-3 SmartNIC Main Card".into(),
            processors: vec![ProcessorSpec {
                id: "CPU0".into(),
                kind: "CPU".into(),
                model: "ARM Cortex-A78AE".into(),
                manufacturer: "ARM".into(),
                cores: 16,
            }],
            dimms: 1,
            dimm_mib: 32_768,
            reset_types: vec![
                ResetType::On,
                ResetType::ForceOff,
                ResetType::GracefulShutdown,
                ResetType::GracefulRestart,
                ResetType::ForceRestart,
                ResetType::PowerCycle,
            ],
            boot_targets: ["None", "Pxe", "Hdd", "UefiHttp", "UefiShell"]
                .map(String::from)
                .to_vec(),
            boot_modes: both_boot_modes(),
            media: MediaLocation::None,
            media_id: "CD".into(),
            usb_media_id: None,
            eject_lag: None,
            firmware: vec![
                fw("DPU_OS", "DOCA_2.9.1_BSP_4.9.1_Ubuntu_22.04-6.24.10"),
                fw("DPU_NIC", "32.43.1014"),
                fw("DPU_UEFI", "4.9.1-13-g5c3d3b1"),
                fw("DPU_SYS_IMAGE", "b83f:d203:0090:97a4"),
                fw("BMC_Firmware", "BF-24.10-17"),
                fw("Bluefield_FW_ERoT", "00.02.0195.0000_n02"),
            ],
            redundant_on_conflict: false,
            session_limit_forbidden: false,
            initial_power: PowerState::On,
            initial_dpu_mode: DpuMode::DpuMode,
            host_keeps_rshim: false,
            hgx_gpus: Vec::new(),
        }
    }

    /// Sets the system, manager and chassis IDs.
    #[must_use]
    pub fn ids(mut self, system: &str, manager: &str, chassis: &str) -> Self {
        self.system_id = system.into();
        self.manager_id = manager.into();
        self.chassis_id = chassis.into();
        self
    }

    /// Sets where the virtual media lives.
    #[must_use]
    pub fn virtual_media(mut self, at: MediaLocation) -> Self {
        self.media = at;
        self
    }

    /// Dell-like quirk: an eject keeps running for `lag` after it is answered, and an insert
    /// in that window fails with 500.
    #[must_use]
    pub fn eject_lag(mut self, lag: Duration) -> Self {
        self.eject_lag = Some(lag);
        self
    }

    /// Sets the advertised `ResetType@Redfish.AllowableValues`.
    #[must_use]
    pub fn reset_types(mut self, types: &[ResetType]) -> Self {
        self.reset_types = types.to_vec();
        self
    }

    /// Sets the advertised `BootSourceOverrideTarget@Redfish.AllowableValues`.
    #[must_use]
    pub fn boot_targets(mut self, targets: &[&str]) -> Self {
        self.boot_targets = targets.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Sets the advertised `BootSourceOverrideMode@Redfish.AllowableValues` (default `UEFI` and
    /// `Legacy`); a PATCH of any other mode is 400 `PropertyValueNotInList`. `&["UEFI"]` is a
    /// UEFI-only server (no legacy BIOS boot, as on current Dell PowerEdge generations).
    #[must_use]
    pub fn boot_modes(mut self, modes: &[&str]) -> Self {
        self.boot_modes = modes.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// Adds a removable-disk virtual media device `id` (`MediaTypes: [USBStick]`) before the
    /// CD wherever virtual media lives, as HPE iLO lists `VirtualMedia/1` (Floppy/USBStick)
    /// before `VirtualMedia/2` (CD/DVD). A client looking for the CD must check `MediaTypes`.
    #[must_use]
    pub fn usb_media(mut self, id: &str) -> Self {
        self.usb_media_id = Some(id.into());
        self
    }

    /// Adds the NVIDIA HGX baseboard as a second system, `Systems/HGX_Baseboard_0`, with one
    /// GPU processor per entry of `gpus` (`GPU_SXM_1`...), as a server BMC that aggregates its
    /// HGX baseboard's management controller (HMC) shows it. It is not the host: it has no
    /// `ComputerSystem.Reset`, boot override or virtual media.
    #[must_use]
    pub fn hgx_baseboard<I, S>(mut self, gpus: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.hgx_gpus = gpus.into_iter().map(Into::into).collect();
        self
    }

    /// Lenovo XCC-like quirk: a login beyond the session limit is refused with 403
    /// `SessionLimitExceeded` (as XCC documents it) instead of 503, so a client tells it from
    /// a busy service. HTTP Basic still works.
    #[must_use]
    pub fn session_limit_forbidden(mut self, yes: bool) -> Self {
        self.session_limit_forbidden = yes;
        self
    }

    /// BlueField: the host's rshim driver keeps RShim open (its `rshim` service runs), so
    /// `HostRshim.Set` to `Disabled` is accepted but the host side stays `Enabled`, and the
    /// BMC cannot take RShim until the service is stopped on the host.
    #[must_use]
    pub fn host_keeps_rshim(mut self, yes: bool) -> Self {
        self.host_keeps_rshim = yes;
        self
    }

    /// Answers a `Reset` to `On` on a system already on with 409 (some BMCs do).
    #[must_use]
    pub fn redundant_on_conflict(mut self, yes: bool) -> Self {
        self.redundant_on_conflict = yes;
        self
    }

    /// Sets the power state at start.
    #[must_use]
    pub fn initial_power(mut self, state: PowerState) -> Self {
        self.initial_power = state;
        self
    }

    /// Sets the BlueField mode at start (a card someone left in NIC mode).
    #[must_use]
    pub fn dpu_mode(mut self, mode: DpuMode) -> Self {
        self.initial_dpu_mode = mode;
        self
    }

    /// Sets the starting version of a firmware entry, adding it (updateable) if missing.
    #[must_use]
    pub fn firmware(mut self, id: &str, version: &str) -> Self {
        match self.firmware.iter_mut().find(|f| f.id == id) {
            Some(f) => f.version = version.into(),
            None => self.firmware.push(FirmwareSpec {
                id: id.into(),
                version: version.into(),
                updateable: true,
            }),
        }
        self
    }

    /// The system id.
    pub fn system_id(&self) -> &str {
        &self.system_id
    }

    /// Whether this is the BlueField-3 profile.
    pub fn is_bluefield(&self) -> bool {
        self.kind == Kind::Bluefield3
    }
}
