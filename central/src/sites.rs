//! What central does to a site as a whole outside its session: revoking its certificates.
//! Used by the services and the offline `meridian-central site revoke`, so neither reaches
//! into the channel. (The channel's view of a site is `meridian_store::schema::site_channel`.)

use meridian_common::ids::{SiteId, Timestamp};
use meridian_store::schema::{self, SiteAuth, SiteRecord};
use meridian_store::tables::TableError;
use meridian_store::{Expect, StoreError, Tables};

use crate::audit::{AuditEntry, Auditor, Outcome};

/// Site-wide actions over central's tables.
#[derive(Debug, Clone)]
pub struct Sites {
    tables: Tables,
    audit: Auditor,
}

impl Sites {
    /// Site actions over `tables`, audited to `audit`.
    pub fn new(tables: Tables, audit: Auditor) -> Self {
        Sites { tables, audit }
    }

    /// Revokes a site: its current certificates are refused at the handshake from now on (a
    /// running central also closes its session within a second), until it enrols again with
    /// a new bootstrap token. Works on a running central's store or offline.
    pub async fn revoke(
        &self,
        site: &SiteId,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), TableError> {
        let store = self.tables.store();
        let key = schema::auth_key(site);
        loop {
            let current = schema::read_site_record::<SiteAuth>(store.as_ref(), &key).await?;
            let (auth, expect) = match &current {
                Some((a, rev)) => (*a, Expect::ModRevision(*rev)),
                None => (SiteAuth::default(), Expect::Absent),
            };
            let next = SiteAuth {
                epoch: auth.epoch + 1,
                revoked: true,
            };
            match store.put(&key, &next.encode(), expect).await {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.audit
            .append(
                AuditEntry {
                    actor,
                    action: "sites/Revoke",
                    object: &format!("site/{site}"),
                    outcome: Outcome::Success,
                    detail: "certificates refused until the site enrols with a new token",
                },
                now,
            )
            .await?;
        Ok(())
    }
}
