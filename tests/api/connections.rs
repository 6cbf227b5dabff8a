//! Every TCP connection counts: idle keep-alive connections from one
//! address cannot take every descriptor, the open-file limit is raised and
//! respected, idle connections that never upgrade are closed, and IPv6
//! peers are limited per network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::process::{self, HeraldProcess};
use crate::helpers::{spawn_app_with, within, RawWs, WAIT};

/// A loopback source address other than 127.0.0.1: "another client".
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Opens a TCP connection from `source` to `server`.
async fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(server).await
}

/// `GET path` on a keep-alive connection, with a `Host` naming `server`.
fn get_request(path: &str, server: SocketAddr) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {server}\r\n\r\n")
}

/// What became of a connection that sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered (the status code); the connection stays open.
    Answered(u16),
    /// Closed or reset by the server without an answer.
    Closed,
    /// Neither, by the deadline.
    Hung,
}

/// Reads the start of an answer on `stream` until `deadline`.
async fn outcome(stream: &mut TcpStream, deadline: tokio::time::Instant) -> Outcome {
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
/// then idling with keep-alive, the way the review's attack did. Returns
/// the connections still open and how many of each outcome there were.
async fn idle_keep_alive_connections(
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
async fn get_from(source: IpAddr, server: SocketAddr, path: &str) -> Outcome {
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
async fn upgrade_from(source: IpAddr, server: SocketAddr) -> (Outcome, Option<TcpStream>) {
    let Ok(mut stream) = connect_from(source, server).await else {
        return (Outcome::Closed, None);
    };
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (Outcome::Closed, None);
    }
    let answer = outcome(&mut stream, tokio::time::Instant::now() + WAIT).await;
    (answer, Some(stream))
}

/// `(soft, hard)` "Max open files" of a process, from `/proc/<pid>/limits`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// herald under `prlimit --nofile=soft:hard` with `config`.
async fn herald_with_file_limit(soft: u64, hard: u64, config: &str) -> HeraldProcess {
    HeraldProcess::start_from(process::herald_with_file_limit(soft, hard), config, &[]).await
}

#[actix_web::test]
async fn idle_connections_past_the_per_address_cap_are_closed_and_others_still_served() {
    // A soft limit of 128 descriptors (a plain service has 1024), and an
    // attacker holding more idle keep-alive connections than that.
    let herald = herald_with_file_limit(
        128,
        4096,
        "port = 0\nworkers = 2\nmax_connections_per_ip = 100\n\
         max_tcp_connections_per_ip = 150\nkeep_alive_timeout_ms = 60000\n",
    )
    .await;
    let server = SocketAddr::from(([127, 0, 0, 1], herald.port));
    assert_eq!(
        open_file_limits(herald.pid()),
        (4096, 4096),
        "the soft limit is raised to the hard one"
    );
    let baseline = herald.open_fds();

    let (held, answered, closed, hung) = idle_keep_alive_connections(LOCAL, server, 200).await;
    assert_eq!(
        (answered, closed, hung),
        (150, 50, 0),
        "connections past max_tcp_connections_per_ip are closed at once"
    );

    // Another client is served, over HTTP and WebSocket; the attacker's
    // address gets nothing more.
    assert_eq!(
        get_from(OTHER, server, "/health").await,
        Outcome::Answered(200)
    );
    let (upgrade, _ws) = upgrade_from(OTHER, server).await;
    assert_eq!(upgrade, Outcome::Answered(101));
    assert_eq!(get_from(LOCAL, server, "/health").await, Outcome::Closed);
    let fds = herald.open_fds();
    assert!(
        fds <= baseline + 150 + 16,
        "{fds} descriptors open, {baseline} before the attack"
    );

    // Once the attacker lets go, its address is served again.
    drop(held);
    within("the attacker's places to be freed", async {
        while get_from(LOCAL, server, "/health").await != Outcome::Answered(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[actix_web::test]
async fn past_the_open_file_limit_the_tcp_cap_is_lowered_and_accept_never_stalls() {
    // The hard limit is 256 too: nothing to raise. With two workers herald
    // keeps 80 descriptors, and of the 176 left, 22 for refusing.
    let herald = herald_with_file_limit(256, 256, "port = 0\nworkers = 2\n").await;
    let warning = herald
        .startup
        .iter()
        .find(|line| line.contains("open-file limit"))
        .unwrap_or_else(|| panic!("a warning about the limit in {:#?}", herald.startup));
    assert!(warning.contains("WARN"), "{warning}");
    for part in [
        "max_tcp_connections lowered from 12000 to 154",
        "max_connections (10000) cannot be reached",
        "LimitNOFILE=",
    ] {
        assert!(warning.contains(part), "{part:?} in {warning}");
    }
    assert_eq!(open_file_limits(herald.pid()), (256, 256));
    let server = SocketAddr::from(([127, 0, 0, 1], herald.port));

    // More connections than descriptors, from two addresses (each within
    // the per-address cap): those past the cap are refused at once instead
    // of waiting on an accept that fails with EMFILE.
    let (mut held, first, closed_a, hung_a) = idle_keep_alive_connections(LOCAL, server, 150).await;
    let (more, second, closed_b, hung_b) =
        idle_keep_alive_connections(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), server, 150).await;
    held.extend(more);
    assert_eq!(
        (first + second, closed_a + closed_b, hung_a + hung_b),
        (154, 146, 0),
        "answered, closed, hung"
    );
    assert!(herald.open_fds() < 256);

    // When they go, a new client is served at once.
    drop(held);
    within("a new client to be served", async {
        while get_from(OTHER, server, "/health").await != Outcome::Answered(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[actix_web::test]
async fn session_caps_still_answer_in_json_below_the_tcp_caps() {
    let app = spawn_app_with(|c| {
        c.max_connections_per_ip = 2;
        c.max_tcp_connections_per_ip = 3;
    })
    .await;
    let server = SocketAddr::from(([127, 0, 0, 1], app.port));
    let _first = RawWs::connect(app.port, "").await;
    let _second = RawWs::connect(app.port, "").await;
    // The third TCP connection is let in, and its upgrade refused in JSON.
    let (status, body) = app.ws_attempt("", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (
            StatusCode::TOO_MANY_REQUESTS,
            &json!("too_many_connections")
        )
    );
    // Once that connection is gone, a third one idles; a fourth is closed
    // at once.
    let mut third = within("a third connection to be let in", async {
        loop {
            let mut stream = connect_from(LOCAL, server).await.unwrap();
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
    .await;
    assert_eq!(get_from(LOCAL, server, "/health").await, Outcome::Closed);
    assert_eq!(
        get_from(OTHER, server, "/health").await,
        Outcome::Answered(200)
    );
    let _ = third.shutdown().await;
}

#[actix_web::test]
async fn connections_that_never_upgrade_are_closed_when_idle_and_sessions_are_not() {
    let app = spawn_app_with(|c| {
        c.request_head_timeout_ms = 1000;
        c.keep_alive_timeout_ms = 1000;
        c.heartbeat_interval_ms = 100;
        c.client_timeout_ms = 10_000;
        c.poll_timeout_secs = 2;
    })
    .await;
    let server = SocketAddr::from(([127, 0, 0, 1], app.port));
    // The server's timers run on a clock that ticks every 500 ms: each
    // ends between 500 and 1000 ms after it starts.
    let earliest = Duration::from_millis(450);

    // Connected, silent: 408, then closed.
    let start = Instant::now();
    let mut silent = connect_from(LOCAL, server).await.unwrap();
    let mut reply = Vec::new();
    within(
        "a silent connection to be closed",
        silent.read_to_end(&mut reply),
    )
    .await
    .unwrap();
    assert!(start.elapsed() >= earliest, "{:?}", start.elapsed());
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");

    // One request, then idle: closed after the keep-alive timeout.
    let mut idle = connect_from(LOCAL, server).await.unwrap();
    idle.write_all(get_request("/health", server).as_bytes())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    assert_eq!(outcome(&mut idle, deadline).await, Outcome::Answered(200));
    let answered = Instant::now();
    within("an idle keep-alive connection to be closed", async {
        let mut chunk = [0u8; 1024];
        while idle.read(&mut chunk).await.unwrap_or(0) > 0 {}
    })
    .await;
    assert!(answered.elapsed() >= earliest, "{:?}", answered.elapsed());

    // A WebSocket, an event stream and a long-poll outlive both timeouts.
    let mut ws = app.ws("").await;
    ws.answer_pings(15).await;
    let mut sse = app.sse("", &[]).await;
    assert_eq!(sse.next_data().await.1["type"], "connected");
    let (status, body) = app.poll("").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.publish_form(&[("message", "still here")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ws.recv_json().await["data"], "still here");
    assert_eq!(sse.next_data().await.1["data"], "still here");
}

/// Whether this machine can listen on `[::1]`; outside CI, a test that
/// needs it is skipped when not.
fn ipv6_loopback_available() -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("IPv6 loopback ([::1]) is required in CI");
    }
    eprintln!("skipped: this machine cannot listen on [::1]");
    false
}

#[actix_web::test]
async fn ipv6_peers_count_against_both_caps_over_ipv6() {
    if !ipv6_loopback_available() {
        return;
    }
    let app = spawn_app_with(|c| {
        c.host = "::1".into();
        c.max_connections_per_ip = 1;
        c.max_tcp_connections_per_ip = 2;
    })
    .await;
    let v6: IpAddr = "::1".parse().unwrap();
    let server = SocketAddr::new(v6, app.port);
    let (first, _ws) = upgrade_from(v6, server).await;
    assert_eq!(first, Outcome::Answered(101));
    let (second, _) = upgrade_from(v6, server).await;
    assert_eq!(second, Outcome::Answered(429), "max_connections_per_ip");
    let _idle = within("a second connection to be let in", async {
        loop {
            let mut stream = connect_from(v6, server).await.unwrap();
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
    .await;
    assert_eq!(
        get_from(v6, server, "/health").await,
        Outcome::Closed,
        "max_tcp_connections_per_ip"
    );
}

#[actix_web::test]
async fn a_trusted_proxy_is_exempt_from_the_per_address_tcp_cap_but_not_from_the_total() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.max_connections = 2;
        c.max_connections_per_ip = 2;
        c.max_tcp_connections = 6;
        c.max_tcp_connections_per_ip = 2;
        c.keep_alive_timeout_ms = 60_000;
    })
    .await;
    let server = SocketAddr::from(([127, 0, 0, 1], app.port));
    // Any other address stops at its two.
    let (_other, answered, closed, hung) = idle_keep_alive_connections(OTHER, server, 3).await;
    assert_eq!((answered, closed, hung), (2, 1, 0), "127.0.0.2");
    // The proxy goes past two, up to what the total leaves (6 - 2).
    let (_proxy, answered, closed, hung) = idle_keep_alive_connections(LOCAL, server, 5).await;
    assert_eq!((answered, closed, hung), (4, 1, 0), "the trusted proxy");
}
