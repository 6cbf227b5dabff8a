//! Every TCP connection counts: idle keep-alive connections from one
//! address cannot take every descriptor, the open-file limit is raised and
//! respected, idle connections that never upgrade are closed, and IPv6
//! peers are limited per network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::process::HeraldProcess;
use crate::helpers::tcp::{
    answered_connection, connect_from, get_from, get_request, idle_keep_alive_connections, outcome,
    upgrade_from, wait_until_served, Outcome,
};
use crate::helpers::{or_skip, spawn_app_with, within, RawWs, WAIT};

/// A loopback source address other than 127.0.0.1: "another client".
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[actix_web::test]
async fn idle_connections_past_the_per_address_cap_are_closed_and_others_still_served() {
    // A soft limit of 128 descriptors (a plain service has 1024), and an
    // attacker holding more idle keep-alive connections than that.
    let herald = HeraldProcess::start_with_file_limit(
        128,
        4096,
        "port = 0\nworkers = 2\nmax_connections_per_ip = 100\n\
         max_tcp_connections_per_ip = 150\nkeep_alive_timeout_ms = 60000\n",
    )
    .await;
    let server = SocketAddr::from(([127, 0, 0, 1], herald.port));
    assert_eq!(
        herald.open_file_limits(),
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
    wait_until_served(LOCAL, server, "the attacker's places to be freed").await;
}

#[actix_web::test]
async fn past_the_open_file_limit_the_tcp_cap_is_lowered_and_accept_never_stalls() {
    // The hard limit is 256 too: nothing to raise. With two workers herald
    // keeps 80 descriptors, and of the 176 left, 22 for refusing.
    let herald = HeraldProcess::start_with_file_limit(256, 256, "port = 0\nworkers = 2\n").await;
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
    assert_eq!(herald.open_file_limits(), (256, 256));
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
    wait_until_served(OTHER, server, "a new client to be served").await;
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
    let mut third = answered_connection(LOCAL, server, "a third connection to be let in").await;
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
    or_skip(
        std::net::TcpListener::bind("[::1]:0").ok(),
        "IPv6 loopback ([::1]) is required in CI",
        "skipped: this machine cannot listen on [::1]",
    )
    .is_some()
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
    let _idle = answered_connection(v6, server, "a second connection to be let in").await;
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
