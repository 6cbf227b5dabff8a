//! A client's position in the message sequence, as it sends it back to
//! resume: `since` and `epoch` in a URL or a `register` frame, or an SSE
//! event id.

use crate::ids::Epoch;

/// A client's position in the server's message sequence: it has every
/// message addressed to it up to `since`, in server lifetime `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: Epoch,
    pub since: u64,
}

impl Position {
    /// Longest epoch accepted from a client, in bytes.
    pub const MAX_EPOCH_BYTES: usize = Epoch::MAX_BYTES;

    /// Builds a position from the two values a client sends.
    pub fn new(epoch: String, since: u64) -> Result<Self, String> {
        let epoch = Epoch::parse(&epoch).map_err(|e| e.to_string())?;
        Ok(Self { epoch, since })
    }

    /// Reads `<epoch>:<seq>`, the form SSE event ids and `Last-Event-ID`
    /// carry.
    pub fn parse_event_id(text: &str) -> Result<Self, String> {
        let (epoch, seq) = text
            .rsplit_once(':')
            .ok_or("Last-Event-ID must be <epoch>:<seq>")?;
        let since = seq
            .parse()
            .map_err(|_| "Last-Event-ID must end in a sequence number".to_owned())?;
        Self::new(epoch.to_owned(), since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_event_ids() {
        let p = Position::parse_event_id("a1b2-c3:41").unwrap();
        assert_eq!((p.epoch.as_str(), p.since), ("a1b2-c3", 41));
        assert!(Position::parse_event_id("41").is_err());
        assert!(Position::parse_event_id("e:x").is_err());
        assert!(Position::parse_event_id("bad epoch:1").is_err());
    }
}
