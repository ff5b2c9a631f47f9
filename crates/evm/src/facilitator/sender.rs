//! Sending settlement transactions from a pool of signer keys.
//!
//! Each signer has its own lock, held while a transaction is filled and handed to the node:
//! the nonce is read from the node's pending count under that lock, so no two transactions of
//! one signer share a nonce and a transaction the node refuses leaves no gap behind (a local
//! nonce counter would keep counting past it and stall every later settlement). Several
//! signers settle in parallel, which is the point of a pool: one key's nonce sequence is a
//! serial queue.
//!
//! A transaction that sits in the mempool longer than the configured delay (an underpriced
//! fee after a base-fee spike) is sent again with the same nonce and a higher fee; whichever
//! version is mined is the settlement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};

use super::verify::is_transport_failure;
use super::SettleError;

/// How a settlement picks its signer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignerSelection {
    /// Each settlement takes the next signer in turn.
    #[default]
    RoundRobin,
    /// Each settlement takes the signer with the fewest unconfirmed transactions, so one slow
    /// (stuck, replaced) key does not hold up its share of the traffic.
    LeastBusy,
}

/// When and how stuck transactions are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    /// How long a transaction may wait unmined before it is re-sent with a higher fee.
    pub after: Duration,
    /// Fee increase of each replacement, in percent. Nodes refuse replacements below 10 %.
    pub fee_bump_percent: u64,
}

impl Default for Replacement {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(30),
            fee_bump_percent: 20,
        }
    }
}

struct Slot {
    address: Address,
    lock: tokio::sync::Mutex<()>,
    /// Sent and not yet seen mined.
    in_flight: AtomicUsize,
}

/// A transaction sent and not yet seen mined, with everything needed to replace it.
struct Unmined {
    slot: usize,
    /// The fully filled request (nonce, gas, fees) of the latest version.
    request: TransactionRequest,
    /// Every version sent, oldest first; any of them may be the one mined.
    hashes: Vec<B256>,
    last_sent: Instant,
}

/// The signer keys of one chain and their unconfirmed transactions.
pub(crate) struct SignerPool {
    slots: Vec<Slot>,
    selection: SignerSelection,
    replacement: Option<Replacement>,
    next: AtomicUsize,
    /// By the hash of the first version.
    unmined: Mutex<HashMap<B256, Unmined>>,
    /// Receipts seen recently, by the hash of the first version: the payments of one batch
    /// share a transaction, and one receipt query serves them all.
    mined: Mutex<HashMap<B256, (Instant, TransactionReceipt)>>,
}

/// How long a seen receipt is served from memory.
const MINED_CACHE: Duration = Duration::from_secs(30);

/// Unmined entries older than this are forgotten (their settlement is reconciled from chain
/// logs instead), so the map cannot grow without bound.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

impl SignerPool {
    pub(crate) fn new(
        addresses: Vec<Address>,
        selection: SignerSelection,
        replacement: Option<Replacement>,
    ) -> Self {
        Self {
            slots: addresses
                .into_iter()
                .map(|address| Slot {
                    address,
                    lock: tokio::sync::Mutex::new(()),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            selection,
            replacement,
            next: AtomicUsize::new(0),
            unmined: Mutex::new(HashMap::new()),
            mined: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn addresses(&self) -> Vec<Address> {
        self.slots.iter().map(|s| s.address).collect()
    }

    /// The first signer: the `from` of simulations.
    pub(crate) fn primary(&self) -> Address {
        self.slots[0].address
    }

    /// Unconfirmed transactions per signer.
    pub(crate) fn in_flight(&self) -> Vec<(Address, usize)> {
        self.slots
            .iter()
            .map(|s| (s.address, s.in_flight.load(Ordering::Relaxed)))
            .collect()
    }

    fn pick(&self) -> usize {
        let n = self.slots.len();
        match self.selection {
            SignerSelection::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            SignerSelection::LeastBusy => {
                // Ties go round-robin so an idle pool still spreads the load.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| self.slots[i].in_flight.load(Ordering::Relaxed))
                    .unwrap_or(0)
            }
        }
    }

    /// Fills `tx` (signer, nonce, gas, fees) and sends it; returns its hash.
    pub(crate) async fn send(
        &self,
        provider: &DynProvider,
        tx: TransactionRequest,
        gas_margin_percent: u64,
    ) -> Result<B256, SettleError> {
        let index = self.pick();
        self.send_slot(provider, tx, gas_margin_percent, index)
            .await
    }

    /// Like [`send`](Self::send), from the pool's signer `from` (a transaction only one key
    /// may send, e.g. an `upto` settlement naming its facilitator). `None` when `from` is not
    /// in the pool.
    pub(crate) async fn send_from(
        &self,
        provider: &DynProvider,
        from: Address,
        tx: TransactionRequest,
        gas_margin_percent: u64,
    ) -> Option<Result<B256, SettleError>> {
        let index = self.slots.iter().position(|s| s.address == from)?;
        Some(
            self.send_slot(provider, tx, gas_margin_percent, index)
                .await,
        )
    }

    async fn send_slot(
        &self,
        provider: &DynProvider,
        tx: TransactionRequest,
        gas_margin_percent: u64,
        index: usize,
    ) -> Result<B256, SettleError> {
        let slot = &self.slots[index];
        let _one_at_a_time = slot.lock.lock().await;
        let mut tx = tx.with_from(slot.address);
        let gas = provider
            .estimate_gas(tx.clone())
            .await
            .map_err(send_error)?;
        tx.set_gas_limit(gas + gas * gas_margin_percent / 100);
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| SettleError::Submit(format!("fee estimate: {e}")))?;
        tx.set_max_fee_per_gas(fees.max_fee_per_gas);
        tx.set_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let nonce = provider
            .get_transaction_count(slot.address)
            .pending()
            .await
            .map_err(|e| SettleError::Submit(format!("nonce: {e}")))?;
        tx.set_nonce(nonce);
        let pending = provider
            .send_transaction(tx.clone())
            .await
            .map_err(send_error)?;
        let hash = *pending.tx_hash();
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut unmined = self.unmined.lock().unwrap_or_else(|p| p.into_inner());
        unmined.retain(|_, u| u.last_sent.elapsed() < FORGET_AFTER);
        unmined.insert(
            hash,
            Unmined {
                slot: index,
                request: tx,
                hashes: vec![hash],
                last_sent: Instant::now(),
            },
        );
        tracing::debug!(signer = %slot.address, nonce, %hash, "transaction sent");
        Ok(hash)
    }

    /// Every version of the transaction first sent as `first` (just `first` when this pool did
    /// not send it, e.g. after a restart).
    fn versions(&self, first: B256) -> Vec<B256> {
        let unmined = self.unmined.lock().unwrap_or_else(|p| p.into_inner());
        unmined
            .get(&first)
            .map(|u| u.hashes.clone())
            .unwrap_or_else(|| vec![first])
    }

    /// Looks for a receipt of any version of `first`; on none, replaces the transaction if it
    /// has waited too long. A mined version ends the entry.
    pub(crate) async fn poll(
        &self,
        provider: &DynProvider,
        first: B256,
    ) -> Result<Option<TransactionReceipt>, String> {
        if let Some((_, receipt)) = self
            .mined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&first)
        {
            return Ok(Some(receipt.clone()));
        }
        let mut last_error = None;
        for hash in self.versions(first).into_iter().rev() {
            match provider.get_transaction_receipt(hash).await {
                Ok(Some(receipt)) => {
                    self.mined(first, &receipt);
                    return Ok(Some(receipt));
                }
                Ok(None) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        if let Some(e) = last_error {
            return Err(e);
        }
        self.replace_if_stuck(provider, first).await;
        Ok(None)
    }

    fn mined(&self, first: B256, receipt: &TransactionReceipt) {
        {
            let mut mined = self.mined.lock().unwrap_or_else(|p| p.into_inner());
            mined.retain(|_, (at, _)| at.elapsed() < MINED_CACHE);
            mined.insert(first, (Instant::now(), receipt.clone()));
        }
        let removed = self
            .unmined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&first);
        if let Some(u) = removed {
            self.slots[u.slot].in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn replace_if_stuck(&self, provider: &DynProvider, first: B256) {
        let Some(policy) = self.replacement else {
            return;
        };
        let (slot, request) = {
            let unmined = self.unmined.lock().unwrap_or_else(|p| p.into_inner());
            match unmined.get(&first) {
                Some(u) if u.last_sent.elapsed() >= policy.after => (u.slot, u.request.clone()),
                _ => return,
            }
        };
        let _one_at_a_time = self.slots[slot].lock.lock().await;
        let bump = |fee: u128| fee + (fee * u128::from(policy.fee_bump_percent)).div_ceil(100);
        let mut tx = request;
        if let (Some(max), Some(tip)) = (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) {
            tx.set_max_fee_per_gas(bump(max));
            tx.set_max_priority_fee_per_gas(bump(tip).max(1));
        }
        let result = provider.send_transaction(tx.clone()).await;
        let mut unmined = self.unmined.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = unmined.get_mut(&first) else {
            return;
        };
        entry.last_sent = Instant::now();
        match result {
            Ok(pending) => {
                let hash = *pending.tx_hash();
                tracing::warn!(
                    original = %first,
                    replacement = %hash,
                    bump_percent = policy.fee_bump_percent,
                    "settlement stuck in the mempool; replaced with a higher fee"
                );
                entry.request = tx;
                entry.hashes.push(hash);
            }
            // Usually "nonce too low": a version was mined meanwhile, and the next poll finds it.
            Err(e) => tracing::debug!(original = %first, error = %e, "replacement not sent"),
        }
    }
}

/// Node answers about the *sender's* state — its nonce sequence, its fees, its gas money, the
/// mempool — rather than about the payment: nothing was sent, and the same payment can be sent
/// again once the facilitator's own state is fixed, so they are retryable, never the payer's
/// fault. (Matched on geth's, anvil's and reth's wording; any other refusal is a revert.)
const SENDER_STATE_ERRORS: [&str; 7] = [
    "nonce too low",
    "nonce too high",
    "replacement transaction underpriced",
    "transaction underpriced",
    "already known",
    "insufficient funds for gas",
    "txpool is full",
];

fn send_error(e: alloy::transports::TransportError) -> SettleError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if is_transport_failure(&e) || SENDER_STATE_ERRORS.iter().any(|m| lower.contains(m)) {
        SettleError::Submit(text)
    } else {
        SettleError::WouldRevert(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_senders_own_state_is_retryable_and_a_revert_is_not() {
        let node = |message: &str| {
            alloy::transports::RpcError::ErrorResp(alloy::rpc::json_rpc::ErrorPayload {
                code: -32000,
                message: message.to_owned().into(),
                data: None,
            })
        };
        for m in [
            "nonce too low",
            "Replacement transaction underpriced",
            "insufficient funds for gas * price + value",
        ] {
            assert!(matches!(send_error(node(m)), SettleError::Submit(_)), "{m}");
        }
        assert!(matches!(
            send_error(node(
                "execution reverted: FiatTokenV2: authorization is used or canceled"
            )),
            SettleError::WouldRevert(_)
        ));
    }
}
