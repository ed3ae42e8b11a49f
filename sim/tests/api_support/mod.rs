//! A real central with its gRPC API on 127.0.0.1 (TLS from its own CA), a small generated
//! fleet, two tenants and a user + token for every role, for the API tests.
#![allow(dead_code)]

use std::path::PathBuf;

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_client::{Clients, Target};
use meridian_proto::v1 as proto;
use meridian_sim::fleet::{self, FleetSpec};

pub const ACME: &str = "acme";
pub const GLOBEX: &str = "globex";

/// The roles' users: (user id, tenant, role).
pub const USERS: [(&str, &str, proto::Role); 7] = [
    ("ops", "", proto::Role::SiteOperator),
    ("auditor", "", proto::Role::Viewer),
    ("acme-admin", ACME, proto::Role::TenantAdmin),
    ("acme-dev", ACME, proto::Role::TenantMember),
    ("acme-viewer", ACME, proto::Role::Viewer),
    ("globex-dev", GLOBEX, proto::Role::TenantMember),
    ("globex-admin", GLOBEX, proto::Role::TenantAdmin),
];

/// A running central with its API and a fleet.
pub struct TestApi {
    pub central: Central,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub endpoint: String,
    /// The provider admin's token secret.
    pub admin: String,
}

pub fn config(dir: &std::path::Path) -> CentralConfig {
    let mut c = CentralConfig {
        data_dir: dir.to_owned(),
        ..CentralConfig::default()
    };
    c.channel.listen = "127.0.0.1:0".parse().unwrap();
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.console.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// Starts central with `tweak` applied to its configuration and loads a `sites`-site fleet
/// (sites, servers and regions of the seed-42 generator; tenants come from the API).
pub async fn start(sites: usize, tweak: impl FnOnce(&mut CentralConfig)) -> TestApi {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    tweak(&mut c);
    let central = Central::open(c).await.unwrap();
    let fleet = fleet::generate(&FleetSpec::with_sites(42, sites));
    let admin = fleet::load_with_admin(&central, &fleet).await.unwrap();
    let ca = dir.path().join("ca").join("ca.crt");
    assert!(ca.exists(), "central writes its CA to {}", ca.display());
    let endpoint = format!("https://{}", central.api().local_addr());
    TestApi {
        central,
        dir,
        ca,
        endpoint,
        admin,
    }
}

impl TestApi {
    /// Stops central and opens it again on the same store (new API port; the admin token
    /// stays valid).
    pub async fn restart(self) -> TestApi {
        let TestApi {
            central,
            dir,
            ca,
            admin,
            ..
        } = self;
        central.shutdown().await;
        let central = Central::open(config(dir.path())).await.unwrap();
        TestApi {
            endpoint: format!("https://{}", central.api().local_addr()),
            central,
            dir,
            ca,
            admin,
        }
    }

    /// Sets `user`'s console password as the provider admin; panics unless it is taken.
    pub async fn set_password(&self, user: &str, password: &str) {
        let mut admin = self.clients(&self.admin).await;
        admin
            .tenants
            .set_user_password(proto::SetUserPasswordRequest {
                user: user.into(),
                password: password.into(),
            })
            .await
            .unwrap();
    }

    /// How many bootstrap tokens `site` has (used, expired and revoked ones included).
    pub async fn bootstrap_tokens(&self, site: &str) -> usize {
        let mut admin = self.clients(&self.admin).await;
        admin
            .fleet
            .list_bootstrap_tokens(proto::ListBootstrapTokensRequest {
                site: site.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .len()
    }

    /// Clients authenticated with `token`.
    pub async fn clients(&self, token: &str) -> Clients {
        Target {
            endpoint: self.endpoint.clone(),
            token: token.to_owned(),
            ca: Some(self.ca.clone()),
        }
        .connect()
        .await
        .unwrap()
    }

    /// Creates tenants acme and globex, then every user of [`USERS`] with a token; returns
    /// (user name, role, secret) with the admin first.
    pub async fn people(&self) -> Vec<(String, proto::Role, String)> {
        let mut admin = self.clients(&self.admin).await;
        for id in [ACME, GLOBEX] {
            admin
                .tenants
                .create_tenant(proto::CreateTenantRequest {
                    tenant: Some(tenant(id)),
                })
                .await
                .unwrap();
        }
        let mut out = vec![(
            "admin".to_owned(),
            proto::Role::ProviderAdmin,
            self.admin.clone(),
        )];
        for (id, tenant, role) in USERS {
            let user = admin
                .tenants
                .create_user(proto::CreateUserRequest {
                    user: Some(proto::User {
                        id: id.into(),
                        tenant: tenant.into(),
                        role: role as i32,
                        display_name: id.into(),
                        created_at: 0,
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap();
            // User IDs are scoped per tenant: acme's `acme-dev` is `acme-dev@acme`.
            let expected = if tenant.is_empty() {
                id.to_owned()
            } else {
                format!("{id}@{tenant}")
            };
            assert_eq!(user.id, expected);
            let token = admin
                .tenants
                .create_api_token(proto::CreateApiTokenRequest {
                    user: user.id,
                    role: None,
                    ttl_ms: 3_600_000,
                })
                .await
                .unwrap()
                .into_inner();
            out.push((id.to_owned(), role, token.secret));
        }
        out
    }
}

/// Whether the user named `name` in [`USERS`] belongs to a tenant.
pub fn tenant_scoped(name: &str) -> bool {
    USERS
        .iter()
        .any(|(id, tenant, _)| *id == name && !tenant.is_empty())
}

/// A tenant allowed anywhere with room for a few H100s and MIG slices.
pub fn tenant(id: &str) -> proto::Tenant {
    let t: meridian_common::model::Tenant = serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "quotas": {
            "gpus_per_model": {"H100-80GB": 64, "L40S": 64, "A100-80GB": 64},
            "mig_slices": 70,
            "concurrent_reservations": 100,
            "sites": 20
        },
        "residency": [],
        "weights": {"latency": 25.0, "data": 25.0, "price": 25.0, "packing": 25.0},
        "max_priority": 100,
        "network": null
    }))
    .unwrap();
    t.into()
}

/// A one-GPU batch job spec.
pub fn spec(name: &str) -> proto::WorkloadSpec {
    let s: meridian_common::model::WorkloadSpec = serde_json::from_value(serde_json::json!({
        "name": name,
        "kind": "batch_job",
        "replicas": 1,
        "priority": 10,
        "resources": {
            "accelerator": {"whole_gpus": {"model": "H100-80GB", "count": 1}},
            "cpu_cores": 4,
            "memory_mib": 16384
        },
        "constraints": {}
    }))
    .unwrap();
    s.into()
}

/// Creates a one-GPU batch job called `name` for the caller's own tenant; returns its ID.
pub async fn create(c: &mut Clients, name: &str) -> String {
    c.placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(spec(name)),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap()
        .id
}
