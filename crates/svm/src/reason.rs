//! The `exact` SVM scheme's error reason codes, byte for byte the official SDK's
//! (`@x402/svm` 2.27.0), so a client or seller reading either implementation's responses sees
//! the same strings. An [`SvmReason`] becomes an [`ErrorReason`] with `.into()` and compares
//! equal to it, as the EVM family's reasons do.
//!
//! ```
//! use tollgate_proto::ErrorReason;
//! use tollgate_svm::SvmReason;
//!
//! let wire: ErrorReason = SvmReason::MintMismatch.into();
//! assert_eq!(wire.as_str(), "invalid_exact_svm_payload_mint_mismatch");
//! assert_eq!(wire, SvmReason::MintMismatch);
//! assert_eq!(SvmReason::from_reason(&wire), Some(SvmReason::MintMismatch));
//! ```

use std::fmt;

use tollgate_proto::ErrorReason;

macro_rules! svm_reasons {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// Why an `exact` payment on Solana was refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum SvmReason {
            $(
                #[doc = $doc]
                $variant,
            )*
        }

        impl SvmReason {
            /// Every reason, one per code.
            pub const ALL: &'static [SvmReason] = &[$(SvmReason::$variant),*];

            /// The wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// One sentence saying what the reason means.
            pub const fn describe(self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                }
            }

            /// The reason a received code names, if it is one of these.
            pub fn from_reason(reason: &ErrorReason) -> Option<Self> {
                match reason.as_str() {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

svm_reasons! {
    UnsupportedScheme => "invalid_exact_svm_unsupported_scheme", "The payload or requirements are not for the exact scheme.";
    NetworkMismatch => "invalid_exact_svm_network_mismatch", "The payload was made for another network than the requirements.";
    MissingFeePayer => "invalid_exact_svm_payload_missing_fee_payer", "The requirements name no fee payer (extra.feePayer).";
    FeePayerNotManaged => "invalid_exact_svm_fee_payer_not_managed_by_facilitator", "The requirements' fee payer is not one of this facilitator's keys.";
    FeePayerMismatch => "invalid_exact_svm_fee_payer_mismatch", "The transaction's fee payer is not the requirements' feePayer.";
    InvalidPayloadTransaction => "invalid_exact_svm_payload_transaction", "The payload carries no transaction string.";
    TransactionCouldNotBeDecoded => "invalid_exact_svm_payload_transaction_could_not_be_decoded", "The transaction is not valid base64 of a well-formed versioned transaction.";
    SignatureInvalid => "invalid_exact_svm_payload_signature_invalid", "A required signature other than the fee payer's is missing or invalid.";
    ExcessiveSigners => "invalid_exact_svm_payload_excessive_signers", "The transaction requires signatures beyond the client's and the fee payer's.";
    InstructionsLength => "invalid_exact_svm_payload_transaction_instructions_length", "The transaction does not have 3 to 7 instructions.";
    ComputeLimitInstruction => "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction", "The first instruction is not SetComputeUnitLimit.";
    ComputeLimitTooHigh => "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high", "The compute unit limit is above the facilitator's cap.";
    ComputePriceInstruction => "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction", "The second instruction is not SetComputeUnitPrice.";
    ComputePriceTooHigh => "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high", "The compute unit price is above the facilitator's cap.";
    NoTransferInstruction => "invalid_exact_svm_payload_no_transfer_instruction", "The third instruction is not a TransferChecked of SPL Token or Token-2022.";
    FeePayerTransferringFunds => "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds", "The fee payer appears in an instruction (as transfer authority or otherwise).";
    MintMismatch => "invalid_exact_svm_payload_mint_mismatch", "The transfer is of another mint than the asset.";
    RecipientMismatch => "invalid_exact_svm_payload_recipient_mismatch", "The transfer does not credit payTo's associated token account.";
    AmountMismatch => "invalid_exact_svm_payload_amount_mismatch", "The transferred amount is not the required amount.";
    UnknownFourthInstruction => "invalid_exact_svm_payload_unknown_fourth_instruction", "The fourth instruction is neither Memo nor Lighthouse.";
    UnknownFifthInstruction => "invalid_exact_svm_payload_unknown_fifth_instruction", "The fifth instruction is neither Memo nor Lighthouse.";
    UnknownSixthInstruction => "invalid_exact_svm_payload_unknown_sixth_instruction", "The sixth instruction is neither Memo nor Lighthouse.";
    UnknownSeventhInstruction => "invalid_exact_svm_payload_unknown_seventh_instruction", "The seventh instruction is neither Memo nor Lighthouse.";
    MemoCount => "invalid_exact_svm_payload_memo_count", "The requirements set extra.memo but the transaction has not exactly one Memo.";
    MemoMismatch => "invalid_exact_svm_payload_memo_mismatch", "The Memo's data is not extra.memo.";
    AltResolutionNotAvailable => "invalid_exact_svm_smart_wallet_alt_resolution_not_available", "The transaction uses address lookup tables, which this facilitator does not resolve.";
    SimulationFailed => "invalid_exact_svm_transaction_simulation_failed", "A simulation of the fee-payer-signed transaction failed.";
    TransactionFailed => "invalid_exact_svm_transaction_failed", "The settlement transaction failed on chain or could not be sent.";
    DuplicateSettlement => "duplicate_settlement", "The same transaction is already being settled.";
}

impl fmt::Display for SvmReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<SvmReason> for ErrorReason {
    fn from(reason: SvmReason) -> Self {
        ErrorReason::from(reason.as_str())
    }
}

impl PartialEq<SvmReason> for ErrorReason {
    fn eq(&self, other: &SvmReason) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<ErrorReason> for SvmReason {
    fn eq(&self, other: &ErrorReason) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_distinct_and_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for &r in SvmReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {r}");
            let wire = ErrorReason::from(r);
            assert_eq!(SvmReason::from_reason(&wire), Some(r));
            assert_eq!(wire.as_str(), r.as_str());
            assert!(r.describe().ends_with('.'));
        }
    }
}
