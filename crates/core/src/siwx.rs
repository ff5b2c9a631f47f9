//! Sign-in-with-x (SIWX) per chain: verifying a wallet's CAIP-122 sign-in, and signing one.
//!
//! The `sign-in-with-x` extension ([`tollgate_proto::siwx`]) lets a wallet that paid for a
//! resource come back with a signature instead of a payment. What a signature is — the message
//! text (EIP-4361 or Sign-In With Solana), the algorithm, the address notation — belongs to the
//! chain, so each chain crate implements [`SiwxVerifier`] (seller side) and [`SiwxSigner`]
//! (buyer side), and the roles hold them as `Arc<dyn …>` in a [`SiwxVerifiers`] registry keyed
//! like every other plug-in: by (signature type, network pattern), the most specific pattern
//! winning.

use std::sync::Arc;

use tollgate_proto::siwx::{SignatureType, SiwxPayload};
use tollgate_proto::{Network, Scheme};

use crate::network::NetworkPattern;
use crate::registry::{RegisterError, Registry};
use crate::BoxFuture;

/// Why a sign-in's signature was not accepted: the official reason code and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct SiwxFault {
    /// The code (`tollgate_proto::siwx::reason`).
    pub reason: &'static str,
    /// What was wrong.
    pub detail: String,
}

impl SiwxFault {
    /// A fault with `reason` (a `tollgate_proto::siwx::reason` code).
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Verifies sign-ins of one signature type on some networks (EIP-191 on `eip155:*`, Ed25519 on
/// `solana:*`). Object-safe; registered in [`SiwxVerifiers`].
pub trait SiwxVerifier: Send + Sync + 'static {
    /// The signature type it verifies.
    fn signature_type(&self) -> SignatureType;

    /// The canonical form of an address of this chain (EVM: lower-case hex; Solana: base58 as
    /// written), or why `address` is not one. The seller keys "who paid" on it, so every
    /// spelling of one wallet is one key.
    fn canonical_address(&self, address: &str) -> Result<String, String>;

    /// The exact message text the wallet signs for `payload` (its signature is not read).
    fn message(&self, payload: &SiwxPayload) -> Result<String, SiwxFault>;

    /// Checks `payload`'s signature over [`message`](Self::message); the signer's canonical
    /// address when it verifies. The payload's times, domain and nonce are the caller's to
    /// check.
    fn verify<'a>(&'a self, payload: &'a SiwxPayload) -> BoxFuture<'a, Result<String, SiwxFault>>;
}

/// Signs sign-ins for one wallet (the buyer side of [`SiwxVerifier`]).
pub trait SiwxSigner: Send + Sync + 'static {
    /// The signature type it signs with.
    fn signature_type(&self) -> SignatureType;

    /// Whether this wallet can sign for `network`.
    fn supports(&self, network: &Network) -> bool;

    /// The wallet's address in its chain's display form (EIP-55, base58).
    fn address(&self) -> String;

    /// Signs `unsigned` (its `address` set to [`address`](Self::address)): the payload with
    /// its `signature`.
    fn sign<'a>(&'a self, unsigned: SiwxPayload) -> BoxFuture<'a, Result<SiwxPayload, SiwxFault>>;
}

/// The registry key of a signature type (registry entries are keyed by a scheme token).
fn key(signature_type: SignatureType) -> Scheme {
    Scheme::Unknown(signature_type.as_str().to_owned())
}

/// The seller's [`SiwxVerifier`]s, by (signature type, network pattern).
#[derive(Clone, Default)]
pub struct SiwxVerifiers {
    registry: Registry<dyn SiwxVerifier>,
}

impl std::fmt::Debug for SiwxVerifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.registry.fmt(f)
    }
}

impl SiwxVerifiers {
    /// No verifiers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `verifier` on the networks of `pattern`; refused when a verifier of the same
    /// type already covers an overlapping pattern of the same specificity.
    pub fn register(
        &mut self,
        pattern: NetworkPattern,
        verifier: Arc<dyn SiwxVerifier>,
    ) -> Result<&mut Self, RegisterError> {
        let scheme = key(verifier.signature_type());
        self.registry.register_arc(pattern, scheme, verifier)?;
        Ok(self)
    }

    /// The verifier of `signature_type` on `network`.
    pub fn get(
        &self,
        signature_type: SignatureType,
        network: &Network,
    ) -> Option<&Arc<dyn SiwxVerifier>> {
        self.registry.get(&key(signature_type), network)
    }

    /// The signature type verified on `network` (the first registered that covers it).
    pub fn type_on(&self, network: &Network) -> Option<SignatureType> {
        [SignatureType::Eip191, SignatureType::Ed25519]
            .into_iter()
            .find(|t| self.get(*t, network).is_some())
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.registry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(SignatureType);

    impl SiwxVerifier for Fixed {
        fn signature_type(&self) -> SignatureType {
            self.0
        }
        fn canonical_address(&self, address: &str) -> Result<String, String> {
            Ok(address.to_owned())
        }
        fn message(&self, payload: &SiwxPayload) -> Result<String, SiwxFault> {
            Ok(payload.nonce.clone())
        }
        fn verify<'a>(
            &'a self,
            payload: &'a SiwxPayload,
        ) -> BoxFuture<'a, Result<String, SiwxFault>> {
            Box::pin(async move { Ok(payload.address.clone()) })
        }
    }

    #[test]
    fn verifiers_are_found_by_type_and_network() {
        let mut v = SiwxVerifiers::new();
        v.register(
            "eip155:*".parse().unwrap(),
            Arc::new(Fixed(SignatureType::Eip191)),
        )
        .unwrap();
        v.register(
            "solana:*".parse().unwrap(),
            Arc::new(Fixed(SignatureType::Ed25519)),
        )
        .unwrap();
        let base = Network::eip155(8453);
        assert!(v.get(SignatureType::Eip191, &base).is_some());
        assert!(v.get(SignatureType::Ed25519, &base).is_none());
        assert_eq!(v.type_on(&base), Some(SignatureType::Eip191));
        assert!(v
            .register(
                "eip155:*".parse().unwrap(),
                Arc::new(Fixed(SignatureType::Eip191))
            )
            .is_err());
    }
}
