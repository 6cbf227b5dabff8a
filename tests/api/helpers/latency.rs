//! An in-process TCP proxy on loopback between a herald node and Redis,
//! adding a one-way delay per direction, or stalling, to test what herald
//! does when Redis is not on the same host.
//!
//! Each connection gets its own pair of tasks, one per direction: a reader
//! stamps every chunk with the time it is due and queues it; a writer
//! sends the chunks in queue order once due. So a delay keeps the order of
//! the bytes and never holds up another connection. A connection that
//! sends `SUBSCRIBE` is the node's pub/sub link; its delay can be set on
//! its own ([`Link::PubSub`]), as when pub/sub lags the commands, and its
//! reading from Redis held ([`LatencyProxy::hold_pubsub`]), as a node too
//! slow to read its subscription. The proxy also names every command sent
//! on the other connections ([`LatencyProxy::commands`]): each is one
//! round trip to Redis.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Which of a node's connections to Redis a delay applies to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Link {
    /// The command connections (publish, replay, presence).
    Commands,
    /// The connection that has sent `SUBSCRIBE`.
    PubSub,
}

/// A one-way delay for each direction.
#[derive(Clone, Copy, Default, Debug)]
pub struct Delay {
    pub to_redis: Duration,
    pub from_redis: Duration,
}

impl Delay {
    /// The same delay both ways.
    pub fn both(one_way: Duration) -> Self {
        Self {
            to_redis: one_way,
            from_redis: one_way,
        }
    }
}

struct Shared {
    commands: Mutex<Delay>,
    pubsub: Mutex<Delay>,
    stalled: watch::Sender<bool>,
    /// While set, nothing more is read from Redis on the pub/sub link.
    pubsub_held: watch::Sender<bool>,
    /// While set, new connections are closed as soon as accepted.
    refusing: AtomicBool,
    /// The tasks forwarding the open connections, to cut them.
    relays: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The name of every command sent to Redis on a command connection.
    sent: Mutex<Vec<String>>,
    /// Whether a connection has sent `SUBSCRIBE` (and so lags as
    /// [`Link::PubSub`]).
    pubsub_seen: AtomicBool,
}

impl Shared {
    fn delay(&self, link: Link) -> Delay {
        let delay = match link {
            Link::Commands => &self.commands,
            Link::PubSub => &self.pubsub,
        };
        *delay.lock().expect("delay lock")
    }
}

/// The proxy; it stops accepting when dropped (open connections end when
/// either side closes).
pub struct LatencyProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_with(target, None).await
    }

    /// A proxy as [`LatencyProxy::start`] whose sockets to Redis ask the
    /// kernel for a receive buffer of `recv_buffer_bytes` (when given):
    /// small, so that what the proxy does not read stays in Redis.
    pub async fn start_with(target: SocketAddr, recv_buffer_bytes: Option<u32>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            commands: Mutex::new(Delay::default()),
            pubsub: Mutex::new(Delay::default()),
            stalled: watch::channel(false).0,
            pubsub_held: watch::channel(false).0,
            refusing: AtomicBool::new(false),
            relays: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            pubsub_seen: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accepting.refusing.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees it close
                }
                let Ok(server) = connect(target, recv_buffer_bytes).await else {
                    continue; // the client sees its connection end
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                relay(client, server, accepting.clone());
            }
        });
        Self {
            port,
            shared,
            accept,
        }
    }

    /// `redis://` through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The same one-way delay on every connection, both ways.
    pub fn set_delay(&self, one_way: Duration) {
        self.set_link_delay(Link::Commands, Delay::both(one_way));
        self.set_link_delay(Link::PubSub, Delay::both(one_way));
    }

    /// The delay of `link`'s connections, for chunks read from now on.
    pub fn set_link_delay(&self, link: Link, delay: Delay) {
        let slot = match link {
            Link::Commands => &self.shared.commands,
            Link::PubSub => &self.shared.pubsub,
        };
        *slot.lock().expect("delay lock") = delay;
    }

    /// The names of the commands sent to Redis so far on the command
    /// connections (upper case), in the order sent.
    pub fn commands(&self) -> Vec<String> {
        self.shared.sent.lock().expect("commands lock").clone()
    }

    /// Whether a connection through the proxy has sent `SUBSCRIBE`: the
    /// node's pub/sub link, to which a [`Link::PubSub`] delay applies.
    pub fn pubsub_seen(&self) -> bool {
        self.shared.pubsub_seen.load(Ordering::SeqCst)
    }

    /// Closes every open connection through the proxy at once, both
    /// sides, whatever is still queued: a connection that breaks.
    pub fn cut(&self) {
        for relay in self.shared.relays.lock().expect("relays lock").drain(..) {
            relay.abort();
        }
    }

    /// Closes (or, with false, forwards again) every new connection: a
    /// Redis the node cannot reach again once a connection of it broke.
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Stops (or, with false, resumes) reading from Redis on the pub/sub
    /// link, so that what Redis sends it piles up in Redis's output buffer
    /// for that client once the sockets' buffers are full.
    pub fn hold_pubsub(&self, held: bool) {
        self.shared.pubsub_held.send_replace(held);
    }

    /// Stops (or, with false, resumes) forwarding in both directions; the
    /// connections stay open and what was read is kept, in order.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A connection to `target`, with the receive buffer asked for.
async fn connect(target: SocketAddr, recv_buffer_bytes: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(bytes) = recv_buffer_bytes {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.connect(target).await
}

/// Forwards both directions of one connection, each through a timed queue.
fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (link_tx, link_rx) = watch::channel(Link::Commands);
    let link_tx = Arc::new(link_tx);
    pipe(
        client_read,
        server_write,
        shared.clone(),
        link_rx.clone(),
        Some(link_tx),
        true,
    );
    pipe(server_read, client_write, shared, link_rx, None, false);
}

/// One direction: a reader task queues chunks stamped with their due time,
/// a writer task sends them in order once due and not stalled. The reader
/// of the client's side marks the connection as pub/sub on `SUBSCRIBE`;
/// the reader of Redis's side of the pub/sub link waits while it is held.
fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    link: watch::Receiver<Link>,
    classify: Option<Arc<watch::Sender<Link>>>,
    to_redis: bool,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut stalled = shared.stalled.subscribe();
    let mut held = shared.pubsub_held.subscribe();
    let relays = shared.clone();
    let reader = tokio::spawn(async move {
        let mut chunk = vec![0u8; 16 * 1024];
        let mut requests = Vec::new();
        loop {
            if !to_redis
                && *link.borrow() == Link::PubSub
                && held.wait_for(|held| !held).await.is_err()
            {
                return;
            }
            let n = match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return, // the writer ends with the queue
                Ok(n) => n,
            };
            let bytes = chunk[..n].to_vec();
            if let Some(classify) = &classify {
                requests.extend_from_slice(&bytes);
                let names = take_commands(&mut requests);
                // Parsed whole, so a SUBSCRIBE split across reads is seen.
                if names.iter().any(|n| n == "SUBSCRIBE" || n == "PSUBSCRIBE") {
                    classify.send_replace(Link::PubSub);
                    shared.pubsub_seen.store(true, Ordering::SeqCst);
                }
                if *link.borrow() == Link::Commands {
                    shared.sent.lock().expect("commands lock").extend(names);
                }
            }
            let delay = shared.delay(*link.borrow());
            let wait = if to_redis {
                delay.to_redis
            } else {
                delay.from_redis
            };
            if queue.send((Instant::now() + wait, bytes)).is_err() {
                return;
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if stalled.wait_for(|stalled| !stalled).await.is_err() {
                return;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    relays
        .relays
        .lock()
        .expect("relays lock")
        .extend([reader.abort_handle(), writer.abort_handle()]);
}

/// Removes the complete requests at the front of `buf` (RESP arrays of bulk
/// strings, as clients send them) and returns their command names.
fn take_commands(buf: &mut Vec<u8>) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while let Some((name, end)) = request(&buf[at..]) {
        names.push(name);
        at += end;
    }
    buf.drain(..at);
    names
}

/// The command name and length of the complete request at the start of
/// `buf`, if it is all there.
fn request(buf: &[u8]) -> Option<(String, usize)> {
    let (count, mut at) = number_line(buf, b'*')?;
    let mut name = String::new();
    for i in 0..count {
        let (len, start) = number_line(&buf[at..], b'$')?;
        let start = at + start;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if buf.len() < end + 2 {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(&buf[start..end]).to_uppercase();
        }
        at = end + 2;
    }
    Some((name, at))
}

/// `<kind><number>\r\n` at the start of `buf`: the number and the length.
fn number_line(buf: &[u8], kind: u8) -> Option<(u64, usize)> {
    if buf.first() != Some(&kind) {
        return None;
    }
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let number = std::str::from_utf8(&buf[1..end]).ok()?.parse().ok()?;
    Some((number, end + 2))
}
