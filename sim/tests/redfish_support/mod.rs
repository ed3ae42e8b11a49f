//! Shared by the Redfish driver tests: the image server a BMC downloads boot media and
//! firmware from.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Serves `GET /<anything>` with a 4 KiB body on 127.0.0.1, until dropped. An image under
/// `held/` sends its status line and headers at once but its body only after
/// [`Images::release`] (or 30 s): a download still under way, as with a large ISO.
#[derive(Debug)]
pub struct Images {
    port: u16,
    stop: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
}

impl Images {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicBool::new(true));
        let (s, h) = (Arc::clone(&stop), Arc::clone(&held));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let h = Arc::clone(&h);
                std::thread::spawn(move || serve(conn, &h));
            }
        });
        Self { port, stop, held }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Lets the downloads of `held/` images finish.
    pub fn release(&self) {
        self.held.store(false, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, held: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    let _ = r.read_line(&mut request_line);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
    }
    let body = vec![7u8; 4096];
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if request_line.contains(" /held/") {
        let _ = conn.flush();
        let since = Instant::now();
        while held.load(Ordering::Relaxed) && since.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = conn.write_all(&body);
}

impl Drop for Images {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
