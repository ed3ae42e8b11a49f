//! Network namespaces for kernel tests: commands on the host and in a namespace, namespaces
//! that clean up after themselves (also when a test panics), veth pairs between two
//! namespaces, pings, and running a closure with its sockets inside a namespace.
//!
//! Tests that use this need root and the tools they name; [`require`] fails with a message
//! saying what is missing (`scripts/test.sh` installs them) rather than letting a test pass
//! without having checked anything.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

/// Runs a command (no shell); panics only if it cannot be started.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` (split on whitespace) in namespace `ns`; it must succeed.
pub fn ns_ok(ns: &str, cmd: &str) {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend(cmd.split_whitespace());
    ok(&args);
}

/// Fails the test unless it runs as root with every one of `tools` on the path.
pub fn require(tools: &[&str]) {
    let root = run(&["id", "-u"]).stdout == b"0\n";
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !run(&["sh", "-c", &format!("command -v {t}")])
                .status
                .success()
        })
        .collect();
    assert!(
        root && missing.is_empty(),
        "this test needs root and {} (missing: {missing:?}); run scripts/test.sh, which \
         installs them, as root",
        tools.join(", ")
    );
}

/// Namespaces named `{prefix}{name}`; every namespace with the prefix is deleted when this is
/// dropped (set `MERIDIAN_KEEP_NETNS` to keep them for a look).
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
}

impl Namespaces {
    /// Namespaces under `prefix` (make it unique to the test and the process).
    pub fn new(prefix: impl Into<String>) -> Self {
        Namespaces {
            prefix: prefix.into(),
        }
    }

    /// Adds namespace `{prefix}{name}` with its loopback up; returns its full name.
    pub fn add(&self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        ok(&["ip", "netns", "add", &full]);
        ns_ok(&full, "ip link set lo up");
        full
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if std::env::var_os("MERIDIAN_KEEP_NETNS").is_some() {
            eprintln!("keeping namespaces {}*", self.prefix);
            return;
        }
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.prefix) {
                    let _ = run(&["ip", "netns", "del", &name]);
                }
            }
        }
    }
}

/// A veth pair, `a` in `ns_a` and `b` in `ns_b`, both up.
pub fn veth(ns_a: &str, a: &str, ns_b: &str, b: &str) {
    // Made in this namespace under names unique to the process, then moved and renamed.
    let (ta, tb) = (
        format!("mnk{}a", std::process::id()),
        format!("mnk{}b", std::process::id()),
    );
    ok(&[
        "ip", "link", "add", &ta, "type", "veth", "peer", "name", &tb,
    ]);
    ok(&["ip", "link", "set", &ta, "netns", ns_a, "name", a]);
    ok(&["ip", "link", "set", &tb, "netns", ns_b, "name", b]);
    ns_ok(ns_a, &format!("ip link set {a} up"));
    ns_ok(ns_b, &format!("ip link set {b} up"));
}

/// Whether `ns` gets an answer from `ip` (three tries, so ARP and learning settle).
pub fn pings(ns: &str, ip: Ipv4Addr) -> bool {
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "ping",
        "-n",
        "-q",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        &ip.to_string(),
    ])
    .status
    .success()
}

/// Runs `f` on a thread inside namespace `ns` (sockets made there stay there).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Moves the calling thread into the namespace at `path` (`/run/netns/{name}`).
pub fn enter(path: &str) {
    let file = File::open(path).expect("open netns");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A TCP server in `ns` on `addr`, on a thread of its own for the rest of the process,
/// answering each connection with `text` and closing it.
pub fn serve_text(ns: &str, addr: std::net::SocketAddr, text: impl Into<String>) {
    use std::io::Write;
    let text = text.into();
    let listener = in_ns(ns, move || {
        std::net::TcpListener::bind(addr).expect("bind in the namespace")
    });
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(text.as_bytes());
        }
    });
}

/// What a TCP connection from `ns` to `addr` reads until the server closes it, or `None` when
/// it cannot connect within `timeout` (or the read takes longer than 2 s).
pub fn fetch_text(
    ns: &str,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Option<String> {
    use std::io::Read;
    in_ns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
}

/// `nft list table ip <table>` inside `ns`, or `None` when the table is not there.
pub fn nft_table(ns: &str, table: &str) -> Option<String> {
    let out = run(&[
        "ip", "netns", "exec", ns, "nft", "list", "table", "ip", table,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
