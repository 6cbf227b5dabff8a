//! herald in a real browser (playwright-core driving Debian's Chromium,
//! headless):
//! - `tests/e2e/console.e2e.js`: the console page against two herald nodes
//!   on a private Redis; a screenshot is saved to `target/e2e/console.png`;
//! - `tests/e2e/cross-origin.e2e.js`: pages on other origins over SSE and
//!   long-polling (and refused from an unlisted one), preflights, and
//!   herald.js falling back from the WebSocket to SSE to long-polling and
//!   back, losing and repeating nothing.
//!
//! Without Chromium, node (or redis-server, for the first) these tests say
//! so and skip, except in CI (`CI=true`), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::helpers::or_skip;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// `tests/e2e`, with playwright-core installed (once, whichever test asks
/// first; the others wait for it).
fn e2e_dir() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
            if !e2e.join("node_modules/playwright-core").exists() {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--silent"])
                    .current_dir(&e2e)
                    .status()
                    .expect("npm runs");
                assert!(status.success(), "npm ci in tests/e2e failed");
            }
            e2e
        })
        .clone()
}

#[test]
fn the_console_works_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(chromium) = or_skip(
        chromium().filter(|_| have("redis-server") && have("node")),
        "Chromium, redis-server and node are required in CI (see .ci/run)",
        "SKIPPED: the browser tests need /usr/bin/chromium, redis-server and node",
    ) else {
        return;
    };
    let e2e = e2e_dir();
    let screenshot = root.join("target/e2e/console.png");
    let output = Command::new("node")
        .arg(e2e.join("console.e2e.js"))
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT", &screenshot)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("shown as text")
            && stdout.contains("reconnect")
            && stdout.contains("two tabs"),
        "{stdout}"
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
}

#[test]
fn pages_on_other_origins_and_the_transport_fallback_work_in_a_real_browser() {
    let Some(chromium) = or_skip(
        chromium().filter(|_| have("node")),
        "Chromium and node are required in CI (see .ci/run)",
        "SKIPPED: the browser tests need /usr/bin/chromium and node",
    ) else {
        return;
    };
    let e2e = e2e_dir();
    let output = Command::new("node")
        .arg(e2e.join("cross-origin.e2e.js"))
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "allowed origin receives over SSE and long-polling",
        "preflights for Last-Event-ID are answered",
        "unlisted origin is refused and receives nothing",
        "falls back to SSE",
        "falls back to long-polling",
        "returns to it",
        "arrived once and in order",
        "console shows its transport",
        "reconnect with Last-Event-ID crosses origins",
    ] {
        assert!(stdout.contains(step), "no {step:?} in:\n{stdout}");
    }
}
