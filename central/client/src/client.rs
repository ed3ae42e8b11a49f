//! Connecting to the API: endpoint, CA and token from flags, the environment or a config file.

use std::path::{Path, PathBuf};

use meridian_proto::v1::cost_service_client::CostServiceClient;
use meridian_proto::v1::fleet_service_client::FleetServiceClient;
use meridian_proto::v1::placement_service_client::PlacementServiceClient;
use meridian_proto::v1::tenant_service_client::TenantServiceClient;
use meridian_proto::v1::usage_service_client::UsageServiceClient;
use serde::Deserialize;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::CliError;

/// Default API address.
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:7444";

/// `~/.config/meridian/config.toml` (or `$MERIDIAN_CONFIG`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// API URL (`https://host:7444`).
    pub endpoint: Option<String>,
    /// API token secret.
    pub token: Option<String>,
    /// File holding the token secret.
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the API.
    pub ca: Option<PathBuf>,
}

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: String,
    pub token: String,
    pub ca: Option<PathBuf>,
}

impl Target {
    /// Flags win over the environment (clap fills those), which wins over the file.
    pub fn resolve(
        endpoint: Option<String>,
        token: Option<String>,
        token_file: Option<PathBuf>,
        ca: Option<PathBuf>,
        config: Option<&Path>,
    ) -> Result<Target, CliError> {
        let default_path =
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/meridian/config.toml"));
        let (path, explicit) = match config {
            Some(p) => (Some(p.to_path_buf()), true),
            None => (default_path, false),
        };
        let file = match path {
            Some(p) if explicit || p.exists() => {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    CliError::usage(format!("cannot read config file {}: {e}", p.display()))
                })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| CliError::usage(format!("config file {}: {e}", p.display())))?
            }
            _ => FileConfig::default(),
        };
        let token_file = token_file.or(file.token_file);
        let token = match (token, token_file, file.token) {
            (Some(t), _, _) => t,
            (None, Some(path), _) => std::fs::read_to_string(&path)
                .map_err(|e| {
                    CliError::usage(format!("cannot read token file {}: {e}", path.display()))
                })?
                .trim()
                .to_owned(),
            (None, None, Some(t)) => t,
            (None, None, None) => {
                return Err(CliError::usage(
                    "no API token: pass --token, set MERIDIAN_TOKEN or MERIDIAN_TOKEN_FILE, or \
                     put `token` in ~/.config/meridian/config.toml (a provider admin makes the \
                     first one with `meridian-central admin-token`)",
                ));
            }
        };
        Ok(Target {
            endpoint: endpoint
                .or(file.endpoint)
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            token,
            ca: ca.or(file.ca),
        })
    }

    /// Opens a channel (lazily connected; the first call reports connection errors).
    pub async fn connect(&self) -> Result<Clients, CliError> {
        self.connect_from(None).await
    }

    /// Like [`Target::connect`], from the local address `source` (a multi-homed client, or a
    /// test speaking from 127.0.0.2).
    pub async fn connect_from(
        &self,
        source: Option<std::net::IpAddr>,
    ) -> Result<Clients, CliError> {
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| CliError::usage(format!("--endpoint {}: {e}", self.endpoint)))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .local_address(source);
        if self.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca {
                let pem = std::fs::read(ca).map_err(|e| {
                    CliError::usage(format!("cannot read CA file {}: {e}", ca.display()))
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            } else {
                return Err(CliError::usage(
                    "an https endpoint needs the CA that signed central's certificate: pass --ca \
                     (central's data dir has it at ca/ca.crt) or set MERIDIAN_CA",
                ));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| CliError::usage(format!("TLS setup: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        let header: tonic::metadata::MetadataValue<_> = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| CliError::usage("the token holds characters a header cannot carry"))?;
        let auth = Auth(header);
        Ok(Clients {
            placement: PlacementServiceClient::with_interceptor(channel.clone(), auth.clone()),
            tenants: TenantServiceClient::with_interceptor(channel.clone(), auth.clone()),
            cost: CostServiceClient::with_interceptor(channel.clone(), auth.clone()),
            fleet: FleetServiceClient::with_interceptor(channel.clone(), auth.clone()),
            usage: UsageServiceClient::with_interceptor(channel, auth),
        })
    }
}

/// Adds the bearer token to every request.
#[derive(Debug, Clone)]
pub struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Auth>;

/// One client per service, sharing a connection.
#[derive(Debug, Clone)]
pub struct Clients {
    pub placement: PlacementServiceClient<Authed>,
    pub tenants: TenantServiceClient<Authed>,
    pub fleet: FleetServiceClient<Authed>,
    pub cost: CostServiceClient<Authed>,
    pub usage: UsageServiceClient<Authed>,
}
