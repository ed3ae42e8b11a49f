//! The publish step over a real sled store: generations grow by one only where content
//! changed, incremental and full runs agree, two publishers do not interleave, deletions
//! release, and a restart republishes nothing.

#[path = "../plan/tests/compiler_support/mod.rs"]
mod compiler_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use compiler_support::*;
use meridian_central::publisher::Changes;
use meridian_central::publisher::{PublishSummary, Publisher, Scope, publish};
use meridian_common::ids::{Generation, SiteId, TenantId, WorkloadId};
use meridian_common::model::{ReservationState, SiteIntent};
use meridian_common::validate::validate_site_intent;
use meridian_plan::networks::NetworkClaim;
use meridian_store::Tables;
use meridian_store::{SledStore, StoreConfig};

const WEB: &str = r#"
    name = "web"
    kind = "inference_endpoint"
    replicas = 2
    image = "oci://registry.example/web:1"
    expose = [ { port = 443, protocol = "tcp" } ]
    [resources]
    accelerator = { whole_gpus = { model = "H100-80GB", count = 1 } }
"#;

const JOB: &str = r#"
    name = "job"
    kind = "batch_job"
    replicas = 1
    [resources]
    accelerator = { whole_gpus = { model = "H100-80GB", count = 1 } }
"#;

fn open(dir: &Path) -> Tables {
    Tables::new(Arc::new(
        SledStore::open(dir, &StoreConfig::default()).expect("store opens"),
    ))
}

fn tid(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn wid(s: &str) -> WorkloadId {
    s.parse().unwrap()
}

async fn seed(tables: &Tables, fleet: &Fleet) {
    for s in &fleet.sites {
        tables.sites().create(s).await.unwrap();
    }
    for s in &fleet.servers {
        tables.servers().create(s).await.unwrap();
    }
    for t in &fleet.tenants {
        tables.tenants().create(t).await.unwrap();
    }
    for w in &fleet.workloads {
        tables.workloads().create(w).await.unwrap();
    }
    for p in &fleet.placements {
        tables.placements().upsert(p).await.unwrap();
    }
}

/// acme/web on fra-1 and edge-1 (exposing 443), globex/job on fra-1.
fn fleet() -> Fleet {
    let mut fleet = Fleet::standard();
    fleet
        .place(
            workload("acme", "web", ReservationState::Active, WEB),
            vec![
                whole(0, "fra-1", "srv-1", &[0]),
                whole(1, "edge-1", "e-1", &[0]),
            ],
        )
        .place(
            workload("globex", "job", ReservationState::Approved, JOB),
            vec![whole(0, "fra-1", "srv-1", &[1])],
        );
    fleet
}

async fn generations(tables: &Tables) -> BTreeMap<String, u64> {
    let intents: Vec<SiteIntent> = tables.intents().list_all(None, 0).await.unwrap();
    for i in &intents {
        validate_site_intent(i).expect("stored intents are valid");
    }
    intents
        .into_iter()
        .map(|i| (i.site.to_string(), i.generation.get()))
        .collect()
}

async fn claims(tables: &Tables) -> Vec<String> {
    let all: Vec<NetworkClaim> = tables.network_claims().list_all(None, 0).await.unwrap();
    all.iter().map(NetworkClaim::path).collect()
}

fn published(s: &PublishSummary) -> Vec<(String, u64)> {
    s.published
        .iter()
        .map(|(site, g): &(SiteId, Generation)| (site.to_string(), g.get()))
        .collect()
}

fn changed(workloads: &[(&str, &str)]) -> Scope {
    Scope::Changed(Changes {
        workloads: workloads.iter().map(|(t, w)| (tid(t), wid(w))).collect(),
        ..Changes::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_grow_only_where_content_changed_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    let mut fleet = fleet();
    seed(&tables, &fleet).await;
    let publisher = Publisher::default();

    let first = publish(&tables, NOW).await.unwrap();
    assert_eq!(
        published(&first),
        [("edge-1".into(), 1), ("fra-1".into(), 1)]
    );
    assert_eq!(first.tenants_allocated, [tid("acme"), tid("globex")]);
    assert!(first.unmet.is_empty() && first.held_back.is_empty());
    // The tenants' networks are recorded on the tenants.
    let acme = tables
        .tenants()
        .get(&tid("acme"))
        .await
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(acme.network.unwrap().vni, 10_000);
    let before = claims(&tables).await;
    assert!(before.contains(&"vni/00010000".to_string()), "{before:?}");
    assert!(
        before
            .iter()
            .any(|c| c.starts_with("public/fra-1/203.0.113.2_00443_tcp"))
    );

    // Nothing changed: nothing new, whatever the scope.
    let again = publish(&tables, NOW).await.unwrap();
    assert!(again.published.is_empty());
    assert_eq!(again.unchanged, 2);
    let again = publisher
        .publish(
            &tables,
            &changed(&[("acme", "web"), ("globex", "job")]),
            NOW,
        )
        .await
        .unwrap();
    assert!(again.published.is_empty() && again.claims_created == 0 && again.claims_released == 0);
    assert_eq!(claims(&tables).await, before);

    // A new workload on edge-1 only: only edge-1 gets a new generation.
    let extra = workload("acme", "extra", ReservationState::Approved, JOB);
    let extra_placement = placement(&extra, vec![whole(0, "edge-1", "e-1", &[1])]);
    tables.workloads().create(&extra).await.unwrap();
    tables.placements().upsert(&extra_placement).await.unwrap();
    fleet.place(extra, vec![whole(0, "edge-1", "e-1", &[1])]);
    let s = publisher
        .publish(&tables, &changed(&[("acme", "extra")]), NOW)
        .await
        .unwrap();
    assert_eq!(published(&s), [("edge-1".into(), 2)]);
    assert_eq!(s.unchanged, 0, "fra-1 was not even compiled");
    assert_eq!(generations(&tables).await["fra-1"], 1);
    // A full run agrees with the incremental one.
    assert!(publish(&tables, NOW).await.unwrap().published.is_empty());

    // Deleting it empties it out of edge-1 and releases its address.
    let key = (&tid("acme"), &wid("extra"));
    tables.workloads().delete(&key, None).await.unwrap();
    tables.placements().delete(&key, None).await.unwrap();
    let s = publisher
        .publish(&tables, &changed(&[("acme", "extra")]), NOW)
        .await
        .unwrap();
    assert_eq!(published(&s), [("edge-1".into(), 3)]);
    assert_eq!(s.claims_released, 1);
    assert_eq!(claims(&tables).await, before);
    assert!(publish(&tables, NOW).await.unwrap().published.is_empty());

    // Cancel everything on fra-1's only tenant workload of globex and acme's web: fra-1 and
    // edge-1 lose their allocations but still get (emptied) intents.
    for (t, w) in [("acme", "web"), ("globex", "job")] {
        let v = tables
            .workloads()
            .get(&(&tid(t), &wid(w)))
            .await
            .unwrap()
            .unwrap();
        let mut record = v.record;
        record.state = ReservationState::Canceled;
        tables
            .workloads()
            .update(&record, v.revision)
            .await
            .unwrap();
    }
    let s = publisher
        .publish(
            &tables,
            &changed(&[("acme", "web"), ("globex", "job")]),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(published(&s), [("edge-1".into(), 4), ("fra-1".into(), 2)]);
    let fra = tables
        .intents()
        .get(&"fra-1".parse::<SiteId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(fra.record.allocations.is_empty() && fra.record.exposures.is_empty());
    // Only the tenant-level claims remain: the tenants still exist.
    let left = claims(&tables).await;
    assert!(
        left.iter().all(|c| c.starts_with("vni/")
            || c.starts_with("table/")
            || c.starts_with("supernet/")),
        "{left:?}"
    );
    assert_eq!(left.len(), 6);

    // Restart: a full publish finds nothing to do.
    let gens = generations(&tables).await;
    drop(tables);
    let tables = open(dir.path());
    let s = publish(&tables, NOW).await.unwrap();
    assert!(
        s.published.is_empty() && s.claims_created == 0 && s.claims_released == 0,
        "{s:?}"
    );
    assert_eq!(generations(&tables).await, gens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_do_not_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    seed(&tables, &fleet()).await;
    let (a, b) = tokio::join!(publish(&tables, NOW), publish(&tables, NOW));
    let (a, b) = (a.unwrap(), b.unwrap());
    // Between them each site was published exactly once, at generation 1.
    let mut all = published(&a);
    all.extend(published(&b));
    all.sort();
    assert_eq!(all, [("edge-1".into(), 1), ("fra-1".into(), 1)]);
    assert_eq!(
        generations(&tables)
            .await
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [1, 1]
    );
    let networks: Vec<_> = tables
        .tenants()
        .list_all(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.network.unwrap().vni)
        .collect();
    assert_eq!(networks, [10_000, 10_001]);

    // A change, published by an incremental and a full publisher at once: one step only.
    let extra = workload("globex", "extra", ReservationState::Approved, JOB);
    tables.workloads().create(&extra).await.unwrap();
    tables
        .placements()
        .upsert(&placement(&extra, vec![whole(0, "fra-1", "srv-1", &[5])]))
        .await
        .unwrap();
    let publisher = Publisher::default();
    let scope = changed(&[("globex", "extra")]);
    let (a, b) = tokio::join!(
        publisher.publish(&tables, &scope, NOW),
        publish(&tables, NOW)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(generations(&tables).await["fra-1"], 2);
    assert_eq!(generations(&tables).await["edge-1"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenant_releases_its_network_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    seed(&tables, &fleet()).await;
    publish(&tables, NOW).await.unwrap();
    assert!(claims(&tables).await.contains(&"vni/00010001".to_string()));

    // globex goes: its workload, placement and record.
    let key = (&tid("globex"), &wid("job"));
    tables.workloads().delete(&key, None).await.unwrap();
    tables.placements().delete(&key, None).await.unwrap();
    tables.tenants().delete(&tid("globex"), None).await.unwrap();
    let scope = Scope::Changed(Changes {
        tenants: [tid("globex")].into(),
        ..Changes::default()
    });
    let s = Publisher::default()
        .publish(&tables, &scope, NOW)
        .await
        .unwrap();
    assert_eq!(published(&s), [("fra-1".into(), 2)]);
    let left = claims(&tables).await;
    assert!(
        !left
            .iter()
            .any(|c| c == "vni/00010001" || c.starts_with("subnet/globex/")),
        "{left:?}"
    );

    // A new tenant in the next run gets the freed values.
    let initech = tenant("initech");
    tables.tenants().create(&initech).await.unwrap();
    let w = workload("initech", "job", ReservationState::Approved, JOB);
    tables.workloads().create(&w).await.unwrap();
    tables
        .placements()
        .upsert(&placement(&w, vec![whole(0, "fra-1", "srv-3", &[0])]))
        .await
        .unwrap();
    let s = Publisher::default()
        .publish(&tables, &changed(&[("initech", "job")]), NOW)
        .await
        .unwrap();
    assert_eq!(s.tenants_allocated, [tid("initech")]);
    let n = tables
        .tenants()
        .get(&tid("initech"))
        .await
        .unwrap()
        .unwrap()
        .record
        .network
        .unwrap();
    assert_eq!(
        (n.vni, n.table, n.supernet.to_string().as_str()),
        (10_001, 1_001, "10.1.0.0/16")
    );
    assert!(publish(&tables, NOW).await.unwrap().published.is_empty());
}

/// 10,000 sites, 100 tenants, one workload per site: a full publish, then one changed
/// workload published incrementally. Ignored by default (it writes ~50,000 records); run with
/// `cargo test -p meridian-central --release --test compiler_publish -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ten_thousand_sites() {
    use std::time::Instant;
    const SITES: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    let mut fleet = Fleet::default();
    for i in 0..SITES {
        let id = format!("edge-{i:05}");
        let base = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + 16 * i as u32;
        let range = format!("{}/28", std::net::Ipv4Addr::from(base));
        let s = site(&id, &range);
        fleet.sites.push(s);
        fleet
            .servers
            .push(server(&id, "srv-1", 2, 0, Some("default")));
    }
    for t in 0..100 {
        fleet.tenants.push(tenant(&format!("t{t:03}")));
    }
    for i in 0..SITES {
        let w = workload(
            &format!("t{:03}", i % 100),
            &format!("w{i:05}"),
            ReservationState::Active,
            WEB,
        );
        fleet.place(w, vec![whole(0, &format!("edge-{i:05}"), "srv-1", &[0])]);
    }
    let started = Instant::now();
    tables.sites().create_many(&fleet.sites, 500).await.unwrap();
    tables
        .servers()
        .create_many(&fleet.servers, 500)
        .await
        .unwrap();
    tables
        .tenants()
        .create_many(&fleet.tenants, 500)
        .await
        .unwrap();
    tables
        .workloads()
        .create_many(&fleet.workloads, 500)
        .await
        .unwrap();
    tables
        .placements()
        .create_many(&fleet.placements, 500)
        .await
        .unwrap();
    eprintln!("seeded {SITES} sites in {:?}", started.elapsed());

    let started = Instant::now();
    let s = publish(&tables, NOW).await.unwrap();
    eprintln!(
        "full publish: {} intents, {} claims in {:?}",
        s.published.len(),
        s.claims_created,
        started.elapsed()
    );
    assert_eq!(s.published.len(), SITES);
    assert!(s.unmet.is_empty(), "{:?}", &s.unmet[..s.unmet.len().min(3)]);

    let started = Instant::now();
    let s = publish(&tables, NOW).await.unwrap();
    eprintln!("full publish, nothing changed: {:?}", started.elapsed());
    assert!(s.published.is_empty());

    // Move one workload to another site.
    let w = &fleet.workloads[42];
    tables
        .placements()
        .upsert(&placement(w, vec![whole(0, "edge-00043", "srv-1", &[1])]))
        .await
        .unwrap();
    let started = Instant::now();
    let scope = changed(&[(w.tenant.as_str(), w.id.as_str())]);
    let s = Publisher::default()
        .publish(&tables, &scope, NOW)
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "incremental publish of one moved workload: {:?} ({:?})",
        took,
        published(&s)
    );
    assert_eq!(
        published(&s),
        [("edge-00042".into(), 2), ("edge-00043".into(), 2)]
    );
}

/// The peers of a site's intent: (tenant, peer site) pairs.
async fn peers(tables: &Tables, site: &str) -> Vec<(String, String)> {
    let intent = tables
        .intents()
        .get(&site.parse::<SiteId>().unwrap())
        .await
        .unwrap()
        .unwrap()
        .record;
    intent
        .peers
        .iter()
        .map(|p| (p.tenant.to_string(), p.site.to_string()))
        .collect()
}

/// A tenant gaining a site changes the peers of the sites it was already on: an incremental
/// publish of the new workload alone recompiles them, and a full publish agrees with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_gaining_or_losing_a_site_updates_the_peers_of_its_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    let fleet = fleet();
    seed(&tables, &fleet).await;
    let publisher = Publisher::default();
    publish(&tables, NOW).await.unwrap();
    // acme is on both sites; globex on fra-1 only.
    assert_eq!(
        peers(&tables, "fra-1").await,
        [("acme".into(), "edge-1".into())]
    );
    assert_eq!(
        peers(&tables, "edge-1").await,
        [("acme".into(), "fra-1".into())]
    );
    let fra = tables
        .intents()
        .get(&"fra-1".parse::<SiteId>().unwrap())
        .await
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(fra.tunnel_endpoint, Some("203.0.113.1".parse().unwrap()));
    assert_eq!(
        fra.peers[0].endpoint,
        "198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap()
    );

    // globex gains edge-1: fra-1 is recompiled for its new peer though the change names only
    // the new workload.
    let edge = workload("globex", "edge", ReservationState::Approved, JOB);
    tables.workloads().create(&edge).await.unwrap();
    tables
        .placements()
        .upsert(&placement(&edge, vec![whole(0, "edge-1", "e-1", &[1])]))
        .await
        .unwrap();
    let s = publisher
        .publish(&tables, &changed(&[("globex", "edge")]), NOW)
        .await
        .unwrap();
    assert_eq!(published(&s), [("edge-1".into(), 2), ("fra-1".into(), 2)]);
    assert_eq!(
        peers(&tables, "fra-1").await,
        [
            ("acme".into(), "edge-1".into()),
            ("globex".into(), "edge-1".into())
        ]
    );
    assert_eq!(
        peers(&tables, "edge-1").await,
        [
            ("acme".into(), "fra-1".into()),
            ("globex".into(), "fra-1".into())
        ]
    );
    assert!(publish(&tables, NOW).await.unwrap().published.is_empty());

    // And loses it again.
    let key = (&tid("globex"), &wid("edge"));
    tables.workloads().delete(&key, None).await.unwrap();
    tables.placements().delete(&key, None).await.unwrap();
    let s = publisher
        .publish(&tables, &changed(&[("globex", "edge")]), NOW)
        .await
        .unwrap();
    assert_eq!(published(&s), [("edge-1".into(), 3), ("fra-1".into(), 3)]);
    assert_eq!(
        peers(&tables, "fra-1").await,
        [("acme".into(), "edge-1".into())]
    );
    assert!(publish(&tables, NOW).await.unwrap().published.is_empty());
}
