//! Recording use from the sites' reports, in the ingest transaction that stores them.
//!
//! - `AllocationState` applied starts a span at the report's observation time (unless one is
//!   open already: an agent that restarted reports applied again), holding what central
//!   assigned: whole GPUs by model, a MIG slice by model and profile (from the site's intent,
//!   or the workload's placement once the intent moved on, and the server's inventory), CPU
//!   cores (the server's for bare metal, the workload's otherwise). Ended or failed closes it.
//! - `Volume` ready with a size starts a span of that many GiB (a resize closes it and starts
//!   another); size 0 (deleted) closes it.
//! - `Egress` (the bytes each tenant sent out of the site's WAN in one hour so far) replaces
//!   the tenant's record of that hour (`usage/egress/`).
//! - Every report raises the site's mark, the newest observation time stored
//!   ([`SiteChannel::reports_through_ms`](meridian_store::schema::SiteChannel)).
//!
//! A report's time is never taken as earlier than the site's mark before it: reports arrive
//! in sequence order, so this only matters for a site clock set back; it keeps a final period
//! (one the mark has passed) from ever changing.

use std::collections::BTreeMap;

use meridian_common::ids::{ServerId, SiteId, WorkloadId};
use meridian_common::model::{
    AllocationMode, AllocationStatus, GpuSlot, ReportBody, Server, SiteReport,
};
use meridian_proto::v1 as proto;
use meridian_store::Op;
use meridian_store::Tables;
use meridian_store::tables::{KeyPath, Table, TableError};

use super::model::{Quantity, Resource, Span};

/// The writes that the spans touched by `reports` (a batch in sequence order) call for, and
/// the site's new mark (`mark` is its mark before the batch).
pub(crate) async fn ops<'a>(
    tables: &Tables,
    site: &SiteId,
    mark: i64,
    reports: impl Iterator<Item = &'a SiteReport>,
) -> Result<(Vec<Op>, i64), TableError> {
    let mut book = Book {
        tables,
        site,
        open: BTreeMap::new(),
        changed: BTreeMap::new(),
    };
    let mut mark = mark;
    let mut egress: BTreeMap<(String, i64), proto::UsageEgressRecord> = BTreeMap::new();
    for report in reports {
        let at = report.at.as_millis().max(mark);
        mark = at;
        match &report.body {
            ReportBody::AllocationState {
                workload,
                server,
                state,
            } => {
                let subject = format!("alloc/{workload}/{server}");
                match state {
                    AllocationStatus::Applied => {
                        if book.open_span(&subject).await?.is_none() {
                            let span = allocation_span(tables, site, workload, server, at).await?;
                            book.start(span);
                        }
                    }
                    AllocationStatus::Ended | AllocationStatus::Failed { .. } => {
                        book.stop(&subject, at).await?;
                    }
                    AllocationStatus::Pending => {}
                }
            }
            ReportBody::Volume {
                tenant,
                name,
                size_mib,
                ready,
                ..
            } => {
                let subject = format!("volume/{tenant}/{name}");
                let gib = *size_mib as f64 / 1024.0;
                if *size_mib == 0 {
                    book.stop(&subject, at).await?;
                } else if *ready {
                    let same = book
                        .open_span(&subject)
                        .await?
                        .is_some_and(|s| s.quantities.first().is_some_and(|q| q.amount == gib));
                    if !same {
                        book.stop(&subject, at).await?;
                        book.start(Span {
                            site: site.to_string(),
                            tenant: tenant.to_string(),
                            workload: String::new(),
                            subject,
                            start_ms: at,
                            end_ms: None,
                            quantities: vec![Quantity {
                                resource: Resource::Storage,
                                detail: name.to_string(),
                                amount: gib,
                            }],
                        });
                    }
                }
            }
            ReportBody::Egress {
                period_start,
                tenants,
                ..
            } => {
                // The period's total so far: the newest report of a period replaces the record.
                for (tenant, bytes) in tenants {
                    egress.insert(
                        (tenant.to_string(), period_start.as_millis()),
                        proto::UsageEgressRecord {
                            site: site.to_string(),
                            tenant: tenant.to_string(),
                            period_start_ms: period_start.as_millis(),
                            bytes: *bytes,
                        },
                    );
                }
            }
            _ => {}
        }
    }
    let mut ops: Vec<Op> = egress
        .values()
        .map(Table::<proto::UsageEgressRecord>::put_op)
        .collect::<Result<_, _>>()?;
    let spans: Vec<Op> = book
        .changed
        .values()
        .map(|s| Table::<proto::UsageIntervalRecord>::put_op(&s.into()))
        .collect::<Result<_, _>>()?;
    ops.extend(spans);
    Ok((ops, mark))
}

/// The spans a batch touches: the open one per subject (from the store, or started in this
/// batch) and every span to write.
struct Book<'t> {
    tables: &'t Tables,
    site: &'t SiteId,
    /// Subject -> its open span's start (`None`: none open), once looked up.
    open: BTreeMap<String, Option<i64>>,
    /// (subject, start) -> the span as it is to be written.
    changed: BTreeMap<(String, i64), Span>,
}

impl Book<'_> {
    /// The subject's open span, if any.
    async fn open_span(&mut self, subject: &str) -> Result<Option<&Span>, TableError> {
        if !self.open.contains_key(subject) {
            let parent = KeyPath(format!("{}/{subject}", self.site));
            let stored = self
                .tables
                .usage_intervals()
                .list_all(Some(&parent), 100)
                .await?;
            let open = stored
                .into_iter()
                .map(Span::from)
                .filter(|s| s.end_ms.is_none())
                .max_by_key(|s| s.start_ms);
            let start = open.as_ref().map(|s| s.start_ms);
            if let Some(span) = open {
                self.changed
                    .entry((subject.to_owned(), span.start_ms))
                    .or_insert(span);
            }
            self.open.insert(subject.to_owned(), start);
        }
        Ok(match self.open.get(subject).copied().flatten() {
            Some(start) => self.changed.get(&(subject.to_owned(), start)),
            None => None,
        })
    }

    fn start(&mut self, span: Span) {
        self.open.insert(span.subject.clone(), Some(span.start_ms));
        self.changed
            .insert((span.subject.clone(), span.start_ms), span);
    }

    /// Closes the subject's open span at `at` (nothing when none is open).
    async fn stop(&mut self, subject: &str, at: i64) -> Result<(), TableError> {
        if self.open_span(subject).await?.is_none() {
            return Ok(());
        }
        if let Some(Some(start)) = self.open.insert(subject.to_owned(), None)
            && let Some(span) = self.changed.get_mut(&(subject.to_owned(), start))
        {
            span.end_ms = Some(at.max(span.start_ms));
        }
        Ok(())
    }
}

/// The span an applied allocation starts: what central assigned to it on that server.
async fn allocation_span(
    tables: &Tables,
    site: &SiteId,
    workload: &WorkloadId,
    server: &ServerId,
    at: i64,
) -> Result<Span, TableError> {
    let intent = tables.intents().get(site).await?.map(|v| v.record);
    let from_intent = intent.as_ref().and_then(|i| {
        i.allocations
            .iter()
            .find(|a| &a.workload == workload && &a.server == server)
            .map(|a| (a.tenant.clone(), a.slot.clone(), Some(a.mode)))
    });
    let owner = match &from_intent {
        Some((tenant, ..)) => Some(tenant.clone()),
        None => tables
            .workload_index()
            .get(workload)
            .await?
            .map(|v| v.record.tenant),
    };
    let spec = match &owner {
        Some(tenant) => tables
            .workloads()
            .get(&(tenant, workload))
            .await?
            .map(|v| v.record.spec),
        None => None,
    };
    let assignment = match (&from_intent, &owner) {
        (Some((_, slot, mode)), _) => Some((slot.clone(), *mode)),
        (None, Some(tenant)) => tables
            .placements()
            .get(&(tenant, workload))
            .await?
            .and_then(|p| {
                p.record
                    .assignments
                    .into_iter()
                    .find(|a| &a.site == site && &a.server == server)
                    .map(|a| (a.slot, None))
            }),
        (None, None) => None,
    };
    let hardware = tables
        .servers()
        .get(&(site, server))
        .await?
        .map(|v| v.record);
    let mut quantities = Vec::new();
    if let Some((slot, _)) = &assignment {
        quantities.extend(gpu_quantities(slot, hardware.as_ref()));
    }
    let mode = assignment.as_ref().and_then(|(_, m)| *m);
    let cores = match (mode, &hardware, &spec) {
        (Some(AllocationMode::BareMetal), Some(s), _) => s.cpu_cores,
        (_, _, Some(spec)) => spec.resources.cpu_cores,
        _ => 0,
    };
    if cores > 0 {
        quantities.push(Quantity {
            resource: Resource::CpuCore,
            detail: String::new(),
            amount: f64::from(cores),
        });
    }
    if owner.is_none() || assignment.is_none() {
        // A workload deleted while its site was cut off, or a site out of step with central.
        tracing::debug!(
            %site, %workload, %server,
            "an allocation the site applied is unknown to central; metered without what it holds"
        );
    }
    Ok(Span {
        site: site.to_string(),
        tenant: owner.map(|t| t.to_string()).unwrap_or_default(),
        workload: workload.to_string(),
        subject: format!("alloc/{workload}/{server}"),
        start_ms: at,
        end_ms: None,
        quantities,
    })
}

/// Whole GPUs by model, or one MIG slice by model and profile.
fn gpu_quantities(slot: &GpuSlot, server: Option<&Server>) -> Vec<Quantity> {
    let model = |index: u32| {
        server
            .and_then(|s| s.gpu(index))
            .map_or_else(|| "unknown".to_owned(), |g| g.model.to_string())
    };
    match slot {
        GpuSlot::None => Vec::new(),
        GpuSlot::WholeGpus { indices } => {
            let mut by_model: BTreeMap<String, f64> = BTreeMap::new();
            for &i in indices {
                *by_model.entry(model(i)).or_default() += 1.0;
            }
            by_model
                .into_iter()
                .map(|(detail, amount)| Quantity {
                    resource: Resource::Gpu,
                    detail,
                    amount,
                })
                .collect()
        }
        GpuSlot::Mig {
            gpu_index, profile, ..
        } => vec![Quantity {
            resource: Resource::MigSlice,
            detail: format!("{} {profile}", model(*gpu_index)),
            amount: 1.0,
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_common::ids::{Generation, Name, Sequence, TenantId, Timestamp};
    use meridian_common::model::SiteReport;
    use meridian_store::{Store, Txn};

    use super::*;

    fn report(seq: u64, at: i64, body: ReportBody) -> SiteReport {
        SiteReport {
            site: SiteId::parse("edge-1").unwrap(),
            sequence: Sequence::new(seq),
            generation: Generation::new(1),
            at: Timestamp::from_millis(at),
            body,
        }
    }

    fn alloc(state: AllocationStatus) -> ReportBody {
        ReportBody::AllocationState {
            workload: WorkloadId::parse("wl-000000000001").unwrap(),
            server: ServerId::parse("srv-1").unwrap(),
            state,
        }
    }

    fn volume(size_mib: u64) -> ReportBody {
        ReportBody::Volume {
            tenant: TenantId::parse("acme").unwrap(),
            name: Name::parse("weights").unwrap(),
            size_mib,
            ready: true,
            detail: String::new(),
        }
    }

    /// Runs a batch through [`ops`] and commits its writes; returns the new mark.
    async fn ingest(tables: &Tables, mark: i64, batch: &[SiteReport]) -> i64 {
        let site = SiteId::parse("edge-1").unwrap();
        let (ops, mark) = ops(tables, &site, mark, batch.iter()).await.unwrap();
        let mut txn = Txn::new();
        for op in ops {
            txn = txn.then(op);
        }
        tables.store().txn(txn).await.unwrap();
        mark
    }

    #[tokio::test]
    async fn spans_open_and_close_across_batches_and_egress_keeps_the_newest_total() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(meridian_store::SledStore::open(dir.path(), &Default::default()).unwrap());
        let tables = Tables::new(store);
        // Applied twice (an agent that restarted): the first start stands. A volume of 2 GiB.
        let mark = ingest(
            &tables,
            0,
            &[
                report(1, 1_000, alloc(AllocationStatus::Applied)),
                report(2, 2_000, volume(2048)),
                report(3, 3_000, alloc(AllocationStatus::Applied)),
            ],
        )
        .await;
        assert_eq!(mark, 3_000);
        // A report from a clock set back counts at the mark; the volume grows to 4 GiB.
        let mark = ingest(
            &tables,
            mark,
            &[
                report(4, 2_500, alloc(AllocationStatus::Ended)),
                report(5, 5_000, volume(4096)),
                report(
                    6,
                    6_000,
                    ReportBody::Egress {
                        period_start: Timestamp::from_millis(3_600_000),
                        period_ms: 3_600_000,
                        tenants: vec![(TenantId::parse("acme").unwrap(), 10)],
                    },
                ),
                report(
                    7,
                    7_000,
                    ReportBody::Egress {
                        period_start: Timestamp::from_millis(3_600_000),
                        period_ms: 3_600_000,
                        tenants: vec![(TenantId::parse("acme").unwrap(), 25)],
                    },
                ),
            ],
        )
        .await;
        assert_eq!(mark, 7_000);
        let spans: Vec<Span> = tables
            .usage_intervals()
            .list_all(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(Span::from)
            .collect();
        let got: Vec<(&str, i64, Option<i64>)> = spans
            .iter()
            .map(|s| (s.subject.as_str(), s.start_ms, s.end_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("alloc/wl-000000000001/srv-1", 1_000, Some(3_000)),
                ("volume/acme/weights", 2_000, Some(5_000)),
                ("volume/acme/weights", 5_000, None),
            ]
        );
        assert_eq!(spans[2].quantities[0].amount, 4.0);
        // Unknown to central: no tenant, no GPUs, but the time is kept.
        assert_eq!(spans[0].tenant, "");
        let egress = tables.usage_egress().list_all(None, 100).await.unwrap();
        assert_eq!(egress.len(), 1);
        assert_eq!(
            (egress[0].bytes, egress[0].period_start_ms),
            (25, 3_600_000)
        );
        // Deleted: the volume's span closes.
        ingest(&tables, mark, &[report(8, 8_000, volume(0))]).await;
        let open = tables
            .usage_intervals()
            .list_all(None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.end_ms == 0)
            .count();
        assert_eq!(open, 0);
    }
}
