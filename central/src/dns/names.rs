//! Endpoint names and the records they should hold: pure, no I/O.
//!
//! A workload with published endpoints is named `<workload-id>.<tenant-id>.<zone>`. Both IDs
//! follow Meridian's ID rule (1 to 63 characters of `a-z`, `0-9` and `-`, not starting or
//! ending with `-`, see `meridian_common::ids`), which is exactly a lower-case DNS label, so
//! an ID is its own label and no mapping is needed; [`label`] checks it anyway and
//! `ids_are_labels` tests the rule. The name holds one A record per distinct public address
//! of the workload's exposures at the sites whose gateways publish them.
//!
//! When does a gateway publish an exposure? A site applies its intents in order and reports
//! the newest generation it applied. An exposure of the site's newest intent is published
//! when the site applied that intent, or when it was already in the newest intent the site
//! was seen applying (it carried it before and still does, so a change elsewhere at the site
//! does not withdraw it while the site applies the change). An exposure the newest intent no
//! longer carries is withdrawn at once: traffic stops going there before the gateway stops
//! forwarding it. After a restart central no longer knows what a site applied before its
//! newest intent; what it had published stands for that ([`SitesView::recall`]).
//! [`SitesView`] keeps what that needs per site and [`SitesView::desired`] turns it into
//! names and address sets. Like the gateway, a name follows its workload's windows: an
//! exposure counts only while an allocation of its workload in the same intent has its window
//! open (or when the workload has no allocation there), so a reservation's name appears when
//! its window opens and goes when it ends ([`SitesView::next_change`] says when to look again).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use meridian_common::ids::{
    Generation, SiteId, TenantId, TimeWindow, Timestamp, WorkloadId, window_state,
};
use meridian_common::model::SiteIntent;

/// What a name is wanted to hold: its addresses (an empty set: withdrawn).
pub type Records = BTreeMap<String, BTreeSet<Ipv4Addr>>;

/// One exposure as DNS sees it: whose it is and where it is published.
type Published = (TenantId, WorkloadId, Ipv4Addr);

/// Whether `s` is a lower-case DNS host label: 1 to 63 characters of `a-z`, `0-9` and `-`,
/// not starting or ending with `-`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The DNS label of an ID. Every valid ID is one (the ID rule is the label rule).
pub fn label(id: &str) -> &str {
    debug_assert!(is_label(id), "{id:?} is not a DNS label");
    id
}

/// The name of a workload's endpoints in `zone` (lower case, no trailing dot).
pub fn endpoint_name(zone: &str, tenant: &TenantId, workload: &WorkloadId) -> String {
    format!(
        "{}.{}.{zone}",
        label(workload.as_str()),
        label(tenant.as_str())
    )
}

/// A domain name in lower case without its trailing dot, checked label by label (host
/// labels: letters, digits and `-`).
pub fn normalize_domain(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("required: a domain name such as endpoints.example.net".into());
    }
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.len() > 253 {
        return Err(format!("{} characters long; at most 253", name.len()));
    }
    for part in name.split('.') {
        if part.is_empty() {
            return Err("has an empty label (two dots in a row, or a leading dot)".into());
        }
        if part.len() > 63 {
            return Err(format!(
                "label {part:?} is {} characters long; at most 63",
                part.len()
            ));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "has {c:?}; labels hold only letters, digits and '-'"
            ));
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err(format!("label {part:?} starts or ends with '-'"));
        }
    }
    Ok(name)
}

/// What DNS needs to know of one site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SiteView {
    /// The newest intent's generation and exposures, if the site has an intent.
    intent: Option<(Generation, BTreeSet<Published>)>,
    /// The newest generation the site reported applied.
    applied: Generation,
    /// The exposures of the newest intent seen applied.
    last_applied: BTreeSet<Published>,
    /// The windows of each workload's allocations in the newest intent.
    windows: BTreeMap<(TenantId, WorkloadId), Vec<Option<TimeWindow>>>,
}

impl SiteView {
    /// After any change: remember the intent's exposures once the site applied it.
    fn settle(&mut self) {
        if let Some((generation, exposures)) = &self.intent
            && *generation <= self.applied
        {
            self.last_applied.clone_from(exposures);
        }
    }

    /// The exposures the site's gateway publishes at `now`.
    fn published(&self, now: Timestamp) -> impl Iterator<Item = &Published> {
        let (applied, carried) = match &self.intent {
            Some((generation, exposures)) => (*generation <= self.applied, Some(exposures)),
            None => (false, None),
        };
        carried
            .into_iter()
            .flatten()
            .filter(move |e| applied || self.last_applied.contains(*e))
            .filter(move |(tenant, workload, _)| {
                self.windows
                    .get(&(tenant.clone(), workload.clone()))
                    .is_none_or(|ws| ws.iter().any(|w| window_state(*w, now).0))
            })
    }

    /// The next instant after `now` at which a window of this site opens or ends.
    fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.windows
            .values()
            .flatten()
            .filter_map(|w| window_state(*w, now).1)
            .min()
    }
}

/// Every site's intent exposures and applied generation, kept up to date from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SitesView {
    sites: BTreeMap<SiteId, SiteView>,
}

impl SitesView {
    /// The site's newest intent.
    pub fn set_intent(&mut self, intent: &SiteIntent) {
        let exposures = intent
            .exposures
            .iter()
            .map(|e| (e.tenant.clone(), e.workload.clone(), e.public_ip))
            .collect();
        let mut windows: BTreeMap<(TenantId, WorkloadId), Vec<Option<TimeWindow>>> =
            BTreeMap::new();
        for a in &intent.allocations {
            windows
                .entry((a.tenant.clone(), a.workload.clone()))
                .or_default()
                .push(a.window);
        }
        let view = self.sites.entry(intent.site.clone()).or_default();
        view.intent = Some((intent.generation, exposures));
        view.windows = windows;
        view.settle();
    }

    /// The site's intent was removed.
    pub fn remove_intent(&mut self, site: &SiteId) {
        if let Some(view) = self.sites.get_mut(site) {
            view.intent = None;
            view.last_applied.clear();
            view.windows.clear();
        }
    }

    /// The newest generation the site reported applied (0: none, or its record is gone).
    pub fn set_applied(&mut self, site: &SiteId, applied: Generation) {
        let view = self.sites.entry(site.clone()).or_default();
        view.applied = applied;
        view.settle();
    }

    /// After a restart (or a reload), for sites that have not applied their newest intent:
    /// what central published before stands for what they applied before, so their names
    /// are not withdrawn while they apply. (A public address belongs to one site's gateway
    /// range, so a published address of a name says which site carried it.)
    pub fn recall(&mut self, zone: &str, published: &Records) {
        for view in self.sites.values_mut() {
            let Some((generation, exposures)) = &view.intent else {
                continue;
            };
            if *generation <= view.applied {
                continue;
            }
            view.last_applied = exposures
                .iter()
                .filter(|(tenant, workload, ip)| {
                    published
                        .get(&endpoint_name(zone, tenant, workload))
                        .is_some_and(|ips| ips.contains(ip))
                })
                .cloned()
                .collect();
        }
    }

    /// The newest generation the site reported applied, as far as this view knows.
    pub fn applied(&self, site: &SiteId) -> Generation {
        self.sites
            .get(site)
            .map_or(Generation::new(0), |v| v.applied)
    }

    /// When a window of some site next opens or ends after `now` (the desired records may
    /// change then without any new intent).
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.sites.values().filter_map(|v| v.next_change(now)).min()
    }

    /// Every name that should exist in `zone` at `now` and its addresses (each set non-empty).
    pub fn desired(&self, zone: &str, now: Timestamp) -> Records {
        let mut out = Records::new();
        for view in self.sites.values() {
            for (tenant, workload, ip) in view.published(now) {
                out.entry(endpoint_name(zone, tenant, workload))
                    .or_default()
                    .insert(*ip);
            }
        }
        out
    }
}

/// The names whose records differ between `desired` and `published`, with what each should
/// hold now (an empty set: withdraw the name).
pub fn changes(desired: &Records, published: &Records) -> Records {
    let mut out = Records::new();
    for (name, want) in desired {
        if published.get(name) != Some(want) {
            out.insert(name.clone(), want.clone());
        }
    }
    for name in published.keys() {
        if !desired.contains_key(name) {
            out.insert(name.clone(), BTreeSet::new());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::check_id;
    use meridian_common::model::{Exposure, Protocol};
    use proptest::prelude::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, last)
    }

    fn exposure(tenant: &str, workload: &str, public: u8) -> Exposure {
        Exposure {
            tenant: TenantId::parse(tenant).unwrap(),
            workload: WorkloadId::parse(workload).unwrap(),
            public_ip: ip(public),
            public_port: 443,
            protocol: Protocol::Tcp,
            backend_ip: Ipv4Addr::new(10, 0, 0, 2),
            backend_port: 8443,
        }
    }

    /// An intent with only a site, a generation and exposures (built from JSON, so fields
    /// added to intents later need no change here).
    fn intent(site: &str, generation: u64, exposures: Vec<Exposure>) -> SiteIntent {
        serde_json::from_value(serde_json::json!({
            "site": site,
            "generation": generation,
            "exposures": exposures,
        }))
        .unwrap()
    }

    fn site(s: &str) -> SiteId {
        SiteId::parse(s).unwrap()
    }

    fn records(pairs: &[(&str, &[u8])]) -> Records {
        pairs
            .iter()
            .map(|(n, ips)| (n.to_string(), ips.iter().map(|l| ip(*l)).collect()))
            .collect()
    }

    const ZONE: &str = "endpoints.example.net";

    #[test]
    fn a_reservations_name_follows_its_window() {
        let t = Timestamp::from_millis;
        let mut i = intent("edge-1", 1, vec![exposure("acme", "wl-1", 10)]);
        i.allocations = serde_json::from_value(serde_json::json!([{
            "workload": "wl-1", "tenant": "acme", "server": "srv-1", "slot": "none",
            "mode": "container", "window": {"start": 1000, "end": 2000},
        }]))
        .unwrap();
        let mut v = SitesView::default();
        v.set_intent(&i);
        v.set_applied(&site("edge-1"), Generation::new(1));
        assert_eq!(v.desired(ZONE, t(500)), Records::new());
        assert_eq!(v.next_change(t(500)), Some(t(1000)));
        assert_eq!(
            v.desired(ZONE, t(1500)),
            records(&[("wl-1.acme.endpoints.example.net", &[10])])
        );
        assert_eq!(v.next_change(t(1500)), Some(t(2000)));
        assert_eq!(v.desired(ZONE, t(2000)), Records::new());
        assert_eq!(v.next_change(t(2000)), None);
    }

    #[test]
    fn names_are_workload_dot_tenant_dot_zone() {
        let name = endpoint_name(
            ZONE,
            &TenantId::parse("acme").unwrap(),
            &WorkloadId::parse("wl-0123abcd").unwrap(),
        );
        assert_eq!(name, "wl-0123abcd.acme.endpoints.example.net");
        let longest = endpoint_name(
            &"z".repeat(super::super::config::MAX_ZONE_LEN),
            &TenantId::parse(&"t".repeat(63)).unwrap(),
            &WorkloadId::parse(&"w".repeat(63)).unwrap(),
        );
        assert_eq!(longest.len(), 253, "the longest name fits a DNS name");
    }

    proptest! {
        /// Every string the ID rule accepts is a DNS label, so IDs need no mapping.
        #[test]
        fn ids_are_labels(s in "[a-z0-9-]{1,63}|[ -~]{0,70}") {
            if check_id("id", &s).is_ok() {
                prop_assert!(is_label(&s), "{s:?}");
            }
            if is_label(&s) {
                prop_assert!(check_id("id", &s).is_ok(), "{s:?}");
            }
        }
    }

    #[test]
    fn domains_are_checked_and_lower_cased() {
        assert_eq!(normalize_domain("Endpoints.Example.NET.").unwrap(), ZONE);
        assert_eq!(normalize_domain("localzone").unwrap(), "localzone");
        for bad in [
            "", ".", "a..b", "a_b.net", "-a.net", "a-.net", "a b.net", ".a.net",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_domain(&format!("{}.net", "a".repeat(64))).is_err());
    }

    #[test]
    fn one_record_per_distinct_address_of_applied_sites() {
        let mut v = SitesView::default();
        // Two replicas behind one address at site a, a third at site b, another tenant's
        // workload at b; site c has not applied its intent yet.
        v.set_intent(&intent(
            "a",
            3,
            vec![exposure("acme", "wl-1", 1), exposure("acme", "wl-1", 1)],
        ));
        v.set_applied(&site("a"), Generation::new(3));
        v.set_intent(&intent(
            "b",
            7,
            vec![exposure("acme", "wl-1", 2), exposure("globex", "wl-2", 3)],
        ));
        v.set_applied(&site("b"), Generation::new(8));
        v.set_intent(&intent("c", 2, vec![exposure("acme", "wl-1", 9)]));
        v.set_applied(&site("c"), Generation::new(1));
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0)),
            records(&[
                ("wl-1.acme.endpoints.example.net", &[1, 2]),
                ("wl-2.globex.endpoints.example.net", &[3]),
            ])
        );
        // Site c applies: its address joins.
        v.set_applied(&site("c"), Generation::new(2));
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0))["wl-1.acme.endpoints.example.net"],
            [ip(1), ip(2), ip(9)].into()
        );
    }

    #[test]
    fn a_change_elsewhere_at_a_site_keeps_what_it_still_carries() {
        let mut v = SitesView::default();
        v.set_intent(&intent("a", 1, vec![exposure("acme", "wl-1", 1)]));
        v.set_applied(&site("a"), Generation::new(1));
        // Generation 2 adds wl-2 and is not applied yet: wl-1 stays, wl-2 waits.
        v.set_intent(&intent(
            "a",
            2,
            vec![exposure("acme", "wl-1", 1), exposure("acme", "wl-2", 2)],
        ));
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0)),
            records(&[("wl-1.acme.endpoints.example.net", &[1])])
        );
        // Generation 3 drops wl-1 (deleted): withdrawn at once, before the site applies it.
        v.set_intent(&intent("a", 3, vec![exposure("acme", "wl-2", 2)]));
        assert_eq!(v.desired(ZONE, Timestamp::from_millis(0)), Records::new());
        v.set_applied(&site("a"), Generation::new(3));
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0)),
            records(&[("wl-2.acme.endpoints.example.net", &[2])])
        );
        // The intent is removed (the site was deleted): nothing left.
        v.remove_intent(&site("a"));
        assert_eq!(v.desired(ZONE, Timestamp::from_millis(0)), Records::new());
    }

    #[test]
    fn after_a_restart_what_was_published_stands_for_what_was_applied() {
        let mut v = SitesView::default();
        // The site applied generation 1 (wl-1, wl-3) before the restart; generation 2 (wl-1,
        // wl-2) is not applied yet. Central had published wl-1 and wl-3 from it.
        v.set_intent(&intent(
            "a",
            2,
            vec![exposure("acme", "wl-1", 1), exposure("acme", "wl-2", 2)],
        ));
        v.set_applied(&site("a"), Generation::new(1));
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0)),
            Records::new(),
            "nothing known to be applied"
        );
        let published = records(&[
            ("wl-1.acme.endpoints.example.net", &[1]),
            ("wl-3.acme.endpoints.example.net", &[3]),
        ]);
        v.recall(ZONE, &published);
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0)),
            records(&[("wl-1.acme.endpoints.example.net", &[1])]),
            "wl-1 stays, wl-2 waits, wl-3 (no longer carried) goes"
        );
        // Applied sites are not affected.
        v.set_applied(&site("a"), Generation::new(2));
        v.recall(ZONE, &Records::new());
        assert_eq!(v.desired(ZONE, Timestamp::from_millis(0)).len(), 2);
    }

    #[test]
    fn an_applied_report_before_the_intent_is_seen_counts() {
        let mut v = SitesView::default();
        v.set_applied(&site("a"), Generation::new(4));
        v.set_intent(&intent("a", 4, vec![exposure("acme", "wl-1", 1)]));
        assert_eq!(v.desired(ZONE, Timestamp::from_millis(0)).len(), 1);
        // The site's channel record is gone (revoked and removed): nothing is applied.
        v.set_applied(&site("a"), Generation::new(0));
        v.set_intent(&intent("a", 5, vec![exposure("acme", "wl-1", 1)]));
        assert_eq!(
            v.desired(ZONE, Timestamp::from_millis(0)).len(),
            1,
            "still carried since generation 4"
        );
    }

    #[test]
    fn changes_lists_new_changed_and_withdrawn_names() {
        let desired = records(&[("a.t.z", &[1]), ("b.t.z", &[2, 3]), ("c.t.z", &[4])]);
        let published = records(&[("b.t.z", &[2]), ("c.t.z", &[4]), ("d.t.z", &[5])]);
        assert_eq!(
            changes(&desired, &published),
            records(&[("a.t.z", &[1]), ("b.t.z", &[2, 3]), ("d.t.z", &[])])
        );
        assert!(changes(&desired, &desired).is_empty());
    }
}
