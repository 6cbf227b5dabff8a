//! What `NotifyServer` tells about itself: the session log lines, the
//! counts for `/health`, the operator's view for `/stats`, and this node's
//! presence report to the cluster. Read-only over the [`Registry`].

use std::collections::BTreeMap;

use super::registry::Registry;
use crate::broker::Presence;
use crate::client_addr::{proxy_label, ClientAddr, ClientLabel, PeerLabel};
use crate::history::HistoryUsage;
use crate::hub::messages::{ChannelCount, Counts, DisconnectReason, Stats, Transport};
use crate::ids::{ClientId, SessionId};

/// The `target` of the session log lines (`event` = connected, registered,
/// disconnected): a fixed name that log collectors and `RUST_LOG` filters
/// can rely on, whichever file writes the line.
pub const LOG_TARGET: &str = "herald::hub::server";

/// Logs a session's arrival.
pub fn log_connected(session: SessionId, transport: Transport, peer: Option<ClientAddr>) {
    let (client_peer, proxy) = (ClientLabel(peer), proxy_label(peer));
    let peer = PeerLabel(peer);
    log::log!(target: LOG_TARGET,
        session_log_level(transport),
        event = "connected",
        session:% = session,
        transport:% = transport,
        peer:% = client_peer,
        proxy = proxy;
        "session {session} connected: transport={transport} peer={peer}"
    );
}

/// Logs a session registering as `id`.
pub fn log_registered(
    session: SessionId,
    transport: Transport,
    peer: Option<ClientAddr>,
    id: &ClientId,
) {
    let (client_peer, proxy) = (ClientLabel(peer), proxy_label(peer));
    let peer = PeerLabel(peer);
    log::log!(target: LOG_TARGET,
        session_log_level(transport),
        event = "registered",
        session:% = session,
        transport:% = transport,
        peer:% = client_peer,
        proxy = proxy,
        id = id.as_str();
        "session {session} registered: transport={transport} peer={peer} id={id:?}"
    );
}

/// Logs a session's departure, once, with why and the close code.
pub fn log_disconnected(
    session: SessionId,
    transport: Transport,
    peer: Option<ClientAddr>,
    id: Option<&ClientId>,
    reason: &DisconnectReason,
    close_code: Option<u16>,
) {
    let (client_peer, proxy) = (ClientLabel(peer), proxy_label(peer));
    let peer = PeerLabel(peer);
    let client = id.map(ClientId::as_str);
    let id = id_label(id);
    log::log!(target: LOG_TARGET,
        session_log_level(transport),
        event = "disconnected",
        session:% = session,
        transport:% = transport,
        peer:% = client_peer,
        proxy = proxy,
        id = client,
        reason = reason.close_text(),
        detail:% = reason,
        close_code = close_code;
        "session {session} disconnected: transport={transport} peer={peer} id={id} reason={reason}"
    );
}

/// The counts for `/health`, at position `seq`.
pub fn counts<O>(registry: &Registry<O>, seq: u64, usage: HistoryUsage) -> Counts {
    Counts {
        sessions: registry.session_count(),
        ids: registry.id_count(),
        channels: registry.channel_count(),
        seq,
        history_messages: usage.messages,
        history_bytes: usage.bytes,
    }
}

/// The operator's view for `/stats`, listing the `top` largest channels
/// (ties by name).
pub fn stats<O>(registry: &Registry<O>, top: usize, seq: u64, usage: HistoryUsage) -> Stats {
    let mut by_transport = BTreeMap::new();
    for transport in registry.transports() {
        *by_transport.entry(transport.to_string()).or_insert(0) += 1;
    }
    let mut top_channels: Vec<ChannelCount> = registry
        .channel_sizes()
        .map(|(channel, subscribers)| ChannelCount {
            channel: channel.clone(),
            subscribers,
        })
        .collect();
    top_channels.sort_unstable_by(|a, b| {
        b.subscribers
            .cmp(&a.subscribers)
            .then_with(|| a.channel.cmp(&b.channel))
    });
    top_channels.truncate(top);
    Stats {
        sessions: registry.session_count(),
        sessions_by_transport: by_transport,
        ids: registry.id_count(),
        channels: registry.channel_count(),
        top_channels,
        seq,
        history_messages: usage.messages,
        history_bytes: usage.bytes,
        history_streams: usage.streams,
    }
}

/// This node's presence for the cluster: its session count, and its ids
/// unless they are unchanged since generation `known`.
pub fn presence<O>(registry: &Registry<O>, known: Option<u64>) -> Presence {
    let generation = registry.ids_generation();
    Presence {
        sessions: registry.session_count(),
        generation,
        ids: (known != Some(generation)).then(|| registry.ids().cloned().collect()),
    }
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

#[cfg(test)]
mod tests {
    use super::super::registry::tests::{channel, id, join, registry, Queue};
    use super::*;

    #[test]
    fn stats_list_the_largest_channels_first_ties_by_name() {
        let mut registry = registry();
        let sessions: Vec<_> = (0..3)
            .map(|_| join(&mut registry, &Queue::default()))
            .collect();
        for (session, names) in sessions.iter().zip([&["b", "c"][..], &["b", "a"], &["c"]]) {
            for name in names {
                registry.subscribe(*session, channel(name), 0);
            }
        }
        registry.register(sessions[0], id("63"), 0);

        let usage = HistoryUsage {
            messages: 1,
            bytes: 2,
            streams: 3,
        };
        let stats = stats(&registry, 2, 7, usage);
        let top: Vec<(&str, usize)> = stats
            .top_channels
            .iter()
            .map(|c| (c.channel.as_str(), c.subscribers))
            .collect();
        assert_eq!(top, [("b", 2), ("c", 2)]);
        assert_eq!((stats.sessions, stats.ids, stats.channels), (3, 1, 3));
        assert_eq!(stats.sessions_by_transport.get("ws"), Some(&3));
        assert_eq!(
            (stats.seq, stats.history_messages, stats.history_streams),
            (7, 1, 3)
        );
        let counts = counts(&registry, 7, usage);
        assert_eq!((counts.sessions, counts.history_bytes), (3, 2));
    }

    #[test]
    fn presence_resends_the_ids_only_when_they_changed() {
        let mut registry = registry();
        let session = join(&mut registry, &Queue::default());
        registry.register(session, id("63"), 0);
        let first = presence(&registry, None);
        assert_eq!(first.ids, Some(vec![id("63")]));
        let same = presence(&registry, Some(first.generation));
        assert_eq!((same.sessions, same.ids), (1, None));
    }

    #[test]
    fn long_polls_log_at_debug_and_labels_name_what_is_missing() {
        assert_eq!(session_log_level(Transport::LongPoll), log::Level::Debug);
        assert_eq!(session_log_level(Transport::WebSocket), log::Level::Info);
        assert_eq!(PeerLabel(None).to_string(), "unknown");
        assert_eq!(ClientLabel(None).to_string(), "unknown");
        assert_eq!(proxy_label(None), None);
        assert_eq!(id_label(None), "-");
        assert_eq!(id_label(Some(&id("63"))), "\"63\"");
    }
}
