//! Observed state through the channel: a site's `Inventory` report replaces its servers in
//! central's `servers/` table (servers no longer reported are removed), a `ServerState` report
//! updates one server, and an inventory naming another site's server is refused.

use meridian_common::ids::ServerId;
use meridian_common::model::{ReportBody, Server, ServerState};
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::wait::{LIMIT, wait_for};

fn server(site: &str, id: &str) -> Server {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "site": site,
        "bmc": {"url": format!("https://bmc-{id}.example"), "vendor": "generic"},
        "serial": format!("SN-{id}"),
        "cpu_cores": 64,
        "memory_mib": 524288,
        "gpus": [{"index": 0, "model": "H100-80GB", "memory_mib": 81920, "mig": "disabled", "health": "healthy"}],
        "dpu": null,
        "pool": null,
        "state": "available"
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_server_state_reports_become_central_servers() {
    let dir = tempfile::tempdir().unwrap();
    let central = test_central::start(&dir.path().join("central"))
        .await
        .unwrap();
    enrol::add_site(&central, "edge-inv").await.unwrap();
    let boot = enrol::write_bootstrap(&central, "edge-inv", vec![], dir.path())
        .await
        .unwrap();
    let (agent, _) = agents::start_recording(agents::config(&dir.path().join("agent"), &boot, 300))
        .await
        .unwrap();
    let tables = central.tables();
    let site = site_id("edge-inv");
    wait_for("site online", LIMIT, || async {
        tables
            .sites()
            .get(&site)
            .await
            .unwrap()
            .is_some_and(|v| v.record.state == meridian_common::model::SiteState::Online)
    })
    .await;
    let ids = |servers: Vec<Server>| -> Vec<String> {
        servers.into_iter().map(|s| s.id.to_string()).collect()
    };

    agent
        .report(ReportBody::Inventory {
            servers: vec![server("edge-inv", "srv-a"), server("edge-inv", "srv-b")],
            pending: vec![],
        })
        .unwrap();
    wait_for("two servers", LIMIT, || async {
        ids(tables.servers().list_all(Some(&site), 100).await.unwrap()) == ["srv-a", "srv-b"]
    })
    .await;

    agent
        .report(ReportBody::ServerState {
            server: ServerId::parse("srv-b").unwrap(),
            state: ServerState::Failed {
                reason: "BMC unreachable".into(),
            },
        })
        .unwrap();
    wait_for("srv-b failed", LIMIT, || async {
        tables
            .servers()
            .get(&(&site, &ServerId::parse("srv-b").unwrap()))
            .await
            .unwrap()
            .is_some_and(|v| matches!(v.record.state, ServerState::Failed { .. }))
    })
    .await;

    // A later inventory without srv-a removes it.
    agent
        .report(ReportBody::Inventory {
            servers: vec![server("edge-inv", "srv-b"), server("edge-inv", "srv-c")],
            pending: vec![],
        })
        .unwrap();
    wait_for("srv-a gone, srv-c added", LIMIT, || async {
        ids(tables.servers().list_all(Some(&site), 100).await.unwrap()) == ["srv-b", "srv-c"]
    })
    .await;

    // A server the agent manages but has not inspected yet (an operator registered it at
    // central first) is kept while the inventory names it pending, and removed once named in
    // neither list.
    tables
        .servers()
        .create(&server("edge-inv", "srv-d"))
        .await
        .unwrap();
    agent
        .report(ReportBody::Inventory {
            servers: vec![server("edge-inv", "srv-b")],
            pending: vec![
                ServerId::parse("srv-c").unwrap(),
                ServerId::parse("srv-d").unwrap(),
            ],
        })
        .unwrap();
    agent
        .report(ReportBody::ServerState {
            server: ServerId::parse("srv-b").unwrap(),
            state: ServerState::Cleaning,
        })
        .unwrap();
    // Reports are ingested in order: once srv-b is cleaning, the inventory before it was.
    wait_for("srv-b cleaning", LIMIT, || async {
        tables
            .servers()
            .get(&(&site, &ServerId::parse("srv-b").unwrap()))
            .await
            .unwrap()
            .is_some_and(|v| v.record.state == ServerState::Cleaning)
    })
    .await;
    assert_eq!(
        ids(tables.servers().list_all(Some(&site), 100).await.unwrap()),
        ["srv-b", "srv-c", "srv-d"],
        "pending servers are kept"
    );
    agent
        .report(ReportBody::Inventory {
            servers: vec![server("edge-inv", "srv-b")],
            pending: vec![],
        })
        .unwrap();
    wait_for("srv-c and srv-d gone", LIMIT, || async {
        ids(tables.servers().list_all(Some(&site), 100).await.unwrap()) == ["srv-b"]
    })
    .await;
    agent.shutdown().await;
    central.shutdown().await;
}
