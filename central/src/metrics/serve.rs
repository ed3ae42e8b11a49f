//! `/metrics` over plain HTTP (HTTP/1.1 and HTTP/2 without TLS, as Prometheus scrapes), on a
//! listener of its own (`[metrics]`), in the Prometheus text format (version 0.0.4).
//!
//! A scrape refreshes the store-derived gauges when their cache has expired ([`FleetGauges`])
//! and reads the live session count, then encodes every family.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use super::fleet::FleetGauges;
use super::{Metrics, MetricsConfig};
use crate::clock::Clock;
use meridian_store::Tables;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot bind the metrics listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What a scrape reads.
struct Scrape {
    metrics: Metrics,
    registry: Registry,
    fleet: FleetGauges,
    clock: Arc<dyn Clock>,
    sessions: Box<dyn Fn() -> usize + Send + Sync>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Scrape {
    /// The exposition, after refreshing what is read at scrape time.
    async fn render(&self) -> String {
        if let Err(e) = self.fleet.refresh(self.clock.now()).await {
            tracing::warn!(
                error = %meridian_common::telemetry::error_chain(&e),
                "cannot read the fleet for /metrics; serving the previous values"
            );
        }
        let families = self.metrics.families();
        families
            .channel_sessions
            .set(i64::try_from((self.sessions)()).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode /metrics");
        }
        text
    }
}

async fn get_metrics(State(scrape): State<Arc<Scrape>>) -> Response {
    let text = scrape.render().await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; metrics are at /metrics\n",
    )
        .into_response()
}

/// The running listener.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the listener is built from.
pub struct MetricsParts {
    pub metrics: Metrics,
    pub tables: Tables,
    pub clock: Arc<dyn Clock>,
    /// Sites with a live session now ([`crate::channel::Channel::sessions_reader`]).
    pub sessions: Box<dyn Fn() -> usize + Send + Sync>,
}

impl std::fmt::Debug for MetricsParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsParts").finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `config.listen` and serves `/metrics` until [`MetricsServer::shutdown`].
    pub async fn start(
        config: &MetricsConfig,
        parts: MetricsParts,
    ) -> Result<MetricsServer, MetricsError> {
        let bind = |source| MetricsError::Bind {
            addr: config.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(bind)?;
        let local_addr = listener.local_addr().map_err(bind)?;
        let MetricsParts {
            metrics,
            tables,
            clock,
            sessions,
        } = parts;
        let scrape = Arc::new(Scrape {
            registry: metrics.families().registry(),
            fleet: FleetGauges::new(tables, metrics.families().clone(), config.fleet_cache()),
            metrics,
            clock,
            sessions,
        });
        let router = Router::new()
            .route("/metrics", get(get_metrics))
            .fallback(not_found)
            .with_state(scrape);
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.changed().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        tracing::info!(%local_addr, "metrics listening (http, /metrics)");
        Ok(MetricsServer {
            local_addr,
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.local_addr)
    }

    /// Stops serving; a scrape under way gets up to 2 s.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
