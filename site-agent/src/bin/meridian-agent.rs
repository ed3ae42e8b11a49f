//! `meridian-agent`: the site agent. Parses its config, sets up telemetry, starts the library
//! and `/metrics` (`[metrics]`), and waits for SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use meridian_agent::Agent;
use meridian_agent::config::{AgentConfig, ENV_PREFIX};
use meridian_agent::metrics::{MetricsServer, MetricsSources};
use meridian_agent::reconciler::{Reconciler, RecordingReconciler};
use meridian_common::config::{EXIT_BAD_CONFIG, ProcessEnv};

/// Meridian site agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; `MERIDIAN_AGENT_*` variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config: AgentConfig =
        match meridian_common::config::load(args.config.as_deref(), ENV_PREFIX, &ProcessEnv) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("meridian-agent: bad configuration: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG as u8);
            }
        };
    // Builds the drivers (reads credential and CA files): a failure is a configuration error.
    let site = match meridian_agent::wiring::site_reconciler(&config) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("meridian-agent: bad configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    if args.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = meridian_common::telemetry::init(&config.telemetry) {
        eprintln!("meridian-agent: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG as u8);
    }
    let stop = shutdown_signal();
    let metrics_listen = config.metrics.address();
    let metrics_reconciler = site.clone();
    // Without servers the agent drives no hardware: it keeps, acknowledges and records intents.
    let reconciler: Arc<dyn Reconciler> = match site {
        Some(site) => {
            tracing::info!(
                servers = config.servers.len(),
                "reconciling the site's servers"
            );
            Arc::new(site)
        }
        None => Arc::new(RecordingReconciler::default()),
    };
    let agent = match Agent::start(config, reconciler).await {
        Ok(agent) => agent,
        Err(e) => {
            tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "agent failed to start");
            return ExitCode::FAILURE;
        }
    };
    // A metrics port that cannot be bound is logged, not fatal: the site stays managed.
    let metrics = match metrics_listen {
        Some(listen) => {
            let sources = MetricsSources {
                store: agent.store().clone(),
                reconciler: metrics_reconciler,
            };
            match MetricsServer::start(listen, sources).await {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(%listen, error = %e, "cannot serve /metrics; running without it");
                    None
                }
            }
        }
        None => None,
    };
    stop.await;
    tracing::info!("shutting down");
    if let Some(metrics) = metrics {
        metrics.shutdown().await;
    }
    agent.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGINT or SIGTERM; handlers installed at the call, before the agent starts.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (interrupt, term) {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
