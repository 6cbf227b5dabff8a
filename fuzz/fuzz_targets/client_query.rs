//! The query string of `/ws`, `/events` and `/poll` (id, token, channels,
//! `since` + `epoch`), and the `Last-Event-ID` header: the resume
//! positions a client sends.
#![no_main]

use herald::protocol::Position;
use herald::routes::query::ClientQuery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(query) = ClientQuery::parse(text, 8) {
        assert!(query.channels.len() <= 8);
        if let Some(position) = &query.resume {
            let again = Position::new(position.epoch.to_string(), position.since);
            assert_eq!(again.as_ref(), Ok(position));
        }
        let mut seen = query.channels.clone();
        seen.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        seen.dedup();
        assert_eq!(seen.len(), query.channels.len());
    }
    if let Ok(position) = Position::parse_event_id(text) {
        assert!(position.epoch.as_str().len() <= Position::MAX_EPOCH_BYTES);
        let id = format!("{}:{}", position.epoch, position.since);
        assert_eq!(Position::parse_event_id(&id), Ok(position));
    }
});
