//! Tenant networks and endpoints end to end, from the API to a reachable endpoint with a DNS
//! name, on the real kernel: the two-site lab (`meridian_sim::netlab`: real central, two real
//! agent processes, gateway/switch/server namespaces, NVUE emulators realising VXLAN, an
//! "internet" namespace) and a real BIND 9.
//!
//! Tenants acme and globex are created through the CLI; acme applies an inference endpoint
//! with two replicas spread over both sites and an exposure, globex one replica. With no
//! further hand work: acme's replicas reach each other across the sites; acme and globex
//! cannot reach each other; the internet namespace resolves acme's name with `dig` against
//! BIND and reaches acme's endpoint there, but not the backend address directly, nor globex.
//! Site 1 is then cut from central and its gateway's nft table flushed by hand: the agent
//! restores it from its stored intent while still cut off. Deleting acme's workload removes
//! everything of it at both sites, and its DNS record.
//!
//! Needs root, `ip`, `nft`, `ping`, `named` and `dig` (scripts/test.sh installs them).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use meridian_sim::netlab::{LabConfig, NetLab};
use meridian_testkit::dns::Bind;
use meridian_testkit::netns::{fetch_text, nft_table, pings, require, run, serve_text};
use meridian_testkit::processes::binary;
use serde_json::Value;

const ZONE: &str = "endpoints.lab.test";
const LIMIT: Duration = Duration::from_secs(90);

/// A TCP server in `ns` on port 443 answering each connection with `who`.
fn serve(ns: &str, who: &str) {
    serve_text(ns, SocketAddr::from(([0, 0, 0, 0], 443)), who);
}

fn fetch(ns: &str, addr: SocketAddr) -> Option<String> {
    fetch_text(ns, addr, Duration::from_millis(700))
}

/// Waits until `f` holds (checked every 200 ms); panics with `what` and the lab's logs.
fn wait(lab: &NetLab, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !f() {
        assert!(Instant::now() < deadline, "never {what}\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// The replicas of a workload: (server, backend address), from its endpoints and placement.
fn replicas(got: &Value) -> Vec<(String, Ipv4Addr, Ipv4Addr, u16)> {
    got["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let x = &e["exposure"];
            (
                e["site"].as_str().unwrap().to_owned(),
                x["backend_ip"].as_str().unwrap().parse().unwrap(),
                x["public_ip"].as_str().unwrap().parse().unwrap(),
                x["public_port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

fn servers_of(got: &Value) -> Vec<String> {
    got["placement"]["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["server"].as_str().unwrap().to_owned())
        .collect()
}

/// Everything of VNI `vni` in `ns`: links, rules.
fn traces(ns: &str, vni: u64) -> Vec<String> {
    let links = String::from_utf8_lossy(&run(&["ip", "-n", ns, "-o", "link"]).stdout).into_owned();
    let rules = String::from_utf8_lossy(&run(&["ip", "-n", ns, "rule"]).stdout).into_owned();
    links
        .lines()
        .chain(rules.lines())
        .filter(|l| l.contains(&format!("{vni}")))
        .map(str::to_owned)
        .collect()
}

fn nft(ns: &str) -> String {
    nft_table(ns, "meridian_gw").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_endpoint_is_reachable_by_name_isolated_and_kept_while_cut_off() {
    require(&["ip", "nft", "ping", "named", "dig"]);
    let started = Instant::now();
    let bind = Bind::start(ZONE);
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("tsig.secret");
    bind.key().write_secret(&secret);
    let env = vec![
        ("MERIDIAN_CENTRAL_DNS__ZONE".to_owned(), ZONE.to_owned()),
        (
            "MERIDIAN_CENTRAL_DNS__SERVER".to_owned(),
            bind.addr().to_string(),
        ),
        (
            "MERIDIAN_CENTRAL_DNS__TSIG_KEY_NAME".to_owned(),
            bind.key().name.clone(),
        ),
        (
            "MERIDIAN_CENTRAL_DNS__TSIG_SECRET_FILE".to_owned(),
            secret.display().to_string(),
        ),
        ("MERIDIAN_CENTRAL_DNS__TTL_S".to_owned(), "5".to_owned()),
    ];
    let lab = NetLab::start(
        LabConfig {
            central_bin: binary("meridian-central", "meridian-central"),
            agent_bin: binary("meridian-agent", "meridian-agent"),
            cli_bin: binary("meridian", "meridian-client"),
            central_env: env,
        },
        &format!("msn{}-", std::process::id()),
    )
    .await
    .unwrap_or_else(|e| panic!("the lab: {e}"));
    eprintln!("lab up in {:?}", started.elapsed());

    // Two tenants through the CLI; acme spread over both sites with an exposure, globex one
    // replica. 40 of a server's 64 cores each, so no two replicas share a host.
    let acme = lab.tenant("acme").unwrap();
    let globex = lab.tenant("globex").unwrap();
    let spec = |name: &str, replicas: u32, spread: &str| {
        format!(
            "name: {name}\nkind: inference_endpoint\nreplicas: {replicas}\nresources:\n  accelerator: none\n  cpu_cores: 40\n  memory_mib: 4096\nconstraints: {{{spread}}}\nexpose:\n  - {{port: 443, protocol: tcp}}\n"
        )
    };
    let a_yaml = lab.file(
        "acme.yaml",
        &spec("chat", 2, "spread: {min_sites: 2, max_per_site: 1}"),
    );
    let apply = |token: &str, yaml: &str| {
        lab.json(token, &["workload", "apply", "-f", yaml])
            .unwrap_or_else(|e| panic!("{e}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a_id = apply(&acme, &a_yaml);
    // globex on site 1's other server: a host's uplink sits in one tenant's segment, and the
    // placement does not count CPU cores, so it could share acme's host otherwise.
    let placed = lab
        .wait_workload(&acme, &a_id, "placed", LIMIT, |g| {
            g["placement"].is_object()
        })
        .unwrap();
    let taken = servers_of(&placed);
    let free = meridian_sim::netlab::SERVERS[0]
        .iter()
        .find(|s| !taken.iter().any(|t| t == *s))
        .unwrap();
    let b_yaml = lab.file(
        "globex.yaml",
        &spec("rival", 1, &format!("pin_server: {free}")),
    );
    // Pinning is the provider's: the provider admin applies it for globex. The server was
    // registered at central before its agent inspected it; the agent's inventories name it
    // pending until then, so central keeps it and the pin holds whenever it is made.
    let b_id = lab
        .json(
            &lab.admin,
            &["workload", "apply", "-f", &b_yaml, "--tenant", "globex"],
        )
        .unwrap_or_else(|e| panic!("{e}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let published = |token: &str, id: &str, n: usize| {
        lab.wait_workload(token, id, "published", LIMIT, |g| {
            g["endpoints"].as_array().is_some_and(|e| {
                e.len() == n
                    && e.iter()
                        .all(|e| e["applied"] == true && e["dns_name"].is_string())
            })
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
    };
    let a = published(&acme, &a_id, 2);
    let b = published(&globex, &b_id, 1);
    eprintln!("both published in {:?}", started.elapsed());
    let (a_servers, b_servers) = (servers_of(&a), servers_of(&b));
    let (a_reps, b_reps) = (replicas(&a), replicas(&b));
    assert_ne!(
        lab.site_of(&a_servers[0]).unwrap().id,
        lab.site_of(&a_servers[1]).unwrap().id,
        "acme is spread: {a}"
    );

    // The tenants' own inference servers, in the replica namespaces the agents made.
    let a_ns: Vec<String> = a_servers
        .iter()
        .map(|s| NetLab::replica_netns(s, "acme"))
        .collect();
    let b_ns = NetLab::replica_netns(&b_servers[0], "globex");
    for ns in a_ns.iter().chain([&b_ns]) {
        wait(&lab, &format!("namespace {ns}"), || ns_exists(ns));
    }
    serve(&a_ns[0], "acme-0");
    serve(&a_ns[1], "acme-1");
    serve(&b_ns, "globex-0");
    // The backend address of each replica namespace.
    let addr_in = |ns: &str| -> Ipv4Addr {
        let out = String::from_utf8_lossy(
            &run(&[
                "ip", "-n", ns, "-o", "-4", "addr", "show", "scope", "global",
            ])
            .stdout,
        )
        .into_owned();
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {ns}: {out}"))
    };
    let (a0, a1, b0) = (addr_in(&a_ns[0]), addr_in(&a_ns[1]), addr_in(&b_ns));
    assert!(a_reps.iter().any(|r| r.1 == a0) && a_reps.iter().any(|r| r.1 == a1));
    assert_eq!(b_reps[0].1, b0);

    // Isolation matrix.
    wait(
        &lab,
        "acme's replicas reaching each other across the sites",
        || pings(&a_ns[0], a1) && pings(&a_ns[1], a0),
    );
    assert_eq!(
        fetch(&a_ns[0], SocketAddr::from((a1, 443))).as_deref(),
        Some("acme-1")
    );
    assert_eq!(
        fetch(&a_ns[1], SocketAddr::from((a0, 443))).as_deref(),
        Some("acme-0")
    );
    let mut matrix = vec![("acme site 1 <-> acme site 2", true)];
    for (from, to) in [(&a_ns[0], b0), (&a_ns[1], b0), (&b_ns, a0), (&b_ns, a1)] {
        assert!(!pings(from, to), "{from} must not reach {to}");
        assert_eq!(
            fetch(from, SocketAddr::from((to, 443))),
            None,
            "{from} -> {to}"
        );
    }
    matrix.push(("acme <-> globex (both sites, ping and TCP)", false));

    // The internet: acme's name resolves to its gateways; each answers with a replica; the
    // backends and globex's address are unreachable directly.
    let name = a["endpoints"][0]["dns_name"].as_str().unwrap().to_owned();
    let dug = |name: &str| -> Vec<Ipv4Addr> {
        let out = run(&[
            "dig",
            "+short",
            "-p",
            &bind.addr().port().to_string(),
            &format!("@{}", bind.addr().ip()),
            name,
            "A",
        ]);
        let mut v: Vec<Ipv4Addr> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        v.sort();
        v
    };
    let mut publics: Vec<Ipv4Addr> = a_reps.iter().map(|r| r.2).collect();
    publics.sort();
    wait(&lab, "acme's name in BIND", || dug(&name) == publics);
    for r in &a_reps {
        let got = fetch(&lab.inet, SocketAddr::from((r.2, r.3)));
        assert!(
            got.as_deref().is_some_and(|t| t.starts_with("acme-")),
            "{r:?}: {got:?}"
        );
        assert_eq!(fetch(&lab.inet, SocketAddr::from((r.1, 443))), None);
    }
    assert_eq!(fetch(&lab.inet, SocketAddr::from((b0, 443))), None);
    matrix.push(("internet -> acme by name (public address)", true));
    matrix.push(("internet -> acme backend / globex backend directly", false));
    // Nothing crossed between the tenants: the forward chains' default drops counted what
    // was refused, and no rule lets one tenant's bridge reach another's.
    for site in &lab.sites {
        let rules = nft(&site.gateway);
        assert!(!rules.contains("acme to globex") && !rules.contains("globex to acme"));
    }

    // Autonomy: site 1 cut from central, its gateway's table flushed by hand; the agent puts
    // it back from its stored intent while still cut off.
    let s1 = &lab.sites[0];
    lab.proxy.cut_site(&s1.id, Duration::from_secs(3600));
    assert!(
        run(&[
            "ip",
            "netns",
            "exec",
            &s1.gateway,
            "nft",
            "delete",
            "table",
            "ip",
            "meridian_gw"
        ])
        .status
        .success()
    );
    assert!(!nft(&s1.gateway).contains("dnat"));
    let before = Instant::now();
    wait(&lab, "site 1's gateway restored while cut off", || {
        nft(&s1.gateway).contains("dnat")
    });
    eprintln!("restored while cut off in {:?}", before.elapsed());
    assert!(lab.proxy.is_cut(&s1.id));
    let r1 = a_reps
        .iter()
        .find(|r| r.0 == s1.id)
        .expect("a replica at site 1");
    wait(&lab, "acme's endpoint at site 1 answering again", || {
        fetch(&lab.inet, SocketAddr::from((r1.2, r1.3))).is_some()
    });
    assert!(lab.proxy.is_cut(&s1.id));
    lab.proxy.heal_site(&s1.id);

    // Deleting acme's workload removes everything of it at both sites, and its record.
    let vni = {
        let out = String::from_utf8_lossy(
            &run(&["ip", "-n", &lab.sites[0].gateway, "-o", "link"]).stdout,
        )
        .into_owned();
        // acme's site-to-site device at site 1 names its VNI.
        out.lines()
            .find_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.trim_end_matches(':').split('@').next())
                    .and_then(|n| n.strip_prefix("msx"))
                    .map(str::to_owned)
            })
            .expect("acme has a site-to-site tunnel")
            .parse::<u64>()
            .unwrap()
    };
    lab.delete_workload(&acme, &a_id).unwrap();
    for site in &lab.sites {
        wait(&lab, &format!("acme gone from {}", site.gateway), || {
            traces(&site.gateway, vni).is_empty() && !nft(&site.gateway).contains("acme")
        });
    }
    for ns in &a_ns {
        wait(&lab, &format!("{ns} removed"), || !ns_exists(ns));
    }
    wait(&lab, "acme's name withdrawn", || dug(&name).is_empty());
    // globex is untouched.
    assert_eq!(
        fetch(&lab.inet, SocketAddr::from((b_reps[0].2, b_reps[0].3))).as_deref(),
        Some("globex-0")
    );

    eprintln!("isolation matrix:");
    for (pair, can) in &matrix {
        eprintln!(
            "  {pair}: {}",
            if *can { "reachable" } else { "unreachable" }
        );
    }
    eprintln!("done in {:?}", started.elapsed());
}
