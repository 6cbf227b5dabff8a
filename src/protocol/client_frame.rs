//! What a client sends over its WebSocket: [`ClientFrame`].

use serde::Deserialize;

use crate::ids::{ChannelName, ClientId};

/// A text frame a client sends. Fields a client adds beyond these are ignored,
/// so newer clients keep working against older servers.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Register (or re-register) this session: under `id`, or under the
    /// `sub` of `token` (which wins when both are given).
    Register {
        #[serde(default)]
        id: Option<ClientId>,
        #[serde(default)]
        token: Option<String>,
        /// With `epoch`: resume after this seq (see [`Position`]).
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        epoch: Option<String>,
    },
    /// Start receiving a channel's messages.
    Subscribe { channel: ChannelName },
    /// Stop receiving a channel's messages.
    Unsubscribe { channel: ChannelName },
    /// Replace the session's token with a fresh one for the same id, before
    /// the current one expires.
    Refresh { token: String },
}

impl ClientFrame {
    /// Parses one complete client text message, with an error text meant for
    /// the client.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("frame is not valid JSON: {e}")
            }
            _ => format!("bad frame: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_frames_parse_with_string_or_integer_ids() {
        for text in [
            r#"{"type":"register","id":"63"}"#,
            r#"{"type":"register","id":63,"extra":1}"#,
        ] {
            match ClientFrame::parse(text) {
                Ok(ClientFrame::Register {
                    id: Some(id),
                    token: None,
                    since: None,
                    epoch: None,
                }) => assert_eq!(id.as_str(), "63"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_frames_get_a_reason() {
        assert!(ClientFrame::parse("hello")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(ClientFrame::parse(r#"{"type":"dance"}"#)
            .unwrap_err()
            .contains("unknown variant"));
        assert!(ClientFrame::parse(r#"{"type":"register","id":""}"#)
            .unwrap_err()
            .contains("id must not be empty"));
        assert!(ClientFrame::parse(r#"{"id":"1"}"#)
            .unwrap_err()
            .contains("type"));
        assert!(
            ClientFrame::parse(r#"{"type":"subscribe","channel":"a b"}"#)
                .unwrap_err()
                .contains("channel name may only contain")
        );
    }
}
