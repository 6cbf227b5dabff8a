//! A soak run: herald under a steady mix of traffic for a set time, then
//! every client leaves and the server must be back where it started.
//!
//! - *Stayers* connect at the start, each registered as `s<i>` and in
//!   channel `ch<i % channels>`, and read everything until the end: every
//!   message addressed to them must arrive exactly once.
//! - *Churners* come and go all the time (`churn_per_sec`): some register,
//!   some subscribe and unsubscribe by frame, some close cleanly and some
//!   just drop the TCP connection.
//! - *Slow readers* read one frame every `SLOW_READ_PAUSE` through a small
//!   receive buffer and come back whenever herald ends them (its heartbeat
//!   timeout, since their pong waits behind their backlog, or the
//!   slow-consumer close 4003); how each ended is counted.
//! - One publisher POSTs at `publish_per_sec`, in turn a broadcast, a
//!   direct message (to a stayer or a churner) and a channel message.
//!
//! Every `sample_every` the server's RSS and open file descriptors (from
//! `/proc/<pid>`) and its sessions, ids and channels (from `/health`) are
//! recorded. At the end the clients leave and the same figures are read
//! once the sessions are gone: sessions, ids and channels must be 0 and the
//! file descriptors back to their baseline. RSS stays near its peak (the
//! allocator keeps freed memory for reuse), so a leak is looked for as
//! growth over the second half of the run instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::publish::Publisher;

/// How long a slow reader waits between two frames.
const SLOW_READ_PAUSE: Duration = Duration::from_millis(250);
/// A slow reader's socket receive buffer, in bytes.
const SLOW_RECV_BUFFER: u32 = 4096;
/// The longest a churner stays.
const CHURN_MAX_STAY: Duration = Duration::from_secs(3);
/// RSS growth allowed over the second half of a run beyond the history's,
/// in KiB: well under what keeping every churned session would cost.
const LEAK_SLACK_KIB: u64 = 8 * 1024;
/// How long the clients may take to leave, and the server to notice.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SoakOptions {
    pub server: SocketAddr,
    pub server_pid: u32,
    pub duration: Duration,
    pub stayers: usize,
    pub channels: usize,
    pub churn_per_sec: f64,
    pub publish_per_sec: f64,
    pub slow_readers: usize,
    pub sample_every: Duration,
}

/// The server's state at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub sessions: u64,
    pub ids: u64,
    pub channels: u64,
    pub history_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub stayers: usize,
    pub published: u64,
    /// Deliveries owed to stayers, made, lost, doubled.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Stayers the server closed or that failed (must be 0).
    pub stayers_dropped: usize,
    pub churn_sessions: u64,
    pub churn_failed: u64,
    pub slow_sessions: u64,
    /// How slow readers' sessions ended before the run did: by close code
    /// (4003: dropped as a slow consumer), or `eof` without a close frame.
    pub slow_ended: std::collections::BTreeMap<String, u64>,
    pub baseline: Sample,
    pub peak: Sample,
    pub end: Sample,
    pub samples: Vec<Sample>,
    pub valid: bool,
    pub note: String,
}

/// What the stayers received: per stayer, message number → times seen.
struct Shared {
    options: SoakOptions,
    start: Instant,
    stop: Cell<bool>,
    leave: Cell<bool>,
    received: RefCell<Vec<HashMap<u64, u32>>>,
    registered: Cell<usize>,
    stayers_dropped: Cell<usize>,
    live_clients: Cell<usize>,
    churn_sessions: Cell<u64>,
    churn_failed: Cell<u64>,
    slow_sessions: Cell<u64>,
    slow_ended: RefCell<std::collections::BTreeMap<String, u64>>,
}

pub async fn soak(options: SoakOptions) -> SoakReport {
    let shared = Rc::new(Shared {
        received: RefCell::new(vec![HashMap::new(); options.stayers]),
        options,
        start: Instant::now(),
        stop: Cell::new(false),
        leave: Cell::new(false),
        registered: Cell::new(0),
        stayers_dropped: Cell::new(0),
        live_clients: Cell::new(0),
        churn_sessions: Cell::new(0),
        churn_failed: Cell::new(0),
        slow_sessions: Cell::new(0),
        slow_ended: RefCell::default(),
    });
    let mut report = SoakReport {
        stayers: shared.options.stayers,
        ..SoakReport::default()
    };
    match sample(&shared).await {
        Ok(s) => report.baseline = s,
        Err(e) => return invalid(report, format!("no baseline: {e}")),
    }

    for i in 0..shared.options.stayers {
        tokio::task::spawn_local(stayer(shared.clone(), i));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.registered.get() < shared.options.stayers {
        if Instant::now() > deadline {
            return invalid(report, "stayers did not all register within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for j in 0..shared.options.slow_readers {
        tokio::task::spawn_local(slow_reader(shared.clone(), j));
    }
    tokio::task::spawn_local(churn(shared.clone()));
    let publisher = tokio::task::spawn_local(publish(shared.clone()));

    let mut peak = report.baseline.clone();
    let end_at = shared.start + shared.options.duration;
    while Instant::now() < end_at {
        let next = (Instant::now() + shared.options.sample_every).min(end_at);
        tokio::time::sleep_until(next.into()).await;
        if let Ok(s) = sample(&shared).await {
            if s.rss_kib > peak.rss_kib {
                peak = s.clone();
            }
            report.samples.push(s);
        }
    }
    shared.stop.set(true);
    let expected = match publisher.await {
        Ok(Ok(expected)) => expected,
        Ok(Err(e)) => return invalid(report, format!("publishing failed: {e}")),
        Err(e) => return invalid(report, format!("publisher: {e}")),
    };
    report.published = expected.len() as u64;
    // Let the last messages arrive, then everyone leaves.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < drain_until && tally(&shared, &expected).lost > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counted = tally(&shared, &expected);
    shared.leave.set(true);
    let left_by = Instant::now() + LEAVE_TIMEOUT;
    let mut end = Sample::default();
    loop {
        if let Ok(s) = sample(&shared).await {
            end = s;
            if end.sessions == 0 && shared.live_clients.get() == 0 {
                break;
            }
        }
        if Instant::now() > left_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The kernel may take a moment to close the server's side.
    while end.fds > report.baseline.fds && Instant::now() < left_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(s) = sample(&shared).await {
            end = s;
        }
    }
    report.samples.push(end.clone());
    report.duration_s = shared.start.elapsed().as_secs_f64();
    report.expected = counted.expected;
    report.delivered = counted.delivered;
    report.lost = counted.lost;
    report.duplicated = counted.duplicated;
    report.stayers_dropped = shared.stayers_dropped.get();
    report.churn_sessions = shared.churn_sessions.get();
    report.churn_failed = shared.churn_failed.get();
    report.slow_sessions = shared.slow_sessions.get();
    report.slow_ended = shared.slow_ended.take();
    report.peak = peak;
    report.end = end;
    let mut problems = Vec::new();
    if report.lost > 0 || report.duplicated > 0 {
        problems.push(format!(
            "stayers lost {} and got {} twice",
            report.lost, report.duplicated
        ));
    }
    if report.stayers_dropped > 0 {
        problems.push(format!("{} stayers were dropped", report.stayers_dropped));
    }
    let e = &report.end;
    if e.sessions != 0 || e.ids != 0 || e.channels != 0 {
        problems.push(format!(
            "after everyone left: {} sessions, {} ids, {} channels",
            e.sessions, e.ids, e.channels
        ));
    }
    if e.fds > report.baseline.fds {
        problems.push(format!(
            "{} file descriptors open after everyone left, {} before anyone came",
            e.fds, report.baseline.fds
        ));
    }
    // Memory freed when clients leave stays with the allocator for reuse,
    // so RSS does not fall back to its baseline; a leak shows instead as
    // growth while the traffic is steady. Over the second half of the run,
    // RSS may grow by what the (bounded) history grew, plus some slack.
    let during = &report.samples[..report.samples.len().saturating_sub(1)];
    if let (Some(half), Some(last)) = (during.get(during.len() / 2), during.last()) {
        let grown = last.rss_kib.saturating_sub(half.rss_kib);
        let history = last.history_bytes.saturating_sub(half.history_bytes) / 1024;
        if grown > history + LEAK_SLACK_KIB {
            problems.push(format!(
                "RSS grew by {grown} KiB over the second half of the run (history by {history} KiB)"
            ));
        }
    }
    if report.churn_sessions == 0 || report.published == 0 {
        problems.push("no churn or no publishes: the run did not exercise anything".into());
    }
    report.valid = problems.is_empty();
    report.note = problems.join("; ");
    report
}

fn invalid(mut report: SoakReport, note: String) -> SoakReport {
    report.valid = false;
    report.note = note;
    report
}

struct Counted {
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
}

/// Compares what each stayer received with what was published to it.
/// `expected` holds, per message, the stayers it was addressed to.
fn tally(shared: &Shared, expected: &[(u64, Vec<usize>)]) -> Counted {
    let received = shared.received.borrow();
    let mut counted = Counted {
        expected: 0,
        delivered: 0,
        lost: 0,
        duplicated: 0,
    };
    for (n, stayers) in expected {
        for &i in stayers {
            counted.expected += 1;
            match received[i].get(n).copied().unwrap_or(0) {
                0 => counted.lost += 1,
                1 => counted.delivered += 1,
                more => {
                    counted.delivered += 1;
                    counted.duplicated += u64::from(more - 1);
                }
            }
        }
    }
    counted
}

async fn sample(shared: &Shared) -> io::Result<Sample> {
    let pid = shared.options.server_pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let health = get_json(shared.options.server, "/health").await?;
    let field = |name: &str| health[name].as_u64().unwrap_or(0);
    Ok(Sample {
        t_s: (shared.start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        rss_kib,
        fds,
        sessions: field("sessions"),
        ids: field("ids"),
        channels: field("channels"),
        history_bytes: field("history_bytes"),
    })
}

/// `GET path` on a fresh connection; the JSON body.
async fn get_json(server: SocketAddr, path: &str) -> io::Result<serde_json::Value> {
    let mut stream = TcpStream::connect(server).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .map_err(|_| io::Error::other("no answer within 5 s"))??;
    let body = crate::wire::find(&reply, b"\r\n\r\n")
        .map(|end| &reply[end + 4..])
        .ok_or_else(|| io::Error::other("no HTTP body"))?;
    serde_json::from_slice(body).map_err(io::Error::other)
}

type Ws = WebSocketStream<TcpStream>;

async fn open(server: SocketAddr, path: &str, recv_buffer: Option<u32>) -> io::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(server).await?;
    let url = format!("ws://{server}{path}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(io::Error::other)?;
    Ok(ws)
}

/// The message number in a frame published by [`publish`] (`"p<n>"`).
fn message_number(text: &str) -> Option<u64> {
    let frame: serde_json::Value = serde_json::from_str(text).ok()?;
    if frame["type"] != "message" {
        return None;
    }
    frame["data"].as_str()?.strip_prefix('p')?.parse().ok()
}

struct Live(Rc<Shared>);

impl Live {
    fn new(shared: &Rc<Shared>) -> Self {
        shared.live_clients.set(shared.live_clients.get() + 1);
        Self(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live_clients.set(self.0.live_clients.get() - 1);
    }
}

async fn stayer(shared: Rc<Shared>, i: usize) {
    let _live = Live::new(&shared);
    let channel = i % shared.options.channels.max(1);
    let path = format!("/ws?id=s{i}&channel=ch{channel}");
    let Ok(mut ws) = open(shared.options.server, &path, None).await else {
        shared.stayers_dropped.set(shared.stayers_dropped.get() + 1);
        return;
    };
    let mut counted = false;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        if shared.leave.get() {
            let _ = ws.close(None).await;
            return;
        }
        match next {
            Err(_) => continue, // only to look at `leave`
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Some(n) = message_number(&text) {
                    *shared.received.borrow_mut()[i].entry(n).or_insert(0) += 1;
                } else if !counted && text.contains("\"subscribed\"") {
                    counted = true;
                    shared.registered.set(shared.registered.get() + 1);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => {
                shared.stayers_dropped.set(shared.stayers_dropped.get() + 1);
                return;
            }
        }
    }
}

async fn slow_reader(shared: Rc<Shared>, j: usize) {
    let _live = Live::new(&shared);
    while !shared.leave.get() {
        let path = format!("/ws?id=slow{j}");
        let Ok(mut ws) = open(shared.options.server, &path, Some(SLOW_RECV_BUFFER)).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        shared.slow_sessions.set(shared.slow_sessions.get() + 1);
        loop {
            if shared.leave.get() {
                let _ = ws.close(None).await;
                return;
            }
            tokio::time::sleep(SLOW_READ_PAUSE).await;
            match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                Err(_) | Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map_or("none".to_owned(), |f| u16::from(f.code).to_string());
                    *shared.slow_ended.borrow_mut().entry(code).or_insert(0) += 1;
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => {
                    *shared
                        .slow_ended
                        .borrow_mut()
                        .entry("eof".into())
                        .or_insert(0) += 1;
                    break;
                }
            }
        }
    }
}

async fn churn(shared: Rc<Shared>) {
    let every = Duration::from_secs_f64(1.0 / shared.options.churn_per_sec.max(0.1));
    let mut tick = tokio::time::interval(every);
    let mut j = 0u64;
    while !shared.stop.get() {
        tick.tick().await;
        j += 1;
        tokio::task::spawn_local(churner(shared.clone(), j));
    }
}

async fn churner(shared: Rc<Shared>, j: u64) {
    let _live = Live::new(&shared);
    let (stay, channel, style) = {
        let mut rng = rand::thread_rng();
        (
            Duration::from_millis(rng.gen_range(100..CHURN_MAX_STAY.as_millis() as u64)),
            rng.gen_range(0..shared.options.channels.max(1)),
            rng.gen_range(0..4u8),
        )
    };
    let path = match style {
        0 => "/ws".to_owned(),
        _ => format!("/ws?id=c{}", j % 100),
    };
    let Ok(mut ws) = open(shared.options.server, &path, None).await else {
        shared.churn_failed.set(shared.churn_failed.get() + 1);
        return;
    };
    shared.churn_sessions.set(shared.churn_sessions.get() + 1);
    let subscribe = format!(r#"{{"type":"subscribe","channel":"ch{channel}"}}"#);
    if ws.send(Message::text(subscribe)).await.is_err() {
        return;
    }
    let until = Instant::now() + stay;
    let mut unsubscribed = false;
    while Instant::now() < until && !shared.leave.get() {
        match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_))) | Ok(None) => return,
        }
        if !unsubscribed && style == 2 && Instant::now() + stay / 2 > until {
            unsubscribed = true;
            let frame = format!(r#"{{"type":"unsubscribe","channel":"ch{channel}"}}"#);
            let _ = ws.send(Message::text(frame)).await;
        }
    }
    if style == 3 {
        // Gone without a word: the TCP connection just closes.
        drop(ws);
    } else {
        let _ = ws.close(None).await;
        // Read until the server's close answer.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// Publishes until `stop`; returns, per message, the stayers it was for.
async fn publish(shared: Rc<Shared>) -> io::Result<Vec<(u64, Vec<usize>)>> {
    let mut publisher = Publisher::connect(shared.options.server).await?;
    let every = Duration::from_secs_f64(1.0 / shared.options.publish_per_sec.max(0.1));
    let mut tick = tokio::time::interval(every);
    let stayers = shared.options.stayers;
    let channels = shared.options.channels.max(1);
    let mut expected = Vec::new();
    let mut n = 0u64;
    while !shared.stop.get() {
        tick.tick().await;
        let pick = rand::thread_rng().gen_range(0..stayers.max(1));
        let (target, to) = match n % 4 {
            0 => (String::new(), (0..stayers).collect()),
            1 => (format!("&id=s{pick}"), vec![pick]),
            2 => (format!("&id=c{}", n % 100), Vec::new()),
            _ => {
                let c = pick % channels;
                let members = (0..stayers).filter(|i| i % channels == c).collect();
                (format!("&channel=ch{c}"), members)
            }
        };
        publisher.post(&format!("message=p{n}{target}")).await?;
        expected.push((n, to));
        n += 1;
    }
    Ok(expected)
}
