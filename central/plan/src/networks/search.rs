//! Lowest-free searches over sorted sets of taken values: the deterministic core of every pool.

use std::net::Ipv4Addr;

use meridian_common::model::Ipv4Net;

/// The lowest value of `first..=last` that is neither in `taken` (ascending) nor in `skip`.
pub(super) fn lowest_free_number(
    first: u32,
    last: u32,
    taken: impl IntoIterator<Item = u32>,
    skip: &[u32],
) -> Option<u32> {
    let mut taken = taken.into_iter().peekable();
    let mut candidate = u64::from(first);
    while candidate <= u64::from(last) {
        if skip.iter().any(|&s| u64::from(s) == candidate) {
            candidate += 1;
            continue;
        }
        while taken.next_if(|&t| u64::from(t) < candidate).is_some() {}
        if taken.next_if(|&t| u64::from(t) == candidate).is_some() {
            candidate += 1;
            continue;
        }
        return u32::try_from(candidate).ok();
    }
    None
}

/// The first aligned `/prefix_len` block of `pool` that overlaps none of `taken` (ascending by
/// address, as a `BTreeSet<Ipv4Net>` iterates; prefixes of any size, inside the pool or not).
pub(super) fn first_free_block(
    pool: Ipv4Net,
    prefix_len: u8,
    taken: impl IntoIterator<Item = Ipv4Net>,
) -> Option<Ipv4Net> {
    if prefix_len < pool.prefix_len() || prefix_len > 32 {
        return None;
    }
    let size = 1u64 << (32 - u32::from(prefix_len));
    let start = u64::from(u32::from(pool.addr()));
    let end = start + pool.size();
    let mut candidate = start;
    for net in taken {
        let net_start = u64::from(u32::from(net.addr()));
        let net_end = net_start + net.size();
        if net_end <= candidate {
            continue;
        }
        if net_start >= candidate + size {
            // Later nets start even later: the candidate is free.
            break;
        }
        // Overlap: the next aligned block after this net (the pool start is aligned to the
        // pool size, which is at least the block size).
        candidate = net_end.div_ceil(size) * size;
        if candidate + size > end {
            return None;
        }
    }
    if candidate + size > end {
        return None;
    }
    let addr = Ipv4Addr::from(u32::try_from(candidate).ok()?);
    Ipv4Net::new(addr, prefix_len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(lowest_free_number(5, 9, [], &[]), Some(5));
        assert_eq!(lowest_free_number(5, 9, [1, 5, 6, 8], &[]), Some(7));
        assert_eq!(lowest_free_number(5, 9, [5, 6, 7, 8, 9], &[]), None);
        assert_eq!(
            lowest_free_number(252, 256, [252], &[253, 254, 255]),
            Some(256)
        );
        assert_eq!(lowest_free_number(0, 0, [], &[0]), None);
        assert_eq!(
            lowest_free_number(u32::MAX, u32::MAX, [], &[]),
            Some(u32::MAX)
        );
        assert_eq!(
            lowest_free_number(u32::MAX, u32::MAX, [u32::MAX], &[]),
            None
        );
    }

    #[test]
    fn blocks() {
        let pool = net("10.0.0.0/8");
        assert_eq!(first_free_block(pool, 16, []), Some(net("10.0.0.0/16")));
        assert_eq!(
            first_free_block(pool, 16, [net("10.0.0.0/16"), net("10.1.0.0/16")]),
            Some(net("10.2.0.0/16"))
        );
        // A hand-set /12 and a stray /24 block what they overlap.
        assert_eq!(
            first_free_block(pool, 16, [net("10.0.0.0/12"), net("10.16.3.0/24")]),
            Some(net("10.17.0.0/16"))
        );
        // Nets outside the pool, before and after it, change nothing.
        assert_eq!(
            first_free_block(pool, 16, [net("9.0.0.0/8"), net("11.0.0.0/8")]),
            Some(net("10.0.0.0/16"))
        );
        // A containing net blocks everything.
        assert_eq!(first_free_block(pool, 16, [net("0.0.0.0/0")]), None);
        assert_eq!(first_free_block(net("10.0.0.0/24"), 16, []), None);
        // The last block of the address space.
        assert_eq!(
            first_free_block(net("255.255.255.0/24"), 25, [net("255.255.255.0/25")]),
            Some(net("255.255.255.128/25"))
        );
        assert_eq!(
            first_free_block(net("255.255.255.0/24"), 25, [net("255.255.255.0/24")]),
            None
        );
    }
}
