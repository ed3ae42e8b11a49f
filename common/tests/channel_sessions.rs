//! The agent channel's two session machines connected through an in-memory wire on a fake
//! clock: no sockets, no runtime. The wire delivers messages after a latency; it can be cut
//! (both ends see the connection end and whatever was in flight is lost), hold one direction
//! (a one-way partition: like QUIC, it delivers late if the connection survives, and the
//! agent's silence timeout has to notice), drop selected messages on their way to the agent
//! (a connection dying between central's write and the agent's read) and swap two messages
//! in flight. The stores are plain maps standing in for the agent's journal and central's
//! store, answering the machines' requests at once as the real IO layers do.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use meridian_common::channel::backoff::Backoff;
use meridian_common::channel::session::Millis;
use meridian_common::channel::session::agent::{
    AgentAction, AgentClose, AgentEvent, AgentSession, AgentSessionConfig, Failure, PersistOutcome,
    Snapshot,
};
use meridian_common::channel::session::central::{
    CentralAction, CentralEvent, CentralSession, CentralSessionConfig,
};
use meridian_common::channel::session::{Acked, Outcome};
use meridian_common::ids::{Generation, Sequence, SiteId, Timestamp};
use meridian_common::model::{ReportBody, Severity, SiteIntent, SiteReport};
use meridian_proto::v1 as proto;
use proto::agent_message::Kind as AgentKind;
use proto::central_message::Kind as CentralKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SITE: &str = "site-a";

fn site() -> SiteId {
    SiteId::parse(SITE).unwrap()
}

fn g(n: u64) -> Generation {
    Generation::new(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The agent's journal.
#[derive(Debug, Default)]
struct Journal {
    held: Option<SiteIntent>,
    applied: Generation,
    reports: BTreeMap<u64, proto::SiteReport>,
    acked: Sequence,
    next_seq: u64,
    dropped: u64,
    /// Writes of an intent (fenced ones are not writes).
    intent_writes: Vec<u64>,
}

impl Journal {
    fn held(&self) -> Generation {
        self.held.as_ref().map_or(g(0), |i| i.generation)
    }

    fn store_intent(&mut self, intent: &SiteIntent) -> PersistOutcome {
        let held = self.held();
        if intent.generation < held {
            return PersistOutcome::Stale { held };
        }
        if intent.generation == held {
            return PersistOutcome::AlreadyHeld;
        }
        self.intent_writes.push(intent.generation.get());
        self.held = Some(intent.clone());
        PersistOutcome::Stored
    }

    fn append(&mut self) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        let report = SiteReport {
            site: site(),
            sequence: Sequence::new(seq),
            generation: self.applied,
            at: Timestamp::from_millis(seq as i64),
            body: ReportBody::Event {
                severity: Severity::Info,
                resource: "server/s1".into(),
                message: format!("event {seq}"),
            },
        };
        self.reports.insert(seq, report.into());
        seq
    }

    fn trim(&mut self, ack: Sequence) {
        self.acked = self.acked.max(ack);
        let keep = self.reports.split_off(&(self.acked.get() + 1));
        self.reports = keep;
    }
}

/// Central's store.
#[derive(Debug, Default)]
struct Store {
    intent: Option<SiteIntent>,
    high_water: Sequence,
    acked: Acked,
    failed_reason: String,
    /// How many times each report sequence was written.
    writes: BTreeMap<u64, usize>,
    slot_held: bool,
}

/// A message in flight, due at a time.
type Queue<M> = VecDeque<(Millis, M)>;

/// Which messages on their way to the agent vanish (the connection dies under them).
type Filter = Box<dyn FnMut(&CentralKind) -> bool>;

#[derive(Default)]
struct Wire {
    up: bool,
    latency: Duration,
    to_central: Queue<AgentKind>,
    to_agent: Queue<CentralKind>,
    /// One-way partitions: messages that way wait until the partition heals (or the
    /// connection is cut).
    hold_to_agent: bool,
    hold_to_central: bool,
    drop_to_agent: Option<Filter>,
}

impl Wire {
    fn next_due(&self) -> Option<Millis> {
        let a = self.deliverable_to_central(Millis(u64::MAX));
        let b = self.deliverable_to_agent(Millis(u64::MAX));
        a.into_iter().chain(b).min()
    }

    fn deliverable_to_central(&self, now: Millis) -> Option<Millis> {
        let (t, _) = self.to_central.front()?;
        (!self.hold_to_central && *t <= now).then_some(*t)
    }

    fn deliverable_to_agent(&self, now: Millis) -> Option<Millis> {
        let (t, _) = self.to_agent.front()?;
        (!self.hold_to_agent && *t <= now).then_some(*t)
    }

    /// Swaps the two oldest messages in flight to the agent (both stay on this connection).
    fn swap_to_agent(&mut self) {
        if self.to_agent.len() >= 2 {
            let (t0, m0) = self.to_agent.pop_front().unwrap();
            let (t1, m1) = self.to_agent.pop_front().unwrap();
            self.to_agent.push_front((t1, m0));
            self.to_agent.push_front((t0, m1));
        }
    }
}

/// What happened, for the assertions.
#[derive(Debug, Default)]
struct Log {
    connects: Vec<(Millis, usize, u32)>,
    sessions: usize,
    /// Generations of the pushes central sent, and of those the agent received.
    pushed: Vec<u64>,
    received_pushes: Vec<u64>,
    /// Acknowledgements the agent sent: (generation, status).
    intent_acks: Vec<(u64, proto::IntentAckStatus)>,
    refused: Vec<(u64, u64)>,
    /// Generations the agent asked its journal to persist.
    persists: Vec<u64>,
    /// Report sequences central received (with replays).
    reports_received: Vec<u64>,
    heartbeats_sent: usize,
    closes: Vec<(Millis, AgentClose)>,
}

struct World {
    now: Millis,
    agent: AgentSession<StdRng>,
    agent_timer: Option<Millis>,
    journal: Journal,
    central: Option<CentralSession>,
    central_timer: Option<Millis>,
    store: Store,
    wire: Wire,
    /// Whether a connection attempt succeeds, and how it fails if not.
    reachable: bool,
    refuse: bool,
    /// The reconciler runs in the background (handing over does not apply).
    background: bool,
    log: Log,
}

fn agent_config() -> AgentSessionConfig {
    AgentSessionConfig {
        heartbeat: ms(1000),
        backoff_initial: ms(100),
        backoff_max: ms(1000),
        report_batch_max: 2,
        background_reconciler: false,
        agent_version: "test".into(),
    }
}

impl World {
    fn new(seed: u64) -> World {
        World::with(agent_config(), seed)
    }

    fn with(config: AgentSessionConfig, seed: u64) -> World {
        World {
            background: config.background_reconciler,
            now: Millis(0),
            agent: AgentSession::new(config, StdRng::seed_from_u64(seed)),
            agent_timer: None,
            journal: Journal::default(),
            central: None,
            central_timer: None,
            store: Store::default(),
            wire: Wire {
                latency: ms(5),
                ..Wire::default()
            },
            reachable: true,
            refuse: false,
            log: Log::default(),
        }
    }

    fn start(&mut self) {
        self.agent.handle(self.now, AgentEvent::Start);
        self.settle();
    }

    /// Central writes a new intent generation; a live session is woken.
    fn publish(&mut self, generation: u64) {
        self.store.intent = Some(SiteIntent::empty(site(), g(generation)));
        if let Some(c) = self.central.as_mut() {
            c.handle(self.now, CentralEvent::IntentChanged);
        }
        self.settle();
    }

    /// Central replays an old push on the live session (the test hook of R4).
    fn inject(&mut self, generation: u64) {
        let push = proto::IntentPush {
            generation,
            intent: Some(SiteIntent::empty(site(), g(generation)).into()),
        };
        self.central
            .as_mut()
            .expect("a live session")
            .handle(self.now, CentralEvent::Inject(push));
        self.settle();
    }

    /// The agent appends a report to its buffer.
    fn report(&mut self) -> u64 {
        let seq = self.journal.append();
        self.agent.handle(self.now, AgentEvent::ReportsReady);
        self.settle();
        seq
    }

    /// Cuts the connection: both ends learn it at once; everything in flight is lost.
    fn cut(&mut self) {
        if !self.wire.up {
            return;
        }
        self.wire.up = false;
        self.wire.to_central.clear();
        self.wire.to_agent.clear();
        self.store.slot_held = false;
        if let Some(mut c) = self.central.take() {
            c.handle(self.now, CentralEvent::StreamEnded);
        }
        self.central_timer = None;
        self.agent.handle(self.now, AgentEvent::SessionLost);
    }

    fn settle(&mut self) {
        loop {
            let mut busy = false;
            while let Some(a) = self.agent.poll_action() {
                busy = true;
                self.agent_action(a);
            }
            while let Some(a) = self.central.as_mut().and_then(|c| c.poll_action()) {
                busy = true;
                self.central_action(a);
            }
            if !busy {
                return;
            }
        }
    }

    fn send_to_central(&mut self, kind: AgentKind) {
        if self.wire.up {
            let at = self.now.after(self.wire.latency);
            self.wire.to_central.push_back((at, kind));
        }
    }

    fn send_to_agent(&mut self, kind: CentralKind) {
        if let CentralKind::IntentPush(p) = &kind {
            self.log.pushed.push(p.generation);
        }
        if !self.wire.up {
            return;
        }
        if let Some(f) = self.wire.drop_to_agent.as_mut()
            && f(&kind)
        {
            return;
        }
        let at = self.now.after(self.wire.latency);
        self.wire.to_agent.push_back((at, kind));
    }

    fn agent_action(&mut self, action: AgentAction) {
        let now = self.now;
        match action {
            AgentAction::Connect { address, patience } => {
                self.log.connects.push((now, address, patience));
                if self.refuse {
                    self.agent
                        .handle(now, AgentEvent::AttemptFailed(Failure::Refused));
                } else if !self.reachable {
                    self.agent
                        .handle(now, AgentEvent::AttemptFailed(Failure::Unreachable));
                } else {
                    self.wire.up = true;
                    self.central = Some(CentralSession::new(
                        site(),
                        CentralSessionConfig {
                            push_ack_timeout: ms(2000),
                        },
                    ));
                    self.central_timer = None;
                    let snapshot = Snapshot {
                        site: site(),
                        held: self.journal.held(),
                        applied: self.journal.applied,
                        acked: self.journal.acked,
                    };
                    self.agent.handle(now, AgentEvent::Connected(snapshot));
                }
            }
            AgentAction::Established => self.log.sessions += 1,
            AgentAction::Send(kind) => {
                if let AgentKind::IntentAck(a) = &kind {
                    self.log.intent_acks.push((
                        a.generation,
                        proto::IntentAckStatus::try_from(a.status).unwrap(),
                    ));
                }
                self.send_to_central(kind);
            }
            AgentAction::Heartbeat => {
                self.log.heartbeats_sent += 1;
                self.send_to_central(AgentKind::Heartbeat(proto::Heartbeat {
                    sent_at: now.0 as i64,
                }));
            }
            AgentAction::Persist(intent) => {
                self.log.persists.push(intent.generation.get());
                let outcome = self.journal.store_intent(&intent);
                let applied = self.journal.applied;
                self.agent
                    .handle(now, AgentEvent::Persisted { outcome, applied });
            }
            AgentAction::Refused { generation, held } => {
                self.log.refused.push((generation.get(), held.get()));
            }
            AgentAction::Hand(intent) => {
                // A synchronous reconciler that always succeeds applies at once.
                if !self.background {
                    self.journal.applied = self.journal.applied.max(intent.generation);
                }
                self.agent.handle(
                    now,
                    AgentEvent::Handed {
                        result: Ok(()),
                        latest: None,
                    },
                );
            }
            AgentAction::LoadReports { after, limit } => {
                let reports: Vec<proto::SiteReport> = self
                    .journal
                    .reports
                    .range(after.get() + 1..)
                    .take(limit)
                    .map(|(_, r)| r.clone())
                    .collect();
                let dropped = self.journal.dropped;
                self.agent
                    .handle(now, AgentEvent::ReportsLoaded { reports, dropped });
            }
            AgentAction::Trim(hw) => self.journal.trim(hw),
            AgentAction::RenewIfDue | AgentAction::InstallCertificate(_) => {}
            AgentAction::SetTimer(t) => self.agent_timer = Some(t),
            AgentAction::CancelTimer => self.agent_timer = None,
            AgentAction::Close(why) => {
                self.log.closes.push((now, why));
                self.cut();
            }
        }
    }

    fn central_action(&mut self, action: CentralAction) {
        let now = self.now;
        if self.central.is_none() {
            return;
        }
        let answer = match action {
            CentralAction::Register => None,
            CentralAction::LoadRecord => Some(CentralEvent::RecordLoaded {
                report_high_water: self.store.high_water,
                acked: self.store.acked,
            }),
            CentralAction::Opened(marks) => {
                self.store.acked.hello(marks.held, marks.applied);
                None
            }
            CentralAction::Send(kind) => {
                self.send_to_agent(kind);
                None
            }
            CentralAction::Heartbeat => {
                self.send_to_agent(CentralKind::Heartbeat(proto::Heartbeat {
                    sent_at: now.0 as i64,
                }));
                None
            }
            CentralAction::ReadIntent => {
                Some(CentralEvent::NewestIntent(self.store.intent.clone()))
            }
            CentralAction::AcquireSlot => {
                assert!(!self.store.slot_held, "a second slot for one session");
                self.store.slot_held = true;
                Some(CentralEvent::SlotAcquired)
            }
            CentralAction::ReleaseSlot(_) => {
                assert!(self.store.slot_held, "released a slot not held");
                self.store.slot_held = false;
                None
            }
            CentralAction::RecordAck(ack) => {
                if let Some(reason) = self.store.acked.apply(&ack) {
                    self.store.failed_reason = reason.to_owned();
                }
                None
            }
            CentralAction::StoreReports(write) => {
                // One transaction: the new reports and the raised mark.
                for r in &write.reports {
                    assert!(r.sequence > self.store.high_water, "stored below the mark");
                    *self.store.writes.entry(r.sequence.get()).or_default() += 1;
                }
                self.store.high_water = self.store.high_water.max(write.high_water);
                Some(CentralEvent::ReportsStored)
            }
            CentralAction::SignCertificate { .. } => Some(CentralEvent::CertificateIssued(
                proto::CertRenewResponse::default(),
            )),
            CentralAction::SetTimer(t) => {
                self.central_timer = Some(t);
                None
            }
            CentralAction::CancelTimer => {
                self.central_timer = None;
                None
            }
            CentralAction::Close(_) => {
                self.cut();
                None
            }
        };
        if let (Some(event), Some(c)) = (answer, self.central.as_mut()) {
            c.handle(now, event);
        }
    }

    /// Runs the world until `end`: messages arrive and timers fire in time order.
    fn run_until(&mut self, end: Millis) {
        loop {
            self.settle();
            let next = [self.wire.next_due(), self.agent_timer, self.central_timer]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|t| *t <= end) else {
                self.now = self.now.max(end);
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            if self.wire.deliverable_to_central(now).is_some() {
                let (_, kind) = self.wire.to_central.pop_front().unwrap();
                if let AgentKind::ReportBatch(b) = &kind {
                    self.log
                        .reports_received
                        .extend(b.reports.iter().map(|r| r.sequence));
                }
                if let Some(c) = self.central.as_mut() {
                    c.handle(
                        now,
                        CentralEvent::Received(proto::AgentMessage { kind: Some(kind) }),
                    );
                }
            } else if self.wire.deliverable_to_agent(now).is_some() {
                let (_, kind) = self.wire.to_agent.pop_front().unwrap();
                if let CentralKind::IntentPush(p) = &kind {
                    self.log.received_pushes.push(p.generation);
                }
                self.agent.handle(
                    now,
                    AgentEvent::Received(proto::CentralMessage { kind: Some(kind) }),
                );
            } else if self.agent_timer.is_some_and(|t| t <= now) {
                self.agent_timer = None;
                self.agent.handle(now, AgentEvent::Timer);
            } else if self.central_timer.is_some_and(|t| t <= now) {
                self.central_timer = None;
                if let Some(c) = self.central.as_mut() {
                    c.handle(now, CentralEvent::Timer);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now.after(d);
        self.run_until(end);
    }

    fn every_report_stored_once(&self) {
        for (seq, n) in &self.store.writes {
            assert_eq!(*n, 1, "report {seq} stored {n} times");
        }
    }
}

#[test]
fn resync_after_missed_generations_pushes_only_the_newest() {
    use proto::IntentAckStatus as S;
    let mut w = World::new(1);
    w.publish(1);
    w.start();
    w.run_for(ms(100));
    assert_eq!(w.log.sessions, 1);
    assert_eq!(w.journal.held(), g(1));
    assert_eq!(w.log.intent_acks, vec![(1, S::Received), (1, S::Applied)]);
    assert_eq!(
        (w.store.acked.received, w.store.acked.applied),
        (g(1), g(1))
    );
    assert!(
        !w.store.slot_held,
        "the acknowledgement gives the slot back"
    );

    // The site goes away; central moves on through five generations.
    w.reachable = false;
    w.cut();
    for n in 2..=6 {
        w.publish(n);
        w.run_for(ms(700));
    }
    assert_eq!(w.journal.held(), g(1));
    assert_eq!(w.log.pushed, vec![1]);

    // Back: one push, of the newest, acknowledged; nothing in between.
    w.reachable = true;
    w.run_for(ms(3000));
    assert_eq!(w.log.sessions, 2);
    assert_eq!(w.log.pushed, vec![1, 6]);
    assert_eq!(w.log.received_pushes, vec![1, 6]);
    assert_eq!(w.journal.intent_writes, vec![1, 6]);
    assert_eq!(w.journal.held(), g(6));
    assert_eq!(w.journal.applied, g(6));
    assert_eq!(
        &w.log.intent_acks[2..],
        &[(6, S::Received), (6, S::Applied)]
    );
    assert_eq!(
        (w.store.acked.received, w.store.acked.applied),
        (g(6), g(6))
    );
    assert_eq!(w.agent.held(), g(6));
    assert!(!w.store.slot_held);
}

#[test]
fn an_agent_holding_the_newest_gets_no_push_after_a_lost_acknowledgement() {
    use proto::IntentAckStatus as S;
    let mut w = World::new(2);
    w.start();
    w.run_for(ms(50));
    // Generation 2 is pushed and persisted, but the link dies before the acks reach central.
    w.wire.hold_to_central = true;
    w.publish(2);
    w.run_for(ms(20));
    assert_eq!(w.journal.held(), g(2));
    assert_eq!(w.store.acked.received, g(0));
    assert!(w.store.slot_held, "still waiting for the acknowledgement");
    w.cut();
    w.wire.hold_to_central = false;
    w.run_for(ms(2000));
    // The Hello says 2 is held: central records it and pushes nothing again.
    assert_eq!(w.log.sessions, 2);
    assert_eq!(w.log.pushed, vec![2]);
    assert_eq!(w.store.acked.received, g(2));
    assert_eq!(w.store.acked.applied, g(2));
    assert_eq!(w.log.intent_acks, vec![(2, S::Received), (2, S::Applied)]);
    assert!(!w.store.slot_held);
}

#[test]
fn a_stale_generation_is_refused_and_never_overwrites_the_held_one() {
    use proto::IntentAckStatus as S;
    let mut w = World::new(3);
    w.journal.held = Some(SiteIntent::empty(site(), g(5)));
    w.journal.applied = g(5);
    w.publish(5);
    w.start();
    w.run_for(ms(50));
    assert!(w.log.pushed.is_empty(), "the agent holds the newest");

    // A replay of generation 3 (R4): refused by the agent's fence, not even written.
    w.inject(3);
    w.run_for(ms(50));
    assert_eq!(w.log.refused, vec![(3, 5)]);
    assert_eq!(w.log.intent_acks, vec![(3, S::Failed)]);
    assert_eq!(
        w.store.failed_reason,
        "generation 3 is older than the held generation 5; refused"
    );
    assert_eq!(w.journal.held(), g(5));
    assert!(
        w.log.persists.is_empty(),
        "the fence let 3 through to the journal"
    );
    assert!(w.journal.intent_writes.is_empty());
    // Central records the failure without regressing what it knows is held.
    assert_eq!((w.store.acked.received, w.store.acked.failed), (g(5), g(3)));

    // Newer generation 7, then a replayed 6 that overtakes it on the wire: 6 is written
    // first (it is newer than 5), then 7; a 6 arriving after 7 is refused.
    w.publish(7);
    w.inject(6);
    w.wire.swap_to_agent();
    w.run_for(ms(50));
    assert_eq!(w.log.received_pushes, vec![3, 6, 7]);
    assert_eq!(w.journal.intent_writes, vec![6, 7]);
    w.inject(6);
    w.run_for(ms(50));
    assert_eq!(w.log.refused, vec![(3, 5), (6, 7)]);
    assert_eq!(w.journal.held(), g(7));
    assert_eq!(w.log.persists, vec![6, 7]);
    assert_eq!(w.journal.intent_writes, vec![6, 7]);

    // The journal's own fence: the journal moved on behind the machine's back (to 9); a
    // push of 8 reaches the journal, which refuses it and keeps 9.
    w.journal.held = Some(SiteIntent::empty(site(), g(9)));
    w.inject(8);
    w.run_for(ms(50));
    assert_eq!(w.log.refused.last(), Some(&(8, 9)));
    assert_eq!(w.log.persists, vec![6, 7, 8]);
    assert_eq!(w.journal.intent_writes, vec![6, 7]);
    assert_eq!(w.journal.held(), g(9));
    assert_eq!(w.agent.held(), g(9));
    assert_eq!(w.store.acked.received, g(7));
}

#[test]
fn reports_are_stored_once_across_a_reconnect_and_the_buffer_empties() {
    let mut w = World::new(4);
    w.start();
    w.run_for(ms(50));
    // The link dies after central stores a batch and before its acknowledgement arrives.
    w.wire.drop_to_agent = Some(Box::new(|k| matches!(k, CentralKind::ReportAck(_))));
    for _ in 0..4 {
        w.journal.append();
    }
    w.report();
    w.run_for(ms(50));
    assert_eq!(w.store.high_water, Sequence::new(2));
    assert_eq!(
        w.store.writes.keys().copied().collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        w.journal.reports.len(),
        5,
        "nothing is trimmed without an ack"
    );
    assert_eq!(w.agent.reports_in_flight(), Some(Sequence::new(2)));
    w.cut();
    w.wire.drop_to_agent = None;
    // More reports while disconnected.
    w.report();
    w.report();
    w.run_for(ms(2000));
    assert_eq!(w.log.sessions, 2);
    // 1 and 2 were sent again and dropped as duplicates; each sequence is stored once.
    assert_eq!(
        w.log.reports_received.iter().filter(|s| **s <= 2).count(),
        4
    );
    w.every_report_stored_once();
    assert_eq!(
        w.store.writes.keys().copied().collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(w.store.high_water, Sequence::new(7));
    assert!(w.journal.reports.is_empty());
    assert_eq!(w.journal.acked, Sequence::new(7));
    assert_eq!(w.agent.acked(), Sequence::new(7));
    assert_eq!(w.agent.reports_in_flight(), None);
}

#[test]
fn backoff_grows_to_its_cap_and_resets_after_a_session() {
    let mut w = World::new(5);
    w.reachable = false;
    w.start();
    w.run_for(ms(10_000));
    let connects = w.log.connects.clone();
    assert!(connects.len() >= 10, "{} attempts", connects.len());
    let ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000];
    for (i, pair) in connects.windows(2).take(ceilings.len()).enumerate() {
        let gap = pair[1].0.0 - pair[0].0.0;
        assert!(
            gap <= ceilings[i],
            "delay {i} was {gap} ms, above {}",
            ceilings[i]
        );
    }
    // Each unreachable attempt moves to the next address and is more patient.
    for (i, (_, address, patience)) in connects.iter().enumerate() {
        assert_eq!((*address, *patience), (i, i as u32));
    }
    // The delays are the seeded draws: the same seed, the same schedule.
    let mut rng = StdRng::seed_from_u64(5);
    let mut b = Backoff::new(ms(100), ms(1000));
    let mut at = 0u64;
    for (t, _, _) in &connects {
        assert_eq!(t.0, at);
        at += b.next_delay(&mut rng).as_millis() as u64;
    }
    assert_eq!(w.agent.backoff().ceiling(), ms(1000));

    // A session resets the schedule and the patience.
    w.reachable = true;
    w.run_for(ms(2000));
    assert_eq!(w.log.sessions, 1);
    w.reachable = false;
    w.cut();
    assert_eq!(w.agent.backoff().attempts(), 1);
    assert_eq!(w.agent.patience(), 0);
    let cut_at = w.now;
    let before = w.log.connects.len();
    w.run_for(ms(150));
    assert!(
        w.log.connects.len() > before,
        "no attempt within the first ceiling"
    );
    assert!(w.log.connects[before].0.since(cut_at) <= ms(100));
}

#[test]
fn refusals_do_not_raise_the_patience() {
    let mut w = World::new(6);
    w.refuse = true;
    w.start();
    w.run_for(ms(3000));
    assert!(w.log.connects.len() >= 4);
    assert!(w.log.connects.iter().all(|(_, a, p)| (*a, *p) == (0, 0)));
    assert!(w.agent.backoff().attempts() >= 4);
}

#[test]
fn a_silent_central_is_detected_after_three_heartbeat_periods() {
    let mut w = World::new(7);
    w.start();
    // Heartbeats at 0, 1000, ...; central's answers arrive 10 ms later.
    w.run_for(ms(10_500));
    assert!(w.log.closes.is_empty());
    assert_eq!(w.log.heartbeats_sent, 11);
    // A one-way partition: the agent hears nothing from 10 010 ms on.
    w.wire.hold_to_agent = true;
    w.run_for(ms(3_400));
    assert!(w.log.closes.is_empty(), "closed after {:?}", w.log.closes);
    w.run_for(ms(200));
    assert_eq!(w.log.closes, vec![(Millis(14_000), AgentClose::Silent)]);
    // It reconnects within its first back-off ceiling (100 ms).
    assert_eq!(w.log.sessions, 2);
    assert!(w.log.connects.last().unwrap().0 <= Millis(14_100));
    // 14 heartbeats in the first session (0 to 13 000 ms; none at 14 000), one opening the
    // second.
    assert_eq!(w.log.heartbeats_sent, 15);
    w.wire.hold_to_agent = false;
    w.run_for(ms(5000));
    assert_eq!(w.log.sessions, 2);
    assert_eq!(w.log.closes.len(), 1);
}

#[test]
fn central_answers_heartbeats_and_the_session_stays_up() {
    let mut w = World::new(8);
    w.start();
    w.run_for(ms(60_000));
    assert!(w.log.closes.is_empty());
    assert_eq!(w.log.sessions, 1);
    assert_eq!(w.log.heartbeats_sent, 61);
}

#[test]
fn a_background_reconciler_conclusion_is_acknowledged() {
    use proto::IntentAckStatus as S;
    let mut w = World::with(
        AgentSessionConfig {
            background_reconciler: true,
            ..agent_config()
        },
        9,
    );
    w.start();
    w.run_for(ms(10));
    w.publish(3);
    w.run_for(ms(50));
    // Handed over: only RECEIVED so far (the stub reports nothing concluded).
    assert_eq!(w.log.intent_acks, vec![(3, S::Received)]);
    w.agent.handle(
        w.now,
        AgentEvent::Concluded(Outcome::Failed {
            generation: g(3),
            reason: "bmc down".into(),
        }),
    );
    w.run_for(ms(50));
    assert_eq!(w.log.intent_acks, vec![(3, S::Received), (3, S::Failed)]);
    assert_eq!(w.store.acked.failed, g(3));
    assert_eq!(w.store.failed_reason, "bmc down");
    assert_eq!(w.store.acked.received, g(3));
    assert_eq!(w.store.acked.applied, g(0));
}

/// Random cuts, one-way partitions, generations and reports, then a quiet period: the
/// site converges on the newest generation, every report is stored exactly once, and the
/// held generation never goes backwards.
#[test]
fn random_faults_converge_without_losing_or_duplicating() {
    for seed in 0..40u64 {
        let mut w = World::new(seed);
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let mut generation = 0;
        let mut appended = Vec::new();
        let mut held = g(0);
        w.start();
        for _ in 0..300 {
            match rng.random_range(0..20) {
                0 => w.cut(),
                1 => w.wire.hold_to_agent = !w.wire.hold_to_agent,
                2 => w.wire.hold_to_central = !w.wire.hold_to_central,
                3 => w.reachable = !w.reachable,
                4..=6 => {
                    generation += 1;
                    w.publish(generation);
                }
                7..=11 => appended.push(w.report()),
                _ => {}
            }
            w.run_for(ms(rng.random_range(1..400)));
            assert!(w.journal.held() >= held, "seed {seed}: held went backwards");
            held = w.journal.held();
            w.every_report_stored_once();
        }
        w.wire.hold_to_agent = false;
        w.wire.hold_to_central = false;
        w.reachable = true;
        w.run_for(ms(30_000));
        assert_eq!(w.journal.held(), g(generation), "seed {seed}");
        assert_eq!(w.store.acked.received, g(generation), "seed {seed}");
        assert_eq!(w.store.acked.applied, g(generation), "seed {seed}");
        w.every_report_stored_once();
        assert_eq!(
            w.store.writes.keys().copied().collect::<Vec<_>>(),
            appended,
            "seed {seed}"
        );
        assert!(w.journal.reports.is_empty(), "seed {seed}");
        assert!(!w.store.slot_held || w.central.is_none(), "seed {seed}");
    }
}
