//! The [`Dpu`] trait and [`BlueFieldDpu`], a BlueField-3 driven through its own BMC.
//!
//! The DPU's BMC is a Redfish service of its own (system `Bluefield`, manager
//! `Bluefield_BMC`), so [`BlueFieldDpu`] is a [`RedfishBmc`] bound to that system plus NVIDIA's
//! OEM resources, found by following the System's and Manager's `Oem.Nvidia` links (or, where
//! a BMC does not link them, at the OEM path NVIDIA documents under the discovered resource:
//! [`quirks::nvidia_oem_path`]).
//!
//! - **Mode** (`DpuMode`/`NicMode`) is read from the System's OEM resource and set with its
//!   `Mode.Set` action. A new mode takes effect only after the Arm cores are reset and then the
//!   card power-cycled ([`Dpu::reset`] does both); until then [`DpuModeStatus::pending`] reports it. The BMC
//!   keeps reporting the running mode, so the pending one is what this driver asked for since
//!   it started: after an agent restart the reconciler simply asks again (setting a mode is
//!   idempotent).
//! - **BFB install**: the BMC must own RShim first: the host's side is released with the
//!   System OEM's `HostRshim.Set` (`Disabled`) when it shows `HostRshim: Enabled`, then
//!   `BmcRShim.BmcRShimEnabled` on the Manager's OEM resource is PATCHed with `If-Match` and
//!   read back (a host that keeps RShim is [`DpuError::RshimNotOwned`]); then `UpdateService.SimpleUpdate`
//!   targets the `DPU_OS` firmware entry and its task is polled to the end (minutes).

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::bmc::quirks;
use crate::bmc::redfish::{RedfishBmc, RedfishConfig, link, text};
use crate::bmc::{
    Bmc, BmcError, FirmwareEntry, PowerAction, ResourcePath, SimpleUpdate, TaskOutcome,
};

/// The system id NVIDIA's DPU BMC gives the Arm complex.
pub const BLUEFIELD_SYSTEM: &str = "Bluefield";

/// A BlueField's mode of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpuMode {
    /// The Arm cores own the eSwitch; the host PF is unprivileged (the DPU default).
    Dpu,
    /// The card behaves as a ConnectX NIC.
    Nic,
}

impl DpuMode {
    /// The OEM `Mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DpuMode::Dpu => "DpuMode",
            DpuMode::Nic => "NicMode",
        }
    }

    /// Parses the OEM `Mode` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DpuMode" => Some(DpuMode::Dpu),
            "NicMode" => Some(DpuMode::Nic),
            _ => None,
        }
    }
}

/// The running mode and the one waiting for a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpuModeStatus {
    pub current: DpuMode,
    /// Set and waiting for [`Dpu::reset`]; `None` when nothing is pending.
    pub pending: Option<DpuMode>,
}

/// A BFB bundle to install.
#[derive(Clone, PartialEq, Eq)]
pub struct BfbImage {
    /// `http://server/path/bf-bundle.bfb` (or `https://`, `scp://`).
    pub url: String,
    /// Credentials for the image server, if it needs them.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for BfbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BfbImage")
            .field("url", &self.url)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// What a BFB installation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfbInstalled {
    pub task: TaskOutcome,
    /// `DPU_OS.Version` before and after.
    pub previous_version: Option<String>,
    pub version: Option<String>,
}

/// The DPU's firmware as its BMC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpuFirmware {
    /// `DPU_OS`: the BFB bundle (Arm OS, DOCA).
    pub os: Option<String>,
    /// `DPU_NIC`: the NIC firmware.
    pub nic: Option<String>,
    /// `DPU_UEFI`.
    pub uefi: Option<String>,
    /// `BMC_Firmware`.
    pub bmc: Option<String>,
    /// Every entry, those above included.
    pub entries: Vec<FirmwareEntry>,
}

/// Why a DPU operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DpuError {
    /// The DPU's BMC refused or did not answer.
    #[error("DPU BMC request failed")]
    Bmc(#[from] BmcError),
    /// The BMC still does not own RShim after being asked to take it: the host's rshim
    /// service holds it. Stop that service on the host (or release it through the host's
    /// `HostRshim` OEM action) and retry.
    #[error("{url}: the DPU BMC does not own RShim ({detail}); release it on the host and retry")]
    RshimNotOwned { url: String, detail: String },
    /// The BMC reported a mode this driver does not know.
    #[error("{url}: unknown DPU mode {mode:?}")]
    UnknownMode { url: String, mode: String },
    /// An entry the BlueField BMC always has is missing from its firmware inventory.
    #[error("no {id} entry in the DPU BMC's firmware inventory")]
    MissingFirmware { id: String },
}

/// A BlueField DPU, driven through its BMC.
#[async_trait]
pub trait Dpu: Send + Sync + fmt::Debug {
    /// The running mode and any mode waiting for a reset.
    async fn mode(&self) -> Result<DpuModeStatus, DpuError>;

    /// Asks for `mode` (no request when it runs already or is already pending). It takes
    /// effect at the next [`Dpu::reset`].
    async fn set_mode(&self, mode: DpuMode) -> Result<DpuModeStatus, DpuError>;

    /// Resets the Arm cores, then power-cycles the card, and waits until it is back on.
    async fn reset(&self) -> Result<DpuModeStatus, DpuError>;

    /// Installs a BFB bundle on the Arm cores (RShim taken for the BMC first) and waits for
    /// the task to end.
    async fn install_bfb(&self, image: &BfbImage) -> Result<BfbInstalled, DpuError>;

    /// `DPU_OS`, `DPU_NIC`, `DPU_UEFI` and the rest of the firmware inventory.
    async fn firmware(&self) -> Result<DpuFirmware, DpuError>;
}

/// [`Dpu`] over a BlueField-3's BMC.
#[derive(Debug)]
pub struct BlueFieldDpu {
    bmc: RedfishBmc,
    requested: Mutex<Option<DpuMode>>,
}

impl BlueFieldDpu {
    /// A driver for the DPU BMC at `cfg.url`. The host system defaults to `Bluefield`.
    pub fn new(mut cfg: RedfishConfig) -> Result<Self, DpuError> {
        if cfg.system.is_none() {
            cfg.system = Some(BLUEFIELD_SYSTEM.to_owned());
        }
        Ok(Self {
            bmc: RedfishBmc::new(cfg)?,
            requested: Mutex::new(None),
        })
    }

    /// The underlying BMC client (power, inventory, logout).
    pub fn bmc(&self) -> &RedfishBmc {
        &self.bmc
    }

    fn requested(&self) -> Option<DpuMode> {
        *self.requested.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_requested(&self, m: Option<DpuMode>) {
        *self.requested.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    /// The OEM sub-resource of `resource` (linked, else NVIDIA's documented path).
    async fn oem(&self, resource: &ResourcePath) -> Result<(String, Value), DpuError> {
        let r = self.bmc.get(resource.as_str()).await?;
        let path = link(&r.body["Oem"]["Nvidia"])
            .unwrap_or_else(|| quirks::nvidia_oem_path(resource.as_str()));
        let body = self.bmc.get(&path).await?.body;
        Ok((path, body))
    }

    async fn read_mode(&self) -> Result<(String, Value, DpuModeStatus), DpuError> {
        let system = self.bmc.host_system().await?;
        let (path, body) = self.oem(&system).await?;
        let raw = body["Mode"].as_str().unwrap_or_default();
        let current = DpuMode::parse(raw).ok_or_else(|| DpuError::UnknownMode {
            url: path.clone(),
            mode: raw.to_owned(),
        })?;
        let pending = self.requested().filter(|r| *r != current);
        Ok((path, body, DpuModeStatus { current, pending }))
    }

    /// Makes the BMC own RShim (idempotent) and checks it does: the host's side is released
    /// first where the System's OEM resource offers `HostRshim.Set` and shows it enabled.
    async fn take_rshim(&self) -> Result<(), DpuError> {
        let (_, system_oem, _) = self.read_mode().await?;
        if system_oem["HostRshim"] == "Enabled"
            && let Some(target) = oem_action(&system_oem, "HostRshim.Set")
        {
            tracing::info!("releasing RShim on the host side");
            let reply = self
                .bmc
                .post(&target, &json!({"HostRshim": "Disabled"}))
                .await?;
            if reply.status() == hyper::StatusCode::ACCEPTED {
                self.bmc.finish_task(reply).await?;
            }
        }
        let manager = self.bmc.host_manager().await?;
        let r = self.bmc.get(manager.as_str()).await?;
        let path = link(&r.body["Oem"]["Nvidia"])
            .unwrap_or_else(|| quirks::nvidia_oem_path(manager.as_str()));
        self.bmc
            .patch_with(&path, None, |cur| {
                (cur["BmcRShim"]["BmcRShimEnabled"] != true)
                    .then(|| json!({"BmcRShim": {"BmcRShimEnabled": true}}))
            })
            .await?;
        let now = self.bmc.get(&path).await?.body;
        if now["BmcRShim"]["BmcRShimEnabled"] != true {
            return Err(DpuError::RshimNotOwned {
                url: path,
                detail: format!("BmcRShim reads {}", now["BmcRShim"]),
            });
        }
        Ok(())
    }
}

/// The target of an OEM action whose key ends with `name` (`#Mode.Set`, `#HostRshim.Set`).
fn oem_action(oem: &Value, name: &str) -> Option<String> {
    oem["Actions"].as_object().and_then(|a| {
        a.iter()
            .find(|(k, _)| k.ends_with(name))
            .and_then(|(_, v)| text(&v["target"]))
    })
}

#[async_trait]
impl Dpu for BlueFieldDpu {
    async fn mode(&self) -> Result<DpuModeStatus, DpuError> {
        Ok(self.read_mode().await?.2)
    }

    async fn set_mode(&self, mode: DpuMode) -> Result<DpuModeStatus, DpuError> {
        let (path, body, status) = self.read_mode().await?;
        if status.current == mode {
            self.set_requested(None);
            return Ok(status);
        }
        if status.pending == Some(mode) {
            return Ok(status);
        }
        let target =
            oem_action(&body, "Mode.Set").unwrap_or_else(|| format!("{path}/Actions/Mode.Set"));
        let reply = self
            .bmc
            .post(&target, &json!({"Mode": mode.as_str()}))
            .await?;
        if reply.status() == hyper::StatusCode::ACCEPTED {
            self.bmc.finish_task(reply).await?;
        }
        self.set_requested(Some(mode));
        tracing::info!(
            mode = mode.as_str(),
            "DPU mode set; effective after a reset"
        );
        Ok(self.read_mode().await?.2)
    }

    async fn reset(&self) -> Result<DpuModeStatus, DpuError> {
        // The Arm cores first, then the card.
        self.bmc.power(PowerAction::ForceRestart).await?;
        self.bmc.power(PowerAction::PowerCycle).await?;
        let status = self.read_mode().await?.2;
        if status.pending.is_none() {
            self.set_requested(None);
        }
        Ok(status)
    }

    async fn install_bfb(&self, image: &BfbImage) -> Result<BfbInstalled, DpuError> {
        self.take_rshim().await?;
        let before = self.firmware().await?;
        let os = before
            .entries
            .iter()
            .find(|e| e.id == "DPU_OS")
            .ok_or_else(|| DpuError::MissingFirmware {
                id: "DPU_OS".to_owned(),
            })?;
        let protocol = image
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_uppercase())
            .unwrap_or_else(|| "HTTP".to_owned());
        let update = SimpleUpdate {
            image_uri: image.url.clone(),
            transfer_protocol: Some(protocol),
            targets: vec![os.path.clone()],
            credentials: image.credentials.clone(),
        };
        tracing::info!(image = %image.url, "installing BFB on the DPU");
        let task = self.bmc.simple_update(&update).await?;
        let after = self.firmware().await?;
        Ok(BfbInstalled {
            task,
            previous_version: before.os,
            version: after.os,
        })
    }

    async fn firmware(&self) -> Result<DpuFirmware, DpuError> {
        let entries = self.bmc.firmware().await?;
        let version = |id: &str| {
            entries
                .iter()
                .find(|e| e.id == id)
                .and_then(|e| e.version.clone())
        };
        Ok(DpuFirmware {
            os: version("DPU_OS"),
            nic: version("DPU_NIC"),
            uefi: version("DPU_UEFI"),
            bmc: version("BMC_Firmware"),
            entries: entries.clone(),
        })
    }
}
