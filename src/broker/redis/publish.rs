//! A publish on Redis: numbered, kept and announced by one run of
//! [`scripts::PUBLISH`](super::scripts::PUBLISH), within
//! `publish_timeout_ms`. Each outcome goes to the node's health: a publish
//! that failed marks the node down, one that succeeded up.

use std::sync::atomic::Ordering;

use super::announce::encode_key;
use super::scripts::LOG_ENTRIES;
use super::RedisBroker;
use crate::broker::{Announced, BrokerError, Publishing};
use crate::history::StreamKey;
use crate::protocol::{PendingFrame, MESSAGE_FRAME_HEAD};

impl RedisBroker {
    /// Refused at once, without sending anything, while the node's
    /// subscription is down (Redis is known to be unreachable); otherwise
    /// runs the publish script, waiting at most `publish_timeout_ms`: after
    /// it, the publisher is told 503 with the outcome unknown (the script
    /// may have run), and herald sends nothing more for it. Without this
    /// bound the connection manager's reconnection attempts could hold a
    /// publish for several seconds, and send it once Redis came back, long
    /// after the publisher gave up. The connection's response timeout is
    /// longer (`RESPONSE_TIMEOUT_MARGIN`), so that a publish Redis took but
    /// did not answer always ends here, as `TimedOut`.
    pub(super) fn publish_frame(&self, key: StreamKey, frame: &PendingFrame) -> Publishing {
        if !self.health.subscribed() {
            return Publishing::Sent(Box::pin(std::future::ready(Err(BrokerError::Unavailable(
                "this node is not connected to Redis".into(),
            )))));
        }
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
            // Dropped on time out: not sent later if it was not sent yet.
            let answer =
                tokio::time::timeout(bound, invocation.invoke_async::<(u64, u64)>(&mut con)).await;
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
            let (seq, nodes) = match outcome {
                Ok(answer) => answer,
                Err(e) => {
                    health.write_failed("a publish failed", &e.to_string());
                    return Err(e);
                }
            };
            health.write_succeeded();
            standing.seen.fetch_max(seq, Ordering::Relaxed);
            Ok(Announced { seq, nodes })
        }))
    }
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}
