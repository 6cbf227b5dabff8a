//! Validated identifiers. Anything that names a client, a channel, a
//! session or a history epoch is parsed once at the boundary into one of
//! these newtypes, so the routing code never sees an unchecked string.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest client id accepted, in bytes of UTF-8.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// The id a client registers under: chosen by the client, or taken from a
/// signed token's `sub` (see `token`). Several sessions may share one id:
/// every tab of one user.
///
/// Valid ids are 1 to [`MAX_CLIENT_ID_BYTES`] bytes of printable UTF-8: no
/// control characters (CR, LF, NUL, ...), so an id can be logged and echoed
/// back safely. In JSON an id may also be given as an integer (`63`), which
/// is read as its decimal text (`"63"`); on the wire herald always sends ids
/// as strings.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct ClientId(String);

/// Why a candidate id was refused. The text is shown to clients as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id must not be empty")]
    Empty,
    #[error("id is {0} bytes long; the limit is {MAX_CLIENT_ID_BYTES}")]
    TooLong(usize),
    #[error("id contains an invisible or control character (U+{0:04X})")]
    ControlChar(u32),
}

impl ClientId {
    /// Checks `raw` against the rules above.
    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(IdError::Empty);
        }
        if raw.len() > MAX_CLIENT_ID_BYTES {
            return Err(IdError::TooLong(raw.len()));
        }
        if let Some(c) = raw.chars().find(|&c| is_invisible(c)) {
            return Err(IdError::ControlChar(u32::from(c)));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that do not show as themselves and can make an id look like
/// another one, or reorder or break the text around it in logs and pages:
/// the Unicode categories Cc (control), Cf (format: bidi overrides, tag
/// characters, zero-width joiners), Cs, Co, Cn (surrogates, private use,
/// unassigned and noncharacters), Zl, Zp (line and paragraph separators),
/// and the default-ignorable code points of other categories (Hangul
/// fillers, variation selectors, the combining grapheme joiner).
pub fn is_invisible(c: char) -> bool {
    // Printable ASCII, space included, is letters, digits, punctuation,
    // symbols and Zs: none of the below, and no table lookup needed.
    !(' '..='~').contains(&c) && invisible_by_category(c)
}

fn invisible_by_category(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
            | G::LineSeparator
            | G::ParagraphSeparator
    ) || matches!(
        c,
        '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<ClientId> for String {
    fn from(id: ClientId) -> Self {
        id.0
    }
}

/// What JSON may carry as an id: a string, or an integer as the original
/// console page sent.
impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = ClientId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id (a string or an integer)")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClientId, E> {
                ClientId::parse(v).map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ClientId, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ClientId, E> {
                self.visit_str(&v.to_string())
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 128;

/// A channel a session subscribes to and a publisher addresses.
///
/// Valid names are 1 to [`MAX_CHANNEL_BYTES`] bytes of `[A-Za-z0-9_.:-]`,
/// so a name is safe in a URL, a log line and a Redis key as it is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct ChannelName(String);

/// Why a candidate channel name was refused. The text is shown to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name must not be empty")]
    Empty,
    #[error("channel name is {0} bytes long; the limit is {MAX_CHANNEL_BYTES}")]
    TooLong(usize),
    #[error("channel name may only contain A-Z, a-z, 0-9, '_', '.', ':' and '-'")]
    BadCharacter,
}

impl ChannelName {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ChannelError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(ChannelError::Empty);
        }
        if raw.len() > MAX_CHANNEL_BYTES {
            return Err(ChannelError::TooLong(raw.len()));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
        if !raw.bytes().all(allowed) {
            return Err(ChannelError::BadCharacter);
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<ChannelName> for String {
    fn from(name: ChannelName) -> Self {
        name.0
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ChannelName::parse(raw).map_err(serde::de::Error::custom)
    }
}

/// One session of any transport: a WebSocket, an event stream or a waiting
/// long-poll. Allocated by whoever starts the session (the session actor, or
/// the poll route for its waiter) from a process-wide counter, so a session
/// knows its id before `NotifyServer` hears of it and no round trip is
/// needed at connect.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// A fresh id, never handed out before in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A lifetime of the message history: positions (`seq`) count within one
/// epoch, and a position from another one cannot be resumed. The broker
/// makes a fresh one when its history starts afresh (a process start, or a
/// Redis that lost its data) and hands it to every client in the frames
/// that answer a join, in SSE event ids and in long-poll answers; a client
/// sends it back to resume.
///
/// Held by every session and sent with every SSE event, so a clone is a
/// reference-count bump, never a copy of the text. On the wire it is a
/// plain JSON string.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

/// A client sent something that cannot be an epoch herald handed out. The
/// text is shown to clients as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`epoch` must be the epoch herald sent (letters, digits, '-')")]
pub struct EpochError;

impl Epoch {
    /// Longest epoch accepted from a client, in bytes.
    pub const MAX_BYTES: usize = 64;

    /// Reads the epoch a client sends back: 1 to [`Self::MAX_BYTES`] bytes
    /// of ASCII letters, digits and `-`, the alphabet of every epoch herald
    /// makes, so it is safe in a log line, a URL and a Redis argument.
    pub fn parse(raw: &str) -> Result<Self, EpochError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_BYTES
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Self(raw.into()))
        } else {
            Err(EpochError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An epoch herald made or read from its own store (the Redis cluster's
/// key), taken as it is; what a client sends goes through
/// [`Epoch::parse`]. The default, empty, is "no epoch yet": no client
/// position matches it.
impl From<&str> for Epoch {
    fn from(epoch: &str) -> Self {
        Self(epoch.into())
    }
}

impl From<String> for Epoch {
    fn from(epoch: String) -> Self {
        Self(epoch.into())
    }
}

impl AsRef<str> for Epoch {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Serialize for Epoch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printable_ascii_shortcut_agrees_with_the_categories() {
        for c in (0u8..=0x7f).map(char::from) {
            assert_eq!(is_invisible(c), invisible_by_category(c), "{c:?}");
        }
        assert!(is_invisible('\u{7f}') && is_invisible('\t') && !is_invisible(' '));
    }

    #[test]
    fn accepts_printable_ids_up_to_the_limit() {
        assert_eq!(ClientId::parse("63").map(String::from), Ok("63".into()));
        assert!(ClientId::parse("user 7 · ü").is_ok());
        assert!(ClientId::parse("x".repeat(MAX_CLIENT_ID_BYTES)).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_control_characters() {
        assert_eq!(ClientId::parse(""), Err(IdError::Empty));
        assert_eq!(
            ClientId::parse("x".repeat(MAX_CLIENT_ID_BYTES + 1)),
            Err(IdError::TooLong(MAX_CLIENT_ID_BYTES + 1))
        );
        assert_eq!(ClientId::parse("a\nb"), Err(IdError::ControlChar(0x0a)));
        assert_eq!(ClientId::parse("a\0"), Err(IdError::ControlChar(0)));
        assert_eq!(ClientId::parse("a\r"), Err(IdError::ControlChar(0x0d)));
        assert_eq!(
            ClientId::parse("ad\u{202E}min"),
            Err(IdError::ControlChar(0x202E))
        );
        assert_eq!(
            ClientId::parse("a\u{200B}"),
            Err(IdError::ControlChar(0x200B))
        );
        assert_eq!(
            ClientId::parse("\u{FEFF}a"),
            Err(IdError::ControlChar(0xFEFF))
        );
    }

    #[test]
    fn refuses_every_character_that_does_not_show_as_itself() {
        // Tag characters, musical and hieroglyph format controls, an Arabic
        // number sign, a noncharacter, private use, Hangul fillers, a
        // variation selector, line and paragraph separators.
        for c in [
            '\u{E0001}',
            '\u{E0041}',
            '\u{1D173}',
            '\u{13430}',
            '\u{0600}',
            '\u{FFFE}',
            '\u{E000}',
            '\u{115F}',
            '\u{1160}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{FE0F}',
            '\u{034F}',
            '\u{2028}',
            '\u{2029}',
            '\u{2065}',
        ] {
            assert_eq!(
                ClientId::parse(format!("admin{c}")),
                Err(IdError::ControlChar(u32::from(c))),
                "U+{:04X}",
                u32::from(c)
            );
        }
        // Letters of any script, emoji and spaces stay allowed.
        for id in ["ünïcödé", "用户", "مستخدم", "🦀 63", "a b"] {
            assert!(ClientId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn json_ids_may_be_strings_or_integers() {
        let id: ClientId = serde_json::from_str("63").unwrap();
        assert_eq!(id.as_str(), "63");
        let id: ClientId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
        assert!(serde_json::from_str::<ClientId>("\"\"").is_err());
        assert!(serde_json::from_str::<ClientId>("1.5").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abc\"");
    }

    #[test]
    fn channel_names_allow_a_safe_alphabet_only() {
        for good in [
            "news",
            "private:user.63",
            "a-b_c",
            &"x".repeat(MAX_CHANNEL_BYTES),
        ] {
            assert!(ChannelName::parse(good).is_ok(), "{good}");
        }
        assert_eq!(ChannelName::parse(""), Err(ChannelError::Empty));
        assert_eq!(
            ChannelName::parse("x".repeat(129)),
            Err(ChannelError::TooLong(129))
        );
        for bad in ["a b", "a\nb", "ü", "a/b", "a*", "a\0"] {
            assert_eq!(
                ChannelName::parse(bad),
                Err(ChannelError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn session_ids_are_unique() {
        let a = SessionId::next();
        let b = SessionId::next();
        assert_ne!(a, b);
    }

    #[test]
    fn epochs_from_clients_use_herald_s_alphabet_only() {
        assert_eq!(
            Epoch::parse("a1b2-C3").map(|e| e.to_string()),
            Ok("a1b2-C3".into())
        );
        assert!(Epoch::parse(&"e".repeat(Epoch::MAX_BYTES)).is_ok());
        for bad in [
            "",
            "a b",
            "a:1",
            "ü",
            "a\n",
            &"e".repeat(Epoch::MAX_BYTES + 1),
        ] {
            assert_eq!(Epoch::parse(bad), Err(EpochError), "{bad:?}");
        }
    }

    #[test]
    fn an_epoch_is_a_plain_string_on_the_wire_and_a_shared_one_in_memory() {
        let epoch = Epoch::from("e1");
        assert_eq!(serde_json::to_string(&epoch).unwrap(), "\"e1\"");
        assert_eq!(
            (epoch.to_string(), format!("{epoch:?}")),
            ("e1".into(), "\"e1\"".into())
        );
        let copy = epoch.clone();
        assert!(
            std::ptr::eq(copy.as_str(), epoch.as_str()),
            "a clone shares the text"
        );
        assert_eq!(copy, Epoch::parse("e1").unwrap());
        assert_eq!(Epoch::default().as_str(), "");
    }
}
