//! [`Ipv4Net`], the transport protocol, and the parser of IPv4 addresses that every message
//! carrying an address uses.

use std::net::Ipv4Addr;

use meridian_proto::v1 as proto;

use super::model::{Ipv4Net, Protocol};
use crate::jurisdiction::shown;
use crate::wire::{AtField, ConvertError, ConvertProblem, invalid, narrow, wire_enum};

wire_enum!(Protocol <=> TransportProtocol { Tcp, Udp });

/// A dotted-quad IPv4 address.
pub(crate) fn ipv4_addr(raw: &str) -> Result<Ipv4Addr, ConvertError> {
    raw.parse().map_err(|_| {
        ConvertProblem::Invalid(format!(
            "{} is not an IPv4 address (write it as a dotted quad, e.g. 192.0.2.1)",
            shown(raw)
        ))
        .into()
    })
}

impl From<Ipv4Net> for proto::Ipv4Net {
    fn from(n: Ipv4Net) -> Self {
        Self {
            addr: n.addr().to_string(),
            prefix_len: n.prefix_len().into(),
        }
    }
}

impl TryFrom<proto::Ipv4Net> for Ipv4Net {
    type Error = ConvertError;

    /// Host bits must be zero: the model would clear them, losing what was sent.
    fn try_from(n: proto::Ipv4Net) -> Result<Self, ConvertError> {
        let addr = ipv4_addr(&n.addr).at("addr")?;
        let len: u8 = narrow(n.prefix_len).at("prefix_len")?;
        let net = Ipv4Net::new(addr, len).map_err(invalid).at("prefix_len")?;
        if net.addr() != addr {
            return Err(ConvertProblem::Invalid(format!(
                "{addr} has host bits set for a /{len}; the network address is {}",
                net.addr()
            )))
            .at("addr");
        }
        Ok(net)
    }
}
