//! The payer's wallet, as the client sees it: something that can pay some requirements.
//!
//! The client never looks inside a scheme: it asks a [`PaymentSigner`] whether it can pay an
//! option and for the signed payload. The `exact` EVM implementation (behind the `evm`
//! feature) delegates to `tollgate-evm`, so any alloy signer — a local key, a KMS, a hardware
//! wallet — can pay.

use std::future::Future;

use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo};

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
#[error("signing the payment failed: {0}")]
pub struct SignerError(pub String);

/// A wallet that can pay x402 requirements.
pub trait PaymentSigner: Send + Sync + 'static {
    /// Whether this wallet can pay `requirements` at all (scheme and network).
    fn supports(&self, requirements: &PaymentRequirements) -> bool;

    /// The payer's address (for the ledger and for messages).
    fn payer(&self) -> String;

    /// Signs a payment for `requirements`.
    fn sign(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> impl Future<Output = Result<PaymentPayload, SignerError>> + Send;
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
    ) -> Result<PaymentPayload, SignerError> {
        tollgate_evm::ExactEvmClient::sign(self, requirements, resource)
            .await
            .map_err(|e| SignerError(e.to_string()))
    }
}
