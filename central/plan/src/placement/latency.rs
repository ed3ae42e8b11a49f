//! Site-to-region round-trip times: measured where agents reported them, estimated otherwise.
//!
//! The estimate (DESIGN section 6): light in fibre takes about 4.9 us per km one way; real
//! routes are longer than the great circle by a route factor (default 1.5); the last mile and
//! the site's own network add a fixed access delay (default 2 ms). So
//! `rtt_ms = access_ms + 2 * distance_km * route_factor * 0.0049`. With the defaults, 1,000 km
//! of great-circle distance is about 16.7 ms round trip.
//!
//! The table keeps one RTT per (region, site) and, per region, the sites sorted by RTT, so the
//! sites within `max_rtt_ms` of a region are a prefix found by binary search: a latency
//! constraint never scans the fleet. It also remembers which pairs were measured, and can give
//! the distance estimate of any pair, so explanations say which of the two a decision used.

use meridian_common::model::GeoPoint;

/// One-way propagation delay of light in fibre, in milliseconds per kilometre.
pub const FIBRE_MS_PER_KM: f64 = 0.0049;

/// How RTTs are estimated where none was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    /// Real path length over great-circle distance.
    pub route_factor: f64,
    /// Fixed delay added to every round trip (access network, site network), in ms.
    pub access_ms: f64,
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel {
            route_factor: 1.5,
            access_ms: 2.0,
        }
    }
}

impl LatencyModel {
    /// The estimated round trip between two points, in milliseconds.
    pub fn estimate_rtt_ms(&self, a: &GeoPoint, b: &GeoPoint) -> f64 {
        self.access_ms + 2.0 * a.distance_km(b) * self.route_factor * FIBRE_MS_PER_KM
    }
}

/// RTTs for every (region, site) pair, plus each region's sites in RTT order.
#[derive(Debug, Clone)]
pub(crate) struct RttTable {
    sites: usize,
    /// Region-major: `rtt[region * sites + site]`.
    rtt: Vec<f32>,
    /// Per region: `(rtt, site)` ascending by RTT then site.
    sorted: Vec<Vec<(f32, u32)>>,
    /// Which pairs (`region * sites + site`) were measured, one bit each; empty until the
    /// first measurement.
    measured: Vec<u64>,
    /// What the estimates are computed from, to give an estimate where a measurement won.
    model: LatencyModel,
    region_points: Vec<GeoPoint>,
    site_points: Vec<GeoPoint>,
}

impl RttTable {
    /// Estimates every pair.
    pub fn estimate(model: &LatencyModel, regions: &[GeoPoint], sites: &[GeoPoint]) -> Self {
        let mut rtt = Vec::with_capacity(regions.len() * sites.len());
        let mut sorted = Vec::with_capacity(regions.len());
        for region in regions {
            let start = rtt.len();
            rtt.extend(
                sites
                    .iter()
                    .map(|site| model.estimate_rtt_ms(region, site) as f32),
            );
            let mut order: Vec<(f32, u32)> = rtt[start..]
                .iter()
                .enumerate()
                .map(|(i, r)| (*r, i as u32))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            sorted.push(order);
        }
        RttTable {
            sites: sites.len(),
            rtt,
            sorted,
            measured: Vec::new(),
            model: *model,
            region_points: regions.to_vec(),
            site_points: sites.to_vec(),
        }
    }

    /// The RTT between `region` and `site`, in ms: the measured one where there is one.
    pub fn get(&self, region: u32, site: u32) -> f32 {
        self.rtt[region as usize * self.sites + site as usize]
    }

    /// Whether the RTT between `region` and `site` was measured (else it is the estimate).
    pub fn is_measured(&self, region: u32, site: u32) -> bool {
        let slot = region as usize * self.sites + site as usize;
        self.measured
            .get(slot / 64)
            .is_some_and(|bits| bits & (1 << (slot % 64)) != 0)
    }

    /// The distance estimate between `region` and `site`, in ms, measured or not.
    pub fn estimate_of(&self, region: u32, site: u32) -> f32 {
        self.model.estimate_rtt_ms(
            &self.region_points[region as usize],
            &self.site_points[site as usize],
        ) as f32
    }

    /// Replaces an estimate (or an older measurement) with a measured RTT.
    pub fn set_measured(&mut self, region: u32, site: u32, rtt_ms: f32) {
        let slot = region as usize * self.sites + site as usize;
        if self.measured.is_empty() {
            self.measured = vec![0; self.rtt.len().div_ceil(64)];
        }
        self.measured[slot / 64] |= 1 << (slot % 64);
        let old = self.rtt[slot];
        self.rtt[slot] = rtt_ms;
        let order = &mut self.sorted[region as usize];
        let key = |e: &(f32, u32)| (e.0, e.1);
        let at = order
            .binary_search_by(|e| key(e).0.total_cmp(&old).then(e.1.cmp(&site)))
            .unwrap_or_else(|_| {
                order
                    .iter()
                    .position(|e| e.1 == site)
                    .expect("every site is in every region's order")
            });
        order.remove(at);
        let to = order
            .binary_search_by(|e| e.0.total_cmp(&rtt_ms).then(e.1.cmp(&site)))
            .unwrap_or_else(|i| i);
        order.insert(to, (rtt_ms, site));
    }

    /// The sites within `max_ms` of `region`, nearest first.
    pub fn within(&self, region: u32, max_ms: f32) -> &[(f32, u32)] {
        let order = &self.sorted[region as usize];
        let end = order.partition_point(|e| e.0 <= max_ms);
        &order[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint { lat, lon }
    }

    #[test]
    fn estimate_follows_the_fibre_model() {
        let m = LatencyModel::default();
        let paris = p(48.8566, 2.3522);
        let frankfurt = p(50.1109, 8.6821);
        let d = paris.distance_km(&frankfurt);
        assert!((470.0..490.0).contains(&d), "{d}");
        let rtt = m.estimate_rtt_ms(&paris, &frankfurt);
        assert!((rtt - (2.0 + 2.0 * d * 1.5 * 0.0049)).abs() < 1e-9);
        assert_eq!(m.estimate_rtt_ms(&paris, &paris), 2.0);
    }

    #[test]
    fn within_is_a_sorted_prefix_and_measurements_move_sites() {
        let m = LatencyModel::default();
        let regions = [p(48.0, 2.0)];
        let sites = [p(48.0, 2.0), p(52.0, 13.0), p(40.0, -3.0), p(48.1, 2.1)];
        let mut t = RttTable::estimate(&m, &regions, &sites);
        let near: Vec<u32> = t.within(0, 5.0).iter().map(|e| e.1).collect();
        assert_eq!(near, [0, 3]);
        assert_eq!(t.within(0, 1.0).len(), 0);
        // Berlin measured at 3 ms: now inside the 5 ms prefix, in order.
        t.set_measured(0, 1, 3.0);
        let near: Vec<u32> = t.within(0, 5.0).iter().map(|e| e.1).collect();
        assert_eq!(near, [0, 3, 1]);
        assert_eq!(t.get(0, 1), 3.0);
        assert!(t.is_measured(0, 1) && !t.is_measured(0, 3));
        // The estimate stays available next to the measurement.
        let berlin = m.estimate_rtt_ms(&regions[0], &sites[1]) as f32;
        assert_eq!(t.estimate_of(0, 1), berlin);
        assert!(berlin > 10.0);
        // And measured far away: out again.
        t.set_measured(0, 0, 90.0);
        let near: Vec<u32> = t.within(0, 5.0).iter().map(|e| e.1).collect();
        assert_eq!(near, [3, 1]);
        assert_eq!(t.within(0, 1000.0).len(), 4);
    }
}
