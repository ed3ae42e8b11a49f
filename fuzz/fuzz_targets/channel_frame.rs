//! The agent channel's frame decoder (`meridian_common::channel::frame`) on hostile bytes, and
//! every frame body as the messages a session carries.
//!
//! Input: one byte choosing how the stream arrives (the size of the pieces it is pushed in,
//! and a small or a normal frame limit), then the stream. Properties checked:
//!
//! - decoding never panics, and never buffers more than it was given;
//! - every decoded frame re-encodes (`frame::encode`) to exactly the bytes it came from, so the
//!   frames decoded are a prefix of the stream;
//! - an over-limit frame is refused from its header alone, with the length the header says,
//!   and the refusal is sticky; a stream that ends inside a frame is what `finish` reports;
//! - the frames do not depend on how the stream was cut into pieces;
//! - a body that decodes as `AgentMessage`, `CentralMessage`, `EnrollRequest` or
//!   `EnrollResponse` re-encodes to a canonical form that decodes to itself and frames with
//!   `encode_message` exactly as `encode` frames its bytes; the site intents and reports in it
//!   convert to the model and back (model -> protobuf -> model) unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_common::channel::frame::{self, FrameDecoder, FrameError, HEADER_LEN};
use meridian_common::model::{SiteIntent, SiteReport};
use meridian_common::validate;
use meridian_proto::v1 as proto;
use prost::Message;

/// The small limit: reached by short inputs, so refusals get exercised.
const SMALL_MAX: usize = 32;
/// The normal limit here: big enough for real messages, small enough to stay fast.
const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&how, stream)) = data.split_first() else {
        return;
    };
    let piece = 1 + usize::from(how & 0x3f);
    let max = if how & 0x40 != 0 { SMALL_MAX } else { MAX };

    let (frames, error) = decode(stream, piece, max);
    // Pieces do not matter: the whole stream at once decodes the same.
    let (whole, whole_error) = decode(stream, stream.len().max(1), max);
    assert_eq!(frames, whole, "frames depend on how the stream was cut");
    assert_eq!(
        error, whole_error,
        "errors depend on how the stream was cut"
    );

    for body in &frames {
        messages(body, max);
    }
});

/// Decodes `stream` pushed in pieces of `piece` bytes with limit `max`, checking the
/// decoder's promises on the way; returns the frame bodies and the error that stopped it.
fn decode(stream: &[u8], piece: usize, max: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    // Bytes of `stream` pushed, and returned as frames.
    let (mut pushed, mut consumed) = (0usize, 0usize);
    for chunk in stream.chunks(piece) {
        decoder.push(chunk);
        pushed += chunk.len();
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= max, "a {}-byte frame over {max}", body.len());
                    let again = frame::encode(&body, max).expect("a decoded frame re-encodes");
                    assert_eq!(
                        again.as_slice(),
                        &stream[consumed..consumed + again.len()],
                        "a decoded frame re-encodes to other bytes"
                    );
                    consumed += again.len();
                    frames.push(body);
                }
                Ok(None) => break,
                Err(e) => {
                    refused(&decoder, &e, &stream[consumed..], max);
                    return (frames, Some(e));
                }
            }
            assert_eq!(decoder.buffered(), pushed - consumed);
        }
        assert_eq!(decoder.buffered(), pushed - consumed);
    }
    // The whole stream went in: what is left is one unfinished frame.
    let left = &stream[consumed..];
    assert_eq!(decoder.buffered(), left.len());
    match decoder.finish() {
        Ok(()) => assert!(left.is_empty(), "finish accepted {} bytes left", left.len()),
        Err(FrameError::Truncated { buffered }) => {
            assert_eq!(buffered, left.len());
            if let Some(header) = left.first_chunk::<HEADER_LEN>() {
                let len = frame::body_len(*header, max).expect("its header was accepted");
                assert!(left.len() < HEADER_LEN + len, "a whole frame left behind");
            }
        }
        Err(e) => panic!("finish reported {e}"),
    }
    (frames, None)
}

/// Checks a refusal by `next_frame`: `rest` (the stream after the last frame) starts with a
/// header announcing more than `max`, and asking again refuses the same way.
fn refused(decoder: &FrameDecoder, e: &FrameError, rest: &[u8], max: usize) {
    let FrameError::TooLarge { len, max: limit } = *e else {
        panic!("next_frame reported {e}");
    };
    assert_eq!(limit, max);
    assert!(len > max);
    let header = rest
        .first_chunk::<HEADER_LEN>()
        .expect("refused without a header");
    assert_eq!(u32::from_be_bytes(*header) as usize, len);
    assert_eq!(frame::body_len(*header, max), Err(e.clone()));
    let mut again = decoder.clone();
    assert_eq!(
        again.next_frame(),
        Err(e.clone()),
        "a refusal is not sticky"
    );
}

/// A body as each message a channel stream carries.
fn messages(body: &[u8], max: usize) {
    if let Ok(m) = proto::AgentMessage::decode(body) {
        canonical(&m, max);
        if let Some(proto::agent_message::Kind::ReportBatch(batch)) = m.kind {
            for wire in batch.reports {
                if let Ok(report) = SiteReport::try_from(wire) {
                    let back = SiteReport::try_from(proto::SiteReport::from(report.clone()))
                        .expect("a converted report converts back");
                    assert_eq!(back, report, "model -> protobuf -> model changed a report");
                }
            }
        }
    }
    if let Ok(m) = proto::CentralMessage::decode(body) {
        canonical(&m, max);
        if let Some(proto::central_message::Kind::IntentPush(push)) = m.kind
            && let Some(Ok(intent)) = push.intent.map(SiteIntent::try_from)
        {
            let valid = validate::validate_site_intent(&intent).is_ok();
            let back = SiteIntent::try_from(proto::SiteIntent::from(intent.clone()))
                .expect("a converted intent converts back");
            assert_eq!(back, intent, "model -> protobuf -> model changed an intent");
            assert_eq!(
                validate::validate_site_intent(&back).is_ok(),
                valid,
                "validation changed over a round trip"
            );
        }
    }
    if let Ok(m) = proto::EnrollRequest::decode(body) {
        canonical(&m, max);
    }
    if let Ok(m) = proto::EnrollResponse::decode(body) {
        canonical(&m, max);
    }
}

/// `m`, decoded from some body, encodes to bytes that decode and encode back to themselves
/// (comparing bytes, so a NaN in a float field does not count as a change), and framing it
/// is framing those bytes.
fn canonical<M: Message + Default>(m: &M, max: usize) {
    let bytes = m.encode_to_vec();
    let again = M::decode(bytes.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), bytes, "re-encoding is not stable");
    match frame::encode_message(m, max) {
        Ok(framed) => assert_eq!(Ok(framed), frame::encode(&bytes, max)),
        Err(e) => {
            assert!(
                bytes.len() > max,
                "encode_message refused {} bytes: {e}",
                bytes.len()
            );
        }
    }
}
