//! Client ids and channel names, as text and as JSON: what is accepted
//! parses back to itself and is the same whichever way it came in.
#![no_main]

use herald::ids::{ChannelName, ClientId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let id = ClientId::parse(text);
    if let Ok(id) = &id {
        assert_eq!(id.as_str(), text);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        let _ = format!("{id} {id:?}");
    }
    let json = serde_json::to_string(text).expect("a string encodes");
    let from_json = serde_json::from_str::<ClientId>(&json);
    assert_eq!(from_json.is_ok(), id.is_ok(), "{text:?}");

    let channel = ChannelName::parse(text);
    if let Ok(channel) = &channel {
        assert_eq!(channel.as_str(), text);
        let _ = format!("{channel}");
    }
    let from_json = serde_json::from_str::<ChannelName>(&json);
    assert_eq!(from_json.is_ok(), channel.is_ok(), "{text:?}");
    // Any JSON at all, where an id or a channel is expected.
    let _ = serde_json::from_slice::<ClientId>(data);
    let _ = serde_json::from_slice::<ChannelName>(data);
});
