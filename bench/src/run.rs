//! One benchmark run: N WebSocket clients, a plan of messages, publishers,
//! and the accounting that proves every expected delivery arrived exactly
//! once and nowhere else.
//!
//! Everything runs on one thread (a `LocalSet`), so the shared state is in
//! `Rc`/`RefCell` with no locks, and the generator's CPU use is one core's.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::publish::Publisher;

mod client;

use client::client;

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// herald's WebSocket protocol.
    Herald,
    /// The subset of herald's protocol the ceiling server speaks: the same
    /// paths and frames, but a client registers by a `register` frame (the
    /// `?id=` of the path registers it without an answer).
    Ceiling,
    /// Engine.IO v4 / Socket.IO 4 over WebSocket.
    Socketio,
}

/// Where one message goes.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    All,
    Client(u32),
    Channel(u32),
}

/// Clients, their channels, and the messages to publish.
pub struct Plan {
    pub clients: usize,
    /// Clients per channel (client i is in channel i / channel_size); 0: none.
    pub channel_size: usize,
    pub messages: Vec<Target>,
}

impl Plan {
    fn channel_of(&self, client: usize) -> Option<u32> {
        (self.channel_size > 0).then(|| (client / self.channel_size) as u32)
    }

    fn addressed(&self, target: Target, client: usize) -> bool {
        match target {
            Target::All => true,
            Target::Client(c) => c as usize == client,
            Target::Channel(c) => self.channel_of(client) == Some(c),
        }
    }

    fn expected(&self) -> u64 {
        let channel_members = |c: u32| {
            let start = c as usize * self.channel_size;
            self.clients.saturating_sub(start).min(self.channel_size) as u64
        };
        self.messages
            .iter()
            .map(|t| match *t {
                Target::All => self.clients as u64,
                Target::Client(_) => 1,
                Target::Channel(c) => channel_members(c),
            })
            .sum()
    }

    /// The form body publishing message `n`, stamped with its send time.
    fn body(&self, n: usize, sent_us: u64) -> String {
        let target = match self.messages[n] {
            Target::All => String::new(),
            Target::Client(c) => format!("&id=c{c}"),
            Target::Channel(c) => format!("&channel=ch{c}"),
        };
        format!("message=m{n}t{sent_us}{target}")
    }
}

/// What the clients saw.
struct Tally {
    unique: u64,
    duplicated: u64,
    misrouted: u64,
    first_publish: Option<Instant>,
    last_delivery: Option<Instant>,
    latency_us: Histogram<u64>,
    /// Per client, one bit per message.
    seen: Vec<Vec<u64>>,
}

struct Shared {
    base: Instant,
    plan: Plan,
    /// The nodes clients connect to, round-robin; publishers POST to the
    /// first.
    nodes: Vec<SocketAddr>,
    /// Clients registered on each node.
    per_node: Vec<Cell<usize>>,
    flavor: Flavor,
    /// The storm scenario: clients watch for the storm and keep their
    /// position.
    storming: bool,
    expected: u64,
    tally: RefCell<Tally>,
    ready: Cell<usize>,
    failed: Cell<usize>,
    changed: Notify,
    /// Storms so far, and the signal that starts one.
    storms: Cell<u32>,
    storm: Notify,
    /// The second octet of this run's loopback source network (see
    /// `client::source`).
    source_net: u8,
    /// Reconnections refused or failed during a storm.
    refused: Cell<u64>,
    /// Clients back with `resumed` (or `reset`) after a storm.
    resumed: Cell<usize>,
    resets: Cell<usize>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// The node client `client` connects to.
    fn node_of(&self, client: usize) -> SocketAddr {
        self.nodes[client % self.nodes.len()]
    }

    /// Counts client `client` as registered.
    fn registered(&self, client: usize) {
        self.ready.set(self.ready.get() + 1);
        let node = &self.per_node[client % self.nodes.len()];
        node.set(node.get() + 1);
        self.changed.notify_waiters();
    }

    /// Counts message `msg` (sent at `sent_us`) as received by `client` at
    /// `now` (microseconds since `base`, and the instant).
    fn deliver(&self, client: usize, msg: u32, sent_us: u64, now: (u64, Instant)) {
        let (now_us, now) = now;
        let mut tally = self.tally.borrow_mut();
        let Some(&target) = self.plan.messages.get(msg as usize) else {
            tally.misrouted += 1;
            return;
        };
        if !self.plan.addressed(target, client) {
            tally.misrouted += 1;
            return;
        }
        let (word, bit) = (msg as usize / 64, 1u64 << (msg % 64));
        let seen = &mut tally.seen[client][word];
        if *seen & bit != 0 {
            tally.duplicated += 1;
            return;
        }
        *seen |= bit;
        tally.unique += 1;
        let _ = tally
            .latency_us
            .record(now_us.saturating_sub(sent_us).max(1));
        tally.last_delivery = Some(now);
        if tally.unique == self.expected {
            self.changed.notify_waiters();
        }
    }
}

/// The result of a run, one JSON line.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub server: String,
    pub scenario: String,
    pub clients: usize,
    pub messages: usize,
    pub publishers: usize,
    pub channel_size: usize,
    /// Nodes the clients were spread over, and how many registered on each
    /// (in the order of `--addr`; publishers POST to the first).
    pub nodes: usize,
    pub clients_per_node: Vec<usize>,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub misrouted: u64,
    pub failed_clients: usize,
    pub duration_s: f64,
    pub deliveries_per_s: f64,
    pub messages_per_s: f64,
    pub connects_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Publish round trips (POST sent to answer read), in microseconds:
    /// how long a main site waits on the server while it fans out.
    pub post_p50_us: u64,
    pub post_p99_us: u64,
    /// Resident memory summed over every server process given
    /// (`rss_processes` of them: one per node).
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_processes: usize,
    pub rss_per_connection_bytes: u64,
    /// Idle scenario: the server's CPU over the hold (share of one core),
    /// all of it heartbeats and timers.
    pub server_idle_cpu: f64,
    /// The server's CPU over the measured phase, the same span as
    /// `generator_cpu` (the publishes; the connects when nothing is
    /// published, and in the idle scenario the hold after them too), as a
    /// share of one core summed over its processes: near 1.0 the server is
    /// what bounds the run.
    pub server_cpu: f64,
    /// The generator's own CPU over the measured phase (`getrusage`), as a
    /// share of its one core; above 0.9 the run is invalid.
    pub generator_cpu: f64,
    /// Storm scenario: seconds from the storm until every client was back
    /// and resumed; reconnections refused meanwhile; resumes that reset.
    pub storm_recovery_s: f64,
    pub storm_refused: u64,
    pub storm_resets: usize,
    pub valid: bool,
    pub note: String,
}

/// Settings of one run.
pub struct Options {
    /// Where publishers POST, and the first node clients connect to.
    pub server: SocketAddr,
    /// Further nodes of the same cluster: clients are spread round-robin
    /// over `server` and these.
    pub more_nodes: Vec<SocketAddr>,
    pub flavor: Flavor,
    /// The server's processes (one per node), whose memory is summed.
    pub server_pids: Vec<u32>,
    pub connect_concurrency: usize,
    pub publishers: usize,
    /// Messages per second for the paced scenario; 0: as fast as possible.
    pub rate: f64,
    /// How long to wait for the last deliveries after the last publish.
    pub drain: Duration,
    /// For the idle scenario: how long to hold the connections before
    /// measuring memory.
    pub hold: Duration,
}

/// Reads a process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory summed over processes, in KiB.
fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().map(|&pid| rss_kib(pid)).sum()
}

/// CPU time used by this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time the server process has used, all threads (utime + stime from
/// /proc/<pid>/stat, in USER_HZ ticks of 10 ms).
pub fn server_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Waits until `done` holds, or `timeout` passes without `progress` moving.
async fn wait_until(
    shared: &Shared,
    timeout: Duration,
    done: impl Fn(&Shared) -> bool,
    progress: impl Fn(&Shared) -> u64,
) -> bool {
    let mut last = progress(shared);
    loop {
        if done(shared) {
            return true;
        }
        let notified = shared.changed.notified();
        if done(shared) {
            return true;
        }
        if tokio::time::timeout(timeout, notified).await.is_err() {
            let now = progress(shared);
            if now == last {
                return done(shared);
            }
            last = now;
        }
    }
}

/// Runs one scenario and reports it. `scenario` names it in the report.
pub async fn run(scenario: &str, label: &str, plan: Plan, opts: Options) -> Report {
    let mut report = Report {
        server: label.to_owned(),
        scenario: scenario.to_owned(),
        clients: plan.clients,
        messages: plan.messages.len(),
        publishers: opts.publishers,
        channel_size: plan.channel_size,
        rss_processes: opts.server_pids.len(),
        ..Report::default()
    };
    let words = plan.messages.len().div_ceil(64).max(1);
    let expected = plan.expected();
    report.expected = expected;
    let shared = Rc::new(Shared {
        base: Instant::now(),
        expected,
        tally: RefCell::new(Tally {
            unique: 0,
            duplicated: 0,
            misrouted: 0,
            first_publish: None,
            last_delivery: None,
            latency_us: Histogram::new(3).expect("histogram"),
            seen: vec![vec![0u64; words]; plan.clients],
        }),
        nodes: std::iter::once(opts.server)
            .chain(opts.more_nodes.iter().copied())
            .collect(),
        per_node: (0..=opts.more_nodes.len()).map(|_| Cell::new(0)).collect(),
        flavor: opts.flavor,
        storming: scenario == "storm",
        plan,
        ready: Cell::new(0),
        failed: Cell::new(0),
        changed: Notify::new(),
        storms: Cell::new(0),
        storm: Notify::new(),
        source_net: client::source_net(),
        refused: Cell::new(0),
        resumed: Cell::new(0),
        resets: Cell::new(0),
    });
    report.rss_before_kib = total_rss_kib(&opts.server_pids);
    // Summed over every server process (both nodes of a cluster).
    let servers_cpu = |pids: &[u32]| {
        pids.iter()
            .map(|&p| server_cpu(p))
            .sum::<Option<Duration>>()
            .filter(|_| !pids.is_empty())
    };
    let server_cpu_start = servers_cpu(&opts.server_pids);
    let cpu_start = cpu_time();
    let wall_start = Instant::now();

    // Connect and register every client.
    let admission = Rc::new(Semaphore::new(opts.connect_concurrency));
    let connect_start = Instant::now();
    let mut tasks = Vec::with_capacity(shared.plan.clients);
    for idx in 0..shared.plan.clients {
        let shared = shared.clone();
        let admission = admission.clone();
        tasks.push(tokio::task::spawn_local(async move {
            if let Err(e) = client(shared.clone(), idx, admission).await {
                if shared.failed.get() == 0 {
                    eprintln!("client {idx}: {e}");
                }
                shared.failed.set(shared.failed.get() + 1);
                shared.changed.notify_waiters();
            }
        }));
    }
    let n = shared.plan.clients;
    let all_ready = wait_until(
        &shared,
        Duration::from_secs(10),
        |s| s.ready.get() == n || s.failed.get() > 0,
        |s| s.ready.get() as u64,
    )
    .await;
    let connect_elapsed = connect_start.elapsed().as_secs_f64();
    report.connects_per_s = shared.ready.get() as f64 / connect_elapsed.max(1e-9);
    if !all_ready || shared.ready.get() < n {
        report.note = format!("only {} of {n} clients registered", shared.ready.get());
    }

    if scenario == "idle" {
        let before = servers_cpu(&opts.server_pids);
        let held = Instant::now();
        tokio::time::sleep(opts.hold).await;
        let after = servers_cpu(&opts.server_pids);
        if let (Some(before), Some(after)) = (before, after) {
            let used = after.saturating_sub(before).as_secs_f64();
            report.server_idle_cpu = used / held.elapsed().as_secs_f64().max(1e-9);
        }
    }
    report.rss_after_kib = total_rss_kib(&opts.server_pids);
    if n > 0 {
        let grown = report.rss_after_kib.saturating_sub(report.rss_before_kib) * 1024;
        report.rss_per_connection_bytes = grown / n as u64;
    }

    // Publish. The generator's CPU share is measured over this phase, when
    // there is one: it is where the figures come from.
    let total = shared.plan.messages.len();
    let mut phase_start = (cpu_start, wall_start);
    let mut server_phase_start = server_cpu_start;
    if total > 0 && shared.failed.get() == 0 {
        server_phase_start = servers_cpu(&opts.server_pids);
        phase_start = (cpu_time(), Instant::now());
        shared.tally.borrow_mut().first_publish = Some(Instant::now());
        let next = Rc::new(Cell::new(0usize));
        let posts = Rc::new(RefCell::new(Histogram::<u64>::new(3).expect("histogram")));
        let publishers = opts.publishers.max(1);
        let interval =
            (opts.rate > 0.0).then(|| Duration::from_secs_f64(publishers as f64 / opts.rate));
        let mut handles = Vec::new();
        for _ in 0..publishers {
            let shared = shared.clone();
            let next = next.clone();
            let posts = posts.clone();
            handles.push(tokio::task::spawn_local(async move {
                let mut publisher = Publisher::connect(shared.nodes[0]).await?;
                let mut ticker = interval.map(tokio::time::interval);
                loop {
                    let n = next.get();
                    if n >= total {
                        return Ok::<_, io::Error>(());
                    }
                    next.set(n + 1);
                    if let Some(ticker) = ticker.as_mut() {
                        ticker.tick().await;
                    }
                    let body = shared.plan.body(n, shared.now_us());
                    let sent = Instant::now();
                    publisher.post(&body).await?;
                    let took = sent.elapsed().as_micros() as u64;
                    // Saturated at an hour: a round trip is never longer.
                    let _ = posts.borrow_mut().record(took.clamp(1, 3_600_000_000));
                }
            }));
        }
        if scenario == "storm" {
            // Halfway through the publishes, every client drops at once.
            while next.get() < total / 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let storm_at = Instant::now();
            shared.storms.set(shared.storms.get() + 1);
            shared.storm.notify_waiters();
            let clients = shared.plan.clients;
            wait_until(
                &shared,
                Duration::from_secs(30),
                |s| s.resumed.get() >= clients,
                |s| s.resumed.get() as u64,
            )
            .await;
            report.storm_recovery_s = storm_at.elapsed().as_secs_f64();
            if shared.resumed.get() < clients {
                report.note = format!(
                    "only {} of {clients} clients came back",
                    shared.resumed.get()
                );
            }
        }
        for handle in handles {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => report.note = format!("publisher: {e}"),
                Err(e) => report.note = format!("publisher task: {e}"),
            }
        }
        {
            let posts = posts.borrow();
            if !posts.is_empty() {
                report.post_p50_us = posts.value_at_quantile(0.50);
                report.post_p99_us = posts.value_at_quantile(0.99);
            }
        }
        wait_until(
            &shared,
            opts.drain,
            |s| s.tally.borrow().unique >= s.expected,
            |s| s.tally.borrow().unique,
        )
        .await;
    }

    let phase_end = shared
        .tally
        .borrow()
        .last_delivery
        .unwrap_or_else(Instant::now);
    let wall = phase_end.saturating_duration_since(phase_start.1);
    let cpu = cpu_time().saturating_sub(phase_start.0);
    report.generator_cpu = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    if let (Some(before), Some(after)) = (server_phase_start, servers_cpu(&opts.server_pids)) {
        // Read now, a moment after the phase's end: CPU time is counted in
        // 10 ms ticks, far coarser than that moment.
        report.server_cpu =
            after.saturating_sub(before).as_secs_f64() / wall.as_secs_f64().max(1e-9);
    }
    report.failed_clients = shared.failed.get();
    report.nodes = shared.nodes.len();
    report.clients_per_node = shared.per_node.iter().map(Cell::get).collect();
    for task in tasks {
        task.abort();
    }
    let tally = shared.tally.borrow();
    report.delivered = tally.unique;
    report.duplicated = tally.duplicated;
    report.misrouted = tally.misrouted;
    report.lost = expected.saturating_sub(tally.unique);
    if let (Some(first), Some(last)) = (tally.first_publish, tally.last_delivery) {
        let secs = last
            .saturating_duration_since(first)
            .as_secs_f64()
            .max(1e-9);
        report.duration_s = secs;
        report.deliveries_per_s = tally.unique as f64 / secs;
        report.messages_per_s = total as f64 / secs;
    }
    let h = &tally.latency_us;
    if !h.is_empty() {
        report.p50_us = h.value_at_quantile(0.50);
        report.p99_us = h.value_at_quantile(0.99);
        report.p999_us = h.value_at_quantile(0.999);
        report.max_us = h.max();
    }
    report.storm_refused = shared.refused.get();
    report.storm_resets = shared.resets.get();
    let clean = report.lost == 0
        && report.duplicated == 0
        && report.misrouted == 0
        && report.storm_resets == 0;
    let cpu_ok = report.generator_cpu <= 0.9;
    report.valid = clean && cpu_ok && report.failed_clients == 0 && report.note.is_empty();
    if !cpu_ok {
        report.note = format!(
            "generator CPU {:.0}% of its core: figures not trusted",
            report.generator_cpu * 100.0
        );
    }
    report
}

/// Builds the message plan of a scenario.
pub fn plan(scenario: &str, clients: usize, messages: usize, channel_size: usize) -> Plan {
    let mut rng = rand::thread_rng();
    let targets = match scenario {
        "broadcast" | "paced" | "storm" => vec![Target::All; messages],
        "direct" => (0..messages)
            .map(|_| Target::Client(rng.gen_range(0..clients.max(1)) as u32))
            .collect(),
        "channel" => {
            let channels = clients.div_ceil(channel_size.max(1)).max(1);
            (0..messages)
                .map(|_| Target::Channel(rng.gen_range(0..channels) as u32))
                .collect()
        }
        _ => Vec::new(), // idle, connect
    };
    Plan {
        clients,
        channel_size: if scenario == "channel" {
            channel_size
        } else {
            0
        },
        messages: targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_deliveries_follow_the_targets() {
        let plan = Plan {
            clients: 10,
            channel_size: 4,
            messages: vec![
                Target::All,
                Target::Client(3),
                Target::Channel(2),
                Target::Channel(0),
            ],
        };
        // Channel 2 holds clients 8 and 9 only.
        assert_eq!(plan.expected(), 10 + 1 + 2 + 4);
        assert!(plan.addressed(Target::Channel(2), 9));
        assert!(!plan.addressed(Target::Channel(2), 7));
        assert_eq!(plan.body(1, 77), "message=m1t77&id=c3");
    }

    #[test]
    fn the_cpu_time_of_a_process_is_read_from_proc() {
        let mine = server_cpu(std::process::id()).expect("our own /proc/<pid>/stat");
        // Burn a little CPU: the figure moves.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let later = server_cpu(std::process::id()).expect("our own /proc/<pid>/stat");
        assert!(later > mine, "{later:?} after {mine:?}");
        assert!(server_cpu(u32::MAX).is_none());
    }
}
