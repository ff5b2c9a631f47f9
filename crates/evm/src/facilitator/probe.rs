//! Coalesced verification reads: the dry runs of every payment being verified at the same time
//! in one `eth_call`.
//!
//! Verifying an EIP-3009 payment reads the chain twice: the payer's code (an EOA signature or a
//! contract wallet's?) and a dry run of `transferWithAuthorization`. Done one payment at a time
//! that is two round trips per verification, and under load the node's request handling — not
//! the EVM work — is the limit. The [`Prober`] queues the reads of concurrent verifications and
//! sends them as one call of the `AuthorizationProbe` helper (`contracts/src`), which the node
//! runs from an `eth_call` state override: nothing is deployed.
//!
//! Batching like a database's group commit: a call leaves as soon as one of
//! [`ProbeConfig::max_in_flight`] slots is free, carrying everything queued by then (at most
//! [`ProbeConfig::max_batch`]). An idle facilitator therefore adds no latency, and a busy one
//! sends fewer, larger calls. The helper runs each dry run in a frame of its own that is
//! always rolled back, so payments in one call never see each other's effects; one it could
//! not judge (out of gas for the batch) is reported as such and verified the usual way.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{address, Address, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::state::{AccountOverride, StateOverride};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use crate::contracts::{authorization_probe_code, IAuthorizationProbe};

/// Where the probe's code is placed for the call. Any address without code works; this one is
/// far from precompiles and from every address with a known private key.
const PROBE_ADDRESS: Address = address!("0x402000000000000000000000000000000000fe11");

/// How long the prober stays off after the node refused a probe call (e.g. a provider without
/// state overrides): verifications go the one-by-one way meanwhile.
const REFUSED_BACKOFF: Duration = Duration::from_secs(60);

/// Tunables of coalesced verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Most payments judged by one `eth_call`.
    pub max_batch: usize,
    /// Probe calls in flight at once. Payments arriving while all are out wait for the next.
    pub max_in_flight: usize,
    /// How long the first payment of a call waits for others. Zero (the default) sends at once
    /// when a slot is free, which batches exactly as much as the load provides; a window trades
    /// that much latency for larger calls.
    pub window: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_in_flight: 2,
            window: Duration::ZERO,
        }
    }
}

/// Counters of the prober, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Probe calls answered by the node.
    pub calls: u64,
    /// Payments judged by those calls.
    pub payments: u64,
    /// The most payments one call carried.
    pub largest: usize,
}

/// One dry run to coalesce: `data` called on `token`, and the code size of `payer` — the
/// helper's own argument type.
pub(crate) type ProbeRequest = IAuthorizationProbe::Probe;

/// What the node found for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probed {
    /// The payer has contract code (a wallet, or a delegated EOA).
    pub payer_has_code: bool,
    pub outcome: DryRun,
}

/// The dry run's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DryRun {
    Succeeded,
    /// Reverted with this data.
    Reverted(Bytes),
    /// Not judged (the batch's gas ran short): check this payment the usual way.
    NotJudged,
}

/// Why a request got no verdict.
#[derive(Debug, Clone)]
pub(crate) enum ProbeError {
    /// The node could not be reached or answered garbage: the verification is unavailable.
    Transport(String),
    /// The node refused the probe call itself, or the prober is off: verify the usual way.
    Refused,
}

type Reply = oneshot::Sender<Result<Probed, ProbeError>>;

struct Job {
    request: ProbeRequest,
    reply: Reply,
}

/// What the prober and its sending task share: counters, and whether the node refuses probes.
/// Not the queue's sender: the task ends when the last `Prober` is dropped.
#[derive(Default)]
struct Shared {
    calls: AtomicU64,
    payments: AtomicU64,
    largest: AtomicUsize,
    refused_until: Mutex<Option<Instant>>,
}

/// The queue of dry runs and the task that sends them. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Prober {
    jobs: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

impl Prober {
    /// Starts the sending task on the current runtime.
    pub(crate) fn spawn(provider: DynProvider, config: ProbeConfig) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        let shared = Arc::<Shared>::default();
        tokio::spawn(run(provider, config, rx, Arc::clone(&shared)));
        Self { jobs, shared }
    }

    /// Judges `request` together with whatever else is being verified now.
    pub(crate) async fn probe(&self, request: ProbeRequest) -> Result<Probed, ProbeError> {
        if self.shared.is_refusing() {
            return Err(ProbeError::Refused);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .map_err(|_| ProbeError::Refused)?;
        answer.await.unwrap_or(Err(ProbeError::Refused))
    }

    pub(crate) fn stats(&self) -> ProbeStats {
        ProbeStats {
            calls: self.shared.calls.load(Ordering::Relaxed),
            payments: self.shared.payments.load(Ordering::Relaxed),
            largest: self.shared.largest.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn is_refusing(&self) -> bool {
        let Ok(mut until) = self.refused_until.lock() else {
            return false;
        };
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn refuse_for_a_while(&self) {
        if let Ok(mut until) = self.refused_until.lock() {
            *until = Some(Instant::now() + REFUSED_BACKOFF);
        }
    }
}

async fn run(
    provider: DynProvider,
    config: ProbeConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
) {
    let max_batch = config.max_batch.max(1);
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot is what lets a busy queue grow into one larger call.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut jobs = vec![first];
        if !config.window.is_zero() {
            let deadline = tokio::time::Instant::now() + config.window;
            while jobs.len() < max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (provider, shared) = (provider.clone(), Arc::clone(&shared));
        tokio::spawn(async move {
            send(&provider, &shared, jobs).await;
            drop(slot);
        });
    }
}

/// The one `eth_call` (request and state override) that dry-runs `probes` together.
fn probe_call(probes: Vec<ProbeRequest>) -> (TransactionRequest, StateOverride) {
    let call = IAuthorizationProbe::probeCall { probes }.abi_encode();
    let mut overrides = StateOverride::default();
    overrides.insert(
        PROBE_ADDRESS,
        AccountOverride {
            code: Some(authorization_probe_code()),
            ..AccountOverride::default()
        },
    );
    let tx = TransactionRequest::default()
        .to(PROBE_ADDRESS)
        .input(Bytes::from(call).into());
    (tx, overrides)
}

/// The node's share of verifying `payments` (EIP-3009 `exact` on `token`, EOA signatures): the
/// one `eth_call` that coalesced verification sends for them, as a request and its state
/// override.
///
/// For measuring the node's own ceiling with no facilitator in between (`tollgate bench`):
/// every facilitator that dry-runs its payments — Tollgate, x402-rs and the official one all do
/// — verifies at most as many payments a second as the node dry-runs.
///
/// ```
/// use alloy::primitives::address;
/// use tollgate_evm::facilitator::dry_run_call;
///
/// let token = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
/// assert!(dry_run_call(token, &[]).is_ok()); // an empty batch is a valid (useless) call
/// ```
pub fn dry_run_call(
    token: Address,
    payments: &[tollgate_proto::PaymentPayload],
) -> Result<(TransactionRequest, StateOverride), String> {
    let probes = payments
        .iter()
        .map(|payment| {
            let payload = crate::payload::ExactEvmPayload::from_payment(payment)
                .map_err(|e| e.to_string())?;
            let signature = crate::signature::parse_ecdsa(&payload.signature)?;
            let signature = crate::signature::PayerSignature::Eoa(signature);
            Ok(eoa_probe(token, &payload.authorization, &signature))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(probe_call(probes))
}

/// The dry run of `auth`'s transfer on `token`, signed by `signature`, with its payer's code
/// size: what one verification asks of a probe call.
pub(crate) fn eoa_probe(
    token: Address,
    auth: &crate::payload::Authorization,
    signature: &crate::signature::PayerSignature,
) -> ProbeRequest {
    ProbeRequest {
        token,
        payer: auth.from,
        data: super::verify::transfer_calldata(auth, signature).into(),
    }
}

/// How many dry runs of a [`dry_run_call`]'s answer succeeded (a benchmark checks that it
/// measured the work of valid payments, not of early reverts).
pub fn dry_runs_succeeded(output: &[u8]) -> Result<usize, String> {
    let verdicts = IAuthorizationProbe::probeCall::abi_decode_returns(output)
        .map_err(|e| format!("probe answer does not decode: {e}"))?;
    Ok(verdicts.iter().filter(|v| v.status == 1).count())
}

async fn send(provider: &DynProvider, shared: &Shared, jobs: Vec<Job>) {
    let (probes, replies): (Vec<ProbeRequest>, Vec<Reply>) =
        jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
    let (tx, overrides) = probe_call(probes);
    let span = tracing::debug_span!("exact_evm.probe", payments = replies.len());
    let answer = async { provider.call(tx).overrides(overrides).await }
        .instrument(span)
        .await;
    let verdicts = match answer {
        Ok(output) => match IAuthorizationProbe::probeCall::abi_decode_returns(&output) {
            Ok(v) if v.len() == replies.len() => v,
            Ok(v) => {
                tracing::warn!(
                    sent = replies.len(),
                    answered = v.len(),
                    "probe answered for another number of payments"
                );
                return refuse(shared, replies);
            }
            Err(e) => {
                tracing::warn!(error = %e, "probe answer does not decode");
                return refuse(shared, replies);
            }
        },
        Err(e) if super::verify::is_transport_failure(&e) => {
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(ProbeError::Transport(message.clone())));
            }
            return;
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "the node refused the coalesced verification call (state overrides?); verifying one by one for {}s",
                REFUSED_BACKOFF.as_secs()
            );
            return refuse(shared, replies);
        }
    };
    shared.calls.fetch_add(1, Ordering::Relaxed);
    shared
        .payments
        .fetch_add(replies.len() as u64, Ordering::Relaxed);
    shared.largest.fetch_max(replies.len(), Ordering::Relaxed);
    for (reply, verdict) in replies.into_iter().zip(verdicts) {
        let outcome = match verdict.status {
            1 => DryRun::Succeeded,
            2 => DryRun::Reverted(verdict.output),
            _ => DryRun::NotJudged,
        };
        let _ = reply.send(Ok(Probed {
            payer_has_code: !verdict.payerCodeSize.is_zero(),
            outcome,
        }));
    }
}

fn refuse(shared: &Shared, replies: Vec<Reply>) {
    shared.refuse_for_a_while();
    for reply in replies {
        let _ = reply.send(Err(ProbeError::Refused));
    }
}
