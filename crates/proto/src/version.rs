//! Protocol version tags.
//!
//! `V1` and `V2` are unit types that serialize as the JSON numbers 1 and 2 and refuse any other
//! value, so a v2 type can never be built from a v1 message by accident.

use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

macro_rules! version_tag {
    ($name:ident, $n:literal) => {
        #[doc = concat!("The `x402Version` tag ", stringify!($n), ".")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
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
                    Err(D::Error::custom(format!(
                        concat!("expected x402Version ", stringify!($n), ", got {}"),
                        v
                    )))
                }
            }
        }
    };
}

version_tag!(V1, 1);
version_tag!(V2, 2);

/// Either protocol version, for messages whose shape depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum X402Version {
    /// x402 v1: `X-PAYMENT` headers, v1 network names.
    V1,
    /// x402 v2: `PAYMENT-*` headers, CAIP-2 networks.
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
            other => Err(D::Error::custom(format!(
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
        assert!(serde_json::from_str::<V2>("2").is_ok());
        let err = serde_json::from_str::<V2>("1").unwrap_err().to_string();
        assert!(err.contains("expected x402Version 2, got 1"), "{err}");
        assert!(serde_json::from_str::<V1>("\"1\"").is_err());
        assert_eq!(
            serde_json::from_str::<X402Version>("1").unwrap(),
            X402Version::V1
        );
        assert!(serde_json::from_str::<X402Version>("3").is_err());
    }
}
