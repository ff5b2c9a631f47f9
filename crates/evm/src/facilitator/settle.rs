//! Settlement: submit `transferWithAuthorization`, wait for the receipt, check the transfer.

use std::time::Instant;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use tollgate_proto::{PaymentPayload, PaymentRequirements};
use tracing::Instrument;

use super::verify::{is_transport_failure, transfer_calldata};
use super::{ExactEvmFacilitator, SettleError, Settlement, VerifiedPayment};
use crate::contracts::IEip3009Token;
use crate::signature::PayerSignature;

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

    /// Settles a payment that [`verify`](Self::verify) accepted.
    ///
    /// EOAs settle through the `(v, r, s)` overload, contract wallets through the `bytes`
    /// overload; a counterfactual (EIP-6492) wallet is deployed through its allow-listed
    /// factory first.
    pub async fn settle_verified(
        &self,
        verified: &VerifiedPayment,
    ) -> Result<Settlement, SettleError> {
        let span = tracing::info_span!(
            "exact_evm.settle",
            network = %self.network,
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
            let tx = TransactionRequest::default()
                .with_from(self.signer)
                .with_to(verified.asset)
                .with_input(transfer_calldata(
                    &verified.authorization,
                    &verified.signature,
                ));
            let (tx_hash, receipt) = self.send_and_wait(tx).await?;
            if !receipt.status() {
                tracing::warn!(%tx_hash, "settlement reverted");
                return Err(SettleError::Reverted { tx_hash });
            }
            if !has_transfer(&receipt, verified) {
                return Err(SettleError::TransferEventMismatch { tx_hash });
            }
            tracing::info!(%tx_hash, block = ?receipt.block_number, "payment settled");
            Ok(Settlement {
                tx_hash,
                payer: verified.payer,
                network: self.network.clone(),
                amount: verified.authorization.value,
                block_number: receipt.block_number,
            })
        }
        .instrument(span)
        .await
    }

    async fn deploy_wallet(
        &self,
        wallet: Address,
        factory: Address,
        calldata: alloy::primitives::Bytes,
    ) -> Result<(), SettleError> {
        let tx = TransactionRequest::default()
            .with_from(self.signer)
            .with_to(factory)
            .with_input(calldata);
        let (tx_hash, receipt) = self.send_and_wait(tx).await.map_err(|e| match e {
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

    /// Sends `tx` and waits for its receipt up to the configured timeout.
    ///
    /// Once the node has accepted the transaction, every failure to see its receipt is reported
    /// as [`SettleError::ReceiptTimeout`] with the hash: the transfer may still land, so the
    /// caller must not report it as failed.
    async fn send_and_wait(
        &self,
        tx: TransactionRequest,
    ) -> Result<(B256, TransactionReceipt), SettleError> {
        let pending = self.provider.send_transaction(tx).await.map_err(|e| {
            if is_transport_failure(&e) {
                SettleError::Submit(e.to_string())
            } else {
                SettleError::WouldRevert(e.to_string())
            }
        })?;
        let tx_hash = *pending.tx_hash();
        tracing::debug!(%tx_hash, "settlement submitted");
        let started = Instant::now();
        let timeout = self.config.receipt_timeout;
        let waited =
            tokio::time::timeout(timeout, pending.with_timeout(Some(timeout)).get_receipt()).await;
        match waited {
            Ok(Ok(receipt)) => Ok((tx_hash, receipt)),
            Ok(Err(e)) => {
                tracing::warn!(%tx_hash, error = %e, "no receipt");
                Err(SettleError::ReceiptTimeout {
                    tx_hash,
                    waited_secs: started.elapsed().as_secs(),
                })
            }
            Err(_) => Err(SettleError::ReceiptTimeout {
                tx_hash,
                waited_secs: started.elapsed().as_secs(),
            }),
        }
    }
}

/// Whether the receipt carries the token's `Transfer(from, to, value)` for this payment.
fn has_transfer(receipt: &TransactionReceipt, verified: &VerifiedPayment) -> bool {
    let auth = &verified.authorization;
    receipt.inner.logs().iter().any(|log| {
        log.address() == verified.asset
            && log
                .log_decode::<IEip3009Token::Transfer>()
                .map(|t| {
                    let t = t.inner.data;
                    t.from == auth.from && t.to == auth.to && t.value == auth.value
                })
                .unwrap_or(false)
    })
}
