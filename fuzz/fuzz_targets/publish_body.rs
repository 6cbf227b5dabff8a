//! `POST /` bodies, form and JSON: whatever is accepted becomes a message
//! frame that is valid JSON on one line, with the target it named.
#![no_main]

use herald::protocol::PendingFrame;
use herald::routes::publish::{BodyKind, Publish, Target};
use libfuzzer_sys::fuzz_target;

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
    let value: serde_json::Value = serde_json::from_str(&stamped).expect("a frame is JSON");
    assert_eq!(value["type"], "message");
    assert_eq!(value["seq"], 42);
    let data: serde_json::Value =
        serde_json::from_str(publish.message.get()).expect("data is JSON");
    assert_eq!(value["data"], data);
    if let Some(id) = id {
        assert_eq!(value["id"], id.as_str());
    }
    if let Some(channel) = channel {
        assert_eq!(value["channel"], channel.as_str());
    }
});
