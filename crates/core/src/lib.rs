//! The plug-in points of Tollgate: what a payment scheme or a chain implements so that the
//! facilitator, the paywall, the gateway and the paying client can use it without naming it.
//!
//! This crate knows no chain and does no I/O. The protocol's wire types stay in
//! [`tollgate_proto`]; here are only the roles' contracts, each object-safe so a binary can hold
//! a `Vec<Arc<dyn …>>` of whatever chain crates its features turned on:
//!
//! - [`network`] — [`NetworkPattern`]: `eip155:*`, a list, or one network.
//! - [`registry`] — [`Registry`]: values keyed by (scheme, network pattern), the most specific
//!   pattern winning, like the official SDK's `register(network, scheme)`.
//! - [`facilitator`] — [`Facilitator`]: verify, settle, `/supported`; implemented by the
//!   in-process facilitator and by the HTTP client of a remote one, used by the paywall.
//! - [`scheme`] — [`SchemeFacilitator`]: one scheme on some networks, as a facilitator runs
//!   it (verify, settle, the payment's identity for the ledger, recovery after a crash).
//! - [`server`] — [`SchemeServer`]: one scheme as a seller prices with it (payee check,
//!   requirements enriched from the facilitator's `/supported`).
//! - [`client`] — [`PaymentSigner`]: a wallet that pays some requirements, and asks its chain
//!   whether an authorization was used.
//! - [`session`] — [`SessionPayer`]: the client side of a session scheme (a payment channel):
//!   a deposit once, a voucher per request, a refund; its state kept by the client.
//! - [`siwx`] — [`SiwxVerifier`] / [`SiwxSigner`]: a wallet's sign-in (`sign-in-with-x`,
//!   CAIP-122) verified by the seller and signed by the buyer, per chain; [`SiwxVerifiers`].
//! - [`chain`] — [`ChainOps`]: what every chain reports for `/health` and metrics.
//! - [`identity`] — [`IdentityProvider`]: whom a seller serves — a policy (sanctions, KYC,
//!   jurisdictions, track record) applied to the *verified* payer before anything is settled.

pub mod chain;
pub mod client;
pub mod facilitator;
pub mod identity;
pub mod network;
pub mod registry;
pub mod scheme;
pub mod server;
pub mod session;
pub mod siwx;

pub use chain::{ChainOps, SignerStatus};
pub use client::{
    AuthorizationHandle, AuthorizationState, PaymentSigner, SignedPayment, SignerError, StateError,
};
pub use facilitator::{Facilitator, FacilitatorError};
pub use identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, ReputationFloor, RuleCheck,
    Subject,
};
pub use network::{NetworkPattern, NetworkPatternError};
pub use registry::{RegisterError, Registry};
pub use scheme::{PaymentIdentity, SchemeError, SchemeFacilitator, SchemeFault, Settled, Verified};
pub use server::SchemeServer;
pub use session::{
    SessionOutlay, SessionPayer, SessionPayment, SessionReceipt, SessionRefund, SessionState,
};
pub use siwx::{SiwxFault, SiwxSigner, SiwxVerifier, SiwxVerifiers};

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what the traits here return so that they stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
