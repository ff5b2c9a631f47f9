//! The EVM family's error reason codes: `exact` (EIP-3009), Permit2 and its gas-sponsoring
//! extensions (EIP-2612, ERC-20 approval), `upto`, and smart wallets (EIP-6492).
//!
//! These codes name a scheme or a chain family, so they live here rather than in the
//! chain-agnostic protocol crate, whose [`ErrorReason`] keeps the generic codes and carries
//! every other one verbatim in [`ErrorReason::Other`]. On the wire nothing changes: each
//! variant's string is the official SDK's constant, byte for byte (the interop tests compare
//! them). An [`EvmReason`] becomes an [`ErrorReason`] with `.into()` (an `Other` holding the
//! code), and a received [`ErrorReason`] is read back with [`EvmReason::from_reason`]; the two
//! compare equal across types, so a test can write
//! `assert_eq!(err.reason(), EvmReason::InvalidExactEvmNonceAlreadyUsed)`.
//!
//! ```
//! use tollgate_evm::reason::EvmReason;
//! use tollgate_proto::ErrorReason;
//!
//! let wire: ErrorReason = EvmReason::InvalidExactEvmNonceAlreadyUsed.into();
//! assert_eq!(wire.as_str(), "invalid_exact_evm_nonce_already_used");
//! assert_eq!(wire, EvmReason::InvalidExactEvmNonceAlreadyUsed);
//! assert_eq!(
//!     EvmReason::from_reason(&wire),
//!     Some(EvmReason::InvalidExactEvmNonceAlreadyUsed)
//! );
//! assert_eq!(EvmReason::from_reason(&ErrorReason::PaymentInUse), None);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tollgate_proto::ErrorReason;

macro_rules! evm_reasons {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// An x402 error reason of the EVM family.
        ///
        /// Unlike [`ErrorReason`] it has no catch-all: a code outside [`Self::ALL`] is not an
        /// `EvmReason` ([`EvmReason::from_reason`] gives `None`, [`FromStr`] an
        /// [`UnknownEvmReason`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EvmReason {
            $(
                #[doc = $doc]
                $variant,
            )*
        }

        impl EvmReason {
            /// Every EVM-family reason, one per code.
            pub const ALL: &'static [EvmReason] = &[$(EvmReason::$variant),*];

            /// The wire string (the official SDK's constant).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// One human sentence saying what the reason means, for logs and error pages.
            pub const fn describe(self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                }
            }

            fn from_code(s: &str) -> Option<Self> {
                match s {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

evm_reasons! {
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
    AssetNotDeployedContract => "asset_not_deployed_contract", "The asset address has no contract code.";
    Eip6492FactoryNotAllowed => "eip6492_factory_not_allowed", "The EIP-6492 wallet factory is not allow-listed by the facilitator.";
    SmartWalletDeploymentFailed => "smart_wallet_deployment_failed", "Deploying the payer's smart wallet failed.";
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
    InvalidUptoEvmScheme => "invalid_upto_evm_scheme", "The payload or requirements are not for the upto scheme.";
    InvalidUptoEvmNetworkMismatch => "invalid_upto_evm_network_mismatch", "The upto payload was made for another network.";
    InvalidUptoEvmTransactionFailed => "invalid_upto_evm_transaction_failed", "The upto settlement transaction failed.";
    InvalidUptoEvmPayloadSettlementExceedsAmount => "invalid_upto_evm_payload_settlement_exceeds_amount", "The settled amount exceeds the authorized maximum.";
    UptoAmountExceedsPermitted => "upto_amount_exceeds_permitted", "The amount exceeds what the upto authorization permits.";
    UptoUnauthorizedFacilitator => "upto_unauthorized_facilitator", "The upto authorization names another facilitator than this one.";
    UptoFacilitatorMismatch => "upto_facilitator_mismatch", "The facilitator in the upto authorization does not match the requirements.";
}

impl EvmReason {
    /// The EVM reason a received [`ErrorReason`] carries, if it is one: `None` for the generic
    /// codes and for codes of other families or unknown to this version.
    pub fn from_reason(reason: &ErrorReason) -> Option<Self> {
        Self::from_code(reason.as_str())
    }
}

impl fmt::Display for EvmReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the EVM family's reason codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} is not an EVM error reason code")]
pub struct UnknownEvmReason {
    /// The string that was parsed.
    pub code: String,
}

impl FromStr for EvmReason {
    type Err = UnknownEvmReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_code(s).ok_or_else(|| UnknownEvmReason { code: s.to_owned() })
    }
}

impl From<EvmReason> for ErrorReason {
    /// The code as the protocol crate carries it: [`ErrorReason::Other`] with the exact string.
    fn from(reason: EvmReason) -> Self {
        ErrorReason::from(reason.as_str())
    }
}

impl PartialEq<EvmReason> for ErrorReason {
    /// Equal when the wire strings are.
    fn eq(&self, other: &EvmReason) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<ErrorReason> for EvmReason {
    /// Equal when the wire strings are.
    fn eq(&self, other: &ErrorReason) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for EvmReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EvmReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_its_exact_string() {
        let mut seen = std::collections::HashSet::new();
        for &r in EvmReason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "duplicate {s}");
            assert_eq!(s.parse::<EvmReason>(), Ok(r));
            assert_eq!(r.to_string(), s);
            assert!(r.describe().ends_with('.'), "{s}");
            // Through the protocol crate's enum, as it travels in a response.
            let wire = ErrorReason::from(r);
            assert_eq!(
                wire,
                ErrorReason::Other(s.to_owned()),
                "{s} is a proto variant"
            );
            assert!(!wire.is_known());
            assert_eq!(wire.as_str(), s);
            assert_eq!(wire, r);
            assert_eq!(r, wire);
            assert_eq!(EvmReason::from_reason(&wire), Some(r));
            let json = serde_json::to_string(&wire).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::to_string(&r).unwrap(), json);
            let back: ErrorReason = serde_json::from_str(&json).unwrap();
            assert_eq!(back, r);
            assert_eq!(serde_json::from_str::<EvmReason>(&json).unwrap(), r);
        }
    }

    #[test]
    fn generic_and_unknown_codes_are_not_evm_reasons() {
        for generic in ErrorReason::ALL {
            assert_eq!(EvmReason::from_reason(generic), None, "{generic}");
            assert!(generic.as_str().parse::<EvmReason>().is_err());
        }
        assert_eq!(
            "brand_new_reason".parse::<EvmReason>(),
            Err(UnknownEvmReason {
                code: "brand_new_reason".into()
            })
        );
        assert_eq!(
            EvmReason::from_reason(&ErrorReason::from("invalid_exact_svm_payload_transaction")),
            None
        );
        assert_ne!(
            ErrorReason::InvalidPayload,
            EvmReason::InvalidExactEvmSignature
        );
        assert!(serde_json::from_str::<EvmReason>("\"payment_in_use\"").is_err());
    }

    /// The spec's EVM codes (§9 of v1 and v2) and the official SDK's exact, Permit2 (with its
    /// EIP-2612 and ERC-20 approval gas-sponsoring extensions), upto and smart-wallet
    /// constants are all variants — the codes the protocol crate no longer has.
    #[test]
    fn covers_the_specs_and_the_sdk() {
        let specs = [
            "invalid_exact_evm_payload_authorization_valid_after",
            "invalid_exact_evm_payload_authorization_valid_before",
            "invalid_exact_evm_payload_authorization_value",
            "invalid_exact_evm_payload_authorization_value_mismatch",
            "invalid_exact_evm_payload_signature",
            "invalid_exact_evm_payload_recipient_mismatch",
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
            "smart_wallet_deployment_failed",
            "upto_amount_exceeds_permitted",
            "upto_facilitator_mismatch",
            "upto_unauthorized_facilitator",
        ];
        for code in specs.iter().chain(&sdk) {
            let r: EvmReason = code.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.as_str(), *code);
        }
        assert_eq!(EvmReason::ALL.len(), specs.len() + sdk.len());
        assert_eq!(
            EvmReason::InvalidExactEvmPayloadSignature.as_str(),
            "invalid_exact_evm_payload_signature"
        );
        assert_eq!(
            EvmReason::InvalidExactEvmPayloadRecipientMismatch.as_str(),
            "invalid_exact_evm_payload_recipient_mismatch"
        );
    }
}
