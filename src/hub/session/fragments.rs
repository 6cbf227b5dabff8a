//! Reassembly of fragmented client messages (RFC 6455 §5.4), bounded by
//! `max_frame_bytes` and checked for UTF-8 once complete.

use actix_http::ws::Item;
use bytes::BytesMut;

/// What one continuation frame amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// More fragments to come.
    Pending,
    /// A complete text message.
    Text(String),
    /// A complete binary message (herald refuses those with an error frame;
    /// the echo route sends them back).
    Binary(bytes::Bytes),
    /// The message grew past the limit (close 1009).
    TooBig,
    /// A complete text message that is not UTF-8 (close 1007).
    InvalidUtf8,
    /// A continuation with no message started (close 1002).
    OutOfOrder,
}

pub struct Reassembler {
    max_bytes: usize,
    partial: Option<Partial>,
}

struct Partial {
    is_text: bool,
    data: BytesMut,
    /// How far `data` is known to be complete, valid UTF-8 (text only).
    valid_up_to: usize,
}

impl Reassembler {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            partial: None,
        }
    }

    pub fn push(&mut self, item: Item) -> Assembled {
        let (first, chunk, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        if let Some(is_text) = first {
            self.partial = Some(Partial {
                is_text,
                data: BytesMut::new(),
                valid_up_to: 0,
            });
        }
        // The codec orders continuations; this is a second line of defence.
        let Some(partial) = self.partial.as_mut() else {
            return Assembled::OutOfOrder;
        };
        if partial.data.len() + chunk.len() > self.max_bytes {
            self.partial = None;
            return Assembled::TooBig;
        }
        partial.data.extend_from_slice(&chunk);
        // Fail fast on text: a sequence that is invalid (not merely cut
        // short at the fragment's end) ends the message now. Each byte is
        // checked once, from the last complete character on.
        if partial.is_text {
            match std::str::from_utf8(&partial.data[partial.valid_up_to..]) {
                Ok(_) => partial.valid_up_to = partial.data.len(),
                Err(e) if e.error_len().is_none() => partial.valid_up_to += e.valid_up_to(),
                Err(_) => {
                    self.partial = None;
                    return Assembled::InvalidUtf8;
                }
            }
        }
        if !last {
            return Assembled::Pending;
        }
        match self.partial.take() {
            Some(Partial {
                is_text: true,
                data,
                ..
            }) => match String::from_utf8(data.to_vec()) {
                Ok(text) => Assembled::Text(text),
                Err(_) => Assembled::InvalidUtf8,
            },
            Some(Partial {
                is_text: false,
                data,
                ..
            }) => Assembled::Binary(data.freeze()),
            None => Assembled::OutOfOrder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn joins_fragments_and_checks_size_and_utf8() {
        let mut r = Reassembler::new(8);
        assert_eq!(
            r.push(Item::FirstText(Bytes::from_static(b"ab"))),
            Assembled::Pending
        );
        assert_eq!(
            r.push(Item::Continue(Bytes::from_static(b"cd"))),
            Assembled::Pending
        );
        assert_eq!(
            r.push(Item::Last(Bytes::from_static(b"e"))),
            Assembled::Text("abcde".into())
        );
        assert_eq!(r.push(Item::Last(Bytes::new())), Assembled::OutOfOrder);
        r.push(Item::FirstText(Bytes::from_static(b"12345")));
        assert_eq!(
            r.push(Item::Last(Bytes::from_static(b"6789"))),
            Assembled::TooBig
        );
        r.push(Item::FirstText(Bytes::from_static(&[0xe2, 0x82])));
        assert_eq!(
            r.push(Item::Last(Bytes::from_static(&[0x28]))),
            Assembled::InvalidUtf8
        );
        r.push(Item::FirstBinary(Bytes::from_static(b"x")));
        assert_eq!(
            r.push(Item::Last(Bytes::new())),
            Assembled::Binary(Bytes::from_static(b"x"))
        );
    }
}
