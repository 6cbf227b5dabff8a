//! `NotifyServer`: the one owner of routing state.
//!
//! It knows every open session and the id and channels each one holds
//! (`registry`, whose indexes keep the sessions of an id or channel in a
//! `session_set`). A publish goes to its [`Broker`], which numbers it
//! (`seq`), stamps the number into the already-encoded frame and keeps it;
//! the numbered frame comes back as a [`Publication`] (at once from the
//! memory broker, through the subscription from Redis, via
//! [`BrokerEvents`]) and `NotifyServer` hands the same bytes to every
//! target session. It owns no socket, encodes no JSON and never waits on a
//! session: fan-out uses `try_send`, and a session whose queue is full is
//! dropped as a slow consumer instead of slowing the others (`outbox`).
//!
//! A session joining with a position is answered with a replay, which the
//! live messages that follow neither overlap nor leave a hole in
//! (`resume`). What `NotifyServer` reports about itself, in logs,
//! `/health`, `/stats` and to the cluster, is in `report`.
//!
//! This file is the actor: its fields and one handler per message, each
//! delegating to those parts.

mod outbox;
mod registry;
mod report;
mod resume;
mod session_set;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::BoxFuture;

use self::registry::Registry;
use super::messages::{
    Broadcast, Close, Connect, Counts, Direct, Disconnect, DisconnectReason, GetCounts,
    GetPresence, GetStats, Joined, Published, Register, Resume, SessionOutbox, Shutdown, Stats,
    Subscribe, ToChannel, Unsubscribe,
};
use crate::broker::{
    Broker, BrokerError, BrokerEvents, Missed, NotReplayed, Presence, Publication, Publishing,
    Replaying, Snapshot,
};
use crate::history::StreamKey;
use crate::idempotency::ScopedKey;
use crate::ids::SessionId;
use crate::metrics::Metrics;
use crate::protocol::{close_code, PendingFrame, Position};
use crate::replay::ResetReason;

/// Mailbox size of `NotifyServer` itself. Publishers wait (back-pressure)
/// when it is full; sessions' control messages always get through.
const SERVER_MAILBOX_CAPACITY: usize = 4096;

/// How often expired history is dropped when no publish does it.
const HISTORY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The routing actor. Start exactly one per process and share its `Addr`.
pub struct NotifyServer {
    /// The latest seq fanned out, or numbered before this node could see
    /// it (read it through [`NotifyServer::seq`]). The epoch is the
    /// broker's: with Redis it changes when Redis lost its data.
    seq: u64,
    /// Numbers, keeps and announces every publish; answers resumes.
    broker: Arc<dyn Broker>,
    /// The sessions and the indexes that route to them.
    registry: Registry<SessionOutbox>,
}

impl NotifyServer {
    /// A `NotifyServer` whose messages are numbered and kept by `broker`.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            seq: broker.numbered_before(),
            broker,
            registry: Registry::new(Arc::new(Metrics::new())),
        }
    }

    /// Counts into `metrics` (served at `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.registry.set_metrics(metrics);
        self
    }

    /// `NotifyServer`'s position: the latest seq fanned out here, raised to
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
    /// it straight back, or answers once the cluster took it. A duplicate
    /// (its idempotency key already used) is delivered to nobody.
    fn publish(
        &mut self,
        key: StreamKey,
        frame: &PendingFrame,
        idempotency: Option<&ScopedKey>,
    ) -> PublishResult {
        match self.broker.publish(key, frame, idempotency) {
            Publishing::Here(publication) => {
                let seq = publication.seq;
                let delivered = self.fan_out(publication);
                ActorResponse::reply(Ok(Published {
                    delivered: Some(delivered),
                    seq,
                    nodes: None,
                    duplicate: false,
                }))
            }
            Publishing::Duplicate { seq } => ActorResponse::reply(Ok(Published {
                delivered: Some(0),
                seq,
                nodes: None,
                duplicate: true,
            })),
            Publishing::Sent(announcing) => {
                ActorResponse::r#async(announcing.into_actor(self).map(|announced, _, _| {
                    announced.map(|a| Published {
                        delivered: if a.duplicate { Some(0) } else { None },
                        seq: a.seq,
                        nodes: (!a.duplicate).then_some(a.nodes),
                        duplicate: a.duplicate,
                    })
                }))
            }
        }
    }

    /// Delivers a numbered message to this node's sessions: the one path
    /// of every message, whichever broker numbered it.
    fn fan_out(&mut self, publication: Publication) -> usize {
        self.seq = self.seq.max(publication.seq);
        self.registry
            .route(&publication.key, publication.seq, &publication.frame)
    }

    /// Answers a join, with the outcome of a resume when one was asked:
    /// a replay read here is answered at once; while one is fetched, live
    /// messages for the session are held back, then follow the replay.
    fn answer_join(
        &mut self,
        session: SessionId,
        resume: Option<Position>,
    ) -> ResponseActFuture<Self, Joined> {
        let Some(position) = resume else {
            // A session registering again mid-way may have been given more
            // than this node fanned out (a replay read past its
            // subscription): its position is never below that.
            let mut joined = self.joined(None);
            joined.seq = joined.seq.max(self.registry.mark(session));
            return Box::pin(actix::fut::ready(joined));
        };
        let at_join = self.seq();
        let Some(streams) = self.registry.positions(session) else {
            let reset = Resume::Reset {
                reason: ResetReason::SessionClosed,
                at: at_join,
                frames: Vec::new(),
            };
            return Box::pin(actix::fut::ready(self.joined(Some(reset))));
        };
        let since = position.since;
        match self.broker.replay(&streams, &position) {
            Replaying::Here(result) => {
                let upto = self.seq();
                let result = result
                    .map(|frames| Snapshot { frames, upto })
                    .map_err(NotReplayed::Refused);
                let joined = self.finish_resume(session, since, at_join, result);
                Box::pin(actix::fut::ready(joined))
            }
            Replaying::Fetching(fetching) => {
                self.registry.hold(session);
                Box::pin(
                    fetching.into_actor(self).map(move |result, act, _| {
                        act.finish_resume(session, since, at_join, result)
                    }),
                )
            }
        }
    }

    /// Answers a resume with its replay or reset (`resume::settle`), and
    /// lets the session's held-back messages above it follow; or, when the
    /// broker could not be read, with `RetryLater`, after which the session
    /// gets nothing more until it leaves.
    fn finish_resume(
        &mut self,
        session: SessionId,
        since: u64,
        at_join: u64,
        result: Result<Snapshot, NotReplayed>,
    ) -> Joined {
        let epoch = self.broker.epoch();
        let settled = resume::settle(result, since, at_join, epoch);
        if settled.goes_on {
            self.registry
                .resumed(session, settled.replayed_from, settled.joined.seq);
        } else {
            self.registry.silence(session);
        }
        settled.joined
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
        let broadcast_from = self.seq();
        self.registry.connect(
            msg.session,
            msg.outbox,
            msg.transport,
            msg.peer,
            broadcast_from,
        );
        if let Some(id) = msg.id {
            let from = self.seq();
            self.registry.register(msg.session, id, from);
        }
        for channel in msg.channels {
            let from = self.seq();
            self.registry.subscribe(msg.session, channel, from);
        }
        self.answer_join(msg.session, msg.resume)
    }
}

impl Handler<Disconnect> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.registry
            .remove(msg.session, &msg.reason, msg.close_code);
    }
}

impl Handler<Register> for NotifyServer {
    type Result = ResponseActFuture<Self, Joined>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let from = self.seq();
        self.registry.register(msg.session, msg.id, from);
        self.answer_join(msg.session, msg.resume)
    }
}

impl Handler<Subscribe> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        let from = self.seq();
        self.registry.subscribe(msg.session, msg.channel, from);
    }
}

impl Handler<Unsubscribe> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.registry.unsubscribe(msg.session, &msg.channel);
    }
}

/// What a publish handler answers: at once, or when the cluster took it.
type PublishResult = ActorResponse<NotifyServer, Result<Published, BrokerError>>;

impl Handler<Broadcast> for NotifyServer {
    type Result = PublishResult;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> PublishResult {
        self.publish(StreamKey::Broadcast, &msg.frame, msg.idempotency.as_ref())
    }
}

impl Handler<Direct> for NotifyServer {
    type Result = PublishResult;

    fn handle(&mut self, msg: Direct, _: &mut Context<Self>) -> PublishResult {
        self.publish(StreamKey::Id(msg.id), &msg.frame, msg.idempotency.as_ref())
    }
}

impl Handler<ToChannel> for NotifyServer {
    type Result = PublishResult;

    fn handle(&mut self, msg: ToChannel, _: &mut Context<Self>) -> PublishResult {
        self.publish(
            StreamKey::Channel(msg.channel),
            &msg.frame,
            msg.idempotency.as_ref(),
        )
    }
}

impl Handler<Publication> for NotifyServer {
    type Result = ();

    fn handle(&mut self, msg: Publication, _: &mut Context<Self>) {
        self.fan_out(msg);
    }
}

impl Handler<Missed> for NotifyServer {
    type Result = ();

    /// Closes the sessions that may have missed messages, to resume, and
    /// removes them at once: nothing fanned out after this reaches them,
    /// so their position stays before what they missed.
    fn handle(&mut self, msg: Missed, _: &mut Context<Self>) {
        let keys = match &msg {
            Missed::Everything => None,
            Missed::Streams(keys) => Some(keys.as_slice()),
        };
        let closed = self
            .registry
            .drop_routed(keys, close_code::MISSED, DisconnectReason::Missed);
        log::warn!(
            target: report::LOG_TARGET,
            "this node missed messages of {} it cannot fan out; {closed} session(s) \
             told to resume (close {})",
            keys.map_or_else(
                || "every stream".to_owned(),
                |keys| format!("{} stream(s)", keys.len())
            ),
            close_code::MISSED
        );
    }
}

impl Handler<GetPresence> for NotifyServer {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, msg: GetPresence, _: &mut Context<Self>) -> Self::Result {
        MessageResult(report::presence(&self.registry, msg.known))
    }
}

/// How the broker reaches `NotifyServer`: each publication is one message
/// to its mailbox, moved in as the broker made it; a presence report is
/// asked for and awaited.
impl BrokerEvents for Addr<NotifyServer> {
    fn publication(&self, publication: Publication) {
        self.do_send(publication);
    }

    fn missed(&self, missed: Missed) {
        self.do_send(missed);
    }

    fn presence(&self, known: Option<u64>) -> BoxFuture<'static, Option<Presence>> {
        let asked = self.send(GetPresence { known });
        Box::pin(async move { asked.await.ok() })
    }
}

impl Handler<Shutdown> for NotifyServer {
    type Result = usize;

    /// Tells every session to close; they leave `NotifyServer` as they do.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        self.registry.close_all(|| Close {
            code: close_code::GOING_AWAY,
            reason: DisconnectReason::ServerShutdown,
        })
    }
}

impl Handler<GetStats> for NotifyServer {
    type Result = Stats;

    fn handle(&mut self, msg: GetStats, _: &mut Context<Self>) -> Stats {
        let usage = self.broker.usage();
        let seq = self.seq();
        report::stats(&self.registry, msg.top, seq, usage)
    }
}

impl Handler<GetCounts> for NotifyServer {
    type Result = Counts;

    fn handle(&mut self, _: GetCounts, _: &mut Context<Self>) -> Counts {
        let usage = self.broker.usage();
        let seq = self.seq();
        report::counts(&self.registry, seq, usage)
    }
}

/// The actor driven through its messages. The helpers are shared with the
/// resume tests (`resume.rs`).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;
    use crate::history::HistoryLimits;
    use crate::hub::mailbox::{self, Batch, Mailbox};
    use crate::hub::messages::Transport;
    use crate::ids::{ChannelName, ClientId};
    use serde_json::value::RawValue;
    use std::sync::Mutex;

    /// A stand-in session that records the seqs it is handed.
    #[derive(Default)]
    pub(super) struct Probe {
        seqs: Arc<Mutex<Vec<u64>>>,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl StreamHandler<Batch> for Probe {
        fn handle(&mut self, batch: Batch, _: &mut Context<Self>) {
            self.seqs
                .lock()
                .unwrap()
                .extend(batch.iter().map(|d| d.seq));
        }
    }

    impl Handler<Close> for Probe {
        type Result = ();
        fn handle(&mut self, _: Close, _: &mut Context<Self>) {}
    }

    pub(super) const EPOCH: &str = "e1";

    pub(super) fn server() -> Addr<NotifyServer> {
        let limits = HistoryLimits {
            per_stream: 10,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
            max_streams: 100,
        };
        NotifyServer::new(Arc::new(MemoryBroker::new(EPOCH, limits, 1 << 20))).start()
    }

    pub(super) struct Started {
        pub(super) session: SessionId,
        pub(super) seqs: Arc<Mutex<Vec<u64>>>,
        pub(super) joined: Joined,
    }

    /// A running probe's outbox, and the seqs it records.
    pub(super) fn probe() -> (SessionOutbox, Arc<Mutex<Vec<u64>>>) {
        let probe = Probe::default();
        let seqs = probe.seqs.clone();
        let mut opened = None;
        Probe::create(|ctx| {
            opened = Some(SessionOutbox::open::<Probe>(ctx, 16).0);
            probe
        });
        (opened.unwrap(), seqs)
    }

    /// An outbox whose session never takes its frames (the mailbox is
    /// returned, never polled), holding at most `capacity`.
    pub(super) fn stuck(capacity: usize) -> (SessionOutbox, Mailbox) {
        let (frames, mailbox) = mailbox::channel(capacity);
        let close = Probe::default().start().recipient();
        (SessionOutbox { frames, close }, mailbox)
    }

    pub(super) async fn connect(
        server: &Addr<NotifyServer>,
        id: Option<&str>,
        channels: &[&str],
        resume: Option<u64>,
    ) -> Started {
        let (outbox, seqs) = probe();
        let session = SessionId::next();
        let joined = server
            .send(Connect {
                session,
                transport: Transport::WebSocket,
                peer: None,
                outbox,
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

    pub(super) fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    pub(super) fn frame(text: &str) -> PendingFrame {
        let data = RawValue::from_string(format!("{text:?}")).unwrap();
        PendingFrame::message(None, None, &data).unwrap()
    }

    pub(super) async fn broadcast(server: &Addr<NotifyServer>) -> Published {
        server
            .send(Broadcast {
                frame: frame("b"),
                idempotency: None,
            })
            .await
            .unwrap()
            .unwrap()
    }

    pub(super) async fn direct(server: &Addr<NotifyServer>, id: &str) -> Published {
        let id = ClientId::parse(id).unwrap();
        server
            .send(Direct {
                id,
                frame: frame("d"),
                idempotency: None,
            })
            .await
            .unwrap()
            .unwrap()
    }

    pub(super) async fn counts(server: &Addr<NotifyServer>) -> Counts {
        server.send(GetCounts).await.unwrap()
    }

    /// Waits until `probe` has handled `n` deliveries (fails after 5 s).
    pub(super) async fn handled(probe: &Arc<Mutex<Vec<u64>>>, n: usize) -> Vec<u64> {
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

    pub(super) fn replayed(joined: &Joined) -> Vec<u64> {
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
                duplicate: false,
            }
        );
        assert_eq!(
            direct(&server, "63").await,
            Published {
                delivered: Some(2),
                seq: 2,
                nodes: None,
                duplicate: false,
            }
        );
        assert_eq!(
            direct(&server, "nobody").await,
            Published {
                delivered: Some(0),
                seq: 3,
                nodes: None,
                duplicate: false,
            }
        );
        let to_news = ToChannel {
            channel: channel("news"),
            frame: frame("n"),
            idempotency: None,
        };
        assert_eq!(
            server.send(to_news).await.unwrap().unwrap(),
            Published {
                delivered: Some(1),
                seq: 4,
                nodes: None,
                duplicate: false,
            }
        );
        assert_eq!(handled(&tab1.seqs, 2).await, [1, 2]);
        assert_eq!(handled(&tab2.seqs, 3).await, [1, 2, 4]);
        // A later broadcast is the next thing `other` sees: nothing between.
        broadcast(&server).await;
        assert_eq!(handled(&other.seqs, 2).await, [1, 5]);
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

        // A session that never takes its frames: its mailbox fills and
        // stays full.
        let (outbox, stuck) = stuck(1);
        server
            .send(Connect {
                session: SessionId::next(),
                transport: Transport::WebSocket,
                peer: None,
                outbox,
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
        let (outbox, mailbox) = stuck(4);
        server
            .send(Connect {
                session: SessionId::next(),
                transport: Transport::WebSocket,
                peer: None,
                outbox,
                id: None,
                channels: vec![],
                resume: None,
            })
            .await
            .unwrap();
        drop(mailbox);
        assert_eq!(broadcast(&server).await.delivered, Some(0));
        assert_eq!(counts(&server).await.sessions, 0);
    }
}
