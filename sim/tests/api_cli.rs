//! End to end with the real binaries: `meridian-central` (offline `admin-token`, then the
//! server), the `meridian` CLI and a real `meridian-agent`, as processes on 127.0.0.1.
//!
//! A provider admin creates a tenant, its admin and a token; bootstraps the site and the agent
//! enrols. The tenant admin applies workloads from YAML and watches them move through the
//! lifecycle: an open-ended one goes `pending -> approved -> active` once the agent has
//! applied the intent holding it and is canceled by `delete`; a windowed one also completes
//! at the end of its window. Scripts get stable exit codes and JSON. Finally the audit chain
//! of everything done is verified offline.

mod cli_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::World;
use meridian_testkit::processes::clean;
use meridian_testkit::wait::LIMIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_drive_workloads_through_the_lifecycle_with_the_real_binaries() {
    let mut world = World::start(&[]).await;
    let (admin, acme, site) = (world.admin.clone(), world.acme.clone(), world.site.clone());
    let (cli, fleet, dir) = (&world.cli, &world.fleet, world.dir.path().to_owned());
    let tenant_yaml = world.tenant_yaml.clone();

    // The tenant: explain, apply, watch it become active, list, delete.
    let gpu = fleet.servers[0].gpus[0].model.as_str();
    let job = dir.join("job.yaml");
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
    let serve = dir.join("serve.yaml");
    std::fs::write(&serve, format!("name: serve-1\nkind: inference_endpoint\nreplicas: 1\nresources:\n  accelerator: {{whole_gpus: {{model: {gpu}, count: 1}}}}\nconstraints: {{}}\nexpose:\n  - {{port: 8443, protocol: tcp}}\n")).unwrap();
    let serve_id = cli.json(&acme, &["workload", "apply", "-f", serve.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.wait_state(&acme, &serve_id, "active");
    let got = cli.wait_get(&acme, &serve_id, "published", |got| {
        got["endpoints"][0]["applied"] == true
    });
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
    let windowed = dir.join("window.yaml");
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
    let bad = dir.join("bad.yaml");
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

    // Usage: the billing export as CSV (a header, then rows), as JSON lines into a file, the
    // tenant's totals; another tenant's usage is not found; a bad time names its flag.
    let today = meridian_central::clock::now().as_millis() / 86_400_000 * 86_400_000;
    let day = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .unwrap()
            .date()
            .to_string()
    };
    let (from, to) = (day(today), day(today + 86_400_000));
    let csv = cli.ok(
        &admin,
        &[
            "usage", "export", "--from", &from, "--to", &to, "--format", "csv",
        ],
    );
    assert!(
        csv.starts_with("period_start,tenant,workload,site,resource,detail,amount,unit,final\n"),
        "{csv}"
    );
    let file = dir.join("usage.jsonl");
    cli.ok(
        &acme,
        &[
            "usage",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "jsonl",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["tenant"], "acme", "{line}");
    }
    let totals = cli.json(&acme, &["usage", "totals", "--from", &from, "--to", &to]);
    assert_eq!(totals["tenant"], "acme", "{totals}");
    assert!(totals["final"].is_boolean(), "{totals}");
    let out = cli.run(
        &acme,
        &[
            "usage", "totals", "--from", &from, "--to", &to, "--tenant", "globex",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "another tenant's usage");
    let out = cli.run(
        &acme,
        &["usage", "export", "--from", "yesterday", "--to", &to],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--from yesterday"), "{stderr}");

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

    world.stop();
    // Every mutating call was audited, and the chain verifies.
    let out = world
        .central_command()
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("audit log intact"), "{text}");
}
