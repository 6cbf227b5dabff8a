//! Runs the browser client's own unit tests (`tests/js`, Node's test runner),
//! so the one `cargo test` command covers them too.

use std::path::Path;
use std::process::Command;

#[test]
fn browser_client_unit_tests_pass_under_node() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("node")
        .arg("--test")
        .arg(root.join("tests/js"))
        .output()
        .expect("`node` (Node.js 18 or newer) must be installed to test the browser client");
    assert!(
        output.status.success(),
        "browser client tests failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
