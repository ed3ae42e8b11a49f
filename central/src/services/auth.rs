//! API-token authentication, with a small cache in front of the token table.
//!
//! A caller presents a secret (over gRPC, in `authorization: Bearer {secret}`). The secret
//! names its token; the token's
//! stored hash must match the secret's (compared in constant time), and the token must be
//! neither expired nor revoked. Verified tokens are cached for [`CACHE_TTL`]; revocations made
//! through this API drop the entry at once, so the TTL only bounds changes made behind the
//! API's back.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use meridian_common::ids::{TenantId, Timestamp, TokenId, UserId};
use meridian_proto::v1 as proto;

use super::access::{Caller, Role};
use super::error::ApiError;
use crate::accounts::token_id_of;
use crate::tokens::hash_secret;
use meridian_store::Tables;
use meridian_store::tables::KeyPath;

/// How long a verified token is trusted without re-reading it.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most cached tokens; the cache is emptied when full (it refills from the store).
const CACHE_MAX: usize = 100_000;

#[derive(Debug, Clone)]
struct Cached {
    hash: Vec<u8>,
    caller: Caller,
    expires_at: i64,
    loaded: Instant,
}

/// Authenticates requests.
#[derive(Debug)]
pub struct Authenticator {
    tables: Tables,
    cache: RwLock<HashMap<TokenId, Cached>>,
}

pub(crate) const UNAUTHENTICATED: &str = "missing or invalid credentials: send `authorization: Bearer <token>` \
     with an API token (create one with `meridian token create`)";

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// An authenticator over `tables`.
    pub fn new(tables: Tables) -> Self {
        Authenticator {
            tables,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The caller holding API token `secret`, at `now`.
    pub async fn authenticate(&self, secret: &str, now: Timestamp) -> Result<Caller, ApiError> {
        let id =
            token_id_of(secret).ok_or_else(|| ApiError::Unauthenticated(UNAUTHENTICATED.into()))?;
        let hash = hash_secret(secret);
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .filter(|c| c.loaded.elapsed() < CACHE_TTL)
            .cloned();
        let entry = match cached {
            Some(c) => c,
            None => {
                let entry = self.load(&id).await?;
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(id.clone(), entry.clone());
                entry
            }
        };
        if !equal(&entry.hash, &hash) {
            return Err(ApiError::Unauthenticated(UNAUTHENTICATED.into()));
        }
        if entry.expires_at <= now.as_millis() {
            return Err(ApiError::Unauthenticated(format!(
                "API token {id} has expired; create a new one with `meridian token create`"
            )));
        }
        Ok(entry.caller)
    }

    async fn load(&self, id: &TokenId) -> Result<Cached, ApiError> {
        let record = self
            .tables
            .api_tokens()
            .get(&KeyPath(id.to_string()))
            .await?
            .map(|v| v.record);
        let unknown = || ApiError::Unauthenticated(UNAUTHENTICATED.into());
        let record = record.ok_or_else(unknown)?;
        let token = record.token.clone().ok_or_else(unknown)?;
        if token.revoked {
            // Same answer as an unknown token: a stolen revoked token learns nothing.
            return Err(unknown());
        }
        let role = Role::try_from(token.role).map_err(|_| unknown())?;
        let user = UserId::parse(&token.user).map_err(|_| unknown())?;
        let tenant = if record.tenant.is_empty() {
            None
        } else {
            Some(TenantId::parse(&record.tenant).map_err(|_| unknown())?)
        };
        Ok(Cached {
            hash: record.secret_hash,
            caller: Caller {
                user,
                token: id.clone(),
                tenant,
                role,
            },
            expires_at: token.expires_at,
            loaded: Instant::now(),
        })
    }

    /// Forgets a token (after revoking it).
    pub fn forget(&self, id: &TokenId) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Forgets every token of a user (after deleting it).
    pub fn forget_user(&self, user: &UserId) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| &c.caller.user != user);
    }
}

/// The token record's public part, or a store error.
pub fn public(record: &proto::ApiTokenRecord) -> proto::ApiToken {
    record.token.clone().unwrap_or_default()
}
