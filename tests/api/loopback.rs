//! How far "a loopback peer" is trusted without keys: never through a
//! proxy, not at all with `trust_loopback = false`, and never silently when
//! herald listens beyond loopback.

use actix_web::http::StatusCode;
use herald::config::Secret;

use crate::helpers::process::HeraldProcess;
use crate::helpers::{spawn_app, spawn_app_with};

/// Headers by which proxies, load balancers and CDNs say where a request
/// came from.
const PROXY_HEADERS: [(&str, &str); 13] = [
    ("forwarded", "for=203.0.113.7"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-real-ip", "203.0.113.7"),
    ("via", "1.1 relay"),
    ("x-client-ip", "203.0.113.7"),
    ("true-client-ip", "203.0.113.7"),
    ("cf-connecting-ip", "203.0.113.7"),
    ("x-cluster-client-ip", "203.0.113.7"),
    ("fastly-client-ip", "203.0.113.7"),
    ("x-forwarded-host", "herald.example.com"),
    ("x-forwarded-proto", "https"),
    ("x-original-forwarded-for", "203.0.113.7"),
    ("client-ip", "203.0.113.7"),
];

#[actix_web::test]
async fn any_proxy_header_makes_a_loopback_request_not_local() {
    let app = spawn_app().await;
    for (name, value) in PROXY_HEADERS {
        let (status, body) = app
            .publish_form_with(&[(name, value)], &[("message", "m")])
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "POST / with {name}"
        );
        for path in ["/stats", "/metrics"] {
            assert_eq!(
                app.get_status(path, &[(name, value)]).await,
                StatusCode::FORBIDDEN,
                "{path} with {name}"
            );
        }
    }
    // Nothing was published; a direct loopback request still is.
    assert_eq!(app.position().await.1, 0);
    let (status, _) = app.publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn without_loopback_trust_keys_are_mandatory_even_from_loopback() {
    const KEY: &str = "publish-key-0123456789";
    const ADMIN: &str = "admin-key-0123456789";
    // No keys at all: nobody publishes or reads the admin endpoints.
    let app = spawn_app_with(|c| c.trust_loopback = false).await;
    let (status, body) = app.publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("trust_loopback"),
        "{body}"
    );
    assert_eq!(app.get_status("/stats", &[]).await, StatusCode::FORBIDDEN);

    // With keys: a keyless loopback request is a 401, a keyed one passes.
    let app = spawn_app_with(|c| {
        c.trust_loopback = false;
        c.publish_keys = vec![Secret::new(KEY)];
        c.admin_keys = vec![Secret::new(ADMIN)];
    })
    .await;
    let (status, _) = app.publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {KEY}");
    let (status, _) = app
        .publish_form_with(&[("authorization", &bearer)], &[("message", "m")])
        .await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/stats", "/metrics"] {
        assert_eq!(app.get_status(path, &[]).await, StatusCode::UNAUTHORIZED);
        let admin = format!("Bearer {ADMIN}");
        assert_eq!(
            app.get_status(path, &[("authorization", &admin)]).await,
            StatusCode::OK
        );
    }
}

/// The startup log's warning about keyless loopback trust, if any.
fn keyless_warning(herald: &HeraldProcess) -> Option<&String> {
    herald
        .startup
        .iter()
        .find(|line| line.contains("WARN") && line.contains("TCP relay"))
}

#[actix_web::test]
async fn listening_beyond_loopback_without_keys_is_warned_about_at_startup() {
    let exposed = HeraldProcess::start("host = \"0.0.0.0\"\nport = 0\n", &[]).await;
    let warning =
        keyless_warning(&exposed).unwrap_or_else(|| panic!("a warning in {:#?}", exposed.startup));
    for part in [
        "0.0.0.0",
        "publish_keys",
        "admin_keys",
        "trust_loopback = false",
    ] {
        assert!(warning.contains(part), "{part:?} in {warning}");
    }
    // Still only loopback may publish, as before.
    let (status, _) = exposed.app().publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::OK);

    let keyed = HeraldProcess::start(
        "host = \"0.0.0.0\"\nport = 0\n",
        &[
            ("HERALD_PUBLISH_KEYS", "publish-key-0123456789"),
            ("HERALD_ADMIN_KEYS", "admin-key-0123456789"),
        ],
    )
    .await;
    assert_eq!(keyless_warning(&keyed), None, "{:#?}", keyed.startup);
    let local = HeraldProcess::start("port = 0\n", &[]).await;
    assert_eq!(keyless_warning(&local), None, "{:#?}", local.startup);
}
