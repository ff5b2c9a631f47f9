//! Client side: turning payment requirements into a signed payment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::Signer;
use alloy::sol_types::SolStruct;
use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo, Scheme, V2};

use crate::domain::{DomainError, TokenDomain};
use crate::payload::{Authorization, ExactEvmPayload};

/// How far back `validAfter` is set, so a payee whose clock runs behind still accepts the
/// authorization at once.
pub const DEFAULT_VALID_AFTER_SKEW: Duration = Duration::from_secs(600);

/// Why a payment could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The requirements are not for the `exact` scheme.
    #[error("scheme {0} is not `exact`")]
    UnsupportedScheme(String),
    /// The requirements name no usable signing domain.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// `payTo` is not an address.
    #[error("payTo {pay_to:?} is not an EVM address: {reason}")]
    BadPayTo {
        /// The offending value.
        pay_to: String,
        /// Parser message.
        reason: String,
    },
    /// The signer refused or failed.
    #[error("signer failed: {0}")]
    Signer(#[from] alloy::signers::Error),
    /// The requirements cannot be paid as stated (an unknown `extra.assetTransferMethod`, an
    /// `upto` offer without `extra.facilitatorAddress`, a bad asset address…).
    #[error("cannot pay these requirements: {0}")]
    Requirements(String),
}

/// Signs `exact` EVM payments with any alloy [`Signer`] (a local key, a KMS, a hardware wallet).
///
/// ```
/// # tokio_test_block_on(async {
/// use alloy::signers::local::PrivateKeySigner;
/// use tollgate_evm::ExactEvmClient;
/// use tollgate_proto::PaymentRequirements;
///
/// let requirements: PaymentRequirements = serde_json::from_value(serde_json::json!({
///     "scheme": "exact",
///     "network": "eip155:84532",
///     "amount": "10000",
///     "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
///     "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///     "maxTimeoutSeconds": 60,
///     "extra": { "name": "USDC", "version": "2" }
/// })).unwrap();
/// let client = ExactEvmClient::new(PrivateKeySigner::random());
/// let payment = client.sign(&requirements, None).await.unwrap();
/// assert_eq!(payment.accepted, requirements);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ExactEvmClient<S> {
    signer: S,
    valid_after_skew: Duration,
}

/// Explicit authorization window and nonce, for callers that must control them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationWindow {
    /// Unix seconds after which the authorization is valid.
    pub valid_after: u64,
    /// Unix seconds before which the authorization is valid.
    pub valid_before: u64,
    /// The EIP-3009 nonce.
    pub nonce: B256,
}

impl<S: Signer + Send + Sync> ExactEvmClient<S> {
    /// A client that signs with `signer`.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            valid_after_skew: DEFAULT_VALID_AFTER_SKEW,
        }
    }

    /// The payer's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The wallet itself (for signing other messages, such as a sign-in).
    pub(crate) fn alloy_signer(&self) -> &S {
        &self.signer
    }

    /// Whether this client can pay `requirements` at all: scheme `exact` on an `eip155`
    /// network, by a transfer method it implements (EIP-3009 or Permit2; not e.g. ERC-7710).
    pub fn supports(requirements: &PaymentRequirements) -> bool {
        requirements.scheme == Scheme::Exact
            && requirements.network.eip155_chain_id().is_some()
            && crate::permit2::AssetTransferMethod::of(requirements).is_ok()
    }

    /// Signs a payment for `requirements`, valid from a little in the past until
    /// `maxTimeoutSeconds` from now, with a fresh random nonce. The requirements'
    /// `extra.assetTransferMethod` decides how: EIP-3009 (absent or `"eip3009"`) or Permit2
    /// (`"permit2"`; the payer must have approved Permit2 for the token once, see
    /// [`approve_permit2`](crate::permit2::approve_permit2)).
    pub async fn sign(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> Result<PaymentPayload, SignError> {
        let now = unix_now();
        let method = crate::permit2::AssetTransferMethod::of(requirements)
            .map_err(|e| SignError::Requirements(e.to_string()))?;
        if method == crate::permit2::AssetTransferMethod::Permit2 {
            let window = crate::permit2::Permit2Window {
                valid_after: now.saturating_sub(self.valid_after_skew.as_secs()),
                deadline: now.saturating_add(requirements.max_timeout_seconds.max(1)),
                nonce: crate::permit2::random_nonce(),
            };
            return self.sign_permit2(requirements, resource, window).await;
        }
        let window = AuthorizationWindow {
            valid_after: now.saturating_sub(self.valid_after_skew.as_secs()),
            valid_before: now.saturating_add(requirements.max_timeout_seconds.max(1)),
            nonce: B256::from(rand::random::<[u8; 32]>()),
        };
        self.sign_with_window(requirements, resource, window).await
    }

    /// Signs a payment with an explicit window and nonce.
    pub async fn sign_with_window(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
        window: AuthorizationWindow,
    ) -> Result<PaymentPayload, SignError> {
        if requirements.scheme != Scheme::Exact {
            return Err(SignError::UnsupportedScheme(
                requirements.scheme.to_string(),
            ));
        }
        let domain = TokenDomain::resolve(requirements)?;
        let to = crate::domain::parse_address(&requirements.pay_to).map_err(|reason| {
            SignError::BadPayTo {
                pay_to: requirements.pay_to.clone(),
                reason,
            }
        })?;
        let authorization = Authorization {
            from: self.signer.address(),
            to,
            value: requirements.amount.get(),
            valid_after: U256::from(window.valid_after),
            valid_before: U256::from(window.valid_before),
            nonce: window.nonce,
        };
        let signature = sign_authorization(&self.signer, &authorization, &domain).await?;
        let payload = ExactEvmPayload {
            signature: signature.into(),
            authorization,
        };
        Ok(PaymentPayload {
            x402_version: V2,
            resource,
            accepted: requirements.clone(),
            payload: payload.to_json_object(),
            extensions: None,
        })
    }
}

impl<S: Signer + Send + Sync> ExactEvmClient<S> {
    /// Signs an `exact` Permit2 payment (spender `x402ExactPermit2Proxy`) with an explicit
    /// window and nonce, whatever the requirements' transfer method says.
    pub async fn sign_permit2(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
        window: crate::permit2::Permit2Window,
    ) -> Result<PaymentPayload, SignError> {
        if requirements.scheme != Scheme::Exact {
            return Err(SignError::UnsupportedScheme(
                requirements.scheme.to_string(),
            ));
        }
        let to = crate::domain::parse_address(&requirements.pay_to).map_err(|reason| {
            SignError::BadPayTo {
                pay_to: requirements.pay_to.clone(),
                reason,
            }
        })?;
        let witness = crate::permit2::ExactWitness {
            to,
            valid_after: U256::from(window.valid_after),
        };
        crate::permit2::sign_payment(&self.signer, requirements, resource, witness, window).await
    }

    /// The signer.
    pub fn signer(&self) -> &S {
        &self.signer
    }
}

/// Signs an EIP-3009 authorization under `domain`, returning the 65-byte `r ‖ s ‖ v` signature.
pub async fn sign_authorization<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    authorization: &Authorization,
    domain: &TokenDomain,
) -> Result<[u8; 65], alloy::signers::Error> {
    let hash = authorization
        .to_typed()
        .eip712_signing_hash(&domain.eip712());
    Ok(signer.sign_hash(&hash).await?.as_bytes())
}

/// The digest an authorization's signature covers.
pub fn authorization_digest(authorization: &Authorization, domain: &TokenDomain) -> B256 {
    authorization
        .to_typed()
        .eip712_signing_hash(&domain.eip712())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
