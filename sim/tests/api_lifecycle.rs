//! The reservation lifecycle through the API, against a real central:
//! - quotas are checked atomically with the placement commit: 12 workloads submitted at once
//!   against a quota of 4 GPUs give exactly 4 approved and 8 failed naming the quota;
//! - the lifecycle survives a restart: approved workloads keep their placements (capacity
//!   stays held: the rebuilt planner refuses a fifth), their intents stay published, and a
//!   cancel after the restart frees the capacity and removes the allocation from the site's
//!   next intent.

mod api_support;

use std::time::{Duration, Instant};

use api_support::TestApi;
use meridian_central::server::Central;
use meridian_common::ids::{SiteId, TenantId, WorkloadId};
use meridian_proto::v1 as proto;

const LIMIT: Duration = Duration::from_secs(30);

async fn phase_of(c: &mut meridian_client::Clients, id: &str) -> proto::ReservationState {
    c.placement
        .get_workload(proto::GetWorkloadRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap()
        .state
        .unwrap()
}

async fn settle(c: &mut meridian_client::Clients, id: &str) -> proto::ReservationState {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = phase_of(c, id).await;
        if s.phase != proto::ReservationPhase::Pending as i32 {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} stayed pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn intent_holds(api: &Central, site: &SiteId, workload: &str) -> Option<(u64, bool)> {
    let intent = api.tables().intents().get(site).await.unwrap()?;
    Some((
        intent.record.generation.get(),
        intent
            .record
            .allocations
            .iter()
            .any(|a| a.workload.as_str() == workload),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_under_concurrency_and_the_lifecycle_survives_a_restart() {
    let api: TestApi = api_support::start(6, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let mut admin = api.clients(&api.admin).await;
    // acme may hold 4 H100s at once.
    let mut acme_tenant = api_support::tenant("acme");
    acme_tenant.quotas = Some(proto::Quotas {
        gpus_per_model: [("H100-80GB".to_owned(), 4)].into(),
        mig_slices: 0,
        concurrent_reservations: 100,
        sites: 10,
        storage_mib: 0,
    });
    admin
        .tenants
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(acme_tenant),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["quotas".into()],
            }),
        })
        .await
        .unwrap();
    let dev = people.iter().find(|p| p.0 == "acme-dev").unwrap().2.clone();

    // Twelve at once, from twelve connections.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let c = api.clients(&dev).await;
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            api_support::create(&mut c, &format!("job-{i}")).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let mut c = api.clients(&dev).await;
    let (mut approved, mut failed) = (Vec::new(), 0);
    for id in &ids {
        let s = settle(&mut c, id).await;
        if s.phase == proto::ReservationPhase::Approved as i32 {
            approved.push(id.clone());
        } else {
            assert_eq!(s.phase, proto::ReservationPhase::Failed as i32, "{s:?}");
            assert!(
                s.failure_reason.to_lowercase().contains("quota"),
                "{}",
                s.failure_reason
            );
            failed += 1;
        }
    }
    assert_eq!((approved.len(), failed), (4, 8), "quota of 4 GPUs");
    let usage = c
        .tenants
        .get_quota_usage(proto::GetQuotaUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .usage
        .unwrap();
    assert_eq!(usage.used.unwrap().gpus_per_model["H100-80GB"], 4);

    // Every approved workload's allocation is in its site's published intent.
    let tenant = TenantId::parse("acme").unwrap();
    let mut sites = Vec::new();
    for id in &approved {
        let w = WorkloadId::parse(id).unwrap();
        let p = api
            .central
            .tables()
            .placements()
            .get(&(&tenant, &w))
            .await
            .unwrap()
            .unwrap();
        let site = p.record.assignments[0].site.clone();
        let deadline = Instant::now() + LIMIT;
        while intent_holds(&api.central, &site, id).await.map(|x| x.1) != Some(true) {
            assert!(
                Instant::now() < deadline,
                "{id} never reached the intent of {site}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sites.push(site);
    }

    // Restart central on the same store.
    let api = api.restart().await;
    let mut c = api.clients(&dev).await;
    for (id, site) in approved.iter().zip(&sites) {
        assert_eq!(
            settle(&mut c, id).await.phase,
            proto::ReservationPhase::Approved as i32
        );
        assert_eq!(
            intent_holds(&api.central, site, id).await.map(|x| x.1),
            Some(true)
        );
    }
    // Capacity is still held: a fifth GPU is over the quota.
    let fifth = api_support::create(&mut c, "fifth").await;
    let s = settle(&mut c, &fifth).await;
    assert_eq!(s.phase, proto::ReservationPhase::Failed as i32, "{s:?}");

    // Cancel one: capacity freed, the allocation leaves its site's next intent.
    let (victim, site) = (&approved[0], &sites[0]);
    let (before, _) = intent_holds(&api.central, site, victim).await.unwrap();
    let canceled = c
        .placement
        .delete_workload(proto::DeleteWorkloadRequest { id: victim.clone() })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    assert_eq!(
        canceled.state.unwrap().phase,
        proto::ReservationPhase::Canceled as i32
    );
    let deadline = Instant::now() + LIMIT;
    loop {
        let (generation, holds) = intent_holds(&api.central, site, victim).await.unwrap();
        if !holds {
            assert!(
                generation > before,
                "the emptied intent must carry a new generation"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the canceled allocation stayed in the intent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = api_support::create(&mut c, "after-cancel").await;
    assert_eq!(
        settle(&mut c, &again).await.phase,
        proto::ReservationPhase::Approved as i32,
        "the canceled workload's GPU was not freed"
    );
    api.central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_releases_its_network() {
    let api: TestApi = api_support::start(4, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let dev = people
        .iter()
        .find(|p| p.0 == "globex-dev")
        .unwrap()
        .2
        .clone();
    let mut c = api.clients(&dev).await;
    let id = api_support::create(&mut c, "job").await;
    assert_eq!(
        settle(&mut c, &id).await.phase,
        proto::ReservationPhase::Approved as i32
    );
    // The publish gives globex a network with its VNI claimed.
    let globex = TenantId::parse("globex").unwrap();
    let deadline = Instant::now() + LIMIT;
    let vni = loop {
        let t = api
            .central
            .tables()
            .tenants()
            .get(&globex)
            .await
            .unwrap()
            .unwrap();
        if let Some(n) = t.record.network {
            break n.vni;
        }
        assert!(Instant::now() < deadline, "globex never got a network");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let claim = format!("net/vni/{vni:08}").into_bytes();
    assert!(api.central.store().get(&claim).await.unwrap().is_some());
    c.placement
        .delete_workload(proto::DeleteWorkloadRequest { id: id.clone() })
        .await
        .unwrap();
    let mut admin = api.clients(&api.admin).await;
    // Live workloads block the deletion; once canceled it goes through.
    let deadline = Instant::now() + LIMIT;
    loop {
        match admin
            .tenants
            .delete_tenant(proto::DeleteTenantRequest {
                id: "globex".into(),
            })
            .await
        {
            Ok(_) => break,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
                assert!(Instant::now() < deadline, "deletion never allowed: {s:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let deadline = Instant::now() + LIMIT;
    while api.central.store().get(&claim).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "VNI {vni} was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        api.central
            .tables()
            .workloads()
            .list_all(Some(&globex), 100)
            .await
            .unwrap()
            .is_empty()
    );
    api.central.shutdown().await;
}
