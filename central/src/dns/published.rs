//! What the publisher put in DNS, kept in the store under `dns/published/<name>`, so a
//! restarted central still withdraws a name whose workload went away while it was down.
//!
//! Each entry is JSON: the addresses and whether the server confirmed them. An entry is
//! written unconfirmed before its update is sent and confirmed after the server accepted it
//! (a withdrawal deletes the entry once accepted). A central that stops between the two
//! finds the unconfirmed entry at its next start and sends that name's update again, so a
//! name is never in DNS without an entry that leads to its withdrawal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use meridian_store::{Expect, RangeRequest, Store, StoreError};
use serde::{Deserialize, Serialize};

use super::names::Records;

/// The store prefix of published names.
pub const PREFIX: &str = "dns/published/";

/// One published name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The A records it holds (or is being given).
    pub addresses: BTreeSet<Ipv4Addr>,
    /// The server accepted the update that gave them.
    pub confirmed: bool,
}

/// The published names in the store.
#[derive(Debug, Clone)]
pub struct PublishedNames {
    store: Arc<dyn Store>,
}

fn key(name: &str) -> Vec<u8> {
    format!("{PREFIX}{name}").into_bytes()
}

impl PublishedNames {
    /// Over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        PublishedNames { store }
    }

    /// Every entry, by name.
    pub async fn load(&self) -> Result<BTreeMap<String, Entry>, StoreError> {
        let response = self.store.range(RangeRequest::prefix(PREFIX)).await?;
        let mut out = BTreeMap::new();
        for kv in response.kvs {
            let name = String::from_utf8_lossy(&kv.key[PREFIX.len()..]).into_owned();
            let entry: Entry =
                serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
                    key: meridian_store::display_key(&kv.key),
                    reason: e.to_string(),
                })?;
            out.insert(name, entry);
        }
        Ok(out)
    }

    /// Writes `name`'s entry.
    pub async fn put(&self, name: &str, entry: &Entry) -> Result<(), StoreError> {
        let value = serde_json::to_vec(entry).expect("an entry serialises");
        self.store.put(&key(name), &value, Expect::Any).await?;
        Ok(())
    }

    /// Removes `name`'s entry.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.store.delete(&key(name), Expect::Any).await?;
        Ok(())
    }
}

/// The confirmed addresses of each entry.
pub fn confirmed(entries: &BTreeMap<String, Entry>) -> Records {
    entries
        .iter()
        .filter(|(_, e)| e.confirmed)
        .map(|(n, e)| (n.clone(), e.addresses.clone()))
        .collect()
}
