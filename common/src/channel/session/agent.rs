//! The agent's end of the channel as a state machine: connection attempts with back-off,
//! `Hello`, intent pushes (generation fencing, persist before acknowledging, hand to the
//! reconciler), reports (one batch in flight, re-sent from the last acknowledgement after a
//! reconnect), heartbeats and the silence timeout, certificate renewal's protocol half.
//!
//! The IO layer owns the connection, the journal (held intent, applied generation, report
//! buffer, acknowledged mark), the reconciler, the keys and the wall clock. It feeds
//! [`AgentEvent`]s and executes [`AgentAction`]s; an action that needs an answer is answered
//! with the event named in its documentation, before anything else is fed.
//!
//! Life of the machine: `Start` asks to connect at once. A connection attempt ends in
//! `Connected` (the session stream is open) or `AttemptFailed`; an open session ends in
//! `SessionLost` (or `AttemptFailed` if it broke before `Established` ran). After either,
//! the machine waits a back-off delay (full jitter, [`Backoff`], reset by every session that
//! was established) on its timer and asks to connect again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use meridian_proto::v1 as proto;
use proto::agent_message::Kind as AgentKind;
use proto::central_message::Kind as CentralKind;
use rand::RngCore;

use super::{Millis, Outcome};
use crate::channel::backoff::Backoff;
use crate::ids::{Generation, Sequence, SiteId};
use crate::model::SiteIntent;

/// Periods of silence from central after which the agent declares the link dead.
pub const SILENT_PERIODS: u32 = 3;

/// What the agent's session machine is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSessionConfig {
    /// Heartbeat period; silence for more than [`SILENT_PERIODS`] of them ends the session.
    pub heartbeat: Duration,
    /// First back-off ceiling.
    pub backoff_initial: Duration,
    /// Largest back-off ceiling.
    pub backoff_max: Duration,
    /// Most reports in one `ReportBatch`.
    pub report_batch_max: usize,
    /// The reconciler runs a loop of its own and announces its conclusions
    /// ([`AgentEvent::Concluded`]); a synchronous one applies an intent when handed it.
    pub background_reconciler: bool,
    /// Sent in `Hello`.
    pub agent_version: String,
}

/// What the journal holds when a session opens (read by the IO layer for `Hello`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The site this agent is enrolled for (from its certificate).
    pub site: SiteId,
    /// Generation of the intent held (0: none).
    pub held: Generation,
    /// Generation last applied (0: none).
    pub applied: Generation,
    /// Highest report sequence central acknowledged.
    pub acked: Sequence,
}

/// Why a connection attempt failed, as far as the retry policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Central refused the connection at once (it sheds load that way): the next attempt is
    /// no more patient.
    Refused,
    /// The address could not be reached (does not resolve, handshake timed out): the next
    /// attempt tries the next address and is more patient.
    Unreachable,
    /// Anything else: the next attempt is more patient.
    Other,
}

/// What persisting a pushed intent came to (the journal decides, atomically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistOutcome {
    /// Written and flushed.
    Stored,
    /// The same generation was held already.
    AlreadyHeld,
    /// Older than the held generation: refused, nothing written.
    Stale { held: Generation },
}

/// Why the machine ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentClose {
    /// Central was silent for more than [`SILENT_PERIODS`] heartbeat periods.
    Silent,
    /// The agent is stopping (close with `close::NORMAL`).
    Stopping,
}

/// Everything the IO layer tells the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The agent starts: connect now.
    Start,
    /// Answer to [`AgentAction::Connect`]: connected, the session stream is open.
    Connected(Snapshot),
    /// Answer to [`AgentAction::Connect`], or the session broke before it was established.
    AttemptFailed(Failure),
    /// An established session ended (connection lost, stream error, a close the machine asked
    /// for).
    SessionLost,
    /// A message from central (decoded; a frame that does not decode ends the session).
    Received(proto::CentralMessage),
    /// Answer to [`AgentAction::Persist`], with the applied generation read after it.
    Persisted {
        outcome: PersistOutcome,
        applied: Generation,
    },
    /// Answer to [`AgentAction::Hand`]: the reconciler took the intent (a synchronous one
    /// applied it, and the journal records it applied) or refused it; with a background
    /// reconciler, its latest conclusion.
    Handed {
        result: Result<(), String>,
        latest: Option<Outcome>,
    },
    /// Answer to [`AgentAction::LoadReports`]: buffered reports after the mark, in order, and
    /// the buffer's cumulative drop count.
    ReportsLoaded {
        reports: Vec<proto::SiteReport>,
        dropped: u64,
    },
    /// New reports were appended to the buffer.
    ReportsReady,
    /// A background reconciler concluded on a generation.
    Concluded(Outcome),
    /// Answer to [`AgentAction::RenewIfDue`] when the certificate is due: a CSR for a new key.
    RenewalRequested { csr_pem: String },
    /// The timer expired (the IO layer clears it; the machine sets it again if it needs to).
    Timer,
    /// The agent is stopping.
    Stop,
}

/// Everything the machine asks the IO layer to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentAction {
    /// Connect to `central_addresses[address % len]`, enrolling first if needed, giving the
    /// handshake a patience of `patience` (consecutive slow failures). Answer:
    /// [`AgentEvent::Connected`] or [`AgentEvent::AttemptFailed`].
    Connect { address: usize, patience: u32 },
    /// The session is established (`Hello` written): count it, show the agent connected.
    Established,
    /// Send a message to central.
    Send(AgentKind),
    /// Send a `Heartbeat` stamped with the wall clock.
    Heartbeat,
    /// Persist the intent (fenced: refuse an older generation than the held one) and flush.
    /// Answer: [`AgentEvent::Persisted`].
    Persist(Arc<SiteIntent>),
    /// An older generation than the held one was refused (counted, logged); the `FAILED`
    /// acknowledgement follows as a `Send`.
    Refused {
        generation: Generation,
        held: Generation,
    },
    /// Hand the (persisted) intent to the reconciler. Answer: [`AgentEvent::Handed`].
    Hand(Arc<SiteIntent>),
    /// Read up to `limit` buffered reports with a sequence above `after`. Answer:
    /// [`AgentEvent::ReportsLoaded`].
    LoadReports { after: Sequence, limit: usize },
    /// Central stored every report up to this sequence: trim the buffer up to it.
    Trim(Sequence),
    /// Renew the certificate if it is due (by the wall clock). Answer, only if due:
    /// [`AgentEvent::RenewalRequested`].
    RenewIfDue,
    /// Central's answer to the renewal request: store the certificate with the new key.
    InstallCertificate(proto::CertRenewResponse),
    /// Set the timer (replacing any earlier deadline).
    SetTimer(Millis),
    /// Clear the timer.
    CancelTimer,
    /// End the session; the IO layer then feeds [`AgentEvent::SessionLost`] (except when
    /// stopping).
    Close(AgentClose),
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// A connection attempt is under way.
    Connecting,
    /// A session is open.
    Open,
    /// The machine closed the session and waits for the IO layer to report it lost.
    Closing,
    /// Waiting for the back-off delay to pass.
    Waiting,
    /// Stopped; nothing more happens.
    Stopped,
}

/// What waits for an answer from the IO layer.
#[derive(Debug, Clone)]
enum Pending {
    Persist(Arc<SiteIntent>),
    Hand(Arc<SiteIntent>),
}

/// The state of one open session.
#[derive(Debug, Clone)]
struct Conn {
    site: SiteId,
    /// The last sequence of the batch sent and not yet acknowledged.
    in_flight: Option<Sequence>,
    renewing: bool,
    last_heard: Millis,
    /// When the next heartbeat is due.
    tick: Millis,
    pending: Option<Pending>,
}

/// The agent's session machine. `R` is the random source of the back-off jitter (seeded in
/// tests, from the OS in the agent).
#[derive(Debug)]
pub struct AgentSession<R> {
    config: AgentSessionConfig,
    rng: R,
    backoff: Backoff,
    /// Consecutive failed attempts central did not refuse outright: each makes the next one
    /// more patient. A refusal is central shedding load at once, not a slow handshake, so it
    /// leaves the patience as it is.
    patience: u32,
    address: usize,
    phase: Phase,
    conn: Option<Conn>,
    /// When the back-off wait ends.
    retry_at: Option<Millis>,
    held: Generation,
    applied: Generation,
    acked: Sequence,
    actions: VecDeque<AgentAction>,
}

impl<R: RngCore> AgentSession<R> {
    /// A machine that has not started.
    pub fn new(config: AgentSessionConfig, rng: R) -> Self {
        AgentSession {
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            config,
            rng,
            patience: 0,
            address: 0,
            phase: Phase::Idle,
            conn: None,
            retry_at: None,
            held: Generation::new(0),
            applied: Generation::new(0),
            acked: Sequence::new(0),
            actions: VecDeque::new(),
        }
    }

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<AgentAction> {
        self.actions.pop_front()
    }

    /// Where the machine is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The generation held, as far as this machine has seen (journal at the last `Hello`,
    /// then every intent persisted).
    pub fn held(&self) -> Generation {
        self.held
    }

    /// The generation applied, as far as this machine has seen.
    pub fn applied(&self) -> Generation {
        self.applied
    }

    /// The highest report sequence central acknowledged.
    pub fn acked(&self) -> Sequence {
        self.acked
    }

    /// The last sequence of the report batch awaiting its acknowledgement.
    pub fn reports_in_flight(&self) -> Option<Sequence> {
        self.conn.as_ref().and_then(|c| c.in_flight)
    }

    /// The back-off schedule (its ceiling is the bound of the next delay).
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The patience the next connection attempt gets.
    pub fn patience(&self) -> u32 {
        self.patience
    }

    /// The address index the next connection attempt uses.
    pub fn address(&self) -> usize {
        self.address
    }

    /// Feeds one event at time `now`; the actions it calls for are queued for
    /// [`AgentSession::poll_action`].
    pub fn handle(&mut self, now: Millis, event: AgentEvent) {
        match event {
            AgentEvent::Start => {
                if self.phase == Phase::Idle {
                    self.connect();
                }
            }
            AgentEvent::Connected(snapshot) => self.on_connected(now, snapshot),
            AgentEvent::AttemptFailed(failure) => {
                if matches!(self.phase, Phase::Connecting | Phase::Open | Phase::Closing) {
                    if failure != Failure::Refused {
                        self.patience = self.patience.saturating_add(1);
                    }
                    if failure == Failure::Unreachable {
                        self.address = self.address.wrapping_add(1);
                    }
                    self.retry_later(now);
                }
            }
            AgentEvent::SessionLost => {
                if matches!(self.phase, Phase::Connecting | Phase::Open | Phase::Closing) {
                    self.backoff.reset();
                    self.patience = 0;
                    self.retry_later(now);
                }
            }
            AgentEvent::Received(msg) => self.on_message(now, msg),
            AgentEvent::Persisted { outcome, applied } => self.on_persisted(outcome, applied),
            AgentEvent::Handed { result, latest } => self.on_handed(result, latest),
            AgentEvent::ReportsLoaded { reports, dropped } => {
                let Some(conn) = self.conn.as_mut() else {
                    return;
                };
                let (Some(first), Some(last)) = (reports.first(), reports.last()) else {
                    return;
                };
                let (first, last) = (first.sequence, last.sequence);
                conn.in_flight = Some(Sequence::new(last));
                self.actions
                    .push_back(AgentAction::Send(AgentKind::ReportBatch(
                        proto::ReportBatch {
                            first_sequence: first,
                            reports,
                            dropped,
                        },
                    )));
            }
            AgentEvent::ReportsReady => self.send_reports(),
            AgentEvent::Concluded(outcome) => {
                if self.phase == Phase::Open {
                    self.send_outcome(outcome);
                }
            }
            AgentEvent::RenewalRequested { csr_pem } => {
                if let Some(conn) = self.conn.as_mut()
                    && !conn.renewing
                {
                    conn.renewing = true;
                    self.actions
                        .push_back(AgentAction::Send(AgentKind::CertRenewRequest(
                            proto::CertRenewRequest { csr_pem },
                        )));
                }
            }
            AgentEvent::Timer => self.on_timer(now),
            AgentEvent::Stop => {
                if self.phase == Phase::Open {
                    self.actions
                        .push_back(AgentAction::Close(AgentClose::Stopping));
                } else {
                    self.actions.push_back(AgentAction::CancelTimer);
                }
                self.phase = Phase::Stopped;
                self.conn = None;
                self.retry_at = None;
            }
        }
    }

    fn connect(&mut self) {
        self.phase = Phase::Connecting;
        self.conn = None;
        self.retry_at = None;
        self.actions.push_back(AgentAction::Connect {
            address: self.address,
            patience: self.patience,
        });
    }

    fn retry_later(&mut self, now: Millis) {
        self.conn = None;
        let delay = self.backoff.next_delay(&mut self.rng);
        let at = now.after(delay);
        self.phase = Phase::Waiting;
        self.retry_at = Some(at);
        self.actions.push_back(AgentAction::SetTimer(at));
    }

    fn on_connected(&mut self, now: Millis, snapshot: Snapshot) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.held = snapshot.held;
        self.applied = snapshot.applied;
        self.acked = snapshot.acked;
        let hello = proto::Hello {
            site: snapshot.site.as_str().to_owned(),
            agent_version: self.config.agent_version.clone(),
            applied_generation: snapshot.applied.get(),
            last_acked_sequence: snapshot.acked.get(),
            held_generation: snapshot.held.get(),
        };
        self.phase = Phase::Open;
        self.conn = Some(Conn {
            site: snapshot.site,
            in_flight: None,
            renewing: false,
            last_heard: now,
            tick: now,
            pending: None,
        });
        self.actions
            .push_back(AgentAction::Send(AgentKind::Hello(hello)));
        self.actions.push_back(AgentAction::Established);
        // The first heartbeat is due at once, after the replayed reports.
        self.actions.push_back(AgentAction::SetTimer(now));
        self.send_reports();
    }

    fn on_timer(&mut self, now: Millis) {
        match self.phase {
            Phase::Waiting => match self.retry_at {
                Some(at) if now >= at => self.connect(),
                Some(at) => self.actions.push_back(AgentAction::SetTimer(at)),
                None => self.connect(),
            },
            Phase::Open => {
                let heartbeat = self.config.heartbeat;
                let Some(conn) = self.conn.as_mut() else {
                    return;
                };
                if now < conn.tick {
                    self.actions.push_back(AgentAction::SetTimer(conn.tick));
                    return;
                }
                if now.since(conn.last_heard) > heartbeat * SILENT_PERIODS {
                    self.phase = Phase::Closing;
                    self.actions
                        .push_back(AgentAction::Close(AgentClose::Silent));
                    return;
                }
                // Ticks keep their rhythm; a late one (the agent was busy) delays the next.
                let next = conn.tick.after(heartbeat);
                conn.tick = if next > now {
                    next
                } else {
                    now.after(heartbeat)
                };
                let renewing = conn.renewing;
                self.actions.push_back(AgentAction::Heartbeat);
                self.actions.push_back(AgentAction::SetTimer(conn.tick));
                if !renewing {
                    self.actions.push_back(AgentAction::RenewIfDue);
                }
            }
            _ => {}
        }
    }

    fn on_message(&mut self, now: Millis, msg: proto::CentralMessage) {
        if self.phase != Phase::Open {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.last_heard = now;
        match msg.kind {
            None | Some(CentralKind::Heartbeat(_)) => {}
            Some(CentralKind::ReportAck(ack)) => {
                let hw = Sequence::new(ack.high_water_sequence);
                self.acked = self.acked.max(hw);
                if conn.in_flight.is_some_and(|s| s <= hw) {
                    conn.in_flight = None;
                }
                self.actions.push_back(AgentAction::Trim(hw));
                self.send_reports();
            }
            Some(CentralKind::CertRenewResponse(r)) => {
                if conn.renewing {
                    conn.renewing = false;
                    self.actions.push_back(AgentAction::InstallCertificate(r));
                }
            }
            Some(CentralKind::IntentPush(push)) => self.on_push(push),
        }
    }

    /// Asks for the next batch if none is in flight (one at a time, from the last
    /// acknowledgement).
    fn send_reports(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        if self.conn.as_ref().is_some_and(|c| c.in_flight.is_none()) {
            self.actions.push_back(AgentAction::LoadReports {
                after: self.acked,
                limit: self.config.report_batch_max,
            });
        }
    }

    fn ack(&mut self, generation: u64, status: proto::IntentAckStatus, reason: String) {
        self.actions
            .push_back(AgentAction::Send(AgentKind::IntentAck(proto::IntentAck {
                generation,
                status: status as i32,
                reason,
            })));
    }

    fn send_outcome(&mut self, outcome: Outcome) {
        use proto::IntentAckStatus as S;
        match outcome {
            Outcome::Applied(g) => self.ack(g.get(), S::Applied, String::new()),
            Outcome::Failed { generation, reason } => self.ack(generation.get(), S::Failed, reason),
        }
    }

    fn refuse(&mut self, generation: Generation, held: Generation) {
        self.actions
            .push_back(AgentAction::Refused { generation, held });
        self.ack(
            generation.get(),
            proto::IntentAckStatus::Failed,
            format!("generation {generation} is older than the held generation {held}; refused"),
        );
    }

    fn on_push(&mut self, push: proto::IntentPush) {
        use proto::IntentAckStatus as S;
        let generation = push.generation;
        let intent = match push.intent.map(SiteIntent::try_from) {
            Some(Ok(i)) => i,
            Some(Err(e)) => {
                return self.ack(
                    generation,
                    S::Failed,
                    format!("intent does not convert: {e}"),
                );
            }
            None => return self.ack(generation, S::Failed, "push without an intent".into()),
        };
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if intent.site != conn.site || intent.generation != Generation::new(generation) {
            return self.ack(
                generation,
                S::Failed,
                "intent is for another site or generation".into(),
            );
        }
        // Fencing: an older generation than the one held never reaches the journal (which
        // refuses it too, atomically, should this view be behind).
        if intent.generation < self.held {
            return self.refuse(intent.generation, self.held);
        }
        let intent = Arc::new(intent);
        conn.pending = Some(Pending::Persist(Arc::clone(&intent)));
        self.actions.push_back(AgentAction::Persist(intent));
    }

    fn on_persisted(&mut self, outcome: PersistOutcome, applied: Generation) {
        use proto::IntentAckStatus as S;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(Pending::Persist(intent)) = conn.pending.take() else {
            return;
        };
        let generation = intent.generation;
        match outcome {
            PersistOutcome::Stale { held } => {
                self.held = self.held.max(held);
                self.refuse(generation, held);
            }
            PersistOutcome::Stored | PersistOutcome::AlreadyHeld => {
                self.held = self.held.max(generation);
                self.applied = self.applied.max(applied);
                // Persisted (flushed) before this acknowledgement.
                self.ack(generation.get(), S::Received, String::new());
                if applied >= generation {
                    return self.ack(generation.get(), S::Applied, String::new());
                }
                if let Some(conn) = self.conn.as_mut() {
                    conn.pending = Some(Pending::Hand(Arc::clone(&intent)));
                }
                self.actions.push_back(AgentAction::Hand(intent));
            }
        }
    }

    fn on_handed(&mut self, result: Result<(), String>, latest: Option<Outcome>) {
        use proto::IntentAckStatus as S;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(Pending::Hand(intent)) = conn.pending.take() else {
            return;
        };
        let generation = intent.generation;
        match result {
            Err(reason) => self.ack(generation.get(), S::Failed, reason),
            Ok(()) if self.config.background_reconciler => {
                // `APPLIED` or `FAILED` follows from the reconciler's announcement; a re-push
                // of a generation it already concluded on gets that conclusion again.
                if let Some(known) = latest.filter(|c| c.generation() == generation) {
                    self.send_outcome(known);
                }
            }
            Ok(()) => {
                self.applied = self.applied.max(generation);
                self.ack(generation.get(), S::Applied, String::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn config() -> AgentSessionConfig {
        AgentSessionConfig {
            heartbeat: Duration::from_millis(1000),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            report_batch_max: 4,
            background_reconciler: false,
            agent_version: "test".into(),
        }
    }

    fn site() -> SiteId {
        SiteId::parse("site-a").unwrap()
    }

    fn drain(m: &mut AgentSession<StdRng>) -> Vec<AgentAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn open(held: u64) -> AgentSession<StdRng> {
        let mut m = AgentSession::new(config(), StdRng::seed_from_u64(1));
        m.handle(Millis(0), AgentEvent::Start);
        m.handle(
            Millis(0),
            AgentEvent::Connected(Snapshot {
                site: site(),
                held: Generation::new(held),
                applied: Generation::new(held),
                acked: Sequence::new(0),
            }),
        );
        drain(&mut m);
        m.handle(
            Millis(0),
            AgentEvent::ReportsLoaded {
                reports: vec![],
                dropped: 0,
            },
        );
        m
    }

    fn push(g: u64) -> AgentEvent {
        AgentEvent::Received(proto::CentralMessage {
            kind: Some(CentralKind::IntentPush(proto::IntentPush {
                generation: g,
                intent: Some(SiteIntent::empty(site(), Generation::new(g)).into()),
            })),
        })
    }

    fn acks(actions: &[AgentAction]) -> Vec<(u64, i32)> {
        actions
            .iter()
            .filter_map(|a| match a {
                AgentAction::Send(AgentKind::IntentAck(a)) => Some((a.generation, a.status)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn start_connects_and_hello_carries_the_journal_marks() {
        let mut m = AgentSession::new(config(), StdRng::seed_from_u64(1));
        m.handle(Millis(0), AgentEvent::Start);
        assert_eq!(
            drain(&mut m),
            vec![AgentAction::Connect {
                address: 0,
                patience: 0
            }]
        );
        m.handle(
            Millis(5),
            AgentEvent::Connected(Snapshot {
                site: site(),
                held: Generation::new(4),
                applied: Generation::new(3),
                acked: Sequence::new(9),
            }),
        );
        let actions = drain(&mut m);
        assert_eq!(
            actions[0],
            AgentAction::Send(AgentKind::Hello(proto::Hello {
                site: "site-a".into(),
                agent_version: "test".into(),
                applied_generation: 3,
                last_acked_sequence: 9,
                held_generation: 4,
            }))
        );
        assert_eq!(actions[1], AgentAction::Established);
        assert_eq!(actions[2], AgentAction::SetTimer(Millis(5)));
        assert_eq!(
            actions[3],
            AgentAction::LoadReports {
                after: Sequence::new(9),
                limit: 4
            }
        );
        assert_eq!(actions.len(), 4);
    }

    #[test]
    fn a_push_is_persisted_before_it_is_acknowledged() {
        use proto::IntentAckStatus as S;
        let mut m = open(1);
        m.handle(Millis(10), push(2));
        let actions = drain(&mut m);
        assert!(
            matches!(&actions[..], [AgentAction::Persist(i)] if i.generation == Generation::new(2))
        );
        assert!(acks(&actions).is_empty(), "acknowledged before persisting");
        m.handle(
            Millis(11),
            AgentEvent::Persisted {
                outcome: PersistOutcome::Stored,
                applied: Generation::new(1),
            },
        );
        let actions = drain(&mut m);
        assert_eq!(acks(&actions), vec![(2, S::Received as i32)]);
        assert!(
            matches!(actions.last(), Some(AgentAction::Hand(i)) if i.generation == Generation::new(2))
        );
        m.handle(
            Millis(12),
            AgentEvent::Handed {
                result: Ok(()),
                latest: None,
            },
        );
        assert_eq!(acks(&drain(&mut m)), vec![(2, S::Applied as i32)]);
        assert_eq!(
            (m.held(), m.applied()),
            (Generation::new(2), Generation::new(2))
        );
    }

    #[test]
    fn the_journal_fences_too_when_this_view_is_behind() {
        use proto::IntentAckStatus as S;
        let mut m = open(1);
        m.handle(Millis(10), push(3));
        drain(&mut m);
        m.handle(
            Millis(11),
            AgentEvent::Persisted {
                outcome: PersistOutcome::Stale {
                    held: Generation::new(7),
                },
                applied: Generation::new(1),
            },
        );
        let actions = drain(&mut m);
        assert_eq!(
            actions[0],
            AgentAction::Refused {
                generation: Generation::new(3),
                held: Generation::new(7)
            }
        );
        assert_eq!(acks(&actions), vec![(3, S::Failed as i32)]);
        assert_eq!(m.held(), Generation::new(7));
        // From now on the machine refuses without asking the journal.
        m.handle(Millis(12), push(5));
        let actions = drain(&mut m);
        assert!(!actions.iter().any(|a| matches!(a, AgentAction::Persist(_))));
        assert_eq!(acks(&actions), vec![(5, S::Failed as i32)]);
    }

    #[test]
    fn bad_pushes_are_refused_without_touching_the_journal() {
        let mut m = open(1);
        m.handle(
            Millis(1),
            AgentEvent::Received(proto::CentralMessage {
                kind: Some(CentralKind::IntentPush(proto::IntentPush {
                    generation: 4,
                    intent: None,
                })),
            }),
        );
        m.handle(
            Millis(1),
            AgentEvent::Received(proto::CentralMessage {
                kind: Some(CentralKind::IntentPush(proto::IntentPush {
                    generation: 4,
                    intent: Some(
                        SiteIntent::empty(SiteId::parse("site-b").unwrap(), Generation::new(4))
                            .into(),
                    ),
                })),
            }),
        );
        let reasons: Vec<String> = drain(&mut m)
            .into_iter()
            .map(|a| match a {
                AgentAction::Send(AgentKind::IntentAck(a)) => a.reason,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                "push without an intent".to_string(),
                "intent is for another site or generation".to_string()
            ]
        );
    }

    #[test]
    fn a_background_reconciler_acknowledges_through_its_conclusions() {
        use proto::IntentAckStatus as S;
        let mut m = AgentSession::new(
            AgentSessionConfig {
                background_reconciler: true,
                ..config()
            },
            StdRng::seed_from_u64(1),
        );
        m.handle(Millis(0), AgentEvent::Start);
        m.handle(
            Millis(0),
            AgentEvent::Connected(Snapshot {
                site: site(),
                held: Generation::new(0),
                applied: Generation::new(0),
                acked: Sequence::new(0),
            }),
        );
        drain(&mut m);
        m.handle(Millis(1), push(2));
        m.handle(
            Millis(1),
            AgentEvent::Persisted {
                outcome: PersistOutcome::Stored,
                applied: Generation::new(0),
            },
        );
        m.handle(
            Millis(1),
            AgentEvent::Handed {
                result: Ok(()),
                latest: Some(Outcome::Applied(Generation::new(1))),
            },
        );
        // Only RECEIVED: the known conclusion is about another generation.
        assert_eq!(acks(&drain(&mut m)), vec![(2, S::Received as i32)]);
        m.handle(
            Millis(2),
            AgentEvent::Concluded(Outcome::Failed {
                generation: Generation::new(2),
                reason: "no".into(),
            }),
        );
        assert_eq!(acks(&drain(&mut m)), vec![(2, S::Failed as i32)]);
    }

    #[test]
    fn one_report_batch_in_flight_until_acknowledged() {
        let mut m = open(0);
        let report = |s: u64| proto::SiteReport {
            site: "site-a".into(),
            sequence: s,
            ..Default::default()
        };
        m.handle(Millis(1), AgentEvent::ReportsReady);
        assert_eq!(
            drain(&mut m),
            vec![AgentAction::LoadReports {
                after: Sequence::new(0),
                limit: 4
            }]
        );
        m.handle(
            Millis(1),
            AgentEvent::ReportsLoaded {
                reports: vec![report(1), report(3)],
                dropped: 2,
            },
        );
        let actions = drain(&mut m);
        assert!(
            matches!(&actions[..], [AgentAction::Send(AgentKind::ReportBatch(b))]
            if b.first_sequence == 1 && b.reports.len() == 2 && b.dropped == 2)
        );
        assert_eq!(m.reports_in_flight(), Some(Sequence::new(3)));
        m.handle(Millis(2), AgentEvent::ReportsReady);
        assert!(
            drain(&mut m).is_empty(),
            "a second batch while one is in flight"
        );
        // An acknowledgement short of the batch trims but keeps waiting.
        m.handle(
            Millis(3),
            AgentEvent::Received(proto::CentralMessage {
                kind: Some(CentralKind::ReportAck(proto::ReportAck {
                    high_water_sequence: 1,
                })),
            }),
        );
        assert_eq!(drain(&mut m), vec![AgentAction::Trim(Sequence::new(1))]);
        m.handle(
            Millis(4),
            AgentEvent::Received(proto::CentralMessage {
                kind: Some(CentralKind::ReportAck(proto::ReportAck {
                    high_water_sequence: 3,
                })),
            }),
        );
        assert_eq!(
            drain(&mut m),
            vec![
                AgentAction::Trim(Sequence::new(3)),
                AgentAction::LoadReports {
                    after: Sequence::new(3),
                    limit: 4
                }
            ]
        );
        assert_eq!(m.acked(), Sequence::new(3));
        assert_eq!(m.reports_in_flight(), None);
    }

    #[test]
    fn renewal_responses_are_taken_only_when_asked_for() {
        let mut m = open(0);
        let response = || {
            AgentEvent::Received(proto::CentralMessage {
                kind: Some(CentralKind::CertRenewResponse(proto::CertRenewResponse {
                    certificate_chain_pem: "pem".into(),
                    not_after: 9,
                })),
            })
        };
        m.handle(Millis(1), response());
        assert!(drain(&mut m).is_empty());
        m.handle(Millis(0), AgentEvent::Timer);
        let actions = drain(&mut m);
        assert_eq!(actions.last(), Some(&AgentAction::RenewIfDue));
        m.handle(
            Millis(0),
            AgentEvent::RenewalRequested {
                csr_pem: "csr".into(),
            },
        );
        assert!(
            matches!(&drain(&mut m)[..], [AgentAction::Send(AgentKind::CertRenewRequest(r))] if r.csr_pem == "csr")
        );
        // While renewing, no further RenewIfDue.
        m.handle(Millis(1000), AgentEvent::Timer);
        assert!(!drain(&mut m).contains(&AgentAction::RenewIfDue));
        m.handle(Millis(1001), response());
        assert!(
            matches!(&drain(&mut m)[..], [AgentAction::InstallCertificate(r)] if r.not_after == 9)
        );
    }

    #[test]
    fn stopping_closes_an_open_session_and_ends_the_machine() {
        let mut m = open(0);
        m.handle(Millis(1), AgentEvent::Stop);
        assert_eq!(
            drain(&mut m),
            vec![AgentAction::Close(AgentClose::Stopping)]
        );
        m.handle(Millis(2), AgentEvent::SessionLost);
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.phase(), Phase::Stopped);
    }
}
