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
use meridian_central::api::{Role, Rpc, access::allowed};
use meridian_central::cli::Clients;
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
            .range(meridian_central::store::RangeRequest {
                prefix: meridian_central::lifecycle::DIRTY_PREFIX
                    .as_bytes()
                    .to_vec(),
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
        user: "acme-dev".into(),
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
        for &rpc in Rpc::ALL {
            let code = call(&mut c, rpc, &ids, ACME).await;
            checked += 1;
            if allowed(role, rpc) {
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
        let kind = rng.random_range(0..16);
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
            _ => (
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
        "tokens/api/",
    ] {
        let r = store
            .range(meridian_central::store::RangeRequest {
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
    assert!(
        matches!(
            e.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{e:?}"
    );
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
