//! TCP connections from a chosen loopback source address (127.0.0.2 is
//! "another client"), for the caps on connections per address: what became
//! of each, answered, closed or left hanging.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::raw::upgrade_request;
use super::{within, WAIT};

/// Opens a TCP connection from `source` to `server`.
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(server).await
}

/// `GET path` on a keep-alive connection, with a `Host` naming `server`.
pub fn get_request(path: &str, server: SocketAddr) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {server}\r\n\r\n")
}

/// What became of a connection that sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (the status code); the connection stays open.
    Answered(u16),
    /// Closed or reset by the server without an answer.
    Closed,
    /// Neither, by the deadline.
    Hung,
}

/// Reads the start of an answer on `stream` until `deadline`.
pub async fn outcome(stream: &mut TcpStream, deadline: tokio::time::Instant) -> Outcome {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Outcome::Hung,
            Ok(Ok(0)) | Ok(Err(_)) => return Outcome::Closed,
            Ok(Ok(n)) => head.extend_from_slice(&chunk[..n]),
        }
        if let Some(status) = head
            .windows(2)
            .position(|w| w == b"\r\n")
            .and_then(|end| std::str::from_utf8(&head[..end]).ok())
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
        {
            return Outcome::Answered(status);
        }
    }
}

/// Opens `count` connections from `source`, each sending `GET /health` and
/// then idling with keep-alive, as an attacker holding descriptors would. Returns
/// the connections still open and how many of each outcome there were.
pub async fn idle_keep_alive_connections(
    source: IpAddr,
    server: SocketAddr,
    count: usize,
) -> (Vec<TcpStream>, usize, usize, usize) {
    let mut streams = Vec::new();
    for _ in 0..count {
        let Ok(mut stream) = connect_from(source, server).await else {
            continue;
        };
        // A refused connection may already be shut; its answer tells.
        let _ = stream
            .write_all(get_request("/health", server).as_bytes())
            .await;
        streams.push(stream);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let (mut open, mut closed, mut hung) = (Vec::new(), 0, 0);
    for mut stream in streams {
        match outcome(&mut stream, deadline).await {
            Outcome::Answered(200) => open.push(stream),
            Outcome::Answered(other) => panic!("GET /health answered {other}"),
            Outcome::Closed => closed += 1,
            Outcome::Hung => hung += 1,
        }
    }
    let answered = open.len();
    (open, answered, closed, hung)
}

/// One `GET path` from `source` on a fresh connection: its outcome.
pub async fn get_from(source: IpAddr, server: SocketAddr, path: &str) -> Outcome {
    let Ok(mut stream) = connect_from(source, server).await else {
        return Outcome::Closed;
    };
    if stream
        .write_all(get_request(path, server).as_bytes())
        .await
        .is_err()
    {
        return Outcome::Closed;
    }
    outcome(&mut stream, tokio::time::Instant::now() + WAIT).await
}

/// A WebSocket handshake from `source`: the answer's status.
pub async fn upgrade_from(source: IpAddr, server: SocketAddr) -> (Outcome, Option<TcpStream>) {
    let Ok(mut stream) = connect_from(source, server).await else {
        return (Outcome::Closed, None);
    };
    let request = upgrade_request("", &server.to_string(), &[]);
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (Outcome::Closed, None);
    }
    let answer = outcome(&mut stream, tokio::time::Instant::now() + WAIT).await;
    (answer, Some(stream))
}

/// A connection from `source` whose `GET /health` is answered 200, retried
/// until the server lets one in; it stays open.
pub async fn answered_connection(source: IpAddr, server: SocketAddr, what: &str) -> TcpStream {
    within(what, async {
        loop {
            let mut stream = connect_from(source, server).await.unwrap();
            let request = get_request("/health", server);
            if stream.write_all(request.as_bytes()).await.is_ok()
                && outcome(&mut stream, tokio::time::Instant::now() + WAIT).await
                    == Outcome::Answered(200)
            {
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits until a fresh `GET /health` from `source` is answered 200.
pub async fn wait_until_served(source: IpAddr, server: SocketAddr, what: &str) {
    within(what, async {
        while get_from(source, server, "/health").await != Outcome::Answered(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
