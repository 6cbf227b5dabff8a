//! herald-bench: drives a notification server from outside over loopback
//! and reports figures as JSON lines; summarises many runs into Markdown and
//! a chart.
//!
//! ```text
//! herald-bench run --addr 127.0.0.1:8001 --scenario broadcast --clients 1000 --messages 200
//! herald-bench run --addr 127.0.0.1:8101 --addr 127.0.0.1:8102 --scenario direct --messages 5000
//! herald-bench report --input results.jsonl --markdown summary.md --chart chart.svg
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use herald_bench::run::{self, Flavor};
use herald_bench::{report, soak};

#[derive(Parser)]
#[command(about = "Load generator for herald and the servers it is compared with")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario and prints one JSON line.
    Run(RunArgs),
    /// Runs mixed traffic for a while, then checks that the server is back
    /// to its baseline once the clients leave; prints one JSON line.
    Soak(SoakArgs),
    /// Summarises JSON lines into a Markdown table and an SVG chart.
    Report {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        markdown: PathBuf,
        #[arg(long)]
        chart: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The server's address. Given more than once (the nodes of one
    /// cluster, such as herald nodes on one Redis), clients are spread
    /// round-robin over the addresses and publishers POST to the first only.
    #[arg(long = "addr", value_name = "ADDR", default_value = "127.0.0.1:8001", action = clap::ArgAction::Append)]
    addrs: Vec<SocketAddr>,
    /// The protocol it speaks.
    #[arg(long, value_enum, default_value = "herald")]
    flavor: Flavor,
    /// Name of the server in the report.
    #[arg(long, default_value = "herald")]
    label: String,
    /// idle, connect, broadcast, direct, channel or paced.
    #[arg(long)]
    scenario: String,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Concurrent publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Clients per channel (channel scenario).
    #[arg(long, default_value_t = 100)]
    channel_size: usize,
    /// Messages per second (paced scenario).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// The server's process id, to read its memory. Given more than once
    /// (one per node), the report sums their memory (`rss_processes` says
    /// over how many).
    #[arg(long, action = clap::ArgAction::Append)]
    server_pid: Vec<u32>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to hold idle connections before measuring memory.
    #[arg(long, default_value_t = 3)]
    hold_secs: u64,
}

#[derive(clap::Args)]
struct SoakArgs {
    /// herald's address.
    #[arg(long, default_value = "127.0.0.1:8001")]
    addr: SocketAddr,
    /// herald's process id, to read its memory and file descriptors.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// Clients connected throughout, whose deliveries are checked.
    #[arg(long, default_value_t = 200)]
    stayers: usize,
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Short-lived clients started per second.
    #[arg(long, default_value_t = 20.0)]
    churn_rate: f64,
    /// Publishes per second (broadcast, direct, channel in turn).
    #[arg(long, default_value_t = 50.0)]
    publish_rate: f64,
    #[arg(long, default_value_t = 20)]
    slow_readers: usize,
    /// Seconds between two samples of the server's state.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let Some((&server, more_nodes)) = args.addrs.split_first() else {
                eprintln!("herald-bench: no --addr");
                return ExitCode::FAILURE;
            };
            let more_nodes = more_nodes.to_vec();
            on_one_thread(async move {
                let rate = if matches!(args.scenario.as_str(), "paced" | "storm") {
                    args.rate
                } else {
                    0.0
                };
                let plan = run::plan(
                    &args.scenario,
                    args.clients,
                    args.messages,
                    args.channel_size,
                );
                let opts = run::Options {
                    server,
                    more_nodes,
                    flavor: args.flavor,
                    server_pids: args.server_pid,
                    connect_concurrency: args.connect_concurrency,
                    publishers: args.publishers,
                    rate,
                    drain: Duration::from_secs(10),
                    hold: Duration::from_secs(args.hold_secs),
                };
                run::run(&args.scenario, &args.label, plan, opts).await
            })
        }
        Command::Soak(args) => {
            let options = soak::SoakOptions {
                server: args.addr,
                server_pid: args.server_pid,
                duration: Duration::from_secs(args.duration_secs),
                stayers: args.stayers,
                channels: args.channels,
                churn_per_sec: args.churn_rate,
                publish_per_sec: args.publish_rate,
                slow_readers: args.slow_readers,
                sample_every: Duration::from_secs(args.sample_secs.max(1)),
            };
            on_one_thread(soak::soak(options))
        }
        Command::Report {
            input,
            markdown,
            chart,
        } => match report::write(&input, &markdown, &chart) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald-bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A report printed as one JSON line, with its verdict.
trait Outcome: Serialize {
    /// Why the run does not count, if it does not.
    fn failure(&self) -> Option<String>;
}

impl Outcome for run::Report {
    fn failure(&self) -> Option<String> {
        (!self.valid).then(|| format!("invalid run: {}", self.note))
    }
}

impl Outcome for soak::SoakReport {
    fn failure(&self) -> Option<String> {
        (!self.valid).then(|| format!("soak failed: {}", self.note))
    }
}

/// Runs `work` on one thread (the generator's CPU is one core's), prints
/// its report as one JSON line, and exits 3 when the report does not count.
fn on_one_thread(work: impl std::future::Future<Output = impl Outcome>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, work);
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("herald-bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    match report.failure() {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("herald-bench: {failure}");
            ExitCode::from(3)
        }
    }
}
