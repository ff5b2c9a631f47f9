//! Facilitator API bodies: `POST /verify`, `POST /settle`, `GET /supported`
//! (`specs/x402-specification-v2.md` §7).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::network::NetworkV1;
use crate::v1::{PaymentPayloadV1, PaymentRequirementsV1};
use crate::versioned::decode_at;
use crate::{
    AtomicAmount, ErrorReason, Extensions, Network, PaymentPayload, PaymentRequirements, Scheme,
    X402Version,
};

/// The body of `/verify` and `/settle`: `{x402Version, paymentPayload, paymentRequirements}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FacilitatorRequest {
    /// A v1 request.
    V1 {
        /// The payment.
        payment_payload: PaymentPayloadV1,
        /// What it must satisfy.
        payment_requirements: PaymentRequirementsV1,
    },
    /// A v2 request.
    V2 {
        /// The payment.
        payment_payload: PaymentPayload,
        /// What it must satisfy.
        payment_requirements: PaymentRequirements,
    },
}

/// `/verify` body.
pub type VerifyRequest = FacilitatorRequest;
/// `/settle` body.
pub type SettleRequest = FacilitatorRequest;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestV1 {
    payment_payload: PaymentPayloadV1,
    payment_requirements: PaymentRequirementsV1,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestV2 {
    payment_payload: PaymentPayload,
    payment_requirements: PaymentRequirements,
}

impl FacilitatorRequest {
    /// The protocol version.
    pub fn version(&self) -> X402Version {
        match self {
            Self::V1 { .. } => X402Version::V1,
            Self::V2 { .. } => X402Version::V2,
        }
    }

    /// The payment and requirements as v2 types (v1 goes through the v1 adapter).
    pub fn to_v2(&self) -> (PaymentPayload, PaymentRequirements) {
        match self {
            Self::V1 {
                payment_payload,
                payment_requirements,
            } => (
                payment_payload.to_v2(payment_requirements),
                payment_requirements.to_v2().0,
            ),
            Self::V2 {
                payment_payload,
                payment_requirements,
            } => (payment_payload.clone(), payment_requirements.clone()),
        }
    }
}

impl<'de> Deserialize<'de> for FacilitatorRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::versioned::dispatch(
            d,
            |r: RequestV1| Self::V1 {
                payment_payload: r.payment_payload,
                payment_requirements: r.payment_requirements,
            },
            |r: RequestV2| Self::V2 {
                payment_payload: r.payment_payload,
                payment_requirements: r.payment_requirements,
            },
        )
    }
}

impl Serialize for FacilitatorRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a, P, R> {
            x402_version: X402Version,
            payment_payload: &'a P,
            payment_requirements: &'a R,
        }
        match self {
            Self::V1 {
                payment_payload,
                payment_requirements,
            } => Out {
                x402_version: X402Version::V1,
                payment_payload,
                payment_requirements,
            }
            .serialize(s),
            Self::V2 {
                payment_payload,
                payment_requirements,
            } => Out {
                x402_version: X402Version::V2,
                payment_payload,
                payment_requirements,
            }
            .serialize(s),
        }
    }
}

/// The answer of `/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment is valid.
    pub is_valid: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<ErrorReason>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

impl VerifyResponse {
    /// A valid payment from `payer`.
    pub fn valid(payer: impl Into<String>) -> Self {
        Self {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payer.into()),
        }
    }

    /// An invalid payment.
    pub fn invalid(reason: ErrorReason, message: Option<String>, payer: Option<String>) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            invalid_message: message,
            payer,
        }
    }
}

/// The answer of `/settle`, also sent to clients in `PAYMENT-RESPONSE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the payment settled.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<ErrorReason>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Transaction hash; empty when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// The network.
    pub network: Network,
    /// Amount actually settled, for schemes where it can differ (`upto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<AtomicAmount>,
    /// Extension data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

impl SettleResponse {
    /// A successful settlement.
    pub fn success(
        transaction: impl Into<String>,
        network: Network,
        payer: impl Into<String>,
    ) -> Self {
        Self {
            success: true,
            error_reason: None,
            error_message: None,
            payer: Some(payer.into()),
            transaction: transaction.into(),
            network,
            amount: None,
            extensions: None,
        }
    }

    /// A failed settlement.
    pub fn failure(
        reason: ErrorReason,
        message: Option<String>,
        network: Network,
        payer: Option<String>,
        transaction: Option<String>,
    ) -> Self {
        Self {
            success: false,
            error_reason: Some(reason),
            error_message: message,
            payer,
            transaction: transaction.unwrap_or_default(),
            network,
            amount: None,
            extensions: None,
        }
    }
}

/// [`SettleResponse`] on the v1 wire (`X-PAYMENT-RESPONSE`, v1 network names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponseV1 {
    /// Whether the payment settled.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<ErrorReason>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Transaction hash; empty when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// The network, by v1 name.
    pub network: NetworkV1,
}

impl From<SettleResponse> for SettleResponseV1 {
    fn from(r: SettleResponse) -> Self {
        Self {
            success: r.success,
            error_reason: r.error_reason,
            error_message: r.error_message,
            payer: r.payer,
            transaction: r.transaction,
            network: NetworkV1(r.network),
        }
    }
}

impl SettleResponseV1 {
    /// As the v2 type.
    pub fn into_v2(self) -> SettleResponse {
        SettleResponse {
            success: self.success,
            error_reason: self.error_reason,
            error_message: self.error_message,
            payer: self.payer,
            transaction: self.transaction,
            network: self.network.0,
            amount: None,
            extensions: None,
        }
    }
}

/// One (version, scheme, network) a facilitator can verify and settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedKind {
    /// Protocol version.
    pub x402_version: X402Version,
    /// Scheme.
    pub scheme: Scheme,
    /// Network; written as a v1 name for v1 kinds.
    pub network: Network,
    /// Scheme-specific data.
    pub extra: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KindWire {
    x402_version: X402Version,
    scheme: Scheme,
    network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<Map<String, Value>>,
}

impl Serialize for SupportedKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let network = match self.x402_version {
            X402Version::V1 => self
                .network
                .v1_name()
                .map(str::to_owned)
                .unwrap_or_else(|| self.network.to_string()),
            X402Version::V2 => self.network.to_string(),
        };
        KindWire {
            x402_version: self.x402_version,
            scheme: self.scheme.clone(),
            network,
            extra: self.extra.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SupportedKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: KindWire = decode_at(Value::deserialize(d)?)?;
        let network = Network::parse_any(&w.network).map_err(D::Error::custom)?;
        Ok(Self {
            x402_version: w.x402_version,
            scheme: w.scheme,
            network,
            extra: w.extra,
        })
    }
}

/// The answer of `GET /supported`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// What can be verified and settled.
    pub kinds: Vec<SupportedKind>,
    /// Extension ids implemented.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses by CAIP-2 pattern (`eip155:*`).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}
