//! Endpoint names against a real BIND 9: central's RFC 2136 client (`dns::Updater`) and its
//! publisher (`dns::DnsPublisher`) over a real store, with `dig` reading what BIND serves.
//!
//! - The updater publishes, changes and withdraws a name; a wrong secret (TSIG BADSIG), an
//!   unknown key (BADKEY) and a name outside the zone are refused with errors that say so and
//!   name the server and the name; a stopped server is "unreachable", and once it runs again
//!   the zone still holds what was accepted before.
//! - The publisher, started while BIND is down, keeps the sites' intents and central going,
//!   records what it is trying to publish, and catches up once BIND starts; it follows intent
//!   and applied-generation changes (a site that has not applied its intent is not named), and
//!   a name whose intent went away while it was stopped is withdrawn after it starts again.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meridian_central::dns::{DnsConfig, DnsPublisher, DnsSettings, UpdateError, Updater};
use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::SiteIntent;
use meridian_store::schema::{SiteChannel, SiteRecord, site_key};
use meridian_store::{Expect, SledStore, Store, StoreConfig, Tables};
use meridian_testkit::dns::{Bind, BindKey};
use meridian_testkit::wait::{LIMIT, wait_for};

const ZONE: &str = "endpoints.example.test";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, last)
}

fn set(ips: &[u8]) -> BTreeSet<Ipv4Addr> {
    ips.iter().map(|l| ip(*l)).collect()
}

/// Central's checked `[dns]` settings for `bind`'s zone, server and key (the secret written
/// to a file in `dir`, as an operator would).
fn settings(bind: &Bind, key: &BindKey, dir: &Path) -> DnsSettings {
    let file = dir.join(format!("{}.secret", key.name));
    key.write_secret(&file);
    DnsConfig {
        zone: bind.zone().to_owned(),
        server: bind.addr().to_string(),
        tsig_key_name: key.name.clone(),
        tsig_algorithm: key.algorithm.clone(),
        tsig_secret_file: file,
        ttl_s: 30,
    }
    .settings()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_updater_publishes_changes_and_withdraws_names_and_says_why_bind_refuses() {
    let key = BindKey::random("meridian-update", "hmac-sha512");
    let mut bind = Bind::start_with(ZONE, key.clone());
    let dir = tempfile::tempdir().unwrap();
    let u = Updater::new(&settings(&bind, &key, dir.path())).unwrap();
    let name = format!("wl-0123.acme.{ZONE}");

    // BIND applies an update before it answers NOERROR, so the answer is read at once.
    u.replace(&name, &set(&[1, 2])).await.unwrap();
    assert_eq!(bind.query_a(&name).unwrap(), vec![ip(1), ip(2)]);
    u.replace(&name, &set(&[3])).await.unwrap();
    assert_eq!(bind.query_a(&name).unwrap(), vec![ip(3)]);
    let other = format!("wl-0456.acme.{ZONE}");
    u.replace(&other, &set(&[4])).await.unwrap();
    u.replace(&name, &BTreeSet::new()).await.unwrap();
    assert_eq!(bind.query_a(&name).unwrap(), Vec::<Ipv4Addr>::new());
    assert_eq!(
        bind.query_a(&other).unwrap(),
        vec![ip(4)],
        "only the name changes"
    );
    // Withdrawing what is not there is no error.
    u.replace(&name, &BTreeSet::new()).await.unwrap();

    // The right key name with another secret: NOTAUTH with TSIG BADSIG, nothing changed.
    let wrong = BindKey {
        secret: meridian_testkit::dns::random_secret(),
        ..key.clone()
    };
    let w = Updater::new(&settings(&bind, &wrong, dir.path())).unwrap();
    let e = w.replace(&name, &set(&[9])).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, UpdateError::Refused { .. })
            && text.contains("BADSIG")
            && text.contains("secret")
            && text.contains(&bind.addr().to_string())
            && text.contains(&name),
        "{text}"
    );
    assert_eq!(bind.query_a(&name).unwrap(), Vec::<Ipv4Addr>::new());
    // A key BIND does not know: BADKEY.
    let unknown = BindKey::random("someone-else", "hmac-sha512");
    let k = Updater::new(&settings(&bind, &unknown, dir.path())).unwrap();
    let text = k.replace(&name, &set(&[9])).await.unwrap_err().to_string();
    assert!(
        text.contains("BADKEY") && text.contains("someone-else"),
        "{text}"
    );
    // A name outside the zone is never sent.
    let text = u
        .replace("wl-1.acme.example.org", &set(&[1]))
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("not a name inside zone"), "{text}");

    // BIND down: unreachable, naming the server; back up: the zone kept what it accepted.
    bind.stop();
    let e = u.replace(&name, &set(&[5])).await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains(&bind.addr().to_string()), "{e}");
    bind.run();
    assert_eq!(bind.query_a(&other).unwrap(), vec![ip(4)]);
    u.replace(&name, &set(&[5])).await.unwrap();
    assert_eq!(bind.query_a(&name).unwrap(), vec![ip(5)]);
}

/// An intent for `site` at `generation` with exposures (tenant, workload, public address
/// last byte, public port); built from JSON so later intent fields need no change here.
fn intent(site: &str, generation: u64, exposures: &[(&str, &str, u8, u16)]) -> SiteIntent {
    let exposures: Vec<serde_json::Value> = exposures
        .iter()
        .map(|(tenant, workload, public, port)| {
            serde_json::json!({
                "tenant": tenant,
                "workload": workload,
                "public_ip": ip(*public).to_string(),
                "public_port": port,
                "protocol": "tcp",
                "backend_ip": "10.1.0.2",
                "backend_port": 8443,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "site": site,
        "generation": generation,
        "exposures": exposures,
    }))
    .unwrap()
}

async fn applied(store: &Arc<dyn Store>, site: &str, generation: u64) {
    let c = SiteChannel {
        applied_generation: Generation::new(generation),
        ..SiteChannel::default()
    };
    let site = SiteId::parse(site).unwrap();
    store
        .put(&site_key(&site), &c.encode(), Expect::Any)
        .await
        .unwrap();
}

/// The publisher's record of `name` in the store, if any.
async fn entry(store: &Arc<dyn Store>, name: &str) -> Option<serde_json::Value> {
    let kv = store
        .get(format!("dns/published/{name}").as_bytes())
        .await
        .unwrap()?;
    Some(serde_json::from_slice(&kv.value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_catches_up_with_bind_and_withdraws_after_a_restart() {
    let mut bind = Bind::prepare(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let key = bind.key().clone();
    let settings = settings(&bind, &key, dir.path());
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("store"), &StoreConfig::default()).unwrap());
    let tables = Tables::new(Arc::clone(&store));

    // Site edge-1 applied generation 1: acme's wl-1 on two ports of one address, globex's
    // wl-2. Site edge-3 carries wl-1 too but has not applied its intent.
    let wl1 = format!("wl-1.acme.{ZONE}");
    let wl2 = format!("wl-2.globex.{ZONE}");
    tables
        .intents()
        .upsert(&intent(
            "edge-1",
            1,
            &[
                ("acme", "wl-1", 10, 443),
                ("acme", "wl-1", 10, 8443),
                ("globex", "wl-2", 11, 443),
            ],
        ))
        .await
        .unwrap();
    applied(&store, "edge-1", 1).await;
    tables
        .intents()
        .upsert(&intent("edge-3", 4, &[("acme", "wl-1", 30, 443)]))
        .await
        .unwrap();
    applied(&store, "edge-3", 3).await;

    // BIND is not running: the publisher records what it is sending and retries.
    let updater = || {
        Updater::new(&settings)
            .unwrap()
            .with_timeout(Duration::from_secs(2))
    };
    let publisher = DnsPublisher::start_with(tables.clone(), &settings, updater());
    wait_for("an unconfirmed entry for wl-1", LIMIT, || async {
        entry(&store, &wl1)
            .await
            .is_some_and(|e| e["confirmed"] == false)
    })
    .await;
    // Meanwhile the store takes writes as usual.
    applied(&store, "edge-1", 1).await;

    bind.run();
    bind.wait_a(&wl1, &[ip(10)], LIMIT).await;
    bind.wait_a(&wl2, &[ip(11)], LIMIT).await;
    wait_for("wl-1 confirmed", LIMIT, || async {
        entry(&store, &wl1)
            .await
            .is_some_and(|e| e["confirmed"] == true)
    })
    .await;

    // Site edge-2 publishes wl-1 as well; edge-3 applies its intent: three addresses.
    tables
        .intents()
        .upsert(&intent("edge-2", 1, &[("acme", "wl-1", 20, 443)]))
        .await
        .unwrap();
    applied(&store, "edge-2", 1).await;
    bind.wait_a(&wl1, &[ip(10), ip(20)], LIMIT).await;
    applied(&store, "edge-3", 4).await;
    bind.wait_a(&wl1, &[ip(10), ip(20), ip(30)], LIMIT).await;

    // Generation 2 of edge-1 drops wl-2 (deleted): withdrawn before the site applies it,
    // while wl-1, which edge-1 still carries, stays.
    tables
        .intents()
        .upsert(&intent(
            "edge-1",
            2,
            &[("acme", "wl-1", 10, 443), ("acme", "wl-1", 10, 8443)],
        ))
        .await
        .unwrap();
    bind.wait_a(&wl2, &[], LIMIT).await;
    // The entry goes once BIND accepted the withdrawal (just after it answered).
    wait_for("wl-2's entry removed", LIMIT, || async {
        entry(&store, &wl2).await.is_none()
    })
    .await;
    assert_eq!(bind.query_a(&wl1).unwrap(), vec![ip(10), ip(20), ip(30)]);

    // Central stops; edge-2 and edge-3 go away meanwhile; after the restart the publisher
    // still knows it published their addresses and takes them out.
    publisher.shutdown().await;
    for site in ["edge-2", "edge-3"] {
        assert!(
            tables
                .intents()
                .delete(&SiteId::parse(site).unwrap(), None)
                .await
                .unwrap()
        );
    }
    let publisher = DnsPublisher::start_with(tables.clone(), &settings, updater());
    bind.wait_a(&wl1, &[ip(10)], LIMIT).await;

    // Everything goes: the name is withdrawn.
    tables
        .intents()
        .upsert(&intent("edge-1", 3, &[]))
        .await
        .unwrap();
    bind.wait_a(&wl1, &[], LIMIT).await;
    wait_for("no entries left", LIMIT, || async {
        entry(&store, &wl1).await.is_none()
    })
    .await;
    publisher.shutdown().await;
}
