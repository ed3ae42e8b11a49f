//! The `meridian-sim` command line: every subcommand and its dispatch, so that the binary is
//! one line and this code is compiled once, in the library. `demo` is the README's main job.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::demo::{self, DemoOptions};
use crate::scenario;
use crate::simfleet::Progress;
use clap::{Parser, Subcommand};
use meridian_common::telemetry::{self, TelemetryConfig};

/// Meridian fleet simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a real central and a simulated fleet of real site agents (some on emulated
    /// hardware), enrol every site, submit a workload mix through the API, show progress and a
    /// summary, then keep central running for the CLI until Ctrl-C or SIGTERM.
    Demo {
        /// Sites in the fleet (99 edge sites per core site; 10000 is the full fleet).
        #[arg(long, default_value_t = demo::DEFAULT_SITES)]
        sites: usize,
        /// Seed of the fleet generator; the same seed gives the same fleet everywhere.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Sites whose servers are emulated (Redfish BMC + GPUs), edge sites first; at most
        /// 1024 emulated servers (a core site has 256). Default: min(--sites, 50).
        #[arg(long)]
        hardware_sites: Option<usize>,
        /// Central's data directory (must be empty); a temporary one by default.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Exit after the summary instead of serving until interrupted.
        #[arg(long)]
        exit: bool,
        /// Seconds sites may take to come online, and workloads to settle.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
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
        #[arg(long, default_value = meridian_emulators::redfish::BmcEmulator::DEFAULT_USER)]
        user: String,
        /// Administrator password.
        #[arg(long, default_value = meridian_emulators::redfish::BmcEmulator::DEFAULT_PASSWORD)]
        password: String,
        /// Serve HTTPS with a self-signed certificate, written to this file (PEM).
        #[arg(long)]
        https_cert_out: Option<PathBuf>,
    },
    /// Run scenario files (sim/scenarios/*.toml) and check their outcome.
    Scenario {
        #[command(subcommand)]
        which: ScenarioCommand,
    },
    /// Run benchmarks and print their figures beside the targets.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Run one scenario file; prints progress, the outcome and its checks, exits 1 when a
    /// check fails.
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Sites in the fleet instead of the file's.
        #[arg(long)]
        sites: Option<usize>,
        /// Time acceleration instead of the file's `scale` (simulated durations pass this
        /// many times faster).
        #[arg(long)]
        scale: Option<f64>,
        /// Where output files go instead of the file's `out_dir`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Seconds any one wait (sites online, workloads settled...) may take.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Every benchmark of TARGETS.md (B1-B11, B13, R9, R10): one table, results.json and SVG plots.
    All {
        /// The benchmark fleet: 10,000 sites and agents, 1e7 fuzz executions per target.
        #[arg(long, conflicts_with = "tiny")]
        full: bool,
        /// Smoke-test sizes (seconds): checks that everything runs; the figures mean nothing.
        #[arg(long)]
        tiny: bool,
        /// The results folder.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Seed of fleets, workloads and the fuzzer.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only the benchmarks covering these ids (comma-separated: B1,B5,R10).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// B5: report ingest at central over real QUIC sessions (ReportBatch -> durable ack):
    /// capacity (saturated), then the ack latency at a paced rate.
    Ingest {
        /// 1,000 agents and 15 s instead of 200 and 5 s.
        #[arg(long)]
        full: bool,
        /// Simulated agents.
        #[arg(long)]
        agents: Option<usize>,
        /// Reports per batch (at most 512).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Measured seconds of each phase (saturated, then paced).
        #[arg(long)]
        seconds: Option<f64>,
        /// Reports per second offered in the paced phase.
        #[arg(long, default_value_t = 50_000.0)]
        rate: f64,
    },
    /// B8: offline resync of a real agent after missed generations.
    Resync {
        /// Generations written while the agent is cut off.
        #[arg(long, default_value_t = 1_000)]
        generations: u64,
        /// Tenant networks per intent (its size).
        #[arg(long, default_value_t = 200)]
        networks: usize,
    },
    /// R10: fuzz every decoder we own (stable Rust, seeded mutation).
    ///
    /// Coverage-guided fuzzing (cargo-fuzz, libFuzzer, nightly Rust) of the frame decoder and
    /// the CLI's tenant spec reader is `scripts/fuzz.sh` (targets in `fuzz/`).
    Fuzz {
        /// 1e7 executions per target.
        #[arg(long)]
        full: bool,
        /// Executions per target (default 1e6; 1e7 with --full).
        #[arg(long)]
        executions: Option<u64>,
        /// Seed of the mutator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only this target (repeatable); `--list` names them.
        #[arg(long)]
        target: Vec<String>,
        /// Print the targets and exit.
        #[arg(long)]
        list: bool,
        /// Where crashing and hanging inputs are written.
        #[arg(long, default_value = "results/fuzz")]
        crash_dir: PathBuf,
    },
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
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Requests in flight per connection (4 x 8 = 32 in flight: more only adds queueing
        /// on 2 cores, not throughput).
        #[arg(long, default_value_t = 8)]
        in_flight: usize,
    },
    /// B11: the operator console: GET /fleet render time and page size, then site state
    /// changes fanned out to concurrent live-update (SSE) streams.
    Console {
        /// 10,000 sites instead of 1,000.
        #[arg(long)]
        full: bool,
        /// Sites in the generated fleet (instead of 1,000 or 10,000).
        #[arg(long)]
        sites: Option<usize>,
        /// Measured renders of the fleet page (kept-alive connection, then fresh ones).
        #[arg(long, default_value_t = 50)]
        renders: usize,
        /// Concurrent /fleet/events streams, each its own HTTPS connection.
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Sites whose state changes (at most the fleet's sites).
        #[arg(long, default_value_t = 1_000)]
        changes: usize,
        /// Changed sites per store transaction.
        #[arg(long, default_value_t = crate::bench::CHANGE_TXN_INTENTS)]
        per_txn: usize,
        /// Seed of the fleet.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Central's /metrics: the store read behind the fleet gauges, scrape time and size.
    Metrics {
        /// 10,000 sites instead of 1,000.
        #[arg(long)]
        full: bool,
        /// Sites in the generated fleet (instead of 1,000 or 10,000).
        #[arg(long)]
        sites: Option<usize>,
        /// Measured store reads and cached scrapes.
        #[arg(long, default_value_t = 20)]
        scrapes: usize,
        /// Seed of the fleet.
        #[arg(long, default_value_t = 42)]
        seed: u64,
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
        /// B7: emulated servers (Redfish BMCs) the real agent binary manages (0: skip).
        #[arg(long, default_value_t = 100)]
        b7_servers: usize,
        /// B7 with servers: the agent's reconciler resync period, ms.
        #[arg(long, default_value_t = 1_000)]
        b7_resync_ms: u64,
    },
    /// B2's baseline: etcd 3.4's watch fan-out to N watchers (1,000; 10,000 with --full),
    /// one put per watcher's prefix, against a child etcd this command starts and stops.
    Etcd {
        /// N = 10,000 watchers (unless --watchers says otherwise).
        #[arg(long)]
        full: bool,
        /// Watchers, one per site prefix.
        #[arg(long)]
        watchers: Option<usize>,
        /// HTTP/2 connections the watch streams are spread over.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Watches per gRPC Watch stream (1: a stream per watcher).
        #[arg(long, default_value_t = 1)]
        watches_per_stream: usize,
        /// Puts per transaction; the change is written one transaction after another, as B2
        /// writes Meridian's (1 to 1,024).
        #[arg(long, default_value_t = crate::bench::CHANGE_TXN_INTENTS)]
        txn_puts: usize,
        /// The etcd binary (installed with apt-get when the default is missing and root).
        #[arg(long, default_value = crate::bench::etcd::ETCD_BIN)]
        etcd_bin: PathBuf,
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

/// Parses the command line and runs the command on a multi-threaded Tokio runtime. The
/// runtime is started here, not in the binary: polling this crate's futures from the binary
/// would compile their whole call tree a second time, in the binary crate.
pub fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("meridian-sim: cannot start the Tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and runs the command (inside a Tokio runtime).
pub async fn run() -> ExitCode {
    let args = Args::parse();
    // Thousands of simulated agents share this process: their session retries during a storm
    // or an outage are the experiment, not news, and would bury the progress bar (50,000
    // lines in a 10,000-site reconnect storm). RUST_LOG still overrides.
    let _ = telemetry::init(&TelemetryConfig {
        filter: "warn,meridian_agent::session=error".into(),
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
            let options = crate::bench::api::ApiBenchOptions {
                connections: connections.max(1),
                in_flight: in_flight.max(1),
                ..crate::bench::api::ApiBenchOptions::new(full)
            };
            let noisy_seconds = if full { 10 } else { 4 };
            let result = match crate::bench::api::run(&options).await {
                Ok(_) => crate::bench::noisy::run(noisy_seconds).await.map(|_| ()),
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
                BenchCommand::Metrics {
                    full,
                    sites,
                    scrapes,
                    seed,
                },
        } => {
            use crate::bench::metrics::{self, MetricsBenchOptions};
            let defaults = MetricsBenchOptions::new(full);
            let options = MetricsBenchOptions {
                sites: sites.unwrap_or(defaults.sites).max(1),
                scrapes: scrapes.max(1),
                seed,
            };
            match metrics::run(&options).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench metrics: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::Console {
                    full,
                    sites,
                    renders,
                    streams,
                    changes,
                    per_txn,
                    seed,
                },
        } => {
            use crate::bench::console::{self, ConsoleBenchOptions};
            let defaults = ConsoleBenchOptions::new(full);
            let options = ConsoleBenchOptions {
                sites: sites.unwrap_or(defaults.sites).max(1),
                renders: renders.max(1),
                streams: streams.max(1),
                changes: changes.max(1),
                per_txn: per_txn.clamp(1, meridian_store::MAX_TXN_OPS),
                seed,
            };
            match console::run(&options).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench console: {}",
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
                    b7_servers,
                    b7_resync_ms,
                },
        } => {
            use crate::bench::channel::{self, ChannelBenchOptions};
            let options = ChannelBenchOptions {
                heartbeat_ms,
                endpoints,
                b7_servers,
                b7_resync: Duration::from_millis(b7_resync_ms.max(100)),
                ..ChannelBenchOptions::new(agents.unwrap_or(if full { 10_000 } else { 1_000 }))
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
                BenchCommand::Etcd {
                    full,
                    watchers,
                    connections,
                    watches_per_stream,
                    txn_puts,
                    etcd_bin,
                },
        } => {
            use crate::bench::etcd::{self, EtcdBenchOptions};
            let options = EtcdBenchOptions {
                connections,
                watches_per_stream,
                txn_puts,
                etcd_bin,
                ..EtcdBenchOptions::new(watchers.unwrap_or(if full { 10_000 } else { 1_000 }))
            };
            match etcd::run(&options).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench etcd: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::All {
                    full,
                    tiny,
                    out,
                    seed,
                    only,
                },
        } => {
            use crate::bench::results::Mode;
            use crate::bench::suite::{self, SuiteOptions};
            let mode = match (full, tiny) {
                (true, _) => Mode::Full,
                (_, true) => Mode::Tiny,
                _ => Mode::Quick,
            };
            let unknown: Vec<&String> = only
                .iter()
                .filter(|o| !suite::ROW_IDS.iter().any(|id| id.eq_ignore_ascii_case(o)))
                .collect();
            if !unknown.is_empty() {
                eprintln!(
                    "meridian-sim bench all: unknown id(s) {unknown:?} in --only; use some of {}",
                    suite::ROW_IDS.join(",")
                );
                return ExitCode::from(64);
            }
            let options = SuiteOptions {
                mode,
                out,
                seed,
                only,
            };
            match suite::run(&options).await {
                Ok((_, true)) => ExitCode::SUCCESS,
                Ok((_, false)) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench all: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::Ingest {
                    full,
                    agents,
                    batch,
                    seconds,
                    rate,
                },
        } => {
            use crate::bench::ingest::{self, IngestBenchOptions};
            let defaults = IngestBenchOptions::new(full);
            let options = IngestBenchOptions {
                agents: agents.unwrap_or(defaults.agents).max(1),
                batch: batch.clamp(1, meridian_common::channel::MAX_REPORTS_PER_BATCH),
                seconds: seconds.unwrap_or(defaults.seconds),
                paced_rate: rate.max(1.0),
                ..defaults
            };
            match ingest::run(&options).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench ingest: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::Resync {
                    generations,
                    networks,
                },
        } => {
            use crate::bench::resync::{self, ResyncBenchOptions};
            let options = ResyncBenchOptions {
                generations: generations.max(1),
                networks,
                ..ResyncBenchOptions::default()
            };
            match resync::run(&options).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "meridian-sim bench resync: {}",
                        telemetry::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            which:
                BenchCommand::Fuzz {
                    full,
                    executions,
                    seed,
                    target,
                    list,
                    crash_dir,
                },
        } => {
            use crate::bench::fuzz::{self, FuzzOptions};
            let names = fuzz::target_names();
            if list {
                println!("{}", names.join("\n"));
                return ExitCode::SUCCESS;
            }
            if let Some(bad) = target.iter().find(|t| !names.contains(&t.as_str())) {
                eprintln!(
                    "meridian-sim bench fuzz: no target {bad:?}; use one of {}",
                    names.join(", ")
                );
                return ExitCode::from(64);
            }
            let options = FuzzOptions {
                seed,
                crash_dir: Some(crash_dir),
                only: target,
                ..FuzzOptions::new(executions.unwrap_or(if full { 10_000_000 } else { 1_000_000 }))
            };
            let report = tokio::task::spawn_blocking(move || fuzz::run(&options))
                .await
                .unwrap_or_default();
            println!("{report}");
            let found: u64 = report.targets.iter().map(|t| t.crashes + t.hangs).sum();
            if found == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
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
        } => match crate::bench::channel::run_agents(&dir, count, heartbeat_ms, endpoints).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meridian-sim bench channel-agents: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Scenario {
            which:
                ScenarioCommand::Run {
                    file,
                    sites,
                    scale,
                    out_dir,
                    timeout_s,
                },
        } => {
            let overrides = scenario::Overrides {
                sites,
                scale,
                out_dir,
                limit: Some(Duration::from_secs(timeout_s.max(1))),
            };
            let result = match scenario::load(&file) {
                Ok(s) => scenario::run(&s, &overrides, &Progress::stderr()).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(r) => {
                    println!("{r}");
                    if r.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("meridian-sim scenario run: {}", telemetry::error_chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            sites,
            seed,
            hardware_sites,
            data_dir,
            exit,
            timeout_s,
        } => {
            let options = DemoOptions {
                sites,
                seed,
                hardware_sites,
                data_dir,
                limit: std::time::Duration::from_secs(timeout_s.max(1)),
            };
            run_demo(&options, exit).await
        }
    }
}

/// The demo: start, drive, print, serve until interrupted, shut down within the grace time.
async fn run_demo(options: &DemoOptions, exit: bool) -> ExitCode {
    let interrupted = meridian_central::server::shutdown_signal();
    tokio::pin!(interrupted);
    let progress = Progress::stderr();
    let mut fleet = match demo::start(options, &progress).await {
        Ok(fleet) => fleet,
        Err(e) => {
            eprintln!("meridian-sim demo: {}", telemetry::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    let mut stop = false;
    tokio::select! {
        result = demo::drive(&mut fleet, options.limit, &progress) => match result {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                eprintln!("meridian-sim demo: {}", telemetry::error_chain(&e));
                code = ExitCode::FAILURE;
            }
        },
        _ = &mut interrupted => {
            eprintln!("\ninterrupted; shutting down");
            stop = true;
        }
    }
    if !exit && !stop && code == ExitCode::SUCCESS {
        let console = match (fleet.console_url(), fleet.console_password().await) {
            (Some(url), Ok(password)) => format!(
                "\nThe operator console: {url} (its certificate is from central's CA, \
                 MERIDIAN_CA below; tell the browser to trust it or accept it once). Log in as \
                 user admin with password {password} (shown once), or with the API token.\n"
            ),
            (Some(url), Err(e)) => format!(
                "\nThe operator console: {url}; log in with the API token (no password set: {}).\n",
                telemetry::error_chain(&e)
            ),
            (None, _) => String::new(),
        };
        print!("{console}");
        if let Some(url) = fleet.central_metrics_url() {
            println!(
                "Central's Prometheus metrics: {url} (plain HTTP; docs/metrics.md lists the series)."
            );
        }
        let (rate, burst) = fleet.use_documented_rate_limit();
        println!(
            "\ncentral is running (store in {}); press Ctrl-C to stop. The API is back on the \
             documented rate limit: {rate:.0} requests/s per tenant, burst {burst:.0} (api.rate_per_second, \
             api.rate_burst). Use the CLI against it:\n\n  \
             export MERIDIAN_ENDPOINT={} MERIDIAN_CA={} MERIDIAN_TOKEN={}\n  \
             cargo run --release -p meridian-client --bin meridian -- site list\n  \
             cargo run --release -p meridian-client --bin meridian -- workload list\n",
            fleet.data_dir().display(),
            fleet.api_endpoint(),
            fleet.ca_file().display(),
            fleet.admin_token(),
        );
        interrupted.await;
        eprintln!("shutting down");
    }
    if tokio::time::timeout(demo::SHUTDOWN_GRACE, fleet.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "meridian-sim demo: the fleet did not stop within {:?}",
            demo::SHUTDOWN_GRACE
        );
        return ExitCode::FAILURE;
    }
    code
}

async fn run_bmc(
    profile: &str,
    listen: std::net::SocketAddr,
    user: String,
    password: String,
    https_cert_out: Option<PathBuf>,
) -> ExitCode {
    use meridian_emulators::redfish::{BmcEmulator, BmcProfile};
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
    let sizes: &[usize] = if full {
        &[1_000, 3_000, 10_000, 20_000, 50_000]
    } else {
        &[1_000, 3_000, 10_000]
    };
    crate::bench::placement::bench(sizes, 10_000, workloads, seed);
}
