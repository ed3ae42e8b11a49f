//! Endpoint names end to end, with the real binaries (`meridian-central` with a `[dns]`
//! table, the `meridian` CLI, a real `meridian-agent`) and a real BIND 9.
//!
//! Central starts while the zone's server is not running yet: the tenant's inference
//! endpoint is still placed, applied and published at the site's gateway, `meridian workload
//! get` shows its DNS name, and central logs that the server is unreachable. Once BIND starts,
//! the name resolves to the gateway's public address; deleting the workload withdraws it.

mod cli_support;

use std::net::Ipv4Addr;

use cli_support::World;
use meridian_testkit::dns::Bind;
use meridian_testkit::processes::wait_log;
use meridian_testkit::wait::LIMIT;

const ZONE: &str = "endpoints.example.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_names_reach_bind_once_it_runs_and_leave_with_the_workload() {
    // The server's configuration, zone and key exist; named is not running.
    let mut bind = Bind::prepare(ZONE);
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("tsig.secret");
    bind.key().write_secret(&secret);
    let server = bind.addr().to_string();
    let secret_path = secret.display().to_string();
    let mut world = World::start(&[
        ("MERIDIAN_CENTRAL_DNS__ZONE", ZONE),
        ("MERIDIAN_CENTRAL_DNS__SERVER", &server),
        ("MERIDIAN_CENTRAL_DNS__TSIG_KEY_NAME", &bind.key().name),
        ("MERIDIAN_CENTRAL_DNS__TSIG_SECRET_FILE", &secret_path),
        ("MERIDIAN_CENTRAL_DNS__TTL_S", "30"),
    ])
    .await;
    let (cli, acme) = (&world.cli, world.acme.clone());

    // An inference endpoint exposing a port: placed, applied and published at the gateway
    // although the DNS server is down.
    let gpu = world.fleet.servers[0].gpus[0].model.as_str();
    let serve = world.file("serve.yaml", &format!("name: serve-1\nkind: inference_endpoint\nreplicas: 1\nresources:\n  accelerator: {{whole_gpus: {{model: {gpu}, count: 1}}}}\nconstraints: {{}}\nexpose:\n  - {{port: 8443, protocol: tcp}}\n"));
    let id = cli.json(&acme, &["workload", "apply", "-f", &serve])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.wait_state(&acme, &id, "active");
    let got = cli.wait_get(&acme, &id, "published", |got| {
        got["endpoints"][0]["applied"] == true
    });
    let name = format!("{id}.acme.{ZONE}");
    let e = &got["endpoints"][0];
    assert_eq!(e["dns_name"], name.as_str(), "{got}");
    let public: Ipv4Addr = e["exposure"]["public_ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = cli.ok(&acme, &["workload", "get", &id]);
    assert!(text.contains(&format!("dns name {name}")), "{text}");
    // Central says why the name is not there yet, naming the server.
    wait_log(
        &world.cli.logs[0],
        "endpoint names not published: DNS server unreachable",
    );
    assert!(world.central_log().contains(&server));
    assert_eq!(bind.query_a(&name).ok(), None, "named is not running");

    // The server starts: the name catches up with the gateway's public address.
    bind.run();
    bind.wait_a(&name, &[public], LIMIT).await;
    // Logged once BIND accepted the update (just after it answered).
    wait_log(
        &world.cli.logs[0],
        "DNS server answers again; endpoint names catching up",
    );

    // Deleting the workload withdraws the name.
    cli.ok(&acme, &["workload", "delete", &id]);
    bind.wait_a(&name, &[], LIMIT).await;
    world.stop();
}
