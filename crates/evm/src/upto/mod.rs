//! The `upto` scheme on EVM: the payer authorises a **maximum** through Permit2, the seller
//! settles the **actual charge** (≤ maximum, possibly 0) after doing the work.
//!
//! Three roles, each a `tollgate-core` trait, so the facilitator, paywall and client run
//! `upto` without naming it:
//!
//! - [`UptoEvmFacilitator`] ([`SchemeFacilitator`]): `/supported` announces
//!   `extra.facilitatorAddress` (the chain's first settlement signer, the only key the upto
//!   proxy lets settle a payment naming it); `/verify` checks the payment against the maximum
//!   (`requirements.amount` = `permitted.amount`); `/settle` reads `requirements.amount` as the
//!   charge ([`verify_settlement`](SchemeFacilitator::verify_settlement): the signature is
//!   checked against the signed maximum, a charge above it is
//!   `invalid_upto_evm_payload_settlement_exceeds_amount`), sends
//!   `x402UptoPermit2Proxy.settle(permit, charge, …)` from the witnessed facilitator key, and
//!   reports the charge in the settle response's `amount`. A charge of 0 sends nothing: the
//!   response has `transaction: ""` and `amount: "0"`, and the facilitator's ledger keeps the
//!   payment settled so the same authorization cannot be charged again through it (on chain
//!   the Permit2 nonce stays unused until the deadline; only the witnessed facilitator could
//!   ever use it).
//! - [`UptoEvmServer`] ([`SchemeServer`]): checks payees and copies
//!   `extra.facilitatorAddress` from `/supported` into the requirements it offers.
//! - [`UptoEvmClient`] ([`PaymentSigner`]): signs the maximum, bound to the payee and the
//!   announced facilitator.
//!
//! For a metered seller (the paywall side, built on this): price the route with
//! `PaymentOption::new(Scheme::Upto, network, asset, maximum, pay_to)`; `/verify` with those
//! requirements; after the work, call `/settle` with the same requirements except `amount` =
//! the charge (`0 ≤ charge ≤ maximum`); the receipt's `amount` is what moved. A client's
//! budget should reserve the maximum at signing and release `maximum − amount` when the receipt
//! arrives; the authorization's handle (`permit2:<nonce>`, valid until the deadline) is what
//! [`PaymentSigner::authorization_state`] reads from Permit2's nonce bitmap.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::Signer;
use tollgate_core::{
    AuthorizationHandle, AuthorizationState, BoxFuture, PaymentIdentity, PaymentSigner,
    SchemeError, SchemeFacilitator, SchemeServer, Settled, SignedPayment, SignerError, StateError,
    Verified,
};
use tollgate_proto::{
    AtomicAmount, ErrorReason, Network, PaymentPayload, PaymentRequirements, ResourceInfo, Scheme,
    SupportedKind, X402Version,
};

use crate::client::{unix_now, SignError, DEFAULT_VALID_AFTER_SKEW};
use crate::domain::parse_address;
use crate::facilitator::EvmChain;
use crate::permit2::engine::{AmountRule, Permit2Config, Permit2Engine, VerifiedPermit2};
use crate::permit2::{Permit2Window, UptoPermit2Payload, UptoWitness, FACILITATOR_ADDRESS};
use crate::plug::{permit2_identity, settled, tx_hash};

/// `upto` on one EVM network, as the facilitator runs it. Built on the network's shared
/// [`EvmChain`], so its settlements take nonces from the same signer pool as `exact`.
#[derive(Debug, Clone)]
pub struct UptoEvmFacilitator {
    engine: Permit2Engine,
}

impl UptoEvmFacilitator {
    /// `upto` on `chain`.
    pub fn on_chain(chain: &EvmChain, config: Permit2Config) -> Self {
        Self {
            engine: Permit2Engine::new(chain, config),
        }
    }

    /// The address announced as `extra.facilitatorAddress`: the chain's first signer.
    pub fn facilitator_address(&self) -> Address {
        self.engine.chain().primary_signer()
    }

    /// The Permit2 verification and settlement it runs.
    pub fn engine(&self) -> &Permit2Engine {
        &self.engine
    }

    fn parse(
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(UptoPermit2Payload, Address), SchemeError> {
        let payload = UptoPermit2Payload::from_payment(payment)
            .map_err(|e| SchemeError::payment(ErrorReason::InvalidPayload, e.to_string()))?;
        let asset = parse_address(&requirements.asset).map_err(|e| {
            SchemeError::payment(
                ErrorReason::InvalidPaymentRequirements,
                format!("asset {:?} is not an address: {e}", requirements.asset),
            )
        })?;
        Ok((payload, asset))
    }

    async fn verify_with(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        rule: AmountRule,
    ) -> Result<Verified, SchemeError> {
        let verified = self
            .engine
            .verify::<UptoWitness>(payment, requirements, rule)
            .await?;
        Ok(Verified {
            identity: permit2_identity(verified.asset, &verified.payload),
            proof: Box::new(verified),
        })
    }
}

impl SchemeFacilitator for UptoEvmFacilitator {
    fn scheme(&self) -> Scheme {
        Scheme::Upto
    }

    fn supported(&self) -> Vec<SupportedKind> {
        let mut extra = serde_json::Map::new();
        extra.insert(
            FACILITATOR_ADDRESS.to_owned(),
            self.facilitator_address().to_string().into(),
        );
        vec![SupportedKind {
            x402_version: X402Version::V2,
            scheme: Scheme::Upto,
            network: self.engine.chain().network().clone(),
            extra: Some(extra),
        }]
    }

    fn signers(&self) -> Vec<(String, Vec<String>)> {
        vec![(
            "eip155:*".to_owned(),
            self.engine
                .chain()
                .signer_addresses()
                .iter()
                .map(|a| a.to_string())
                .collect(),
        )]
    }

    fn receipt_timeout(&self) -> Duration {
        self.engine.chain().config().receipt_timeout
    }

    fn identify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError> {
        let (payload, asset) = Self::parse(payment, requirements)?;
        Ok(permit2_identity(asset, &payload))
    }

    /// Against the maximum: `requirements.amount` must equal the permitted amount.
    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(self.verify_with(payment, requirements, AmountRule::Equal))
    }

    /// Against the charge: `requirements.amount` may be anything up to the permitted maximum.
    fn verify_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(self.verify_with(payment, requirements, AmountRule::AtMost))
    }

    fn settled_amount(
        &self,
        _payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<AtomicAmount> {
        Some(requirements.amount)
    }

    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>> {
        Box::pin(async move {
            let (Ok(a), Ok(b)) = (
                UptoPermit2Payload::from_payment(stored),
                UptoPermit2Payload::from_payment(presented),
            ) else {
                return Ok(false);
            };
            let same_payee = match parse_address(stored_pay_to) {
                Ok(stored) => parse_address(&requirements.pay_to) == Ok(stored),
                Err(_) => false,
            };
            if a != b || requirements.scheme != Scheme::Upto || !same_payee {
                return Ok(false);
            }
            self.engine
                .verify_signature::<UptoWitness>(presented, requirements)
                .await?;
            Ok(true)
        })
    }

    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>> {
        Box::pin(async move {
            let Some(payment) = verified
                .proof
                .downcast_ref::<VerifiedPermit2<UptoWitness>>()
            else {
                return Err(SchemeError::unavailable(
                    ErrorReason::UnexpectedSettleError,
                    "the verified payment was not verified by the upto EVM scheme",
                ));
            };
            Ok(match self.engine.submit(payment).await? {
                Some(tx) => tx.to_string(),
                None => String::new(),
            })
        })
    }

    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>> {
        Box::pin(async move {
            let (payload, _) = Self::parse(payment, requirements)?;
            if transaction.is_empty() {
                // A zero charge: nothing was sent, nothing to wait for.
                return Ok(Settled::new(
                    String::new(),
                    payload.permit2_authorization.from.to_string(),
                ));
            }
            let tx = tx_hash(transaction)?;
            self.engine
                .await_settlement(&payload, requirements.amount.get(), tx)
                .await
                .map(settled)
                .map_err(Into::into)
        })
    }

    fn find_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Option<Settled>, SchemeError>> {
        Box::pin(async move {
            let (payload, _) = Self::parse(payment, requirements)?;
            self.engine
                .find_settlement(&payload)
                .await
                .map(|s| s.map(settled))
                .map_err(Into::into)
        })
    }
}

/// `upto` on EVM networks as a seller prices with it: the payee check of
/// [`ExactEvmServer`](crate::server::ExactEvmServer), and `extra.facilitatorAddress` copied
/// from the facilitator's `/supported` (the payer must name it in its signature).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UptoEvmServer;

impl SchemeServer for UptoEvmServer {
    fn scheme(&self) -> Scheme {
        Scheme::Upto
    }

    /// The buyer signs a maximum; the seller states the charge at `/settle`.
    fn metered(&self) -> bool {
        true
    }

    fn parse_pay_to(&self, network: &Network, pay_to: &str) -> Result<String, String> {
        if network.eip155_chain_id().is_none() {
            return Err(format!("{network} is not an EVM network"));
        }
        crate::server::parse_payee(pay_to).map(|a| a.to_checksum(None))
    }

    fn enrich(&self, requirements: &mut PaymentRequirements, kind: &SupportedKind) {
        let Some(address) = kind.extra.as_ref().and_then(|e| e.get(FACILITATOR_ADDRESS)) else {
            return;
        };
        requirements
            .extra
            .get_or_insert_with(Default::default)
            .insert(FACILITATOR_ADDRESS.to_owned(), address.clone());
    }
}

/// Signs `upto` payments on EVM networks with any alloy [`Signer`]: a Permit2 authorization of
/// the requirements' `amount` as the **maximum**, spender `x402UptoPermit2Proxy`, witness bound
/// to `payTo` and to `extra.facilitatorAddress`. The payer must have approved Permit2 for the
/// token once ([`approve_permit2`](crate::permit2::approve_permit2)).
#[derive(Debug, Clone)]
pub struct UptoEvmClient<S> {
    signer: S,
    valid_after_skew: Duration,
}

impl<S: Signer + Send + Sync> UptoEvmClient<S> {
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

    /// Signs a payment authorising up to `requirements.amount`, valid until
    /// `maxTimeoutSeconds` from now, with a fresh random Permit2 nonce.
    pub async fn sign(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> Result<PaymentPayload, SignError> {
        let now = unix_now();
        let window = Permit2Window {
            valid_after: now.saturating_sub(self.valid_after_skew.as_secs()),
            deadline: now.saturating_add(requirements.max_timeout_seconds.max(1)),
            nonce: crate::permit2::random_nonce(),
        };
        self.sign_with_window(requirements, resource, window).await
    }

    /// Signs with an explicit window and nonce.
    pub async fn sign_with_window(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
        window: Permit2Window,
    ) -> Result<PaymentPayload, SignError> {
        if requirements.scheme != Scheme::Upto {
            return Err(SignError::UnsupportedScheme(
                requirements.scheme.to_string(),
            ));
        }
        let facilitator = requirements
            .extra_str(FACILITATOR_ADDRESS)
            .ok_or_else(|| {
                SignError::Requirements(
                    "upto requires extra.facilitatorAddress (announced by the facilitator's /supported)"
                        .into(),
                )
            })
            .and_then(|f| {
                parse_address(f).map_err(|e| {
                    SignError::Requirements(format!("extra.facilitatorAddress {f:?}: {e}"))
                })
            })?;
        let to = parse_address(&requirements.pay_to).map_err(|reason| SignError::BadPayTo {
            pay_to: requirements.pay_to.clone(),
            reason,
        })?;
        let witness = UptoWitness {
            to,
            facilitator,
            valid_after: U256::from(window.valid_after),
        };
        crate::permit2::sign_payment(&self.signer, requirements, resource, witness, window).await
    }
}

impl<S> PaymentSigner for UptoEvmClient<S>
where
    S: Signer + Send + Sync + 'static,
{
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == Scheme::Upto
            && requirements.network.eip155_chain_id().is_some()
            && requirements.extra_str(FACILITATOR_ADDRESS).is_some()
    }

    fn payer(&self, _requirements: &PaymentRequirements) -> String {
        self.address().to_string()
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        Box::pin(async move {
            let payload = UptoEvmClient::sign(self, requirements, resource)
                .await
                .map_err(|e| SignerError(e.to_string()))?;
            let typed = UptoPermit2Payload::from_payment(&payload)
                .map_err(|e| SignerError(e.to_string()))?;
            Ok(SignedPayment {
                authorization: crate::payer::permit2_handle(requirements, &typed),
                payload,
            })
        })
    }

    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        Box::pin(crate::payer::permit2_state(handle, rpc_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;

    fn requirements(extra: serde_json::Value) -> PaymentRequirements {
        serde_json::from_value(serde_json::json!({
            "scheme": "upto",
            "network": "eip155:84532",
            "amount": "5000000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 300,
            "extra": extra
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn signs_the_maximum_for_the_announced_facilitator() {
        let facilitator = "0x1111111111111111111111111111111111111111";
        let req = requirements(serde_json::json!({ "facilitatorAddress": facilitator }));
        let key = PrivateKeySigner::random();
        let wallet = UptoEvmClient::new(key.clone());
        assert!(wallet.supports(&req));
        let signed = PaymentSigner::sign(&wallet, &req, None).await.unwrap();
        let p = UptoPermit2Payload::from_payment(&signed.payload).unwrap();
        let a = &p.permit2_authorization;
        assert_eq!(a.spender, crate::permit2::UPTO_PERMIT2_PROXY);
        assert_eq!(a.permitted.amount, U256::from(5_000_000u64));
        assert_eq!(
            a.witness.facilitator,
            facilitator.parse::<Address>().unwrap()
        );
        assert_eq!(a.from, key.address());
        assert_eq!(signed.authorization.id, format!("permit2:{}", a.nonce));
        assert_eq!(signed.authorization.scheme, "upto");
        let digest = crate::permit2::permit2_digest(a, 84532);
        let sig = alloy::primitives::Signature::try_from(p.signature.as_ref()).unwrap();
        assert_eq!(
            sig.recover_address_from_prehash(&digest).unwrap(),
            key.address()
        );
    }

    #[tokio::test]
    async fn without_a_facilitator_address_upto_cannot_be_signed() {
        let req = requirements(serde_json::json!({ "name": "USDC", "version": "2" }));
        let wallet = UptoEvmClient::new(PrivateKeySigner::random());
        assert!(!wallet.supports(&req));
        let err = wallet.sign(&req, None).await.unwrap_err();
        assert!(err.to_string().contains("facilitatorAddress"), "{err}");
    }

    #[test]
    fn the_server_copies_the_announced_facilitator() {
        let mut req = requirements(serde_json::json!({ "name": "USDC" }));
        let kind: SupportedKind = serde_json::from_value(serde_json::json!({
            "x402Version": 2, "scheme": "upto", "network": "eip155:84532",
            "extra": { "facilitatorAddress": "0x1111111111111111111111111111111111111111" }
        }))
        .unwrap();
        UptoEvmServer.enrich(&mut req, &kind);
        assert_eq!(
            req.extra_str("facilitatorAddress"),
            Some("0x1111111111111111111111111111111111111111")
        );
        assert_eq!(req.extra_str("name"), Some("USDC"));
        assert!(UptoEvmServer
            .parse_pay_to(&req.network, "0x0000000000000000000000000000000000000000")
            .is_err());
    }
}
