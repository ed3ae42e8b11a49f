//! Users' console passwords: setting one (`TenantService/SetUserPassword`,
//! [`Services::set_user_password`]) and logging in with it
//! ([`Services::authenticate_password`]).
//!
//! A password is stored only as its argon2id hash (RFC 9106, the `argon2` crate's default
//! parameters: 19 MiB, 2 passes, 1 lane), a PHC string with a random 16-byte salt, in
//! `passwords/{user}` ([`proto::PasswordRecord`]). The write is guarded by the user record's
//! revision and deleting a user deletes its password in the same transaction, so a password
//! never outlives its user (nor passes to a new user of the same ID). The password itself is
//! never stored, logged, audited or answered, and errors never quote it or its length.
//!
//! Who may set whose: a provider admin anyone's; a tenant admin its own tenant's users' (another
//! tenant's user, or a provider user, is `NotFound`, like a missing one); every other caller
//! only its own (`PermissionDenied` for another user it can see).
//!
//! Logins are limited twice before any hash is computed: per source address, by the same
//! budget of failed authentications as API tokens (`api.auth_failures_per_second`,
//! `api.auth_failure_burst`), and per user ([`LOGIN_FAILURE_BURST`] failures, then one per
//! `1 / LOGIN_FAILURES_PER_SECOND` seconds), so guessing one user's password from many
//! addresses is as slow as from one. A refused attempt is answered `RateLimited` without its
//! password being hashed. A wrong password, an unknown user and a user without a password all
//! get the same `Unauthenticated` answer after the same work (an unknown user's attempt is
//! verified against [`DUMMY_HASH`]). Logins and failed logins are audited as
//! [`LOGIN_ACTION`]; refused ones are not (a flood must not fill the log).

use std::net::IpAddr;
use std::time::Instant;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use meridian_common::ids::{TenantId, TokenId, UserId};
use meridian_proto::v1 as proto;
use meridian_store::tables::{KeyPath, Table};
use meridian_store::{Compare, Txn};
use rand::Rng;

use super::access::{Caller, PASSWORD_LOGIN_TOKEN, Role};
use super::error::ApiError;
use super::ratelimit::{self, RateLimiter};
use super::tenants::{is_admin_of, scoped_user_id};
use super::{Call, Outcome, Services};

/// Fewest characters (Unicode scalar values) a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes (UTF-8) a password may have.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Failed logins per second each user may have, sustained (one per 10 s).
pub const LOGIN_FAILURES_PER_SECOND: f64 = 0.1;
/// Failed logins a user may have at once above that rate.
pub const LOGIN_FAILURE_BURST: f64 = 5.0;
/// The audit log's action of a password login.
pub const LOGIN_ACTION: &str = "Console/Login";
/// The answer to every failed login, whatever failed.
pub const LOGIN_FAILED: &str = "wrong user or password";
/// Most password hashes computed at once (each holds 19 MiB and a core for tens of ms).
const MAX_CONCURRENT_HASHES: usize = 4;
/// Length of a password's salt, bytes.
const SALT_BYTES: usize = 16;

/// The argon2id hash, with the default parameters, of a random password no one kept: what an
/// unknown user's (or a user without a password's) login attempt is verified against, so that
/// it takes as long as a real one. A test checks that its parameters are still the defaults.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$QkOv7rg3AbO5r5i05zZi2w$BvDdzP19PvESuumMmYwzWC2UzOrCKJgDFAmcvzRkhZU";

/// The per-user login limiter and the bound on concurrent hashing.
#[derive(Debug)]
pub(super) struct Logins {
    per_user: RateLimiter,
    hashing: tokio::sync::Semaphore,
}

impl Logins {
    pub(super) fn new() -> Self {
        Logins {
            per_user: RateLimiter::new(LOGIN_FAILURES_PER_SECOND, LOGIN_FAILURE_BURST),
            hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES),
        }
    }

    /// Runs `f` (hashing) on the blocking pool, at most [`MAX_CONCURRENT_HASHES`] at once.
    async fn hash<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::Internal("password hashing stopped".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::Internal(format!("password hashing: {e}")))
    }
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes, not only whitespace. The error names the field `password`
/// and never quotes the password or its length.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    let message = if password.trim().is_empty() {
        "must not be empty or only whitespace"
    } else if password.len() > MAX_PASSWORD_BYTES {
        "must be at most 1024 bytes long"
    } else if password.chars().count() < MIN_PASSWORD_CHARS {
        "must be at least 12 characters long"
    } else {
        return Ok(());
    };
    Err(ApiError::invalid("password", message))
}

/// The argon2id PHC string of `password` with `salt` (default parameters).
pub fn hash_password(password: &[u8], salt: &[u8]) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password_with_salt(password, salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string `hash`; `Err` when `hash` is not a usable
/// argon2 hash (a corrupt record).
pub fn verify_password(password: &[u8], hash: &str) -> Result<bool, argon2::password_hash::Error> {
    match Argon2::default().verify_password(password, hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `caller` may set the password of `user` (a record it was able to look up):
/// `NotFound` for a user outside its scope (another tenant's, or a provider user for a
/// tenant's caller), `PermissionDenied` for another user it sees but does not administer.
pub fn may_set_password(caller: &Caller, user: &proto::User) -> Result<(), ApiError> {
    let tenant = TenantId::parse(&user.tenant).ok();
    let in_scope = match &caller.tenant {
        None => true,
        Some(own) => tenant.as_ref() == Some(own),
    };
    if !in_scope {
        return Err(ApiError::not_found("user", &user.id));
    }
    if user.id == caller.user.as_str() || is_admin_of(caller, tenant.as_ref()) {
        return Ok(());
    }
    Err(ApiError::PermissionDenied(format!(
        "user: only an admin may set another user's password ({} asked for {})",
        caller.user, user.id
    )))
}

/// The per-user limiter's key of a login name (names that are no user ID share one).
fn login_key(user: Option<&UserId>) -> String {
    match user {
        Some(id) => format!("user:{id}"),
        None => "user:?".to_owned(),
    }
}

impl Services {
    /// Sets the console password of `user` (empty: the caller's) to `password`, stored as an
    /// argon2id hash. See the module documentation for who may set whose. Audited as
    /// `TenantService/SetUserPassword` on `user/{id}`, without the password.
    pub async fn set_user_password(
        &self,
        call: Call<'_>,
        user: &str,
        password: &str,
    ) -> Result<(), ApiError> {
        let caller = call.caller();
        let target = if user.is_empty() {
            Ok(caller.user.clone())
        } else {
            scoped_user_id(caller, user)
        };
        let object = match &target {
            Ok(id) => format!("user/{id}"),
            Err(_) => "user/".to_owned(),
        };
        let result = match target {
            Ok(id) => self.store_password(caller, &id, password).await,
            Err(e) => Err(e),
        };
        call.finish(&object, result).await
    }

    async fn store_password(
        &self,
        caller: &Caller,
        user: &UserId,
        password: &str,
    ) -> Result<(), ApiError> {
        check_password(password)?;
        let (record, revision) = self.visible_user_at(caller, user.as_str()).await?;
        may_set_password(caller, &record)?;
        let salt: [u8; SALT_BYTES] = rand::rng().random();
        let secret = password.to_owned();
        let hash = self
            .logins
            .hash(move || hash_password(secret.as_bytes(), &salt))
            .await??;
        let stored = proto::PasswordRecord {
            user: record.id.clone(),
            hash,
            set_at_ms: self.clock.now().as_millis(),
        };
        // Only while the user is as read: a user deleted meanwhile leaves no password behind.
        let txn = Txn::new()
            .when(Compare::ModRevision(
                Table::<proto::User>::store_key(&record.id),
                revision,
            ))
            .then(Table::<proto::PasswordRecord>::put_op(&stored)?);
        if !self.tables.store().txn(txn).await?.succeeded {
            return Err(ApiError::Conflict(format!("user {}", record.id)));
        }
        Ok(())
    }

    /// The caller logging in as `user` (a full user ID: `name@tenant`, or a provider user's
    /// `name`) with `password`, from `source`: the user's ID, tenant and role, and
    /// [`PASSWORD_LOGIN_TOKEN`] as its token.
    ///
    /// `RateLimited` (answered `api.refusal_delay_ms` late, without hashing anything) when
    /// `source` has spent its budget of failed authentications or `user` its budget of failed
    /// logins ([`LOGIN_FAILURE_BURST`], [`LOGIN_FAILURES_PER_SECOND`]); `Unauthenticated`
    /// with [`LOGIN_FAILED`] for a wrong password, an unknown user or a user without a
    /// password alike (each spends from both budgets); `AuditUnavailable` when the login's
    /// audit record (`Console/Login`, success or denied) cannot be written.
    pub async fn authenticate_password(
        &self,
        source: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<Caller, ApiError> {
        let now = Instant::now();
        let source_key = source.map(ratelimit::source_key);
        if let (Some(ip), Some(key)) = (source, &source_key)
            && let Err(retry_after) = self.auth_limiter.check(key, now)
        {
            self.auth_failures.refuse(ip, now);
            return Err(self
                .refuse(ApiError::RateLimited {
                    key: format!("address {ip} (failed authentications)"),
                    retry_after,
                })
                .await);
        }
        let id = UserId::parse(user).ok();
        let user_key = login_key(id.as_ref());
        if let Err(retry_after) = self.logins.per_user.check(&user_key, now) {
            // Nothing was verified: the address's token goes back.
            if let Some(key) = &source_key {
                self.auth_limiter.refund(key);
            }
            if let Some(ip) = source {
                self.auth_failures.refuse(ip, now);
            }
            return Err(self
                .refuse(ApiError::RateLimited {
                    key: format!(
                        "user {} (failed logins)",
                        id.as_ref().map_or("?", UserId::as_str)
                    ),
                    retry_after,
                })
                .await);
        }
        let refund = || {
            if let Some(key) = &source_key {
                self.auth_limiter.refund(key);
            }
            self.logins.per_user.refund(&user_key);
        };
        let from = source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        match self.verify_login(id.as_ref(), password).await {
            Ok(Some(caller)) => {
                refund();
                self.append_audit(
                    &caller.actor(),
                    LOGIN_ACTION,
                    &format!("user/{}", caller.user),
                    Outcome::Success,
                    &format!("from {from}"),
                )
                .await?;
                Ok(caller)
            }
            Ok(None) => {
                self.auth_failures.fail(source, Instant::now());
                let (actor, object) = match &id {
                    Some(id) => (format!("user:{id}"), format!("user/{id}")),
                    None => ("anonymous".to_owned(), "user/".to_owned()),
                };
                self.append_audit(
                    &actor,
                    LOGIN_ACTION,
                    &object,
                    Outcome::Denied,
                    &format!("{LOGIN_FAILED} (from {from})"),
                )
                .await?;
                Err(ApiError::Unauthenticated(LOGIN_FAILED.into()))
            }
            Err(e) => {
                // The store failed: not the caller's failure.
                refund();
                Err(e)
            }
        }
    }

    /// Whether a console session `caller` opened with a password at `logged_in` still
    /// stands: the user still exists with the same role, and its password was not changed
    /// since (a new password ends every session opened with the old one).
    pub async fn password_session_valid(
        &self,
        caller: &Caller,
        logged_in: meridian_common::ids::Timestamp,
    ) -> Result<bool, ApiError> {
        let key = KeyPath(caller.user.to_string());
        let Some(user) = self.tables.users().get(&key).await?.map(|v| v.record) else {
            return Ok(false);
        };
        if Role::try_from(user.role).ok() != Some(caller.role) {
            return Ok(false);
        }
        Ok(self
            .tables
            .passwords()
            .get(&key)
            .await?
            .is_some_and(|p| p.record.set_at_ms <= logged_in.as_millis()))
    }

    /// The caller `user` becomes with `password`, or `None` when it is wrong, the user is
    /// unknown or has no password (after the same hashing work in every case).
    async fn verify_login(
        &self,
        user: Option<&UserId>,
        password: &str,
    ) -> Result<Option<Caller>, ApiError> {
        if password.len() > MAX_PASSWORD_BYTES {
            // No password set through the API is this long.
            return Ok(None);
        }
        let (record, stored) = match user {
            Some(id) => {
                let key = KeyPath(id.to_string());
                let record = self.tables.users().get(&key).await?.map(|v| v.record);
                let stored = self.tables.passwords().get(&key).await?.map(|v| v.record);
                (record, stored)
            }
            None => (None, None),
        };
        let (record, hash) = match (record, stored) {
            (Some(record), Some(stored)) => (Some(record), stored.hash),
            _ => (None, DUMMY_HASH.to_owned()),
        };
        let secret = password.to_owned();
        let matched = self
            .logins
            .hash(move || verify_password(secret.as_bytes(), &hash))
            .await?;
        let matched = match matched {
            Ok(m) => m,
            Err(e) => {
                if record.is_some() {
                    tracing::error!(
                        user = %user.map_or("?", UserId::as_str),
                        error = %e,
                        "the stored password hash is unusable; set the password again"
                    );
                }
                false
            }
        };
        let (Some(record), Some(id), true) = (record, user, matched) else {
            return Ok(None);
        };
        let role = Role::try_from(record.role)
            .map_err(|m| ApiError::Internal(format!("stored user role {m}")))?;
        let tenant = if record.tenant.is_empty() {
            None
        } else {
            Some(
                TenantId::parse(&record.tenant)
                    .map_err(|e| ApiError::Internal(format!("stored user tenant: {e}")))?,
            )
        };
        Ok(Some(Caller {
            user: id.clone(),
            token: TokenId::parse(PASSWORD_LOGIN_TOKEN)
                .map_err(|e| ApiError::Internal(format!("login token id: {e}")))?,
            tenant,
            role,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Rpc;
    use crate::services::access::allowed;

    fn caller(user: &str, tenant: Option<&str>, role: Role) -> Caller {
        Caller {
            user: UserId::parse(user).unwrap(),
            token: TokenId::parse("tok-000000000001").unwrap(),
            tenant: tenant.map(|t| TenantId::parse(t).unwrap()),
            role,
        }
    }

    fn user(id: &str, tenant: &str, role: proto::Role) -> proto::User {
        proto::User {
            id: id.into(),
            tenant: tenant.into(),
            role: role as i32,
            ..Default::default()
        }
    }

    fn refused_field(r: Result<(), ApiError>) -> (String, String) {
        match r {
            Err(ApiError::Invalid(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                (problems[0].field.clone(), problems[0].message.clone())
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn passwords_need_12_characters_at_most_1024_bytes_and_not_only_whitespace() {
        check_password("correct-hors").unwrap();
        check_password(&"x".repeat(MAX_PASSWORD_BYTES)).unwrap();
        // Characters, not bytes: 12 two-byte characters are enough, 11 are not.
        check_password(&"é".repeat(12)).unwrap();
        // A password with spaces inside or around is fine.
        check_password("  two words here  ").unwrap();
        for bad in [
            String::new(),
            "short-pw-11".to_owned(),
            "é".repeat(11),
            " ".repeat(20),
            "\t\n \u{3000}".repeat(5),
            "x".repeat(MAX_PASSWORD_BYTES + 1),
            "é".repeat(MAX_PASSWORD_BYTES / 2 + 1),
        ] {
            let (field, message) = refused_field(check_password(&bad));
            assert_eq!(field, "password", "{bad:?}");
            // The message never quotes the password (nor its length).
            assert!(
                !message.contains(bad.trim()) || bad.trim().is_empty(),
                "{message}"
            );
            assert!(!message.contains(&bad.len().to_string()), "{message}");
        }
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify_only_their_password() {
        let a = hash_password(b"correct horse battery", b"salt-one-16bytes").unwrap();
        let b = hash_password(b"correct horse battery", b"salt-two-16bytes").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a new salt gives a new hash");
        assert!(!a.contains("correct"));
        assert!(verify_password(b"correct horse battery", &a).unwrap());
        assert!(verify_password(b"correct horse battery", &b).unwrap());
        assert!(!verify_password(b"correct horse batterz", &a).unwrap());
        assert!(!verify_password(b"", &a).unwrap());
        assert!(verify_password(b"x", "not a phc string").is_err());
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        let real = hash_password(b"anything at all", b"sixteen bytes!!!").unwrap();
        let real = argon2::PasswordHash::new(&real).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(
            argon2::Params::try_from(&dummy).unwrap(),
            argon2::Params::try_from(&real).unwrap(),
            "argon2's default parameters changed: make DUMMY_HASH again with them"
        );
        assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
        assert!(!verify_password(b"", DUMMY_HASH).unwrap());
    }

    #[test]
    fn who_may_set_whose_password() {
        let bob = user("bob@acme", "acme", proto::Role::TenantMember);
        let acme_admin = user("boss@acme", "acme", proto::Role::TenantAdmin);
        let eve = user("eve@globex", "globex", proto::Role::TenantMember);
        let ops = user("ops", "", proto::Role::SiteOperator);
        let root = caller("admin", None, Role::ProviderAdmin);
        for u in [&bob, &acme_admin, &eve, &ops] {
            may_set_password(&root, u).unwrap();
        }
        // A tenant admin: its tenant's users (admins too); another tenant's user and provider
        // users are not found, exactly like missing ones.
        let boss = caller("boss@acme", Some("acme"), Role::TenantAdmin);
        may_set_password(&boss, &bob).unwrap();
        may_set_password(&boss, &acme_admin).unwrap();
        for u in [&eve, &ops] {
            let e = may_set_password(&boss, u).unwrap_err();
            assert!(
                matches!(e, ApiError::NotFound { kind: "user", .. }),
                "{e:?}"
            );
            assert_eq!(e.to_string(), format!("user {} not found", u.id));
        }
        let globex_admin = caller("root@globex", Some("globex"), Role::TenantAdmin);
        assert!(matches!(
            may_set_password(&globex_admin, &bob),
            Err(ApiError::NotFound { .. })
        ));
        // Everyone else: only their own.
        let member = caller("bob@acme", Some("acme"), Role::TenantMember);
        may_set_password(&member, &bob).unwrap();
        assert!(matches!(
            may_set_password(&member, &acme_admin),
            Err(ApiError::PermissionDenied(_))
        ));
        assert!(matches!(
            may_set_password(&member, &eve),
            Err(ApiError::NotFound { .. })
        ));
        let operator = caller("ops", None, Role::SiteOperator);
        may_set_password(&operator, &ops).unwrap();
        for u in [&bob, &eve] {
            assert!(matches!(
                may_set_password(&operator, u),
                Err(ApiError::PermissionDenied(_))
            ));
        }
        let viewer = caller("auditor", None, Role::Viewer);
        assert!(matches!(
            may_set_password(&viewer, &ops),
            Err(ApiError::PermissionDenied(_))
        ));
        // Every role reaches the RPC itself; the scoping above is the service's.
        for role in [
            Role::ProviderAdmin,
            Role::SiteOperator,
            Role::TenantAdmin,
            Role::TenantMember,
            Role::Viewer,
        ] {
            for scoped in [false, true] {
                if scoped && matches!(role, Role::ProviderAdmin | Role::SiteOperator) {
                    continue;
                }
                assert!(allowed(role, scoped, Rpc::SetUserPassword), "{role}");
            }
        }
        assert!(Rpc::SetUserPassword.mutating());
    }

    #[test]
    fn the_login_token_id_is_valid_and_never_an_api_token_s() {
        // API tokens are `tok-` and 12 hex digits (accounts::fresh_id).
        let id = TokenId::parse(PASSWORD_LOGIN_TOKEN).unwrap();
        assert!(!id.as_str().starts_with("tok-"), "{id}");
    }

    #[test]
    fn login_names_that_are_no_user_id_share_one_bucket() {
        assert_eq!(
            login_key(Some(&UserId::parse("bob@acme").unwrap())),
            "user:bob@acme"
        );
        assert_eq!(login_key(None), "user:?");
    }
}
