//! herald's own publishers (the `examples/` scripts and the snippets of
//! `docs/integration.md`) as child processes: whether the programs they
//! need are installed, running one to its end, and the checks every one of
//! them must pass against a [`Stub`]: retries with one key until the 200,
//! one attempt on a 400, a new key for the next message, a huge
//! `Retry-After` waited no longer than the publisher's cap. Each check takes
//! `publish`, which makes the command that publishes one message (its
//! second argument) to herald at a URL (its first).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::or_skip;
use super::stub::{Answer, Recorded, Stub};

/// How long one publisher may run before the test fails: generous, as
/// curl's own backoff waits 1 s, then 2 s, 4 s...
pub const PUBLISHER_WAIT: Duration = Duration::from_secs(30);

/// Whether every program of `needs` runs (each started with its probe
/// arguments, which must succeed). When one does not: false after printing
/// `SKIPPED: {what}`, or in CI (`CI=true`) a failure naming what is
/// missing, which `.ci/run` installs.
pub fn installed(what: &str, needs: &[(&str, &[&str])]) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(program, probe)| !runs(program, probe))
        .map(|(program, _)| *program)
        .collect();
    let missing = missing.join(", ");
    or_skip(
        missing.is_empty().then_some(()),
        &format!("{what} needs {missing}, which is not installed (.ci/run installs it)"),
        &format!("SKIPPED: {what}: {missing} is not installed, so it did not run"),
    )
    .is_some()
}

fn runs(program: &str, probe: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A file of the source tree.
pub fn source_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `program` run from the source tree as a publisher of herald at `url`:
/// `HERALD_URL` set, a first retry wait of 10 ms (`HERALD_RETRY_BASE_MS`,
/// so no wait is longer than its 25 times, 250 ms), no `HERALD_KEY`.
pub fn publisher(program: impl AsRef<OsStr>, url: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HERALD_KEY")
        .env("HERALD_URL", url)
        .env("HERALD_RETRY_BASE_MS", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// How a publisher ended and what it printed.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end; fails the test after [`PUBLISHER_WAIT`].
pub async fn run(what: &str, cmd: &mut Command) -> Ran {
    let output = match tokio::time::timeout(PUBLISHER_WAIT, cmd.output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("{what} could not start: {e}")),
        Err(_) => panic!("{what} still running after {PUBLISHER_WAIT:?}"),
    };
    Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Against a connection closed unanswered, a 504 and a 503 before the 200,
/// `what` makes one attempt per answer, all with the same body and the
/// same well-formed Idempotency-Key, and none after the 200.
pub async fn assert_retries_until_published(what: &str, publish: impl Fn(&str, &str) -> Command) {
    let stub = Stub::start([
        Answer::Hangup,
        Answer::TimedOut,
        Answer::Unavailable,
        Answer::Published,
    ])
    .await;
    let ran = run(what, &mut publish(&stub.url(), "retried")).await;
    assert!(ran.success, "{what}: {ran:?}");
    let requests = stub.requests();
    assert_eq!(
        requests.len(),
        4,
        "{what}: one attempt per answer, none after the 200: {requests:?}"
    );
    let key = one_key(what, &requests);
    assert!(
        requests
            .iter()
            .all(|r| r.body == requests[0].body && r.body.contains("retried")),
        "{what} (key {key}): the same message every attempt: {requests:?}"
    );
}

/// Against a 503 whose `Retry-After` asks for over a day, then a 200,
/// `what` waits no longer than its cap (25 × `HERALD_RETRY_BASE_MS`, 250 ms
/// here; checked against a generous 10 s) and retries with the same key.
pub async fn assert_a_huge_retry_after_is_capped(
    what: &str,
    publish: impl Fn(&str, &str) -> Command,
) {
    let stub = Stub::start([Answer::UnavailableForADay, Answer::Published]).await;
    let started = Instant::now();
    let ran = run(what, &mut publish(&stub.url(), "capped")).await;
    let took = started.elapsed();
    assert!(ran.success, "{what}: {ran:?}");
    assert!(
        took < Duration::from_secs(10),
        "{what} waited out Retry-After: 100000 for {took:?}"
    );
    let requests = stub.requests();
    assert_eq!(requests.len(), 2, "{what}: {requests:?}");
    one_key(what, &requests);
}

/// Answered 400, `what` fails, says so, and makes no second attempt.
pub async fn assert_one_attempt_on_a_400(what: &str, publish: impl Fn(&str, &str) -> Command) {
    let stub = Stub::start([Answer::BadRequest, Answer::Published]).await;
    let ran = run(what, &mut publish(&stub.url(), "refused")).await;
    assert!(!ran.success, "{what} succeeded on a 400: {ran:?}");
    assert!(
        ran.stderr.contains("400"),
        "{what} does not say 400: {ran:?}"
    );
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "{what} retried a 400: {requests:?}");
}

/// Two messages published by `what` carry two different keys.
pub async fn assert_a_key_per_message(what: &str, publish: impl Fn(&str, &str) -> Command) {
    let stub = Stub::start([Answer::Published, Answer::Published]).await;
    for message in ["first", "second"] {
        let ran = run(what, &mut publish(&stub.url(), message)).await;
        assert!(ran.success, "{what}: {ran:?}");
    }
    let requests = stub.requests();
    assert_eq!(requests.len(), 2, "{what}: {requests:?}");
    let first = one_key(what, &requests[..1]);
    let second = one_key(what, &requests[1..]);
    assert_ne!(first, second, "{what}: two messages, one key");
}

/// The Idempotency-Key every one of `requests` carried: the same on each,
/// 1 to 128 printable ASCII characters, and at least 32 of them (a UUID,
/// or 128 random bits in hex).
fn one_key(what: &str, requests: &[Recorded]) -> String {
    let key = requests
        .first()
        .and_then(|r| r.idempotency_key.clone())
        .unwrap_or_else(|| panic!("{what} sent no Idempotency-Key: {requests:?}"));
    assert!(
        requests
            .iter()
            .all(|r| r.idempotency_key.as_deref() == Some(key.as_str())),
        "{what}: not the same key on every attempt: {requests:?}"
    );
    assert!(
        (32..=128).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "{what}: a malformed or short key {key:?}"
    );
    key
}
