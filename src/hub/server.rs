//! `NotifyServer`: the one owner of routing state.
//!
//! It knows every open session and the id each one registered, and hands
//! already-encoded frames to the right sessions. It owns no socket and encodes
//! no JSON; it never waits on a session: fan-out uses `try_send`, and a
//! session whose queue is full is dropped as a slow consumer instead of
//! slowing the others.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use actix::dev::SendError;
use actix::prelude::*;
use bytestring::ByteString;

use super::messages::{
    Broadcast, Close, Connect, Counts, Deliver, Direct, Disconnect, DisconnectReason, GetCounts,
    Register, SessionOutbox, Subscribe, ToChannel, Unsubscribe,
};
use crate::ids::{ChannelName, ClientId, SessionId};
use crate::protocol::close_code;

/// Mailbox size of the server itself. Publishers wait (back-pressure) when it
/// is full; sessions' control messages always get through.
const SERVER_MAILBOX_CAPACITY: usize = 4096;

/// The routing registry. Start exactly one per process and share its `Addr`.
#[derive(Default)]
pub struct NotifyServer {
    /// Every open session, registered or not.
    sessions: HashMap<SessionId, SessionEntry>,
    /// Registered id → its sessions (one per tab). Never holds an empty set.
    ids: HashMap<ClientId, HashSet<SessionId>>,
    /// Channel → its subscribers. Never holds an empty set.
    channels: HashMap<ChannelName, HashSet<SessionId>>,
}

/// What the server keeps about one session.
struct SessionEntry {
    outbox: SessionOutbox,
    peer: Option<SocketAddr>,
    id: Option<ClientId>,
    /// What to clean up from `channels` when the session goes.
    channels: HashSet<ChannelName>,
}

/// A delivery that did not happen, and why.
enum Failed {
    QueueFull,
    Closed,
}

impl NotifyServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `frame` to each target session; returns how many took it.
    /// Sessions that could not take it are removed afterwards.
    fn fan_out<'a>(
        &mut self,
        targets: impl IntoIterator<Item = &'a SessionId>,
        frame: &ByteString,
    ) -> usize {
        let mut delivered = 0;
        let mut failed = Vec::new();
        for &session in targets {
            let Some(entry) = self.sessions.get(&session) else {
                continue;
            };
            let deliver = Deliver {
                frame: frame.clone(),
            };
            match entry.outbox.deliver.try_send(deliver) {
                Ok(()) => delivered += 1,
                Err(SendError::Full(_)) => failed.push((session, Failed::QueueFull)),
                Err(SendError::Closed(_)) => failed.push((session, Failed::Closed)),
            }
        }
        for (session, why) in failed {
            self.drop_failed(session, why);
        }
        delivered
    }

    fn drop_failed(&mut self, session: SessionId, why: Failed) {
        let reason = match why {
            Failed::QueueFull => {
                if let Some(entry) = self.sessions.get(&session) {
                    entry.outbox.close.do_send(Close {
                        code: close_code::SLOW_CONSUMER,
                        reason: DisconnectReason::SlowConsumer,
                    });
                }
                DisconnectReason::SlowConsumer
            }
            Failed::Closed => DisconnectReason::Gone,
        };
        self.remove(session, &reason);
    }

    /// Removes a session from every index, logging the disconnect once.
    fn remove(&mut self, session: SessionId, reason: &DisconnectReason) {
        let Some(entry) = self.sessions.remove(&session) else {
            return;
        };
        if let Some(id) = &entry.id {
            remove_from(&mut self.ids, id, session);
        }
        for channel in &entry.channels {
            remove_from(&mut self.channels, channel, session);
        }
        log::info!(
            "session {session} disconnected: peer={} id={} reason={reason}",
            peer_label(entry.peer),
            id_label(entry.id.as_ref()),
        );
    }
}

/// Removes `session` from `key`'s set in `index`, dropping the set when it
/// empties, so no id or channel outlives its last session.
fn remove_from<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, HashSet<SessionId>>,
    key: &K,
    session: SessionId,
) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&session);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

fn peer_label(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".into(), |p| p.to_string())
}

fn id_label(id: Option<&ClientId>) -> String {
    id.map_or_else(|| "-".into(), |id| format!("{id:?}"))
}

impl Actor for NotifyServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SERVER_MAILBOX_CAPACITY);
    }
}

impl Handler<Connect> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        log::info!(
            "session {} connected: peer={}",
            msg.session,
            peer_label(msg.peer)
        );
        self.sessions.insert(
            msg.session,
            SessionEntry {
                outbox: msg.outbox,
                peer: msg.peer,
                id: None,
                channels: HashSet::new(),
            },
        );
    }
}

impl Handler<Disconnect> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.remove(msg.session, &msg.reason);
    }
}

impl Handler<Register> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session) else {
            return; // already gone: its Disconnect overtook nothing, nothing to index
        };
        let previous = entry.id.replace(msg.id.clone());
        let peer = entry.peer;
        if let Some(previous) = previous {
            if previous == msg.id {
                return;
            }
            remove_from(&mut self.ids, &previous, msg.session);
        }
        self.ids
            .entry(msg.id.clone())
            .or_default()
            .insert(msg.session);
        log::info!(
            "session {} registered: peer={} id={:?}",
            msg.session,
            peer_label(peer),
            msg.id
        );
    }
}

impl Handler<Subscribe> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session) else {
            return;
        };
        if entry.channels.insert(msg.channel.clone()) {
            self.channels
                .entry(msg.channel)
                .or_default()
                .insert(msg.session);
        }
    }
}

impl Handler<Unsubscribe> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session) else {
            return;
        };
        if entry.channels.remove(&msg.channel) {
            remove_from(&mut self.channels, &msg.channel, msg.session);
        }
    }
}

impl Handler<ToChannel> for NotifyServer {
    type Result = usize;

    fn handle(&mut self, msg: ToChannel, _: &mut Context<Self>) -> usize {
        let Some(targets) = self.channels.get(&msg.channel) else {
            return 0;
        };
        let targets: Vec<SessionId> = targets.iter().copied().collect();
        self.fan_out(&targets, &msg.frame)
    }
}

impl Handler<Broadcast> for NotifyServer {
    type Result = usize;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> usize {
        let targets: Vec<SessionId> = self.sessions.keys().copied().collect();
        self.fan_out(&targets, &msg.frame)
    }
}

impl Handler<Direct> for NotifyServer {
    type Result = usize;

    fn handle(&mut self, msg: Direct, _: &mut Context<Self>) -> usize {
        let Some(targets) = self.ids.get(&msg.id) else {
            return 0;
        };
        let targets: Vec<SessionId> = targets.iter().copied().collect();
        self.fan_out(&targets, &msg.frame)
    }
}

impl Handler<GetCounts> for NotifyServer {
    type Result = Counts;

    fn handle(&mut self, _: GetCounts, _: &mut Context<Self>) -> Counts {
        Counts {
            sessions: self.sessions.len(),
            ids: self.ids.len(),
            channels: self.channels.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A stand-in session that records what it is handed.
    #[derive(Default)]
    struct Probe {
        frames: Arc<Mutex<Vec<String>>>,
        closed_with: Arc<Mutex<Option<u16>>>,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.frames.lock().unwrap().push(msg.frame.to_string());
        }
    }

    impl Handler<Close> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Close, _: &mut Context<Self>) {
            *self.closed_with.lock().unwrap() = Some(msg.code);
        }
    }

    struct Started {
        session: SessionId,
        frames: Arc<Mutex<Vec<String>>>,
    }

    async fn connect(server: &Addr<NotifyServer>, id: Option<&str>) -> Started {
        let probe = Probe::default();
        let frames = probe.frames.clone();
        let addr = probe.start();
        let session = SessionId::next();
        server.do_send(Connect {
            session,
            peer: None,
            outbox: SessionOutbox {
                deliver: addr.clone().recipient(),
                close: addr.recipient(),
            },
        });
        if let Some(id) = id {
            server.do_send(Register {
                session,
                id: ClientId::parse(id).unwrap(),
            });
        }
        Started { session, frames }
    }

    fn frame(text: &'static str) -> ByteString {
        ByteString::from_static(text)
    }

    async fn counts(server: &Addr<NotifyServer>) -> Counts {
        server.send(GetCounts).await.unwrap()
    }

    /// Lets the probes run until they have handled what was sent to them.
    async fn settle() {
        for _ in 0..10 {
            actix::clock::sleep(std::time::Duration::ZERO).await;
        }
    }

    #[actix::test]
    async fn broadcast_reaches_every_session_registered_or_not() {
        let server = NotifyServer::new().start();
        let a = connect(&server, Some("1")).await;
        let b = connect(&server, None).await;
        let delivered = server.send(Broadcast { frame: frame("x") }).await.unwrap();
        assert_eq!(delivered, 2);
        settle().await;
        assert_eq!(*a.frames.lock().unwrap(), ["x"]);
        assert_eq!(*b.frames.lock().unwrap(), ["x"]);
    }

    #[actix::test]
    async fn direct_reaches_every_session_of_its_id_and_no_other() {
        let server = NotifyServer::new().start();
        let tab1 = connect(&server, Some("63")).await;
        let tab2 = connect(&server, Some("63")).await;
        let other = connect(&server, Some("64")).await;
        let id = ClientId::parse("63").unwrap();
        let delivered = server
            .send(Direct {
                id,
                frame: frame("d"),
            })
            .await
            .unwrap();
        assert_eq!(delivered, 2);
        settle().await;
        assert_eq!(*tab1.frames.lock().unwrap(), ["d"]);
        assert_eq!(*tab2.frames.lock().unwrap(), ["d"]);
        assert!(other.frames.lock().unwrap().is_empty());
    }

    #[actix::test]
    async fn direct_to_an_unknown_id_delivers_nothing() {
        let server = NotifyServer::new().start();
        connect(&server, Some("1")).await;
        let id = ClientId::parse("2").unwrap();
        let delivered = server
            .send(Direct {
                id,
                frame: frame("d"),
            })
            .await
            .unwrap();
        assert_eq!(delivered, 0);
    }

    #[actix::test]
    async fn reregistering_moves_the_session_and_leaves_no_empty_id() {
        let server = NotifyServer::new().start();
        let s = connect(&server, Some("old")).await;
        server.do_send(Register {
            session: s.session,
            id: ClientId::parse("new").unwrap(),
        });
        assert_eq!(
            counts(&server).await,
            Counts {
                sessions: 1,
                ids: 1,
                channels: 0,
            }
        );
        let old = ClientId::parse("old").unwrap();
        let delivered = server
            .send(Direct {
                id: old,
                frame: frame("d"),
            })
            .await
            .unwrap();
        assert_eq!(delivered, 0);
    }

    #[actix::test]
    async fn disconnect_leaves_no_trace() {
        let server = NotifyServer::new().start();
        let a = connect(&server, Some("63")).await;
        let b = connect(&server, Some("63")).await;
        server.do_send(Disconnect {
            session: a.session,
            reason: DisconnectReason::ClientClosed,
        });
        assert_eq!(
            counts(&server).await,
            Counts {
                sessions: 1,
                ids: 1,
                channels: 0,
            }
        );
        server.do_send(Disconnect {
            session: b.session,
            reason: DisconnectReason::ConnectionLost,
        });
        assert_eq!(
            counts(&server).await,
            Counts {
                sessions: 0,
                ids: 0,
                channels: 0,
            }
        );
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[actix::test]
    async fn channel_messages_reach_subscribers_only_and_empty_channels_vanish() {
        let server = NotifyServer::new().start();
        let a = connect(&server, None).await;
        let b = connect(&server, None).await;
        let outsider = connect(&server, None).await;
        for s in [&a, &b] {
            server.do_send(Subscribe {
                session: s.session,
                channel: channel("news"),
            });
        }
        let to_news = |text| ToChannel {
            channel: channel("news"),
            frame: frame(text),
        };
        assert_eq!(server.send(to_news("n1")).await.unwrap(), 2);
        server.do_send(Unsubscribe {
            session: a.session,
            channel: channel("news"),
        });
        assert_eq!(server.send(to_news("n2")).await.unwrap(), 1);
        settle().await;
        assert_eq!(*a.frames.lock().unwrap(), ["n1"]);
        assert_eq!(*b.frames.lock().unwrap(), ["n1", "n2"]);
        assert!(outsider.frames.lock().unwrap().is_empty());

        server.do_send(Disconnect {
            session: b.session,
            reason: DisconnectReason::ClientClosed,
        });
        let counts = counts(&server).await;
        assert_eq!(counts.channels, 0, "{counts:?}");
        assert_eq!(server.send(to_news("n3")).await.unwrap(), 0);
    }

    #[actix::test]
    async fn a_full_queue_drops_and_closes_that_session_only() {
        let server = NotifyServer::new().start();
        let healthy = connect(&server, None).await;

        // A session whose actor never runs: its mailbox fills and stays full.
        let stuck_ctx: Context<Probe> = Context::new();
        let mut stuck_ctx = stuck_ctx;
        stuck_ctx.set_mailbox_capacity(1);
        let stuck = stuck_ctx.address();
        server.do_send(Connect {
            session: SessionId::next(),
            peer: None,
            outbox: SessionOutbox {
                deliver: stuck.clone().recipient(),
                close: stuck.recipient(),
            },
        });

        let mut delivered = Vec::new();
        for _ in 0..4 {
            delivered.push(server.send(Broadcast { frame: frame("b") }).await.unwrap());
        }
        // The stuck session takes what fits in its queue, then is dropped.
        assert_eq!(delivered.first(), Some(&2));
        assert_eq!(delivered.last(), Some(&1));
        assert_eq!(
            counts(&server).await,
            Counts {
                sessions: 1,
                ids: 0,
                channels: 0,
            }
        );
        settle().await;
        assert_eq!(healthy.frames.lock().unwrap().len(), 4);
        drop(stuck_ctx);
    }

    #[actix::test]
    async fn a_closed_mailbox_is_deregistered_on_delivery() {
        let server = NotifyServer::new().start();
        let ctx: Context<Probe> = Context::new();
        let addr = ctx.address();
        server.do_send(Connect {
            session: SessionId::next(),
            peer: None,
            outbox: SessionOutbox {
                deliver: addr.clone().recipient(),
                close: addr.recipient(),
            },
        });
        drop(ctx);
        let delivered = server.send(Broadcast { frame: frame("b") }).await.unwrap();
        assert_eq!(delivered, 0);
        assert_eq!(
            counts(&server).await,
            Counts {
                sessions: 0,
                ids: 0,
                channels: 0,
            }
        );
    }
}
