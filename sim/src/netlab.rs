//! A two-site network lab on the real kernel, for the site-networks end-to-end test and B13:
//! the real `meridian-central` (on its embedded store) and two real `meridian-agent`
//! processes, each site in network namespaces the lab makes.
//!
//! ```text
//!                      inet (routes 203.0.113.0/28 via gw1, 203.0.113.16/28 via gw2)
//!                     /                                                  \
//!   gw1: wan0 192.0.2.1/30 + 203.0.113.1/32          gw2: wan0 192.0.2.5/30 + 203.0.113.17/32
//!        und0 10.255.1.1/24                               und0 10.255.2.1/24
//!          |                                                |
//!   sw1 (NVUE emulator realised on the kernel,       sw2 (likewise, VTEP 10.255.2.2)
//!        VTEP 10.255.1.2), swp1, swp2                     swp1, swp2
//!       /        \                                       /        \
//!   lab1-a      lab1-b  (container hosts: eth0)      lab2-a      lab2-b
//! ```
//!
//! Each agent manages its site's two servers (Redfish BMC emulators without GPUs, cabled to
//! the switch's `bond1`/`bond2`), the switch (NVUE emulator), the site's storage array (an
//! ONTAP REST emulator with a 1 TiB aggregate) and the gateway node, and both
//! servers are `[[host_network]]` container hosts whose uplink is `eth0`. A replica of tenant
//! `t` on server `s` lives in namespace `mt-<s>-<t>`, made by the agent. Agents reach central
//! through a [`FaultProxy`], so a site can be cut off. The site's tunnel endpoint is the first
//! host address of its gateway range (central's rule), held by the gateway's `wan0`.
//!
//! Needs root, `ip`, `nft` and `ping`; the lab's namespaces are removed when it is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_common::model::{Server, Site};
use meridian_emulators::nvue::{NvueEmulator, NvueEmulatorConfig};
use meridian_emulators::ontap::{OntapEmulator, OntapEmulatorConfig};
use meridian_emulators::proxy::FaultProxy;
use meridian_emulators::redfish::{BmcEmulator, BmcProfile, RunningBmc};
use meridian_testkit::netns::{Namespaces, ns_ok, veth};
use meridian_testkit::processes::{Reaped, clean, free_port, terminate};
use serde_json::Value;

/// The lab's site IDs.
pub const SITES: [&str; 2] = ["lab-1", "lab-2"];
/// Each site's servers (container hosts).
pub const SERVERS: [[&str; 2]; 2] = [["lab1-a", "lab1-b"], ["lab2-a", "lab2-b"]];
/// Each site's gateway range; its first host address is the gateway's own.
pub const GATEWAY_RANGES: [&str; 2] = ["203.0.113.0/28", "203.0.113.16/28"];
/// Each site's storage array, MiB (the emulated aggregate's size).
pub const SITE_STORAGE_MIB: u64 = 1024 * 1024;

/// Where the lab finds its binaries and what central is told beyond the lab's own settings.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub central_bin: PathBuf,
    pub agent_bin: PathBuf,
    pub cli_bin: PathBuf,
    /// Extra `MERIDIAN_CENTRAL_*` variables (e.g. the `[dns]` table).
    pub central_env: Vec<(String, String)>,
}

/// Why the lab could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Setup(String),
    #[error("`meridian {args}` failed: {stderr}")]
    Cli { args: String, stderr: String },
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

fn setup(what: &str) -> impl FnOnce(String) -> LabError + '_ {
    move |e| LabError::Setup(format!("{what}: {e}"))
}

/// One site of the lab.
#[derive(Debug)]
pub struct LabSite {
    pub id: String,
    /// The gateway node's namespace.
    pub gateway: String,
    /// The switch's namespace.
    pub switch: String,
    /// The servers' namespaces, by server ID.
    pub servers: Vec<(String, String)>,
    /// The gateway's own (tunnel endpoint, egress) address.
    pub endpoint: Ipv4Addr,
    pub agent_log: PathBuf,
    /// The agent's configuration file.
    pub agent_config: PathBuf,
    /// Where the agent serves `/metrics` (a free port of 127.0.0.1).
    pub metrics: SocketAddr,
}

/// The running lab; see the module documentation.
pub struct NetLab {
    pub dir: tempfile::TempDir,
    pub ns: Namespaces,
    /// The "internet" namespace.
    pub inet: String,
    pub sites: Vec<LabSite>,
    /// The provider admin's token.
    pub admin: String,
    pub central_log: PathBuf,
    /// Where central serves `/metrics`.
    pub central_metrics: SocketAddr,
    pub proxy: FaultProxy,
    cli_bin: PathBuf,
    api: String,
    ca: PathBuf,
    central: Option<Reaped>,
    agents: Vec<Option<Reaped>>,
    agent_bin: PathBuf,
    _switches: Vec<NvueEmulator>,
    /// Every server's BMC emulator, by server ID.
    pub bmcs: Vec<(String, RunningBmc)>,
    /// Each site's storage array, in site order.
    pub arrays: Vec<OntapEmulator>,
}

impl std::fmt::Debug for NetLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetLab")
            .field("inet", &self.inet)
            .field("sites", &self.sites)
            .finish()
    }
}

fn site_record(id: &str, range: &str) -> Result<Site, LabError> {
    toml::from_str(&format!(
        "id = \"{id}\"\nname = \"{id}\"\ntier = \"edge\"\nlocation = {{ lat = 50.11, lon = 8.68 }}\ncountry = \"DE\"\npools = [\"default\"]\ngateway_range = \"{range}\"\nprice_per_gpu_hour = 1000000\nstate = \"online\"\nstorage_mib = {SITE_STORAGE_MIB}\n"
    ))
    .map_err(|e| LabError::Setup(format!("site {id}: {e}")))
}

fn server_record(site: &str, id: &str) -> Result<Server, LabError> {
    toml::from_str(&format!(
        "id = \"{id}\"\nsite = \"{site}\"\nbmc = {{ url = \"http://127.0.0.1:1\", vendor = \"generic\" }}\nserial = \"SN-{id}\"\ncpu_cores = 64\nmemory_mib = 262144\nstate = \"available\"\npool = \"default\"\n"
    ))
    .map_err(|e| LabError::Setup(format!("server {id}: {e}")))
}

impl NetLab {
    /// Builds the namespaces, starts the emulators, central and both agents, and waits until
    /// both sites are connected. `prefix` names the lab's namespaces (unique per process).
    pub async fn start(cfg: LabConfig, prefix: &str) -> Result<NetLab, LabError> {
        let dir = tempfile::tempdir().map_err(|e| setup("a directory")(e.to_string()))?;
        let ns = Namespaces::new(prefix);
        let inet = ns.add("inet");
        ns_ok(&inet, "sysctl -qw net.ipv4.ip_forward=1");

        // Central's store: the two sites and their servers, written offline.
        let data = dir.path().join("central");
        {
            let mut c = CentralConfig {
                data_dir: data.clone(),
                ..CentralConfig::default()
            };
            c.channel.listen = "127.0.0.1:0".parse().expect("an address");
            c.api.listen = "127.0.0.1:0".parse().expect("an address");
            c.console.listen = "127.0.0.1:0".parse().expect("an address");
            c.metrics.listen = "127.0.0.1:0".parse().expect("an address");
            let central = Central::open(c)
                .await
                .map_err(|e| setup("central's store")(e.to_string()))?;
            let t = central.tables();
            for (i, site) in SITES.iter().enumerate() {
                t.sites()
                    .create(&site_record(site, GATEWAY_RANGES[i])?)
                    .await
                    .map_err(|e| setup("a site")(e.to_string()))?;
                for server in SERVERS[i] {
                    t.servers()
                        .create(&server_record(site, server)?)
                        .await
                        .map_err(|e| setup("a server")(e.to_string()))?;
                }
            }
            central.shutdown().await;
        }
        let c = start_central(
            &cfg.central_bin,
            &data,
            &cfg.central_env,
            dir.path().join("central.log"),
        )?;
        let (admin, central_log, udp, api, ca) = (c.admin, c.log, c.channel, c.api, c.ca);
        let central_metrics = c.metrics;
        let central = c.process;
        let proxy = FaultProxy::new(udp, 7);

        let mut lab = NetLab {
            ns,
            inet,
            sites: Vec::new(),
            admin,
            central_log,
            central_metrics,
            proxy,
            cli_bin: cfg.cli_bin.clone(),
            api,
            ca,
            central: Some(central),
            agents: Vec::new(),
            agent_bin: cfg.agent_bin.clone(),
            _switches: Vec::new(),
            bmcs: Vec::new(),
            arrays: Vec::new(),
            dir,
        };
        for i in 0..SITES.len() {
            lab.start_site(i, &cfg.agent_bin).await?;
        }
        for site in &lab.sites {
            wait_for_log(&site.agent_log, "session open")?;
        }
        Ok(lab)
    }

    async fn start_site(&mut self, i: usize, agent_bin: &Path) -> Result<(), LabError> {
        let n = i + 1;
        let id = SITES[i];
        let gw = self.ns.add(&format!("gw{n}"));
        let sw = self.ns.add(&format!("sw{n}"));
        let range: meridian_common::model::Ipv4Net = GATEWAY_RANGES[i]
            .parse()
            .map_err(|e: meridian_common::model::NetError| setup("a range")(e.to_string()))?;
        let endpoint = meridian_plan::compiler::tunnel_endpoint(range);
        // WAN: a /30 to the internet namespace, which routes the gateway range to it.
        let (wan, inet_side) = (
            Ipv4Addr::new(192, 0, 2, (4 * i + 1) as u8),
            Ipv4Addr::new(192, 0, 2, (4 * i + 2) as u8),
        );
        veth(&gw, "wan0", &self.inet, &format!("w{n}"));
        ns_ok(&gw, &format!("ip addr add {wan}/30 dev wan0"));
        ns_ok(&gw, &format!("ip addr add {endpoint}/32 dev wan0"));
        ns_ok(&gw, &format!("ip route add default via {inet_side}"));
        ns_ok(&self.inet, &format!("ip addr add {inet_side}/30 dev w{n}"));
        ns_ok(&self.inet, &format!("ip route add {range} via {wan}"));
        // Underlay between the gateway and the leaf.
        let (gw_under, leaf_vtep) = (
            Ipv4Addr::new(10, 255, n as u8, 1),
            Ipv4Addr::new(10, 255, n as u8, 2),
        );
        veth(&gw, "und0", &sw, "und0");
        ns_ok(&gw, &format!("ip addr add {gw_under}/24 dev und0"));
        ns_ok(&sw, &format!("ip addr add {leaf_vtep}/24 dev und0"));
        let switch = NvueEmulator::start(NvueEmulatorConfig {
            step_delay: Duration::from_millis(5),
            ..NvueEmulatorConfig::default()
        })
        .map_err(|e| setup("the NVUE emulator")(e.to_string()))?
        .with_namespace(sw.clone(), leaf_vtep, &[gw_under]);
        let defaults = NvueEmulatorConfig::default();
        let array = OntapEmulator::start(OntapEmulatorConfig {
            aggregate_size: SITE_STORAGE_MIB << 20,
            ..OntapEmulatorConfig::default()
        })
        .map_err(|e| setup("the ONTAP emulator")(e.to_string()))?;
        let storage = array.config();
        let storage_toml = format!(
            "[storage]\nurl = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nsvm = \"{}\"\naggregate = \"{}\"\n\n",
            array.url(),
            storage.username,
            storage.password,
            storage.svm,
            storage.aggregate
        );

        let mut servers = Vec::new();
        let mut server_toml = String::new();
        for (k, server) in SERVERS[i].iter().enumerate() {
            let host = self.ns.add(&format!("s{n}{k}"));
            veth(&host, "eth0", &sw, &format!("swp{}", k + 1));
            let bmc = BmcEmulator::new(BmcProfile::gpu_server(Vec::<String>::new()))
                .credentials("admin", "lab-password")
                .power_delay(Duration::from_millis(20))
                .start()
                .await
                .map_err(|e| setup("a BMC emulator")(e.to_string()))?;
            server_toml.push_str(&format!(
                "[[servers]]\nid = \"{server}\"\nbmc_url = \"{}\"\nusername = \"admin\"\npassword = \"lab-password\"\nswitch = {{ name = \"leaf{n}\", bond = \"bond{}\", ports = [\"swp{}\"] }}\n\n[[host_network]]\nserver = \"{server}\"\nuplink = \"eth0\"\nnetns = \"{host}\"\n\n",
                bmc.url(),
                k + 1,
                k + 1
            ));
            self.bmcs.push((server.to_string(), bmc));
            servers.push((server.to_string(), host));
        }

        // Enrolment through the proxy.
        let boot = self.dir.path().join(format!("boot-{n}.toml"));
        self.cli(
            &self.admin,
            &[
                "site",
                "bootstrap",
                id,
                "--export",
                &boot.display().to_string(),
            ],
        )?;
        let port = self
            .proxy
            .add_site(id)
            .await
            .map_err(|e| setup("the fault proxy")(e.to_string()))?;
        let text =
            std::fs::read_to_string(&boot).map_err(|e| setup("the bootstrap")(e.to_string()))?;
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("central_addresses") {
                    format!("central_addresses = [\"127.0.0.1:{}\"]", port.port())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&boot, text).map_err(|e| setup("the bootstrap")(e.to_string()))?;

        let metrics_port = free_port(false);
        let config = format!(
            "data_dir = \"{data}\"\nbootstrap_file = \"{boot}\"\nbind = \"127.0.0.1:0\"\nheartbeat_interval_ms = 300\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[reconciler]\nresync_ms = 1000\n\n{storage_toml}{server_toml}[[switches]]\nname = \"leaf{n}\"\nnvue_url = \"{url}\"\nusername = \"{user}\"\npassword = \"{password}\"\nvtep = \"{leaf_vtep}\"\nasn = {asn}\nprivate_range = \"10.0.0.0/8\"\n\n[gateway]\nwan_interface = \"wan0\"\nwan_next_hop = \"{inet_side}\"\negress_address = \"{endpoint}\"\npublic_range = \"{range}\"\nunderlay_address = \"{gw_under}\"\nnetns = \"{gw}\"\n",
            data = self.dir.path().join(format!("agent-{n}")).display(),
            boot = boot.display(),
            url = switch.url(),
            user = defaults.username,
            password = defaults.password,
            asn = 65100 + n,
            metrics = metrics_port,
        );
        let config_path = self.dir.path().join(format!("agent-{n}.toml"));
        std::fs::write(&config_path, config)
            .map_err(|e| setup("the agent config")(e.to_string()))?;
        let agent_log = self.dir.path().join(format!("agent-{n}.log"));
        let agent = spawn_agent(agent_bin, &config_path, &agent_log, false)?;
        self.agents.push(Some(agent));
        self._switches.push(switch);
        self.arrays.push(array);
        self.sites.push(LabSite {
            id: id.to_owned(),
            gateway: gw,
            switch: sw,
            servers,
            endpoint,
            agent_log,
            agent_config: config_path,
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        });
        Ok(())
    }

    /// Kills site `i`'s agent with SIGKILL (no shutdown of any kind).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut a) = self.agents[i].take() {
            let _ = a.0.kill();
            let _ = a.0.wait();
        }
    }

    /// Starts site `i`'s agent again on its data directory (after [`NetLab::kill_agent`]);
    /// its log is appended to.
    pub fn restart_agent(&mut self, i: usize) -> Result<(), LabError> {
        self.kill_agent(i);
        let site = &self.sites[i];
        let agent = spawn_agent(&self.agent_bin, &site.agent_config, &site.agent_log, true)?;
        self.agents[i] = Some(agent);
        Ok(())
    }

    /// The BMC emulator of `server`.
    pub fn bmc(&self, server: &str) -> Option<&RunningBmc> {
        self.bmcs.iter().find(|(s, _)| s == server).map(|(_, b)| b)
    }

    /// Runs the CLI as `token`; its standard output.
    pub fn cli(&self, token: &str, args: &[&str]) -> Result<String, LabError> {
        let out = clean(Command::new(&self.cli_bin))
            .env("MERIDIAN_ENDPOINT", &self.api)
            .env("MERIDIAN_CA", &self.ca)
            .env("MERIDIAN_TOKEN", token)
            .env("HOME", self.dir.path())
            .args(args)
            .output()
            .map_err(|e| setup("the meridian CLI")(e.to_string()))?;
        if !out.status.success() {
            return Err(LabError::Cli {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the CLI with `-o json`.
    pub fn json(&self, token: &str, args: &[&str]) -> Result<Value, LabError> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.cli(token, &all)?;
        serde_json::from_str(&text).map_err(|e| setup("the CLI's JSON")(e.to_string()))
    }

    /// Deletes workload `id` as `token`, again while central answers that it changed under the
    /// request (its lifecycle moves workloads on by itself).
    pub fn delete_workload(&self, token: &str, id: &str) -> Result<(), LabError> {
        let mut tries = 0;
        loop {
            match self.cli(token, &["workload", "delete", id]) {
                Err(LabError::Cli { stderr, .. }) if stderr.contains("retry") && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => return r.map(|_| ()),
            }
        }
    }

    /// A file in the lab's directory holding `text`; its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("the lab's directory is writable");
        path.display().to_string()
    }

    /// Creates tenant `id` (through the CLI, as the provider admin) with an admin user and a
    /// token, and a storage quota of 1 TiB; returns the token.
    pub fn tenant(&self, id: &str) -> Result<String, LabError> {
        self.tenant_with_storage(id, 1024 * 1024)
    }

    /// [`NetLab::tenant`] with a storage quota of `storage_mib`.
    pub fn tenant_with_storage(&self, id: &str, storage_mib: u64) -> Result<String, LabError> {
        let yaml = self.file(
            &format!("tenant-{id}.yaml"),
            &format!("id: {id}\nname: {id}\nquotas:\n  gpus_per_model: {{H100-80GB: 8}}\n  mig_slices: 0\n  concurrent_reservations: 10\n  sites: 4\n  storage_mib: {storage_mib}\nresidency: []\nweights: {{latency: 25, data: 25, price: 25, packing: 25}}\nmax_priority: 10\n"),
        );
        self.cli(&self.admin, &["tenant", "create", "-f", &yaml])?;
        let user = format!("{id}-admin");
        self.cli(
            &self.admin,
            &[
                "user",
                "create",
                &user,
                "--role",
                "tenant-admin",
                "--tenant",
                id,
            ],
        )?;
        let token = self.json(
            &self.admin,
            &[
                "token",
                "create",
                "--user",
                &format!("{user}@{id}"),
                "--ttl-days",
                "1",
            ],
        )?;
        token["secret"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LabError::Setup(format!("no token secret in {token}")))
    }

    /// The namespace of tenant `tenant`'s replicas on `server` (made by the agent).
    pub fn replica_netns(server: &str, tenant: &str) -> String {
        format!("mt-{server}-{tenant}")
    }

    /// The site of `server`.
    pub fn site_of(&self, server: &str) -> Option<&LabSite> {
        self.sites
            .iter()
            .find(|s| s.servers.iter().any(|(id, _)| id == server))
    }

    /// Polls `workload get` as `token` until `done` holds; that JSON.
    pub fn wait_workload(
        &self,
        token: &str,
        id: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, LabError> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.json(token, &["workload", "get", id])?;
            if done(&got) {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(LabError::Timeout(format!("{id} {what}; last {got}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let logs =
            std::iter::once(&self.central_log).chain(self.sites.iter().map(|s| &s.agent_log));
        for log in logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!("--- {}:\n{}\n", log.display(), tail.join("\n")));
        }
        out
    }

    /// Stops the agents, then central.
    pub fn stop(&mut self) {
        for a in &mut self.agents {
            if let Some(a) = a.take() {
                terminate(a);
            }
        }
        if let Some(c) = self.central.take() {
            terminate(c);
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.stop();
        // The replicas' namespaces the agents made.
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if SERVERS
                    .iter()
                    .flatten()
                    .any(|s| name.starts_with(&format!("mt-{s}-")))
                {
                    let _ = Command::new("ip").args(["netns", "del", &name]).status();
                }
            }
        }
    }
}

/// `meridian-central` running on free 127.0.0.1 ports over the store in `data`, with the
/// provider admin's first token made offline before it starts.
#[derive(Debug)]
pub struct CentralProcess {
    pub process: Reaped,
    /// The provider admin's token.
    pub admin: String,
    /// Its standard error.
    pub log: PathBuf,
    /// The agent channel's address.
    pub channel: SocketAddr,
    /// The API's URL (`https://127.0.0.1:<port>`).
    pub api: String,
    /// Central's CA certificate, for the CLI.
    pub ca: PathBuf,
    /// The environment it was started with (for its offline subcommands).
    pub env: Vec<(String, String)>,
    /// Where it serves `/metrics`.
    pub metrics: SocketAddr,
}

/// Starts `meridian-central` (`bin`) on the store in `data` with the test settings (free
/// ports, a 3 s disconnect) and `extra_env` on top, after `admin-token --export`; waits until
/// its API listens. Its standard error goes to `log`.
pub fn start_central(
    bin: &Path,
    data: &Path,
    extra_env: &[(String, String)],
    log: PathBuf,
) -> Result<CentralProcess, LabError> {
    let (udp, tcp, metrics) = (free_port(true), free_port(false), free_port(false));
    let mut env: Vec<(String, String)> = vec![
        (
            "MERIDIAN_CENTRAL_DATA_DIR".into(),
            data.display().to_string(),
        ),
        (
            "MERIDIAN_CENTRAL_CHANNEL__LISTEN".into(),
            format!("127.0.0.1:{udp}"),
        ),
        (
            "MERIDIAN_CENTRAL_API__LISTEN".into(),
            format!("127.0.0.1:{tcp}"),
        ),
        (
            "MERIDIAN_CENTRAL_CONSOLE__LISTEN".into(),
            format!("127.0.0.1:{}", free_port(false)),
        ),
        (
            "MERIDIAN_CENTRAL_METRICS__LISTEN".into(),
            format!("127.0.0.1:{metrics}"),
        ),
        (
            "MERIDIAN_CENTRAL_CHANNEL__DISCONNECT_AFTER_MS".into(),
            "3000".into(),
        ),
    ];
    env.extend(extra_env.iter().cloned());
    let command = || {
        let mut c = clean(Command::new(bin));
        c.envs(env.iter().map(|(k, v)| (k, v)));
        c
    };
    let admin_file = log.with_file_name("admin.token");
    let out = command()
        .args(["admin-token", "--export"])
        .arg(&admin_file)
        .output()
        .map_err(|e| setup("meridian-central admin-token")(e.to_string()))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "meridian-central admin-token: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let admin = std::fs::read_to_string(&admin_file)
        .map_err(|e| setup("the admin token")(e.to_string()))?
        .trim()
        .to_owned();
    let process = Reaped(
        command()
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| setup("central's log")(e.to_string()))?)
            .spawn()
            .map_err(|e| setup("meridian-central")(e.to_string()))?,
    );
    wait_for_log(&log, "gRPC API listening")?;
    Ok(CentralProcess {
        process,
        admin,
        log,
        channel: SocketAddr::from(([127, 0, 0, 1], udp)),
        api: format!("https://127.0.0.1:{tcp}"),
        ca: data.join("ca").join("ca.crt"),
        env,
        metrics: SocketAddr::from(([127, 0, 0, 1], metrics)),
    })
}

/// Starts `meridian-agent` with `config`, its standard error to `log` (appended to, or made
/// anew).
fn spawn_agent(bin: &Path, config: &Path, log: &Path, append: bool) -> Result<Reaped, LabError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(log)
        .map_err(|e| setup("the agent's log")(e.to_string()))?;
    Ok(Reaped(
        clean(Command::new(bin))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| setup("meridian-agent")(e.to_string()))?,
    ))
}

/// Waits until the file at `path` holds `needle` (60 s at most).
pub fn wait_for_log(path: &Path, needle: &str) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return Err(LabError::Timeout(format!(
                "{needle:?} in {}: {text}",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
