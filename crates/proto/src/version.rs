//! Protocol version tags (`x402Version`).
//!
//! [`V1`] and [`V2`] are unit types that serialize as the JSON numbers `1` and `2` and refuse
//! any other value. A v2 struct carries a `V2` field, so it cannot be built from a v1 message by
//! accident: decoding fails with "expected x402Version 2, got 1" instead of producing a value
//! with silently wrong field meanings. [`X402Version`] is the runtime form, for messages whose
//! shape depends on the version.

use std::fmt;

use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

macro_rules! version_tag {
    ($name:ident, $n:literal, $variant:ident) => {
        #[doc = concat!(
            "The `x402Version` tag ", stringify!($n), ": serializes as `", stringify!($n),
            "` and refuses any other number.\n\n",
            "```\n",
            "use tollgate_proto::", stringify!($name), ";\n",
            "assert_eq!(serde_json::to_string(&", stringify!($name), ").unwrap(), \"", stringify!($n), "\");\n",
            "assert!(serde_json::from_str::<", stringify!($name), ">(\"", stringify!($n), "\").is_ok());\n",
            "assert!(serde_json::from_str::<", stringify!($name), ">(\"3\").is_err());\n",
            "```"
        )]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name;

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u8($n)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = u64::deserialize(d)?;
                if v == $n {
                    Ok($name)
                } else {
                    Err(D::Error::custom(format_args!(
                        concat!("expected x402Version ", stringify!($n), ", got {}"),
                        v
                    )))
                }
            }
        }

        impl From<$name> for X402Version {
            fn from(_: $name) -> Self {
                X402Version::$variant
            }
        }
    };
}

version_tag!(V1, 1, V1);
version_tag!(V2, 2, V2);

/// Either protocol version, for messages whose shape depends on it (facilitator requests,
/// `/supported` kinds, a payment header that may carry either).
///
/// ```
/// use tollgate_proto::X402Version;
/// let v: X402Version = serde_json::from_str("1").unwrap();
/// assert_eq!(v, X402Version::V1);
/// assert_eq!(serde_json::to_string(&X402Version::V2).unwrap(), "2");
/// assert!(serde_json::from_str::<X402Version>("3").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum X402Version {
    /// x402 v1: `X-PAYMENT` headers, v1 network names, `maxAmountRequired`.
    V1,
    /// x402 v2: `PAYMENT-*` headers, CAIP-2 networks, `amount`.
    V2,
}

impl X402Version {
    /// The number on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

impl fmt::Display for X402Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

impl Serialize for X402Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for X402Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            other => Err(D::Error::custom(format_args!(
                "unsupported x402Version {other} (expected 1 or 2)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_reject_others() {
        assert_eq!(serde_json::to_string(&V2).unwrap(), "2");
        assert_eq!(serde_json::to_string(&V1).unwrap(), "1");
        assert!(serde_json::from_str::<V2>("2").is_ok());
        let err = serde_json::from_str::<V2>("1").unwrap_err().to_string();
        assert!(err.contains("expected x402Version 2, got 1"), "{err}");
        let err = serde_json::from_str::<V1>("2").unwrap_err().to_string();
        assert!(err.contains("expected x402Version 1, got 2"), "{err}");
        for bad in ["\"1\"", "-1", "1.5", "null", "{}"] {
            assert!(serde_json::from_str::<V1>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<X402Version>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn runtime_version() {
        assert_eq!(
            serde_json::from_str::<X402Version>("1").unwrap(),
            X402Version::V1
        );
        assert_eq!(
            serde_json::from_str::<X402Version>("2").unwrap(),
            X402Version::V2
        );
        let err = serde_json::from_str::<X402Version>("3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported x402Version 3"), "{err}");
        assert_eq!(X402Version::from(V1), X402Version::V1);
        assert_eq!(X402Version::from(V2).to_string(), "2");
    }
}
