//! Central's typed tables on a real sled store, loaded with a generated fleet.

use std::sync::Arc;

use meridian_common::ids::SiteId;
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use meridian_sim::fleet::{self, FleetSpec};
use meridian_store::Tables;
use meridian_store::tables::{AuditSeq, KeyPath, Record, Table, TableError};
use meridian_store::{Expect, SledStore, Store, StoreConfig};

fn open(dir: &std::path::Path) -> Tables {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, &StoreConfig::default()).unwrap());
    Tables::new(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_round_trips_through_the_tables() {
    let fleet = fleet::generate(&FleetSpec::with_sites(7, 30));
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    tables.sites().create_many(&fleet.sites, 100).await.unwrap();
    tables
        .servers()
        .create_many(&fleet.servers, 100)
        .await
        .unwrap();
    tables
        .tenants()
        .create_many(&fleet.tenants, 100)
        .await
        .unwrap();
    tables
        .regions()
        .create_many(&fleet.regions, 100)
        .await
        .unwrap();
    tables
        .datasets()
        .create_many(&fleet.datasets, 100)
        .await
        .unwrap();

    let mut sites = tables.sites().list_all(None, 7).await.unwrap();
    let mut expected = fleet.sites.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    sites.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        sites, expected,
        "sites changed on their way through the store"
    );

    // Servers list per site through the parent prefix, exactly that site's servers.
    let site = &fleet.sites[0];
    let under: Vec<_> = tables.servers().list_all(Some(&site.id), 50).await.unwrap();
    let want: Vec<_> = fleet
        .servers
        .iter()
        .filter(|s| s.site == site.id)
        .cloned()
        .collect();
    assert_eq!(under.len(), want.len());
    assert!(under.iter().all(|s| s.site == site.id));
    assert_eq!(
        tables.servers().list_all(None, 1000).await.unwrap().len(),
        fleet.servers.len()
    );
    assert_eq!(tables.tenants().list_all(None, 3).await.unwrap(), {
        let mut t = fleet.tenants.clone();
        t.sort_by(|a, b| a.id.cmp(&b.id));
        t
    });

    // Paging: every page but the last is full and names the next.
    let page = tables.sites().list(None, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 10);
    let next = page.next.clone().expect("more pages");
    let page2 = tables.sites().list(None, Some(&next), 10).await.unwrap();
    assert!(page2.items[0].record.id.as_str() > next.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_with_compare_and_swap() {
    let fleet = fleet::generate(&FleetSpec::with_sites(3, 5));
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    let sites = tables.sites();
    let site = fleet.sites[0].clone();
    let rev = sites.create(&site).await.unwrap();
    assert!(matches!(
        sites.create(&site).await,
        Err(TableError::AlreadyExists { table: "sites", .. })
    ));
    let read = sites.get(&site.id).await.unwrap().unwrap();
    assert_eq!(read.revision, rev);
    let mut changed = read.record.clone();
    changed.state = SiteState::Disconnected;
    let rev2 = sites.update(&changed, read.revision).await.unwrap();
    // A second writer holding the old revision loses.
    assert!(matches!(
        sites.update(&changed, read.revision).await,
        Err(TableError::Conflict { current, .. }) if current == rev2
    ));
    assert_eq!(
        sites.get(&site.id).await.unwrap().unwrap().record.state,
        SiteState::Disconnected
    );
    assert!(matches!(
        sites.delete(&site.id, Some(rev)).await,
        Err(TableError::Conflict { .. })
    ));
    assert!(sites.delete(&site.id, Some(rev2)).await.unwrap());
    assert!(!sites.delete(&site.id, None).await.unwrap());
    assert!(matches!(
        sites.update(&changed, rev2).await,
        Err(TableError::NotFound { .. })
    ));
    let missing = SiteId::parse("no-such-site").unwrap();
    assert!(sites.get(&missing).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_refused_and_nothing_is_stored() {
    let fleet = fleet::generate(&FleetSpec::with_sites(3, 5));
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    let before = tables.store().revision();
    let mut bad = fleet.sites[0].clone();
    bad.location.lat = f64::NAN;
    match tables.sites().create(&bad).await {
        Err(TableError::Invalid { source, .. }) => {
            assert!(source.to_string().contains("location"), "{source}");
        }
        other => panic!("NaN latitude accepted: {other:?}"),
    }
    // A batch with one bad record writes nothing at all.
    let mut batch = fleet.sites.clone();
    batch[3].location.lon = 500.0;
    assert!(matches!(
        tables.sites().create_many(&batch, 100).await,
        Err(TableError::Invalid { .. })
    ));
    assert_eq!(tables.store().revision(), before);
    assert!(tables.sites().list_all(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_stored_bytes_are_reported_not_defaulted() {
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    let key = Table::<meridian_common::model::Site>::store_key("edge-xx-0001");
    tables
        .store()
        .put(&key, b"\xff\xff\xff", Expect::Any)
        .await
        .unwrap();
    let id = SiteId::parse("edge-xx-0001").unwrap();
    assert!(matches!(
        tables.sites().get(&id).await,
        Err(TableError::Corrupt { table: "sites", .. })
    ));
    // Valid protobuf that does not convert (an unspecified tier) is corrupt as well.
    let wire = proto::Site {
        id: "edge-xx-0001".into(),
        ..Default::default()
    };
    tables
        .store()
        .put(&key, &prost::Message::encode_to_vec(&wire), Expect::Any)
        .await
        .unwrap();
    assert!(matches!(
        tables.sites().get(&id).await,
        Err(TableError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_records_key_by_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let tables = open(dir.path());
    for seq in [10u64, 2, 33] {
        let record = proto::AuditRecord {
            seq,
            actor: "operator".into(),
            action: "CreateSite".into(),
            ..Default::default()
        };
        tables.audit().create(&record).await.unwrap();
    }
    let seqs: Vec<u64> = tables
        .audit()
        .list_all(None, 2)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seqs,
        [2, 10, 33],
        "audit records must list in sequence order"
    );
    assert!(tables.audit().get(&AuditSeq(10)).await.unwrap().is_some());
    let token = proto::BootstrapTokenRecord {
        token: Some(proto::BootstrapToken {
            id: "tok-1".into(),
            site: "edge-de-0001".into(),
            ..Default::default()
        }),
        secret_hash: vec![1; 32],
    };
    tables.bootstrap_tokens().create(&token).await.unwrap();
    let back = tables
        .bootstrap_tokens()
        .get(&KeyPath("tok-1".into()))
        .await
        .unwrap();
    assert_eq!(back.unwrap().record, token);
    let keyless = proto::BootstrapTokenRecord::default();
    assert!(keyless.key_path().is_empty());
    assert!(matches!(
        tables.bootstrap_tokens().create(&keyless).await,
        Err(TableError::Invalid { .. })
    ));
}
