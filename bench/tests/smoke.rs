//! A short run of the load generator against herald (started in-process)
//! and the reference server (the built binary): it checks the generator and
//! the zero-loss rule, not timings.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_bench::run::{self, Flavor, Options, Report};

fn options(server: SocketAddr) -> Options {
    Options {
        server,
        flavor: Flavor::Herald,
        server_pid: None,
        connect_concurrency: 64,
        publishers: 2,
        rate: 0.0,
        drain: Duration::from_secs(5),
        hold: Duration::ZERO,
    }
}

async fn scenarios(server: SocketAddr, label: &str) {
    let cases = [
        ("broadcast", 50, 40, 0),
        ("direct", 50, 200, 0),
        ("channel", 60, 100, 20),
        ("connect", 40, 0, 0),
        ("storm", 50, 60, 0),
    ];
    for (scenario, clients, messages, channel_size) in cases {
        if scenario == "storm" && label != "herald" {
            continue; // resuming is herald's protocol
        }
        let plan = run::plan(scenario, clients, messages, channel_size);
        let mut opts = options(server);
        if scenario == "storm" {
            opts.rate = 100.0;
        }
        let report: Report = run::run(scenario, label, plan, opts).await;
        assert_eq!(report.failed_clients, 0, "{label} {scenario}: {report:?}");
        assert_eq!(
            (report.lost, report.duplicated, report.misrouted),
            (0, 0, 0),
            "{label} {scenario}: {report:?}"
        );
        assert_eq!(report.delivered, report.expected, "{label} {scenario}");
        assert_eq!(report.storm_resets, 0, "{label} {scenario}: {report:?}");
        // (The CPU share is not checked: herald shares this test's process.)
        assert!(
            !report.note.contains("registered"),
            "{label} {scenario}: {}",
            report.note
        );
    }
}

#[actix_web::test]
async fn the_generator_counts_every_delivery_against_herald() {
    let config = herald::Config {
        port: 0,
        workers: 1,
        ..herald::Config::default()
    };
    let app = herald::Application::build(config)
        .await
        .expect("herald starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    actix_web::rt::spawn(app.run_until_stopped());
    let local = tokio::task::LocalSet::new();
    local.run_until(scenarios(addr, "herald")).await;
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn the_generator_counts_every_delivery_against_the_reference_server() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_reference-server"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("reference server starts");
    let _guard = Kill(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let local = tokio::task::LocalSet::new();
    local.run_until(scenarios(addr, "reference")).await;
}
