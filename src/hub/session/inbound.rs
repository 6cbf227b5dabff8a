//! The WebSocket session's input: raw bytes from the connection in, client
//! messages out, with at most about `max_frame_bytes` buffered.
//!
//! `actix-web-actors` buffers whatever the connection delivers and lets the
//! frame parser refuse an oversize frame only once all of it has arrived: a
//! frame header declaring 2^40 bytes followed by a stream of data grows the
//! buffer without limit. This reader decides from the header alone: a frame
//! declaring more than `max_frame_bytes` is refused as soon as its length is
//! known ([`ProtocolError::Overflow`], close 1009), and the connection is
//! read only while the buffer has room for one more frame, so a client that
//! sends faster than its session handles frames is held back by TCP rather
//! than by herald's memory. Frame decoding itself stays actix-http's
//! [`Codec`]; only the length check in the header is done here, because the
//! codec does it too late.
//!
//! Fragmented messages are bounded frame by frame here and as a whole by
//! [`super::fragments::Reassembler`].

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

/// The longest frame header: 2 bytes, an 8-byte extended length, a 4-byte
/// mask.
pub const MAX_HEADER_BYTES: usize = 14;

/// The payload length a frame header at the start of `buf` declares, once
/// enough of the header has arrived to tell (2, 4 or 10 bytes); `None`
/// before that.
pub fn declared_payload_len(buf: &[u8]) -> Option<u64> {
    let second = *buf.get(1)?;
    match second & 0x7F {
        126 => {
            let bytes = buf.get(2..4)?;
            Some(u64::from(u16::from_be_bytes([bytes[0], bytes[1]])))
        }
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }
        short => Some(u64::from(short)),
    }
}

/// Client frames decoded from bytes fed in, with a bounded buffer.
pub struct FrameReader {
    buf: BytesMut,
    codec: Codec,
    max_frame_bytes: usize,
}

impl FrameReader {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max_frame_bytes),
            max_frame_bytes,
        }
    }

    /// Whether the buffer has room for more input: false once it holds a
    /// whole frame of the largest allowed size (which [`Self::next_message`]
    /// then returns).
    pub fn wants_input(&self) -> bool {
        self.buf.len() < self.max_frame_bytes + MAX_HEADER_BYTES
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held, not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `None` when more input is needed. An
    /// error ends the stream: the session closes with the matching code.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if let Some(declared) = declared_payload_len(&self.buf) {
            if declared > self.max_frame_bytes as u64 {
                return Err(ProtocolError::Overflow);
            }
        }
        let Some(frame) = self.codec.decode(&mut self.buf)? else {
            return Ok(None);
        };
        Ok(Some(match frame {
            Frame::Text(data) => Message::Text(text(data)?),
            Frame::Binary(data) => Message::Binary(data),
            Frame::Continuation(item) => Message::Continuation(item),
            Frame::Ping(data) => Message::Ping(data),
            Frame::Pong(data) => Message::Pong(data),
            Frame::Close(reason) => Message::Close(reason),
        }))
    }
}

/// A text frame's payload as a string; the error names UTF-8, which the
/// session maps to close 1007.
fn text(data: Bytes) -> Result<ByteString, ProtocolError> {
    ByteString::try_from(data).map_err(|e| {
        ProtocolError::Io(std::io::Error::other(format!(
            "text frame is not valid utf-8: {e}"
        )))
    })
}

/// The session's stream of client messages over the connection's bytes.
pub struct InboundFrames<S> {
    input: S,
    reader: FrameReader,
    /// The connection's bytes have ended: decode what is left, then end.
    input_ended: bool,
    /// An error was returned: nothing more follows.
    failed: bool,
}

impl<S> InboundFrames<S> {
    pub fn new(input: S, max_frame_bytes: usize) -> Self {
        Self {
            input,
            reader: FrameReader::new(max_frame_bytes),
            input_ended: false,
            failed: false,
        }
    }
}

impl<S> Stream for InboundFrames<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Message, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            match this.reader.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(error) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            if this.input_ended {
                return Poll::Ready(None);
            }
            // Unreachable while the header check holds (a full buffer is a
            // whole frame); kept so that no path reads past the bound.
            if !this.reader.wants_input() {
                this.failed = true;
                return Poll::Ready(Some(Err(ProtocolError::Overflow)));
            }
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.reader.feed(&chunk),
                Poll::Ready(Some(Err(error))) => {
                    this.failed = true;
                    let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, error);
                    return Poll::Ready(Some(Err(ProtocolError::Io(error))));
                }
                Poll::Ready(None) => this.input_ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header declaring `len` payload bytes.
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut out = vec![first];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves bytes as they are
        out
    }

    #[test]
    fn the_declared_length_is_known_from_the_first_bytes() {
        assert_eq!(declared_payload_len(&[]), None);
        assert_eq!(declared_payload_len(&[0x81]), None);
        assert_eq!(declared_payload_len(&[0x81, 0x85]), Some(5));
        assert_eq!(declared_payload_len(&[0x81, 0xFE, 0x01]), None);
        assert_eq!(declared_payload_len(&header(0x81, 300)), Some(300));
        assert_eq!(declared_payload_len(&header(0x81, 1 << 40)[..9]), None);
        assert_eq!(declared_payload_len(&header(0x81, 1 << 40)), Some(1 << 40));
    }

    #[test]
    fn an_oversize_header_is_refused_before_its_payload_arrives() {
        let mut reader = FrameReader::new(1024);
        reader.feed(&header(0x81, 1 << 40)[..10]);
        assert!(matches!(
            reader.next_message(),
            Err(ProtocolError::Overflow)
        ));
        let mut reader = FrameReader::new(1024);
        reader.feed(&header(0x81, 1025)[..4]);
        assert!(matches!(
            reader.next_message(),
            Err(ProtocolError::Overflow)
        ));
    }

    #[test]
    fn frames_up_to_the_limit_pass_and_the_buffer_stays_bounded() {
        let mut reader = FrameReader::new(1024);
        let mut frame = header(0x81, 1024);
        frame.extend(std::iter::repeat_n(b'a', 1024));
        let mut input = frame.repeat(3);
        let mut texts = 0;
        while !input.is_empty() || reader.buffered() > 0 {
            if reader.wants_input() && !input.is_empty() {
                let n = input.len().min(100);
                reader.feed(&input[..n]);
                input.drain(..n);
            }
            assert!(reader.buffered() < 1024 + MAX_HEADER_BYTES + 100);
            if let Some(message) = reader.next_message().unwrap() {
                assert!(matches!(message, Message::Text(ref t) if t.len() == 1024));
                texts += 1;
            }
        }
        assert_eq!(texts, 3);
    }

    #[test]
    fn text_that_is_not_utf8_names_utf8() {
        let mut reader = FrameReader::new(1024);
        let mut frame = header(0x81, 2);
        frame.extend_from_slice(&[b'a', 0xFF]);
        reader.feed(&frame);
        let Err(ProtocolError::Io(e)) = reader.next_message() else {
            panic!("invalid UTF-8 accepted");
        };
        assert!(e.to_string().contains("utf-8"));
    }
}
