//! The [`Bmc`] trait: one server's management controller, as the reconciler drives it.
//!
//! A `Bmc` value is bound to one host system (the server the reconciler manages); discovery
//! picks it by following links from the service root. Operations are idempotent: asking for
//! the state the server is already in sends no change (power on while on, inserting the image
//! already inserted, a boot override already set), so a reconcile step can be repeated after a
//! crash. Operations that the BMC performs asynchronously (power transitions, media insertion,
//! firmware updates) return only once the BMC reports the result, or fail with
//! [`BmcError::Timeout`] after a bounded wait.

pub mod quirks;
pub mod redfish;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::http_client::TransportError;
pub use quirks::Vendor;
pub use redfish::{AuthMode, RedfishBmc, RedfishConfig};

/// A Redfish resource's URI exactly as the BMC gave it in an `@odata.id` (or a `Location`).
/// Drivers follow these; they never build one from a vendor's naming scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath(String);

impl ResourcePath {
    /// Wraps a URI the BMC gave.
    pub fn new(uri: impl Into<String>) -> Self {
        Self(uri.into())
    }

    /// The URI (a path, or an absolute URL for a few BMCs).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path segment (the resource's `Id` on every BMC seen so far).
    pub fn last_segment(&self) -> &str {
        self.0
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `ComputerSystem.PowerState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    PoweringOn,
    PoweringOff,
    Paused,
    /// A value this driver does not know (kept verbatim).
    Other(String),
}

impl PowerState {
    /// Parses the Redfish value.
    pub fn parse(s: &str) -> Self {
        match s {
            "On" => PowerState::On,
            "Off" => PowerState::Off,
            "PoweringOn" => PowerState::PoweringOn,
            "PoweringOff" => PowerState::PoweringOff,
            "Paused" => PowerState::Paused,
            other => PowerState::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerState::On => f.write_str("On"),
            PowerState::Off => f.write_str("Off"),
            PowerState::PoweringOn => f.write_str("PoweringOn"),
            PowerState::PoweringOff => f.write_str("PoweringOff"),
            PowerState::Paused => f.write_str("Paused"),
            PowerState::Other(s) => f.write_str(s),
        }
    }
}

/// What the reconciler wants done to the power. The driver maps it to a `ResetType` the BMC
/// advertises ([`PowerAction::reset_types`], first advertised wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on (no request when already on).
    On,
    /// Cut power now (no request when already off).
    ForceOff,
    /// Ask the OS to shut down (no request when already off).
    GracefulShutdown,
    /// Reset now; from `Off` this is a plain power-on.
    ForceRestart,
    /// Off, then on again; from `Off` this is a plain power-on. Where the BMC advertises no
    /// power-cycle reset type, `ForceOff` then `On`.
    PowerCycle,
}

impl PowerAction {
    /// `ResetType` values that perform this action, in order of preference.
    pub fn reset_types(self) -> &'static [&'static str] {
        match self {
            PowerAction::On => &["On", "ForceOn", "PushPowerButton"],
            PowerAction::ForceOff => &["ForceOff"],
            PowerAction::GracefulShutdown => &["GracefulShutdown"],
            PowerAction::ForceRestart => &["ForceRestart", "PowerCycle", "GracefulRestart"],
            PowerAction::PowerCycle => &["PowerCycle", "FullPowerCycle"],
        }
    }

    /// The power state the action ends in.
    pub fn final_state(self) -> PowerState {
        match self {
            PowerAction::ForceOff | PowerAction::GracefulShutdown => PowerState::Off,
            _ => PowerState::On,
        }
    }

    /// Whether the action resets a running system (so "already on" is not "done").
    pub fn is_restart(self) -> bool {
        matches!(self, PowerAction::ForceRestart | PowerAction::PowerCycle)
    }
}

/// `Boot.BootSourceOverrideTarget`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootTarget {
    None,
    Pxe,
    Cd,
    Usb,
    Hdd,
    BiosSetup,
    UefiHttp,
    UefiTarget,
    /// Another value from the schema (kept verbatim).
    Other(String),
}

impl BootTarget {
    /// The Redfish value.
    pub fn as_str(&self) -> &str {
        match self {
            BootTarget::None => "None",
            BootTarget::Pxe => "Pxe",
            BootTarget::Cd => "Cd",
            BootTarget::Usb => "Usb",
            BootTarget::Hdd => "Hdd",
            BootTarget::BiosSetup => "BiosSetup",
            BootTarget::UefiHttp => "UefiHttp",
            BootTarget::UefiTarget => "UefiTarget",
            BootTarget::Other(s) => s,
        }
    }

    /// Parses the Redfish value.
    pub fn parse(s: &str) -> Self {
        match s {
            "None" => BootTarget::None,
            "Pxe" => BootTarget::Pxe,
            "Cd" => BootTarget::Cd,
            "Usb" => BootTarget::Usb,
            "Hdd" => BootTarget::Hdd,
            "BiosSetup" => BootTarget::BiosSetup,
            "UefiHttp" => BootTarget::UefiHttp,
            "UefiTarget" => BootTarget::UefiTarget,
            other => BootTarget::Other(other.to_owned()),
        }
    }
}

/// `Boot.BootSourceOverrideEnabled`: `Once` returns to `Disabled` after the boot that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOverrideEnabled {
    Disabled,
    Once,
    Continuous,
}

impl BootOverrideEnabled {
    /// The Redfish value.
    pub fn as_str(self) -> &'static str {
        match self {
            BootOverrideEnabled::Disabled => "Disabled",
            BootOverrideEnabled::Once => "Once",
            BootOverrideEnabled::Continuous => "Continuous",
        }
    }

    /// Parses the Redfish value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Disabled" => Some(BootOverrideEnabled::Disabled),
            "Once" => Some(BootOverrideEnabled::Once),
            "Continuous" => Some(BootOverrideEnabled::Continuous),
            _ => None,
        }
    }
}

/// `Boot.BootSourceOverrideMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    Uefi,
    Legacy,
}

impl BootMode {
    /// The Redfish value.
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Uefi => "UEFI",
            BootMode::Legacy => "Legacy",
        }
    }

    /// Parses the Redfish value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "UEFI" => Some(BootMode::Uefi),
            "Legacy" => Some(BootMode::Legacy),
            _ => None,
        }
    }
}

/// A boot source override, as set or as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOverride {
    pub target: BootTarget,
    pub enabled: BootOverrideEnabled,
    /// `None`: leave the mode as it is (when setting) or the BMC did not say (when read).
    pub mode: Option<BootMode>,
}

/// What [`Bmc::insert_media`] does when other media is already inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaPolicy {
    /// Eject it, then insert (what provisioning wants).
    EjectFirst,
    /// Fail with [`BmcError::MediaPresent`] (someone else's media is never removed silently).
    Fail,
}

/// A CD/DVD virtual media slot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStatus {
    /// The slot (under the System or a Manager).
    pub slot: ResourcePath,
    pub inserted: bool,
    /// The image URL the BMC reports (empty or absent when nothing is inserted).
    pub image: Option<String>,
}

/// One `ComputerSystem` found by discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSummary {
    pub path: ResourcePath,
    pub id: String,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub power_state: Option<PowerState>,
    /// `ResetType` values the BMC advertises (empty: none advertised).
    pub reset_types: Vec<String>,
    /// `BootSourceOverrideTarget` values the BMC advertises (empty: none advertised).
    pub boot_targets: Vec<String>,
}

/// One `Manager` (the BMC itself) found by discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerSummary {
    pub path: ResourcePath,
    pub id: String,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
}

/// What the service root and its collections revealed.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub redfish_version: Option<String>,
    /// Who made the BMC, as far as it tells; decides the quirks applied.
    pub vendor: Vendor,
    pub systems: Vec<SystemSummary>,
    pub managers: Vec<ManagerSummary>,
    pub chassis: Vec<ResourcePath>,
    /// The system this driver manages (one of `systems`).
    pub host_system: ResourcePath,
    /// The root links a session service (`Links.Sessions`).
    pub sessions: bool,
    /// The session in use, if logging in gave one (else HTTP Basic).
    pub session_auth: bool,
    pub update_service: Option<ResourcePath>,
    pub task_service: Option<ResourcePath>,
}

/// `Processor.ProcessorType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorKind {
    Cpu,
    Gpu,
    Other(String),
}

/// A CPU or GPU as the BMC lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Processor {
    pub path: ResourcePath,
    pub kind: ProcessorKind,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub cores: Option<u32>,
}

/// A memory module.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimm {
    pub path: ResourcePath,
    pub capacity_mib: Option<u64>,
}

/// The host's hardware as the BMC reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HardwareInventory {
    pub system: ResourcePath,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub uuid: Option<String>,
    pub cpus: Vec<Processor>,
    /// `ProcessorType: GPU` under the host system and, on HGX, under its `HGX_*` systems.
    pub gpus: Vec<Processor>,
    /// FPGAs, accelerators and others.
    pub other_processors: Vec<Processor>,
    pub dimms: Vec<Dimm>,
    /// `MemorySummary.TotalSystemMemoryGiB`.
    pub total_memory_gib: Option<f64>,
    /// Collections the system links or should have but the BMC would not serve (404/405/501),
    /// e.g. `"Processors"`: the inventory is partial for those.
    pub unavailable: Vec<String>,
}

/// One `SoftwareInventory` entry of `UpdateService.FirmwareInventory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareEntry {
    pub path: ResourcePath,
    pub id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub updateable: Option<bool>,
}

/// An `UpdateService.SimpleUpdate` request.
#[derive(Clone, PartialEq, Eq)]
pub struct SimpleUpdate {
    /// As the BMC expects it (most take a URL; BlueField takes `<server>/<path>`).
    pub image_uri: String,
    /// `HTTP`, `HTTPS`, `SCP`...; `None` leaves it out.
    pub transfer_protocol: Option<String>,
    /// FirmwareInventory entries to update (empty: the BMC decides from the image).
    pub targets: Vec<ResourcePath>,
    /// Credentials for the image server (both or neither).
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for SimpleUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleUpdate")
            .field("image_uri", &self.image_uri)
            .field("transfer_protocol", &self.transfer_protocol)
            .field("targets", &self.targets)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// `Task.TaskState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    New,
    Starting,
    Running,
    Pending,
    Suspended,
    Interrupted,
    Stopping,
    Cancelling,
    Service,
    Completed,
    Exception,
    Killed,
    Cancelled,
    Other(String),
}

impl TaskState {
    /// Parses the Redfish value.
    pub fn parse(s: &str) -> Self {
        match s {
            "New" => TaskState::New,
            "Starting" => TaskState::Starting,
            "Running" => TaskState::Running,
            "Pending" => TaskState::Pending,
            "Suspended" => TaskState::Suspended,
            "Interrupted" => TaskState::Interrupted,
            "Stopping" => TaskState::Stopping,
            "Cancelling" => TaskState::Cancelling,
            "Service" => TaskState::Service,
            "Completed" => TaskState::Completed,
            "Exception" => TaskState::Exception,
            "Killed" => TaskState::Killed,
            "Cancelled" => TaskState::Cancelled,
            other => TaskState::Other(other.to_owned()),
        }
    }

    /// The task will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Exception | TaskState::Killed | TaskState::Cancelled
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskState::Other(s) => f.write_str(s),
            other => write!(f, "{other:?}"),
        }
    }
}

/// How a long operation ended (always `Completed` here: other ends are
/// [`BmcError::TaskFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The Task resource or monitor polled (`None`: the BMC finished synchronously).
    pub task: Option<ResourcePath>,
    pub state: TaskState,
    /// `TaskStatus` (`OK`, `Warning`, `Critical`).
    pub status: Option<String>,
    pub percent_complete: Option<u32>,
    /// `Messages[].Message`.
    pub messages: Vec<String>,
}

/// Why a BMC operation failed. Every variant names the URL involved.
#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    /// The driver's configuration is unusable (bad URL, TLS without trust anchors...).
    #[error("BMC configuration: {0}")]
    Config(String),
    /// No HTTP answer (connection refused, TLS failure, timeout) after `attempts` tries.
    #[error("{method} {url}: no answer after {attempts} attempt(s)")]
    Transport {
        method: String,
        url: String,
        attempts: u32,
        #[source]
        source: TransportError,
    },
    /// The credentials were refused, also after logging in again once. Check the BMC user and
    /// password in the site configuration.
    #[error("{url}: credentials for user {user:?} refused (HTTP 401){}", fmt_message(.message))]
    Unauthorized {
        url: String,
        user: String,
        message: Option<String>,
    },
    /// The BMC answered with an error status (after retries, for 503).
    #[error("{method} {url}: HTTP {status}{}", fmt_message(.message))]
    Http {
        method: String,
        url: String,
        status: u16,
        /// `@Message.ExtendedInfo[].Message` (else `error.message`), joined.
        message: Option<String>,
        /// `@Message.ExtendedInfo[].MessageId`, e.g. `Base.1.8.PropertyValueNotInList`.
        message_id: Option<String>,
        attempts: u32,
    },
    /// A PATCH was refused with 412 twice: the resource kept changing under us.
    #[error("PATCH {url}: precondition failed (412) again after re-reading the resource")]
    PreconditionFailed { url: String },
    /// The BMC's JSON could not be parsed.
    #[error("{url}: unparsable JSON")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// The BMC's answer lacks something Redfish requires (a link, a header, a field).
    #[error("{url}: {detail}")]
    Protocol { url: String, detail: String },
    /// The BMC does not offer what was asked (no advertised reset type for the action, a boot
    /// target not allowed, no CD/DVD slot...).
    #[error("{url}: {what} is not supported by this BMC (it offers: {})", .offered.join(", "))]
    Unsupported {
        url: String,
        what: String,
        offered: Vec<String>,
    },
    /// A state was not reached in time.
    #[error("{url}: {what} not reached within {waited:?} (last seen: {last})")]
    Timeout {
        url: String,
        what: String,
        waited: Duration,
        last: String,
    },
    /// A long operation ended in `Exception`, `Killed` or `Cancelled`.
    #[error("{url}: task ended {state}{}", fmt_messages(.messages))]
    TaskFailed {
        url: String,
        state: TaskState,
        messages: Vec<String>,
    },
    /// Other media is inserted and the policy forbids ejecting it.
    #[error("{url}: media {image:?} is already inserted (policy: fail)")]
    MediaPresent { url: String, image: String },
    /// The BMC accepted a change but reads back something else.
    #[error("{url}: {what} reads back {observed:?} after setting {expected:?}")]
    NotApplied {
        url: String,
        what: String,
        expected: String,
        observed: String,
    },
}

fn fmt_message(m: &Option<String>) -> String {
    m.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

fn fmt_messages(m: &[String]) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {}", m.join("; "))
    }
}

impl BmcError {
    /// The HTTP status, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            BmcError::Http { status, .. } => Some(*status),
            BmcError::Unauthorized { .. } => Some(401),
            BmcError::PreconditionFailed { .. } => Some(412),
            _ => None,
        }
    }

    /// Whether the same operation may succeed later without anyone changing anything
    /// (a busy or unreachable BMC, a slow transition): the reconciler requeues these, and marks
    /// the server failed only after its own bounded retries.
    pub fn is_transient(&self) -> bool {
        match self {
            BmcError::Transport { source, .. } => source.retryable(),
            BmcError::Http { status, .. } => matches!(status, 409 | 500 | 502 | 503 | 504),
            BmcError::Timeout { .. } | BmcError::PreconditionFailed { .. } => true,
            _ => false,
        }
    }
}

/// One server's BMC. See the module documentation for the guarantees.
#[async_trait]
pub trait Bmc: Send + Sync + fmt::Debug {
    /// Follows the service root's links to the systems, managers, chassis and services, and
    /// picks the host system. Cached; call again to refresh.
    async fn discover(&self) -> Result<Discovery, BmcError>;

    /// The host's power state now.
    async fn power_state(&self) -> Result<PowerState, BmcError>;

    /// Performs `action` with a reset type the BMC advertises and waits until `PowerState`
    /// reaches the action's final state (through `PoweringOn`/`PoweringOff`).
    async fn power(&self, action: PowerAction) -> Result<PowerState, BmcError>;

    /// The boot override now.
    async fn boot_override(&self) -> Result<BootOverride, BmcError>;

    /// Sets the boot override (a target the BMC allows only) and returns what reads back.
    async fn set_boot_override(&self, wanted: &BootOverride) -> Result<BootOverride, BmcError>;

    /// The CD/DVD slot's state (System first, then Managers).
    async fn media(&self) -> Result<MediaStatus, BmcError>;

    /// Inserts `image` (a URL the BMC fetches) into the CD/DVD slot, write-protected, and waits
    /// until the BMC reports it inserted. A no-op when `image` is already inserted.
    async fn insert_media(&self, image: &str, policy: MediaPolicy)
    -> Result<MediaStatus, BmcError>;

    /// Ejects whatever is in the CD/DVD slot (a no-op when empty) and waits until it is out.
    async fn eject_media(&self) -> Result<MediaStatus, BmcError>;

    /// CPUs, GPUs and memory of the host.
    async fn inventory(&self) -> Result<HardwareInventory, BmcError>;

    /// `UpdateService.FirmwareInventory`.
    async fn firmware(&self) -> Result<Vec<FirmwareEntry>, BmcError>;

    /// Starts `UpdateService.SimpleUpdate` and waits for its task to end.
    async fn simple_update(&self, update: &SimpleUpdate) -> Result<TaskOutcome, BmcError>;

    /// Ends the session, if one was opened (sessions are a limited resource on BMCs).
    async fn logout(&self) -> Result<(), BmcError>;
}
