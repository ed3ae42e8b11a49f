//! Binding and serving the API: TLS from central's CA, HTTP/2 limits, reflection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_proto::v1::cost_service_server::CostServiceServer;
use meridian_proto::v1::fleet_service_server::FleetServiceServer;
use meridian_proto::v1::placement_service_server::PlacementServiceServer;
use meridian_proto::v1::tenant_service_server::TenantServiceServer;
use meridian_proto::v1::usage_service_server::UsageServiceServer;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::cost::Costs;
use super::fleet::Fleet;
use super::placement::Placements;
use super::tenants::Tenants;
use super::usage::Usage;
use crate::services::Services;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("cannot bind the API listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot issue the API's TLS certificate")]
    Certificate(#[from] crate::ca::CaError),
    #[error("cannot configure the API server: {0}")]
    Server(String),
}

/// Central's server certificate chain and key, issued once at start by its CA for the API and
/// the console alike.
#[derive(Debug)]
pub struct ServerIdentity {
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// A certificate naming localhost, 127.0.0.1, ::1 and `names`, from `ca` at `now`.
    pub fn issue(
        ca: &crate::ca::CertificateAuthority,
        now: meridian_common::ids::Timestamp,
        names: &[String],
    ) -> Result<Self, crate::ca::CaError> {
        let mut all = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        all.extend(names.iter().cloned());
        let (chain, key) = ca.issue_server_cert_for(now, &all)?;
        Ok(ServerIdentity { chain, key })
    }
}

/// The running API.
#[derive(Debug)]
pub struct Api {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
    services: Arc<Services>,
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// tonic refuses a message over `max_decoding_message_size` before decoding it, but answers
/// `OUT_OF_RANGE`; the API promises `RESOURCE_EXHAUSTED` for a size limit (as gRPC's own
/// implementations answer), so the answer is rewritten on its way out.
fn oversize_is_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const TONIC_OVERSIZE: &str = "Error, decoded message length too large";
    let headers = response.headers_mut();
    if headers.get(Status::GRPC_STATUS).map(|v| v.as_bytes()) != Some(b"11") {
        return response;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return response;
    };
    if let Some(detail) = status.message().strip_prefix(TONIC_OVERSIZE) {
        let exhausted = Status::resource_exhausted(format!(
            "message too large{detail} (api.max_message_bytes); send a smaller request"
        ));
        headers.remove(Status::GRPC_MESSAGE);
        if exhausted.add_header(headers).is_err() {
            headers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("8"));
        }
    }
    response
}

impl Api {
    /// Binds the services' `api.listen` and serves them until [`Api::shutdown`]; every call
    /// is counted in `metrics` by method and status code.
    pub async fn start(
        services: Arc<Services>,
        identity: &ServerIdentity,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Api, ApiStartError> {
        let config = services.config().clone();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ApiStartError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiStartError::Bind {
                addr: config.listen,
                source,
            })?;
        let mut builder = Server::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .max_concurrent_streams(Some(config.max_streams_per_connection))
            .http2_keepalive_interval(Some(Duration::from_secs(30)));
        if config.tls {
            let cert_pem: String = identity
                .chain
                .iter()
                .map(|c| pem("CERTIFICATE", c))
                .collect();
            let key_pem = pem("PRIVATE KEY", identity.key.secret_der());
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))
                .map_err(|e| ApiStartError::Server(e.to_string()))?;
        }
        // Both reflection versions: tools in the field still ask for v1alpha.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(meridian_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ApiStartError::Server(e.to_string()))?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(meridian_proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ApiStartError::Server(e.to_string()))?;
        // Standard health checks (grpc.health.v1) for load balancers and probes: no token.
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<PlacementServiceServer<Placements>>()
            .await;
        health_reporter
            .set_serving::<TenantServiceServer<Tenants>>()
            .await;
        health_reporter
            .set_serving::<FleetServiceServer<Fleet>>()
            .await;
        health_reporter
            .set_serving::<CostServiceServer<Costs>>()
            .await;
        health_reporter
            .set_serving::<UsageServiceServer<Usage>>()
            .await;
        let max = config.max_message_bytes;
        // The counting layer is the outer one: it sees the status the client gets.
        let router = builder
            .layer(crate::metrics::grpc::ApiMetricsLayer::new(
                metrics.families().api_requests.clone(),
            ))
            .layer(tower::util::MapResponseLayer::new(oversize_is_exhausted))
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(
                PlacementServiceServer::new(Placements(Arc::clone(&services)))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                TenantServiceServer::new(Tenants(Arc::clone(&services)))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                FleetServiceServer::new(Fleet(Arc::clone(&services)))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                CostServiceServer::new(Costs(Arc::clone(&services)))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                UsageServiceServer::new(Usage(Arc::clone(&services)))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            );
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // A custom incoming stream does not inherit the builder's socket options.
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        let task = tokio::spawn(async move {
            let result = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "API server stopped");
            }
        });
        tracing::info!(%local_addr, tls = config.tls, "gRPC API listening");
        Ok(Api {
            local_addr,
            stop: Some(stop),
            task,
            services,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The services it serves.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Stops accepting, lets running calls finish (bounded), and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
