//! B14, usage accounting's cost: B5's ingest ([`super::ingest`]) with central's metering off
//! and on (`channel.metering`), alternated in one run (off, on, off, on...) so machine noise
//! falls on both alike. The report mix holds one allocation start and one end in every 16
//! reports, which is what metering reads; the rest costs it nothing but the mark.

use std::fmt;

use super::harness::BoxError;
use super::ingest::{self, IngestBenchOptions, IngestBenchReport};

/// Both sides' runs.
#[derive(Debug, Clone, Default)]
pub struct AccountingReport {
    pub off: Vec<IngestBenchReport>,
    pub on: Vec<IngestBenchReport>,
}

/// (min, median, max) of `values`.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

impl AccountingReport {
    fn capacity(runs: &[IngestBenchReport]) -> (f64, f64, f64) {
        spread(
            &runs
                .iter()
                .map(|r| r.saturated.per_second)
                .collect::<Vec<_>>(),
        )
    }

    fn p99_ms(runs: &[IngestBenchReport]) -> (f64, f64, f64) {
        spread(
            &runs
                .iter()
                .map(|r| r.paced.ack_p99.as_secs_f64() * 1e3)
                .collect::<Vec<_>>(),
        )
    }

    /// Median saturated capacity with accounting over without it (1.0: free).
    pub fn capacity_ratio(&self) -> f64 {
        let (_, off, _) = Self::capacity(&self.off);
        let (_, on, _) = Self::capacity(&self.on);
        if off > 0.0 { on / off } else { 0.0 }
    }

    /// Median paced ack p99, on and off, ms.
    pub fn p99_on_off(&self) -> (f64, f64) {
        (Self::p99_ms(&self.on).1, Self::p99_ms(&self.off).1)
    }

    /// Every run kept its sessions and central confirmed every agent's mark.
    pub fn clean(&self) -> bool {
        self.off
            .iter()
            .chain(&self.on)
            .all(|r| r.failed_agents == 0 && r.verified_agents == r.agents)
    }

    /// The target: accounting costs at most 10 % of ingest capacity.
    pub fn met(&self) -> bool {
        self.clean() && self.capacity_ratio() >= 0.90
    }
}

impl fmt::Display for AccountingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |(lo, mid, hi): (f64, f64, f64), unit: &str| {
            format!("min {lo:.0} / median {mid:.0} / max {hi:.0} {unit}")
        };
        let showms = |(lo, mid, hi): (f64, f64, f64)| {
            format!("min {lo:.2} / median {mid:.2} / max {hi:.2} ms")
        };
        writeln!(
            f,
            "B14 usage accounting on vs off, B5's ingest alternated {} + {} runs",
            self.off.len(),
            self.on.len()
        )?;
        writeln!(
            f,
            "  saturated, accounting off: {}",
            show(Self::capacity(&self.off), "reports/s")
        )?;
        writeln!(
            f,
            "  saturated, accounting on:  {}",
            show(Self::capacity(&self.on), "reports/s")
        )?;
        writeln!(
            f,
            "  paced ack p99 off: {}",
            showms(Self::p99_ms(&self.off))
        )?;
        writeln!(f, "  paced ack p99 on:  {}", showms(Self::p99_ms(&self.on)))?;
        write!(
            f,
            "  capacity with accounting / without: {:.3} (target >= 0.90: {})",
            self.capacity_ratio(),
            if self.met() { "met" } else { "NOT met" }
        )
    }
}

/// Runs `rounds` pairs (off then on) of B5 at `opts`.
pub async fn run(opts: &IngestBenchOptions, rounds: usize) -> Result<AccountingReport, BoxError> {
    let mut report = AccountingReport::default();
    for round in 0..rounds.max(1) {
        for metering in [false, true] {
            eprintln!(
                "B14: round {}/{}, accounting {}",
                round + 1,
                rounds.max(1),
                if metering { "on" } else { "off" }
            );
            let r = ingest::run(&IngestBenchOptions {
                metering,
                ..opts.clone()
            })
            .await?;
            if metering {
                report.on.push(r);
            } else {
                report.off.push(r);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_ratios() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(spread(&[]), (0.0, 0.0, 0.0));
        let run = |per_second: f64| {
            let mut r = IngestBenchReport::default();
            r.saturated.per_second = per_second;
            r
        };
        let report = AccountingReport {
            off: vec![run(100.0), run(120.0), run(80.0)],
            on: vec![run(95.0), run(90.0), run(99.0)],
        };
        assert!((report.capacity_ratio() - 0.95).abs() < 1e-9);
        assert!(report.met());
        let worse = AccountingReport {
            off: vec![run(100.0)],
            on: vec![run(85.0)],
        };
        assert!(!worse.met());
    }
}
