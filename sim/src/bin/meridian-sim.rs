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
    /// Run an emulated Redfish BMC until Ctrl-C or SIGTERM.
    Bmc {
        /// `gpu-server` (8x H100) or `bluefield3`.
        #[arg(long, default_value = "gpu-server")]
        profile: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
        /// Administrator user name.
        #[arg(long, default_value = meridian_sim::redfish::BmcEmulator::DEFAULT_USER)]
        user: String,
        /// Administrator password.
        #[arg(long, default_value = meridian_sim::redfish::BmcEmulator::DEFAULT_PASSWORD)]
        password: String,
        /// Serve HTTPS with a self-signed certificate, written to this file (PEM).
        #[arg(long)]
        https_cert_out: Option<PathBuf>,
    },
    /// Run benchmarks and print their figures beside the targets.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// B1: placement throughput and latency, and its growth with fleet size.
    Placement {
        /// Also measure a 50,000-site fleet.
        #[arg(long)]
        full: bool,
        /// Decisions per measured run.
        #[arg(long, default_value_t = 20_000)]
        workloads: usize,
        /// Seed of the fleet and the workloads.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// B9: the tenant gRPC API (authenticated GetWorkload and DryRun) under load; then R9
    /// (a tenant flooding past its rate limit beside a steady one).
    Api {
        /// 10,000 sites and 15 s phases instead of 1,000 sites and 5 s.
        #[arg(long)]
        full: bool,
        /// HTTP/2 connections of the load generator.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
    },
    /// B2, B3, B4, B7: the agent channel with N simulated agents (1,000; 10,000 with --full).
    Channel {
        /// N = 10,000 simulated agents (unless --agents says otherwise).
        #[arg(long)]
        full: bool,
        /// Simulated agents.
        #[arg(long)]
        agents: Option<usize>,
        /// Heartbeat period of the simulated agents, ms.
        #[arg(long, default_value_t = 5_000)]
        heartbeat_ms: u64,
        /// QUIC endpoints the simulated agents share.
        #[arg(long, default_value_t = 16)]
        endpoints: usize,
    },
    /// The child process of `bench channel` (its simulated agents).
    #[command(hide = true)]
    ChannelAgents {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        heartbeat_ms: u64,
        #[arg(long)]
        endpoints: usize,
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
        Command::Bmc {
            profile,
            listen,
            user,
            password,
            https_cert_out,
        } => run_bmc(&profile, listen, user, password, https_cert_out).await,
        Command::Bench {
            which:
                BenchCommand::Placement {
                    full,
                    workloads,
                    seed,
                },
        } => {
            bench_placement(full, workloads, seed);
            ExitCode::SUCCESS
        }
        Command::Bench {
            which:
                BenchCommand::Api {
                    full,
                    connections,
                    in_flight,
                },
        } => {
            let options = meridian_sim::bench::api::ApiBenchOptions {
                sites: if full { 10_000 } else { 1_000 },
                seconds: if full { 15 } else { 5 },
                connections: connections.max(1),
                in_flight: in_flight.max(1),
            };
            let noisy_seconds = if full { 10 } else { 4 };
            let result = match meridian_sim::bench::api::run(&options).await {
                Ok(_) => meridian_sim::bench::noisy::run(noisy_seconds)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench api: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::Channel {
                    full,
                    agents,
                    heartbeat_ms,
                    endpoints,
                },
        } => {
            use meridian_sim::bench::channel::{self, ChannelBenchOptions};
            let options = ChannelBenchOptions {
                agents: agents.unwrap_or(if full { 10_000 } else { 1_000 }),
                heartbeat_ms,
                endpoints,
            };
            match channel::run(&options).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench channel: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::ChannelAgents {
                    dir,
                    count,
                    heartbeat_ms,
                    endpoints,
                },
        } => match meridian_sim::bench::channel::run_agents(&dir, count, heartbeat_ms, endpoints)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meridian-sim bench channel-agents: {e}");
                ExitCode::FAILURE
            }
        },
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
                let admin = match meridian_central::accounts::bootstrap_admin(
                    &central.tables(),
                    &meridian_common::ids::UserId::parse("admin").expect("valid id"),
                    std::time::Duration::from_secs(24 * 3600),
                    meridian_central::channel::now(),
                )
                .await
                {
                    Ok(token) => token.secret,
                    Err(e) => {
                        eprintln!("meridian-sim demo: cannot create an admin token: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                println!(
                    "central is running on {}; press Ctrl-C to stop. Use the CLI against it:\n\n  \
                     export MERIDIAN_ENDPOINT=https://{} MERIDIAN_CA={} MERIDIAN_TOKEN={admin}\n  \
                     cargo run --release -p meridian-central --bin meridian -- site list\n",
                    central.config().data_dir.display(),
                    central.api().local_addr(),
                    central.config().ca_dir().join("ca.crt").display(),
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

async fn run_bmc(
    profile: &str,
    listen: std::net::SocketAddr,
    user: String,
    password: String,
    https_cert_out: Option<PathBuf>,
) -> ExitCode {
    use meridian_sim::redfish::{BmcEmulator, BmcProfile};
    let profile = match profile {
        "gpu-server" => BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; 8]),
        "bluefield3" => BmcProfile::bluefield3(),
        other => {
            eprintln!("meridian-sim bmc: unknown profile {other:?}; use gpu-server or bluefield3");
            return ExitCode::from(64);
        }
    };
    let bmc = match BmcEmulator::new(profile)
        .credentials(user, password)
        .listen(listen)
        .https(https_cert_out.is_some())
        .start()
        .await
    {
        Ok(bmc) => bmc,
        Err(e) => {
            eprintln!("meridian-sim bmc: {}", telemetry::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&https_cert_out, bmc.certificate_pem())
        && let Err(e) = std::fs::write(path, pem)
    {
        eprintln!("meridian-sim bmc: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("Redfish BMC emulator on {}/redfish/v1/", bmc.url());
    meridian_central::server::shutdown_signal().await;
    bmc.shutdown().await;
    ExitCode::SUCCESS
}

fn bench_placement(full: bool, workloads: usize, seed: u64) {
    use meridian_sim::bench::placement::{self, Shape};
    let sizes: &[usize] = if full {
        &[1_000, 3_000, 10_000, 20_000, 50_000]
    } else {
        &[1_000, 3_000, 10_000]
    };
    println!("B1 placement, commit included, one core, {workloads} decisions per run");
    let mut at_10k = None;
    let mut growth = Vec::new();
    for &sites in sizes {
        let result = placement::run(sites, Shape::Single, workloads, seed);
        println!("  {result}");
        growth.push((sites, 1e6 / result.per_second));
        if sites == 10_000 {
            at_10k = Some(result);
        }
    }
    let spread = placement::run(10_000, Shape::Spread8, workloads / 4, seed);
    println!("  {spread}");
    println!("  cost per decision by fleet size:");
    for (sites, us) in &growth {
        println!("    {sites:>6} sites  {us:>7.1} us");
    }
    if let Some(r) = at_10k {
        let met = r.per_second >= 20_000.0 && r.p99.as_secs_f64() <= 1e-3;
        println!(
            "  target B1 (10,000 sites): >= 20000 placements/s and p99 <= 1 ms: {:.0}/s, p99 {:.0} us: {}",
            r.per_second,
            r.p99.as_secs_f64() * 1e6,
            if met { "met" } else { "NOT met" }
        );
    }
}
