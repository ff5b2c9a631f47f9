//! The `exact` EVM payer as the paying client sees it: `tollgate_core::PaymentSigner`.
//!
//! Lives here, beside [`ExactEvmClient`], so the paying client (`tollgate-client`) knows only
//! the core trait and never names an EVM type: an agent hands it an `ExactEvmClient` (any
//! alloy signer — a local key, a KMS, a hardware wallet) as one wallet among others.
//!
//! The authorization handle of a payment is EIP-3009's `(from, nonce)` with its `validBefore`;
//! [`PaymentSigner::authorization_state`] reads the token's `authorizationState(from, nonce)`
//! to tell whether an ambiguous payment moved money.

use alloy::primitives::{Address, B256};
use alloy::signers::Signer;
use tollgate_core::{
    AuthorizationHandle, AuthorizationState, BoxFuture, PaymentSigner, SignedPayment, SignerError,
    StateError,
};
use tollgate_proto::{PaymentRequirements, ResourceInfo};

use crate::ExactEvmClient;

impl<S> PaymentSigner for ExactEvmClient<S>
where
    S: Signer + Send + Sync + 'static,
{
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        ExactEvmClient::<S>::supports(requirements)
    }

    /// The same address on every EVM network.
    fn payer(&self, _requirements: &PaymentRequirements) -> String {
        self.address().to_string()
    }

    /// Signs in with EIP-191 on every EVM network (`crate::siwx`).
    fn sign_in(&self, network: &tollgate_proto::Network) -> Option<&dyn tollgate_core::SiwxSigner> {
        network
            .eip155_chain_id()
            .map(|_| self as &dyn tollgate_core::SiwxSigner)
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        Box::pin(async move {
            let payload = ExactEvmClient::sign(self, requirements, resource)
                .await
                .map_err(|e| SignerError(e.to_string()))?;
            let typed = crate::payload::ExactPayload::from_payment(&payload, requirements)
                .map_err(|e| SignerError(e.to_string()))?;
            let auth = match typed {
                crate::payload::ExactPayload::Eip3009(p) => p.authorization,
                crate::payload::ExactPayload::Permit2(p) => {
                    return Ok(SignedPayment {
                        authorization: permit2_handle(requirements, &p),
                        payload,
                    })
                }
            };
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
        })
    }

    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        Box::pin(token_authorization_state(handle, rpc_url))
    }
}

/// Whether the token authorization of `handle` was used: EIP-3009's
/// `authorizationState(from, nonce)` on the token, or the Permit2 nonce bitmap for a
/// `permit2:` handle. Shared by every EVM payer whose payments carry such an authorization
/// (`exact`, and `batch-settlement` deposits).
pub(crate) async fn token_authorization_state(
    handle: &AuthorizationHandle,
    rpc_url: &str,
) -> Result<AuthorizationState, StateError> {
    let chain_id = handle_chain(handle)?;
    let asset: Address = handle.asset.parse().map_err(|e| bad_handle("asset", &e))?;
    let payer = handle_payer(handle)?;
    if handle.id.starts_with(PERMIT2_ID_PREFIX) {
        return permit2_nonce_used(handle, rpc_url, chain_id, payer).await;
    }
    let nonce: B256 = handle.id.parse().map_err(|e| bad_handle("nonce", &e))?;
    let status =
        crate::client_state::authorization_state(rpc_url, chain_id, asset, payer, nonce).await;
    state_of(status)
}

/// How a Permit2 authorization's handle id starts (`permit2:<decimal nonce>`), as the
/// facilitator's ledger names the payment too.
pub(crate) const PERMIT2_ID_PREFIX: &str = "permit2:";

/// The handle of a signed Permit2 payment (`exact` with the Permit2 method, or `upto`): the
/// payer's Permit2 nonce, valid until the deadline.
pub(crate) fn permit2_handle<W: crate::permit2::Permit2Witness>(
    requirements: &PaymentRequirements,
    payload: &crate::permit2::Permit2Payload<W>,
) -> AuthorizationHandle {
    let auth = &payload.permit2_authorization;
    AuthorizationHandle {
        scheme: requirements.scheme.to_string(),
        network: requirements.network.clone(),
        asset: requirements.asset.clone(),
        payer: auth.from.to_string(),
        id: format!("{PERMIT2_ID_PREFIX}{}", auth.nonce),
        // Saturates: a deadline beyond u64 seconds never expires in practice.
        valid_before: u64::try_from(auth.deadline)
            .unwrap_or(u64::MAX)
            .saturating_add(1),
    }
}

/// Whether the Permit2 nonce of `handle` was used, read from Permit2's bitmap. (A zero `upto`
/// charge never spends it: such an authorization stays "unused" until its deadline.)
pub(crate) async fn permit2_state(
    handle: &AuthorizationHandle,
    rpc_url: &str,
) -> Result<AuthorizationState, StateError> {
    let chain_id = handle_chain(handle)?;
    let owner = handle_payer(handle)?;
    permit2_nonce_used(handle, rpc_url, chain_id, owner).await
}

/// [`permit2_state`] once the handle's chain and owner are read.
async fn permit2_nonce_used(
    handle: &AuthorizationHandle,
    rpc_url: &str,
    chain_id: u64,
    owner: Address,
) -> Result<AuthorizationState, StateError> {
    let nonce = handle
        .id
        .strip_prefix(PERMIT2_ID_PREFIX)
        .and_then(|n| alloy::primitives::U256::from_str_radix(n, 10).ok())
        .ok_or_else(|| bad_handle("nonce", &handle.id))?;
    state_of(crate::client_state::permit2_nonce_state(rpc_url, chain_id, owner, nonce).await)
}

fn bad_handle(what: &str, e: &dyn std::fmt::Display) -> StateError {
    StateError::BadHandle(format!("{what}: {e}"))
}

/// The EVM chain id of `handle`'s network.
fn handle_chain(handle: &AuthorizationHandle) -> Result<u64, StateError> {
    handle
        .network
        .eip155_chain_id()
        .ok_or_else(|| bad_handle("network", &handle.network))
}

/// The payer (authorizer, Permit2 owner) of `handle`.
fn handle_payer(handle: &AuthorizationHandle) -> Result<Address, StateError> {
    handle.payer.parse().map_err(|e| bad_handle("payer", &e))
}

/// A chain read of an authorization's use, as the payer's answer.
fn state_of(
    status: Result<
        crate::client_state::AuthorizationStatus,
        crate::client_state::AuthorizationStateError,
    >,
) -> Result<AuthorizationState, StateError> {
    let status = status.map_err(|e| StateError::Chain(e.to_string()))?;
    Ok(if status.used {
        AuthorizationState::Used
    } else {
        AuthorizationState::Unused {
            chain_time: status.block_timestamp,
        }
    })
}

#[cfg(test)]
mod tests {
    use alloy::signers::local::PrivateKeySigner;
    use tollgate_core::PaymentSigner;
    use tollgate_proto::PaymentRequirements;

    use crate::ExactEvmClient;

    fn requirements(scheme: &str, network: &str) -> PaymentRequirements {
        serde_json::from_value(serde_json::json!({
            "scheme": scheme,
            "network": network,
            "amount": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn signs_exact_on_evm_and_reports_the_authorization() {
        let key = PrivateKeySigner::random();
        let address = key.address();
        let wallet: Box<dyn PaymentSigner> = Box::new(ExactEvmClient::new(key));
        let base = requirements("exact", "eip155:84532");
        assert!(wallet.supports(&base));
        assert!(!wallet.supports(&requirements("upto", "eip155:84532")));
        assert!(!wallet.supports(&requirements(
            "exact",
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
        )));
        assert_eq!(wallet.payer(&base), address.to_string());
        let signed = wallet.sign(&base, None).await.unwrap();
        assert_eq!(signed.payload.accepted, base);
        let handle = &signed.authorization;
        assert_eq!(handle.payer, address.to_string());
        assert_eq!(handle.network, base.network);
        assert_eq!(
            (handle.scheme.as_str(), handle.asset.as_str()),
            ("exact", base.asset.as_str())
        );
        assert_eq!(
            handle.id.len(),
            66,
            "a 32-byte nonce in 0x hex: {}",
            handle.id
        );
        let payload = crate::ExactEvmPayload::from_payment(&signed.payload).unwrap();
        assert_eq!(payload.authorization.nonce.to_string(), handle.id);
        assert_eq!(
            u64::try_from(payload.authorization.valid_before).unwrap(),
            handle.valid_before
        );
    }

    #[tokio::test]
    async fn a_handle_of_another_chain_is_not_understood() {
        let wallet = ExactEvmClient::new(PrivateKeySigner::random());
        let signed = PaymentSigner::sign(&wallet, &requirements("exact", "eip155:84532"), None)
            .await
            .unwrap();
        let mut foreign = signed.authorization;
        foreign.network = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1".parse().unwrap();
        // Refused before any connection is tried: the URL points nowhere.
        let err = wallet
            .authorization_state(&foreign, "http://127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(
            matches!(err, tollgate_core::StateError::BadHandle(_)),
            "{err}"
        );
    }
}
