//! A log line as one JSON object (`log_format = "json"`): `time`, `level`,
//! `target`, `message`, then the event's key-values as members of their own.

use std::io::{self, Write};

use log::kv::{self, Key, Value, VisitSource, VisitValue};

/// Writes `record` as one JSON object and a newline.
pub fn write_json_line(out: &mut impl Write, time: &str, record: &log::Record) -> io::Result<()> {
    let mut fields = Fields(Vec::new());
    // A field that cannot be read is left out; the line is still written.
    let _ = record.key_values().visit(&mut fields);
    let mut line = Vec::with_capacity(256);
    line.push(b'{');
    member(&mut line, "time", &serde_json::Value::from(time))?;
    line.push(b',');
    member(&mut line, "level", &record.level().as_str().into())?;
    line.push(b',');
    member(&mut line, "target", &record.target().into())?;
    line.push(b',');
    member(&mut line, "message", &record.args().to_string().into())?;
    for (key, value) in &fields.0 {
        line.push(b',');
        member(&mut line, key, value)?;
    }
    line.extend_from_slice(b"}\n");
    out.write_all(&line)
}

fn member(line: &mut Vec<u8>, key: &str, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *line, key)?;
    line.push(b':');
    serde_json::to_writer(&mut *line, value)?;
    Ok(())
}

/// An event's key-values as JSON members. Names that would hide one of the
/// line's own members get a `field_` prefix.
struct Fields(Vec<(String, serde_json::Value)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let mut json = Json(serde_json::Value::Null);
        value.visit(&mut json)?;
        let key = key.as_str();
        let key = if matches!(key, "time" | "level" | "target" | "message") {
            format!("field_{key}")
        } else {
            key.to_owned()
        };
        self.0.push((key, json.0));
        Ok(())
    }
}

/// One key-value as JSON: `null` for a missing `Option`, numbers and
/// booleans as such, anything else as its text.
struct Json(serde_json::Value);

impl<'v> VisitValue<'v> for &mut Json {
    fn visit_any(&mut self, value: Value) -> Result<(), kv::Error> {
        self.0 = value.to_string().into();
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.0 = serde_json::Value::Null;
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(record: &log::Record) -> serde_json::Value {
        let mut out = Vec::new();
        write_json_line(&mut out, "2026-01-01T00:00:00.000Z", record).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with('\n'));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_line_has_time_level_target_message_and_fields() {
        let kvs: [(&str, Value); 5] = [
            ("session", Value::from("s7")),
            ("transport", Value::from("ws")),
            ("close_code", Value::from(1000u16)),
            ("gone", Value::null()),
            ("message", Value::from("shadow")),
        ];
        let args = format_args!("session 7 disconnected");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("herald::hub::server")
            .key_values(&kvs)
            .build();
        let json = line(&record);
        assert_eq!(json["time"], "2026-01-01T00:00:00.000Z");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["target"], "herald::hub::server");
        assert_eq!(json["message"], "session 7 disconnected");
        assert_eq!(json["session"], "s7");
        assert!(json["gone"].is_null() && json.get("gone").is_some());
        assert_eq!(json["transport"], "ws");
        assert_eq!(json["close_code"], 1000);
        assert_eq!(json["field_message"], "shadow");
    }

    #[test]
    fn control_characters_stay_escaped_on_one_line() {
        let kvs: [(&str, Value); 1] = [("id", Value::from("a\nb\u{1b}[31m"))];
        let args = format_args!("line one\nline two\r\u{0}");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .key_values(&kvs)
            .build();
        let json = line(&record);
        assert_eq!(json["message"], "line one\nline two\r\u{0}");
        assert_eq!(json["id"], "a\nb\u{1b}[31m");
    }
}
