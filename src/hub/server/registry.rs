//! The routing indexes `NotifyServer` owns, and delivery through them.
//!
//! A [`Registry`] knows every open session, the id and channels each one
//! holds, and hands a numbered frame to the sessions of a stream. It is
//! plain state: no actor, no broker, no socket. Delivery never waits on a
//! session: each is offered the frame through its [`Outbox`] without
//! blocking, and the slow-consumer policy ([`Failed::disconnect`]) decides
//! what happens to one that cannot take it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::outbox::{Failed, Outbox};
use super::report;
use super::resume::Streams;
use super::session_set::SessionSet;
use crate::client_addr::ClientAddr;
use crate::history::StreamKey;
use crate::hub::mailbox::WakeUp;
use crate::hub::messages::{Close, Deliver, DisconnectReason, Transport};
use crate::ids::{ChannelName, ClientId, SessionId};
use crate::metrics::Metrics;

/// What the registry keeps about one session.
struct SessionEntry<O> {
    outbox: O,
    transport: Transport,
    peer: Option<ClientAddr>,
    /// Its id and channels, with where its replay ends and live delivery
    /// starts.
    streams: Streams,
}

/// Every open session and the indexes that route to them.
pub struct Registry<O> {
    /// Every open session, registered or not.
    sessions: HashMap<SessionId, SessionEntry<O>>,
    /// Registered id → its sessions (one per tab). Never holds an empty set.
    ids: HashMap<ClientId, SessionSet>,
    /// Channel → its subscribers. Never holds an empty set.
    channels: HashMap<ChannelName, SessionSet>,
    /// Changes whenever a key is added to or removed from `ids`, so the
    /// presence report resends the ids only when they changed.
    ids_generation: u64,
    /// Sessions whose replay is being fetched: live messages for them are
    /// held back in their `Streams` until it is in.
    resuming: HashSet<SessionId>,
    /// Session, id and channel gauges, deliveries and slow consumers.
    metrics: Arc<Metrics>,
}

impl<O: Outbox> Registry<O> {
    /// An empty registry counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            sessions: HashMap::new(),
            ids: HashMap::new(),
            channels: HashMap::new(),
            ids_generation: 0,
            resuming: HashSet::new(),
            metrics,
        }
    }

    /// Counts into `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = metrics;
    }

    /// Adds a session that receives broadcasts from seq `from` on.
    pub fn connect(
        &mut self,
        session: SessionId,
        outbox: O,
        transport: Transport,
        peer: Option<ClientAddr>,
        from: u64,
    ) {
        report::log_connected(session, transport, peer);
        self.metrics
            .sessions
            .with_label_values(&[transport.as_str()])
            .inc();
        let entry = SessionEntry {
            outbox,
            transport,
            peer,
            streams: Streams::new(from),
        };
        self.sessions.insert(session, entry);
    }

    /// Registers `session` as `id`, which it has from seq `from` on,
    /// leaving the id it had. Nothing changes when it already is `id`, or
    /// is gone.
    pub fn register(&mut self, session: SessionId, id: ClientId, from: u64) {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return; // already gone
        };
        if entry.streams.id() == Some(&id) {
            return; // what the session has of it is unchanged
        }
        if let Some(previous) = entry.streams.set_id(id.clone(), from) {
            if remove_from(&mut self.ids, &previous, session) {
                self.ids_generation += 1;
            }
        }
        let (transport, peer) = (entry.transport, entry.peer);
        let tabs = self.ids.entry(id.clone()).or_default();
        if tabs.is_empty() {
            self.ids_generation += 1;
        }
        tabs.insert(session);
        self.update_gauges();
        report::log_registered(session, transport, peer, &id);
    }

    /// Adds `channel`, which `session` has from seq `from` on.
    pub fn subscribe(&mut self, session: SessionId, channel: ChannelName, from: u64) {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        if entry.streams.subscribe(channel.clone(), from) {
            self.channels.entry(channel).or_default().insert(session);
            self.update_gauges();
        }
    }

    /// Stops `session` receiving `channel`.
    pub fn unsubscribe(&mut self, session: SessionId, channel: &ChannelName) {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        if entry.streams.unsubscribe(channel) {
            remove_from(&mut self.channels, channel, session);
            self.update_gauges();
        }
    }

    /// Removes a session from every index, logging the disconnect once.
    pub fn remove(
        &mut self,
        session: SessionId,
        reason: &DisconnectReason,
        close_code: Option<u16>,
    ) {
        let Some(entry) = self.sessions.remove(&session) else {
            return;
        };
        self.resuming.remove(&session);
        if let Some(id) = entry.streams.id() {
            if remove_from(&mut self.ids, id, session) {
                self.ids_generation += 1;
            }
        }
        for channel in entry.streams.channels() {
            remove_from(&mut self.channels, channel, session);
        }
        self.metrics
            .sessions
            .with_label_values(&[entry.transport.as_str()])
            .dec();
        self.update_gauges();
        report::log_disconnected(
            session,
            entry.transport,
            entry.peer,
            entry.streams.id(),
            reason,
            close_code,
        );
    }

    /// Hands the frame numbered `seq` to the sessions of `key`; returns how
    /// many took it. Cost per target: a compare with its high-water mark, a
    /// reference-count bump and a queue push. A session that cannot take it
    /// is dropped (see [`Failed::disconnect`]); one whose replay is being
    /// fetched gets it after the replay instead, if it is above the replay.
    pub fn route(&mut self, key: &StreamKey, seq: u64, frame: &ByteString) -> usize {
        let mut failed = Vec::new();
        let now = Instant::now();
        let mut delivered = 0;
        let mut offer = |session: &SessionId, entry: &mut SessionEntry<O>, wake| {
            delivered += usize::from(deliver(session, entry, seq, frame, now, wake, &mut failed));
        };
        // A fan-out's sessions are woken a turn at a time; a lone one at once.
        let wake = |targets: &SessionSet| match targets.len() {
            1 => WakeUp::Now,
            _ => WakeUp::InTurn,
        };
        match key {
            StreamKey::Broadcast => {
                for (session, entry) in &mut self.sessions {
                    offer(session, entry, WakeUp::InTurn);
                }
            }
            StreamKey::Id(id) => {
                if let Some(targets) = self.ids.get(id) {
                    for session in targets {
                        if let Some(entry) = self.sessions.get_mut(session) {
                            offer(session, entry, wake(targets));
                        }
                    }
                }
            }
            StreamKey::Channel(channel) => {
                if let Some(targets) = self.channels.get(channel) {
                    for session in targets {
                        if let Some(entry) = self.sessions.get_mut(session) {
                            offer(session, entry, wake(targets));
                        }
                    }
                }
            }
        }
        self.metrics.deliveries.inc_by(delivered as u64);
        for (session, why) in failed {
            self.drop_failed(session, why);
        }
        for session in &self.resuming {
            if let Some(entry) = self.sessions.get_mut(session) {
                entry.streams.hold_back(key, seq, frame);
            }
        }
        delivered
    }

    /// Applies the slow-consumer policy ([`Failed::disconnect`]) to a
    /// session that could not take a frame.
    fn drop_failed(&mut self, session: SessionId, why: Failed) {
        if why == Failed::QueueFull {
            self.metrics.slow_consumers.inc();
        }
        let (reason, code) = why.disconnect();
        if let (Some(code), Some(entry)) = (code, self.sessions.get(&session)) {
            let reason = reason.clone();
            entry.outbox.close(Close { code, reason });
        }
        self.remove(session, &reason, code);
    }

    /// Every stream `session` receives, with its `has_from`; none when it
    /// is gone.
    pub fn positions(&self, session: SessionId) -> Option<Vec<(StreamKey, u64)>> {
        Some(self.sessions.get(&session)?.streams.positions())
    }

    /// The highest seq `session` was given (its high-water mark); 0 when
    /// it is gone.
    pub fn mark(&self, session: SessionId) -> u64 {
        self.sessions
            .get(&session)
            .map_or(0, |entry| entry.streams.mark())
    }

    /// A replay for `session` is being fetched: its live messages are held
    /// back until [`Registry::resumed`].
    pub fn hold(&mut self, session: SessionId) {
        if let Some(entry) = self.sessions.get_mut(&session) {
            entry.streams.hold();
            self.resuming.insert(session);
        }
    }

    /// `session`'s resume is settled at position `reached` (see
    /// `resume::settle`): with `replayed_from`, it has every stream from
    /// that seq on; its high-water mark is `reached`, so the messages held
    /// back past it are delivered now, through the same path as fan-out,
    /// and none at or below it is delivered later.
    pub fn resumed(&mut self, session: SessionId, replayed_from: Option<u64>, reached: u64) {
        self.resuming.remove(&session);
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        let held = entry.streams.release(replayed_from, reached);
        let mut failed = Vec::new();
        // For this session alone: woken at once.
        for (seq, frame) in held {
            let now = Instant::now();
            deliver(&session, entry, seq, &frame, now, WakeUp::Now, &mut failed);
            if !failed.is_empty() {
                break;
            }
        }
        for (session, why) in failed {
            self.drop_failed(session, why);
        }
    }

    /// Closes with `code` and removes every session that receives one of
    /// `keys` (all of them with `None`), so that nothing routed later
    /// reaches them; returns how many.
    pub fn drop_routed(
        &mut self,
        keys: Option<&[StreamKey]>,
        code: u16,
        reason: DisconnectReason,
    ) -> usize {
        let mut targets = HashSet::new();
        match keys {
            Some(keys) if !keys.contains(&StreamKey::Broadcast) => {
                for key in keys {
                    let sessions = match key {
                        StreamKey::Id(id) => self.ids.get(id),
                        StreamKey::Channel(channel) => self.channels.get(channel),
                        StreamKey::Broadcast => None,
                    };
                    targets.extend(sessions.into_iter().flatten().copied());
                }
            }
            _ => targets.extend(self.sessions.keys().copied()),
        }
        for session in &targets {
            if let Some(entry) = self.sessions.get(session) {
                let reason = reason.clone();
                entry.outbox.close(Close { code, reason });
            }
            self.remove(*session, &reason, Some(code));
        }
        targets.len()
    }

    /// `session`'s resume could not be read: it is told to come back later,
    /// and gets nothing more until it leaves (`Streams::silence`).
    pub fn silence(&mut self, session: SessionId) {
        self.resuming.remove(&session);
        if let Some(entry) = self.sessions.get_mut(&session) {
            entry.streams.silence();
        }
    }

    /// Sends `close` (made for each) to every session; returns how many.
    /// They leave the registry as they disconnect.
    pub fn close_all(&self, close: impl Fn() -> Close) -> usize {
        for entry in self.sessions.values() {
            entry.outbox.close(close());
        }
        self.sessions.len()
    }
}

impl<O> Registry<O> {
    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Distinct registered ids.
    pub fn id_count(&self) -> usize {
        self.ids.len()
    }

    /// Channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Changes whenever an id appears or goes.
    pub fn ids_generation(&self) -> u64 {
        self.ids_generation
    }

    /// Every registered id.
    pub fn ids(&self) -> impl Iterator<Item = &ClientId> {
        self.ids.keys()
    }

    /// Every channel with its subscriber count.
    pub fn channel_sizes(&self) -> impl Iterator<Item = (&ChannelName, usize)> {
        self.channels.iter().map(|(c, members)| (c, members.len()))
    }

    /// The transport of every open session.
    pub fn transports(&self) -> impl Iterator<Item = Transport> + '_ {
        self.sessions.values().map(|entry| entry.transport)
    }

    /// Keeps the id and channel gauges in step with the indexes.
    fn update_gauges(&self) {
        self.metrics.ids.set(self.ids.len() as i64);
        self.metrics.channels.set(self.channels.len() as i64);
    }
}

/// The one delivery path, for fan-out and for messages held back during a
/// resume: hands `frame` to `session` if it is due (see `Streams::due`) and
/// moves its high-water mark; true when it took it. One that could not is
/// recorded in `failed`, for the caller to drop.
fn deliver<O: Outbox>(
    session: &SessionId,
    entry: &mut SessionEntry<O>,
    seq: u64,
    frame: &ByteString,
    routed_at: Instant,
    wake: WakeUp,
    failed: &mut Vec<(SessionId, Failed)>,
) -> bool {
    if !entry.streams.due(seq) {
        return false;
    }
    let deliver = Deliver {
        seq,
        frame: frame.clone(),
        routed_at,
    };
    match entry.outbox.deliver(deliver, wake) {
        Ok(()) => {
            entry.streams.delivered(seq);
            true
        }
        Err(why) => {
            failed.push((*session, why));
            false
        }
    }
}

/// Removes `session` from `key`'s set in `index`, dropping the set when it
/// empties, so no id or channel outlives its last session. True when the
/// key went.
fn remove_from<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, SessionSet>,
    key: &K,
    session: SessionId,
) -> bool {
    let Some(set) = index.get_mut(key) else {
        return false;
    };
    set.remove(&session);
    if set.is_empty() {
        index.remove(key);
        return true;
    }
    false
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::protocol::close_code;

    /// A plain outbox: records the seqs it takes and the close codes it is
    /// sent; takes at most `room` frames, then reports itself full, or
    /// reports itself gone.
    #[derive(Clone, Default)]
    pub(in crate::hub::server) struct Queue {
        pub taken: Rc<RefCell<Vec<u64>>>,
        pub closes: Rc<RefCell<Vec<u16>>>,
        pub room: Option<usize>,
        pub gone: bool,
    }

    impl Queue {
        pub fn taken(&self) -> Vec<u64> {
            self.taken.borrow().clone()
        }
    }

    impl Outbox for Queue {
        fn deliver(&self, deliver: Deliver, _: WakeUp) -> Result<(), Failed> {
            if self.gone {
                return Err(Failed::Closed);
            }
            let mut taken = self.taken.borrow_mut();
            if self.room.is_some_and(|room| taken.len() >= room) {
                return Err(Failed::QueueFull);
            }
            taken.push(deliver.seq);
            Ok(())
        }

        fn close(&self, close: Close) {
            self.closes.borrow_mut().push(close.code);
        }
    }

    pub(in crate::hub::server) fn registry() -> Registry<Queue> {
        Registry::new(Arc::new(Metrics::new()))
    }

    /// Connects a session with `queue` as its outbox, at seq 0.
    pub(in crate::hub::server) fn join(registry: &mut Registry<Queue>, queue: &Queue) -> SessionId {
        let session = SessionId::next();
        registry.connect(session, queue.clone(), Transport::WebSocket, None, 0);
        session
    }

    pub(in crate::hub::server) fn id(text: &str) -> ClientId {
        ClientId::parse(text).unwrap()
    }

    pub(in crate::hub::server) fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn route(registry: &mut Registry<Queue>, key: StreamKey, seq: u64) -> usize {
        registry.route(&key, seq, &ByteString::from_static("m"))
    }

    #[test]
    fn each_stream_reaches_exactly_its_sessions() {
        let mut registry = registry();
        let (tab1, tab2, other) = (Queue::default(), Queue::default(), Queue::default());
        let s1 = join(&mut registry, &tab1);
        let s2 = join(&mut registry, &tab2);
        join(&mut registry, &other);
        registry.register(s1, id("63"), 0);
        registry.register(s2, id("63"), 0);
        registry.subscribe(s2, channel("news"), 0);

        assert_eq!(route(&mut registry, StreamKey::Broadcast, 1), 3);
        assert_eq!(route(&mut registry, StreamKey::Id(id("63")), 2), 2);
        assert_eq!(route(&mut registry, StreamKey::Id(id("nobody")), 3), 0);
        assert_eq!(
            route(&mut registry, StreamKey::Channel(channel("news")), 4),
            1
        );
        assert_eq!(
            route(&mut registry, StreamKey::Channel(channel("none")), 5),
            0
        );
        assert_eq!(tab1.taken(), [1, 2]);
        assert_eq!(tab2.taken(), [1, 2, 4]);
        assert_eq!(other.taken(), [1]);
        assert_eq!(registry.metrics.deliveries.get(), 6);
    }

    #[test]
    fn a_full_queue_is_closed_as_a_slow_consumer_and_removed() {
        let mut registry = registry();
        let healthy = Queue::default();
        let slow = Queue {
            room: Some(1),
            ..Queue::default()
        };
        join(&mut registry, &healthy);
        let stuck = join(&mut registry, &slow);
        registry.subscribe(stuck, channel("news"), 0);

        assert_eq!(route(&mut registry, StreamKey::Broadcast, 1), 2);
        assert_eq!(route(&mut registry, StreamKey::Broadcast, 2), 1);
        assert_eq!(route(&mut registry, StreamKey::Broadcast, 3), 1);
        assert_eq!(healthy.taken(), [1, 2, 3]);
        assert_eq!(slow.taken(), [1]);
        assert_eq!(*slow.closes.borrow(), [close_code::SLOW_CONSUMER]);
        assert_eq!(registry.session_count(), 1);
        assert_eq!(registry.channel_count(), 0);
        assert_eq!(registry.metrics.slow_consumers.get(), 1);
    }

    #[test]
    fn a_gone_session_is_removed_without_a_close() {
        let mut registry = registry();
        let gone = Queue {
            gone: true,
            ..Queue::default()
        };
        let session = join(&mut registry, &gone);
        registry.register(session, id("63"), 0);

        assert_eq!(route(&mut registry, StreamKey::Id(id("63")), 1), 0);
        assert!(gone.closes.borrow().is_empty());
        assert_eq!((registry.session_count(), registry.id_count()), (0, 0));
        assert_eq!(registry.metrics.slow_consumers.get(), 0);
    }

    #[test]
    fn ids_and_channels_vanish_with_their_last_session() {
        let mut registry = registry();
        let (a, b) = (Queue::default(), Queue::default());
        let sa = join(&mut registry, &a);
        let sb = join(&mut registry, &b);
        registry.register(sa, id("63"), 0);
        let first = registry.ids_generation();
        registry.register(sb, id("63"), 0);
        assert_eq!(registry.ids_generation(), first, "63 was already there");
        registry.subscribe(sa, channel("news"), 0);
        registry.subscribe(sa, channel("news"), 0);
        assert_eq!(registry.channel_count(), 1);

        registry.unsubscribe(sa, &channel("news"));
        assert_eq!(registry.channel_count(), 0);
        registry.remove(sa, &DisconnectReason::ClientClosed, Some(1000));
        assert_eq!((registry.id_count(), registry.ids_generation()), (1, first));
        registry.remove(sb, &DisconnectReason::ClientClosed, Some(1000));
        assert_eq!(registry.id_count(), 0);
        assert!(registry.ids_generation() > first);
        registry.remove(sb, &DisconnectReason::ClientClosed, Some(1000));
        assert_eq!(registry.session_count(), 0);
        assert_eq!(registry.metrics.ids.get(), 0);
    }

    #[test]
    fn reregistering_moves_the_session_and_the_same_id_keeps_its_position() {
        let mut registry = registry();
        let queue = Queue::default();
        let session = join(&mut registry, &queue);
        registry.register(session, id("old"), 0);
        registry.register(session, id("new"), 5);
        assert_eq!(registry.ids().collect::<Vec<_>>(), [&id("new")]);
        registry.register(session, id("new"), 9);
        let positions = registry.positions(session).unwrap();
        assert!(positions.contains(&(StreamKey::Id(id("new")), 5)));
        assert_eq!(route(&mut registry, StreamKey::Id(id("old")), 1), 0);
        assert_eq!(route(&mut registry, StreamKey::Id(id("new")), 2), 1);
    }

    #[test]
    fn messages_held_during_a_resume_follow_it_past_the_replay() {
        let mut registry = registry();
        let (resuming, other) = (Queue::default(), Queue::default());
        let session = join(&mut registry, &resuming);
        join(&mut registry, &other);
        registry.hold(session);
        for seq in 5..=7 {
            route(&mut registry, StreamKey::Broadcast, seq);
        }
        route(&mut registry, StreamKey::Id(id("someone")), 8);
        assert_eq!(resuming.taken(), [] as [u64; 0]);
        assert_eq!(other.taken(), [5, 6, 7]);

        registry.resumed(session, Some(0), 6);
        assert_eq!(resuming.taken(), [7]);
        route(&mut registry, StreamKey::Broadcast, 9);
        assert_eq!(resuming.taken(), [7, 9]);
    }

    #[test]
    fn nothing_at_or_below_a_resumes_position_is_delivered_live() {
        let mut registry = registry();
        let queue = Queue::default();
        let session = join(&mut registry, &queue);
        registry.hold(session);
        route(&mut registry, StreamKey::Broadcast, 10);
        registry.resumed(session, Some(0), 9);
        // A subscription lagging the replay brings 8 and 9 after it.
        for seq in [8, 9, 11, 11] {
            route(&mut registry, StreamKey::Broadcast, seq);
        }
        assert_eq!(queue.taken(), [10, 11]);
    }

    #[test]
    fn a_session_never_gets_a_seq_twice_or_out_of_order() {
        let mut registry = registry();
        let (tab, late) = (Queue::default(), Queue::default());
        let session = join(&mut registry, &tab);
        registry.register(session, id("63"), 0);
        registry.subscribe(session, channel("news"), 0);
        route(&mut registry, StreamKey::Id(id("63")), 5);
        // Older or repeated seqs, on any stream of the session.
        route(&mut registry, StreamKey::Broadcast, 4);
        route(&mut registry, StreamKey::Channel(channel("news")), 5);
        route(&mut registry, StreamKey::Channel(channel("news")), 6);
        assert_eq!(tab.taken(), [5, 6]);
        // Another session's mark is its own.
        join(&mut registry, &late);
        route(&mut registry, StreamKey::Broadcast, 3);
        assert_eq!(late.taken(), [3]);
    }

    #[test]
    fn a_held_message_that_meets_a_full_queue_drops_the_session() {
        let mut registry = registry();
        let queue = Queue {
            room: Some(1),
            ..Queue::default()
        };
        let session = join(&mut registry, &queue);
        registry.hold(session);
        for seq in 1..=3 {
            route(&mut registry, StreamKey::Broadcast, seq);
        }
        registry.resumed(session, None, 0);
        assert_eq!(queue.taken(), [1]);
        assert_eq!(*queue.closes.borrow(), [close_code::SLOW_CONSUMER]);
        assert_eq!(registry.session_count(), 0);
        assert!(registry.resuming.is_empty());
    }

    #[test]
    fn close_all_tells_every_session() {
        let mut registry = registry();
        let (a, b) = (Queue::default(), Queue::default());
        join(&mut registry, &a);
        join(&mut registry, &b);
        let told = registry.close_all(|| Close {
            code: close_code::GOING_AWAY,
            reason: DisconnectReason::ServerShutdown,
        });
        assert_eq!(told, 2);
        assert_eq!(*a.closes.borrow(), [close_code::GOING_AWAY]);
        assert_eq!(*b.closes.borrow(), [close_code::GOING_AWAY]);
    }
}
