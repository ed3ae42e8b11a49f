//! Bootstrap tokens: one-time secrets an operator creates for a site, carried to the site in
//! its bootstrap file, and spent by the agent's enrolment.
//!
//! - The secret is `{token id}.{64 hex digits of randomness}`; only its SHA-256 is stored
//!   (`tokens/bootstrap/{id}`), so a copy of the store cannot enrol anything.
//! - A token is single-use, expires, and can be revoked; it is bound to one site.
//! - Every create, revoke and refused use writes an audit record.

use std::time::Duration;

use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::ids::{SiteId, Timestamp, TokenId};
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use sha2::{Digest, Sha256};

use crate::audit::{AuditEntry, Auditor, Outcome};
use meridian_store::Tables;
use meridian_store::tables::{TableError, Versioned};

/// Default lifetime of a bootstrap token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest lifetime a token may be given.
pub const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The site does not exist.
    #[error("site {0} does not exist; create it first")]
    NoSuchSite(SiteId),
    /// The site is decommissioned.
    #[error("site {0} is decommissioned and cannot enrol")]
    Decommissioned(SiteId),
    /// No token with that id.
    #[error("token {0} does not exist")]
    NoSuchToken(TokenId),
    /// The lifetime is zero or too long.
    #[error("token lifetime must be between 1 s and {} days", MAX_TTL.as_secs() / 86400)]
    BadTtl,
    /// The store failed.
    #[error("store error")]
    Table(#[from] TableError),
}

/// Why a token was refused at enrolment. Each maps to an `EnrollErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No such token, or the secret does not match.
    #[error("bootstrap token is unknown; ask the operator for a new bootstrap file")]
    Unknown,
    /// Past its expiry.
    #[error("bootstrap token has expired; ask the operator for a new bootstrap file")]
    Expired,
    /// Already used (a replay).
    #[error("bootstrap token was already used; ask the operator for a new bootstrap file")]
    Used,
    /// Revoked by an operator.
    #[error("bootstrap token was revoked; ask the operator for a new bootstrap file")]
    Revoked,
    /// Issued for another site.
    #[error("bootstrap token belongs to another site")]
    WrongSite,
}

impl TokenRefusal {
    /// The wire code.
    pub fn code(self) -> proto::EnrollErrorCode {
        match self {
            TokenRefusal::Unknown => proto::EnrollErrorCode::TokenUnknown,
            TokenRefusal::Expired => proto::EnrollErrorCode::TokenExpired,
            TokenRefusal::Used => proto::EnrollErrorCode::TokenUsed,
            TokenRefusal::Revoked => proto::EnrollErrorCode::TokenRevoked,
            TokenRefusal::WrongSite => proto::EnrollErrorCode::WrongSite,
        }
    }
}

/// A freshly created token: the record and the secret (shown once).
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The stored token (without secret).
    pub token: proto::BootstrapToken,
    /// The secret.
    pub secret: String,
}

impl NewToken {
    /// The bootstrap file for this token.
    pub fn bootstrap_file(
        &self,
        central_addresses: Vec<String>,
        ca_fingerprint: [u8; 32],
    ) -> BootstrapFile {
        BootstrapFile {
            central_addresses,
            ca_fingerprint,
            site: SiteId::parse(&self.token.site).expect("created from a SiteId"),
            token: self.secret.clone(),
            expires_at: Timestamp::from_millis(self.token.expires_at),
        }
    }
}

/// SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The token id part of a secret.
fn id_of(secret: &str) -> Option<TokenId> {
    let (id, rest) = secret.split_once('.')?;
    if rest.len() != 64 {
        return None;
    }
    TokenId::parse(id).ok()
}

/// Bootstrap token operations over central's tables.
#[derive(Debug, Clone)]
pub struct Tokens {
    tables: Tables,
    audit: Auditor,
}

impl Tokens {
    /// Token operations over `tables`, auditing through `audit`.
    pub fn new(tables: Tables, audit: Auditor) -> Self {
        Tokens { tables, audit }
    }

    /// Creates a token for `site`, valid for `ttl` from `now`.
    pub async fn create(
        &self,
        site: &SiteId,
        ttl: Duration,
        now: Timestamp,
        actor: &str,
    ) -> Result<NewToken, TokenError> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(TokenError::BadTtl);
        }
        let record = self
            .tables
            .sites()
            .get(site)
            .await?
            .ok_or_else(|| TokenError::NoSuchSite(site.clone()))?;
        if record.record.state == SiteState::Decommissioned {
            return Err(TokenError::Decommissioned(site.clone()));
        }
        let id_bytes: [u8; 8] = rand::random();
        let id = format!("btk-{}", hex::encode(id_bytes));
        let secret_bytes: [u8; 32] = rand::random();
        let secret = format!("{id}.{}", hex::encode(secret_bytes));
        let token = proto::BootstrapToken {
            id: id.clone(),
            site: site.as_str().to_owned(),
            created_at: now.as_millis(),
            expires_at: now
                .saturating_add_millis(ttl.as_millis() as i64)
                .as_millis(),
            used_at: 0,
            revoked: false,
            created_by: actor.to_owned(),
        };
        let stored = proto::BootstrapTokenRecord {
            token: Some(token.clone()),
            secret_hash: hash_secret(&secret),
        };
        self.tables.bootstrap_tokens().create(&stored).await?;
        self.audit
            .append(
                AuditEntry {
                    actor,
                    action: "tokens/Create",
                    object: &format!("token/{id}"),
                    outcome: Outcome::Success,
                    detail: &format!("site {site}"),
                },
                now,
            )
            .await?;
        Ok(NewToken { token, secret })
    }

    /// Every token (never secrets), optionally only those of one site.
    pub async fn list(
        &self,
        site: Option<&SiteId>,
    ) -> Result<Vec<proto::BootstrapToken>, TokenError> {
        let all = crate::audit::list_records::<proto::BootstrapTokenRecord>(
            &self.tables,
            "tokens/bootstrap/",
        )
        .await?;
        Ok(all
            .into_iter()
            .filter_map(|r| r.token)
            .filter(|t| site.is_none_or(|s| t.site == s.as_str()))
            .collect())
    }

    /// Revokes a token; revoking a revoked token is a no-op.
    pub async fn revoke(
        &self,
        id: &TokenId,
        now: Timestamp,
        actor: &str,
    ) -> Result<(), TokenError> {
        loop {
            let current = self
                .tables
                .bootstrap_tokens()
                .get(id)
                .await?
                .ok_or_else(|| TokenError::NoSuchToken(id.clone()))?;
            let mut record = current.record.clone();
            let token = record
                .token
                .as_mut()
                .expect("stored tokens have their token");
            if token.revoked {
                return Ok(());
            }
            token.revoked = true;
            match self
                .tables
                .bootstrap_tokens()
                .update(&record, current.revision)
                .await
            {
                Ok(_) => break,
                Err(TableError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.audit
            .append(
                AuditEntry {
                    actor,
                    action: "tokens/Revoke",
                    object: &format!("token/{id}"),
                    outcome: Outcome::Success,
                    detail: "",
                },
                now,
            )
            .await?;
        Ok(())
    }

    /// Checks a presented secret for `site` at `now`; on success returns the stored record
    /// (to be marked used in the enrolment's transaction). Does not write.
    pub async fn check(
        &self,
        site: &SiteId,
        secret: &str,
        now: Timestamp,
    ) -> Result<Result<Versioned<proto::BootstrapTokenRecord>, TokenRefusal>, TokenError> {
        let Some(id) = id_of(secret) else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let Some(found) = self.tables.bootstrap_tokens().get(&id).await? else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let presented = hash_secret(secret);
        // Both are SHA-256 digests of secrets; comparing digests leaks nothing useful.
        if found.record.secret_hash != presented {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let Some(token) = found.record.token.as_ref() else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let refusal = if token.site != site.as_str() {
            Some(TokenRefusal::WrongSite)
        } else if token.revoked {
            Some(TokenRefusal::Revoked)
        } else if token.used_at != 0 {
            Some(TokenRefusal::Used)
        } else if now.as_millis() >= token.expires_at {
            Some(TokenRefusal::Expired)
        } else {
            None
        };
        Ok(match refusal {
            Some(r) => Err(r),
            None => Ok(found),
        })
    }

    /// The audit log.
    pub fn auditor(&self) -> &Auditor {
        &self.audit
    }
}

/// The record marked as used at `now`.
pub fn mark_used(
    record: &proto::BootstrapTokenRecord,
    now: Timestamp,
) -> proto::BootstrapTokenRecord {
    let mut r = record.clone();
    if let Some(t) = r.token.as_mut() {
        t.used_at = now.as_millis().max(1);
    }
    r
}
