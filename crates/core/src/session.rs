//! Payments through a standing arrangement — a payment channel — as the paying client sees them.
//!
//! A one-off payment ([`PaymentSigner::sign`](crate::PaymentSigner::sign)) authorises exactly
//! the price and nothing else. A *session* scheme (`batch-settlement`) works differently: the
//! wallet deposits once into a channel, then signs one off-chain voucher per request against
//! that deposit, and may later ask for the unused part back. The client must therefore keep
//! state between payments (what the seller has charged so far, the channel's balance) and count
//! money differently: what leaves the wallet is the **deposit**, when one is made, not the
//! price of each request.
//!
//! A wallet that pays some requirements this way returns a [`SessionPayer`] from
//! [`PaymentSigner::session`](crate::PaymentSigner::session). The client keeps each session's
//! state ([`SessionState`], opaque to it) in its spend ledger under [`SessionPayer::key`], so a
//! channel is reused across calls and processes; it serialises payments per key, reserves a
//! deposit against its budgets before one is signed, and returns a refund to them.

use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo, SettleResponse};

use crate::client::{SignedPayment, SignerError};
use crate::BoxFuture;

/// A session's state as its scheme records it (for a channel: its config, the charged
/// cumulative amount, the balance, a voucher awaiting its receipt). Opaque to the client, which
/// only stores it.
pub type SessionState = serde_json::Value;

/// What the next payment of a session takes from the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutlay {
    /// Nothing: the session holds enough for this request (a voucher).
    Covered,
    /// A deposit, opening the session or topping it up: at least `needed` atomic units (what
    /// this request needs), and `wanted` to fund the scheme's usual number of requests. How
    /// much in between is the client's policy.
    Deposit {
        /// The least that pays this request.
        needed: u128,
        /// What the wallet would deposit unconstrained (≥ `needed`).
        wanted: u128,
    },
}

/// A signed session payment and the state to keep while it is answered.
#[derive(Debug, Clone)]
pub struct SessionPayment {
    /// The payment, and the handle of the token authorization inside it (for a deposit; a
    /// voucher's handle names the channel and ceiling and cannot be asked about on chain).
    pub signed: SignedPayment,
    /// The deposit it carries, in atomic units (`None`: a voucher alone).
    pub deposit: Option<u128>,
    /// The state once sent (the voucher's ceiling awaiting its receipt).
    pub state: SessionState,
}

/// What a seller's receipt did to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReceipt {
    /// The new state.
    pub state: SessionState,
    /// What this request was charged, in atomic units.
    pub charged: u128,
    /// The session's balance as the seller reports it (deposited minus refunded).
    pub balance: u128,
}

/// What a refund returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRefund {
    /// The new state (kept when empty: a later deposit continues the session).
    pub state: SessionState,
    /// What is left in the session (its balance not yet claimed), in atomic units.
    pub remaining: u128,
    /// The amount returned to the wallet, in atomic units.
    pub refunded: u128,
    /// The refund transaction.
    pub transaction: String,
}

/// The client side of a session scheme, for one wallet. Object-safe; every method is given
/// the stored state and returns the new one, so the payer itself holds nothing between calls
/// and two processes sharing a ledger share the session.
pub trait SessionPayer: Send + Sync {
    /// The session `requirements` are paid through, stable across processes (for a channel:
    /// network and channel id). Payments with the same key are made one at a time.
    fn key(&self, requirements: &PaymentRequirements) -> Result<String, SignerError>;

    /// What the next payment takes from the wallet, given the stored `state`. Pure: nothing
    /// is signed.
    fn outlay(
        &self,
        requirements: &PaymentRequirements,
        state: Option<&SessionState>,
    ) -> Result<SessionOutlay, SignerError>;

    /// Signs the payment for one request: the voucher, and a deposit of `deposit` atomic units
    /// (required, and at least the `needed` of [`outlay`], when it said a deposit).
    ///
    /// [`outlay`]: SessionPayer::outlay
    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
        state: Option<SessionState>,
        deposit: Option<u128>,
    ) -> BoxFuture<'a, Result<SessionPayment, SignerError>>;

    /// Checks the seller's receipt for the payment `state` awaits and adopts it. An error
    /// means the seller broke the scheme's rules: sign nothing more in this session.
    fn receipt(
        &self,
        requirements: &PaymentRequirements,
        state: SessionState,
        receipt: &SettleResponse,
    ) -> Result<SessionReceipt, SignerError>;

    /// The state after the seller broke the scheme's rules (`why`): nothing more is signed in
    /// this session.
    fn halt(&self, state: SessionState, why: &str) -> SessionState;

    /// The state after the seller refused the awaited payment without charging it (the next
    /// payment signs the same amount again).
    fn unanswered(&self, state: SessionState) -> SessionState;

    /// Whether a refusal's reason says the seller's state differs from ours and its challenge
    /// carries the proof to [`resync`](SessionPayer::resync) from.
    fn is_out_of_sync(&self, reason: &str) -> bool;

    /// Adopts the seller's state from a corrective challenge, after checking its proof.
    fn resync(
        &self,
        corrective: &PaymentRequirements,
        state: Option<SessionState>,
    ) -> Result<SessionState, SignerError>;

    /// Signs a request to return `amount` (everything unclaimed when `None`) of the session.
    fn refund<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
        state: SessionState,
        amount: Option<u128>,
    ) -> BoxFuture<'a, Result<PaymentPayload, SignerError>>;

    /// Checks a refund's receipt and adopts it.
    fn refunded(
        &self,
        requirements: &PaymentRequirements,
        state: SessionState,
        receipt: &SettleResponse,
    ) -> Result<SessionRefund, SignerError>;
}
