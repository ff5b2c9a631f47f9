//! x402 v1 wire types (`x402-specification-v1.md` §5), as a thin adapter over v2.
//!
//! Everything inside Tollgate works on v2 types; v1 messages are converted at the edge, so
//! verification and settlement exist once. The conversions keep what v1 carries and invent
//! nothing: v1's per-requirement `resource`, `description` and `mimeType` become v2's
//! [`ResourceInfo`]; `maxAmountRequired` becomes `amount`; v1 network names become CAIP-2.
//!
//! Input is lenient where real peers are: `description`, `mimeType`, `outputSchema`, `extra` and
//! the 402 body's `error` may be absent (the official SDK's schemas make them optional). Output
//! is exact: `description` and `mimeType` (empty when unknown, as the SDK writes it) are always
//! written; `outputSchema` is omitted when there is none. The spec's 402 example writes
//! `"outputSchema": null`, but the official v1 client (`x402-fetch` 1.2.0, zod schema
//! `outputSchema: z.record(z.any()).optional()`) rejects `null` and refuses to pay; omitting it
//! is valid for both.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::network::NetworkV1;
use crate::{
    AtomicAmount, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo, Scheme, V1,
    V2,
};

/// v1 payment requirements: `maxAmountRequired`, a v1 network name, the resource inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    /// Payment scheme.
    pub scheme: Scheme,
    /// Network, by v1 name.
    pub network: NetworkV1,
    /// Amount in atomic units.
    pub max_amount_required: AtomicAmount,
    /// URL of the resource.
    pub resource: String,
    /// Description (required by the spec; tolerated missing on input, as empty).
    #[serde(default)]
    pub description: String,
    /// MIME type (optional in the spec; written even when empty, as the official SDK does).
    #[serde(default)]
    pub mime_type: String,
    /// JSON schema of the response; omitted when none (the official v1 client rejects `null`,
    /// which the spec's example shows; `null` is still accepted on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Recipient.
    pub pay_to: String,
    /// How long the payment may take.
    pub max_timeout_seconds: u64,
    /// Token address.
    pub asset: String,
    /// Scheme-specific data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The v1 402 response body (`PaymentRequirementsResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    /// Always 1.
    pub x402_version: V1,
    /// Why payment is required (required by the spec; tolerated missing on input, as empty).
    #[serde(default)]
    pub error: String,
    /// Acceptable ways to pay.
    pub accepts: Vec<PaymentRequirementsV1>,
}

/// The v1 payment (`X-PAYMENT`): scheme and network, but not the requirements it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1 {
    /// Always 1.
    pub x402_version: V1,
    /// Scheme paid with.
    pub scheme: Scheme,
    /// Network paid on.
    pub network: NetworkV1,
    /// Scheme-specific payment data.
    pub payload: Map<String, Value>,
}

impl PaymentRequirementsV1 {
    /// The v1 form of v2 requirements for `resource`. v2's `serviceName`, `tags` and `iconUrl`
    /// have no v1 field and are dropped.
    pub fn from_v2(req: &PaymentRequirements, resource: &ResourceInfo) -> Self {
        Self {
            scheme: req.scheme.clone(),
            network: NetworkV1(req.network.clone()),
            max_amount_required: req.amount,
            resource: resource.url.clone(),
            description: resource.description.clone().unwrap_or_default(),
            mime_type: resource.mime_type.clone().unwrap_or_default(),
            output_schema: None,
            pay_to: req.pay_to.clone(),
            max_timeout_seconds: req.max_timeout_seconds,
            asset: req.asset.clone(),
            extra: req.extra.clone(),
        }
    }

    /// The v2 requirements and resource this stands for; `outputSchema` has no v2 field and
    /// is dropped. An empty description or MIME type becomes `None`.
    pub fn to_v2(&self) -> (PaymentRequirements, ResourceInfo) {
        let requirements = PaymentRequirements {
            scheme: self.scheme.clone(),
            network: self.network.0.clone(),
            amount: self.max_amount_required,
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
        };
        let resource = ResourceInfo {
            url: self.resource.clone(),
            description: Some(self.description.clone()).filter(|s| !s.is_empty()),
            mime_type: Some(self.mime_type.clone()).filter(|s| !s.is_empty()),
            ..ResourceInfo::default()
        };
        (requirements, resource)
    }
}

impl PaymentRequiredV1 {
    /// The v1 body for a v2 challenge: every option carries the challenge's resource; a missing
    /// `error` becomes the spec example's "X-PAYMENT header is required". Extensions have no v1
    /// form and are dropped.
    pub fn from_v2(required: &PaymentRequired) -> Self {
        Self {
            x402_version: V1,
            error: required
                .error
                .clone()
                .unwrap_or_else(|| "X-PAYMENT header is required".to_owned()),
            accepts: required
                .accepts
                .iter()
                .map(|r| PaymentRequirementsV1::from_v2(r, &required.resource))
                .collect(),
        }
    }
}

impl PaymentPayloadV1 {
    /// The v2 payment this stands for, given the requirements it answers. `accepted` takes the
    /// requirements but keeps the payload's own scheme and network, so a payment made for
    /// another network still fails the network check instead of being silently relabelled.
    pub fn to_v2(&self, requirements: &PaymentRequirementsV1) -> PaymentPayload {
        let (mut accepted, resource) = requirements.to_v2();
        accepted.scheme = self.scheme.clone();
        accepted.network = self.network.0.clone();
        PaymentPayload {
            x402_version: V2,
            resource: Some(resource),
            accepted,
            payload: self.payload.clone(),
            extensions: None,
        }
    }

    /// The v1 form of a v2 payment: the scheme and network of `accepted`, and the payload.
    pub fn from_v2(payment: &PaymentPayload) -> Self {
        Self {
            x402_version: V1,
            scheme: payment.accepted.scheme.clone(),
            network: NetworkV1(payment.accepted.network.clone()),
            payload: payment.payload.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Network;
    use serde_json::json;

    fn v2_requirements() -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:8453", "amount": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 60, "extra": {"name": "USD Coin", "version": "2"}
        }))
        .unwrap()
    }

    #[test]
    fn requirements_round_trip_through_v1() {
        let req = v2_requirements();
        let resource = ResourceInfo {
            description: Some("Weather".into()),
            mime_type: Some("application/json".into()),
            ..ResourceInfo::new("https://api.example.com/weather")
        };
        let v1 = PaymentRequirementsV1::from_v2(&req, &resource);
        let json = serde_json::to_value(&v1).unwrap();
        assert_eq!(json["network"], "base");
        assert_eq!(json["maxAmountRequired"], "10000");
        assert_eq!(json["resource"], "https://api.example.com/weather");
        // Omitted, never `null`: x402-fetch 1.2.0 refuses a 402 whose `outputSchema` is null.
        assert!(
            json.as_object().unwrap().get("outputSchema").is_none(),
            "{json}"
        );
        assert_eq!(v1.to_v2(), (req.clone(), resource));
        let with_null: PaymentRequirementsV1 = serde_json::from_value({
            let mut j = json.clone();
            j["outputSchema"] = Value::Null;
            j
        })
        .unwrap();
        assert_eq!(with_null.output_schema, None);

        // Without description or MIME type: written as "", read back as None.
        let bare = ResourceInfo::new("https://api.example.com/weather");
        let v1 = PaymentRequirementsV1::from_v2(&req, &bare);
        let json = serde_json::to_value(&v1).unwrap();
        assert_eq!(
            (&json["description"], &json["mimeType"]),
            (&json!(""), &json!(""))
        );
        assert_eq!(v1.to_v2(), (req, bare));
    }

    #[test]
    fn lenient_input() {
        let v1: PaymentRequirementsV1 = serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:31337", "maxAmountRequired": "1",
            "resource": "https://x", "payTo": "0xabc", "maxTimeoutSeconds": 5,
            "asset": "0xdef", "extra": null, "unknown": true
        }))
        .unwrap();
        assert_eq!(v1.network.0, Network::eip155(31337));
        assert_eq!((v1.description.as_str(), v1.mime_type.as_str()), ("", ""));
        let required: PaymentRequiredV1 =
            serde_json::from_value(json!({"x402Version": 1, "accepts": []})).unwrap();
        assert_eq!(required.error, "");
        assert!(serde_json::from_value::<PaymentRequiredV1>(
            json!({"x402Version": 2, "error": "", "accepts": []})
        )
        .is_err());
    }

    #[test]
    fn payment_to_v2_keeps_the_payloads_own_network() {
        let req =
            PaymentRequirementsV1::from_v2(&v2_requirements(), &ResourceInfo::new("https://x"));
        let payment: PaymentPayloadV1 = serde_json::from_value(json!({
            "x402Version": 1, "scheme": "exact", "network": "base-sepolia",
            "payload": {"signature": "0x"}
        }))
        .unwrap();
        let v2 = payment.to_v2(&req);
        assert_eq!(v2.accepted.network, Network::eip155(84532));
        assert_eq!(v2.accepted.amount, req.max_amount_required);
        assert_eq!(
            v2.resource.as_ref().map(|r| r.url.as_str()),
            Some("https://x")
        );
        assert_eq!(PaymentPayloadV1::from_v2(&v2), payment);
    }

    #[test]
    fn required_from_v2() {
        let challenge = PaymentRequired {
            x402_version: V2,
            error: None,
            resource: ResourceInfo::new("https://x"),
            accepts: vec![v2_requirements(), v2_requirements()],
            extensions: None,
        };
        let v1 = PaymentRequiredV1::from_v2(&challenge);
        assert_eq!(v1.error, "X-PAYMENT header is required");
        assert_eq!(v1.accepts.len(), 2);
        assert!(v1.accepts.iter().all(|a| a.resource == "https://x"));
    }
}
