//! What the `herald` binary says at startup about its `[broker]`: a Redis
//! it cannot reach is named (without its password), and Redis settings on a
//! node whose broker is `memory`, which does nothing with them, are named in
//! a warning.

use std::net::TcpListener;

use crate::helpers::process::{herald, HeraldProcess};
use crate::helpers::within;

#[actix_web::test]
async fn a_redis_that_cannot_be_reached_at_startup_is_named_without_its_password() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://:pw-53cr3t@127.0.0.1:{port}");
    let mut cmd = herald();
    cmd.env("HERALD_PORT", "0")
        .env("HERALD_BROKER__KIND", "redis")
        .env("HERALD_BROKER__URL", &url);
    let output = within("herald to give up on Redis", cmd.output())
        .await
        .expect("herald runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "names the Redis: {stderr}"
    );
    assert!(!stderr.contains("pw-53cr3t"), "{stderr}");
}

#[actix_web::test]
async fn redis_settings_on_a_memory_node_are_named_in_a_warning() {
    let forgot_kind = HeraldProcess::start(
        "port = 0\nworkers = 1\n[broker]\nurl = \"redis://10.0.0.5:6379\"\nprefix = \"shop\"\n",
        &[],
    )
    .await;
    let warning = forgot_kind
        .startup
        .iter()
        .find(|line| line.contains("broker.url, broker.prefix"))
        .unwrap_or_else(|| panic!("no warning in {:#?}", forgot_kind.startup));
    assert!(
        warning.contains("WARN") && warning.contains("HERALD_BROKER__KIND=redis"),
        "{warning}"
    );

    // The defaults say nothing.
    let plain = HeraldProcess::start("port = 0\nworkers = 1\n", &[]).await;
    assert!(
        !plain.startup.iter().any(|line| line.contains("broker.")),
        "{:#?}",
        plain.startup
    );
}
