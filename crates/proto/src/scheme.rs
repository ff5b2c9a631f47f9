//! Payment scheme identifiers.

use std::fmt;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// A payment scheme: how money moves (e.g. `exact`: pay exactly the stated amount).
///
/// Known schemes are variants; any other well-formed token (`[a-z0-9][a-z0-9_-]*`, at most 64
/// characters) is kept as [`Scheme::Unknown`] so that a client can skip an option it cannot
/// pay instead of rejecting the whole 402 challenge. Malformed tokens (empty, upper case,
/// spaces) fail to deserialize.
///
/// ```
/// use tollgate_proto::Scheme;
/// let s: Scheme = serde_json::from_str("\"exact\"").unwrap();
/// assert_eq!(s, Scheme::Exact);
/// assert!(serde_json::from_str::<Scheme>("\"Exact\"").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Transfer exactly the stated amount.
    Exact,
    /// Authorize up to an amount; settle what was used.
    Upto,
    /// A scheme this version does not implement.
    Unknown(String),
}

impl Scheme {
    /// The wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact => "exact",
            Self::Upto => "upto",
            Self::Unknown(s) => s,
        }
    }

    /// Parses a wire token, or says why it is malformed.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Self::Exact),
            "upto" => Ok(Self::Upto),
            _ => {
                let well_formed = !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if well_formed {
                    Ok(Self::Unknown(s.to_owned()))
                } else {
                    Err(format!(
                        "invalid scheme {s:?}: expected a lower-case token such as \"exact\""
                    ))
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
        Self::parse(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_unknown_and_malformed() {
        assert_eq!(Scheme::parse("upto").unwrap(), Scheme::Upto);
        assert_eq!(
            Scheme::parse("batch-settlement").unwrap(),
            Scheme::Unknown("batch-settlement".into())
        );
        for bad in ["", " exact", "EXACT", "-x", "a b", &"x".repeat(65)] {
            assert!(Scheme::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&Scheme::Exact).unwrap(), "\"exact\"");
    }
}
