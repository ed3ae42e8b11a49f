//! Small shared types: [`GeoPoint`], [`Ipv4Net`], [`TimeWindow`], and the transport protocol.

use meridian_proto::v1 as proto;

use super::{AtField, ConvertError, ConvertProblem, invalid, ipv4_addr, narrow, wire_enum};
use crate::ids::{TimeWindow, Timestamp};
use crate::model::{GeoPoint, Ipv4Net};

wire_enum!(Protocol <=> TransportProtocol { Tcp, Udp });

impl From<GeoPoint> for proto::GeoPoint {
    fn from(g: GeoPoint) -> Self {
        Self {
            lat: g.lat,
            lon: g.lon,
        }
    }
}

impl TryFrom<proto::GeoPoint> for GeoPoint {
    type Error = ConvertError;

    /// Never fails: ranges and finiteness are [`validate`](crate::validate)'s.
    fn try_from(g: proto::GeoPoint) -> Result<Self, ConvertError> {
        Ok(Self {
            lat: g.lat,
            lon: g.lon,
        })
    }
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

impl From<TimeWindow> for proto::TimeWindow {
    fn from(w: TimeWindow) -> Self {
        Self {
            start: w.start().as_millis(),
            end: w.end().as_millis(),
        }
    }
}

impl TryFrom<proto::TimeWindow> for TimeWindow {
    type Error = ConvertError;

    /// `end` must be after `start` (the model's invariant); the length limit is validation's.
    fn try_from(w: proto::TimeWindow) -> Result<Self, ConvertError> {
        TimeWindow::new(
            Timestamp::from_millis(w.start),
            Timestamp::from_millis(w.end),
        )
        .map_err(invalid)
        .at("end")
    }
}
