//! A node catching up after a gap in its subscription: a killed
//! connection, Redis's output-buffer limit, a Redis restart, the node
//! paused. Pub/sub does not keep what it announced while a subscriber was
//! away, so the publish script also writes the stream of each seq to the
//! node log (`<prefix>:log`). Once subscribed again, a node reads in one
//! run of [`scripts::CATCH_UP`](super::scripts::CATCH_UP) every seq
//! numbered after the last it fanned out, with the frames the streams
//! still keep, up to the counter at that instant; it fans those out, then
//! the announcements above that instant. Where a stream no longer keeps a
//! missed frame, the sessions of that stream are told to resume (which
//! answers them from the history, or with `reset`); where the log does not
//! reach back far enough, or Redis lost its data, all of them are.

use bytestring::ByteString;
use redis::aio::ConnectionManager;

use super::announce::decode_key;
use super::scripts::{CatchUpReply, CATCH_UP, CATCH_UP_BYTES, LOG_ENTRIES};
use crate::broker::{Missed, Publication};
use crate::ids::Epoch;

/// What a node missed while its subscription was down.
pub(super) enum CaughtUp {
    /// Every seq after the node's last up to `upto`: the frames still kept,
    /// in seq order, to fan out, and what to tell the sessions whose
    /// frames are gone.
    Found {
        upto: u64,
        publications: Vec<Publication>,
        missed: Option<Missed>,
    },
    /// The node cannot tell what it missed before `upto`: every session
    /// must resume.
    Lost { upto: u64 },
    /// The cluster's epoch is not the node's: Redis lost its data.
    EpochChanged,
}

/// Reads the catch-up script's keys under `prefix`; runs it.
pub(super) struct CatchUp {
    script: redis::Script,
    prefix: String,
}

impl CatchUp {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            script: redis::Script::new(CATCH_UP),
            prefix: prefix.to_owned(),
        }
    }

    /// What was numbered in `epoch` after `after`, in one round trip.
    pub(super) async fn read(
        &self,
        con: &mut ConnectionManager,
        epoch: &Epoch,
        after: u64,
    ) -> Result<CaughtUp, redis::RedisError> {
        let prefix = &self.prefix;
        // KEYS and ARGV in the order `scripts::CATCH_UP` documents.
        let (outcome, latest, entries): CatchUpReply = self
            .script
            .key(format!("{prefix}:epoch"))
            .key(format!("{prefix}:seq"))
            .key(format!("{prefix}:log"))
            .arg(epoch.as_str())
            .arg(after)
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg(format!("{prefix}:stream:"))
            .arg(CATCH_UP_BYTES)
            .arg(LOG_ENTRIES)
            .invoke_async(con)
            .await?;
        Ok(match outcome.as_str() {
            "ok" => found(latest, entries),
            "epoch" => CaughtUp::EpochChanged,
            _ => CaughtUp::Lost { upto: latest },
        })
    }
}

/// The script's `ok` answer: the frames kept become publications; a seq
/// whose frame is gone, or that cannot be read, names its stream among
/// the missed (all of them when the stream cannot be named).
fn found(upto: u64, entries: Vec<(String, String, Vec<u8>)>) -> CaughtUp {
    let mut publications = Vec::with_capacity(entries.len());
    let mut missed: Option<Missed> = None;
    for (id, name, frame) in entries {
        let key = decode_key(&name);
        let seq = id.split('-').next().and_then(|s| s.parse::<u64>().ok());
        let frame = String::from_utf8(frame).ok().filter(|f| !f.is_empty());
        match (key, seq, frame) {
            (Some(key), Some(seq), Some(frame)) => publications.push(Publication {
                key,
                seq,
                frame: ByteString::from(frame),
            }),
            (Some(key), _, _) => Missed::add(&mut missed, key),
            (None, _, _) => missed = Some(Missed::Everything),
        }
    }
    CaughtUp::Found {
        upto,
        publications,
        missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::StreamKey;

    #[test]
    fn kept_frames_are_fanned_out_and_gone_ones_name_their_stream() {
        let entries = vec![
            ("7-0".into(), "b".into(), b"{\"seq\":7}".to_vec()),
            ("8-0".into(), "c:room".into(), Vec::new()),
            ("9-0".into(), "i:63".into(), b"{\"seq\":9}".to_vec()),
        ];
        let CaughtUp::Found {
            upto,
            publications,
            missed,
        } = found(9, entries)
        else {
            panic!("expected a catch-up");
        };
        assert_eq!(upto, 9);
        let seqs: Vec<u64> = publications.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [7, 9]);
        let Some(Missed::Streams(keys)) = missed else {
            panic!("expected the room to be missed");
        };
        assert_eq!(
            keys,
            [StreamKey::Channel(
                crate::ids::ChannelName::parse("room").unwrap()
            )]
        );
        let unreadable = vec![("10-0".into(), "x:what".into(), Vec::new())];
        assert!(matches!(
            found(10, unreadable),
            CaughtUp::Found {
                missed: Some(Missed::Everything),
                ..
            }
        ));
    }
}
