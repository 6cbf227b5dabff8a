//! Resume versus live delivery: where a replay ends and live messages take
//! over, for one session.
//!
//! For every stream a session receives, `NotifyServer` remembers the seq
//! from which the session has everything (`has_from`): the seq at which it
//! joined, lowered by a successful resume. A resume replays exactly the
//! retained messages between the client's position and `has_from`; live
//! delivery covers the rest. That is what keeps replay and live delivery
//! from overlapping or leaving a hole.
//!
//! When the replay is fetched (from Redis) rather than read at once, it is
//! a [`Snapshot`]: every message of the session's streams up to the
//! cluster's counter at one instant (`upto`). The resume ends at that
//! position: live messages above it follow the replay, none at or below it
//! is delivered live (the replay holds those that are the session's). Live
//! messages that arrive while the fetch is out are held back, then follow
//! the replay if they are above it; and as the subscription that brings
//! messages here may lag the connection the replay was read on, messages
//! at or below it may still arrive afterwards.
//!
//! Both are covered by one rule, the session's high-water mark
//! (`delivered`): the highest seq the session was given, by a replay, a
//! resume's position or live delivery. No live message at or below it is
//! given to the session, on any transport: after its replay, seqs reach a
//! session strictly ascending, each once. It costs one compare per
//! delivery.
//! [`settle`] turns the broker's answer into what the join reports.

use std::collections::HashMap;

use bytestring::ByteString;

use crate::broker::{NotReplayed, Snapshot};
use crate::history::StreamKey;
use crate::hub::messages::{Joined, Resume};
use crate::ids::{ChannelName, ClientId, Epoch};

/// The streams one session receives, from which seq it has each
/// (`has_from`), and the state of a resume under way.
pub struct Streams {
    /// `has_from` of the broadcast stream.
    broadcast_from: u64,
    /// The registered id and its `has_from`.
    id: Option<(ClientId, u64)>,
    /// Each channel and its `has_from`.
    channels: HashMap<ChannelName, u64>,
    /// While a replay is being fetched: live messages held back until it
    /// is in (`holding`), instead of being delivered.
    holding: bool,
    held: Vec<(u64, ByteString)>,
    /// The high-water mark: the highest seq given to the session (by live
    /// delivery, a replay, or a resume's position). Nothing at or below it
    /// is given again.
    delivered: u64,
}

impl Streams {
    /// A session that receives broadcasts from `broadcast_from` on, and
    /// nothing else yet.
    pub fn new(broadcast_from: u64) -> Self {
        Self {
            broadcast_from,
            id: None,
            channels: HashMap::new(),
            holding: false,
            held: Vec::new(),
            delivered: 0,
        }
    }

    /// The id the session is registered as.
    pub fn id(&self) -> Option<&ClientId> {
        self.id.as_ref().map(|(id, _)| id)
    }

    /// Registers the session as `id`, which it has from seq `from` on;
    /// returns the id it had before. Registering again as the same id
    /// changes nothing (what the session has of it stays): the caller
    /// checks [`Streams::id`] first.
    pub fn set_id(&mut self, id: ClientId, from: u64) -> Option<ClientId> {
        self.id.replace((id, from)).map(|(previous, _)| previous)
    }

    /// The channels the session receives.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.channels.keys()
    }

    /// Adds `channel`, which the session has from seq `from` on; false
    /// (and nothing changes) when it already receives it.
    pub fn subscribe(&mut self, channel: ChannelName, from: u64) -> bool {
        if self.channels.contains_key(&channel) {
            return false;
        }
        self.channels.insert(channel, from);
        true
    }

    /// Drops `channel`; false when the session did not receive it.
    pub fn unsubscribe(&mut self, channel: &ChannelName) -> bool {
        self.channels.remove(channel).is_some()
    }

    /// Every stream the session receives, with its `has_from`: what a
    /// resume asks the broker to replay.
    pub fn positions(&self) -> Vec<(StreamKey, u64)> {
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

    /// Whether messages of `key` reach this session.
    pub fn receives(&self, key: &StreamKey) -> bool {
        match key {
            StreamKey::Broadcast => true,
            StreamKey::Id(id) => self.id.as_ref().is_some_and(|(own, _)| own == id),
            StreamKey::Channel(channel) => self.channels.contains_key(channel),
        }
    }

    /// Whether live delivery hands `seq` to the session now: not while a
    /// replay is fetched, nor at or below its high-water mark. Checked on
    /// every delivery: two comparisons.
    #[inline]
    pub fn due(&self, seq: u64) -> bool {
        !self.holding && seq > self.delivered
    }

    /// The high-water mark: the highest seq given to the session.
    pub fn mark(&self) -> u64 {
        self.delivered
    }

    /// The session was given `seq`: its high-water mark moves up to it.
    #[inline]
    pub fn delivered(&mut self, seq: u64) {
        self.delivered = self.delivered.max(seq);
    }

    /// A replay is being fetched: live messages wait in [`Streams::hold_back`].
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Keeps a live message for after the replay, if it is one of this
    /// session's.
    pub fn hold_back(&mut self, key: &StreamKey, seq: u64, frame: &ByteString) {
        if self.receives(key) {
            self.held.push((seq, frame.clone()));
        }
    }

    /// The resume is settled at position `reached`: live delivery resumes,
    /// and the messages held back meanwhile are handed over, in order, for
    /// the caller to deliver those past it. With `replayed_from` (a
    /// replay), the session now has every stream from that seq on and was
    /// given everything up to `reached`, so its high-water mark rises to
    /// it; after a reset (none), `reached` is where the client goes on
    /// from, so the mark is set to it.
    pub fn release(&mut self, replayed_from: Option<u64>, reached: u64) -> Vec<(u64, ByteString)> {
        self.holding = false;
        match replayed_from {
            Some(since) => {
                self.lower_has_from(since);
                self.delivered(reached);
            }
            None => self.delivered = reached,
        }
        std::mem::take(&mut self.held)
    }

    /// The resume could not be read, and the client is told to come back
    /// later: the session gets nothing more, neither what was held back
    /// nor any live message, until it leaves (a message past the position
    /// it resumes from would otherwise reach it without those before).
    pub fn silence(&mut self) {
        self.holding = false;
        self.held.clear();
        self.delivered = u64::MAX;
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

/// What a resume's outcome makes of a join.
#[derive(Debug)]
pub struct Settled {
    /// The answer: the position reached and the replay or reset.
    pub joined: Joined,
    /// On a replay, the seq the session now has every stream from (the
    /// client's `since`); none on a reset.
    pub replayed_from: Option<u64>,
    /// False when the session is to be told to come back later: it gets
    /// nothing more ([`Streams::silence`]).
    pub goes_on: bool,
}

/// Settles a resume from `since` with the broker's answer `result`.
///
/// A replay ends at the snapshot's `upto` (for a replay read at once, this
/// node's position when it was read): the cluster's counter at the instant
/// the replay was read, so the client's next resume starts exactly where
/// this one's messages end. A reset reports the
/// broker's newest position when it gave one (from it a resume has nothing
/// to replay, so a client that follows the reset is not reset again; held-
/// back messages up to it do not follow), else `at_join` in `epoch`; what
/// the broker found after that position (a new epoch's first messages)
/// follows the reset, and the join reaches the end of it. A broker that
/// could not be read answers [`Resume::RetryLater`]: the history may be
/// intact, so the client is not reset.
pub fn settle(
    result: Result<Snapshot, NotReplayed>,
    since: u64,
    at_join: u64,
    epoch: Epoch,
) -> Settled {
    match result {
        Ok(Snapshot { frames, upto }) => {
            let reached = frames.last().map_or(upto, |(seq, _)| upto.max(*seq));
            Settled {
                joined: Joined {
                    epoch,
                    seq: reached.max(since),
                    resume: Some(Resume::Replayed { since, frames }),
                },
                replayed_from: Some(since),
                goes_on: true,
            }
        }
        Err(NotReplayed::Unavailable(why)) => Settled {
            joined: Joined {
                epoch,
                seq: at_join,
                resume: Some(Resume::RetryLater { why }),
            },
            replayed_from: None,
            goes_on: false,
        },
        Err(NotReplayed::Refused(refused)) => {
            let (epoch, at) = refused.newest.unwrap_or((epoch, at_join));
            let (frames, reached) = match refused.following {
                Some(Snapshot { frames, upto }) => {
                    let reached = frames.last().map_or(upto, |(seq, _)| upto.max(*seq));
                    (frames, reached.max(at))
                }
                None => (Vec::new(), at),
            };
            Settled {
                joined: Joined {
                    epoch,
                    seq: reached,
                    resume: Some(Resume::Reset {
                        reason: refused.reason,
                        at,
                        frames,
                    }),
                },
                replayed_from: None,
                goes_on: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::tests::{
        broadcast, channel, connect, counts, direct, frame, handled, probe, replayed, server, EPOCH,
    };
    use super::super::NotifyServer;
    use super::*;
    use crate::broker::{
        Broker, BrokerError, Frames, MemoryBroker, Publication, Publishing, Refused, Replaying,
    };
    use crate::history::HistoryLimits;
    use crate::hub::messages::{
        Connect, Disconnect, DisconnectReason, Register, ToChannel, Transport,
    };
    use crate::idempotency::ScopedKey;
    use crate::ids::SessionId;
    use crate::protocol::{PendingFrame, Position};
    use crate::replay::{HistoryKeeper, ResetReason};
    use actix::prelude::*;

    // ---- through the actor ----

    #[actix::test]
    async fn connecting_with_a_position_replays_what_was_missed() {
        let server = server();
        let first = connect(&server, Some("63"), &["news"], None).await;
        assert_eq!((first.joined.epoch.as_str(), first.joined.seq), (EPOCH, 0));
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
            idempotency: None,
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
                outbox: probe().0,
                id: None,
                channels: vec![],
                resume: Some(Position::new("other".into(), 1).unwrap()),
            })
            .await
            .unwrap();
        assert!(
            matches!(joined.resume, Some(Resume::Reset { ref reason, .. }) if reason.to_string().contains("epoch"))
        );
        let gap = connect(&server, None, &[], Some(0)).await;
        assert!(
            matches!(gap.joined.resume, Some(Resume::Reset { ref reason, .. }) if reason.to_string().contains("dropped"))
        );
        let fine = connect(&server, None, &[], Some(1)).await;
        assert_eq!(replayed(&fine.joined), [2, 3]);
        let ahead = connect(&server, None, &[], Some(99)).await;
        assert!(matches!(ahead.joined.resume, Some(Resume::Reset { .. })));
    }

    /// A broker whose replays are fetched and may be ahead of this node,
    /// as Redis can be ahead of the subscription: it holds seqs 1 and 2,
    /// which have not been fanned out here yet.
    struct AheadBroker;

    impl Broker for AheadBroker {
        fn kind(&self) -> crate::config::BrokerKind {
            crate::config::BrokerKind::Redis
        }

        fn epoch(&self) -> Epoch {
            EPOCH.into()
        }

        fn publish(&self, _: StreamKey, _: &PendingFrame, _: Option<&ScopedKey>) -> Publishing {
            Publishing::Sent(Box::pin(async {
                Err(BrokerError::Unavailable("not in this test".into()))
            }))
        }

        fn replay(&self, _: &[(StreamKey, u64)], _: &Position) -> Replaying {
            let frames = vec![(1, "m1".into()), (2, "m2".into())];
            Replaying::Fetching(Box::pin(async move { Ok(Snapshot { frames, upto: 2 }) }))
        }
    }

    /// A broker that joined its cluster at seq 40 and refuses every resume,
    /// giving the cluster's newest position: another epoch, seq 42.
    /// The refusal the test brokers give.
    fn gone() -> ResetReason {
        ResetReason::EpochChanged {
            keeper: HistoryKeeper::Cluster,
        }
    }

    struct RefusingBroker;

    impl Broker for RefusingBroker {
        fn kind(&self) -> crate::config::BrokerKind {
            crate::config::BrokerKind::Redis
        }

        fn epoch(&self) -> Epoch {
            EPOCH.into()
        }

        fn numbered_before(&self) -> u64 {
            40
        }

        fn publish(&self, _: StreamKey, _: &PendingFrame, _: Option<&ScopedKey>) -> Publishing {
            Publishing::Sent(Box::pin(async {
                Err(BrokerError::Unavailable("not in this test".into()))
            }))
        }

        fn replay(&self, _: &[(StreamKey, u64)], _: &Position) -> Replaying {
            Replaying::Fetching(Box::pin(async {
                Err(Refused::from_newest(gone(), ("e2".into(), 42)).into())
            }))
        }
    }

    #[actix::test]
    async fn positions_start_at_the_cluster_counter_and_a_reset_gives_the_newest() {
        let server = NotifyServer::new(Arc::new(RefusingBroker)).start();
        let fresh = connect(&server, Some("63"), &[], None).await;
        assert_eq!((fresh.joined.epoch.as_str(), fresh.joined.seq), (EPOCH, 40));
        assert_eq!(counts(&server).await.seq, 40);
        let back = connect(&server, Some("63"), &[], Some(3)).await;
        assert!(
            matches!(&back.joined.resume, Some(Resume::Reset { reason, .. }) if *reason == gone()),
            "{:?}",
            back.joined.resume
        );
        assert_eq!((back.joined.epoch.as_str(), back.joined.seq), ("e2", 42));
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

    // ---- Streams and settle, without actix ----

    fn id(text: &str) -> ClientId {
        ClientId::parse(text).unwrap()
    }

    fn frames(seqs: &[u64]) -> Frames {
        seqs.iter()
            .map(|&seq| (seq, format!("m{seq}").into()))
            .collect()
    }

    #[test]
    fn positions_list_every_stream_and_a_replay_lowers_them() {
        let mut streams = Streams::new(10);
        assert_eq!(streams.set_id(id("63"), 12), None);
        assert!(streams.subscribe(channel("news"), 14));
        assert!(!streams.subscribe(channel("news"), 20), "already there");
        let mut positions = streams.positions();
        positions.sort_by_key(|(_, from)| *from);
        assert_eq!(
            positions,
            [
                (StreamKey::Broadcast, 10),
                (StreamKey::Id(id("63")), 12),
                (StreamKey::Channel(channel("news")), 14),
            ]
        );

        assert!(streams.release(Some(11), 0).is_empty());
        let lowered: Vec<u64> = streams.positions().iter().map(|(_, from)| *from).collect();
        assert_eq!(lowered, [10, 11, 11]);
        streams.release(None, 0);
        assert!(streams.unsubscribe(&channel("news")));
        assert_eq!(streams.positions().len(), 2);
    }

    #[test]
    fn only_the_sessions_own_streams_are_received_and_held_back() {
        let mut streams = Streams::new(0);
        streams.set_id(id("63"), 0);
        assert!(streams.due(1));
        streams.hold();
        assert!(!streams.due(1));
        let frame = ByteString::from_static("m");
        streams.hold_back(&StreamKey::Broadcast, 1, &frame);
        streams.hold_back(&StreamKey::Id(id("64")), 2, &frame);
        streams.hold_back(&StreamKey::Channel(channel("news")), 3, &frame);
        streams.hold_back(&StreamKey::Id(id("63")), 4, &frame);
        let held: Vec<u64> = streams.release(None, 0).iter().map(|(s, _)| *s).collect();
        assert_eq!(held, [1, 4]);
        assert!(streams.due(5));
    }

    #[test]
    fn nothing_at_or_below_the_high_water_mark_is_due_again() {
        let mut streams = Streams::new(0);
        assert!(streams.due(3));
        streams.delivered(5);
        streams.delivered(4); // never lowers it
        assert!(!streams.due(3) && !streams.due(5) && streams.due(6));
        streams.hold();
        assert!(!streams.due(6), "held back during a fetch");
        // A replay up to 8: a late live 7 or 8 is not given again.
        streams.release(Some(0), 8);
        assert!(!streams.due(7) && !streams.due(8) && streams.due(9));
        // A reset sets it to where the client goes on from.
        streams.release(None, 2);
        assert!(streams.due(3) && !streams.due(2));
    }

    #[test]
    fn a_fetched_replay_ends_at_its_snapshot() {
        let snapshot = |seqs: &[u64], upto| Snapshot {
            frames: frames(seqs),
            upto,
        };
        let settled = settle(Ok(snapshot(&[4, 6, 8], 10)), 3, 5, EPOCH.into());
        assert_eq!(
            (settled.joined.epoch.as_str(), settled.joined.seq),
            (EPOCH, 10)
        );
        assert_eq!(settled.replayed_from, Some(3));
        assert_eq!(replayed(&settled.joined), [4, 6, 8]);

        let nothing = settle(Ok(snapshot(&[], 7)), 3, 5, EPOCH.into());
        assert_eq!(nothing.joined.seq, 7);
        let behind = settle(Ok(snapshot(&[], 1)), 3, 5, EPOCH.into());
        assert_eq!(
            behind.joined.seq, 3,
            "never behind the client's own position"
        );
    }

    #[test]
    fn a_reset_reports_the_brokers_newest_position_or_the_join() {
        let refused = |newest| Refused {
            reason: gone(),
            newest,
            following: None,
        };
        let newest = settle(
            Err(refused(Some(("e2".into(), 42))).into()),
            3,
            5,
            EPOCH.into(),
        );
        assert_eq!(
            (newest.joined.epoch.as_str(), newest.joined.seq),
            ("e2", 42)
        );
        assert_eq!(newest.replayed_from, None);
        assert!(
            matches!(&newest.joined.resume, Some(Resume::Reset { reason, .. }) if *reason == gone())
        );
        let unknown = settle(Err(refused(None).into()), 3, 5, EPOCH.into());
        assert_eq!(
            (unknown.joined.epoch.as_str(), unknown.joined.seq),
            (EPOCH, 5)
        );
    }

    #[test]
    fn a_new_epochs_messages_follow_the_reset_from_its_base() {
        let refused = Refused {
            reason: gone(),
            newest: Some(("e2".into(), 50)),
            following: Some(Snapshot {
                frames: vec![(51, "m51".into()), (52, "m52".into())],
                upto: 53,
            }),
        };
        let settled = settle(Err(refused.into()), 7, 9, EPOCH.into());
        // The session goes on from the end of what followed the reset.
        assert_eq!(
            (settled.joined.epoch.as_str(), settled.joined.seq),
            ("e2", 53)
        );
        let Some(Resume::Reset { at, frames, .. }) = &settled.joined.resume else {
            panic!("expected a reset");
        };
        assert_eq!(*at, 50);
        let seqs: Vec<u64> = frames.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [51, 52]);
    }

    #[test]
    fn an_unreadable_broker_asks_to_retry_later_and_the_session_then_gets_nothing() {
        let down = NotReplayed::Unavailable("connection refused".into());
        let settled = settle(Err(down), 3, 5, EPOCH.into());
        assert!(
            matches!(&settled.joined.resume, Some(Resume::RetryLater { why }) if why.contains("refused")),
            "{:?}",
            settled.joined.resume
        );
        assert!(!settled.goes_on);
        assert_eq!(settled.replayed_from, None);

        let mut streams = Streams::new(0);
        streams.hold();
        streams.hold_back(&StreamKey::Broadcast, 6, &ByteString::from_static("m6"));
        streams.silence();
        assert!(!streams.due(7), "no live message after the refusal");
        assert!(streams.release(None, 8).is_empty(), "nothing held back");
    }
}
