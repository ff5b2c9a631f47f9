//! One payment scheme as a seller prices with it.

use tollgate_proto::{Network, PaymentPayload, PaymentRequirements, Scheme, SupportedKind};

/// A payment that is an **operation on the payer's funds** rather than payment for the
/// resource it was sent to (a `batch-settlement` refund: "payment operations, not paid
/// requests"). The paywall verifies and settles it like any payment, answers `200` with
/// [`body`](Self::body) and the settlement receipt, and never runs the route's handler — the
/// payer bought nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOperation {
    /// What it is, for logs and metrics (`"refund"`).
    pub kind: &'static str,
    /// The JSON body answered once it is settled.
    pub body: serde_json::Value,
}

/// One scheme on some networks, as a seller's paywall uses it: the chain-specific checks of a
/// price before it is offered, and the requirements' scheme data that only the facilitator
/// knows. Registered in a [`Registry`](crate::Registry) under (scheme, network pattern).
pub trait SchemeServer: Send + Sync + 'static {
    /// The scheme.
    fn scheme(&self) -> Scheme;

    /// The payee in canonical form, or why `pay_to` cannot receive on `network` (not an
    /// address of that chain, the zero address…). Called when a price is built, so a typo is
    /// a start-up error rather than the first buyer's failed payment.
    fn parse_pay_to(&self, network: &Network, pay_to: &str) -> Result<String, String>;

    /// Completes `requirements` with what the facilitator announced for this scheme and
    /// network in `/supported` (e.g. Solana's `feePayer`). The default adds nothing.
    fn enrich(&self, requirements: &mut PaymentRequirements, kind: &SupportedKind) {
        let _ = (requirements, kind);
    }

    /// Whether a payment in this scheme authorises a **maximum** and the seller states the
    /// amount actually charged when it settles (the requirements' `amount` is the maximum at
    /// `/verify` and the charge at `/settle`, as in `upto`). Only then may a paywall settle for
    /// less than the price it offered; for every other scheme the offered amount is the charge.
    /// The default: not metered.
    fn metered(&self) -> bool {
        false
    }

    /// Whether `payment` is a [`PaymentOperation`] (settled and answered without the handler)
    /// rather than payment for the resource. Decided from the payment alone, before it is
    /// verified, so that a gate never hands an operation to a handler. The default: every
    /// payment pays for the resource.
    fn operation(&self, payment: &PaymentPayload) -> Option<PaymentOperation> {
        let _ = payment;
        None
    }
}
