//! Users and their API tokens.
//!
//! - A user belongs to one tenant (tenant roles) or to the provider (no tenant), with a role.
//! - An API token belongs to one user and carries a role no higher than the user's. Its secret
//!   is `{token id}.{64 hex digits}`; only the secret's SHA-256 is stored (`tokens/api/{id}`),
//!   so a copy of the store authenticates nobody. Tokens expire and can be revoked.

use std::time::Duration;

use meridian_common::ids::{TenantId, Timestamp, TokenId, UserId};
use meridian_common::validate::Problem;
use meridian_proto::v1 as proto;
use rand::RngCore;

use crate::tokens::hash_secret;
use meridian_common::role::Role;
use meridian_store::Tables;
use meridian_store::tables::TableError;

/// Default lifetime of an API token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest lifetime of an API token.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest display name.
pub const MAX_DISPLAY_NAME: usize = 256;

/// A new token: the record and its secret, shown once.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    /// The stored token (without secret).
    pub token: proto::ApiToken,
    /// The secret to present as `authorization: Bearer {secret}`.
    pub secret: String,
}

/// A fresh random ID with a prefix (`wl-`, `tok-`, ...): 12 hex digits of randomness.
pub fn fresh_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Whether `id` has the shape [`fresh_id`] gives for `prefix` (`wl-` and 12 hex digits).
pub fn is_fresh_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == 12 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// The token ID part of a secret, if the secret is well formed.
pub fn token_id_of(secret: &str) -> Option<TokenId> {
    let (id, rest) = secret.split_once('.')?;
    if rest.len() != 64 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    TokenId::parse(id).ok()
}

/// Checks a user record as submitted: ID, role, tenant presence matching the role. Returns
/// the user's full ID: user IDs are scoped per tenant, so a tenant's user `bob` is
/// `bob@{tenant}` (the name may be given plain or already scoped to the same tenant; a
/// scoped ID with no `tenant` names its tenant), and a provider user's ID is its plain name.
pub fn check_user(user: &proto::User) -> Result<(UserId, Option<TenantId>, Role), Vec<Problem>> {
    let mut problems = Vec::new();
    let (name, named_tenant) = match user.id.split_once('@') {
        Some((name, tenant)) => (name, Some(tenant)),
        None => (user.id.as_str(), None),
    };
    let tenant_text = match user.tenant.as_str() {
        "" => named_tenant.unwrap_or(""),
        t => t,
    };
    let tenant = if tenant_text.is_empty() {
        None
    } else {
        TenantId::parse(tenant_text)
            .map_err(|e| problems.push(Problem::new("tenant", e.to_string())))
            .ok()
    };
    // An unparsable tenant is already a problem, so whatever ID comes out is not used.
    let id = match (named_tenant, &tenant) {
        (Some(named), Some(t)) if named != t.as_str() => {
            problems.push(Problem::new(
                "id",
                format!("is scoped to tenant {named:?}, but the user belongs to tenant {t}"),
            ));
            None
        }
        _ => UserId::scoped(name, tenant.as_ref())
            .map_err(|e| problems.push(Problem::new("id", e.to_string())))
            .ok(),
    };
    let role = Role::try_from(user.role)
        .map_err(|m| problems.push(Problem::new("role", m)))
        .ok();
    if let Some(role) = role {
        match (role.provider_side(), tenant_text.is_empty()) {
            (Some(true), false) => problems.push(Problem::new(
                "tenant",
                format!("must be empty: {role} is a provider role"),
            )),
            (Some(false), true) => problems.push(Problem::new(
                "tenant",
                format!("is required: {role} is a tenant role"),
            )),
            _ => {}
        }
    }
    if user.display_name.chars().count() > MAX_DISPLAY_NAME {
        problems.push(Problem::new(
            "display_name",
            format!("is longer than {MAX_DISPLAY_NAME} characters"),
        ));
    }
    match (id, role, problems.is_empty()) {
        (Some(id), Some(role), true) => Ok((id, tenant, role)),
        _ => Err(problems),
    }
}

/// Creates a token for `user` with `role` (already checked against what the user may hold),
/// living `ttl` from `now`.
pub async fn create_token(
    tables: &Tables,
    user: &proto::User,
    role: Role,
    ttl: Duration,
    now: Timestamp,
) -> Result<NewApiToken, TableError> {
    let id = fresh_id("tok");
    let mut secret_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut secret_bytes);
    let secret = format!("{id}.{}", hex::encode(secret_bytes));
    let token = proto::ApiToken {
        id,
        user: user.id.clone(),
        role: proto::Role::from(role) as i32,
        expires_at: now
            .saturating_add_millis(ttl.as_millis() as i64)
            .as_millis(),
        revoked: false,
        created_at: now.as_millis(),
    };
    tables
        .api_tokens()
        .create(&proto::ApiTokenRecord {
            token: Some(token.clone()),
            secret_hash: hash_secret(&secret),
            tenant: user.tenant.clone(),
        })
        .await?;
    Ok(NewApiToken { token, secret })
}

/// Creates the first provider admin and a token for it, unless a user already exists with
/// that id. Used by `meridian-central admin-token` and by the simulator.
pub async fn bootstrap_admin(
    tables: &Tables,
    user_id: &UserId,
    ttl: Duration,
    now: Timestamp,
) -> Result<NewApiToken, TableError> {
    let user = match tables
        .users()
        .get(&meridian_store::tables::KeyPath(user_id.to_string()))
        .await?
    {
        Some(existing) => existing.record,
        None => {
            let user = proto::User {
                id: user_id.to_string(),
                tenant: String::new(),
                role: proto::Role::ProviderAdmin as i32,
                display_name: "provider administrator".into(),
                created_at: now.as_millis(),
            };
            tables.users().create(&user).await?;
            user
        }
    };
    let role = Role::try_from(user.role).unwrap_or(Role::Viewer);
    create_token(tables, &user, role, ttl, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_have_the_shape_they_are_checked_for() {
        let id = fresh_id("wl");
        assert!(is_fresh_id("wl", &id), "{id}");
        for other in [
            "weights",
            "wl-12345",
            "wl-00000000000G",
            "tok-000000000000",
            "wl-0000000000000",
        ] {
            assert!(!is_fresh_id("wl", other), "{other}");
        }
    }

    #[test]
    fn secrets_parse_only_when_well_formed() {
        let id = fresh_id("tok");
        let good = format!("{id}.{}", "a".repeat(64));
        assert_eq!(token_id_of(&good).unwrap().as_str(), id);
        for bad in [
            "",
            "tok-1",
            "tok-1.abc",
            &format!("{id}.{}", "g".repeat(64)),
            &format!("Tok.{}", "a".repeat(64)),
        ] {
            assert!(token_id_of(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn users_name_every_bad_field() {
        let bad = proto::User {
            id: "Bad Id".into(),
            tenant: String::new(),
            role: proto::Role::TenantMember as i32,
            display_name: "x".repeat(300),
            created_at: 0,
        };
        let fields: Vec<String> = check_user(&bad)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["id", "tenant", "display_name"]);
        let provider_with_tenant = proto::User {
            id: "ops".into(),
            tenant: "acme".into(),
            role: proto::Role::SiteOperator as i32,
            ..Default::default()
        };
        assert_eq!(
            check_user(&provider_with_tenant).unwrap_err()[0].field,
            "tenant"
        );
    }

    #[test]
    fn tenant_users_are_scoped_to_their_tenant() {
        let user = |id: &str, tenant: &str, role: proto::Role| proto::User {
            id: id.into(),
            tenant: tenant.into(),
            role: role as i32,
            ..Default::default()
        };
        let ok = |u| check_user(&u).unwrap().0.to_string();
        assert_eq!(
            ok(user("bob", "acme", proto::Role::TenantMember)),
            "bob@acme"
        );
        assert_eq!(
            ok(user("bob@acme", "acme", proto::Role::Viewer)),
            "bob@acme"
        );
        assert_eq!(
            ok(user("bob@acme", "", proto::Role::TenantAdmin)),
            "bob@acme"
        );
        assert_eq!(ok(user("ops", "", proto::Role::SiteOperator)), "ops");
        assert_eq!(ok(user("auditor", "", proto::Role::Viewer)), "auditor");
        let fields = |u| -> Vec<String> {
            check_user(&u)
                .unwrap_err()
                .into_iter()
                .map(|p| p.field)
                .collect()
        };
        assert_eq!(
            fields(user("bob@globex", "acme", proto::Role::TenantMember)),
            ["id"]
        );
        assert_eq!(
            fields(user("ops@acme", "", proto::Role::SiteOperator)),
            ["tenant"]
        );
    }
}
