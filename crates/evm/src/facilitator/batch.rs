//! Batch settlement: payments arriving within a short window share one Multicall3
//! `aggregate3` transaction.
//!
//! Every call is sent with `allowFailure`, so one bad authorization (cancelled, already used,
//! its payer drained since verification) never reverts the others. The batch is dry-run
//! first: calls that would fail are answered with their own reason and left out, so the
//! facilitator pays no gas for them. Each payment then checks the mined receipt for its own
//! `Transfer`, exactly as a single settlement does; a call that failed on chain despite the
//! dry run is reported for that payment alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::sender::SignerPool;
use super::verify::{diagnose, is_transport_failure, transfer_calldata};
use super::{SettleError, VerifiedPayment, VerifyError};
use crate::contracts::{IEip3009Token, IMulticall3};

/// Opt-in batching of settlements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// How long the first payment of a batch waits for others to join.
    pub window: Duration,
    /// Most payments in one transaction.
    pub max_size: usize,
    /// The chain's Multicall3 contract (`0xcA11bde05977b3631167028862bE2a173976CA11` on most
    /// chains).
    pub multicall3: Address,
}

/// Extra gas over the estimate for a batch: the estimate of a many-call transaction is
/// tight, and running out of gas would fail every payment in it.
const BATCH_GAS_MARGIN_PERCENT: u64 = 25;

struct Job {
    payment: VerifiedPayment,
    reply: oneshot::Sender<Result<B256, SettleError>>,
}

/// The entrance of a running batcher task.
#[derive(Clone)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the batcher task. It ends when the last `Batcher` handle is dropped.
    pub(crate) fn spawn(provider: DynProvider, pool: Arc<SignerPool>, config: BatchConfig) -> Self {
        let (jobs, queue) = mpsc::channel(config.max_size.max(1) * 4);
        tokio::spawn(run(provider, pool, config, queue));
        Self { jobs }
    }

    /// Queues `payment` for the next batch; resolves with the hash of the batch transaction
    /// that carries it.
    pub(crate) async fn submit(&self, payment: VerifiedPayment) -> Result<B256, SettleError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { payment, reply })
            .await
            .map_err(|_| SettleError::Submit("batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| SettleError::Submit("batcher dropped the payment".into()))?
    }
}

async fn run(
    provider: DynProvider,
    pool: Arc<SignerPool>,
    config: BatchConfig,
    mut queue: mpsc::Receiver<Job>,
) {
    let max = config.max_size.max(1);
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + config.window;
        while jobs.len() < max {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                _ => break,
            }
        }
        let span = tracing::info_span!("exact_evm.batch", size = jobs.len());
        settle_batch(&provider, &pool, config.multicall3, jobs)
            .instrument(span)
            .await;
    }
}

async fn settle_batch(
    provider: &DynProvider,
    pool: &SignerPool,
    multicall3: Address,
    jobs: Vec<Job>,
) {
    let calls: Vec<IMulticall3::Call3> = jobs
        .iter()
        .map(|j| IMulticall3::Call3 {
            target: j.payment.asset,
            allowFailure: true,
            callData: Bytes::from(transfer_calldata(
                &j.payment.authorization,
                &j.payment.signature,
            )),
        })
        .collect();
    let dry_run = IMulticall3::new(multicall3, provider)
        .aggregate3(calls.clone())
        .from(pool.primary())
        .call()
        .await;
    let results = match dry_run {
        Ok(results) if results.len() == jobs.len() => results,
        Ok(results) => {
            let message = format!(
                "Multicall3 at {multicall3} answered {} results for {} calls",
                results.len(),
                jobs.len()
            );
            return fail_all(jobs, SettleError::Submit(message));
        }
        Err(alloy::contract::Error::TransportError(e)) if is_transport_failure(&e) => {
            return fail_all(jobs, SettleError::Submit(format!("batch dry run: {e}")));
        }
        Err(e) => {
            // With allowFailure nothing in the batch can revert it; a revert means the address
            // is not a Multicall3.
            let message = format!("batch dry run through {multicall3} reverted: {e}");
            return fail_all(jobs, SettleError::Submit(message));
        }
    };
    let mut included = Vec::new();
    let mut batch_calls = Vec::new();
    // What earlier calls of this batch take from each (token, payer): a payer's two payments
    // can each be covered alone and overdraw together.
    let mut committed: HashMap<(Address, Address), U256> = HashMap::new();
    for ((job, call), result) in jobs.into_iter().zip(calls).zip(results) {
        let spender = (job.payment.asset, job.payment.payer);
        if result.success {
            *committed.entry(spender).or_default() += job.payment.authorization.value;
            included.push(job);
            batch_calls.push(call);
            continue;
        }
        let earlier = committed.get(&spender).copied().unwrap_or_default();
        let error = why_call_fails(provider, &job.payment, earlier, &result.returnData).await;
        tracing::info!(payer = %job.payment.payer, reason = %error.reason(), "left out of the batch");
        let _ = job.reply.send(Err(error));
    }
    if included.is_empty() {
        return;
    }
    let input = IMulticall3::aggregate3Call { calls: batch_calls }.abi_encode();
    let tx = TransactionRequest::default()
        .with_to(multicall3)
        .with_input(input);
    match pool.send(provider, tx, BATCH_GAS_MARGIN_PERCENT).await {
        Ok(hash) => {
            tracing::info!(%hash, payments = included.len(), "batch submitted");
            for job in included {
                let _ = job.reply.send(Ok(hash));
            }
        }
        Err(e) => fail_all(included, e),
    }
}

/// The reason a call of the dry run failed, as the payment's own error. `earlier` is what
/// calls before it in the batch take from the same payer.
async fn why_call_fails(
    provider: &DynProvider,
    payment: &VerifiedPayment,
    earlier: U256,
    data: &Bytes,
) -> SettleError {
    match diagnose(provider, payment.asset, &payment.authorization, None).await {
        Ok(Some(e)) | Err(e) => return SettleError::Invalid(e),
        Ok(None) => {}
    }
    let auth = &payment.authorization;
    if !earlier.is_zero() {
        let token = IEip3009Token::new(payment.asset, provider);
        if let Ok(balance) = token.balanceOf(auth.from).call().await {
            let left = balance.saturating_sub(earlier);
            if left < auth.value {
                return SettleError::Invalid(VerifyError::InsufficientBalance {
                    payer: auth.from,
                    balance: left,
                    required: auth.value,
                });
            }
        }
    }
    SettleError::WouldRevert(revert_message(data))
}

/// A Solidity `Error(string)` revert as its message; other data as hex.
pub(super) fn revert_message(data: &Bytes) -> String {
    const ERROR_SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
    if data.len() > 4 && data[..4] == ERROR_SELECTOR {
        if let Ok(message) =
            <alloy::sol_types::sol_data::String as alloy::sol_types::SolType>::abi_decode(
                &data[4..],
            )
        {
            return format!("reverted: {message}");
        }
    }
    format!("reverted with data {data}")
}

fn fail_all(jobs: Vec<Job>, error: SettleError) {
    tracing::warn!(error = %error, payments = jobs.len(), "batch not submitted");
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}
