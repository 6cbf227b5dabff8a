//! The console page in a real browser: runs `tests/e2e/console.e2e.js`
//! (playwright-core driving Debian's Chromium, headless) against two herald
//! nodes on a private Redis. Without Chromium or redis-server these tests
//! say so and skip, except in CI (`CI=true`), where they fail. A screenshot
//! is saved to `target/e2e/console.png`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

#[test]
fn the_console_works_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(chromium) = chromium().filter(|_| have("redis-server") && have("node")) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Chromium, redis-server and node are required in CI (see .ci/run)");
        }
        eprintln!("SKIPPED: the browser tests need /usr/bin/chromium, redis-server and node");
        return;
    };
    let e2e = root.join("tests/e2e");
    if !e2e.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&e2e)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/e2e failed");
    }
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
