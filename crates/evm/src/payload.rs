//! The `payload` object of an `exact` EVM payment (EIP-3009 variant).

use alloy::primitives::{Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};
use tollgate_proto::PaymentPayload;

use crate::contracts::TransferWithAuthorization;

/// What a payer sends inside `PaymentPayload.payload`: the EIP-3009 authorization and the
/// signature over it.
///
/// ```
/// use tollgate_evm::ExactEvmPayload;
/// let json = serde_json::json!({
///     "signature": "0x1234",
///     "authorization": {
///         "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
///         "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///         "value": "10000",
///         "validAfter": "1740672089",
///         "validBefore": "1740672154",
///         "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
///     }
/// });
/// let payload: ExactEvmPayload = serde_json::from_value(json).unwrap();
/// assert_eq!(payload.authorization.value, alloy::primitives::U256::from(10_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExactEvmPayload {
    /// 65-byte ECDSA signature for EOAs; any bytes for EIP-1271 wallets; EIP-6492 wrapped for
    /// wallets not yet deployed.
    pub signature: Bytes,
    /// The signed EIP-3009 parameters.
    pub authorization: Authorization,
}

/// EIP-3009 `TransferWithAuthorization` parameters, with amounts and times as decimal strings
/// on the wire (as the spec and the official SDK write them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The payer.
    pub from: Address,
    /// The payee; must equal the requirements' `payTo`.
    pub to: Address,
    /// Atomic units; must equal the requirements' `amount`.
    #[serde(with = "decimal")]
    pub value: U256,
    /// Unix seconds after which the authorization is valid.
    #[serde(with = "decimal")]
    pub valid_after: U256,
    /// Unix seconds before which the authorization is valid.
    #[serde(with = "decimal")]
    pub valid_before: U256,
    /// 32 random bytes; each (payer, nonce) can be used once on the token.
    pub nonce: B256,
}

impl Authorization {
    /// The EIP-712 struct the payer signs.
    pub fn to_typed(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
    }
}

/// Why a `payload` object is not an exact-EVM payload.
#[derive(Debug, thiserror::Error)]
#[error("payload is not an exact EVM (EIP-3009) payload: {0}")]
pub struct PayloadError(String);

impl ExactEvmPayload {
    /// Reads the scheme payload out of a [`PaymentPayload`].
    pub fn from_payment(payment: &PaymentPayload) -> Result<Self, PayloadError> {
        serde_json::from_value(serde_json::Value::Object(payment.payload.clone()))
            .map_err(|e| PayloadError(e.to_string()))
    }

    /// The JSON object that goes into `PaymentPayload.payload`.
    pub fn to_json_object(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // A struct of addresses, byte strings and decimal strings always serializes to an object.
            _ => unreachable!("ExactEvmPayload serializes to an object"),
        }
    }
}

/// The `payload` of an `exact` EVM payment, typed by the transfer method the requirements'
/// `extra.assetTransferMethod` names (EIP-3009 when absent): which JSON shape is expected is
/// decided here, once, and never by comparing strings later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExactPayload {
    /// `transferWithAuthorization` (EIP-3009).
    Eip3009(ExactEvmPayload),
    /// Permit2 through `x402ExactPermit2Proxy`.
    Permit2(crate::permit2::ExactPermit2Payload),
}

impl ExactPayload {
    /// Reads `payment.payload` as the type `requirements` call for. The payment's own
    /// `accepted.extra` must name the same method (a payload of one method presented for
    /// requirements of the other is refused, not reinterpreted).
    pub fn from_payment(
        payment: &PaymentPayload,
        requirements: &tollgate_proto::PaymentRequirements,
    ) -> Result<Self, PayloadError> {
        use crate::permit2::AssetTransferMethod as M;
        let method = M::of(requirements).map_err(|e| PayloadError(e.to_string()))?;
        let accepted = M::of(&payment.accepted).map_err(|e| PayloadError(e.to_string()))?;
        if accepted != method {
            return Err(PayloadError(format!(
                "the payment uses transfer method {}, the requirements {}",
                accepted.as_str(),
                method.as_str()
            )));
        }
        match method {
            M::Eip3009 => ExactEvmPayload::from_payment(payment).map(Self::Eip3009),
            M::Permit2 => crate::permit2::ExactPermit2Payload::from_payment(payment)
                .map(Self::Permit2)
                .map_err(|e| PayloadError(e.to_string())),
        }
    }

    /// The payer.
    pub fn payer(&self) -> Address {
        match self {
            Self::Eip3009(p) => p.authorization.from,
            Self::Permit2(p) => p.permit2_authorization.from,
        }
    }
}

/// Serde for `U256` as a decimal string, strict on input: canonical decimal only — digits, no
/// sign, no hex, no exponent, no whitespace, and no leading zero (`"0"` itself excepted). One
/// value has exactly one spelling, so a signed authorization cannot be presented in several
/// textual forms that a byte-keyed guard somewhere would count as different payments.
pub(crate) mod decimal {
    use alloy::primitives::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(format!(
                "expected a decimal integer string, got {s:?}"
            )));
        }
        if s.len() > 1 && s.starts_with('0') {
            return Err(D::Error::custom(format!(
                "expected a canonical decimal integer (no leading zero), got {s:?}"
            )));
        }
        U256::from_str_radix(&s, 10).map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_value(value: &str) -> serde_json::Value {
        serde_json::json!({
            "signature": "0x1234",
            "authorization": {
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "value": value,
                "validAfter": "0",
                "validBefore": "1740672154",
                "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
            }
        })
    }

    /// The spec's Permit2 `exact` example (`scheme_exact_evm.md` §2), as a whole payment: the
    /// requirements' transfer method picks the Permit2 type, and it round-trips unchanged.
    #[test]
    fn the_specs_permit2_example_is_read_by_its_transfer_method() {
        let accepted = serde_json::json!({
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": "10000",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 60,
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "extra": { "assetTransferMethod": "permit2", "name": "USDC", "version": "2" }
        });
        let payload = serde_json::json!({
            "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
            "permit2Authorization": {
                "permitted": { "token": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "amount": "10000" },
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                "spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
                "nonce": "33247007178036348590600198031289925668252061821958005840077069883511451257277",
                "deadline": "1740672154",
                "witness": { "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "validAfter": "1740672089" }
            }
        });
        let payment: PaymentPayload = serde_json::from_value(serde_json::json!({
            "x402Version": 2, "accepted": accepted, "payload": payload
        }))
        .unwrap();
        let typed = ExactPayload::from_payment(&payment, &payment.accepted).unwrap();
        let ExactPayload::Permit2(p) = &typed else {
            panic!("{typed:?}")
        };
        assert_eq!(
            p.permit2_authorization.spender,
            crate::permit2::EXACT_PERMIT2_PROXY
        );
        // The same values written back (addresses in lower-case hex, as alloy writes them).
        assert_eq!(
            serde_json::to_value(p).unwrap().to_string().to_lowercase(),
            payload.to_string().to_lowercase()
        );
        // The same payload under EIP-3009 requirements is not an EIP-3009 payload.
        let mut eip3009 = payment.accepted.clone();
        eip3009
            .extra
            .as_mut()
            .unwrap()
            .remove("assetTransferMethod");
        assert!(ExactPayload::from_payment(&payment, &eip3009).is_err());
        // And an EIP-3009 payload under Permit2 requirements is refused too.
        let mut eip3009_payment = payment.clone();
        eip3009_payment.accepted = eip3009.clone();
        eip3009_payment.payload = match with_value("10000") {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert!(matches!(
            ExactPayload::from_payment(&eip3009_payment, &eip3009),
            Ok(ExactPayload::Eip3009(_))
        ));
        assert!(ExactPayload::from_payment(&eip3009_payment, &payment.accepted).is_err());
    }

    #[test]
    fn amounts_and_times_must_be_canonical_decimals() {
        let ok: ExactEvmPayload = serde_json::from_value(with_value("1000")).unwrap();
        assert_eq!(ok.authorization.value, U256::from(1000));
        assert_eq!(ok.authorization.valid_after, U256::ZERO);
        for bad in [
            "01000", "+1000", " 1000", "1000 ", "1e3", "0x3e8", "", "00", "-1", "1_000",
        ] {
            assert!(
                serde_json::from_value::<ExactEvmPayload>(with_value(bad)).is_err(),
                "{bad:?} must be refused"
            );
        }
        let mut leading = with_value("1000");
        leading["authorization"]["validBefore"] = "01740672154".into();
        assert!(serde_json::from_value::<ExactEvmPayload>(leading).is_err());
    }
}
