//! The roles a user holds and its API tokens carry, their names and their order, with the wire
//! form (`meridian.v1.Role`) beside them. Which role may call which RPC is central's access
//! table; what a role may grant is here, because every client that hands out tokens needs it.

use meridian_proto::v1 as proto;

/// A role, as granted to a user and carried by each of its API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, fleet-wide.
    ProviderAdmin,
    /// The fleet (sites, servers, regions, bootstrap tokens), and reads of everything.
    SiteOperator,
    /// One tenant: its users, tokens, policy, datasets and workloads.
    TenantAdmin,
    /// One tenant's workloads and datasets.
    TenantMember,
    /// Reads only: fleet-wide without a tenant, one tenant's objects with one.
    Viewer,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Role; 5] = [
        Role::ProviderAdmin,
        Role::SiteOperator,
        Role::TenantAdmin,
        Role::TenantMember,
        Role::Viewer,
    ];

    /// The role's name (`provider-admin`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Role::ProviderAdmin => "provider-admin",
            Role::SiteOperator => "site-operator",
            Role::TenantAdmin => "tenant-admin",
            Role::TenantMember => "tenant-member",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Whether the role belongs to the provider (no tenant) or to a tenant (`None`: either).
    pub const fn provider_side(self) -> Option<bool> {
        match self {
            Role::ProviderAdmin | Role::SiteOperator => Some(true),
            Role::TenantAdmin | Role::TenantMember => Some(false),
            Role::Viewer => None,
        }
    }

    /// How much the role may do; a user can hand out tokens of its own rank or lower only.
    pub const fn rank(self) -> u8 {
        match self {
            Role::ProviderAdmin => 4,
            Role::SiteOperator | Role::TenantAdmin => 3,
            Role::TenantMember => 2,
            Role::Viewer => 1,
        }
    }

    /// Whether a holder of `self` may grant `other` (to itself or another user it manages).
    pub fn may_grant(self, other: Role) -> bool {
        match self {
            Role::ProviderAdmin => true,
            Role::SiteOperator => matches!(other, Role::SiteOperator | Role::Viewer),
            Role::TenantAdmin => {
                matches!(other, Role::TenantAdmin | Role::TenantMember | Role::Viewer)
            }
            Role::TenantMember => matches!(other, Role::TenantMember | Role::Viewer),
            Role::Viewer => other == Role::Viewer,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Role> for proto::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::ProviderAdmin => proto::Role::ProviderAdmin,
            Role::SiteOperator => proto::Role::SiteOperator,
            Role::TenantAdmin => proto::Role::TenantAdmin,
            Role::TenantMember => proto::Role::TenantMember,
            Role::Viewer => proto::Role::Viewer,
        }
    }
}

impl TryFrom<i32> for Role {
    type Error = String;
    fn try_from(v: i32) -> Result<Self, String> {
        match proto::Role::try_from(v) {
            Ok(proto::Role::ProviderAdmin) => Ok(Role::ProviderAdmin),
            Ok(proto::Role::SiteOperator) => Ok(Role::SiteOperator),
            Ok(proto::Role::TenantAdmin) => Ok(Role::TenantAdmin),
            Ok(proto::Role::TenantMember) => Ok(Role::TenantMember),
            Ok(proto::Role::Viewer) => Ok(Role::Viewer),
            Ok(proto::Role::Unspecified) => Err("is unspecified (0); set one of provider-admin, \
                 site-operator, tenant-admin, tenant-member, viewer"
                .into()),
            Err(_) => Err(format!("has unknown enum value {v}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_and_grants_never_escalate() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
            assert_eq!(Role::try_from(proto::Role::from(r) as i32), Ok(r));
            for other in Role::ALL {
                if r.may_grant(other) && r != Role::ProviderAdmin {
                    assert!(other.rank() <= r.rank(), "{r} grants {other}");
                }
            }
        }
        assert!(Role::try_from(0).is_err());
        assert!(Role::try_from(99).is_err());
    }
}
