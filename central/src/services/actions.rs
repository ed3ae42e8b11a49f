//! Operators' server actions: drain and undrain (central's own: the planner places nothing new
//! on a drained server) and reboot, power-cycle and reprovision (carried out by the site's
//! agent at most once per request, see `docs/reconciler.md`).
//!
//! Every request gets a fleet-wide request ID from one counter, in the same transaction as its
//! record (`actions/<site>/<request>`), so two operators never share one. An agent action
//! stays in the site's intent until the agent reports it done or failed
//! ([`crate::channel::ingest`] updates the record and marks the site for publishing).

use meridian_common::ids::{ServerId, SiteId, TenantId, WorkloadId};
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use meridian_store::schema::{ACTION_COUNTER_KEY, site_dirty_marker};
use meridian_store::tables::{Record, Table, TableError};
use meridian_store::{Compare, Op, Txn};

use super::error::ApiError;
use super::{Call, Services};

/// How many of a server's recent requests `GetServer` shows.
const RECENT_ACTIONS: usize = 10;

impl Services {
    /// Asks for an action on a server (see the module docs). Audited; provider roles only.
    pub async fn request_server_action(
        &self,
        call: Call<'_>,
        site: &str,
        server: &str,
        op: i32,
    ) -> Result<proto::ServerActionRecord, ApiError> {
        let object = format!("server/{site}/{server}");
        let actor = call.caller().actor();
        let result = self.request_action(site, server, op, actor).await;
        call.finish(&object, result).await
    }

    async fn request_action(
        &self,
        site: &str,
        server: &str,
        op: i32,
        actor: String,
    ) -> Result<proto::ServerActionRecord, ApiError> {
        let site_id: SiteId =
            SiteId::parse(site).map_err(|e| ApiError::invalid("site", e.to_string()))?;
        let server_id: ServerId =
            ServerId::parse(server).map_err(|e| ApiError::invalid("server", e.to_string()))?;
        let op = match proto::ServerOp::try_from(op) {
            Ok(proto::ServerOp::Unspecified) | Err(_) => {
                return Err(ApiError::invalid(
                    "op",
                    "give one of drain, undrain, reboot, power-cycle, reprovision",
                ));
            }
            Ok(op) => op,
        };
        let site_record = self
            .tables
            .sites()
            .get(&site_id)
            .await?
            .ok_or_else(|| ApiError::not_found("site", &site_id))?
            .record;
        if self
            .tables
            .servers()
            .get(&(&site_id, &server_id))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(
                "server",
                format!("{site_id}/{server_id}"),
            ));
        }
        let drain_key = (&site_id, &server_id);
        let drain = self.tables.drains().get(&drain_key).await?;
        let agent_op = !matches!(op, proto::ServerOp::Drain | proto::ServerOp::Undrain);
        if agent_op && site_record.state == SiteState::Decommissioned {
            return Err(ApiError::FailedPrecondition(format!(
                "site {site_id} is decommissioned; its agent carries out nothing"
            )));
        }
        match (op, &drain) {
            (proto::ServerOp::Drain, Some(d)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "server {server_id} is drained already (request {})",
                    d.record.request
                )));
            }
            (proto::ServerOp::Undrain, None) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "server {server_id} is not drained"
                )));
            }
            _ => {}
        }
        let store = self.tables.store();
        let counter = store
            .get(ACTION_COUNTER_KEY)
            .await
            .map_err(TableError::from)?;
        let last = counter.as_ref().map_or(0, |kv| {
            kv.value
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        });
        let request = last + 1;
        let now = self.clock.now().as_millis();
        let central_done = |detail: &str| (proto::ActionPhase::Done as i32, detail.to_owned(), now);
        let (phase, detail, finished_at) = match op {
            proto::ServerOp::Undrain => central_done("takes placements again"),
            proto::ServerOp::Drain => (
                proto::ActionPhase::Running as i32,
                "no new placement lands here; done when its allocations end or move".to_owned(),
                0,
            ),
            _ => (
                proto::ActionPhase::Unspecified as i32,
                "waiting for the site's agent".to_owned(),
                0,
            ),
        };
        let record = proto::ServerActionRecord {
            request,
            site: site_id.to_string(),
            server: server_id.to_string(),
            op: op as i32,
            requested_by: actor,
            requested_at: now,
            phase,
            detail,
            finished_at,
        };
        let (mut compares, mut ops) = Table::<proto::ServerActionRecord>::create_ops(&record)?;
        compares.push(match &counter {
            Some(kv) => Compare::ModRevision(ACTION_COUNTER_KEY.to_vec(), kv.mod_revision),
            None => Compare::Absent(ACTION_COUNTER_KEY.to_vec()),
        });
        ops.push(Op::Put {
            key: ACTION_COUNTER_KEY.to_vec(),
            value: request.to_be_bytes().to_vec(),
        });
        match op {
            proto::ServerOp::Drain => {
                let d = proto::ServerDrainRecord {
                    site: site_id.to_string(),
                    server: server_id.to_string(),
                    request,
                };
                let (c, o) = Table::<proto::ServerDrainRecord>::create_ops(&d)?;
                compares.extend(c);
                ops.extend(o);
            }
            proto::ServerOp::Undrain => {
                let d = drain.expect("checked above");
                let key = Table::<proto::ServerDrainRecord>::store_key(&d.record.key_path());
                compares.push(Compare::ModRevision(key, d.revision));
                ops.extend(Table::<proto::ServerDrainRecord>::delete_ops(
                    &d.record.key_path(),
                ));
            }
            _ => ops.push(site_dirty_marker(&site_id)),
        }
        let mut txn = Txn::new();
        for c in compares {
            txn = txn.when(c);
        }
        for o in ops {
            txn = txn.then(o);
        }
        let response = store.txn(txn).await.map_err(TableError::from)?;
        if !response.succeeded {
            return Err(ApiError::Conflict(format!(
                "server {server_id} or the request counter"
            )));
        }
        if agent_op {
            self.lifecycle.wake();
        } else {
            self.lifecycle.fleet_changed();
        }
        self.with_drain_progress(record).await
    }

    /// A site's action requests (of one server, when named), newest first.
    pub async fn list_server_actions(
        &self,
        _call: Call<'_>,
        site: &str,
        server: &str,
    ) -> Result<Vec<proto::ServerActionRecord>, ApiError> {
        let site_id: SiteId =
            SiteId::parse(site).map_err(|e| ApiError::invalid("site", e.to_string()))?;
        if self.tables.sites().get(&site_id).await?.is_none() {
            return Err(ApiError::not_found("site", &site_id));
        }
        let mut out = Vec::new();
        for r in self
            .tables
            .actions()
            .list_all(Some(&site_id), 1000)
            .await?
            .into_iter()
            .rev()
        {
            if server.is_empty() || r.server == server {
                out.push(self.with_drain_progress(r).await?);
            }
        }
        Ok(out)
    }

    /// A server's drain and its recent requests (for `GetServer`).
    pub async fn server_actions_and_drain(
        &self,
        site: &SiteId,
        server: &ServerId,
    ) -> Result<(proto::DrainStatus, Vec<proto::ServerActionRecord>), ApiError> {
        let drain = match self.tables.drains().get(&(site, server)).await? {
            Some(d) => proto::DrainStatus {
                drained: true,
                request: d.record.request,
                remaining: self
                    .holding(site, server)
                    .await?
                    .into_iter()
                    .map(|(t, w)| format!("{t}/{w}"))
                    .collect(),
            },
            None => proto::DrainStatus::default(),
        };
        let mut recent = Vec::new();
        for r in self
            .tables
            .actions()
            .list_all(Some(site), 1000)
            .await?
            .into_iter()
            .rev()
            .filter(|r| r.server == server.as_str())
            .take(RECENT_ACTIONS)
        {
            recent.push(self.with_drain_progress(r).await?);
        }
        Ok((drain, recent))
    }

    /// The workloads whose live placements hold `server`.
    async fn holding(
        &self,
        site: &SiteId,
        server: &ServerId,
    ) -> Result<Vec<(TenantId, WorkloadId)>, ApiError> {
        Ok(self
            .tables
            .placements()
            .list_all(None, 1000)
            .await?
            .into_iter()
            .filter(|p| {
                p.assignments
                    .iter()
                    .any(|a| &a.site == site && &a.server == server)
            })
            .map(|p| (p.tenant, p.workload))
            .collect())
    }

    /// A drain's record with its progress now: running while allocations hold the server,
    /// done once none does (or once it was undrained).
    async fn with_drain_progress(
        &self,
        mut r: proto::ServerActionRecord,
    ) -> Result<proto::ServerActionRecord, ApiError> {
        if r.op != proto::ServerOp::Drain as i32 || r.finished_at != 0 {
            return Ok(r);
        }
        let (Ok(site), Ok(server)) = (SiteId::parse(&r.site), ServerId::parse(&r.server)) else {
            return Ok(r);
        };
        let still = self.tables.drains().get(&(&site, &server)).await?;
        if still.is_none_or(|d| d.record.request != r.request) {
            r.phase = proto::ActionPhase::Done as i32;
            r.detail = "undrained".into();
            return Ok(r);
        }
        let holding = self.holding(&site, &server).await?;
        if holding.is_empty() {
            r.phase = proto::ActionPhase::Done as i32;
            r.detail = "drained: no allocation holds the server".into();
        } else {
            r.phase = proto::ActionPhase::Running as i32;
            r.detail = format!(
                "draining: {} allocation{} left ({})",
                holding.len(),
                if holding.len() == 1 { "" } else { "s" },
                holding
                    .iter()
                    .map(|(t, w)| format!("{t}/{w}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(r)
    }
}
