//! Starting and stopping central as a library, so the binary, the simulator and the tests all
//! run the same code: [`Central::open`] brings up every component, [`Central::shutdown`]
//! drains them.

use std::sync::Arc;

use crate::config::CentralConfig;
use crate::store::tables::Tables;
use crate::store::{SledStore, Store, StoreError};

/// Why central could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store in {path}")]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: StoreError,
    },
}

/// A running central.
#[derive(Debug)]
pub struct Central {
    config: CentralConfig,
    store: Arc<dyn Store>,
}

impl Central {
    /// Opens central's state and starts its components.
    pub async fn open(config: CentralConfig) -> Result<Central, CentralError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| CentralError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let path = config.store_dir();
        let store = SledStore::open(&path, &config.store)
            .map_err(|source| CentralError::Store { path, source })?;
        let store: Arc<dyn Store> = Arc::new(store);
        tracing::info!(
            data_dir = %config.data_dir.display(),
            revision = %store.revision(),
            group_commit = config.store.group_commit,
            "central store open"
        );
        Ok(Central { config, store })
    }

    /// The configuration central runs with.
    pub fn config(&self) -> &CentralConfig {
        &self.config
    }

    /// The raw store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Typed access to central's tables.
    pub fn tables(&self) -> Tables {
        Tables::new(Arc::clone(&self.store))
    }

    /// Stops every component and closes the store once the last user lets go of it.
    pub async fn shutdown(self) {
        let revision = self.store.revision();
        drop(self.store);
        tracing::info!(%revision, "central stopped");
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops central");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
