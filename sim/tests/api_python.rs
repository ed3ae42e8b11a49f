//! A client no one here wrote: Python grpcio, with stubs generated from `proto/` at test time,
//! lists the services by reflection, creates a workload over TLS with a tenant's token and
//! reads it back. `scripts/test.sh` installs grpcio, grpcio-tools and grpcio-reflection.

mod api_support;

use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_creates_a_workload_and_reads_it_back() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, grpc_reflection"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "grpcio is missing: run scripts/test.sh, which installs the Python test peers ({})",
        String::from_utf8_lossy(&probe.stderr)
    );
    let api = api_support::start(4, |_| {}).await;
    let people = api.people().await;
    let dev = people.iter().find(|p| p.0 == "acme-dev").unwrap().2.clone();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let endpoint = format!("localhost:{}", api.central.api().local_addr().port());
    let ca = api.ca.clone();
    let proto_dir = root.join("proto").join("proto");
    let script = root.join("sim/tests/python/grpc_client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(endpoint)
            .arg(ca)
            .arg(dev)
            .arg(proto_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    println!("python client saw: {seen}");
    let services: Vec<&str> = seen["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in [
        "meridian.v1.FleetService",
        "meridian.v1.PlacementService",
        "meridian.v1.TenantService",
    ] {
        assert!(services.contains(&s), "reflection lists {services:?}");
    }
    assert_eq!(seen["created"], seen["read_back"]);
    assert!(seen["created"].as_str().unwrap().starts_with("wl-"));
    assert_eq!(seen["tenant"], "acme");
    assert_eq!(seen["name"], "python-job");
    assert_eq!(seen["missing"], "NOT_FOUND");
    assert_eq!(seen["anonymous"], "UNAUTHENTICATED");
    // And the workload is really stored, for the tenant the token belongs to.
    let id = meridian_common::ids::WorkloadId::parse(seen["created"].as_str().unwrap()).unwrap();
    let tenant = meridian_common::ids::TenantId::parse("acme").unwrap();
    assert!(
        api.central
            .tables()
            .workloads()
            .get(&(&tenant, &id))
            .await
            .unwrap()
            .is_some()
    );
    api.central.shutdown().await;
}
