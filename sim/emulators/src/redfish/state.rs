//! The emulated BMC's state and its clock.
//!
//! Everything that takes time (power transitions, media insertion, update tasks, the busy
//! period after a BMC reset, session expiry) is stored as deadlines on the emulator's clock and
//! applied by [`Bmc::settle`] before any request is served or any state is read. The clock is
//! the real monotonic clock plus an offset that [`crate::redfish::RunningBmc::advance`] moves
//! forward, so tests can cross a long delay without sleeping. Only real IO (fetching an image
//! over HTTP) runs in background tasks, which report back into this state.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::Method;
use rand::Rng;
use serde_json::Value;

use super::profile::{
    BmcProfile, BootOverride, BootRecord, DpuMode, Kind, MediaLocation, OverrideEnabled, PowerState,
};

/// Timing and policy of a running emulator (set by [`crate::redfish::BmcEmulator`]).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub user: String,
    pub password: String,
    pub power_delay: Duration,
    pub media_delay: Duration,
    pub update_duration: Duration,
    pub bmc_reset_busy: Duration,
    pub session_timeout: Duration,
    pub session_limit: usize,
    pub require_if_match: bool,
    pub task_retry_after: u64,
    pub fetch_timeout: Duration,
}

/// Where a virtual media device hangs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    System,
    Manager,
}

#[derive(Debug, Clone)]
pub(crate) enum MediaPhase {
    Idle,
    /// Fetching the image; `fetched` is filled in by the fetch task.
    Inserting {
        since: Instant,
        fetched: Option<Result<u64, String>>,
    },
    /// Dell-like: an eject still running; an insert now fails with 500.
    Ejecting {
        until: Instant,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct MediaSlot {
    pub at: Loc,
    pub id: String,
    /// A removable-disk device (`MediaTypes: [USBStick]`) rather than a CD/DVD.
    pub usb: bool,
    pub image: Option<String>,
    pub inserted: bool,
    pub write_protected: bool,
    pub transfer_protocol: Option<String>,
    pub phase: MediaPhase,
    /// Bumped on every insert/eject so a stale fetch result is ignored.
    pub generation: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Firmware {
    pub id: String,
    pub version: String,
    pub updateable: bool,
}

/// `TaskState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Created, not started (the image is being fetched).
    New,
    /// Running.
    Running,
    /// Finished well.
    Completed,
    /// Failed.
    Exception,
}

impl TaskState {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "New",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Exception => "Exception",
        }
    }

    /// Whether the task has finished.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Completed | Self::Exception)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TaskMessage {
    pub key: &'static str,
    pub text: String,
    pub severity: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub id: u32,
    pub name: String,
    pub targets: Vec<String>,
    pub new_version: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub state: TaskState,
    pub percent: u32,
    pub messages: Vec<TaskMessage>,
    /// When the image fetch finished and how.
    pub fetched: Option<(Instant, Result<(), String>)>,
    /// Ends in `Exception` with this message instead of completing.
    pub fail: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub id: String,
    pub token: String,
    pub user: String,
    pub last_used: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub id: String,
    pub user: String,
    pub password: String,
    pub role: String,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Dpu {
    pub mode: DpuMode,
    pub pending: Option<DpuMode>,
    pub arm_reset_since_set: bool,
    pub host_rshim: bool,
    pub bmc_rshim: bool,
    /// The host's rshim driver keeps the device open: `HostRshim.Set` cannot release it.
    pub host_keeps_rshim: bool,
}

/// Which credentials a request carried (whether or not they were valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestAuth {
    /// An `X-Auth-Token` header (a session); it takes precedence over `Authorization`.
    Session,
    /// An `Authorization: Basic ...` header.
    Basic,
}

/// One request the emulator saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Its method.
    pub method: Method,
    /// Its path (no query).
    pub path: String,
    /// The status it was answered with (0 when it was never answered).
    pub status: u16,
    /// The credentials it carried; `None` without any.
    pub auth: Option<RequestAuth>,
    /// Its `If-Match` header.
    pub if_match: Option<String>,
    /// Its body, when that was JSON (`None` for no body or one that does not parse).
    pub body: Option<Value>,
}

#[derive(Debug, Clone)]
struct Step {
    during: PowerState,
    until: Instant,
    reaches: PowerState,
    /// Reaching `Off` in this step is a cold power cycle (not a warm restart's dip).
    cold: bool,
}

/// Roles and their privileges.
pub(crate) const ROLES: [(&str, &[&str]); 3] = [
    (
        "Administrator",
        &[
            "Login",
            "ConfigureManager",
            "ConfigureUsers",
            "ConfigureSelf",
            "ConfigureComponents",
        ],
    ),
    (
        "Operator",
        &["Login", "ConfigureSelf", "ConfigureComponents"],
    ),
    ("ReadOnly", &["Login", "ConfigureSelf"]),
];

pub(crate) fn role_has(role: &str, privilege: &str) -> bool {
    ROLES
        .iter()
        .any(|(r, privs)| *r == role && privs.contains(&privilege))
}

/// The whole emulated BMC.
#[derive(Debug)]
pub(crate) struct Bmc {
    pub cfg: Config,
    pub p: BmcProfile,
    offset: Duration,
    pub service_uuid: String,
    pub system_uuid: String,
    pub power: PowerState,
    steps: VecDeque<Step>,
    pub boot: BootOverride,
    pub boots: Vec<BootRecord>,
    pub media: Vec<MediaSlot>,
    pub firmware: Vec<Firmware>,
    pub tasks: BTreeMap<u32, Task>,
    next_task: u32,
    pub sessions: BTreeMap<String, Session>,
    next_session: u64,
    pub accounts: BTreeMap<String, Account>,
    next_account: u32,
    pub busy_until: Option<Instant>,
    pub busy_why: &'static str,
    pub dpu: Option<Dpu>,
    pub fail_next_update: Option<String>,
    pub asset_tag: String,
    pub log: Vec<LoggedRequest>,
    /// How many of the next System PATCHes another client races (see
    /// [`crate::redfish::RunningBmc::race_system_patches`]).
    pub raced_patches: u32,
    /// How many writes those races made (each leaves a different `AssetTag`).
    pub foreign_writes: u64,
}

pub(crate) fn new_uuid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h =
        |r: std::ops::Range<usize>| -> String { b[r].iter().map(|x| format!("{x:02x}")).collect() };
    // Version 4, variant 1.
    let v = format!("4{}", &h(6..8)[1..]);
    let var = format!("{:x}{}", 8 | (b[8] & 0x3), &h(8..10)[1..]);
    format!("{}-{}-{}-{}-{}", h(0..4), h(4..6), v, var, h(10..16))
}

impl Bmc {
    pub fn new(p: BmcProfile, cfg: Config) -> Self {
        let mut media = Vec::new();
        let cd = |at| MediaSlot {
            at,
            id: p.media_id.clone(),
            usb: false,
            image: None,
            inserted: false,
            write_protected: true,
            transfer_protocol: None,
            phase: MediaPhase::Idle,
            generation: 0,
            last_error: None,
        };
        let locations: &[Loc] = match p.media {
            MediaLocation::None => &[],
            MediaLocation::System => &[Loc::System],
            MediaLocation::Manager => &[Loc::Manager],
            MediaLocation::Both => &[Loc::System, Loc::Manager],
        };
        for &at in locations {
            // The removable-disk device is listed before the CD, as HPE iLO lists
            // `VirtualMedia/1` (Floppy/USBStick) before `VirtualMedia/2` (CD/DVD).
            if let Some(id) = &p.usb_media_id {
                media.push(MediaSlot {
                    id: id.clone(),
                    usb: true,
                    ..cd(at)
                });
            }
            media.push(cd(at));
        }
        let firmware = p
            .firmware
            .iter()
            .map(|f| Firmware {
                id: f.id.clone(),
                version: f.version.clone(),
                updateable: f.updateable,
            })
            .collect();
        let mut accounts = BTreeMap::new();
        accounts.insert(
            "1".to_owned(),
            Account {
                id: "1".into(),
                user: cfg.user.clone(),
                password: cfg.password.clone(),
                role: "Administrator".into(),
                enabled: true,
            },
        );
        let dpu = (p.kind == Kind::Bluefield3).then_some(Dpu {
            mode: p.initial_dpu_mode,
            pending: None,
            arm_reset_since_set: false,
            host_rshim: true,
            bmc_rshim: false,
            host_keeps_rshim: p.host_keeps_rshim,
        });
        Self {
            power: p.initial_power,
            boot: BootOverride {
                target: "None".into(),
                enabled: OverrideEnabled::Disabled,
                mode: "UEFI".into(),
            },
            cfg,
            offset: Duration::ZERO,
            service_uuid: new_uuid(),
            system_uuid: new_uuid(),
            steps: VecDeque::new(),
            boots: Vec::new(),
            media,
            firmware,
            tasks: BTreeMap::new(),
            next_task: 1,
            sessions: BTreeMap::new(),
            next_session: 1,
            accounts,
            next_account: 2,
            busy_until: None,
            busy_why: "",
            dpu,
            fail_next_update: None,
            asset_tag: String::new(),
            log: Vec::new(),
            raced_patches: 0,
            foreign_writes: 0,
            p,
        }
    }

    /// The emulator's clock.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    /// Wall-clock time on the emulator's clock, as Redfish `DateTime`.
    pub fn wall_clock(&self) -> String {
        let t = SystemTime::now() + self.offset;
        rfc3339(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub fn advance(&mut self, by: Duration) {
        self.offset += by;
    }

    /// Applies every deadline that has passed.
    pub fn settle(&mut self) {
        let now = self.now();
        while let Some(step) = self.steps.front().cloned() {
            if now < step.until {
                self.power = step.during;
                break;
            }
            self.steps.pop_front();
            self.power = step.reaches;
            self.reached(step);
        }
        let delay = self.cfg.media_delay;
        for slot in &mut self.media {
            match &slot.phase {
                MediaPhase::Inserting {
                    since,
                    fetched: Some(Ok(_)),
                } if now >= *since + delay => {
                    slot.inserted = true;
                    slot.phase = MediaPhase::Idle;
                }
                MediaPhase::Inserting {
                    fetched: Some(Err(e)),
                    ..
                } => {
                    slot.last_error = Some(e.clone());
                    slot.image = None;
                    slot.inserted = false;
                    slot.phase = MediaPhase::Idle;
                }
                MediaPhase::Ejecting { until } if now >= *until => slot.phase = MediaPhase::Idle,
                _ => {}
            }
        }
        self.settle_tasks(now);
        if self.busy_until.is_some_and(|t| now >= t) {
            self.busy_until = None;
        }
        let timeout = self.cfg.session_timeout;
        self.sessions
            .retain(|_, s| now.duration_since(s.last_used) < timeout);
    }

    fn reached(&mut self, step: Step) {
        match step.reaches {
            PowerState::On => self.booted(),
            PowerState::Off if step.cold => {
                if let Some(d) = self.dpu.as_mut()
                    && d.arm_reset_since_set
                    && let Some(m) = d.pending.take()
                {
                    d.mode = m;
                    d.arm_reset_since_set = false;
                }
            }
            _ => {}
        }
    }

    fn booted(&mut self) {
        let overridden = self.boot.enabled != OverrideEnabled::Disabled;
        let source = if overridden {
            self.boot.target.clone()
        } else {
            "Hdd".to_owned()
        };
        // A CD boot reads a CD device; a USB boot prefers a removable disk, else any device.
        let inserted = |usb: Option<bool>| {
            self.media
                .iter()
                .find(|m| m.inserted && usb.is_none_or(|u| m.usb == u))
                .and_then(|m| m.image.clone())
        };
        let image = match source.as_str() {
            "Cd" => inserted(Some(false)),
            "Usb" => inserted(Some(true)).or_else(|| inserted(None)),
            _ => None,
        };
        if self.boot.enabled == OverrideEnabled::Once {
            self.boot.enabled = OverrideEnabled::Disabled;
        }
        self.boots.push(BootRecord {
            source,
            overridden,
            image,
        });
    }

    /// Starts a power transition through the given states, replacing any under way.
    pub fn transition(&mut self, path: &[(PowerState, PowerState, bool)]) {
        let mut at = self.now();
        self.steps.clear();
        for &(during, reaches, cold) in path {
            at += self.cfg.power_delay;
            self.steps.push_back(Step {
                during,
                until: at,
                reaches,
                cold,
            });
        }
        self.settle();
    }

    fn settle_tasks(&mut self, now: Instant) {
        let duration = self.cfg.update_duration;
        let mut completed = Vec::new();
        let wall = self.wall_clock();
        for t in self.tasks.values_mut() {
            if t.state.is_done() {
                continue;
            }
            match &t.fetched {
                None => {}
                Some((_, Err(e))) => {
                    let e = e.clone();
                    t.state = TaskState::Exception;
                    t.percent = 0;
                    t.end_time = Some(wall.clone());
                    t.messages.push(TaskMessage {
                        key: "TaskAborted",
                        text: format!("The task with Id '{}' has been aborted: {e}", t.id),
                        severity: "Critical",
                    });
                }
                Some((started, Ok(()))) => {
                    let started = *started;
                    if t.state == TaskState::New {
                        t.state = TaskState::Running;
                        t.messages.push(TaskMessage {
                            key: "TaskStarted",
                            text: format!("The task with Id '{}' has started.", t.id),
                            severity: "OK",
                        });
                    }
                    let elapsed = now.saturating_duration_since(started);
                    if elapsed >= duration {
                        t.end_time = Some(wall.clone());
                        if let Some(why) = t.fail.take() {
                            t.state = TaskState::Exception;
                            t.messages.push(TaskMessage {
                                key: "TaskAborted",
                                text: format!(
                                    "The task with Id '{}' has been aborted: {why}",
                                    t.id
                                ),
                                severity: "Critical",
                            });
                        } else {
                            t.state = TaskState::Completed;
                            t.percent = 100;
                            t.messages.push(TaskMessage {
                                key: "TaskCompletedOK",
                                text: format!("The task with Id '{}' has completed.", t.id),
                                severity: "OK",
                            });
                            completed.push((t.targets.clone(), t.new_version.clone()));
                        }
                    } else {
                        let pct = elapsed.as_millis() * 100 / duration.as_millis().max(1);
                        t.percent = u32::try_from(pct.min(99)).unwrap_or(99);
                    }
                }
            }
        }
        for (targets, version) in completed {
            let mut bmc_reset = false;
            for id in &targets {
                if let Some(f) = self.firmware.iter_mut().find(|f| &f.id == id) {
                    f.version = version.clone();
                }
                bmc_reset |= id == "BMC" || id == "BMC_Firmware";
            }
            if bmc_reset {
                // New BMC firmware is activated by a BMC reboot: busy, sessions gone.
                self.bmc_reset();
            }
        }
    }

    /// The BMC reboots: busy for the configured time; sessions are lost.
    pub fn bmc_reset(&mut self) {
        self.busy_until = Some(self.now() + self.cfg.bmc_reset_busy);
        self.busy_why = "the BMC is restarting";
        self.sessions.clear();
    }

    /// Seconds of busy left, if busy.
    pub fn busy_left(&self) -> Option<u64> {
        let until = self.busy_until?;
        let left = until.saturating_duration_since(self.now());
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    /// The update task still running, if any.
    pub fn running_update(&self) -> Option<&Task> {
        self.tasks.values().find(|t| !t.state.is_done())
    }

    pub fn add_task(&mut self, name: String, targets: Vec<String>, new_version: String) -> u32 {
        let id = self.next_task;
        self.next_task += 1;
        let fail = self.fail_next_update.take();
        let start_time = self.wall_clock();
        self.tasks.insert(
            id,
            Task {
                id,
                name,
                targets,
                new_version,
                start_time,
                end_time: None,
                state: TaskState::New,
                percent: 0,
                messages: Vec::new(),
                fetched: None,
                fail,
            },
        );
        id
    }

    pub fn add_session(&mut self, user: &str) -> Option<Session> {
        if self.sessions.len() >= self.cfg.session_limit {
            return None;
        }
        let id = format!("{}", self.next_session);
        self.next_session += 1;
        let token: String = {
            let b: [u8; 24] = rand::rng().random();
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        let s = Session {
            id: id.clone(),
            token,
            user: user.to_owned(),
            last_used: self.now(),
        };
        self.sessions.insert(id, s.clone());
        Some(s)
    }

    pub fn add_account(&mut self, user: String, password: String, role: String) -> String {
        let id = self.next_account.to_string();
        self.next_account += 1;
        self.accounts.insert(
            id.clone(),
            Account {
                id: id.clone(),
                user,
                password,
                role,
                enabled: true,
            },
        );
        id
    }

    /// The account with these credentials, if enabled.
    pub fn check_password(&self, user: &str, password: &str) -> Option<&Account> {
        self.accounts
            .values()
            .find(|a| a.enabled && a.user == user && a.password == password)
    }

    pub fn account_by_user(&self, user: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.user == user)
    }

    pub fn media_slot(&self, at: Loc, id: &str) -> Option<usize> {
        self.media.iter().position(|m| m.at == at && m.id == id)
    }
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` for seconds since the Unix epoch (civil-from-days).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40+00:00");
    }

    #[test]
    fn uuids_are_canonical_v4() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}
