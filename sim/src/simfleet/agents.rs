//! Many real [`Agent`]s in one process: they share a few sled databases (a set of trees per
//! agent) and a few QUIC client endpoints. Used by [`super::SimFleet`] and by
//! `meridian-sim bench channel`'s agent process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meridian_agent::config::AgentConfig;
use meridian_agent::reconciler::Reconciler;
use meridian_agent::store::AgentStore;
use meridian_agent::{Agent, AgentError};

/// Simulated agents sharing one sled database.
///
/// sled keeps every tree's root in one meta tree that it rewrites when trees change, so
/// thousands of agents (three trees each) in one database cost quadratic time and disk; a
/// database per `AGENTS_PER_DB` agents keeps that bounded.
pub const AGENTS_PER_DB: usize = 500;

/// Why an agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AgentPoolError {
    #[error("cannot open the agents' database in {path}")]
    Db {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("agent {0} could not start")]
    Agent(usize, #[source] AgentError),
    #[error("cannot open agent {0}'s trees")]
    Store(usize, #[source] meridian_agent::store::AgentStoreError),
}

/// The databases and endpoints simulated agents share; see the module documentation.
#[derive(Debug)]
pub struct AgentPool {
    dir: PathBuf,
    dbs: Vec<sled::Db>,
    endpoints: Vec<quinn::Endpoint>,
}

impl AgentPool {
    /// A pool in `dir` for up to `count` agents over `endpoints` QUIC endpoints (at least one).
    pub fn open(dir: &Path, count: usize, endpoints: usize) -> Result<AgentPool, AgentPoolError> {
        let dbs = (0..count.div_ceil(AGENTS_PER_DB).max(1))
            .map(|i| {
                let path = dir.join(format!("agents-db-{i}"));
                sled::Config::new()
                    .path(&path)
                    .cache_capacity(16 * 1024 * 1024)
                    .open()
                    .map_err(|source| AgentPoolError::Db { path, source })
            })
            .collect::<Result<_, _>>()?;
        let endpoints = (0..endpoints.max(1))
            .map(|_| Agent::shared_endpoint("127.0.0.1:0".parse().expect("valid")))
            .collect::<Result<_, _>>()
            .map_err(|e| AgentPoolError::Agent(0, e))?;
        Ok(AgentPool {
            dir: dir.to_owned(),
            dbs,
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

    /// Starts agent `i` (its trees `a{i}/` in its database, an endpoint shared round-robin).
    pub async fn start(
        &self,
        i: usize,
        config: AgentConfig,
        reconciler: Arc<dyn Reconciler>,
    ) -> Result<Agent, AgentPoolError> {
        let store = AgentStore::in_db(
            self.dbs[(i / AGENTS_PER_DB) % self.dbs.len()].clone(),
            &format!("a{i}/"),
        )
        .map_err(|e| AgentPoolError::Store(i, e))?;
        Agent::start_on_endpoint(
            config,
            store,
            reconciler,
            self.endpoints[i % self.endpoints.len()].clone(),
        )
        .await
        .map_err(|e| AgentPoolError::Agent(i, e))
    }

    /// Closes the shared endpoints (after the agents stopped) and flushes the databases.
    pub async fn close(self) {
        for e in &self.endpoints {
            e.close(0u32.into(), b"simulation over");
        }
        for e in &self.endpoints {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), e.wait_idle()).await;
        }
        for db in &self.dbs {
            let _ = db.flush_async().await;
        }
    }
}
