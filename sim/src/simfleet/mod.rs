//! [`SimFleet`]: a real central and a simulated fleet of real site agents in one process, the
//! base of `meridian-sim demo` and of the scenarios built on it (WAN outages, reconnect
//! storms, reservation calendars, sites losing servers).
//!
//! # What runs
//!
//! - **Central**: a real [`Central`] (embedded sled store, gRPC API with TLS and bearer
//!   tokens, QUIC agent channel, lifecycle and planner) on 127.0.0.1, any free ports.
//! - **The fleet**: a seeded [`crate::fleet`] fleet. Regions, the generator's tenants and
//!   datasets, and the sites (as `pending`: created by an operator, no agent yet) are loaded
//!   through central's tables.
//! - **Agents**: one real [`meridian_agent::Agent`] per site, all in this process with
//!   in-memory stores and shared QUIC endpoints ([`agents::AgentPool`]). Each site is enrolled with a
//!   bootstrap token of its own, and its agent reaches central through its own port of a
//!   [`FaultProxy`] ([`SimFleet::proxy`]), so a scenario can delay, drop or cut one site.
//!   A proxied site costs two sockets, so when the process's open-file limit cannot hold them
//!   all (20,000 files: about 8,000 sites) the last sites connect to central directly
//!   ([`SimFleet::proxied_sites`]).
//! - **Hardware**: the first `hardware_sites` sites (edge sites first, then core sites) get
//!   emulated hardware ([`hardware::SiteHardware`]: a Redfish BMC emulator, a BlueField-3 DPU
//!   BMC emulator and a fake NVML per server, shaped after the generator's server, and an NVUE
//!   leaf-switch emulator per site) driven by the agent's real site reconciler;
//!   central learns those servers from the agents' inventory reports. The other sites run
//!   agents without servers (the agent's "no hardware" mode: it persists, acknowledges and
//!   applies intents without driving anything) and central keeps the generator's records of
//!   their servers, loaded up front.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo() -> Result<(), meridian_sim::simfleet::SimFleetError> {
//! use std::time::Duration;
//! use meridian_sim::simfleet::{Progress, SimFleet, SimFleetOptions, workloads};
//!
//! let progress = Progress::quiet();
//! let mut fleet = SimFleet::start(&SimFleetOptions::new(12, 7), &progress).await?;
//! fleet.wait_online(Duration::from_secs(120), &progress).await?;
//! let mix = workloads::mix(fleet.fleet(), meridian_central::clock::now());
//! fleet.submit(&mix, &progress).await?;
//! fleet.wait_settled(Duration::from_secs(120), &progress).await?;
//! println!("{}", fleet.summary().await?);
//! fleet.proxy().cut_site("some-site", Duration::from_secs(30)); // a scenario's fault
//! fleet.restart_central().await?;
//! fleet.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! - [`SimFleet::start`] generates and loads the fleet, starts central, the proxy, the
//!   emulated hardware and the agents; [`SimFleet::wait_online`] waits until every site is
//!   online and every emulated server inspected.
//! - [`SimFleet::submit`] creates the mix's tenants (a user and token each), datasets and
//!   workloads through the API and times each workload from its acceptance;
//!   [`SimFleet::wait_settled`] waits until every workload is active, scheduled for a later
//!   window, or finished.
//! - [`SimFleet::summary`] reads the outcome back from central ([`SimSummary`]).
//! - [`SimFleet::central`], [`SimFleet::admin_token`], [`SimFleet::api_endpoint`] and
//!   [`SimFleet::ca_file`] give access to central and its API; [`SimFleet::proxy`] to the
//!   links; [`SimFleet::agent`] and [`SimFleet::hardware`] to a site's agent and servers.
//! - [`SimFleet::restart_central`] stops central and opens it again on the same directory and
//!   ports (the agents reconnect by themselves); [`SimFleet::shutdown`] stops everything.

mod actions;
pub mod agents;
pub mod clock;
pub mod gateway;
pub mod hardware;
mod progress;
mod summary;

pub use actions::ActionsView;
pub mod workloads;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_agent::Agent;
use meridian_agent::reconcile::ManualClock;
use meridian_agent::reconciler::{Reconciler, RecordingReconciler};
use meridian_central::config::CentralConfig;
use meridian_central::server::{Central, CentralError};
use meridian_client::{Clients, Target};
use meridian_common::ids::{SiteId, Timestamp, UserId, WorkloadId};
use meridian_common::model::{ReservationState, ServerState, SiteState, SiteTier, Workload};
use meridian_proto::v1 as proto;
use meridian_store::Revision;
use meridian_store::tables::{Record, Table, TableError};

pub use progress::Progress;
pub use summary::{HardwareView, SimSummary, TierUse};

use crate::fleet::{self, Fleet, FleetSpec};
use agents::{AgentPool, AgentPoolError};
use hardware::SiteHardware;
use meridian_emulators::proxy::FaultProxy;
use workloads::{ConstraintKind, WorkloadMix};

/// Most sites with emulated hardware by default (all sites of the default 50-site fleet).
pub const DEFAULT_HARDWARE_SITES: usize = 50;
/// Most emulated servers: more BMC emulators than this do not start in a minute on 2 cores.
pub const MAX_EMULATED_SERVERS: usize = 1_024;
/// Most sites of a simulated fleet.
pub const MAX_SITES: usize = 100_000;

/// How a [`SimFleet`] is built.
#[derive(Debug, Clone)]
pub struct SimFleetOptions {
    /// Sites in the generated fleet.
    pub sites: usize,
    /// Seed of the fleet generator (and of the fault proxy's drops).
    pub seed: u64,
    /// Sites with emulated hardware (edge sites first, then core sites), at most
    /// [`MAX_EMULATED_SERVERS`] servers in all.
    pub hardware_sites: usize,
    /// Central's data directory (must hold no fleet yet); the agents' databases go in its
    /// `sim-agents/`. A temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Agents' heartbeat period, ms.
    pub heartbeat_ms: u64,
    /// QUIC endpoints the agents share.
    pub endpoints: usize,
    /// Central marks a site `Disconnected` after this long without hearing from it, ms.
    pub disconnect_after_ms: u64,
    /// The site reconcilers of emulated hardware look at a converged server again after
    /// this long (a BMC that stopped answering is noticed then).
    pub resync: Duration,
    /// Give every site with emulated hardware a gateway node in a network namespace of its
    /// own, kept by the agent's netlink and nftables drivers (needs root, `ip` and `nft`;
    /// without them the fleet runs without gateways and says why).
    pub gateways: bool,
    /// One clock for central and the site reconcilers (scenarios that move time by hand);
    /// `None`: the wall clock.
    pub clock: Option<Arc<ManualClock>>,
    /// Serve every agent's `/metrics` on a port of its own (any free port of 127.0.0.1;
    /// [`SimFleet::agent_metrics_addr`]): for small fleets, in tests. Off, the in-process
    /// agents serve nothing (central's `/metrics` is on either way).
    pub agent_metrics: bool,
}

impl SimFleetOptions {
    /// `sites` sites from `seed`, hardware on up to [`DEFAULT_HARDWARE_SITES`] of them.
    pub fn new(sites: usize, seed: u64) -> Self {
        SimFleetOptions {
            sites,
            seed,
            hardware_sites: sites.min(DEFAULT_HARDWARE_SITES),
            data_dir: None,
            heartbeat_ms: 5_000,
            endpoints: 16,
            // A loaded laptop must not drop sessions.
            disconnect_after_ms: 60_000,
            resync: Duration::from_secs(60),
            gateways: false,
            clock: None,
            agent_metrics: false,
        }
    }
}

/// Why the simulated fleet failed.
#[derive(Debug, thiserror::Error)]
pub enum SimFleetError {
    #[error("--sites must be between 1 and {MAX_SITES}, got {0}")]
    BadSites(usize),
    #[error("--hardware-sites must be at most --sites ({sites}), got {hardware}")]
    BadHardwareSites { hardware: usize, sites: usize },
    #[error(
        "--hardware-sites {hardware} would emulate {servers} servers; at most {MAX_EMULATED_SERVERS} fit (a core site has 256)"
    )]
    TooMuchHardware { hardware: usize, servers: usize },
    #[error("cannot create a directory")]
    Dir(#[source] std::io::Error),
    #[error("cannot serve an agent's /metrics")]
    AgentMetrics(#[source] std::io::Error),
    #[error(
        "the data directory already holds a fleet; point --data-dir at an empty directory or remove it"
    )]
    NotEmpty,
    #[error("central did not start")]
    Central(#[from] CentralError),
    #[error("central's store failed")]
    Table(#[from] TableError),
    #[error("the fault proxy failed")]
    Proxy(#[source] std::io::Error),
    #[error("the emulated hardware did not start")]
    Hardware(#[from] hardware::HardwareError),
    #[error("cannot build the drivers of emulated hardware")]
    Driver(#[from] hardware::ReconcilerError),
    #[error("cannot issue a bootstrap token")]
    Token(#[from] meridian_central::tokens::TokenError),
    #[error(transparent)]
    Agents(#[from] AgentPoolError),
    #[error("the API refused {what}: {status}")]
    Api { what: String, status: tonic::Status },
    #[error("cannot reach central's API")]
    Connect(#[from] meridian_client::CliError),
    #[error("{0}")]
    Timeout(String),
}

/// A submitted workload.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: WorkloadId,
    pub name: String,
    pub kinds: BTreeSet<ConstraintKind>,
    /// When the API answered the create.
    pub accepted: Instant,
}

/// When each workload was first seen active in central's store.
type ActiveTimes = Arc<Mutex<HashMap<WorkloadId, Instant>>>;

/// A running simulated fleet; see the module documentation.
#[derive(Debug)]
pub struct SimFleet {
    fleet: Fleet,
    central: Option<Central>,
    config: CentralConfig,
    proxy: FaultProxy,
    proxied: usize,
    pool: Option<AgentPool>,
    agents: Vec<Option<Agent>>,
    hardware: BTreeMap<usize, SiteHardware>,
    admin: String,
    tokens: BTreeMap<String, String>,
    submitted: Vec<Submitted>,
    active: ActiveTimes,
    watcher: Option<tokio::task::JoinHandle<()>>,
    enrol_time: Duration,
    converge_time: Duration,
    agents_started: Instant,
    /// Why the hardware sites have no gateway nodes (`None`: they have).
    gateways_skipped: Option<String>,
    /// Central's clock (restarts reuse it).
    clock: Arc<dyn meridian_central::clock::Clock>,
    /// The agents' `/metrics` listeners, by site index (with `agent_metrics`).
    agent_metrics: BTreeMap<usize, meridian_agent::metrics::MetricsServer>,
    _temp: Option<tempfile::TempDir>,
}

/// The site reconcilers' clock: the fleet's own, or the wall clock.
fn reconciler_clock(options: &SimFleetOptions) -> Arc<dyn meridian_agent::reconcile::Clock> {
    match &options.clock {
        Some(c) => Arc::clone(c) as _,
        None => Arc::new(meridian_agent::reconcile::SystemClock),
    }
}

/// Records per store transaction while loading the fleet.
const LOAD_BATCH: usize = 256;

/// Which sites get emulated hardware: edge sites first, then core sites, `n` in all.
fn hardware_order(fleet: &Fleet, n: usize) -> Vec<usize> {
    let edge = (0..fleet.sites.len()).filter(|i| fleet.sites[*i].tier == SiteTier::Edge);
    let core = (0..fleet.sites.len()).filter(|i| fleet.sites[*i].tier == SiteTier::Core);
    edge.chain(core).take(n).collect()
}

/// File descriptors kept free for central, the databases, the emulated BMCs (a listening
/// socket and a connection or two each) and the rest of the process.
const SPARE_FILES: usize = 2_000;

/// How many sites (the first ones) can reach central through the fault proxy: each proxied
/// site costs two sockets (its port, and the upstream socket of its agent's endpoint), so the
/// process's open-file limit bounds them (20,000 files: about 8,000 sites).
fn proxied_sites(sites: usize, emulated_servers: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return sites;
    };
    // A server costs about four files for its BMC (listener, connections on both ends) and as
    // many for its DPU's BMC; a site's switch is within the spare.
    let room = limit.saturating_sub(SPARE_FILES + 8 * emulated_servers) / 2;
    sites.min(room)
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl SimFleet {
    /// Generates and loads the fleet, starts central, the fault proxy, the emulated hardware
    /// and every site's agent (enrolled with its own bootstrap token). Returns once the
    /// agents run; [`SimFleet::wait_online`] waits for them to come online.
    pub async fn start(
        options: &SimFleetOptions,
        progress: &Progress,
    ) -> Result<SimFleet, SimFleetError> {
        if !(1..=MAX_SITES).contains(&options.sites) {
            return Err(SimFleetError::BadSites(options.sites));
        }
        if options.hardware_sites > options.sites {
            return Err(SimFleetError::BadHardwareSites {
                hardware: options.hardware_sites,
                sites: options.sites,
            });
        }
        let started = Instant::now();
        let fleet = fleet::generate(&FleetSpec::with_sites(options.seed, options.sites));
        let hardware_sites = hardware_order(&fleet, options.hardware_sites);
        let hardware_set: BTreeSet<&SiteId> =
            hardware_sites.iter().map(|i| &fleet.sites[*i].id).collect();
        let emulated = fleet
            .servers
            .iter()
            .filter(|s| hardware_set.contains(&s.site))
            .count();
        if emulated > MAX_EMULATED_SERVERS {
            return Err(SimFleetError::TooMuchHardware {
                hardware: options.hardware_sites,
                servers: emulated,
            });
        }
        progress.line(&format!(
            "generated a {}-site fleet from seed {}: {} servers, {} GPUs, {} regions, {} datasets, {} tenants",
            fleet.sites.len(),
            options.seed,
            fleet.servers.len(),
            fleet.servers.iter().map(|s| s.gpus.len()).sum::<usize>(),
            fleet.regions.len(),
            fleet.datasets.len(),
            fleet.tenants.len()
        ));

        let (data_dir, temp) = match &options.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("meridian-sim-")
                    .tempdir()
                    .map_err(SimFleetError::Dir)?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let mut config = CentralConfig {
            data_dir: data_dir.clone(),
            ..CentralConfig::default()
        };
        config.channel.listen = "127.0.0.1:0".parse().expect("valid address");
        config.api.listen = "127.0.0.1:0".parse().expect("valid address");
        config.console.listen = "127.0.0.1:0".parse().expect("valid address");
        config.metrics.listen = "127.0.0.1:0".parse().expect("valid address");
        // One client submits for many tenants.
        config.channel.disconnect_after_ms = options.disconnect_after_ms;
        config.channel.idle_timeout_ms = 60_000;
        config.api.rate_per_second = 1e6;
        config.api.rate_burst = 1e6;
        let central_clock: Arc<dyn meridian_central::clock::Clock> = match &options.clock {
            Some(c) => Arc::new(clock::SharedClock(Arc::clone(c))),
            None => Arc::new(meridian_central::clock::SystemClock),
        };
        let central = Central::open_with_clock(config.clone(), Arc::clone(&central_clock)).await?;
        // Restarts reuse the ports the first start got.
        config.channel.listen = central.channel().local_addr();
        config.api.listen = central.api().local_addr();
        if let Some(console) = central.console() {
            config.console.listen = console.local_addr();
        }
        if let Some(metrics) = central.metrics_addr() {
            config.metrics.listen = metrics;
        }
        let tables = central.tables();
        if !tables.sites().list(None, None, 1).await?.items.is_empty() {
            return Err(SimFleetError::NotEmpty);
        }
        let mut sites = fleet.sites.clone();
        for s in &mut sites {
            s.state = SiteState::Pending;
        }
        let known_servers: Vec<_> = fleet
            .servers
            .iter()
            .filter(|s| !hardware_set.contains(&s.site))
            .cloned()
            .collect();
        tables
            .regions()
            .create_many(&fleet.regions, LOAD_BATCH)
            .await?;
        tables
            .tenants()
            .create_many(&fleet.tenants, LOAD_BATCH)
            .await?;
        tables.sites().create_many(&sites, LOAD_BATCH).await?;
        tables
            .servers()
            .create_many(&known_servers, LOAD_BATCH)
            .await?;
        tables
            .datasets()
            .create_many(&fleet.datasets, LOAD_BATCH)
            .await?;
        central.lifecycle().fleet_changed();
        progress.line(&format!(
            "central is up (store in {}); fleet loaded in {:.1} s",
            config.data_dir.display(),
            started.elapsed().as_secs_f64()
        ));
        let admin = meridian_central::accounts::bootstrap_admin(
            &tables,
            &UserId::parse("admin").expect("valid id"),
            Duration::from_secs(7 * 24 * 3600),
            meridian_central::clock::now(),
        )
        .await
        .map_err(|e| SimFleetError::Api {
            what: "the admin token".into(),
            status: tonic::Status::internal(e.to_string()),
        })?
        .secret;

        let proxy = FaultProxy::new(central.channel().local_addr(), options.seed);
        // Beside central's store and CA, in a directory central does not use.
        let agents_dir = data_dir.join("sim-agents");
        std::fs::create_dir_all(agents_dir.join("boot")).map_err(SimFleetError::Dir)?;
        let pool = AgentPool::open(&agents_dir, options.endpoints)?;

        let mut hardware = BTreeMap::new();
        let mut gpu_serial = 0u32;
        let gateways_skipped = if options.gateways && !hardware_sites.is_empty() {
            gateway::unavailable()
        } else {
            Some("not asked for".to_owned())
        };
        if options.gateways
            && let Some(why) = &gateways_skipped
        {
            progress.line(&format!("site gateways skipped: {why}"));
        }
        for (n, i) in hardware_sites.iter().enumerate() {
            let site = &fleet.sites[*i].id;
            let servers: Vec<_> = fleet
                .servers
                .iter()
                .filter(|s| &s.site == site)
                .cloned()
                .collect();
            let gateway = gateways_skipped
                .is_none()
                .then(|| (gateway::netns_name(n), fleet.sites[*i].gateway_range));
            hardware.insert(
                *i,
                SiteHardware::start(
                    &servers,
                    &mut gpu_serial,
                    n,
                    gateway,
                    fleet.sites[*i].storage_mib,
                )
                .await?,
            );
            progress.bar(
                "emulating hardware",
                n + 1,
                hardware_sites.len(),
                &format!("sites ({gpu_serial} GPUs)"),
            );
        }
        if !hardware_sites.is_empty() {
            progress.end_bar();
        }

        let proxied = proxied_sites(fleet.sites.len(), emulated);
        if proxied < fleet.sites.len() {
            progress.line(&format!(
                "the open-file limit leaves room for {proxied} fault-proxy ports (two sockets each); \
                 the other {} sites connect to central directly",
                fleet.sites.len() - proxied
            ));
        }
        let agents_started = Instant::now();
        let mut agents: Vec<Option<Agent>> = Vec::with_capacity(fleet.sites.len());
        let mut window = agents::EnrolWindow::default();
        let mut agent_metrics = BTreeMap::new();
        for (i, site) in fleet.sites.iter().enumerate() {
            window
                .room(i, |j| agents[j].as_ref().is_some_and(Agent::is_connected))
                .await;
            let addresses = if i < proxied {
                let addr = proxy
                    .add_site(site.id.as_str())
                    .await
                    .map_err(SimFleetError::Proxy)?;
                vec![addr.to_string()]
            } else {
                central.channel().advertised()
            };
            let file =
                meridian_testkit::enrol::bootstrap_file(&central, &site.id, addresses).await?;
            std::fs::write(pool.bootstrap_path(i), file.render()).map_err(SimFleetError::Dir)?;
            let site_reconciler = match hardware.get(&i) {
                Some(hw) => Some(hw.reconciler(options.resync, reconciler_clock(options))?),
                None => None,
            };
            let reconciler: Arc<dyn Reconciler> = match &site_reconciler {
                Some(r) => Arc::new(r.clone()),
                None => Arc::new(RecordingReconciler::default()),
            };
            let config = pool.config(i, options.heartbeat_ms);
            let agent = pool.start(i, config, reconciler).await?;
            if options.agent_metrics {
                let sources = meridian_agent::metrics::MetricsSources {
                    store: agent.store().clone(),
                    reconciler: site_reconciler,
                };
                let listen = "127.0.0.1:0".parse().expect("valid address");
                let server = meridian_agent::metrics::MetricsServer::start(listen, sources)
                    .await
                    .map_err(SimFleetError::AgentMetrics)?;
                agent_metrics.insert(i, server);
            }
            agents.push(Some(agent));
            if i % 64 == 63 || i + 1 == fleet.sites.len() {
                progress.bar("starting agents", i + 1, fleet.sites.len(), "");
            }
        }
        progress.end_bar();

        Ok(SimFleet {
            fleet,
            central: Some(central),
            config,
            proxy,
            proxied,
            pool: Some(pool),
            agents,
            hardware,
            admin,
            tokens: BTreeMap::new(),
            submitted: Vec::new(),
            active: Arc::default(),
            watcher: None,
            enrol_time: Duration::ZERO,
            converge_time: Duration::ZERO,
            agents_started,
            gateways_skipped,
            clock: central_clock,
            agent_metrics,
            _temp: temp,
        })
    }

    /// The API token of `tenant`'s admin user, once [`SimFleet::submit`] created the tenant.
    pub fn tenant_token(&self, tenant: &str) -> Option<String> {
        self.tokens.get(tenant).cloned()
    }

    /// The generated fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Puts central's API back on the documented per-tenant rate limit
    /// (`ApiConfig::default()`: the fleet is driven through one client at a far higher
    /// rate) for an operator who uses the CLI against it; returns (per second, burst).
    pub fn use_documented_rate_limit(&self) -> (f64, f64) {
        let documented = meridian_central::services::ApiConfig::default();
        let limiter = self.central().api().services().rate_limiter();
        limiter.set_limits(documented.rate_per_second, documented.rate_burst);
        limiter.limits()
    }

    /// The running central.
    pub fn central(&self) -> &Central {
        self.central
            .as_ref()
            .expect("central runs between start and shutdown")
    }

    /// The fault proxy every agent reaches central through (one port per site, named by the
    /// site's id).
    pub fn proxy(&self) -> &FaultProxy {
        &self.proxy
    }

    /// How many sites (the first ones, in [`Fleet::sites`] order) reach central through the
    /// fault proxy.
    pub fn proxied_sites(&self) -> usize {
        self.proxied
    }

    /// The agent of site `index` (in [`Fleet::sites`] order).
    pub fn agent(&self, index: usize) -> Option<&Agent> {
        self.agents.get(index).and_then(Option::as_ref)
    }

    /// The emulated servers of site `index`, if it has emulated hardware.
    pub fn hardware(&self, index: usize) -> Option<&SiteHardware> {
        self.hardware.get(&index)
    }

    /// The emulated servers of site `index`, to stop some of them.
    pub fn hardware_mut(&mut self, index: usize) -> Option<&mut SiteHardware> {
        self.hardware.get_mut(&index)
    }

    /// Indexes (in [`Fleet::sites`] order) of the sites with emulated hardware.
    pub fn hardware_sites(&self) -> impl Iterator<Item = usize> + '_ {
        self.hardware.keys().copied()
    }

    /// A provider-admin API token.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// The API's URL.
    pub fn api_endpoint(&self) -> String {
        format!("https://{}", self.config.api.listen)
    }

    /// Central's `/metrics` URL, when it is on.
    pub fn central_metrics_url(&self) -> Option<String> {
        self.config
            .metrics
            .enabled
            .then(|| format!("http://{}/metrics", self.config.metrics.listen))
    }

    /// Where the agent of site `index` serves `/metrics` (with
    /// [`SimFleetOptions::agent_metrics`]).
    pub fn agent_metrics_addr(&self, index: usize) -> Option<std::net::SocketAddr> {
        self.agent_metrics
            .get(&index)
            .map(meridian_agent::metrics::MetricsServer::local_addr)
    }

    /// The operator console's URL, when it is on.
    pub fn console_url(&self) -> Option<String> {
        self.config
            .console
            .enabled
            .then(|| format!("https://{}/", self.config.console.listen))
    }

    /// Gives the provider admin (`admin`) a fresh random console password, set through the
    /// API like any operator's, and returns it (shown once, by the demo).
    pub async fn console_password(&self) -> Result<String, SimFleetError> {
        use rand::Rng;
        let password: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        let mut clients = self.clients(&self.admin).await?;
        clients
            .tenants
            .set_user_password(proto::SetUserPasswordRequest {
                user: "admin".into(),
                password: password.clone(),
            })
            .await
            .map_err(|status| SimFleetError::Api {
                what: "the admin's console password".into(),
                status,
            })?;
        Ok(password)
    }

    /// Central's CA certificate (PEM), which the API's certificate chains to.
    pub fn ca_file(&self) -> PathBuf {
        self.config.ca_dir().join("ca.crt")
    }

    /// Central's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// API clients authenticated with `token`.
    pub async fn clients(&self, token: &str) -> Result<Clients, SimFleetError> {
        Ok(Target {
            endpoint: self.api_endpoint(),
            token: token.to_owned(),
            ca: Some(self.ca_file()),
        }
        .connect()
        .await?)
    }

    /// Sites central holds as online, and how many emulated servers central knows as
    /// inspected (available or allocated).
    async fn readiness(&self) -> Result<(usize, usize), SimFleetError> {
        let tables = self.central().tables();
        let online = tables
            .sites()
            .list_all(None, 1_000)
            .await?
            .iter()
            .filter(|s| s.state == SiteState::Online)
            .count();
        let mut inspected = 0;
        for i in self.hardware.keys() {
            let site = &self.fleet.sites[*i].id;
            inspected += tables
                .servers()
                .list_all(Some(site), 1_000)
                .await?
                .iter()
                .filter(|s| matches!(s.state, ServerState::Available | ServerState::Allocated))
                .count();
        }
        Ok((online, inspected))
    }

    /// Waits until every site is online and central knows every emulated server as inspected
    /// (a progress bar meanwhile); returns how long enrolment took since the agents started.
    pub async fn wait_online(
        &mut self,
        limit: Duration,
        progress: &Progress,
    ) -> Result<Duration, SimFleetError> {
        let sites = self.fleet.sites.len();
        let servers: usize = self.hardware.values().map(|h| h.servers.len()).sum();
        let deadline = Instant::now() + limit;
        loop {
            let (online, inspected) = self.readiness().await?;
            progress.bar(
                "enrolling sites",
                online,
                sites,
                &format!("online, {inspected}/{servers} emulated servers inspected"),
            );
            if online == sites && inspected == servers {
                progress.end_bar();
                self.enrol_time = self.agents_started.elapsed();
                return Ok(self.enrol_time);
            }
            if Instant::now() >= deadline {
                progress.end_bar();
                return Err(SimFleetError::Timeout(format!(
                    "after {limit:?}, {online}/{sites} sites are online and {inspected}/{servers} emulated servers inspected"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts recording when each workload turns active (store watch on `workloads/`).
    async fn watch_workloads(&mut self) -> Result<(), SimFleetError> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let store = Arc::clone(self.central().store());
        let prefix = Table::<Workload>::store_key("");
        let mut watch = store
            .watch(&prefix, Revision(store.revision().0 + 1))
            .await
            .map_err(|e| SimFleetError::Table(e.into()))?;
        let active = Arc::clone(&self.active);
        self.watcher = Some(tokio::spawn(async move {
            while let Ok(event) = watch.next().await {
                let Ok(w) = Workload::decode(&event.kv.value) else {
                    continue;
                };
                if w.state == ReservationState::Active {
                    active
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(w.id)
                        .or_insert_with(Instant::now);
                }
            }
        }));
        Ok(())
    }

    /// Creates the mix's tenants (each with a tenant-admin user and token), its datasets and
    /// its workloads through the API, each workload as its tenant.
    pub async fn submit(
        &mut self,
        mix: &WorkloadMix,
        progress: &Progress,
    ) -> Result<(), SimFleetError> {
        let api = |what: String| move |status| SimFleetError::Api { what, status };
        let mut admin = self.clients(&self.admin.clone()).await?;
        for t in &mix.tenants {
            let id = t.id.as_str().to_owned();
            if self.tokens.contains_key(&id) {
                continue;
            }
            admin
                .tenants
                .create_tenant(proto::CreateTenantRequest {
                    tenant: Some(t.clone().into()),
                })
                .await
                .map_err(api(format!("tenant {id}")))?;
            let user = format!("{id}-admin");
            let user = admin
                .tenants
                .create_user(proto::CreateUserRequest {
                    user: Some(proto::User {
                        id: user.clone(),
                        tenant: id.clone(),
                        role: proto::Role::TenantAdmin as i32,
                        display_name: user.clone(),
                        created_at: 0,
                    }),
                })
                .await
                .map_err(api(format!("user {user}")))?
                .into_inner()
                .user
                .map_or(user, |u| u.id);
            let secret = admin
                .tenants
                .create_api_token(proto::CreateApiTokenRequest {
                    user: user.clone(),
                    role: None,
                    ttl_ms: 7 * 24 * 3_600_000,
                })
                .await
                .map_err(api(format!("a token for {user}")))?
                .into_inner()
                .secret;
            self.tokens.insert(id, secret);
        }
        let mut clients = BTreeMap::new();
        for (tenant, token) in &self.tokens {
            clients.insert(tenant.clone(), self.clients(token).await?);
        }
        let client = |clients: &BTreeMap<String, Clients>, tenant: &str| {
            clients
                .get(tenant)
                .cloned()
                .ok_or_else(|| SimFleetError::Api {
                    what: format!("a request of tenant {tenant}"),
                    status: tonic::Status::not_found("the mix names a tenant it does not create"),
                })
        };
        for d in &mix.datasets {
            client(&clients, d.tenant.as_str())?
                .fleet
                .create_dataset(proto::CreateDatasetRequest {
                    dataset: Some(d.clone().into()),
                })
                .await
                .map_err(api(format!("dataset {}", d.id)))?;
        }
        self.watch_workloads().await?;
        let total = mix.workloads.len();
        for (n, w) in mix.workloads.iter().enumerate() {
            let created = client(&clients, w.tenant.as_str())?
                .placement
                .create_workload(proto::CreateWorkloadRequest {
                    spec: Some(w.spec.clone().into()),
                    tenant: String::new(),
                })
                .await
                .map_err(api(format!("workload {}", w.spec.name)))?;
            let accepted = Instant::now();
            let id = created
                .into_inner()
                .workload
                .map(|w| w.id)
                .unwrap_or_default();
            let id = WorkloadId::parse(&id).map_err(|e| SimFleetError::Api {
                what: format!("workload {}", w.spec.name),
                status: tonic::Status::internal(format!("the API answered a bad id: {e}")),
            })?;
            self.submitted.push(Submitted {
                id,
                name: w.spec.name.to_string(),
                kinds: ConstraintKind::of(&w.spec),
                accepted,
            });
            if n % 16 == 15 || n + 1 == total {
                progress.bar("submitting", n + 1, total, "workloads");
            }
        }
        progress.end_bar();
        Ok(())
    }

    /// The submitted workloads, in submission order.
    pub fn submitted(&self) -> &[Submitted] {
        &self.submitted
    }

    /// Every submitted workload as central holds it now.
    pub async fn workloads(&self) -> Result<Vec<Workload>, SimFleetError> {
        let ids: BTreeSet<&WorkloadId> = self.submitted.iter().map(|s| &s.id).collect();
        Ok(self
            .central()
            .tables()
            .workloads()
            .list_all(None, 1_000)
            .await?
            .into_iter()
            .filter(|w| ids.contains(&w.id))
            .collect())
    }

    /// Waits until every submitted workload settled: active, approved for a window that has
    /// not started, or finished (completed, canceled, failed). A progress bar meanwhile.
    pub async fn wait_settled(
        &mut self,
        limit: Duration,
        progress: &Progress,
    ) -> Result<Duration, SimFleetError> {
        let first = self.submitted.first().map(|s| s.accepted);
        let deadline = Instant::now() + limit;
        let total = self.submitted.len();
        loop {
            let now = meridian_central::clock::now();
            let workloads = self.workloads().await?;
            let settled = workloads.iter().filter(|w| settled(w, now)).count();
            let active = workloads
                .iter()
                .filter(|w| w.state == ReservationState::Active)
                .count();
            progress.bar(
                "converging",
                settled,
                total,
                &format!("workloads settled ({active} active)"),
            );
            if settled == total {
                progress.end_bar();
                self.converge_time = first.map_or(Duration::ZERO, |f| f.elapsed());
                return Ok(self.converge_time);
            }
            if Instant::now() >= deadline {
                progress.end_bar();
                return Err(SimFleetError::Timeout(format!(
                    "after {limit:?}, {settled}/{total} workloads settled"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What central holds now about the fleet and the submitted workloads.
    pub async fn summary(&self) -> Result<SimSummary, SimFleetError> {
        let tables = self.central().tables();
        let sites = tables.sites().list_all(None, 1_000).await?;
        let tier_of: HashMap<&SiteId, &'static str> = sites
            .iter()
            .map(|s| {
                let tier = match s.tier {
                    SiteTier::Core => "core",
                    SiteTier::Edge => "edge",
                };
                (&s.id, tier)
            })
            .collect();
        let mut gpus_by_tier: BTreeMap<String, TierUse> = BTreeMap::new();
        for server in tables.servers().list_all(None, 1_000).await? {
            let tier = tier_of.get(&server.site).copied().unwrap_or("unknown");
            gpus_by_tier.entry(tier.to_owned()).or_default().gpus += server.gpus.len();
        }
        let workloads = self.workloads().await?;
        let state_of: HashMap<&WorkloadId, &ReservationState> =
            workloads.iter().map(|w| (&w.id, &w.state)).collect();
        let mut held = BTreeSet::new();
        for p in tables.placements().list_all(None, 1_000).await? {
            if state_of.get(&p.workload) != Some(&&ReservationState::Active) {
                continue;
            }
            for a in &p.assignments {
                for gpu in a.slot.gpu_indices() {
                    held.insert((a.site.clone(), a.server.clone(), gpu));
                }
            }
        }
        for (site, _, _) in &held {
            let tier = tier_of.get(site).copied().unwrap_or("unknown");
            gpus_by_tier.entry(tier.to_owned()).or_default().allocated += 1;
        }
        let mut workloads_by_state = BTreeMap::new();
        let mut failed = Vec::new();
        for w in &workloads {
            *workloads_by_state
                .entry(w.state.name().to_owned())
                .or_insert(0) += 1;
            if let ReservationState::Failed { reason } = &w.state {
                failed.push((w.spec.name.to_string(), reason.clone()));
            }
        }
        let mut submitted_by_kind = BTreeMap::new();
        let mut placed_by_kind = BTreeMap::new();
        let active = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut latencies = Vec::new();
        for s in &self.submitted {
            let placed = matches!(
                state_of.get(&s.id),
                Some(ReservationState::Approved | ReservationState::Active)
            );
            for k in &s.kinds {
                *submitted_by_kind.entry(*k).or_insert(0) += 1;
                if placed {
                    *placed_by_kind.entry(*k).or_insert(0) += 1;
                }
            }
            if let Some(at) = active.get(&s.id) {
                latencies.push(at.saturating_duration_since(s.accepted));
            }
        }
        latencies.sort();
        let (mut gateways, mut endpoints_published) = (0, 0);
        for h in self.hardware.values() {
            if let Some(g) = &h.gateway {
                gateways += 1;
                endpoints_published += g.published().await;
            }
        }
        let pick = |q| (!latencies.is_empty()).then(|| crate::bench::percentile(&latencies, q));
        Ok(SimSummary {
            sites: self.fleet.sites.len(),
            sites_online: sites
                .iter()
                .filter(|s| s.state == SiteState::Online)
                .count(),
            hardware_sites: self.hardware.len(),
            emulated_servers: self.hardware.values().map(|h| h.servers.len()).sum(),
            hardware: self.hardware_view(),
            gateways,
            endpoints_published,
            gateways_skipped: self.gateways_skipped.clone(),
            volumes: self.volumes_on_arrays(),
            server_actions: None,
            workloads_by_state,
            failed,
            gpus_by_tier,
            submitted_by_kind,
            placed_by_kind,
            latency_p50: pick(0.5),
            latency_p99: pick(0.99),
            latency_samples: latencies.len(),
            enrol_time: self.enrol_time,
            converge_time: self.converge_time,
        })
    }

    /// What the emulated DPUs and switches show now.
    pub fn hardware_view(&self) -> summary::HardwareView {
        let mut v = summary::HardwareView::default();
        for h in self.hardware.values() {
            v.dpus += h.servers.len();
            v.dpus_started_as_nic += h.servers.iter().filter(|s| s.dpu_started_as_nic).count();
            v.dpus_in_dpu_mode += h.dpus_in_dpu_mode();
            let view = h.switch_view();
            v.switches += 1;
            v.switch_vrfs += view.vrfs.len();
            v.switch_bonds_in_vlans += view.bonds_in_vlans.len();
        }
        v
    }

    /// Stops central and opens it again on the same data directory and ports; the agents
    /// reconnect by themselves.
    pub async fn restart_central(&mut self) -> Result<(), SimFleetError> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(c) = self.central.take() {
            c.shutdown().await;
        }
        // The old endpoint lets go of its ports once its last connection is dropped.
        let reopen = Instant::now();
        let central = loop {
            match Central::open_with_clock(self.config.clone(), Arc::clone(&self.clock)).await {
                Ok(c) => break c,
                Err(e) if reopen.elapsed() < Duration::from_secs(30) => {
                    tracing::debug!(error = %e, "central cannot restart yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.central = Some(central);
        if !self.submitted.is_empty() {
            self.watch_workloads().await?;
        }
        Ok(())
    }

    /// Stops the agents, the emulated hardware, the proxy and central.
    pub async fn shutdown(mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        for (_, metrics) in std::mem::take(&mut self.agent_metrics) {
            metrics.shutdown().await;
        }
        let mut stopping = tokio::task::JoinSet::new();
        for agent in self.agents.iter_mut().filter_map(Option::take) {
            stopping.spawn(agent.shutdown());
        }
        while stopping.join_next().await.is_some() {}
        for (_, hw) in std::mem::take(&mut self.hardware) {
            hw.shutdown().await;
        }
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        self.proxy.shutdown().await;
        if let Some(c) = self.central.take() {
            c.shutdown().await;
        }
    }
}

/// Whether `w` needs nothing more from the fleet now.
fn settled(w: &Workload, now: Timestamp) -> bool {
    match &w.state {
        ReservationState::Pending => false,
        ReservationState::Approved => w.spec.window.is_some_and(|win| win.start() > now),
        _ => true,
    }
}
