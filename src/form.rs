//! Strict `application/x-www-form-urlencoded` parsing, for POST bodies and
//! query strings.
//!
//! Unlike the usual lossy decoders, a value whose percent-decoded bytes are
//! not UTF-8 is an error, never silently turned into U+FFFD: an id or channel
//! name must be exactly what the sender meant, or refused.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// One decoded field: borrowed from the input unless it held an escape or
/// a `+`.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Decodes `input` into (name, value) pairs, in order, repeats kept.
/// Empty segments (`a=1&&b=2`) are skipped; a segment without `=` is a name
/// with an empty value. A field that does not decode is an error naming it.
pub fn parse_pairs(input: &[u8]) -> Result<Vec<Pair<'_>>, String> {
    input
        .split(|&b| b == b'&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(at) => (&segment[..at], &segment[at + 1..]),
                None => (segment, &b""[..]),
            };
            let name = decode(name).map_err(|e| format!("field name {e}"))?;
            let value = decode(value).map_err(|e| format!("field `{name}` {e}"))?;
            Ok((name, value))
        })
        .collect()
}

/// `+` as a space and `%XX` escapes decoded; escapes split by a `+` stay
/// literal, as `percent_decode` leaves any malformed escape. Text with
/// neither is the input itself, checked, not copied.
fn decode(raw: &[u8]) -> Result<Cow<'_, str>, &'static str> {
    const NOT_UTF8: &str = "is not valid UTF-8";
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| NOT_UTF8);
    }
    let mut bytes = Vec::with_capacity(raw.len());
    for (i, piece) in raw.split(|&b| b == b'+').enumerate() {
        if i > 0 {
            bytes.push(b' ');
        }
        bytes.extend(percent_decode(piece));
    }
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| NOT_UTF8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &str) -> Vec<(String, String)> {
        parse_pairs(input.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    fn error(input: &[u8]) -> String {
        parse_pairs(input).unwrap_err()
    }

    #[test]
    fn decodes_plus_and_percent_and_keeps_repeats() {
        assert_eq!(
            pairs("message=Hello+%22you%22&channel=a&channel=b&&flag"),
            vec![
                ("message".into(), "Hello \"you\"".into()),
                ("channel".into(), "a".into()),
                ("channel".into(), "b".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(pairs("a=%F0%9F%94%94"), vec![("a".into(), "🔔".into())]);
        // A `+` is a space, an encoded one a plus; a malformed escape, or
        // one cut by a `+`, stays as written.
        assert_eq!(
            pairs("a=1%2B1+=+2&b=%2&c=%+41&d=%zz%"),
            vec![
                ("a".into(), "1+1 = 2".into()),
                ("b".into(), "%2".into()),
                ("c".into(), "% 41".into()),
                ("d".into(), "%zz%".into()),
            ]
        );
        assert!(pairs("").is_empty());
    }

    #[test]
    fn plain_fields_are_borrowed_and_escaped_ones_decoded() {
        let pairs = parse_pairs(b"message=hi&id=a%20b").unwrap();
        assert!(matches!(pairs[0].0, Cow::Borrowed("message")));
        assert!(matches!(pairs[0].1, Cow::Borrowed("hi")));
        assert!(matches!(&pairs[1].1, Cow::Owned(value) if value == "a b"));
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_field() {
        let err = error(b"id=a%FFb");
        assert!(err.contains("`id`") && err.contains("UTF-8"), "{err}");
        let err = error(b"x%C3=1");
        assert!(err.contains("name"), "{err}");
        // Raw (not percent-encoded) invalid bytes too, with or without an
        // escape beside them.
        assert!(error(b"id=\xff").contains("`id`"));
        assert!(error(b"id=%41\xff").contains("`id`"));
    }
}
