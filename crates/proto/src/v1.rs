//! x402 v1 wire types (`specs/x402-specification-v1.md` §5), as a thin adapter over v2.
//!
//! Everything inside Tollgate works on v2 types; v1 messages are converted at the edge. The
//! conversions keep what v1 carries and nothing is invented: v1's per-requirement `resource`,
//! `description` and `mimeType` become v2's `ResourceInfo`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::network::NetworkV1;
use crate::{
    AtomicAmount, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo, Scheme, V1,
    V2,
};

/// v1 payment requirements (`maxAmountRequired`, v1 network names, resource inline).
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
    /// Description (required by the spec; tolerated missing on input).
    #[serde(default)]
    pub description: String,
    /// MIME type (written even when empty, as the official SDK does).
    #[serde(default)]
    pub mime_type: String,
    /// JSON schema of the response (`null` when none, as in the spec's example).
    #[serde(default)]
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

/// The v1 402 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    /// Always 1.
    pub x402_version: V1,
    /// Why payment is required.
    #[serde(default)]
    pub error: String,
    /// Acceptable ways to pay.
    pub accepts: Vec<PaymentRequirementsV1>,
}

/// The v1 payment (`X-PAYMENT`).
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
    /// The v1 form of v2 requirements for `resource`.
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

    /// The v2 requirements and resource this stands for.
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
    /// The v1 body for a v2 challenge.
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

    /// The v1 form of a v2 payment.
    pub fn from_v2(payment: &PaymentPayload) -> Self {
        Self {
            x402_version: V1,
            scheme: payment.accepted.scheme.clone(),
            network: NetworkV1(payment.accepted.network.clone()),
            payload: payment.payload.clone(),
        }
    }
}
