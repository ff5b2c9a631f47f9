//! Facilitator API bodies: `POST /verify`, `POST /settle`, `GET /supported`
//! (`x402-specification-v2.md` §7, `x402-specification-v1.md` §7).
//!
//! A facilitator serves both versions on the same endpoints, so a request body is a
//! [`FacilitatorRequest`] that dispatches on its top-level `x402Version`; [`FacilitatorRequest::to_v2`]
//! normalizes either to the v2 types the rest of Tollgate works on. Responses have one shape
//! for both versions except for the network spelling ([`SettleResponseV1`], [`SupportedKind`]).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::network::NetworkV1;
use crate::v1::{PaymentPayloadV1, PaymentRequirementsV1};
use crate::versioned::decode_at;
use crate::{
    AtomicAmount, ErrorReason, Extensions, Network, PaymentPayload, PaymentRequirements, Scheme,
    X402Version, V2,
};

pub use crate::versioned::{AnyPaymentPayload, AnyPaymentRequired};

/// The body of `/verify` and `/settle`: `{x402Version, paymentPayload, paymentRequirements}`.
///
/// Decoding reads the top-level `x402Version` (falling back to `paymentPayload.x402Version` when
/// a peer omits it) and then requires both parts to be of that version; an error names the
/// failing field, e.g. `paymentRequirements.amount: …`.
///
/// ```
/// use tollgate_proto::{FacilitatorRequest, X402Version};
/// let body = r#"{"x402Version":1,
///   "paymentPayload":{"x402Version":1,"scheme":"exact","network":"base","payload":{}},
///   "paymentRequirements":{"scheme":"exact","network":"base","maxAmountRequired":"10000",
///     "resource":"https://x","description":"","mimeType":"","payTo":"0xabc",
///     "maxTimeoutSeconds":60,"asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"}}"#;
/// let request: FacilitatorRequest = serde_json::from_str(body).unwrap();
/// assert_eq!(request.version(), X402Version::V1);
/// let (payment, requirements) = request.to_v2();
/// assert_eq!(payment.accepted, requirements);
/// assert_eq!(requirements.network.to_string(), "eip155:8453");
/// ```
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

/// A v2 request whose top-level `x402Version` is 2: the shape of nearly every request, decoded
/// in one pass (see [`FacilitatorRequest::from_json`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaggedRequestV2 {
    #[allow(dead_code)] // Only its type matters: it admits 2 and nothing else.
    x402_version: V2,
    payment_payload: PaymentPayload,
    payment_requirements: PaymentRequirements,
}

impl FacilitatorRequest {
    /// Decodes a `/verify` or `/settle` body.
    ///
    /// The same result and the same errors as `serde_json::from_slice`, faster for the common
    /// case: a body with `"x402Version": 2` at the top is decoded straight into the v2 types
    /// (one pass, no intermediate `Value`); anything else — v1, a version found only in the
    /// payload, or a body that fails — takes the version dispatch, whose errors name the
    /// failing field.
    ///
    /// ```
    /// use tollgate_proto::{FacilitatorRequest, X402Version};
    ///
    /// let err = FacilitatorRequest::from_json(br#"{"x402Version": 3}"#).unwrap_err();
    /// assert!(err.to_string().contains("x402Version"), "{err}");
    /// let body = br#"{"x402Version": 2, "paymentPayload": {}, "paymentRequirements": {}}"#;
    /// assert!(FacilitatorRequest::from_json(body).is_err());
    /// ```
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        if let Ok(r) = serde_json::from_slice::<TaggedRequestV2>(body) {
            return Ok(Self::V2 {
                payment_payload: r.payment_payload,
                payment_requirements: r.payment_requirements,
            });
        }
        serde_json::from_slice(body)
    }

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
            &["/x402Version", "/paymentPayload/x402Version"],
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
///
/// ```
/// use tollgate_proto::{ErrorReason, VerifyResponse};
/// let ok = VerifyResponse::valid("0x857b06519E91e3A54538791bDbb0E22373e36b66");
/// assert_eq!(
///     serde_json::to_string(&ok).unwrap(),
///     r#"{"isValid":true,"payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#
/// );
/// let bad = VerifyResponse::invalid(ErrorReason::InsufficientFunds, None, None);
/// assert_eq!(serde_json::to_string(&bad).unwrap(), r#"{"isValid":false,"invalidReason":"insufficient_funds"}"#);
/// ```
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
    /// Scheme data (`batch-settlement`: the channel's on-chain state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl VerifyResponse {
    /// A valid payment from `payer`.
    pub fn valid(payer: impl Into<String>) -> Self {
        Self {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payer.into()),
            extra: None,
        }
    }

    /// An invalid payment, with a machine-readable reason and optionally a human message and the
    /// payer (when the payload was readable enough to name one).
    pub fn invalid(reason: ErrorReason, message: Option<String>, payer: Option<String>) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            invalid_message: message,
            payer,
            extra: None,
        }
    }
}

/// The answer of `/settle`, also sent to clients in `PAYMENT-RESPONSE`.
///
/// Fields are written in the order of the HTTP transport spec's examples, so a receipt encodes
/// byte-for-byte like the spec's `PAYMENT-RESPONSE` headers.
///
/// ```
/// use tollgate_proto::{ErrorReason, Network, SettleResponse};
/// let ok = SettleResponse::success("0x1234", Network::eip155(84532), "0xabc");
/// assert_eq!(
///     serde_json::to_string(&ok).unwrap(),
///     r#"{"success":true,"transaction":"0x1234","network":"eip155:84532","payer":"0xabc"}"#
/// );
/// let failed = SettleResponse::failure(
///     ErrorReason::InsufficientFunds, None, Network::eip155(84532), None, None);
/// assert_eq!(failed.transaction, "");
/// ```
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
    /// Transaction hash; empty when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// The network.
    pub network: Network,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Amount actually settled, for schemes where it can differ from the requirement (`upto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<AtomicAmount>,
    /// Extension data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
    /// Scheme data (`batch-settlement`: `chargedAmount`, `channelState`). Boxed: it is rare,
    /// and receipts travel by value through every paid request's enums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
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
            extra: None,
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
            extra: None,
        }
    }
}

/// [`SettleResponse`] on the v1 wire (`X-PAYMENT-RESPONSE`): the network is a v1 name, and there
/// is no `amount` or `extensions`.
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
    /// Transaction hash; empty when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// The network, by v1 name.
    pub network: NetworkV1,
    /// The payer (required by the v1 spec; optional in the SDK, as here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

impl From<SettleResponse> for SettleResponseV1 {
    /// Drops `amount` and `extensions`, which v1 cannot carry.
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
    /// As the v2 type (no `amount`, no `extensions`).
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
            extra: None,
        }
    }
}

/// One (version, scheme, network) a facilitator can verify and settle.
///
/// The JSON `network` is a v1 name for v1 kinds (as v1 clients compare it with their
/// requirements' network) and CAIP-2 for v2 kinds; either spelling is accepted on input.
///
/// ```
/// use tollgate_proto::{Network, Scheme, SupportedKind, X402Version};
/// let kind = SupportedKind {
///     x402_version: X402Version::V1,
///     scheme: Scheme::Exact,
///     network: Network::eip155(84532),
///     extra: None,
/// };
/// assert_eq!(
///     serde_json::to_string(&kind).unwrap(),
///     r#"{"x402Version":1,"scheme":"exact","network":"base-sepolia"}"#
/// );
/// let v2 = SupportedKind { x402_version: X402Version::V2, ..kind };
/// assert_eq!(
///     serde_json::to_string(&v2).unwrap(),
///     r#"{"x402Version":2,"scheme":"exact","network":"eip155:84532"}"#
/// );
/// ```
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
            X402Version::V1 => NetworkV1(self.network.clone()).as_str().to_owned(),
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
        let network = Network::parse_any(&w.network)
            .map_err(|e| D::Error::custom(format_args!("network: {e}")))?;
        Ok(Self {
            x402_version: w.x402_version,
            scheme: w.scheme,
            network,
            extra: w.extra,
        })
    }
}

/// The answer of `GET /supported`. `extensions` and `signers` are required by the v2 spec but
/// absent from v1 answers, so they default to empty on input.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v2_request() -> Value {
        let requirements = json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "10000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60
        });
        json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": {}},
            "paymentRequirements": requirements,
        })
    }

    #[test]
    fn request_dispatch() {
        let request: FacilitatorRequest = serde_json::from_value(v2_request()).unwrap();
        assert_eq!(request.version(), X402Version::V2);
        assert_eq!(serde_json::to_value(&request).unwrap(), v2_request());
        let (payment, requirements) = request.to_v2();
        assert_eq!(payment.accepted, requirements);

        // A peer that omits the top-level version is read by the payload's.
        let mut body = v2_request();
        body.as_object_mut().unwrap().remove("x402Version");
        let request: FacilitatorRequest = serde_json::from_value(body).unwrap();
        assert_eq!(request.version(), X402Version::V2);

        let mut body = v2_request();
        body["x402Version"] = 3.into();
        let err = serde_json::from_value::<FacilitatorRequest>(body)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x402Version: unsupported x402Version 3"),
            "{err}"
        );

        let mut body = v2_request();
        body["x402Version"] = 1.into();
        let err = serde_json::from_value::<FacilitatorRequest>(body)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("paymentPayload.x402Version: expected x402Version 1, got 2"),
            "{err}"
        );

        let mut body = v2_request();
        body["paymentPayload"]["x402Version"] = 1.into();
        let err = serde_json::from_value::<FacilitatorRequest>(body)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("paymentPayload.x402Version: expected x402Version 2, got 1"),
            "{err}"
        );

        let mut body = v2_request();
        body["paymentRequirements"]["payTo"] = json!(null);
        let err = serde_json::from_value::<FacilitatorRequest>(body)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("paymentRequirements.payTo: "), "{err}");

        let mut body = v2_request();
        body.as_object_mut().unwrap().remove("paymentRequirements");
        let err = serde_json::from_value::<FacilitatorRequest>(body)
            .unwrap_err()
            .to_string();
        assert!(err.contains("paymentRequirements"), "{err}");
    }

    /// `from_json` (one pass for a tagged v2 body) answers exactly what the version dispatch
    /// answers, for valid bodies and for each way of being invalid.
    #[test]
    fn from_json_is_the_dispatch_faster() {
        let mut bodies = vec![v2_request()];
        let mut edit = |f: &dyn Fn(&mut Value)| {
            let mut body = v2_request();
            f(&mut body);
            bodies.push(body);
        };
        edit(&|b| drop(b.as_object_mut().unwrap().remove("x402Version")));
        edit(&|b| b["x402Version"] = 3.into());
        edit(&|b| b["x402Version"] = 1.into());
        edit(&|b| b["x402Version"] = "2".into());
        edit(&|b| b["paymentPayload"]["x402Version"] = 1.into());
        edit(&|b| b["paymentRequirements"]["payTo"] = json!(null));
        edit(&|b| b["paymentRequirements"]["amount"] = json!("-1"));
        edit(&|b| drop(b.as_object_mut().unwrap().remove("paymentRequirements")));
        edit(&|b| b["unknownField"] = json!({"a": [1, 2]}));
        edit(&|b| b["paymentPayload"]["accepted"]["extra"] = json!({"name": "USDC"}));
        let mut raw: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_string().into_bytes()).collect();
        // Duplicate keys, which a `Value` resolves (last wins) and a struct refuses.
        let dup = v2_request()
            .to_string()
            .replacen('{', r#"{"x402Version":1,"#, 1);
        raw.push(dup.into_bytes());
        raw.push(b"[]".to_vec());
        raw.push(b"{".to_vec());
        raw.push(b"".to_vec());
        for body in raw {
            let fast = FacilitatorRequest::from_json(&body);
            let slow = serde_json::from_slice::<FacilitatorRequest>(&body);
            let shown = String::from_utf8_lossy(&body);
            match (fast, slow) {
                (Ok(f), Ok(s)) => assert_eq!(
                    serde_json::to_value(&f).unwrap(),
                    serde_json::to_value(&s).unwrap(),
                    "{shown}"
                ),
                (Err(f), Err(s)) => assert_eq!(f.to_string(), s.to_string(), "{shown}"),
                (f, s) => panic!("{shown}: fast {:?} vs dispatch {:?}", f.is_ok(), s.is_ok()),
            }
        }
    }

    #[test]
    fn supported_kind_network_spelling_follows_the_version() {
        for (version, network, wire) in [
            (X402Version::V1, Network::eip155(8453), "base"),
            (X402Version::V1, Network::eip155(31337), "eip155:31337"),
            (
                X402Version::V1,
                crate::network::SOLANA_DEVNET.parse().unwrap(),
                "solana-devnet",
            ),
            (X402Version::V2, Network::eip155(8453), "eip155:8453"),
        ] {
            let kind = SupportedKind {
                x402_version: version,
                scheme: Scheme::Exact,
                network: network.clone(),
                extra: Some(Map::from_iter([("feePayer".to_owned(), json!("x"))])),
            };
            let json = serde_json::to_value(&kind).unwrap();
            assert_eq!(json["network"], wire);
            assert_eq!(json["x402Version"], version.as_u8());
            assert_eq!(json["extra"]["feePayer"], "x");
            assert_eq!(serde_json::from_value::<SupportedKind>(json).unwrap(), kind);
        }
        // Input accepts either spelling for either version.
        let kind: SupportedKind =
            serde_json::from_value(json!({"x402Version": 2, "scheme": "exact", "network": "base"}))
                .unwrap();
        assert_eq!(kind.network, Network::eip155(8453));
        let err = serde_json::from_value::<SupportedKind>(
            json!({"x402Version": 1, "scheme": "exact", "network": "nowhere"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("network: unknown network"), "{err}");
        let empty: SupportedResponse = serde_json::from_value(json!({"kinds": []})).unwrap();
        assert_eq!(empty, SupportedResponse::default());
        assert_eq!(
            serde_json::to_value(&empty).unwrap(),
            json!({"kinds": [], "extensions": [], "signers": {}})
        );
    }

    #[test]
    fn settle_response_versions() {
        let ok = SettleResponse {
            amount: Some(AtomicAmount::from(5)),
            ..SettleResponse::success("0xt", Network::eip155(84532), "0xp")
        };
        let v1 = SettleResponseV1::from(ok.clone());
        assert_eq!(
            serde_json::to_string(&v1).unwrap(),
            r#"{"success":true,"transaction":"0xt","network":"base-sepolia","payer":"0xp"}"#
        );
        assert_eq!(v1.into_v2(), SettleResponse { amount: None, ..ok });
        let failed = SettleResponse::failure(
            ErrorReason::from("invalid_exact_evm_transaction_failed"),
            Some("reverted".into()),
            Network::eip155(8453),
            Some("0xp".into()),
            Some("0xt".into()),
        );
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({
                "success": false, "errorReason": "invalid_exact_evm_transaction_failed",
                "errorMessage": "reverted", "transaction": "0xt", "network": "eip155:8453",
                "payer": "0xp"
            })
        );
    }
}
