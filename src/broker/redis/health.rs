//! Whether this node can publish through Redis now, and why not: the one
//! place `/health` (`broker_connected`, `broker_error`, `cluster`) and
//! `/ready` read, and where a publish learns whether to try at all.
//!
//! The node is connected while its subscription is up (announcements reach
//! it; the subscription loop says so), Redis answers its PINGs (the probe,
//! `probe.rs`: a Redis that is hung, stopped or overloaded keeps its
//! connections open and answers nothing), and neither its last publish nor
//! its last presence report (every 2 s) failed. A write Redis refused (OOM
//! under `maxmemory`, a read-only replica, ...), could not be sent, or did
//! not answer in time marks the node down with that error; the next
//! publish or presence report that succeeds clears it. While the
//! subscription is down or a PING is unanswered past its bound, publishes
//! are refused without reaching Redis ([`Health::refusal`]): herald then
//! knows they were not published. The subscription loop logs its own
//! changes of state; this file logs the others, each once: a warning going
//! down, a notice coming back.
//!
//! The error is kept as text, with the Redis URL and its password hidden.

use std::sync::{Mutex, MutexGuard};

use crate::config::{redact_url_password, REDACTED};

pub(super) struct Health {
    state: Mutex<State>,
    /// `broker.url`, to be replaced by its redacted form in any error.
    url: String,
    /// Redis's password, if any: never repeated in an error.
    password: Option<String>,
}

struct State {
    subscribed: bool,
    /// Why Redis is taken for unresponsive: a PING not answered within its
    /// bound, or failed; `None` once one is answered.
    unanswered: Option<String>,
    /// Why the last write (a publish or a presence report) failed; `None`
    /// once one succeeded.
    fault: Option<String>,
    /// Whether the fault's warning was logged (it is not while the
    /// subscription is down: that loop logs its own), so that its end is
    /// logged only then.
    fault_logged: bool,
    /// Whether this node's last presence report was written. Until it is,
    /// the cluster's counts leave this node out, so they are unknown.
    presence_written: bool,
}

impl Health {
    /// Not subscribed yet, no fault, no presence written; errors will hide
    /// `url` and `password`.
    pub(super) fn new(url: &str, password: Option<&str>) -> Self {
        Self {
            state: Mutex::new(State {
                subscribed: false,
                unanswered: None,
                fault: None,
                fault_logged: false,
                presence_written: false,
            }),
            url: url.to_owned(),
            password: password.filter(|p| !p.is_empty()).map(str::to_owned),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it left plain values: still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Why a publish is refused without being sent, if it is: Redis does
    /// not answer PINGs (named first: a hung Redis takes the subscription
    /// down too), or the subscription is down.
    pub(super) fn refusal(&self) -> Option<String> {
        let state = self.state();
        match (&state.unanswered, state.subscribed) {
            (Some(why), _) => Some(format!("Redis is not answering this node ({why})")),
            (None, false) => Some("this node is not connected to Redis".into()),
            (None, true) => None,
        }
    }

    /// A PING went unanswered within its bound, or failed, for `why`.
    pub(super) fn ping_unanswered(&self, why: &str) {
        let text = self.scrub(why);
        let mut state = self.state();
        if state.unanswered.is_none() {
            log::warn!(
                "broker: {text}; not ready, and publishes refused, until Redis answers again"
            );
        }
        state.unanswered = Some(text);
    }

    /// A PING was answered.
    pub(super) fn ping_answered(&self) {
        if self.state().unanswered.take().is_some() {
            log::info!("broker: Redis answers PINGs again");
        }
    }

    /// The subscription came up, or went down.
    pub(super) fn set_subscribed(&self, up: bool) {
        self.state().subscribed = up;
    }

    /// A write to Redis failed: `what` (a publish, a presence report)
    /// because of `error`. True when this logged a warning.
    pub(super) fn write_failed(&self, what: &str, error: &str) -> bool {
        let text = self.scrub(&format!("{what}: {error}"));
        let mut state = self.state();
        let warn = state.fault.is_none() && state.subscribed;
        if warn {
            log::warn!("broker: {text}; not ready until a write to Redis succeeds");
            state.fault_logged = true;
        }
        state.fault = Some(text);
        warn
    }

    /// A write to Redis succeeded: the node takes publishes again (if its
    /// subscription is up). True when this logged the end of a fault, which
    /// it does only for a fault whose warning was logged.
    pub(super) fn write_succeeded(&self) -> bool {
        let mut state = self.state();
        let notice = state.fault.take().is_some() && std::mem::take(&mut state.fault_logged);
        if notice {
            log::info!("broker: writes to Redis succeed again");
        }
        notice
    }

    /// Whether this node's presence report was just written.
    pub(super) fn set_presence_written(&self, written: bool) {
        self.state().presence_written = written;
    }

    /// Whether the cluster's counts can include this node.
    pub(super) fn presence_written(&self) -> bool {
        self.state().presence_written
    }

    /// Whether publishes can go through now.
    pub(super) fn connected(&self) -> bool {
        let state = self.state();
        state.subscribed && state.unanswered.is_none() && state.fault.is_none()
    }

    /// Why publishes cannot go through now; `None` while they can.
    pub(super) fn error(&self) -> Option<String> {
        let state = self.state();
        match (&state.unanswered, &state.fault, state.subscribed) {
            (Some(unanswered), _, _) => Some(unanswered.clone()),
            (None, Some(fault), _) => Some(fault.clone()),
            (None, None, false) => {
                Some("not subscribed to Redis's announcements (reconnecting)".into())
            }
            (None, None, true) => None,
        }
    }

    /// `text` with the Redis URL and its password hidden.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(&self.url, &redact_url_password(&self.url));
        if let Some(password) = &self.password {
            text = text.replace(password.as_str(), REDACTED);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_while_unsubscribed_or_after_a_failed_write_until_one_succeeds() {
        let health = Health::new("redis://:hunter2@10.0.0.5:6379", Some("hunter2"));
        assert!(!health.connected());
        assert!(health.error().unwrap().contains("subscribed"));
        health.set_subscribed(true);
        assert_eq!((health.connected(), health.error()), (true, None));

        health.write_failed("publish", "OOM command not allowed (auth hunter2)");
        assert!(!health.connected());
        let error = health.error().unwrap();
        assert!(
            error.contains("OOM") && !error.contains("hunter2"),
            "{error}"
        );
        health.write_succeeded();
        assert_eq!((health.connected(), health.error()), (true, None));

        health.write_failed("report", "redis://:hunter2@10.0.0.5:6379 refused");
        let error = health.error().unwrap();
        assert!(
            error.contains("10.0.0.5") && !error.contains("hunter2"),
            "{error}"
        );
    }

    #[test]
    fn an_unanswered_ping_refuses_publishes_until_one_is_answered() {
        let health = Health::new("redis://10.0.0.5:6379", None);
        assert!(health.refusal().unwrap().contains("not connected"));
        health.set_subscribed(true);
        assert_eq!(health.refusal(), None);
        health.ping_unanswered("no answer to PING within 500 ms");
        assert!(!health.connected());
        assert!(health.refusal().unwrap().contains("within 500 ms"));
        assert!(health.error().unwrap().contains("within 500 ms"));
        // The subscription going down with it: the PING is still the news.
        health.set_subscribed(false);
        assert!(health.refusal().unwrap().contains("within 500 ms"));
        health.set_subscribed(true);
        // A write that succeeds meanwhile does not clear it: only an answer.
        health.write_succeeded();
        assert!(!health.connected());
        health.ping_answered();
        assert_eq!((health.connected(), health.refusal()), (true, None));
        // Nor does an answered PING clear a refused write.
        health.write_failed("a publish failed", "OOM");
        health.ping_answered();
        assert!(!health.connected());
        assert_eq!(
            health.refusal(),
            None,
            "writes Redis refuses are still tried"
        );
    }

    #[test]
    fn the_end_of_a_fault_is_logged_only_when_its_start_was() {
        let health = Health::new("redis://10.0.0.5:6379", None);
        // Down with the subscription: the subscription loop says so; a
        // failed write is not logged, nor is its end.
        assert!(!health.write_failed("a presence report failed", "broken pipe"));
        health.set_subscribed(true);
        assert!(!health.write_succeeded());
        // Subscribed: a warning, then its notice, once each.
        assert!(health.write_failed("a publish failed", "OOM"));
        assert!(!health.write_failed("a publish failed", "OOM"));
        assert!(health.write_succeeded());
        assert!(!health.write_succeeded());
    }
}
