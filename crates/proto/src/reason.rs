//! Error reason codes, the machine-readable `invalidReason` / `errorReason` strings.
//!
//! One variant per code of the v1 and v2 specifications and of the official SDK's families
//! (exact EVM, Permit2, upto), so peers see the same strings from Tollgate as from the reference
//! implementation. A code this version does not know is kept verbatim in
//! [`ErrorReason::Other`], so a peer's newer reason round-trips instead of failing to decode.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reasons {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// An x402 error reason.
        ///
        /// ```
        /// use tollgate_proto::ErrorReason;
        /// let r: ErrorReason = "invalid_exact_evm_nonce_already_used".parse().unwrap();
        /// assert_eq!(r, ErrorReason::InvalidExactEvmNonceAlreadyUsed);
        /// assert_eq!(r.as_str(), "invalid_exact_evm_nonce_already_used");
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorReason {
            $(
                #[doc = $doc]
                $variant,
            )*
            /// A reason this version does not know, kept verbatim.
            Other(String),
        }

        impl ErrorReason {
            /// Every known reason.
            pub const ALL: &'static [ErrorReason] = &[$(ErrorReason::$variant),*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $code,)*
                    Self::Other(s) => s,
                }
            }

            /// One human sentence saying what the reason means.
            pub fn describe(&self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                    Self::Other(_) => "A reason code this version of Tollgate does not know.",
                }
            }

            fn from_code(s: &str) -> Self {
                match s {
                    $($code => Self::$variant,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

reasons! {
    InsufficientFunds => "insufficient_funds", "The payer does not hold enough tokens.";
    InvalidNetwork => "invalid_network", "The network is not supported.";
    InvalidPayload => "invalid_payload", "The payment payload is malformed or inconsistent.";
    InvalidPaymentRequirements => "invalid_payment_requirements", "The payment requirements are invalid or malformed.";
    InvalidScheme => "invalid_scheme", "The payment scheme is not supported.";
    UnsupportedScheme => "unsupported_scheme", "The facilitator does not support this scheme.";
    InvalidX402Version => "invalid_x402_version", "The protocol version is not supported.";
    InvalidTransactionState => "invalid_transaction_state", "The blockchain transaction failed or was rejected.";
    UnexpectedVerifyError => "unexpected_verify_error", "An unexpected error occurred during verification.";
    UnexpectedSettleError => "unexpected_settle_error", "An unexpected error occurred during settlement.";
    InvalidExactEvmPayloadAuthorizationValidAfter => "invalid_exact_evm_payload_authorization_valid_after", "The authorization is not yet valid (before validAfter).";
    InvalidExactEvmPayloadAuthorizationValidBefore => "invalid_exact_evm_payload_authorization_valid_before", "The authorization has expired or expires too soon (validBefore).";
    InvalidExactEvmPayloadAuthorizationValue => "invalid_exact_evm_payload_authorization_value", "The authorized amount is insufficient.";
    InvalidExactEvmPayloadAuthorizationValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch", "The authorized amount does not equal the required amount.";
    InvalidExactEvmPayloadSignature => "invalid_exact_evm_payload_signature", "The authorization signature is invalid.";
    InvalidExactEvmPayloadRecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch", "The recipient does not match the requirements.";
    InvalidExactEvmScheme => "invalid_exact_evm_scheme", "The payload or requirements are not for the exact scheme.";
    InvalidExactEvmNetworkMismatch => "invalid_exact_evm_network_mismatch", "The payload was made for another network than the requirements.";
    InvalidExactEvmMissingEip712Domain => "invalid_exact_evm_missing_eip712_domain", "The requirements name no EIP-712 domain (extra.name/extra.version).";
    InvalidExactEvmRecipientMismatch => "invalid_exact_evm_recipient_mismatch", "The authorization pays someone other than payTo.";
    InvalidExactEvmSignature => "invalid_exact_evm_signature", "The signature does not authorize this transfer for the payer.";
    InvalidExactEvmAuthorizationValue => "invalid_exact_evm_authorization_value", "The authorized amount is invalid.";
    InvalidExactEvmTransactionFailed => "invalid_exact_evm_transaction_failed", "The settlement transaction failed on chain.";
    InvalidExactEvmTransferEventMismatch => "invalid_exact_evm_transfer_event_mismatch", "The settlement did not emit the expected Transfer event.";
    InvalidExactEvmTokenNameMismatch => "invalid_exact_evm_token_name_mismatch", "The token's EIP-712 name differs from the one signed.";
    InvalidExactEvmTokenVersionMismatch => "invalid_exact_evm_token_version_mismatch", "The token's EIP-712 version differs from the one signed.";
    InvalidExactEvmEip3009NotSupported => "invalid_exact_evm_eip3009_not_supported", "The asset does not implement EIP-3009.";
    InvalidExactEvmNonceAlreadyUsed => "invalid_exact_evm_nonce_already_used", "The authorization nonce was already used or cancelled.";
    InvalidExactEvmInsufficientBalance => "invalid_exact_evm_insufficient_balance", "The payer's token balance is below the amount.";
    InvalidExactEvmTransactionSimulationFailed => "invalid_exact_evm_transaction_simulation_failed", "A dry run of the transfer failed.";
    InvalidExactEvmFailedToParseSignature => "invalid_exact_evm_failed_to_parse_signature", "The signature bytes cannot be parsed.";
    UnsupportedPayloadType => "unsupported_payload_type", "The payload type is not supported by this scheme.";
    UnsupportedAssetTransferMethod => "unsupported_asset_transfer_method", "The asset transfer method is not supported.";
    UnsupportedPaymentFlow => "unsupported_payment_flow", "The payment flow is not supported.";
    AssetNotDeployedContract => "asset_not_deployed_contract", "The asset address has no contract code.";
    Eip6492FactoryNotAllowed => "eip6492_factory_not_allowed", "The EIP-6492 wallet factory is not allow-listed by the facilitator.";
    SmartWalletDeploymentFailed => "smart_wallet_deployment_failed", "Deploying the payer's smart wallet failed.";
    SettlementPending => "settlement_pending", "The settlement transaction was sent but is not confirmed yet.";
    SettleFailed => "settle_failed", "Settlement failed.";
    PaymentRequired => "payment_required", "Payment is required.";
    MissingScheme => "missing_scheme", "No scheme was given.";
    ExtensionEchoMismatch => "extension_echo_mismatch", "The payload does not echo the server's extension data.";
    Permit2AllowanceRequired => "permit2_allowance_required", "The payer must approve Permit2 first.";
    Permit2TokenMismatch => "permit2_token_mismatch", "The Permit2 token differs from the asset.";
    Permit2NotYetValid => "permit2_not_yet_valid", "The Permit2 authorization is not yet valid.";
    Permit2DeadlineExpired => "permit2_deadline_expired", "The Permit2 deadline has passed.";
    Permit2SimulationFailed => "permit2_simulation_failed", "A dry run of the Permit2 transfer failed.";
    Permit2ProxyNotDeployed => "permit2_proxy_not_deployed", "The x402 Permit2 proxy is not deployed on this network.";
    Permit2PaymentTooEarly => "permit2_payment_too_early", "The Permit2 payment is too early.";
    Permit2InvalidOwner => "permit2_invalid_owner", "The Permit2 owner is invalid.";
    Permit2InvalidNonce => "permit2_invalid_nonce", "The Permit2 nonce is invalid.";
    Permit2InvalidDestination => "permit2_invalid_destination", "The Permit2 destination is invalid.";
    Permit2InvalidAmount => "permit2_invalid_amount", "The Permit2 amount is invalid.";
    Permit2InsufficientBalance => "permit2_insufficient_balance", "The payer's balance is below the Permit2 amount.";
    Permit2AmountMismatch => "permit2_amount_mismatch", "The Permit2 amount differs from the required amount.";
    Permit22612AmountMismatch => "permit2_2612_amount_mismatch", "The EIP-2612 permit amount differs.";
    InvalidPermit2Signature => "invalid_permit2_signature", "The Permit2 signature is invalid.";
    InvalidPermit2Spender => "invalid_permit2_spender", "The Permit2 spender is not the x402 proxy.";
    InvalidPermit2RecipientMismatch => "invalid_permit2_recipient_mismatch", "The Permit2 witness recipient differs from payTo.";
    InvalidEip2612ExtensionFormat => "invalid_eip2612_extension_format", "The EIP-2612 gas-sponsoring extension is malformed.";
    InvalidErc20ApprovalExtensionFormat => "invalid_erc20_approval_extension_format", "The ERC-20 approval extension is malformed.";
    InvalidUptoEvmScheme => "invalid_upto_evm_scheme", "The payload or requirements are not for the upto scheme.";
    InvalidUptoEvmNetworkMismatch => "invalid_upto_evm_network_mismatch", "The upto payload was made for another network.";
    InvalidUptoEvmTransactionFailed => "invalid_upto_evm_transaction_failed", "The upto settlement transaction failed.";
    InvalidUptoEvmPayloadSettlementExceedsAmount => "invalid_upto_evm_payload_settlement_exceeds_amount", "The settled amount exceeds the authorized maximum.";
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorReason {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_code(s))
    }
}

impl From<&str> for ErrorReason {
    fn from(s: &str) -> Self {
        Self::from_code(s)
    }
}

impl Serialize for ErrorReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_code(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_its_exact_string() {
        let mut seen = std::collections::HashSet::new();
        for r in ErrorReason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "duplicate {s}");
            assert_eq!(&s.parse::<ErrorReason>().unwrap(), r);
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(&serde_json::from_str::<ErrorReason>(&json).unwrap(), r);
            assert!(!matches!(r, ErrorReason::Other(_)));
        }
        assert!(ErrorReason::ALL.len() >= 60);
        let other: ErrorReason = "brand_new_reason".into();
        assert_eq!(other, ErrorReason::Other("brand_new_reason".into()));
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            "\"brand_new_reason\""
        );
    }
}
