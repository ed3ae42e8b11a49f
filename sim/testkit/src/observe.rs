//! What central stored about a site.

use meridian_central::server::Central;
use meridian_common::ids::Generation;
use meridian_common::model::{SiteReport, SiteState};
use meridian_proto::v1 as proto;
use prost::Message;

use crate::fixtures::site_id;

/// The site's state in central's table.
pub async fn site_state(central: &Central, site: &str) -> SiteState {
    central
        .tables()
        .sites()
        .get(&site_id(site))
        .await
        .expect("store")
        .expect("the site exists")
        .record
        .state
}

/// The generation the site's agent last reported applied.
pub async fn applied_at_central(central: &Central, site: &str) -> Generation {
    central
        .channel()
        .site_channel(&site_id(site))
        .await
        .expect("store")
        .applied_generation
}

/// Every report central stored for `site`, in key order.
pub async fn stored_reports(central: &Central, site: &str) -> Vec<SiteReport> {
    central
        .store()
        .range(meridian_store::RangeRequest::prefix(format!(
            "reports/{site}/"
        )))
        .await
        .expect("store")
        .kvs
        .iter()
        .map(|kv| {
            SiteReport::try_from(
                proto::SiteReport::decode(kv.value.as_slice()).expect("a stored report decodes"),
            )
            .expect("a stored report converts")
        })
        .collect()
}
