//! Where log lines go: standard error, a batch at a time.
//!
//! The thread that logs a line appends it to a buffer in memory; a thread of
//! the sink's own writes what has gathered once it has waited [`LINGER`], so
//! that a crowd of clients connecting (a session line or two each, thousands
//! a second) costs one `write` per batch instead of a system call per line
//! on the worker that serves them. A warning or an error is written at once
//! by the thread that logs it, after every line before it
//! ([`Sink::flush`]), as are the lines still waiting when herald exits or
//! panics. No line is dropped: past [`MAX_PENDING_BYTES`] the logging
//! thread writes the batch itself. What a `SIGKILL` leaves unwritten is at
//! most the last [`LINGER`] of `info` and `debug` lines.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once, PoisonError};
use std::thread;
use std::time::Duration;

/// How long the sink's thread lets lines gather after the first of a batch.
pub const LINGER: Duration = Duration::from_millis(20);

/// The most bytes waiting in memory; the line that reaches it is written
/// with its batch by the thread that logs it.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

/// The most bytes one `write` carries: what a pipe keeps whole when other
/// processes write to the same one (`PIPE_BUF` on Linux), so that lines from
/// herald and from a neighbour sharing its stderr never cut into each other.
pub const MAX_WRITE_BYTES: usize = 4096;

/// Log lines on their way to standard error.
pub struct Sink {
    pending: Mutex<Vec<u8>>,
    /// Signalled when `pending` stops being empty.
    gathered: Condvar,
    /// Held while a batch is written, so that batches leave in the order
    /// they were taken.
    writing: Mutex<()>,
    started: Once,
    /// Whether the sink's thread runs; until it does, lines are written as
    /// they are logged.
    running: AtomicBool,
    /// Writes a batch (standard error, but for tests).
    out: fn(&[u8]),
}

/// The process's one sink.
pub static SINK: Sink = Sink::new(to_stderr);

/// Writes `batch` a few whole lines at a time ([`pieces`]). A failed write
/// (standard error closed) loses the rest of that batch: there is nowhere
/// left to say so.
fn to_stderr(batch: &[u8]) {
    let mut stderr = io::stderr().lock();
    for piece in pieces(batch) {
        if stderr.write_all(piece).is_err() {
            return;
        }
    }
}

/// `batch` cut at line ends into pieces of at most [`MAX_WRITE_BYTES`]; a
/// line longer than that is a piece of its own.
fn pieces(mut batch: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if batch.is_empty() {
            return None;
        }
        let end = if batch.len() <= MAX_WRITE_BYTES {
            batch.len()
        } else {
            let newline = |b: &u8| *b == b'\n';
            match batch[..MAX_WRITE_BYTES].iter().rposition(newline) {
                Some(last) => last + 1,
                // One line longer than a piece: all of it, up to its end.
                None => batch
                    .iter()
                    .position(newline)
                    .map_or(batch.len(), |end| end + 1),
            }
        };
        let (piece, rest) = batch.split_at(end);
        batch = rest;
        Some(piece)
    })
}

impl Sink {
    const fn new(out: fn(&[u8])) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            gathered: Condvar::new(),
            writing: Mutex::new(()),
            started: Once::new(),
            running: AtomicBool::new(false),
            out,
        }
    }

    /// Starts the thread that writes batches (once; later calls do
    /// nothing). Until it runs, or if it cannot be started, every line is
    /// written as it is logged.
    pub fn start(&'static self) {
        self.started.call_once(|| {
            let spawned = thread::Builder::new()
                .name("herald-log".into())
                .spawn(move || self.run());
            match spawned {
                Ok(_) => self.running.store(true, Ordering::Release),
                Err(_) => {
                    eprintln!(
                        "warning: no thread for the log; each line is written as it is logged"
                    );
                }
            }
        });
    }

    /// Appends `bytes` (whole lines) to the batch being gathered.
    pub fn append(&self, bytes: &[u8]) {
        let mut pending = lock(&self.pending);
        let first = pending.is_empty();
        pending.extend_from_slice(bytes);
        let full = pending.len() >= MAX_PENDING_BYTES;
        drop(pending);
        if full || !self.running.load(Ordering::Acquire) {
            self.flush();
        } else if first {
            self.gathered.notify_one();
        }
    }

    /// Writes every line gathered so far, now.
    pub fn flush(&self) {
        let _writing = lock(&self.writing);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if !batch.is_empty() {
            (self.out)(&batch);
        }
    }

    fn run(&self) {
        loop {
            let mut pending = lock(&self.pending);
            while pending.is_empty() {
                pending = self
                    .gathered
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            thread::sleep(LINGER);
            self.flush();
        }
    }
}

/// A poisoned lock still holds whole lines: a panic while appending or
/// writing leaves nothing half-done that matters here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What env_logger writes to: each formatted line goes to [`SINK`].
pub struct ToSink {
    sink: &'static Sink,
    /// Whether lines are in colour; if not, an escape sequence or a control
    /// character that reached a line anyway (text from a library, a reply
    /// from Redis) is stripped, as env_logger would.
    colour: bool,
}

impl ToSink {
    pub fn new(colour: bool) -> Self {
        Self {
            sink: &SINK,
            colour,
        }
    }
}

impl Write for ToSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.colour && buf.iter().copied().any(strippable) {
            let stripped: Vec<u8> = anstream::adapter::strip_bytes(buf)
                .flatten()
                .copied()
                .collect();
            self.sink.append(&stripped);
        } else {
            self.sink.append(buf);
        }
        Ok(buf.len())
    }

    /// Nothing: the sink decides when lines are written.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A byte env_logger's filter would change without colours: a control
/// character other than whitespace (the escape character among them, which
/// starts an escape sequence), or DEL. A line with none passes through it
/// unchanged, so only a line with one is filtered.
fn strippable(byte: u8) -> bool {
    (byte < 0x20 && !byte.is_ascii_whitespace()) || byte == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    static WRITTEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn to_memory(batch: &[u8]) {
        lock(&WRITTEN).extend_from_slice(batch);
    }

    static STRIPPED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn to_stripped(batch: &[u8]) {
        lock(&STRIPPED).extend_from_slice(batch);
    }

    #[test]
    fn without_colours_escape_sequences_and_control_characters_are_stripped() {
        let sink: &'static Sink = Box::leak(Box::new(Sink::new(to_stripped)));
        let plain = || ToSink {
            sink,
            colour: false,
        };
        plain().write_all(b"a\x1b[31mred\x1b[0m b\n").unwrap();
        assert_eq!(*lock(&STRIPPED), b"ared b\n");
        lock(&STRIPPED).clear();
        plain().write_all(b"bad\x07\x08\x7f\x0e tail\tx\n").unwrap();
        assert_eq!(*lock(&STRIPPED), b"bad tail\tx\n");
        lock(&STRIPPED).clear();
        ToSink { sink, colour: true }
            .write_all(b"\x1b[32mINFO\x1b[0m\n")
            .unwrap();
        assert_eq!(*lock(&STRIPPED), b"\x1b[32mINFO\x1b[0m\n");
    }

    #[test]
    fn a_line_without_strippable_bytes_is_what_the_filter_would_leave() {
        for byte in (0..0x80u8).filter(|&b| !strippable(b)) {
            let line = [b'a', byte, b'\n'];
            let filtered: Vec<u8> = anstream::adapter::strip_bytes(&line)
                .flatten()
                .copied()
                .collect();
            assert_eq!(filtered, line, "{byte:#x}");
        }
        let text = "ü € 🔔 \u{9b}31m\n".as_bytes();
        assert!(!text.iter().copied().any(strippable));
        let filtered: Vec<u8> = anstream::adapter::strip_bytes(text)
            .flatten()
            .copied()
            .collect();
        assert_eq!(filtered, text);
    }

    #[test]
    fn lines_wait_for_a_flush_in_order_unless_the_sink_is_not_started_or_full() {
        let sink: &'static Sink = Box::leak(Box::new(Sink::new(to_memory)));
        // Not started: each line is written as it comes.
        sink.append(b"one\n");
        assert_eq!(*lock(&WRITTEN), b"one\n");
        assert!(lock(&sink.pending).is_empty());

        // Started (without its thread here): lines wait for a flush, in the
        // order they came, and a flush writes each once.
        sink.running.store(true, Ordering::Release);
        sink.append(b"two\n");
        sink.append(b"three\n");
        assert_eq!(*lock(&WRITTEN), b"one\n");
        sink.flush();
        sink.flush();
        assert_eq!(*lock(&WRITTEN), b"one\ntwo\nthree\n");

        // Full: the line that reaches the limit is written with its batch.
        lock(&WRITTEN).clear();
        let line = [b'x'; 1024];
        for _ in 0..MAX_PENDING_BYTES / 1024 - 1 {
            sink.append(&line);
        }
        assert!(lock(&WRITTEN).is_empty());
        sink.append(&line);
        assert_eq!(lock(&WRITTEN).len(), MAX_PENDING_BYTES);
        assert!(lock(&sink.pending).is_empty());
    }

    #[test]
    fn a_batch_is_written_in_whole_lines_of_at_most_one_pipe_write_each() {
        let line = |n: usize| {
            let mut line = vec![b'x'; n - 1];
            line.push(b'\n');
            line
        };
        let mut batch = Vec::new();
        for n in [100, 3000, 2000, 4096, 10_000, 7] {
            batch.extend(line(n));
        }
        batch.extend(b"no end");
        let cut: Vec<&[u8]> = pieces(&batch).collect();
        let sizes: Vec<usize> = cut.iter().map(|p| p.len()).collect();
        assert_eq!(sizes, [3100, 2000, 4096, 10_000, 13]);
        assert_eq!(cut.concat(), batch);
        assert!(pieces(b"").next().is_none());
    }

    #[test]
    fn the_thread_writes_what_gathered_after_lingering() {
        static OUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
        fn out(batch: &[u8]) {
            lock(&OUT).extend_from_slice(batch);
        }
        let sink: &'static Sink = Box::leak(Box::new(Sink::new(out)));
        sink.start();
        sink.append(b"a\n");
        sink.append(b"b\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(&OUT).as_slice() != b"a\nb\n" {
            assert!(std::time::Instant::now() < deadline, "never written");
            thread::sleep(Duration::from_millis(5));
        }
    }
}
