//! A publish on Redis: numbered, kept and announced by one run of
//! [`scripts::PUBLISH`](super::scripts::PUBLISH), within
//! `publish_timeout_ms`, its idempotency key checked and remembered in
//! that same run. Each outcome goes to the node's health: a publish that
//! failed marks the node down, one that succeeded up.

use std::sync::atomic::Ordering;

use super::announce::encode_key;
use super::scripts::LOG_ENTRIES;
use super::RedisBroker;
use crate::broker::{Announced, BrokerError, Publishing};
use crate::history::StreamKey;
use crate::idempotency::ScopedKey;
use crate::protocol::{PendingFrame, MESSAGE_FRAME_HEAD};

impl RedisBroker {
    /// Refused at once, without sending anything, while the node's
    /// subscription is down or Redis does not answer its PINGs (see
    /// `health.rs`): the publisher is told 503, not published. Otherwise
    /// runs the publish script, waiting at most `publish_timeout_ms`: after
    /// it, the publisher is told 504 with the outcome unknown (the script
    /// may have run; a retry with the same idempotency key is safe), and
    /// herald sends nothing more for it. Without this
    /// bound the connection manager's reconnection attempts could hold a
    /// publish for several seconds, and send it once Redis came back, long
    /// after the publisher gave up. The connection's response timeout is
    /// longer (`RESPONSE_TIMEOUT_MARGIN`), so that a publish Redis took but
    /// did not answer always ends here, as `TimedOut`.
    pub(super) fn publish_frame(
        &self,
        key: StreamKey,
        frame: &PendingFrame,
        idempotency: Option<&ScopedKey>,
    ) -> Publishing {
        if let Some(why) = self.health.refusal() {
            return Publishing::Sent(Box::pin(std::future::ready(Err(BrokerError::Unavailable(
                why,
            )))));
        }
        let remembered = idempotency.map(|scoped| self.idempotency_keys(scoped));
        let evictions = self.remembering.evictions.clone();
        let name = encode_key(&key);
        let counter = format!("{}:seq", self.prefix);
        let stream = format!("{}:stream:{name}", self.prefix);
        let channel = self.channel();
        let (clock, expired) = self.expiry_keys();
        let log = self.log_key();
        let (epoch, base) = (
            format!("{}:epoch", self.prefix),
            format!("{}:base", self.prefix),
        );
        let candidate = crate::broker::new_epoch();
        let node_epoch = self.standing.epoch();
        let expiry = self.expiry;
        let after_seq = frame.after_seq();
        let history_size = self.history_size;
        let floor = self.standing.seen.load(Ordering::Relaxed);
        let script = self.publish.clone();
        let mut con = self.commands.clone();
        let standing = self.standing.clone();
        let health = self.health.clone();
        let bound = self.publish_timeout;
        Publishing::Sent(Box::pin(async move {
            // KEYS and ARGV in the order `scripts::PUBLISH` documents.
            let mut invocation = script.prepare_invoke();
            invocation
                .key(counter)
                .key(stream)
                .key(channel)
                .key(clock)
                .key(expired)
                .key(log)
                .key(epoch)
                .key(base)
                .arg(MESSAGE_FRAME_HEAD)
                .arg(after_seq)
                .arg(history_size)
                .arg(name)
                .arg(floor)
                .arg(expiry.keep_ms)
                .arg(expiry.bucket_ms)
                .arg(LOG_ENTRIES)
                .arg(candidate.as_str())
                .arg(node_epoch.as_str());
            if let Some(keys) = remembered {
                invocation
                    .key(keys.own)
                    .key(keys.index)
                    .arg(keys.window_ms)
                    .arg(keys.max_keys)
                    .arg(keys.member)
                    .arg(keys.prefix);
            }
            // Dropped on time out: not sent later if it was not sent yet.
            let answer =
                tokio::time::timeout(bound, invocation.invoke_async::<PublishReply>(&mut con))
                    .await;
            let timed_out = || BrokerError::TimedOut {
                ms: bound.as_millis() as u64,
            };
            let outcome = answer.map_err(|_| timed_out()).and_then(|answer| {
                answer.map_err(|e| {
                    if e.is_timeout() {
                        // The connection's own response timeout: sent,
                        // unanswered.
                        timed_out()
                    } else if e.is_connection_refusal()
                        || !(e.is_io_error() || e.is_connection_dropped())
                    {
                        // Never sent, or refused by Redis itself.
                        unavailable(e)
                    } else {
                        // The connection broke with the command perhaps
                        // sent: Redis may have run it.
                        BrokerError::Interrupted(e.to_string())
                    }
                })
            });
            let (seq, nodes, duplicate, evicted) = match outcome {
                Ok(answer) => answer,
                Err(e) => {
                    health.write_failed("a publish failed", &e.to_string());
                    return Err(e);
                }
            };
            // A duplicate wrote nothing (under OOM, Redis still answers
            // it): it says nothing of whether writes go through.
            if duplicate != 1 {
                health.write_succeeded();
            }
            standing.seen.fetch_max(seq, Ordering::Relaxed);
            evictions.inc_by(evicted);
            Ok(Announced {
                seq,
                nodes,
                duplicate: duplicate == 1,
            })
        }))
    }

    /// What the publish script takes for `scoped` (see
    /// [`scripts::PUBLISH`](super::scripts::PUBLISH)).
    fn idempotency_keys(&self, scoped: &ScopedKey) -> IdempotencyArgs {
        let prefix = self.idempotency_prefix();
        IdempotencyArgs {
            own: format!("{prefix}{}", scoped.as_str()),
            index: self.idempotency_index(),
            window_ms: self.remembering.limits.window.as_millis() as u64,
            max_keys: self.remembering.limits.max_keys,
            member: scoped.as_str().to_owned(),
            prefix,
        }
    }
}

/// What [`scripts::PUBLISH`](super::scripts::PUBLISH) answers: seq, nodes,
/// 1 for a duplicate, idempotency keys evicted.
type PublishReply = (u64, u64, u64, u64);

/// The KEYS and ARGV a publish with an idempotency key adds.
struct IdempotencyArgs {
    own: String,
    index: String,
    window_ms: u64,
    max_keys: usize,
    member: String,
    prefix: String,
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}
