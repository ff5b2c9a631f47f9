//! The seller's channel manager: `batch-settlement` vouchers taken without a facilitator round
//! trip per request.
//!
//! [`ChannelManager`] wraps the seller's facilitator and is itself a
//! [`Facilitator`](tollgate_core::Facilitator), so the paywall (or any gate) runs it unchanged:
//!
//! - `/verify` of a **voucher** is answered locally — the channel's terms, the voucher's
//!   signature (one public-key recovery against the channel's EOA payer authorizer), the
//!   cumulative rule `maxClaimableAmount == charged + price`, and the mirrored balance — and the
//!   facilitator is asked only when the mirror is stale, the channel is new to this seller, or
//!   its vouchers need an EIP-1271 check. A voucher whose ceiling is not the expected one gets
//!   the corrective refusal (`invalid_batch_settlement_evm_cumulative_amount_mismatch`, with
//!   `channelState` and the last signed voucher in `extra`) so the client can resync. One request
//!   per channel at a time: another voucher on a channel whose request is in flight is refused
//!   `invalid_batch_settlement_evm_channel_busy`.
//! - `/settle` of a voucher — called by the gate only after the handler succeeded, with the
//!   charge as `amount` (the scheme is metered: at most the price) — commits the charge and the
//!   voucher to the [`ChannelStore`] before answering, and answers the voucher-only receipt
//!   (`transaction: ""`, `extra.chargedAmount`, `extra.channelState`). Nothing moves on chain.
//! - **Deposits** go to the facilitator (verified, then sent), and their charge is committed
//!   the same way.
//! - [`ChannelManager::claim`] claims every channel's charged value in batches (one
//!   transaction per receiver authorizer and up to [`MAX_CLAIM_ROWS`] channels) and sweeps it
//!   to the receivers; [`ChannelManager::spawn_claimer`] does it in the background on an
//!   interval, or sooner when the unclaimed value passes a threshold or a payer starts a timed
//!   withdrawal.
//!
//! - **Refunds** (`type: "refund"`, the spec's cooperative refund flow) are payment operations:
//!   the paywall learns that from [`BatchSettlementEvmServer`](super::BatchSettlementEvmServer)
//!   ([`SchemeServer::operation`](tollgate_core::SchemeServer::operation)), verifies and settles
//!   them here and answers without running the handler — so a seller taking refunds registers
//!   that scheme server with its paywall, as it must anyway to offer the scheme. `/verify` holds
//!   the channel like a voucher, always asks the facilitator (the voucher's signature, the
//!   chain's state) and requires the zero-charge ceiling `maxClaimableAmount == charged` (else
//!   the corrective refusal). `/settle` completes the request — the amount (everything
//!   unclaimed when omitted, at most that), the mirrored `refundNonce`, a claim of the charged
//!   amount with the refund's own voucher, and the receiver authorizer's `ClaimBatch` and
//!   `Refund` signatures when the seller holds that key — and has the facilitator send it; the
//!   record is then deleted (full refund) or its mirror updated (partial), and what the refund
//!   claimed is swept to the receiver.

mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Map, Value};
use tollgate_core::{BoxFuture, Facilitator, FacilitatorError};
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, IdempotencyKey, PaymentPayload, PaymentRequirements, Scheme,
    SettleResponse, SupportedResponse, VerifyResponse,
};

#[cfg(feature = "channel-postgres")]
pub use store::PgChannelStore;
#[cfg(feature = "channel-sqlite")]
pub use store::SqliteChannelStore;
pub use store::{ChannelRecord, ChannelStore, Expected, MemoryChannelStore, StoreError};

use super::{
    check_requirements, check_terms, parse_payload, sign_claim_batch, sign_refund, BatchPayload,
    BatchReason, ChannelSnapshot, ClaimRow, ClaimVoucher, RefundPayload, SignedVoucher,
    VoucherError, VoucherVerifier,
};
use crate::client::unix_now;

/// The most channels one claim transaction carries.
pub const MAX_CLAIM_ROWS: usize = 100;

/// How the manager trusts its mirror of the chain and holds channels.
#[derive(Debug, Clone)]
pub struct ChannelManagerConfig {
    /// A channel's mirrored balance older than this is read again (through the facilitator's
    /// `/verify`) before a voucher is taken against it.
    pub sync_after: Duration,
    /// How long a verified voucher holds its channel while its request runs; after that a
    /// different voucher may take the channel (the first request's settle is then refused).
    pub busy_lease: Duration,
    /// The receiver authorizer's key, when the seller holds it: claims are signed here.
    /// Without it, the facilitator's receiver authorizer signs (the channel must name it).
    pub authorizer: Option<PrivateKeySigner>,
}

impl Default for ChannelManagerConfig {
    fn default() -> Self {
        Self {
            sync_after: Duration::from_secs(30),
            busy_lease: Duration::from_secs(60),
            authorizer: None,
        }
    }
}

/// The key a request holds its channel under: the voucher's ceiling and signature and the
/// request's attempt key (`Idempotency-Key`), hashed. Only that very attempt — its own `/settle`
/// and the retries of it — holds the channel: a copy of the voucher presented by another
/// request (a replay, or the same voucher sent to another replica sharing the store) is refused
/// busy while it is held, so one voucher reaches one handler. The gate abandons an attempt
/// whose handler failed ([`Facilitator::abandon`]), which releases the hold, so the buyer's
/// retry with the same voucher — a new attempt — takes the channel at once. Without an attempt
/// key, the voucher alone is the key, and the same voucher may take its channel again.
fn hold_key(voucher: &SignedVoucher, attempt: Option<&IdempotencyKey>) -> B256 {
    let mut bytes = voucher.max_claimable_amount.to_be_bytes().to_vec();
    bytes.extend_from_slice(&voucher.signature);
    let voucher = alloy::primitives::keccak256(bytes);
    match attempt {
        None => voucher,
        Some(attempt) => {
            let mut bytes = voucher.to_vec();
            bytes.extend_from_slice(attempt.as_str().as_bytes());
            alloy::primitives::keccak256(bytes)
        }
    }
}

struct Shared<F> {
    facilitator: F,
    store: Arc<dyn ChannelStore>,
    config: ChannelManagerConfig,
    /// Claims that moved value, since this manager started (for metrics).
    claim_rounds: std::sync::atomic::AtomicU64,
}

/// The seller's channel manager in front of facilitator `F` (see the module docs). Cheap to
/// clone; clones share the store and the in-flight table.
pub struct ChannelManager<F> {
    shared: Arc<Shared<F>>,
}

impl<F> Clone for ChannelManager<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F> std::fmt::Debug for ChannelManager<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelManager")
            .field("config", &self.shared.config.sync_after)
            .finish_non_exhaustive()
    }
}

/// What one [`ChannelManager::claim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimReport {
    /// Channels whose charged value was claimed.
    pub channels: usize,
    /// The value claimed, in atomic units.
    pub claimed: u128,
    /// The value swept to receivers.
    pub swept: u128,
    /// Claim and sweep transactions.
    pub transactions: Vec<String>,
}

/// Why a claim round failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The facilitator could not be asked.
    #[error(transparent)]
    Facilitator(#[from] FacilitatorError),
    /// The facilitator refused the claim or the sweep.
    #[error("the facilitator refused the {what}: {reason}: {message}")]
    Refused {
        /// `claim` or `sweep`.
        what: &'static str,
        /// Its reason code.
        reason: String,
        /// Its message.
        message: String,
    },
}

/// The manager's channels at a glance (for metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Channels known.
    pub channels: usize,
    /// Value charged and not claimed, in atomic units.
    pub unclaimed: u128,
    /// Seconds since the oldest unclaimed paid request (0 when nothing is unclaimed).
    pub claim_lag_secs: u64,
    /// Channels whose payer started a timed withdrawal.
    pub withdrawing: usize,
}

fn invalid(
    reason: BatchReason,
    message: impl Into<String>,
    payer: Option<Address>,
) -> VerifyResponse {
    VerifyResponse::invalid(
        reason.into(),
        Some(message.into()),
        payer.map(|p| p.to_string()),
    )
}

fn settle_failure(
    requirements: &PaymentRequirements,
    reason: ErrorReason,
    message: String,
    payer: Address,
) -> SettleResponse {
    SettleResponse::failure(
        reason,
        Some(message),
        requirements.network.clone(),
        Some(payer.to_string()),
        None,
    )
}

impl<F: Facilitator> ChannelManager<F> {
    /// A manager in front of `facilitator`, keeping channels in `store`.
    pub fn new(facilitator: F, store: Arc<dyn ChannelStore>, config: ChannelManagerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                facilitator,
                store,
                config,
                claim_rounds: Default::default(),
            }),
        }
    }

    /// The facilitator behind it.
    pub fn facilitator(&self) -> &F {
        &self.shared.facilitator
    }

    /// How many claim transactions this manager has sent since it started (for metrics).
    pub fn claim_rounds(&self) -> u64 {
        self.shared
            .claim_rounds
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ChannelStore> {
        &self.shared.store
    }

    fn unavailable(e: StoreError) -> FacilitatorError {
        FacilitatorError::Unavailable(e.to_string())
    }

    /// Lets go of channel `id` if the request keyed `key` ([`hold_key`]) holds it; a failure
    /// only delays the next request until the hold's lease ends.
    async fn release(&self, id: B256, key: B256) {
        if let Err(e) = self.shared.store.release(id, key).await {
            tracing::warn!(error = %e, "could not release a channel hold");
        }
    }

    /// The terms of `voucher` under `config` ([`check_terms`]); the config's hash is not
    /// computed again when it is the config stored under the voucher's channel id (which was
    /// bound to that id when the record was made).
    fn bind(
        stored: Option<&ChannelRecord>,
        config: &super::ChannelConfig,
        voucher: &SignedVoucher,
        requirements: &PaymentRequirements,
        chain_id: u64,
    ) -> Result<B256, (BatchReason, String)> {
        match stored {
            Some(r) if r.channel_id == voucher.channel_id && r.config == *config => {
                check_requirements(config, requirements).map(|()| r.channel_id)
            }
            _ => check_terms(config, voucher, requirements, chain_id),
        }
    }

    /// The corrective refusal: the client's ceiling is not `charged + price`; the seller's
    /// state and last signed voucher go in `extra` so the client can check and adopt them.
    fn mismatch(record: &ChannelRecord, got: u128, expected: u128) -> VerifyResponse {
        let mut extra = Map::new();
        extra.insert(
            "channelState".into(),
            record.snapshot().to_json_map().into(),
        );
        if let Some(signature) = &record.signature {
            extra.insert(
                "voucherState".into(),
                json!({
                    "signedMaxClaimable": record.signed_max.to_string(),
                    "signature": signature,
                }),
            );
        }
        VerifyResponse {
            extra: Some(extra),
            ..invalid(
                BatchReason::CumulativeAmountMismatch,
                format!("voucher ceiling {got} is not the expected {expected}"),
                Some(record.config.payer),
            )
        }
    }

    /// A new record of `config`'s channel, from the chain's state.
    fn new_record(
        id: B256,
        config: &super::ChannelConfig,
        requirements: &PaymentRequirements,
        snapshot: &ChannelSnapshot,
        now: u64,
    ) -> ChannelRecord {
        // A channel new to this seller starts from what is claimed on chain: anything the
        // payer signed beyond that, this seller never served (or lost with its state).
        ChannelRecord {
            channel_id: id,
            config: config.clone(),
            requirements: requirements.clone(),
            charged: snapshot.total_claimed,
            signed_max: snapshot.total_claimed,
            signature: None,
            balance: snapshot.balance,
            total_claimed: snapshot.total_claimed,
            withdraw_requested_at: snapshot.withdraw_requested_at,
            refund_nonce: snapshot.refund_nonce,
            synced_at: now,
            last_request_at: 0,
        }
    }

    /// Binds `config` to `voucher`'s channel ([`bind`](Self::bind)), holds the channel for
    /// this attempt ([`hold_key`]), reads its record again under the hold, and runs `held`
    /// with the channel id and that record; lets go of the channel on every refusal. Vouchers,
    /// deposits and refunds all take their channel this way, so one request at a time is
    /// judged against it, across replicas sharing the store.
    async fn verify_holding<Fut>(
        &self,
        (attempt, requirements, chain_id): (Option<&IdempotencyKey>, &PaymentRequirements, u64),
        (config, voucher): (&super::ChannelConfig, &SignedVoucher),
        held: impl FnOnce(B256, Option<ChannelRecord>) -> Fut,
    ) -> Result<VerifyResponse, FacilitatorError>
    where
        Fut: std::future::Future<Output = Result<VerifyResponse, FacilitatorError>>,
    {
        let payer = Some(config.payer);
        let store = &self.shared.store;
        let stored = store
            .load(voucher.channel_id)
            .await
            .map_err(Self::unavailable)?;
        let id = match Self::bind(stored.as_ref(), config, voucher, requirements, chain_id) {
            Ok(id) => id,
            Err((reason, message)) => return Ok(invalid(reason, message, payer)),
        };
        // The request in flight decides the next expected ceiling: until it ends, no other
        // request is judged against the channel. Held from here; let go on every refusal.
        let key = hold_key(voucher, attempt);
        if !store
            .hold(id, key, self.shared.config.busy_lease)
            .await
            .map_err(Self::unavailable)?
        {
            return Ok(invalid(
                BatchReason::ChannelBusy,
                "another request of this channel is in flight; retry shortly",
                payer,
            ));
        }
        // Read again under the hold: the record read before it may predate the commit of the
        // request that held the channel meanwhile (on another replica), and a payment judged
        // against it would reach the handler only to be refused at settlement.
        let stored = match stored {
            Some(_) => match store.load(id).await {
                Ok(stored) => stored,
                Err(e) => {
                    self.release(id, key).await;
                    return Err(Self::unavailable(e));
                }
            },
            None => None,
        };
        let answer = held(id, stored).await;
        if !matches!(&answer, Ok(v) if v.is_valid) {
            self.release(id, key).await;
        }
        answer
    }

    #[allow(clippy::too_many_arguments)]
    async fn verify_voucher(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
        requirements: &PaymentRequirements,
        chain_id: u64,
        config: &super::ChannelConfig,
        voucher: &SignedVoucher,
        deposit: Option<u128>,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let judged = |id, stored| {
            self.verify_held(
                request,
                requirements,
                chain_id,
                config,
                voucher,
                deposit,
                id,
                stored,
            )
        };
        let context = (attempt, requirements, chain_id);
        self.verify_holding(context, (config, voucher), judged)
            .await
    }

    /// [`verify_voucher`](Self::verify_voucher) once the channel is held.
    #[allow(clippy::too_many_arguments)]
    async fn verify_held(
        &self,
        request: &FacilitatorRequest,
        requirements: &PaymentRequirements,
        chain_id: u64,
        config: &super::ChannelConfig,
        voucher: &SignedVoucher,
        deposit: Option<u128>,
        id: B256,
        stored: Option<ChannelRecord>,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let payer = Some(config.payer);
        let store = &self.shared.store;
        let now = unix_now();
        let stale = stored
            .as_ref()
            .is_none_or(|r| r.synced_at + self.shared.config.sync_after.as_secs() <= now);
        let local_signature = config.payer_authorizer != Address::ZERO;
        let stored_charged = stored.as_ref().map(|r| r.charged);
        let price = requirements.amount.get().saturating_to::<u128>();
        // With a fresh record the cumulative rule is decided before anything is asked.
        if let Some(record) = stored.as_ref().filter(|_| !stale) {
            let expected = record.charged.saturating_add(price);
            if voucher.max_claimable_amount != expected {
                return Ok(Self::mismatch(
                    record,
                    voucher.max_claimable_amount,
                    expected,
                ));
            }
        }
        let (mut record, answer) = if stale || !local_signature || deposit.is_some() {
            // Ask the facilitator: the chain's state, the signature (EIP-1271), the deposit.
            let answer = self.shared.facilitator.verify(request, None).await?;
            if !answer.is_valid {
                return Ok(answer);
            }
            let snapshot: Option<ChannelSnapshot> = answer
                .extra
                .as_ref()
                .and_then(|e| serde_json::from_value(Value::Object(e.clone())).ok());
            let Some(snapshot) = snapshot else {
                return Err(FacilitatorError::BadResponse(
                    "a batch-settlement /verify without the channel's state".into(),
                ));
            };
            let record = match stored {
                Some(mut r) => {
                    r.mirror(&snapshot, now);
                    r
                }
                None => Self::new_record(id, config, requirements, &snapshot, now),
            };
            (record, Some(answer))
        } else {
            let Some(record) = stored else {
                unreachable!("a missing record is stale");
            };
            if let Err(e) = VoucherVerifier::new(chain_id).verify_signature(config, voucher) {
                let reason = match e {
                    VoucherError::ChannelIdMismatch { .. } => BatchReason::ChannelIdMismatch,
                    _ => BatchReason::VoucherSignature,
                };
                return Ok(invalid(reason, e.to_string(), payer));
            }
            (record, None)
        };
        // The mirror is stored only over the very record it was read from: another instance
        // may have committed since.
        let expected_stored = match &stored_charged {
            Some(c) => Expected::Charged(*c),
            None => Expected::Absent,
        };
        let expected = record.charged.saturating_add(price);
        if voucher.max_claimable_amount != expected {
            if answer.is_some() {
                if let Err(e) = store.save_if(record.clone(), expected_stored).await {
                    tracing::warn!(error = %e, "could not store a channel's mirror");
                }
            }
            return Ok(Self::mismatch(
                &record,
                voucher.max_claimable_amount,
                expected,
            ));
        }
        let balance = record.balance.saturating_add(deposit.unwrap_or(0));
        if voucher.max_claimable_amount > balance {
            return Ok(invalid(
                BatchReason::CumulativeExceedsBalance,
                format!(
                    "voucher ceiling {} exceeds the channel balance {balance}",
                    voucher.max_claimable_amount
                ),
                payer,
            ));
        }
        if answer.is_some() {
            // Stored with the mirror; a voucher checked locally stores nothing until its commit.
            record.requirements = requirements.clone();
            if !store
                .save_if(record.clone(), expected_stored)
                .await
                .map_err(Self::unavailable)?
            {
                return Ok(invalid(
                    BatchReason::ChannelBusy,
                    "the channel changed while this request was verified; retry shortly",
                    payer,
                ));
            }
        }
        Ok(VerifyResponse {
            extra: Some(record.snapshot().to_json_map()),
            ..VerifyResponse::valid(config.payer.to_string())
        })
    }

    /// Commits `charge` under `voucher` (after the handler succeeded) and answers the receipt.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        attempt: Option<&IdempotencyKey>,
        requirements: &PaymentRequirements,
        chain_id: u64,
        config: &super::ChannelConfig,
        voucher: &SignedVoucher,
        mut record: ChannelRecord,
        (transaction, amount): (String, Option<tollgate_proto::AtomicAmount>),
    ) -> Result<SettleResponse, FacilitatorError> {
        let charge = requirements.amount.get().saturating_to::<u128>();
        let fail = |reason: BatchReason, message: String| {
            Ok(settle_failure(
                requirements,
                reason.into(),
                message,
                config.payer,
            ))
        };
        // No shortcut for a voucher seen before: the ceiling is cumulative, so committing the
        // same voucher again is allowed only while the charges stay within it (a request the
        // seller charged less than the price for leaves room under the same ceiling, and a
        // replay of it is charged again, within what the payer signed).
        if voucher.max_claimable_amount < record.signed_max
            || voucher.max_claimable_amount <= record.charged
        {
            return fail(
                BatchReason::CumulativeAmountMismatch,
                format!(
                    "voucher ceiling {} is not above the charged {}",
                    voucher.max_claimable_amount, record.charged
                ),
            );
        }
        if record.charged.saturating_add(charge) > voucher.max_claimable_amount {
            return fail(
                BatchReason::ChargeExceedsSignedCumulative,
                format!(
                    "charging {charge} over {} exceeds the signed {}",
                    record.charged, voucher.max_claimable_amount
                ),
            );
        }
        // The voucher is stored only after a signature check: the one this manager made when it
        // verified this very voucher for this very attempt (held in flight under [`hold_key`];
        // `check_terms` above bound the config to its channel id again), or one made now.
        let key = hold_key(voucher, attempt);
        let held = self
            .shared
            .store
            .holds(record.channel_id, key)
            .await
            .map_err(Self::unavailable)?;
        if !held {
            if config.payer_authorizer == Address::ZERO {
                // Only the facilitator can check this payer's (EIP-1271) signature, and its
                // check of this voucher is no longer held here.
                return fail(
                    BatchReason::VoucherSignature,
                    "the voucher's verification has lapsed; present it again".into(),
                );
            }
            if let Err(e) = VoucherVerifier::new(chain_id).verify(config, voucher) {
                return fail(BatchReason::VoucherSignature, e.to_string());
            }
        }
        let before = record.charged;
        record.charged += charge;
        record.signed_max = voucher.max_claimable_amount;
        record.signature = Some(voucher.signature.clone());
        record.last_request_at = unix_now();
        record.requirements = requirements.clone();
        // Compare-and-swap on the charged amount: of two instances committing on the same
        // state (the same voucher presented to both), one wins; the other delivers nothing.
        let committed = self
            .shared
            .store
            .save_if(record.clone(), Expected::Charged(before))
            .await
            .map_err(Self::unavailable)?;
        self.release(record.channel_id, key).await;
        if !committed {
            return fail(
                BatchReason::CumulativeAmountMismatch,
                "another request of this channel was committed first".into(),
            );
        }
        let mut extra = Map::new();
        extra.insert("chargedAmount".into(), charge.to_string().into());
        extra.insert(
            "channelState".into(),
            record.snapshot().to_json_map().into(),
        );
        Ok(SettleResponse {
            amount,
            extra: Some(Box::new(extra)),
            ..SettleResponse::success(
                transaction,
                requirements.network.clone(),
                config.payer.to_string(),
            )
        })
    }

    async fn settle_payload(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
        requirements: &PaymentRequirements,
        chain_id: u64,
        payload: BatchPayload,
    ) -> Result<SettleResponse, FacilitatorError> {
        let unavailable = |e: StoreError| FacilitatorError::Unavailable(e.to_string());
        match payload {
            BatchPayload::Voucher(p) => {
                let id = p.voucher.channel_id;
                let Some(record) = self.shared.store.load(id).await.map_err(unavailable)? else {
                    return Ok(settle_failure(
                        requirements,
                        BatchReason::MissingChannel.into(),
                        format!("no channel {id} is known to this seller"),
                        p.channel_config.payer,
                    ));
                };
                if let Err((reason, message)) = Self::bind(
                    Some(&record),
                    &p.channel_config,
                    &p.voucher,
                    requirements,
                    chain_id,
                ) {
                    return Ok(settle_failure(
                        requirements,
                        reason.into(),
                        message,
                        p.channel_config.payer,
                    ));
                }
                self.commit(
                    attempt,
                    requirements,
                    chain_id,
                    &p.channel_config,
                    &p.voucher,
                    record,
                    (String::new(), None),
                )
                .await
            }
            BatchPayload::Deposit(p) => {
                let answer = self.shared.facilitator.settle(request, attempt).await?;
                if !answer.success {
                    self.release(p.voucher.channel_id, hold_key(&p.voucher, attempt))
                        .await;
                    return Ok(answer);
                }
                let snapshot: Option<ChannelSnapshot> = answer
                    .extra
                    .as_ref()
                    .and_then(|e| e.get("channelState"))
                    .and_then(|s| serde_json::from_value(s.clone()).ok());
                let Some(snapshot) = snapshot else {
                    return Err(FacilitatorError::BadResponse(
                        "a batch-settlement deposit settlement without the channel's state".into(),
                    ));
                };
                let id = p.voucher.channel_id;
                let now = unix_now();
                let store = &self.shared.store;
                let record = match store.load(id).await.map_err(unavailable)? {
                    Some(mut r) => {
                        r.mirror(&snapshot, now);
                        r
                    }
                    None => {
                        let r =
                            Self::new_record(id, &p.channel_config, requirements, &snapshot, now);
                        if !store
                            .save_if(r.clone(), Expected::Absent)
                            .await
                            .map_err(unavailable)?
                        {
                            // Another instance made the record meanwhile: commit on its.
                            match store.load(id).await.map_err(unavailable)? {
                                Some(r) => r,
                                None => r,
                            }
                        } else {
                            r
                        }
                    }
                };
                self.commit(
                    attempt,
                    requirements,
                    chain_id,
                    &p.channel_config,
                    &p.voucher,
                    record,
                    (answer.transaction.clone(), answer.amount),
                )
                .await
            }
            BatchPayload::Refund(p) => {
                self.settle_refund(request, attempt, requirements, chain_id, p)
                    .await
            }
            other => Ok(settle_failure(
                requirements,
                BatchReason::PayloadType.into(),
                format!("a {} payload is not a paid request", other.kind()),
                Address::ZERO,
            )),
        }
    }

    /// `/verify` of a client's refund request (see the module docs): held like a voucher, the
    /// facilitator always asked, the zero-charge rule `maxClaimableAmount == charged`.
    async fn verify_refund(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
        requirements: &PaymentRequirements,
        chain_id: u64,
        p: &RefundPayload,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let (config, voucher) = (&p.channel_config, &p.voucher);
        let payer = Some(config.payer);
        if p.amount == Some(0) {
            return Ok(invalid(
                BatchReason::RefundAmountInvalid,
                "a refund amount must be positive",
                payer,
            ));
        }
        if p.refund_nonce.is_some()
            || p.claims.is_some()
            || p.refund_authorizer_signature.is_some()
            || p.claim_authorizer_signature.is_some()
        {
            return Ok(invalid(
                BatchReason::RefundPayload,
                "a refund request carries the channel, the zero-charge voucher and an optional amount; the seller completes the rest",
                payer,
            ));
        }
        let judged = |id, stored| {
            self.verify_refund_held(request, requirements, config, voucher, id, stored)
        };
        self.verify_holding((attempt, requirements, chain_id), (config, voucher), judged)
            .await
    }

    /// [`verify_refund`](Self::verify_refund) once the channel is held.
    async fn verify_refund_held(
        &self,
        request: &FacilitatorRequest,
        requirements: &PaymentRequirements,
        config: &super::ChannelConfig,
        voucher: &SignedVoucher,
        id: B256,
        stored: Option<ChannelRecord>,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let payer = Some(config.payer);
        // The facilitator checks the voucher's signature (whatever the payer's authorizer)
        // and reads the chain; without an attempt key: the request is completed before it is
        // settled, under the key of its refund nonce.
        let answer = self.shared.facilitator.verify(request, None).await?;
        if !answer.is_valid {
            return Ok(answer);
        }
        let Some(snapshot) = answer
            .extra
            .as_ref()
            .and_then(|e| serde_json::from_value::<ChannelSnapshot>(Value::Object(e.clone())).ok())
        else {
            return Err(FacilitatorError::BadResponse(
                "a batch-settlement /verify without the channel's state".into(),
            ));
        };
        let now = unix_now();
        let expected_stored = match &stored {
            Some(r) => Expected::Charged(r.charged),
            None => Expected::Absent,
        };
        let record = match stored {
            Some(mut r) => {
                r.mirror(&snapshot, now);
                r
            }
            None => Self::new_record(id, config, requirements, &snapshot, now),
        };
        if voucher.max_claimable_amount != record.charged {
            if let Err(e) = self
                .shared
                .store
                .save_if(record.clone(), expected_stored)
                .await
            {
                tracing::warn!(error = %e, "could not store a channel's mirror");
            }
            return Ok(Self::mismatch(
                &record,
                voucher.max_claimable_amount,
                record.charged,
            ));
        }
        if record.balance <= record.charged {
            return Ok(invalid(
                BatchReason::RefundNoBalance,
                format!(
                    "channel {id} has nothing left to refund: its balance {} is charged",
                    record.balance
                ),
                payer,
            ));
        }
        if !self
            .shared
            .store
            .save_if(record.clone(), expected_stored)
            .await
            .map_err(Self::unavailable)?
        {
            return Ok(invalid(
                BatchReason::ChannelBusy,
                "the channel changed while this refund was verified; retry shortly",
                payer,
            ));
        }
        Ok(VerifyResponse {
            extra: Some(record.snapshot().to_json_map()),
            ..VerifyResponse::valid(config.payer.to_string())
        })
    }

    /// `/settle` of a verified refund request: completed, sent by the facilitator, and the
    /// record deleted (full) or mirrored (partial); the hold is let go in every case but a
    /// facilitator that gave no answer (the gate retries under the same attempt key).
    async fn settle_refund(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
        requirements: &PaymentRequirements,
        chain_id: u64,
        p: RefundPayload,
    ) -> Result<SettleResponse, FacilitatorError> {
        let (config, voucher) = (p.channel_config.clone(), p.voucher.clone());
        let fail = |reason: BatchReason, message: String| {
            Ok(settle_failure(
                requirements,
                reason.into(),
                message,
                config.payer,
            ))
        };
        let store = &self.shared.store;
        let id = voucher.channel_id;
        let Some(record) = store.load(id).await.map_err(Self::unavailable)? else {
            return fail(
                BatchReason::MissingChannel,
                format!("no channel {id} is known to this seller"),
            );
        };
        if let Err((reason, message)) =
            Self::bind(Some(&record), &config, &voucher, requirements, chain_id)
        {
            return fail(reason, message);
        }
        // Only the request whose verification holds the channel: nothing was charged since.
        let key = hold_key(&voucher, attempt);
        if !store.holds(id, key).await.map_err(Self::unavailable)? {
            return fail(
                BatchReason::ChannelBusy,
                "the refund's verification has lapsed; present it again".into(),
            );
        }
        let settled = self
            .settle_refund_held(request, attempt, requirements, chain_id, p, record)
            .await;
        if settled.is_ok() {
            self.release(id, key).await;
        }
        settled
    }

    /// [`settle_refund`](Self::settle_refund) once the hold is checked.
    async fn settle_refund_held(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
        requirements: &PaymentRequirements,
        chain_id: u64,
        p: RefundPayload,
        mut record: ChannelRecord,
    ) -> Result<SettleResponse, FacilitatorError> {
        let (config, voucher) = (&p.channel_config, &p.voucher);
        let fail = |reason: BatchReason, message: String| {
            Ok(settle_failure(
                requirements,
                reason.into(),
                message,
                config.payer,
            ))
        };
        if voucher.max_claimable_amount != record.charged {
            return fail(
                BatchReason::CumulativeAmountMismatch,
                format!(
                    "refund voucher ceiling {} is not the charged {}",
                    voucher.max_claimable_amount, record.charged
                ),
            );
        }
        let remainder = record.balance.saturating_sub(record.charged);
        if remainder == 0 {
            return fail(
                BatchReason::RefundNoBalance,
                format!("channel {} has nothing left to refund", record.channel_id),
            );
        }
        // The contract caps a refund at what is unclaimed; the signature binds the amount, so
        // it is capped here.
        let amount = p.amount.unwrap_or(remainder).min(remainder);
        let nonce = record.refund_nonce;
        // What is charged is claimed first, with the refund's own zero-charge voucher (its
        // ceiling is the charged amount): a no-op row when it is claimed already.
        let claims = vec![ClaimRow {
            voucher: ClaimVoucher {
                channel: config.clone(),
                max_claimable_amount: voucher.max_claimable_amount,
            },
            signature: voucher.signature.clone(),
            total_claimed: record.charged,
        }];
        let mut completed = RefundPayload {
            amount: Some(amount),
            refund_nonce: Some(nonce),
            claims: Some(claims),
            ..p.clone()
        };
        if let Some(key) = self
            .shared
            .config
            .authorizer
            .as_ref()
            .filter(|k| k.address() == config.receiver_authorizer)
        {
            let signing = |e: alloy::signers::Error| {
                FacilitatorError::Unavailable(format!(
                    "the receiver authorizer could not sign: {e}"
                ))
            };
            completed.refund_authorizer_signature = Some(
                sign_refund(key, record.channel_id, nonce, amount, chain_id)
                    .await
                    .map_err(signing)?,
            );
            completed.claim_authorizer_signature = Some(
                sign_claim_batch(
                    key,
                    completed.claims.as_deref().unwrap_or_default(),
                    chain_id,
                )
                .await
                .map_err(signing)?,
            );
        }
        let Value::Object(payload) = serde_json::to_value(BatchPayload::Refund(completed))
            .map_err(|e| FacilitatorError::BadResponse(e.to_string()))?
        else {
            unreachable!("a refund payload serializes to an object");
        };
        let FacilitatorRequest::V2 {
            payment_payload, ..
        } = request
        else {
            unreachable!("batch-settlement payments are v2");
        };
        let completed = FacilitatorRequest::V2 {
            payment_payload: PaymentPayload {
                payload,
                ..payment_payload.clone()
            },
            payment_requirements: requirements.clone(),
        };
        let mut answer = self.shared.facilitator.settle(&completed, attempt).await?;
        if !answer.success {
            return Ok(answer);
        }
        let snapshot: Option<ChannelSnapshot> = answer
            .extra
            .as_ref()
            .and_then(|e| e.get("channelState"))
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let claimed_before = record.total_claimed;
        let expected = Expected::Charged(record.charged);
        match snapshot {
            Some(snapshot) if snapshot.balance <= record.charged => {
                // Nothing left to refund or charge: the channel is done with this seller.
                if let Err(e) = self
                    .shared
                    .store
                    .remove_if(record.channel_id, expected)
                    .await
                {
                    tracing::warn!(error = %e, "could not delete a refunded channel");
                }
            }
            Some(snapshot) => {
                record.mirror(&snapshot, unix_now());
                if let Err(e) = self.shared.store.save_if(record.clone(), expected).await {
                    tracing::warn!(error = %e, "could not store a refunded channel's mirror");
                }
                let mut state = snapshot.clone();
                state.charged_cumulative_amount = Some(record.charged);
                let mut extra = Map::new();
                extra.insert("channelState".into(), state.to_json_map().into());
                answer.extra = Some(Box::new(extra));
            }
            None => {
                // Refunded, state unknown: read again before the next voucher is taken.
                tracing::warn!(channel = %record.channel_id, "a refund settled without the channel's state");
                record.synced_at = 0;
                if let Err(e) = self.shared.store.save_if(record.clone(), expected).await {
                    tracing::warn!(error = %e, "could not mark a refunded channel stale");
                }
            }
        }
        if record.charged > claimed_before {
            // The refund claimed what was charged: move it to the receiver now (a deleted
            // record would not bring it to the next claim round).
            let sweep =
                json!({"type": "settle", "receiver": config.receiver, "token": config.token});
            match self.send(requirements, sweep).await {
                Ok(s) if s.success => {}
                Ok(s) => {
                    tracing::warn!(reason = ?s.error_reason, message = ?s.error_message, "the sweep after a refund was refused")
                }
                Err(e) => tracing::warn!(error = %e, "the sweep after a refund failed"),
            }
        }
        Ok(answer)
    }

    /// Claims every channel's charged, unclaimed value (one claim per receiver authorizer and
    /// network, up to [`MAX_CLAIM_ROWS`] channels each), then sweeps what was claimed to each
    /// receiver. The mirror is updated from what the chain then says.
    pub async fn claim(&self) -> Result<ClaimReport, ClaimError> {
        let records = self.shared.store.unclaimed().await?;
        let mut report = ClaimReport::default();
        let mut groups: HashMap<(String, Address), Vec<ChannelRecord>> = HashMap::new();
        for r in records.into_iter().filter(|r| r.signature.is_some()) {
            groups
                .entry((
                    r.requirements.network.to_string(),
                    r.config.receiver_authorizer,
                ))
                .or_default()
                .push(r);
        }
        let mut sweeps: HashMap<(String, Address, Address), PaymentRequirements> = HashMap::new();
        for ((_, authorizer), group) in groups {
            for chunk in group.chunks(MAX_CLAIM_ROWS) {
                let rows: Vec<ClaimRow> = chunk
                    .iter()
                    .map(|r| ClaimRow {
                        voucher: ClaimVoucher {
                            channel: r.config.clone(),
                            max_claimable_amount: r.signed_max,
                        },
                        signature: r.signature.clone().unwrap_or_default(),
                        total_claimed: r.charged,
                    })
                    .collect();
                let requirements = chunk[0].requirements.clone();
                let chain_id = requirements.network.eip155_chain_id().unwrap_or_default();
                let mut payload = json!({"type": "claim", "claims": rows});
                if let Some(key) = self
                    .shared
                    .config
                    .authorizer
                    .as_ref()
                    .filter(|k| k.address() == authorizer)
                {
                    let signature = sign_claim_batch(key, &rows, chain_id).await.map_err(|e| {
                        ClaimError::Refused {
                            what: "claim",
                            reason: "signing".into(),
                            message: e.to_string(),
                        }
                    })?;
                    payload["claimAuthorizerSignature"] = json!(signature);
                }
                let answer = self.send(&requirements, payload).await?;
                if !answer.success {
                    return Err(ClaimError::Refused {
                        what: "claim",
                        reason: answer
                            .error_reason
                            .map(|r| r.to_string())
                            .unwrap_or_default(),
                        message: answer.error_message.unwrap_or_default(),
                    });
                }
                report.transactions.push(answer.transaction);
                self.shared
                    .claim_rounds
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for r in chunk {
                    let mut r = r.clone();
                    report.channels += 1;
                    report.claimed += r.unclaimed();
                    r.total_claimed = r.charged;
                    // Over the record the claim was built from; a newer one keeps its own
                    // mirror until the next claim or sync.
                    self.shared
                        .store
                        .save_if(r.clone(), Expected::Charged(r.charged))
                        .await?;
                    sweeps
                        .entry((
                            r.requirements.network.to_string(),
                            r.config.receiver,
                            r.config.token,
                        ))
                        .or_insert_with(|| r.requirements.clone());
                }
            }
        }
        for ((_, receiver, token), requirements) in sweeps {
            let answer = self
                .send(
                    &requirements,
                    json!({"type": "settle", "receiver": receiver, "token": token}),
                )
                .await?;
            let nothing = answer.error_reason.as_ref().map(|r| r.as_str())
                == Some(BatchReason::NothingToSettle.as_str());
            if !answer.success && !nothing {
                return Err(ClaimError::Refused {
                    what: "sweep",
                    reason: answer
                        .error_reason
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    message: answer.error_message.unwrap_or_default(),
                });
            }
            if answer.success {
                report.swept += answer
                    .amount
                    .map(|a| a.get().saturating_to::<u128>())
                    .unwrap_or(0);
                report.transactions.push(answer.transaction);
            }
        }
        Ok(report)
    }

    async fn send(
        &self,
        requirements: &PaymentRequirements,
        payload: Value,
    ) -> Result<SettleResponse, FacilitatorError> {
        let Value::Object(payload) = payload else {
            unreachable!("claim and sweep payloads are objects");
        };
        let request = FacilitatorRequest::V2 {
            payment_payload: PaymentPayload {
                x402_version: tollgate_proto::V2,
                resource: None,
                accepted: requirements.clone(),
                payload,
                extensions: None,
            },
            payment_requirements: requirements.clone(),
        };
        self.shared.facilitator.settle(&request, None).await
    }

    /// The channels at a glance.
    pub async fn stats(&self) -> Result<ChannelStats, StoreError> {
        let all = self.shared.store.all().await?;
        let now = unix_now();
        let mut stats = ChannelStats {
            channels: all.len(),
            ..ChannelStats::default()
        };
        for r in &all {
            stats.unclaimed += r.unclaimed();
            if r.withdraw_requested_at != 0 {
                stats.withdrawing += 1;
            }
            if r.unclaimed() > 0 && r.last_request_at > 0 {
                stats.claim_lag_secs = stats
                    .claim_lag_secs
                    .max(now.saturating_sub(r.last_request_at));
            }
        }
        Ok(stats)
    }
}

/// When the background claimer claims.
#[derive(Debug, Clone, Copy)]
pub struct ClaimPolicy {
    /// How often the unclaimed value is looked at.
    pub check_every: Duration,
    /// Claim at least this often while anything is unclaimed.
    pub interval: Duration,
    /// Claim as soon as this much is unclaimed (atomic units).
    pub threshold: u128,
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(5),
            interval: Duration::from_secs(300),
            threshold: 1_000_000,
        }
    }
}

/// The background claimer; stops when dropped.
#[derive(Debug)]
pub struct Claimer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Claimer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<F: Facilitator> ChannelManager<F> {
    /// Claims in the background per `policy`: after `interval`, when `threshold` is unclaimed,
    /// or at once when a payer has started a timed withdrawal (the seller must claim before it
    /// completes). Failures are logged and retried at the next check.
    pub fn spawn_claimer(&self, policy: ClaimPolicy) -> Claimer {
        let manager = self.clone();
        let task = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(policy.check_every).await;
                let stats = match manager.stats().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "claimer could not read the channels");
                        continue;
                    }
                };
                if stats.unclaimed == 0 {
                    continue;
                }
                let due = stats.unclaimed >= policy.threshold
                    || stats.withdrawing > 0
                    || last.elapsed() >= policy.interval;
                if !due {
                    continue;
                }
                match manager.claim().await {
                    Ok(report) => {
                        last = Instant::now();
                        tracing::info!(channels = report.channels, claimed = %report.claimed, swept = %report.swept, "channels claimed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed; retrying at the next check")
                    }
                }
            }
        });
        Claimer { task }
    }
}

/// The payment and requirements of a v2 `batch-settlement` request — what the manager handles
/// itself; anything else goes to the wrapped facilitator.
fn channel_payment(
    request: &FacilitatorRequest,
) -> Option<(&PaymentPayload, &PaymentRequirements)> {
    match request {
        FacilitatorRequest::V2 {
            payment_payload,
            payment_requirements,
        } if payment_requirements.scheme == Scheme::BatchSettlement => {
            Some((payment_payload, payment_requirements))
        }
        _ => None,
    }
}

impl<F: Facilitator> Facilitator for ChannelManager<F> {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            let Some((payment_payload, requirements)) = channel_payment(request) else {
                return self.shared.facilitator.verify(request, attempt).await;
            };
            let Some(chain_id) = requirements.network.eip155_chain_id() else {
                return Ok(invalid(
                    BatchReason::NetworkMismatch,
                    format!("{} is not an EVM network", requirements.network),
                    None,
                ));
            };
            if payment_payload.accepted.network != requirements.network {
                return Ok(invalid(
                    BatchReason::NetworkMismatch,
                    "payment for another network",
                    None,
                ));
            }
            match parse_payload(payment_payload) {
                Err((reason, message)) => Ok(invalid(reason, message, None)),
                Ok(BatchPayload::Voucher(p)) => {
                    self.verify_voucher(
                        request,
                        attempt,
                        requirements,
                        chain_id,
                        &p.channel_config,
                        &p.voucher,
                        None,
                    )
                    .await
                }
                Ok(BatchPayload::Deposit(p)) => {
                    self.verify_voucher(
                        request,
                        attempt,
                        requirements,
                        chain_id,
                        &p.channel_config,
                        &p.voucher,
                        Some(p.deposit.amount),
                    )
                    .await
                }
                Ok(BatchPayload::Refund(p)) => {
                    self.verify_refund(request, attempt, requirements, chain_id, &p)
                        .await
                }
                Ok(other) => Ok(invalid(
                    BatchReason::PayloadType,
                    format!(
                        "a {} payload is not a paid request this seller takes",
                        other.kind()
                    ),
                    None,
                )),
            }
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let Some((payment_payload, requirements)) = channel_payment(request) else {
                return self.shared.facilitator.settle(request, attempt).await;
            };
            let chain_id = requirements.network.eip155_chain_id().unwrap_or_default();
            match parse_payload(payment_payload) {
                Err((reason, message)) => Ok(SettleResponse::failure(
                    reason.into(),
                    Some(message),
                    requirements.network.clone(),
                    None,
                    None,
                )),
                Ok(payload) => {
                    self.settle_payload(request, attempt, requirements, chain_id, payload)
                        .await
                }
            }
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.shared.facilitator.supported()
    }

    /// Releases the channel held for `attempt`'s verification of a voucher, deposit or refund
    /// (nothing is charged); other payments' attempts are the wrapped facilitator's.
    fn abandon<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some((payment_payload, _)) = channel_payment(request) else {
                return self.shared.facilitator.abandon(request, attempt).await;
            };
            let voucher = match parse_payload(payment_payload) {
                Ok(BatchPayload::Voucher(p)) => p.voucher,
                Ok(BatchPayload::Deposit(p)) => p.voucher,
                Ok(BatchPayload::Refund(p)) => p.voucher,
                _ => return,
            };
            self.release(voucher.channel_id, hold_key(&voucher, attempt))
                .await;
        })
    }
}
