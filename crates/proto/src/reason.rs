//! Error reason codes: the machine-readable `invalidReason` / `errorReason` strings.
//!
//! One variant per code of the v1 and v2 specifications (§9 of each) and of the official SDK's
//! EVM families (exact, Permit2 and its gas-sponsoring extensions, upto), plus the generic codes
//! the SDK emits, so peers see the same strings from Tollgate as from the reference
//! implementation and code can match on variants instead of string literals. A code this version
//! does not know is kept verbatim in [`ErrorReason::Other`], so a peer's newer reason round-trips
//! instead of failing to decode the whole response.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reasons {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// An x402 error reason.
        ///
        /// Build one from a string with [`From<&str>`] or [`FromStr`] (infallible): both map a
        /// known code to its variant, so `Other` only ever holds codes outside [`Self::ALL`].
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
            /// Every known reason, one per code.
            pub const ALL: &'static [ErrorReason] = &[$(ErrorReason::$variant),*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $code,)*
                    Self::Other(s) => s,
                }
            }

            /// Whether the code is one of [`Self::ALL`] (not [`ErrorReason::Other`]).
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }

            /// One human sentence saying what the reason means, for logs and error pages.
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
    PaymentInUse => "payment_in_use", "The payment is reserved by another request or its settlement is in progress.";
    PaymentIdentifierConflict => "payment_identifier_conflict", "The payment identifier or idempotency key was already used for another payment.";
    InvalidPaymentIdentifier => "invalid_payment_identifier", "The payment identifier or idempotency key is malformed, or missing where required.";
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
    Eip2612AssetMismatch => "eip2612_asset_mismatch", "The EIP-2612 permit is for another token than the asset.";
    Eip2612DeadlineExpired => "eip2612_deadline_expired", "The EIP-2612 permit deadline has passed.";
    Eip2612FromMismatch => "eip2612_from_mismatch", "The EIP-2612 permit owner is not the payer.";
    Eip2612SpenderNotPermit2 => "eip2612_spender_not_permit2", "The EIP-2612 permit does not approve the Permit2 contract.";
    Erc20ApprovalAssetMismatch => "erc20_approval_asset_mismatch", "The sponsored approval is for another token than the asset.";
    Erc20ApprovalFromMismatch => "erc20_approval_from_mismatch", "The sponsored approval is not signed by the payer.";
    Erc20ApprovalSpenderNotPermit2 => "erc20_approval_spender_not_permit2", "The sponsored approval does not approve the Permit2 contract.";
    Erc20ApprovalTxWrongTarget => "erc20_approval_tx_wrong_target", "The sponsored approval transaction calls another contract than the asset.";
    Erc20ApprovalTxWrongSelector => "erc20_approval_tx_wrong_selector", "The sponsored approval transaction does not call approve.";
    Erc20ApprovalTxWrongSpender => "erc20_approval_tx_wrong_spender", "The sponsored approval transaction approves another spender than Permit2.";
    Erc20ApprovalTxInvalidCalldata => "erc20_approval_tx_invalid_calldata", "The sponsored approval transaction's calldata cannot be decoded.";
    Erc20ApprovalTxSignerMismatch => "erc20_approval_tx_signer_mismatch", "The sponsored approval transaction is not signed by the payer.";
    Erc20ApprovalTxInvalidSignature => "erc20_approval_tx_invalid_signature", "The sponsored approval transaction's signature is invalid.";
    Erc20ApprovalTxParseFailed => "erc20_approval_tx_parse_failed", "The sponsored approval transaction cannot be parsed.";
    Erc20ApprovalTxFailed => "erc20_approval_tx_failed", "The sponsored approval transaction failed on chain.";
    Erc20ApprovalBroadcastFailed => "erc20_approval_broadcast_failed", "Broadcasting the sponsored approval transaction failed.";
    MissingFacilitator => "missing_facilitator", "No facilitator supports this scheme and network.";
    InvalidUptoEvmScheme => "invalid_upto_evm_scheme", "The payload or requirements are not for the upto scheme.";
    InvalidUptoEvmNetworkMismatch => "invalid_upto_evm_network_mismatch", "The upto payload was made for another network.";
    InvalidUptoEvmTransactionFailed => "invalid_upto_evm_transaction_failed", "The upto settlement transaction failed.";
    InvalidUptoEvmPayloadSettlementExceedsAmount => "invalid_upto_evm_payload_settlement_exceeds_amount", "The settled amount exceeds the authorized maximum.";
    UptoAmountExceedsPermitted => "upto_amount_exceeds_permitted", "The amount exceeds what the upto authorization permits.";
    UptoUnauthorizedFacilitator => "upto_unauthorized_facilitator", "The upto authorization names another facilitator than this one.";
    UptoFacilitatorMismatch => "upto_facilitator_mismatch", "The facilitator in the upto authorization does not match the requirements.";
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

impl From<String> for ErrorReason {
    fn from(s: String) -> Self {
        Self::from_code(&s)
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
            assert_eq!(&ErrorReason::from(s), r);
            assert_eq!(r.to_string(), s);
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(&serde_json::from_str::<ErrorReason>(&json).unwrap(), r);
            assert!(!matches!(r, ErrorReason::Other(_)));
            assert!(r.describe().ends_with('.'), "{s}");
        }
        let other: ErrorReason = "brand_new_reason".into();
        assert_eq!(other, ErrorReason::Other("brand_new_reason".into()));
        assert_eq!(other.as_str(), "brand_new_reason");
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            "\"brand_new_reason\""
        );
    }

    /// The codes of the v1 and v2 specifications (§9) and the official SDK's exact/Permit2/upto
    /// EVM constants are all known variants.
    #[test]
    fn covers_the_specs_and_the_sdk() {
        let specs = [
            "insufficient_funds",
            "invalid_exact_evm_payload_authorization_valid_after",
            "invalid_exact_evm_payload_authorization_valid_before",
            "invalid_exact_evm_payload_authorization_value",
            "invalid_exact_evm_payload_authorization_value_mismatch",
            "invalid_exact_evm_payload_signature",
            "invalid_exact_evm_payload_recipient_mismatch",
            "invalid_network",
            "invalid_payload",
            "invalid_payment_requirements",
            "invalid_scheme",
            "unsupported_scheme",
            "invalid_x402_version",
            "invalid_transaction_state",
            "unexpected_verify_error",
            "unexpected_settle_error",
        ];
        let sdk = [
            "asset_not_deployed_contract",
            "eip2612_asset_mismatch",
            "eip2612_deadline_expired",
            "eip2612_from_mismatch",
            "eip2612_spender_not_permit2",
            "eip6492_factory_not_allowed",
            "erc20_approval_asset_mismatch",
            "erc20_approval_broadcast_failed",
            "erc20_approval_from_mismatch",
            "erc20_approval_spender_not_permit2",
            "erc20_approval_tx_failed",
            "erc20_approval_tx_invalid_calldata",
            "erc20_approval_tx_invalid_signature",
            "erc20_approval_tx_parse_failed",
            "erc20_approval_tx_signer_mismatch",
            "erc20_approval_tx_wrong_selector",
            "erc20_approval_tx_wrong_spender",
            "erc20_approval_tx_wrong_target",
            "extension_echo_mismatch",
            "invalid_eip2612_extension_format",
            "invalid_erc20_approval_extension_format",
            "invalid_exact_evm_authorization_value",
            "invalid_exact_evm_eip3009_not_supported",
            "invalid_exact_evm_failed_to_parse_signature",
            "invalid_exact_evm_insufficient_balance",
            "invalid_exact_evm_missing_eip712_domain",
            "invalid_exact_evm_network_mismatch",
            "invalid_exact_evm_nonce_already_used",
            "invalid_exact_evm_recipient_mismatch",
            "invalid_exact_evm_scheme",
            "invalid_exact_evm_signature",
            "invalid_exact_evm_token_name_mismatch",
            "invalid_exact_evm_token_version_mismatch",
            "invalid_exact_evm_transaction_failed",
            "invalid_exact_evm_transaction_simulation_failed",
            "invalid_exact_evm_transfer_event_mismatch",
            "invalid_permit2_recipient_mismatch",
            "invalid_permit2_signature",
            "invalid_permit2_spender",
            "invalid_upto_evm_network_mismatch",
            "invalid_upto_evm_payload_settlement_exceeds_amount",
            "invalid_upto_evm_scheme",
            "invalid_upto_evm_transaction_failed",
            "permit2_2612_amount_mismatch",
            "permit2_allowance_required",
            "permit2_amount_mismatch",
            "permit2_deadline_expired",
            "permit2_insufficient_balance",
            "permit2_invalid_amount",
            "permit2_invalid_destination",
            "permit2_invalid_nonce",
            "permit2_invalid_owner",
            "permit2_not_yet_valid",
            "permit2_payment_too_early",
            "permit2_proxy_not_deployed",
            "permit2_simulation_failed",
            "permit2_token_mismatch",
            "settlement_pending",
            "smart_wallet_deployment_failed",
            "unsupported_payload_type",
            "upto_amount_exceeds_permitted",
            "upto_facilitator_mismatch",
            "upto_unauthorized_facilitator",
        ];
        for code in specs.iter().chain(&sdk) {
            let r = ErrorReason::from(*code);
            assert!(
                !matches!(r, ErrorReason::Other(_)),
                "{code} is not a variant"
            );
            assert!(ErrorReason::ALL.contains(&r));
        }
        assert_eq!(
            ErrorReason::from("invalid_exact_evm_payload_signature"),
            ErrorReason::InvalidExactEvmPayloadSignature
        );
        assert_eq!(
            ErrorReason::InvalidExactEvmPayloadRecipientMismatch.as_str(),
            "invalid_exact_evm_payload_recipient_mismatch"
        );
        assert_eq!(
            ErrorReason::InvalidExactEvmPayloadAuthorizationValue.as_str(),
            "invalid_exact_evm_payload_authorization_value"
        );
    }
}
