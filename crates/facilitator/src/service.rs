//! The facilitator as a library type: verify, settle (idempotently, with the ledger) and list
//! what is supported. The HTTP layer is a thin shell over this, and a resource server can embed
//! it in-process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use alloy::primitives::{B256, U256};
use tollgate_evm::{ExactEvmFacilitator, ExactEvmPayload, SettleError, Settlement};
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, Network, PaymentPayload, PaymentRequirements, Scheme,
    SettleResponse, SupportedKind, SupportedResponse, VerifyResponse, X402Version,
};

use crate::config::Config;
use crate::ledger::{Event, Ledger, LedgerEntry, LedgerError, PaymentKey, SettlementState};

/// Why the facilitator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration (including an unreadable signer key).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// No RPC endpoint of a network answered with the configured chain id.
    #[error("network {network}: no usable RPC endpoint ({detail})")]
    Rpc {
        /// The network.
        network: Network,
        /// What each endpoint said.
        detail: String,
    },
}

/// How a verification or settlement call ended, with the HTTP meaning attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Valid / settled.
    Ok(T),
    /// Sent but not confirmed yet (settlement only): the ledger will finish it.
    Pending(T),
    /// The payment is at fault.
    Rejected(T),
    /// The facilitator cannot reach the chain or its ledger; retry later.
    Unavailable(T),
}

impl<T> Outcome<T> {
    /// The response body.
    pub fn body(&self) -> &T {
        match self {
            Self::Ok(t) | Self::Pending(t) | Self::Rejected(t) | Self::Unavailable(t) => t,
        }
    }

    /// The response body, owned.
    pub fn into_body(self) -> T {
        match self {
            Self::Ok(t) | Self::Pending(t) | Self::Rejected(t) | Self::Unavailable(t) => t,
        }
    }
}

/// Default low-gas threshold of a signer: 0.001 ETH (wei).
pub const DEFAULT_MIN_SIGNER_BALANCE: u64 = 1_000_000_000_000_000;

/// A settlement signer, as `/health` and `/metrics` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerStatus {
    /// Its network.
    pub network: Network,
    /// Its address.
    pub address: alloy::primitives::Address,
    /// Native balance, if the node answered.
    pub balance_wei: Option<U256>,
    /// Balance below the network's threshold: settlements will soon fail for want of gas.
    pub low_on_gas: bool,
    /// Transactions sent and not yet seen mined.
    pub in_flight: usize,
}

/// What a startup reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Entries found confirmed on chain.
    pub confirmed: usize,
    /// Entries whose transfer failed or never happened (safe to settle again).
    pub failed: usize,
    /// Entries still unknown (e.g. a transaction still in the mempool).
    pub still_pending: usize,
}

/// Verifies and settles x402 payments on the configured networks, recording everything in the
/// ledger. Cheap to clone.
#[derive(Clone)]
pub struct Facilitator {
    inner: Arc<Inner>,
}

struct Inner {
    schemes: HashMap<Network, ExactEvmFacilitator>,
    /// Below this native balance a signer is reported as low on gas.
    min_signer_balance: HashMap<Network, U256>,
    ledger: Ledger,
    /// One async lock per payment in flight, so concurrent settles of one payment queue up
    /// instead of racing to the chain (and, within one process, to the ledger's claim).
    locks: Mutex<HashMap<PaymentKey, Weak<tokio::sync::Mutex<()>>>>,
    /// This instance's name on ledger claims; unique per process start.
    instance: String,
}

/// How often a settlement waits for a claim held by another instance.
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// A claim lasts this long unless renewed. Its owner renews it while settling, so it only
/// expires when the owner is gone — and then frees the payment within seconds.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// How often a held claim is renewed.
const CLAIM_RENEW: Duration = Duration::from_secs(3);

/// How much longer than the receipt timeout a settlement waits for another instance's claim.
const CLAIM_WAIT_MARGIN: Duration = Duration::from_secs(30);

/// Renews a held claim until dropped.
struct ClaimRenewal(tokio::task::JoinHandle<()>);

impl Drop for ClaimRenewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Facilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facilitator")
            .field("networks", &self.inner.schemes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Facilitator {
    /// A facilitator over ready-made scheme facilitators (one per network) and a ledger.
    ///
    /// Signers are reported low on gas below [`DEFAULT_MIN_SIGNER_BALANCE`] wei; see
    /// [`with_min_signer_balance`](Self::with_min_signer_balance).
    pub fn new(schemes: Vec<ExactEvmFacilitator>, ledger: Ledger) -> Self {
        Self::with_min_signer_balance(
            schemes
                .into_iter()
                .map(|s| (s, U256::from(DEFAULT_MIN_SIGNER_BALANCE)))
                .collect(),
            ledger,
        )
    }

    /// Like [`new`](Self::new), with each network's low-gas threshold for its signers (wei).
    pub fn with_min_signer_balance(
        schemes: Vec<(ExactEvmFacilitator, U256)>,
        ledger: Ledger,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                min_signer_balance: schemes
                    .iter()
                    .map(|(s, min)| (s.network().clone(), *min))
                    .collect(),
                schemes: schemes
                    .into_iter()
                    .map(|(s, _)| (s.network().clone(), s))
                    .collect(),
                ledger,
                locks: Mutex::new(HashMap::new()),
                instance: format!("{}-{}", std::process::id(), B256::random()),
            }),
        }
    }

    /// Builds the facilitator from a validated configuration: loads signer keys, connects to
    /// each network's RPC endpoints (with failover between them at run time; every endpoint that
    /// answers must serve the configured chain), opens the ledger. Then reconciles what a previous run left in flight.
    pub async fn from_config(config: &Config) -> Result<(Self, ReconcileReport), StartError> {
        let mut schemes = Vec::new();
        for n in &config.networks {
            let signers = n.load_signers()?;
            let evm_config = n.evm_config();
            let scheme = ExactEvmFacilitator::connect_failover(&n.rpc_urls, signers, evm_config)
                .await
                .map_err(|e| StartError::Rpc {
                    network: n.network.clone(),
                    detail: e.to_string(),
                })?;
            if scheme.network() != &n.network {
                return Err(StartError::Rpc {
                    network: n.network.clone(),
                    detail: format!(
                        "the RPC endpoints serve {}, not the configured network",
                        scheme.network()
                    ),
                });
            }
            tracing::info!(network = %n.network, signers = ?scheme.signer_addresses(), "network ready");
            schemes.push((scheme, n.min_signer_balance_wei));
        }
        let ledger = match &config.ledger.url {
            Some(url) => Ledger::connect_postgres(url.expose()).await?,
            None => Ledger::open(&config.ledger.path)?,
        };
        let facilitator = Self::with_min_signer_balance(schemes, ledger);
        let report = facilitator.reconcile().await?;
        Ok((facilitator, report))
    }

    /// Every settlement signer with its gas balance (read now; `None` when the node did not
    /// answer), whether that is below the network's threshold, and its unconfirmed
    /// transactions.
    pub async fn signer_status(&self) -> Vec<SignerStatus> {
        use alloy::providers::Provider;
        let mut networks: Vec<_> = self.inner.schemes.iter().collect();
        networks.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::new();
        for (network, scheme) in networks {
            let floor = self
                .inner
                .min_signer_balance
                .get(network)
                .copied()
                .unwrap_or(U256::from(DEFAULT_MIN_SIGNER_BALANCE));
            for (address, in_flight) in scheme.signers_in_flight() {
                let balance = scheme.provider().get_balance(address).await.ok();
                out.push(SignerStatus {
                    network: network.clone(),
                    address,
                    balance_wei: balance,
                    low_on_gas: balance.is_some_and(|b| b < floor),
                    in_flight,
                });
            }
        }
        out
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The scheme facilitator of `network`.
    pub fn scheme(&self, network: &Network) -> Option<&ExactEvmFacilitator> {
        self.inner.schemes.get(network)
    }

    /// `GET /supported`: `exact` on every configured network, for v1 (where the network has
    /// a v1 name) and v2, and the settlement signers.
    pub fn supported(&self) -> SupportedResponse {
        let mut networks: Vec<_> = self.inner.schemes.keys().cloned().collect();
        networks.sort();
        let mut kinds = Vec::new();
        for network in &networks {
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
                network: network.clone(),
                extra: None,
            });
        }
        let mut signers: Vec<String> = self
            .inner
            .schemes
            .values()
            .map(|s| s.signer_address().to_string())
            .collect();
        signers.sort();
        signers.dedup();
        let mut response = SupportedResponse {
            kinds,
            ..SupportedResponse::default()
        };
        response.signers.insert("eip155:*".to_owned(), signers);
        response
    }

    /// `POST /verify` as part of the settlement attempt `attempt` (the `Idempotency-Key`
    /// header, or the payment's `payment-identifier`).
    pub async fn verify_attempt(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&tollgate_proto::IdempotencyKey>,
    ) -> Outcome<VerifyResponse> {
        let _ = attempt; // TODO(helper B): reservations per attempt
        self.verify(request).await
    }

    /// `POST /settle` as part of the settlement attempt `attempt`.
    pub async fn settle_attempt(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&tollgate_proto::IdempotencyKey>,
    ) -> Outcome<SettleResponse> {
        let _ = attempt; // TODO(helper B): same attempt only
        self.settle(request).await
    }

    /// `POST /verify`.
    pub async fn verify(&self, request: &FacilitatorRequest) -> Outcome<VerifyResponse> {
        let (payment, requirements) = request.to_v2();
        let network = requirements.network.to_string();
        let Some(scheme) = self.inner.schemes.get(&requirements.network) else {
            return Outcome::Rejected(VerifyResponse::invalid(
                ErrorReason::InvalidNetwork,
                Some(format!(
                    "network {network} is not supported by this facilitator"
                )),
                None,
            ));
        };
        let claimed = ExactEvmPayload::from_payment(&payment).ok();
        let payer = claimed.as_ref().map(|p| p.authorization.from.to_string());
        let nonce = claimed.as_ref().map(|p| p.authorization.nonce.to_string());
        let (outcome, reason) = match scheme.verify(&payment, &requirements).await {
            Ok(v) => {
                if let Err(e) = self.mark_verified(&payment, &requirements, &v).await {
                    return unavailable_verify(e.to_string(), payer);
                }
                (
                    Outcome::Ok(VerifyResponse::valid(v.payer.to_string())),
                    None,
                )
            }
            Err(e) => {
                let body = VerifyResponse::invalid(e.reason(), Some(e.to_string()), payer.clone());
                let reason = Some(e.reason().to_string());
                if e.is_payment_fault() {
                    (Outcome::Rejected(body), reason)
                } else {
                    (Outcome::Unavailable(body), reason)
                }
            }
        };
        let label = match &outcome {
            Outcome::Ok(_) => "valid",
            Outcome::Unavailable(_) => "unavailable",
            _ => "invalid",
        };
        if let Err(e) = self
            .inner
            .ledger
            .record(Event {
                kind: "verify",
                network: &network,
                payer: payer.as_deref(),
                nonce: nonce.as_deref(),
                outcome: label,
                reason: reason.as_deref(),
                tx_hash: None,
            })
            .await
        {
            return unavailable_verify(e.to_string(), payer);
        }
        outcome
    }

    async fn mark_verified(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        verified: &tollgate_evm::VerifiedPayment,
    ) -> Result<(), LedgerError> {
        let key = key_of(&requirements.network, verified);
        if self.inner.ledger.get(&key).await?.is_some() {
            // Never downgrade a payment already in flight or done.
            return Ok(());
        }
        self.inner
            .ledger
            .put(&new_entry(
                key,
                SettlementState::Verified,
                payment,
                requirements,
            ))
            .await
    }

    /// `POST /settle`: settles at most once per payment.
    ///
    /// The same payment settled again — sequentially or concurrently — gets the first
    /// settlement's result (same transaction hash) instead of a second transfer or a
    /// "nonce already used" error.
    pub async fn settle(&self, request: &FacilitatorRequest) -> Outcome<SettleResponse> {
        let (payment, requirements) = request.to_v2();
        let network = requirements.network.clone();
        let Some(scheme) = self.inner.schemes.get(&network) else {
            return Outcome::Rejected(SettleResponse::failure(
                ErrorReason::InvalidNetwork,
                Some(format!(
                    "network {network} is not supported by this facilitator"
                )),
                network,
                None,
                None,
            ));
        };
        let evm = match ExactEvmPayload::from_payment(&payment) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Rejected(SettleResponse::failure(
                    ErrorReason::InvalidPayload,
                    Some(e.to_string()),
                    network,
                    None,
                    None,
                ))
            }
        };
        let key = PaymentKey::new(
            network.as_str(),
            &requirements.asset,
            &evm.authorization.from.to_string(),
            &evm.authorization.nonce.to_string(),
        );
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;
        let wait = scheme.config().receipt_timeout + CLAIM_WAIT_MARGIN;
        let outcome = match self.claim(&key, wait).await {
            Ok(renewal) => {
                let outcome = self
                    .settle_locked(scheme, &key, &payment, &requirements, &evm)
                    .await;
                drop(renewal);
                if let Err(e) = self.inner.ledger.release(&key, &self.inner.instance).await {
                    // The claim expires on its own; until then other instances wait.
                    tracing::warn!(error = %e, "could not release settlement claim");
                }
                outcome
            }
            Err(message) => Outcome::Unavailable(SettleResponse::failure(
                ErrorReason::UnexpectedSettleError,
                Some(message),
                network.clone(),
                Some(evm.authorization.from.to_string()),
                None,
            )),
        };
        let (label, body) = match &outcome {
            Outcome::Ok(b) => ("success", b),
            Outcome::Pending(b) => ("pending", b),
            Outcome::Rejected(b) => ("failure", b),
            Outcome::Unavailable(b) => ("unavailable", b),
        };
        let reason = body.error_reason.as_ref().map(|r| r.to_string());
        let tx = Some(body.transaction.as_str()).filter(|t| !t.is_empty());
        if let Err(e) = self
            .inner
            .ledger
            .record(Event {
                kind: "settle",
                network: network.as_str(),
                payer: Some(&key.payer),
                nonce: Some(&key.nonce),
                outcome: label,
                reason: reason.as_deref(),
                tx_hash: tx,
            })
            .await
        {
            tracing::error!(error = %e, "could not record settle event");
        }
        outcome
    }

    /// Waits for the ledger's exclusive claim on `key`: another instance sharing the ledger may
    /// be settling the same payment, and its result is then read from the ledger instead of
    /// sending a second transaction.
    async fn claim(&self, key: &PaymentKey, wait: Duration) -> Result<ClaimRenewal, String> {
        let started = std::time::Instant::now();
        loop {
            match self
                .inner
                .ledger
                .claim(key, &self.inner.instance, CLAIM_TTL)
                .await
            {
                Ok(true) => return Ok(self.renew(key.clone())),
                Ok(false) if started.elapsed() < wait => {
                    tokio::time::sleep(CLAIM_POLL).await;
                }
                Ok(false) => {
                    return Err(format!(
                        "this payment has been in settlement elsewhere for {}s; retry later",
                        started.elapsed().as_secs()
                    ))
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn renew(&self, key: PaymentKey) -> ClaimRenewal {
        let (ledger, owner) = (self.inner.ledger.clone(), self.inner.instance.clone());
        ClaimRenewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(CLAIM_RENEW).await;
                if let Err(e) = ledger.claim(&key, &owner, CLAIM_TTL).await {
                    tracing::warn!(error = %e, "could not renew settlement claim");
                }
            }
        }))
    }

    async fn settle_locked(
        &self,
        scheme: &ExactEvmFacilitator,
        key: &PaymentKey,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        evm: &ExactEvmPayload,
    ) -> Outcome<SettleResponse> {
        let network = requirements.network.clone();
        let payer = evm.authorization.from.to_string();
        let ledger = &self.inner.ledger;
        let unavailable = |msg: String| {
            Outcome::Unavailable(SettleResponse::failure(
                ErrorReason::UnexpectedSettleError,
                Some(msg),
                network.clone(),
                Some(payer.clone()),
                None,
            ))
        };
        let entry = match ledger.get(key).await {
            Ok(e) => e,
            Err(e) => return unavailable(e.to_string()),
        };
        // A request for the same authorization but other terms is not "the same payment".
        let same_terms = |e: &LedgerEntry| {
            e.pay_to.eq_ignore_ascii_case(&requirements.pay_to)
                && e.amount == requirements.amount.to_string()
        };
        if let Some(e) = entry.as_ref().filter(|e| same_terms(e)) {
            match (e.state, e.tx_hash.as_deref()) {
                (SettlementState::Confirmed, Some(tx)) => {
                    return Outcome::Ok(SettleResponse::success(tx, network, payer));
                }
                (SettlementState::Submitted, Some(tx)) => {
                    let Ok(tx_hash) = tx.parse::<B256>() else {
                        return unavailable(format!("ledger holds a bad tx hash {tx:?}"));
                    };
                    let asset = match tollgate_evm::domain::parse_address(&requirements.asset) {
                        Ok(a) => a,
                        Err(e) => return unavailable(e),
                    };
                    let result = scheme
                        .await_settlement(asset, &evm.authorization, tx_hash)
                        .await;
                    return self
                        .finish(e.clone(), result, network, payer, Some(tx_hash))
                        .await;
                }
                (SettlementState::Verified, _) => {
                    // A run may have died after sending but before recording the hash: ask the
                    // chain before sending anything.
                    if let Ok(asset) = tollgate_evm::domain::parse_address(&requirements.asset) {
                        match scheme.find_settlement_tx(asset, &evm.authorization).await {
                            Ok(Some(s)) => {
                                let tx = s.tx_hash;
                                return self
                                    .finish(e.clone(), Ok(s), network, payer, Some(tx))
                                    .await;
                            }
                            Ok(None) => {}
                            Err(err) => return unavailable(err.to_string()),
                        }
                    }
                }
                _ => {}
            }
        }

        let verified = match scheme.verify(payment, requirements).await {
            Ok(v) => v,
            Err(e) => {
                let body = SettleResponse::failure(
                    e.reason(),
                    Some(e.to_string()),
                    network,
                    Some(payer),
                    None,
                );
                return if e.is_payment_fault() {
                    Outcome::Rejected(body)
                } else {
                    Outcome::Unavailable(body)
                };
            }
        };
        let mut row = new_entry(
            key.clone(),
            SettlementState::Verified,
            payment,
            requirements,
        );
        if let Err(e) = ledger.put(&row).await {
            return unavailable(e.to_string());
        }
        let tx_hash = match scheme.submit_verified(&verified).await {
            Ok(h) => h,
            Err(e) => return self.finish(row, Err(e), network, payer, None).await,
        };
        row.state = SettlementState::Submitted;
        row.tx_hash = Some(tx_hash.to_string());
        if let Err(e) = ledger.put(&row).await {
            // The transaction is out; the chain remembers it even if we could not. The next
            // attempt finds it through the `verified` path above.
            tracing::error!(%tx_hash, error = %e, "could not record submitted settlement");
        }
        let result = scheme
            .await_settlement(verified.asset, &verified.authorization, tx_hash)
            .await;
        self.finish(row, result, network, payer, Some(tx_hash))
            .await
    }

    /// Records the end of a settlement attempt and shapes the response.
    async fn finish(
        &self,
        mut row: LedgerEntry,
        result: Result<Settlement, SettleError>,
        network: Network,
        payer: String,
        tx_hash: Option<B256>,
    ) -> Outcome<SettleResponse> {
        let outcome = match result {
            Ok(s) => {
                row.state = SettlementState::Confirmed;
                row.tx_hash = Some(s.tx_hash.to_string());
                row.error_reason = None;
                Outcome::Ok(SettleResponse::success(
                    s.tx_hash.to_string(),
                    network,
                    s.payer.to_string(),
                ))
            }
            Err(e) => {
                let body = SettleResponse::failure(
                    e.reason(),
                    Some(e.to_string()),
                    network,
                    Some(payer),
                    e.tx_hash().or(tx_hash).map(|h| h.to_string()),
                );
                row.error_reason = Some(e.reason().to_string());
                match e {
                    SettleError::ReceiptTimeout { tx_hash, .. } => {
                        row.state = SettlementState::Submitted;
                        row.tx_hash = Some(tx_hash.to_string());
                        Outcome::Pending(body)
                    }
                    SettleError::Submit(_) => {
                        row.state = SettlementState::Failed;
                        Outcome::Unavailable(body)
                    }
                    SettleError::Invalid(ref v) if !v.is_payment_fault() => {
                        row.state = SettlementState::Failed;
                        Outcome::Unavailable(body)
                    }
                    _ => {
                        row.state = SettlementState::Failed;
                        Outcome::Rejected(body)
                    }
                }
            }
        };
        if let Err(e) = self.inner.ledger.put(&row).await {
            tracing::error!(error = %e, "could not record settlement result");
        }
        outcome
    }

    /// Finishes what a previous run left in flight: `submitted` entries are checked against
    /// their transaction, `verified` ones against the chain's record of the authorization.
    pub async fn reconcile(&self) -> Result<ReconcileReport, LedgerError> {
        let mut report = ReconcileReport::default();
        for entry in self.inner.ledger.unfinished().await? {
            let Ok(network) = entry.key.network.parse::<Network>() else {
                continue;
            };
            let Some(scheme) = self.inner.schemes.get(&network) else {
                report.still_pending += 1;
                continue;
            };
            let Ok(payment) = serde_json::from_str::<PaymentPayload>(&entry.payment_json) else {
                report.still_pending += 1;
                continue;
            };
            let (Ok(evm), Ok(asset)) = (
                ExactEvmPayload::from_payment(&payment),
                tollgate_evm::domain::parse_address(&entry.key.asset),
            ) else {
                report.still_pending += 1;
                continue;
            };
            let lock = self.lock_for(&entry.key);
            let _guard = lock.lock().await;
            if !self
                .inner
                .ledger
                .claim(&entry.key, &self.inner.instance, CLAIM_TTL)
                .await?
            {
                // Another live instance is settling it right now.
                report.still_pending += 1;
                continue;
            }
            let _renewal = self.renew(entry.key.clone());
            let result = match entry
                .tx_hash
                .as_deref()
                .and_then(|t| t.parse::<B256>().ok())
            {
                Some(tx) if entry.state == SettlementState::Submitted => {
                    Some(scheme.await_settlement(asset, &evm.authorization, tx).await)
                }
                _ => match scheme.find_settlement_tx(asset, &evm.authorization).await {
                    Ok(Some(s)) => Some(Ok(s)),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                },
            };
            let mut row = entry.clone();
            let outcome = match result {
                Some(Ok(s)) => {
                    row.state = SettlementState::Confirmed;
                    row.tx_hash = Some(s.tx_hash.to_string());
                    report.confirmed += 1;
                    "success"
                }
                Some(Err(SettleError::ReceiptTimeout { .. }))
                | Some(Err(SettleError::Submit(_))) => {
                    report.still_pending += 1;
                    "pending"
                }
                Some(Err(e)) => {
                    row.state = SettlementState::Failed;
                    row.error_reason = Some(e.reason().to_string());
                    report.failed += 1;
                    "failure"
                }
                None => {
                    // Verified but never used on chain: nothing happened; a client retry settles.
                    row.state = SettlementState::Failed;
                    row.error_reason = Some("not_submitted".into());
                    report.failed += 1;
                    "failure"
                }
            };
            if row != entry {
                self.inner.ledger.put(&row).await?;
            }
            self.inner
                .ledger
                .release(&entry.key, &self.inner.instance)
                .await?;
            self.inner
                .ledger
                .record(Event {
                    kind: "reconcile",
                    network: &entry.key.network,
                    payer: Some(&entry.key.payer),
                    nonce: Some(&entry.key.nonce),
                    outcome,
                    reason: row.error_reason.as_deref(),
                    tx_hash: row.tx_hash.as_deref(),
                })
                .await?;
        }
        if report != ReconcileReport::default() {
            tracing::info!(?report, "reconciled in-flight settlements");
        }
        Ok(report)
    }

    fn lock_for(&self, key: &PaymentKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.clone(), Arc::downgrade(&lock));
        lock
    }
}

fn key_of(network: &Network, verified: &tollgate_evm::VerifiedPayment) -> PaymentKey {
    PaymentKey::new(
        network.as_str(),
        &verified.asset.to_string(),
        &verified.payer.to_string(),
        &verified.authorization.nonce.to_string(),
    )
}

fn new_entry(
    key: PaymentKey,
    state: SettlementState,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> LedgerEntry {
    LedgerEntry {
        key,
        state,
        amount: requirements.amount.to_string(),
        pay_to: requirements.pay_to.clone(),
        tx_hash: None,
        error_reason: None,
        payment_json: serde_json::to_string(payment).unwrap_or_default(),
        updated_at: 0,
    }
}

fn unavailable_verify(message: String, payer: Option<String>) -> Outcome<VerifyResponse> {
    Outcome::Unavailable(VerifyResponse::invalid(
        ErrorReason::UnexpectedVerifyError,
        Some(message),
        payer,
    ))
}
