//! One payment scheme as a seller prices with it.

use tollgate_proto::{Network, PaymentRequirements, Scheme, SupportedKind};

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
}
