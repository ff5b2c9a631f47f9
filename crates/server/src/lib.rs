//! x402 for resource servers: put a price on routes.
//!
//! A request to a priced route without a payment gets `402 Payment Required` with the price in
//! a `PAYMENT-REQUIRED` header (v2) and a JSON body (v1). With a payment, the paywall asks a
//! facilitator to verify it, runs the handler, has the payment settled, and returns the
//! handler's response with a `PAYMENT-RESPONSE` receipt. Nothing here knows a chain: the scheme
//! payload is passed through to the facilitator untouched.
//!
//! - [`price`] — payment options, route prices and the route table.
//! - [`bazaar`] — a route's Bazaar discovery description, offered in its 402.
//! - [`gate`] — the payment flow without HTTP (challenge, claim, verify, settle, receipt), which
//!   the paywall adapts to HTTP and other transports can reuse.
//! - [`paywall`] — the tower layer and service.
//! - [`siwx`] — sign-in-with-x: who paid for what, and a wallet that paid signing in instead
//!   of paying again ([`PaywallLayer::sign_in_with_x`]).
//! - [`facilitator`] — the [`Facilitator`] trait (from `tollgate-core`; the in-process
//!   `tollgate_facilitator::Facilitator` implements it) and `RemoteFacilitator` over HTTP
//!   (feature `remote`).

pub mod bazaar;
pub mod facilitator;
pub mod gate;
pub mod paywall;
pub mod price;
pub mod siwx;

#[cfg(feature = "remote")]
pub use facilitator::RemoteFacilitator;
pub use facilitator::{Facilitator, FacilitatorClient, FacilitatorError};
pub use gate::{Admission, ChargeError, Gate, GateBuilder, Meter, Offer, Presented, Settlement};
pub use gate::{Decision, DecisionResult, DecisionSink, IdentityRefusal};
pub use paywall::{
    PaymentInfo, Paywall, PaywallLayer, PendingConfig, PendingConfigError, PriceLayer,
    SettlementMode,
};
pub use price::{DynamicPrice, PaymentOption, PriceError, Pricing, RoutePrice, RouteTable};
/// The identity policy and provider contract the paywall's identity gate uses
/// ([`PaywallLayer::identity`]), re-exported so that a seller needs no other crate.
pub use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, ReputationFloor, RuleCheck,
    Subject,
};
