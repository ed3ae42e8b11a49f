//! Jurisdictions (ISO 3166-1 alpha-2 countries), the named groups of them, and residency
//! rules.
//!
//! A [`Jurisdiction`] is one of the 249 officially assigned ISO 3166-1 alpha-2 codes, upper
//! case; nothing else parses. A [`ResidencyRule`] is a set of [`ResidencyTerm`]s, each a
//! country or a [`JurisdictionGroup`]; an empty rule allows anywhere.
//!
//! One clash needs a convention: `NA` is both Namibia and the "North America" group. As a
//! residency term, `NA` means the group (as the domain model says); Namibia is written
//! `country:NA` (any country may be written that way). A [`Jurisdiction`] on its own (a
//! site's country) is never a group, so `NA` there is Namibia.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every officially assigned ISO 3166-1 alpha-2 code, sorted.
pub const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];
const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];
const EFTA: &[&str] = &["CH", "IS", "LI", "NO"];
const FIVE_EYES: &[&str] = &["AU", "CA", "GB", "NZ", "US"];
const APAC: &[&str] = &[
    // East Asia
    "CN", "HK", "JP", "KP", "KR", "MN", "MO", "TW", // South-east Asia
    "BN", "ID", "KH", "LA", "MM", "MY", "PH", "SG", "TH", "TL", "VN", // South Asia
    "BD", "BT", "IN", "LK", "MV", "NP", "PK", // Oceania
    "AS", "AU", "CC", "CK", "CX", "FJ", "FM", "GU", "KI", "MH", "MP", "NC", "NF", "NR", "NU", "NZ",
    "PF", "PG", "PN", "PW", "SB", "TK", "TO", "TV", "VU", "WF", "WS",
];
const NORTH_AMERICA: &[&str] = &["BM", "CA", "GL", "MX", "PM", "UM", "US"];
const LATAM: &[&str] = &[
    // Mexico and Central America
    "BZ", "CR", "GT", "HN", "MX", "NI", "PA", "SV", // Caribbean
    "AG", "AI", "AW", "BB", "BL", "BQ", "BS", "CU", "CW", "DM", "DO", "GD", "GP", "HT", "JM", "KN",
    "KY", "LC", "MF", "MQ", "MS", "PR", "SX", "TC", "TT", "VC", "VG", "VI", // South America
    "AR", "BO", "BR", "CL", "CO", "EC", "FK", "GF", "GY", "PE", "PY", "SR", "UY", "VE",
];
const MEA: &[&str] = &[
    // Middle East
    "AE", "BH", "IL", "IQ", "IR", "JO", "KW", "LB", "OM", "PS", "QA", "SA", "SY", "TR", "YE",
    // Africa
    "AO", "BF", "BI", "BJ", "BW", "CD", "CF", "CG", "CI", "CM", "CV", "DJ", "DZ", "EG", "EH", "ER",
    "ET", "GA", "GH", "GM", "GN", "GQ", "GW", "KE", "KM", "LR", "LS", "LY", "MA", "MG", "ML", "MR",
    "MU", "MW", "MZ", "NA", "NE", "NG", "RE", "RW", "SC", "SD", "SH", "SL", "SN", "SO", "SS", "ST",
    "SZ", "TD", "TG", "TN", "TZ", "UG", "YT", "ZA", "ZM", "ZW",
];

/// Why a jurisdiction or residency term did not parse. Never echoes long input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JurisdictionError {
    /// Not an officially assigned ISO 3166-1 alpha-2 code.
    #[error("{shown} is not an ISO 3166-1 alpha-2 country code (upper case, e.g. DE)")]
    UnknownCountry {
        /// The input, quoted, or its length when it is long.
        shown: String,
    },
    /// Neither a country code nor a known group.
    #[error(
        "{shown} is neither an ISO 3166-1 alpha-2 country code nor a group \
         (EU, EEA, EFTA, FIVE_EYES, APAC, NA, LATAM, MEA)"
    )]
    UnknownTerm {
        /// The input, quoted, or its length when it is long.
        shown: String,
    },
}

/// Quotes a short input for an error message, or gives only its length when it is long.
pub(crate) fn shown(s: &str) -> String {
    if s.chars().count() <= 32 {
        format!("{s:?}")
    } else {
        format!("a {}-byte value", s.len())
    }
}

/// An ISO 3166-1 alpha-2 country code (`DE`, `FR`, `US`, ...). Valid by construction: it is
/// an index into [`ISO_3166_ALPHA2`], so ordering is alphabetical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Jurisdiction(u8);

impl Jurisdiction {
    /// Parses an upper-case, officially assigned code.
    pub fn parse(s: &str) -> Result<Self, JurisdictionError> {
        match ISO_3166_ALPHA2.binary_search(&s) {
            // The table has 249 entries, so the index fits in a u8.
            Ok(idx) => Ok(Self(idx as u8)),
            Err(_) => Err(JurisdictionError::UnknownCountry { shown: shown(s) }),
        }
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &'static str {
        ISO_3166_ALPHA2[usize::from(self.0)]
    }

    /// Every officially assigned country, in alphabetical order.
    pub fn all() -> impl Iterator<Item = Jurisdiction> {
        (0..ISO_3166_ALPHA2.len()).map(|i| Jurisdiction(i as u8))
    }

    /// Whether this country belongs to `group`.
    pub fn is_in(&self, group: JurisdictionGroup) -> bool {
        group.contains(*self)
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Jurisdiction {
    type Err = JurisdictionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = JurisdictionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Jurisdiction> for String {
    fn from(j: Jurisdiction) -> String {
        j.as_str().to_owned()
    }
}

/// A named group of countries usable in residency rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JurisdictionGroup {
    /// The 27 member states of the European Union.
    #[serde(rename = "EU")]
    Eu,
    /// The European Economic Area: the EU plus Iceland, Liechtenstein and Norway.
    #[serde(rename = "EEA")]
    Eea,
    /// The European Free Trade Association: Iceland, Liechtenstein, Norway, Switzerland.
    #[serde(rename = "EFTA")]
    Efta,
    /// Australia, Canada, the United Kingdom, New Zealand, the United States.
    #[serde(rename = "FIVE_EYES")]
    FiveEyes,
    /// Asia-Pacific: East, South-east and South Asia and Oceania.
    #[serde(rename = "APAC")]
    Apac,
    /// North America: the United States, Canada, Mexico and nearby territories.
    #[serde(rename = "NA")]
    NorthAmerica,
    /// Latin America: Mexico, Central and South America, the Caribbean.
    #[serde(rename = "LATAM")]
    Latam,
    /// The Middle East and Africa.
    #[serde(rename = "MEA")]
    Mea,
}

impl JurisdictionGroup {
    /// Every group.
    pub const ALL: [JurisdictionGroup; 8] = [
        Self::Eu,
        Self::Eea,
        Self::Efta,
        Self::FiveEyes,
        Self::Apac,
        Self::NorthAmerica,
        Self::Latam,
        Self::Mea,
    ];

    /// The group's name as written in residency rules.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eu => "EU",
            Self::Eea => "EEA",
            Self::Efta => "EFTA",
            Self::FiveEyes => "FIVE_EYES",
            Self::Apac => "APAC",
            Self::NorthAmerica => "NA",
            Self::Latam => "LATAM",
            Self::Mea => "MEA",
        }
    }

    /// Parses a group name (exact, upper case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    fn member_lists(self) -> &'static [&'static [&'static str]] {
        match self {
            Self::Eu => &[EU],
            Self::Eea => &[EU, EEA_EXTRA],
            Self::Efta => &[EFTA],
            Self::FiveEyes => &[FIVE_EYES],
            Self::Apac => &[APAC],
            Self::NorthAmerica => &[NORTH_AMERICA],
            Self::Latam => &[LATAM],
            Self::Mea => &[MEA],
        }
    }

    /// Whether `country` is a member.
    pub fn contains(self, country: Jurisdiction) -> bool {
        let code = country.as_str();
        self.member_lists().iter().any(|list| list.contains(&code))
    }

    /// The members, sorted.
    pub fn members(self) -> Vec<Jurisdiction> {
        let mut out: Vec<Jurisdiction> = self
            .member_lists()
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(|c| Jurisdiction::parse(c).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl fmt::Display for JurisdictionGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One term of a residency rule: a country or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ResidencyTerm {
    /// One country.
    Country(Jurisdiction),
    /// A group of countries.
    Group(JurisdictionGroup),
}

impl ResidencyTerm {
    /// Parses a term: a group name, a country code, or `country:XX` (needed for Namibia, whose
    /// code `NA` otherwise means the North America group).
    pub fn parse(s: &str) -> Result<Self, JurisdictionError> {
        if let Some(code) = s.strip_prefix("country:") {
            return Jurisdiction::parse(code).map(Self::Country);
        }
        if let Some(g) = JurisdictionGroup::parse(s) {
            return Ok(Self::Group(g));
        }
        Jurisdiction::parse(s)
            .map(Self::Country)
            .map_err(|_| JurisdictionError::UnknownTerm { shown: shown(s) })
    }

    /// Whether `country` matches this term.
    pub fn matches(&self, country: Jurisdiction) -> bool {
        match self {
            Self::Country(c) => *c == country,
            Self::Group(g) => g.contains(country),
        }
    }
}

impl fmt::Display for ResidencyTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Country(c) if JurisdictionGroup::parse(c.as_str()).is_some() => {
                write!(f, "country:{c}")
            }
            Self::Country(c) => write!(f, "{c}"),
            Self::Group(g) => write!(f, "{g}"),
        }
    }
}

impl FromStr for ResidencyTerm {
    type Err = JurisdictionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ResidencyTerm {
    type Error = JurisdictionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ResidencyTerm> for String {
    fn from(t: ResidencyTerm) -> String {
        t.to_string()
    }
}

/// Where data or workloads may go: a set of terms; empty means anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResidencyRule {
    /// The allowed countries and groups.
    pub terms: BTreeSet<ResidencyTerm>,
}

impl ResidencyRule {
    /// A rule allowing anywhere.
    pub fn anywhere() -> Self {
        Self::default()
    }

    /// A rule from terms.
    pub fn new(terms: impl IntoIterator<Item = ResidencyTerm>) -> Self {
        Self {
            terms: terms.into_iter().collect(),
        }
    }

    /// Parses every term; on failure returns each bad term's index and error.
    pub fn parse<S: AsRef<str>>(terms: &[S]) -> Result<Self, Vec<(usize, JurisdictionError)>> {
        let mut ok = BTreeSet::new();
        let mut bad = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            match ResidencyTerm::parse(t.as_ref()) {
                Ok(term) => {
                    ok.insert(term);
                }
                Err(e) => bad.push((i, e)),
            }
        }
        if bad.is_empty() {
            Ok(Self { terms: ok })
        } else {
            Err(bad)
        }
    }

    /// Whether the rule allows anywhere.
    pub fn is_anywhere(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `country` is allowed: the rule is empty, or a term names it or a group of it.
    pub fn allows(&self, country: Jurisdiction) -> bool {
        self.terms.is_empty() || self.terms.iter().any(|t| t.matches(country))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jurisdiction {
        Jurisdiction::parse(s).unwrap()
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Jurisdiction::all().count(), 249);
        for c in ISO_3166_ALPHA2 {
            assert_eq!(j(c).as_str(), c);
        }
    }

    #[test]
    fn parse_refuses_unassigned_and_hostile() {
        for bad in ["", "de", "D", "DEU", "EU", "UK", "XK", "ZZ", "D\0", "ÄÖ"] {
            assert!(Jurisdiction::parse(bad).is_err(), "{bad:?}");
        }
        let huge = "D".repeat(10 << 20);
        let msg = Jurisdiction::parse(&huge).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn group_members() {
        let cases = [
            ("DE", JurisdictionGroup::Eu, true),
            ("NO", JurisdictionGroup::Eea, true),
            ("NO", JurisdictionGroup::Eu, false),
            ("CH", JurisdictionGroup::Efta, true),
            ("CH", JurisdictionGroup::Eea, false),
            ("CH", JurisdictionGroup::Eu, false),
            ("GB", JurisdictionGroup::Eu, false),
            ("GB", JurisdictionGroup::FiveEyes, true),
            ("FR", JurisdictionGroup::Eea, true),
            ("JP", JurisdictionGroup::Apac, true),
            ("US", JurisdictionGroup::NorthAmerica, true),
            ("BR", JurisdictionGroup::Latam, true),
            ("ZA", JurisdictionGroup::Mea, true),
            ("NA", JurisdictionGroup::Mea, true),
            ("US", JurisdictionGroup::Apac, false),
        ];
        for (c, g, want) in cases {
            assert_eq!(j(c).is_in(g), want, "{c} in {g}");
        }
        assert_eq!(JurisdictionGroup::Eu.members().len(), 27);
        assert_eq!(JurisdictionGroup::Eea.members().len(), 30);
        assert_eq!(JurisdictionGroup::Efta.members().len(), 4);
        assert_eq!(JurisdictionGroup::FiveEyes.members().len(), 5);
        // Every member of every group is an assigned code (parse would have dropped it).
        for g in JurisdictionGroup::ALL {
            let lists: usize = g.member_lists().iter().map(|l| l.len()).sum();
            assert!(g.members().len() <= lists);
            for list in g.member_lists() {
                for c in *list {
                    assert!(Jurisdiction::parse(c).is_ok(), "{c} in {g}");
                }
            }
        }
    }

    #[test]
    fn residency_rules() {
        let rule = ResidencyRule::parse(&["EU", "CH"]).unwrap();
        assert!(rule.allows(j("DE")));
        assert!(rule.allows(j("CH")));
        assert!(!rule.allows(j("NO")));
        assert!(!rule.allows(j("US")));
        assert!(ResidencyRule::anywhere().allows(j("US")));

        let bad = ResidencyRule::parse(&["EU", "XX", "eu", "FIVE_EYES"]).unwrap_err();
        let idx: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![1, 2]);
    }

    #[test]
    fn namibia_and_north_america() {
        assert_eq!(
            ResidencyTerm::parse("NA").unwrap(),
            ResidencyTerm::Group(JurisdictionGroup::NorthAmerica)
        );
        let namibia = ResidencyTerm::parse("country:NA").unwrap();
        assert_eq!(namibia, ResidencyTerm::Country(j("NA")));
        assert_eq!(namibia.to_string(), "country:NA");
        assert_eq!(ResidencyTerm::Country(j("DE")).to_string(), "DE");
        assert!(namibia.matches(j("NA")));
        assert!(!namibia.matches(j("US")));
    }

    #[test]
    fn serde_round_trip() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Doc {
            country: Jurisdiction,
            residency: ResidencyRule,
        }
        let doc: Doc =
            toml::from_str("country = \"DE\"\nresidency = [\"EU\", \"country:NA\", \"CH\"]")
                .unwrap();
        assert_eq!(doc.residency.terms.len(), 3);
        let text = toml::to_string(&doc).unwrap();
        assert_eq!(toml::from_str::<Doc>(&text).unwrap(), doc);
        assert!(toml::from_str::<Doc>("country = \"XX\"\nresidency = []").is_err());
        assert!(toml::from_str::<Doc>("country = \"DE\"\nresidency = [\"MARS\"]").is_err());
    }
}
