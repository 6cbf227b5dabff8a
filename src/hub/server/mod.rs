//! `NotifyServer`: the one owner of routing state.
//!
//! It knows every open session and the id and channels each one holds. A
//! publish goes to its [`Broker`], which numbers it (`seq`), stamps the
//! number into the already-encoded frame and keeps it; the numbered frame
//! comes back as a [`Publication`] (at once from the memory broker, through
//! the subscription from Redis, via [`BrokerEvents`]) and the server hands
//! the same bytes to every target session. It owns no socket, encodes no
//! JSON and never waits on a session: fan-out uses `try_send`, and a
//! session whose queue is full is dropped as a slow consumer instead of
//! slowing the others.
//!
//! Positions: for every stream a session receives, the server remembers the
//! seq from which the session has everything (`has_from`): the seq at which
//! it joined, lowered by a successful resume. A resume replays exactly the
//! retained messages between the client's position and `has_from`; live
//! delivery covers the rest. That is what keeps replay and live delivery
//! from overlapping or leaving a hole.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::prelude::*;
use bytestring::ByteString;
use futures_util::future::BoxFuture;

use super::messages::{
    Broadcast, ChannelCount, Close, Connect, Counts, Deliver, Direct, Disconnect, DisconnectReason,
    GetCounts, GetPresence, GetStats, Joined, Published, Register, Resume, SessionOutbox, Shutdown,
    Stats, Subscribe, ToChannel, Transport, Unsubscribe,
};
use crate::broker::{
    Broker, BrokerError, BrokerEvents, Frames, Presence, Publication, Publishing, Refused,
    Replaying,
};
use crate::client_addr::ClientAddr;
use crate::history::StreamKey;
use crate::ids::{ChannelName, ClientId, SessionId};
use crate::metrics::Metrics;
use crate::protocol::{close_code, PendingFrame, Position};

/// Mailbox size of the server itself. Publishers wait (back-pressure) when it
/// is full; sessions' control messages always get through.
const SERVER_MAILBOX_CAPACITY: usize = 4096;

/// How often expired history is dropped when no publish does it.
const HISTORY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The routing registry. Start exactly one per process and share its `Addr`.
pub struct NotifyServer {
    /// The latest seq fanned out, or numbered before this node could see
    /// it (read it through [`NotifyServer::seq`]). The epoch is the
    /// broker's: with Redis it changes when Redis lost its data.
    seq: u64,
    /// Numbers, keeps and announces every publish; answers resumes.
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    /// Sessions whose replay is being fetched: live messages for them wait
    /// in their `SessionEntry::pending` until it is in.
    resuming: HashSet<SessionId>,
    /// Sessions whose fetched replay holds messages this node has not fanned
    /// out yet (`SessionEntry::replayed_ahead`).
    catching_up: HashSet<SessionId>,
    /// Every open session, registered or not.
    sessions: HashMap<SessionId, SessionEntry>,
    /// Registered id → its sessions (one per tab). Never holds an empty set.
    ids: HashMap<ClientId, HashSet<SessionId>>,
    /// Channel → its subscribers. Never holds an empty set.
    channels: HashMap<ChannelName, HashSet<SessionId>>,
    /// Changes whenever a key is added to or removed from `ids`, so the
    /// presence report resends the ids only when they changed.
    ids_generation: u64,
}

/// What the server keeps about one session.
struct SessionEntry {
    outbox: SessionOutbox,
    transport: Transport,
    peer: Option<ClientAddr>,
    /// `has_from` of the broadcast stream.
    broadcast_from: u64,
    /// While a replay is being fetched: live messages held back until it
    /// is in (`holding`), instead of being delivered.
    holding: bool,
    pending: Vec<(u64, ByteString)>,
    /// After a fetched replay: the seqs it held that this node had not
    /// fanned out yet, in order (8 bytes each, within the replay's budget).
    /// The replay was read from the broker, which can be ahead of the
    /// subscription that brings messages here: when these arrive they are
    /// not delivered again. Emptied as fan-out passes them.
    replayed_ahead: Vec<u64>,
    /// The registered id and its `has_from`.
    id: Option<(ClientId, u64)>,
    /// Each channel and its `has_from`.
    channels: HashMap<ChannelName, u64>,
}

impl SessionEntry {
    /// Every stream the session receives, with its `has_from`.
    fn streams(&self) -> Vec<(StreamKey, u64)> {
        let mut streams = vec![(StreamKey::Broadcast, self.broadcast_from)];
        if let Some((id, from)) = &self.id {
            streams.push((StreamKey::Id(id.clone()), *from));
        }
        streams.extend(
            self.channels
                .iter()
                .map(|(c, from)| (StreamKey::Channel(c.clone()), *from)),
        );
        streams
    }

    /// Whether `seq` reached this session in its replay, ahead of this node.
    fn replayed(&self, seq: u64) -> bool {
        !self.replayed_ahead.is_empty() && self.replayed_ahead.binary_search(&seq).is_ok()
    }

    /// Whether messages of `key` reach this session.
    fn receives(&self, key: &StreamKey) -> bool {
        match key {
            StreamKey::Broadcast => true,
            StreamKey::Id(id) => self.id.as_ref().is_some_and(|(own, _)| own == id),
            StreamKey::Channel(channel) => self.channels.contains_key(channel),
        }
    }

    fn lower_has_from(&mut self, since: u64) {
        self.broadcast_from = self.broadcast_from.min(since);
        if let Some((_, from)) = &mut self.id {
            *from = (*from).min(since);
        }
        for from in self.channels.values_mut() {
            *from = (*from).min(since);
        }
    }
}

/// A delivery that did not happen, and why.
enum Failed {
    QueueFull,
    Closed,
}

impl NotifyServer {
    /// A server whose messages are numbered and kept by `broker`.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            seq: broker.numbered_before(),
            broker,
            resuming: HashSet::new(),
            catching_up: HashSet::new(),
            metrics: Arc::new(Metrics::new()),
            sessions: HashMap::new(),
            ids: HashMap::new(),
            channels: HashMap::new(),
            ids_generation: 0,
        }
    }

    /// Counts into `metrics` (served at `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Keeps the id and channel gauges in step with the indexes.
    fn update_gauges(&self) {
        self.metrics.ids.set(self.ids.len() as i64);
        self.metrics.channels.set(self.channels.len() as i64);
    }

    /// The server's position: the latest seq fanned out here, raised to
    /// what the cluster numbered before this node could see it
    /// ([`Broker::numbered_before`]), so that a node that just started, or
    /// whose subscription just came back, hands out the cluster's position
    /// rather than one behind it (a resume from which would replay messages
    /// older than the session).
    fn seq(&mut self) -> u64 {
        self.seq = self.seq.max(self.broker.numbered_before());
        self.seq
    }

    fn joined(&mut self, resume: Option<Resume>) -> Joined {
        Joined {
            epoch: self.broker.epoch(),
            seq: self.seq(),
            resume,
        }
    }

    /// Sends a message to the broker; fans it out now if the broker hands
    /// it straight back, or answers once the cluster took it.
    fn publish(
        &mut self,
        key: StreamKey,
        frame: &PendingFrame,
    ) -> ActorResponse<Self, Result<Published, BrokerError>> {
        match self.broker.publish(key, frame) {
            Publishing::Here(publication) => {
                let seq = publication.seq;
                let delivered = self.fan_out(publication);
                ActorResponse::reply(Ok(Published {
                    delivered: Some(delivered),
                    seq,
                    nodes: None,
                }))
            }
            Publishing::Sent(announcing) => {
                ActorResponse::r#async(announcing.into_actor(self).map(|announced, _, _| {
                    announced.map(|a| Published {
                        delivered: None,
                        seq: a.seq,
                        nodes: Some(a.nodes),
                    })
                }))
            }
        }
    }

    /// Delivers a numbered message to this node's sessions: the one path
    /// of every message, whichever broker numbered it.
    fn fan_out(&mut self, publication: Publication) -> usize {
        self.seq = self.seq.max(publication.seq);
        self.route(&publication.key, publication.seq, &publication.frame)
    }

    /// Hands a numbered frame to the sessions of `key`; returns how many
    /// took it and drops those that could not.
    fn route(&mut self, key: &StreamKey, seq: u64, bytes: &ByteString) -> usize {
        let mut failed = Vec::new();
        let now = Instant::now();
        let delivered = match key {
            StreamKey::Broadcast => hand_to(self.sessions.iter(), seq, bytes, now, &mut failed),
            StreamKey::Id(id) => {
                let targets = members(&self.sessions, self.ids.get(id));
                hand_to(targets, seq, bytes, now, &mut failed)
            }
            StreamKey::Channel(channel) => {
                let targets = members(&self.sessions, self.channels.get(channel));
                hand_to(targets, seq, bytes, now, &mut failed)
            }
        };
        self.metrics.deliveries.inc_by(delivered as u64);
        for (session, why) in failed {
            self.drop_failed(session, why);
        }
        for session in &self.resuming {
            if let Some(entry) = self.sessions.get_mut(session) {
                if entry.receives(key) {
                    entry.pending.push((seq, bytes.clone()));
                }
            }
        }
        if !self.catching_up.is_empty() {
            // Seqs arrive in order: what is not past `seq` has come or never will.
            let sessions = &mut self.sessions;
            self.catching_up
                .retain(|session| match sessions.get_mut(session) {
                    Some(entry) => {
                        entry.replayed_ahead.retain(|&ahead| ahead > seq);
                        !entry.replayed_ahead.is_empty()
                    }
                    None => false,
                });
        }
        delivered
    }

    fn drop_failed(&mut self, session: SessionId, why: Failed) {
        let (reason, code) = match why {
            Failed::QueueFull => {
                self.metrics.slow_consumers.inc();
                if let Some(entry) = self.sessions.get(&session) {
                    entry.outbox.close.do_send(Close {
                        code: close_code::SLOW_CONSUMER,
                        reason: DisconnectReason::SlowConsumer,
                    });
                }
                (
                    DisconnectReason::SlowConsumer,
                    Some(close_code::SLOW_CONSUMER),
                )
            }
            Failed::Closed => (DisconnectReason::Gone, None),
        };
        self.remove(session, &reason, code);
    }

    /// Removes a session from every index, logging the disconnect once.
    fn remove(&mut self, session: SessionId, reason: &DisconnectReason, close_code: Option<u16>) {
        let Some(entry) = self.sessions.remove(&session) else {
            return;
        };
        self.resuming.remove(&session);
        self.catching_up.remove(&session);
        if let Some((id, _)) = &entry.id {
            if remove_from(&mut self.ids, id, session) {
                self.ids_generation += 1;
            }
        }
        for channel in entry.channels.keys() {
            remove_from(&mut self.channels, channel, session);
        }
        self.metrics
            .sessions
            .with_label_values(&[&entry.transport.to_string()])
            .dec();
        self.update_gauges();
        let (transport, peer) = (entry.transport, peer_label(entry.peer));
        let (client_peer, proxy) = peer_fields(entry.peer);
        let client = entry.id.as_ref().map(|(id, _)| id.as_str());
        let id = id_label(entry.id.as_ref().map(|(id, _)| id));
        log::log!(
            session_log_level(transport),
            event = "disconnected",
            session:% = session,
            transport:% = transport,
            peer = client_peer,
            proxy = proxy,
            id = client,
            reason = reason.close_text(),
            detail:% = reason,
            close_code = close_code;
            "session {session} disconnected: transport={transport} peer={peer} id={id} reason={reason}"
        );
    }

    fn register(&mut self, session: SessionId, id: ClientId) {
        let seq = self.seq();
        let Some(entry) = self.sessions.get_mut(&session) else {
            return; // already gone
        };
        let transport = entry.transport;
        let peer = entry.peer;
        if let Some((previous, from)) = entry.id.take() {
            if previous == id {
                // Same id again: what the session has of it is unchanged.
                entry.id = Some((previous, from));
                return;
            }
            if remove_from(&mut self.ids, &previous, session) {
                self.ids_generation += 1;
            }
        }
        entry.id = Some((id.clone(), seq));
        let tabs = self.ids.entry(id.clone()).or_default();
        if tabs.is_empty() {
            self.ids_generation += 1;
        }
        tabs.insert(session);
        self.update_gauges();
        let (client_peer, proxy) = peer_fields(peer);
        let peer = peer_label(peer);
        log::log!(
            session_log_level(transport),
            event = "registered",
            session:% = session,
            transport:% = transport,
            peer = client_peer,
            proxy = proxy,
            id = id.as_str();
            "session {session} registered: transport={transport} peer={peer} id={id:?}"
        );
    }

    fn subscribe(&mut self, session: SessionId, channel: ChannelName) {
        let seq = self.seq();
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        if !entry.channels.contains_key(&channel) {
            entry.channels.insert(channel.clone(), seq);
            self.channels.entry(channel).or_default().insert(session);
            self.update_gauges();
        }
    }
}

/// The entries of the sessions in `set`.
fn members<'a>(
    sessions: &'a HashMap<SessionId, SessionEntry>,
    set: Option<&'a HashSet<SessionId>>,
) -> impl Iterator<Item = (&'a SessionId, &'a SessionEntry)> {
    set.into_iter()
        .flatten()
        .filter_map(move |id| sessions.get_key_value(id))
}

impl NotifyServer {
    /// Answers a join, with the outcome of a resume when one was asked:
    /// a replay read here is answered at once; while one is fetched, live
    /// messages for the session are held back, then follow the replay.
    fn answer_join(
        &mut self,
        session: SessionId,
        resume: Option<Position>,
    ) -> ResponseActFuture<Self, Joined> {
        let Some(position) = resume else {
            return Box::pin(actix::fut::ready(self.joined(None)));
        };
        let at_join = self.seq();
        let Some(entry) = self.sessions.get_mut(&session) else {
            let reset = Resume::Reset {
                reason: "session closed".into(),
            };
            return Box::pin(actix::fut::ready(self.joined(Some(reset))));
        };
        let since = position.since;
        match self.broker.replay(&entry.streams(), &position) {
            Replaying::Here(result) => {
                let joined = self.finish_resume(session, since, at_join, result, false);
                Box::pin(actix::fut::ready(joined))
            }
            Replaying::Fetching(fetching) => {
                entry.holding = true;
                self.resuming.insert(session);
                Box::pin(fetching.into_actor(self).map(move |result, act, _| {
                    act.finish_resume(session, since, at_join, result, true)
                }))
            }
        }
    }

    /// Answers a resume with its replay (or reset). After a fetch
    /// (`fetched`), the messages held back meanwhile follow, except those
    /// the replay already holds; the position reported is then the last one
    /// replayed, since older held messages may still follow it. Replayed
    /// messages this node has not fanned out yet are remembered, so that
    /// they are not delivered again when they arrive. A reset reports the
    /// broker's newest position when it gave one (held messages up to it
    /// do not follow), else the node's own.
    fn finish_resume(
        &mut self,
        session: SessionId,
        since: u64,
        at_join: u64,
        result: Result<Frames, Refused>,
        fetched: bool,
    ) -> Joined {
        self.resuming.remove(&session);
        let held = match self.sessions.get_mut(&session) {
            Some(entry) => {
                entry.holding = false;
                if result.is_ok() {
                    entry.lower_has_from(since);
                }
                std::mem::take(&mut entry.pending)
            }
            None => Vec::new(),
        };
        let (resume, reached) = match result {
            Ok(frames) => {
                let reached = if fetched {
                    frames.last().map_or(since, |(seq, _)| *seq).max(since)
                } else {
                    self.seq()
                };
                let fanned_out = self.seq();
                let ahead: Vec<u64> = frames
                    .iter()
                    .map(|(seq, _)| *seq)
                    .filter(|&seq| seq > fanned_out)
                    .collect();
                if !ahead.is_empty() {
                    if let Some(entry) = self.sessions.get_mut(&session) {
                        entry.replayed_ahead = ahead;
                        self.catching_up.insert(session);
                    }
                }
                (
                    Resume::Replayed { since, frames },
                    (self.broker.epoch(), reached),
                )
            }
            // From the broker's newest position, a resume has nothing to
            // replay: a client that follows the reset is not reset again.
            Err(refused) => {
                let reached = refused
                    .newest
                    .unwrap_or_else(|| (self.broker.epoch(), at_join));
                let reason = refused.reason;
                (Resume::Reset { reason }, reached)
            }
        };
        let (epoch, reached) = reached;
        let mut failed = None;
        if let Some(entry) = self.sessions.get(&session) {
            for (seq, frame) in held.into_iter().filter(|(seq, _)| *seq > reached) {
                let routed_at = Instant::now();
                match entry.outbox.deliver.try_send(Deliver {
                    seq,
                    frame,
                    routed_at,
                }) {
                    Ok(()) => {}
                    Err(SendError::Full(_)) => {
                        failed = Some(Failed::QueueFull);
                        break;
                    }
                    Err(SendError::Closed(_)) => {
                        failed = Some(Failed::Closed);
                        break;
                    }
                }
            }
        }
        if let Some(why) = failed {
            self.drop_failed(session, why);
        }
        Joined {
            epoch,
            seq: reached,
            resume: Some(resume),
        }
    }
}

/// Hands `frame` to each target session; returns how many took it and
/// records in `failed` those that could not, for the caller to remove.
/// Cost per target: a reference-count bump and a mailbox push.
fn hand_to<'a>(
    targets: impl Iterator<Item = (&'a SessionId, &'a SessionEntry)>,
    seq: u64,
    frame: &ByteString,
    routed_at: Instant,
    failed: &mut Vec<(SessionId, Failed)>,
) -> usize {
    let mut delivered = 0;
    let due = targets.filter(|(_, entry)| !entry.holding && !entry.replayed(seq));
    for (&session, entry) in due {
        let deliver = Deliver {
            seq,
            frame: frame.clone(),
            routed_at,
        };
        match entry.outbox.deliver.try_send(deliver) {
            Ok(()) => delivered += 1,
            Err(SendError::Full(_)) => failed.push((session, Failed::QueueFull)),
            Err(SendError::Closed(_)) => failed.push((session, Failed::Closed)),
        }
    }
    delivered
}

/// Removes `session` from `key`'s set in `index`, dropping the set when it
/// empties, so no id or channel outlives its last session. True when the
/// key went.
fn remove_from<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, HashSet<SessionId>>,
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

fn peer_label(peer: Option<ClientAddr>) -> String {
    peer.map_or_else(|| "unknown".into(), |p| p.to_string())
}

/// The `peer` and `proxy` fields of a session event: the client's address,
/// and the trusted proxy it came through.
fn peer_fields(peer: Option<ClientAddr>) -> (String, Option<String>) {
    peer.map_or_else(
        || ("unknown".into(), None),
        |p| (p.client(), p.proxy().map(|proxy| proxy.to_string())),
    )
}

fn id_label(id: Option<&ClientId>) -> String {
    id.map_or_else(|| "-".into(), |id| format!("{id:?}"))
}

/// Session events are logged at `info`, except long-polls, which come and
/// go with every request and are logged at `debug`.
fn session_log_level(transport: Transport) -> log::Level {
    if transport == Transport::LongPoll {
        log::Level::Debug
    } else {
        log::Level::Info
    }
}

impl Actor for NotifyServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SERVER_MAILBOX_CAPACITY);
        ctx.run_interval(HISTORY_SWEEP_INTERVAL, |act, _| {
            act.broker.expire(Instant::now());
        });
    }
}

impl Handler<Connect> for NotifyServer {
    type Result = ResponseActFuture<Self, Joined>;

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) -> Self::Result {
        let (session, transport, peer) = (msg.session, msg.transport, peer_label(msg.peer));
        let (client_peer, proxy) = peer_fields(msg.peer);
        log::log!(
            session_log_level(transport),
            event = "connected",
            session:% = session,
            transport:% = transport,
            peer = client_peer,
            proxy = proxy;
            "session {session} connected: transport={transport} peer={peer}"
        );
        self.metrics
            .sessions
            .with_label_values(&[&msg.transport.to_string()])
            .inc();
        let broadcast_from = self.seq();
        self.sessions.insert(
            msg.session,
            SessionEntry {
                outbox: msg.outbox,
                transport: msg.transport,
                peer: msg.peer,
                broadcast_from,
                holding: false,
                pending: Vec::new(),
                replayed_ahead: Vec::new(),
                id: None,
                channels: HashMap::new(),
            },
        );
        if let Some(id) = msg.id {
            self.register(msg.session, id);
        }
        for channel in msg.channels {
            self.subscribe(msg.session, channel);
        }
        self.answer_join(msg.session, msg.resume)
    }
}

impl Handler<Disconnect> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.remove(msg.session, &msg.reason, msg.close_code);
    }
}

impl Handler<Register> for NotifyServer {
    type Result = ResponseActFuture<Self, Joined>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        self.register(msg.session, msg.id);
        self.answer_join(msg.session, msg.resume)
    }
}

impl Handler<Subscribe> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribe(msg.session, msg.channel);
    }
}

impl Handler<Unsubscribe> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session) else {
            return;
        };
        if entry.channels.remove(&msg.channel).is_some() {
            remove_from(&mut self.channels, &msg.channel, msg.session);
            self.update_gauges();
        }
    }
}

/// What a publish handler answers: at once, or when the cluster took it.
type PublishResult = ActorResponse<NotifyServer, Result<Published, BrokerError>>;

impl Handler<Broadcast> for NotifyServer {
    type Result = PublishResult;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> PublishResult {
        self.publish(StreamKey::Broadcast, &msg.frame)
    }
}

impl Handler<Direct> for NotifyServer {
    type Result = PublishResult;

    fn handle(&mut self, msg: Direct, _: &mut Context<Self>) -> PublishResult {
        self.publish(StreamKey::Id(msg.id), &msg.frame)
    }
}

impl Handler<ToChannel> for NotifyServer {
    type Result = PublishResult;

    fn handle(&mut self, msg: ToChannel, _: &mut Context<Self>) -> PublishResult {
        self.publish(StreamKey::Channel(msg.channel), &msg.frame)
    }
}

impl Handler<Publication> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Publication, _: &mut Context<Self>) {
        self.fan_out(msg);
    }
}

impl Handler<GetPresence> for NotifyServer {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, msg: GetPresence, _: &mut Context<Self>) -> Self::Result {
        let changed = msg.known != Some(self.ids_generation);
        MessageResult(Presence {
            sessions: self.sessions.len(),
            generation: self.ids_generation,
            ids: changed.then(|| self.ids.keys().cloned().collect()),
        })
    }
}

/// How the broker reaches `NotifyServer`: each publication is one message
/// to its mailbox, moved in as the broker made it; a presence report is
/// asked for and awaited.
impl BrokerEvents for Addr<NotifyServer> {
    fn publication(&self, publication: Publication) {
        self.do_send(publication);
    }

    fn presence(&self, known: Option<u64>) -> BoxFuture<'static, Option<Presence>> {
        let asked = self.send(GetPresence { known });
        Box::pin(async move { asked.await.ok() })
    }
}

impl Handler<Shutdown> for NotifyServer {
    type Result = usize;

    /// Tells every session to close; they leave the registry as they do.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        for entry in self.sessions.values() {
            entry.outbox.close.do_send(Close {
                code: close_code::GOING_AWAY,
                reason: DisconnectReason::ServerShutdown,
            });
        }
        self.sessions.len()
    }
}

impl Handler<GetStats> for NotifyServer {
    type Result = Stats;

    fn handle(&mut self, msg: GetStats, _: &mut Context<Self>) -> Stats {
        let mut by_transport = std::collections::BTreeMap::new();
        for entry in self.sessions.values() {
            *by_transport.entry(entry.transport.to_string()).or_insert(0) += 1;
        }
        let mut top: Vec<ChannelCount> = self
            .channels
            .iter()
            .map(|(channel, members)| ChannelCount {
                channel: channel.clone(),
                subscribers: members.len(),
            })
            .collect();
        top.sort_unstable_by(|a, b| {
            b.subscribers
                .cmp(&a.subscribers)
                .then_with(|| a.channel.cmp(&b.channel))
        });
        top.truncate(msg.top);
        let (history_messages, history_bytes, history_streams) = self.broker.usage();
        Stats {
            sessions: self.sessions.len(),
            sessions_by_transport: by_transport,
            ids: self.ids.len(),
            channels: self.channels.len(),
            top_channels: top,
            seq: self.seq(),
            history_messages,
            history_bytes,
            history_streams,
        }
    }
}

impl Handler<GetCounts> for NotifyServer {
    type Result = Counts;

    fn handle(&mut self, _: GetCounts, _: &mut Context<Self>) -> Counts {
        let (history_messages, history_bytes, _) = self.broker.usage();
        Counts {
            sessions: self.sessions.len(),
            ids: self.ids.len(),
            channels: self.channels.len(),
            seq: self.seq(),
            history_messages,
            history_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;
    use crate::history::HistoryLimits;
    use serde_json::value::RawValue;
    use std::sync::Mutex;

    /// A stand-in session that records the seqs it is handed.
    #[derive(Default)]
    struct Probe {
        seqs: Arc<Mutex<Vec<u64>>>,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.seqs.lock().unwrap().push(msg.seq);
        }
    }

    impl Handler<Close> for Probe {
        type Result = ();
        fn handle(&mut self, _: Close, _: &mut Context<Self>) {}
    }

    const EPOCH: &str = "e1";

    fn server() -> Addr<NotifyServer> {
        let limits = HistoryLimits {
            per_stream: 10,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
            max_streams: 100,
        };
        NotifyServer::new(Arc::new(MemoryBroker::new(EPOCH, limits, 1 << 20))).start()
    }

    struct Started {
        session: SessionId,
        seqs: Arc<Mutex<Vec<u64>>>,
        joined: Joined,
    }

    fn outbox<A>(addr: Addr<A>) -> SessionOutbox
    where
        A: Actor<Context = Context<A>> + Handler<Deliver> + Handler<Close>,
    {
        SessionOutbox::of(&addr)
    }

    async fn connect(
        server: &Addr<NotifyServer>,
        id: Option<&str>,
        channels: &[&str],
        resume: Option<u64>,
    ) -> Started {
        let probe = Probe::default();
        let seqs = probe.seqs.clone();
        let session = SessionId::next();
        let joined = server
            .send(Connect {
                session,
                transport: Transport::WebSocket,
                peer: None,
                outbox: outbox(probe.start()),
                id: id.map(|i| ClientId::parse(i).unwrap()),
                channels: channels.iter().map(|c| channel(c)).collect(),
                resume: resume.map(|since| Position::new(EPOCH.into(), since).unwrap()),
            })
            .await
            .unwrap();
        Started {
            session,
            seqs,
            joined,
        }
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn frame(text: &str) -> PendingFrame {
        let data = RawValue::from_string(format!("{text:?}")).unwrap();
        PendingFrame::message(None, None, &data).unwrap()
    }

    async fn broadcast(server: &Addr<NotifyServer>) -> Published {
        server
            .send(Broadcast { frame: frame("b") })
            .await
            .unwrap()
            .unwrap()
    }

    async fn direct(server: &Addr<NotifyServer>, id: &str) -> Published {
        let id = ClientId::parse(id).unwrap();
        server
            .send(Direct {
                id,
                frame: frame("d"),
            })
            .await
            .unwrap()
            .unwrap()
    }

    async fn counts(server: &Addr<NotifyServer>) -> Counts {
        server.send(GetCounts).await.unwrap()
    }

    /// Waits until `probe` has handled `n` deliveries (fails after 5 s).
    async fn handled(probe: &Arc<Mutex<Vec<u64>>>, n: usize) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = probe.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "only {seen:?} handled");
            actix::clock::sleep(Duration::from_millis(1)).await;
        }
    }

    fn replayed(joined: &Joined) -> Vec<u64> {
        match &joined.resume {
            Some(Resume::Replayed { frames, .. }) => frames.iter().map(|(s, _)| *s).collect(),
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[actix::test]
    async fn every_publish_gets_the_next_seq_and_reaches_its_targets() {
        let server = server();
        let tab1 = connect(&server, Some("63"), &[], None).await;
        let tab2 = connect(&server, Some("63"), &["news"], None).await;
        let other = connect(&server, None, &[], None).await;

        assert_eq!(
            broadcast(&server).await,
            Published {
                delivered: Some(3),
                seq: 1,
                nodes: None,
            }
        );
        assert_eq!(
            direct(&server, "63").await,
            Published {
                delivered: Some(2),
                seq: 2,
                nodes: None,
            }
        );
        assert_eq!(
            direct(&server, "nobody").await,
            Published {
                delivered: Some(0),
                seq: 3,
                nodes: None,
            }
        );
        let to_news = ToChannel {
            channel: channel("news"),
            frame: frame("n"),
        };
        assert_eq!(
            server.send(to_news).await.unwrap().unwrap(),
            Published {
                delivered: Some(1),
                seq: 4,
                nodes: None,
            }
        );
        assert_eq!(handled(&tab1.seqs, 2).await, [1, 2]);
        assert_eq!(handled(&tab2.seqs, 3).await, [1, 2, 4]);
        // A later broadcast is the next thing `other` sees: nothing between.
        broadcast(&server).await;
        assert_eq!(handled(&other.seqs, 2).await, [1, 5]);
    }

    #[actix::test]
    async fn connecting_with_a_position_replays_what_was_missed() {
        let server = server();
        let first = connect(&server, Some("63"), &["news"], None).await;
        assert_eq!((&*first.joined.epoch, first.joined.seq), (EPOCH, 0));
        server.do_send(Disconnect {
            session: first.session,
            reason: DisconnectReason::ConnectionLost,
            close_code: None,
        });
        broadcast(&server).await; // 1
        direct(&server, "63").await; // 2
        direct(&server, "64").await; // 3: someone else's
        let to_news = ToChannel {
            channel: channel("news"),
            frame: frame("n"),
        };
        server.send(to_news).await.unwrap().unwrap(); // 4

        let back = connect(&server, Some("63"), &["news"], Some(0)).await;
        assert_eq!(replayed(&back.joined), [1, 2, 4]);
        assert_eq!(back.joined.seq, 4);
        let later = connect(&server, Some("63"), &[], Some(2)).await;
        assert_eq!(replayed(&later.joined), [] as [u64; 0]);
    }

    #[actix::test]
    async fn a_second_resume_on_one_session_never_repeats_a_message() {
        let server = server();
        broadcast(&server).await; // 1
        direct(&server, "63").await; // 2
        let s = connect(&server, None, &[], Some(0)).await;
        assert_eq!(replayed(&s.joined), [1]);
        broadcast(&server).await; // 3: live
        let again = server
            .send(Register {
                session: s.session,
                id: ClientId::parse("63").unwrap(),
                resume: Some(Position::new(EPOCH.into(), 0).unwrap()),
            })
            .await
            .unwrap();
        // Broadcasts 1 (replayed) and 3 (live) are not repeated; 2 is new.
        assert_eq!(replayed(&again), [2]);
    }

    #[actix::test]
    async fn a_wrong_epoch_or_a_lost_message_resets_with_nothing_replayed() {
        let limits = HistoryLimits {
            per_stream: 2,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
            max_streams: 100,
        };
        let server = NotifyServer::new(Arc::new(MemoryBroker::new(EPOCH, limits, 1 << 20))).start();
        for _ in 0..3 {
            broadcast(&server).await;
        }
        let session = SessionId::next();
        let joined = server
            .send(Connect {
                session,
                transport: Transport::WebSocket,
                peer: None,
                outbox: outbox(Probe::default().start()),
                id: None,
                channels: vec![],
                resume: Some(Position::new("other".into(), 1).unwrap()),
            })
            .await
            .unwrap();
        assert!(
            matches!(joined.resume, Some(Resume::Reset { ref reason }) if reason.contains("epoch"))
        );
        let gap = connect(&server, None, &[], Some(0)).await;
        assert!(
            matches!(gap.joined.resume, Some(Resume::Reset { ref reason }) if reason.contains("dropped"))
        );
        let fine = connect(&server, None, &[], Some(1)).await;
        assert_eq!(replayed(&fine.joined), [2, 3]);
        let ahead = connect(&server, None, &[], Some(99)).await;
        assert!(matches!(ahead.joined.resume, Some(Resume::Reset { .. })));
    }

    #[actix::test]
    async fn disconnect_leaves_no_trace_and_empty_channels_vanish() {
        let server = server();
        let a = connect(&server, Some("63"), &["news"], None).await;
        let b = connect(&server, Some("63"), &[], None).await;
        server.do_send(Unsubscribe {
            session: a.session,
            channel: channel("news"),
        });
        let c = counts(&server).await;
        assert_eq!((c.sessions, c.ids, c.channels), (2, 1, 0));
        for s in [&a, &b] {
            server.do_send(Disconnect {
                session: s.session,
                reason: DisconnectReason::ClientClosed,
                close_code: Some(1000),
            });
        }
        let c = counts(&server).await;
        assert_eq!((c.sessions, c.ids, c.channels), (0, 0, 0));
    }

    #[actix::test]
    async fn reregistering_moves_the_session() {
        let server = server();
        let s = connect(&server, Some("old"), &[], None).await;
        server
            .send(Register {
                session: s.session,
                id: ClientId::parse("new").unwrap(),
                resume: None,
            })
            .await
            .unwrap();
        assert_eq!(counts(&server).await.ids, 1);
        assert_eq!(direct(&server, "old").await.delivered, Some(0));
        assert_eq!(direct(&server, "new").await.delivered, Some(1));
    }

    #[actix::test]
    async fn a_full_queue_drops_and_closes_that_session_only() {
        let server = server();
        let healthy = connect(&server, None, &[], None).await;

        // A session whose actor never runs: its mailbox fills and stays full.
        let mut stuck: Context<Probe> = Context::new();
        stuck.set_mailbox_capacity(1);
        server
            .send(Connect {
                session: SessionId::next(),
                transport: Transport::WebSocket,
                peer: None,
                outbox: outbox(stuck.address()),
                id: None,
                channels: vec![],
                resume: None,
            })
            .await
            .unwrap();

        let mut delivered = Vec::new();
        for _ in 0..4 {
            delivered.push(broadcast(&server).await.delivered);
        }
        assert_eq!(delivered.first(), Some(&Some(2)));
        assert_eq!(delivered.last(), Some(&Some(1)));
        assert_eq!(counts(&server).await.sessions, 1);
        assert_eq!(handled(&healthy.seqs, 4).await, [1, 2, 3, 4]);
        drop(stuck);
    }

    #[actix::test]
    async fn a_closed_mailbox_is_deregistered_on_delivery() {
        let server = server();
        let ctx: Context<Probe> = Context::new();
        server
            .send(Connect {
                session: SessionId::next(),
                transport: Transport::WebSocket,
                peer: None,
                outbox: outbox(ctx.address()),
                id: None,
                channels: vec![],
                resume: None,
            })
            .await
            .unwrap();
        drop(ctx);
        assert_eq!(broadcast(&server).await.delivered, Some(0));
        assert_eq!(counts(&server).await.sessions, 0);
    }

    /// A broker whose replays are fetched and may be ahead of this node,
    /// as Redis can be ahead of the subscription: it holds seqs 1 and 2,
    /// which have not been fanned out here yet.
    struct AheadBroker;

    impl Broker for AheadBroker {
        fn kind(&self) -> crate::config::BrokerKind {
            crate::config::BrokerKind::Redis
        }

        fn epoch(&self) -> Arc<str> {
            EPOCH.into()
        }

        fn publish(&self, _: StreamKey, _: &PendingFrame) -> Publishing {
            Publishing::Sent(Box::pin(async {
                Err(BrokerError::Unavailable("not in this test".into()))
            }))
        }

        fn replay(&self, _: &[(StreamKey, u64)], _: &Position) -> Replaying {
            let frames = vec![(1, "m1".into()), (2, "m2".into())];
            Replaying::Fetching(Box::pin(async move { Ok(frames) }))
        }
    }

    /// A broker that joined its cluster at seq 40 and refuses every resume,
    /// giving the cluster's newest position: another epoch, seq 42.
    struct RefusingBroker;

    impl Broker for RefusingBroker {
        fn kind(&self) -> crate::config::BrokerKind {
            crate::config::BrokerKind::Redis
        }

        fn epoch(&self) -> Arc<str> {
            EPOCH.into()
        }

        fn numbered_before(&self) -> u64 {
            40
        }

        fn publish(&self, _: StreamKey, _: &PendingFrame) -> Publishing {
            Publishing::Sent(Box::pin(async {
                Err(BrokerError::Unavailable("not in this test".into()))
            }))
        }

        fn replay(&self, _: &[(StreamKey, u64)], _: &Position) -> Replaying {
            Replaying::Fetching(Box::pin(async {
                Err(Refused {
                    reason: "gone".into(),
                    newest: Some(("e2".into(), 42)),
                })
            }))
        }
    }

    #[actix::test]
    async fn positions_start_at_the_cluster_counter_and_a_reset_gives_the_newest() {
        let server = NotifyServer::new(Arc::new(RefusingBroker)).start();
        let fresh = connect(&server, Some("63"), &[], None).await;
        assert_eq!((&*fresh.joined.epoch, fresh.joined.seq), (EPOCH, 40));
        assert_eq!(counts(&server).await.seq, 40);
        let back = connect(&server, Some("63"), &[], Some(3)).await;
        assert!(
            matches!(&back.joined.resume, Some(Resume::Reset { reason }) if reason == "gone"),
            "{:?}",
            back.joined.resume
        );
        assert_eq!((&*back.joined.epoch, back.joined.seq), ("e2", 42));
    }

    #[actix::test]
    async fn a_message_replayed_ahead_of_this_node_is_not_delivered_again() {
        let server = NotifyServer::new(Arc::new(AheadBroker)).start();
        let resumed = connect(&server, None, &[], Some(0)).await;
        assert_eq!(replayed(&resumed.joined), [1, 2]);
        let other = connect(&server, None, &[], None).await;
        // The subscription brings them now, then a newer one.
        for seq in 1..=3 {
            server.do_send(Publication {
                key: StreamKey::Broadcast,
                seq,
                frame: format!("m{seq}").into(),
            });
        }
        assert_eq!(handled(&other.seqs, 3).await, [1, 2, 3]);
        assert_eq!(
            handled(&resumed.seqs, 1).await,
            [3],
            "1 and 2 were replayed"
        );
    }
}
