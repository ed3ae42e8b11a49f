//! Portable random draws on top of a ChaCha8 stream.
//!
//! Everything the generator draws goes through these helpers, which use only
//! [`RngCore::next_u64`] and integer or basic IEEE arithmetic (`+ - * /`, no `exp`, `ln` or
//! trigonometry, whose last bits differ between platforms' math libraries). The fleet then
//! depends only on the ChaCha8 keystream, which is fixed by its specification, not on how a
//! version of `rand` implements ranges or distributions.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The independent random streams of the generator, one per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Stage {
    Sites = 1,
    Servers = 2,
    Regions = 3,
    Tenants = 4,
    Datasets = 5,
}

/// The stream for `stage` of the fleet with `seed`: the seed's ChaCha8 key, with the stage
/// as ChaCha's stream number, so stages never share or shift each other's draws.
pub(crate) fn stage_rng(seed: u64, stage: Stage) -> Draw {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stage as u64);
    Draw(rng)
}

/// A random source with portable helpers.
#[derive(Debug, Clone)]
pub(crate) struct Draw(ChaCha8Rng);

impl Draw {
    /// 64 random bits.
    pub(crate) fn bits(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (unbiased, by rejection); `n` must be positive.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.bits();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform index into a slice of length `len`.
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        if hi - lo == u64::MAX {
            return self.bits();
        }
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[-half_width, half_width)`.
    pub(crate) fn offset(&mut self, half_width: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * half_width
    }

    /// `true` with probability `percent / 100`.
    pub(crate) fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index drawn with probability proportional to `weights[i]` (not all zero).
    pub(crate) fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        unreachable!("x < total")
    }

    /// One of `items`, uniformly.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// `n` distinct indices of `0..len` (all of them, shuffled, when `n >= len`), by a partial
    /// Fisher-Yates shuffle over a scratch list.
    pub(crate) fn distinct(&mut self, len: usize, n: usize) -> Vec<usize> {
        let n = n.min(len);
        if n <= 8 && len > 64 {
            // Few out of many: rejection is cheaper than a scratch list.
            let mut out: Vec<usize> = Vec::with_capacity(n);
            while out.len() < n {
                let i = self.index(len);
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            return out;
        }
        let mut all: Vec<usize> = (0..len).collect();
        for i in 0..n {
            let j = i + self.index(len - i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    }

    /// Upper-case hex digits from random bits, `len <= 16`.
    pub(crate) fn hex(&mut self, len: usize) -> String {
        let v = self.bits();
        format!("{v:016X}")[..len.min(16)].to_owned()
    }
}

/// `2^x` for `x` in `[0, 1)`, by its Taylor series around 0 in `x * ln 2`. Only `+` and `*`,
/// so the result is the same on every IEEE 754 machine; relative error below `1e-15`.
pub(crate) fn exp2_frac(x: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    let y = x * LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=20 {
        term = term * y / f64::from(k);
        sum += term;
    }
    sum
}

/// Splits `total` into shares proportional to `weights` by the largest-remainder method
/// (integer arithmetic only; ties go to the earlier entry). With `at_least_one` and
/// `total >= weights.len()`, every entry gets at least one.
pub(crate) fn apportion(total: usize, weights: &[u64], at_least_one: bool) -> Vec<usize> {
    let n = weights.len();
    let base = if at_least_one && total >= n { 1 } else { 0 };
    let rest = (total - base * n) as u128;
    let sum: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    let mut shares: Vec<usize> = Vec::with_capacity(n);
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(n);
    for (i, w) in weights.iter().enumerate() {
        let exact = rest * u128::from(*w);
        shares.push(base + (exact / sum) as usize);
        remainders.push((exact % sum, i));
    }
    let given: usize = shares.iter().sum();
    let left = total - given;
    // Largest remainder first, earlier index first on ties.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(left) {
        shares[i] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_repeatable() {
        let a: Vec<u64> = (0..4).map(|_| stage_rng(7, Stage::Sites).bits()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut sites = stage_rng(7, Stage::Sites);
        let mut servers = stage_rng(7, Stage::Servers);
        assert_ne!(sites.bits(), servers.bits());
        // The first word of seed 0, stream 1 (the sites stage), pinned: if this fails, the
        // seeding or the ChaCha8 keystream of rand_chacha changed, not the generator.
        assert_eq!(stage_rng(0, Stage::Sites).bits(), 0xc16a_7b0f_c8d4_8f13);
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = stage_rng(1, Stage::Tenants);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let b = r.between(3, 5);
            assert!((3..=5).contains(&b));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            let o = r.offset(0.5);
            assert!((-0.5..0.5).contains(&o));
            assert!(r.weighted(&[0, 3, 0, 1]) % 2 == 1);
        }
        let d = r.distinct(10, 10);
        let mut s = d.clone();
        s.sort_unstable();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        let d = r.distinct(1000, 3);
        assert_eq!(d.len(), 3);
        assert!(d[0] != d[1] && d[1] != d[2] && d[0] != d[2]);
        assert_eq!(r.distinct(2, 3).len(), 2);
        assert_eq!(r.hex(12).len(), 12);
    }

    #[test]
    fn exp2_is_accurate() {
        for i in 0..100 {
            let x = f64::from(i) / 100.0;
            let want = x.exp2();
            assert!((exp2_frac(x) - want).abs() / want < 1e-14, "{x}");
        }
    }

    #[test]
    fn apportion_sums_and_floors() {
        assert_eq!(apportion(10, &[1, 1, 1], false), vec![4, 3, 3]);
        assert_eq!(apportion(3, &[100, 1, 1], true), vec![1, 1, 1]);
        assert_eq!(apportion(2, &[1, 100, 1], true), vec![0, 2, 0]);
        let s = apportion(9_900, &[150, 4, 40, 1], true);
        assert_eq!(s.iter().sum::<usize>(), 9_900);
        assert!(s.iter().all(|x| *x >= 1));
        assert_eq!(apportion(0, &[1, 2], true), vec![0, 0]);
    }
}
