//! The publishing snippets of `docs/integration.md`: each sends an
//! Idempotency-Key and retries; the page says which answers are safe to
//! retry and with what key; the Python, Node and PHP helpers are, word for
//! word, the functions of the `examples/` scripts (run in `examples.rs`);
//! the curl commands and the Ruby and Go helpers run here against a
//! stand-in for herald. One whose program is missing is skipped with a
//! `SKIPPED` line, and fails the test in CI.

use tokio::process::Command;

use crate::helpers::publisher::{
    assert_a_key_per_message, assert_one_attempt_on_a_400, assert_retries_until_published,
    installed, publisher, run, source_file,
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
        curl.matches("curl --retry 4 --retry-all-errors ").count(),
        commands,
        "every curl command retries: {curl}"
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

#[actix_web::test]
async fn the_curl_commands_retry_with_one_key_per_message_and_stop_at_a_400() {
    let what = "the curl commands of docs/integration.md";
    let needs: &[(&str, &[&str])] = &[
        ("sh", &["-c", "true"]),
        ("curl", &["--version"]),
        ("openssl", &["version"]),
    ];
    if !installed(what, needs) {
        return;
    }
    // Everyone: no answer, 504, 200. User 63: 400. The channel: 503, 200.
    let stub = Stub::start([
        Answer::Hangup,
        Answer::TimedOut,
        Answer::Published,
        Answer::BadRequest,
        Answer::Unavailable,
        Answer::Published,
    ])
    .await;
    let commands = snippet("sh").replace("http://herald.internal:8001/", &stub.url());
    let mut sh = publisher("sh", &stub.url());
    sh.env("HERALD_KEY", "publish-key").arg("-c").arg(&commands);
    let ran = run(what, &mut sh).await;
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
    assert_eq!(keys[4], keys[5], "{keys:?}");
    assert!(
        keys[2] != keys[3] && keys[3] != keys[4] && keys[2] != keys[4],
        "a key per message: {keys:?}"
    );
}

/// Ends the Ruby helper into a script: `ruby <script> <message>` publishes
/// the message to id 63 through herald at `HERALD_URL` and prints the
/// reply, or the error and exits 1.
const RUBY_MAIN: &str = r#"
begin
  puts herald_notify(ARGV[0], id: "63", url: ENV.fetch("HERALD_URL")).to_json
rescue RuntimeError, SystemCallError, IOError, Timeout::Error => e
  warn e.message
  exit 1
end
"#;

#[actix_web::test]
async fn the_ruby_helper_retries_with_one_key_and_stops_at_a_400() {
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
}

/// Ends the Go helper into a program: `notify <message>` publishes the
/// message to id 63 through herald at `HERALD_URL` and prints the reply,
/// or the error and exits 1.
const GO_MAIN: &str = r#"
func main() {
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
async fn the_go_helper_retries_with_one_key_and_stops_at_a_400() {
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
}
