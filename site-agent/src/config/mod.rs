//! The agent's configuration: the TOML file plus `MERIDIAN_AGENT_*` environment overrides.
//! See `docs/configuration.md`.

mod gateway;
mod host_network;
mod metrics;
mod probe;
mod storage;
mod switch;

pub use gateway::GatewayConfig;
pub use host_network::HostNetworkConfig;
pub use metrics::MetricsConfig;
pub use probe::{ProbeConfig, ProbeKind, parse_target};
pub use storage::StorageConfig;
pub use switch::{SwitchConfig, SwitchPortConfig};

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_common::config::{ConfigError, Validate};
use meridian_common::ids::ServerId;
use meridian_common::telemetry::TelemetryConfig;
use serde::Deserialize;

/// Prefix of the agent's environment overrides.
pub const ENV_PREFIX: &str = "MERIDIAN_AGENT";

/// Everything `meridian-agent` reads at start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Where the agent keeps its journal (key, certificate, intent, report buffer).
    pub data_dir: PathBuf,
    /// The bootstrap file (from the ISO); read to enrol, and again to re-enrol when the
    /// certificate expired or the site was revoked and the operator issued a new token.
    pub bootstrap_file: PathBuf,
    /// Local UDP address of the agent's QUIC endpoint (port 0: any).
    pub bind: SocketAddr,
    /// Heartbeat period; the link is declared dead after 3 periods without a word from central.
    pub heartbeat_interval_ms: u64,
    /// First reconnect backoff ceiling.
    pub backoff_initial_ms: u64,
    /// Largest reconnect backoff ceiling (delays are drawn uniformly below the ceiling).
    pub backoff_max_ms: u64,
    /// Most reports the buffer holds; beyond it the oldest are dropped (and counted).
    pub report_buffer_max: usize,
    /// A GPU utilisation summary (a metrics report) at least this often, also at a site
    /// without GPUs: central reads how far the site's reports reach from them.
    pub utilisation_report_interval_ms: u64,
    /// NVML's utilisation rates and memory are sampled this often (and once more at the end
    /// of each report interval).
    pub utilisation_sample_interval_ms: u64,
    /// Most reports in one batch.
    pub report_batch_max: usize,
    /// Largest frame, bytes.
    pub max_frame_bytes: usize,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// The site's servers the reconciler manages. None: the agent keeps and acknowledges
    /// intents but drives no hardware (it records what it would apply).
    pub servers: Vec<ServerConfig>,
    /// The site's leaf switches (NVUE): the reconciler keeps each carrying the intent's
    /// tenant networks and the active servers' access ports in their tenants' VLANs.
    pub switches: Vec<SwitchConfig>,
    /// The site's gateway node, whose tenant networks and WAN edge the reconciler keeps as the
    /// intent asks. None: the agent configures no kernel networking.
    pub gateway: Option<GatewayConfig>,
    /// Hosts that run containers or VMs for tenants, whose kernels the agent configures.
    pub host_network: Vec<HostNetworkConfig>,
    /// The reconcile loop's timing and bounds.
    pub reconciler: ReconcilerConfig,
    /// The user regions the agent measures its RTT to (`[[probe]]`); none: it measures none.
    pub probe: Vec<ProbeConfig>,
    /// The site's storage array, on which the reconciler keeps the intent's tenant volumes.
    /// None: volumes in the intent are not the agent's to make.
    pub storage: Option<StorageConfig>,
    /// The `[metrics]` table: `/metrics` for Prometheus (served by the binary).
    pub metrics: MetricsConfig,
}

/// Which GPU driver reports and partitions a server's GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GpuInventoryKind {
    /// None: GPUs are known from the BMC's inventory only; MIG slices cannot be made there.
    #[default]
    None,
    /// NVML on the node the agent runs on (`reconciler.nvml_library`). NVML sees only local
    /// GPUs: use it for the server that hosts the agent.
    Nvml,
}

/// One server: its BMC and GPU driver.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The server's id (as central knows it).
    pub id: ServerId,
    /// `https://10.0.0.11` (a BMC) or `http://127.0.0.1:8000` (an emulator).
    pub bmc_url: String,
    /// BMC user; with `password`, or neither when `credentials_file` is given.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// A TOML file with `username` and `password` (kept out of the main file, mode 0600).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// PEM file with the BMC's CA (or its certificate), for `https`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate (lab BMCs with factory self-signed certificates only).
    #[serde(default)]
    pub tls_insecure: bool,
    /// Which system is the host (`Id`, `UUID`, `Name` or URI); absent: the only one.
    #[serde(default)]
    pub system: Option<String>,
    /// HTTP Basic on every request instead of a Redfish session.
    #[serde(default)]
    pub basic_auth: bool,
    #[serde(default)]
    pub gpu_inventory: GpuInventoryKind,
    /// The server's BlueField DPU, reached through the DPU's own BMC, and what it must run.
    #[serde(default)]
    pub dpu: Option<DpuConfig>,
    /// How the server is cabled to a leaf switch of `switches`.
    #[serde(default)]
    pub switch: Option<SwitchPortConfig>,
}

/// A BlueField DPU: its BMC (same keys as a server's) and the mode and BFB bundle the site
/// wants on it. The reconciler brings it there before the server is allocated and again at
/// cleaning.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpuConfig {
    /// The DPU BMC's URL.
    pub bmc_url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_insecure: bool,
    #[serde(default)]
    pub basic_auth: bool,
    /// `dpu` (the default: the Arm cores own the eSwitch, the host is unprivileged) or `nic`.
    #[serde(default)]
    pub mode: DpuModeConfig,
    /// The BFB bundle to install (`http://`, `https://` or `scp://`); with `bfb_version`.
    #[serde(default)]
    pub bfb_url: Option<String>,
    /// The `DPU_OS` version the bundle reports once installed: a DPU reporting it already is
    /// left alone.
    #[serde(default)]
    pub bfb_version: Option<String>,
}

impl fmt::Debug for DpuConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpuConfig")
            .field("bmc_url", &self.bmc_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("credentials_file", &self.credentials_file)
            .field("mode", &self.mode)
            .field("bfb_url", &self.bfb_url)
            .field("bfb_version", &self.bfb_version)
            .finish()
    }
}

/// A DPU's wanted mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DpuModeConfig {
    #[default]
    Dpu,
    Nic,
}

/// The keys a server's BMC, a DPU's BMC and a switch share.
pub(crate) struct Access<'a> {
    /// The URL's key (`bmc_url`, `nvue_url`) and what it reaches (`BMC`, `switch`).
    pub(crate) url_key: &'static str,
    pub(crate) what: &'static str,
    pub(crate) url: &'a str,
    /// Whether `tls_insecure` is one of the table's keys.
    pub(crate) may_be_insecure: bool,
    pub(crate) username: &'a Option<String>,
    pub(crate) password: &'a Option<String>,
    pub(crate) credentials_file: &'a Option<PathBuf>,
    pub(crate) tls_ca_file: &'a Option<PathBuf>,
    pub(crate) tls_insecure: bool,
    pub(crate) basic_auth: bool,
}

impl ServerConfig {
    pub(crate) fn access(&self) -> Access<'_> {
        Access {
            url_key: "bmc_url",
            what: "BMC",
            url: &self.bmc_url,
            may_be_insecure: true,
            username: &self.username,
            password: &self.password,
            credentials_file: &self.credentials_file,
            tls_ca_file: &self.tls_ca_file,
            tls_insecure: self.tls_insecure,
            basic_auth: self.basic_auth,
        }
    }
}

impl DpuConfig {
    pub(crate) fn access(&self) -> Access<'_> {
        Access {
            url_key: "bmc_url",
            what: "BMC",
            url: &self.bmc_url,
            may_be_insecure: true,
            username: &self.username,
            password: &self.password,
            credentials_file: &self.credentials_file,
            tls_ca_file: &self.tls_ca_file,
            tls_insecure: self.tls_insecure,
            basic_auth: self.basic_auth,
        }
    }
}

impl Access<'_> {
    /// Checks the keys; `key` names one under the server's (or its DPU's) table.
    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let https = self.url.starts_with("https://");
        if !https && !self.url.starts_with("http://") {
            return Err(ConfigError::invalid(
                key(self.url_key),
                "must start with https:// (or http:// for an emulator)",
            ));
        }
        if https && self.tls_ca_file.is_none() && !self.tls_insecure {
            return Err(ConfigError::invalid(
                key("tls_ca_file"),
                format!(
                    "an https {} needs tls_ca_file (its CA or certificate){}",
                    self.what,
                    if self.may_be_insecure {
                        ", or tls_insecure = true for a lab BMC"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if self.tls_ca_file.is_some() && self.tls_insecure {
            return Err(ConfigError::invalid(
                key("tls_insecure"),
                "give tls_ca_file or tls_insecure, not both",
            ));
        }
        match (self.username, self.password, self.credentials_file) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => Ok(()),
            _ => Err(ConfigError::invalid(
                key("credentials_file"),
                "give username and password, or credentials_file (not both)",
            )),
        }
    }

    /// The user and password (from the keys or the credentials file).
    pub(crate) fn credentials(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(String, String), ConfigError> {
        match (self.username, self.password, self.credentials_file) {
            (Some(u), Some(p), _) => Ok((u.clone(), p.clone())),
            (_, _, Some(file)) => {
                let text = read_file(key("credentials_file"), file)?;
                let c: CredentialsFile =
                    toml::from_str(&String::from_utf8_lossy(&text)).map_err(|e| {
                        ConfigError::invalid(
                            key("credentials_file"),
                            format!("{}: {}", file.display(), e.message()),
                        )
                    })?;
                Ok((c.username, c.password))
            }
            _ => Err(ConfigError::invalid(
                key("credentials_file"),
                format!("no {} credentials", self.what),
            )),
        }
    }

    /// The trust anchors of `tls_ca_file`, if given.
    pub(crate) fn roots(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Option<Vec<rustls_pki_types::CertificateDer<'static>>>, ConfigError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let Some(file) = self.tls_ca_file else {
            return Ok(None);
        };
        let pem = read_file(key("tls_ca_file"), file)?;
        let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ConfigError::invalid(key("tls_ca_file"), format!("{}: {e}", file.display()))
            })?;
        if roots.is_empty() {
            return Err(ConfigError::invalid(
                key("tls_ca_file"),
                format!("{} holds no certificate", file.display()),
            ));
        }
        Ok(Some(roots))
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("id", &self.id)
            .field("bmc_url", &self.bmc_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_insecure", &self.tls_insecure)
            .field("system", &self.system)
            .field("basic_auth", &self.basic_auth)
            .field("gpu_inventory", &self.gpu_inventory)
            .field("dpu", &self.dpu)
            .field("switch", &self.switch)
            .finish()
    }
}

/// The reconcile loop's timing and bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcilerConfig {
    /// A converged server is looked at again after this long.
    pub resync_ms: u64,
    /// Poll period while a power transition runs.
    pub power_poll_ms: u64,
    /// Back-off after a failed step, doubled per further failure up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Consecutive failed steps (transient errors) before a server is `Failed`.
    pub transient_attempts: u32,
    /// Consecutive failed steps when one error was not transient.
    pub permanent_attempts: u32,
    /// The NVML library for `gpu_inventory = "nvml"`.
    pub nvml_library: PathBuf,
    /// Limit for one BMC request.
    pub bmc_request_timeout_ms: u64,
    /// Tries per BMC request (503, and for reads also timeouts).
    pub bmc_attempts: u32,
    /// How long a BMC power transition (also one found under way) or media insertion may take.
    pub bmc_operation_timeout_ms: u64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            resync_ms: 60_000,
            power_poll_ms: 1_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            transient_attempts: 8,
            permanent_attempts: 2,
            nvml_library: PathBuf::from("libnvidia-ml.so.1"),
            bmc_request_timeout_ms: 15_000,
            bmc_attempts: 4,
            bmc_operation_timeout_ms: 300_000,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: PathBuf::from("meridian-agent-data"),
            bootstrap_file: PathBuf::from("/etc/meridian/bootstrap.toml"),
            bind: "0.0.0.0:0".parse().expect("valid"),
            heartbeat_interval_ms: 5_000,
            backoff_initial_ms: 250,
            backoff_max_ms: 5_000,
            report_buffer_max: 100_000,
            utilisation_report_interval_ms: 60_000,
            utilisation_sample_interval_ms: 5_000,
            report_batch_max: 256,
            max_frame_bytes: meridian_common::channel::frame::DEFAULT_MAX_FRAME,
            telemetry: TelemetryConfig::default(),
            servers: Vec::new(),
            switches: Vec::new(),
            gateway: None,
            host_network: Vec::new(),
            reconciler: ReconcilerConfig::default(),
            probe: Vec::new(),
            storage: None,
            metrics: MetricsConfig::default(),
        }
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        if self.heartbeat_interval_ms < 50 {
            return Err(ConfigError::invalid(
                "heartbeat_interval_ms",
                "must be at least 50 ms",
            ));
        }
        if self.backoff_initial_ms == 0 {
            return Err(ConfigError::invalid(
                "backoff_initial_ms",
                "must be at least 1 ms",
            ));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(ConfigError::invalid(
                "backoff_max_ms",
                "must be at least backoff_initial_ms",
            ));
        }
        if self.report_buffer_max < 16 {
            return Err(ConfigError::invalid(
                "report_buffer_max",
                "must be at least 16",
            ));
        }
        if !(1_000..=3_600_000).contains(&self.utilisation_report_interval_ms) {
            return Err(ConfigError::invalid(
                "utilisation_report_interval_ms",
                "must be 1000 (a second) to 3600000 (an hour)",
            ));
        }
        if !(100..=self.utilisation_report_interval_ms)
            .contains(&self.utilisation_sample_interval_ms)
        {
            return Err(ConfigError::invalid(
                "utilisation_sample_interval_ms",
                "must be at least 100 and at most utilisation_report_interval_ms",
            ));
        }
        if !(1..=512).contains(&self.report_batch_max) {
            return Err(ConfigError::invalid("report_batch_max", "must be 1 to 512"));
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return Err(ConfigError::invalid(
                "max_frame_bytes",
                "must be 64 KiB to 64 MiB",
            ));
        }
        self.telemetry
            .env_filter()
            .map_err(|e| ConfigError::invalid("telemetry.filter", e.to_string()))?;
        let mut ids = BTreeSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let key = |k: &str| format!("servers[{i}].{k}");
            if !ids.insert(&s.id) {
                return Err(ConfigError::invalid(
                    key("id"),
                    format!("server {} is listed twice", s.id),
                ));
            }
            s.access().validate(&key)?;
            if let Some(d) = &s.dpu {
                let dkey = |k: &str| format!("servers[{i}].dpu.{k}");
                d.access().validate(&dkey)?;
                if d.bfb_url.is_some() != d.bfb_version.is_some() {
                    return Err(ConfigError::invalid(
                        dkey("bfb_version"),
                        "give bfb_url and bfb_version together (the version DPU_OS reports once the bundle runs)",
                    ));
                }
                if let Some(u) = &d.bfb_url
                    && !["http://", "https://", "scp://"]
                        .iter()
                        .any(|p| u.starts_with(p))
                {
                    return Err(ConfigError::invalid(
                        dkey("bfb_url"),
                        "must start with http://, https:// or scp://",
                    ));
                }
            }
        }
        switch::validate(&self.switches, &self.servers)?;
        if let Some(g) = &self.gateway {
            g.validate(&self.switches)?;
        }
        host_network::validate(&self.host_network, &self.servers)?;
        probe::validate(&self.probe)?;
        if let Some(s) = &self.storage {
            storage::validate(s)?;
        }
        let r = &self.reconciler;
        for (k, v, min) in [
            ("reconciler.resync_ms", r.resync_ms, 100),
            ("reconciler.power_poll_ms", r.power_poll_ms, 10),
            ("reconciler.retry_initial_ms", r.retry_initial_ms, 10),
            (
                "reconciler.bmc_request_timeout_ms",
                r.bmc_request_timeout_ms,
                100,
            ),
            (
                "reconciler.bmc_operation_timeout_ms",
                r.bmc_operation_timeout_ms,
                1_000,
            ),
        ] {
            if v < min {
                return Err(ConfigError::invalid(k, format!("must be at least {min}")));
            }
        }
        if r.retry_max_ms < r.retry_initial_ms {
            return Err(ConfigError::invalid(
                "reconciler.retry_max_ms",
                "must be at least retry_initial_ms",
            ));
        }
        for (k, v) in [
            ("reconciler.transient_attempts", r.transient_attempts),
            ("reconciler.permanent_attempts", r.permanent_attempts),
            ("reconciler.bmc_attempts", r.bmc_attempts),
        ] {
            if !(1..=100).contains(&v) {
                return Err(ConfigError::invalid(k, "must be 1 to 100"));
            }
        }
        Ok(())
    }
}

impl AgentConfig {
    /// How often GPU utilisation is sampled and reported.
    pub fn utilisation(&self) -> crate::reconcile::UtilisationConfig {
        crate::reconcile::UtilisationConfig {
            report_interval: Duration::from_millis(self.utilisation_report_interval_ms),
            sample_interval: Duration::from_millis(self.utilisation_sample_interval_ms),
        }
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

/// The `credentials_file` format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    username: String,
    password: String,
}

pub(crate) fn read_file(key: String, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use meridian_drivers::dpu::DpuMode;

    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        meridian_common::config::load(Some(&path), ENV_PREFIX, &env)
    }

    #[test]
    fn servers_are_read_checked_and_turned_into_drivers() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("srv-2.toml");
        std::fs::write(&creds, "username = \"admin\"\npassword = \"pw\"\n").unwrap();
        let text = format!(
            r#"
            [reconciler]
            resync_ms = 5000

            [[servers]]
            id = "srv-1"
            bmc_url = "http://127.0.0.1:8000"
            username = "admin"
            password = "secret"

            [servers.dpu]
            bmc_url = "http://127.0.0.1:8001"
            username = "root"
            password = "dpu-secret"
            mode = "dpu"
            bfb_url = "http://127.0.0.1:9000/doca-3.0.bfb"
            bfb_version = "doca-3.0"

            [[servers]]
            id = "srv-2"
            bmc_url = "https://10.0.0.12"
            credentials_file = {creds:?}
            tls_insecure = true
            gpu_inventory = "nvml"
            "#
        );
        let c = load(
            &text,
            &[("MERIDIAN_AGENT_RECONCILER__POWER_POLL_MS", "250")],
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[1].gpu_inventory, GpuInventoryKind::Nvml);
        assert_eq!(
            (c.reconciler.resync_ms, c.reconciler.power_poll_ms),
            (5000, 250)
        );
        assert!(!format!("{:?}", c.servers[0]).contains("secret"));
        let dpu = c.servers[0].dpu.as_ref().expect("srv-1 has a DPU");
        assert_eq!(dpu.mode, DpuModeConfig::Dpu);
        assert!(c.servers[1].dpu.is_none());
        let site = crate::wiring::site_reconciler(&c)
            .unwrap()
            .expect("servers configured");
        assert_eq!(site.servers().len(), 2);
        let managed = site.specs()[0].drivers.dpu.as_ref().expect("DPU driver");
        assert_eq!(managed.want.mode, DpuMode::Dpu);
        assert_eq!(
            managed.want.bfb.as_ref().map(|b| b.version.as_str()),
            Some("doca-3.0")
        );
        assert!(site.specs()[1].drivers.dpu.is_none());
        assert!(
            crate::wiring::site_reconciler(&AgentConfig::default())
                .unwrap()
                .is_none()
        );

        // A credentials file that is not there is a configuration error naming the key.
        let missing = text.replace(&format!("{creds:?}"), "\"/nonexistent/creds.toml\"");
        let e = crate::wiring::site_reconciler(&load(&missing, &[]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("servers[1].credentials_file"), "{e}");
    }

    #[test]
    fn switches_are_read_and_servers_cabled_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("leaf-1.json");
        std::fs::write(&base, r#"{"system": {"hostname": "leaf-1"}}"#).unwrap();
        let text = format!(
            r#"
            [[switches]]
            name = "leaf-1"
            nvue_url = "http://127.0.0.1:8765"
            username = "cumulus"
            password = "switch-secret"
            base_config_file = {base:?}
            vtep = "10.255.0.1"
            asn = 65101
            uplinks = ["swp31", "swp32"]

            [[servers]]
            id = "srv-1"
            bmc_url = "http://127.0.0.1:8000"
            username = "admin"
            password = "secret"
            [servers.switch]
            name = "leaf-1"
            bond = "bond1"
            ports = ["swp1"]

            [[servers]]
            id = "srv-2"
            bmc_url = "http://127.0.0.1:8001"
            username = "admin"
            password = "secret"
            "#
        );
        let c = load(&text, &[]).unwrap();
        assert!(!format!("{:?}", c.switches[0]).contains("switch-secret"));
        assert_eq!(c.switches[0].svi_offset, 1);
        let site = crate::wiring::site_reconciler(&c)
            .unwrap()
            .expect("configured");
        let sw = &site.switches()[0];
        assert_eq!(sw.name, "leaf-1");
        assert_eq!(sw.layout.asn, 65101);
        assert_eq!(sw.layout.uplinks.len(), 2);
        assert_eq!(sw.layout.ports.len(), 1);
        assert_eq!(
            sw.layout.ports[&ServerId::parse("srv-1").unwrap()],
            ("bond1".to_owned(), vec!["swp1".to_owned()])
        );

        // Switches alone make a reconciler too.
        let only = AgentConfig {
            servers: Vec::new(),
            ..c.clone()
        };
        assert_eq!(
            crate::wiring::site_reconciler(&only)
                .unwrap()
                .unwrap()
                .switches()
                .len(),
            1
        );

        // A base configuration that is not JSON names its key.
        std::fs::write(&base, "not json").unwrap();
        let e = crate::wiring::site_reconciler(&c).unwrap_err();
        assert!(
            e.to_string().contains("switches[0].base_config_file"),
            "{e}"
        );
    }

    #[test]
    fn bad_gateways_are_refused_with_the_key() {
        let switch = "[[switches]]\nname = \"leaf-1\"\nnvue_url = \"http://s\"\nusername = \"a\"\npassword = \"b\"\nvtep = \"10.255.0.1\"\nasn = 65101\n";
        let gateway = "[gateway]\nwan_interface = \"wan0\"\nwan_next_hop = \"203.0.113.254\"\negress_address = \"203.0.113.1\"\nunderlay_address = \"10.255.0.9\"\n";
        let good = format!("{switch}{gateway}public_range = \"203.0.113.0/24\"\n");
        let c = load(&good, &[]).unwrap();
        let g = c.gateway.as_ref().expect("a gateway");
        assert_eq!(
            g.leaf_vteps(&c.switches),
            vec![std::net::Ipv4Addr::new(10, 255, 0, 1)]
        );
        assert_eq!(g.nft_table, "meridian_gw");
        let cases = [
            (
                format!("{switch}{gateway}public_range = \"10.9.0.0/16\"\n"),
                "gateway.public_range",
            ),
            (
                gateway.replace("wan0", "not an interface"),
                "gateway.wan_interface",
            ),
            (
                gateway.replace("10.255.0.9", "10.255.0.1") + switch,
                "gateway.underlay_address",
            ),
            (format!("{gateway}netns = \"../x\"\n"), "gateway.netns"),
            (format!("{gateway}mtu = 9000\n"), "mtu"),
        ];
        for (text, key) in cases {
            let e = load(&text, &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
        // A namespace that is not there is refused when the drivers are built.
        let missing = format!("{gateway}netns = \"meridian-no-such-ns\"\n");
        let e = crate::wiring::site_reconciler(&load(&missing, &[]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("gateway.netns"), "{e}");
    }

    #[test]
    fn bad_host_networks_are_refused_with_the_key() {
        let server = "[[servers]]\nid = \"srv-1\"\nbmc_url = \"http://a\"\nusername = \"a\"\npassword = \"b\"\n";
        let host = "[[host_network]]\nserver = \"srv-1\"\nuplink = \"lo\"\n";
        let c = load(&format!("{server}{host}"), &[]).unwrap();
        assert_eq!(c.host_network[0].tenant_netns_prefix(), "mt-srv-1-");
        for (text, key) in [
            (host.to_owned(), "host_network[0].server"),
            (format!("{server}{host}{host}"), "host_network[1].server"),
            (
                format!("{server}{}", host.replace("\"lo\"", "\"no such\"")),
                "host_network[0].uplink",
            ),
            (
                format!("{server}{host}netns = \"a/b\"\n"),
                "host_network[0].netns",
            ),
        ] {
            let e = load(&text, &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
        // An uplink or namespace that is not there is refused when the drivers are built.
        for (text, key) in [
            (
                format!("{server}{}", host.replace("\"lo\"", "\"meridian-nx0\"")),
                "host_network[0].uplink",
            ),
            (
                format!("{server}{host}netns = \"meridian-no-such-ns\"\n"),
                "host_network[0].netns",
            ),
        ] {
            let e = crate::wiring::site_reconciler(&load(&text, &[]).unwrap()).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn bad_switches_are_refused_with_the_key() {
        let switch = "[[switches]]\nname = \"leaf-1\"\nusername = \"a\"\npassword = \"b\"\nvtep = \"10.255.0.1\"\nasn = 65101\n";
        let server = "[[servers]]\nid = \"srv-1\"\nbmc_url = \"http://a\"\nusername = \"a\"\npassword = \"b\"\n";
        let http = "nvue_url = \"http://s\"\n";
        let cases = [
            (
                format!("{switch}nvue_url = \"https://s\"\n"),
                "switches[0].tls_ca_file",
            ),
            (
                format!("{switch}nvue_url = \"ftp://s\"\n"),
                "switches[0].nvue_url",
            ),
            (
                format!("{switch}{http}asn = 0\n").replace("asn = 65101\n", ""),
                "switches[0].asn",
            ),
            (
                format!("{switch}{http}svi_offset = 0\n"),
                "switches[0].svi_offset",
            ),
            (
                format!("{switch}{http}uplinks = [\"a very long port name\"]\n"),
                "switches[0].uplinks",
            ),
            (format!("{switch}{http}{switch}{http}"), "switches[1].name"),
            (
                format!(
                    "{switch}{http}{server}[servers.switch]\nname = \"leaf-9\"\nbond = \"bond1\"\nports = [\"swp1\"]\n"
                ),
                "servers[0].switch.name",
            ),
            (
                format!(
                    "{switch}{http}{server}[servers.switch]\nname = \"leaf-1\"\nbond = \"bond1\"\nports = []\n"
                ),
                "servers[0].switch.ports",
            ),
            (
                format!(
                    "{switch}{http}{server}[servers.switch]\nname = \"leaf-1\"\nbond = \"bond1\"\nports = [\"swp1\"]\n{}[servers.switch]\nname = \"leaf-1\"\nbond = \"bond2\"\nports = [\"swp1\"]\n",
                    server.replace("srv-1", "srv-2")
                ),
                "servers[1].switch.ports",
            ),
        ];
        for (text, key) in cases {
            let e = load(&text, &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn bad_servers_are_refused_with_the_key() {
        let base = "[[servers]]\nid = \"srv-1\"\nusername = \"a\"\npassword = \"b\"\n";
        let cases = [
            ("bmc_url = \"https://10.0.0.1\"\n", "servers[0].tls_ca_file"),
            ("bmc_url = \"ftp://10.0.0.1\"\n", "servers[0].bmc_url"),
            (
                "bmc_url = \"http://a\"\ncredentials_file = \"/x\"\n",
                "servers[0].credentials_file",
            ),
            (
                "bmc_url = \"http://a\"\n[servers.dpu]\nbmc_url = \"ftp://d\"\nusername = \"a\"\npassword = \"b\"\n",
                "servers[0].dpu.bmc_url",
            ),
            (
                "bmc_url = \"http://a\"\n[servers.dpu]\nbmc_url = \"http://d\"\nusername = \"a\"\npassword = \"b\"\nbfb_url = \"http://i/x.bfb\"\n",
                "servers[0].dpu.bfb_version",
            ),
            (
                "bmc_url = \"http://a\"\n[servers.dpu]\nbmc_url = \"http://d\"\nusername = \"a\"\npassword = \"b\"\nmode = \"smart\"\n",
                "mode",
            ),
            (
                "bmc_url = \"http://a\"\n[[servers]]\nid = \"srv-1\"\nbmc_url = \"http://b\"\nusername = \"a\"\npassword = \"b\"\n",
                "servers[1].id",
            ),
        ];
        for (extra, key) in cases {
            let e = load(&format!("{base}{extra}"), &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{extra}: {e}");
        }
        let e = load(
            "[[servers]]\nid = \"Bad_Id\"\nbmc_url = \"http://a\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("servers"), "{e}");
    }
}
