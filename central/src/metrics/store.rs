//! The store commit latency: a [`Store`] that times every transaction of the store it wraps
//! (the sled store's, in central), from submit until the answer (durable, or refused).
//! Reads and watches pass through untouched.

use std::sync::Arc;
use std::time::Instant;

use meridian_store::{
    RangeRequest, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse, Watch,
};
use prometheus_client::metrics::histogram::Histogram;

/// See the module documentation.
#[derive(Debug)]
pub struct TimedStore {
    inner: Arc<dyn Store>,
    commits: Histogram,
}

impl TimedStore {
    /// `inner`, its transactions observed into `commits` (seconds).
    pub fn new(inner: Arc<dyn Store>, commits: Histogram) -> Self {
        TimedStore { inner, commits }
    }
}

#[async_trait::async_trait]
impl Store for TimedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<meridian_store::KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.inner.range(request).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let started = Instant::now();
        let answer = self.inner.txn(txn).await;
        self.commits.observe(started.elapsed().as_secs_f64());
        answer
    }

    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, from).await
    }

    fn revision(&self) -> Revision {
        self.inner.revision()
    }
}
