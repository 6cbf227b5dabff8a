//! A log line as text (`log_format = "text"`): env_logger's own layout,
//! `[time LEVEL target] message`, the level coloured and the brackets dimmed
//! when standard error takes colours.
//!
//! herald writes the colours itself, only when they are wanted, so that
//! env_logger can pass every line through as written: left to decide,
//! env_logger runs each line through a filter that strips escapes, byte by
//! byte, which cost more than all the rest of a session's log lines.

use std::io::{self, Write};

use env_logger::fmt::style::{AnsiColor, Style};
use env_logger::fmt::Formatter;

/// Writes `record` as one line of text, in colour if `colour`.
pub fn write_text_line(buf: &mut Formatter, record: &log::Record, colour: bool) -> io::Result<()> {
    let (level, subtle) = if colour {
        (
            buf.default_level_style(record.level()),
            AnsiColor::BrightBlack.on_default(),
        )
    } else {
        (Style::new(), Style::new())
    };
    writeln!(
        buf,
        "{subtle}[{subtle:#}{} {level}{:<5}{level:#} {}{subtle}]{subtle:#} {}",
        buf.timestamp(),
        record.level(),
        record.target(),
        record.args(),
    )
}
