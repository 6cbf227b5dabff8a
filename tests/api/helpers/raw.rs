//! Hand-made WebSocket frames over raw TCP, for what a real client
//! library would refuse to send, and the upgrade tried with any headers.

use std::future::Future;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ws::JsonFrames;
use super::{within, TestApp};

impl TestApp {
    /// Tries a WebSocket upgrade with extra headers: 101 and no body, or
    /// the refusal's status and JSON body.
    pub async fn ws_attempt(&self, query: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        match RawWs::attempt(self.port, query, headers).await {
            Ok(_) => (StatusCode::SWITCHING_PROTOCOLS, Value::Null),
            Err(refusal) => refusal,
        }
    }

    /// Retries the upgrade of `/ws?{query}` until it is admitted (a slot
    /// is freed a moment after the session that held it is gone).
    pub async fn ws_when_admitted(&self, query: &str) -> RawWs {
        within("a freed connection slot", async {
            loop {
                if let Ok(raw) = RawWs::attempt(self.port, query, &[]).await {
                    return raw;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// The opening handshake of `/ws?{query}` naming `host`, with extra
/// `headers` (a `Host` among them replaces `host`).
pub fn upgrade_request(query: &str, host: &str, headers: &[(&str, &str)]) -> String {
    upgrade_request_to(&format!("/ws?{query}"), host, headers)
}

/// The opening handshake of `target` (a path and query, such as `/echo`).
pub fn upgrade_request_to(target: &str, host: &str, headers: &[(&str, &str)]) -> String {
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
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

    /// Connects and completes the opening handshake for `target` (a path
    /// and query, such as `/echo`).
    pub async fn connect_to(port: u16, target: &str) -> Self {
        match Self::attempt_at(port, target, &[], None).await {
            Ok(raw) => raw,
            Err((status, body)) => panic!("handshake refused: {status} {body}"),
        }
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
        let stream = socket.connect(addr).await.expect("TCP connect");
        let request = upgrade_request_to(target, &format!("127.0.0.1:{port}"), headers);
        Self::handshake(stream, request.into_bytes()).await
    }

    /// Connects to `target` and sends the opening handshake and `frames`
    /// in one write, as a client that does not wait for the answer.
    pub async fn connect_sending(port: u16, target: &str, frames: &[u8]) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("TCP connect");
        let mut bytes = upgrade_request_to(target, &format!("127.0.0.1:{port}"), &[]).into_bytes();
        bytes.extend_from_slice(frames);
        match Self::handshake(stream, bytes).await {
            Ok(raw) => raw,
            Err((status, body)) => panic!("handshake refused: {status} {body}"),
        }
    }

    /// Writes `request` and reads the answer to it.
    async fn handshake(
        mut stream: TcpStream,
        request: Vec<u8>,
    ) -> Result<Self, (StatusCode, Value)> {
        stream.write_all(&request).await.expect("write handshake");
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
        // The server may already have closed; a failed write shows up as the
        // close frame or end of stream the caller reads next.
        let _ = self
            .stream
            .write_all(&client_frame(first, payload, masked))
            .await;
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

impl JsonFrames for RawWs {
    fn next_json_frame(&mut self) -> impl Future<Output = Value> {
        self.recv_json()
    }
}

/// One client frame: `first` is FIN | RSV | opcode; the payload masked
/// unless `masked` is false.
pub fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
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
    frame
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
