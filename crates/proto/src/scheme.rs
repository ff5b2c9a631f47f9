//! Payment scheme identifiers.
//!
//! A scheme says how money moves (`exact`: pay exactly the stated amount; `upto`: authorize a
//! maximum, settle what was used). This crate only names schemes; what a scheme puts in a
//! payment's `payload` is interpreted by the scheme's own crate.

use std::fmt;
use std::str::FromStr;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// Longest scheme token accepted.
const MAX_LEN: usize = 64;

/// A payment scheme.
///
/// Known schemes are variants; any other well-formed token (`[a-z0-9][a-z0-9_-]*`, at most 64
/// characters) is kept as [`Scheme::Unknown`]. That is deliberate: a 402 challenge may offer
/// several `accepts` entries, and a client must be able to skip an option whose scheme it
/// cannot pay instead of failing to decode the whole challenge. Malformed tokens (empty, upper
/// case, spaces) are not a scheme anyone can implement and fail to deserialize.
///
/// ```
/// use tollgate_proto::Scheme;
/// let s: Scheme = serde_json::from_str("\"exact\"").unwrap();
/// assert_eq!(s, Scheme::Exact);
/// let later: Scheme = "auth-capture".parse().unwrap();
/// assert_eq!(later, Scheme::Unknown("auth-capture".into()));
/// assert!(!later.is_known());
/// assert!(serde_json::from_str::<Scheme>("\"Exact\"").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Transfer exactly the stated amount.
    Exact,
    /// Authorize up to an amount; settle what was used.
    Upto,
    /// Commit per request (a signed cumulative voucher against a deposit); settle later, in
    /// batches (`batch-settlement`).
    BatchSettlement,
    /// A well-formed scheme this version does not implement, kept verbatim.
    Unknown(String),
}

/// Why a string is not a scheme token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scheme {0:?}: expected a lower-case token of [a-z0-9_-] starting with a letter or digit, at most 64 characters (e.g. \"exact\")")]
pub struct SchemeError(pub String);

impl Scheme {
    /// The wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact => "exact",
            Self::Upto => "upto",
            Self::BatchSettlement => "batch-settlement",
            Self::Unknown(s) => s,
        }
    }

    /// Whether this is a scheme Tollgate knows by name (not [`Scheme::Unknown`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown(_))
    }
}

impl FromStr for Scheme {
    type Err = SchemeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(Self::Exact),
            "upto" => Ok(Self::Upto),
            "batch-settlement" => Ok(Self::BatchSettlement),
            _ => {
                let lower_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
                let well_formed = s.len() <= MAX_LEN
                    && s.bytes().next().is_some_and(lower_digit)
                    && s.bytes().all(|b| lower_digit(b) || b == b'-' || b == b'_');
                if well_formed {
                    Ok(Self::Unknown(s.to_owned()))
                } else {
                    Err(SchemeError(s.to_owned()))
                }
            }
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scheme {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scheme {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_unknown_and_malformed() {
        assert_eq!("exact".parse::<Scheme>().unwrap(), Scheme::Exact);
        assert_eq!("upto".parse::<Scheme>().unwrap(), Scheme::Upto);
        assert_eq!(
            "batch-settlement".parse::<Scheme>().unwrap(),
            Scheme::BatchSettlement
        );
        for ok in ["auth_capture", "x", "9a", &"x".repeat(64)] {
            assert_eq!(ok.parse::<Scheme>().unwrap(), Scheme::Unknown(ok.into()));
        }
        for bad in [
            "",
            " exact",
            "exact ",
            "EXACT",
            "Exact",
            "-x",
            "_x",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert_eq!(
                bad.parse::<Scheme>(),
                Err(SchemeError(bad.into())),
                "{bad:?}"
            );
            let json = serde_json::to_string(bad).unwrap();
            assert!(serde_json::from_str::<Scheme>(&json).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_is_the_token() {
        for s in [Scheme::Exact, Scheme::Upto, Scheme::Unknown("later".into())] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Scheme>(&json).unwrap(), s);
        }
        assert!(serde_json::from_str::<Scheme>("1").is_err());
    }
}
