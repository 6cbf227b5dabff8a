//! A log line as text (`log_format = "text"`): env_logger's own layout,
//! `[time LEVEL target] message`, the level coloured and the brackets dimmed
//! when standard error takes colours; the lines of a message after its
//! first are indented by four spaces, so none can pass for a line of its
//! own.
//!
//! herald writes the colours itself, only when they are wanted, so that
//! env_logger can pass every line through as written: left to decide,
//! env_logger runs each line through a filter that strips escapes, byte by
//! byte, which cost more than all the rest of a session's log lines. The
//! sink still strips the rare line that needs it (`sink::ToSink`).

use std::io::{self, Write};

use env_logger::fmt::style::{AnsiColor, Style};
use env_logger::fmt::Formatter;

/// What goes before each line of a message after its first.
const INDENT: &[u8] = b"\n    ";

/// Writes `record` as one line of text (more, indented, if its message
/// has several), in colour if `colour`.
pub fn write_text_line(buf: &mut Formatter, record: &log::Record, colour: bool) -> io::Result<()> {
    let (level, subtle) = if colour {
        (
            buf.default_level_style(record.level()),
            AnsiColor::BrightBlack.on_default(),
        )
    } else {
        (Style::new(), Style::new())
    };
    let time = buf.timestamp();
    write!(
        buf,
        "{subtle}[{subtle:#}{time} {level}{:<5}{level:#}",
        record.level()
    )?;
    // An empty target is left out, as env_logger does.
    if !record.target().is_empty() {
        write!(buf, " {}", record.target())?;
    }
    write!(buf, "{subtle}]{subtle:#} ")?;
    write!(Indented(&mut *buf), "{}", record.args())?;
    buf.write_all(b"\n")
}

/// Writes through to the line, indenting every line after the first.
struct Indented<'a>(&'a mut Formatter);

impl Write for Indented<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for (i, piece) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.0.write_all(INDENT)?;
            }
            self.0.write_all(piece)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a logger writes.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `record` as herald writes it, or as env_logger's default format
    /// does, with the timestamp (the one 20-byte `…T…Z` run) masked.
    fn render(record: &log::Record, colour: bool, herald: bool) -> String {
        let out = Collected::default();
        let mut builder = env_logger::Builder::new();
        builder
            .filter_level(log::LevelFilter::Trace)
            .target(env_logger::Target::Pipe(Box::new(out.clone())));
        if herald {
            builder.write_style(env_logger::WriteStyle::Always);
            builder.format(move |buf, record| write_text_line(buf, record, colour));
        } else if colour {
            builder.write_style(env_logger::WriteStyle::Always);
        } else {
            builder.write_style(env_logger::WriteStyle::Never);
        }
        log::Log::log(&builder.build(), record);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let at = (0..text.len().saturating_sub(20))
            .find(|&i| {
                let b = text.as_bytes();
                b[i..i + 4].iter().all(u8::is_ascii_digit) && b[i + 10] == b'T' && b[i + 19] == b'Z'
            })
            .expect("a timestamp");
        format!("{}<time>{}", &text[..at], &text[at + 20..])
    }

    #[test]
    fn lines_are_env_loggers_default_format_byte_for_byte() {
        let levels = [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Debug,
            log::Level::Trace,
        ];
        for (target, message) in [
            ("herald::app", "one line"),
            (
                "herald::hub::server",
                "two\nlines\n[2026-01-01T00:00:00Z INFO  herald] fake",
            ),
            ("", "no target"),
            ("t", "ends with a newline\n"),
        ] {
            for level in levels {
                for colour in [false, true] {
                    let render = |herald| {
                        render(
                            &log::Record::builder()
                                .args(format_args!("{message}"))
                                .level(level)
                                .target(target)
                                .build(),
                            colour,
                            herald,
                        )
                    };
                    assert_eq!(
                        render(true),
                        render(false),
                        "{target:?} {level} colour={colour}"
                    );
                }
            }
        }
    }
}
