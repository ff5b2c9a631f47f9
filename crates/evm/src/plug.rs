//! `exact` on EVM as the facilitator runs it: [`SchemeFacilitator`] for
//! [`ExactEvmFacilitator`]. (The network's [`ChainOps`](tollgate_core::ChainOps) is
//! [`EvmChain`](crate::EvmChain), shared by every scheme settling on it.)
//!
//! Everything EVM-specific the facilitator used to do itself lives here: the payment's identity
//! is the EIP-3009 `(token, payer, nonce)` read from the typed authorization (so `0xAB…` and
//! `0xab…` are one payment), and its errors map onto the generic [`SchemeFault`]s.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use tollgate_core::{
    BoxFuture, PaymentIdentity, SchemeError, SchemeFacilitator, SchemeFault, Settled, Verified,
};
use tollgate_proto::{
    ErrorReason, PaymentPayload, PaymentRequirements, Scheme, SupportedKind, X402Version,
};

use crate::domain::parse_address;
use crate::facilitator::{
    ExactEvmFacilitator, SettleError, Settlement, VerifiedPayment, VerifyError,
};
use crate::payload::{Authorization, ExactPayload};
use crate::permit2::engine::{AmountRule, VerifiedPermit2};
use crate::permit2::{ExactWitness, Permit2Payload, Permit2Witness};

impl From<VerifyError> for SchemeError {
    fn from(e: VerifyError) -> Self {
        let fault = if e.is_payment_fault() {
            SchemeFault::Payment
        } else {
            SchemeFault::Unavailable
        };
        SchemeError {
            fault,
            reason: e.reason(),
            message: e.to_string(),
            transaction: None,
        }
    }
}

impl From<SettleError> for SchemeError {
    fn from(e: SettleError) -> Self {
        let fault = match &e {
            SettleError::ReceiptTimeout { .. } => SchemeFault::Pending,
            SettleError::Submit(_) => SchemeFault::Unavailable,
            SettleError::Invalid(v) if !v.is_payment_fault() => SchemeFault::Unavailable,
            _ => SchemeFault::Payment,
        };
        SchemeError {
            fault,
            reason: e.reason(),
            message: e.to_string(),
            transaction: e.tx_hash().map(|h| h.to_string()),
        }
    }
}

pub(crate) fn settled(s: Settlement) -> Settled {
    Settled::new(s.tx_hash.to_string(), s.payer.to_string())
}

/// The payload and the token of a payment, parsed: the requirements' transfer method decides
/// the payload's type.
fn parse(
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> Result<(ExactPayload, Address), SchemeError> {
    let evm = ExactPayload::from_payment(payment, requirements)
        .map_err(|e| SchemeError::payment(ErrorReason::InvalidPayload, e.to_string()))?;
    let asset = parse_address(&requirements.asset).map_err(|e| {
        SchemeError::payment(
            ErrorReason::InvalidPaymentRequirements,
            format!("asset {:?} is not an address: {e}", requirements.asset),
        )
    })?;
    Ok((evm, asset))
}

/// A Permit2 payment's identity: `(token, payer, "permit2:" nonce)`. Permit2 nonces are the
/// owner's across all tokens, and the prefix keeps them apart from EIP-3009 nonces in the
/// ledger.
pub(crate) fn permit2_identity<W: Permit2Witness>(
    asset: Address,
    payload: &Permit2Payload<W>,
) -> PaymentIdentity {
    let auth = &payload.permit2_authorization;
    PaymentIdentity {
        asset: asset.to_string(),
        payer: auth.from.to_string(),
        id: format!("permit2:{}", auth.nonce),
        // Permit2 accepts the signature while `block.timestamp <= deadline`.
        valid_before: Some(
            u64::try_from(auth.deadline)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        ),
    }
}

/// A payment's identity: the EIP-3009 `(token, payer, nonce)`, from the typed authorization.
fn identity_of(asset: Address, authorization: &Authorization) -> PaymentIdentity {
    PaymentIdentity {
        asset: asset.to_string(),
        payer: authorization.from.to_string(),
        id: authorization.nonce.to_string(),
        valid_before: Some(u64::try_from(authorization.valid_before).unwrap_or(u64::MAX)),
    }
}

pub(crate) fn tx_hash(transaction: &str) -> Result<B256, SchemeError> {
    transaction.parse::<B256>().map_err(|e| {
        SchemeError::unavailable(
            ErrorReason::UnexpectedSettleError,
            format!("{transaction:?} is not a transaction hash: {e}"),
        )
    })
}

impl SchemeFacilitator for ExactEvmFacilitator {
    fn scheme(&self) -> Scheme {
        Scheme::Exact
    }

    fn supported(&self) -> Vec<SupportedKind> {
        let network = self.network().clone();
        let mut kinds = Vec::with_capacity(2);
        if network.v1_name().is_some() {
            kinds.push(SupportedKind {
                x402_version: X402Version::V1,
                scheme: Scheme::Exact,
                network: network.clone(),
                extra: None,
            });
        }
        kinds.push(SupportedKind {
            x402_version: X402Version::V2,
            scheme: Scheme::Exact,
            network,
            extra: None,
        });
        kinds
    }

    fn signers(&self) -> Vec<(String, Vec<String>)> {
        vec![(
            "eip155:*".to_owned(),
            vec![self.signer_address().to_string()],
        )]
    }

    fn receipt_timeout(&self) -> Duration {
        self.config().receipt_timeout
    }

    fn already_used_reason(&self) -> ErrorReason {
        crate::reason::EvmReason::InvalidExactEvmNonceAlreadyUsed.into()
    }

    fn identify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError> {
        let (evm, asset) = parse(payment, requirements)?;
        Ok(match &evm {
            ExactPayload::Eip3009(p) => identity_of(asset, &p.authorization),
            ExactPayload::Permit2(p) => permit2_identity(asset, p),
        })
    }

    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(async move {
            let method = crate::permit2::AssetTransferMethod::of(requirements).map_err(|e| {
                SchemeError::payment(ErrorReason::InvalidPaymentRequirements, e.to_string())
            })?;
            if method == crate::permit2::AssetTransferMethod::Permit2 {
                let verified = self
                    .permit2()
                    .verify::<ExactWitness>(payment, requirements, AmountRule::Equal)
                    .await?;
                return Ok(Verified {
                    identity: permit2_identity(verified.asset, &verified.payload),
                    proof: Box::new(verified),
                });
            }
            let verified = ExactEvmFacilitator::verify(self, payment, requirements).await?;
            let identity = identity_of(verified.asset, &verified.authorization);
            Ok(Verified {
                identity,
                proof: Box::new(verified),
            })
        })
    }

    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>> {
        Box::pin(async move {
            let (Ok(stored_evm), Ok(presented_evm)) = (
                ExactPayload::from_payment(stored, requirements),
                ExactPayload::from_payment(presented, requirements),
            ) else {
                return Ok(false);
            };
            let same_payee = match parse_address(stored_pay_to) {
                Ok(stored) => parse_address(&requirements.pay_to) == Ok(stored),
                Err(_) => false,
            };
            if stored_evm != presented_evm || requirements.scheme != Scheme::Exact || !same_payee {
                return Ok(false);
            }
            match presented_evm {
                ExactPayload::Eip3009(_) => self.verify_signature(presented, requirements).await?,
                ExactPayload::Permit2(_) => {
                    self.permit2()
                        .verify_signature::<ExactWitness>(presented, requirements)
                        .await?
                }
            }
            Ok(true)
        })
    }

    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>> {
        Box::pin(async move {
            if let Some(permit2) = verified
                .proof
                .downcast_ref::<VerifiedPermit2<ExactWitness>>()
            {
                return match self.permit2().submit(permit2).await? {
                    Some(tx) => Ok(tx.to_string()),
                    None => Ok(String::new()),
                };
            }
            let Some(payment) = verified.proof.downcast_ref::<VerifiedPayment>() else {
                return Err(SchemeError::unavailable(
                    ErrorReason::UnexpectedSettleError,
                    "the verified payment was not verified by the exact EVM scheme",
                ));
            };
            let tx = self.submit_verified(payment).await?;
            Ok(tx.to_string())
        })
    }

    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>> {
        Box::pin(async move {
            let (evm, asset) = parse(payment, requirements)?;
            let tx = tx_hash(transaction)?;
            match &evm {
                ExactPayload::Eip3009(p) => {
                    ExactEvmFacilitator::await_settlement(self, asset, &p.authorization, tx).await
                }
                ExactPayload::Permit2(p) => {
                    let amount: U256 = p.permit2_authorization.permitted.amount;
                    self.permit2().await_settlement(p, amount, tx).await
                }
            }
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
            let (evm, asset) = parse(payment, requirements)?;
            match &evm {
                ExactPayload::Eip3009(p) => self.find_settlement_tx(asset, &p.authorization).await,
                ExactPayload::Permit2(p) => self.permit2().find_settlement(p).await,
            }
            .map(|s| s.map(settled))
            .map_err(Into::into)
        })
    }
}
