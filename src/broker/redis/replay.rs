//! A resume on Redis: everything kept after a position, read by one run of
//! [`scripts::REPLAY`](super::scripts::REPLAY) within the replay budget,
//! or the refusal, with the cluster's newest position. One script is one
//! round trip and one atomic read, whatever the number of streams: the
//! counter and every stream are read at the same instant. A Redis that
//! cannot be read now (the subscription is down, the script fails to run
//! or is not answered within the connection's response timeout) is not a
//! lost history: the resume is to be retried later, not reset.

use std::sync::atomic::Ordering;

use bytestring::ByteString;

use super::announce::encode_key;
use super::scripts::{ReplayReply, REPLAY_PAGE_ENTRIES};
use super::RedisBroker;
use crate::broker::{Frames, NotReplayed, Refused, Replaying, Snapshot};
use crate::history::StreamKey;
use crate::ids::Epoch;
use crate::protocol::Position;
use crate::replay::{HistoryKeeper, ReplayBudget, ResetReason, REPLAY_ENTRY_OVERHEAD_BYTES};

impl RedisBroker {
    /// Fetches everything kept after `from` (a stream's `has_from` cannot
    /// bound it: live messages may still be on their way), in one script,
    /// with the cluster's counter read in the same script (the snapshot's
    /// `upto`),
    /// or refuses when `from` is not of the cluster's epoch (Redis lost its
    /// data, or it is from elsewhere: the refusal then carries the cluster
    /// epoch's history of these streams from its base, to follow the
    /// `reset`), a stream dropped a message after it, or the messages need
    /// more than `max_replay_bytes` (Redis then sends none of them). A
    /// refusal carries the cluster's newest position, read in the same
    /// script; when the epoch differed, the node joins the cluster again
    /// first, which gives Redis an epoch if it lost its own.
    /// [`NotReplayed::Unavailable`] at once while the node's subscription
    /// is down or Redis does not answer its PINGs, and when Redis cannot run the script or answer it within
    /// the connection's response timeout.
    pub(super) fn read_replay(&self, streams: &[(StreamKey, u64)], from: &Position) -> Replaying {
        if let Some(why) = self.health.refusal() {
            return Replaying::Fetching(Box::pin(std::future::ready(Err(
                NotReplayed::Unavailable(why),
            ))));
        }
        let bound = self.response_timeout();
        let mut con = self.commands.clone();
        let script = self.replay.clone();
        let prefix = &self.prefix;
        let (clock, expired) = self.expiry_keys();
        let mut names = vec![
            format!("{prefix}:epoch"),
            format!("{prefix}:seq"),
            clock,
            expired,
            format!("{prefix}:base"),
        ];
        // Without history (`history_size = 0`) there are no streams to
        // read: the counter alone says whether anything was missed.
        let kept = self.history_size > 0;
        if kept {
            names.extend(
                streams
                    .iter()
                    .map(|(key, _)| format!("{prefix}:stream:{}", encode_key(key))),
            );
        }
        let since = from.since;
        let epoch = from.epoch.clone();
        let standing = self.standing.clone();
        let max_replay_bytes = self.max_replay_bytes;
        let keep_ms = self.expiry.keep_ms;
        let keys: Vec<StreamKey> = streams.iter().map(|(key, _)| key.clone()).collect();
        let budget = ReplayBudget::new(max_replay_bytes, since);
        Replaying::Fetching(Box::pin(async move {
            // KEYS and ARGV in the order `scripts::REPLAY` documents.
            let mut invocation = script.prepare_invoke();
            for name in &names {
                invocation.key(name);
            }
            invocation
                .arg(epoch.as_str())
                .arg(since)
                .arg(format!("{}-0", since.saturating_add(1)))
                .arg(max_replay_bytes)
                .arg(REPLAY_ENTRY_OVERHEAD_BYTES)
                .arg(REPLAY_PAGE_ENTRIES)
                .arg(keep_ms);
            // Bounded as a whole, waiting for a reconnection included.
            let reply: ReplayReply = tokio::time::timeout(bound, invocation.invoke_async(&mut con))
                .await
                .map_err(|_| {
                    NotReplayed::Unavailable(format!(
                        "Redis did not answer within {} ms",
                        bound.as_millis()
                    ))
                })?
                .map_err(|e| NotReplayed::Unavailable(e.to_string()))?;
            let (outcome, a, b, latest, current, entries) = reply;
            if outcome == "epoch" {
                // Redis has no epoch: joining gives it one.
                let reason = ResetReason::EpochChanged {
                    keeper: HistoryKeeper::Cluster,
                };
                return Err(
                    match standing.join(&mut con, &crate::broker::new_epoch()).await {
                        Ok(newest) => Refused::from_newest(reason, newest),
                        Err(_) => Refused::because(reason),
                    }
                    .into(),
                );
            }
            let current = Epoch::from(current);
            // The cluster's epoch is not this node's: it missed a change of
            // epoch (Redis lost its data while the node stayed connected),
            // and takes it now.
            if current != standing.epoch() {
                let _ = standing.join(&mut con, &crate::broker::new_epoch()).await;
            }
            standing.seen.fetch_max(latest, Ordering::Relaxed);
            let refused = |reason: ResetReason| {
                NotReplayed::Refused(Refused::from_newest(reason, (current.clone(), latest)))
            };
            let snapshot = |entries: Vec<(String, Vec<u8>)>| Snapshot {
                frames: frames(entries),
                upto: latest,
            };
            match outcome.as_str() {
                "ok" if !kept && latest > since => Err(refused(ResetReason::HistoryDropped {
                    stream: "every stream (history_size = 0)".into(),
                    since,
                    up_to: latest,
                })),
                "ok" => Ok(snapshot(entries)),
                // Without history nothing follows the new epoch's base:
                // the client goes on from the counter.
                "moved" if !kept => Err(refused(ResetReason::EpochChanged {
                    keeper: HistoryKeeper::Cluster,
                })),
                "moved" => Err(NotReplayed::Refused(Refused {
                    reason: ResetReason::EpochChanged {
                        keeper: HistoryKeeper::Cluster,
                    },
                    newest: Some((current.clone(), a)),
                    following: Some(snapshot(entries)),
                })),
                "ahead" => Err(refused(ResetReason::Ahead {
                    since,
                    latest,
                    keeper: HistoryKeeper::Cluster,
                })),
                "dropped" => Err(refused(ResetReason::HistoryDropped {
                    stream: stream_named(&keys, a),
                    since,
                    up_to: b,
                })),
                "forgotten" => Err(refused(ResetReason::HistoryForgotten {
                    stream: stream_named(&keys, a),
                    since,
                })),
                "over" => Err(refused(budget.exceeded().into())),
                other => Err(refused(ResetReason::BrokerAnswer(other.to_owned()))),
            }
        }))
    }
}

/// A replay's entries as frames, in seq order.
fn frames(entries: Vec<(String, Vec<u8>)>) -> Frames {
    let mut found: Frames = entries
        .into_iter()
        .filter_map(|(id, frame)| {
            let seq = id.split('-').next()?.parse::<u64>().ok()?;
            let text = String::from_utf8(frame).ok()?;
            Some((seq, ByteString::from(text)))
        })
        .collect();
    found.sort_unstable_by_key(|(seq, _)| *seq);
    found
}

/// The stream a replay script's answer names, 1-based in `keys`.
fn stream_named(keys: &[StreamKey], index: u64) -> String {
    usize::try_from(index)
        .ok()
        .and_then(|i| keys.get(i.checked_sub(1)?))
        .map_or_else(|| "a stream".to_owned(), ToString::to_string)
}
