//! The payer's wallet, as the client sees it: something that can pay some requirements.
//!
//! The client never looks inside a scheme: it asks a [`PaymentSigner`] whether it can pay an
//! option and for the signed payload. The `exact` EVM implementation (behind the `evm`
//! feature) delegates to `tollgate-evm`, so any alloy signer — a local key, a KMS, a hardware
//! wallet — can pay.
//!
//! Signing also yields an [`AuthorizationHandle`]: the scheme's own name for what was signed
//! (for `exact` on EVM, the EIP-3009 payer and nonce) and when it stops being usable. The spend
//! ledger keeps it with every attempt whose outcome is ambiguous, so that the signer can later
//! be asked whether the chain used it ([`PaymentSigner::authorization_state`]) — the only
//! reliable answer when a seller's response was a `503` or never arrived.

use std::future::Future;

use tollgate_proto::{Network, PaymentPayload, PaymentRequirements, ResourceInfo};

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

/// A wallet that can pay x402 requirements.
pub trait PaymentSigner: Send + Sync + 'static {
    /// Whether this wallet can pay `requirements` at all (scheme and network).
    fn supports(&self, requirements: &PaymentRequirements) -> bool;

    /// The payer's address (for the ledger and for messages).
    fn payer(&self) -> String;

    /// Signs a payment for `requirements`, reporting the authorization's handle.
    fn sign(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> impl Future<Output = Result<SignedPayment, SignerError>> + Send;

    /// Asks the chain behind `rpc_url` whether `handle` was used. The default says it cannot,
    /// which keeps ambiguous reservations until they expire.
    fn authorization_state(
        &self,
        handle: &AuthorizationHandle,
        rpc_url: &str,
    ) -> impl Future<Output = Result<AuthorizationState, StateError>> + Send {
        let _ = rpc_url;
        let scheme = handle.scheme.clone();
        async move { Err(StateError::Unsupported { scheme }) }
    }
}

#[cfg(feature = "evm")]
impl<S> PaymentSigner for tollgate_evm::ExactEvmClient<S>
where
    S: alloy::signers::Signer + Send + Sync + 'static,
{
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        tollgate_evm::ExactEvmClient::<S>::supports(requirements)
    }

    fn payer(&self) -> String {
        self.address().to_string()
    }

    async fn sign(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> Result<SignedPayment, SignerError> {
        let payload = tollgate_evm::ExactEvmClient::sign(self, requirements, resource)
            .await
            .map_err(|e| SignerError(e.to_string()))?;
        let auth = tollgate_evm::ExactEvmPayload::from_payment(&payload)
            .map_err(|e| SignerError(e.to_string()))?
            .authorization;
        let authorization = AuthorizationHandle {
            scheme: requirements.scheme.to_string(),
            network: requirements.network.clone(),
            asset: requirements.asset.clone(),
            payer: auth.from.to_string(),
            id: auth.nonce.to_string(),
            // Saturates: a validBefore beyond u64 seconds never expires in practice.
            valid_before: u64::try_from(auth.valid_before).unwrap_or(u64::MAX),
        };
        Ok(SignedPayment {
            payload,
            authorization,
        })
    }

    async fn authorization_state(
        &self,
        handle: &AuthorizationHandle,
        rpc_url: &str,
    ) -> Result<AuthorizationState, StateError> {
        use alloy::primitives::{Address, B256};
        let bad =
            |what: &str, e: &dyn std::fmt::Display| StateError::BadHandle(format!("{what}: {e}"));
        let chain_id = handle
            .network
            .eip155_chain_id()
            .ok_or_else(|| bad("network", &handle.network))?;
        let asset: Address = handle.asset.parse().map_err(|e| bad("asset", &e))?;
        let payer: Address = handle.payer.parse().map_err(|e| bad("payer", &e))?;
        let nonce: B256 = handle.id.parse().map_err(|e| bad("nonce", &e))?;
        let status =
            tollgate_evm::client_state::authorization_state(rpc_url, chain_id, asset, payer, nonce)
                .await
                .map_err(|e| StateError::Chain(e.to_string()))?;
        Ok(if status.used {
            AuthorizationState::Used
        } else {
            AuthorizationState::Unused {
                chain_time: status.block_timestamp,
            }
        })
    }
}
