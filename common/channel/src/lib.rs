//! The IO half of the agent channel that central and the agent share: frames read off QUIC
//! streams ([`frame_io`]), the session state machines' clock ([`clock`]), one TLS set-up ([`tls`]: the crypto provider, the error, the
//! transport limits both ends start from) and UDP sockets with large buffers ([`socket`]).
//!
//! The protocol itself (frames, sequence numbers, back-off, the bootstrap file) is plain data
//! in `meridian_common::channel`; this crate is where quinn, rustls and sockets begin. Only
//! `meridian-common` and `meridian-proto` among Meridian's crates are below it; it never
//! depends on central or the agent, which both build on it.

pub mod clock;
pub mod frame_io;
pub mod socket;
pub mod tls;

pub use clock::SessionClock;
pub use frame_io::read_frame;
pub use socket::{BufferSizes, bind_udp};
