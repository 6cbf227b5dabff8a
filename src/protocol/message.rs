//! Message frames: a publish encoded once ([`PendingFrame`]), numbered by
//! `NotifyServer` with a copy of bytes; and the published value made compact
//! ([`minify_json`]).

use bytestring::ByteString;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::ids::{ChannelName, ClientId};

/// The bytes of every message frame before its seq. A broker that numbers
/// messages elsewhere (the Redis publish script) builds the frame as this,
/// the seq in decimal, then [`PendingFrame::after_seq`]: the bytes
/// [`PendingFrame::stamp`] builds here.
pub const MESSAGE_FRAME_HEAD: &str = r#"{"type":"message","seq":"#;

/// A message frame encoded once per publish, before its `seq` is known:
/// `NotifyServer` stamps the seq in with [`PendingFrame::stamp`], a copy
/// of bytes rather than an encoding.
#[derive(Debug, Clone)]
pub struct PendingFrame {
    /// `{"id":…,"channel":…,"data":…}`: the frame's fields after `seq`.
    tail: String,
}

#[derive(Serialize)]
struct MessageTail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a ClientId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a ChannelName>,
    data: &'a RawValue,
}

impl PendingFrame {
    /// Encodes a message frame's fields. `data` must be compact JSON (no
    /// raw line breaks: SSE frames it line by line); see [`minify_json`].
    pub fn message(
        id: Option<&ClientId>,
        channel: Option<&ChannelName>,
        data: &RawValue,
    ) -> Result<Self, String> {
        let tail = serde_json::to_string(&MessageTail { id, channel, data })
            .map_err(|e| format!("could not encode the message: {e}"))?;
        Ok(Self { tail })
    }

    /// The frame's fields after `seq`, without the opening brace (what a
    /// broker that numbers messages elsewhere appends after the seq).
    pub fn fields(&self) -> &str {
        self.tail.get(1..).unwrap_or("}")
    }

    /// The bytes of the frame after its seq: a comma, then its fields.
    pub fn after_seq(&self) -> String {
        format!(",{}", self.fields())
    }

    /// The complete frame `{"type":"message","seq":<seq>,…}`.
    pub fn stamp(&self, seq: u64) -> ByteString {
        // The tail always starts with `{` and holds at least `data`.
        let fields = self.fields();
        let mut frame = String::with_capacity(MESSAGE_FRAME_HEAD.len() + 21 + self.tail.len());
        frame.push_str(MESSAGE_FRAME_HEAD);
        frame.push_str(itoa::Buffer::new().format(seq));
        frame.push(',');
        frame.push_str(fields);
        ByteString::from(frame)
    }
}

/// Removes the whitespace between the tokens of valid JSON, leaving strings
/// untouched, so a published value is stored and sent compact and on one
/// line. Numbers and strings keep their exact text.
pub fn minify_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frames_embed_the_data_verbatim_with_the_stamped_seq() {
        let data = RawValue::from_string(r#"{"order":17}"#.into()).unwrap();
        let id = ClientId::parse("63").unwrap();
        let frame = PendingFrame::message(Some(&id), None, &data).unwrap();
        assert_eq!(
            &*frame.stamp(42),
            r#"{"type":"message","seq":42,"id":"63","data":{"order":17}}"#
        );
        let frame = PendingFrame::message(None, None, &data).unwrap();
        assert_eq!(
            &*frame.stamp(7),
            r#"{"type":"message","seq":7,"data":{"order":17}}"#
        );
        let news = ChannelName::parse("news").unwrap();
        let frame = PendingFrame::message(None, Some(&news), &data).unwrap();
        let stamped = frame.stamp(u64::MAX);
        let parsed: serde_json::Value = serde_json::from_str(&stamped).unwrap();
        assert_eq!(parsed["seq"], u64::MAX);
        assert_eq!(parsed["channel"], "news");
    }

    #[test]
    fn minify_keeps_strings_and_numbers_exact() {
        let raw = "{ \"a\" : [1 ,\n 2.50e3 ],\r\n\t\"s\": \"x \\\" y\\n \\\\\" , \"big\": 123456789012345678901234567890 }";
        let min = minify_json(raw);
        assert_eq!(
            min,
            r#"{"a":[1,2.50e3],"s":"x \" y\n \\","big":123456789012345678901234567890}"#
        );
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&min).unwrap();
        assert_eq!(a, b);
    }
}
