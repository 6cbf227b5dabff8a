//! Log lines on stderr, as text for a terminal or as one JSON object per line
//! for a log collector (`log_format`). `RUST_LOG` chooses what is logged
//! (default `info`) in both.
//!
//! Events that concern a session carry structured fields (`session`,
//! `transport`, `peer`, `id`, `reason`, `close_code`, ...) as `log`
//! key-values: in text they are already part of the message; in JSON each
//! is a member of the line's object beside `time`, `level`, `target` and
//! `message`. Client-derived text reaches a log line only through
//! [`crate::hub::messages::LogSafe`] or a validated id, and JSON escapes
//! every control character, so one event is always one line. Secrets and
//! tokens are never logged.
//!
//! - `text`: a line as text, in colour on a terminal.
//! - `json`: a line as a JSON object.
//! - `sink`: lines reach stderr a batch at a time; warnings and errors at
//!   once.

mod json;
mod sink;
mod text;

use std::io;

pub use json::write_json_line;
use sink::{ToSink, SINK};
use text::write_text_line;

use crate::config::LogFormat;

/// Installs the logger for the whole process. Called once, by `main`, after
/// the configuration is read; a second call is ignored.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // Colours as env_logger would choose them (RUST_LOG_STYLE, then a
    // terminal and neither NO_COLOR, CLICOLOR=0 nor TERM=dumb), asked here:
    // lines reach stderr through the sink, which env_logger cannot see is
    // a terminal.
    let colour = match std::env::var("RUST_LOG_STYLE").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => matches!(
            anstream::AutoStream::choice(&io::stderr()),
            anstream::ColorChoice::Always | anstream::ColorChoice::AlwaysAnsi
        ),
    };
    builder.target(env_logger::Target::Pipe(Box::new(ToSink::new(colour))));
    // The formats below write colours only when wanted: env_logger passes
    // lines through as written.
    builder.write_style(env_logger::WriteStyle::Always);
    match format {
        LogFormat::Json => builder.format(|buf, record| {
            let time = buf.timestamp_millis().to_string();
            write_json_line(buf, &time, record)
        }),
        LogFormat::Text => builder.format(move |buf, record| write_text_line(buf, record, colour)),
    };
    let inner = builder.build();
    let max_level = inner.filter();
    if log::set_boxed_logger(Box::new(Logger { inner })).is_err() {
        return;
    }
    log::set_max_level(max_level);
    SINK.start();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // What was logged before the panic comes before it.
        SINK.flush();
        if format != LogFormat::Json {
            return default_hook(info);
        }
        // A panic is one JSON line too, not the default hook's text, and is
        // written whatever RUST_LOG filters, as the default hook would.
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let _ = write_json_line(
            &mut io::stderr().lock(),
            &time,
            &log::Record::builder()
                .args(format_args!("{info}"))
                .level(log::Level::Error)
                .target("panic")
                .build(),
        );
    }));
}

/// Writes every log line not written yet. `main` calls it before herald
/// exits.
pub fn flush() {
    SINK.flush();
}

/// env_logger's filter and format, with warnings and errors written at once.
struct Logger {
    inner: env_logger::Logger,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.inner.matches(record) {
            return;
        }
        self.inner.log(record);
        if record.level() <= log::Level::Warn {
            SINK.flush();
        }
    }

    fn flush(&self) {
        SINK.flush();
    }
}
