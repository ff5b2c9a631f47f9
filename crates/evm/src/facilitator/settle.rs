//! Settlement: submit `transferWithAuthorization`, wait for the receipt, check the transfer.
//!
//! The steps are public on their own ([`submit_verified`](ExactEvmFacilitator::submit_verified),
//! [`await_settlement`](ExactEvmFacilitator::await_settlement),
//! [`find_settlement_tx`](ExactEvmFacilitator::find_settlement_tx)) so that a facilitator
//! service can record the transaction hash durably between sending and confirming, and find a
//! transfer again after a crash.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolEvent;
use tollgate_proto::{PaymentPayload, PaymentRequirements};
use tracing::Instrument;

use super::batch::Batcher;
use super::verify::transfer_calldata;
use super::{ExactEvmFacilitator, SettleError, Settlement, VerifiedPayment};
use crate::contracts::IEip3009Token;
use crate::payload::Authorization;
use crate::signature::PayerSignature;

/// Extra gas over the estimate of a single settlement.
const SINGLE_GAS_MARGIN_PERCENT: u64 = 10;

impl ExactEvmFacilitator {
    /// Verifies `payment` again (state may have changed since `/verify`), then settles it.
    ///
    /// A second settlement of the same payment fails verification with
    /// `invalid_exact_evm_nonce_already_used` and sends nothing, so no payment moves money twice.
    pub async fn settle(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Settlement, SettleError> {
        let verified = self.verify(payment, requirements).await?;
        self.settle_verified(&verified).await
    }

    /// Settles a payment that [`verify`](Self::verify) accepted: submit, then wait for the
    /// receipt up to the configured timeout.
    pub async fn settle_verified(
        &self,
        verified: &VerifiedPayment,
    ) -> Result<Settlement, SettleError> {
        let tx_hash = self.submit_verified(verified).await?;
        self.await_settlement(verified.asset, &verified.authorization, tx_hash)
            .await
    }

    /// Sends the settlement transaction (or queues the payment for the next batch, when
    /// batching is configured) and returns its hash without waiting for it.
    ///
    /// EOAs settle through the `(v, r, s)` overload, contract wallets through the `bytes`
    /// overload; a counterfactual (EIP-6492) wallet is deployed through its allow-listed
    /// factory first (that deployment is awaited).
    pub async fn submit_verified(&self, verified: &VerifiedPayment) -> Result<B256, SettleError> {
        let span = tracing::info_span!(
            "exact_evm.submit",
            network = %self.chain.network,
            payer = %verified.payer,
            nonce = %verified.authorization.nonce,
        );
        async move {
            if let PayerSignature::Counterfactual {
                factory,
                factory_calldata,
                ..
            } = &verified.signature
            {
                self.deploy_wallet(verified.payer, *factory, factory_calldata.clone())
                    .await?;
            }
            if let (Some(batch), false) =
                (&self.config.batch, verified.signature.is_counterfactual())
            {
                let batcher = self.batcher.get_or_init(|| {
                    Batcher::spawn(
                        self.chain.provider.clone(),
                        self.chain.pool.clone(),
                        batch.clone(),
                    )
                });
                return batcher.submit(verified.clone()).await;
            }
            let tx = TransactionRequest::default()
                .with_to(verified.asset)
                .with_input(transfer_calldata(
                    &verified.authorization,
                    &verified.signature,
                ));
            let tx_hash = self.send(tx).await?;
            tracing::info!(%tx_hash, "settlement submitted");
            Ok(tx_hash)
        }
        .instrument(span)
        .await
    }

    /// Waits up to the configured receipt timeout for `tx_hash`, then checks that it succeeded
    /// and emitted this payment's `Transfer`.
    ///
    /// Works for any settlement transaction, including one sent by an earlier process: that is
    /// how a restarted facilitator reconciles what it had submitted. If `tx_hash` itself never
    /// shows up (it was replaced with a higher fee, possibly by a process that then died), the
    /// token's record of the authorization finds the transfer that did happen.
    pub async fn await_settlement(
        &self,
        asset: Address,
        authorization: &Authorization,
        tx_hash: B256,
    ) -> Result<Settlement, SettleError> {
        match self.wait_receipt(tx_hash).await {
            Ok(receipt) => {
                let mined = receipt.transaction_hash;
                self.check_receipt(authorization, asset, mined, &receipt)
            }
            Err(timeout @ SettleError::ReceiptTimeout { .. }) => {
                match self.find_settlement_tx(asset, authorization).await {
                    Ok(Some(settlement)) => Ok(settlement),
                    _ => Err(timeout),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Finds the transaction that used `(payer, nonce)` on `asset`, from the token's
    /// `AuthorizationUsed` event, and checks it moved this authorization's funds.
    ///
    /// `Ok(None)` when the authorization has not been used on chain. This recovers a settlement
    /// whose hash was never recorded (e.g. the process died between sending and recording).
    pub async fn find_settlement_tx(
        &self,
        asset: Address,
        authorization: &Authorization,
    ) -> Result<Option<Settlement>, SettleError> {
        let filter = Filter::new()
            .address(asset)
            .event_signature(IEip3009Token::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(authorization.from.into_word())
            .topic2(authorization.nonce)
            .from_block(0u64);
        let logs = self
            .chain
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| SettleError::Submit(format!("eth_getLogs: {e}")))?;
        let Some(tx_hash) = logs.iter().find_map(|l| l.transaction_hash) else {
            return Ok(None);
        };
        let receipt = self
            .chain
            .provider
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(|e| SettleError::Submit(format!("eth_getTransactionReceipt: {e}")))?
            .ok_or_else(|| SettleError::Submit(format!("no receipt for logged tx {tx_hash}")))?;
        self.check_receipt(authorization, asset, tx_hash, &receipt)
            .map(Some)
    }

    fn check_receipt(
        &self,
        auth: &Authorization,
        asset: Address,
        tx_hash: B256,
        receipt: &TransactionReceipt,
    ) -> Result<Settlement, SettleError> {
        if !receipt.status() {
            tracing::warn!(%tx_hash, "settlement reverted");
            return Err(SettleError::Reverted { tx_hash });
        }
        if !has_transfer(receipt, asset, auth) {
            let batch = self.config.batch.as_ref().map(|b| b.multicall3);
            if batch.is_some() && receipt.to == batch {
                // The batch went through; this payment's call inside it failed.
                return Err(SettleError::FailedInBatch { tx_hash });
            }
            return Err(SettleError::TransferEventMismatch { tx_hash });
        }
        tracing::info!(%tx_hash, block = ?receipt.block_number, "payment settled");
        Ok(Settlement {
            tx_hash,
            payer: auth.from,
            network: self.chain.network.clone(),
            amount: auth.value,
            block_number: receipt.block_number,
        })
    }

    async fn deploy_wallet(
        &self,
        wallet: Address,
        factory: Address,
        calldata: alloy::primitives::Bytes,
    ) -> Result<(), SettleError> {
        let tx = TransactionRequest::default()
            .with_to(factory)
            .with_input(calldata);
        let deployed = async {
            let tx_hash = self.send(tx).await?;
            let receipt = self.wait_receipt(tx_hash).await?;
            Ok::<_, SettleError>((tx_hash, receipt))
        };
        let (tx_hash, receipt) = deployed.await.map_err(|e| match e {
            SettleError::Submit(m) | SettleError::WouldRevert(m) => {
                SettleError::WalletDeployment(m)
            }
            other => other,
        })?;
        if !receipt.status() {
            return Err(SettleError::WalletDeployment(format!(
                "factory call {tx_hash} reverted"
            )));
        }
        let code = self
            .chain
            .provider
            .get_code_at(wallet)
            .await
            .map_err(|e| SettleError::WalletDeployment(e.to_string()))?;
        if code.is_empty() {
            return Err(SettleError::WalletDeployment(format!(
                "factory call {tx_hash} did not deploy {wallet}"
            )));
        }
        Ok(())
    }

    async fn send(&self, tx: TransactionRequest) -> Result<B256, SettleError> {
        self.chain.send(tx, SINGLE_GAS_MARGIN_PERCENT).await
    }

    /// The receipt of `tx_hash` within the chain's receipt timeout (see
    /// [`EvmChain::wait_receipt`](super::EvmChain::wait_receipt)).
    async fn wait_receipt(&self, tx_hash: B256) -> Result<TransactionReceipt, SettleError> {
        self.chain.wait_receipt(tx_hash).await
    }
}

/// Whether the receipt carries the token's `Transfer(from, to, value)` for this authorization.
fn has_transfer(receipt: &TransactionReceipt, asset: Address, auth: &Authorization) -> bool {
    receipt.inner.logs().iter().any(|log| {
        log.address() == asset
            && log
                .log_decode::<IEip3009Token::Transfer>()
                .map(|t| {
                    let t = t.inner.data;
                    t.from == auth.from && t.to == auth.to && t.value == auth.value
                })
                .unwrap_or(false)
    })
}
