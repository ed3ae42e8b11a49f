//! Central's composition root: [`Central::open`] builds the clock, the store, the audit log,
//! the token and site registries, the CA, the lifecycle, the agent channel and the services
//! from configuration, hands each part only what it needs, and starts them;
//! [`Central::shutdown`] drains them. The binary, the simulator and the tests all run this
//! same code.

use std::sync::Arc;

use crate::audit::Auditor;
use crate::ca::{CaError, CertificateAuthority};
use crate::channel::{Channel, ChannelError};
use crate::clock::{Clock, SystemClock};
use crate::config::CentralConfig;
use crate::console::{Console, ConsoleError};
use crate::dns::{DnsPublisher, Updater};
use crate::grpc::ServerIdentity;
use crate::grpc::{Api, ApiStartError};
use crate::lifecycle::{Lifecycle, LifecycleHandle};
use crate::metrics::serve::MetricsParts;
use crate::metrics::store::TimedStore;
use crate::metrics::{Metrics, MetricsError, MetricsServer};
use crate::publisher::{CompileError, Publisher};
use crate::services::{ServiceParts, Services};
use crate::sites::Sites;
use crate::tokens::Tokens;
use meridian_plan::placement::PlannerConfig;
use meridian_store::Tables;
use meridian_store::{SledStore, Store, StoreError};

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
    /// Records written by an older central could not be brought to the current layout.
    #[error("cannot upgrade the stored records to this version's layout")]
    Upgrade(#[source] meridian_store::tables::TableError),
    /// The certificate authority could not be loaded or created.
    #[error("cannot load the certificate authority")]
    Ca(#[from] CaError),
    /// The agent channel could not start.
    #[error("cannot start the agent channel")]
    Channel(#[from] ChannelError),
    /// The network pools are misconfigured.
    #[error("bad [networks] configuration")]
    Networks(#[from] CompileError),
    /// The gRPC API could not start.
    #[error("cannot start the gRPC API")]
    Api(#[from] ApiStartError),
    /// The operator console could not start.
    #[error("cannot start the operator console")]
    Console(#[from] ConsoleError),
    /// The metrics listener could not start.
    #[error("cannot start the metrics listener")]
    Metrics(#[from] MetricsError),
    /// The `[dns]` table is unusable (its secret file changed since it was checked).
    #[error("bad [dns] configuration")]
    Dns(#[source] meridian_common::config::ConfigError),
    /// The endpoint name publisher could not be set up.
    #[error("cannot set up publishing endpoint names")]
    DnsPublisher(#[source] crate::dns::UpdateError),
}

/// A running central.
#[derive(Debug)]
pub struct Central {
    config: CentralConfig,
    store: Arc<dyn Store>,
    ca: Arc<CertificateAuthority>,
    channel: Channel,
    lifecycle: Lifecycle,
    lifecycle_handle: LifecycleHandle,
    api: Api,
    console: Option<Console>,
    dns: Option<DnsPublisher>,
    metrics: Metrics,
    metrics_server: Option<MetricsServer>,
}

impl Central {
    /// Opens central's state and starts its components, on the wall clock.
    pub async fn open(config: CentralConfig) -> Result<Central, CentralError> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Central::open`] on a clock of the caller's: a simulation runs central on the same
    /// accelerated clock as its sites (certificates are still checked against the wall
    /// clock, so a clock set before it fails enrolment).
    pub async fn open_with_clock(
        config: CentralConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Central, CentralError> {
        // The secret file is read again here (the binary checked it with the configuration;
        // a library caller may not have): nothing is opened before it is known to be good.
        let dns = match &config.dns {
            Some(d) => {
                let settings = d.settings().map_err(CentralError::Dns)?;
                let updater = Updater::new(&settings).map_err(CentralError::DnsPublisher)?;
                Some((settings, updater))
            }
            None => None,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|source| CentralError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let path = config.store_dir();
        let store = SledStore::open(&path, &config.store)
            .map_err(|source| CentralError::Store { path, source })?;
        let metrics = Metrics::new();
        // Every transaction of every part is timed (`meridian_store_commit_seconds`).
        let store: Arc<dyn Store> = Arc::new(TimedStore::new(
            Arc::new(store),
            metrics.families().store_commit.clone(),
        ));
        tracing::info!(
            data_dir = %config.data_dir.display(),
            revision = %store.revision(),
            group_commit = config.store.group_commit,
            "central store open"
        );
        let tables = Tables::new(Arc::clone(&store));
        let upgraded = tables
            .upgrade_layout()
            .await
            .map_err(CentralError::Upgrade)?;
        if upgraded > 0 {
            tracing::info!(
                records = upgraded,
                "stored records moved to this version's layout"
            );
        }
        let audit = Auditor::new(tables.clone());
        let tokens = Tokens::new(tables.clone(), audit.clone());
        let sites = Sites::new(tables.clone(), audit.clone());
        let ca = Arc::new(CertificateAuthority::load_or_create(
            &config.ca_dir(),
            clock.now(),
        )?);
        let channel = Channel::start(crate::channel::ChannelParts {
            config: config.channel.clone(),
            tables: tables.clone(),
            ca: Arc::clone(&ca),
            tokens: tokens.clone(),
            audit: audit.clone(),
            clock: Arc::clone(&clock),
            metrics: metrics.clone(),
        })
        .await?;
        let lifecycle_handle = LifecycleHandle::new(PlannerConfig::default());
        lifecycle_handle.set_rtt_max_age(config.placement.rtt_max_age());
        let publisher = Publisher::new(config.networks.clone())?;
        let lifecycle = Lifecycle::start(
            tables.clone(),
            lifecycle_handle.clone(),
            publisher,
            Arc::clone(&clock),
            metrics.clone(),
        );
        // Endpoint names: a background task, started only with a [dns] table.
        let dns_zone = dns.as_ref().map(|(settings, _)| settings.zone.clone());
        let dns = dns.map(|(settings, updater)| {
            DnsPublisher::start_with(tables.clone(), &settings, updater)
        });
        let services = Arc::new(Services::new(ServiceParts {
            config: config.api.clone(),
            dns_zone,
            tables: tables.clone(),
            audit,
            lifecycle: lifecycle_handle.clone(),
            tokens,
            sites,
            ca: Arc::clone(&ca),
            clock: Arc::clone(&clock),
            channel_addresses: channel.advertised(),
        }));
        let identity = ServerIdentity::issue(&ca, clock.now(), &config.api.tls_names)
            .map_err(ApiStartError::Certificate)?;
        let console = if config.console.enabled {
            Some(
                Console::start(
                    &config.console,
                    Arc::clone(&services),
                    tables.clone(),
                    identity.chain.clone(),
                    identity.key.clone_key(),
                )
                .await?,
            )
        } else {
            None
        };
        let api = Api::start(services, &identity, &metrics).await?;
        let metrics_server = if config.metrics.enabled {
            Some(
                MetricsServer::start(
                    &config.metrics,
                    MetricsParts {
                        metrics: metrics.clone(),
                        tables,
                        clock: Arc::clone(&clock),
                        sessions: Box::new(channel.sessions_reader()),
                    },
                )
                .await?,
            )
        } else {
            None
        };
        tracing::info!(
            ca_fingerprint = %hex::encode(ca.fingerprint()),
            channel = %channel.local_addr(),
            api = %api.local_addr(),
            console = %console.as_ref().map_or_else(|| "off".to_owned(), Console::url),
            metrics = %metrics_server.as_ref().map_or_else(|| "off".to_owned(), MetricsServer::url),
            "central is up"
        );
        Ok(Central {
            config,
            store,
            ca,
            channel,
            lifecycle,
            lifecycle_handle,
            api,
            console,
            dns,
            metrics,
            metrics_server,
        })
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

    /// The certificate authority.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The agent channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The gRPC API.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The operator console, unless `console.enabled` is off.
    pub fn console(&self) -> Option<&Console> {
        self.console.as_ref()
    }

    /// What central records for `/metrics` (served or not).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The bound address of `/metrics`, unless `metrics.enabled` is off.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// `http://ADDR/metrics`, unless `metrics.enabled` is off.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_server.as_ref().map(MetricsServer::url)
    }

    /// The reservation lifecycle (dry runs, nudges).
    pub fn lifecycle(&self) -> &LifecycleHandle {
        &self.lifecycle_handle
    }

    /// Stops every component and closes the store once the last user lets go of it. Bounded:
    /// the API drains running calls for up to 5 s, the lifecycle a running pass for up to
    /// [`lifecycle::DRAIN`](crate::lifecycle::DRAIN), the channel its sessions for up to 2 s;
    /// the endpoint name publisher stops at once (an update cut short is sent again at the
    /// next start).
    pub async fn shutdown(self) {
        if let Some(metrics) = self.metrics_server {
            metrics.shutdown().await;
        }
        if let Some(console) = self.console {
            console.shutdown().await;
        }
        self.api.shutdown().await;
        self.lifecycle.shutdown().await;
        if let Some(dns) = self.dns {
            dns.shutdown().await;
        }
        self.channel.shutdown().await;
        let revision = self.store.revision();
        drop(self.store);
        tracing::info!(%revision, "central stopped");
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called (not
/// when the future is first polled), so a binary calls it before starting anything and a
/// signal that arrives during start-up still leads to a clean shutdown.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (interrupt, term) {
                (Ok(mut interrupt), Ok(mut term)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    tracing::warn!("cannot listen for SIGTERM; only Ctrl-C stops central");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
