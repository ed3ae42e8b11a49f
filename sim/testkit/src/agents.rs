//! Site agents in this process, with real agent code.

use std::path::Path;
use std::sync::Arc;

use meridian_agent::Agent;
use meridian_agent::config::AgentConfig;
use meridian_agent::reconciler::RecordingReconciler;

/// An agent's configuration for tests: data in `data_dir`, enrolling with `bootstrap`, any
/// free port of 127.0.0.1, a heartbeat every `heartbeat_ms`, quick reconnects.
pub fn config(data_dir: &Path, bootstrap: &Path, heartbeat_ms: u64) -> AgentConfig {
    AgentConfig {
        data_dir: data_dir.to_owned(),
        bootstrap_file: bootstrap.to_owned(),
        bind: "127.0.0.1:0".parse().expect("valid address"),
        heartbeat_interval_ms: heartbeat_ms,
        backoff_initial_ms: 50,
        backoff_max_ms: (heartbeat_ms / 2).max(50),
        ..AgentConfig::default()
    }
}

/// Starts an agent whose reconciler records what it was asked to apply (no hardware).
pub async fn start_recording(
    config: AgentConfig,
) -> Result<(Agent, Arc<RecordingReconciler>), meridian_agent::AgentError> {
    let rec = Arc::new(RecordingReconciler::default());
    let agent = Agent::start(config, rec.clone()).await?;
    Ok((agent, rec))
}
