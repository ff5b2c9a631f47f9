//! The payer's wallet, as the client sees it: something that can pay some requirements.
//!
//! The trait and its types live in [`tollgate_core::client`] so that each chain crate
//! implements it beside its scheme (the `exact` EVM payer is `tollgate_evm::ExactEvmClient`,
//! over any alloy signer) and this crate never names a chain. They are re-exported here, at
//! the paths agents already use. [`PaymentSigner`] is object-safe: several wallets are held as
//! `Arc<dyn PaymentSigner>` in a [`Wallets`](crate::Wallets).
//!
//! Signing also yields an [`AuthorizationHandle`]: the scheme's own name for what was signed
//! (for `exact` on EVM, the EIP-3009 payer and nonce) and when it stops being usable. The spend
//! ledger keeps it with every attempt whose outcome is ambiguous, so that the signer can later
//! be asked whether the chain used it ([`PaymentSigner::authorization_state`]) — the only
//! reliable answer when a seller's response was a `503` or never arrived.

pub use tollgate_core::client::{
    AuthorizationHandle, AuthorizationState, PaymentSigner, SignedPayment, SignerError, StateError,
};
pub use tollgate_core::BoxFuture;
