//! What a WebSocket client sends, from raw bytes on: the frame codec
//! herald's sessions use (masked client frames, `max_frame_bytes`), the
//! reassembly of fragments, and the parse of each complete text message.
#![no_main]

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame};
use bytes::BytesMut;
use herald::hub::session::fragments::{Assembled, Reassembler};
use herald::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut codec = Codec::new().max_size(MAX_FRAME_BYTES);
    let mut reassembler = Reassembler::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::from(data);
    // The session stops at the first error: so does this loop.
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let text = match frame {
            Frame::Text(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => break, // close 1007
            },
            Frame::Continuation(item) => match reassembler.push(item) {
                Assembled::Text(text) => {
                    assert!(text.len() <= MAX_FRAME_BYTES);
                    text
                }
                Assembled::Binary(bytes) => {
                    assert!(bytes.len() <= MAX_FRAME_BYTES);
                    continue;
                }
                Assembled::Pending => continue,
                Assembled::TooBig | Assembled::InvalidUtf8 | Assembled::OutOfOrder => break,
            },
            Frame::Close(_) => break,
            Frame::Binary(_) | Frame::Ping(_) | Frame::Pong(_) => continue,
        };
        if ClientFrame::parse(&text).is_ok() {
            let value: serde_json::Value = serde_json::from_str(&text).expect("a frame is JSON");
            assert!(value.is_object(), "{text}");
        }
    }
});
