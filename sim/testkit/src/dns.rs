//! A real BIND 9 (`named`) as the provider's authoritative DNS server, for tests of endpoint
//! names: one primary zone that a TSIG key may update (`allow-update { key ...; }`), on
//! 127.0.0.1 at a free port (UDP and TCP), in a temporary directory, in the foreground
//! (`named -g`), killed when dropped. [`Bind::query_a`] asks it with `dig`; [`Bind::stop`]
//! and [`Bind::run`] stop and start it again on the same port with the same zone (the
//! journal of accepted updates is kept).
//!
//! Needs `named` (Debian package bind9) and `dig` (bind9-dnsutils); `scripts/test.sh`
//! installs both. Runs as root without `-u` (named stays root, in its own directory).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::processes::free_port;

/// The TSIG key a [`Bind`] accepts updates signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct BindKey {
    /// The key's name (`meridian-update`).
    pub name: String,
    /// `hmac-sha256` or `hmac-sha512`, as BIND spells them.
    pub algorithm: String,
    /// The base64 secret.
    pub secret: String,
}

impl std::fmt::Debug for BindKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl BindKey {
    /// A new key with a random 32-byte secret.
    pub fn random(name: &str, algorithm: &str) -> BindKey {
        BindKey {
            name: name.into(),
            algorithm: algorithm.into(),
            secret: random_secret(),
        }
    }

    /// Writes the base64 secret to `path` (mode 0600), as central's
    /// `dns.tsig_secret_file` reads it.
    pub fn write_secret(&self, path: &Path) {
        meridian_common::config::write_secret(path, &format!("{}\n", self.secret))
            .expect("the secret file is written");
    }
}

/// A random base64 secret of 32 bytes.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A BIND 9 server of one zone.
#[derive(Debug)]
pub struct Bind {
    dir: tempfile::TempDir,
    zone: String,
    port: u16,
    key: BindKey,
    child: Option<Child>,
    /// The UDP port held while named is not running, so another [`Bind`] of the same test
    /// binary (which checks UDP and TCP) does not take it meanwhile.
    reservation: Option<std::net::UdpSocket>,
}

impl Drop for Bind {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether both TCP and UDP `port` of 127.0.0.1 are free now.
fn both_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

impl Bind {
    /// Writes the configuration, zone and key for `zone` on a free port, without starting
    /// `named` (a test of central started before its DNS server calls [`Bind::run`] later).
    pub fn prepare(zone: &str) -> Bind {
        Self::prepare_with(zone, BindKey::random("meridian-update", "hmac-sha256"))
    }

    /// [`Bind::prepare`] with a given key.
    pub fn prepare_with(zone: &str, key: BindKey) -> Bind {
        for tool in ["named", "dig"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: apt-get install bind9 bind9-dnsutils (scripts/test.sh installs them)"
            );
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (port, reservation) = loop {
            let p = free_port(false);
            if both_free(p)
                && let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", p))
            {
                break (p, udp);
            }
        };
        let bind = Bind {
            dir,
            zone: zone.trim_end_matches('.').to_ascii_lowercase(),
            port,
            key,
            child: None,
            reservation: Some(reservation),
        };
        bind.write_files();
        bind
    }

    /// Prepares and runs a server for `zone`, on another free port if the first one was
    /// taken meanwhile.
    pub fn start(zone: &str) -> Bind {
        Self::start_with(zone, BindKey::random("meridian-update", "hmac-sha256"))
    }

    /// [`Bind::start`] with a given key.
    pub fn start_with(zone: &str, key: BindKey) -> Bind {
        let mut last = String::new();
        for _ in 0..3 {
            let mut bind = Self::prepare_with(zone, key.clone());
            match bind.try_run() {
                Ok(()) => return bind,
                Err(e) => last = e,
            }
        }
        panic!("named did not start: {last}");
    }

    fn write_files(&self) {
        let dir = self.dir.path().display();
        let zone = &self.zone;
        let conf = format!(
            r#"options {{
    directory "{dir}";
    pid-file none;
    session-keyfile none;
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key}" {{
    algorithm {algorithm};
    secret "{secret}";
}};
zone "{zone}" {{
    type primary;
    file "{dir}/{zone}.zone";
    allow-update {{ key "{key}"; }};
}};
"#,
            port = self.port,
            key = self.key.name,
            algorithm = self.key.algorithm,
            secret = self.key.secret,
        );
        std::fs::write(self.conf_path(), conf).expect("named.conf is written");
        let records = format!(
            "$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"
        );
        std::fs::write(self.dir.path().join(format!("{zone}.zone")), records)
            .expect("the zone file is written");
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("named.conf")
    }

    /// named's log (its standard error), all starts together.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Starts `named` on this server's port and waits until it answers for the zone; panics
    /// with its log if it does not.
    pub fn run(&mut self) {
        if let Err(e) = self.try_run() {
            panic!("named did not start: {e}");
        }
    }

    fn try_run(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "named is already running");
        self.reservation = None;
        // A port let go of a moment ago (a stop) may still be held by the kernel.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !both_free(self.port) {
            if Instant::now() > deadline {
                return Err(format!("port {} stays in use", self.port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logged_before = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("named.log"))
            .expect("named.log opens");
        let child = Command::new("named")
            .args(["-g", "-4", "-n", "1", "-c"])
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run named: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("named exited ({status}):\n{}", self.log()));
            }
            let log = self
                .log()
                .get(logged_before..)
                .unwrap_or_default()
                .to_owned();
            if log.contains("address in use") || log.contains("could not listen") {
                self.stop();
                return Err(format!("port {} taken:\n{log}", self.port));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("named did not answer within 30 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server answers the zone's SOA now.
    fn answers(&self) -> bool {
        self.dig(&self.zone, "SOA")
            .is_ok_and(|lines| lines.iter().any(|l| l.starts_with("ns.")))
    }

    /// Stops `named` (SIGTERM, SIGKILL after 10 s); the zone and its journal stay.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.reservation = std::net::UdpSocket::bind(("127.0.0.1", self.port)).ok();
    }

    /// Whether `named` runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The zone (lower case, no trailing dot).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The port (UDP and TCP) of 127.0.0.1 it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The key updates must be signed with.
    pub fn key(&self) -> &BindKey {
        &self.key
    }

    /// The directory holding its configuration, zone and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `dig @127.0.0.1 -p PORT +short NAME TYPE`: the answer's lines, or dig's complaint.
    fn dig(&self, name: &str, rtype: &str) -> Result<Vec<String>, String> {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string()])
            .args(["+short", "+time=1", "+tries=1", name, rtype])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run dig: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "dig {name} {rtype} failed ({}): {text}",
                out.status
            ));
        }
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_owned)
            .collect())
    }

    /// The A records of `name`, sorted (empty when it has none).
    pub fn query_a(&self, name: &str) -> Result<Vec<Ipv4Addr>, String> {
        let mut out = Vec::new();
        for line in self.dig(name, "A")? {
            out.push(
                line.parse()
                    .map_err(|_| format!("dig answered {line:?} for {name} A"))?,
            );
        }
        out.sort();
        Ok(out)
    }

    /// Waits until `name` holds exactly `want` (in any order; empty: no A records); panics
    /// after `limit` naming what it last saw.
    pub async fn wait_a(&self, name: &str, want: &[Ipv4Addr], limit: Duration) {
        let mut want = want.to_vec();
        want.sort();
        let start = Instant::now();
        loop {
            let got = self.query_a(name);
            if got.as_ref() == Ok(&want) {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "{name} A never became {want:?} within {limit:?}; last answer {got:?}\nnamed log tail:\n{}",
                    tail(&self.log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
