//! The publish step: load what the compiler needs, run the pure compiler's
//! [`plan`](meridian_plan::compiler::plan), write the new
//! network claims, the changed intents and the releases, each fenced by compare-and-swap.
//!
//! Writing an intent to `intents/` *is* publishing it: the distributor watches that prefix.
//!
//! # Order of writes, and why
//!
//! 1. New claims (with an "absent" compare) and tenant records whose network was just
//!    allocated (with a compare on the revision read), a tenant's record and its claims in one
//!    transaction. Nothing is published that is not claimed first.
//! 2. Changed intents, each with a compare on the previous intent's revision (or "absent" for
//!    a site's first), so two publishers cannot interleave: the second one's compare fails.
//! 3. Releases (deletes of claims with a compare on their revision), only after the intents
//!    that stopped using them are stored, so a value is never free while a stored intent
//!    still uses it.
//!
//! Each phase is packed into transactions of at most [`MAX_TXN_OPS`] compares and writes. A
//! failed compare anywhere restarts the whole run from a fresh read (up to
//! [`Publisher::max_attempts`] times); since planning is deterministic, whatever an earlier
//! attempt already wrote is then simply unchanged. A crash between phases leaves at most unused
//! claims (phase 1) or unreleased ones (phase 2), which the next full publish releases.
//!
//! # Scopes
//!
//! [`Scope::Full`] reads every site, tenant, workload, placement, intent and claim: run it at
//! start-up and now and then (it repairs anything an incremental run could not see).
//! [`Scope::Changed`] reads only what the named changes can touch: for each changed workload
//! its placement and the sites of its old addresses; for each changed tenant its sites; then,
//! per site to compile, the site, its servers, its previous intent and its public claims, and
//! every other workload that intent names. Its cost grows with the size of the change, not of
//! the fleet.

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::config::ConfigError;
use meridian_common::ids::{Generation, SiteId, TenantId, Timestamp, WorkloadId};
use meridian_common::model::{SiteIntent, Tenant};

use meridian_plan::compiler::{CompileInput, HeldBack, PlacedWorkload, SiteInput, Unmet, plan};
use meridian_plan::networks::{Coverage, NetworkClaim, NetworkPools, NetworkState, ReleaseScope};
use meridian_store::Tables;
use meridian_store::tables::{Record, Table, TableError, TableKey, TableKeyDyn, Versioned};
use meridian_store::{Compare, MAX_TXN_OPS, Op, Revision, StoreError, Txn};

/// What a publish looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything: every site is recompiled, every claim reconciled.
    Full,
    /// Only what these changes can affect.
    Changed(Changes),
}

/// What changed since the last publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Workloads created, deleted, re-placed, or whose state or spec changed.
    pub workloads: BTreeSet<(TenantId, WorkloadId)>,
    /// Tenants created, deleted, or whose network changed.
    pub tenants: BTreeSet<TenantId>,
    /// Sites whose record or inventory changed.
    pub sites: BTreeSet<SiteId>,
}

impl Changes {
    /// One changed workload.
    pub fn workload(tenant: TenantId, workload: WorkloadId) -> Self {
        Changes {
            workloads: BTreeSet::from([(tenant, workload)]),
            ..Changes::default()
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Sites that got a new intent, with its generation, in site order.
    pub published: Vec<(SiteId, Generation)>,
    /// Sites compiled whose content did not change.
    pub unchanged: usize,
    /// Sites whose compiled intent was invalid (their previous intent stays).
    pub held_back: Vec<HeldBack>,
    /// Replicas left out of their intents, and why.
    pub unmet: Vec<Unmet>,
    /// Network claims created.
    pub claims_created: usize,
    /// Network claims released.
    pub claims_released: usize,
    /// Tenants whose network was allocated (their record was updated).
    pub tenants_allocated: Vec<TenantId>,
    /// Runs it took (more than one when another writer got in between).
    pub attempts: u32,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The network pools are misconfigured.
    #[error("the network pools are misconfigured")]
    Pools(#[source] ConfigError),
    /// A table could not be read or written (a corrupt record, a store failure).
    #[error("cannot read or write the tables")]
    Table(#[from] TableError),
    /// The store failed a transaction.
    #[error("a store transaction failed")]
    Store(#[from] StoreError),
    /// Other writers kept changing what this publish read.
    #[error(
        "gave up after {attempts} attempts because other writers kept changing the same records; publish again"
    )]
    Contended {
        /// Runs made.
        attempts: u32,
    },
}

/// Publishes with the given pools; see the module docs.
#[derive(Debug, Clone)]
pub struct Publisher {
    pools: NetworkPools,
    /// Runs before giving up with [`CompileError::Contended`].
    pub max_attempts: u32,
    /// Records per page when listing.
    pub page_size: usize,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            pools: NetworkPools::default(),
            max_attempts: 5,
            page_size: 1000,
        }
    }
}

/// A full publish with the default pools: `Publisher::default().publish(tables, &Scope::Full,
/// now)`.
pub async fn publish(tables: &Tables, now: Timestamp) -> Result<PublishSummary, CompileError> {
    Publisher::default()
        .publish(tables, &Scope::Full, now)
        .await
}

/// Everything one run read.
#[derive(Debug)]
struct Loaded {
    input: CompileInput,
    state: NetworkState,
    release: ReleaseScope,
    /// Claims as read, by key path, with their revisions.
    claims: BTreeMap<String, (NetworkClaim, Revision)>,
    tenant_revisions: BTreeMap<TenantId, Revision>,
    intent_revisions: BTreeMap<SiteId, Revision>,
}

/// A run's outcome.
enum Run {
    Done,
    Conflict,
}

impl Publisher {
    /// A publisher over `pools`, which are checked first.
    pub fn new(pools: NetworkPools) -> Result<Self, CompileError> {
        pools.check().map_err(CompileError::Pools)?;
        Ok(Publisher {
            pools,
            ..Publisher::default()
        })
    }

    /// The pools.
    pub fn pools(&self) -> &NetworkPools {
        &self.pools
    }

    /// Loads, plans and writes; retries from a fresh read when another writer got in between.
    pub async fn publish(
        &self,
        tables: &Tables,
        scope: &Scope,
        now: Timestamp,
    ) -> Result<PublishSummary, CompileError> {
        let mut summary = PublishSummary::default();
        for attempt in 1..=self.max_attempts.max(1) {
            summary.attempts = attempt;
            let mut loaded = match scope {
                Scope::Full => self.load_full(tables, now).await?,
                Scope::Changed(changes) => self.load_changed(tables, changes, now).await?,
            };
            let compiled = plan(
                &loaded.input,
                &mut loaded.state,
                &self.pools,
                &loaded.release,
            );
            summary.unchanged = compiled.unchanged.len();
            summary.held_back = compiled.held_back.clone();
            summary.unmet = compiled.unmet.clone();
            let run = self
                .write(tables, &loaded, &compiled.intents, &mut summary)
                .await?;
            if let Run::Done = run {
                summary.published.sort();
                return Ok(summary);
            }
            tracing::debug!(
                attempt,
                "publish conflicted with another writer; re-reading"
            );
        }
        Err(CompileError::Contended {
            attempts: summary.attempts,
        })
    }

    async fn load_full(&self, tables: &Tables, now: Timestamp) -> Result<Loaded, CompileError> {
        let page = self.page_size;
        let mut servers: BTreeMap<SiteId, Vec<_>> = BTreeMap::new();
        for s in tables.servers().list_all(None, page).await? {
            servers.entry(s.site.clone()).or_default().push(s);
        }
        let mut intents: BTreeMap<SiteId, Versioned<SiteIntent>> = BTreeMap::new();
        for v in list_versioned(&tables.intents(), None, page).await? {
            intents.insert(v.record.site.clone(), v);
        }
        let mut loaded = Loaded::new(
            now,
            NetworkState::new(Coverage::all()),
            ReleaseScope::Everything,
        );
        let mut pending = crate::server_actions::pending_by_site(tables).await?;
        for site in tables.sites().list_all(None, page).await? {
            let previous = intents.remove(&site.id);
            let actions = pending.remove(&site.id).unwrap_or_default();
            loaded.add_site(
                actions,
                site.clone(),
                servers.remove(&site.id).unwrap_or_default(),
                previous,
            );
        }
        for v in list_versioned(&tables.tenants(), None, page).await? {
            loaded.add_tenant(v);
        }
        let mut placements: BTreeMap<_, _> = tables
            .placements()
            .list_all(None, page)
            .await?
            .into_iter()
            .map(|p| ((p.tenant.clone(), p.workload.clone()), p))
            .collect();
        for w in tables.workloads().list_all(None, page).await? {
            let key = (w.tenant.clone(), w.id.clone());
            let placement = placements.remove(&key);
            loaded.input.workloads.insert(
                key,
                PlacedWorkload {
                    workload: w,
                    placement,
                },
            );
        }
        for v in list_versioned(&tables.table::<NetworkClaim>(), None, page).await? {
            loaded.add_claim(v);
        }
        Ok(loaded)
    }

    async fn load_changed(
        &self,
        tables: &Tables,
        changes: &Changes,
        now: Timestamp,
    ) -> Result<Loaded, CompileError> {
        let page = self.page_size;
        let claims = tables.table::<NetworkClaim>();
        let mut loaded = Loaded::new(
            now,
            NetworkState::new(Coverage::default()),
            ReleaseScope::nothing(),
        );
        let mut scope_workloads = changes.workloads.clone();
        let mut deleted = BTreeSet::new();
        let mut compile_sites = changes.sites.clone();

        // Tenants named by the changes: their records and claims; a deleted one's workloads
        // (from its address claims) and sites (from its subnet claims) are in scope.
        let touched: BTreeSet<TenantId> = changes
            .tenants
            .iter()
            .chain(changes.workloads.iter().map(|(t, _)| t))
            .cloned()
            .collect();
        for t in &touched {
            self.load_tenant(tables, &mut loaded, t).await?;
            if !loaded.input.tenants.contains_key(t) && changes.tenants.contains(t) {
                deleted.insert(t.clone());
            }
        }
        for (claim, _) in loaded.claims.values() {
            match claim {
                NetworkClaim::Host { key, .. } => {
                    if changes.tenants.contains(&key.tenant) {
                        scope_workloads.insert((key.tenant.clone(), key.workload.clone()));
                    }
                    if scope_workloads.contains(&(key.tenant.clone(), key.workload.clone())) {
                        compile_sites.insert(key.site.clone());
                    }
                }
                NetworkClaim::Subnet { tenant, site, .. } if changes.tenants.contains(tenant) => {
                    compile_sites.insert(site.clone());
                }
                _ => {}
            }
        }
        // The changed workloads and their new sites.
        for (t, w) in &scope_workloads {
            if let Some(placed) = load_workload(tables, t, w).await? {
                if let Some(p) = &placed.placement {
                    compile_sites.extend(p.assignments.iter().map(|a| a.site.clone()));
                }
                loaded
                    .input
                    .workloads
                    .insert((t.clone(), w.clone()), placed);
            }
        }
        // A tenant that may gain or lose a site's subnet changes the peers of every site it is
        // on: a changed workload now on a site where the tenant has no subnet, or gone from a
        // site it was on. The sites of all that tenant's subnets are compiled too.
        let subnet_sites: BTreeSet<(&TenantId, &SiteId)> = loaded
            .claims
            .values()
            .filter_map(|(c, _)| match c {
                NetworkClaim::Subnet { tenant, site, .. } => Some((tenant, site)),
                _ => None,
            })
            .collect();
        let mut moved: BTreeSet<&TenantId> = BTreeSet::new();
        for (t, w) in &scope_workloads {
            let old: BTreeSet<&SiteId> = loaded
                .claims
                .values()
                .filter_map(|(c, _)| match c {
                    NetworkClaim::Host { key, .. } if key.tenant == *t && key.workload == *w => {
                        Some(&key.site)
                    }
                    _ => None,
                })
                .collect();
            let new: BTreeSet<&SiteId> = loaded
                .input
                .workloads
                .get(&(t.clone(), w.clone()))
                .and_then(|p| p.placement.as_ref())
                .map(|p| p.assignments.iter().map(|a| &a.site).collect())
                .unwrap_or_default();
            let gains = new.iter().any(|site| !subnet_sites.contains(&(t, *site)));
            let loses = old.iter().any(|site| !new.contains(site));
            if gains || loses {
                moved.insert(t);
            }
        }
        for (claim, _) in loaded.claims.values() {
            if let NetworkClaim::Subnet { tenant, site, .. } = claim
                && moved.contains(tenant)
            {
                compile_sites.insert(site.clone());
            }
        }
        // The sites to compile, and every other workload their previous intents name.
        let mut others: BTreeSet<(TenantId, WorkloadId)> = BTreeSet::new();
        for site_id in &compile_sites {
            let Some(site) = tables.sites().get(site_id).await? else {
                continue;
            };
            let servers = tables
                .servers()
                .list_all(Some(site_id as &(dyn TableKeyDyn + Sync)), page)
                .await?;
            let previous = tables.intents().get(site_id).await?;
            if let Some(prev) = &previous {
                others.extend(
                    prev.record
                        .allocations
                        .iter()
                        .map(|a| (a.tenant.clone(), a.workload.clone()))
                        .chain(
                            prev.record
                                .exposures
                                .iter()
                                .map(|e| (e.tenant.clone(), e.workload.clone())),
                        ),
                );
            }
            let actions = crate::server_actions::pending(tables, &site.record.id).await?;
            loaded.add_site(actions, site.record, servers, previous);
            for v in list_versioned(&claims, Some(&NetworkClaim::public_of(site_id)), page).await? {
                loaded.add_claim(v);
            }
            loaded.state_coverage_site(site_id);
        }
        for (t, w) in others {
            if scope_workloads.contains(&(t.clone(), w.clone())) {
                continue;
            }
            if !loaded.state.coverage().tenants.contains(&t) {
                self.load_tenant(tables, &mut loaded, &t).await?;
            }
            if let Some(placed) = load_workload(tables, &t, &w).await? {
                loaded.input.workloads.insert((t, w), placed);
            }
        }
        // The gateway ranges of the other sites of the loaded tenants: their tunnel endpoints.
        let peer_sites: BTreeSet<SiteId> = loaded
            .claims
            .values()
            .filter_map(|(c, _)| match c {
                NetworkClaim::Subnet { site, .. } if !loaded.input.sites.contains_key(site) => {
                    Some(site.clone())
                }
                _ => None,
            })
            .collect();
        for site_id in peer_sites {
            if let Some(site) = tables.sites().get(&site_id).await? {
                loaded
                    .input
                    .peer_ranges
                    .insert(site_id, site.record.gateway_range);
            }
        }
        // Tenant-level claims, only when a network may be allocated, changed or released.
        let needs_pools = !changes.tenants.is_empty()
            || loaded.input.workloads.keys().any(|(t, _)| {
                loaded
                    .input
                    .tenants
                    .get(t)
                    .is_some_and(|r| r.network.is_none())
            });
        if needs_pools {
            for parent in NetworkClaim::pool_parents() {
                for v in list_versioned(&claims, Some(&parent), page).await? {
                    loaded.add_claim(v);
                }
            }
            loaded.state_coverage_pools();
        }
        loaded.release = ReleaseScope::Only {
            workloads: scope_workloads,
            deleted_tenants: deleted,
        };
        Ok(loaded)
    }

    /// A tenant's record (if it exists) and its subnet and address claims.
    async fn load_tenant(
        &self,
        tables: &Tables,
        loaded: &mut Loaded,
        tenant: &TenantId,
    ) -> Result<(), CompileError> {
        if let Some(v) = tables.tenants().get(tenant).await? {
            loaded.add_tenant(v);
        }
        let claims = tables.table::<NetworkClaim>();
        for parent in [
            NetworkClaim::subnets_of(tenant),
            NetworkClaim::hosts_of(tenant),
        ] {
            for v in list_versioned(&claims, Some(&parent), self.page_size).await? {
                loaded.add_claim(v);
            }
        }
        loaded.state_coverage_tenant(tenant);
        Ok(())
    }

    /// Writes the three phases; [`Run::Conflict`] when a compare failed. What committed is
    /// added to `summary` transaction by transaction.
    async fn write(
        &self,
        tables: &Tables,
        loaded: &Loaded,
        intents: &[SiteIntent],
        summary: &mut PublishSummary,
    ) -> Result<Run, CompileError> {
        let after = loaded.state.claims();
        let claim_key = |path: &str| Table::<NetworkClaim>::store_key(path);

        // Phase 1: tenant records with new networks (with their tenant-level claims), then
        // every other new claim.
        let mut phase1: Vec<Unit> = Vec::new();
        let mut grouped: BTreeSet<&str> = BTreeSet::new();
        for (id, v) in loaded.input.tenants.iter() {
            let network = loaded.state.tenant_network(id);
            if network.is_none() || network == v.network {
                continue;
            }
            let Some(&revision) = loaded.tenant_revisions.get(id) else {
                continue;
            };
            let record = Tenant {
                network,
                ..v.clone()
            };
            let key = Table::<Tenant>::store_key(&id.path());
            let mut unit = Unit::new(
                Compare::ModRevision(key, revision),
                Table::put_op(&record)?,
                Effect::Tenant(id.clone()),
            );
            for (path, claim) in &after {
                let tenant_level = matches!(
                    claim,
                    NetworkClaim::Vni { .. }
                        | NetworkClaim::Table { .. }
                        | NetworkClaim::Supernet { .. }
                );
                if tenant_level && claim.tenant() == id && !loaded.claims.contains_key(path) {
                    unit.compares.push(Compare::Absent(claim_key(path)));
                    unit.writes.push(Table::put_op(claim)?);
                    unit.effects.push(Effect::Created);
                    grouped.insert(path);
                }
            }
            phase1.push(unit);
        }
        for (path, claim) in &after {
            if grouped.contains(path.as_str()) {
                continue;
            }
            let compare = match loaded.claims.get(path) {
                None => Compare::Absent(claim_key(path)),
                Some((old, revision)) if old != claim => {
                    Compare::ModRevision(claim_key(path), *revision)
                }
                Some(_) => continue,
            };
            phase1.push(Unit::new(compare, Table::put_op(claim)?, Effect::Created));
        }
        // Phase 2: the changed intents.
        let mut phase2: Vec<Unit> = Vec::new();
        for intent in intents {
            let key = Table::<SiteIntent>::store_key(&intent.site.path());
            let compare = match loaded.intent_revisions.get(&intent.site) {
                Some(&revision) => Compare::ModRevision(key, revision),
                None => Compare::Absent(key),
            };
            let effect = Effect::Published(intent.site.clone(), intent.generation);
            phase2.push(Unit::new(compare, Table::put_op(intent)?, effect));
        }
        // Phase 3: releases.
        let mut phase3: Vec<Unit> = Vec::new();
        for (path, (_, revision)) in &loaded.claims {
            if !after.contains_key(path) {
                let key = claim_key(path);
                phase3.push(Unit::new(
                    Compare::ModRevision(key.clone(), *revision),
                    Op::Delete { key },
                    Effect::Released,
                ));
            }
        }
        for phase in [phase1, phase2, phase3] {
            for (txn, effects) in pack(phase) {
                if !tables.store().txn(txn).await?.succeeded {
                    return Ok(Run::Conflict);
                }
                for effect in effects {
                    match effect {
                        Effect::Tenant(id) => summary.tenants_allocated.push(id),
                        Effect::Created => summary.claims_created += 1,
                        Effect::Published(site, generation) => {
                            summary.published.push((site, generation));
                        }
                        Effect::Released => summary.claims_released += 1,
                    }
                }
            }
        }
        Ok(Run::Done)
    }
}

/// What a committed write did, for the summary.
#[derive(Debug)]
enum Effect {
    Tenant(TenantId),
    Created,
    Published(SiteId, Generation),
    Released,
}

/// One all-or-nothing group of compares and writes, with what it does.
#[derive(Debug)]
struct Unit {
    compares: Vec<Compare>,
    writes: Vec<Op>,
    effects: Vec<Effect>,
}

impl Unit {
    fn new(compare: Compare, write: Op, effect: Effect) -> Self {
        Unit {
            compares: vec![compare],
            writes: vec![write],
            effects: vec![effect],
        }
    }
}

/// Packs units into transactions of at most [`MAX_TXN_OPS`] compares and writes, never
/// splitting a unit.
fn pack(units: Vec<Unit>) -> Vec<(Txn, Vec<Effect>)> {
    let mut out = Vec::new();
    let mut txn = Txn::new();
    let mut effects = Vec::new();
    let mut ops = 0;
    for unit in units {
        let size = unit.compares.len() + unit.writes.len();
        if ops > 0 && ops + size > MAX_TXN_OPS {
            out.push((std::mem::take(&mut txn), std::mem::take(&mut effects)));
            ops = 0;
        }
        ops += size;
        txn.compares.extend(unit.compares);
        txn.success.extend(unit.writes);
        effects.extend(unit.effects);
    }
    if ops > 0 {
        out.push((txn, effects));
    }
    out
}

/// Every record under `parent` (or the whole table), with revisions.
async fn list_versioned<R: Record>(
    table: &Table<R>,
    parent: Option<&String>,
    page: usize,
) -> Result<Vec<Versioned<R>>, TableError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = table
            .list(
                parent.map(|p| p as &(dyn TableKeyDyn + Sync)),
                after.as_deref(),
                page,
            )
            .await?;
        all.extend(p.items);
        match p.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// A workload and its placement, if the workload exists.
async fn load_workload(
    tables: &Tables,
    tenant: &TenantId,
    workload: &WorkloadId,
) -> Result<Option<PlacedWorkload>, TableError> {
    let key = (tenant, workload);
    let Some(w) = tables.workloads().get(&key).await? else {
        return Ok(None);
    };
    let placement = tables.placements().get(&key).await?.map(|v| v.record);
    Ok(Some(PlacedWorkload {
        workload: w.record,
        placement,
    }))
}

impl Loaded {
    fn new(now: Timestamp, state: NetworkState, release: ReleaseScope) -> Self {
        Loaded {
            input: CompileInput {
                peer_ranges: Default::default(),
                now,
                sites: BTreeMap::new(),
                tenants: BTreeMap::new(),
                workloads: BTreeMap::new(),
            },
            state,
            release,
            claims: BTreeMap::new(),
            tenant_revisions: BTreeMap::new(),
            intent_revisions: BTreeMap::new(),
        }
    }

    fn add_site(
        &mut self,
        actions: Vec<meridian_common::model::ServerAction>,
        site: meridian_common::model::Site,
        servers: Vec<meridian_common::model::Server>,
        previous: Option<Versioned<SiteIntent>>,
    ) {
        if let Some(v) = &previous {
            self.intent_revisions.insert(site.id.clone(), v.revision);
        }
        self.input.sites.insert(
            site.id.clone(),
            SiteInput {
                site,
                servers,
                previous: previous.map(|v| v.record),
                actions,
            },
        );
    }

    fn add_tenant(&mut self, v: Versioned<Tenant>) {
        self.tenant_revisions
            .insert(v.record.id.clone(), v.revision);
        self.input.tenants.insert(v.record.id.clone(), v.record);
    }

    fn add_claim(&mut self, v: Versioned<NetworkClaim>) {
        self.state.add_claim(v.record.clone());
        self.claims.insert(v.record.path(), (v.record, v.revision));
    }

    fn state_coverage_tenant(&mut self, tenant: &TenantId) {
        self.with_coverage(|c| {
            c.tenants.insert(tenant.clone());
        });
    }

    fn state_coverage_site(&mut self, site: &SiteId) {
        self.with_coverage(|c| {
            c.sites.insert(site.clone());
        });
    }

    fn state_coverage_pools(&mut self) {
        self.with_coverage(|c| c.pools = true);
    }

    fn with_coverage(&mut self, f: impl FnOnce(&mut Coverage)) {
        let mut coverage = self.state.coverage().clone();
        f(&mut coverage);
        self.state.set_coverage(coverage);
    }
}
