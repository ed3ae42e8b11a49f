//! Many real [`Agent`]s in one process: each keeps its store in memory (simulated agents never
//! restart within a run) and they share a few QUIC client endpoints. Used by [`super::SimFleet`] and by
//! `meridian-sim bench channel`'s agent process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meridian_agent::config::AgentConfig;
use meridian_agent::reconciler::Reconciler;
use meridian_agent::store::AgentStore;
use meridian_agent::{Agent, AgentError};

/// At most this many started agents may still be waiting for their first session when the
/// next one starts (see [`EnrolWindow`]).
pub const ENROL_WINDOW: usize = 256;

/// Starts a large fleet no faster than central enrols it. Started all at once, 10,000 agents
/// on this 2-core machine collapsed: handshakes timed out while central was saturated, the
/// retries (every second at most, as the simulator configures) added load, and in three of
/// four runs not every agent had a session after 10 minutes. Real fleets do not boot in the
/// same second either; the reconnect storm (B3) still has every agent come back at once.
#[derive(Debug, Default)]
pub struct EnrolWindow {
    /// Agents below this index have had a session.
    settled: usize,
}

impl EnrolWindow {
    /// Waits until fewer than [`ENROL_WINDOW`] of the first `started` agents are without their
    /// first session; `connected(i)` says whether agent `i` has one now.
    pub async fn room(&mut self, started: usize, connected: impl Fn(usize) -> bool) {
        loop {
            while self.settled < started && connected(self.settled) {
                self.settled += 1;
            }
            let waiting = (self.settled..started).filter(|&i| !connected(i)).count();
            if waiting < ENROL_WINDOW {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Why an agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AgentPoolError {
    #[error("agent {0} could not start")]
    Agent(usize, #[source] AgentError),
}

/// The databases and endpoints simulated agents share; see the module documentation.
#[derive(Debug)]
pub struct AgentPool {
    dir: PathBuf,
    endpoints: Vec<quinn::Endpoint>,
}

impl AgentPool {
    /// A pool in `dir` (bootstrap files) over `endpoints` QUIC endpoints (at least one).
    pub fn open(dir: &Path, endpoints: usize) -> Result<AgentPool, AgentPoolError> {
        let endpoints = (0..endpoints.max(1))
            .map(|_| Agent::shared_endpoint("127.0.0.1:0".parse().expect("valid")))
            .collect::<Result<_, _>>()
            .map_err(|e| AgentPoolError::Agent(0, e))?;
        Ok(AgentPool {
            dir: dir.to_owned(),
            endpoints,
        })
    }

    /// The configuration of simulated agent `i`: its bootstrap file in `boot/{i}.toml` under
    /// the pool's directory, quick reconnects.
    pub fn config(&self, i: usize, heartbeat_ms: u64) -> AgentConfig {
        AgentConfig {
            data_dir: PathBuf::from("unused"),
            bootstrap_file: self.bootstrap_path(i),
            heartbeat_interval_ms: heartbeat_ms,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..AgentConfig::default()
        }
    }

    /// Where agent `i`'s bootstrap file goes.
    pub fn bootstrap_path(&self, i: usize) -> PathBuf {
        self.dir.join("boot").join(format!("{i}.toml"))
    }

    /// Starts agent `i` (an in-memory store, an endpoint shared round-robin).
    pub async fn start(
        &self,
        i: usize,
        config: AgentConfig,
        reconciler: Arc<dyn Reconciler>,
    ) -> Result<Agent, AgentPoolError> {
        Agent::start_on_endpoint(
            config,
            AgentStore::in_memory(),
            reconciler,
            self.endpoints[i % self.endpoints.len()].clone(),
        )
        .await
        .map_err(|e| AgentPoolError::Agent(i, e))
    }

    /// Closes the shared endpoints (after the agents stopped).
    pub async fn close(self) {
        for e in &self.endpoints {
            e.close(0u32.into(), b"simulation over");
        }
        for e in &self.endpoints {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), e.wait_idle()).await;
        }
    }
}
