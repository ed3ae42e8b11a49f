//! Authorisation of the gRPC API against a real central over TLS:
//! - BFLA (R8): every RPC x every role gets exactly the expected allow or deny, and the matrix
//!   covers every method the protobuf services declare.
//! - BOLA (R7): a second tenant probing the first tenant's object IDs over every RPC that takes
//!   one gets `NotFound`, worded exactly as for a missing object, and changes nothing.
//! - Bad input (R12): malformed and hostile requests get an error naming the field, nothing
//!   is stored, and the server keeps serving.
//! - Authentication: no token, a forged token, a revoked token.

mod api_support;

use std::collections::BTreeSet;

use api_support::{ACME, GLOBEX, TestApi, spec};
use meridian_central::services::{Role, Rpc, access::allowed};
use meridian_client::Clients;
use meridian_proto::v1 as proto;
use prost::Message;
use rand::{Rng, SeedableRng};
use tonic::Code;

/// IDs of acme's objects that the calls refer to.
struct Ids {
    workload: String,
    dataset: String,
    user: String,
    token: String,
    site: String,
}

fn role_of(r: proto::Role) -> Role {
    Role::try_from(r as i32).unwrap()
}

/// Calls `rpc` with a benign request; returns the status code (Ok for success).
async fn call(c: &mut Clients, rpc: Rpc, ids: &Ids, tenant: &str) -> Code {
    fn code<T>(r: Result<T, tonic::Status>) -> Code {
        r.map_or_else(|s| s.code(), |_| Code::Ok)
    }
    let t = tenant.to_owned();
    match rpc {
        Rpc::CreateWorkload => code(
            c.placement
                .create_workload(proto::CreateWorkloadRequest {
                    spec: Some(spec("probe")),
                    tenant: t,
                })
                .await,
        ),
        Rpc::GetWorkload => code(
            c.placement
                .get_workload(proto::GetWorkloadRequest {
                    id: ids.workload.clone(),
                })
                .await,
        ),
        Rpc::ListWorkloads => code(
            c.placement
                .list_workloads(proto::ListWorkloadsRequest {
                    tenant: t,
                    ..Default::default()
                })
                .await,
        ),
        Rpc::DeleteWorkload => code(
            c.placement
                .delete_workload(proto::DeleteWorkloadRequest {
                    id: "wl-000000000000".into(),
                })
                .await,
        ),
        Rpc::DryRun => code(
            c.placement
                .dry_run(proto::DryRunRequest {
                    spec: Some(spec("probe")),
                    tenant: t,
                    max_near_misses: 1,
                })
                .await,
        ),
        Rpc::WatchWorkload => match c
            .placement
            .watch_workload(proto::WatchWorkloadRequest {
                id: ids.workload.clone(),
            })
            .await
        {
            Ok(mut s) => code(s.get_mut().message().await),
            Err(s) => s.code(),
        },
        Rpc::CreateTenant => code(
            c.tenants
                .create_tenant(proto::CreateTenantRequest {
                    tenant: Some(api_support::tenant(&format!("t-{}", rand::random::<u32>()))),
                })
                .await,
        ),
        Rpc::GetTenant => code(
            c.tenants
                .get_tenant(proto::GetTenantRequest { id: ACME.into() })
                .await,
        ),
        Rpc::ListTenants => code(
            c.tenants
                .list_tenants(proto::ListTenantsRequest::default())
                .await,
        ),
        Rpc::UpdateTenant => code(
            c.tenants
                .update_tenant(proto::UpdateTenantRequest {
                    tenant: Some(api_support::tenant(ACME)),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["weights".into()],
                    }),
                })
                .await,
        ),
        Rpc::DeleteTenant => code(
            c.tenants
                .delete_tenant(proto::DeleteTenantRequest {
                    id: "no-such-tenant".into(),
                })
                .await,
        ),
        Rpc::CreateUser => code(
            c.tenants
                .create_user(proto::CreateUserRequest {
                    user: Some(proto::User {
                        id: format!("u-{}", rand::random::<u32>()),
                        tenant: ACME.into(),
                        role: proto::Role::Viewer as i32,
                        ..Default::default()
                    }),
                })
                .await,
        ),
        Rpc::ListUsers => code(
            c.tenants
                .list_users(proto::ListUsersRequest {
                    tenant: t,
                    ..Default::default()
                })
                .await,
        ),
        Rpc::DeleteUser => code(
            c.tenants
                .delete_user(proto::DeleteUserRequest {
                    id: "no-such-user".into(),
                })
                .await,
        ),
        Rpc::SetUserPassword => code(
            c.tenants
                .set_user_password(proto::SetUserPasswordRequest {
                    user: "no-such-user".into(),
                    password: "a long enough password".into(),
                })
                .await,
        ),
        Rpc::CreateApiToken => code(
            c.tenants
                .create_api_token(proto::CreateApiTokenRequest {
                    user: String::new(),
                    role: None,
                    ttl_ms: 60_000,
                })
                .await,
        ),
        Rpc::ListApiTokens => code(
            c.tenants
                .list_api_tokens(proto::ListApiTokensRequest::default())
                .await,
        ),
        Rpc::RevokeApiToken => code(
            c.tenants
                .revoke_api_token(proto::RevokeApiTokenRequest {
                    id: "tok-000000000000".into(),
                })
                .await,
        ),
        Rpc::GetQuotaUsage => code(
            c.tenants
                .get_quota_usage(proto::GetQuotaUsageRequest { tenant: t })
                .await,
        ),
        Rpc::CreateSite => code(
            c.fleet
                .create_site(proto::CreateSiteRequest { site: None })
                .await,
        ),
        Rpc::GetSite => code(
            c.fleet
                .get_site(proto::GetSiteRequest {
                    id: ids.site.clone(),
                })
                .await,
        ),
        Rpc::ListSites => code(c.fleet.list_sites(proto::ListSitesRequest::default()).await),
        Rpc::UpdateSite => code(
            c.fleet
                .update_site(proto::UpdateSiteRequest {
                    site: None,
                    update_mask: None,
                })
                .await,
        ),
        Rpc::DecommissionSite => code(
            c.fleet
                .decommission_site(proto::DecommissionSiteRequest {
                    id: "no-such-site".into(),
                })
                .await,
        ),
        Rpc::RevokeSite => code(
            c.fleet
                .revoke_site(proto::RevokeSiteRequest {
                    id: "no-such-site".into(),
                    reason: String::new(),
                })
                .await,
        ),
        Rpc::GetSiteDrift => code(
            c.fleet
                .get_site_drift(proto::GetSiteDriftRequest {
                    site: ids.site.clone(),
                })
                .await,
        ),
        Rpc::ListServers => code(
            c.fleet
                .list_servers(proto::ListServersRequest {
                    site: ids.site.clone(),
                    ..Default::default()
                })
                .await,
        ),
        Rpc::GetServer => code(
            c.fleet
                .get_server(proto::GetServerRequest {
                    site: ids.site.clone(),
                    id: "no-such-server".into(),
                })
                .await,
        ),
        Rpc::RequestServerAction => code(
            c.fleet
                .request_server_action(proto::RequestServerActionRequest {
                    site: ids.site.clone(),
                    server: "no-such-server".into(),
                    op: proto::ServerOp::Reboot as i32,
                })
                .await,
        ),
        Rpc::ListServerActions => code(
            c.fleet
                .list_server_actions(proto::ListServerActionsRequest {
                    site: ids.site.clone(),
                    server: String::new(),
                })
                .await,
        ),
        Rpc::CreateRegion => code(
            c.fleet
                .create_region(proto::CreateRegionRequest { region: None })
                .await,
        ),
        Rpc::ListRegions => code(
            c.fleet
                .list_regions(proto::ListRegionsRequest::default())
                .await,
        ),
        Rpc::CreateDataset => code(
            c.fleet
                .create_dataset(proto::CreateDatasetRequest { dataset: None })
                .await,
        ),
        Rpc::GetDataset => code(
            c.fleet
                .get_dataset(proto::GetDatasetRequest {
                    id: ids.dataset.clone(),
                    tenant: String::new(),
                })
                .await,
        ),
        Rpc::ListDatasets => code(
            c.fleet
                .list_datasets(proto::ListDatasetsRequest {
                    tenant: t,
                    ..Default::default()
                })
                .await,
        ),
        Rpc::DeleteDataset => code(
            c.fleet
                .delete_dataset(proto::DeleteDatasetRequest {
                    id: "no-such-dataset".into(),
                    tenant: String::new(),
                })
                .await,
        ),
        Rpc::CreateBootstrapToken => code(
            c.fleet
                .create_bootstrap_token(proto::CreateBootstrapTokenRequest {
                    site: "no-such-site".into(),
                    ttl_ms: 0,
                })
                .await,
        ),
        Rpc::ListBootstrapTokens => code(
            c.fleet
                .list_bootstrap_tokens(proto::ListBootstrapTokensRequest::default())
                .await,
        ),
        Rpc::RevokeBootstrapToken => code(
            c.fleet
                .revoke_bootstrap_token(proto::RevokeBootstrapTokenRequest {
                    id: "btk-000000000000".into(),
                })
                .await,
        ),
        Rpc::ExportUsage => code(
            c.usage
                .export_usage(proto::ExportUsageRequest {
                    from_ms: 1_800_000_000_000,
                    to_ms: 1_800_003_600_000,
                    tenant: t,
                })
                .await,
        ),
        Rpc::GetUsageTotals => code(
            c.usage
                .get_usage_totals(proto::GetUsageTotalsRequest {
                    tenant: t,
                    from_ms: 1_800_000_000_000,
                    to_ms: 1_800_003_600_000,
                })
                .await,
        ),
        Rpc::SetCostInputs => code(
            c.cost
                .set_cost_inputs(proto::SetCostInputsRequest {
                    inputs: Some(proto::CostInputs {
                        assumed_utilisation: 0.5,
                        ..Default::default()
                    }),
                })
                .await,
        ),
        Rpc::GetCostInputs => code(c.cost.get_cost_inputs(proto::GetCostInputsRequest {}).await),
        Rpc::GetEndpointCost => code(
            c.cost
                .get_endpoint_cost(proto::GetEndpointCostRequest {
                    workload: ids.workload.clone(),
                    ..Default::default()
                })
                .await,
        ),
        Rpc::GetSiteCost => code(
            c.cost
                .get_site_cost(proto::GetSiteCostRequest {
                    site: ids.site.clone(),
                    ..Default::default()
                })
                .await,
        ),
        Rpc::SizeFleet => code(
            c.cost
                .size_fleet(proto::SizeFleetRequest {
                    gpu_model: "H100-80GB".into(),
                    model_size: "70b".into(),
                    demand_tokens_per_second: 1_000.0,
                    ..Default::default()
                })
                .await,
        ),
        Rpc::GetBreakEven => code(
            c.cost
                .get_break_even(proto::GetBreakEvenRequest {
                    gpu_model: "H100-80GB".into(),
                    model_size: "70b".into(),
                    api_price_per_million: Some(0.5),
                })
                .await,
        ),
    }
}

/// Acme's objects: a workload, a dataset; returns their IDs with acme-dev's user and token.
async fn acme_objects(api: &TestApi, people: &[(String, proto::Role, String)]) -> Ids {
    let secret = &people.iter().find(|p| p.0 == "acme-dev").unwrap().2;
    let mut acme = api.clients(secret).await;
    let site = api
        .central
        .tables()
        .sites()
        .list(None, None, 1)
        .await
        .unwrap()
        .items[0]
        .record
        .id
        .to_string();
    let workload = api_support::create(&mut acme, "acme-job").await;
    let dataset = acme
        .fleet
        .create_dataset(proto::CreateDatasetRequest {
            dataset: Some(proto::Dataset {
                id: "acme-weights".into(),
                tenant: String::new(),
                name: "weights".into(),
                size_bytes: 1 << 30,
                replicas: vec![site.clone()],
                residency: vec![],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap()
        .id;
    // Let the lifecycle place it and publish its intent (which also gives acme its network),
    // so nothing changes under the probes but them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let w = acme
            .placement
            .get_workload(proto::GetWorkloadRequest {
                id: workload.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let phase = w.workload.unwrap().state.unwrap();
        let published = api
            .central
            .tables()
            .store()
            .range(meridian_store::RangeRequest {
                prefix: meridian_store::schema::DIRTY_PREFIX.as_bytes().to_vec(),
                start_after: None,
                limit: 0,
            })
            .await
            .unwrap()
            .kvs
            .is_empty();
        if phase.phase != proto::ReservationPhase::Pending as i32 && published {
            assert_eq!(
                phase.phase,
                proto::ReservationPhase::Approved as i32,
                "{phase:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workload never placed and published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let token = acme
        .tenants
        .list_api_tokens(proto::ListApiTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens[0]
        .id
        .clone();
    Ids {
        workload,
        dataset,
        user: "acme-dev@acme".into(),
        token,
        site,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_times_every_role_is_allowed_or_denied_as_the_matrix_says() {
    // The matrix covers 100 % of the RPCs the services declare.
    let set = prost_types::FileDescriptorSet::decode(meridian_proto::FILE_DESCRIPTOR_SET).unwrap();
    let declared: BTreeSet<String> = set
        .file
        .iter()
        .flat_map(|f| f.service.iter())
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("{}/{}", s.name(), m.name()))
        })
        .collect();
    let covered: BTreeSet<String> = Rpc::ALL.iter().map(|r| r.name().to_owned()).collect();
    assert_eq!(
        declared, covered,
        "Rpc::ALL must list every declared method"
    );

    let api = api_support::start(8, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let ids = acme_objects(&api, &people).await;
    let mut checked = 0;
    let mut unauthorised_successes = Vec::new();
    for (user, role, secret) in &people {
        let mut c = api.clients(secret).await;
        let role = role_of(*role);
        let scoped = api_support::tenant_scoped(user);
        for &rpc in Rpc::ALL {
            let code = call(&mut c, rpc, &ids, ACME).await;
            checked += 1;
            // A tenant's viewer sees no more than its tenant's admin: none of the fleet's
            // inventory (the outside probe found these open to it).
            if user == "acme-viewer"
                && matches!(
                    rpc,
                    Rpc::ListSites
                        | Rpc::ListServers
                        | Rpc::GetSite
                        | Rpc::GetSiteDrift
                        | Rpc::GetServer
                )
            {
                assert_eq!(
                    code,
                    Code::PermissionDenied,
                    "acme's viewer calling {}",
                    rpc.name()
                );
            }
            if allowed(role, scoped, rpc) {
                assert!(
                    !matches!(
                        code,
                        Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::Internal
                            | Code::Unknown
                    ),
                    "{user} ({role}) may call {} but got {code:?}",
                    rpc.name()
                );
            } else {
                if code == Code::Ok {
                    unauthorised_successes.push(format!("{user} {}", rpc.name()));
                }
                assert_eq!(
                    code,
                    Code::PermissionDenied,
                    "{user} ({role}) calling {}",
                    rpc.name()
                );
            }
        }
    }
    assert!(
        unauthorised_successes.is_empty(),
        "{unauthorised_successes:?}"
    );
    println!(
        "BFLA: {checked} calls ({} RPCs x {} roles), 0 unauthorised successes",
        Rpc::ALL.len(),
        people.len()
    );
    api.central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_are_answered_exactly_like_missing_ones() {
    let api = api_support::start(8, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let ids = acme_objects(&api, &people).await;
    // The prober is globex's admin: the strongest tenant role.
    let globex_secret = &people.iter().find(|p| p.0 == "globex-admin").unwrap().2;
    let mut globex = api.clients(globex_secret).await;
    let before = snapshot(&api).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let probes = std::env::var("MERIDIAN_BOLA_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_200);
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..probes {
        // Half the probes use acme's real IDs, half IDs that do not exist; both must look alike.
        let real = i % 2 == 0;
        let pick = |real: &str, kind: &str| {
            if i % 2 == 0 {
                real.to_owned()
            } else {
                format!("{kind}-{:012x}", i)
            }
        };
        let kind = rng.random_range(0..19);
        let (name, status) = match kind {
            0 => (
                "GetWorkload",
                globex
                    .placement
                    .get_workload(proto::GetWorkloadRequest {
                        id: pick(&ids.workload, "wl"),
                    })
                    .await
                    .map(|_| ()),
            ),
            1 => (
                "DeleteWorkload",
                globex
                    .placement
                    .delete_workload(proto::DeleteWorkloadRequest {
                        id: pick(&ids.workload, "wl"),
                    })
                    .await
                    .map(|_| ()),
            ),
            2 => (
                "WatchWorkload",
                globex
                    .placement
                    .watch_workload(proto::WatchWorkloadRequest {
                        id: pick(&ids.workload, "wl"),
                    })
                    .await
                    .map(|_| ()),
            ),
            3 => (
                "GetDataset",
                globex
                    .fleet
                    .get_dataset(proto::GetDatasetRequest {
                        id: pick(&ids.dataset, "ds"),
                        tenant: String::new(),
                    })
                    .await
                    .map(|_| ()),
            ),
            4 => (
                "DeleteDataset",
                globex
                    .fleet
                    .delete_dataset(proto::DeleteDatasetRequest {
                        id: pick(&ids.dataset, "ds"),
                        tenant: String::new(),
                    })
                    .await
                    .map(|_| ()),
            ),
            5 => (
                "GetTenant",
                globex
                    .tenants
                    .get_tenant(proto::GetTenantRequest {
                        id: pick(ACME, "tenant"),
                    })
                    .await
                    .map(|_| ()),
            ),
            6 => (
                "GetQuotaUsage",
                globex
                    .tenants
                    .get_quota_usage(proto::GetQuotaUsageRequest {
                        tenant: pick(ACME, "tenant"),
                    })
                    .await
                    .map(|_| ()),
            ),
            7 => (
                "ListWorkloads",
                globex
                    .placement
                    .list_workloads(proto::ListWorkloadsRequest {
                        tenant: pick(ACME, "tenant"),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            ),
            8 => (
                "ListDatasets",
                globex
                    .fleet
                    .list_datasets(proto::ListDatasetsRequest {
                        tenant: pick(ACME, "tenant"),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            ),
            9 => (
                "CreateWorkload",
                globex
                    .placement
                    .create_workload(proto::CreateWorkloadRequest {
                        spec: Some(spec("intruder")),
                        tenant: pick(ACME, "tenant"),
                    })
                    .await
                    .map(|_| ()),
            ),
            10 => (
                "DryRun",
                globex
                    .placement
                    .dry_run(proto::DryRunRequest {
                        spec: Some(spec("intruder")),
                        tenant: pick(ACME, "tenant"),
                        max_near_misses: 0,
                    })
                    .await
                    .map(|_| ()),
            ),
            11 => (
                "CreateApiToken",
                globex
                    .tenants
                    .create_api_token(proto::CreateApiTokenRequest {
                        user: pick(&ids.user, "user"),
                        role: None,
                        ttl_ms: 0,
                    })
                    .await
                    .map(|_| ()),
            ),
            12 => (
                "RevokeApiToken",
                globex
                    .tenants
                    .revoke_api_token(proto::RevokeApiTokenRequest {
                        id: pick(&ids.token, "tok"),
                    })
                    .await
                    .map(|_| ()),
            ),
            13 => (
                "UpdateTenant",
                globex
                    .tenants
                    .update_tenant(proto::UpdateTenantRequest {
                        tenant: Some(api_support::tenant(&pick(ACME, "tenant"))),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["weights".into()],
                        }),
                    })
                    .await
                    .map(|_| ()),
            ),
            14 => (
                "CreateDataset",
                globex
                    .fleet
                    .create_dataset(proto::CreateDatasetRequest {
                        dataset: Some(proto::Dataset {
                            id: format!("x-{i}"),
                            tenant: pick(ACME, "tenant"),
                            name: "x".into(),
                            size_bytes: 1,
                            replicas: vec![],
                            residency: vec![],
                        }),
                    })
                    .await
                    .map(|_| ()),
            ),
            16 => (
                "ExportUsage",
                globex
                    .usage
                    .export_usage(proto::ExportUsageRequest {
                        tenant: pick(ACME, "tenant"),
                        from_ms: 1_800_000_000_000,
                        to_ms: 1_800_003_600_000,
                    })
                    .await
                    .map(|_| ()),
            ),
            17 => (
                "GetUsageTotals",
                globex
                    .usage
                    .get_usage_totals(proto::GetUsageTotalsRequest {
                        tenant: pick(ACME, "tenant"),
                        from_ms: 1_800_000_000_000,
                        to_ms: 1_800_003_600_000,
                    })
                    .await
                    .map(|_| ()),
            ),
            15 => (
                "ListUsers",
                globex
                    .tenants
                    .list_users(proto::ListUsersRequest {
                        tenant: pick(ACME, "tenant"),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            ),
            _ => (
                "SetUserPassword",
                globex
                    .tenants
                    .set_user_password(proto::SetUserPasswordRequest {
                        user: pick(&ids.user, "user"),
                        password: "a long enough password".into(),
                    })
                    .await
                    .map(|_| ()),
            ),
        };
        let s = status.expect_err(&format!("probe {i} {name} (real id: {real}) succeeded"));
        assert_eq!(
            s.code(),
            Code::NotFound,
            "probe {i} {name} (real id: {real}): {s:?}"
        );
        // The message names the ID asked for and nothing else: same shape either way.
        assert!(
            s.message().ends_with(" not found"),
            "probe {i} {name}: {}",
            s.message()
        );
        *by_kind.entry(name).or_default() += 1;
    }
    assert_eq!(
        snapshot(&api).await,
        before,
        "acme's objects changed under the probes"
    );
    println!(
        "BOLA: {probes} cross-tenant probes over {} RPCs, 0 reads or writes: {by_kind:?}",
        by_kind.len()
    );
    api.central.shutdown().await;
}

/// Everything acme owns, as bytes, to compare before and after.
async fn snapshot(api: &TestApi) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = api.central.tables().store().clone();
    let mut out = Vec::new();
    for prefix in [
        "workloads/acme/",
        "datasets/acme/",
        "tenants/acme",
        "users/",
        "passwords/",
        "tokens/api/",
    ] {
        let r = store
            .range(meridian_store::RangeRequest {
                prefix: prefix.as_bytes().to_vec(),
                start_after: None,
                limit: 0,
            })
            .await
            .unwrap();
        out.extend(r.kvs.into_iter().map(|kv| (kv.key, kv.value)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_stores_nothing_and_the_server_keeps_serving() {
    let api = api_support::start(4, |_| {}).await;
    let people = api.people().await;
    let dev = &people.iter().find(|p| p.0 == "acme-dev").unwrap().2;
    let mut acme = api.clients(dev).await;
    let mut admin = api.clients(&api.admin).await;

    let mut bad_kind = spec("bad-kind");
    bad_kind.kind = 99;
    let mut zero = spec("zero");
    zero.replicas = 0;
    let mut long_name = spec("x");
    long_name.name = "n".repeat(2_000);
    let mut pinned = spec("pinned");
    pinned
        .constraints
        .get_or_insert_with(Default::default)
        .pin_server = Some("srv-0001".into());
    let mut greedy = spec("greedy");
    greedy.priority = 1_000_000;
    let mut unknown_dataset = spec("data");
    unknown_dataset
        .constraints
        .get_or_insert_with(Default::default)
        .datasets = vec!["someone-elses".into()];
    let cases: Vec<(proto::WorkloadSpec, Code, &str)> = vec![
        (bad_kind, Code::InvalidArgument, "spec.kind"),
        (zero, Code::InvalidArgument, "spec.replicas"),
        (long_name, Code::InvalidArgument, "spec.name"),
        (
            pinned,
            Code::PermissionDenied,
            "spec.constraints.pin_server",
        ),
        (greedy, Code::PermissionDenied, "spec.priority"),
        (
            unknown_dataset,
            Code::InvalidArgument,
            "spec.constraints.datasets[0]",
        ),
    ];
    for (s, code, field) in cases {
        let e = acme
            .placement
            .create_workload(proto::CreateWorkloadRequest {
                spec: Some(s),
                tenant: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let e = acme
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: None,
            tenant: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("spec: is required"),
        "{}",
        e.message()
    );
    // A 10 MB message is refused by size, before anything is decoded.
    let mut huge = spec("huge");
    huge.image = Some("i".repeat(10 * 1024 * 1024));
    let e = acme
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(huge),
            tenant: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("api.max_message_bytes"),
        "{}",
        e.message()
    );
    // Reservation windows must lie in [2000-01-01, 2100-01-01).
    for (start, end, field) in [
        (i64::MIN, i64::MIN + 1, "spec.window.start"),
        (i64::MAX - 1, i64::MAX, "spec.window.end"),
    ] {
        let mut s = spec("forever");
        s.window = Some(proto::TimeWindow { start, end });
        let e = acme
            .placement
            .create_workload(proto::CreateWorkloadRequest {
                spec: Some(s),
                tenant: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    // Unknown enum values in list filters are refused everywhere, naming the filter.
    let sites = |state, tier| proto::ListSitesRequest {
        state,
        tier,
        ..Default::default()
    };
    let mut refused = Vec::new();
    for (field, request) in [
        ("state", sites(Some(99), None)),
        ("tier", sites(None, Some(99))),
    ] {
        refused.push((field, admin.fleet.list_sites(request).await.unwrap_err()));
    }
    let servers = proto::ListServersRequest {
        phase: Some(99),
        ..Default::default()
    };
    refused.push((
        "phase",
        admin.fleet.list_servers(servers).await.unwrap_err(),
    ));
    for (field, e) in refused {
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            e.message()
        );
    }
    // Provider-set fields and masks.
    let mut with_net = api_support::tenant("netted");
    with_net.network = Some(proto::TenantNetwork::default());
    let e = admin
        .tenants
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(with_net),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("tenant.network"), "{}", e.message());
    let e = admin
        .tenants
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(api_support::tenant(ACME)),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["network".into()],
            }),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("update_mask.paths[0]"),
        "{}",
        e.message()
    );
    let admin_acme = &people.iter().find(|p| p.0 == "acme-admin").unwrap().2;
    let e = api
        .clients(admin_acme)
        .await
        .tenants
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(api_support::tenant(ACME)),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["quotas".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a tenant admin raising its own quota: {e:?}"
    );
    // A masked update is checked for what it changes only: a body with the ID and the
    // residency is enough to change the residency.
    let residency_only = |term: &str| proto::UpdateTenantRequest {
        tenant: Some(proto::Tenant {
            id: ACME.into(),
            residency: vec![term.into()],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["residency".into()],
        }),
    };
    let updated = api
        .clients(admin_acme)
        .await
        .tenants
        .update_tenant(residency_only("EU"))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(updated.residency, ["EU"]);
    assert!(updated.quotas.is_some(), "the quotas were kept");
    let e = admin
        .tenants
        .update_tenant(residency_only("Atlantis"))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("tenant.residency[0]"),
        "{}",
        e.message()
    );
    let e = acme
        .placement
        .list_workloads(proto::ListWorkloadsRequest {
            page_size: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("page_size"), "{}", e.message());
    let e = acme
        .placement
        .list_workloads(proto::ListWorkloadsRequest {
            state: Some(42),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("state"), "{}", e.message());
    let e = acme
        .placement
        .get_workload(proto::GetWorkloadRequest {
            id: "../../etc".into(),
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("id:"), "{}", e.message());

    // Nothing was stored, and the server still serves.
    let stored = acme
        .placement
        .list_workloads(proto::ListWorkloadsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stored.workloads.is_empty(), "{:?}", stored.workloads);
    let ok = acme
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(spec("fine")),
            tenant: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().workload.unwrap().tenant, ACME);
    let _ = GLOBEX;
    api.central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_and_revoked_tokens_are_refused() {
    let api = api_support::start(2, |_| {}).await;
    let people = api.people().await;
    let (_, _, dev) = people.iter().find(|p| p.0 == "acme-dev").unwrap().clone();
    // No token at all.
    let mut none = api.clients("x").await;
    let e = none
        .tenants
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // The right ID with a wrong secret.
    let (id, _) = dev.split_once('.').unwrap();
    let forged = format!("{id}.{}", "0".repeat(64));
    let e = api
        .clients(&forged)
        .await
        .tenants
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // RFC 7235 / 6750: the scheme in any case, one or more spaces; one header only.
    for header in [
        format!("BEARER {dev}"),
        format!("bearer  {dev}"),
        format!("Bearer   {dev}"),
    ] {
        raw_list_tenants(&api, &[header.as_str()])
            .await
            .unwrap_or_else(|e| panic!("{header:?}: {e:?}"));
    }
    let e = raw_list_tenants(&api, &[&format!("Bearer {dev}"), &format!("Bearer {dev}")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("more than one"), "{}", e.message());
    // Works, then revoked by its owner, then refused.
    let mut c = api.clients(&dev).await;
    c.tenants
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .unwrap();
    c.tenants
        .revoke_api_token(proto::RevokeApiTokenRequest { id: id.into() })
        .await
        .unwrap();
    let e = c
        .tenants
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "a revoked token still works"
    );
    // Every mutating call above left an audit record, and the chain is whole.
    match meridian_central::audit::Auditor::new(api.central.tables())
        .verify()
        .await
        .unwrap()
    {
        meridian_central::audit::Verdict::Intact { records, .. } => {
            assert!(records >= 15, "{records} records")
        }
        broken => panic!("{broken:?}"),
    }
    api.central.shutdown().await;
}

/// What one create call answered: its code and its message with the IDs it named replaced
/// by `<id>`, so a call naming a taken ID and one naming a fresh ID can be compared.
fn answer<T>(r: Result<T, tonic::Status>, ids: &[&str]) -> (Code, String) {
    match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => {
            let mut m = s.message().to_owned();
            for id in ids {
                m = m.replace(id, "<id>");
            }
            (s.code(), m)
        }
    }
}

/// One create RPC called with `name` wherever the request names a tenant-owned object:
/// users and datasets in `tenant` (empty: the caller's own), a dataset a workload reads, a
/// token's user. Fleet objects (sites, regions, tenants, bootstrap tokens) take fresh IDs.
async fn create_with(
    c: &mut Clients,
    rpc: Rpc,
    name: &str,
    tenant: &str,
    site: &proto::Site,
    region: &proto::Region,
) -> (Code, String) {
    let fresh = format!("f{:08x}", rand::random::<u32>());
    let ids = [name, fresh.as_str()];
    match rpc {
        Rpc::CreateUser => answer(
            c.tenants
                .create_user(proto::CreateUserRequest {
                    user: Some(proto::User {
                        id: name.into(),
                        tenant: tenant.into(),
                        role: proto::Role::Viewer as i32,
                        ..Default::default()
                    }),
                })
                .await,
            &ids,
        ),
        Rpc::CreateDataset => answer(
            c.fleet
                .create_dataset(proto::CreateDatasetRequest {
                    dataset: Some(proto::Dataset {
                        id: name.into(),
                        tenant: tenant.into(),
                        name: "probe".into(),
                        size_bytes: 1 << 20,
                        replicas: vec![site.id.clone()],
                        residency: vec![],
                    }),
                })
                .await,
            &ids,
        ),
        Rpc::CreateWorkload => {
            let mut s = spec("reads");
            s.constraints.get_or_insert_with(Default::default).datasets = vec![name.into()];
            answer(
                c.placement
                    .create_workload(proto::CreateWorkloadRequest {
                        spec: Some(s),
                        tenant: tenant.into(),
                    })
                    .await,
                &ids,
            )
        }
        Rpc::CreateApiToken => {
            let user = if tenant.is_empty() {
                name.to_owned()
            } else {
                format!("{name}@{tenant}")
            };
            answer(
                c.tenants
                    .create_api_token(proto::CreateApiTokenRequest {
                        user,
                        role: None,
                        ttl_ms: 60_000,
                    })
                    .await,
                &ids,
            )
        }
        Rpc::CreateTenant => answer(
            c.tenants
                .create_tenant(proto::CreateTenantRequest {
                    tenant: Some(api_support::tenant(&fresh)),
                })
                .await,
            &ids,
        ),
        Rpc::CreateSite => {
            let mut s = site.clone();
            s.id = fresh.clone();
            s.state = proto::SiteState::Unspecified as i32;
            answer(
                c.fleet
                    .create_site(proto::CreateSiteRequest { site: Some(s) })
                    .await,
                &ids,
            )
        }
        Rpc::CreateRegion => {
            let mut r = region.clone();
            r.id = fresh.clone();
            answer(
                c.fleet
                    .create_region(proto::CreateRegionRequest { region: Some(r) })
                    .await,
                &ids,
            )
        }
        Rpc::CreateBootstrapToken => answer(
            c.fleet
                .create_bootstrap_token(proto::CreateBootstrapTokenRequest {
                    site: site.id.clone(),
                    ttl_ms: 60_000,
                })
                .await,
            &ids,
        ),
        other => panic!("{} is not a create call", other.name()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_never_depend_on_what_another_tenant_or_the_provider_holds() {
    // IDs of tenant-owned objects are scoped per tenant (users `name@tenant`, datasets per
    // tenant), so a create answers the same whether or not the ID is taken elsewhere: the
    // outside probe enumerated other tenants' users and datasets through ALREADY_EXISTS.
    let api = api_support::start(4, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let mut admin = api.clients(&api.admin).await;
    let t = api.central.tables();
    let site: proto::Site = t.sites().list(None, None, 1).await.unwrap().items[0]
        .record
        .clone()
        .into();
    let region: proto::Region = t.regions().list(None, None, 1).await.unwrap().items[0]
        .record
        .clone()
        .into();
    let creates: Vec<Rpc> = Rpc::ALL
        .iter()
        .copied()
        .filter(|r| r.name().contains("/Create"))
        .collect();
    assert_eq!(creates.len(), 8, "{creates:?}");
    let mut compared = 0;
    for (i, (user, role, secret)) in people.iter().enumerate() {
        // The caller creates in its own tenant; a provider caller creates in globex. The
        // other tenant, and the provider, hold every name the caller tries.
        let own = api_support::USERS
            .iter()
            .find(|u| u.0 == user)
            .map_or("", |u| u.1);
        let (target, other) = match own {
            "" => (GLOBEX, ACME),
            ACME => (ACME, GLOBEX),
            _ => (GLOBEX, ACME),
        };
        let taken = format!("taken-{i}");
        for (tenant, who) in [(other, proto::Role::Viewer), ("", proto::Role::Viewer)] {
            admin
                .tenants
                .create_user(proto::CreateUserRequest {
                    user: Some(proto::User {
                        id: taken.clone(),
                        tenant: tenant.into(),
                        role: who as i32,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
        admin
            .fleet
            .create_dataset(proto::CreateDatasetRequest {
                dataset: Some(proto::Dataset {
                    id: taken.clone(),
                    tenant: other.into(),
                    name: "held".into(),
                    size_bytes: 1 << 20,
                    replicas: vec![site.id.clone()],
                    residency: vec![],
                }),
            })
            .await
            .unwrap();
        let tenant_field = if own.is_empty() { target } else { "" };
        let mut c = api.clients(secret).await;
        // One fresh name per caller for every call, like the taken one: what an earlier
        // create made (a user, a dataset) is then there for the later calls of both.
        let fresh = format!("fresh-{i}");
        for &rpc in &creates {
            let with_taken = create_with(&mut c, rpc, &taken, tenant_field, &site, &region).await;
            let with_fresh = create_with(&mut c, rpc, &fresh, tenant_field, &site, &region).await;
            assert_eq!(
                with_taken,
                with_fresh,
                "{user} ({:?}) {}: an ID held by {other} or the provider answered differently \
                 from a fresh one",
                role,
                rpc.name()
            );
            compared += 1;
        }
    }
    println!(
        "create calls: {compared} pairs ({} RPCs x {} roles), taken vs fresh IDs answered alike",
        creates.len(),
        people.len()
    );
    api.central.shutdown().await;
}

/// `ListTenants` with exactly these `authorization` header values.
async fn raw_list_tenants(api: &TestApi, headers: &[&str]) -> Result<(), tonic::Status> {
    let pem = std::fs::read(&api.ca).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(api.endpoint.clone())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let values: Vec<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        headers.iter().map(|h| h.parse().unwrap()).collect();
    let mut client = proto::tenant_service_client::TenantServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            for v in &values {
                request.metadata_mut().append("authorization", v.clone());
            }
            Ok(request)
        },
    );
    client
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_creating_a_dataset_keeps_the_index_and_ids_stay_per_tenant() {
    use meridian_common::ids::{DatasetId, TenantId};
    use meridian_common::model::Dataset;
    use meridian_store::tables::Table;

    let api = api_support::start(4, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let secret = |u: &str| people.iter().find(|p| p.0 == u).unwrap().2.clone();
    let mut admin = api.clients(&api.admin).await;
    let mut acme = api.clients(&secret("acme-dev")).await;
    let mut globex = api.clients(&secret("globex-dev")).await;
    let t = api.central.tables();
    let site = t.sites().list(None, None, 1).await.unwrap().items[0]
        .record
        .id
        .clone();
    let acme_id = TenantId::parse(ACME).unwrap();
    let globex_id = TenantId::parse(GLOBEX).unwrap();
    let dataset = |id: &str, size: u64| Dataset {
        id: DatasetId::parse(id).unwrap(),
        tenant: acme_id.clone(),
        name: meridian_common::ids::Name::parse("data").unwrap(),
        size_bytes: size,
        replicas: vec![site.clone()],
        residency: Default::default(),
    };
    // Each way a dataset reaches the store: a batch load (the demo's and the scenarios'),
    // a single create, an upsert, and the API.
    t.datasets()
        .create_many(&[dataset("by-batch", 1)], 64)
        .await
        .unwrap();
    t.datasets().create(&dataset("by-create", 2)).await.unwrap();
    t.datasets().upsert(&dataset("by-upsert", 3)).await.unwrap();
    acme.fleet
        .create_dataset(proto::CreateDatasetRequest {
            dataset: Some(dataset("by-api", 4).into()),
        })
        .await
        .unwrap();
    api.central.lifecycle().fleet_changed();
    let ways = ["by-batch", "by-create", "by-upsert", "by-api"];
    for id in ways {
        let holders = t
            .dataset_holders(&DatasetId::parse(id).unwrap())
            .await
            .unwrap();
        assert_eq!(holders, vec![acme_id.clone()], "{id}");
    }
    // Another tenant may use the same IDs: they are its own datasets.
    for id in ways {
        let mut theirs = dataset(id, 1_000);
        theirs.tenant = globex_id.clone();
        globex
            .fleet
            .create_dataset(proto::CreateDatasetRequest {
                dataset: Some(theirs.into()),
            })
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let holders = t
            .dataset_holders(&DatasetId::parse(id).unwrap())
            .await
            .unwrap();
        assert_eq!(holders, [acme_id.clone(), globex_id.clone()], "{id}");
        // Each tenant sees its own; the provider names the tenant or is told to.
        let mine = acme
            .fleet
            .get_dataset(proto::GetDatasetRequest {
                id: id.into(),
                tenant: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .dataset
            .unwrap();
        assert_eq!(
            (mine.tenant.as_str(), mine.size_bytes < 1_000),
            (ACME, true)
        );
        let e = admin
            .fleet
            .get_dataset(proto::GetDatasetRequest {
                id: id.into(),
                tenant: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().starts_with("tenant: is required"),
            "{}",
            e.message()
        );
        let named = admin
            .fleet
            .get_dataset(proto::GetDatasetRequest {
                id: id.into(),
                tenant: GLOBEX.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .dataset
            .unwrap();
        assert_eq!((named.tenant.as_str(), named.size_bytes), (GLOBEX, 1_000));
    }
    // The provider's list shows each (tenant, dataset) once.
    let listed = admin
        .fleet
        .list_datasets(proto::ListDatasetsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .datasets;
    let mut pairs: Vec<(String, String)> = listed
        .iter()
        .map(|d| (d.tenant.clone(), d.id.clone()))
        .collect();
    let n = pairs.len();
    pairs.sort();
    pairs.dedup();
    assert_eq!((pairs.len(), n), (8, 8), "{pairs:?}");
    // The owner still places work next to its own data, whatever globex named its own.
    api.central.lifecycle().fleet_changed();
    for id in ways {
        let mut s = spec("near-data");
        s.constraints.get_or_insert_with(Default::default).datasets = vec![id.into()];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let r = loop {
            match acme
                .placement
                .dry_run(proto::DryRunRequest {
                    spec: Some(s.clone()),
                    tenant: String::new(),
                    max_near_misses: 0,
                })
                .await
            {
                // Until the planner has rebuilt its snapshot with the new datasets.
                Err(e)
                    if e.code() == Code::FailedPrecondition
                        || e.message().contains("does not exist") =>
                {
                    assert!(std::time::Instant::now() < deadline, "{id}: {e:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => break other,
            }
        };
        let placed = r.unwrap_or_else(|e| panic!("{id}: {e:?}")).into_inner();
        assert!(placed.placement.is_some(), "{id}: {placed:?}");
    }
    // A delete takes the index entry with it.
    api.clients(&secret("acme-admin"))
        .await
        .fleet
        .delete_dataset(proto::DeleteDatasetRequest {
            id: "by-batch".into(),
            tenant: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        t.dataset_holders(&DatasetId::parse("by-batch").unwrap())
            .await
            .unwrap(),
        vec![globex_id.clone()]
    );
    // An index entry of the old layout (global IDs: `index/datasets/{id}`) moves to the
    // per-tenant one when central opens.
    let store = t.store().clone();
    let new_key = Table::<meridian_store::schema::DatasetIndex>::store_key("by-create/acme");
    store
        .delete(&new_key, meridian_store::Expect::Any)
        .await
        .unwrap();
    store
        .put(
            b"index/datasets/by-create",
            b"by-create acme",
            meridian_store::Expect::Any,
        )
        .await
        .unwrap();
    assert_eq!(t.upgrade_layout().await.unwrap(), 1);
    assert_eq!(t.upgrade_layout().await.unwrap(), 0);
    assert!(
        store
            .get(b"index/datasets/by-create")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get(&new_key).await.unwrap().is_some());
    api.central.shutdown().await;
}
