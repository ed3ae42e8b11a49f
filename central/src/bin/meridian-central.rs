//! `meridian-central`: the orchestrator server. Parses its config, sets up telemetry, starts
//! the library and waits for SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use meridian_central::config::{CentralConfig, ENV_PREFIX};
use meridian_central::server::Central;
use meridian_common::config::{EXIT_BAD_CONFIG, ProcessEnv};

/// Meridian central orchestrator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; `MERIDIAN_CENTRAL_*` variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config: CentralConfig =
        match meridian_common::config::load(args.config.as_deref(), ENV_PREFIX, &ProcessEnv) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("meridian-central: bad configuration: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG as u8);
            }
        };
    if args.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = meridian_common::telemetry::init(&config.telemetry) {
        eprintln!("meridian-central: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG as u8);
    }
    let central = match Central::open(config).await {
        Ok(central) => central,
        Err(e) => {
            tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "central failed to start");
            return ExitCode::FAILURE;
        }
    };
    meridian_central::server::shutdown_signal().await;
    tracing::info!("shutting down");
    central.shutdown().await;
    ExitCode::SUCCESS
}
