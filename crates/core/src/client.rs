//! The payer's wallet, as the paying client sees it: something that can pay some requirements.
//!
//! The client never looks inside a scheme: it asks a [`PaymentSigner`] whether it can pay an
//! option and for the signed payload. Each chain crate implements it for its schemes (the
//! `exact` EVM payer in `tollgate-evm`, over any alloy signer — a local key, a KMS, a
//! hardware wallet).
//!
//! Signing also yields an [`AuthorizationHandle`]: the scheme's own name for what was signed
//! (for `exact` on EVM, the EIP-3009 payer and nonce) and when it stops being usable. The spend
//! ledger keeps it with every attempt whose outcome is ambiguous, so that the signer can later
//! be asked whether the chain used it ([`PaymentSigner::authorization_state`]) — the only
//! reliable answer when a seller's response was a `503` or never arrived.

use std::sync::Arc;

use tollgate_proto::{Network, PaymentPayload, PaymentRequirements, ResourceInfo};

use crate::session::SessionPayer;
use crate::siwx::SiwxSigner;
use crate::BoxFuture;

/// Why signing (or reading an authorization's state) failed.
#[derive(Debug, thiserror::Error)]
#[error("signing the payment failed: {0}")]
pub struct SignerError(pub String);

/// Why the state of an authorization could not be read. The authorization must then be
/// treated as possibly used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// This signer cannot ask the chain (its scheme has no on-chain state, or it does not
    /// implement the query).
    #[error("this wallet cannot check {scheme} authorizations on chain")]
    Unsupported {
        /// The authorization's scheme.
        scheme: String,
    },
    /// The handle does not belong to this signer's scheme or is malformed.
    #[error("authorization handle not understood: {0}")]
    BadHandle(String),
    /// The chain could not be asked.
    #[error("chain query failed: {0}")]
    Chain(String),
}

/// A signed authorization's identity and expiry, as its scheme defines them. Opaque to the
/// client: only the signer that produced it interprets `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHandle {
    /// The scheme (e.g. `exact`).
    pub scheme: String,
    /// The network it is valid on.
    pub network: Network,
    /// The asset it moves.
    pub asset: String,
    /// Who signed it.
    pub payer: String,
    /// The scheme's identity for it (for `exact` on EVM, the EIP-3009 nonce, `0x` hex).
    pub id: String,
    /// Unix seconds from which it can never be used (exclusive bound: usable only while the
    /// chain's time is below it).
    pub valid_before: u64,
}

/// A signed payment and the handle of the authorization inside it.
#[derive(Debug, Clone)]
pub struct SignedPayment {
    /// What goes into the payment header.
    pub payload: PaymentPayload,
    /// What was authorized, for reconciliation.
    pub authorization: AuthorizationHandle,
}

/// What the chain says about an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationState {
    /// Used (the money moved) or cancelled.
    Used,
    /// Not used as of a block whose timestamp is `chain_time` (Unix seconds). When
    /// `chain_time >= valid_before`, it can never be used.
    Unused {
        /// The timestamp of the block the state was read at.
        chain_time: u64,
    },
}

/// A wallet that can pay x402 requirements. Object-safe: an agent holding several wallets
/// (an EVM key and a Solana key) keeps them as `Arc<dyn PaymentSigner>`.
pub trait PaymentSigner: Send + Sync + 'static {
    /// Whether this wallet can pay `requirements` at all (scheme and network).
    fn supports(&self, requirements: &PaymentRequirements) -> bool;

    /// The payer's address on the network of `requirements` (for the ledger and messages).
    fn payer(&self, requirements: &PaymentRequirements) -> String;

    /// Signs a payment for `requirements`, reporting the authorization's handle.
    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>>;

    /// Asks the chain behind `rpc_url` whether `handle` was used. The default says it cannot,
    /// which keeps ambiguous reservations until they expire.
    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        let _ = rpc_url;
        let scheme = handle.scheme.clone();
        Box::pin(async move { Err(StateError::Unsupported { scheme }) })
    }

    /// The session payer when `requirements` are paid through a standing arrangement (a
    /// payment channel: a deposit once, a voucher per request) instead of one authorization
    /// each; `None` (the default) for one-off payments.
    fn session(&self, requirements: &PaymentRequirements) -> Option<&dyn SessionPayer> {
        let _ = requirements;
        None
    }

    /// The wallet's sign-in signer on `network` (the `sign-in-with-x` extension: a wallet that
    /// paid for a resource signs in instead of paying again); `None` (the default) when this
    /// wallet cannot sign in there.
    fn sign_in(&self, network: &Network) -> Option<&dyn SiwxSigner> {
        let _ = network;
        None
    }
}

impl<S: PaymentSigner + ?Sized> PaymentSigner for Arc<S> {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        (**self).supports(requirements)
    }

    fn payer(&self, requirements: &PaymentRequirements) -> String {
        (**self).payer(requirements)
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        (**self).sign(requirements, resource)
    }

    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        (**self).authorization_state(handle, rpc_url)
    }

    fn session(&self, requirements: &PaymentRequirements) -> Option<&dyn SessionPayer> {
        (**self).session(requirements)
    }

    fn sign_in(&self, network: &Network) -> Option<&dyn SiwxSigner> {
        (**self).sign_in(network)
    }
}
