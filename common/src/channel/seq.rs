//! Sequence and acknowledgement bookkeeping for reports.
//!
//! The agent numbers each report when it is durably appended; central keeps, per site, the
//! high-water mark of the sequences it has stored. A report at or below the mark is a
//! duplicate (a replay after a reconnect) and is dropped; the mark is what central
//! acknowledges, and the agent trims its buffer up to it. Sequences may skip numbers (state
//! reports superseded in the agent's buffer are compacted away), never go backwards.

use crate::ids::Sequence;

/// Central's per-site deduplication state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HighWater(Sequence);

impl HighWater {
    /// Starting from a stored mark.
    pub fn new(mark: Sequence) -> Self {
        HighWater(mark)
    }

    /// The mark: every sequence at or below it is stored.
    pub fn mark(&self) -> Sequence {
        self.0
    }

    /// Splits a batch (in the agent's order) into the sequences that are new, in order; a
    /// sequence not above the running mark is a duplicate. Does not move the mark: call
    /// [`HighWater::advance`] once the new ones are durable.
    pub fn fresh<'a, T>(&self, batch: &'a [(Sequence, T)]) -> Vec<&'a (Sequence, T)> {
        let mut mark = self.0;
        let mut out = Vec::new();
        for item in batch {
            if item.0 > mark {
                mark = item.0;
                out.push(item);
            }
        }
        out
    }

    /// Moves the mark up (never down).
    pub fn advance(&mut self, to: Sequence) {
        self.0 = self.0.max(to);
    }
}

/// The agent's side: which buffered sequences an acknowledgement releases.
pub fn releases(ack: Sequence, buffered: Sequence) -> bool {
    buffered <= ack
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Sequence {
        Sequence::new(n)
    }

    #[test]
    fn duplicates_and_reorders_are_dropped() {
        let hw = HighWater::new(s(3));
        let batch = [
            (s(2), 'a'),
            (s(4), 'b'),
            (s(4), 'c'),
            (s(7), 'd'),
            (s(5), 'e'),
        ];
        let fresh: Vec<char> = hw.fresh(&batch).iter().map(|(_, c)| *c).collect();
        assert_eq!(fresh, vec!['b', 'd']);
    }

    #[test]
    fn mark_never_goes_down() {
        let mut hw = HighWater::new(s(5));
        hw.advance(s(3));
        assert_eq!(hw.mark(), s(5));
        hw.advance(s(9));
        assert_eq!(hw.mark(), s(9));
        assert!(releases(s(9), s(9)));
        assert!(!releases(s(9), s(10)));
    }
}
