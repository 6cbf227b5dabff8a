//! `reference-server`: the practical ceiling herald is measured against.
//!
//! A minimal notification server on tokio + hyper 1 + tokio-tungstenite that
//! speaks the subset of herald's protocol the benchmark uses:
//!
//! - `GET /ws?id=<id>&channel=<name>...` opens a WebSocket; the server
//!   answers `{"type":"registered","id":..}` and one
//!   `{"type":"subscribed","channel":..}` per channel. Client frames
//!   `{"type":"register","id":..}` and `{"type":"subscribe","channel":..}` get
//!   the same answers, anything else `{"type":"error","error":"bad frame"}`.
//! - `POST /` with a form `message=..[&id=..|&channel=..]` encodes ONE frame
//!   `{"type":"message","seq":S[,"id":..|,"channel":..],"data":".."}` and
//!   hands a cheap clone of it (a refcounted `Utf8Bytes`) to every target,
//!   answering `{"delivered":N,"seq":S}`.
//! - `GET /health` answers `{"sessions":N}`.
//!
//! Each connection has a bounded queue (`try_send`, never blocking the
//! publisher; a full queue drops the connection as a slow consumer) and one
//! task that writes every queued frame with `feed` and flushes once. The
//! server pings every 5 s and drops a client silent for 15 s.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Frames queued per connection before it counts as a slow consumer.
const QUEUE: usize = 1024;
/// How often the server pings each client.
const PING_EVERY: Duration = Duration::from_secs(5);
/// A client that sent nothing (not even a pong) for this long is dropped.
const SILENT_LIMIT: Duration = Duration::from_secs(15);
/// Largest accepted POST body.
const MAX_BODY: usize = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    about = "Minimal tokio + hyper + tokio-tungstenite notification server (benchmark reference)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8002)]
    port: u16,
    /// Worker threads; without it the server runs on one thread
    /// (tokio's current_thread runtime).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let runtime = match args.threads {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reference-server: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(args)) {
        eprintln!("reference-server: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    eprintln!("reference-server listening on http://{addr}");
    // One state for the life of the process: a leaked `&'static` is free to
    // copy into every connection and request.
    let state: &'static State = Box::leak(Box::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("reference-server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(http_connection(state, stream));
    }
}

async fn http_connection(state: &'static State, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(state, req));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

type Body = Full<Bytes>;

async fn handle(
    state: &'static State,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => upgrade(state, req),
        (&Method::POST, "/") => publish(state, req).await,
        (&Method::GET, "/health") => {
            let sessions = state.registry().conns.len();
            json(StatusCode::OK, format!("{{\"sessions\":{sessions}}}"))
        }
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    };
    Ok(response)
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

// ---------------------------------------------------------------------------
// Publishing

async fn publish(state: &'static State, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return json(StatusCode::BAD_REQUEST, r#"{"error":"cannot read body"}"#),
    };
    let mut message = None;
    let mut id = None;
    let mut channel = None;
    for (name, value) in form_pairs(&body) {
        let (Some(name), Some(value)) = (name, value) else {
            return json(StatusCode::BAD_REQUEST, r#"{"error":"bad form"}"#);
        };
        match name.as_str() {
            "message" => message = Some(value),
            "id" => id = Some(value),
            "channel" => channel = Some(value),
            _ => {}
        }
    }
    let Some(message) = message else {
        return json(StatusCode::BAD_REQUEST, r#"{"error":"missing message"}"#);
    };
    let target = match (id, channel) {
        (None, None) => Target::Everyone,
        (Some(id), None) => Target::Id(id),
        (None, Some(channel)) => Target::Channel(channel),
        (Some(_), Some(_)) => {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"give at most one of id and channel"}"#,
            )
        }
    };

    // Everything after `"seq":S` is encoded outside the lock; only the
    // prefix with the sequence number is added under it, so that frames
    // reach every connection in `seq` order even with several threads.
    let mut tail = String::with_capacity(message.len() + 32);
    match &target {
        Target::Everyone => {}
        Target::Id(id) => {
            tail.push_str(",\"id\":");
            push_json_str(&mut tail, id);
        }
        Target::Channel(channel) => {
            tail.push_str(",\"channel\":");
            push_json_str(&mut tail, channel);
        }
    }
    tail.push_str(",\"data\":");
    push_json_str(&mut tail, &message);
    tail.push('}');

    let (delivered, seq) = state.registry().publish(&target, &tail);
    json(
        StatusCode::OK,
        format!("{{\"delivered\":{delivered},\"seq\":{seq}}}"),
    )
}

enum Target {
    Everyone,
    Id(String),
    Channel(String),
}

// ---------------------------------------------------------------------------
// Routing state

#[derive(Default)]
struct State {
    registry: Mutex<Registry>,
}

impl State {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters here; carry on with them.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Connection keys are sequential `u64`s; a multiplicative hash spreads them
/// over all bits (hashbrown uses the top bits too) at a fraction of SipHash's
/// cost.
#[derive(Default)]
struct ConnKeyHasher(u64);

impl Hasher for ConnKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ConnKeys = BuildHasherDefault<ConnKeyHasher>;
type ConnSet = HashSet<u64, ConnKeys>;

struct Conn {
    tx: mpsc::Sender<Utf8Bytes>,
    /// Dropped with the entry: tells the connection task to stop at once,
    /// even in the middle of a write to a stuck client.
    _kill: oneshot::Sender<()>,
    id: Option<Box<str>>,
    channels: Vec<Box<str>>,
}

#[derive(Default)]
struct Registry {
    next_key: u64,
    seq: u64,
    conns: HashMap<u64, Conn, ConnKeys>,
    ids: HashMap<Box<str>, ConnSet>,
    channels: HashMap<Box<str>, ConnSet>,
}

impl Registry {
    fn insert(&mut self, tx: mpsc::Sender<Utf8Bytes>, kill: oneshot::Sender<()>) -> u64 {
        self.next_key += 1;
        let key = self.next_key;
        let conn = Conn {
            tx,
            _kill: kill,
            id: None,
            channels: Vec::new(),
        };
        self.conns.insert(key, conn);
        key
    }

    fn remove(&mut self, key: u64) {
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        if let Some(id) = conn.id {
            unindex(&mut self.ids, &id, key);
        }
        for channel in conn.channels {
            unindex(&mut self.channels, &channel, key);
        }
    }

    /// Registers `key` as `id`, leaving its previous id. False if the
    /// connection is gone.
    fn register(&mut self, key: u64, id: &str) -> bool {
        let Some(conn) = self.conns.get_mut(&key) else {
            return false;
        };
        if conn.id.as_deref() == Some(id) {
            return true;
        }
        let old = conn.id.replace(id.into());
        if let Some(old) = old {
            unindex(&mut self.ids, &old, key);
        }
        self.ids.entry(id.into()).or_default().insert(key);
        true
    }

    /// Subscribes `key` to `channel`. False if the connection is gone.
    fn subscribe(&mut self, key: u64, channel: &str) -> bool {
        let Some(conn) = self.conns.get_mut(&key) else {
            return false;
        };
        if !conn.channels.iter().any(|c| &**c == channel) {
            conn.channels.push(channel.into());
            self.channels.entry(channel.into()).or_default().insert(key);
        }
        true
    }

    /// Numbers the message, builds its one frame from `tail` (everything
    /// after the seq) and hands it to every target. Returns
    /// `(delivered, seq)`.
    fn publish(&mut self, target: &Target, tail: &str) -> (usize, u64) {
        self.seq += 1;
        let seq = self.seq;
        let mut frame = String::with_capacity(tail.len() + 40);
        frame.push_str("{\"type\":\"message\",\"seq\":");
        frame.push_str(&seq.to_string());
        frame.push_str(tail);
        let frame = Utf8Bytes::from(frame);

        let mut delivered = 0;
        let mut slow = Vec::new();
        let mut offer = |key: u64, conn: &Conn| match conn.tx.try_send(frame.clone()) {
            Ok(()) => delivered += 1,
            Err(mpsc::error::TrySendError::Full(_)) => slow.push(key),
            // The task is ending and removes itself.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        };
        match target {
            Target::Everyone => {
                for (&key, conn) in &self.conns {
                    offer(key, conn);
                }
            }
            Target::Id(id) => {
                if let Some(keys) = self.ids.get(id.as_str()) {
                    for key in keys {
                        if let Some(conn) = self.conns.get(key) {
                            offer(*key, conn);
                        }
                    }
                }
            }
            Target::Channel(channel) => {
                if let Some(keys) = self.channels.get(channel.as_str()) {
                    for key in keys {
                        if let Some(conn) = self.conns.get(key) {
                            offer(*key, conn);
                        }
                    }
                }
            }
        }
        // Slow consumers: dropping the entry drops the queue's sender and
        // the kill switch, which ends the connection's task.
        for key in slow {
            self.remove(key);
        }
        (delivered, seq)
    }
}

fn unindex(index: &mut HashMap<Box<str>, ConnSet>, name: &str, key: u64) {
    if let Some(keys) = index.get_mut(name) {
        keys.remove(&key);
        if keys.is_empty() {
            index.remove(name);
        }
    }
}

// ---------------------------------------------------------------------------
// WebSocket connections

fn upgrade(state: &'static State, mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let is_websocket = has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, Some(key)) = (is_websocket, key) else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"expected a websocket upgrade"}"#,
        );
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return json(StatusCode::BAD_REQUEST, r#"{"error":"bad websocket key"}"#);
    };

    let mut id = None;
    let mut channels: Vec<String> = Vec::new();
    for (name, value) in form_pairs(req.uri().query().unwrap_or("").as_bytes()) {
        let (Some(name), Some(value)) = (name, value) else {
            return json(StatusCode::BAD_REQUEST, r#"{"error":"bad query"}"#);
        };
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "id" => id = Some(value),
            "channel" if !channels.contains(&value) => channels.push(value),
            _ => {}
        }
    }

    // Registered before the 101 goes out: whatever is published once the
    // client sees the upgrade reaches it.
    let (tx, rx) = mpsc::channel(QUEUE);
    let (kill_tx, kill_rx) = oneshot::channel();
    let mut hello = Vec::with_capacity(channels.len() + 1);
    let key = {
        let mut registry = state.registry();
        let key = registry.insert(tx, kill_tx);
        if let Some(id) = &id {
            registry.register(key, id);
            hello.push(registered(id));
        }
        for channel in &channels {
            registry.subscribe(key, channel);
            hello.push(subscribed(channel));
        }
        key
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(websocket(state, key, on_upgrade, rx, kill_rx, hello));

    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

fn websocket_config() -> WebSocketConfig {
    // tungstenite's default 128 KiB read buffer is allocated and zeroed per
    // connection; clients only send tiny frames, so keep it small.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

async fn websocket(
    state: &'static State,
    key: u64,
    on_upgrade: OnUpgrade,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    mut kill: oneshot::Receiver<()>,
    hello: Vec<Utf8Bytes>,
) {
    if let Ok(upgraded) = on_upgrade.await {
        let io = TokioIo::new(upgraded);
        let mut ws =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(websocket_config())).await;
        session(state, key, &mut ws, &mut rx, &mut kill, hello).await;
    }
    state.registry().remove(key);
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Runs one connection until it closes, errs, goes silent, or is dropped.
async fn session(
    state: &'static State,
    key: u64,
    ws: &mut Ws,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    kill: &mut oneshot::Receiver<()>,
    hello: Vec<Utf8Bytes>,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();

    if !hello.is_empty() {
        let greet = async {
            for frame in hello {
                ws.feed(Message::Text(frame)).await?;
            }
            ws.flush().await
        };
        if !guarded(greet, kill, &mut ping, last_seen).await {
            return;
        }
    }

    loop {
        tokio::select! {
            biased;
            _ = &mut *kill => return,
            frame = rx.recv() => {
                let Some(frame) = frame else { return };
                if !guarded(write_batch(ws, frame, rx), kill, &mut ping, last_seen).await {
                    return;
                }
            }
            incoming = ws.next() => {
                let reply = match incoming {
                    Some(Ok(message)) => {
                        last_seen = Instant::now();
                        match message {
                            Message::Text(text) => client_frame(state, key, text.as_str()),
                            Message::Binary(_) => Some(bad_frame()),
                            // Pings are answered by tungstenite on the next
                            // read or write; pongs only prove liveness; a
                            // close is answered and then ends the stream.
                            Message::Ping(_)
                            | Message::Pong(_)
                            | Message::Close(_)
                            | Message::Frame(_) => continue,
                        }
                    }
                    Some(Err(_)) | None => return,
                };
                let Some(reply) = reply else { return };
                if !guarded(ws.send(Message::Text(reply)), kill, &mut ping, last_seen).await {
                    return;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= SILENT_LIMIT {
                    return;
                }
                let sent = ws.send(Message::Ping(Bytes::new()));
                if !guarded(sent, kill, &mut ping, last_seen).await {
                    return;
                }
            }
        }
    }
}

/// Writes `first` and everything else already queued, then flushes once: a
/// burst of small frames costs one write.
async fn write_batch(
    ws: &mut Ws,
    first: Utf8Bytes,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
) -> Result<(), WsError> {
    ws.feed(Message::Text(first)).await?;
    for _ in 1..QUEUE {
        match rx.try_recv() {
            Ok(frame) => ws.feed(Message::Text(frame)).await?,
            Err(_) => break,
        }
    }
    ws.flush().await
}

/// Drives a write to completion unless the connection is dropped meanwhile
/// (slow consumer) or a client that doesn't read stays silent past the
/// limit. True if the write succeeded.
async fn guarded(
    write: impl Future<Output = Result<(), WsError>>,
    kill: &mut oneshot::Receiver<()>,
    ping: &mut Interval,
    last_seen: Instant,
) -> bool {
    let mut write = pin!(write);
    loop {
        tokio::select! {
            biased;
            done = &mut write => return done.is_ok(),
            _ = &mut *kill => return false,
            _ = ping.tick() => {
                if last_seen.elapsed() >= SILENT_LIMIT {
                    return false;
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Register { id: String },
    Subscribe { channel: String },
}

/// Handles a client's text frame; the reply to send, or None when the
/// connection is gone from the registry.
fn client_frame(state: &State, key: u64, text: &str) -> Option<Utf8Bytes> {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Register { id }) if !id.is_empty() => {
            state.registry().register(key, &id).then(|| registered(&id))
        }
        Ok(ClientFrame::Subscribe { channel }) if !channel.is_empty() => state
            .registry()
            .subscribe(key, &channel)
            .then(|| subscribed(&channel)),
        _ => Some(bad_frame()),
    }
}

fn registered(id: &str) -> Utf8Bytes {
    let mut frame = String::with_capacity(id.len() + 32);
    frame.push_str("{\"type\":\"registered\",\"id\":");
    push_json_str(&mut frame, id);
    frame.push('}');
    frame.into()
}

fn subscribed(channel: &str) -> Utf8Bytes {
    let mut frame = String::with_capacity(channel.len() + 40);
    frame.push_str("{\"type\":\"subscribed\",\"channel\":");
    push_json_str(&mut frame, channel);
    frame.push('}');
    frame.into()
}

fn bad_frame() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"type":"error","error":"bad frame"}"#)
}

// ---------------------------------------------------------------------------
// Encoding helpers

/// Appends `text` as a JSON string literal, quotes included.
fn push_json_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Splits an `application/x-www-form-urlencoded` string into decoded
/// (name, value) pairs; a part that does not decode to UTF-8 is None.
fn form_pairs(input: &[u8]) -> impl Iterator<Item = (Option<String>, Option<String>)> + '_ {
    input
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.iter().position(|&b| b == b'=') {
            Some(at) => (decode(&part[..at]), decode(&part[at + 1..])),
            None => (decode(part), Some(String::new())),
        })
}

/// Percent-decodes one form component, `+` as space. A `%` not followed by
/// two hex digits is kept as is.
fn decode(raw: &[u8]) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = raw
                    .get(i + 1)
                    .and_then(|&h| hex(h))
                    .zip(raw.get(i + 2).and_then(|&l| hex(l)));
                if let Some((high, low)) = pair {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
