//! Central's end of one session as a state machine: the `Hello` checks, the newest-only
//! intent push through the push window, acknowledgement tracking (never regressing), report
//! deduplication on sequence numbers, and the protocol violations that end a session.
//!
//! The IO layer owns the connection, the session registry (one session per site), the store
//! (intents, the site's channel record, reports, observed state), the push window's permits,
//! the CA and the audit log. It feeds [`CentralEvent`]s and executes [`CentralAction`]s; an
//! action that needs an answer is answered with the event named in its documentation before
//! anything else is fed.
//!
//! One machine serves one connection, from its first frame to its end.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use meridian_proto::v1 as proto;
use prost::Message;
use proto::agent_message::Kind as AgentKind;
use proto::central_message::Kind as CentralKind;

use super::{AckUpdate, Acked, Millis};
use crate::channel::MAX_REPORTS_PER_BATCH;
use crate::channel::seq::HighWater;
use crate::ids::{Generation, Sequence, SiteId};
use crate::model::{SiteIntent, SiteReport};

/// What central's session machine is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralSessionConfig {
    /// A push unacknowledged this long gives its push-window slot back.
    pub push_ack_timeout: Duration,
}

/// What the agent said in its `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloMarks {
    /// Generation the agent holds.
    pub held: Generation,
    /// Generation the agent applied.
    pub applied: Generation,
    /// Highest report sequence the agent saw acknowledged.
    pub acked: Sequence,
}

/// One report to store: its sequence, its wire bytes, the report.
#[derive(Debug, Clone, PartialEq)]
pub struct FreshReport {
    pub sequence: Sequence,
    /// The report as the agent sent it (protobuf), stored as it is.
    pub bytes: Vec<u8>,
    /// The report, for the observed state it carries (with a sequence repeated in one batch,
    /// the last report of that sequence).
    pub report: SiteReport,
}

/// Reports above the site's high-water mark, to store with the raised mark in one
/// transaction (guarded, so that a replaced session cannot store them twice).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportWrite {
    /// The new reports, in the agent's order.
    pub reports: Vec<FreshReport>,
    /// The mark once they are stored (the last new sequence).
    pub high_water: Sequence,
    /// The agent's cumulative drop count.
    pub dropped: u64,
}

/// Why a push-window slot is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The agent acknowledged the pushed generation (or a newer one).
    Acknowledged,
    /// It stayed unacknowledged for the push timeout.
    Expired,
}

/// Why the machine ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CentralClose {
    /// The agent ended the stream: a normal end.
    Ended,
    /// The agent broke the protocol (close with `close::PROTOCOL`).
    Protocol(String),
}

/// Everything the IO layer tells the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum CentralEvent {
    /// A message from the agent (decoded; a frame that does not decode is a protocol
    /// violation the IO layer handles).
    Received(proto::AgentMessage),
    /// The agent's stream ended (or the connection closed).
    StreamEnded,
    /// Answer to [`CentralAction::LoadRecord`]: the site's stored report mark and
    /// acknowledged generations.
    RecordLoaded {
        report_high_water: Sequence,
        acked: Acked,
    },
    /// The site's intent changed (the distributor's wake-up).
    IntentChanged,
    /// Answer to [`CentralAction::ReadIntent`]: the site's newest intent, if any.
    NewestIntent(Option<SiteIntent>),
    /// Answer to [`CentralAction::AcquireSlot`]: a push-window slot is held.
    SlotAcquired,
    /// Answer to [`CentralAction::StoreReports`]: stored, with the mark.
    ReportsStored,
    /// Answer to [`CentralAction::SignCertificate`]: the renewed certificate.
    CertificateIssued(proto::CertRenewResponse),
    /// Tests only: send this push as it is (bypassing the newest-only rule).
    Inject(proto::IntentPush),
    /// The timer expired (the IO layer clears it; the machine sets it again if it needs to).
    Timer,
}

/// Everything the machine asks the IO layer to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum CentralAction {
    /// The `Hello` is valid: register this session as the site's (closing an older one).
    Register,
    /// Read the site's channel record. Answer: [`CentralEvent::RecordLoaded`].
    LoadRecord,
    /// The session is open: mark the site heard and `Online`, and record what the `Hello`
    /// says (raising the received and applied generations, never lowering them).
    Opened(HelloMarks),
    /// Send a message to the agent.
    Send(CentralKind),
    /// Answer the agent's heartbeat with one stamped with central's clock.
    Heartbeat,
    /// Read the site's newest intent. Answer: [`CentralEvent::NewestIntent`].
    ReadIntent,
    /// Take a slot of the push window (waiting for one). Answer: [`CentralEvent::SlotAcquired`].
    AcquireSlot,
    /// Give the push-window slot back.
    ReleaseSlot(Release),
    /// Record an intent acknowledgement in the channel record (see [`Acked::apply`]).
    RecordAck(AckUpdate),
    /// Store new reports with the raised mark. Answer: [`CentralEvent::ReportsStored`].
    StoreReports(ReportWrite),
    /// Sign the renewal CSR (and audit it). Answer: [`CentralEvent::CertificateIssued`].
    SignCertificate { csr_pem: String },
    /// Set the timer (replacing any earlier deadline).
    SetTimer(Millis),
    /// Clear the timer.
    CancelTimer,
    /// End the session.
    Close(CentralClose),
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first frame has not come.
    AwaitingHello,
    /// `Hello` accepted; the site's record is being read.
    Loading,
    /// Serving.
    Open,
    /// Ended.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    generation: Generation,
    expires: Millis,
}

/// Central's machine for one session of `site` (the site named by the client certificate).
#[derive(Debug)]
pub struct CentralSession {
    site: SiteId,
    config: CentralSessionConfig,
    phase: Phase,
    hello: Option<HelloMarks>,
    high_water: HighWater,
    acked: Acked,
    /// Newest generation the agent holds or was sent.
    pushed: Generation,
    /// The push holding a window slot, awaiting its acknowledgement.
    in_flight: Option<InFlight>,
    /// A push waiting for a window slot.
    awaiting_slot: Option<proto::IntentPush>,
    /// Reports being stored: the mark once they are.
    storing: Option<Sequence>,
    actions: VecDeque<CentralAction>,
}

impl CentralSession {
    /// A machine for a new connection of `site`.
    pub fn new(site: SiteId, config: CentralSessionConfig) -> Self {
        CentralSession {
            site,
            config,
            phase: Phase::AwaitingHello,
            hello: None,
            high_water: HighWater::default(),
            acked: Acked::default(),
            pushed: Generation::new(0),
            in_flight: None,
            awaiting_slot: None,
            storing: None,
            actions: VecDeque::new(),
        }
    }

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<CentralAction> {
        self.actions.pop_front()
    }

    /// Where the machine is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The site served.
    pub fn site(&self) -> &SiteId {
        &self.site
    }

    /// The report high-water mark: every sequence at or below it is stored.
    pub fn high_water(&self) -> Sequence {
        self.high_water.mark()
    }

    /// The generations the site acknowledged (as far as this session has seen).
    pub fn acked(&self) -> Acked {
        self.acked
    }

    /// The newest generation the agent holds or was sent.
    pub fn pushed(&self) -> Generation {
        self.pushed
    }

    /// The generation whose push holds a window slot.
    pub fn push_in_flight(&self) -> Option<Generation> {
        self.in_flight.map(|f| f.generation)
    }

    /// Feeds one event at time `now`; the actions it calls for are queued for
    /// [`CentralSession::poll_action`].
    pub fn handle(&mut self, now: Millis, event: CentralEvent) {
        if self.phase == Phase::Closed {
            return;
        }
        match event {
            CentralEvent::Received(msg) => match self.phase {
                Phase::AwaitingHello => self.on_first(msg),
                Phase::Open => self.on_message(msg),
                _ => {}
            },
            CentralEvent::StreamEnded => match self.phase {
                Phase::AwaitingHello => {
                    self.close(CentralClose::Protocol("stream ended before Hello".into()))
                }
                _ => self.close(CentralClose::Ended),
            },
            CentralEvent::RecordLoaded {
                report_high_water,
                acked,
            } => {
                if self.phase != Phase::Loading {
                    return;
                }
                let Some(hello) = self.hello else {
                    return;
                };
                self.phase = Phase::Open;
                self.high_water = HighWater::new(report_high_water);
                self.acked = acked;
                self.acked.hello(hello.held, hello.applied);
                self.actions.push_back(CentralAction::Opened(hello));
                if hello.acked < self.high_water.mark() {
                    // The agent missed an acknowledgement (the link broke after central
                    // stored its reports): it may trim now.
                    self.send(CentralKind::ReportAck(proto::ReportAck {
                        high_water_sequence: self.high_water.mark().get(),
                    }));
                }
                self.actions.push_back(CentralAction::ReadIntent);
            }
            CentralEvent::IntentChanged => {
                if self.phase == Phase::Open {
                    self.actions.push_back(CentralAction::ReadIntent);
                }
            }
            CentralEvent::NewestIntent(intent) => self.on_newest(now, intent),
            CentralEvent::SlotAcquired => {
                if let Some(push) = self.awaiting_slot.take() {
                    self.push(now, push);
                }
            }
            CentralEvent::ReportsStored => {
                if let Some(mark) = self.storing.take() {
                    self.high_water.advance(mark);
                    self.send(CentralKind::ReportAck(proto::ReportAck {
                        high_water_sequence: self.high_water.mark().get(),
                    }));
                }
            }
            CentralEvent::CertificateIssued(response) => {
                self.send(CentralKind::CertRenewResponse(response));
            }
            CentralEvent::Inject(push) => {
                if self.phase == Phase::Open {
                    self.send(CentralKind::IntentPush(push));
                }
            }
            CentralEvent::Timer => {
                if let Some(f) = self.in_flight {
                    if now >= f.expires {
                        self.in_flight = None;
                        self.actions
                            .push_back(CentralAction::ReleaseSlot(Release::Expired));
                    } else {
                        self.actions.push_back(CentralAction::SetTimer(f.expires));
                    }
                }
            }
        }
    }

    fn send(&mut self, kind: CentralKind) {
        self.actions.push_back(CentralAction::Send(kind));
    }

    fn close(&mut self, why: CentralClose) {
        self.phase = Phase::Closed;
        self.actions.push_back(CentralAction::Close(why));
    }

    fn on_first(&mut self, msg: proto::AgentMessage) {
        let hello = match msg.kind {
            Some(AgentKind::Hello(h)) => h,
            _ => {
                return self.close(CentralClose::Protocol("first message must be Hello".into()));
            }
        };
        if !hello.site.is_empty() && hello.site != self.site.as_str() {
            return self.close(CentralClose::Protocol(format!(
                "Hello names site {:?} but the certificate is for {}",
                hello.site, self.site
            )));
        }
        let marks = HelloMarks {
            held: Generation::new(hello.held_generation),
            applied: Generation::new(hello.applied_generation),
            acked: Sequence::new(hello.last_acked_sequence),
        };
        self.hello = Some(marks);
        self.pushed = marks.held;
        self.phase = Phase::Loading;
        self.actions.push_back(CentralAction::Register);
        self.actions.push_back(CentralAction::LoadRecord);
    }

    fn on_message(&mut self, msg: proto::AgentMessage) {
        match msg.kind {
            // A message type this central does not know (a newer agent): skip it.
            None => {}
            Some(AgentKind::Hello(_)) => self.close(CentralClose::Protocol("second Hello".into())),
            Some(AgentKind::Heartbeat(_)) => self.actions.push_back(CentralAction::Heartbeat),
            Some(AgentKind::IntentAck(ack)) => {
                let ack = AckUpdate::from_wire(&ack);
                if self
                    .in_flight
                    .is_some_and(|f| ack.generation >= f.generation)
                {
                    self.in_flight = None;
                    self.actions
                        .push_back(CentralAction::ReleaseSlot(Release::Acknowledged));
                    self.actions.push_back(CentralAction::CancelTimer);
                }
                self.acked.apply(&ack);
                self.actions.push_back(CentralAction::RecordAck(ack));
            }
            Some(AgentKind::ReportBatch(batch)) => self.on_reports(batch),
            Some(AgentKind::CertRenewRequest(req)) => {
                self.actions.push_back(CentralAction::SignCertificate {
                    csr_pem: req.csr_pem,
                });
            }
        }
    }

    fn on_reports(&mut self, batch: proto::ReportBatch) {
        if batch.reports.len() > MAX_REPORTS_PER_BATCH {
            return self.close(CentralClose::Protocol(format!(
                "report batch of {} reports; at most {MAX_REPORTS_PER_BATCH} are allowed",
                batch.reports.len()
            )));
        }
        let mut items = Vec::with_capacity(batch.reports.len());
        let mut parsed = BTreeMap::new();
        for wire in batch.reports {
            let bytes = wire.encode_to_vec();
            let report = match SiteReport::try_from(wire) {
                Ok(r) => r,
                Err(e) => return self.close(CentralClose::Protocol(format!("bad report: {e}"))),
            };
            if report.site != self.site {
                return self.close(CentralClose::Protocol(format!(
                    "report names site {} on a session of {}",
                    report.site, self.site
                )));
            }
            items.push((report.sequence, bytes));
            parsed.insert(report.sequence, report);
        }
        let fresh = self.high_water.fresh(&items);
        let Some(last) = fresh.last().map(|(s, _)| *s) else {
            // Nothing new (a replay after a reconnect): acknowledge the mark again.
            return self.send(CentralKind::ReportAck(proto::ReportAck {
                high_water_sequence: self.high_water.mark().get(),
            }));
        };
        let reports = fresh
            .into_iter()
            .filter_map(|(sequence, bytes)| {
                parsed.get(sequence).map(|report| FreshReport {
                    sequence: *sequence,
                    bytes: bytes.clone(),
                    report: report.clone(),
                })
            })
            .collect();
        self.storing = Some(last);
        self.actions
            .push_back(CentralAction::StoreReports(ReportWrite {
                reports,
                high_water: last,
                dropped: batch.dropped,
            }));
    }

    /// Pushes the newest intent if it is newer than what the agent holds or was sent.
    fn on_newest(&mut self, now: Millis, intent: Option<SiteIntent>) {
        if self.phase != Phase::Open {
            return;
        }
        let Some(intent) = intent else {
            return;
        };
        let generation = intent.generation;
        if generation <= self.pushed {
            return;
        }
        self.pushed = generation;
        let push = proto::IntentPush {
            generation: generation.get(),
            intent: Some(intent.into()),
        };
        if self.in_flight.is_some() {
            // The slot of the unacknowledged push carries the newer one.
            self.push(now, push);
        } else {
            self.awaiting_slot = Some(push);
            self.actions.push_back(CentralAction::AcquireSlot);
        }
    }

    fn push(&mut self, now: Millis, push: proto::IntentPush) {
        let expires = now.after(self.config.push_ack_timeout);
        self.in_flight = Some(InFlight {
            generation: Generation::new(push.generation),
            expires,
        });
        self.actions.push_back(CentralAction::SetTimer(expires));
        self.send(CentralKind::IntentPush(push));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReportBody;

    fn site() -> SiteId {
        SiteId::parse("site-a").unwrap()
    }

    fn machine() -> CentralSession {
        CentralSession::new(
            site(),
            CentralSessionConfig {
                push_ack_timeout: Duration::from_millis(2000),
            },
        )
    }

    fn drain(m: &mut CentralSession) -> Vec<CentralAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn msg(kind: AgentKind) -> CentralEvent {
        CentralEvent::Received(proto::AgentMessage { kind: Some(kind) })
    }

    fn hello(site: &str, held: u64, acked: u64) -> CentralEvent {
        msg(AgentKind::Hello(proto::Hello {
            site: site.into(),
            held_generation: held,
            applied_generation: held,
            last_acked_sequence: acked,
            ..Default::default()
        }))
    }

    fn open(held: u64, acked: u64, high_water: u64) -> CentralSession {
        let mut m = machine();
        m.handle(Millis(0), hello("site-a", held, acked));
        m.handle(
            Millis(0),
            CentralEvent::RecordLoaded {
                report_high_water: Sequence::new(high_water),
                acked: Acked::default(),
            },
        );
        drain(&mut m);
        m.handle(Millis(0), CentralEvent::NewestIntent(None));
        m
    }

    fn closed_for(actions: &[CentralAction]) -> Option<String> {
        actions.iter().find_map(|a| match a {
            CentralAction::Close(CentralClose::Protocol(m)) => Some(m.clone()),
            _ => None,
        })
    }

    fn report(site: &str, seq: u64) -> proto::SiteReport {
        crate::model::SiteReport {
            site: SiteId::parse(site).unwrap(),
            sequence: Sequence::new(seq),
            generation: Generation::new(0),
            at: crate::ids::Timestamp::from_millis(1),
            body: ReportBody::Event {
                severity: crate::model::Severity::Info,
                resource: "r".into(),
                message: "m".into(),
            },
        }
        .into()
    }

    #[test]
    fn the_first_message_must_be_a_hello_for_the_certificates_site() {
        let mut m = machine();
        m.handle(
            Millis(0),
            msg(AgentKind::Heartbeat(proto::Heartbeat::default())),
        );
        assert_eq!(
            closed_for(&drain(&mut m)).as_deref(),
            Some("first message must be Hello")
        );
        assert_eq!(m.phase(), Phase::Closed);

        let mut m = machine();
        m.handle(Millis(0), hello("site-b", 0, 0));
        let actions = drain(&mut m);
        assert!(closed_for(&actions).unwrap().contains("\"site-b\""));
        assert!(!actions.contains(&CentralAction::Register));

        let mut m = machine();
        m.handle(Millis(0), CentralEvent::StreamEnded);
        assert_eq!(
            closed_for(&drain(&mut m)).as_deref(),
            Some("stream ended before Hello")
        );

        // An empty site in Hello is accepted (the certificate names it).
        let mut m = machine();
        m.handle(Millis(0), hello("", 0, 0));
        assert_eq!(
            drain(&mut m),
            vec![CentralAction::Register, CentralAction::LoadRecord]
        );
    }

    #[test]
    fn a_second_hello_ends_the_session() {
        let mut m = open(0, 0, 0);
        m.handle(Millis(1), hello("site-a", 0, 0));
        assert_eq!(closed_for(&drain(&mut m)).as_deref(), Some("second Hello"));
        // Nothing more happens on a closed session.
        m.handle(Millis(2), CentralEvent::IntentChanged);
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn hello_behind_the_mark_gets_the_mark_and_then_the_newest_intent_is_read() {
        let mut m = machine();
        m.handle(Millis(0), hello("site-a", 2, 3));
        drain(&mut m);
        m.handle(
            Millis(0),
            CentralEvent::RecordLoaded {
                report_high_water: Sequence::new(7),
                acked: Acked::default(),
            },
        );
        assert_eq!(
            drain(&mut m),
            vec![
                CentralAction::Opened(HelloMarks {
                    held: Generation::new(2),
                    applied: Generation::new(2),
                    acked: Sequence::new(3)
                }),
                CentralAction::Send(CentralKind::ReportAck(proto::ReportAck {
                    high_water_sequence: 7
                })),
                CentralAction::ReadIntent,
            ]
        );
        assert_eq!(m.acked().received, Generation::new(2));
        // The agent holds 2: intent 2 is not pushed again, 3 is.
        m.handle(
            Millis(1),
            CentralEvent::NewestIntent(Some(SiteIntent::empty(site(), Generation::new(2)))),
        );
        assert!(drain(&mut m).is_empty());
        m.handle(
            Millis(1),
            CentralEvent::NewestIntent(Some(SiteIntent::empty(site(), Generation::new(3)))),
        );
        assert_eq!(drain(&mut m), vec![CentralAction::AcquireSlot]);
        m.handle(Millis(5), CentralEvent::SlotAcquired);
        let actions = drain(&mut m);
        assert_eq!(actions[0], CentralAction::SetTimer(Millis(2005)));
        assert!(
            matches!(&actions[1], CentralAction::Send(CentralKind::IntentPush(p)) if p.generation == 3)
        );
    }

    #[test]
    fn push_slots_are_reused_released_on_ack_and_expire() {
        let mut m = open(1, 0, 0);
        m.handle(
            Millis(10),
            CentralEvent::NewestIntent(Some(SiteIntent::empty(site(), Generation::new(2)))),
        );
        m.handle(Millis(10), CentralEvent::SlotAcquired);
        drain(&mut m);
        // A newer intent while 2 is unacknowledged takes over its slot.
        m.handle(
            Millis(100),
            CentralEvent::NewestIntent(Some(SiteIntent::empty(site(), Generation::new(4)))),
        );
        let actions = drain(&mut m);
        assert!(!actions.contains(&CentralAction::AcquireSlot));
        assert_eq!(actions[0], CentralAction::SetTimer(Millis(2100)));
        assert_eq!(m.push_in_flight(), Some(Generation::new(4)));
        // The acknowledgement of the older push keeps the slot and records 2 only.
        m.handle(
            Millis(150),
            msg(AgentKind::IntentAck(proto::IntentAck {
                generation: 2,
                status: proto::IntentAckStatus::Received as i32,
                reason: String::new(),
            })),
        );
        let actions = drain(&mut m);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, CentralAction::ReleaseSlot(_)))
        );
        assert_eq!(m.acked().received, Generation::new(2));
        // A timer firing early re-arms; at the deadline the slot is given back.
        m.handle(Millis(2000), CentralEvent::Timer);
        assert_eq!(drain(&mut m), vec![CentralAction::SetTimer(Millis(2100))]);
        m.handle(Millis(2100), CentralEvent::Timer);
        assert_eq!(
            drain(&mut m),
            vec![CentralAction::ReleaseSlot(Release::Expired)]
        );
        assert_eq!(m.push_in_flight(), None);
        // The late acknowledgement of 4 only records it.
        m.handle(
            Millis(2200),
            msg(AgentKind::IntentAck(proto::IntentAck {
                generation: 4,
                status: proto::IntentAckStatus::Applied as i32,
                reason: String::new(),
            })),
        );
        let actions = drain(&mut m);
        assert_eq!(actions.len(), 1);
        assert_eq!(m.acked().applied, Generation::new(4));
    }

    #[test]
    fn report_batches_are_deduplicated_and_checked() {
        let mut m = open(0, 0, 2);
        let batch = |seqs: &[u64], site: &str| {
            msg(AgentKind::ReportBatch(proto::ReportBatch {
                first_sequence: seqs[0],
                reports: seqs.iter().map(|s| report(site, *s)).collect(),
                dropped: 1,
            }))
        };
        m.handle(Millis(1), batch(&[1, 2], "site-a"));
        assert_eq!(
            drain(&mut m),
            vec![CentralAction::Send(CentralKind::ReportAck(
                proto::ReportAck {
                    high_water_sequence: 2
                }
            ))]
        );
        m.handle(Millis(1), batch(&[2, 3, 5], "site-a"));
        let actions = drain(&mut m);
        let [CentralAction::StoreReports(w)] = &actions[..] else {
            panic!("{actions:?}");
        };
        let seqs: Vec<u64> = w.reports.iter().map(|r| r.sequence.get()).collect();
        assert_eq!(seqs, vec![3, 5]);
        assert_eq!((w.high_water, w.dropped), (Sequence::new(5), 1));
        assert_eq!(
            m.high_water(),
            Sequence::new(2),
            "moved before it was stored"
        );
        m.handle(Millis(2), CentralEvent::ReportsStored);
        assert_eq!(
            drain(&mut m),
            vec![CentralAction::Send(CentralKind::ReportAck(
                proto::ReportAck {
                    high_water_sequence: 5
                }
            ))]
        );
        m.handle(Millis(3), batch(&[6], "site-b"));
        assert!(
            closed_for(&drain(&mut m))
                .unwrap()
                .contains("names site site-b")
        );

        let mut m = open(0, 0, 0);
        let seqs: Vec<u64> = (1..=MAX_REPORTS_PER_BATCH as u64 + 1).collect();
        m.handle(Millis(1), batch(&seqs, "site-a"));
        assert!(
            closed_for(&drain(&mut m))
                .unwrap()
                .starts_with("report batch of 513")
        );

        let mut m = open(0, 0, 0);
        m.handle(
            Millis(1),
            msg(AgentKind::ReportBatch(proto::ReportBatch {
                first_sequence: 1,
                reports: vec![proto::SiteReport::default()],
                dropped: 0,
            })),
        );
        assert!(
            closed_for(&drain(&mut m))
                .unwrap()
                .starts_with("bad report")
        );
    }

    #[test]
    fn heartbeats_unknown_messages_and_renewals() {
        let mut m = open(0, 0, 0);
        m.handle(
            Millis(1),
            msg(AgentKind::Heartbeat(proto::Heartbeat { sent_at: 5 })),
        );
        m.handle(
            Millis(1),
            CentralEvent::Received(proto::AgentMessage { kind: None }),
        );
        m.handle(
            Millis(1),
            msg(AgentKind::CertRenewRequest(proto::CertRenewRequest {
                csr_pem: "csr".into(),
            })),
        );
        assert_eq!(
            drain(&mut m),
            vec![
                CentralAction::Heartbeat,
                CentralAction::SignCertificate {
                    csr_pem: "csr".into()
                }
            ]
        );
        m.handle(Millis(1), CentralEvent::StreamEnded);
        assert_eq!(
            drain(&mut m),
            vec![CentralAction::Close(CentralClose::Ended)]
        );
    }
}
