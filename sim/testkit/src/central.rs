//! Central for tests and benchmarks: on `127.0.0.1`, data in a directory the caller owns.

use std::net::SocketAddr;
use std::path::Path;

use meridian_central::config::CentralConfig;
use meridian_central::server::{Central, CentralError};

/// How central's liveness is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Quick: a silent site is disconnected after 1.5 s, a half-open handshake dropped after
    /// 2 s (tests that watch sessions come and go).
    Quick,
    /// Relaxed: a loaded machine running thousands of agents does not drop sessions
    /// (benchmarks).
    Relaxed,
}

/// Central's configuration: data in `dir`, the channel on `listen` (port 0: any free port),
/// the API on any free port of 127.0.0.1.
pub fn config(dir: &Path, listen: SocketAddr, liveness: Liveness) -> CentralConfig {
    let mut c = CentralConfig {
        data_dir: dir.to_owned(),
        ..CentralConfig::default()
    };
    c.channel.listen = listen;
    c.api.listen = "127.0.0.1:0".parse().expect("valid address");
    c.console.listen = "127.0.0.1:0".parse().expect("valid address");
    c.metrics.listen = "127.0.0.1:0".parse().expect("valid address");
    match liveness {
        Liveness::Quick => {
            c.channel.disconnect_after_ms = 1_500;
            c.channel.handshake_timeout_ms = 2_000;
        }
        Liveness::Relaxed => {
            c.channel.disconnect_after_ms = 60_000;
            c.channel.idle_timeout_ms = 60_000;
        }
    }
    c
}

/// Any free port of 127.0.0.1.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

/// Central with [`Liveness::Quick`] on any free ports, data in `dir`.
pub async fn start(dir: &Path) -> Result<Central, CentralError> {
    Central::open(config(dir, any_port(), Liveness::Quick)).await
}
