//! `POST /` bodies, form and JSON: whatever is accepted becomes a message
//! frame that is valid JSON on one line, with the target it named.
#![no_main]

use herald::protocol::PendingFrame;
use herald::routes::publish::{BodyKind, Publish, Target};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;

/// A message frame as a client reads it. Not `serde_json::Value`: with
/// serde_json's `raw_value` feature (which herald turns on), `Value` takes
/// an object whose first key is `$serde_json::private::RawValue` for a
/// marker and fails on it, though it is valid JSON that herald publishes
/// as is. A struct with `data` as a `RawValue` reads any valid JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: String,
    seq: u64,
    id: Option<String>,
    channel: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Any JSON value, read the way a client's parser reads it: each string
/// and key decoded, each number as a double (serde_json refuses one out of
/// range). Written apart from the check herald runs on a published value,
/// so that a change to that check shows here.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Readable)
    }
}

impl<'de> serde::de::Visitor<'de> for Readable {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self, E> {
        if n.is_finite() {
            Ok(self)
        } else {
            Err(E::custom("a number no double holds"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<String, Readable>()?.is_some() {}
        Ok(self)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let kind = if kind & 1 == 0 {
        BodyKind::Form
    } else {
        BodyKind::Json
    };
    let Ok(publish) = Publish::parse(kind, body) else {
        return;
    };
    let (id, channel) = match &publish.target {
        Target::Everyone => (None, None),
        Target::Id(id) => (Some(id), None),
        Target::Channel(channel) => (None, Some(channel)),
    };
    let frame =
        PendingFrame::message(id, channel, &publish.message).expect("an accepted message encodes");
    let stamped = frame.stamp(42);
    // SSE frames data by line: a frame must be one line.
    assert!(!stamped.contains('\n'), "{stamped}");
    let frame: Frame = serde_json::from_str(&stamped).expect("a frame is JSON");
    assert_eq!(frame.kind, "message");
    assert_eq!(frame.seq, 42);
    // The published value, byte for byte (it was made compact on parse).
    assert_eq!(frame.data.get(), publish.message.get());
    // And it is JSON any client can read: every string and key decodes
    // (no lone surrogate), every number fits a double.
    serde_json::from_str::<Readable>(frame.data.get()).expect("data is readable JSON");
    assert_eq!(frame.id.as_deref(), id.map(|id| id.as_str()));
    assert_eq!(frame.channel.as_deref(), channel.map(|c| c.as_str()));
});
