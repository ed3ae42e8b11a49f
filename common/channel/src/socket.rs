//! The one piece of socket code central and the agent share: a UDP socket for a QUIC endpoint,
//! with large buffers.
//!
//! A reconnect storm delivers thousands of Initial packets to central's one socket within a
//! second; what does not fit in the receive buffer is dropped, and a dropped Initial costs its
//! agent a retransmission timeout (a second or more). The kernel caps `SO_RCVBUF` at
//! `net.core.rmem_max` (often 4 MiB or less), so when that cap bites and the process may
//! override it (`CAP_NET_ADMIN`), the buffers are forced (`SO_RCVBUFFORCE`); otherwise the
//! capped size stays and the caller reports it.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// What the kernel granted for a UDP socket (as it reports them: Linux doubles the asked
/// size for its own bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// Receive buffer, bytes.
    pub recv: usize,
    /// Send buffer, bytes.
    pub send: usize,
}

/// A non-blocking UDP socket bound to `addr` with receive and send buffers of `buffer` bytes
/// where the kernel allows (see the module documentation), and the sizes granted.
pub fn bind_udp(
    addr: SocketAddr,
    buffer: usize,
) -> std::io::Result<(std::net::UdpSocket, BufferSizes)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a refused size leaves the default, and the result is reported.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    if socket.recv_buffer_size()? < buffer {
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &buffer);
    }
    if socket.send_buffer_size()? < buffer {
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::SndBufForce, &buffer);
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let sizes = BufferSizes {
        recv: socket.recv_buffer_size()?,
        send: socket.send_buffer_size()?,
    };
    Ok((socket.into(), sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process holds CAP_NET_ADMIN (bit 12 of the effective set).
    fn has_net_admin() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let hex = s
                    .lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))?
                    .trim()
                    .to_owned();
                u64::from_str_radix(&hex, 16).ok()
            })
            .is_some_and(|caps| caps & (1 << 12) != 0)
    }

    #[test]
    fn buffers_reach_the_asked_size_or_the_kernel_cap() {
        let asked = 8 * 1024 * 1024;
        let (socket, sizes) = bind_udp("127.0.0.1:0".parse().expect("valid"), asked)
            .expect("a loopback socket binds");
        assert!(socket.local_addr().expect("bound").port() > 0);
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        // Forced (privileged) or not, the buffer is never below what SO_RCVBUF alone gives:
        // the asked size or the cap, doubled by Linux.
        let floor = cap.map_or(asked, |c| asked.min(c));
        assert!(sizes.recv >= floor, "{sizes:?} below {floor}");
        if has_net_admin() {
            assert!(
                sizes.recv >= asked,
                "CAP_NET_ADMIN forces {asked}: {sizes:?}"
            );
        }
    }
}
