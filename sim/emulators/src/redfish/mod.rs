//! A faithful Redfish BMC emulator, with a GPU-server profile and a BlueField-3 DPU BMC
//! profile, for the site agent's `Bmc` and `Dpu` drivers and the reconciler's tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meridian_emulators::redfish::BmcEmulatorError> {
//! use std::time::Duration;
//! use meridian_emulators::redfish::{BmcEmulator, BmcProfile, Fault};
//!
//! let bmc = BmcEmulator::new(BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; 8]))
//!     .credentials("admin", "Meridian-Bmc-1")
//!     .power_delay(Duration::from_millis(200))
//!     .start()
//!     .await?;
//! bmc.faults().inject(Fault::status("/redfish/v1/Systems/*", 503).retry_after(2).times(1));
//! let root = format!("{}/redfish/v1/", bmc.url());
//! # let _ = root;
//! bmc.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Plain HTTP/1.1 on `127.0.0.1` (port 0 by default, so each emulator gets its own port). An
//! emulator is a few tokio tasks on the caller's runtime, so hundreds fit in one process.
//!
//! What it does, after DSP0266 and the device reference (section 8):
//! - **Tree**: service root, `odata`, `$metadata` (CSDL referencing DSP8010), Systems (with
//!   Processors incl. `ProcessorType: GPU`, Memory, VirtualMedia), Managers (non-null
//!   `ServiceEntryPointUUID`), Chassis, SessionService/Sessions, AccountService/Accounts/Roles,
//!   UpdateService/FirmwareInventory, TaskService/Tasks. Every link resolves.
//! - **Auth**: `/redfish`, the root, `odata` and `$metadata` are open; everything else needs
//!   HTTP Basic or an `X-Auth-Token`, else **401** with `WWW-Authenticate` (also for unknown
//!   URIs, so nothing leaks). Login (`POST .../Sessions`) answers 201 with `X-Auth-Token`
//!   and `Location`; `DELETE` logs out; idle sessions expire; a session limit applies (503
//!   `SessionLimitExceeded`, or 403 as Lenovo XCC answers it with
//!   [`BmcProfile::session_limit_forbidden`]). Roles `Administrator`, `Operator`, `ReadOnly`
//!   are enforced (403). [`RunningBmc::set_password`] changes a password behind the client's
//!   back.
//! - **Errors**: unknown URI **404**, wrong method **405** with `Allow`, an unknown method 501,
//!   unsupported `$` query parameters 501; all with a Redfish error body (Base 1.18 messages).
//! - **ETags**: a strong `ETag` on every resource GET, derived from its content (so it changes
//!   with every modification); `PATCH` with a stale `If-Match` gets **412**; with
//!   [`BmcEmulator::require_if_match`], a missing one gets **428**.
//!   [`RunningBmc::race_system_patches`] has another client change the System between a
//!   client's read and its PATCH, so that PATCH's `If-Match` is genuinely stale.
//! - **Power**: `ComputerSystem.Reset` accepts only the advertised `ResetType`s (else 400
//!   `ActionParameterValueNotInList`); transitions pass through `PoweringOn`/`PoweringOff`, each
//!   phase lasting the power delay; a restart or a reset type that needs the system on, while
//!   it is off, is 409. A reset while an update task runs is 503 with `Retry-After`.
//! - **Systems**: the host, and with [`BmcProfile::hgx_baseboard`] an NVIDIA HGX baseboard
//!   (`Systems/HGX_Baseboard_0`, GPUs `GPU_SXM_n`) that is not the host.
//! - **Boot**: `BootSourceOverrideTarget` must be advertised (else 400 `PropertyValueNotInList`),
//!   and so must `BootSourceOverrideMode` ([`BmcProfile::boot_modes`]);
//!   a `Once` override is consumed when the next boot completes; `Continuous` persists. Each
//!   completed power-on is recorded ([`RunningBmc::boots`]).
//! - **Virtual media** (System, Manager or both): `InsertMedia` connects to the image URL
//!   (`http://` only) before answering, so an unreachable or missing image is 400; then it
//!   reads the image in the background and `Inserted` flips once it is read and the media delay
//!   has passed. Insert while present or inserting is 409. With [`BmcProfile::eject_lag`], an
//!   insert during the lag after an eject is 500 (as on Dell iDRAC). With
//!   [`BmcProfile::usb_media`], a removable-disk device (`USBStick`) is listed before the CD.
//! - **Updates**: `SimpleUpdate` answers 202 with a task monitor `Location` and `Retry-After`;
//!   the monitor answers 202 until the task ends, then 200 with the Task. The task is `New`
//!   while the image is fetched, `Running` with `PercentComplete` for the update duration, then
//!   `Completed` (the targets' `Version` becomes the image file's stem, only now) or `Exception`
//!   (unreachable image, or [`RunningBmc::fail_next_update`]). New BMC firmware reboots the BMC.
//! - **Busy**: after `Manager.Reset` or a BMC firmware update, every request gets 503 with
//!   `Retry-After` for the configured time and all sessions are gone; [`RunningBmc::set_busy`]
//!   does the same on demand.
//! - **BlueField-3**: `Systems/Bluefield`, `Managers/Bluefield_BMC`, `Chassis/Card1`;
//!   `Systems/Bluefield/Oem/Nvidia` shows `Mode` and `HostRshim`, with actions `Mode.Set` and
//!   `HostRshim.Set`; `Managers/Bluefield_BMC/Oem/Nvidia` holds `BmcRShim.BmcRShimEnabled`
//!   (PATCH). RShim has one owner: the host holds it at start; enabling the BMC's side while the
//!   host holds it is accepted but does not take (it reads back `false`); `HostRshim.Set`
//!   releases the host's side unless [`BmcProfile::host_keeps_rshim`]. `SimpleUpdate` to
//!   `DPU_OS` without BMC ownership is 400; while another install runs it is 409. A mode set is
//!   pending until an Arm restart (`GracefulRestart`/`ForceRestart`) followed by a power cycle
//!   (`PowerCycle`, or off then on).
//! - **Faults** per method and path pattern ([`Fault`], [`RunningBmc::faults`]): a status with
//!   optional `Retry-After`, N times or always, added latency, or a hang.
//! - **Request log** ([`RunningBmc::requests`]): every request with its status, the
//!   credentials it carried, its `If-Match` and its JSON body.
//! - **Time**: every delay runs on the emulator's clock, which [`RunningBmc::advance`] moves
//!   forward, so tests cross minutes-long installs without sleeping.

mod errors;
mod fetch;
mod metadata;
mod profile;
mod resources;
mod service;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use crate::faults::{Fault, FaultId, Faults};
pub use profile::{
    BmcProfile, BootOverride, BootRecord, DpuMode, FirmwareSpec, MediaLocation, OverrideEnabled,
    PowerState, ProcessorSpec, ResetType,
};
pub use state::{LoggedRequest, RequestAuth, TaskState};

use service::Shared;
use state::{Bmc, Config};

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum BmcEmulatorError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The self-signed certificate for HTTPS could not be made.
    #[error("cannot set up HTTPS")]
    Tls {
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Builds an emulated BMC; [`BmcEmulator::start`] runs it.
#[derive(Debug, Clone)]
pub struct BmcEmulator {
    profile: BmcProfile,
    cfg: Config,
    listen: SocketAddr,
    https: bool,
}

impl BmcEmulator {
    /// Default user name.
    pub const DEFAULT_USER: &'static str = "admin";
    /// Default password.
    pub const DEFAULT_PASSWORD: &'static str = "Meridian-Bmc-1";

    /// An emulator of `profile` with the defaults: `admin`/`Meridian-Bmc-1`, power phases of
    /// 1 s, media insertion 200 ms after the image is read, updates (and BFB installs) of 120 s,
    /// 30 s busy after a BMC reset, sessions expiring after 30 min idle, at most 16 sessions,
    /// `If-Match` optional, task monitor `Retry-After: 1`, image connections limited to 5 s,
    /// listening on `127.0.0.1:0`.
    pub fn new(profile: BmcProfile) -> Self {
        Self {
            profile,
            cfg: Config {
                user: Self::DEFAULT_USER.into(),
                password: Self::DEFAULT_PASSWORD.into(),
                power_delay: Duration::from_secs(1),
                media_delay: Duration::from_millis(200),
                update_duration: Duration::from_secs(120),
                bmc_reset_busy: Duration::from_secs(30),
                session_timeout: Duration::from_secs(1800),
                session_limit: 16,
                require_if_match: false,
                task_retry_after: 1,
                fetch_timeout: Duration::from_secs(5),
            },
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: false,
        }
    }

    /// Serves HTTPS (TLS 1.3) with a fresh self-signed certificate for `127.0.0.1` and
    /// `localhost` ([`RunningBmc::certificate_pem`]) instead of plain HTTP. Redfish requires
    /// HTTPS for Basic authentication and session login; the protocol validator checks it.
    #[must_use]
    pub fn https(mut self, yes: bool) -> Self {
        self.https = yes;
        self
    }

    /// The administrator account's credentials.
    #[must_use]
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.cfg.user = user.into();
        self.cfg.password = password.into();
        self
    }

    /// How long each power phase (`PoweringOn`, `PoweringOff`) lasts.
    #[must_use]
    pub fn power_delay(mut self, d: Duration) -> Self {
        self.cfg.power_delay = d;
        self
    }

    /// How long after an insert (at the earliest) `Inserted` becomes true.
    #[must_use]
    pub fn media_delay(mut self, d: Duration) -> Self {
        self.cfg.media_delay = d;
        self
    }

    /// How long an update task (including a BFB install) runs once its image is fetched.
    #[must_use]
    pub fn update_duration(mut self, d: Duration) -> Self {
        self.cfg.update_duration = d;
        self
    }

    /// How long the BMC answers 503 after it resets.
    #[must_use]
    pub fn bmc_reset_busy(mut self, d: Duration) -> Self {
        self.cfg.bmc_reset_busy = d;
        self
    }

    /// How long an unused session lives.
    #[must_use]
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.cfg.session_timeout = d;
        self
    }

    /// How many sessions may exist at once.
    #[must_use]
    pub fn session_limit(mut self, n: usize) -> Self {
        self.cfg.session_limit = n;
        self
    }

    /// Whether a `PATCH` without `If-Match` is refused with 428.
    #[must_use]
    pub fn require_if_match(mut self, yes: bool) -> Self {
        self.cfg.require_if_match = yes;
        self
    }

    /// The `Retry-After` (seconds) of task monitors and of busy answers during updates.
    #[must_use]
    pub fn task_retry_after(mut self, secs: u64) -> Self {
        self.cfg.task_retry_after = secs;
        self
    }

    /// Time limit for connecting to an image URL and reading its response head.
    #[must_use]
    pub fn fetch_timeout(mut self, d: Duration) -> Self {
        self.cfg.fetch_timeout = d;
        self
    }

    /// Where to listen (default `127.0.0.1:0`).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<RunningBmc, BmcEmulatorError> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| BmcEmulatorError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| BmcEmulatorError::Bind {
                addr: self.listen,
                source,
            })?;
        let (tls, certificate_pem) = if self.https {
            let (acceptor, pem) =
                tls_acceptor().map_err(|source| BmcEmulatorError::Tls { source })?;
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            bmc: Mutex::new(Bmc::new(self.profile, self.cfg)),
            faults: Faults::new(),
            background: Mutex::new(JoinSet::new()),
        });
        let (stop, mut stopped) = oneshot::channel::<()>();
        let served = shared.clone();
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let sh = served.clone();
                        let tls = tls.clone();
                        connections.spawn(async move {
                            let svc = service_fn(move |req| service::handle(sh.clone(), req));
                            let http = http1::Builder::new();
                            match tls {
                                None => {
                                    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                                }
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                                    }
                                }
                            }
                        });
                    }
                }
            }
            connections.shutdown().await;
        });
        Ok(RunningBmc {
            addr,
            certificate_pem,
            shared,
            stop: Some(stop),
            server: Some(server),
        })
    }
}

/// A running emulated BMC. Dropping it stops it (abruptly); [`RunningBmc::shutdown`] stops it
/// and waits.
#[derive(Debug)]
pub struct RunningBmc {
    addr: SocketAddr,
    certificate_pem: Option<String>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl RunningBmc {
    fn read<T>(&self, f: impl FnOnce(&Bmc) -> T) -> T {
        let mut b = self.shared.lock();
        b.settle();
        f(&b)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Bmc) -> T) -> T {
        let mut b = self.shared.lock();
        b.settle();
        f(&mut b)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, or `https://` with [`BmcEmulator::https`] (no trailing
    /// slash).
    pub fn url(&self) -> String {
        let scheme = if self.certificate_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The self-signed server certificate (PEM) when serving HTTPS, for clients to trust.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// The administrator's user name and password.
    pub fn credentials(&self) -> (String, String) {
        self.read(|b| (b.cfg.user.clone(), b.cfg.password.clone()))
    }

    /// The system's id (`System.Embedded.1`, `Bluefield`).
    pub fn system_id(&self) -> String {
        self.read(|b| b.p.system_id.clone())
    }

    /// The manager's id.
    pub fn manager_id(&self) -> String {
        self.read(|b| b.p.manager_id.clone())
    }

    /// The chassis' id.
    pub fn chassis_id(&self) -> String {
        self.read(|b| b.p.chassis_id.clone())
    }

    /// The fault table; changes take effect on the next request.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The system's power state now.
    pub fn power_state(&self) -> PowerState {
        self.read(|b| b.power)
    }

    /// The boot override now.
    pub fn boot_override(&self) -> BootOverride {
        self.read(|b| b.boot.clone())
    }

    /// Every completed power-on, oldest first.
    pub fn boots(&self) -> Vec<BootRecord> {
        self.read(|b| b.boots.clone())
    }

    /// Whether any virtual media device has media inserted.
    pub fn media_inserted(&self) -> bool {
        self.read(|b| b.media.iter().any(|m| m.inserted))
    }

    /// The image of the first device with media inserted.
    pub fn media_image(&self) -> Option<String> {
        self.read(|b| {
            b.media
                .iter()
                .find(|m| m.inserted)
                .and_then(|m| m.image.clone())
        })
    }

    /// The `Version` of a firmware inventory entry.
    pub fn firmware_version(&self, id: &str) -> Option<String> {
        self.read(|b| {
            b.firmware
                .iter()
                .find(|f| f.id == id)
                .map(|f| f.version.clone())
        })
    }

    /// The state of task `id`.
    pub fn task_state(&self, id: u32) -> Option<TaskState> {
        self.read(|b| service::task_state(b, id))
    }

    /// The BlueField mode in effect (`None` on other profiles).
    pub fn dpu_mode(&self) -> Option<DpuMode> {
        self.read(|b| b.dpu.as_ref().map(|d| d.mode))
    }

    /// The BlueField mode waiting for a reset and power cycle.
    pub fn pending_dpu_mode(&self) -> Option<DpuMode> {
        self.read(|b| b.dpu.as_ref().and_then(|d| d.pending))
    }

    /// Whether the BMC owns the BlueField's RShim.
    pub fn bmc_owns_rshim(&self) -> bool {
        self.read(|b| b.dpu.as_ref().is_some_and(|d| d.bmc_rshim))
    }

    /// How many sessions exist.
    pub fn session_count(&self) -> usize {
        self.read(|b| b.sessions.len())
    }

    /// Every request seen, in the order they were answered, with the status each got, the
    /// credentials it carried, its `If-Match` and its JSON body.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.read(|b| b.log.clone())
    }

    /// Changes `user`'s password behind the clients' backs (an operator on the BMC's own
    /// console); sessions already open stay valid. Returns whether the account exists.
    pub fn set_password(&self, user: &str, password: impl Into<String>) -> bool {
        let password = password.into();
        self.write(|b| {
            b.accounts
                .values_mut()
                .find(|a| a.user == user)
                .map(|a| a.password = password)
                .is_some()
        })
    }

    /// Makes another client win a race against each of the next `n` PATCHes of the System:
    /// just before the PATCH is served, the other client's write changes the System (its
    /// `AssetTag`), so an `If-Match` taken from a read before it is stale and the PATCH gets
    /// a genuine 412 (a lost update caught by the ETag).
    pub fn race_system_patches(&self, n: u32) {
        self.write(|b| b.raced_patches = n);
    }

    /// Makes the BMC answer 503 (with `Retry-After`) to everything for `d`.
    pub fn set_busy(&self, d: Duration) {
        self.write(|b| {
            b.busy_until = Some(b.now() + d);
            b.busy_why = "the BMC is busy";
        });
    }

    /// Makes the next update task end in `Exception` with `why` (the version is unchanged).
    pub fn fail_next_update(&self, why: impl Into<String>) {
        let why = why.into();
        self.write(|b| b.fail_next_update = Some(why));
    }

    /// Ends every session, as an expiry would (tokens then get 401).
    pub fn expire_sessions(&self) {
        self.write(|b| b.sessions.clear());
    }

    /// How long power transitions requested from now on take.
    pub fn set_power_delay(&self, d: Duration) {
        self.write(|b| b.cfg.power_delay = d);
    }

    /// Moves the emulator's clock forward: power phases, media delays, update tasks, busy
    /// periods and session expiry all see `by` more time passed.
    pub fn advance(&self, by: Duration) {
        self.write(|b| {
            b.advance(by);
            b.settle();
        });
    }

    /// Stops serving and waits until every connection is closed.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Stops serving and waits until every connection is closed, keeping the handle (its
    /// state can still be read); stopping twice does nothing more.
    pub async fn stop(&mut self) {
        self.stop_now();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.shared
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn tls_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), BoxError> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.cert.pem(),
    ))
}

impl Drop for RunningBmc {
    fn drop(&mut self) {
        self.stop_now();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
