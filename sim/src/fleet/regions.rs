//! User regions: the populations latency goals are measured from.
//!
//! Regions are the table's cities, largest first: the full fleet's 200 regions are exactly
//! the 200 cities; a smaller fleet keeps the largest. Past 200 (a fleet scaled above 1.0),
//! further rounds add districts near each city with a share of its population.

use meridian_common::model::{GeoPoint, Region};

use super::draw::Draw;
use super::geography::{City, Country, cities};
use super::id;

pub(crate) fn generate(n: usize, rng: &mut Draw) -> Vec<Region> {
    let mut by_size: Vec<(&Country, &City)> = cities().collect();
    // Stable sort: equal populations keep table order.
    by_size.sort_by_key(|(_, city)| std::cmp::Reverse(city.population));
    (0..n)
        .map(|i| {
            let (country, city) = by_size[i % by_size.len()];
            let round = i / by_size.len();
            let code = country.code_lower();
            if round == 0 {
                Region {
                    id: id(&format!("{code}-{}", city.slug)),
                    name: id(city.slug),
                    location: city.location(),
                    country: country.jurisdiction(),
                    population: city.population,
                }
            } else {
                let district = round + 1;
                let spread = country.spread_deg;
                Region {
                    id: id(&format!("{code}-{}-{district}", city.slug)),
                    name: id(&format!("{}-{district}", city.slug)),
                    location: GeoPoint {
                        lat: (city.lat + rng.offset(spread)).clamp(-90.0, 90.0),
                        lon: (city.lon + rng.offset(spread)).clamp(-180.0, 180.0),
                    },
                    country: country.jurisdiction(),
                    population: city.population / (district as u64 + 1),
                }
            }
        })
        .collect()
}
