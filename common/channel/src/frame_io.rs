//! Frames on QUIC streams: a length header (see `meridian_common::channel::frame`), then the
//! body.

use meridian_common::channel::frame;

/// Reads one frame from a stream, refusing bodies over `max`; `None` when the peer finished
/// the stream cleanly between frames.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, std::io::Error> {
    let mut header = [0u8; frame::HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(std::io::Error::other(e)),
    }
    let len = frame::body_len(header, max).map_err(std::io::Error::other)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(std::io::Error::other)?;
    Ok(Some(body))
}
