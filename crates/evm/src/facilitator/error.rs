//! Typed verification and settlement failures, each mapped to its x402 reason code.

use alloy::primitives::{Address, B256, U256};
use tollgate_proto::ErrorReason;

use crate::reason::EvmReason;

/// Why a payment failed verification.
///
/// Each variant maps to one x402 reason code ([`VerifyError::reason`]), the strings the
/// official SDK emits, so peers see the same reasons from Tollgate as from the reference
/// facilitator. [`VerifyError::Rpc`] is not the payer's fault: a facilitator should answer it
/// as "try again later" (503), not as an invalid payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `payload` is not an EIP-3009 payload.
    #[error("{0}")]
    InvalidPayload(String),
    /// The payload or the requirements are not for the `exact` scheme.
    #[error("scheme mismatch: payload is for {payload:?}, requirements for {requirements:?}; expected \"exact\"")]
    SchemeMismatch {
        /// Scheme in the payload's `accepted`.
        payload: String,
        /// Scheme in the requirements.
        requirements: String,
    },
    /// The payload was made for another network than the requirements name.
    #[error("network mismatch: payload is for {payload}, requirements for {requirements}")]
    NetworkMismatch {
        /// Network in the payload's `accepted`.
        payload: String,
        /// Network in the requirements.
        requirements: String,
    },
    /// This facilitator is connected to another chain.
    #[error("network {requested} is not served here (this facilitator settles on {served})")]
    UnsupportedNetwork {
        /// The requested network.
        requested: String,
        /// The network this facilitator settles on.
        served: String,
    },
    /// The payload's `accepted` names another asset than the requirements.
    #[error("asset mismatch: payment is for {payload}, requirements ask for {requirements}")]
    AssetMismatch {
        /// Asset in the payload's `accepted`.
        payload: String,
        /// Asset in the requirements.
        requirements: String,
    },
    /// The requirements are unusable (bad asset address, no EIP-712 domain).
    #[error("{0}")]
    MissingDomain(String),
    /// The requirements are unusable for another reason (e.g. `payTo` is not an address).
    #[error("invalid payment requirements: {0}")]
    InvalidRequirements(String),
    /// An EIP-6492 signature deploys its wallet through a factory that is not allow-listed.
    #[error("EIP-6492 factory {factory} is not on this facilitator's allowlist")]
    FactoryNotAllowed {
        /// The factory the signature would call.
        factory: Address,
    },
    /// The signature bytes cannot be parsed (e.g. an EOA signature that is not 65 bytes).
    #[error("cannot parse signature: {0}")]
    MalformedSignature(String),
    /// The signature does not authorize this transfer for `from`.
    #[error("signature is not valid for payer {payer}")]
    InvalidSignature {
        /// The claimed payer.
        payer: Address,
    },
    /// `authorization.to` (or `accepted.payTo`) is not the requirements' `payTo`.
    #[error("recipient mismatch: payment goes to {got}, requirements say {expected}")]
    RecipientMismatch {
        /// The requirements' `payTo`.
        expected: String,
        /// Where the payment would go.
        got: String,
    },
    /// `validBefore` has passed, or is too close to pass before settlement lands.
    #[error("authorization expires at {valid_before}, which is not after now ({now}) + {margin_secs}s margin")]
    Expired {
        /// The authorization's `validBefore`.
        valid_before: U256,
        /// The facilitator's clock.
        now: u64,
        /// The safety margin kept before `validBefore`.
        margin_secs: u64,
    },
    /// `validAfter` is still in the future.
    #[error("authorization is valid only after {valid_after}; now is {now}")]
    NotYetValid {
        /// The authorization's `validAfter`.
        valid_after: U256,
        /// The facilitator's clock.
        now: u64,
    },
    /// The signed value (or `accepted.amount`) is not the required amount.
    #[error("amount mismatch: payment is for {got}, requirements ask exactly {expected}")]
    ValueMismatch {
        /// The required amount.
        expected: U256,
        /// The offered amount.
        got: U256,
    },
    /// The asset address holds no contract code: nothing there could honour a transfer, and a
    /// settlement would spend gas on a transaction that does nothing.
    #[error("asset {asset} has no contract code on this chain")]
    AssetNotDeployed {
        /// The asset.
        asset: Address,
    },
    /// The asset does not implement EIP-3009.
    #[error("asset {asset} does not implement EIP-3009 (authorizationState failed)")]
    Eip3009NotSupported {
        /// The asset.
        asset: Address,
    },
    /// This (payer, nonce) was already used or cancelled on the token.
    #[error("authorization nonce {nonce} of {payer} was already used or cancelled")]
    NonceAlreadyUsed {
        /// The payer.
        payer: Address,
        /// The nonce.
        nonce: B256,
    },
    /// The token's on-chain EIP-712 name differs from the one signed.
    #[error("token name mismatch: signed for {signed:?}, token says {actual:?}")]
    TokenNameMismatch {
        /// Name in the requirements.
        signed: String,
        /// Name on chain.
        actual: String,
    },
    /// The token's on-chain EIP-712 version differs from the one signed.
    #[error("token version mismatch: signed for {signed:?}, token says {actual:?}")]
    TokenVersionMismatch {
        /// Version in the requirements.
        signed: String,
        /// Version on chain.
        actual: String,
    },
    /// The payer holds less than the amount.
    #[error("insufficient balance: payer {payer} holds {balance}, needs {required}")]
    InsufficientBalance {
        /// The payer.
        payer: Address,
        /// Their balance.
        balance: U256,
        /// The amount.
        required: U256,
    },
    /// A dry run of the transfer reverted for a reason no other check explains.
    #[error("transfer simulation failed: {0}")]
    SimulationFailed(String),
    /// The Permit2 `spender` is not the scheme's x402 proxy.
    #[error("Permit2 spender is {got}, but this scheme's proxy is {expected}")]
    Permit2Spender {
        /// The scheme's proxy.
        expected: Address,
        /// The signed spender.
        got: Address,
    },
    /// The Permit2 witness (or `accepted.payTo`) pays someone other than `payTo`.
    #[error("Permit2 recipient mismatch: payment goes to {got}, requirements say {expected}")]
    Permit2Recipient {
        /// The requirements' `payTo`.
        expected: String,
        /// Where the payment would go.
        got: String,
    },
    /// The Permit2 signature does not recover to (or is not accepted by) the payer.
    #[error("Permit2 signature is not valid for payer {payer}")]
    Permit2Signature {
        /// The claimed payer.
        payer: Address,
    },
    /// The payer has not approved Permit2 for enough of the token, and the payment brings no
    /// gas-sponsoring extension that would (HTTP 412 `PERMIT2_ALLOWANCE_REQUIRED`: the payer
    /// must send the one-time approval, then retry).
    #[error("PERMIT2_ALLOWANCE_REQUIRED: {payer} allows Permit2 {allowance} of the token, the payment needs {required}; approve Permit2 once, then retry")]
    Permit2AllowanceRequired {
        /// The payer.
        payer: Address,
        /// Their allowance for Permit2.
        allowance: U256,
        /// The amount.
        required: U256,
    },
    /// The payer holds less than the Permit2 amount.
    #[error("insufficient balance: payer {payer} holds {balance}, needs {required}")]
    Permit2InsufficientBalance {
        /// The payer.
        payer: Address,
        /// Their balance.
        balance: U256,
        /// The amount.
        required: U256,
    },
    /// The permitted amount (or `accepted.amount`) is not the required amount.
    #[error("Permit2 amount mismatch: payment permits {got}, requirements ask exactly {expected}")]
    Permit2AmountMismatch {
        /// The required amount.
        expected: U256,
        /// The offered amount.
        got: U256,
    },
    /// An `upto` settlement asks for more than the payer authorised.
    #[error("settlement of {requested} exceeds the authorised maximum {maximum}")]
    SettlementExceedsAmount {
        /// The signed maximum.
        maximum: U256,
        /// The settle-time amount.
        requested: U256,
    },
    /// The Permit2 `deadline` has passed or is too close.
    #[error("Permit2 deadline {deadline} is not after now ({now}) + {margin_secs}s margin")]
    Permit2DeadlineExpired {
        /// The signed deadline.
        deadline: U256,
        /// The facilitator's clock.
        now: u64,
        /// The safety margin.
        margin_secs: u64,
    },
    /// The witness' `validAfter` is still in the future.
    #[error("Permit2 payment is valid only after {valid_after}; now is {now}")]
    Permit2NotYetValid {
        /// The witness' `validAfter`.
        valid_after: U256,
        /// The facilitator's clock.
        now: u64,
    },
    /// The permitted token is not the requirements' asset.
    #[error("Permit2 token {got} is not the required asset {expected}")]
    Permit2TokenMismatch {
        /// The asset.
        expected: Address,
        /// The signed token.
        got: Address,
    },
    /// This Permit2 nonce of the payer was already used (or invalidated).
    #[error("Permit2 nonce {nonce} of {payer} was already used")]
    Permit2NonceUsed {
        /// The payer.
        payer: Address,
        /// The nonce.
        nonce: U256,
    },
    /// The x402 proxy has no code on this chain.
    #[error("the x402 Permit2 proxy {proxy} is not deployed on this chain")]
    Permit2ProxyNotDeployed {
        /// The proxy.
        proxy: Address,
    },
    /// A dry run of the proxy settlement reverted for a reason no other check explains.
    #[error("Permit2 settlement simulation failed: {0}")]
    Permit2SimulationFailed(String),
    /// Another check of the EVM family failed, with its own reason code (the `upto` scheme's
    /// scheme/network/facilitator checks, the gas-sponsoring extensions' fields).
    #[error("{message}")]
    Refused {
        /// The reason code.
        reason: EvmReason,
        /// What is wrong.
        message: String,
    },
    /// The chain could not be asked (RPC down, timeout). Not the payer's fault.
    #[error("chain RPC failed during {context}: {message}")]
    Rpc {
        /// What was being read.
        context: &'static str,
        /// The transport's message.
        message: String,
    },
}

impl VerifyError {
    /// The x402 reason code for this failure: a generic one, or the EVM family's
    /// ([`EvmReason`], carried as [`ErrorReason::Other`]).
    pub fn reason(&self) -> ErrorReason {
        use ErrorReason as R;
        use EvmReason as E;
        match self {
            Self::InvalidPayload(_) => R::InvalidPayload,
            Self::SchemeMismatch { .. } => E::InvalidExactEvmScheme.into(),
            Self::NetworkMismatch { .. } => E::InvalidExactEvmNetworkMismatch.into(),
            Self::UnsupportedNetwork { .. } => R::InvalidNetwork,
            Self::AssetMismatch { .. } => R::InvalidPayload,
            Self::MissingDomain(_) => E::InvalidExactEvmMissingEip712Domain.into(),
            Self::InvalidRequirements(_) => R::InvalidPaymentRequirements,
            Self::FactoryNotAllowed { .. } => E::Eip6492FactoryNotAllowed.into(),
            Self::MalformedSignature(_) => E::InvalidExactEvmFailedToParseSignature.into(),
            Self::InvalidSignature { .. } => E::InvalidExactEvmSignature.into(),
            Self::RecipientMismatch { .. } => E::InvalidExactEvmRecipientMismatch.into(),
            Self::Expired { .. } => E::InvalidExactEvmPayloadAuthorizationValidBefore.into(),
            Self::NotYetValid { .. } => E::InvalidExactEvmPayloadAuthorizationValidAfter.into(),
            Self::ValueMismatch { .. } => {
                E::InvalidExactEvmPayloadAuthorizationValueMismatch.into()
            }
            Self::AssetNotDeployed { .. } => E::AssetNotDeployedContract.into(),
            Self::Eip3009NotSupported { .. } => E::InvalidExactEvmEip3009NotSupported.into(),
            Self::NonceAlreadyUsed { .. } => E::InvalidExactEvmNonceAlreadyUsed.into(),
            Self::TokenNameMismatch { .. } => E::InvalidExactEvmTokenNameMismatch.into(),
            Self::TokenVersionMismatch { .. } => E::InvalidExactEvmTokenVersionMismatch.into(),
            Self::InsufficientBalance { .. } => E::InvalidExactEvmInsufficientBalance.into(),
            Self::SimulationFailed(_) => E::InvalidExactEvmTransactionSimulationFailed.into(),
            Self::Permit2Spender { .. } => E::InvalidPermit2Spender.into(),
            Self::Permit2Recipient { .. } => E::InvalidPermit2RecipientMismatch.into(),
            Self::Permit2Signature { .. } => E::InvalidPermit2Signature.into(),
            Self::Permit2AllowanceRequired { .. } => E::Permit2AllowanceRequired.into(),
            Self::Permit2InsufficientBalance { .. } => E::Permit2InsufficientBalance.into(),
            Self::Permit2AmountMismatch { .. } => E::Permit2AmountMismatch.into(),
            Self::SettlementExceedsAmount { .. } => {
                E::InvalidUptoEvmPayloadSettlementExceedsAmount.into()
            }
            Self::Permit2DeadlineExpired { .. } => E::Permit2DeadlineExpired.into(),
            Self::Permit2NotYetValid { .. } => E::Permit2NotYetValid.into(),
            Self::Permit2TokenMismatch { .. } => E::Permit2TokenMismatch.into(),
            Self::Permit2NonceUsed { .. } => E::Permit2InvalidNonce.into(),
            Self::Permit2ProxyNotDeployed { .. } => E::Permit2ProxyNotDeployed.into(),
            Self::Permit2SimulationFailed(_) => E::Permit2SimulationFailed.into(),
            Self::Refused { reason, .. } => (*reason).into(),
            Self::Rpc { .. } => R::UnexpectedVerifyError,
        }
    }

    /// Whether the failure lies with the payment (true) or with the facilitator's access to
    /// the chain (false: retry later, answer 503).
    pub fn is_payment_fault(&self) -> bool {
        !matches!(self, Self::Rpc { .. })
    }

    pub(crate) fn rpc(context: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Rpc {
            context,
            message: err.to_string(),
        }
    }
}

/// Why a settlement did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// Re-verification before sending failed; nothing was sent.
    #[error("payment is not valid: {0}")]
    Invalid(#[from] VerifyError),
    /// The node could not be reached to send the transaction. Nothing was sent; retry later.
    #[error("could not submit settlement transaction: {0}")]
    Submit(String),
    /// The node refused the transaction because it would revert (e.g. the authorization was
    /// used or cancelled since verification). Nothing was mined and no gas was spent.
    #[error("settlement transaction would revert: {0}")]
    WouldRevert(String),
    /// The transaction was mined and reverted. No money moved.
    #[error("settlement transaction {tx_hash} reverted")]
    Reverted {
        /// The reverted transaction.
        tx_hash: B256,
    },
    /// No receipt within the timeout: the transaction may still be mined. Callers must treat
    /// the payment as pending (and reconcile by `tx_hash`), never as failed.
    #[error("settlement transaction {tx_hash} has no receipt after {waited_secs}s; it may still be mined")]
    ReceiptTimeout {
        /// The submitted transaction.
        tx_hash: B256,
        /// How long we waited.
        waited_secs: u64,
    },
    /// The transaction succeeded but did not emit the expected `Transfer`.
    #[error("settlement transaction {tx_hash} did not emit the expected Transfer event")]
    TransferEventMismatch {
        /// The transaction.
        tx_hash: B256,
    },
    /// The batch transaction carrying this payment was mined, but this payment's call inside
    /// it failed (its authorization was used or its payer drained after the dry run). No money
    /// moved for this payment; the others in the batch are unaffected.
    #[error("settlement batch {tx_hash} was mined but this payment's transfer failed in it")]
    FailedInBatch {
        /// The batch transaction.
        tx_hash: B256,
    },
    /// A sponsored step before a Permit2 settlement (funding the payer's gas, relaying the
    /// payer's signed approval) failed. The settlement itself was not sent.
    #[error("sponsored Permit2 approval failed: {0}")]
    Sponsorship(String),
    /// Deploying the payer's counterfactual (EIP-6492) wallet failed.
    #[error("could not deploy the payer's smart wallet: {0}")]
    WalletDeployment(String),
}

impl SettleError {
    /// The x402 reason code for this failure: a generic one, or the EVM family's
    /// ([`EvmReason`], carried as [`ErrorReason::Other`]).
    pub fn reason(&self) -> ErrorReason {
        match self {
            Self::Invalid(e) => e.reason(),
            Self::Submit(_) => ErrorReason::UnexpectedSettleError,
            Self::WouldRevert(_) => EvmReason::InvalidExactEvmTransactionFailed.into(),
            Self::Reverted { .. } | Self::FailedInBatch { .. } => {
                EvmReason::InvalidExactEvmTransactionFailed.into()
            }
            Self::ReceiptTimeout { .. } => ErrorReason::SettlementPending,
            Self::TransferEventMismatch { .. } => {
                EvmReason::InvalidExactEvmTransferEventMismatch.into()
            }
            Self::WalletDeployment(_) => EvmReason::SmartWalletDeploymentFailed.into(),
            Self::Sponsorship(_) => EvmReason::Erc20ApprovalTxFailed.into(),
        }
    }

    /// The transaction hash, when one was sent.
    pub fn tx_hash(&self) -> Option<B256> {
        match self {
            Self::Reverted { tx_hash }
            | Self::FailedInBatch { tx_hash }
            | Self::ReceiptTimeout { tx_hash, .. }
            | Self::TransferEventMismatch { tx_hash } => Some(*tx_hash),
            _ => None,
        }
    }
}
