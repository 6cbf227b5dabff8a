//! Whether Redis answers at all. A Redis that is stopped, hung or
//! overloaded, or a network path that stalled, keeps the node's
//! connections open and answers nothing: no error ever arrives, and
//! without a question nothing would notice. So the node PINGs Redis on its
//! command connection (the one publishes use) every [`PROBE_INTERVAL`],
//! and takes it for unresponsive when an answer does not come within
//! `publish_timeout_ms`, the wait a publish would get, or the PING fails.
//! That goes to the node's health (`health.rs`): `/health` says
//! `broker_connected: false` with the reason, `/ready` answers 503, and
//! publishes are refused without being sent, until a PING is answered
//! within the bound, which clears it at once. A late answer does not: a
//! Redis slower than `publish_timeout_ms` would time out most publishes
//! (504, outcome unknown), so the node stays down, refusing them with a
//! clean 503, rather than flapping at each late answer.
//!
//! One PING at most is in flight: after its bound the probe keeps waiting
//! for that same answer, or the connection's response timeout
//! (`publish_timeout_ms` + 1 s), before it sends the next. A Redis stopped
//! for a long time thus finds one PING per response timeout queued when
//! it goes on.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::RedisBroker;

/// How often the node PINGs Redis.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

impl RedisBroker {
    /// Starts the probe, for as long as the process runs.
    pub(super) fn probe(&self) {
        let mut con = self.commands.clone();
        let health = self.health.clone();
        let bound = self.publish_timeout;
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let command = redis::cmd("PING");
                let mut ping = Box::pin(command.query_async::<String>(&mut con));
                match tokio::time::timeout(bound, &mut ping).await {
                    Ok(Ok(_)) => health.ping_answered(),
                    Ok(Err(e)) => health.ping_unanswered(&format!("a PING to Redis failed: {e}")),
                    Err(_) => {
                        health.ping_unanswered(&format!(
                            "Redis did not answer a PING within {} ms (stopped, hung, overloaded or unreachable)",
                            bound.as_millis()
                        ));
                        // Late or never: not an answer within the bound.
                        let _ = ping.await;
                    }
                }
            }
        });
    }
}
