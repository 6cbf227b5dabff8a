//! `trusted_proxies`: behind a listed proxy, the client address comes from
//! `X-Forwarded-For` or `Forwarded`, and that is what the per-address cap
//! counts and the logs show; from any other peer those headers are ignored;
//! a proxied request, or any request from a proxy, is never a local
//! publisher; headers that cannot be read fall back to the proxy's address.
//!
//! The tests connect from 127.0.0.1, so "a trusted proxy" is a config
//! listing 127.0.0.1, and "an untrusted peer" one listing 127.0.0.2 only.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::process::HeraldProcess;
use crate::helpers::{spawn_app_with, RawWs, TestApp};

/// An app behind a trusted proxy on 127.0.0.1 (or, with `trusted` naming
/// another address, behind none), with `per_ip` sessions per address.
async fn app(trusted: &str, per_ip: usize) -> TestApp {
    let trusted = trusted.to_owned();
    spawn_app_with(move |c| {
        c.trusted_proxies = vec![trusted];
        c.max_connections_per_ip = per_ip;
    })
    .await
}

/// A WebSocket upgrade with `headers`: the open socket, or the refusal.
async fn upgrade(app: &TestApp, headers: &[(&str, &str)]) -> Result<RawWs, (StatusCode, Value)> {
    RawWs::attempt(app.port, "", headers).await
}

fn refused_per_address(outcome: Result<RawWs, (StatusCode, Value)>) {
    match outcome {
        Ok(_) => panic!("admitted past max_connections_per_ip"),
        Err((status, body)) => assert_eq!(
            (status, &body["code"]),
            (
                StatusCode::TOO_MANY_REQUESTS,
                &json!("too_many_connections")
            )
        ),
    }
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_address_counts_for_itself() {
    let app = app("127.0.0.1/32", 2).await;
    let mut open = Vec::new();
    // Three clients: three addresses, all admitted.
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let xff = format!("198.51.100.99, {client}");
        let ws = upgrade(&app, &[("X-Forwarded-For", &xff)]).await;
        open.push(ws.unwrap_or_else(|e| panic!("{client} refused: {e:?}")));
    }
    // One client three times: the third is over its cap, over any transport.
    let same = [("X-Forwarded-For", "203.0.113.50")];
    open.push(upgrade(&app, &same).await.expect("first"));
    open.push(upgrade(&app, &same).await.expect("second"));
    refused_per_address(upgrade(&app, &same).await);
    let resp = app
        .http
        .get(app.url("/events"))
        .insert_header(("X-Forwarded-For", "203.0.113.50"))
        .send()
        .await
        .expect("GET /events");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    // The proxy's own address has its places free.
    open.push(upgrade(&app, &[]).await.expect("the proxy itself"));
    app.wait_for_counts(6, 0).await;
}

#[actix_web::test]
async fn from_an_untrusted_peer_forwarding_headers_are_ignored() {
    let app = app("127.0.0.2", 2).await;
    let _first = upgrade(&app, &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .expect("first");
    let _second = upgrade(&app, &[("Forwarded", "for=203.0.113.2")])
        .await
        .expect("second");
    // A third address claimed: still the peer's third connection.
    refused_per_address(upgrade(&app, &[("X-Forwarded-For", "203.0.113.3")]).await);
}

#[actix_web::test]
async fn a_proxy_is_never_a_local_publisher() {
    let app = app("127.0.0.1/32", 256).await;
    // Forwarded by the proxy: 403 though the peer is loopback.
    for header in [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Forwarded-For", "127.0.0.1"),
    ] {
        let (status, body) = app.publish_form_with(&[header], &[("message", "m")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("publish_keys"),
            "{body}"
        );
    }
    // Even without a header: a peer in trusted_proxies is a proxy.
    let (status, body) = app.publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("trusted_proxies"),
        "the answer names the setting that makes it a proxy: {body}"
    );
    let resp = app.http.get(app.url("/stats")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "nor a local admin");

    // The same request to a server that trusts no proxy is local.
    let direct = spawn_app_with(|_| {}).await;
    let (status, body) = direct.publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[actix_web::test]
async fn forwarded_for_names_the_client_and_x_forwarded_for_wins_over_it() {
    let app = app("127.0.0.1/32", 1).await;
    let _v6 = upgrade(&app, &[("Forwarded", "for=\"[2001:db8:1:2::1]:4711\"")])
        .await
        .expect("an IPv6 client");
    let _v4 = upgrade(
        &app,
        &[("Forwarded", "for=192.0.2.60;proto=https;by=127.0.0.1")],
    )
    .await
    .expect("an IPv4 client");
    // The same /64 as the first: over its cap.
    refused_per_address(upgrade(&app, &[("Forwarded", "for=\"[2001:db8:1:2::77]\"")]).await);
    // Both headers: X-Forwarded-For names the client (a new one, admitted),
    // and a Forwarded naming a full address does not matter.
    let _both = upgrade(
        &app,
        &[
            ("Forwarded", "for=192.0.2.60"),
            ("X-Forwarded-For", "192.0.2.61"),
        ],
    )
    .await
    .expect("X-Forwarded-For's client");
}

#[actix_web::test]
async fn unreadable_forwarding_headers_count_as_the_proxy_and_break_nothing() {
    let app = app("127.0.0.1/32", 2).await;
    let garbage: [(&str, &str); 6] = [
        ("X-Forwarded-For", "not-an-address"),
        ("Forwarded", "for=unknown"),
        ("X-Forwarded-For", "203.0.113.9, ;;,\"[::1"),
        ("Forwarded", "for=\"[2001:db8::1\"; by"),
        ("X-Forwarded-For", "203.0.113.9\u{ff}"),
        ("Forwarded", "for=_hidden, for=300.1.2.3"),
    ];
    let mut open = Vec::new();
    for (i, header) in garbage.iter().enumerate() {
        match upgrade(&app, &[*header]).await {
            // Each counts against the proxy's own address: two fit.
            Ok(ws) => {
                assert!(i < 2, "{header:?} was admitted past the proxy's cap");
                open.push(ws);
            }
            Err(refusal) => {
                assert!(i >= 2, "{header:?}: {refusal:?}");
                refused_per_address(Err(refusal));
            }
        }
    }
    // Still serving, and a readable header still gets its own place.
    assert_eq!(app.health().await["status"], "ok");
    let _fine = upgrade(&app, &[("X-Forwarded-For", "garbage, 203.0.113.9")])
        .await
        .expect("garbage left of the client does not matter");
}

#[actix_web::test]
async fn log_lines_show_the_forwarded_client_and_the_proxy() {
    let config = "port = 0\nworkers = 1\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let mut herald = HeraldProcess::start(config, &[]).await;
    assert!(
        herald
            .startup
            .iter()
            .any(|l| l.contains("trusted proxies: 127.0.0.1/32")),
        "{:#?}",
        herald.startup
    );
    let ws = RawWs::attempt(
        herald.port,
        "id=behind",
        &[("X-Forwarded-For", "203.0.113.9")],
    )
    .await
    .expect("upgrade");
    let connected = herald.log_line("connected: transport=ws").await;
    assert!(
        connected.contains("peer=203.0.113.9 proxy=127.0.0.1:"),
        "{connected}"
    );
    drop(ws);
    let gone = herald.log_line("disconnected:").await;
    assert!(
        gone.contains("peer=203.0.113.9 proxy=127.0.0.1:") && gone.contains("id=\"behind\""),
        "{gone}"
    );
}
