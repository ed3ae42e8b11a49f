//! IPv4 prefixes and transport protocols: the model in [`model`], their wire form (and the
//! parser of IPv4 addresses every message uses) in `wire.rs`.

pub mod model;
pub(crate) mod wire;

pub use model::{Ipv4Net, NetError, Protocol};
