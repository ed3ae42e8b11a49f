//! The server lifecycle as a pure function: given what the intent wants of a server now, its
//! progress record and what its devices say, the one next [`Step`]. No IO, no clock.
//!
//! ```text
//! Discovered -> Inspecting -> Available -> Allocated -> Cleaning -> Available
//!                                   \____________\__________\____-> Failed (error policy)
//! ```
//!
//! - **Allocate** (Available or Allocated with allocations in force): insert the image by
//!   virtual media, arm a one-time CD boot, power on (or restart a server that is on), then
//!   the GPUs: whole GPUs get MIG off, GPUs with MIG slices get MIG on (mode, then a GPU
//!   reset) and one MIG device per slice (adopting an unowned device of the profile left by an
//!   interrupted create before creating one), devices nobody owns are destroyed; then
//!   `Allocated`, each allocation `Applied`.
//! - **Clean** (no allocation left, the boot image changes, or an Available server drifted):
//!   destroy every MIG device, MIG mode off (mode, reset), power off, eject the media, clear the
//!   boot override; then `Available`, each torn-down allocation `Ended`.
//! - **Operator requests** (`server_actions`, [`action_step`]): before the lifecycle, one at a
//!   time, lowest request number first: `BeginAction` (recorded `Started`, reported running,
//!   nothing asked of the device), `IssueAction` (recorded `Issuing` before the BMC is asked
//!   once, `Issued` after it took the call; a reprovision is `-> Cleaning` and `Issued` in one
//!   commit), then the effect awaited and `EndAction` (done or failed, kept as the "done for
//!   request N" record). An `Issuing` request is never asked again: it is finished from what
//!   the device shows, else failed as not confirmed (at most once).
//! - **Notes**: where the device already shows what the record lacks (a step ran, its commit
//!   did not: a crash), the step is a [`Note`]: record and report it, do nothing to the device.

use std::collections::BTreeSet;

use meridian_common::ids::{Generation, RequestId, WorkloadId};
use meridian_common::model::{
    AllocationStatus, GpuSlot, MigGeometry, MigInstance, PowerAction as Power, Server,
    ServerActionKind, ServerState,
};

use super::desired::{ServerWant, WantedAllocation, slot_key};
use super::device::{Device, mig_profile_of};
use super::record::{ActionStage, BootedWith, MigClaim, ServerRecord};
use meridian_drivers::bmc::{BootOverrideEnabled, BootTarget, PowerState};
use meridian_drivers::dpu::{BfbImage, DpuMode};

/// One step of a server's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Leave `Failed` because a newer generation arrived: start again from cleaning (or from
    /// discovery when never inspected).
    Retry {
        generation: Generation,
    },
    /// Follow the BMC's links to the host system (`Discovered -> Inspecting`).
    Discover,
    /// Read the inventory from Redfish and the GPU driver (`Inspecting -> Available`).
    Inspect,
    /// Record and report what the device already shows; touch nothing.
    Note(Note),
    /// `-> Cleaning`.
    BeginCleaning {
        why: String,
    },
    InsertMedia {
        image: String,
    },
    /// One-time boot from the virtual CD.
    ArmBoot,
    PowerOn {
        with: BootedWith,
    },
    /// Restart a server that is on, so it boots what is armed.
    Restart {
        with: BootedWith,
    },
    /// A power transition is under way.
    WaitPower,
    SetMigMode {
        gpu: u32,
        enabled: bool,
    },
    /// Reset a GPU so its pending MIG mode takes effect.
    ResetGpu {
        gpu: u32,
    },
    CreateMig {
        key: String,
        workload: WorkloadId,
        gpu: u32,
        profile: String,
    },
    /// Destroy a MIG device (`key`: the allocation share that owned it, if any).
    DestroyMig {
        gpu: u32,
        uuid: String,
        key: Option<String>,
    },
    /// Install the site's BFB bundle on the DPU (RShim taken, `SimpleUpdate` task polled).
    InstallBfb {
        image: BfbImage,
        version: String,
    },
    /// Ask the DPU for a mode (effective after [`Step::ResetDpu`]).
    SetDpuMode {
        mode: DpuMode,
    },
    /// Reset the DPU so its pending mode takes effect.
    ResetDpu,
    PowerOff,
    EjectMedia,
    ClearBootOverride,
    /// `Cleaning -> Available`; torn-down allocations `Ended`.
    MarkAvailable,
    /// `-> Allocated`; allocations in force `Applied`, removed ones `Ended`.
    MarkAllocated,
    /// Record an operator request `Started` and report it running; nothing is asked of the
    /// device (that is [`Step::IssueAction`], committed after this).
    BeginAction {
        request: RequestId,
        kind: ServerActionKind,
        /// Whether the server is on now (`None`: neither on nor off), recorded to tell later
        /// from the device whether an unconfirmed power request happened.
        was_on: Option<bool>,
    },
    /// Carry out a started request once: record it `Issuing`, ask the BMC, record it `Issued`.
    /// A reprovision asks nothing of the device: `-> Cleaning` and `Issued` in one commit.
    IssueAction {
        request: RequestId,
        kind: ServerActionKind,
    },
    /// Record and report a request final (`done`, else failed) with `detail`.
    EndAction {
        request: RequestId,
        kind: ServerActionKind,
        done: bool,
        detail: String,
    },
    /// Nothing to do.
    Converged,
}

/// A record-only step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Report an allocation's status (pending, failed validation, ended before it ran).
    Allocation {
        alloc: Box<WantedAllocation>,
        status: AllocationStatus,
    },
    /// An allocation left the intent: forget it (nothing was in place).
    Forget {
        workload: WorkloadId,
    },
    MediaFound {
        image: String,
    },
    MediaGone,
    BootArmedFound,
    BootedFound {
        with: BootedWith,
    },
    /// The recorded boot no longer holds (the server is off, or it booted something else).
    BootLost,
    PoweredOffFound,
    MigModeFound {
        gpu: u32,
        on: bool,
    },
    MigAdopted {
        key: String,
        claim: MigClaim,
    },
    MigVanished {
        key: String,
    },
    /// An `Issuing` request's power transition is under way: the BMC took the call (only the
    /// agent changes a server's power, and a request begins only with none under way).
    ActionUnderWay {
        request: RequestId,
    },
}

/// The want checked against the server's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment<'a> {
    /// Allocations that can be put in place.
    pub accepted: Vec<&'a WantedAllocation>,
    /// Allocations that cannot, with why.
    pub rejected: Vec<(&'a WantedAllocation, String)>,
    /// The image the server boots (the first accepted allocation's that names one).
    pub image: Option<&'a str>,
}

/// Checks each active allocation against the inventory: its GPUs exist, MIG slices are on
/// MIG-capable GPUs with a GPU driver to create them and fit, no GPU is shared between a whole
/// and a sliced use or two whole uses, and all name the same boot image. An allocation that
/// fails a check is rejected whole; earlier ones (by workload) win.
pub fn assess<'a>(want: &'a ServerWant, inventory: &Server, gpu_driver: bool) -> Assessment<'a> {
    let mut out = Assessment {
        accepted: Vec::new(),
        rejected: Vec::new(),
        image: None,
    };
    let mut whole: BTreeSet<u32> = BTreeSet::new();
    let mut geometry: std::collections::BTreeMap<u32, MigGeometry> = Default::default();
    'alloc: for a in &want.active {
        if let (Some(image), Some(wanted)) = (out.image, a.image.as_deref())
            && image != wanted
        {
            out.rejected.push((
                a,
                format!(
                    "server {} boots {image} for another allocation; this one wants {wanted}",
                    want.server
                ),
            ));
            continue;
        }
        let mut my_whole = whole.clone();
        let mut my_geometry = geometry.clone();
        for slot in &a.slots {
            let reason = match slot {
                GpuSlot::None => None,
                GpuSlot::WholeGpus { indices } => indices.iter().find_map(|i| {
                    if inventory.gpu(*i).is_none() {
                        Some(format!("server {} has no GPU {i}", want.server))
                    } else if my_geometry.contains_key(i) || !my_whole.insert(*i) {
                        Some(format!("GPU {i} of {} is already in use", want.server))
                    } else {
                        None
                    }
                }),
                GpuSlot::Mig {
                    gpu_index,
                    profile,
                    placement,
                } => match inventory.gpu(*gpu_index) {
                    None => Some(format!("server {} has no GPU {gpu_index}", want.server)),
                    Some(_) if !gpu_driver => Some(format!(
                        "server {} has no GPU driver configured (gpu_inventory = \"none\"); \
                         MIG slices need one",
                        want.server
                    )),
                    Some(_) if my_whole.contains(gpu_index) => Some(format!(
                        "GPU {gpu_index} of {} is in use whole",
                        want.server
                    )),
                    Some(g) => {
                        let geo = match my_geometry.get(gpu_index) {
                            Some(geo) => Ok(*geo),
                            None => MigGeometry::new(g.model),
                        };
                        match geo.and_then(|mut geo| geo.place(*profile, *placement).map(|()| geo))
                        {
                            Ok(geo) => {
                                my_geometry.insert(*gpu_index, geo);
                                None
                            }
                            Err(e) => Some(format!("GPU {gpu_index} of {}: {e}", want.server)),
                        }
                    }
                },
            };
            if let Some(reason) = reason {
                out.rejected.push((a, reason));
                continue 'alloc;
            }
        }
        whole = my_whole;
        geometry = my_geometry;
        if out.image.is_none() {
            out.image = a.image.as_deref();
        }
        out.accepted.push(a);
    }
    out
}

/// The next step for one server.
pub fn plan(want: &ServerWant, rec: &ServerRecord, dev: Option<&Device>, gpu_driver: bool) -> Step {
    match &rec.state {
        ServerState::Discovered => return Step::Discover,
        ServerState::Inspecting => return Step::Inspect,
        ServerState::Failed { reason } => {
            return if want.generation > rec.failed_generation {
                Step::Retry {
                    generation: want.generation,
                }
            } else {
                fail_actions(want, rec, reason).unwrap_or(Step::Converged)
            };
        }
        ServerState::Available | ServerState::Allocated | ServerState::Cleaning => {}
    }
    let Some(inventory) = &rec.inventory else {
        return Step::Inspect;
    };
    let Some(dev) = dev else {
        // The caller observes before planning these states; without an observation nothing
        // can be decided.
        return Step::Converged;
    };
    let rest = || lifecycle(want, rec, dev, inventory, gpu_driver);
    action_step(want, rec, dev, &rest).unwrap_or_else(rest)
}

/// What a request does, for reports.
pub fn action_name(kind: &ServerActionKind) -> String {
    match kind {
        ServerActionKind::Power(Power::On) => "power on".to_owned(),
        ServerActionKind::Power(Power::Off) => "power off".to_owned(),
        ServerActionKind::Power(Power::Reboot) => "reboot".to_owned(),
        ServerActionKind::Power(Power::Cycle) => "power cycle".to_owned(),
        ServerActionKind::Clean => "reprovision (re-image and clean)".to_owned(),
        ServerActionKind::Provision { image } => format!("provision {image}"),
    }
}

/// Why a `Provision { image }` request is failed rather than carried out.
pub const PROVISION_UNSUPPORTED: &str = "provisioning an image on request is not supported: \
    the agent boots images only for allocations (an available server is kept off and empty, \
    so a one-off boot would be cleaned away at once); allocate the server with the image, \
    or use reprovision to re-image it for its allocations";

/// Why an `Issuing` request the device shows no sign of is failed.
pub const NOT_CONFIRMED: &str = "the agent stopped (or lost the BMC's answer) between \
    recording the request and confirming it, and the server shows no sign of it; not \
    repeated, as each request is carried out at most once";

/// The next step of the operator's requests, if one is due; `None`: the lifecycle's turn
/// (no request due, or a reprovision waiting for the cleaning it started).
///
/// Unfinished records come first (one request at a time), then the lowest-numbered wanted
/// request without a record. A request never begins during a power transition.
pub fn action_step(
    want: &ServerWant,
    rec: &ServerRecord,
    dev: &Device,
    lifecycle: &dyn Fn() -> Step,
) -> Option<Step> {
    if let Some((&request, a)) = rec.actions.iter().find(|(_, a)| !a.phase.is_final()) {
        let end = |done: bool, detail: String| Step::EndAction {
            request,
            kind: a.kind.clone(),
            done,
            detail,
        };
        let issue = || Step::IssueAction {
            request,
            kind: a.kind.clone(),
        };
        return Some(match (&a.kind, a.phase) {
            (ServerActionKind::Provision { .. }, _) => end(false, PROVISION_UNSUPPORTED.into()),
            (_, ActionStage::Started) if !want.wants_action(request) => end(
                false,
                "withdrawn from the intent before it was carried out".into(),
            ),
            (_, ActionStage::Started) if dev.in_transition() => Step::WaitPower,
            (_, ActionStage::Started) => issue(),
            // A reprovision's issue is one commit with no device call: nothing to confirm.
            (ServerActionKind::Clean, ActionStage::Issuing) => issue(),
            (ServerActionKind::Clean, _) if rec.state == ServerState::Cleaning => return None,
            (ServerActionKind::Clean, _) => match lifecycle() {
                Step::Converged => end(
                    true,
                    format!(
                        "re-imaged and cleaned; the server is {} again",
                        state_name(&rec.state)
                    ),
                ),
                step => step,
            },
            (ServerActionKind::Power(_), ActionStage::Issuing) if dev.in_transition() => {
                Step::Note(Note::ActionUnderWay { request })
            }
            (ServerActionKind::Power(p), ActionStage::Issuing) => {
                let (done, detail) = unconfirmed(*p, a.was_on, &dev.power);
                end(done, detail)
            }
            (ServerActionKind::Power(_), _) if dev.in_transition() => Step::WaitPower,
            (ServerActionKind::Power(p), _) => {
                if dev.power == final_power(*p) {
                    end(true, power_done(*p, a.was_on).into())
                } else {
                    end(
                        false,
                        format!(
                            "the BMC took the request, but the server is {} (expected {})",
                            dev.power,
                            final_power(*p)
                        ),
                    )
                }
            }
        });
    }
    let next = want
        .actions
        .iter()
        .find(|w| !rec.actions.contains_key(&w.request))?;
    Some(match &next.kind {
        ServerActionKind::Provision { .. } => Step::EndAction {
            request: next.request,
            kind: next.kind.clone(),
            done: false,
            detail: PROVISION_UNSUPPORTED.into(),
        },
        _ if dev.in_transition() => Step::WaitPower,
        kind => Step::BeginAction {
            request: next.request,
            kind: kind.clone(),
            was_on: match dev.power {
                PowerState::On => Some(true),
                PowerState::Off => Some(false),
                _ => None,
            },
        },
    })
}

/// A failed server's unfinished requests (recorded, or wanted and not begun) fail with it.
fn fail_actions(want: &ServerWant, rec: &ServerRecord, reason: &str) -> Option<Step> {
    let recorded = rec
        .actions
        .iter()
        .find(|(_, a)| !a.phase.is_final())
        .map(|(r, a)| (*r, a.kind.clone()));
    let wanted = || {
        want.actions
            .iter()
            .find(|w| !rec.actions.contains_key(&w.request))
            .map(|w| (w.request, w.kind.clone()))
    };
    let (request, kind) = recorded.or_else(wanted)?;
    Some(Step::EndAction {
        request,
        kind,
        done: false,
        detail: format!("server {} failed: {reason}", want.server),
    })
}

/// The power state a power request ends in.
pub fn final_power(p: Power) -> PowerState {
    match p {
        Power::Off => PowerState::Off,
        Power::On | Power::Cycle | Power::Reboot => PowerState::On,
    }
}

fn power_done(p: Power, was_on: Option<bool>) -> &'static str {
    match (p, was_on) {
        (Power::On, Some(true)) => "the server was already on",
        (Power::Off, Some(false)) => "the server was already off",
        (Power::On, _) => "powered on",
        (Power::Off, _) => "powered off",
        (Power::Reboot | Power::Cycle, Some(false)) => "the server was off: powered on",
        (Power::Reboot, _) => "restarted",
        (Power::Cycle, _) => "power-cycled",
    }
}

/// An `Issuing` power request with no transition under way: done when the device shows its
/// effect (the wanted power state, reached from the other one for a restart), else failed as
/// not confirmed. Never asked again.
fn unconfirmed(p: Power, was_on: Option<bool>, power: &PowerState) -> (bool, String) {
    let shown = match p {
        Power::On | Power::Off => *power == final_power(p),
        // A restart of a server that was on leaves it on: nothing to tell it by.
        Power::Reboot | Power::Cycle => was_on == Some(false) && *power == PowerState::On,
    };
    if shown {
        (
            true,
            format!(
                "{} (found after the agent stopped before confirming; not repeated)",
                power_done(p, was_on)
            ),
        )
    } else {
        (false, NOT_CONFIRMED.to_owned())
    }
}

fn state_name(state: &ServerState) -> &'static str {
    match state {
        ServerState::Allocated => "allocated",
        ServerState::Available => "available",
        ServerState::Cleaning => "cleaning",
        ServerState::Discovered => "discovered",
        ServerState::Inspecting => "inspecting",
        ServerState::Failed { .. } => "failed",
    }
}

/// The lifecycle's next step (allocation, cleaning, notes) for a server past inspection.
fn lifecycle(
    want: &ServerWant,
    rec: &ServerRecord,
    dev: &Device,
    inventory: &Server,
    gpu_driver: bool,
) -> Step {
    let a = assess(want, inventory, gpu_driver);
    if let Some(note) = bookkeeping(want, rec, &a) {
        return Step::Note(note);
    }
    if rec.state == ServerState::Cleaning {
        return cleaning(want, rec, dev);
    }
    if a.accepted.is_empty() {
        if rec.state == ServerState::Allocated {
            return Step::BeginCleaning {
                why: "no allocation is in force any more".to_owned(),
            };
        }
        return match drift(rec, dev) {
            Some(why) => Step::BeginCleaning { why },
            None => dpu_step(want, dev).unwrap_or(Step::Converged),
        };
    }
    let boot = a
        .image
        .map_or(BootedWith::Disk, |i| BootedWith::Image(i.to_owned()));
    if rec.state == ServerState::Allocated
        && let Some(booted) = &rec.booted
        && *booted != boot
    {
        return Step::BeginCleaning {
            why: format!(
                "the boot image changes from {} to {}",
                describe(booted),
                describe(&boot)
            ),
        };
    }
    if rec.state == ServerState::Available
        && let Some(step) = dpu_step(want, dev)
    {
        return step;
    }
    if let Some(image) = a.image {
        if !dev.has_media(image) {
            return Step::InsertMedia {
                image: image.to_owned(),
            };
        }
        if rec.media.as_deref() != Some(image) {
            return Step::Note(Note::MediaFound {
                image: image.to_owned(),
            });
        }
    }
    if let Some(step) = boot_step(rec, dev, &boot) {
        return step;
    }
    if let Some(step) = gpu_step(rec, dev, &a) {
        return step;
    }
    let accepted: BTreeSet<&WorkloadId> = a.accepted.iter().map(|w| &w.workload).collect();
    let unapplied = a.accepted.iter().any(|w| {
        rec.allocations
            .get(&w.workload)
            .is_none_or(|r| r.status != AllocationStatus::Applied)
    });
    let ended = rec
        .allocations
        .iter()
        .any(|(w, r)| r.status == AllocationStatus::Applied && !accepted.contains(w));
    if rec.state != ServerState::Allocated || unapplied || ended {
        return Step::MarkAllocated;
    }
    Step::Converged
}

/// How a boot source reads in reports.
pub fn describe(b: &BootedWith) -> String {
    match b {
        BootedWith::Image(i) => i.clone(),
        BootedWith::Disk => "its disk".to_owned(),
    }
}

/// Allocation statuses to report that need no device work.
fn bookkeeping(want: &ServerWant, rec: &ServerRecord, a: &Assessment<'_>) -> Option<Note> {
    let status = |w: &WorkloadId| rec.allocations.get(w).map(|r| &r.status);
    let note = |alloc: &WantedAllocation, status: AllocationStatus| Note::Allocation {
        alloc: Box::new(alloc.clone()),
        status,
    };
    for (alloc, reason) in &a.rejected {
        let failed = AllocationStatus::Failed {
            reason: reason.clone(),
        };
        if status(&alloc.workload) != Some(&failed) {
            return Some(note(alloc, failed));
        }
    }
    for alloc in a.accepted.iter().copied().chain(&want.upcoming) {
        match status(&alloc.workload) {
            None | Some(AllocationStatus::Failed { .. }) | Some(AllocationStatus::Ended) => {
                return Some(note(alloc, AllocationStatus::Pending));
            }
            Some(_) => {}
        }
    }
    for alloc in &want.ended {
        if matches!(
            status(&alloc.workload),
            None | Some(AllocationStatus::Pending)
        ) {
            return Some(note(alloc, AllocationStatus::Ended));
        }
    }
    for (w, r) in &rec.allocations {
        if want.mentions(w) {
            continue;
        }
        match &r.status {
            // Removed before it was put in place.
            AllocationStatus::Pending => {
                let gone = WantedAllocation {
                    workload: w.clone(),
                    tenant: r.tenant.clone(),
                    mode: meridian_common::model::AllocationMode::BareMetal,
                    image: None,
                    slots: Vec::new(),
                    window: None,
                };
                return Some(note(&gone, AllocationStatus::Ended));
            }
            AllocationStatus::Failed { .. } | AllocationStatus::Ended => {
                return Some(Note::Forget {
                    workload: w.clone(),
                });
            }
            // Torn down by the lifecycle, then reported `Ended`.
            AllocationStatus::Applied => {}
        }
    }
    None
}

/// Why an Available server is not clean, if it is not.
fn drift(rec: &ServerRecord, dev: &Device) -> Option<String> {
    if dev.power != PowerState::Off {
        return Some(format!("server is {} while available", dev.power));
    }
    if dev.media.inserted {
        return Some(format!(
            "virtual media {} is inserted while available",
            dev.media.image.as_deref().unwrap_or("(unnamed)")
        ));
    }
    if dev.cd_boot_armed() {
        return Some("a CD boot override is set while available".to_owned());
    }
    if let Some(report) = &dev.gpus
        && let Some(g) = report
            .devices()
            .iter()
            .find(|g| !dev.mig_devices(g.index.0).is_empty())
    {
        return Some(format!("{} holds MIG devices while available", g.index));
    }
    if rec.media.is_some() || rec.booted.is_some() || rec.boot_armed || !rec.mig.is_empty() {
        return Some("leftovers of an earlier allocation are recorded".to_owned());
    }
    None
}

/// The next cleaning step.
fn cleaning(want: &ServerWant, rec: &ServerRecord, dev: &Device) -> Step {
    if let Some(report) = &dev.gpus {
        for g in report.devices() {
            let i = g.index.0;
            if let Some(d) = dev.mig_devices(i).first() {
                return Step::DestroyMig {
                    gpu: i,
                    uuid: d.uuid.0.clone(),
                    key: owner(rec, &d.uuid.0),
                };
            }
        }
    }
    if let Some(step) = vanished_claims(rec, dev, |_| true) {
        return step;
    }
    if let Some(report) = &dev.gpus {
        for g in report.devices() {
            let i = g.index.0;
            if let Some(step) = mig_mode_step(rec, dev, i, false) {
                return step;
            }
        }
        for &i in &rec.mig_on {
            if dev.mig_mode(i).is_none() {
                return Step::Note(Note::MigModeFound { gpu: i, on: false });
            }
        }
    }
    if dev.in_transition() {
        return Step::WaitPower;
    }
    if dev.power != PowerState::Off {
        return Step::PowerOff;
    }
    if rec.booted.is_some() || rec.boot_armed {
        return Step::Note(Note::PoweredOffFound);
    }
    if dev.media.inserted {
        return Step::EjectMedia;
    }
    if rec.media.is_some() {
        return Step::Note(Note::MediaGone);
    }
    // (A BMC that ignores `Enabled` reads back `Continuous` even after the clear; the target
    // reading `None` is what counts.)
    if dev.boot.enabled != BootOverrideEnabled::Disabled && dev.boot.target != BootTarget::None {
        return Step::ClearBootOverride;
    }
    dpu_step(want, dev).unwrap_or(Step::MarkAvailable)
}

/// The next step bringing the DPU to what the site asks (BFB bundle first, as installing one
/// restarts the Arm cores, then the mode), if it is not there.
fn dpu_step(want: &ServerWant, dev: &Device) -> Option<Step> {
    let (wanted, seen) = (want.dpu.as_ref()?, dev.dpu.as_ref()?);
    if let Some(bfb) = &wanted.bfb
        && seen.os.as_deref() != Some(bfb.version.as_str())
    {
        return Some(Step::InstallBfb {
            image: bfb.image.clone(),
            version: bfb.version.clone(),
        });
    }
    if seen.mode.current == wanted.mode {
        return None;
    }
    Some(if seen.mode.pending == Some(wanted.mode) {
        Step::ResetDpu
    } else {
        Step::SetDpuMode { mode: wanted.mode }
    })
}

/// Booting what the allocations want, if not done.
fn boot_step(rec: &ServerRecord, dev: &Device, boot: &BootedWith) -> Option<Step> {
    if rec.booted.as_ref() == Some(boot) && dev.power == PowerState::On {
        return None;
    }
    if dev.in_transition() {
        return Some(Step::WaitPower);
    }
    if rec.booted.is_some() {
        return Some(Step::Note(Note::BootLost));
    }
    let with = boot.clone();
    match boot {
        BootedWith::Disk if dev.power == PowerState::Off => Some(Step::PowerOn { with }),
        BootedWith::Disk => Some(Step::Note(Note::BootedFound { with })),
        BootedWith::Image(_) => {
            let armed = dev.cd_boot_armed();
            if armed && !rec.boot_armed {
                return Some(Step::Note(Note::BootArmedFound));
            }
            if armed {
                return Some(if dev.power == PowerState::Off {
                    Step::PowerOn { with }
                } else {
                    Step::Restart { with }
                });
            }
            if rec.boot_armed && dev.power == PowerState::On {
                // The armed boot happened (the override is consumed) but was not recorded.
                return Some(Step::Note(Note::BootedFound { with }));
            }
            Some(Step::ArmBoot)
        }
    }
}

/// The allocation share that owns a MIG device, if any.
fn owner(rec: &ServerRecord, uuid: &str) -> Option<String> {
    rec.mig
        .iter()
        .find(|(_, c)| c.uuid == uuid)
        .map(|(k, _)| k.clone())
}

fn present(dev: &Device, claim: &MigClaim) -> bool {
    dev.mig_devices(claim.gpu)
        .iter()
        .any(|d| d.uuid.0 == claim.uuid)
}

/// A claim (matching `which`) whose device is gone.
fn vanished_claims(rec: &ServerRecord, dev: &Device, which: impl Fn(&str) -> bool) -> Option<Step> {
    rec.mig
        .iter()
        .find(|(k, c)| which(k) && !present(dev, c))
        .map(|(k, _)| Step::Note(Note::MigVanished { key: k.clone() }))
}

/// The step that brings a GPU's MIG mode to `on`, or notes the mode the record lacks.
fn mig_mode_step(rec: &ServerRecord, dev: &Device, gpu: u32, on: bool) -> Option<Step> {
    let (current, pending) = dev.mig_mode(gpu)?;
    if pending != on {
        return Some(Step::SetMigMode { gpu, enabled: on });
    }
    if current != pending {
        return Some(Step::ResetGpu { gpu });
    }
    if rec.mig_on.contains(&gpu) != current {
        return Some(Step::Note(Note::MigModeFound { gpu, on: current }));
    }
    None
}

/// The next GPU step of an allocation.
fn gpu_step(rec: &ServerRecord, dev: &Device, a: &Assessment<'_>) -> Option<Step> {
    dev.gpus.as_ref()?;
    let mut whole: BTreeSet<u32> = BTreeSet::new();
    // (key, workload, gpu, profile) of every wanted MIG slice.
    let mut slices: Vec<(String, &WorkloadId, u32, &'static str)> = Vec::new();
    for alloc in &a.accepted {
        for slot in &alloc.slots {
            match slot {
                GpuSlot::None => {}
                GpuSlot::WholeGpus { indices } => whole.extend(indices.iter().copied()),
                GpuSlot::Mig {
                    gpu_index, profile, ..
                } => slices.push((
                    slot_key(&alloc.workload, slot),
                    &alloc.workload,
                    *gpu_index,
                    profile.name(),
                )),
            }
        }
    }
    let wanted: BTreeSet<&str> = slices.iter().map(|s| s.0.as_str()).collect();
    // Devices of shares no longer in force go first; claims whose device vanished are dropped.
    for (k, c) in &rec.mig {
        if !wanted.contains(k.as_str()) && present(dev, c) {
            return Some(Step::DestroyMig {
                gpu: c.gpu,
                uuid: c.uuid.clone(),
                key: Some(k.clone()),
            });
        }
    }
    if let Some(step) = vanished_claims(rec, dev, |_| true) {
        return Some(step);
    }
    // Whole GPUs: no MIG devices, MIG off.
    for &g in &whole {
        if let Some(d) = dev.mig_devices(g).first() {
            return Some(Step::DestroyMig {
                gpu: g,
                uuid: d.uuid.0.clone(),
                key: owner(rec, &d.uuid.0),
            });
        }
        if let Some(step) = mig_mode_step(rec, dev, g, false) {
            return Some(step);
        }
    }
    // Sliced GPUs: MIG on, one device per slice.
    let sliced: BTreeSet<u32> = slices.iter().map(|s| s.2).collect();
    for &g in &sliced {
        if let Some(step) = mig_mode_step(rec, dev, g, true) {
            return Some(step);
        }
        let claimed: BTreeSet<&str> = rec.mig.values().map(|c| c.uuid.as_str()).collect();
        let unclaimed: Vec<_> = dev
            .mig_devices(g)
            .iter()
            .filter(|d| !claimed.contains(d.uuid.0.as_str()))
            .collect();
        let missing: Vec<_> = slices
            .iter()
            .filter(|s| s.2 == g && !rec.mig.contains_key(&s.0))
            .collect();
        for (key, workload, _, profile) in &missing {
            if let Some(d) = unclaimed.iter().find(|d| mig_profile_of(d) == *profile) {
                return Some(Step::Note(Note::MigAdopted {
                    key: key.clone(),
                    claim: MigClaim {
                        workload: (*workload).clone(),
                        gpu: g,
                        profile: (*profile).to_owned(),
                        uuid: d.uuid.0.clone(),
                    },
                }));
            }
        }
        if let Some(d) = unclaimed.first() {
            return Some(Step::DestroyMig {
                gpu: g,
                uuid: d.uuid.0.clone(),
                key: None,
            });
        }
        if let Some((key, workload, _, profile)) = missing.first() {
            return Some(Step::CreateMig {
                key: key.clone(),
                workload: (*workload).clone(),
                gpu: g,
                profile: (*profile).to_owned(),
            });
        }
    }
    None
}

/// MIG instances of a GPU for the inventory: each device's profile at the first placement
/// where it fits (NVML does not say where an instance starts).
pub fn mig_instances(
    model: meridian_common::model::GpuModel,
    profiles: &[&str],
) -> Vec<MigInstance> {
    let Ok(mut geo) = MigGeometry::new(model) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in profiles {
        let Ok(profile) = meridian_common::model::MigProfile::parse(model, name) else {
            continue;
        };
        if let Some(&placement) = geo.free_placements(profile).first()
            && geo.place(profile, placement).is_ok()
        {
            out.push(MigInstance { profile, placement });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::record::ActionStage;
    use meridian_common::ids::{ServerId, SiteId, TenantId, Timestamp};
    use meridian_common::model::{
        AllocationMode, BmcEndpoint, BmcVendor, Gpu, GpuHealth, GpuModel, MigConfig, MigProfile,
    };
    use meridian_drivers::bmc::{BootOverride, MediaStatus, ResourcePath};
    use meridian_drivers::gpu::{
        GpuDevice, GpuIndex, GpuMemory, GpuReport, GpuUuid, MigDevice, MigState,
    };

    const IMG: &str = "http://img/a.iso";

    fn server() -> ServerId {
        ServerId::parse("srv-1").unwrap()
    }

    fn inventory(gpus: u32) -> Server {
        Server {
            id: server(),
            site: SiteId::parse("edge-1").unwrap(),
            bmc: BmcEndpoint {
                url: "http://bmc".into(),
                vendor: BmcVendor::Generic,
            },
            serial: "s".into(),
            cpu_cores: 8,
            memory_mib: 1024,
            gpus: (0..gpus)
                .map(|index| Gpu {
                    index,
                    model: GpuModel::H100_80GB,
                    memory_mib: 81_920,
                    mig: MigConfig::Disabled,
                    health: GpuHealth::Healthy,
                })
                .collect(),
            dpu: None,
            pool: None,
            state: ServerState::Available,
        }
    }

    fn record(state: ServerState) -> ServerRecord {
        ServerRecord {
            state,
            inventory: Some(inventory(2)),
            ..ServerRecord::default()
        }
    }

    fn alloc(w: &str, slots: Vec<GpuSlot>, image: Option<&str>) -> WantedAllocation {
        WantedAllocation {
            workload: WorkloadId::parse(w).unwrap(),
            tenant: TenantId::parse("acme").unwrap(),
            mode: AllocationMode::BareMetal,
            image: image.map(str::to_owned),
            slots,
            window: None,
        }
    }

    fn want(active: Vec<WantedAllocation>) -> ServerWant {
        ServerWant {
            active,
            generation: Generation::new(1),
            ..ServerWant::idle(server(), Timestamp::from_millis(0))
        }
    }

    fn mig_slot(gpu: u32, profile: &str, placement: u8) -> GpuSlot {
        GpuSlot::Mig {
            gpu_index: gpu,
            profile: MigProfile::parse_any(profile).unwrap(),
            placement,
        }
    }

    /// A device: power, CD boot armed, media image, and per GPU (current, pending, profiles).
    fn device(
        power: PowerState,
        armed: bool,
        media: Option<&str>,
        gpus: &[(bool, bool, &[&str])],
    ) -> Device {
        Device {
            power,
            boot: BootOverride {
                target: if armed {
                    BootTarget::Cd
                } else {
                    BootTarget::None
                },
                enabled: if armed {
                    BootOverrideEnabled::Once
                } else {
                    BootOverrideEnabled::Disabled
                },
                mode: None,
            },
            media: MediaStatus {
                slot: ResourcePath::new("/cd"),
                inserted: media.is_some(),
                image: media.map(str::to_owned),
            },
            gpus: Some(GpuReport::Gpus {
                driver_version: None,
                devices: gpus
                    .iter()
                    .enumerate()
                    .map(|(i, (current, pending, profiles))| GpuDevice {
                        index: GpuIndex(i as u32),
                        uuid: GpuUuid(format!("GPU-{i}")),
                        name: "NVIDIA H100 80GB HBM3".into(),
                        memory: GpuMemory { total: 1, used: 0 },
                        utilisation: None,
                        mig: MigState::Supported {
                            current: *current,
                            pending: *pending,
                            slots: 7,
                            devices: profiles
                                .iter()
                                .enumerate()
                                .map(|(s, p)| MigDevice {
                                    slot: s as u32,
                                    uuid: GpuUuid(format!("MIG-{i}-{s}")),
                                    name: format!("NVIDIA H100 80GB HBM3 MIG {p}"),
                                    memory: None,
                                })
                                .collect(),
                        },
                    })
                    .collect(),
            }),
            dpu: None,
        }
    }

    fn applied(rec: &mut ServerRecord, w: &str) {
        rec.allocations.insert(
            WorkloadId::parse(w).unwrap(),
            super::super::record::AllocRecord {
                tenant: TenantId::parse("acme").unwrap(),
                status: AllocationStatus::Pending,
            },
        );
    }

    #[test]
    fn assessment_rejects_what_the_server_cannot_hold() {
        let w = want(vec![
            alloc(
                "a",
                vec![GpuSlot::WholeGpus { indices: vec![0] }],
                Some(IMG),
            ),
            alloc(
                "b",
                vec![GpuSlot::WholeGpus { indices: vec![5] }],
                Some(IMG),
            ),
            alloc("c", vec![mig_slot(0, "1g.10gb", 0)], Some(IMG)),
            alloc(
                "d",
                vec![mig_slot(1, "1g.10gb", 0)],
                Some("http://img/other.iso"),
            ),
            alloc("e", vec![mig_slot(1, "7g.80gb", 0)], None),
            alloc("f", vec![mig_slot(1, "1g.10gb", 0)], None),
        ]);
        let a = assess(&w, &inventory(2), true);
        let names: Vec<&str> = a.accepted.iter().map(|x| x.workload.as_str()).collect();
        assert_eq!(names, ["a", "e"]);
        let why: Vec<(&str, &str)> = a
            .rejected
            .iter()
            .map(|(x, r)| (x.workload.as_str(), r.as_str()))
            .collect();
        assert!(why[0].0 == "b" && why[0].1.contains("no GPU 5"), "{why:?}");
        assert!(
            why[1].0 == "c" && why[1].1.contains("in use whole"),
            "{why:?}"
        );
        assert!(why[2].0 == "d" && why[2].1.contains("boots"), "{why:?}");
        assert!(why[3].0 == "f" && why[3].1.contains("overlaps"), "{why:?}");
        assert_eq!(a.image, Some(IMG));
        // Without a GPU driver no MIG slice can be made.
        let w = want(vec![alloc("c", vec![mig_slot(0, "1g.10gb", 0)], None)]);
        assert!(
            assess(&w, &inventory(2), false).rejected[0]
                .1
                .contains("no GPU driver")
        );
    }

    #[test]
    fn allocation_steps_act_on_the_difference_and_note_what_a_crash_left_unrecorded() {
        let w = want(vec![alloc(
            "a",
            vec![GpuSlot::WholeGpus { indices: vec![0] }],
            Some(IMG),
        )]);
        let no_mig: &[(bool, bool, &[&str])] = &[(false, false, &[]), (false, false, &[])];
        let mut rec = record(ServerState::Available);
        // First the allocation is reported pending.
        assert!(matches!(
            plan(
                &w,
                &rec,
                Some(&device(PowerState::Off, false, None, no_mig)),
                true
            ),
            Step::Note(Note::Allocation {
                status: AllocationStatus::Pending,
                ..
            })
        ));
        applied(&mut rec, "a");
        let off = device(PowerState::Off, false, None, no_mig);
        assert_eq!(
            plan(&w, &rec, Some(&off), true),
            Step::InsertMedia { image: IMG.into() }
        );
        // Inserted before a crash, not recorded: noted, not inserted again.
        let inserted = device(PowerState::Off, false, Some(IMG), no_mig);
        assert_eq!(
            plan(&w, &rec, Some(&inserted), true),
            Step::Note(Note::MediaFound { image: IMG.into() })
        );
        rec.media = Some(IMG.into());
        assert_eq!(plan(&w, &rec, Some(&inserted), true), Step::ArmBoot);
        let armed = device(PowerState::Off, true, Some(IMG), no_mig);
        assert_eq!(
            plan(&w, &rec, Some(&armed), true),
            Step::Note(Note::BootArmedFound)
        );
        rec.boot_armed = true;
        let with = BootedWith::Image(IMG.into());
        assert_eq!(
            plan(&w, &rec, Some(&armed), true),
            Step::PowerOn { with: with.clone() }
        );
        // Powering on: wait; on with the override consumed: it booted (found, not redone).
        let powering = device(PowerState::PoweringOn, true, Some(IMG), no_mig);
        assert_eq!(plan(&w, &rec, Some(&powering), true), Step::WaitPower);
        let on = device(PowerState::On, false, Some(IMG), no_mig);
        assert_eq!(
            plan(&w, &rec, Some(&on), true),
            Step::Note(Note::BootedFound { with: with.clone() })
        );
        // A server that is on with the boot still armed is restarted, not powered on.
        let on_armed = device(PowerState::On, true, Some(IMG), no_mig);
        assert_eq!(
            plan(&w, &rec, Some(&on_armed), true),
            Step::Restart { with: with.clone() }
        );
        rec.booted = Some(with);
        rec.boot_armed = false;
        // A whole GPU must not be in MIG mode.
        let mig_on: &[(bool, bool, &[&str])] = &[(true, true, &["1g.10gb"]), (false, false, &[])];
        let dev = device(PowerState::On, false, Some(IMG), mig_on);
        assert!(matches!(
            plan(&w, &rec, Some(&dev), true),
            Step::DestroyMig {
                gpu: 0,
                key: None,
                ..
            }
        ));
        let dev = device(
            PowerState::On,
            false,
            Some(IMG),
            &[(true, true, &[]), (false, false, &[])],
        );
        assert_eq!(
            plan(&w, &rec, Some(&dev), true),
            Step::SetMigMode {
                gpu: 0,
                enabled: false
            }
        );
        assert_eq!(plan(&w, &rec, Some(&on), true), Step::MarkAllocated);
        rec.state = ServerState::Allocated;
        rec.allocations
            .get_mut(&WorkloadId::parse("a").unwrap())
            .unwrap()
            .status = AllocationStatus::Applied;
        assert_eq!(plan(&w, &rec, Some(&on), true), Step::Converged);
        // Powered off behind our back: the boot is lost and done again.
        assert_eq!(
            plan(&w, &rec, Some(&inserted), true),
            Step::Note(Note::BootLost)
        );
    }

    #[test]
    fn mig_slices_adopt_an_unowned_device_before_creating_one() {
        let w = want(vec![alloc(
            "a",
            vec![mig_slot(1, "1g.10gb", 0), mig_slot(1, "3g.40gb", 4)],
            None,
        )]);
        let mut rec = record(ServerState::Available);
        applied(&mut rec, "a");
        rec.booted = Some(BootedWith::Disk);
        let dev = |gpu1: (bool, bool, &'static [&'static str])| {
            device(PowerState::On, false, None, &[(false, false, &[]), gpu1])
        };
        assert_eq!(
            plan(&w, &rec, Some(&dev((false, false, &[]))), true),
            Step::SetMigMode {
                gpu: 1,
                enabled: true
            }
        );
        assert_eq!(
            plan(&w, &rec, Some(&dev((false, true, &[]))), true),
            Step::ResetGpu { gpu: 1 }
        );
        assert_eq!(
            plan(&w, &rec, Some(&dev((true, true, &[]))), true),
            Step::Note(Note::MigModeFound { gpu: 1, on: true })
        );
        rec.mig_on.insert(1);
        let key = slot_key(&WorkloadId::parse("a").unwrap(), &mig_slot(1, "1g.10gb", 0));
        assert_eq!(
            plan(&w, &rec, Some(&dev((true, true, &[]))), true),
            Step::CreateMig {
                key: key.clone(),
                workload: WorkloadId::parse("a").unwrap(),
                gpu: 1,
                profile: "1g.10gb".into()
            }
        );
        // A device of the profile nobody owns (created before a crash): adopted.
        match plan(&w, &rec, Some(&dev((true, true, &["1g.10gb"]))), true) {
            Step::Note(Note::MigAdopted { key: k, claim }) => {
                assert_eq!((k, claim.uuid.as_str()), (key.clone(), "MIG-1-0"));
            }
            other => panic!("{other:?}"),
        }
        // One of a profile nobody wants: destroyed.
        assert_eq!(
            plan(&w, &rec, Some(&dev((true, true, &["2g.20gb"]))), true),
            Step::DestroyMig {
                gpu: 1,
                uuid: "MIG-1-0".into(),
                key: None
            }
        );
    }

    #[test]
    fn cleaning_goes_gpus_power_media_override_then_available() {
        let mut rec = record(ServerState::Cleaning);
        rec.booted = Some(BootedWith::Image(IMG.into()));
        rec.media = Some(IMG.into());
        rec.mig_on.insert(0);
        let w = want(vec![]);
        let dev = device(
            PowerState::On,
            false,
            Some(IMG),
            &[(true, true, &["1g.10gb"]), (false, false, &[])],
        );
        assert!(matches!(
            plan(&w, &rec, Some(&dev), true),
            Step::DestroyMig { gpu: 0, .. }
        ));
        let dev = device(
            PowerState::On,
            false,
            Some(IMG),
            &[(true, true, &[]), (false, false, &[])],
        );
        assert_eq!(
            plan(&w, &rec, Some(&dev), true),
            Step::SetMigMode {
                gpu: 0,
                enabled: false
            }
        );
        let dev = device(
            PowerState::On,
            false,
            Some(IMG),
            &[(true, false, &[]), (false, false, &[])],
        );
        assert_eq!(plan(&w, &rec, Some(&dev), true), Step::ResetGpu { gpu: 0 });
        rec.mig_on.clear();
        let on = device(
            PowerState::On,
            false,
            Some(IMG),
            &[(false, false, &[]), (false, false, &[])],
        );
        assert_eq!(plan(&w, &rec, Some(&on), true), Step::PowerOff);
        let off = device(
            PowerState::Off,
            true,
            Some(IMG),
            &[(false, false, &[]), (false, false, &[])],
        );
        assert_eq!(
            plan(&w, &rec, Some(&off), true),
            Step::Note(Note::PoweredOffFound)
        );
        rec.booted = None;
        assert_eq!(plan(&w, &rec, Some(&off), true), Step::EjectMedia);
        let ejected = device(
            PowerState::Off,
            true,
            None,
            &[(false, false, &[]), (false, false, &[])],
        );
        assert_eq!(
            plan(&w, &rec, Some(&ejected), true),
            Step::Note(Note::MediaGone)
        );
        rec.media = None;
        assert_eq!(
            plan(&w, &rec, Some(&ejected), true),
            Step::ClearBootOverride
        );
        let clean = device(
            PowerState::Off,
            false,
            None,
            &[(false, false, &[]), (false, false, &[])],
        );
        assert_eq!(plan(&w, &rec, Some(&clean), true), Step::MarkAvailable);
        rec.state = ServerState::Available;
        assert_eq!(plan(&w, &rec, Some(&clean), true), Step::Converged);
        // An available server found on is cleaned again.
        assert!(matches!(
            plan(&w, &rec, Some(&on), true),
            Step::BeginCleaning { .. }
        ));
    }

    #[test]
    fn a_failed_server_waits_for_a_newer_generation() {
        let mut rec = record(ServerState::Failed { reason: "x".into() });
        rec.failed_generation = Generation::new(1);
        let mut w = want(vec![]);
        assert_eq!(plan(&w, &rec, None, true), Step::Converged);
        w.generation = Generation::new(2);
        assert_eq!(
            plan(&w, &rec, None, true),
            Step::Retry {
                generation: Generation::new(2)
            }
        );
        assert_eq!(
            plan(&w, &ServerRecord::default(), None, true),
            Step::Discover
        );
    }

    #[test]
    fn the_dpu_gets_its_bundle_then_its_mode_before_allocation_and_at_cleaning() {
        use crate::reconcile::desired::{BfbWant, DpuWant};
        use crate::reconcile::device::DpuSeen;
        use meridian_drivers::dpu::DpuModeStatus;
        let bfb = BfbWant {
            image: BfbImage {
                url: "http://img/doca-3.0.bfb".into(),
                credentials: None,
            },
            version: "doca-3.0".into(),
        };
        let with_dpu = |mut w: ServerWant| {
            w.dpu = Some(DpuWant {
                mode: DpuMode::Dpu,
                bfb: Some(bfb.clone()),
            });
            w
        };
        let seen = |os: &str, current: DpuMode, pending: Option<DpuMode>| {
            let mut d = device(PowerState::Off, false, None, &[(false, false, &[])]);
            d.dpu = Some(DpuSeen {
                mode: DpuModeStatus { current, pending },
                os: Some(os.into()),
            });
            d
        };
        let install = Step::InstallBfb {
            image: bfb.image.clone(),
            version: "doca-3.0".into(),
        };
        // Available and idle: bundle first, then mode, then a reset; then nothing.
        let rec = record(ServerState::Available);
        let idle = with_dpu(want(vec![]));
        let old = seen("doca-2.9", DpuMode::Nic, None);
        assert_eq!(plan(&idle, &rec, Some(&old), true), install);
        let nic = seen("doca-3.0", DpuMode::Nic, None);
        assert_eq!(
            plan(&idle, &rec, Some(&nic), true),
            Step::SetDpuMode { mode: DpuMode::Dpu }
        );
        let pending = seen("doca-3.0", DpuMode::Nic, Some(DpuMode::Dpu));
        assert_eq!(plan(&idle, &rec, Some(&pending), true), Step::ResetDpu);
        let good = seen("doca-3.0", DpuMode::Dpu, None);
        assert_eq!(plan(&idle, &rec, Some(&good), true), Step::Converged);
        // No DPU wanted (or none observed): untouched.
        assert_eq!(plan(&want(vec![]), &rec, Some(&old), true), Step::Converged);

        // Allocating: the DPU comes before the image.
        let busy = with_dpu(want(vec![alloc(
            "a",
            vec![GpuSlot::WholeGpus { indices: vec![0] }],
            Some(IMG),
        )]));
        let mut rec = record(ServerState::Available);
        applied(&mut rec, "a");
        rec.allocations
            .get_mut(&WorkloadId::parse("a").unwrap())
            .unwrap()
            .status = AllocationStatus::Pending;
        assert_eq!(plan(&busy, &rec, Some(&old), true), install);
        assert_eq!(
            plan(&busy, &rec, Some(&good), true),
            Step::InsertMedia { image: IMG.into() }
        );
        // Allocated: a drifted DPU is left to the next cleaning (no reset under a tenant).
        rec.state = ServerState::Allocated;
        assert_eq!(
            plan(&busy, &rec, Some(&old), true),
            Step::InsertMedia { image: IMG.into() }
        );

        // Cleaning: the DPU is put right last, before the server is available again.
        let rec = record(ServerState::Cleaning);
        assert_eq!(plan(&idle, &rec, Some(&old), true), install);
        assert_eq!(plan(&idle, &rec, Some(&good), true), Step::MarkAvailable);
    }

    fn with_actions(mut w: ServerWant, actions: &[(u64, ServerActionKind)]) -> ServerWant {
        w.actions = actions
            .iter()
            .map(|(r, k)| crate::reconcile::desired::WantedAction {
                request: RequestId::new(*r),
                kind: k.clone(),
            })
            .collect();
        w
    }

    fn recorded(rec: &mut ServerRecord, r: u64, kind: ServerActionKind, phase: ActionStage) {
        rec.actions.insert(
            RequestId::new(r),
            crate::reconcile::record::ActionRecord {
                kind,
                phase,
                detail: String::new(),
                started_at: Timestamp::from_millis(0),
                was_on: Some(true),
            },
        );
    }

    const REBOOT: ServerActionKind = ServerActionKind::Power(Power::Reboot);

    fn plain(power: PowerState) -> Device {
        device(
            power,
            false,
            None,
            &[(false, false, &[]), (false, false, &[])],
        )
    }

    fn ends(step: &Step) -> Option<(u64, bool, String)> {
        match step {
            Step::EndAction {
                request,
                done,
                detail,
                ..
            } => Some((request.get(), *done, detail.clone())),
            _ => None,
        }
    }

    #[test]
    fn a_power_request_is_begun_issued_awaited_and_done_once() {
        let w = with_actions(want(vec![]), &[(7, REBOOT)]);
        let mut rec = record(ServerState::Available);
        let on = plain(PowerState::On);
        // Begin: recorded (with the power seen) before anything is asked of the device.
        assert_eq!(
            plan(&w, &rec, Some(&on), true),
            Step::BeginAction {
                request: RequestId::new(7),
                kind: REBOOT,
                was_on: Some(true)
            }
        );
        // Never begun during a power transition.
        assert_eq!(
            plan(&w, &rec, Some(&plain(PowerState::PoweringOn)), true),
            Step::WaitPower
        );
        recorded(&mut rec, 7, REBOOT, ActionStage::Started);
        assert_eq!(
            plan(&w, &rec, Some(&on), true),
            Step::IssueAction {
                request: RequestId::new(7),
                kind: REBOOT
            }
        );
        // Issued: the transition is waited out, then the request is done.
        recorded(&mut rec, 7, REBOOT, ActionStage::Issued);
        assert_eq!(
            plan(&w, &rec, Some(&plain(PowerState::PoweringOff)), true),
            Step::WaitPower
        );
        assert_eq!(
            ends(&plan(&w, &rec, Some(&on), true)),
            Some((7, true, "restarted".to_owned()))
        );
        // Issued but the server did not come back on: failed with what it is.
        let (_, done, why) = ends(&plan(&w, &rec, Some(&plain(PowerState::Off)), true)).unwrap();
        assert!(!done && why.contains("server is Off"), "{why}");
        // Done: the re-applied intent (or a newer one still carrying it) does nothing more;
        // the lifecycle has its turn (an available server found on is cleaned).
        recorded(&mut rec, 7, REBOOT, ActionStage::Done);
        assert!(matches!(
            plan(&w, &rec, Some(&on), true),
            Step::BeginCleaning { .. }
        ));
        assert_eq!(
            plan(&w, &rec, Some(&plain(PowerState::Off)), true),
            Step::Converged
        );
    }

    #[test]
    fn an_unconfirmed_request_is_never_issued_again() {
        let w = with_actions(want(vec![]), &[(7, REBOOT)]);
        let mut rec = record(ServerState::Available);
        // The agent stopped after recording `Issuing` (before or after the BMC took it).
        recorded(&mut rec, 7, REBOOT, ActionStage::Issuing);
        // A transition under way proves it was taken: noted, then awaited.
        assert_eq!(
            plan(&w, &rec, Some(&plain(PowerState::PoweringOff)), true),
            Step::Note(Note::ActionUnderWay {
                request: RequestId::new(7)
            })
        );
        // On as before: nothing tells whether it happened; failed, not repeated.
        let step = plan(&w, &rec, Some(&plain(PowerState::On)), true);
        assert_eq!(ends(&step), Some((7, false, NOT_CONFIRMED.to_owned())));
        // A restart of a server that was off, found on: done.
        rec.actions.get_mut(&RequestId::new(7)).unwrap().was_on = Some(false);
        let (_, done, why) = ends(&plan(&w, &rec, Some(&plain(PowerState::On)), true)).unwrap();
        assert!(done && why.contains("not repeated"), "{why}");
        // A power off found off: done; found on: failed.
        let off = ServerActionKind::Power(Power::Off);
        let w = with_actions(want(vec![]), &[(8, off.clone())]);
        let mut rec = record(ServerState::Available);
        recorded(&mut rec, 8, off, ActionStage::Issuing);
        assert!(
            ends(&plan(&w, &rec, Some(&plain(PowerState::Off)), true))
                .unwrap()
                .1
        );
        assert!(
            !ends(&plan(&w, &rec, Some(&plain(PowerState::On)), true))
                .unwrap()
                .1
        );
    }

    #[test]
    fn requests_go_one_at_a_time_in_request_order() {
        let cycle = ServerActionKind::Power(Power::Cycle);
        let w = with_actions(want(vec![]), &[(8, REBOOT), (9, cycle.clone())]);
        let mut rec = record(ServerState::Available);
        let on = plain(PowerState::On);
        assert!(matches!(
            plan(&w, &rec, Some(&on), true),
            Step::BeginAction { request, .. } if request.get() == 8
        ));
        recorded(&mut rec, 8, REBOOT, ActionStage::Started);
        assert!(matches!(
            plan(&w, &rec, Some(&on), true),
            Step::IssueAction { request, .. } if request.get() == 8
        ));
        recorded(&mut rec, 8, REBOOT, ActionStage::Done);
        assert!(matches!(
            plan(&w, &rec, Some(&on), true),
            Step::BeginAction { request, kind, .. } if request.get() == 9 && kind == cycle
        ));
        // An unfinished request is finished even once the intent dropped it...
        recorded(&mut rec, 8, REBOOT, ActionStage::Issued);
        let w2 = with_actions(want(vec![]), &[(9, cycle.clone())]);
        assert_eq!(ends(&plan(&w2, &rec, Some(&on), true)).unwrap().0, 8);
        // ...but one not yet asked of the device is withdrawn.
        recorded(&mut rec, 8, REBOOT, ActionStage::Started);
        let (r, done, why) = ends(&plan(&w2, &rec, Some(&on), true)).unwrap();
        assert!(r == 8 && !done && why.contains("withdrawn"), "{why}");
    }

    #[test]
    fn reprovision_goes_through_cleaning_and_back_to_the_allocations() {
        let clean = ServerActionKind::Clean;
        let w = with_actions(
            want(vec![alloc(
                "a",
                vec![GpuSlot::WholeGpus { indices: vec![0] }],
                Some(IMG),
            )]),
            &[(5, clean.clone())],
        );
        let mut rec = record(ServerState::Allocated);
        applied(&mut rec, "a");
        rec.allocations
            .get_mut(&WorkloadId::parse("a").unwrap())
            .unwrap()
            .status = AllocationStatus::Applied;
        rec.media = Some(IMG.into());
        rec.booted = Some(BootedWith::Image(IMG.into()));
        let no_mig: &[(bool, bool, &[&str])] = &[(false, false, &[]), (false, false, &[])];
        let running = device(PowerState::On, false, Some(IMG), no_mig);
        assert!(matches!(
            plan(&w, &rec, Some(&running), true),
            Step::BeginAction { request, .. } if request.get() == 5
        ));
        recorded(&mut rec, 5, clean.clone(), ActionStage::Started);
        assert_eq!(
            plan(&w, &rec, Some(&running), true),
            Step::IssueAction {
                request: RequestId::new(5),
                kind: clean.clone()
            }
        );
        // Issued (with `-> Cleaning` in the same commit): the cleaning path runs.
        recorded(&mut rec, 5, clean.clone(), ActionStage::Issued);
        rec.state = ServerState::Cleaning;
        assert_eq!(plan(&w, &rec, Some(&running), true), Step::PowerOff);
        // Available again: the allocation is put in place again before the request is done.
        rec.state = ServerState::Available;
        rec.media = None;
        rec.booted = None;
        let clean_dev = device(PowerState::Off, false, None, no_mig);
        assert_eq!(
            plan(&w, &rec, Some(&clean_dev), true),
            Step::InsertMedia { image: IMG.into() }
        );
        // Back where the intent wants it: done.
        rec.state = ServerState::Allocated;
        rec.media = Some(IMG.into());
        rec.booted = Some(BootedWith::Image(IMG.into()));
        let (r, done, why) = ends(&plan(&w, &rec, Some(&running), true)).unwrap();
        assert!(r == 5 && done && why.contains("allocated"), "{why}");
        // With no allocation in force it is done once the server is available.
        let idle = with_actions(want(vec![]), &[(5, clean.clone())]);
        let mut rec = record(ServerState::Available);
        recorded(&mut rec, 5, clean, ActionStage::Issued);
        let (_, done, why) = ends(&plan(&idle, &rec, Some(&clean_dev), true)).unwrap();
        assert!(done && why.contains("available"), "{why}");
    }

    #[test]
    fn provisioning_on_request_is_refused_and_a_failed_server_fails_its_requests() {
        let prov = ServerActionKind::Provision {
            image: "http://img/x.iso".into(),
        };
        let w = with_actions(want(vec![]), &[(3, prov), (4, REBOOT)]);
        let rec = record(ServerState::Available);
        let step = plan(&w, &rec, Some(&plain(PowerState::Off)), true);
        assert_eq!(
            ends(&step),
            Some((3, false, PROVISION_UNSUPPORTED.to_owned()))
        );
        // A failed server: its requests fail with the reason (same generation)...
        let mut rec = record(ServerState::Failed {
            reason: "BMC gone".into(),
        });
        rec.failed_generation = Generation::new(1);
        recorded(&mut rec, 4, REBOOT, ActionStage::Issued);
        let (r, done, why) = ends(&plan(&w, &rec, None, true)).unwrap();
        assert!(r == 4 && !done && why.contains("BMC gone"), "{why}");
        recorded(&mut rec, 4, REBOOT, ActionStage::Failed);
        assert_eq!(ends(&plan(&w, &rec, None, true)).unwrap().0, 3);
        // ...while a newer generation retries the server first.
        let mut newer = w.clone();
        newer.generation = Generation::new(2);
        assert!(matches!(plan(&newer, &rec, None, true), Step::Retry { .. }));
    }
}
