//! The server under the HTTP emulators (NVUE, ONTAP): HTTP/1.1 on `127.0.0.1:<ephemeral>`,
//! served by a thread and a runtime of its own, so tests can drive an emulator from
//! synchronous code; stopped and joined when dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// A running server thread.
#[derive(Debug)]
pub(crate) struct HttpThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpThread {
    /// Starts thread `name` serving every request with `handle(state, request)`; an `Err` from
    /// it closes the connection without an answer. `background(state)` runs beside the server
    /// on the same runtime (an emulator's job worker).
    pub(crate) fn start<S, H, F, E, B>(
        name: &str,
        state: S,
        background: impl FnOnce(S) -> B + Send + 'static,
        handle: H,
    ) -> std::io::Result<Self>
    where
        S: Clone + Send + Sync + 'static,
        H: Fn(S, Request<Incoming>) -> F + Copy + Send + Sync + 'static,
        F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        B: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let label = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, emulator = label, "cannot listen");
                            return;
                        }
                    };
                    tokio::spawn(background(state.clone()));
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let st = state.clone();
                                tokio::spawn(async move {
                                    let svc = service_fn(move |req| handle(st.clone(), req));
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), svc)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })?;
        Ok(HttpThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
