//! The Redfish driver against a BMC no one here wrote: OpenStack sushy-tools' `sushy-emulator`
//! (fake driver, HTTP Basic from a bcrypt htpasswd file, 127.0.0.1 on a free port), with boot
//! images served by a small HTTP server in this test. Needs the Python package `sushy-tools`
//! (scripts/test.sh installs it).
//!
//! sushy-emulator is a happy-path peer: it has no sessions, no ETags and no real tasks, so this
//! checks discovery, Basic fallback, power, boot override and virtual media interoperate; the
//! failure paths are in `sim/tests/redfish_faults.rs`, against the Redfish emulator.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meridian_drivers::bmc::{
    Bmc, BmcError, BootMode, BootOverride, BootOverrideEnabled, BootTarget, MediaPolicy,
    PowerAction, PowerState, RedfishBmc, RedfishConfig, SimpleUpdate, Vendor,
};

const SYSTEM_UUID: &str = "27946b59-9e44-4fa7-8e91-f3527a1ef094";
const USER: &str = "admin";
const PASSWORD: &str = "sushy-pass";

/// sushy-emulator in a child process, killed on drop.
struct Sushy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require_sushy() {
    let ok = Command::new("python3")
        .args(["-c", "import sushy_tools, bcrypt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Python package sushy-tools is not importable: run scripts/test.sh once \
         (it installs the pinned Python test peers), then run this test again"
    );
}

fn start_sushy() -> Sushy {
    require_sushy();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = Command::new("python3")
        .args([
            "-c",
            "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), \
             bcrypt.gensalt(rounds=4)).decode())",
            PASSWORD,
        ])
        .output()
        .unwrap();
    assert!(hash.status.success(), "bcrypt: {hash:?}");
    std::fs::write(
        &htpasswd,
        format!(
            "{USER}:{}\n",
            String::from_utf8(hash.stdout).unwrap().trim()
        ),
    )
    .unwrap();
    let port = free_port();
    let state = dir.path().join("state");
    let conf = dir.path().join("sushy.conf");
    std::fs::write(
        &conf,
        format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
             SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_AUTH_FILE = '{}'\n\
             SUSHY_EMULATOR_STATE_DIR = '{}'\n\
             SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{SYSTEM_UUID}', 'name': 'node-1', \
             'power_state': 'Off', 'nics': [{{'mac': '00:5c:52:31:3a:9c', 'ip': '127.0.0.2'}}]}}]\n",
            htpasswd.display(),
            state.display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("sushy.log")).unwrap();
    let child = Command::new("python3")
        .args(["-m", "sushy_tools.emulator.main", "--config"])
        .arg(&conf)
        .env("TMPDIR", dir.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start sushy-emulator");
    let sushy = Sushy {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /redfish/v1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut line = String::new();
            if BufReader::new(s).read_line(&mut line).is_ok() && line.contains(" 200 ") {
                return sushy;
            }
        }
        assert!(Instant::now() < deadline, "sushy-emulator did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A minimal HTTP server for boot images: `GET /<name>.iso` answers bytes, anything else 404.
struct ImageServer {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ImageServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("");
                let resp = if path.ends_with(".iso") {
                    h.fetch_add(1, Ordering::Relaxed);
                    let body = vec![0x42u8; 64 * 1024];
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = conn.write_all(&resp);
            }
        });
        Self {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(port: u16, password: &str) -> RedfishConfig {
    let mut cfg = RedfishConfig::new(format!("http://127.0.0.1:{port}"), USER, password);
    cfg.request_timeout = Duration::from_secs(20);
    cfg.retry_backoff = Duration::from_millis(200);
    cfg.poll_interval = Duration::from_millis(300);
    // sushy's fake driver applies a power change 1-11 s after the request.
    cfg.power_timeout = Duration::from_secs(40);
    cfg.restart_grace = Duration::from_secs(2);
    cfg.media_timeout = Duration::from_secs(30);
    cfg.task_timeout = Duration::from_secs(30);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_emulator_interoperates() {
    let sushy = start_sushy();
    let images = ImageServer::start();
    let bmc = RedfishBmc::new(config(sushy.port, PASSWORD)).unwrap();

    // Discovery: links only, Basic (sushy has no session service).
    let d = bmc.discover().await.unwrap();
    assert_eq!(d.vendor, Vendor::SushyEmulator);
    assert!(!d.sessions && !d.session_auth, "{d:?}");
    assert_eq!(d.systems.len(), 1);
    assert!(d.host_system.as_str().ends_with(SYSTEM_UUID), "{d:?}");
    assert_eq!(d.managers.len(), 1);
    assert!(!d.chassis.is_empty());
    assert!(d.systems[0].reset_types.iter().any(|t| t == "ForceOff"));

    // Wrong credentials: 401, logged in again once, then a clear error.
    let wrong = RedfishBmc::new(config(sushy.port, "wrong")).unwrap();
    let err = wrong.discover().await.unwrap_err();
    assert!(matches!(err, BmcError::Unauthorized { .. }), "{err}");

    // Inventory: sushy serves neither Processors nor Memory; the inventory says so.
    let inv = bmc.inventory().await.unwrap();
    assert_eq!(inv.manufacturer.as_deref(), Some("Sushy Emulator"));
    assert!(
        inv.unavailable.contains(&"Processors".to_owned()),
        "{inv:?}"
    );

    // Power cycle: on, off, on, restart.
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(bmc.power(PowerAction::On).await.unwrap(), PowerState::On);
    assert_eq!(bmc.power(PowerAction::On).await.unwrap(), PowerState::On);
    assert_eq!(
        bmc.power(PowerAction::ForceOff).await.unwrap(),
        PowerState::Off
    );
    assert_eq!(bmc.power(PowerAction::On).await.unwrap(), PowerState::On);
    assert_eq!(
        bmc.power(PowerAction::ForceRestart).await.unwrap(),
        PowerState::On
    );

    // Boot override: one-time CD (sushy reads `Continuous` back: a known quirk), then disk.
    let once = bmc
        .set_boot_override(&BootOverride {
            target: BootTarget::Cd,
            enabled: BootOverrideEnabled::Once,
            mode: Some(BootMode::Uefi),
        })
        .await
        .unwrap();
    assert_eq!(once.target, BootTarget::Cd);
    let disk = bmc
        .set_boot_override(&BootOverride {
            target: BootTarget::Hdd,
            enabled: BootOverrideEnabled::Continuous,
            mode: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (disk.target, disk.enabled),
        (BootTarget::Hdd, BootOverrideEnabled::Continuous)
    );
    assert_eq!(bmc.boot_override().await.unwrap().target, BootTarget::Hdd);
    // A target sushy does not advertise is refused before anything is sent.
    let err = bmc
        .set_boot_override(&BootOverride {
            target: BootTarget::BiosSetup,
            enabled: BootOverrideEnabled::Once,
            mode: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");

    // Virtual media: insert (sushy downloads the image), idempotent re-insert, policy on
    // media present, eject.
    let first = images.url("deploy.iso");
    let st = bmc
        .insert_media(&first, MediaPolicy::EjectFirst)
        .await
        .unwrap();
    assert!(
        st.inserted && st.image.as_deref() == Some(first.as_str()),
        "{st:?}"
    );
    assert_eq!(images.hits.load(Ordering::Relaxed), 1);
    bmc.insert_media(&first, MediaPolicy::Fail).await.unwrap();
    assert_eq!(
        images.hits.load(Ordering::Relaxed),
        1,
        "re-insert sent nothing"
    );
    let second = images.url("tenant.iso");
    let err = bmc
        .insert_media(&second, MediaPolicy::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::MediaPresent { .. }), "{err}");
    let st = bmc
        .insert_media(&second, MediaPolicy::EjectFirst)
        .await
        .unwrap();
    assert_eq!(st.image.as_deref(), Some(second.as_str()));
    let st = bmc.eject_media().await.unwrap();
    assert!(!st.inserted, "{st:?}");
    assert!(!bmc.media().await.unwrap().inserted);
    // An image the BMC cannot fetch: the error carries sushy's message.
    let err = bmc
        .insert_media(&images.url("missing.img"), MediaPolicy::EjectFirst)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("download"), "{err}");

    // SimpleUpdate: the fake driver keeps no firmware versions, so sushy refuses it with a
    // 500; the error names the URL, status and sushy's message.
    let err = bmc
        .simple_update(&SimpleUpdate {
            image_uri: images.url("bios.bin"),
            transfer_protocol: Some("HTTP".to_owned()),
            targets: vec![d.host_system.clone()],
            credentials: None,
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("UpdateService.SimpleUpdate") && text.contains("HTTP 500"),
        "{text}"
    );

    bmc.logout().await.unwrap();
    drop(sushy);
}
