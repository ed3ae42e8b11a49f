//! `meridian-sim`: the fleet simulator. `demo` is the README's main job.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meridian_common::telemetry::{self, TelemetryConfig};
use meridian_sim::demo::{self, DemoOptions};

/// Meridian fleet simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a fleet, load it into a real central and summarise what central holds.
    Demo {
        /// Sites in the fleet (99 edge sites per core site; 10000 is the benchmark fleet).
        #[arg(long, default_value_t = 1_000)]
        sites: usize,
        /// Seed of the fleet generator; the same seed gives the same fleet everywhere.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Central's data directory (must be empty); a temporary one by default.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Keep central running after the summary, until Ctrl-C or SIGTERM.
        #[arg(long)]
        serve: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _ = telemetry::init(&TelemetryConfig {
        filter: "warn".into(),
        ..TelemetryConfig::default()
    });
    match args.command {
        Command::Demo {
            sites,
            seed,
            data_dir,
            serve,
        } => {
            let options = DemoOptions {
                sites,
                seed,
                data_dir,
                ..DemoOptions::default()
            };
            let mut out = std::io::stdout();
            let (central, report, _temp) = match demo::run(&options, &mut out).await {
                Ok(done) => done,
                Err(e) => {
                    eprintln!("meridian-sim demo: {}", telemetry::error_chain(&e));
                    return ExitCode::FAILURE;
                }
            };
            println!("{report}");
            if serve {
                println!(
                    "central is running on {}; press Ctrl-C to stop",
                    central.config().data_dir.display()
                );
                meridian_central::server::shutdown_signal().await;
            }
            if tokio::time::timeout(demo::SHUTDOWN_GRACE, central.shutdown())
                .await
                .is_err()
            {
                eprintln!(
                    "meridian-sim demo: central did not stop within {:?}",
                    demo::SHUTDOWN_GRACE
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
    }
}
