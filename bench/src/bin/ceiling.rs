//! `ceiling-server`: the ceiling herald's benchmark measures against.
//!
//! It stands for the cost of the same work with nothing else: a deliberately
//! minimal notification server on tokio + hyper 1 + tokio-tungstenite that
//! speaks the subset of herald's protocol the benchmark uses, with no
//! history, channels, limits, heartbeats, metrics or auth. A published frame
//! is encoded once and handed to each connection as a reference-counted
//! buffer, and each connection drains everything queued before one flush.
//! `bench/run.sh` divides herald's (and Socket.IO's) figures by its figures.
//!
//! It is the `ceiling` crate (a standalone ~300-line server written as the
//! practical ceiling for these benchmarks) brought in unchanged in
//! behaviour, plus `GET /health`, which that crate's contract lists and
//! `bench/run.sh` polls before each run.
//!
//! - `GET /ws?id=ID` upgrades to a WebSocket and registers the connection
//!   under ID (silently); a frame `{"type":"register","id":"ID"}` registers
//!   it and is answered `{"type":"registered","id":"ID"}`.
//! - `POST /` with a form `message=...` (every client) or
//!   `message=...&id=ID` (that id's clients) answers `{"delivered":N}`; the
//!   clients get `{"type":"message","data":...}`.
//! - `GET /health` answers `{"sessions":N}`.
//!
//! Design (the cheapest sensible one):
//! - hyper 1 HTTP/1.1 server; `GET /ws` is upgraded by hand and handed to
//!   tokio-tungstenite.
//! - one task per WebSocket connection; it owns an unbounded mpsc receiver of
//!   `Utf8Bytes` (a ref-counted `Bytes`), so a published message is serialized
//!   once and each recipient only gets a reference-count increment.
//! - one `Mutex<Registry>` holds every connection's sender (for broadcast) and an
//!   id -> senders map (for direct delivery).
//! - the connection task drains everything queued before flushing, so a burst of
//!   notifications costs one write syscall.
//!
//! Port from the `PORT` environment variable (default 8080); runtime threads
//! from `CEILING_WORKERS` (default: the CPUs it may use, so one when pinned
//! to one core).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

type Tx = UnboundedSender<Utf8Bytes>;

#[derive(Default)]
struct Registry {
    all: HashMap<u64, Tx>,
    by_id: HashMap<String, Vec<(u64, Tx)>>,
}

impl Registry {
    /// Registers `conn` under `id`; idempotent per (connection, id).
    fn register(&mut self, conn: u64, tx: &Tx, id: &str) -> bool {
        let v = self.by_id.entry(id.to_owned()).or_default();
        if v.iter().any(|(c, _)| *c == conn) {
            return false;
        }
        v.push((conn, tx.clone()));
        true
    }

    fn remove(&mut self, conn: u64, ids: &[String]) {
        self.all.remove(&conn);
        for id in ids {
            if let Some(v) = self.by_id.get_mut(id) {
                v.retain(|(c, _)| *c != conn);
                if v.is_empty() {
                    self.by_id.remove(id);
                }
            }
        }
    }
}

struct State {
    reg: Mutex<Registry>,
    next_conn: AtomicU64,
}

#[derive(Serialize)]
struct OutMsg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: &'a str,
}

#[derive(Serialize)]
struct Registered<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

#[derive(Deserialize)]
struct InMsg {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
}

fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn ws_config() -> WebSocketConfig {
    // Small read buffer: clients send almost nothing, and 128 KiB per connection
    // (the default) would dominate memory at 10k connections.
    WebSocketConfig::default().read_buffer_size(4096)
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/ws" {
        return Ok(upgrade(state, req));
    }
    if path == "/" && req.method() == Method::POST {
        return Ok(publish(state, req).await);
    }
    if path == "/health" && req.method() == Method::GET {
        let sessions = state.reg.lock().unwrap().all.len();
        let mut r = text_response(StatusCode::OK, format!("{{\"sessions\":{sessions}}}"));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(r);
    }
    if path == "/" && req.method() == Method::GET {
        return Ok(text_response(StatusCode::OK, "limit-rs ok\n"));
    }
    Ok(text_response(StatusCode::NOT_FOUND, "not found\n"))
}

fn query_id(req: &Request<Incoming>) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

fn upgrade(state: Arc<State>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let is_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("websocket"))
        .unwrap_or(false);
    let key = match req.headers().get(SEC_WEBSOCKET_KEY) {
        Some(k) if is_upgrade => k.clone(),
        _ => return text_response(StatusCode::BAD_REQUEST, "expected websocket upgrade\n"),
    };
    let accept = derive_accept_key(key.as_bytes());

    // Register before answering 101, so that a notification published right after
    // the handshake completes cannot miss this connection.
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = unbounded_channel::<Utf8Bytes>();
    let mut ids = Vec::new();
    {
        let mut reg = state.reg.lock().unwrap();
        reg.all.insert(conn, tx.clone());
        if let Some(id) = query_id(&req) {
            reg.register(conn, &tx, &id);
            ids.push(id);
        }
    }

    let on_upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config()),
                )
                .await;
                connection(st.clone(), conn, tx, rx, ws, &mut ids).await;
            }
            Err(e) => eprintln!("upgrade error: {e}"),
        }
        st.reg.lock().unwrap().remove(conn, &ids);
    });

    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).unwrap(),
    );
    r
}

async fn connection<S>(
    state: Arc<State>,
    conn: u64,
    tx: Tx,
    mut rx: UnboundedReceiver<Utf8Bytes>,
    mut ws: WebSocketStream<S>,
    ids: &mut Vec<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(first) = out else { break };
                if ws.feed(Message::Text(first)).await.is_err() { break; }
                // Drain whatever else is queued, then one flush.
                let mut n = 1;
                while n < 1024 {
                    match rx.try_recv() {
                        Ok(m) => { if ws.feed(Message::Text(m)).await.is_err() { return; } n += 1; }
                        Err(_) => break,
                    }
                }
                if ws.flush().await.is_err() { break; }
            }
            inc = ws.next() => {
                let msg = match inc { Some(Ok(m)) => m, _ => break };
                match msg {
                    Message::Text(t) => {
                        if let Ok(m) = serde_json::from_str::<InMsg>(t.as_str()) {
                            if m.kind == "register" {
                                if let Some(id) = m.id.filter(|s| !s.is_empty()) {
                                    let added = state.reg.lock().unwrap().register(conn, &tx, &id);
                                    let reply = serde_json::to_string(&Registered { kind: "registered", id: &id }).unwrap();
                                    if added { ids.push(id); }
                                    if ws.send(Message::Text(reply.into())).await.is_err() { break; }
                                }
                            }
                        }
                    }
                    Message::Close(_) => break,
                    // Pings are answered by tungstenite itself (queued, flushed here).
                    Message::Ping(_) if ws.flush().await.is_err() => break,
                    _ => {}
                }
            }
        }
    }
}

async fn publish(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text_response(StatusCode::BAD_REQUEST, "{\"error\":\"bad body\"}"),
    };
    let mut message: Option<String> = None;
    let mut id: Option<String> = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "message" => message = Some(v.into_owned()),
            "id" => id = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(message) = message else {
        return text_response(StatusCode::BAD_REQUEST, "{\"error\":\"missing message\"}");
    };
    // Serialize once; every recipient shares the same buffer.
    let frame: Utf8Bytes = serde_json::to_string(&OutMsg {
        kind: "message",
        data: &message,
    })
    .unwrap()
    .into();
    let mut delivered = 0usize;
    {
        let reg = state.reg.lock().unwrap();
        match id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => {
                if let Some(v) = reg.by_id.get(id) {
                    for (_, tx) in v {
                        if tx.send(frame.clone()).is_ok() {
                            delivered += 1;
                        }
                    }
                }
            }
            None => {
                for tx in reg.all.values() {
                    if tx.send(frame.clone()).is_ok() {
                        delivered += 1;
                    }
                }
            }
        }
    }
    let mut r = text_response(StatusCode::OK, format!("{{\"delivered\":{delivered}}}"));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn main() {
    if let Err(e) = serve() {
        eprintln!("ceiling-server: {e}");
        std::process::exit(1);
    }
}

fn serve() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let workers = std::env::var("CEILING_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        let listener = sock.listen(4096)?;
        eprintln!("ceiling listening on {addr} with {workers} worker thread(s)");
        let state = Arc::new(State {
            reg: Mutex::new(Registry::default()),
            next_conn: AtomicU64::new(0),
        });
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept error: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let st = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(st.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    })
}
