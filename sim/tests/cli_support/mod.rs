//! The real binaries on 127.0.0.1 for the CLI tests: `meridian-central` (offline
//! `admin-token`, then the server), the `meridian` CLI and a real `meridian-agent` enrolled
//! for one edge site of a generated fleet; a tenant `acme` with an admin and a token.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_sim::fleet::{self, Fleet, FleetSpec};
use meridian_sim::netlab::start_central;
use meridian_testkit::processes::{Reaped, binary as bin, clean, terminate, wait_log};
use meridian_testkit::wait::LIMIT;

pub struct Cli {
    pub logs: Vec<PathBuf>,
    pub bin: PathBuf,
    pub endpoint: String,
    pub ca: PathBuf,
    pub dir: PathBuf,
}

impl Cli {
    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        clean(Command::new(&self.bin))
            .env("MERIDIAN_ENDPOINT", &self.endpoint)
            .env("MERIDIAN_CA", &self.ca)
            .env("MERIDIAN_TOKEN", token)
            .env("HOME", &self.dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert!(
            out.status.success(),
            "meridian {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, token: &str, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(token, &all)).unwrap()
    }

    /// The tails of the processes' logs, for a failure message.
    pub fn dump_logs(&self) {
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- {}:\n{}", log.display(), tail.join("\n"));
        }
    }

    /// Polls `workload get` until its state is `want`.
    pub fn wait_state(&self, token: &str, id: &str, want: &str) -> serde_json::Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let got = self.json(token, &["workload", "get", id]);
            let state = &got["workload"]["state"];
            let name = state
                .as_str()
                .map(str::to_owned)
                .or_else(|| state.as_object().and_then(|o| o.keys().next().cloned()))
                .unwrap_or_default();
            if name == want {
                return got;
            }
            assert!(
                !(name == "failed" && want != "failed"),
                "{id} failed: {got}"
            );
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("{id} never reached {want}; last {got}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `workload get` until `done` holds for its JSON; returns that JSON.
    pub fn wait_get(
        &self,
        token: &str,
        id: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let got = self.json(token, &["workload", "get", id]);
            if done(&got) {
                return got;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("{id}: never {what}; last {got}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running central, CLI, agent and tenant.
pub struct World {
    pub dir: tempfile::TempDir,
    /// Central's data directory.
    pub data: PathBuf,
    pub central_bin: PathBuf,
    /// Central's environment (data directory, listeners, and the caller's extras).
    pub central_env: Vec<(String, String)>,
    pub central: Option<Reaped>,
    pub agent: Option<Reaped>,
    pub cli: Cli,
    /// The provider admin's token.
    pub admin: String,
    /// acme's tenant admin's token.
    pub acme: String,
    /// The enrolled site.
    pub site: String,
    pub fleet: Fleet,
    /// acme's tenant spec.
    pub tenant_yaml: PathBuf,
}

impl World {
    /// Starts central (with `extra_env` on top of its test settings), creates tenant acme
    /// with an admin and a token, bootstraps the fleet's one site and waits for its agent's
    /// session.
    pub async fn start(extra_env: &[(&str, &str)]) -> World {
        let central_bin = bin("meridian-central", "meridian-central");
        let cli_bin = bin("meridian", "meridian-client");
        let agent_bin = bin("meridian-agent", "meridian-agent");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("central");

        // The fleet's inventory (one edge site with its servers and a region), as agents'
        // inventory reports would have left it; written through the library, central stopped.
        let fleet = fleet::generate(&FleetSpec::with_sites(42, 1));
        let site = fleet.sites[0].id.to_string();
        {
            let mut config = CentralConfig {
                data_dir: data.clone(),
                ..CentralConfig::default()
            };
            config.channel.listen = "127.0.0.1:0".parse().unwrap();
            config.api.listen = "127.0.0.1:0".parse().unwrap();
            config.console.listen = "127.0.0.1:0".parse().unwrap();
            config.metrics.listen = "127.0.0.1:0".parse().unwrap();
            let central = Central::open(config).await.unwrap();
            let t = central.tables();
            t.regions().create_many(&fleet.regions, 64).await.unwrap();
            t.sites().create_many(&fleet.sites, 64).await.unwrap();
            t.servers().create_many(&fleet.servers, 64).await.unwrap();
            central.shutdown().await;
        }
        let extra: Vec<(String, String)> = extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let central = start_central(&central_bin, &data, &extra, dir.path().join("central.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (admin, log, central_env) = (central.admin, central.log, central.env);
        let (central_api, central_ca) = (central.api, central.ca);
        let central = central.process;
        let cli = Cli {
            logs: vec![log.clone(), dir.path().join("agent.log")],
            bin: cli_bin,
            endpoint: central_api,
            ca: central_ca,
            dir: dir.path().to_owned(),
        };

        // Provider admin: a tenant, its admin, a token for it; a bootstrap file for the site.
        let tenant_yaml = dir.path().join("tenant.yaml");
        std::fs::write(&tenant_yaml, "id: acme\nname: acme\nquotas:\n  gpus_per_model: {H100-80GB: 16, L40S: 16, A100-80GB: 16, H200-141GB: 16}\n  mig_slices: 14\n  concurrent_reservations: 10\n  sites: 4\nresidency: []\nweights: {latency: 25, data: 25, price: 25, packing: 25}\nmax_priority: 10\n").unwrap();
        cli.ok(
            &admin,
            &["tenant", "create", "-f", tenant_yaml.to_str().unwrap()],
        );
        let user = cli.json(
            &admin,
            &[
                "user",
                "create",
                "acme-admin",
                "--role",
                "tenant-admin",
                "--tenant",
                "acme",
            ],
        );
        // User IDs are scoped per tenant.
        assert_eq!(user["id"], "acme-admin@acme", "{user}");
        let token = cli.json(
            &admin,
            &[
                "token",
                "create",
                "--user",
                "acme-admin@acme",
                "--ttl-days",
                "1",
            ],
        );
        let acme = token["secret"].as_str().unwrap().to_owned();
        let boot = dir.path().join("boot.toml");
        cli.ok(
            &admin,
            &[
                "site",
                "bootstrap",
                &site,
                "--export",
                boot.to_str().unwrap(),
            ],
        );

        let agent_log = dir.path().join("agent.log");
        let agent = Reaped(
            clean(Command::new(&agent_bin))
                .env("MERIDIAN_AGENT_DATA_DIR", dir.path().join("agent"))
                .env("MERIDIAN_AGENT_BOOTSTRAP_FILE", &boot)
                .env("MERIDIAN_AGENT_BIND", "127.0.0.1:0")
                .env("MERIDIAN_AGENT_HEARTBEAT_INTERVAL_MS", "300")
                .env("MERIDIAN_AGENT_METRICS__LISTEN", "127.0.0.1:0")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&agent_log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_log(&agent_log, "session open");
        World {
            dir,
            data,
            central_bin,
            central_env,
            central: Some(central),
            agent: Some(agent),
            cli,
            admin,
            acme,
            site,
            fleet,
            tenant_yaml,
        }
    }

    /// `meridian-central` with central's environment (for offline subcommands).
    pub fn central_command(&self) -> Command {
        let mut c = clean(Command::new(&self.central_bin));
        c.envs(self.central_env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Central's log so far.
    pub fn central_log(&self) -> String {
        std::fs::read_to_string(&self.cli.logs[0]).unwrap_or_default()
    }

    /// A file in the test's directory holding `text`; returns its path as a string.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Stops the agent, then central, cleanly.
    pub fn stop(&mut self) {
        if let Some(agent) = self.agent.take() {
            terminate(agent);
        }
        if let Some(central) = self.central.take() {
            terminate(central);
        }
    }
}
