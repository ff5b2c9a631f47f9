//! The scheme's reason codes (`invalid_batch_settlement_evm_*`), as the spec's "Error Codes"
//! table and the official SDK spell them.

use tollgate_proto::ErrorReason;

macro_rules! reasons {
    ($($variant:ident => $code:literal,)*) => {
        /// One `invalid_batch_settlement_evm_*` code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BatchReason {
            $(
                #[doc = concat!("`", $code, "`")]
                $variant,
            )*
        }

        impl BatchReason {
            /// Every code, in the spec's order.
            pub const ALL: &'static [BatchReason] = &[$(Self::$variant,)*];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }
        }
    };
}

reasons! {
    AuthorizerAddressMismatch => "invalid_batch_settlement_evm_authorizer_address_mismatch",
    AuthorizerNotConfigured => "invalid_batch_settlement_evm_authorizer_not_configured",
    ChannelBusy => "invalid_batch_settlement_evm_channel_busy",
    ChannelIdMismatch => "invalid_batch_settlement_evm_channel_id_mismatch",
    ChannelNotFound => "invalid_batch_settlement_evm_channel_not_found",
    ChannelStateReadFailed => "invalid_batch_settlement_evm_channel_state_read_failed",
    ChargeExceedsSignedCumulative => "invalid_batch_settlement_evm_charge_exceeds_signed_cumulative",
    ClaimPayload => "invalid_batch_settlement_evm_claim_payload",
    ClaimSimulationFailed => "invalid_batch_settlement_evm_claim_simulation_failed",
    ClaimTransactionFailed => "invalid_batch_settlement_evm_claim_transaction_failed",
    CumulativeAmountMismatch => "invalid_batch_settlement_evm_cumulative_amount_mismatch",
    CumulativeBelowClaimed => "invalid_batch_settlement_evm_cumulative_below_claimed",
    CumulativeExceedsBalance => "invalid_batch_settlement_evm_cumulative_exceeds_balance",
    DepositPayload => "invalid_batch_settlement_evm_deposit_payload",
    DepositSimulationFailed => "invalid_batch_settlement_evm_deposit_simulation_failed",
    DepositTransactionFailed => "invalid_batch_settlement_evm_deposit_transaction_failed",
    Erc3009AuthorizationRequired => "invalid_batch_settlement_evm_erc3009_authorization_required",
    InsufficientBalance => "invalid_batch_settlement_evm_insufficient_balance",
    MissingChannel => "invalid_batch_settlement_evm_missing_channel",
    MissingEip712Domain => "invalid_batch_settlement_evm_missing_eip712_domain",
    NetworkMismatch => "invalid_batch_settlement_evm_network_mismatch",
    ValidAfter => "invalid_batch_settlement_evm_payload_authorization_valid_after",
    ValidBefore => "invalid_batch_settlement_evm_payload_authorization_valid_before",
    PayloadType => "invalid_batch_settlement_evm_payload_type",
    Permit2AllowanceRequired => "invalid_batch_settlement_evm_permit2_allowance_required",
    Permit2AmountMismatch => "invalid_batch_settlement_evm_permit2_amount_mismatch",
    Permit2AuthorizationRequired => "invalid_batch_settlement_evm_permit2_authorization_required",
    Permit2DeadlineExpired => "invalid_batch_settlement_evm_permit2_deadline_expired",
    Permit2InvalidSignature => "invalid_batch_settlement_evm_permit2_invalid_signature",
    Permit2InvalidSpender => "invalid_batch_settlement_evm_permit2_invalid_spender",
    ReceiveAuthorizationSignature => "invalid_batch_settlement_evm_receive_authorization_signature",
    ReceiverAuthorizerMismatch => "invalid_batch_settlement_evm_receiver_authorizer_mismatch",
    ReceiverMismatch => "invalid_batch_settlement_evm_receiver_mismatch",
    RefundAmountInvalid => "invalid_batch_settlement_evm_refund_amount_invalid",
    RefundNoBalance => "invalid_batch_settlement_evm_refund_no_balance",
    RefundPayload => "invalid_batch_settlement_evm_refund_payload",
    RefundSimulationFailed => "invalid_batch_settlement_evm_refund_simulation_failed",
    RefundTransactionFailed => "invalid_batch_settlement_evm_refund_transaction_failed",
    RpcReadFailed => "invalid_batch_settlement_evm_rpc_read_failed",
    Scheme => "invalid_batch_settlement_evm_scheme",
    SettlePayload => "invalid_batch_settlement_evm_settle_payload",
    NothingToSettle => "invalid_batch_settlement_evm_nothing_to_settle",
    SettleSimulationFailed => "invalid_batch_settlement_evm_settle_simulation_failed",
    SettleTransactionFailed => "invalid_batch_settlement_evm_settle_transaction_failed",
    TokenMismatch => "invalid_batch_settlement_evm_token_mismatch",
    TransactionReverted => "invalid_batch_settlement_evm_transaction_reverted",
    UnknownSettleAction => "invalid_batch_settlement_evm_unknown_settle_action",
    VoucherPayload => "invalid_batch_settlement_evm_voucher_payload",
    VoucherSignature => "invalid_batch_settlement_evm_voucher_signature",
    WaitForReceiptFailed => "invalid_batch_settlement_evm_wait_for_receipt_failed",
    WithdrawDelayMismatch => "invalid_batch_settlement_evm_withdraw_delay_mismatch",
    WithdrawDelayOutOfRange => "invalid_batch_settlement_evm_withdraw_delay_out_of_range",
}

impl std::fmt::Display for BatchReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<BatchReason> for ErrorReason {
    fn from(r: BatchReason) -> Self {
        ErrorReason::Other(r.as_str().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_spelled_as_the_spec() {
        let mut seen = std::collections::HashSet::new();
        for r in BatchReason::ALL {
            assert!(
                r.as_str().starts_with("invalid_batch_settlement_evm_"),
                "{r}"
            );
            assert!(seen.insert(r.as_str()), "{r} twice");
            assert_eq!(ErrorReason::from(*r).as_str(), r.as_str());
        }
    }
}
