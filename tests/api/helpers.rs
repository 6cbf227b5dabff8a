//! The one way tests start herald and talk to it: `spawn_app` runs the real
//! server in-process on an ephemeral port; `WsClient` is a real WebSocket
//! client (awc); `RawWs` writes hand-made frames to test protocol errors.

use std::future::Future;
use std::time::Duration;

use actix_codec::Framed;
use actix_web::http::StatusCode;
use awc::ws::{self, Frame};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use herald::config::Secret;
use herald::{Application, Config};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// The `client_secret` of apps started with [`with_tokens`].
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";

/// Turns on signed identity with [`CLIENT_SECRET`].
pub fn with_tokens(config: &mut Config) {
    config.client_secret = Secret::new(CLIENT_SECRET);
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A token signed like a main site would, with `jsonwebtoken`, for
/// herald's audience (`"aud": "herald"`) unless `claims` name one.
pub fn mint(claims: &Value, secret: &str) -> String {
    let mut claims = claims.clone();
    if let Some(map) = claims.as_object_mut() {
        map.entry("aud").or_insert_with(|| "herald".into());
    }
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token encodes")
}

/// A valid token for `sub`, an hour long, listing `channels`.
pub fn token_for(sub: &str, channels: &[&str]) -> String {
    mint(
        &serde_json::json!({"sub": sub, "exp": now() + 3600, "channels": channels}),
        CLIENT_SECRET,
    )
}

pub struct TestApp {
    pub port: u16,
    pub http: awc::Client,
}

/// A test config: ephemeral port, one worker, the built-in console.
pub fn test_config() -> Config {
    Config {
        port: 0,
        workers: 1,
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    let app = Application::build(config).await.expect("herald starts");
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        port,
        http: awc::Client::builder().timeout(WAIT).finish(),
    }
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// POSTs a form to `/`; returns the status and the JSON reply.
    pub async fn publish_form(&self, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut resp = self
            .http
            .post(self.url("/"))
            .send_form(&fields)
            .await
            .expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    /// POSTs a form to `/` with extra headers.
    pub async fn publish_form_with(
        &self,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url("/"));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let mut resp = req.send_form(&fields).await.expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    /// POSTs a JSON body to `/`.
    pub async fn publish_json(&self, body: &Value) -> (StatusCode, Value) {
        let mut resp = self
            .http
            .post(self.url("/"))
            .send_json(body)
            .await
            .expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    /// POSTs raw bytes with the given content type (or none).
    pub async fn post_raw(&self, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url("/"));
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        let mut resp = req.send_body(body).await.expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    pub async fn health(&self) -> Value {
        let mut resp = self
            .http
            .get(self.url("/health"))
            .send()
            .await
            .expect("GET /health");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.expect("JSON health")
    }

    /// Polls `/health` until `ready` holds, failing after [`WAIT`].
    pub async fn wait_for_health(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        within(what, async {
            loop {
                let health = self.health().await;
                if ready(&health) {
                    return health;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Waits until `/health` reports exactly these counts.
    pub async fn wait_for_counts(&self, sessions: u64, ids: u64) {
        self.wait_for_health(&format!("{sessions} sessions and {ids} ids"), |h| {
            h["sessions"] == sessions && h["ids"] == ids
        })
        .await;
    }

    /// Opens a WebSocket to `/ws?{query}`. A session that opens with
    /// nothing to answer (no id, channel, position or token) first gets a
    /// `connected` frame with the server's position; it is checked and
    /// consumed here.
    pub async fn ws(&self, query: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/ws?{}", self.port, query);
        let (_resp, framed) = within("the WebSocket handshake", self.http.ws(url).connect())
            .await
            .expect("WebSocket connects");
        let mut client = WsClient { framed };
        if opens_quietly(query) {
            let frame = client.recv_json().await;
            assert_eq!(frame["type"], "connected", "{frame}");
            assert!(
                frame["epoch"].is_string() && frame["seq"].is_u64(),
                "{frame}"
            );
        }
        client
    }

    /// Tries a WebSocket upgrade with extra headers: 101 and no body, or
    /// the refusal's status and JSON body.
    pub async fn ws_attempt(&self, query: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        match RawWs::attempt(self.port, query, headers).await {
            Ok(_) => (StatusCode::SWITCHING_PROTOCOLS, Value::Null),
            Err(refusal) => refusal,
        }
    }

    /// Opens a Server-Sent Events stream at `/events?{query}`.
    pub async fn sse(&self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut req = self.http.get(self.url(&format!("/events?{query}")));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let resp = within("the event stream", req.send())
            .await
            .expect("GET /events");
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp.headers().get("content-type").expect("content type");
        assert_eq!(content_type, "text/event-stream");
        SseClient {
            resp,
            buf: String::new(),
        }
    }

    /// `GET /poll?{query}`: status and JSON answer.
    pub async fn poll(&self, query: &str) -> (StatusCode, Value) {
        let client = awc::Client::builder().timeout(WAIT * 2).finish();
        let mut resp = client
            .get(self.url(&format!("/poll?{query}")))
            .send()
            .await
            .expect("GET /poll");
        let body = resp.json::<Value>().await.expect("JSON answer");
        (resp.status(), body)
    }

    /// The server's position: (epoch, latest seq).
    pub async fn position(&self) -> (String, u64) {
        let health = self.health().await;
        let epoch = health["epoch"].as_str().expect("epoch").to_owned();
        (epoch, health["seq"].as_u64().expect("seq"))
    }

    /// Opens a WebSocket registered as `id` and consumes the `registered` answer.
    pub async fn ws_registered(&self, id: &str) -> WsClient {
        let mut client = self.ws(&format!("id={id}")).await;
        let frame = client.recv_json().await;
        assert_eq!(frame["type"], "registered", "{frame}");
        assert_eq!(frame["id"], id);
        client
    }
}

/// Whether a session opened with `query` gets only a `connected` frame.
pub fn opens_quietly(query: &str) -> bool {
    let keys = ["id=", "channel=", "since=", "token=", "await_register="];
    !query
        .split('&')
        .any(|pair| keys.iter().any(|k| pair.starts_with(k)))
}

pub struct WsClient {
    framed: Framed<BoxedSocket, ws::Codec>,
}

impl WsClient {
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send text");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send(&mut self, msg: ws::Message) {
        self.framed.send(msg).await.expect("send frame");
    }

    /// The next frame other than a ping (pings are answered), or `None` when
    /// the connection ended.
    pub async fn recv(&mut self) -> Option<Frame> {
        within("a WebSocket frame", async {
            loop {
                match self.framed.next().await {
                    Some(Ok(Frame::Ping(payload))) => {
                        self.framed
                            .send(ws::Message::Pong(payload))
                            .await
                            .expect("send pong");
                    }
                    Some(Ok(frame)) => return Some(frame),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    /// The next text frame, parsed as JSON.
    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Some(Frame::Text(bytes)) => serde_json::from_slice(&bytes).expect("frame is JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Counts pings (answering each) until `n` have arrived, failing on any
    /// other frame. Proves the session stayed open across that many beats.
    pub async fn answer_pings(&mut self, n: usize) {
        for _ in 0..n {
            let frame = within("a ping", self.framed.next()).await;
            match frame {
                Some(Ok(Frame::Ping(payload))) => self
                    .framed
                    .send(ws::Message::Pong(payload))
                    .await
                    .expect("send pong"),
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    }

    /// Sends a close frame and waits for the server's answer, skipping
    /// frames still in flight.
    pub async fn close(mut self) {
        self.send(ws::Message::Close(Some(ws::CloseCode::Normal.into())))
            .await;
        loop {
            match self.recv().await {
                Some(Frame::Close(_)) | None => return,
                Some(_) => continue,
            }
        }
    }
}

/// A WebSocket client speaking raw bytes over TCP, to send frames a real
/// client library would refuse to build.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    close_payload: Option<Vec<u8>>,
}

/// First-byte flags of a frame.
pub const FIN: u8 = 0x80;
pub const RSV1: u8 = 0x40;
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

impl RawWs {
    /// Connects and completes the opening handshake for `/ws?{query}`.
    pub async fn connect(port: u16, query: &str) -> Self {
        Self::connect_to(port, &format!("/ws?{query}")).await
    }

    /// Sends the opening handshake with extra headers; the open connection,
    /// or the refusal's status and JSON body.
    pub async fn attempt(
        port: u16,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, (StatusCode, Value)> {
        Self::attempt_with_buffer(port, query, headers, None).await
    }

    /// Like [`RawWs::attempt`], with the socket's receive buffer set to
    /// `recv_buffer` bytes: a client that stops reading then fills up fast.
    pub async fn attempt_with_buffer(
        port: u16,
        query: &str,
        headers: &[(&str, &str)],
        recv_buffer: Option<u32>,
    ) -> Result<Self, (StatusCode, Value)> {
        Self::attempt_at(port, &format!("/ws?{query}"), headers, recv_buffer).await
    }

    /// Connects and completes the opening handshake for `target` (a path
    /// and query, such as `/echo`).
    pub async fn connect_to(port: u16, target: &str) -> Self {
        match Self::attempt_at(port, target, &[], None).await {
            Ok(raw) => raw,
            Err((status, body)) => panic!("handshake refused: {status} {body}"),
        }
    }

    /// [`RawWs::attempt_with_buffer`] for any `target`.
    pub async fn attempt_at(
        port: u16,
        target: &str,
        headers: &[(&str, &str)],
        recv_buffer: Option<u32>,
    ) -> Result<Self, (StatusCode, Value)> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = socket.connect(addr).await.expect("TCP connect");
        let mut request = format!(
            "GET {target} HTTP/1.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n"
        );
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write handshake");
        let mut raw = Self {
            stream,
            buf: Vec::new(),
            close_payload: None,
        };
        let head = within("the handshake answer", raw.read_until_blank_line()).await;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        if status == 101 {
            return Ok(raw);
        }
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                if name.eq_ignore_ascii_case("content-length") {
                    value.trim().parse().ok()
                } else {
                    None
                }
            })
            .expect("content-length on a refusal");
        within("the refusal body", async {
            while raw.buf.len() < length {
                raw.fill().await.expect("refusal body");
            }
        })
        .await;
        let body = serde_json::from_slice(&raw.buf[..length]).expect("JSON refusal");
        Err((StatusCode::from_u16(status).expect("status"), body))
    }

    async fn read_until_blank_line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().await.expect("connection open during handshake");
        }
    }

    /// Reads more bytes; `None` at end of stream.
    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Writes one frame: `first` is FIN | RSV | opcode. Client frames are
    /// masked unless `masked` is false.
    pub async fn send_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mut frame = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x12, 0x34, 0x56, 0x78];
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        // The server may already have closed; a failed write shows up as the
        // close frame or end of stream the caller reads next.
        let _ = self.stream.write_all(&frame).await;
    }

    /// The connection and any bytes already read past the handshake, for a
    /// test that must read and write at once.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// The next frame as (opcode, payload), or `None` at end of stream.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within("a raw frame", async {
            loop {
                if let Some((opcode, payload, used)) = parse_server_frame(&self.buf) {
                    self.buf.drain(..used);
                    return Some((opcode, payload));
                }
                self.fill().await?;
            }
        })
        .await
    }

    /// Reads until a close frame and returns its code, skipping pings and
    /// text; then checks that the server ends the connection.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            match self.read_frame().await {
                Some((OP_CLOSE, payload)) => {
                    assert!(payload.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let ended = within("the server to end the connection", async {
                        loop {
                            if self.fill().await.is_none() {
                                return true;
                            }
                            self.buf.clear();
                        }
                    })
                    .await;
                    assert!(ended);
                    return code;
                }
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// The next text frame, parsed as JSON (pings skipped); `None` at a
    /// close frame or the end of the stream.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            match self.read_frame().await {
                Some((OP_TEXT, payload)) => {
                    return Some(serde_json::from_slice(&payload).expect("JSON"))
                }
                Some((OP_CLOSE, payload)) => {
                    self.close_payload = Some(payload);
                    return None;
                }
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// The close code received by [`RawWs::next_json`], if any.
    pub fn close_code(&self) -> Option<u16> {
        let payload = self.close_payload.as_ref()?;
        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
    }

    /// The next text frame, parsed as JSON (pings skipped).
    pub async fn recv_json(&mut self) -> Value {
        loop {
            match self.read_frame().await {
                Some((OP_TEXT, payload)) => return serde_json::from_slice(&payload).expect("JSON"),
                Some((OP_PING, _)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }
}

/// Parses one unmasked server frame from the start of `buf`.
pub fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let payload = buf[at..at + len].to_vec();
    at += len;
    Some((opcode, payload, at))
}

/// One Server-Sent Event: its `event:`, `id:` and `data:` fields, or a
/// comment.
#[derive(Debug, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data field")).expect("JSON data")
    }
}

/// A real HTTP client reading `text/event-stream`.
pub struct SseClient {
    resp: awc::ClientResponse,
    buf: String,
}

impl SseClient {
    /// The next event or comment block.
    pub async fn next_event(&mut self) -> SseEvent {
        within("an event", async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut event = SseEvent {
                        event: None,
                        id: None,
                        data: None,
                        comment: None,
                    };
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            event.event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("id: ") {
                            event.id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            event.data = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix(':') {
                            event.comment = Some(v.trim().to_owned());
                        }
                    }
                    return event;
                }
                let chunk = self.resp.next().await.expect("stream open").expect("chunk");
                self.buf
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
            }
        })
        .await
    }

    /// Waits for the server to end the stream (comments and events before
    /// the end are skipped).
    pub async fn expect_end(&mut self) {
        within("the event stream to end", async {
            while let Some(chunk) = self.resp.next().await {
                chunk.expect("a clean end, not an error");
            }
        })
        .await;
    }

    /// The next event with data that EventSource's `onmessage` would see
    /// (comments and named events such as `ping` skipped), parsed.
    pub async fn next_data(&mut self) -> (Option<String>, Value) {
        loop {
            let event = self.next_event().await;
            let unnamed = matches!(event.event.as_deref(), None | Some("message"));
            if event.data.is_some() && unnamed {
                return (event.id.clone(), event.json());
            }
        }
    }
}

/// An HTTP/1.1 `GET` on a raw socket with a chosen receive buffer, for
/// clients that stop reading, read slowly or vanish mid-request.
pub struct RawHttp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawHttp {
    /// Connects (with a receive buffer of `recv_buffer` bytes, if given) and
    /// sends `GET {path}` with `Connection: close`.
    pub async fn get(port: u16, path: &str, recv_buffer: Option<u32>) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = socket.connect(addr).await.expect("TCP connect");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads the status line and headers: the status and the header block.
    pub async fn head(&mut self) -> (u16, String) {
        within("the response head", async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let status = head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("status line");
                    return (status, head);
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read head");
                assert!(n > 0, "connection ended before the response head");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// Reads the rest of the response (the server closes after it) and
    /// returns its body, de-chunked when `head` says it is chunked.
    pub async fn body(mut self, head: &str) -> Vec<u8> {
        within("the response body", self.stream.read_to_end(&mut self.buf))
            .await
            .expect("read body");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        if !chunked {
            return self.buf;
        }
        let mut body = Vec::new();
        let mut rest = &self.buf[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16)
                .expect("hex chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
}
