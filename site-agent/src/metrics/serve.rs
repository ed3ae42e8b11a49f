//! `/metrics` over plain HTTP/1.1 (hyper), in the Prometheus text format (version 0.0.4).
//! A scrape reads the GPUs (NVML) and the report buffer first, then encodes every family;
//! scrapes are answered one at a time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use meridian_drivers::gpu::GpuInventory;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::task::{JoinHandle, JoinSet};

use super::gpus::GpuGauges;
use super::reconcile::ReconcileMetrics;
use super::store::ReportBuffer;
use crate::reconcile::SiteReconciler;
use crate::store::AgentStore;

/// Prefix of every series the agent exports.
pub const PREFIX: &str = "meridian_agent";

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A request's headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/metrics` reads.
#[derive(Debug, Clone)]
pub struct MetricsSources {
    /// The agent's store (its report buffer).
    pub store: AgentStore,
    /// The site reconciler, if the agent runs one: its families, and the GPU drivers of its
    /// servers.
    pub reconciler: Option<SiteReconciler>,
}

/// One scrape's surroundings.
struct Scrape {
    registry: Registry,
    gpus: GpuGauges,
    drivers: Vec<(String, Arc<dyn GpuInventory>)>,
    /// Held through a scrape: one at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Scrape {
    fn new(sources: MetricsSources) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(ReportBuffer(sources.store)));
        let reconcile = sources
            .reconciler
            .as_ref()
            .map_or_else(ReconcileMetrics::default, |r| r.metrics().clone());
        reconcile.register(&mut registry);
        let gpus = GpuGauges::default();
        gpus.register(&mut registry);
        let drivers = sources
            .reconciler
            .iter()
            .flat_map(|r| r.specs())
            .filter_map(|s| Some((s.id.to_string(), Arc::clone(s.drivers.gpus.as_ref()?))))
            .collect();
        Scrape {
            registry,
            gpus,
            drivers,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    async fn render(&self) -> String {
        let _one = self.lock.lock().await;
        self.gpus.refresh(&self.drivers).await;
        let mut text = String::with_capacity(8 * 1024);
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode /metrics");
        }
        text
    }
}

async fn answer(
    scrape: Arc<Scrape>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = if request.uri().path() != "/metrics" {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found; metrics are at /metrics\n",
            )))
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD")
            .body(Full::new(Bytes::new()))
    } else {
        Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(scrape.render().await)))
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// The running listener.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `listen` and serves `/metrics` from `sources` until [`MetricsServer::shutdown`].
    pub async fn start(
        listen: SocketAddr,
        sources: MetricsSources,
    ) -> std::io::Result<MetricsServer> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let scrape = Arc::new(Scrape::new(sources));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    accepted = listener.accept() => {
                        let (tcp, _) = match accepted {
                            Ok(a) => a,
                            Err(e) => {
                                tracing::warn!(error = %e, "metrics accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let scrape = Arc::clone(&scrape);
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                answer(Arc::clone(&scrape), request)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(HEADER_TIMEOUT)
                                .serve_connection(TokioIo::new(tcp), service)
                                .await;
                        });
                    }
                }
            }
            connections.abort_all();
            while connections.join_next().await.is_some() {}
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

    /// Stops serving (connections are closed).
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
