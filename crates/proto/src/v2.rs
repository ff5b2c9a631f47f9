//! x402 v2 wire types (`x402-specification-v2.md` §5): the challenge, the requirements it
//! offers, and the payment that answers it.
//!
//! Field names are the spec's camelCase. Optional fields are omitted when absent and accept
//! `null` on input (the official SDK's schemas are `nullish`). Unknown fields are ignored on
//! input, so a peer that adds fields keeps working. What a scheme puts in
//! [`PaymentPayload::payload`] and [`PaymentRequirements::extra`] stays an opaque JSON object
//! here; the scheme's own crate interprets it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AtomicAmount, Network, Scheme, V2};

/// Extension data, keyed by extension id (`{ "<id>": { "info": …, "schema": … } }`). Kept as
/// raw JSON: a client must echo what the server sent even for extensions it does not know.
pub type Extensions = Map<String, Value>;

/// What is being paid for. Only `url` is required; the rest helps wallets and discovery.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// URL of the protected resource.
    pub url: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Name of the service selling it (the SDK limits it to 32 printable ASCII characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Discovery tags (the SDK allows at most 5, each at most 32 printable ASCII characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Icon for wallets and paywalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

impl ResourceInfo {
    /// A resource known only by its URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// One way to pay: scheme, network, asset, amount and recipient.
///
/// A client picks one entry of a challenge's `accepts` and echoes it verbatim as its payment's
/// `accepted`; a server finds the entry it offered by comparing the two.
///
/// ```
/// use tollgate_proto::{Network, PaymentRequirements, Scheme};
/// let r: PaymentRequirements = serde_json::from_str(r#"{
///   "scheme": "exact", "network": "eip155:84532", "amount": "10000",
///   "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
///   "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///   "maxTimeoutSeconds": 60, "extra": { "name": "USDC", "version": "2" }
/// }"#).unwrap();
/// assert_eq!((r.scheme.clone(), r.network.clone()), (Scheme::Exact, Network::eip155(84532)));
/// assert_eq!(r.amount.to_string(), "10000");
/// assert_eq!(r.extra_str("name"), Some("USDC"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Payment scheme.
    pub scheme: Scheme,
    /// CAIP-2 network.
    pub network: Network,
    /// Amount in atomic units (for `exact`: exactly this; for `upto`: at most this).
    pub amount: AtomicAmount,
    /// Token address (or ISO 4217 code for fiat rails).
    pub asset: String,
    /// Recipient address (or a role constant such as `"merchant"`).
    pub pay_to: String,
    /// How long the payment may take to complete, in seconds.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data, opaque here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

impl PaymentRequirements {
    /// A string field of `extra`, if present and a string.
    pub fn extra_str(&self, key: &str) -> Option<&str> {
        self.extra.as_ref()?.get(key)?.as_str()
    }
}

/// The 402 challenge (`PAYMENT-REQUIRED`): what the resource costs and how it can be paid.
///
/// ```
/// use tollgate_proto::{PaymentRequired, ResourceInfo, V2};
/// let challenge = PaymentRequired {
///     x402_version: V2,
///     error: None,
///     resource: ResourceInfo::new("https://api.example.com/data"),
///     accepts: vec![],
///     extensions: None,
/// };
/// let json = serde_json::to_string(&challenge).unwrap();
/// assert_eq!(json, r#"{"x402Version":2,"resource":{"url":"https://api.example.com/data"},"accepts":[]}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: V2,
    /// Why payment is required (e.g. the previous payment's failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    pub resource: ResourceInfo,
    /// Acceptable ways to pay; a client skips entries it cannot pay.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions offered by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

/// A signed payment (`PAYMENT-SIGNATURE`): the option chosen, echoed verbatim as `accepted`,
/// and the scheme's proof in `payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 2.
    pub x402_version: V2,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The requirements the payer chose.
    pub accepted: PaymentRequirements,
    /// Scheme-specific payment data, opaque at this layer.
    pub payload: Map<String, Value>,
    /// Extensions echoed by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirements() -> Value {
        serde_json::json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "10000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 60
        })
    }

    #[test]
    fn optional_fields_are_omitted_and_nulls_accepted() {
        let r: PaymentRequirements = serde_json::from_value(requirements()).unwrap();
        assert_eq!(r.extra, None);
        assert_eq!(serde_json::to_value(&r).unwrap(), requirements());
        let mut with_null = requirements();
        with_null["extra"] = Value::Null;
        with_null["someFutureField"] = 1.into();
        assert_eq!(
            serde_json::from_value::<PaymentRequirements>(with_null).unwrap(),
            r
        );
        let resource: ResourceInfo = serde_json::from_value(serde_json::json!({
            "url": "https://x", "description": null, "serviceName": "S",
            "tags": ["a", "b"], "iconUrl": "https://x/i.png"
        }))
        .unwrap();
        assert_eq!(resource.service_name.as_deref(), Some("S"));
        assert_eq!(
            serde_json::to_value(&resource).unwrap(),
            serde_json::json!({
                "url": "https://x", "serviceName": "S", "tags": ["a", "b"],
                "iconUrl": "https://x/i.png"
            })
        );
    }

    #[test]
    fn required_fields_are_required() {
        for field in [
            "scheme",
            "network",
            "amount",
            "asset",
            "payTo",
            "maxTimeoutSeconds",
        ] {
            let mut v = requirements();
            v.as_object_mut().unwrap().remove(field);
            let err = serde_json::from_value::<PaymentRequirements>(v).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let mut v = requirements();
        v["network"] = "base-sepolia".into();
        assert!(serde_json::from_value::<PaymentRequirements>(v).is_err());
        let mut v = requirements();
        v["maxTimeoutSeconds"] = (-1).into();
        assert!(serde_json::from_value::<PaymentRequirements>(v).is_err());
    }
}
