//! Typed identifiers, names, counters and time.
//!
//! Every ID (`SiteId`, `ServerId`, ...) and every [`Name`] is a DNS-label-like string: 1 to 63
//! characters of `a-z`, `0-9` and `-`, not starting or ending with `-`. A value of one of these
//! types is valid by construction: [`parse`](SiteId::parse), [`FromStr`] and serde
//! deserialisation all check the rule, so holding a `SiteId` means holding a valid one.
//! Errors never echo the input (it may be 10 MB of hostile bytes): they name the broken rule
//! and, where useful, a length or one offending character.
//!
//! [`Generation`] and [`Sequence`] are counters that only grow; [`Timestamp`] is milliseconds
//! since the Unix epoch (UTC); [`TimeWindow`] is a half-open interval `[start, end)` whose
//! `end` is always after its `start`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest allowed ID or name, in characters (a DNS label).
pub const MAX_ID_LEN: usize = 63;

/// Why a string is not a valid ID or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("{kind} must not be empty (use 1 to 63 characters of a-z, 0-9 and '-')")]
    Empty {
        /// What was being parsed (`site id`, `name`, ...).
        kind: &'static str,
    },
    /// The string is longer than [`MAX_ID_LEN`] bytes.
    #[error("{kind} is {len} bytes long, at most 63 are allowed")]
    TooLong {
        /// What was being parsed.
        kind: &'static str,
        /// The length of the input in bytes.
        len: usize,
    },
    /// The string holds a character outside `a-z`, `0-9`, `-`.
    #[error("{kind} has {found:?} at position {position}; only a-z, 0-9 and '-' are allowed")]
    InvalidChar {
        /// What was being parsed.
        kind: &'static str,
        /// The first offending character.
        found: char,
        /// Its character position (0-based).
        position: usize,
    },
    /// The string starts with `-`.
    #[error("{kind} must start with a letter or a digit, not '-'")]
    LeadingHyphen {
        /// What was being parsed.
        kind: &'static str,
    },
    /// The string ends with `-`.
    #[error("{kind} must not end with '-'")]
    TrailingHyphen {
        /// What was being parsed.
        kind: &'static str,
    },
}

/// Checks `s` against the ID rule; `kind` names the ID in the error.
pub fn check_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if let Some((position, found)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(IdError::InvalidChar {
            kind,
            found,
            position,
        });
    }
    if s.starts_with('-') {
        return Err(IdError::LeadingHyphen { kind });
    }
    if s.ends_with('-') {
        return Err(IdError::TrailingHyphen { kind });
    }
    Ok(())
}

/// What every typed ID offers, so code can parse IDs generically (e.g. in validation).
pub trait TypedId: Sized + Clone + Ord + fmt::Display {
    /// Human name of the ID kind, used in error messages (`site id`).
    const KIND: &'static str;
    /// Parses and validates `s`.
    fn parse(s: &str) -> Result<Self, IdError>;
    /// The ID as a string slice.
    fn as_str(&self) -> &str;
}

/// Checks a user ID: `name` (a provider user) or `name@tenant` (a user of that tenant), each
/// part following the ID rule.
pub fn check_user_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    match s.split_once('@') {
        None => check_id(kind, s),
        Some((name, tenant)) => {
            check_id(kind, name)?;
            check_id("tenant part of a user id", tenant)
        }
    }
}

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        typed_id!($(#[$meta])* $name, $kind, check_id);
    };
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates `s` against the ID rule.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                $check($kind, s)?;
                Ok(Self(s.to_owned()))
            }

            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TypedId for $name {
            const KIND: &'static str = $kind;
            fn parse(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
            fn as_str(&self) -> &str {
                $name::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $check($kind, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

typed_id!(
    /// A site (one data centre or edge location).
    SiteId,
    "site id"
);
typed_id!(
    /// A server within a site.
    ServerId,
    "server id"
);
typed_id!(
    /// A tenant (customer) of the cloud.
    TenantId,
    "tenant id"
);
typed_id!(
    /// A workload a tenant submitted.
    WorkloadId,
    "workload id"
);
typed_id!(
    /// A dataset a tenant owns.
    DatasetId,
    "dataset id"
);
typed_id!(
    /// A region: a population of users at a location.
    RegionId,
    "region id"
);
typed_id!(
    /// A user (person or service) acting for a tenant or the provider. User IDs are scoped
    /// per tenant: a tenant's user is `name@tenant`, a provider user a plain `name`, so one
    /// tenant's choice of names never collides with (or reveals) another's.
    UserId,
    "user id",
    check_user_id
);

impl UserId {
    /// The user `name` of `tenant` (`name@tenant`), or the provider user `name`.
    pub fn scoped(name: &str, tenant: Option<&TenantId>) -> Result<UserId, IdError> {
        check_id("user id", name)?;
        Ok(match tenant {
            Some(t) => UserId(format!("{name}@{t}")),
            None => UserId(name.to_owned()),
        })
    }

    /// The tenant part of a tenant user's ID (`None` for a provider user's plain name).
    pub fn tenant_part(&self) -> Option<&str> {
        self.0.split_once('@').map(|(_, t)| t)
    }

    /// The name part (the whole ID for a provider user).
    pub fn name_part(&self) -> &str {
        self.0.split_once('@').map_or(&self.0, |(n, _)| n)
    }
}
typed_id!(
    /// An API token.
    TokenId,
    "token id"
);
typed_id!(
    /// A server pool within a site.
    PoolId,
    "pool id"
);
typed_id!(
    /// A human-chosen name (of a site, workload, tenant, dataset, region or volume); same
    /// rule as the IDs so it can appear in hostnames and resource names.
    Name,
    "name"
);

macro_rules! counter {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Wraps a raw value.
            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The raw value.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The value after this one. Saturates at `u64::MAX` (which a counter incremented
            /// once per microsecond reaches after half a million years) instead of wrapping.
            #[must_use]
            pub const fn next(self) -> Self {
                Self(self.0.saturating_add(1))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

counter!(
    /// Per-site intent generation. Only grows; agents refuse an intent older than theirs.
    /// `0` means "no intent yet"; a real `SiteIntent` has generation `>= 1`.
    Generation
);
counter!(
    /// Per-site report sequence number. Only grows; used for acks and deduplication.
    Sequence
);
counter!(
    /// An operator's server-action request, numbered by central (`>= 1`, fleet-wide, only
    /// grows). The agent does each request at most once.
    RequestId
);

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// Wraps milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant plus `ms` milliseconds, saturating at the ends of the range.
    #[must_use]
    pub const fn saturating_add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later), saturating.
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Why a time window could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeWindowError {
    /// `end` is not after `start`.
    #[error("window end ({end}) must be after its start ({start})")]
    EndNotAfterStart {
        /// The requested start.
        start: Timestamp,
        /// The requested end.
        end: Timestamp,
    },
}

/// A half-open interval `[start, end)`; `end > start` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawTimeWindow", into = "RawTimeWindow")]
pub struct TimeWindow {
    start: Timestamp,
    end: Timestamp,
}

/// The serialised shape of a [`TimeWindow`]; deserialisation goes through
/// [`TimeWindow::new`] so the invariant holds for data read from files too.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeWindow {
    start: Timestamp,
    end: Timestamp,
}

impl TryFrom<RawTimeWindow> for TimeWindow {
    type Error = TimeWindowError;
    fn try_from(raw: RawTimeWindow) -> Result<Self, TimeWindowError> {
        TimeWindow::new(raw.start, raw.end)
    }
}

impl From<TimeWindow> for RawTimeWindow {
    fn from(w: TimeWindow) -> Self {
        RawTimeWindow {
            start: w.start,
            end: w.end,
        }
    }
}

impl TimeWindow {
    /// Builds `[start, end)`; refuses `end <= start`.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, TimeWindowError> {
        if end <= start {
            return Err(TimeWindowError::EndNotAfterStart { start, end });
        }
        Ok(Self { start, end })
    }

    /// First instant inside the window.
    pub const fn start(&self) -> Timestamp {
        self.start
    }

    /// First instant after the window.
    pub const fn end(&self) -> Timestamp {
        self.end
    }

    /// Length in milliseconds (always positive; saturates for absurd windows).
    pub const fn duration_millis(&self) -> i64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether `t` lies in `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether the two windows share at least one instant (touching ends do not overlap).
    pub fn overlaps(&self, other: &TimeWindow) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// Whether two optional windows overlap, where `None` means "always".
pub fn windows_overlap(a: Option<&TimeWindow>, b: Option<&TimeWindow>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.overlaps(b),
        _ => true,
    }
}

/// Whether something with `window` (`None`: always) runs at `now`, and when that next changes
/// by itself: its start while upcoming, its end while running, never once ended or without a
/// window.
pub fn window_state(window: Option<TimeWindow>, now: Timestamp) -> (bool, Option<Timestamp>) {
    match window {
        None => (true, None),
        Some(w) if now < w.start() => (false, Some(w.start())),
        Some(w) if now >= w.end() => (false, None),
        Some(w) => (true, Some(w.end())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_plain_names_or_scoped_to_one_tenant() {
        let acme = TenantId::parse("acme").unwrap();
        let bob = UserId::scoped("bob", Some(&acme)).unwrap();
        assert_eq!(bob.as_str(), "bob@acme");
        assert_eq!(bob.tenant_part(), Some("acme"));
        assert_eq!(bob.name_part(), "bob");
        assert_eq!(UserId::parse("bob@acme").unwrap(), bob);
        let admin = UserId::scoped("admin", None).unwrap();
        assert_eq!((admin.as_str(), admin.tenant_part()), ("admin", None));
        for bad in [
            "bob@",
            "@acme",
            "bob@acme@x",
            "Bob@acme",
            "bob@Acme",
            "bob@ac_me",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
        assert!(UserId::scoped("bob@globex", Some(&acme)).is_err());
        // Other IDs keep the plain rule.
        assert!(TenantId::parse("a@b").is_err());
    }

    #[test]
    fn id_rules() {
        type Check = Option<fn(&IdError) -> bool>;
        let cases: &[(&str, Check)] = &[
            ("a", None),
            ("fra-1", None),
            ("0abc", None),
            (&"a".repeat(63), None),
            ("", Some(|e| matches!(e, IdError::Empty { .. }))),
            ("-a", Some(|e| matches!(e, IdError::LeadingHyphen { .. }))),
            ("a-", Some(|e| matches!(e, IdError::TrailingHyphen { .. }))),
            (
                "Fra",
                Some(|e| matches!(e, IdError::InvalidChar { position: 0, .. })),
            ),
            (
                "a_b",
                Some(|e| matches!(e, IdError::InvalidChar { found: '_', .. })),
            ),
            (
                "a\nb",
                Some(|e| matches!(e, IdError::InvalidChar { found: '\n', .. })),
            ),
            ("a\u{0}", Some(|e| matches!(e, IdError::InvalidChar { .. }))),
            ("é", Some(|e| matches!(e, IdError::InvalidChar { .. }))),
            (
                &"a".repeat(64),
                Some(|e| matches!(e, IdError::TooLong { len: 64, .. })),
            ),
        ];
        for (input, expect) in cases {
            let got = SiteId::parse(input);
            match expect {
                None => assert_eq!(got.expect(input).as_str(), *input),
                Some(check) => assert!(check(&got.expect_err(input)), "{input:?}"),
            }
        }
    }

    #[test]
    fn huge_id_is_refused_without_echo() {
        let huge = "a".repeat(10 * 1024 * 1024);
        let err = WorkloadId::parse(&huge).unwrap_err();
        assert_eq!(
            err,
            IdError::TooLong {
                kind: "workload id",
                len: huge.len()
            }
        );
        assert!(err.to_string().len() < 100);
    }

    #[test]
    fn id_traits() {
        let id: ServerId = "srv-1".parse().unwrap();
        assert_eq!(id.to_string(), "srv-1");
        assert_eq!(<ServerId as TypedId>::KIND, "server id");
        let s: String = id.clone().into();
        assert_eq!(ServerId::try_from(s).unwrap(), id);
    }

    #[test]
    fn id_serde_validates() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct Doc {
            site: SiteId,
        }
        let doc: Doc = toml::from_str("site = \"fra-1\"").unwrap();
        assert_eq!(doc.site.as_str(), "fra-1");
        assert_eq!(toml::to_string(&doc).unwrap().trim(), "site = \"fra-1\"");
        assert!(toml::from_str::<Doc>("site = \"FRA 1\"").is_err());
        assert!(toml::from_str::<Doc>("site = \"\"").is_err());
    }

    #[test]
    fn counters() {
        assert_eq!(Generation::new(1).next(), Generation::new(2));
        assert_eq!(Sequence::new(u64::MAX).next(), Sequence::new(u64::MAX));
        assert!(Generation::new(1) < Generation::new(2));
    }

    #[test]
    fn windows() {
        let t = Timestamp::from_millis;
        assert!(TimeWindow::new(t(10), t(10)).is_err());
        assert!(TimeWindow::new(t(10), t(9)).is_err());
        let w = TimeWindow::new(t(10), t(20)).unwrap();
        assert!(w.contains(t(10)));
        assert!(w.contains(t(19)));
        assert!(!w.contains(t(20)));
        assert!(!w.contains(t(9)));
        let next = TimeWindow::new(t(20), t(30)).unwrap();
        assert!(!w.overlaps(&next));
        assert!(!next.overlaps(&w));
        let mid = TimeWindow::new(t(15), t(25)).unwrap();
        assert!(w.overlaps(&mid) && mid.overlaps(&next));
        assert!(windows_overlap(None, Some(&w)));
        let extreme = TimeWindow::new(t(i64::MIN), t(i64::MAX)).unwrap();
        assert_eq!(extreme.duration_millis(), i64::MAX);
    }

    #[test]
    fn window_serde_validates() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Doc {
            window: TimeWindow,
        }
        let ok: Doc = toml::from_str("window = { start = 1, end = 2 }").unwrap();
        assert_eq!(ok.window.end(), Timestamp(2));
        assert!(toml::from_str::<Doc>("window = { start = 2, end = 2 }").is_err());
        assert!(toml::from_str::<Doc>("window = { start = 1, end = 2, x = 3 }").is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any string either parses to itself and meets the rule, or is refused; no panic.
            #[test]
            fn parse_agrees_with_the_rule(s in "\\PC{0,70}|[a-z0-9-]{0,70}") {
                let rule = !s.is_empty()
                    && s.len() <= 63
                    && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !s.starts_with('-')
                    && !s.ends_with('-');
                match TenantId::parse(&s) {
                    Ok(id) => {
                        prop_assert!(rule);
                        prop_assert_eq!(id.as_str(), s.as_str());
                    }
                    Err(e) => {
                        prop_assert!(!rule);
                        prop_assert!(e.to_string().len() < 120);
                    }
                }
            }
        }
    }
}
