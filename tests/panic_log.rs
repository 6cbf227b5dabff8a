//! With `log_format = "json"`, a panic is one JSON line on stderr, whatever
//! `RUST_LOG` filters (as the default hook prints whatever it filters).
//! Runs itself as a child process, since a panic hook is process-wide.

use std::process::{Command, ExitCode};

use herald::config::LogFormat;

const CHILD: &str = "HERALD_PANIC_LOG_CHILD";

fn main() -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        herald::logging::init(LogFormat::Json);
        let _ = std::thread::spawn(|| panic!("a test panic\nwith a second line")).join();
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("the test binary");
    for filter in ["", "info", "herald=debug", "off"] {
        let output = Command::new(&exe)
            .env(CHILD, "1")
            .env("RUST_LOG", filter)
            .output()
            .expect("the child runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "RUST_LOG={filter:?}: {stderr}");
        let line: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("RUST_LOG={filter:?}: not JSON ({e}): {stderr}"));
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["target"], "panic", "{line}");
        let message = line["message"].as_str().expect("a message");
        assert!(
            message.contains("a test panic\nwith a second line")
                && message.contains("panic_log.rs"),
            "{line}"
        );
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    println!("panic_log: ok (4 RUST_LOG filters)");
    ExitCode::SUCCESS
}
