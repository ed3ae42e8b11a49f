//! B1q: on 1,000 random small instances (3 to 12 sites) the engine's total score against the
//! exact optimum, found here by exhaustive search through the engine's own public API used as
//! a black box. The target is 2 % on every instance. (An earlier engine assigned replicas one
//! at a time and fell up to 20 % short on instances where consolidating replicas on one
//! server pays; it now assigns several replicas by dynamic programming, see
//! `central/src/placement/replicas.rs`, and every instance here must stay within 2 %.)
//!
//! Each instance is a generated fleet (core sites cut to 4 servers so the search stays small),
//! a few background workloads already committed (so servers are partly used and packing
//! matters), and one target workload of 1 to 3 replicas with random constraints. The search:
//!
//! - every server is tried for one replica of the target pinned there (`pin_server`, dry run):
//!   that gives each server's feasibility and its per-replica score;
//! - for one replica the optimum is the best of those;
//! - for 2 or 3 replicas, every multiset of servers (replicas are interchangeable; on one
//!   server the packing of successive replicas does not depend on the order) that respects
//!   spread (`min_sites`, `max_per_site`) or colocation is placed replica by replica, pinned
//!   and committed, and its mean score taken, then released; branch and bound with each
//!   server's score at perfect packing as the bound keeps it fast.
//!
//! Run with `--nocapture` to see the worst and mean gap and every instance below the optimum;
//! `B1Q_INSTANCE=<n>` also prints one instance's request, decision and per-server options.
//! The search explores servers, not GPUs within a server (a pinned replica takes the slot the
//! engine picks on that server), so the optimum here is a lower bound on the true optimum.

mod placement_support;

use meridian_common::model::ScoreWeights;
use meridian_plan::placement::{Decision, FleetSnapshot, PlacementRequest, Planner, PlannerConfig};
use placement_support::{
    DEFAULT_WEIGHTS, NOW, RequestOptions, WorldOptions, id, request, rng, world,
};
use rand::Rng;

/// Instances with a feasible optimum to compare.
const INSTANCES: usize = 1_000;
/// The B1q bound.
const MAX_GAP: f64 = 0.02;

const WORLD: WorldOptions = WorldOptions {
    core_servers: Some(4),
    offline_pct: 10,
    unhealthy_pct: 4,
    measured_pct: 8,
    tight_quota_pct: 0,
};

const BACKGROUND: RequestOptions = RequestOptions {
    max_replicas: 3,
    pin_pct: 0,
    bare_metal_pct: 5,
};

const TARGET: RequestOptions = RequestOptions {
    max_replicas: 3,
    pin_pct: 0,
    bare_metal_pct: 5,
};

/// One server that can take one replica, with its score and the bound on any replica there.
#[derive(Debug, Clone)]
struct Option1 {
    server: meridian_common::ids::ServerId,
    site: meridian_common::ids::SiteId,
    score: f64,
    bound: f64,
}

fn weights_of(snap: &FleetSnapshot, req: &PlacementRequest) -> ScoreWeights {
    let w = snap
        .tenants
        .iter()
        .find(|t| t.id == req.tenant)
        .expect("known tenant")
        .weights;
    if w.latency + w.data + w.price + w.packing > 0.0 {
        w
    } else {
        DEFAULT_WEIGHTS
    }
}

/// `req` cut to one replica pinned to `server`, under workload ID `name`.
fn pinned(
    req: &PlacementRequest,
    server: &meridian_common::ids::ServerId,
    name: &str,
) -> PlacementRequest {
    let mut one = req.clone();
    one.workload = id(name);
    one.spec.replicas = 1;
    one.spec.constraints.spread = None;
    one.spec.constraints.colocate = false;
    one.spec.constraints.pin_server = Some(server.clone());
    one
}

struct Search<'a> {
    planner: &'a mut Planner,
    req: &'a PlacementRequest,
    options: Vec<Option1>,
    replicas: usize,
    min_sites: usize,
    max_per_site: usize,
    colocate: bool,
    best: Option<f64>,
    nodes: u64,
}

impl Search<'_> {
    fn dfs(
        &mut self,
        start: usize,
        depth: usize,
        sum: f64,
        sites: &mut Vec<meridian_common::ids::SiteId>,
    ) {
        if depth == self.replicas {
            let mut distinct = sites.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() >= self.min_sites && self.best.is_none_or(|b| sum > b) {
                self.best = Some(sum);
            }
            return;
        }
        let remaining = (self.replicas - depth) as f64;
        for j in start..self.options.len() {
            let o = self.options[j].clone();
            if let Some(best) = self.best
                && sum + remaining * o.bound <= best + 1e-12
            {
                break; // sorted by bound: no later server can do better
            }
            if self.colocate && sites.first().is_some_and(|s| *s != o.site) {
                continue;
            }
            let here = sites.iter().filter(|s| **s == o.site).count();
            if here + 1 > self.max_per_site {
                continue;
            }
            let mut distinct = sites.clone();
            distinct.push(o.site.clone());
            distinct.sort();
            distinct.dedup();
            if distinct.len() + (self.replicas - depth - 1) < self.min_sites {
                continue;
            }
            self.nodes += 1;
            let name = format!("opt-replica-{depth}");
            let one = pinned(self.req, &o.server, &name);
            let Decision::Placed(p) = self.planner.place(&one, NOW).expect("a valid request")
            else {
                continue; // the server is full after the replicas already on it
            };
            sites.push(o.site.clone());
            self.dfs(j, depth + 1, sum + p.score.total, sites);
            sites.pop();
            assert!(self.planner.release(&one.workload));
        }
    }
}

/// The exact optimum of the mean score for `req`, or `None` when nothing is feasible.
fn optimum(
    planner: &mut Planner,
    snap: &FleetSnapshot,
    req: &PlacementRequest,
) -> (Option<f64>, u64) {
    let w = weights_of(snap, req);
    let packing_share = w.packing / (w.latency + w.data + w.price + w.packing);
    let mut options = Vec::new();
    for server in &snap.servers {
        let one = pinned(req, &server.id, "opt-probe");
        if let Decision::Placed(p) = planner.dry_run(&one, NOW).expect("a valid request") {
            options.push(Option1 {
                server: server.id.clone(),
                site: server.site.clone(),
                score: p.score.total,
                bound: p.score.total + packing_share * (1.0 - p.score.packing),
            });
        }
    }
    let replicas = req.spec.replicas.max(1) as usize;
    if replicas == 1 {
        let n = options.len() as u64;
        return (options.iter().map(|o| o.score).reduce(f64::max), n);
    }
    options.sort_by(|a, b| {
        b.bound
            .total_cmp(&a.bound)
            .then_with(|| a.server.cmp(&b.server))
    });
    let (min_sites, max_per_site) = match req.spec.constraints.spread {
        Some(s) => (s.min_sites.max(1) as usize, s.max_per_site.max(1) as usize),
        None => (1, replicas),
    };
    let mut search = Search {
        planner,
        req,
        options,
        replicas,
        min_sites,
        max_per_site,
        colocate: req.spec.constraints.colocate,
        best: None,
        nodes: 0,
    };
    search.dfs(0, 0, 0.0, &mut Vec::new());
    (search.best.map(|b| b / replicas as f64), search.nodes)
}

#[derive(Debug)]
struct Worst {
    gap: f64,
    instance: u64,
    engine: f64,
    optimum: f64,
}

#[test]
fn engine_is_within_two_percent_of_the_exhaustive_optimum() {
    let started = std::time::Instant::now();
    let (mut compared, mut draws, mut both_infeasible, mut nodes) = (0usize, 0u64, 0usize, 0u64);
    let mut gaps: Vec<f64> = Vec::with_capacity(INSTANCES);
    let mut per_replicas = [0usize; 4];
    let mut worst: Option<Worst> = None;
    let mut errors: Vec<String> = Vec::new();
    let mut over_bound: Vec<(u64, f64, String)> = Vec::new();
    while compared < INSTANCES {
        let instance = draws;
        draws += 1;
        assert!(draws < 20 * INSTANCES as u64, "too few feasible instances");
        let mut rng = rng(instance.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xb1);
        let sites = rng.random_range(3..=12);
        let snap = world(rng.random(), sites, WORLD);
        let mut planner = Planner::new(&snap, PlannerConfig::default()).expect("a valid snapshot");
        for k in 0..rng.random_range(0..=8) {
            let bg = request(&mut rng, &snap, &format!("bg-{k}"), BACKGROUND);
            planner.place(&bg, NOW).expect("a valid request");
        }
        let target = request(&mut rng, &snap, "target", TARGET);
        let engine = planner.dry_run(&target, NOW).expect("a valid request");
        let (best, n) = optimum(&mut planner, &snap, &target);
        if std::env::var("B1Q_INSTANCE").is_ok_and(|v| v == instance.to_string()) {
            // Everything needed to look at one instance by hand.
            println!(
                "B1q instance {instance}: weights {:?}\n{target:#?}\n{engine:#?}",
                weights_of(&snap, &target)
            );
            for server in &snap.servers {
                let one = pinned(&target, &server.id, "opt-probe");
                if let Decision::Placed(p) = planner.dry_run(&one, NOW).expect("a valid request") {
                    println!(
                        "one replica on {}: {:?} {:?}",
                        server.id, p.assignments[0].slot, p.score
                    );
                }
            }
        }
        nodes += n;
        // The search leaves the planner as it found it.
        assert_eq!(
            planner.dry_run(&target, NOW).expect("a valid request"),
            engine,
            "instance {instance}"
        );
        match (engine.placement(), best) {
            (None, None) => both_infeasible += 1,
            (Some(p), None) => errors.push(format!(
                "instance {instance}: the engine placed ({}) where the search found nothing: {target:?}",
                p.explanation
            )),
            (None, Some(opt)) => errors.push(format!(
                "instance {instance}: the search found {opt:.4} where the engine says {}: {target:?}",
                engine.explanation()
            )),
            (Some(p), Some(opt)) => {
                compared += 1;
                per_replicas[target.spec.replicas as usize] += 1;
                let got = p.score.total;
                if got > opt + 1e-9 {
                    errors.push(format!(
                        "instance {instance}: the engine's {got:.6} beats the optimum {opt:.6}: {target:?} {p:?}"
                    ));
                }
                let gap = if opt > 0.0 { ((opt - got) / opt).max(0.0) } else { 0.0 };
                gaps.push(gap);
                if gap > MAX_GAP {
                    over_bound.push((instance, gap, format!("{target:?}")));
                }
                if gap > 1e-9 {
                    println!(
                        "B1q: instance {instance}: gap {:.3} %, engine {got:.6}, optimum {opt:.6}, {} x {:?}, spread {:?}, colocate {}, weights {:?}",
                        gap * 100.0,
                        target.spec.replicas,
                        target.spec.resources.accelerator,
                        target.spec.constraints.spread,
                        target.spec.constraints.colocate,
                        weights_of(&snap, &target)
                    );
                }
                if worst.as_ref().is_none_or(|w| gap > w.gap) {
                    worst = Some(Worst {
                        gap,
                        instance,
                        engine: got,
                        optimum: opt,
                    });
                }
            }
        }
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let suboptimal = gaps.iter().filter(|g| **g > 1e-9).count();
    let worst = worst.expect("instances compared");
    println!(
        "B1q: {compared} instances compared ({} x1, {} x2, {} x3 replicas; {both_infeasible} more \
         draws infeasible for both, {draws} draws, {nodes} search nodes, {:.1} s)",
        per_replicas[1],
        per_replicas[2],
        per_replicas[3],
        started.elapsed().as_secs_f64()
    );
    println!(
        "B1q: worst gap {:.4} % (instance {}, engine {:.6}, optimum {:.6}); mean gap {:.6} %; \
         {suboptimal} instances below the optimum, {} more than {:.0} % below",
        worst.gap * 100.0,
        worst.instance,
        worst.engine,
        worst.optimum,
        mean * 100.0,
        over_bound.len(),
        MAX_GAP * 100.0,
    );
    assert!(
        errors.is_empty(),
        "{} disagreements:\n{}",
        errors.len(),
        errors.join("\n")
    );
    let over: Vec<String> = over_bound
        .iter()
        .map(|(instance, gap, request)| {
            format!("instance {instance}: gap {:.3} %: {request}", gap * 100.0)
        })
        .collect();
    assert!(
        over.is_empty(),
        "{} instances more than {:.0} % below the optimum (B1q):\n{}",
        over.len(),
        MAX_GAP * 100.0,
        over.join("\n")
    );
}
