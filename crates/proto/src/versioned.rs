//! Messages whose shape depends on `x402Version`, decoded by reading that field first.
//!
//! An untagged enum would try each shape in turn and, when both fail, report neither failure
//! usefully. Here the version picks the shape, and a failure names the field that broke it
//! (`accepted.amount: invalid amount "-1": …`).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::v1::{PaymentPayloadV1, PaymentRequiredV1};
use crate::{PaymentPayload, PaymentRequired, X402Version};

/// Reads the version at `version_at` (a list of candidate JSON pointers, the first present one
/// wins), then decodes the whole value as `A` (v1) or `B` (v2).
pub(crate) fn dispatch<'de, D, A, B, T>(
    d: D,
    version_at: &[&str],
    v1: impl FnOnce(A) -> T,
    v2: impl FnOnce(B) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    A: DeserializeOwned,
    B: DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    if !value.is_object() {
        return Err(D::Error::custom(
            "expected a JSON object with `x402Version`",
        ));
    }
    let (pointer, version) = version_at
        .iter()
        .find_map(|p| value.pointer(p).map(|v| (*p, v)))
        .ok_or_else(|| D::Error::custom("missing field `x402Version`"))?;
    let version: X402Version = serde_json::from_value(version.clone()).map_err(|e| {
        let field = pointer.trim_start_matches('/').replace('/', ".");
        D::Error::custom(format_args!("{field}: {e}"))
    })?;
    match version {
        X402Version::V1 => decode_at::<A, D::Error>(value).map(v1),
        X402Version::V2 => decode_at::<B, D::Error>(value).map(v2),
    }
}

/// Decodes a JSON value, prefixing the error with the path of the failing field. The
/// `path: message` form is what [`crate::header::decode`] unpacks into `HeaderError::Json`.
///
/// A valid value is decoded without tracking paths (the common case, on every paid request);
/// only a failure is decoded again, tracked, to name the field.
pub(crate) fn decode_at<T: DeserializeOwned, E: serde::de::Error>(value: Value) -> Result<T, E> {
    if let Ok(decoded) = T::deserialize(&value) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            E::custom(inner)
        } else {
            E::custom(format_args!("{path}: {inner}"))
        }
    })
}

/// A payment of either version, as found in a `PAYMENT-SIGNATURE` or `X-PAYMENT` header.
///
/// ```
/// use tollgate_proto::{AnyPaymentPayload, X402Version};
/// let v1 = r#"{"x402Version":1,"scheme":"exact","network":"base","payload":{}}"#;
/// let payment: AnyPaymentPayload = serde_json::from_str(v1).unwrap();
/// assert_eq!(payment.version(), X402Version::V1);
/// let v3 = r#"{"x402Version":3,"scheme":"exact","network":"base","payload":{}}"#;
/// assert!(serde_json::from_str::<AnyPaymentPayload>(v3).is_err());
/// ```
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

impl From<PaymentPayloadV1> for AnyPaymentPayload {
    fn from(p: PaymentPayloadV1) -> Self {
        Self::V1(p)
    }
}

impl From<PaymentPayload> for AnyPaymentPayload {
    fn from(p: PaymentPayload) -> Self {
        Self::V2(Box::new(p))
    }
}

impl<'de> Deserialize<'de> for AnyPaymentPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        dispatch(d, &["/x402Version"], Self::V1, |p: PaymentPayload| {
            Self::V2(Box::new(p))
        })
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

/// A 402 challenge of either version (v1: the JSON response body; v2: the `PAYMENT-REQUIRED`
/// header, which v2 servers may also mirror in the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPaymentRequired {
    /// A v1 challenge.
    V1(PaymentRequiredV1),
    /// A v2 challenge.
    V2(PaymentRequired),
}

impl AnyPaymentRequired {
    /// The version.
    pub fn version(&self) -> X402Version {
        match self {
            Self::V1(_) => X402Version::V1,
            Self::V2(_) => X402Version::V2,
        }
    }
}

impl From<PaymentRequiredV1> for AnyPaymentRequired {
    fn from(p: PaymentRequiredV1) -> Self {
        Self::V1(p)
    }
}

impl From<PaymentRequired> for AnyPaymentRequired {
    fn from(p: PaymentRequired) -> Self {
        Self::V2(p)
    }
}

impl<'de> Deserialize<'de> for AnyPaymentRequired {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        dispatch(d, &["/x402Version"], Self::V1, Self::V2)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dispatches_on_the_version_and_names_the_failing_field() {
        let v1 = json!({"x402Version": 1, "error": "", "accepts": []});
        let any: AnyPaymentRequired = serde_json::from_value(v1.clone()).unwrap();
        assert_eq!(any.version(), X402Version::V1);
        assert_eq!(serde_json::to_value(&any).unwrap(), v1);

        let v2 = json!({"x402Version": 2, "resource": {"url": "u"}, "accepts": []});
        let any: AnyPaymentRequired = serde_json::from_value(v2.clone()).unwrap();
        assert_eq!(any.version(), X402Version::V2);
        assert_eq!(serde_json::to_value(&any).unwrap(), v2);

        let bad = json!({"x402Version": 2, "resource": {"url": 5}, "accepts": []});
        let err = serde_json::from_value::<AnyPaymentRequired>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("resource.url: "), "{err}");

        for (bad, expected) in [
            (
                json!({"x402Version": 3}),
                "x402Version: unsupported x402Version 3",
            ),
            (json!({"x402Version": "2"}), "x402Version: invalid type"),
            (json!({"accepts": []}), "missing field `x402Version`"),
            (json!([1, 2]), "expected a JSON object"),
        ] {
            let err = serde_json::from_value::<AnyPaymentRequired>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
