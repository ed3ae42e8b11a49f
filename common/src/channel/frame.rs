//! Length-delimited framing: every message on a channel stream is a 4-byte big-endian length
//! followed by that many bytes of protobuf. A frame longer than the agreed maximum is an error
//! before any of its body is buffered, so a hostile peer cannot make the reader allocate.

/// Default largest frame body, in bytes (a full intent snapshot of a core site fits easily).
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame announces (or a message needs) more bytes than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

/// Prefixes `body` with its length.
pub fn encode(body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    if body.len() > max || body.len() > u32::MAX as usize {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Encodes a protobuf message as one frame.
pub fn encode_message<M: prost::Message>(msg: &M, max: usize) -> Result<Vec<u8>, FrameError> {
    let len = msg.encoded_len();
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode(&mut out)
        .expect("a Vec grows to fit the message");
    Ok(out)
}

/// Reads the body length from a header, checking it against `max`.
pub fn body_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// An incremental decoder: push bytes as they arrive, take whole frames out.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder refusing frames over `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            max,
            buf: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame body, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header: [u8; HEADER_LEN] = self.buf[..HEADER_LEN].try_into().expect("4 bytes");
        let len = body_len(header, self.max)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(body))
    }

    /// Checks the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_in_pieces() {
        let a = encode(b"hello", 16).unwrap();
        let b = encode(b"", 16).unwrap();
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let mut d = FrameDecoder::new(16);
        for byte in &stream {
            d.push(std::slice::from_ref(byte));
        }
        assert_eq!(d.next_frame().unwrap().unwrap(), b"hello");
        assert_eq!(d.next_frame().unwrap().unwrap(), b"");
        assert_eq!(d.next_frame().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn oversized_is_refused_from_the_header_alone() {
        let mut d = FrameDecoder::new(8);
        d.push(&100u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 100, max: 8 })
        );
        assert!(encode(&[0; 9], 8).is_err());
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut d = FrameDecoder::new(8);
        d.push(&[0, 0, 0, 5, 1]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 5 }));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = FrameDecoder::new(64);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
        }

        #[test]
        fn frames_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut d = FrameDecoder::new(64);
            for b in &bodies { d.push(&encode(b, 64).unwrap()); }
            for b in &bodies { prop_assert_eq!(&d.next_frame().unwrap().unwrap(), b); }
            prop_assert_eq!(d.next_frame().unwrap(), None);
        }
    }
}
