//! The image server tests' emulated BMCs download boot media, firmware and BFB bundles from:
//! `GET /<name>` answers a 4 KiB body on 127.0.0.1 until dropped. A name can be made to fail
//! (404) a number of times first; every request is logged with its status; an image under
//! `held/` sends its status line and headers at once but its body only after
//! [`ImageServer::release`] (or 30 s), as a large download still under way.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// See the module documentation.
#[derive(Debug)]
pub struct ImageServer {
    port: u16,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    held: AtomicBool,
    failures: Mutex<BTreeMap<String, u32>>,
    served: Mutex<Vec<(String, u16)>>,
}

impl ImageServer {
    /// Starts it on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an image server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("its address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            held: AtomicBool::new(true),
            ..Shared::default()
        });
        let (s, sh) = (Arc::clone(&stop), Arc::clone(&shared));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let sh = Arc::clone(&sh);
                std::thread::spawn(move || serve(conn, &sh));
            }
        });
        ImageServer { port, stop, shared }
    }

    /// The URL of image `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The next `times` requests for `name` get 404.
    pub fn fail(&self, name: &str, times: u32) {
        lock(&self.shared.failures).insert(name.to_owned(), times);
    }

    /// Requests served for `name`, with their status.
    pub fn served(&self, name: &str) -> Vec<u16> {
        lock(&self.shared.served)
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Lets the downloads of `held/` images finish.
    pub fn release(&self) {
        self.shared.held.store(false, Ordering::Relaxed);
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(mut conn: TcpStream, shared: &Shared) {
    let _ = conn.set_nonblocking(false);
    let Ok(clone) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(clone);
    let mut request_line = String::new();
    let _ = r.read_line(&mut request_line);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
    }
    let name = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    let fail = match lock(&shared.failures).get_mut(&name) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    };
    let (status, body) = if fail {
        ("404 Not Found", Vec::new())
    } else {
        ("200 OK", vec![7u8; 4096])
    };
    lock(&shared.served).push((name.clone(), if fail { 404 } else { 200 }));
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if name.starts_with("held/") {
        let _ = conn.flush();
        let since = Instant::now();
        while shared.held.load(Ordering::Relaxed) && since.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = conn.write_all(&body);
}
