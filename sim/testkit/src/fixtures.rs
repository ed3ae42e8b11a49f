//! Small typed values tests build over and over.

use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::{Site, SiteIntent};
use meridian_proto::v1 as proto;
use prost::Message;

/// A site ID; panics on an invalid one (tests name valid ones).
pub fn site_id(s: &str) -> SiteId {
    SiteId::parse(s).expect("a valid site id")
}

/// A valid, pending edge site in Frankfurt.
pub fn site_record(id: &str) -> Site {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "tier": "edge",
        "location": {"lat": 50.1, "lon": 8.7},
        "country": "DE",
        "gateway_range": "198.51.100.0/24",
        "price_per_gpu_hour": 1000,
        "state": "pending"
    }))
    .expect("a valid site record")
}

/// An empty intent of `site` at `generation`.
pub fn empty_intent(site: &SiteId, generation: u64) -> SiteIntent {
    SiteIntent::empty(site.clone(), Generation::new(generation))
}

/// An intent of `site` at `generation` with `networks` tenant networks (to give a snapshot
/// some size).
pub fn intent_with_networks(site: &SiteId, generation: u64, networks: usize) -> SiteIntent {
    let networks: Vec<serde_json::Value> = (0..networks)
        .map(|i| {
            serde_json::json!({
                "tenant": format!("tenant-{i}"),
                "vni": 10_000 + i,
                "table": 1_000 + i,
                "subnet": format!("10.{}.{}.0/24", i / 256, i % 256),
                "gateway": format!("10.{}.{}.1", i / 256, i % 256),
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "site": site.as_str(),
        "generation": generation,
        "networks": networks,
    }))
    .expect("a valid intent")
}

/// The intent's snapshot size on the wire (the protobuf `SiteIntent`).
pub fn snapshot_bytes(intent: &SiteIntent) -> usize {
    proto::SiteIntent::from(intent.clone()).encoded_len()
}
