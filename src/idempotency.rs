//! Idempotency keys: what a publisher sends with a publish so that
//! sending it again (after a timeout, a broken connection, a crash) does
//! not deliver it twice.
//!
//! A key is 1 to [`MAX_IDEMPOTENCY_KEY_CHARS`] printable ASCII characters
//! (`!` to `~`: no space, no control character), so it is safe in a log
//! line, a header and a Redis key as it is. The broker remembers it
//! *scoped* by the publisher that sent it ([`ScopedKey`]), so two
//! publishers that happen to choose the same key never answer each
//! other's publishes.

use std::fmt;
use std::time::Duration;

/// Longest idempotency key accepted, in characters (bytes: all ASCII).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// Longest `idempotency_window_secs` accepted: a day. A publisher retries
/// within minutes; a longer window only holds memory.
pub const MAX_IDEMPOTENCY_WINDOW_SECS: u64 = 86_400;

/// Most `idempotency_max_keys` accepted: some hundreds of bytes each, so
/// at most a few GB of Redis.
pub const MAX_IDEMPOTENCY_KEYS: usize = 10_000_000;

/// A publisher's idempotency key, checked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a candidate key was refused. The text is shown to publishers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("idempotency key must not be empty")]
    Empty,
    #[error("idempotency key is {0} characters long; the limit is {MAX_IDEMPOTENCY_KEY_CHARS}")]
    TooLong(usize),
    #[error(
        "idempotency key may only contain printable ASCII characters \
         ('!' to '~': no spaces, control characters or non-ASCII letters)"
    )]
    BadCharacter,
}

impl IdempotencyKey {
    /// Checks `raw` against the rules above.
    pub fn parse(raw: &str) -> Result<Self, IdempotencyKeyError> {
        Self::from_bytes(raw.as_bytes())
    }

    /// Checks raw bytes (a header value) against the rules above.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, IdempotencyKeyError> {
        if raw.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(IdempotencyKeyError::BadCharacter);
        }
        if raw.len() > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(IdempotencyKeyError::TooLong(raw.len()));
        }
        // Printable ASCII only: valid UTF-8.
        let text = String::from_utf8_lossy(raw).into_owned();
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as the broker remembers it: within `scope`, the name of the
    /// publisher that sent it (see [`ScopedKey`]).
    pub fn scoped(&self, scope: &str) -> ScopedKey {
        ScopedKey(format!("{scope}:{}", self.0))
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// An idempotency key within its publisher's scope, `<scope>:<key>`: what a
/// broker remembers and compares. The scope names the publish key that
/// was used without holding it (see `auth`), or is one shared name when
/// no publish keys are configured.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScopedKey(String);

impl ScopedKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ScopedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopedKey({:?})", self.0)
    }
}

/// How long and how many keys a broker remembers
/// (`idempotency_window_secs`, `idempotency_max_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyLimits {
    /// A key is remembered this long after the publish that used it first;
    /// zero: keys are not remembered.
    pub window: Duration,
    /// Most keys remembered at once; past it the oldest are forgotten.
    pub max_keys: usize,
}

impl IdempotencyLimits {
    /// Whether keys are remembered at all.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_up_to_128_characters() {
        for good in ["a", "order-17/retry", "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"] {
            assert_eq!(IdempotencyKey::parse(good).unwrap().as_str(), good);
        }
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_CHARS);
        assert!(IdempotencyKey::parse(&longest).is_ok());
        let over = "k".repeat(MAX_IDEMPOTENCY_KEY_CHARS + 1);
        assert_eq!(
            IdempotencyKey::parse(&over),
            Err(IdempotencyKeyError::TooLong(129))
        );
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        for bad in [
            "a b",
            "a\tb",
            "a\nb",
            "a\u{1}",
            "\u{7f}",
            "clé",
            "a\u{200b}b",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(IdempotencyKeyError::BadCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(
            IdempotencyKey::from_bytes(b"a\xffb"),
            Err(IdempotencyKeyError::BadCharacter)
        );
    }

    #[test]
    fn scoped_keys_differ_by_scope() {
        let key = IdempotencyKey::parse("k1").unwrap();
        assert_eq!(key.scoped("ab12").as_str(), "ab12:k1");
        assert_ne!(key.scoped("ab12"), key.scoped("cd34"));
    }
}
