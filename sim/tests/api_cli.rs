//! End to end with the real binaries: `meridian-central` (offline `admin-token`, then the
//! server), the `meridian` CLI and a real `meridian-agent`, as processes on 127.0.0.1.
//!
//! A provider admin creates a tenant, its admin and a token; bootstraps the site and the agent
//! enrols. The tenant admin applies workloads from YAML and watches them move through the
//! lifecycle: an open-ended one goes `pending -> approved -> active` once the agent has
//! applied the intent holding it and is canceled by `delete`; a windowed one also completes
//! at the end of its window. Scripts get stable exit codes and JSON. Finally the audit chain
//! of everything done is verified offline.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_sim::fleet::{self, FleetSpec};
use meridian_testkit::processes::{Reaped, binary as bin, clean, free_port, terminate, wait_log};
use meridian_testkit::wait::LIMIT;

struct Cli {
    logs: Vec<PathBuf>,
    bin: PathBuf,
    endpoint: String,
    ca: PathBuf,
    dir: PathBuf,
}

impl Cli {
    fn run(&self, token: &str, args: &[&str]) -> Output {
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
    fn ok(&self, token: &str, args: &[&str]) -> String {
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

    fn json(&self, token: &str, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(token, &all)).unwrap()
    }

    /// Polls `workload get` until its state is `want`.
    fn wait_state(&self, token: &str, id: &str, want: &str) -> serde_json::Value {
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
                for log in &self.logs {
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    eprintln!("--- {}:\n{}", log.display(), tail.join("\n"));
                }
                panic!("{id} never reached {want}; last {got}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_drive_workloads_through_the_lifecycle_with_the_real_binaries() {
    let central_bin = bin("meridian-central", "meridian-central");
    let cli_bin = bin("meridian", "meridian-client");
    let agent_bin = bin("meridian-agent", "meridian-agent");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("central");
    let (udp, tcp) = (free_port(true), free_port(false));

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
        let central = Central::open(config).await.unwrap();
        let t = central.tables();
        t.regions().create_many(&fleet.regions, 64).await.unwrap();
        t.sites().create_many(&fleet.sites, 64).await.unwrap();
        t.servers().create_many(&fleet.servers, 64).await.unwrap();
        central.shutdown().await;
    }
    let central_env = |c: &mut Command| {
        c.env("MERIDIAN_CENTRAL_DATA_DIR", &data)
            .env(
                "MERIDIAN_CENTRAL_CHANNEL__LISTEN",
                format!("127.0.0.1:{udp}"),
            )
            .env("MERIDIAN_CENTRAL_API__LISTEN", format!("127.0.0.1:{tcp}"))
            .env("MERIDIAN_CENTRAL_CHANNEL__DISCONNECT_AFTER_MS", "3000");
    };
    // The first provider-admin token, offline.
    let admin_file = dir.path().join("admin.token");
    let mut c = clean(Command::new(&central_bin));
    central_env(&mut c);
    let out = c
        .args(["admin-token", "--export"])
        .arg(&admin_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = std::fs::read_to_string(&admin_file)
        .unwrap()
        .trim()
        .to_owned();

    let log = dir.path().join("central.log");
    let mut c = clean(Command::new(&central_bin));
    central_env(&mut c);
    let central = Reaped(
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_log(&log, "gRPC API listening");
    let cli = Cli {
        logs: vec![log.clone(), dir.path().join("agent.log")],
        bin: cli_bin,
        endpoint: format!("https://127.0.0.1:{tcp}"),
        ca: data.join("ca").join("ca.crt"),
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
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_log(&agent_log, "session open");

    // The tenant: explain, apply, watch it become active, list, delete.
    let gpu = fleet.servers[0].gpus[0].model.as_str();
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, format!("name: train-1\nkind: batch_job\nreplicas: 1\npriority: 5\nresources:\n  accelerator: {{whole_gpus: {{model: {gpu}, count: 1}}}}\n  cpu_cores: 4\n  memory_mib: 8192\nconstraints: {{}}\n")).unwrap();
    let explain = cli.ok(&acme, &["workload", "explain", "-f", job.to_str().unwrap()]);
    assert!(explain.contains("would place 1 replica"), "{explain}");
    let applied = cli.json(&acme, &["workload", "apply", "-f", job.to_str().unwrap()]);
    let id = applied["id"].as_str().unwrap().to_owned();
    let active = cli.wait_state(&acme, &id, "active");
    assert_eq!(active["placement"]["assignments"][0]["site"], site.as_str());
    let listed = cli.ok(&acme, &["workload", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("active"),
        "{listed}"
    );
    // The SITES column names where a placed workload runs.
    let row = listed.lines().find(|l| l.contains(&id)).unwrap();
    assert!(row.contains(&site), "no site in {row:?}");
    // A reader that goes away (`| head`) ends the command quietly, without a panic.
    let mut piped = clean(Command::new(&cli.bin))
        .env("MERIDIAN_ENDPOINT", &cli.endpoint)
        .env("MERIDIAN_CA", &cli.ca)
        .env("MERIDIAN_TOKEN", &admin)
        .env("HOME", &cli.dir)
        .args(["site", "servers", &site, "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(piped.stdout.take());
    let out = piped.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{:?}: {stderr}",
        out.status
    );
    let drift = cli.json(&admin, &["site", "drift", &site]);
    assert!(
        drift["applied_generation"].as_u64().unwrap() >= 1,
        "{drift}"
    );
    assert_eq!(
        drift["applied_generation"], drift["desired_generation"],
        "{drift}"
    );

    // An inference endpoint that exposes a port: `workload get` shows where it is published
    // (an address of the site's gateway range, the port, the replica behind it) and, once the
    // site applied the intent carrying it, that it is published.
    let serve = dir.path().join("serve.yaml");
    std::fs::write(&serve, format!("name: serve-1\nkind: inference_endpoint\nreplicas: 1\nresources:\n  accelerator: {{whole_gpus: {{model: {gpu}, count: 1}}}}\nconstraints: {{}}\nexpose:\n  - {{port: 8443, protocol: tcp}}\n")).unwrap();
    let serve_id = cli.json(&acme, &["workload", "apply", "-f", serve.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.wait_state(&acme, &serve_id, "active");
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = cli.json(&acme, &["workload", "get", &serve_id]);
        if got["endpoints"][0]["applied"] == true {
            break got;
        }
        assert!(Instant::now() < deadline, "never published: {got}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let endpoints = got["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{got}");
    let e = &endpoints[0];
    assert_eq!(e["site"], site.as_str(), "{got}");
    assert_eq!(e["exposure"]["public_port"], 8443, "{got}");
    assert_eq!(e["exposure"]["backend_port"], 8443, "{got}");
    assert_eq!(e["exposure"]["protocol"], "tcp", "{got}");
    let public: std::net::Ipv4Addr = e["exposure"]["public_ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        fleet.sites[0].gateway_range.contains(public),
        "{public} outside the site's gateway range"
    );
    let text = cli.ok(&acme, &["workload", "get", &serve_id]);
    assert!(
        text.contains(&format!("endpoint {public}:8443/tcp at {site}"))
            && text.contains("(published)"),
        "{text}"
    );
    // The batch job exposes nothing.
    let plain = cli.json(&acme, &["workload", "get", &id]);
    assert_eq!(plain["endpoints"], serde_json::json!([]), "{plain}");
    cli.ok(&acme, &["workload", "delete", &serve_id]);

    // A reservation window of a few seconds: active inside it, completed after it.
    let now = meridian_central::clock::now().as_millis();
    let windowed = dir.path().join("window.yaml");
    std::fs::write(&windowed, format!("name: slot\nkind: batch_job\nreplicas: 1\nresources:\n  accelerator: {{whole_gpus: {{model: {gpu}, count: 1}}}}\nconstraints: {{}}\nwindow: {{start: {}, end: {}}}\n", now + 1_000, now + 6_000)).unwrap();
    let slot = cli.json(
        &acme,
        &["workload", "apply", "-f", windowed.to_str().unwrap()],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.wait_state(&acme, &slot, "active");
    let done = cli.wait_state(&acme, &slot, "completed");
    assert!(
        done["placement"].is_null(),
        "a completed reservation still holds capacity: {done}"
    );

    // Exit codes scripts rely on.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nkind: batch_job\nreplicas: 1\nreplica: 2\n").unwrap();
    let out = cli.run(&acme, &["workload", "apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replica"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A repeated key is refused, not silently overridden by the last one.
    std::fs::write(
        &bad,
        "name: x\nkind: batch_job\nreplicas: 1\nreplicas: 2\nresources: {accelerator: none}\n",
    )
    .unwrap();
    let out = cli.run(&acme, &["workload", "apply", "-f", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("duplicate entry with key \"replicas\""),
        "{stderr}"
    );
    let out = cli.run(&acme, &["workload", "get", "wl-000000000000"]);
    assert_eq!(out.status.code(), Some(3));
    let out = cli.run("tok-1.nope", &["workload", "list"]);
    assert_eq!(out.status.code(), Some(5));
    let out = cli.run(
        &acme,
        &["tenant", "create", "-f", tenant_yaml.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "a tenant admin creating tenants"
    );

    // Delete cancels a live workload and frees its capacity.
    let deleted = cli.json(&acme, &["workload", "delete", &id]);
    assert_eq!(deleted["state"], "canceled");
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = cli.json(&acme, &["workload", "get", &id]);
        if got["placement"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "capacity never released: {got}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let quota = cli.json(&acme, &["tenant", "quota"]);
    assert_eq!(quota["used"]["concurrent_reservations"], 0, "{quota}");

    terminate(agent);
    terminate(central);
    // Every mutating call was audited, and the chain verifies.
    let mut c = clean(Command::new(&central_bin));
    central_env(&mut c);
    let out = c.args(["audit", "verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("audit log intact"), "{text}");
}
