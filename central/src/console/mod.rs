//! The operator console: server-rendered HTML over HTTPS, served by central on its own
//! listener (`[console]`), with the API's TLS certificate.
//!
//! Stack: axum (already in the tree through tonic) for routing, maud for HTML (templates are
//! Rust, checked and escaped at compile time, nothing to ship or parse at run time), plotters
//! for charts as SVG, and a world map drawn as SVG from the sites' coordinates (no tile
//! server, no CDN). Every page reads without JavaScript; a small script (embedded, like the
//! stylesheet) applies live updates from a server-sent-event stream.
//!
//! Every page calls the same services as the gRPC API with the logged-in user's [`Caller`],
//! so the role x RPC table and the tenant scoping are the API's own: a viewer sees no button
//! that changes anything and a forged POST is refused the same way; another tenant's object
//! is "not found". Forms carry the session's CSRF token; see [`session`] for the cookies.
//!
//! [`Caller`]: crate::services::Caller

mod assets;
mod chart;
pub mod config;
pub mod events;
mod layout;
mod map;
mod names;
mod pages;
pub mod serve;
pub mod session;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

pub use config::ConsoleConfig;
pub use events::{SiteChange, SiteEvents};
pub use web::Console as ConsoleState;

use crate::services::Services;
use meridian_store::Tables;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot bind the console listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot configure the console's TLS")]
    Tls(#[from] rustls::Error),
}

/// The running console.
#[derive(Debug)]
pub struct Console {
    local_addr: SocketAddr,
    state: web::Console,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The console's routes over `state`.
pub fn router(state: web::Console) -> Router {
    Router::new()
        .route("/", get(pages::login::root))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/fleet", get(pages::fleet::page))
        .route("/fleet/events", get(pages::fleet::events))
        .route("/sites/{id}", get(pages::site::page))
        .route(
            "/sites/{id}/bootstrap-tokens",
            post(pages::site::create_token),
        )
        .route("/sites/{id}/revoke", post(pages::site::revoke))
        .route(
            "/sites/{id}/server-actions",
            post(pages::site::server_action),
        )
        .route("/tenants", get(pages::tenants::list))
        .route("/tenants/{id}", get(pages::tenants::page))
        .route("/workloads", get(pages::workloads::list))
        .route("/workloads/{id}", get(pages::workloads::page))
        .route(
            "/what-if",
            get(pages::workloads::what_if_form).post(pages::workloads::what_if),
        )
        .route("/reservations", get(pages::workloads::calendar))
        .route("/audit", get(pages::audit::page))
        .route("/utilisation", get(pages::utilisation::page))
        .route("/cost", get(pages::cost::page))
        .route("/usage", get(pages::usage::page))
        .route("/assets/{name}", get(assets::asset))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(assets::security_headers))
        .with_state(state)
}

impl Console {
    /// Binds `config.listen` and serves the console over `services` with the TLS identity
    /// `chain`/`key` (the API's).
    pub async fn start(
        config: &ConsoleConfig,
        services: Arc<Services>,
        tables: Tables,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Console, ConsoleError> {
        let tls = serve::tls_config(chain, key)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ConsoleError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ConsoleError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = web::Console {
            services,
            sessions: Arc::new(session::Sessions::new(
                config.session_ttl(),
                config.session_idle(),
                config.max_sessions,
            )),
            events: SiteEvents::new(),
            streams: Arc::new(tokio::sync::Semaphore::new(config.max_streams)),
        };
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let watch = tokio::spawn(state.events.clone().watch(tables, stop_rx.clone()));
        let server = tokio::spawn(serve::serve(listener, tls, router(state.clone()), stop_rx));
        tracing::info!(%local_addr, "operator console listening (https)");
        Ok(Console {
            local_addr,
            state,
            stop,
            tasks: vec![watch, server],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The console's URL.
    pub fn url(&self) -> String {
        format!("https://{}/", self.local_addr)
    }

    /// Its live-update feed (the benchmark publishes into it).
    pub fn events(&self) -> &SiteEvents {
        &self.state.events
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.state.sessions.len()
    }

    /// Stops serving (running requests get up to 2 s).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }
}
