//! A publish on Redis: numbered, kept and announced by one run of
//! [`scripts::PUBLISH`](super::scripts::PUBLISH), within [`PUBLISH_TIMEOUT`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::announce::encode_key;
use super::scripts::LOG_ENTRIES;
use super::RedisBroker;
use crate::broker::{Announced, BrokerError, Publishing};
use crate::history::StreamKey;
use crate::protocol::{PendingFrame, MESSAGE_FRAME_HEAD};

/// The longest a publish waits for Redis: after it, the publisher is told
/// 503 with the outcome unknown (the script may have run), and herald
/// sends nothing more for it. Without this the connection manager's
/// reconnection attempts could hold a publish for several seconds, and
/// send it once Redis came back, long after the publisher gave up.
/// Shorter than the connection's response timeout (2 s), so that a publish
/// Redis took but did not answer always ends here, as `TimedOut`.
pub(super) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisBroker {
    /// Refused at once, without sending anything, while the node's
    /// subscription is down (Redis is known to be unreachable); otherwise
    /// runs the publish script, waiting at most [`PUBLISH_TIMEOUT`].
    pub(super) fn publish_frame(&self, key: StreamKey, frame: &PendingFrame) -> Publishing {
        if !self.subscribed.load(Ordering::Relaxed) {
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
        let expiry = self.expiry;
        let after_seq = frame.after_seq();
        let history_size = self.history_size;
        let floor = self.standing.seen.load(Ordering::Relaxed);
        let script = self.publish.clone();
        let mut con = self.commands.clone();
        let standing = self.standing.clone();
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
                .arg(candidate.as_str());
            // Dropped on time out: not sent later if it was not sent yet.
            let answer = tokio::time::timeout(
                PUBLISH_TIMEOUT,
                invocation.invoke_async::<(u64, u64)>(&mut con),
            )
            .await;
            let (seq, nodes) = answer
                .map_err(|_| BrokerError::TimedOut {
                    secs: PUBLISH_TIMEOUT.as_secs(),
                })?
                .map_err(|e| {
                    // The connection's own response timeout: sent, unanswered.
                    if e.is_timeout() {
                        BrokerError::TimedOut {
                            secs: PUBLISH_TIMEOUT.as_secs(),
                        }
                    } else {
                        unavailable(e)
                    }
                })?;
            standing.seen.fetch_max(seq, Ordering::Relaxed);
            Ok(Announced { seq, nodes })
        }))
    }
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}
