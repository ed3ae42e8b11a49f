//! An RFC 862 UDP echo responder: every datagram goes back to its sender as it came. Agents'
//! RTT probes (`[[probe]]`, `kind = "udp-echo"`) measure against it; put a fault proxy in
//! front of it (`meridian_emulators::proxy::FaultProxy`, one per site's probe path) to give a
//! site's path a delay.

use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running echo responder; it stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Starts one on any free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<EchoServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                match socket.recv_from(&mut buf).await {
                    // A lost echo is a lost sample, which the prober handles.
                    Ok((n, from)) => {
                        let _ = socket.send_to(&buf[..n], from).await;
                    }
                    // An ICMP error of an earlier send (the prober went away): keep serving.
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        });
        Ok(EchoServer { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echoes_every_datagram_to_its_sender() {
        let echo = EchoServer::start().await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(echo.addr()).await.unwrap();
        for payload in [&b"one"[..], b"two"] {
            client.send(payload).await.unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], payload);
        }
    }
}
