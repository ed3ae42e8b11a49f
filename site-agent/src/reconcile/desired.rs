//! What the intent asks of one server at one instant: pure functions of the intent and the
//! time, no IO.
//!
//! An allocation with no window is wanted from now on until the intent drops it; one with a
//! window `[start, end)` is *upcoming* before `start`, *active* inside, *ended* from `end` on.
//! The earliest boundary after now is where the server's worker must look again
//! ([`ServerWant::next_change`]), so windows open and close on time without a new intent.

use std::collections::BTreeMap;

use meridian_common::ids::{
    Generation, RequestId, ServerId, TenantId, TimeWindow, Timestamp, WorkloadId,
};
use meridian_common::model::{Allocation, AllocationMode, GpuSlot, ServerActionKind, SiteIntent};

use meridian_drivers::dpu::{BfbImage, DpuMode};

/// One workload's share of one server (all its slots there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedAllocation {
    pub workload: WorkloadId,
    pub tenant: TenantId,
    pub mode: AllocationMode,
    /// The image the server boots for it (virtual media), if any.
    pub image: Option<String>,
    /// Its GPU shares on this server, in intent order.
    pub slots: Vec<GpuSlot>,
    pub window: Option<TimeWindow>,
}

/// An operator's request on this server, carried in the intent until the agent reports it
/// final (done or failed); the agent carries out each request at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedAction {
    pub request: RequestId,
    pub kind: ServerActionKind,
}

/// What the site asks of a server's DPU (agent configuration, not the intent): the mode it
/// runs in and, optionally, the BFB bundle its Arm cores run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpuWant {
    pub mode: DpuMode,
    pub bfb: Option<BfbWant>,
}

/// A BFB bundle and the `DPU_OS` version it installs (what the DPU's BMC reports once it
/// runs; a DPU already reporting it is left alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfbWant {
    pub image: BfbImage,
    pub version: String,
}

/// What the intent (and, for the DPU, the site's configuration) asks of one server now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerWant {
    pub server: ServerId,
    /// The intent's generation (0: no intent held yet).
    pub generation: Generation,
    /// The instant it was computed for.
    pub now: Timestamp,
    /// Allocations in force now, by workload.
    pub active: Vec<WantedAllocation>,
    /// Allocations whose window has not opened yet.
    pub upcoming: Vec<WantedAllocation>,
    /// Allocations still in the intent whose window has closed.
    pub ended: Vec<WantedAllocation>,
    /// The next window start or end after `now`, if any.
    pub next_change: Option<Timestamp>,
    /// What the server's DPU must run (`None`: no DPU managed).
    pub dpu: Option<DpuWant>,
    /// The operator's requests on this server, lowest request number first.
    pub actions: Vec<WantedAction>,
}

impl ServerWant {
    /// Nothing wanted (no intent yet).
    pub fn idle(server: ServerId, now: Timestamp) -> Self {
        ServerWant {
            server,
            generation: Generation::new(0),
            now,
            active: Vec::new(),
            upcoming: Vec::new(),
            ended: Vec::new(),
            next_change: None,
            dpu: None,
            actions: Vec::new(),
        }
    }

    /// Whether the intent still carries `request` for this server.
    pub fn wants_action(&self, request: RequestId) -> bool {
        self.actions.iter().any(|a| a.request == request)
    }

    /// Whether the workload appears in the intent for this server at all.
    pub fn mentions(&self, workload: &WorkloadId) -> bool {
        self.active
            .iter()
            .chain(&self.upcoming)
            .chain(&self.ended)
            .any(|a| &a.workload == workload)
    }
}

/// What `intent` asks of `server` at `now`.
pub fn server_want(intent: Option<&SiteIntent>, server: &ServerId, now: Timestamp) -> ServerWant {
    let mut want = ServerWant::idle(server.clone(), now);
    let Some(intent) = intent else {
        return want;
    };
    want.generation = intent.generation;
    want.actions = intent
        .server_actions
        .iter()
        .filter(|a| &a.server == server)
        .map(|a| WantedAction {
            request: a.request,
            kind: a.action.clone(),
        })
        .collect();
    want.actions.sort_by_key(|a| a.request);
    want.actions.dedup_by_key(|a| a.request);
    let mut grouped: BTreeMap<WorkloadId, WantedAllocation> = BTreeMap::new();
    for a in intent.allocations.iter().filter(|a| &a.server == server) {
        let entry = grouped
            .entry(a.workload.clone())
            .or_insert_with(|| WantedAllocation {
                workload: a.workload.clone(),
                tenant: a.tenant.clone(),
                mode: a.mode,
                image: a.image.clone(),
                slots: Vec::new(),
                window: a.window,
            });
        if !matches!(a.slot, GpuSlot::None) {
            entry.slots.push(a.slot.clone());
        }
        if entry.image.is_none() {
            entry.image = a.image.clone();
        }
    }
    for (_, w) in grouped {
        match w.window {
            Some(win) if now < win.start() => {
                want.next_change = earliest(want.next_change, win.start());
                want.upcoming.push(w);
            }
            Some(win) if now >= win.end() => want.ended.push(w),
            Some(win) => {
                want.next_change = earliest(want.next_change, win.end());
                want.active.push(w);
            }
            None => want.active.push(w),
        }
    }
    want
}

pub use meridian_common::ids::window_state;

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Allocations naming a server this agent does not manage.
pub fn unmanaged<'a>(
    intent: &'a SiteIntent,
    managed: &dyn Fn(&ServerId) -> bool,
) -> Vec<&'a Allocation> {
    intent
        .allocations
        .iter()
        .filter(|a| !managed(&a.server))
        .collect()
}

/// A stable key for one GPU share of one workload (the progress record's key for a MIG
/// device it owns).
pub fn slot_key(workload: &WorkloadId, slot: &GpuSlot) -> String {
    match slot {
        GpuSlot::None => format!("{workload}/none"),
        GpuSlot::WholeGpus { indices } => {
            let list: Vec<String> = indices.iter().map(u32::to_string).collect();
            format!("{workload}/gpus:{}", list.join(","))
        }
        GpuSlot::Mig {
            gpu_index,
            profile,
            placement,
        } => format!("{workload}/mig:{gpu_index}:{profile}@{placement}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::SiteId;
    use meridian_common::model::MigProfile;

    fn alloc(w: &str, server: &str, slot: GpuSlot, window: Option<(i64, i64)>) -> Allocation {
        Allocation {
            address: None,
            workload: WorkloadId::parse(w).unwrap(),
            tenant: TenantId::parse("acme").unwrap(),
            server: ServerId::parse(server).unwrap(),
            slot,
            mode: AllocationMode::BareMetal,
            image: Some("http://img/a.iso".into()),
            window: window.map(|(s, e)| {
                TimeWindow::new(Timestamp::from_millis(s), Timestamp::from_millis(e)).unwrap()
            }),
        }
    }

    fn intent(allocations: Vec<Allocation>) -> SiteIntent {
        SiteIntent {
            allocations,
            ..SiteIntent::empty(SiteId::parse("edge-1").unwrap(), Generation::new(4))
        }
    }

    #[test]
    fn windows_split_allocations_and_give_the_next_boundary() {
        let srv = ServerId::parse("srv-1").unwrap();
        let mig = |p: u8| GpuSlot::Mig {
            gpu_index: 1,
            profile: MigProfile::parse_any("1g.10gb").unwrap(),
            placement: p,
        };
        let i = intent(vec![
            alloc(
                "always",
                "srv-1",
                GpuSlot::WholeGpus { indices: vec![0] },
                None,
            ),
            alloc("later", "srv-1", mig(0), Some((2_000, 3_000))),
            alloc("now", "srv-1", mig(1), Some((500, 1_500))),
            alloc("now", "srv-1", mig(2), Some((500, 1_500))),
            alloc("past", "srv-1", mig(3), Some((100, 400))),
            alloc("elsewhere", "srv-2", mig(4), None),
        ]);
        let w = server_want(Some(&i), &srv, Timestamp::from_millis(1_000));
        let names = |v: &[WantedAllocation]| -> Vec<String> {
            v.iter().map(|a| a.workload.to_string()).collect()
        };
        assert_eq!(names(&w.active), ["always", "now"]);
        assert_eq!(w.active[1].slots.len(), 2);
        assert_eq!(names(&w.upcoming), ["later"]);
        assert_eq!(names(&w.ended), ["past"]);
        assert_eq!(w.next_change, Some(Timestamp::from_millis(1_500)));
        // At the end instant the window is closed (windows are half-open).
        let w = server_want(Some(&i), &srv, Timestamp::from_millis(1_500));
        assert_eq!(names(&w.active), ["always"]);
        assert_eq!(names(&w.ended), ["now", "past"]);
        assert_eq!(w.next_change, Some(Timestamp::from_millis(2_000)));
        assert!(w.mentions(&WorkloadId::parse("later").unwrap()));
        assert!(!w.mentions(&WorkloadId::parse("elsewhere").unwrap()));
        let managed = |s: &ServerId| s.as_str() == "srv-1";
        assert_eq!(unmanaged(&i, &managed).len(), 1);
        assert_eq!(
            slot_key(&WorkloadId::parse("now").unwrap(), &mig(2)),
            "now/mig:1:1g.10gb@2"
        );
    }
}
