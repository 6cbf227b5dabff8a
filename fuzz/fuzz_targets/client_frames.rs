//! What a WebSocket client sends, from raw bytes on: herald's bounded frame
//! reader (the header length check, then actix-http's codec with
//! `max_frame_bytes`), fed in chunks of the sizes the input picks, the
//! reassembly of fragments, and the parse of each complete text message.
//! The reader never holds more than one largest frame plus one chunk.
#![no_main]

use actix_http::ws::Message;
use herald::hub::session::fragments::{Assembled, Reassembler};
use herald::hub::session::inbound::{FrameReader, MAX_HEADER_BYTES};
use herald::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_size, mut input)) = data.split_first() else {
        return;
    };
    let chunk_size = usize::from(chunk_size).max(1);
    let mut reader = FrameReader::new(MAX_FRAME_BYTES);
    let mut reassembler = Reassembler::new(MAX_FRAME_BYTES);
    loop {
        if reader.wants_input() && !input.is_empty() {
            let n = input.len().min(chunk_size);
            reader.feed(&input[..n]);
            input = &input[n..];
        }
        assert!(reader.buffered() < MAX_FRAME_BYTES + MAX_HEADER_BYTES + chunk_size);
        // The session stops at the first error: so does this loop.
        let message = match reader.next_message() {
            Ok(Some(message)) => message,
            Ok(None) if input.is_empty() => break,
            Ok(None) => {
                assert!(reader.wants_input(), "a full buffer holds a whole frame");
                continue;
            }
            Err(_) => break,
        };
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Continuation(item) => match reassembler.push(item) {
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
            Message::Close(_) => break,
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Nop => continue,
        };
        assert!(text.len() <= MAX_FRAME_BYTES);
        if ClientFrame::parse(&text).is_ok() {
            let value: serde_json::Value = serde_json::from_str(&text).expect("a frame is JSON");
            assert!(value.is_object(), "{text}");
        }
    }
});
