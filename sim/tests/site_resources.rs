//! The rest of the intent at the site, end to end on the two-site lab
//! (`meridian_sim::netlab`: real central, two real agent processes, Redfish BMC emulators and
//! an ONTAP REST emulator per site):
//!
//! - **Storage**: acme's workload with a 100 GiB volume gets a volume of 100 GiB with a 100 GiB
//!   hard quota on its site's array, exported only to acme's subnet there, although the
//!   array fails the first job (the agent's error policy retries it); globex, over its
//!   storage quota, is refused at placement with the quota named; deleting the workload
//!   deletes the volume.
//! - **Drain**: draining the server that holds acme's allocation keeps new placements off it;
//!   the drain completes when the allocation ends.
//! - **Reboot, once**: a reboot of a server running a replica, whose power transition is under
//!   way when the agent is killed with SIGKILL, gives exactly one reset at the BMC, and the
//!   request ends done after the agent restarts and re-applies its stored intent.
//!
//! Needs root, `ip`, `nft` and `ping` (the lab's gateway namespaces; scripts/test.sh installs
//! them).

use std::time::{Duration, Instant};

use meridian_agent::reconcile::storage::array_name;
use meridian_common::ids::{Name, TenantId};
use meridian_emulators::redfish::PowerState;
use meridian_sim::netlab::{LabConfig, NetLab};
use meridian_testkit::netns::require;
use meridian_testkit::processes::binary;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);

/// Waits until `f` gives a value (checked every 100 ms); panics with `what` and the logs.
fn wait<T>(lab: &NetLab, what: &str, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spec(name: &str, storage_mib: u64) -> String {
    format!(
        "name: {name}\nkind: inference_endpoint\nreplicas: 1\nresources:\n  accelerator: none\n  cpu_cores: 8\n  memory_mib: 1024\n  storage_mib: {storage_mib}\n"
    )
}

fn server_of(got: &Value) -> String {
    got["placement"]["assignments"][0]["server"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `meridian server actions <site> --server <server>` as JSON: the newest request's record.
fn action(lab: &NetLab, site: &str, server: &str, request: u64) -> Value {
    let all = lab
        .json(&lab.admin, &["server", "actions", site, "--server", server])
        .unwrap_or_else(|e| panic!("{e}"));
    all.as_array()
        .unwrap()
        .iter()
        .find(|a| a["request"] == request)
        .cloned()
        .unwrap_or_else(|| panic!("no request {request} in {all}"))
}

fn resets(lab: &NetLab, server: &str) -> usize {
    lab.bmc(server)
        .unwrap()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("ComputerSystem.Reset"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_drains_and_reboots_reach_the_site_once() {
    require(&["ip", "nft", "ping"]);
    let started = Instant::now();
    let mut lab = NetLab::start(
        LabConfig {
            central_bin: binary("meridian-central", "meridian-central"),
            agent_bin: binary("meridian-agent", "meridian-agent"),
            cli_bin: binary("meridian", "meridian-client"),
            central_env: Vec::new(),
        },
        &format!("msr{}-", std::process::id()),
    )
    .await
    .unwrap_or_else(|e| panic!("the lab: {e}"));
    eprintln!("lab up in {:?}", started.elapsed());
    let acme = lab.tenant("acme").unwrap();
    let globex = lab.tenant_with_storage("globex", 50 * 1024).unwrap();

    // Storage: the first job on either array fails once.
    for array in &lab.arrays {
        array.fail_next_job("aggregate aggr1 is temporarily offline");
    }
    let yaml = lab.file("data.yaml", &spec("data", 100 * 1024));
    let data = lab
        .json(&acme, &["workload", "apply", "-f", &yaml])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let placed = lab
        .wait_workload(&acme, &data, "placed", LIMIT, |g| {
            g["placement"].is_object()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let server = server_of(&placed);
    let site_index = lab
        .sites
        .iter()
        .position(|s| s.servers.iter().any(|(id, _)| *id == server))
        .unwrap();
    let site = lab.sites[site_index].id.clone();
    let volume = array_name(
        &TenantId::parse("acme").unwrap(),
        &Name::parse(&data).unwrap(),
    );
    let array = &lab.arrays[site_index];
    let v = wait(&lab, "acme's volume on the array", || {
        array
            .volume(&volume)
            .filter(|v| !v.clients.is_empty() && v.quota_enabled && v.quota_hard_limit.is_some())
    });
    assert_eq!(v.size, 100 << 30, "{v:?}");
    assert_eq!(v.quota_hard_limit, Some(100 << 30), "{v:?}");
    assert_eq!(v.clients.len(), 1, "exported to one subnet only: {v:?}");
    let subnet: meridian_common::model::Ipv4Net = v.clients[0].parse().unwrap();
    let tenant = lab.json(&lab.admin, &["tenant", "get", "acme"]).unwrap();
    let supernet: meridian_common::model::Ipv4Net = tenant["network"]["supernet"]
        .as_str()
        .unwrap_or_else(|| panic!("acme has a network: {tenant}"))
        .parse()
        .unwrap();
    assert!(
        supernet.contains(subnet.addr()) && subnet.prefix_len() >= supernet.prefix_len(),
        "exported to acme's subnet {subnet}, inside its {supernet}"
    );
    assert!(
        array.jobs().iter().any(|j| j.state == "failure"),
        "the injected job failure happened: {:?}",
        array.jobs()
    );
    assert!(
        lab.arrays[1 - site_index].volumes().is_empty(),
        "nothing on the other site's array"
    );
    eprintln!("volume in place in {:?}", started.elapsed());

    // globex asks for 100 GiB with a 50 GiB quota: refused at placement, the quota named.
    let yaml = lab.file("big.yaml", &spec("big", 100 * 1024));
    let refused = match lab.json(&globex, &["workload", "apply", "-f", &yaml]) {
        Err(e) => e.to_string(),
        Ok(v) => {
            let id = v["id"].as_str().unwrap().to_owned();
            lab.wait_workload(&globex, &id, "refused", LIMIT, |g| {
                g["workload"]["state"].get("failed").is_some()
            })
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string()
        }
    };
    assert!(
        refused.contains("storage"),
        "the storage quota is named: {refused}"
    );

    // Drain the server holding acme's allocation: new placements go elsewhere.
    let drain = lab
        .json(&lab.admin, &["server", "drain", &site, &server])
        .unwrap_or_else(|e| panic!("{e}"));
    let drain_request = drain["request"].as_u64().unwrap();
    let shown = lab
        .json(&lab.admin, &["server", "show", &site, &server])
        .unwrap();
    assert_eq!(shown["drain"]["drained"], true, "{shown}");
    assert_eq!(
        shown["drain"]["remaining"][0],
        format!("acme/{data}"),
        "{shown}"
    );
    let mut running = Vec::new();
    for n in 0..3 {
        let yaml = lab.file(&format!("more-{n}.yaml"), &spec(&format!("more-{n}"), 0));
        let id = lab
            .json(&acme, &["workload", "apply", "-f", &yaml])
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let got = lab
            .wait_workload(&acme, &id, "placed", LIMIT, |g| g["placement"].is_object())
            .unwrap_or_else(|e| panic!("{e}"));
        running.push(server_of(&got));
        assert_ne!(
            server_of(&got),
            server,
            "placed on the drained server: {got}"
        );
    }
    // The allocation ends: the drain completes and the volume goes.
    lab.delete_workload(&acme, &data).unwrap();
    let done = wait(&lab, "the drain to complete", || {
        let a = action(&lab, &site, &server, drain_request);
        (a["phase"] == "done").then_some(a)
    });
    assert!(
        done["detail"].as_str().unwrap().contains("drained"),
        "{done}"
    );
    wait(&lab, "acme's volume deleted", || {
        array.volume(&volume).is_none().then_some(())
    });
    lab.json(&lab.admin, &["server", "undrain", &site, &server])
        .unwrap();
    eprintln!("drain done in {:?}", started.elapsed());

    // Reboot a server running one of acme's replicas (the lifecycle keeps it on, so any reset
    // is the request's) with a 6 s power transition; kill its agent as soon as the BMC has
    // taken the reset, then start it again.
    let target = running[0].clone();
    let target = target.as_str();
    let at = lab
        .sites
        .iter()
        .position(|s| s.servers.iter().any(|(id, _)| id == target))
        .unwrap();
    let target_site = lab.sites[at].id.clone();
    wait(&lab, "the replica's server powered on", || {
        (lab.bmc(target).unwrap().power_state() == PowerState::On).then_some(())
    });
    lab.bmc(target)
        .unwrap()
        .set_power_delay(Duration::from_secs(6));
    let before = resets(&lab, target);
    let reboot = lab
        .json(&lab.admin, &["server", "reboot", &target_site, target])
        .unwrap_or_else(|e| panic!("{e}"));
    let request = reboot["request"].as_u64().unwrap();
    wait(&lab, "the reset at the BMC", || {
        (resets(&lab, target) > before).then_some(())
    });
    lab.kill_agent(at);
    let mid = action(&lab, &target_site, target, request);
    assert_ne!(mid["phase"], "done", "killed mid-action: {mid}");
    lab.restart_agent(at).unwrap();
    let finished = wait(&lab, "the reboot to finish", || {
        let a = action(&lab, &target_site, target, request);
        (a["phase"] == "done" || a["phase"] == "failed").then_some(a)
    });
    assert_eq!(finished["phase"], "done", "{finished}\n{}", lab.logs());
    // Some resyncs later (the intent re-applied), still one reset.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        resets(&lab, target) - before,
        1,
        "exactly one reset: {:?}",
        lab.bmc(target).unwrap().requests()
    );
    eprintln!("reboot done once in {:?}", started.elapsed());
}
