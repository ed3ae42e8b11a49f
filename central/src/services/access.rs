//! Who may call what: roles, the authenticated caller, and the role x RPC matrix.
//!
//! Authorisation has two halves. The **function** half ([`allowed`]) is a pure table of every
//! RPC against every role: a role not in an RPC's row is refused with `PermissionDenied`. The
//! **object** half is the caller's scope ([`Caller::scope`]): a tenant-scoped caller sees only
//! its own tenant's objects, and another tenant's object is answered exactly like a missing one
//! (`NotFound`). A tenant named in a request is never trusted: it is checked against the scope.

use meridian_common::ids::{TenantId, TokenId, UserId};
pub use meridian_common::role::Role;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user the token belongs to.
    pub user: UserId,
    /// The token used; [`PASSWORD_LOGIN_TOKEN`] for a caller that logged in with a password
    /// ([`Services::authenticate_password`](super::Services::authenticate_password)).
    pub token: TokenId,
    /// The user's tenant; `None` for provider users.
    pub tenant: Option<TenantId>,
    /// The token's role.
    pub role: Role,
}

/// The token ID of a caller that logged in with its password rather than an API token. It is
/// a valid [`TokenId`] that no API token has (theirs are `tok-` and 12 hex digits), so it can
/// never name, revoke or be mistaken for a real token.
pub const PASSWORD_LOGIN_TOKEN: &str = "password";

/// Which tenants' objects a caller can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every tenant's (provider users).
    All,
    /// One tenant's.
    Tenant(&'a TenantId),
}

impl Scope<'_> {
    /// Whether an object of `tenant` is visible.
    pub fn sees(&self, tenant: &TenantId) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => *t == tenant,
        }
    }
}

impl Caller {
    /// The actor written to the audit log.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user)
    }

    /// Which tenants' objects this caller can see.
    pub fn scope(&self) -> Scope<'_> {
        match &self.tenant {
            Some(t) => Scope::Tenant(t),
            None => Scope::All,
        }
    }

    /// The key its requests are rate-limited under: the tenant, or the provider user.
    pub fn rate_key(&self) -> String {
        match &self.tenant {
            Some(t) => format!("tenant:{t}"),
            None => format!("provider:{}", self.user),
        }
    }
}

macro_rules! rpcs {
    ($($rpc:ident = $service:literal $method:literal, mutating: $m:literal, roles: [$($role:ident),*];)*) => {
        /// Every RPC of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rpc { $($rpc),* }

        impl Rpc {
            /// Every RPC, in declaration order.
            pub const ALL: &'static [Rpc] = &[$(Rpc::$rpc),*];

            /// `Service/Method`, as in the audit log.
            pub const fn name(self) -> &'static str {
                match self { $(Rpc::$rpc => concat!($service, "/", $method)),* }
            }

            /// Whether the RPC changes anything (and so is audited).
            pub const fn mutating(self) -> bool {
                match self { $(Rpc::$rpc => $m),* }
            }

            /// The roles allowed to call it.
            pub const fn roles(self) -> &'static [Role] {
                match self { $(Rpc::$rpc => &[$(Role::$role),*]),* }
            }
        }
    };
}

rpcs! {
    CreateWorkload = "PlacementService" "CreateWorkload", mutating: true, roles: [ProviderAdmin, TenantAdmin, TenantMember];
    GetWorkload = "PlacementService" "GetWorkload", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    ListWorkloads = "PlacementService" "ListWorkloads", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    DeleteWorkload = "PlacementService" "DeleteWorkload", mutating: true, roles: [ProviderAdmin, TenantAdmin, TenantMember];
    DryRun = "PlacementService" "DryRun", mutating: false, roles: [ProviderAdmin, TenantAdmin, TenantMember];
    WatchWorkload = "PlacementService" "WatchWorkload", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    CreateTenant = "TenantService" "CreateTenant", mutating: true, roles: [ProviderAdmin];
    GetTenant = "TenantService" "GetTenant", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    ListTenants = "TenantService" "ListTenants", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    UpdateTenant = "TenantService" "UpdateTenant", mutating: true, roles: [ProviderAdmin, TenantAdmin];
    DeleteTenant = "TenantService" "DeleteTenant", mutating: true, roles: [ProviderAdmin];
    CreateUser = "TenantService" "CreateUser", mutating: true, roles: [ProviderAdmin, TenantAdmin];
    ListUsers = "TenantService" "ListUsers", mutating: false, roles: [ProviderAdmin, TenantAdmin];
    DeleteUser = "TenantService" "DeleteUser", mutating: true, roles: [ProviderAdmin, TenantAdmin];
    SetUserPassword = "TenantService" "SetUserPassword", mutating: true, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    CreateApiToken = "TenantService" "CreateApiToken", mutating: true, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    ListApiTokens = "TenantService" "ListApiTokens", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    RevokeApiToken = "TenantService" "RevokeApiToken", mutating: true, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    GetQuotaUsage = "TenantService" "GetQuotaUsage", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    CreateSite = "FleetService" "CreateSite", mutating: true, roles: [ProviderAdmin, SiteOperator];
    GetSite = "FleetService" "GetSite", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    ListSites = "FleetService" "ListSites", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    UpdateSite = "FleetService" "UpdateSite", mutating: true, roles: [ProviderAdmin, SiteOperator];
    DecommissionSite = "FleetService" "DecommissionSite", mutating: true, roles: [ProviderAdmin];
    RevokeSite = "FleetService" "RevokeSite", mutating: true, roles: [ProviderAdmin, SiteOperator];
    GetSiteDrift = "FleetService" "GetSiteDrift", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    ListServers = "FleetService" "ListServers", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    GetServer = "FleetService" "GetServer", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    RequestServerAction = "FleetService" "RequestServerAction", mutating: true, roles: [ProviderAdmin, SiteOperator];
    ListServerActions = "FleetService" "ListServerActions", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    CreateRegion = "FleetService" "CreateRegion", mutating: true, roles: [ProviderAdmin, SiteOperator];
    ListRegions = "FleetService" "ListRegions", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    CreateDataset = "FleetService" "CreateDataset", mutating: true, roles: [ProviderAdmin, TenantAdmin, TenantMember];
    GetDataset = "FleetService" "GetDataset", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    ListDatasets = "FleetService" "ListDatasets", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    DeleteDataset = "FleetService" "DeleteDataset", mutating: true, roles: [ProviderAdmin, TenantAdmin];
    CreateBootstrapToken = "FleetService" "CreateBootstrapToken", mutating: true, roles: [ProviderAdmin, SiteOperator];
    ListBootstrapTokens = "FleetService" "ListBootstrapTokens", mutating: false, roles: [ProviderAdmin, SiteOperator];
    RevokeBootstrapToken = "FleetService" "RevokeBootstrapToken", mutating: true, roles: [ProviderAdmin, SiteOperator];
    SetCostInputs = "CostService" "SetCostInputs", mutating: true, roles: [ProviderAdmin, SiteOperator];
    GetCostInputs = "CostService" "GetCostInputs", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    GetEndpointCost = "CostService" "GetEndpointCost", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    GetSiteCost = "CostService" "GetSiteCost", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    SizeFleet = "CostService" "SizeFleet", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    GetBreakEven = "CostService" "GetBreakEven", mutating: false, roles: [ProviderAdmin, SiteOperator, Viewer];
    ExportUsage = "UsageService" "ExportUsage", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
    GetUsageTotals = "UsageService" "GetUsageTotals", mutating: false, roles: [ProviderAdmin, SiteOperator, TenantAdmin, TenantMember, Viewer];
}

/// Whether `role` may call `rpc` at all (the object check comes after), for a caller of a
/// tenant (`tenant_scoped`) or of the provider.
///
/// A tenant's caller may call only RPCs open to some tenant role: a tenant-scoped `viewer`
/// sees no more than its own tenant's admin (no fleet inventory: sites, servers, drift).
pub fn allowed(role: Role, tenant_scoped: bool, rpc: Rpc) -> bool {
    let roles = rpc.roles();
    roles.contains(&role)
        && (!tenant_scoped
            || roles
                .iter()
                .any(|r| matches!(r, Role::TenantAdmin | Role::TenantMember)))
}

impl Caller {
    /// Whether this caller may call `rpc` at all (see [`allowed`]).
    pub fn may_call(&self, rpc: Rpc) -> bool {
        allowed(self.role, self.tenant.is_some(), rpc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_call_nothing_that_mutates_and_rpc_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for &rpc in Rpc::ALL {
            assert!(names.insert(rpc.name()), "{} twice", rpc.name());
            // A viewer manages its own credentials: tokens and its password.
            if rpc.mutating()
                && !matches!(
                    rpc,
                    Rpc::CreateApiToken | Rpc::RevokeApiToken | Rpc::SetUserPassword
                )
            {
                assert!(
                    !allowed(Role::Viewer, false, rpc),
                    "viewer may {}",
                    rpc.name()
                );
            }
            assert!(
                allowed(Role::ProviderAdmin, false, rpc),
                "provider-admin may not {}",
                rpc.name()
            );
        }
        assert_eq!(Rpc::ALL.len(), 47);
    }

    #[test]
    fn a_tenant_viewer_calls_nothing_its_tenant_admin_may_not() {
        for &rpc in Rpc::ALL {
            if allowed(Role::Viewer, true, rpc) {
                assert!(
                    allowed(Role::TenantAdmin, true, rpc) || allowed(Role::TenantMember, true, rpc),
                    "a tenant viewer may {}",
                    rpc.name()
                );
            }
        }
        // The fleet reads the outside probe found open to a tenant's viewer.
        for rpc in [
            Rpc::ListSites,
            Rpc::ListServers,
            Rpc::GetSite,
            Rpc::GetSiteDrift,
            Rpc::GetServer,
            Rpc::ListServerActions,
        ] {
            assert!(!allowed(Role::Viewer, true, rpc), "{}", rpc.name());
            assert!(allowed(Role::Viewer, false, rpc), "{}", rpc.name());
        }
    }
}
