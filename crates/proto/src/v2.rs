//! x402 v2 wire types (`specs/x402-specification-v2.md` §5).
//!
//! Field names are the spec's camelCase. Optional fields are omitted when absent. Unknown
//! fields are ignored on input, so a peer that adds fields keeps working.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AtomicAmount, Network, Scheme, V2};

/// Extension data, keyed by extension id (`{ "<id>": { "info": …, "schema": … } }`).
pub type Extensions = Map<String, Value>;

/// What is being paid for.
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
    /// Name of the service selling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Discovery tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Icon for wallets and paywalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// One way to pay: scheme, network, asset, amount and recipient.
///
/// ```
/// use tollgate_proto::PaymentRequirements;
/// let r: PaymentRequirements = serde_json::from_str(r#"{
///   "scheme": "exact", "network": "eip155:84532", "amount": "10000",
///   "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
///   "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///   "maxTimeoutSeconds": 60, "extra": { "name": "USDC", "version": "2" }
/// }"#).unwrap();
/// assert_eq!(r.amount.to_string(), "10000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Payment scheme.
    pub scheme: Scheme,
    /// CAIP-2 network.
    pub network: Network,
    /// Amount in atomic units (for `exact`: exactly this).
    pub amount: AtomicAmount,
    /// Token address (or ISO 4217 code for fiat rails).
    pub asset: String,
    /// Recipient.
    pub pay_to: String,
    /// How long the payment may take to complete.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data (for EIP-3009 tokens: the EIP-712 `name` and `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The 402 challenge: what the resource costs and how it can be paid.
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
    /// Acceptable ways to pay.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions offered by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

/// A signed payment: the option chosen (`accepted`, echoed verbatim) and the scheme's proof.
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
