//! The publishing snippets of `docs/integration.md`: each sends an
//! Idempotency-Key and retries; the page says which answers are safe to
//! retry and with what key; the Python, Node and PHP helpers are, word for
//! word, the functions of the `examples/` scripts (run in `examples.rs`);
//! the curl commands and the Ruby and Go helpers run here against a
//! stand-in for herald, which also never answers or asks, with
//! `Retry-After`, for a wait of over a day. One whose program is missing is
//! skipped with a `SKIPPED` line, and fails the test in CI.

use tokio::process::Command;

use crate::helpers::publisher::{
    assert_a_huge_retry_after_is_capped, assert_a_key_per_message, assert_one_attempt_on_a_400,
    assert_retries_until_published, installed, publisher, run, source_file,
};
use crate::helpers::stub::{Answer, Stub};

/// The page's *Publishing* section.
fn publishing_section() -> String {
    let page = std::fs::read_to_string(source_file("docs/integration.md")).expect("the page");
    let start = page.find("## Publishing\n").expect("a Publishing section");
    let end = page[start..]
        .find("\n## ")
        .map_or(page.len(), |len| start + len);
    page[start..end].to_owned()
}

/// How every curl command of the page starts: a 10 s bound on each attempt
/// (so a hung server is a timeout, retried), and a 60 s bound on retrying
/// (so a huge `Retry-After` ends the retries rather than holding curl).
const CURL: &str = "curl -m 10 --retry 4 --retry-all-errors --retry-max-time 60 ";

/// The one fenced block of `lang` in the *Publishing* section.
fn snippet(lang: &str) -> String {
    let section = publishing_section();
    let fence = format!("```{lang}\n");
    let mut blocks = section
        .split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once("```\n").map(|(block, _)| block));
    let block = blocks
        .next()
        .unwrap_or_else(|| panic!("no {lang} block under Publishing"));
    assert!(blocks.next().is_none(), "more than one {lang} block");
    block.to_owned()
}

#[test]
fn every_publishing_snippet_sends_a_key_and_retries_503_and_504() {
    let curl = snippet("sh");
    let commands = curl.matches("curl ").count();
    assert!(commands > 0);
    assert_eq!(
        curl.matches(CURL).count(),
        commands,
        "every curl command bounds its attempts and retries: {curl}"
    );
    assert_eq!(
        curl.matches("Idempotency-Key: $(openssl rand -hex 16)")
            .count(),
        commands,
        "every curl command has its own key: {curl}"
    );
    for lang in ["python", "js", "php", "ruby", "go"] {
        let code = snippet(lang);
        for needed in ["Idempotency-Key", "503", "504", "Retry-After"] {
            assert!(code.contains(needed), "the {lang} helper lacks {needed}");
        }
    }
}

#[test]
fn the_page_says_which_answers_are_safe_to_retry_and_with_what_key() {
    let section = publishing_section();
    let row = |start: &str| {
        section
            .lines()
            .find(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("no row starting {start:?}"))
            .to_owned()
    };
    for (answer, retry) in [
        ("| `503` `broker_unavailable`", "safe even without a key"),
        ("| the connection was refused", "safe even without a key"),
        ("| `504` `broker_timeout`", "only with the same key"),
        (
            "| no answer after the request went out",
            "only with the same key",
        ),
        ("| `400`, `401`, `403`, `413`, `415`, `421`", "never"),
    ] {
        assert!(row(answer).contains(retry), "{answer}: {retry}");
    }
}

#[test]
fn the_python_node_and_php_helpers_are_the_examples_functions() {
    for (lang, file) in [
        ("python", "examples/publish.py"),
        ("js", "examples/publish.js"),
        ("php", "examples/publish.php"),
    ] {
        let example = std::fs::read_to_string(source_file(file)).expect("the example");
        assert!(
            example.contains(&snippet(lang)),
            "the {lang} helper of docs/integration.md is not {file}'s, word for word"
        );
    }
}

/// The page's curl commands as one `sh` script publishing to `stub`, each
/// attempt bounded to 1 s instead of 10 (the test's wait for a hung
/// server).
fn curl_commands(stub: &Stub) -> Option<Command> {
    let what = "the curl commands of docs/integration.md";
    let needs: &[(&str, &[&str])] = &[
        ("sh", &["-c", "true"]),
        ("curl", &["--version"]),
        ("openssl", &["version"]),
    ];
    if !installed(what, needs) {
        return None;
    }
    let commands = snippet("sh")
        .replace("http://herald.internal:8001/", &stub.url())
        .replace(CURL, &CURL.replace("-m 10 ", "-m 1 "));
    let mut sh = publisher("sh", &stub.url());
    sh.env("HERALD_KEY", "publish-key").arg("-c").arg(&commands);
    Some(sh)
}

#[actix_web::test]
async fn the_curl_commands_retry_with_one_key_per_message_and_stop_at_a_400() {
    // Everyone: no answer at all (timed out by -m), 504, 200. User 63: 400.
    // The channel: connection closed unanswered, 503, 200.
    let stub = Stub::start([
        Answer::Silent,
        Answer::TimedOut,
        Answer::Published,
        Answer::BadRequest,
        Answer::Hangup,
        Answer::Unavailable,
        Answer::Published,
    ])
    .await;
    let Some(mut sh) = curl_commands(&stub) else {
        return;
    };
    let ran = run("the curl commands", &mut sh).await;
    assert!(ran.success, "{ran:?}");

    let requests = stub.requests();
    let bodies: Vec<&str> = requests.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "message=Ping",
            "message=Ping",
            "message=Ping",
            r#"{"message": {"event": "order", "id": 17}, "id": "63"}"#,
            "message=Goal&channel=sport",
            "message=Goal&channel=sport",
            "message=Goal&channel=sport",
        ],
        "one attempt per answer; none after a 200 or the 400"
    );
    let keys: Vec<&str> = requests
        .iter()
        .map(|r| {
            r.idempotency_key
                .as_deref()
                .expect("a key on every attempt")
        })
        .collect();
    assert!(keys[0] == keys[1] && keys[1] == keys[2], "{keys:?}");
    assert!(keys[4] == keys[5] && keys[5] == keys[6], "{keys:?}");
    assert!(
        keys[2] != keys[3] && keys[3] != keys[4] && keys[2] != keys[4],
        "a key per message: {keys:?}"
    );
}

#[actix_web::test]
async fn the_curl_commands_give_up_at_once_on_a_retry_after_past_their_retry_max_time() {
    // Each command: 503 with Retry-After: 100000, over --retry-max-time 60.
    let stub = Stub::start([Answer::UnavailableForADay; 3]).await;
    let Some(mut sh) = curl_commands(&stub) else {
        return;
    };
    let ran = run("the curl commands", &mut sh).await;
    assert!(ran.success, "curl printed the 503 and exited 0: {ran:?}");
    assert_eq!(
        ran.stdout.matches("broker_unavailable").count(),
        3,
        "{ran:?}"
    );
    let requests = stub.requests();
    assert_eq!(
        requests.len(),
        3,
        "one attempt per command, none after the wait it was asked for: {requests:?}"
    );
}

/// Ends the Ruby helper into a script: `ruby <script> <message>` publishes
/// the message to id 63 through herald at `HERALD_URL`, with a first retry
/// wait of `HERALD_RETRY_BASE_MS`, and prints the reply, or the error and
/// exits 1.
const RUBY_MAIN: &str = r#"
begin
  base_delay = Integer(ENV.fetch("HERALD_RETRY_BASE_MS")) / 1000.0
  puts herald_notify(ARGV[0], id: "63", url: ENV.fetch("HERALD_URL"), base_delay: base_delay).to_json
rescue RuntimeError, SystemCallError, IOError, Timeout::Error => e
  warn e.message
  exit 1
end
"#;

#[actix_web::test]
async fn the_ruby_helper_retries_with_one_key_stops_at_a_400_and_caps_retry_after() {
    let what = "the Ruby helper of docs/integration.md";
    if !installed(what, &[("ruby", &["--version"])]) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = dir.path().join("notify.rb");
    std::fs::write(&script, snippet("ruby") + RUBY_MAIN).expect("write the script");
    let publish = |url: &str, message: &str| {
        let mut cmd = publisher("ruby", url);
        cmd.arg(&script).arg(message);
        cmd
    };
    assert_retries_until_published(what, publish).await;
    assert_one_attempt_on_a_400(what, publish).await;
    assert_a_key_per_message(what, publish).await;
    assert_a_huge_retry_after_is_capped(what, publish).await;
}

/// Ends the Go helper into a program: `notify <message>` publishes the
/// message to id 63 through herald at `HERALD_URL`, with a first retry
/// wait of `HERALD_RETRY_BASE_MS`, and prints the reply, or the error and
/// exits 1.
const GO_MAIN: &str = r#"
func main() {
	if ms, err := strconv.Atoi(os.Getenv("HERALD_RETRY_BASE_MS")); err == nil {
		retryBase = time.Duration(ms) * time.Millisecond
	}
	reply, err := notify(os.Getenv("HERALD_URL"), map[string]any{"message": os.Args[1], "id": "63"})
	if err == nil {
		var out []byte
		if out, err = json.Marshal(reply); err == nil {
			fmt.Println(string(out))
			return
		}
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
"#;

#[actix_web::test]
async fn the_go_helper_retries_with_one_key_stops_at_a_400_and_caps_retry_after() {
    let what = "the Go helper of docs/integration.md";
    if !installed(what, &[("go", &["version"])]) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let program = format!("package main\n\n{}{GO_MAIN}", snippet("go"));
    std::fs::write(dir.path().join("main.go"), program).expect("write the program");
    let binary = dir.path().join("notify");
    let built = run(
        "go build",
        Command::new("go")
            .current_dir(dir.path())
            .args(["build", "-o"])
            .arg(&binary)
            .arg("main.go")
            .kill_on_drop(true),
    )
    .await;
    assert!(built.success, "the Go helper does not build: {built:?}");
    let publish = |url: &str, message: &str| {
        let mut cmd = publisher(&binary, url);
        cmd.arg(message);
        cmd
    };
    assert_retries_until_published(what, publish).await;
    assert_one_attempt_on_a_400(what, publish).await;
    assert_a_key_per_message(what, publish).await;
    assert_a_huge_retry_after_is_capped(what, publish).await;
}
