//! The publish scripts of `examples/` (sh with curl, Python, Node, PHP):
//! against herald, a publish reaches a connected client once; against a
//! stand-in answering 504, 503 or nothing at all, a script retries with
//! the one Idempotency-Key of its message until the 200; a 400 ends it
//! after one attempt; a `Retry-After` of over a day is waited no longer
//! than the script's cap (25 × `HERALD_RETRY_BASE_MS`). A script whose interpreter is missing is skipped
//! with a `SKIPPED` line, and fails the test in CI.

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::publisher::{
    assert_a_huge_retry_after_is_capped, assert_a_key_per_message, assert_one_attempt_on_a_400,
    assert_retries_until_published, installed, publisher, run, source_file,
};
use crate::helpers::spawn_app;

/// One example script and what it needs.
struct Example {
    file: &'static str,
    /// The programs it needs, its interpreter first, each with arguments
    /// that succeed when it works.
    needs: &'static [(&'static str, &'static [&'static str])],
}

const EXAMPLES: &[Example] = &[
    Example {
        file: "examples/publish.sh",
        needs: &[("sh", &["-c", "true"]), ("curl", &["--version"])],
    },
    Example {
        file: "examples/publish.py",
        needs: &[("python3", &["--version"])],
    },
    Example {
        file: "examples/publish.js",
        needs: &[("node", &["--version"])],
    },
    Example {
        file: "examples/publish.php",
        needs: &[(
            "php",
            &["-r", "exit(function_exists('curl_init') ? 0 : 1);"],
        )],
    },
];

impl Example {
    /// The command that publishes `message` to the clients registered as
    /// 63, through herald at `url`.
    fn publish(&self, url: &str, message: &str) -> Command {
        let mut cmd = publisher(self.needs[0].0, url);
        cmd.arg(source_file(self.file)).arg(message);
        match self.file.rsplit('.').next() {
            Some("sh") => cmd.args(["id", "63"]),
            Some("php") => cmd.arg("63"),
            _ => cmd.args(["--id", "63"]),
        };
        cmd
    }
}

/// The examples whose programs are installed.
fn runnable() -> impl Iterator<Item = &'static Example> {
    EXAMPLES.iter().filter(|e| installed(e.file, e.needs))
}

#[actix_web::test]
async fn each_example_publishes_once_to_a_connected_client() {
    let app = spawn_app().await;
    let mut client = app.ws_registered("63").await;
    for example in runnable() {
        let message = format!("from {}", example.file);
        let ran = run(example.file, &mut example.publish(&app.url("/"), &message)).await;
        assert!(ran.success, "{}: {ran:?}", example.file);
        let reply: Value = serde_json::from_str(ran.stdout.trim())
            .unwrap_or_else(|e| panic!("{}: not herald's reply ({e}): {ran:?}", example.file));
        assert_eq!(reply["delivered"], 1, "{}: {reply}", example.file);
        let frame = client.recv_json().await;
        assert_eq!(frame["data"], message.as_str(), "{frame}");
        assert_eq!(frame["id"], "63", "{frame}");
        app.assert_nothing_before_sentinel(&mut [&mut client]).await;
    }
}

#[actix_web::test]
async fn each_example_retries_504_503_and_no_answer_with_one_key_until_the_200() {
    for example in runnable() {
        assert_retries_until_published(example.file, |url, message| example.publish(url, message))
            .await;
    }
}

#[actix_web::test]
async fn each_example_stops_at_a_400_after_one_attempt() {
    for example in runnable() {
        assert_one_attempt_on_a_400(example.file, |url, message| example.publish(url, message))
            .await;
    }
}

#[actix_web::test]
async fn each_example_gives_every_message_its_own_key() {
    for example in runnable() {
        assert_a_key_per_message(example.file, |url, message| example.publish(url, message)).await;
    }
}

#[actix_web::test]
async fn each_example_waits_a_huge_retry_after_no_longer_than_its_cap() {
    for example in runnable() {
        assert_a_huge_retry_after_is_capped(example.file, |url, message| {
            example.publish(url, message)
        })
        .await;
    }
}
