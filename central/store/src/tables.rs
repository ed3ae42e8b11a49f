//! Typed tables over the [`Store`]: one key prefix per record type, validation before every
//! write, and a record's secondary-index entry written and removed with it. The records
//! themselves, and where each lives, are in [`crate::schema`].
//!
//! Keys are made of validated IDs (which cannot hold `/`), so a key names one record and a
//! parent prefix (`servers/edge-de-0001/`) lists exactly that parent's records.

use std::marker::PhantomData;
use std::sync::Arc;

use meridian_common::convert::ConvertError;
use meridian_common::ids::{
    DatasetId, PoolId, RegionId, ServerId, SiteId, TenantId, TokenId, UserId, WorkloadId,
};
use meridian_common::validate::ValidationError;

use crate::{Expect, Op, RangeRequest, Revision, Store, StoreError, Txn};

/// The part of a key after the table prefix.
pub trait TableKey {
    /// The key path, e.g. `edge-de-0001/srv-0003`.
    fn path(&self) -> String;
}

macro_rules! id_keys {
    ($($id:ty),+) => {$(
        impl TableKey for $id {
            fn path(&self) -> String {
                self.as_str().to_owned()
            }
        }
    )+};
}

id_keys!(
    SiteId, ServerId, TenantId, WorkloadId, DatasetId, RegionId, UserId, TokenId, PoolId
);

impl<A: TableKey, B: TableKey> TableKey for (&A, &B) {
    fn path(&self) -> String {
        format!("{}/{}", self.0.path(), self.1.path())
    }
}

/// Audit sequence numbers, zero-padded so key order is numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditSeq(pub u64);

impl TableKey for AuditSeq {
    fn path(&self) -> String {
        format!("{:020}", self.0)
    }
}

/// A raw key path, for records keyed by something other than typed IDs (token ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(pub String);

impl TableKey for String {
    fn path(&self) -> String {
        self.clone()
    }
}

impl TableKey for KeyPath {
    fn path(&self) -> String {
        self.0.clone()
    }
}

/// Why a stored record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    #[error("not valid protobuf")]
    Protobuf(#[from] prost::DecodeError),
    #[error("does not convert into the model")]
    Convert(#[from] ConvertError),
}

/// A record type stored in its own table.
pub trait Record: Sized + Clone + Send + Sync + 'static {
    /// The table name; keys are `{TABLE}/{key path}`.
    const TABLE: &'static str;
    /// This record's key path.
    fn key_path(&self) -> String;
    /// The stored bytes.
    fn encode(&self) -> Vec<u8>;
    /// Back from stored bytes.
    fn decode(raw: &[u8]) -> Result<Self, DecodeFailure>;
    /// Semantic checks run before every write.
    fn validate(&self) -> Result<(), ValidationError>;
    /// The secondary-index entry (store key, value) that goes with the record at key `path`,
    /// if the table keeps one. It derives from the key path alone (which never changes for a
    /// record), so every create writes it and every delete removes it in the same
    /// transaction: no path that creates a record through [`Table`] can leave it out.
    fn index_entry(_path: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        None
    }
}

/// A record with the revision it was last written at (for compare-and-swap updates).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<R> {
    pub record: R,
    pub revision: Revision,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<R> {
    pub items: Vec<Versioned<R>>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Why a table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The record breaks a validation rule; nothing was written.
    #[error("invalid {table} record {key}")]
    Invalid {
        table: &'static str,
        key: String,
        #[source]
        source: ValidationError,
    },
    /// A create found the key taken.
    #[error("{table}/{key} already exists")]
    AlreadyExists { table: &'static str, key: String },
    /// An update or delete found the record missing.
    #[error("{table}/{key} does not exist")]
    NotFound { table: &'static str, key: String },
    /// An update or delete found the record changed since it was read.
    #[error("{table}/{key} changed since it was read (now at revision {current})")]
    Conflict {
        table: &'static str,
        key: String,
        current: Revision,
    },
    /// A stored record does not decode.
    #[error("stored record {table}/{key} is corrupt")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: DecodeFailure,
    },
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
}

/// Typed access to one table.
pub struct Table<R> {
    store: Arc<dyn Store>,
    record: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Table<R>
where
    R: Record,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("table", &R::TABLE).finish()
    }
}

impl<R> Clone for Table<R> {
    fn clone(&self) -> Self {
        Table {
            store: Arc::clone(&self.store),
            record: PhantomData,
        }
    }
}

impl<R: Record> Table<R> {
    /// The table over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Table {
            store,
            record: PhantomData,
        }
    }

    /// The full store key of a key path.
    pub fn store_key(path: &str) -> Vec<u8> {
        format!("{}/{}", R::TABLE, path).into_bytes()
    }

    /// A record from its stored bytes at key path `path`.
    pub fn decode(path: &str, raw: &[u8]) -> Result<R, TableError> {
        R::decode(raw).map_err(|source| TableError::Corrupt {
            table: R::TABLE,
            key: path.to_owned(),
            source,
        })
    }

    fn checked(record: &R) -> Result<String, TableError> {
        let key = record.key_path();
        record.validate().map_err(|source| TableError::Invalid {
            table: R::TABLE,
            key: key.clone(),
            source,
        })?;
        Ok(key)
    }

    /// The record at `key`, if any.
    pub async fn get(&self, key: &impl TableKey) -> Result<Option<Versioned<R>>, TableError> {
        let path = key.path();
        match self.store.get(&Self::store_key(&path)).await? {
            Some(kv) => Ok(Some(Versioned {
                record: Self::decode(&path, &kv.value)?,
                revision: kv.mod_revision,
            })),
            None => Ok(None),
        }
    }

    /// Stores a new record (and its index entry); fails if its key is taken.
    pub async fn create(&self, record: &R) -> Result<Revision, TableError> {
        let (compares, ops) = Self::create_ops(record)?;
        let txn = Txn {
            compares,
            success: ops,
            failure: Vec::new(),
        };
        let response = self.store.txn(txn).await?;
        if response.succeeded {
            Ok(response.revision)
        } else {
            Err(TableError::AlreadyExists {
                table: R::TABLE,
                key: record.key_path(),
            })
        }
    }

    /// The guards and the writes that create `record` inside a larger transaction: its key
    /// and its index entry's must be absent; the record and its index entry are put.
    pub fn create_ops(record: &R) -> Result<(Vec<super::Compare>, Vec<Op>), TableError> {
        let key = Self::checked(record)?;
        let store_key = Self::store_key(&key);
        let mut compares = vec![crate::Compare::Absent(store_key.clone())];
        let mut ops = vec![Op::Put {
            key: store_key,
            value: record.encode(),
        }];
        if let Some((key, value)) = R::index_entry(&key) {
            compares.push(crate::Compare::Absent(key.clone()));
            ops.push(Op::Put { key, value });
        }
        Ok((compares, ops))
    }

    /// The writes that remove the record at key path `path` and its index entry.
    pub fn delete_ops(path: &str) -> Vec<Op> {
        let mut ops = vec![Op::Delete {
            key: Self::store_key(path),
        }];
        if let Some((key, _)) = R::index_entry(path) {
            ops.push(Op::Delete { key });
        }
        ops
    }

    /// Replaces a record read at `read_at`; fails if it changed or vanished since.
    pub async fn update(&self, record: &R, read_at: Revision) -> Result<Revision, TableError> {
        let key = Self::checked(record)?;
        let result = self
            .store
            .put(
                &Self::store_key(&key),
                &record.encode(),
                Expect::ModRevision(read_at),
            )
            .await;
        self.map_cas(key, result)
    }

    /// Stores a record whether or not its key exists (with its index entry).
    pub async fn upsert(&self, record: &R) -> Result<Revision, TableError> {
        let key = Self::checked(record)?;
        let mut txn = Txn::new().then(Op::Put {
            key: Self::store_key(&key),
            value: record.encode(),
        });
        if let Some((key, value)) = R::index_entry(&key) {
            txn = txn.then(Op::Put { key, value });
        }
        Ok(self.store.txn(txn).await?.revision)
    }

    /// Removes the record at `key` (and its index entry) if it is still at `read_at` (or
    /// unconditionally with `None`); returns whether something was removed.
    pub async fn delete(
        &self,
        key: &impl TableKey,
        read_at: Option<Revision>,
    ) -> Result<bool, TableError> {
        let path = key.path();
        let store_key = Self::store_key(&path);
        let guard = match read_at {
            Some(rev) => crate::Compare::ModRevision(store_key.clone(), rev),
            None => crate::Compare::Exists(store_key.clone()),
        };
        let mut txn = Txn::new().when(guard);
        for op in Self::delete_ops(&path) {
            txn = txn.then(op);
        }
        if self.store.txn(txn).await?.succeeded {
            return Ok(true);
        }
        match (read_at, self.store.get(&store_key).await?) {
            (None, None) => Ok(false),
            (Some(_), None) => Err(TableError::NotFound {
                table: R::TABLE,
                key: path,
            }),
            (_, Some(kv)) => Err(TableError::Conflict {
                table: R::TABLE,
                key: path,
                current: kv.mod_revision,
            }),
        }
    }

    fn map_cas<T>(&self, key: String, result: Result<T, StoreError>) -> Result<T, TableError> {
        match result {
            Err(StoreError::Conflict { found: None, .. }) => Err(TableError::NotFound {
                table: R::TABLE,
                key,
            }),
            Err(StoreError::Conflict {
                found: Some(current),
                ..
            }) => Err(TableError::Conflict {
                table: R::TABLE,
                key,
                current,
            }),
            other => Ok(other?),
        }
    }

    /// A validated write of a record that exists, for a multi-table transaction. A record's
    /// index entry never changes after its create, so this writes none; create new records
    /// with [`Table::create_ops`].
    pub fn put_op(record: &R) -> Result<Op, TableError> {
        let key = Self::checked(record)?;
        Ok(Op::Put {
            key: Self::store_key(&key),
            value: record.encode(),
        })
    }

    /// Records in key order, optionally only under `parent` (a key path prefix such as a site
    /// id for servers), after the key path `after`, at most `limit` (0: all).
    pub async fn list(
        &self,
        parent: Option<&(dyn TableKeyDyn + Sync)>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<R>, TableError> {
        let prefix = match parent {
            Some(p) => format!("{}/{}/", R::TABLE, p.path_dyn()),
            None => format!("{}/", R::TABLE),
        };
        let table_prefix_len = R::TABLE.len() + 1;
        let response = self
            .store
            .range(RangeRequest {
                prefix: prefix.into_bytes(),
                start_after: after.map(|a| Self::store_key(a)),
                limit,
            })
            .await?;
        let mut items = Vec::with_capacity(response.kvs.len());
        for kv in &response.kvs {
            let path = String::from_utf8_lossy(&kv.key[table_prefix_len..]).into_owned();
            items.push(Versioned {
                record: Self::decode(&path, &kv.value)?,
                revision: kv.mod_revision,
            });
        }
        let next = if response.more {
            items.last().map(|v| v.record.key_path())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Every record (or every record under `parent`), following pages of `page_size`.
    pub async fn list_all(
        &self,
        parent: Option<&(dyn TableKeyDyn + Sync)>,
        page_size: usize,
    ) -> Result<Vec<R>, TableError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list(parent, after.as_deref(), page_size).await?;
            all.extend(page.items.into_iter().map(|v| v.record));
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Creates many records in transactions of up to `per_txn` writes each, all-or-nothing per
    /// transaction; every record is validated before anything is written.
    pub async fn create_many(&self, records: &[R], per_txn: usize) -> Result<usize, TableError> {
        let per_txn = per_txn.clamp(1, crate::MAX_TXN_OPS / 4);
        let mut creates = Vec::with_capacity(records.len());
        for record in records {
            creates.push(Self::create_ops(record)?);
        }
        for chunk in creates.chunks(per_txn) {
            let mut txn = Txn::new();
            for (compares, ops) in chunk {
                txn.compares.extend(compares.iter().cloned());
                txn.success.extend(ops.iter().cloned());
            }
            if !self.store.txn(txn).await?.succeeded {
                return Err(TableError::AlreadyExists {
                    table: R::TABLE,
                    key: "(one of a batch)".into(),
                });
            }
        }
        Ok(records.len())
    }
}

/// Object-safe [`TableKey`], for optional parent prefixes.
pub trait TableKeyDyn {
    fn path_dyn(&self) -> String;
}

impl<T: TableKey> TableKeyDyn for T {
    fn path_dyn(&self) -> String {
        self.path()
    }
}
