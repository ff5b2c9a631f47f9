//! One payment scheme as a facilitator runs it.
//!
//! The facilitator owns everything a payment's life needs besides the chain — the ledger, the
//! attempt keys, claims between replicas, retries, events — and asks the scheme only what
//! depends on the scheme: what identifies a payment, whether it is valid, how to send it, and
//! what the chain says about it.

use std::any::Any;
use std::time::Duration;

use tollgate_proto::{
    AtomicAmount, ErrorReason, PaymentPayload, PaymentRequirements, Scheme, SupportedKind,
};

use crate::BoxFuture;

/// What identifies one payment for the ledger, from the *parsed* payment so that every textual
/// encoding of one authorization is one identity. Unique within (network, scheme).
///
/// Fields are in the chain's display notation (EVM: checksummed hex); the ledger folds `0x`
/// hex to lower case for its key, so a scheme cannot split one payment by letter case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentIdentity {
    /// The asset moved, canonical (for EVM: the token address).
    pub asset: String,
    /// Who pays, canonical.
    pub payer: String,
    /// The scheme's name for this payment among the payer's payments of this asset (for
    /// `exact` on EVM: the EIP-3009 nonce; for a signed transaction: its signature).
    pub id: String,
    /// Unix seconds from which the payment can never be settled, if it expires.
    pub valid_before: Option<u64>,
}

/// A payment the scheme found valid, ready to send. Opaque to the facilitator: `proof` is the
/// scheme's own parsed payment, handed back to [`SchemeFacilitator::submit`] so it is not
/// parsed and checked twice.
pub struct Verified {
    /// Its identity.
    pub identity: PaymentIdentity,
    /// The scheme's parsed, checked payment.
    pub proof: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A settlement the chain has made final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The transaction, in the chain's notation.
    pub transaction: String,
    /// Who paid.
    pub payer: String,
    /// What the transaction moved, when only the chain knows it (a `batch-settlement` sweep
    /// moves whatever was claimed). Reported as the settle response's `amount`, ahead of
    /// [`SchemeFacilitator::settled_amount`].
    pub amount: Option<AtomicAmount>,
    /// The scheme's data for the settle response's `extra` (a `batch-settlement` channel's
    /// state after the transaction).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Settled {
    /// A settlement reporting only its transaction and payer.
    pub fn new(transaction: impl Into<String>, payer: impl Into<String>) -> Self {
        Self {
            transaction: transaction.into(),
            payer: payer.into(),
            amount: None,
            extra: None,
        }
    }
}

/// Whose fault a scheme error is, which decides the HTTP answer and the ledger state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeFault {
    /// The payment is invalid (bad signature, insufficient funds, used nonce…): rejected.
    Payment,
    /// The chain could not be asked, or refused the transaction for reasons of its own: try
    /// again later; nothing happened.
    Unavailable,
    /// A transaction was sent and is not final yet: the ledger finishes it later.
    Pending,
}

/// Why a scheme could not verify or settle a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchemeError {
    /// Whose fault.
    pub fault: SchemeFault,
    /// The spec reason code.
    pub reason: ErrorReason,
    /// What happened, for a person.
    pub message: String,
    /// The transaction involved, if one was sent.
    pub transaction: Option<String>,
}

impl SchemeError {
    /// The payment is at fault.
    pub fn payment(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            fault: SchemeFault::Payment,
            reason,
            message: message.into(),
            transaction: None,
        }
    }

    /// The chain could not be asked (verification) or did not take the transaction.
    pub fn unavailable(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            fault: SchemeFault::Unavailable,
            reason,
            message: message.into(),
            transaction: None,
        }
    }

    /// `transaction` was sent and is not final yet.
    pub fn pending(reason: ErrorReason, message: impl Into<String>, transaction: String) -> Self {
        Self {
            fault: SchemeFault::Pending,
            reason,
            message: message.into(),
            transaction: Some(transaction),
        }
    }

    /// The same error, naming the transaction it concerns.
    pub fn with_transaction(mut self, transaction: String) -> Self {
        self.transaction = Some(transaction);
        self
    }

    /// Whether the payment is at fault.
    pub fn is_payment_fault(&self) -> bool {
        self.fault == SchemeFault::Payment
    }
}

/// One scheme on some networks, as the facilitator runs it. Registered in a
/// [`Registry`](crate::Registry) under (scheme, network pattern); the facilitator calls it for
/// payments whose requirements name that scheme on a matching network. Object-safe.
pub trait SchemeFacilitator: Send + Sync + 'static {
    /// The scheme.
    fn scheme(&self) -> Scheme;

    /// What `/supported` lists for it (one kind per protocol version and network), with the
    /// scheme's `extra` (e.g. Solana's fee payer).
    fn supported(&self) -> Vec<SupportedKind>;

    /// Settlement signers by CAIP-2 pattern, for `/supported`'s `signers`.
    fn signers(&self) -> Vec<(String, Vec<String>)>;

    /// How long a settlement waits to be final before it is reported pending.
    fn receipt_timeout(&self) -> Duration;

    /// The reason code for a payment presented again after it was settled (or while it is
    /// being settled) by another request. The default is the generic
    /// `invalid_transaction_state`; a scheme whose peers expect its own code (EVM `exact`:
    /// `invalid_exact_evm_nonce_already_used`) says so.
    fn already_used_reason(&self) -> ErrorReason {
        ErrorReason::InvalidTransactionState
    }

    /// The payment's identity, from the parsed payment and requirements, without asking the
    /// chain. An error when the payload is not this scheme's or is malformed.
    fn identify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError>;

    /// Checks everything that can be checked before sending: signature, terms, time window,
    /// funds, nonce unused.
    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>>;

    /// Whether the chain itself makes repeating `payment` harmless, so the facilitator settles
    /// it every time it is asked, without keying it in its ledger. For operations that are not
    /// payments: a `batch-settlement` claim (cumulative amounts: a row already applied is
    /// skipped) or sweep (moves only what is claimed and unsettled, to the receiver fixed in the
    /// contract). Nothing a payer signed can be spent twice through it. The default is `false`:
    /// every payment is settled once.
    fn repeatable(&self, payment: &PaymentPayload) -> bool {
        let _ = payment;
        false
    }

    /// The scheme's data for the `/verify` response's `extra`, from its own verified payment
    /// (a `batch-settlement` channel's on-chain state). The default, `None`, leaves it out.
    fn verify_extra(
        &self,
        verified: &Verified,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let _ = verified;
        None
    }

    /// Whether `presented` is the very payment `stored` (recorded with payee `stored_pay_to`)
    /// — the same typed authorization and signature, the same payee — and its signature still
    /// verifies against `requirements`. The facilitator answers a repeated `/settle` of one
    /// attempt with the original outcome only when this holds. `Ok(false)`: another payment;
    /// an error: the signature no longer verifies, or the chain could not be asked.
    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>>;

    /// Checks a payment again just before it is settled, against the requirements of the
    /// `/settle` request. The default is [`verify`](Self::verify): for most schemes the
    /// requirements mean the same at both steps. A scheme whose settle-time requirements mean
    /// something else overrides it — e.g. a metered scheme (`upto`) whose `amount` is the
    /// authorised maximum at `/verify` but the actual charge at `/settle`: it verifies the
    /// signature against the signed maximum and refuses a charge above it, instead of
    /// demanding equality.
    fn verify_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        self.verify(payment, requirements)
    }

    /// The amount a successful settlement under the settle-time `requirements` moved, when the
    /// scheme reports it in `SettleResponse.amount` (a metered scheme: the charge, possibly 0).
    /// The default, `None`, leaves the field out, as `exact` does.
    fn settled_amount(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<AtomicAmount> {
        let _ = (payment, requirements);
        None
    }

    /// Sends a verified payment; returns its transaction as soon as the chain took it. An
    /// empty string means the settlement needed no transaction (a metered payment charged
    /// nothing): [`await_settlement`](Self::await_settlement) is then asked about `""` and
    /// the settle response carries `transaction: ""`.
    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>>;

    /// Waits (up to [`receipt_timeout`](Self::receipt_timeout)) for `transaction`, which
    /// carries `payment`, to be final.
    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>>;

    /// Looks on chain for a settlement of `payment` whose transaction is not known (a run
    /// died after sending and before recording it). `Ok(None)`: the payment was not used.
    fn find_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Option<Settled>, SchemeError>>;
}
