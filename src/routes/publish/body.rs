//! A `POST /` body, form or JSON, read into a [`Publish`]: the message, its
//! target and the idempotency key given in the body, each checked. Unknown
//! fields are refused rather than ignored: a misspelt target must not turn
//! a private message into a broadcast.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::form::parse_pairs;
use crate::idempotency::IdempotencyKey;
use crate::ids::{ChannelName, ClientId};
use crate::protocol::minify_json;

/// A validated publish request.
#[derive(Debug)]
pub struct Publish {
    /// The message as JSON; a form's text becomes a JSON string.
    pub message: Box<RawValue>,
    /// Who gets it.
    pub target: Target,
    /// The `idempotency_key` field, if given (the `Idempotency-Key` header
    /// is read by the handler).
    pub idempotency_key: Option<IdempotencyKey>,
}

/// The recipients of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Everyone,
    Id(ClientId),
    Channel(ChannelName),
}

impl Target {
    fn from_parts(id: Option<ClientId>, channel: Option<ChannelName>) -> Result<Self, ApiError> {
        match (id, channel) {
            (Some(_), Some(_)) => Err(ApiError::TargetConflict),
            (Some(id), None) => Ok(Self::Id(id)),
            (None, Some(channel)) => Ok(Self::Channel(channel)),
            (None, None) => Ok(Self::Everyone),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    message: Option<Box<RawValue>>,
    /// Absent means no id; `null` is refused, so that a main site sending
    /// `"id": user.id` with no user never broadcasts a private message.
    #[serde(default, deserialize_with = "present")]
    id: Option<ClientId>,
    /// Absent means no channel; `null` is refused, as for `id`.
    #[serde(default, deserialize_with = "present")]
    channel: Option<ChannelName>,
    /// A string; anything else (`null` included) is refused.
    #[serde(default, deserialize_with = "present")]
    idempotency_key: Option<Box<RawValue>>,
}

/// A field that, when present, must hold a value (`null` is an error).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The body formats `POST /` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Form,
    Json,
}

impl BodyKind {
    pub(super) fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        let unsupported = || {
            let given = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            ApiError::UnsupportedMediaType(given.chars().take(100).collect())
        };
        // The two a main site sends, as it usually spells them: known
        // without parsing (and allocating) a media type.
        if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
            let value = value.as_bytes();
            if value.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
                return Ok(Self::Form);
            }
            if value.eq_ignore_ascii_case(b"application/json") {
                return Ok(Self::Json);
            }
        }
        let mime = req
            .mime_type()
            .map_err(|_| unsupported())?
            .ok_or_else(unsupported)?;
        match (
            mime.type_().as_str(),
            mime.subtype().as_str(),
            mime.suffix(),
        ) {
            ("application", "x-www-form-urlencoded", _) => Ok(Self::Form),
            ("application", "json", _) => Ok(Self::Json),
            ("application", _, Some(suffix)) if suffix == "json" => Ok(Self::Json),
            _ => Err(unsupported()),
        }
    }
}

impl Publish {
    /// Parses and validates a body of the given kind.
    pub fn parse(kind: BodyKind, body: &[u8]) -> Result<Self, ApiError> {
        match kind {
            BodyKind::Form => Self::from_form(body),
            BodyKind::Json => Self::from_json(body),
        }
    }

    fn from_form(body: &[u8]) -> Result<Self, ApiError> {
        let malformed = |e: String| ApiError::MalformedBody(format!("invalid form body: {e}"));
        let (mut message, mut id, mut channel, mut key) = (None, None, None, None);
        for (name, value) in parse_pairs(body).map_err(malformed)? {
            let slot = match name.as_ref() {
                "message" => &mut message,
                "id" => &mut id,
                "channel" => &mut channel,
                "idempotency_key" => &mut key,
                _ => return Err(malformed(format!("unknown field `{name}`"))),
            };
            if slot.replace(value).is_some() {
                return Err(malformed(format!("duplicate field `{name}`")));
            }
        }
        let text = message
            .filter(|m| !m.is_empty())
            .ok_or(ApiError::MissingMessage)?;
        let message = serde_json::value::to_raw_value(&text)
            .map_err(|e| ApiError::MalformedBody(format!("invalid message: {e}")))?;
        let id = id
            .map(ClientId::parse)
            .transpose()
            .map_err(ApiError::InvalidId)?;
        let channel = channel
            .map(ChannelName::parse)
            .transpose()
            .map_err(ApiError::InvalidChannel)?;
        let idempotency_key = key
            .map(|key| IdempotencyKey::parse(&key))
            .transpose()
            .map_err(|e| ApiError::BadIdempotencyKey(e.to_string()))?;
        Ok(Self {
            message,
            target: Target::from_parts(id, channel)?,
            idempotency_key,
        })
    }

    fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        // serde would also read a struct from an array (`["hi", "63"]`);
        // only an object is a publish request.
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(ApiError::MalformedBody(
                "invalid JSON body: expected an object like {\"message\": ...}".into(),
            ));
        }
        let json: JsonBody = serde_json::from_slice(body).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::MalformedBody(format!("malformed JSON: {e}"))
            } else {
                ApiError::MalformedBody(format!("invalid JSON body: {e}"))
            }
        })?;
        let message = json
            .message
            .filter(|m| m.get() != "\"\"")
            .ok_or(ApiError::MissingMessage)?;
        // A number no double can hold (`1e999`) is valid JSON syntax, but
        // clients' parsers refuse it or turn it into infinity: refused here.
        serde_json::from_str::<NumbersInRange>(message.get())
            .map_err(|e| ApiError::MalformedBody(format!("invalid message: {e}")))?;
        // Stored and sent compact, on one line (SSE frames data by line).
        let message = RawValue::from_string(minify_json(message.get()))
            .map_err(|e| ApiError::MalformedBody(format!("invalid message: {e}")))?;
        let idempotency_key = json
            .idempotency_key
            .map(|raw| {
                let text: String = serde_json::from_str(raw.get()).map_err(|_| {
                    ApiError::BadIdempotencyKey("idempotency_key must be a string".into())
                })?;
                IdempotencyKey::parse(&text).map_err(|e| ApiError::BadIdempotencyKey(e.to_string()))
            })
            .transpose()?;
        Ok(Self {
            message,
            target: Target::from_parts(json.id, json.channel)?,
            idempotency_key,
        })
    }
}

/// Walks a JSON value without keeping it, reading every number, so that a
/// number out of range fails the parse (`IgnoredAny` skips numbers).
struct NumbersInRange;

impl<'de> Deserialize<'de> for NumbersInRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumbersInRange)
    }
}

impl<'de> serde::de::Visitor<'de> for NumbersInRange {
    type Value = NumbersInRange;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NumbersInRange>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, NumbersInRange>()?
            .is_some()
        {}
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn content_types_read_with_and_without_parsing_agree() {
        let kind = |value: Option<&str>| {
            let mut req = TestRequest::post();
            if let Some(value) = value {
                req = req.insert_header((header::CONTENT_TYPE, value));
            }
            BodyKind::of(&req.to_http_request()).ok()
        };
        for (value, expected) in [
            ("application/x-www-form-urlencoded", Some(BodyKind::Form)),
            ("Application/X-WWW-Form-Urlencoded", Some(BodyKind::Form)),
            (
                "application/x-www-form-urlencoded; charset=utf-8",
                Some(BodyKind::Form),
            ),
            ("application/json", Some(BodyKind::Json)),
            ("APPLICATION/JSON", Some(BodyKind::Json)),
            ("application/json;charset=UTF-8", Some(BodyKind::Json)),
            ("application/ld+json", Some(BodyKind::Json)),
            ("application/jsonx", None),
            ("text/plain", None),
            ("application/", None),
        ] {
            assert_eq!(kind(Some(value)), expected, "{value}");
        }
        assert_eq!(kind(None), None);
    }

    #[test]
    fn form_text_becomes_a_json_string() {
        let p = Publish::parse(BodyKind::Form, b"message=Hello+%22you%22&id=63").unwrap();
        assert_eq!(p.message.get(), r#""Hello \"you\"""#);
        assert_eq!(p.target, Target::Id(ClientId::parse("63").unwrap()));
    }

    #[test]
    fn json_message_is_kept_exact_and_compact() {
        let p = Publish::parse(
            BodyKind::Json,
            b"{\"message\":{\"a\" :\n [1, 2.50]},\"id\":7}",
        )
        .unwrap();
        assert_eq!(p.message.get(), r#"{"a":[1,2.50]}"#);
        assert_eq!(p.target, Target::Id(ClientId::parse("7").unwrap()));
    }

    #[test]
    fn missing_empty_or_null_message_is_refused() {
        for (kind, body) in [
            (BodyKind::Form, &b""[..]),
            (BodyKind::Form, b"message="),
            (BodyKind::Form, b"id=3"),
            (BodyKind::Json, b"{}"),
            (BodyKind::Json, br#"{"message":null}"#),
            (BodyKind::Json, br#"{"message":""}"#),
        ] {
            let err = Publish::parse(kind, body).unwrap_err();
            assert!(matches!(err, ApiError::MissingMessage), "{body:?}: {err}");
        }
    }

    #[test]
    fn unknown_and_repeated_fields_are_refused() {
        for (kind, body) in [
            (BodyKind::Form, &b"message=a&chanel=x"[..]),
            (BodyKind::Form, b"message=a&message=b"),
            (BodyKind::Json, br#"{"message":"a","chanel":"x"}"#),
            (BodyKind::Json, br#"["a","63"]"#),
            (BodyKind::Json, br#""a""#),
        ] {
            let err = Publish::parse(kind, body).unwrap_err();
            assert!(matches!(err, ApiError::MalformedBody(_)), "{body:?}: {err}");
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        for body in [
            &br#"{"message":999999e999}"#[..],
            br#"{"message":{"a":[-1e400]}}"#,
        ] {
            let err = Publish::parse(BodyKind::Json, body).unwrap_err();
            assert!(err.to_string().contains("out of range"), "{err}");
        }
        let p = Publish::parse(BodyKind::Json, br#"{"message":1e300}"#).unwrap();
        assert_eq!(p.message.get(), "1e300");
    }

    #[test]
    fn channel_targets_and_conflicts() {
        let p = Publish::parse(BodyKind::Form, b"message=a&channel=news").unwrap();
        assert_eq!(
            p.target,
            Target::Channel(ChannelName::parse("news").unwrap())
        );
        let p = Publish::parse(BodyKind::Json, br#"{"message":"a","channel":"news"}"#).unwrap();
        assert_eq!(
            p.target,
            Target::Channel(ChannelName::parse("news").unwrap())
        );
        let p = Publish::parse(BodyKind::Form, b"message=a").unwrap();
        assert_eq!(p.target, Target::Everyone);
        for (kind, body) in [
            (BodyKind::Form, &b"message=a&id=1&channel=news"[..]),
            (
                BodyKind::Json,
                br#"{"message":"a","id":"1","channel":"news"}"#,
            ),
        ] {
            let err = Publish::parse(kind, body).unwrap_err();
            assert!(matches!(err, ApiError::TargetConflict), "{err}");
        }
        let err = Publish::parse(BodyKind::Form, b"message=a&channel=no+spaces").unwrap_err();
        assert!(matches!(err, ApiError::InvalidChannel(_)), "{err}");
        let err = Publish::parse(BodyKind::Form, b"message=a&id=%FF").unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn bad_ids_are_refused_with_the_reason() {
        let err = Publish::parse(BodyKind::Form, b"message=a&id=").unwrap_err();
        assert!(matches!(err, ApiError::InvalidId(_)), "{err}");
        let err = Publish::parse(BodyKind::Form, b"message=a&id=a%0Ab").unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
        let err = Publish::parse(BodyKind::Json, br#"{"message":"a","id":"a\nb"}"#).unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
    }

    #[test]
    fn an_idempotency_key_field_is_checked_in_either_format() {
        let p = Publish::parse(BodyKind::Form, b"message=a&idempotency_key=order-17").unwrap();
        assert_eq!(p.idempotency_key.unwrap().as_str(), "order-17");
        let p =
            Publish::parse(BodyKind::Json, br#"{"message":"a","idempotency_key":"k"}"#).unwrap();
        assert_eq!(p.idempotency_key.unwrap().as_str(), "k");
        assert!(Publish::parse(BodyKind::Form, b"message=a")
            .unwrap()
            .idempotency_key
            .is_none());
        for (kind, body) in [
            (BodyKind::Form, &b"message=a&idempotency_key="[..]),
            (BodyKind::Form, b"message=a&idempotency_key=a%01b"),
            (BodyKind::Form, b"message=a&idempotency_key=a+b"),
            (BodyKind::Json, br#"{"message":"a","idempotency_key":null}"#),
            (BodyKind::Json, br#"{"message":"a","idempotency_key":17}"#),
            (
                BodyKind::Json,
                br#"{"message":"a","idempotency_key":"a\tb"}"#,
            ),
        ] {
            let err = Publish::parse(kind, body).unwrap_err();
            assert_eq!(err.code(), "bad_idempotency_key", "{body:?}: {err}");
        }
        let err = Publish::parse(
            BodyKind::Form,
            b"message=a&idempotency_key=a&idempotency_key=a",
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::MalformedBody(_)), "{err}");
    }
}
