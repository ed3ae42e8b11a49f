//! Shared storage arrays: NFS volumes for tenants, each with a hard quota and an export policy
//! that admits only the tenant's subnet(s).
//!
//! [`StorageArray`] is the trait the agent holds; [`OntapArray`] ([`ontap`]) implements it over
//! the NetApp ONTAP REST API. Every method converges or reads one volume (or the aggregate),
//! is idempotent, and says what it changed. Retrying is the caller's business:
//! [`StorageError::is_transient`] tells whether trying again may help (a failed array job, a
//! 5xx, a lost connection) or not (bad credentials, no space, a request the array refuses).

pub mod ontap;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use meridian_common::model::Ipv4Net;

pub use ontap::{OntapArray, OntapConfig};

use crate::http_client::TransportError;

/// One volume as the agent wants it on the array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeWant {
    /// The array-side name (`[A-Za-z_][A-Za-z0-9_]{0,202}`), chosen by the caller.
    pub name: String,
    /// Size and hard quota, MiB.
    pub size_mib: u64,
    /// The only clients allowed to mount it (read-write, NFS, sys auth, no root squash
    /// exemption): the tenant's subnet(s).
    pub clients: Vec<Ipv4Net>,
}

/// One volume as the array has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayVolume {
    /// Its name.
    pub name: String,
    /// The array's identifier of it.
    pub uuid: String,
    /// Its size, MiB (rounded down).
    pub size_mib: u64,
    /// The hard limit of its quota rule, MiB (None: no rule, or quotas are off on the volume
    /// so the rule is not enforced).
    pub quota_mib: Option<u64>,
    /// The clients its export policy allows, sorted, without duplicates.
    pub clients: Vec<Ipv4Net>,
}

/// The space of the aggregate volumes are created in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayCapacity {
    /// Its usable size, MiB.
    pub total_mib: u64,
    /// What is not yet taken (by volumes' guarantees or data), MiB.
    pub available_mib: u64,
}

/// A shared storage array serving tenants' NFS volumes.
#[async_trait]
pub trait StorageArray: Send + Sync + fmt::Debug {
    /// The volumes whose name starts with `prefix`.
    async fn volumes(&self, prefix: &str) -> Result<Vec<ArrayVolume>, StorageError>;
    /// Makes the volume exist as wanted: creates it (with its export policy and quota rule), or
    /// converges size / quota / export clients of an existing one; returns what it changed
    /// (empty: nothing). Idempotent; a create that finds the name in use (e.g. an earlier
    /// attempt whose job answer was lost) reads the volume back and converges it.
    async fn ensure_volume(&self, want: &VolumeWant) -> Result<Vec<String>, StorageError>;
    /// Deletes the volume, its quota rule and its export policy; absent is success. Returns
    /// whether anything was deleted.
    async fn delete_volume(&self, name: &str) -> Result<bool, StorageError>;
    /// The aggregate's space.
    async fn capacity(&self) -> Result<ArrayCapacity, StorageError>;
}

/// Why a storage array call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The driver was configured wrongly (URL, missing trust anchor, unknown aggregate).
    #[error("bad storage array configuration: {0}")]
    Config(String),
    /// The TLS configuration could not be built from the trust anchors.
    #[error("TLS set-up for {url} failed")]
    Tls {
        /// The array's URL.
        url: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// What the caller asked for can never be done (a bad volume name, a zero size).
    #[error("invalid volume request: {0}")]
    Invalid(String),
    /// The array could not be reached, or did not answer in time.
    #[error("{method} {path} failed")]
    Transport {
        /// The request method.
        method: String,
        /// The request path and query.
        path: String,
        /// What went wrong.
        #[source]
        source: TransportError,
    },
    /// The array refused the credentials (401) or the user may not do this (403).
    #[error("the array at {url} refused user {user:?} ({status}): {message}")]
    Unauthorized {
        /// The array's URL.
        url: String,
        /// The user.
        user: String,
        /// 401 or 403.
        status: u16,
        /// The array's error text.
        message: String,
    },
    /// The array answered with an error status and ONTAP's `{"error":{"message","code"}}`.
    #[error("{method} {path} answered {status} (code {code}): {message}")]
    Api {
        /// The request method.
        method: String,
        /// The request path and query.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The array's error code (`error.code`; empty when the body had none).
        code: String,
        /// The array's error text.
        message: String,
    },
    /// An asynchronous job of the array ended `failure`.
    #[error("array job {job} ({description}) failed (code {code}): {message}")]
    JobFailed {
        /// The job's uuid.
        job: String,
        /// What the job was doing (`create volume t1_data`).
        description: String,
        /// The job's error code.
        code: String,
        /// The job's error text.
        message: String,
    },
    /// An asynchronous job did not finish in time (it may still finish later).
    #[error("array job {job} ({description}) still {state} after {waited:?}")]
    JobTimeout {
        /// The job's uuid.
        job: String,
        /// What the job was doing.
        description: String,
        /// Its last state.
        state: String,
        /// How long was waited.
        waited: Duration,
    },
    /// The aggregate lacks the space to create or grow the volume.
    #[error("not enough space on the array for {what} (code {code}): {message}")]
    NoSpace {
        /// What needed the space (`create volume t1_data (102400 MiB)`).
        what: String,
        /// The array's error code.
        code: String,
        /// The array's error text.
        message: String,
    },
    /// An answer did not have the shape expected.
    #[error("unexpected answer from the array: {0}")]
    Protocol(String),
}

impl StorageError {
    /// Whether trying the same call again may succeed: failed or timed-out array jobs, 5xx
    /// answers (and 429), lost connections and timeouts. Not: credentials, no space, requests
    /// the array refuses (4xx), bad configuration or requests.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Transport { source, .. } => source.retryable(),
            StorageError::Api { status, .. } => *status >= 500 || *status == 429,
            StorageError::JobFailed { .. } | StorageError::JobTimeout { .. } => true,
            StorageError::Config(_)
            | StorageError::Tls { .. }
            | StorageError::Invalid(_)
            | StorageError::Unauthorized { .. }
            | StorageError::NoSpace { .. }
            | StorageError::Protocol(_) => false,
        }
    }
}

/// Whether `name` is a valid ONTAP volume name: `[A-Za-z_][A-Za-z0-9_]{0,202}`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 203
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_ontap_rules() {
        for ok in ["a", "_x", "t1_data", &"v".repeat(203)] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a b", "a/b", &"v".repeat(204), "é"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn transience_follows_the_kind_of_failure() {
        let api = |status| StorageError::Api {
            method: "GET".into(),
            path: "/".into(),
            status,
            code: "1".into(),
            message: String::new(),
        };
        assert!(api(503).is_transient());
        assert!(!api(400).is_transient());
        assert!(
            StorageError::JobFailed {
                job: "j".into(),
                description: String::new(),
                code: "1".into(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !StorageError::NoSpace {
                what: String::new(),
                code: String::new(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !StorageError::Unauthorized {
                url: String::new(),
                user: String::new(),
                status: 401,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            StorageError::Transport {
                method: "GET".into(),
                path: "/".into(),
                source: TransportError::TimedOut(Duration::from_secs(1)),
            }
            .is_transient()
        );
    }
}
