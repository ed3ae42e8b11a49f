//! The static geography the generator places sites and regions on: 40 real countries on five
//! continents, each with its five largest (or best-known) cities.
//!
//! Coordinates are city centres in degrees (WGS 84); populations are rounded city (or urban
//! area) figures, good enough to weight where sites and users go. Every country carries a
//! `weight`, its relative share of sites (roughly the size of its digital economy).
//! Cities are listed largest first within each country.

use meridian_common::model::{GeoPoint, Jurisdiction, JurisdictionGroup};

/// The five continents (in the Olympic sense: the Americas are one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Continent {
    /// Africa.
    Africa,
    /// North, Central and South America.
    Americas,
    /// Asia, including the Middle East.
    Asia,
    /// Europe.
    Europe,
    /// Australia and New Zealand.
    Oceania,
}

impl Continent {
    /// Every continent.
    pub const ALL: [Continent; 5] = [
        Self::Africa,
        Self::Americas,
        Self::Asia,
        Self::Europe,
        Self::Oceania,
    ];

    /// The continent's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Africa => "Africa",
            Self::Americas => "Americas",
            Self::Asia => "Asia",
            Self::Europe => "Europe",
            Self::Oceania => "Oceania",
        }
    }
}

/// A city: where sites and user regions are placed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct City {
    /// Lower-case ASCII slug, usable in names and IDs (`sao-paulo`); unique over the table.
    pub slug: &'static str,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Inhabitants (rounded).
    pub population: u64,
}

impl City {
    /// The city centre as a point.
    pub fn location(&self) -> GeoPoint {
        GeoPoint {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// A country of the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code (`DE`).
    pub code: &'static str,
    /// English name.
    pub name: &'static str,
    /// Its continent.
    pub continent: Continent,
    /// Relative share of the fleet's sites.
    pub weight: u64,
    /// How far (in degrees, each way) sites are scattered around a city.
    pub spread_deg: f64,
    /// Its cities, largest first.
    pub cities: &'static [City],
}

impl Country {
    /// The country as a model jurisdiction.
    pub fn jurisdiction(&self) -> Jurisdiction {
        Jurisdiction::parse(self.code).expect("the geography table holds valid ISO codes")
    }

    /// Lower-case code for IDs (`de`).
    pub fn code_lower(&self) -> String {
        self.code.to_ascii_lowercase()
    }

    /// Whether the country is an EU member state.
    pub fn is_eu(&self) -> bool {
        self.jurisdiction().is_in(JurisdictionGroup::Eu)
    }
}

const fn c(slug: &'static str, lat: f64, lon: f64, population: u64) -> City {
    City {
        slug,
        lat,
        lon,
        population,
    }
}

use Continent::{Africa, Americas, Asia, Europe, Oceania};

const SPREAD: f64 = 0.2;

/// The 40 countries, grouped by continent.
pub static COUNTRIES: [Country; 40] = [
    // ---- Europe: 15 EU members plus GB, NO, CH ----
    Country {
        code: "DE",
        name: "Germany",
        continent: Europe,
        weight: 40,
        spread_deg: SPREAD,
        cities: &[
            c("berlin", 52.520, 13.405, 3_878_000),
            c("hamburg", 53.551, 9.994, 1_906_000),
            c("munich", 48.137, 11.575, 1_512_000),
            c("cologne", 50.938, 6.960, 1_084_000),
            c("frankfurt", 50.110, 8.682, 773_000),
        ],
    },
    Country {
        code: "FR",
        name: "France",
        continent: Europe,
        weight: 35,
        spread_deg: SPREAD,
        cities: &[
            c("paris", 48.857, 2.352, 2_103_000),
            c("marseille", 43.296, 5.370, 873_000),
            c("lyon", 45.764, 4.836, 522_000),
            c("toulouse", 43.605, 1.444, 504_000),
            c("nice", 43.710, 7.262, 342_000),
        ],
    },
    Country {
        code: "IT",
        name: "Italy",
        continent: Europe,
        weight: 25,
        spread_deg: SPREAD,
        cities: &[
            c("rome", 41.903, 12.496, 2_750_000),
            c("milan", 45.464, 9.190, 1_371_000),
            c("naples", 40.852, 14.268, 909_000),
            c("turin", 45.070, 7.687, 848_000),
            c("palermo", 38.116, 13.361, 630_000),
        ],
    },
    Country {
        code: "ES",
        name: "Spain",
        continent: Europe,
        weight: 22,
        spread_deg: SPREAD,
        cities: &[
            c("madrid", 40.417, -3.704, 3_332_000),
            c("barcelona", 41.385, 2.173, 1_660_000),
            c("valencia", 39.470, -0.376, 807_000),
            c("seville", 37.389, -5.984, 681_000),
            c("zaragoza", 41.649, -0.889, 675_000),
        ],
    },
    Country {
        code: "NL",
        name: "Netherlands",
        continent: Europe,
        weight: 18,
        spread_deg: 0.1,
        cities: &[
            c("amsterdam", 52.368, 4.904, 931_000),
            c("rotterdam", 51.924, 4.478, 664_000),
            c("the-hague", 52.070, 4.300, 562_000),
            c("utrecht", 52.091, 5.122, 374_000),
            c("eindhoven", 51.441, 5.470, 239_000),
        ],
    },
    Country {
        code: "PL",
        name: "Poland",
        continent: Europe,
        weight: 15,
        spread_deg: SPREAD,
        cities: &[
            c("warsaw", 52.230, 21.012, 1_863_000),
            c("krakow", 50.065, 19.945, 804_000),
            c("wroclaw", 51.108, 17.039, 674_000),
            c("lodz", 51.759, 19.456, 658_000),
            c("poznan", 52.406, 16.925, 541_000),
        ],
    },
    Country {
        code: "SE",
        name: "Sweden",
        continent: Europe,
        weight: 10,
        spread_deg: SPREAD,
        cities: &[
            c("stockholm", 59.329, 18.069, 984_000),
            c("gothenburg", 57.709, 11.975, 607_000),
            c("malmo", 55.605, 13.004, 362_000),
            c("uppsala", 59.859, 17.639, 242_000),
            c("vasteras", 59.611, 16.545, 128_000),
        ],
    },
    Country {
        code: "BE",
        name: "Belgium",
        continent: Europe,
        weight: 8,
        spread_deg: 0.1,
        cities: &[
            c("brussels", 50.850, 4.352, 1_235_000),
            c("antwerp", 51.219, 4.402, 536_000),
            c("ghent", 51.054, 3.717, 265_000),
            c("charleroi", 50.411, 4.444, 202_000),
            c("liege", 50.633, 5.567, 197_000),
        ],
    },
    Country {
        code: "AT",
        name: "Austria",
        continent: Europe,
        weight: 7,
        spread_deg: SPREAD,
        cities: &[
            c("vienna", 48.208, 16.373, 2_005_000),
            c("graz", 47.071, 15.439, 298_000),
            c("linz", 48.306, 14.286, 210_000),
            c("salzburg", 47.810, 13.055, 157_000),
            c("innsbruck", 47.269, 11.404, 131_000),
        ],
    },
    Country {
        code: "IE",
        name: "Ireland",
        continent: Europe,
        weight: 8,
        spread_deg: SPREAD,
        cities: &[
            c("dublin", 53.350, -6.260, 1_263_000),
            c("cork", 51.899, -8.476, 224_000),
            c("limerick", 52.668, -8.630, 102_000),
            c("galway", 53.271, -9.057, 85_000),
            c("waterford", 52.259, -7.110, 60_000),
        ],
    },
    Country {
        code: "FI",
        name: "Finland",
        continent: Europe,
        weight: 5,
        spread_deg: SPREAD,
        cities: &[
            c("helsinki", 60.170, 24.938, 674_000),
            c("espoo", 60.205, 24.652, 310_000),
            c("tampere", 61.498, 23.761, 250_000),
            c("vantaa", 60.294, 25.040, 242_000),
            c("oulu", 65.012, 25.468, 214_000),
        ],
    },
    Country {
        code: "DK",
        name: "Denmark",
        continent: Europe,
        weight: 5,
        spread_deg: 0.1,
        cities: &[
            c("copenhagen", 55.676, 12.568, 660_000),
            c("aarhus", 56.163, 10.204, 290_000),
            c("odense", 55.404, 10.402, 182_000),
            c("aalborg", 57.048, 9.919, 120_000),
            c("esbjerg", 55.476, 8.459, 72_000),
        ],
    },
    Country {
        code: "PT",
        name: "Portugal",
        continent: Europe,
        weight: 5,
        spread_deg: 0.1,
        cities: &[
            c("lisbon", 38.722, -9.139, 545_000),
            c("porto", 41.158, -8.629, 232_000),
            c("braga", 41.551, -8.428, 193_000),
            c("coimbra", 40.203, -8.410, 140_000),
            c("faro", 37.019, -7.930, 64_000),
        ],
    },
    Country {
        code: "CZ",
        name: "Czechia",
        continent: Europe,
        weight: 5,
        spread_deg: SPREAD,
        cities: &[
            c("prague", 50.076, 14.438, 1_357_000),
            c("brno", 49.195, 16.607, 398_000),
            c("ostrava", 49.820, 18.262, 284_000),
            c("plzen", 49.738, 13.373, 175_000),
            c("liberec", 50.767, 15.056, 104_000),
        ],
    },
    Country {
        code: "GR",
        name: "Greece",
        continent: Europe,
        weight: 4,
        spread_deg: 0.1,
        cities: &[
            c("athens", 37.984, 23.728, 664_000),
            c("thessaloniki", 40.640, 22.944, 325_000),
            c("heraklion", 35.339, 25.144, 211_000),
            c("patras", 38.246, 21.735, 168_000),
            c("larissa", 39.639, 22.419, 145_000),
        ],
    },
    Country {
        code: "GB",
        name: "United Kingdom",
        continent: Europe,
        weight: 40,
        spread_deg: SPREAD,
        cities: &[
            c("london", 51.507, -0.128, 8_982_000),
            c("birmingham", 52.486, -1.890, 1_145_000),
            c("leeds", 53.801, -1.549, 793_000),
            c("glasgow", 55.864, -4.252, 635_000),
            c("manchester", 53.481, -2.243, 553_000),
        ],
    },
    Country {
        code: "NO",
        name: "Norway",
        continent: Europe,
        weight: 5,
        spread_deg: SPREAD,
        cities: &[
            c("oslo", 59.914, 10.752, 709_000),
            c("bergen", 60.391, 5.322, 286_000),
            c("trondheim", 63.431, 10.395, 212_000),
            c("stavanger", 58.970, 5.733, 146_000),
            c("tromso", 69.649, 18.956, 77_000),
        ],
    },
    Country {
        code: "CH",
        name: "Switzerland",
        continent: Europe,
        weight: 8,
        spread_deg: 0.1,
        cities: &[
            c("zurich", 47.377, 8.541, 421_000),
            c("geneva", 46.204, 6.143, 203_000),
            c("basel", 47.560, 7.588, 178_000),
            c("lausanne", 46.520, 6.633, 140_000),
            c("bern", 46.948, 7.447, 134_000),
        ],
    },
    // ---- Americas ----
    Country {
        code: "US",
        name: "United States",
        continent: Americas,
        weight: 150,
        spread_deg: 0.3,
        cities: &[
            c("new-york", 40.713, -74.006, 8_336_000),
            c("los-angeles", 34.052, -118.244, 3_898_000),
            c("chicago", 41.878, -87.630, 2_746_000),
            c("houston", 29.760, -95.370, 2_304_000),
            c("phoenix", 33.448, -112.074, 1_608_000),
        ],
    },
    Country {
        code: "CA",
        name: "Canada",
        continent: Americas,
        weight: 25,
        spread_deg: SPREAD,
        cities: &[
            c("toronto", 43.653, -79.383, 2_794_000),
            c("montreal", 45.502, -73.567, 1_762_000),
            c("calgary", 51.045, -114.072, 1_306_000),
            c("ottawa", 45.421, -75.697, 1_017_000),
            c("vancouver", 49.283, -123.121, 662_000),
        ],
    },
    Country {
        code: "MX",
        name: "Mexico",
        continent: Americas,
        weight: 20,
        spread_deg: SPREAD,
        cities: &[
            c("mexico-city", 19.433, -99.133, 9_209_000),
            c("tijuana", 32.515, -117.038, 1_922_000),
            c("puebla", 19.041, -98.206, 1_692_000),
            c("guadalajara", 20.659, -103.350, 1_385_000),
            c("monterrey", 25.686, -100.316, 1_142_000),
        ],
    },
    Country {
        code: "BR",
        name: "Brazil",
        continent: Americas,
        weight: 30,
        spread_deg: SPREAD,
        cities: &[
            c("sao-paulo", -23.551, -46.633, 12_325_000),
            c("rio-de-janeiro", -22.907, -43.173, 6_748_000),
            c("brasilia", -15.794, -47.882, 3_094_000),
            c("salvador", -12.978, -38.502, 2_886_000),
            c("fortaleza", -3.732, -38.527, 2_703_000),
        ],
    },
    Country {
        code: "AR",
        name: "Argentina",
        continent: Americas,
        weight: 8,
        spread_deg: SPREAD,
        cities: &[
            c("buenos-aires", -34.604, -58.382, 3_075_000),
            c("cordoba", -31.420, -64.189, 1_391_000),
            c("rosario", -32.947, -60.639, 1_276_000),
            c("mendoza", -32.890, -68.845, 1_000_000),
            c("la-plata", -34.921, -57.955, 772_000),
        ],
    },
    Country {
        code: "CL",
        name: "Chile",
        continent: Americas,
        weight: 6,
        spread_deg: SPREAD,
        cities: &[
            c("santiago", -33.449, -70.669, 6_310_000),
            c("antofagasta", -23.650, -70.400, 361_000),
            c("valparaiso", -33.047, -71.613, 296_000),
            c("temuco", -38.735, -72.590, 282_000),
            c("concepcion", -36.827, -73.050, 224_000),
        ],
    },
    Country {
        code: "CO",
        name: "Colombia",
        continent: Americas,
        weight: 8,
        spread_deg: SPREAD,
        cities: &[
            c("bogota", 4.711, -74.072, 7_412_000),
            c("medellin", 6.244, -75.581, 2_533_000),
            c("cali", 3.452, -76.532, 2_228_000),
            c("barranquilla", 10.964, -74.796, 1_274_000),
            c("cartagena", 10.391, -75.479, 914_000),
        ],
    },
    // ---- Asia ----
    Country {
        code: "JP",
        name: "Japan",
        continent: Asia,
        weight: 50,
        spread_deg: SPREAD,
        cities: &[
            c("tokyo", 35.676, 139.650, 13_960_000),
            c("yokohama", 35.444, 139.638, 3_777_000),
            c("osaka", 34.694, 135.502, 2_752_000),
            c("nagoya", 35.181, 136.906, 2_332_000),
            c("sapporo", 43.062, 141.354, 1_973_000),
        ],
    },
    Country {
        code: "KR",
        name: "South Korea",
        continent: Asia,
        weight: 25,
        spread_deg: 0.1,
        cities: &[
            c("seoul", 37.566, 126.978, 9_776_000),
            c("busan", 35.180, 129.075, 3_429_000),
            c("incheon", 37.456, 126.705, 2_948_000),
            c("daegu", 35.871, 128.601, 2_418_000),
            c("daejeon", 36.351, 127.385, 1_475_000),
        ],
    },
    Country {
        code: "SG",
        name: "Singapore",
        continent: Asia,
        weight: 12,
        spread_deg: 0.02,
        cities: &[
            c("singapore", 1.290, 103.852, 1_200_000),
            c("tampines", 1.354, 103.945, 274_000),
            c("jurong-west", 1.340, 103.705, 260_000),
            c("woodlands", 1.436, 103.786, 255_000),
            c("sengkang", 1.391, 103.895, 249_000),
        ],
    },
    Country {
        code: "IN",
        name: "India",
        continent: Asia,
        weight: 45,
        spread_deg: SPREAD,
        cities: &[
            c("mumbai", 19.076, 72.878, 12_442_000),
            c("delhi", 28.704, 77.102, 11_034_000),
            c("bengaluru", 12.972, 77.595, 8_443_000),
            c("hyderabad", 17.385, 78.487, 6_993_000),
            c("chennai", 13.083, 80.271, 4_646_000),
        ],
    },
    Country {
        code: "ID",
        name: "Indonesia",
        continent: Asia,
        weight: 18,
        spread_deg: 0.1,
        cities: &[
            c("jakarta", -6.208, 106.846, 10_562_000),
            c("surabaya", -7.250, 112.769, 2_874_000),
            c("bandung", -6.917, 107.619, 2_444_000),
            c("medan", 3.595, 98.672, 2_435_000),
            c("semarang", -6.967, 110.420, 1_653_000),
        ],
    },
    Country {
        code: "MY",
        name: "Malaysia",
        continent: Asia,
        weight: 8,
        spread_deg: 0.1,
        cities: &[
            c("kuala-lumpur", 3.139, 101.687, 1_982_000),
            c("johor-bahru", 1.493, 103.741, 858_000),
            c("ipoh", 4.598, 101.090, 759_000),
            c("george-town", 5.414, 100.329, 708_000),
            c("kuching", 1.553, 110.359, 570_000),
        ],
    },
    Country {
        code: "AE",
        name: "United Arab Emirates",
        continent: Asia,
        weight: 8,
        spread_deg: 0.1,
        cities: &[
            c("dubai", 25.205, 55.271, 3_331_000),
            c("abu-dhabi", 24.454, 54.377, 1_483_000),
            c("sharjah", 25.346, 55.421, 1_400_000),
            c("al-ain", 24.207, 55.745, 766_000),
            c("ajman", 25.405, 55.513, 490_000),
        ],
    },
    Country {
        code: "IL",
        name: "Israel",
        continent: Asia,
        weight: 6,
        spread_deg: 0.05,
        cities: &[
            c("jerusalem", 31.769, 35.216, 936_000),
            c("tel-aviv", 32.085, 34.782, 460_000),
            c("haifa", 32.794, 34.990, 285_000),
            c("rishon-lezion", 31.973, 34.789, 254_000),
            c("petah-tikva", 32.084, 34.887, 247_000),
        ],
    },
    Country {
        code: "SA",
        name: "Saudi Arabia",
        continent: Asia,
        weight: 10,
        spread_deg: SPREAD,
        cities: &[
            c("riyadh", 24.713, 46.675, 7_676_000),
            c("jeddah", 21.486, 39.193, 3_751_000),
            c("mecca", 21.389, 39.857, 2_042_000),
            c("medina", 24.525, 39.569, 1_411_000),
            c("dammam", 26.421, 50.089, 1_386_000),
        ],
    },
    // ---- Africa ----
    Country {
        code: "ZA",
        name: "South Africa",
        continent: Africa,
        weight: 10,
        spread_deg: SPREAD,
        cities: &[
            c("johannesburg", -26.204, 28.047, 5_635_000),
            c("cape-town", -33.925, 18.424, 4_618_000),
            c("durban", -29.858, 31.022, 3_442_000),
            c("pretoria", -25.748, 28.229, 2_473_000),
            c("gqeberha", -33.961, 25.602, 1_152_000),
        ],
    },
    Country {
        code: "NG",
        name: "Nigeria",
        continent: Africa,
        weight: 8,
        spread_deg: SPREAD,
        cities: &[
            c("lagos", 6.524, 3.379, 15_388_000),
            c("kano", 12.002, 8.592, 4_103_000),
            c("ibadan", 7.378, 3.947, 3_649_000),
            c("abuja", 9.076, 7.399, 3_464_000),
            c("port-harcourt", 4.816, 7.050, 1_865_000),
        ],
    },
    Country {
        code: "KE",
        name: "Kenya",
        continent: Africa,
        weight: 4,
        spread_deg: SPREAD,
        cities: &[
            c("nairobi", -1.292, 36.822, 4_397_000),
            c("mombasa", -4.043, 39.668, 1_208_000),
            c("kisumu", -0.092, 34.768, 610_000),
            c("nakuru", -0.303, 36.080, 570_000),
            c("eldoret", 0.514, 35.270, 475_000),
        ],
    },
    Country {
        code: "EG",
        name: "Egypt",
        continent: Africa,
        weight: 8,
        spread_deg: 0.1,
        cities: &[
            c("cairo", 30.044, 31.236, 9_540_000),
            c("alexandria", 31.200, 29.919, 5_200_000),
            c("giza", 30.013, 31.209, 4_367_000),
            c("shubra-el-kheima", 30.129, 31.242, 1_165_000),
            c("port-said", 31.265, 32.302, 750_000),
        ],
    },
    // ---- Oceania ----
    Country {
        code: "AU",
        name: "Australia",
        continent: Oceania,
        weight: 20,
        spread_deg: SPREAD,
        cities: &[
            c("sydney", -33.869, 151.209, 5_312_000),
            c("melbourne", -37.814, 144.963, 5_078_000),
            c("brisbane", -27.470, 153.026, 2_560_000),
            c("perth", -31.950, 115.860, 2_118_000),
            c("adelaide", -34.929, 138.601, 1_387_000),
        ],
    },
    Country {
        code: "NZ",
        name: "New Zealand",
        continent: Oceania,
        weight: 4,
        spread_deg: SPREAD,
        cities: &[
            c("auckland", -36.848, 174.763, 1_658_000),
            c("christchurch", -43.532, 172.636, 381_000),
            c("wellington", -41.287, 174.776, 215_000),
            c("hamilton", -37.787, 175.280, 178_000),
            c("tauranga", -37.687, 176.166, 155_000),
        ],
    },
];

/// The country with ISO code `code` (`DE`), if it is in the table.
pub fn country(code: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.code == code)
}

/// The table entry for `j`, if the fleet has that country.
pub fn country_of(j: Jurisdiction) -> Option<&'static Country> {
    country(j.as_str())
}

/// Every city of the table, with its country, in table order.
pub fn cities() -> impl Iterator<Item = (&'static Country, &'static City)> {
    COUNTRIES
        .iter()
        .flat_map(|country| country.cities.iter().map(move |city| (country, city)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use meridian_common::ids::Name;

    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(COUNTRIES.len(), 40);
        let codes: BTreeSet<_> = COUNTRIES.iter().map(|c| c.code).collect();
        assert_eq!(codes.len(), 40, "country codes are unique");
        let continents: BTreeSet<_> = COUNTRIES.iter().map(|c| c.continent).collect();
        assert_eq!(continents.len(), 5);
        let eu = COUNTRIES.iter().filter(|c| c.is_eu()).count();
        assert!(eu >= 12, "{eu} EU members");
        for code in [
            "US", "CA", "BR", "MX", "JP", "KR", "SG", "IN", "AU", "ZA", "AE",
        ] {
            assert!(country(code).is_some(), "{code}");
        }
        let mut slugs = BTreeSet::new();
        for country in &COUNTRIES {
            let _ = country.jurisdiction();
            assert!(country.weight > 0);
            assert!(country.spread_deg > 0.0 && country.spread_deg <= 0.5);
            assert_eq!(country.cities.len(), 5, "{}", country.code);
            assert!(
                country
                    .cities
                    .windows(2)
                    .all(|w| w[0].population >= w[1].population),
                "{} cities are listed largest first",
                country.code
            );
            for city in country.cities {
                assert!(slugs.insert(city.slug), "duplicate city {}", city.slug);
                Name::parse(city.slug).unwrap();
                assert!(city.location().is_valid(), "{}", city.slug);
                assert!(city.population > 0);
            }
        }
        assert_eq!(cities().count(), 200);
    }
}
