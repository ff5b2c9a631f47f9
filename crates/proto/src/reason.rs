//! Error reason codes: the machine-readable `invalidReason` / `errorReason` strings.
//!
//! One variant per **generic** code: the chain-agnostic codes of the v1 and v2 specifications
//! (§9 of each) and the ones the official SDK emits whatever the scheme (`payment_in_use`,
//! `settlement_pending`, `missing_facilitator`, …). Codes that name a scheme or a chain family
//! (`invalid_exact_evm_*`, `permit2_*`, `upto_*`, …) belong to the chain crate that emits them
//! (`tollgate_evm::reason::EvmReason` for EVM), so this crate stays free of any chain and a new
//! chain adds its codes without a change here.
//!
//! Every other code — a chain crate's, or a newer peer's — is kept verbatim in
//! [`ErrorReason::Other`]: decoding then encoding gives back the same string, so a response
//! round-trips instead of failing to decode, and the wire strings stay exactly the official
//! SDK's. Chain crates convert their enums into `Other` and compare against it by string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reasons {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// An x402 error reason.
        ///
        /// Build one from a string with [`From<&str>`] or [`FromStr`] (infallible): both map a
        /// generic code to its variant, so `Other` only ever holds codes outside [`Self::ALL`]
        /// and two equal codes always compare equal.
        ///
        /// ```
        /// use tollgate_proto::ErrorReason;
        /// let r: ErrorReason = "payment_in_use".parse().unwrap();
        /// assert_eq!(r, ErrorReason::PaymentInUse);
        /// // A scheme's own code (here EVM's) is kept verbatim.
        /// let evm: ErrorReason = "invalid_exact_evm_nonce_already_used".parse().unwrap();
        /// assert_eq!(evm, ErrorReason::Other("invalid_exact_evm_nonce_already_used".into()));
        /// assert_eq!(evm.as_str(), "invalid_exact_evm_nonce_already_used");
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorReason {
            $(
                #[doc = $doc]
                $variant,
            )*
            /// Any other code, kept verbatim: a scheme's own (e.g. `invalid_exact_evm_signature`,
            /// see the chain crates) or one a newer peer sends.
            Other(String),
        }

        impl ErrorReason {
            /// Every generic reason, one per code.
            pub const ALL: &'static [ErrorReason] = &[$(ErrorReason::$variant),*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $code,)*
                    Self::Other(s) => s,
                }
            }

            /// Whether the code is one of [`Self::ALL`], a generic code (not
            /// [`ErrorReason::Other`], which includes every scheme's own codes).
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }

            /// One human sentence saying what the reason means, for logs and error pages.
            pub fn describe(&self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                    Self::Other(_) => "A scheme-specific or unknown reason code; see the chain crate that emits it.",
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
    UnsupportedPayloadType => "unsupported_payload_type", "The payload type is not supported by this scheme.";
    UnsupportedAssetTransferMethod => "unsupported_asset_transfer_method", "The asset transfer method is not supported.";
    UnsupportedPaymentFlow => "unsupported_payment_flow", "The payment flow is not supported.";
    SettlementPending => "settlement_pending", "The settlement transaction was sent but is not confirmed yet.";
    PaymentInUse => "payment_in_use", "The payment is reserved by another request or its settlement is in progress.";
    PaymentIdentifierConflict => "payment_identifier_conflict", "The payment identifier or idempotency key was already used for another payment.";
    InvalidPaymentIdentifier => "invalid_payment_identifier", "The payment identifier or idempotency key is malformed, or missing where required.";
    SettleFailed => "settle_failed", "Settlement failed.";
    PaymentRequired => "payment_required", "Payment is required.";
    MissingScheme => "missing_scheme", "No scheme was given.";
    ExtensionEchoMismatch => "extension_echo_mismatch", "The payload does not echo the server's extension data.";
    MissingFacilitator => "missing_facilitator", "No facilitator supports this scheme and network.";
}

/// The codes the spec answers with `412 Precondition Failed` instead of `400`: the payment is
/// sound but a one-time step of the payer's is missing (EVM and Tron `exact`/`upto` over
/// Permit2: the payer must approve Permit2 before any payment can be settled).
pub const PRECONDITION_CODES: &[&str] = &["permit2_allowance_required"];

impl ErrorReason {
    /// The HTTP status a facilitator answers a rejection with this reason: `412` for a
    /// missing precondition of the payer's ([`PRECONDITION_CODES`]), `400` otherwise.
    ///
    /// ```
    /// use tollgate_proto::ErrorReason;
    /// assert_eq!(ErrorReason::from("permit2_allowance_required").rejection_status(), 412);
    /// assert_eq!(ErrorReason::InsufficientFunds.rejection_status(), 400);
    /// ```
    pub fn rejection_status(&self) -> u16 {
        if PRECONDITION_CODES.contains(&self.as_str()) {
            412
        } else {
            400
        }
    }
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
            assert!(r.is_known(), "{s}");
            assert!(r.describe().ends_with('.'), "{s}");
        }
        let other: ErrorReason = "brand_new_reason".into();
        assert_eq!(other, ErrorReason::Other("brand_new_reason".into()));
        assert!(!other.is_known());
        assert_eq!(other.as_str(), "brand_new_reason");
        assert!(other.describe().ends_with('.'));
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            "\"brand_new_reason\""
        );
    }

    /// Codes this crate has no variant for — the chain crates' own (EVM's here, which once
    /// were variants of this enum), another family's, a newer peer's, odd spellings — decode
    /// to `Other` and encode back to the same string, through every path.
    #[test]
    fn other_codes_round_trip_verbatim() {
        let codes = [
            "invalid_exact_evm_nonce_already_used",
            "invalid_exact_evm_payload_signature",
            "permit2_allowance_required",
            "invalid_upto_evm_payload_settlement_exceeds_amount",
            "erc20_approval_tx_wrong_selector",
            "invalid_exact_svm_payload_transaction",
            "brand_new_reason",
            "Payment_In_Use",
            " payment_in_use",
            "",
            "ünïcode reason \"quoted\"",
        ];
        for code in codes {
            let r = ErrorReason::from(code);
            assert_eq!(r, ErrorReason::Other(code.to_owned()), "{code:?}");
            assert!(!r.is_known());
            assert_eq!(r.as_str(), code);
            assert_eq!(r.to_string(), code);
            assert_eq!(code.parse::<ErrorReason>().unwrap(), r);
            assert_eq!(ErrorReason::from(code.to_owned()), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, serde_json::to_string(code).unwrap());
            let back: ErrorReason = serde_json::from_str(&json).unwrap();
            assert_eq!(back.as_str(), code);
            assert_eq!(back, r);
        }
    }

    /// The generic codes of the v1 and v2 specifications (§9) and of the official SDK are all
    /// variants here; the spec's and the SDK's EVM-family codes are `tollgate_evm`'s
    /// (`reason::tests` there covers them), and none of them is a variant here.
    #[test]
    fn covers_the_generic_codes_of_the_specs_and_the_sdk() {
        let specs = [
            "insufficient_funds",
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
            "extension_echo_mismatch",
            "invalid_payment_identifier",
            "missing_facilitator",
            "missing_scheme",
            "payment_identifier_conflict",
            "payment_in_use",
            "payment_required",
            "settle_failed",
            "settlement_pending",
            "unsupported_asset_transfer_method",
            "unsupported_payload_type",
            "unsupported_payment_flow",
        ];
        for code in specs.iter().chain(&sdk) {
            let r = ErrorReason::from(*code);
            assert!(r.is_known(), "{code} is not a variant");
            assert!(ErrorReason::ALL.contains(&r));
        }
        assert_eq!(ErrorReason::ALL.len(), specs.len() + sdk.len());
        // The spec's EVM codes (§9) are not variants of the chain-agnostic enum.
        for code in [
            "invalid_exact_evm_payload_authorization_valid_after",
            "invalid_exact_evm_payload_authorization_valid_before",
            "invalid_exact_evm_payload_authorization_value",
            "invalid_exact_evm_payload_authorization_value_mismatch",
            "invalid_exact_evm_payload_signature",
            "invalid_exact_evm_payload_recipient_mismatch",
        ] {
            assert!(!ErrorReason::from(code).is_known(), "{code}");
        }
        // No generic code names a scheme or a chain family.
        for r in ErrorReason::ALL {
            let s = r.as_str();
            for family in ["evm", "svm", "permit2", "eip", "erc20", "upto", "exact"] {
                assert!(!s.split('_').any(|w| w.starts_with(family)), "{s}");
            }
        }
    }
}
