//! Retry-safety without replay: idempotency keys and the `payment-identifier` extension.
//!
//! A repeated `/settle` may only get the original settlement back when it is the **same
//! attempt** — not merely the same payment, which anyone holding a copy of the buyer's header
//! can present. An attempt is named by an [`IdempotencyKey`]: the `Idempotency-Key` request
//! header that a paywall generates once per served request and reuses on its own retries, or,
//! failing that, the `id` of the official `payment-identifier` extension in the payment's
//! `extensions` (which the client generates and reuses on its retries).
//!
//! Both share one syntax: 16–128 characters from `[A-Za-z0-9_-]`. A value outside it is
//! refused (HTTP 400), never truncated or normalised, so one attempt has exactly one spelling.
//!
//! ```
//! use tollgate_proto::idempotency::{IdempotencyKey, PaymentIdentifier};
//! let key: IdempotencyKey = "pay_7d5d747be160e280504c099d984bcfe0".parse().unwrap();
//! assert_eq!(key.as_str(), "pay_7d5d747be160e280504c099d984bcfe0");
//! assert!("short".parse::<IdempotencyKey>().is_err());
//! assert!("has space in it, sixteen+".parse::<IdempotencyKey>().is_err());
//!
//! let extensions = serde_json::json!({"payment-identifier": {"info": {"required": false,
//!     "id": "pay_7d5d747be160e280504c099d984bcfe0"}}});
//! let found = PaymentIdentifier::from_extensions(extensions.as_object()).unwrap().unwrap();
//! assert_eq!(found.id.as_str(), "pay_7d5d747be160e280504c099d984bcfe0");
//! ```

use std::fmt;
use std::str::FromStr;

use http::HeaderName;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

/// The request header naming a settlement attempt (`Idempotency-Key`).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The extension's key in `extensions`.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";

/// Shortest key accepted.
pub const MIN_LEN: usize = 16;
/// Longest key accepted.
pub const MAX_LEN: usize = 128;

/// Why a key or identifier is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    /// Wrong length.
    #[error("an idempotency key has {MIN_LEN}–{MAX_LEN} characters, this one has {0}")]
    Length(usize),
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("an idempotency key has only the characters A-Z a-z 0-9 _ -; found {0:?}")]
    Character(char),
    /// The extension is present but not shaped as the spec says.
    #[error("malformed `payment-identifier` extension: {0}")]
    Malformed(String),
}

/// A validated attempt name: 16–128 characters from `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates `value`.
    pub fn new(value: &str) -> Result<Self, IdempotencyError> {
        let len = value.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(IdempotencyError::Length(len));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(IdempotencyError::Character(bad));
        }
        Ok(Self(value.to_owned()))
    }

    /// A key from 16 random bytes (the caller supplies them: this crate does no I/O), as
    /// `"tg_"` and 32 hex digits.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(35);
        s.push_str("tg_");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IdempotencyKey {
    type Err = IdempotencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for IdempotencyKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The `payment-identifier` extension as found in a payment's `extensions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIdentifier {
    /// The client's id for this payment attempt.
    pub id: IdempotencyKey,
    /// Whether the server said the id is required.
    pub required: bool,
}

impl PaymentIdentifier {
    /// Reads the extension from a payment's `extensions`: `Ok(None)` when absent or when it
    /// carries no `id`; an error when present but malformed (wrong types, bad id).
    pub fn from_extensions(
        extensions: Option<&Map<String, Value>>,
    ) -> Result<Option<Self>, IdempotencyError> {
        let Some(ext) = extensions.and_then(|e| e.get(PAYMENT_IDENTIFIER)) else {
            return Ok(None);
        };
        let info = ext
            .get("info")
            .ok_or_else(|| IdempotencyError::Malformed("no `info` object".into()))?
            .as_object()
            .ok_or_else(|| IdempotencyError::Malformed("`info` is not an object".into()))?;
        let required = match info.get("required") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(IdempotencyError::Malformed(
                    "`info.required` is not a boolean".into(),
                ))
            }
        };
        match info.get("id") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(Self {
                id: IdempotencyKey::new(s)?,
                required,
            })),
            Some(_) => Err(IdempotencyError::Malformed(
                "`info.id` is not a string".into(),
            )),
        }
    }

    /// Whether a 402's `extensions` (or a route's) say the identifier is required.
    pub fn is_required(extensions: Option<&Map<String, Value>>) -> bool {
        extensions
            .and_then(|e| e.get(PAYMENT_IDENTIFIER))
            .and_then(|e| e.get("info"))
            .and_then(|i| i.get("required"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether a 402's `extensions` offer the extension at all.
    pub fn is_offered(extensions: Option<&Map<String, Value>>) -> bool {
        extensions.is_some_and(|e| e.contains_key(PAYMENT_IDENTIFIER))
    }

    /// The extension as a server offers it in a 402 (`info.required` and the spec's schema).
    pub fn offer(required: bool) -> Value {
        json!({
            "info": { "required": required },
            "schema": schema(),
        })
    }

    /// The extension as a client echoes it with its `id`.
    pub fn echo(id: &IdempotencyKey, required: bool) -> Value {
        json!({
            "info": { "required": required, "id": id.as_str() },
            "schema": schema(),
        })
    }
}

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "required": { "type": "boolean" },
            "id": { "type": "string", "minLength": MIN_LEN, "maxLength": MAX_LEN }
        },
        "required": ["required"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_not_normalised() {
        assert!(IdempotencyKey::new(&"a".repeat(16)).is_ok());
        assert!(IdempotencyKey::new(&"a".repeat(128)).is_ok());
        assert_eq!(
            IdempotencyKey::new(&"a".repeat(15)),
            Err(IdempotencyError::Length(15))
        );
        assert_eq!(
            IdempotencyKey::new(&"a".repeat(129)),
            Err(IdempotencyError::Length(129))
        );
        assert_eq!(
            IdempotencyKey::new("aaaaaaaaaaaaaaaa."),
            Err(IdempotencyError::Character('.'))
        );
        assert!(IdempotencyKey::new("ääääääääääääääää").is_err());
        let k = IdempotencyKey::from_random_bytes([0xab; 16]);
        assert_eq!(k.as_str().len(), 35);
        assert_eq!(IdempotencyKey::new(k.as_str()).unwrap(), k);
    }

    #[test]
    fn the_extension_is_read_strictly() {
        let ok = json!({"payment-identifier": PaymentIdentifier::echo(
            &"pay_0123456789abcdef".parse().unwrap(), true)});
        let found = PaymentIdentifier::from_extensions(ok.as_object())
            .unwrap()
            .unwrap();
        assert!(found.required);
        assert_eq!(PaymentIdentifier::from_extensions(None), Ok(None));
        let no_id = json!({"payment-identifier": {"info": {"required": false}}});
        assert_eq!(
            PaymentIdentifier::from_extensions(no_id.as_object()),
            Ok(None)
        );
        for bad in [
            json!({"payment-identifier": {"info": {"id": "short"}}}),
            json!({"payment-identifier": {"info": {"id": 12345678901234567_u64}}}),
            json!({"payment-identifier": {"info": "x"}}),
            json!({"payment-identifier": {}}),
            json!({"payment-identifier": {"info": {"required": "yes", "id": "pay_0123456789abcdef"}}}),
        ] {
            assert!(
                PaymentIdentifier::from_extensions(bad.as_object()).is_err(),
                "{bad}"
            );
        }
        let offer = json!({"payment-identifier": PaymentIdentifier::offer(true)});
        assert!(PaymentIdentifier::is_required(offer.as_object()));
        assert!(PaymentIdentifier::is_offered(offer.as_object()));
    }
}
