//! Operator actions on central's store while central is stopped (sled allows one process at a
//! time): bootstrap tokens and site revocation, as run by `meridian-central token ...` and
//! `meridian-central site revoke`. A running central picks up the result at its next start
//! (revocations also through its watch when written by the running process's API).

use std::sync::Arc;
use std::time::Duration;

use meridian_common::ids::{SiteId, TokenId};
use meridian_proto::v1 as proto;

use crate::audit::Auditor;
use crate::ca::{CaError, CertificateAuthority};
use crate::clock::now;
use crate::config::CentralConfig;
use crate::sites::Sites;
use crate::tokens::{NewToken, TokenError, Tokens};
use meridian_store::Tables;
use meridian_store::tables::TableError;
use meridian_store::{SledStore, Store, StoreError};

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot open central's store (is central running? stop it first)")]
    Store(#[from] StoreError),
    #[error("cannot load the certificate authority")]
    Ca(#[from] CaError),
    #[error("token operation failed")]
    Token(#[from] TokenError),
    #[error("store operation failed")]
    Table(#[from] TableError),
}

/// Central's state opened for an operator action.
#[derive(Debug)]
pub struct Offline {
    pub config: CentralConfig,
    pub tables: Tables,
    pub ca: Arc<CertificateAuthority>,
    pub tokens: Tokens,
    pub sites: Sites,
}

impl Offline {
    /// Opens the store and the CA (creating the CA if missing) of `config`.
    pub fn open(config: CentralConfig) -> Result<Self, OperatorError> {
        std::fs::create_dir_all(&config.data_dir).map_err(StoreError::Backend)?;
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.store_dir(), &config.store)?);
        let tables = Tables::new(store);
        let ca = Arc::new(CertificateAuthority::load_or_create(
            &config.ca_dir(),
            now(),
        )?);
        let audit = Auditor::new(tables.clone());
        let tokens = Tokens::new(tables.clone(), audit.clone());
        let sites = Sites::new(tables.clone(), audit);
        Ok(Offline {
            config,
            tables,
            ca,
            tokens,
            sites,
        })
    }

    /// Creates a token; returns it with its bootstrap file text.
    pub async fn create_token(
        &self,
        site: &SiteId,
        ttl: Option<Duration>,
        addresses: Vec<String>,
        actor: &str,
    ) -> Result<(NewToken, String), OperatorError> {
        let ttl = ttl.unwrap_or(Duration::from_secs(self.config.channel.token_ttl_s));
        let token = self.tokens.create(site, ttl, now(), actor).await?;
        let addresses = if addresses.is_empty() {
            self.config.channel.advertised(self.config.channel.listen)
        } else {
            addresses
        };
        let file = token
            .bootstrap_file(addresses, self.ca.fingerprint())
            .render();
        Ok((token, file))
    }

    /// Every token (no secrets).
    pub async fn list_tokens(
        &self,
        site: Option<&SiteId>,
    ) -> Result<Vec<proto::BootstrapToken>, OperatorError> {
        Ok(self.tokens.list(site).await?)
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, id: &TokenId, actor: &str) -> Result<(), OperatorError> {
        Ok(self.tokens.revoke(id, now(), actor).await?)
    }

    /// Revokes a site's certificates.
    pub async fn revoke_site(&self, site: &SiteId, actor: &str) -> Result<(), OperatorError> {
        Ok(self.sites.revoke(site, actor, now()).await?)
    }
}
