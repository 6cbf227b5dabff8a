//! A steady publisher on one node and the client on another that counts
//! what it receives: the two sides of the Redis exactly-once tests. The
//! publisher sends, in turn, broadcasts, messages to id `u1` and channel
//! `room` (the client's), and to others; it records the seq of every
//! message accepted (200), whether it was for the client, and the nodes
//! that were subscribed when each was announced.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::Value;

use super::{within, TestApp};

/// What node B publishes, in turn; `true` for what the client receives.
pub const TARGETS: [(&str, &str, bool); 5] = [
    ("", "", true),
    ("id", "u1", true),
    ("channel", "room", true),
    ("id", "u2", false),
    ("channel", "hall", false),
];

/// The client's session.
pub const QUERY: &str = "id=u1&channel=room";

/// The messages a [`Publisher`] got a 200 for, in the order accepted.
#[derive(Default)]
pub struct Accepted {
    /// Each seq, and whether the message targets the client.
    pub all: Vec<(u64, bool)>,
}

impl Accepted {
    /// The seqs of the messages for the client.
    pub fn for_client(&self) -> Vec<u64> {
        self.all
            .iter()
            .filter(|(_, targeted)| *targeted)
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// The seq of the last message accepted for the client.
    pub fn last_for_client(&self) -> Option<u64> {
        self.for_client().last().copied()
    }
}

/// Node B publishing at a steady rate until stopped; records every seq it
/// got a 200 for, and whether it targets the client.
pub struct Publisher {
    accepted: Rc<RefCell<Accepted>>,
    /// The fewest nodes any accepted publish was announced to.
    fewest_nodes: Rc<RefCell<Option<u64>>>,
    stop: Rc<RefCell<bool>>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Publisher {
    pub fn start(b: &TestApp) -> Self {
        let b = TestApp::at(b.port);
        let accepted = Rc::new(RefCell::new(Accepted::default()));
        let stop = Rc::new(RefCell::new(false));
        let (finished, done) = tokio::sync::oneshot::channel();
        let fewest_nodes = Rc::new(RefCell::new(None));
        let (seqs, stopped, fewest) = (accepted.clone(), stop.clone(), fewest_nodes.clone());
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0usize;
            while !*stopped.borrow() {
                tick.tick().await;
                let (field, value, targeted) = TARGETS[n % TARGETS.len()];
                let text = format!("m{n}");
                let mut form = vec![("message", text.as_str())];
                if !field.is_empty() {
                    form.push((field, value));
                }
                let (status, body) = b.publish_form(&form).await;
                if status == StatusCode::OK {
                    if let Some(nodes) = body["nodes"].as_u64() {
                        let mut fewest = fewest.borrow_mut();
                        *fewest = Some(fewest.map_or(nodes, |f: u64| f.min(nodes)));
                    }
                    let seq = body["seq"].as_u64().expect("seq");
                    seqs.borrow_mut().all.push((seq, targeted));
                }
                n += 1;
            }
            let _ = finished.send(());
        });
        Self {
            accepted,
            fewest_nodes,
            stop,
            done,
        }
    }

    /// The fewest nodes subscribed when a publish was announced, so far.
    pub fn fewest_nodes(&self) -> Option<u64> {
        *self.fewest_nodes.borrow()
    }

    /// How many messages for the client were accepted so far.
    pub fn accepted(&self) -> usize {
        let accepted = self.accepted.borrow();
        accepted
            .all
            .iter()
            .filter(|(_, targeted)| *targeted)
            .count()
    }

    /// Waits until `more` further messages for the client were accepted.
    pub async fn wait_for(&self, more: usize) {
        let target = self.accepted() + more;
        within("the publisher to go on", async {
            while self.accepted() < target {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
    }

    /// Stops publishing; what was accepted.
    pub async fn stop(self) -> Accepted {
        *self.stop.borrow_mut() = true;
        within("the publisher to stop", self.done).await.ok();
        self.accepted.take()
    }
}

/// What the client received, over all its sessions, and where it stands.
#[derive(Default)]
pub struct Received {
    pub seqs: Vec<u64>,
    pub position: Option<(String, u64)>,
    pub resets: Vec<Value>,
}

impl Received {
    /// Takes one frame: a message moves the client's position to its seq;
    /// `resumed` and `reset` set it. (The client starts from a position, so
    /// `registered` and `subscribed` do not.)
    pub fn take(&mut self, frame: &Value) {
        let seq = frame["seq"].as_u64();
        match frame["type"].as_str() {
            Some("message") => {
                let seq = seq.expect("seq");
                self.seqs.push(seq);
                if let Some((_, at)) = &mut self.position {
                    *at = seq;
                }
            }
            Some("resumed") | Some("reset") => {
                if frame["type"] == "reset" {
                    self.resets.push(frame.clone());
                }
                let epoch = frame["epoch"].as_str().expect("epoch").to_owned();
                self.position = Some((epoch, seq.expect("seq")));
            }
            _ => {}
        }
    }

    pub fn max(&self) -> u64 {
        self.seqs.iter().copied().max().unwrap_or(0)
    }

    pub fn resume_query(&self) -> String {
        match &self.position {
            Some((epoch, since)) => format!("{QUERY}&since={since}&epoch={epoch}"),
            None => QUERY.to_owned(),
        }
    }

    /// What went wrong against `accepted`: none may be above 0.
    pub fn tally(&self, accepted: &Accepted) -> Tally {
        let got: HashSet<u64> = self.seqs.iter().copied().collect();
        let wanted: HashSet<u64> = accepted.for_client().into_iter().collect();
        Tally {
            lost: wanted.iter().filter(|seq| !got.contains(seq)).count(),
            doubled: self.seqs.len() - got.len(),
            disordered: self.seqs.windows(2).filter(|w| w[1] <= w[0]).count(),
            stray: self.seqs.iter().filter(|seq| !wanted.contains(seq)).count(),
        }
    }
}

/// The client's messages counted against what was accepted for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Accepted for the client, never received.
    pub lost: usize,
    /// Received more than once (each extra copy counts).
    pub doubled: usize,
    /// Received with a seq not above the one before.
    pub disordered: usize,
    /// Received but not accepted for the client: for another id or
    /// channel, or never accepted at all.
    pub stray: usize,
}

impl Tally {
    /// Nothing lost, doubled, out of order or stray.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            lost,
            doubled,
            disordered,
            stray,
        } = self;
        write!(
            f,
            "{lost} lost, {doubled} doubled, {disordered} out of order, \
             {stray} not for the client"
        )
    }
}
