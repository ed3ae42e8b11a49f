//! Storage through the real API (an in-process central on 127.0.0.1): a tenant's storage quota
//! counts its placed workloads' volumes, shows in its quota usage, and still holds after central
//! restarts (the planner rebuilt from stored placements re-books their storage); a workload
//! over it fails at placement naming the storage quota.

mod api_support;

use std::time::{Duration, Instant};

use meridian_proto::v1 as proto;

const LIMIT: Duration = Duration::from_secs(60);

fn spec(name: &str, storage_gib: u64) -> proto::WorkloadSpec {
    let mut s = api_support::spec(name);
    s.resources.as_mut().unwrap().storage_mib = storage_gib * 1024;
    s
}

/// Creates `spec` for acme (as the provider admin) and waits until it leaves PENDING; its final state.
async fn place(
    c: &mut meridian_client::Clients,
    spec: proto::WorkloadSpec,
) -> proto::ReservationState {
    let id = c
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(spec),
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap()
        .id;
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = c
            .placement
            .get_workload(proto::GetWorkloadRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .workload
            .unwrap()
            .state
            .unwrap();
        if s.phase != proto::ReservationPhase::Pending as i32 {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} stayed pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn used_storage(c: &mut meridian_client::Clients) -> (u64, u64) {
    let u = c
        .tenants
        .get_quota_usage(proto::GetQuotaUsageRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .usage
        .unwrap();
    (u.used.unwrap().storage_mib, u.limits.unwrap().storage_mib)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_quota_counts_volumes_and_survives_a_restart() {
    let api = api_support::start(4, |c| c.api.rate_per_second = 100_000.0).await;
    let mut admin = api.clients(&api.admin).await;
    let mut acme = api_support::tenant("acme");
    acme.quotas.as_mut().unwrap().storage_mib = 100 * 1024;
    admin
        .tenants
        .create_tenant(proto::CreateTenantRequest { tenant: Some(acme) })
        .await
        .unwrap();

    let first = place(&mut admin, spec("weights", 60)).await;
    assert_ne!(
        first.phase,
        proto::ReservationPhase::Failed as i32,
        "{first:?}"
    );
    assert_eq!(used_storage(&mut admin).await, (60 * 1024, 100 * 1024));

    // Restart central on the same store: the rebuilt planner still holds the 60 GiB.
    let api = api.restart().await;
    let mut admin = api.clients(&api.admin).await;
    let second = place(&mut admin, spec("more", 60)).await;
    assert_eq!(
        second.phase,
        proto::ReservationPhase::Failed as i32,
        "{second:?}"
    );
    assert!(
        second.failure_reason.contains("storage"),
        "the storage quota is named: {}",
        second.failure_reason
    );
    // 30 GiB still fits.
    let third = place(&mut admin, spec("small", 30)).await;
    assert_ne!(
        third.phase,
        proto::ReservationPhase::Failed as i32,
        "{third:?}"
    );
    api.central.shutdown().await;
}
