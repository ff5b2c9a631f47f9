//! Messages whose shape depends on `x402Version`, decoded by looking at that field first.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::v1::{PaymentPayloadV1, PaymentRequiredV1};
use crate::{PaymentPayload, PaymentRequired, X402Version};

/// Reads `x402Version` from a JSON object, then decodes the rest as the matching type, naming
/// the failing field (e.g. `accepted.amount`) on error.
pub(crate) fn dispatch<'de, D, A, B, T>(
    d: D,
    v1: impl FnOnce(A) -> T,
    v2: impl FnOnce(B) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    A: DeserializeOwned,
    B: DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    let version = value
        .get("x402Version")
        .ok_or_else(|| D::Error::custom("missing field `x402Version`"))?;
    let version: X402Version = serde_json::from_value(version.clone())
        .map_err(|e| D::Error::custom(format!("x402Version: {e}")))?;
    match version {
        X402Version::V1 => decode_at::<A, D::Error>(value).map(v1),
        X402Version::V2 => decode_at::<B, D::Error>(value).map(v2),
    }
}

pub(crate) fn decode_at<T: DeserializeOwned, E: serde::de::Error>(value: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            E::custom(inner)
        } else {
            E::custom(format!("{path}: {inner}"))
        }
    })
}

/// A payment of either version, as found in a `PAYMENT-SIGNATURE` or `X-PAYMENT` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPaymentPayload {
    /// A v1 payment.
    V1(PaymentPayloadV1),
    /// A v2 payment (boxed: it is several times larger than a v1 payment).
    V2(Box<PaymentPayload>),
}

impl AnyPaymentPayload {
    /// The version.
    pub fn version(&self) -> X402Version {
        match self {
            Self::V1(_) => X402Version::V1,
            Self::V2(_) => X402Version::V2,
        }
    }
}

impl<'de> Deserialize<'de> for AnyPaymentPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        dispatch(d, Self::V1, |p: PaymentPayload| Self::V2(Box::new(p)))
    }
}

impl Serialize for AnyPaymentPayload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::V1(p) => p.serialize(s),
            Self::V2(p) => p.serialize(s),
        }
    }
}

/// A 402 challenge of either version (v1: the JSON body; v2: the `PAYMENT-REQUIRED` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPaymentRequired {
    /// A v1 challenge.
    V1(PaymentRequiredV1),
    /// A v2 challenge.
    V2(PaymentRequired),
}

impl<'de> Deserialize<'de> for AnyPaymentRequired {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        dispatch(d, Self::V1, Self::V2)
    }
}

impl Serialize for AnyPaymentRequired {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::V1(p) => p.serialize(s),
            Self::V2(p) => p.serialize(s),
        }
    }
}
