//! The facilitator as a library type: verify, settle (once per payment, recorded in the
//! ledger) and list what is supported. The HTTP layer is a thin shell over this, and a resource
//! server can embed it in-process.
//!
//! Settlement is retry-safe without being replayable: a payment — identified by its parsed
//! (network, asset, payer, nonce), never by its bytes — belongs to one **attempt** (an
//! `Idempotency-Key`, or the payment's `payment-identifier` id), and only that attempt,
//! presenting that very payment, is ever answered with its settlement again. See
//! [`Facilitator::verify_attempt`] and [`Facilitator::settle_attempt`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use alloy::primitives::{B256, U256};
use tollgate_core::{
    ChainOps, NetworkPattern, PaymentIdentity, Registry, SchemeError, SchemeFacilitator,
    SchemeFault, Settled,
};
use tollgate_evm::ExactEvmFacilitator;
use tollgate_proto::idempotency::{IdempotencyKey, PaymentIdentifier};
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, Network, PaymentPayload, PaymentRequirements, Scheme,
    SettleResponse, SupportedResponse, VerifyResponse,
};

pub use tollgate_core::SignerStatus;

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
    /// The attempt key (or `payment-identifier` id) was already used for another payment
    /// (HTTP 409).
    Conflict(T),
}

impl<T> Outcome<T> {
    /// The response body.
    pub fn body(&self) -> &T {
        match self {
            Self::Ok(t)
            | Self::Pending(t)
            | Self::Rejected(t)
            | Self::Unavailable(t)
            | Self::Conflict(t) => t,
        }
    }

    /// `Ok(body)` for [`Outcome::Ok`], every other outcome as an error carrying its body, so
    /// `?` propagates a verification or settlement that did not succeed.
    ///
    /// ```
    /// use tollgate_facilitator::{service::OutcomeError, Outcome};
    /// assert_eq!(Outcome::Ok(1).into_result().unwrap(), 1);
    /// let err = Outcome::Pending(2).into_result().unwrap_err();
    /// assert!(matches!(err, OutcomeError::Pending(2)));
    /// assert_eq!(err.to_string(), "settlement sent but not confirmed yet");
    /// ```
    pub fn into_result(self) -> Result<T, OutcomeError<T>> {
        match self {
            Self::Ok(t) => Ok(t),
            Self::Pending(t) => Err(OutcomeError::Pending(t)),
            Self::Rejected(t) => Err(OutcomeError::Rejected(t)),
            Self::Unavailable(t) => Err(OutcomeError::Unavailable(t)),
            Self::Conflict(t) => Err(OutcomeError::Conflict(t)),
        }
    }

    /// The response body, owned.
    pub fn into_body(self) -> T {
        match self {
            Self::Ok(t)
            | Self::Pending(t)
            | Self::Rejected(t)
            | Self::Unavailable(t)
            | Self::Conflict(t) => t,
        }
    }
}

/// An [`Outcome`] other than `Ok`, as an error ([`Outcome::into_result`]). The body (with the
/// facilitator's reason) stays available to match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeError<T> {
    /// Sent but not confirmed yet: the ledger will finish it; ask again later.
    #[error("settlement sent but not confirmed yet")]
    Pending(T),
    /// The payment is at fault (see the body's reason).
    #[error("the facilitator rejected the payment")]
    Rejected(T),
    /// The facilitator cannot reach the chain or its ledger; retry later.
    #[error("the facilitator is unavailable")]
    Unavailable(T),
    /// The attempt key (or payment id) was already used for another payment.
    #[error("the attempt key was already used for another payment")]
    Conflict(T),
}

impl<T> OutcomeError<T> {
    /// The response body.
    pub fn body(&self) -> &T {
        match self {
            Self::Pending(t) | Self::Rejected(t) | Self::Unavailable(t) | Self::Conflict(t) => t,
        }
    }
}

/// Default low-gas threshold of a signer: 0.001 ETH (wei).
pub use tollgate_evm::facilitator::DEFAULT_MIN_SIGNER_BALANCE;

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
    /// Who verifies and settles what: scheme implementations by (scheme, network pattern).
    schemes: Registry<dyn SchemeFacilitator>,
    /// Each network's settlement plumbing, for `/health` and metrics.
    chains: Vec<Arc<dyn ChainOps>>,
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

/// Shortest reservation a verification under an attempt takes.
const MIN_LEASE: Duration = Duration::from_secs(30);

/// Longest reservation a verification under an attempt takes.
const MAX_LEASE: Duration = Duration::from_secs(3600);

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
            .field("schemes", &self.inner.schemes)
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
        // One scheme per network: a network listed twice keeps its last entry.
        let by_network: HashMap<Network, (ExactEvmFacilitator, U256)> = schemes
            .into_iter()
            .map(|(scheme, min)| (scheme.network().clone(), (scheme, min)))
            .collect();
        let mut registry: Registry<dyn SchemeFacilitator> = Registry::new();
        let mut chains: Vec<Arc<dyn ChainOps>> = Vec::new();
        for (network, (scheme, min)) in by_network {
            chains.push(Arc::new(
                scheme.chain().clone().with_min_signer_balance(min),
            ));
            registry
                .register_arc(
                    NetworkPattern::One(network),
                    Scheme::Exact,
                    Arc::new(scheme),
                )
                .expect("one registration per network");
        }
        Self::from_registry(registry, chains, ledger)
    }

    /// A facilitator over any schemes: `schemes` says which implementation verifies and
    /// settles a payment, by the scheme and network of its requirements; `chains` are the
    /// networks' settlement plumbing that `/health` and metrics report on.
    ///
    /// This is how a scheme defined outside Tollgate is served: implement
    /// [`SchemeFacilitator`] and register it — the ledger, attempt keys, claims between
    /// replicas and crash recovery work for it unchanged.
    pub fn from_registry(
        schemes: Registry<dyn SchemeFacilitator>,
        chains: Vec<Arc<dyn ChainOps>>,
        ledger: Ledger,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                schemes,
                chains,
                ledger,
                locks: Mutex::new(HashMap::new()),
                instance: format!("{}-{}", std::process::id(), B256::random()),
            }),
        }
    }

    /// Builds the facilitator from a configuration: resolves its chains and the schemes served
    /// on each ([`Config::layout`], which checks them), loads signer keys, connects to each
    /// chain's RPC endpoints (with failover between them at run time; every endpoint that
    /// answers must serve the configured network), registers every scheme on its chain, opens
    /// the ledger. Then reconciles what a previous run left in flight.
    pub async fn from_config(config: &Config) -> Result<(Self, ReconcileReport), StartError> {
        use crate::config::{ConfigError, SchemeSettings};
        use tollgate_evm::config::ChainSetupError;

        // The one place the facilitator turns configuration into chains and schemes: each
        // family's chain settings (a type of its chain crate) build that network's one chain,
        // and every scheme served on the network is built on that chain, so all of them send
        // through one signer pool.
        let layout = config.layout()?;
        let mut registry: Registry<dyn SchemeFacilitator> = Registry::new();
        let mut chains: Vec<Arc<dyn ChainOps>> = Vec::new();
        for plan in layout.evm {
            let network = plan.settings.network.clone();
            let chain = plan.settings.connect().await.map_err(|e| match e {
                ChainSetupError::Settings(e) => ConfigError::setting(&plan.key, e).into(),
                other => StartError::Rpc {
                    network: network.clone(),
                    detail: other.to_string(),
                },
            })?;
            tracing::info!(%network, signers = ?chain.signer_addresses(), "network ready");
            for planned in plan.schemes {
                let scheme = planned.settings.scheme();
                let built: Arc<dyn SchemeFacilitator> = match &planned.settings {
                    SchemeSettings::ExactEvm(exact) => Arc::new(exact.on_chain(&chain)),
                    SchemeSettings::Evm(other) => other
                        .on_chain(&chain)
                        .map_err(|e| ConfigError::setting(&planned.key, e))?,
                };
                registry
                    .register_arc(NetworkPattern::One(network.clone()), scheme.clone(), built)
                    .map_err(|e| ConfigError::Invalid {
                        key: planned.key.clone(),
                        reason: e.to_string(),
                    })?;
                tracing::info!(%network, %scheme, entry = %planned.key, "scheme registered");
            }
            chains.push(Arc::new(chain));
        }
        #[cfg(feature = "solana")]
        for (key, settings) in layout.solana {
            let network = settings.network.clone();
            let chain = Arc::new(settings.connect().await.map_err(|e| {
                match e {
                    tollgate_svm::config::SvmSetupError::Settings(reason) => ConfigError::Invalid {
                        key: key.clone(),
                        reason,
                    }
                    .into(),
                    other => StartError::Rpc {
                        network: network.clone(),
                        detail: other.to_string(),
                    },
                }
            })?);
            tracing::info!(%network, fee_payers = ?chain.fee_payers(), "solana network ready");
            registry
                .register_arc(
                    NetworkPattern::One(network.clone()),
                    tollgate_proto::Scheme::Exact,
                    chain.clone() as Arc<dyn SchemeFacilitator>,
                )
                .map_err(|e| ConfigError::Invalid {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            chains.push(chain);
        }
        let ledger = match &config.ledger.url {
            Some(url) => Ledger::connect_postgres(url.expose()).await?,
            None => Ledger::open(&config.ledger.path)?,
        }
        .with_retention(config.ledger.retention());
        let facilitator = Self::from_registry(registry, chains, ledger);
        let report = facilitator.reconcile().await?;
        let pruned = facilitator.inner.ledger.prune().await?;
        if pruned != Default::default() {
            tracing::info!(?pruned, "ledger retention applied");
        }
        Ok((facilitator, report))
    }

    /// Every settlement signer with its gas balance (read now; `None` when the node did not
    /// answer), whether that is below the network's threshold, and its unconfirmed
    /// transactions.
    pub async fn signer_status(&self) -> Vec<SignerStatus> {
        let mut chains: Vec<_> = self.inner.chains.iter().collect();
        chains.sort_by(|a, b| a.network().cmp(b.network()));
        let mut out = Vec::new();
        for chain in chains {
            out.extend(chain.signer_status().await);
        }
        out
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The registered schemes.
    pub fn schemes(&self) -> &Registry<dyn SchemeFacilitator> {
        &self.inner.schemes
    }

    /// Each network's settlement plumbing.
    pub fn chains(&self) -> &[Arc<dyn ChainOps>] {
        &self.inner.chains
    }

    /// `GET /supported`: every registered scheme's kinds (for v1 where the network has a v1
    /// name, and v2), and the settlement signers.
    pub fn supported(&self) -> SupportedResponse {
        let mut kinds = Vec::new();
        let mut response = SupportedResponse::default();
        for scheme in self.inner.schemes.values() {
            kinds.extend(scheme.supported());
            for (pattern, signers) in scheme.signers() {
                response.signers.entry(pattern).or_default().extend(signers);
            }
        }
        kinds.sort_by(|a, b| {
            (&a.network, &a.scheme, a.x402_version).cmp(&(&b.network, &b.scheme, b.x402_version))
        });
        kinds.dedup();
        for signers in response.signers.values_mut() {
            signers.sort();
            signers.dedup();
        }
        response.kinds = kinds;
        response
    }

    /// The scheme that serves `requirements`, or why there is none.
    fn scheme_for(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<&Arc<dyn SchemeFacilitator>, (ErrorReason, String)> {
        let network = &requirements.network;
        match self.inner.schemes.get(&requirements.scheme, network) {
            Some(scheme) => Ok(scheme),
            None if self.inner.schemes.serves_network(network) => Err((
                ErrorReason::UnsupportedScheme,
                format!(
                    "scheme {} is not supported on {network} by this facilitator",
                    requirements.scheme
                ),
            )),
            None => Err((
                ErrorReason::InvalidNetwork,
                format!("network {network} is not supported by this facilitator"),
            )),
        }
    }

    /// `POST /verify` as part of the settlement attempt `attempt` (the `Idempotency-Key`
    /// header; when `None`, the payment's `payment-identifier` id, if any).
    ///
    /// A valid answer under an attempt reserves the payment for that attempt (a lease of the
    /// requirements' `maxTimeoutSeconds`, at least 30 s): until it lapses, or the payment
    /// fails, every other attempt — and every request without one — is told
    /// `payment_in_use`. Without an attempt a valid answer reserves nothing. A payment that is
    /// being settled or was settled is invalid (`invalid_exact_evm_nonce_already_used`) for
    /// everyone, whatever the chain says yet. An attempt name already used for another payment
    /// is a [`Outcome::Conflict`].
    #[tracing::instrument(
        name = "facilitator.verify",
        skip_all,
        fields(network, scheme, payer, outcome)
    )]
    pub async fn verify_attempt(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Outcome<VerifyResponse> {
        let (payment, requirements) = request.to_v2();
        let network = requirements.network.to_string();
        let span = tracing::Span::current();
        span.record("network", network.as_str());
        span.record("scheme", requirements.scheme.as_str());
        let scheme = match self.scheme_for(&requirements) {
            Ok(s) => s.as_ref(),
            Err((reason, message)) => {
                return Outcome::Rejected(VerifyResponse::invalid(reason, Some(message), None))
            }
        };
        // A payment the scheme cannot even name is not looked up: verification says why.
        let identity = scheme.identify(&payment, &requirements).ok();
        let key = identity.as_ref().map(|id| key_of(&requirements, id));
        let payer = identity.as_ref().map(|id| id.payer.clone());
        if let Some(payer) = &payer {
            span.record("payer", payer.as_str());
        }
        let outcome = self
            .verify_checked(
                scheme,
                &payment,
                &requirements,
                key.as_ref(),
                payer.clone(),
                attempt,
            )
            .await;
        let label = match &outcome {
            Outcome::Ok(_) => "valid",
            Outcome::Unavailable(_) => "unavailable",
            Outcome::Conflict(_) => "conflict",
            _ => "invalid",
        };
        span.record("outcome", label);
        let reason = outcome
            .body()
            .invalid_reason
            .as_ref()
            .map(|r| r.to_string());
        let (event_payer, event_id) = match &key {
            Some(k) => (Some(k.payer.as_str()), Some(k.id.as_str())),
            None => (None, None),
        };
        // A verification's audit event backs nobody's answer: written behind (see
        // `Ledger::record_behind`), as the verified row of a plain verification is.
        if let Err(e) = self
            .inner
            .ledger
            .record_behind(Event {
                kind: "verify",
                network: &network,
                scheme: Some(requirements.scheme.as_str()),
                payer: event_payer,
                payment_id: event_id,
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

    async fn verify_checked(
        &self,
        scheme: &dyn SchemeFacilitator,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        key: Option<&PaymentKey>,
        payer: Option<String>,
        attempt: Option<&IdempotencyKey>,
    ) -> Outcome<VerifyResponse> {
        let ledger = &self.inner.ledger;
        let names = match AttemptNames::resolve(payment, attempt) {
            Ok(n) => n,
            Err(message) => {
                return Outcome::Rejected(VerifyResponse::invalid(
                    ErrorReason::InvalidPaymentIdentifier,
                    Some(message),
                    payer,
                ))
            }
        };
        // Refusals the ledger can decide before asking the chain anything.
        // The key whose row the ledger already holds, if any.
        let mut recorded: Option<&PaymentKey> = None;
        if let Some(key) = key {
            match self.bound_elsewhere(&names, key).await {
                Ok(Some(message)) => {
                    return Outcome::Conflict(VerifyResponse::invalid(
                        ErrorReason::PaymentIdentifierConflict,
                        Some(message),
                        payer,
                    ))
                }
                Ok(None) => {}
                Err(e) => return unavailable_verify(e.to_string(), payer),
            }
            match ledger.get(key).await {
                Ok(Some(row)) => {
                    recorded = Some(key);
                    if let Some(refusal) = verify_refusal(scheme, &row, names.attempt_str()) {
                        return Outcome::Rejected(VerifyResponse::invalid(
                            refusal.0,
                            Some(refusal.1),
                            payer,
                        ));
                    }
                }
                Ok(None) => {}
                Err(e) => return unavailable_verify(e.to_string(), payer),
            }
        }
        let verified = match scheme.verify(payment, requirements).await {
            Ok(v) => v,
            Err(e) => {
                let body =
                    VerifyResponse::invalid(e.reason.clone(), Some(e.message.clone()), payer);
                return if e.is_payment_fault() {
                    Outcome::Rejected(body)
                } else {
                    Outcome::Unavailable(body)
                };
            }
        };
        let key = key_of(requirements, &verified.identity);
        let valid_payer = verified.identity.payer.clone();
        let extra = scheme.verify_extra(&verified);
        let valid = |payer: String| VerifyResponse {
            extra: extra.clone(),
            ..VerifyResponse::valid(payer)
        };
        if names.attempt_str().is_none() && recorded == Some(&key) {
            // No attempt, and the payment already has its row: `insert_verified` never
            // replaces one, so a re-verification (a paywall's before it settles, a client's
            // retry) has nothing to write.
            return Outcome::Ok(valid(valid_payer));
        }
        let payer = Some(valid_payer.clone());
        let mut row = new_entry(
            key.clone(),
            SettlementState::Verified,
            payment,
            requirements,
            verified.identity.valid_before,
        );
        let Some(owner) = names.attempt_str() else {
            // No attempt: valid, and nobody's reservation.
            return match ledger.insert_verified_behind(&row).await {
                Ok(()) => Outcome::Ok(valid(valid_payer)),
                Err(e) => unavailable_verify(e.to_string(), payer),
            };
        };
        match self.bind(&names, &key).await {
            Ok(None) => {}
            Ok(Some(message)) => {
                return Outcome::Conflict(VerifyResponse::invalid(
                    ErrorReason::PaymentIdentifierConflict,
                    Some(message),
                    payer,
                ))
            }
            Err(e) => return unavailable_verify(e.to_string(), payer),
        }
        row.attempt = Some(owner.to_owned());
        // A paywall's `Idempotency-Key` names one served request, so its re-verification
        // renews the reservation. A `payment-identifier` id travels inside the payment and so
        // with every copy of it: a second verification under it while the first holds the
        // payment is a copy, not a retry, and is refused (a client recovering a lost response
        // re-sends to the resource server, which answers from its own record, or settles).
        let reserved = if names.header.is_some() {
            ledger.reserve(&row, owner, lease_for(requirements)).await
        } else {
            ledger
                .reserve_exclusive(&row, owner, lease_for(requirements))
                .await
        };
        match reserved {
            Ok(true) => Outcome::Ok(valid(valid_payer)),
            Ok(false) => {
                // Lost a race: say why from the row that won.
                let current = ledger.get(&key).await.ok().flatten();
                let (reason, message) = current
                    .as_ref()
                    .and_then(|row| verify_refusal(scheme, row, Some(owner)))
                    .unwrap_or_else(in_use);
                Outcome::Rejected(VerifyResponse::invalid(reason, Some(message), payer))
            }
            Err(e) => unavailable_verify(e.to_string(), payer),
        }
    }

    /// `POST /settle` as part of the settlement attempt `attempt` (the `Idempotency-Key`
    /// header; when `None`, the payment's `payment-identifier` id, if any).
    ///
    /// The first settlement of a payment proceeds (unless another attempt holds its
    /// reservation). Once it is sent, only the **same attempt presenting the same payment** —
    /// the typed authorization, signature and terms re-checked, the signature verified again —
    /// gets its result back (the same transaction hash), sequentially or concurrently, from
    /// any instance sharing the ledger. Everyone else is refused: `payment_in_use` while the
    /// settlement is in flight, `invalid_exact_evm_nonce_already_used` once it is done. A
    /// settlement without an attempt can therefore never be repeated.
    #[tracing::instrument(
        name = "facilitator.settle",
        skip_all,
        fields(network, scheme, payer, tx_hash, outcome)
    )]
    pub async fn settle_attempt(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Outcome<SettleResponse> {
        let (payment, requirements) = request.to_v2();
        let network = requirements.network.clone();
        let span = tracing::Span::current();
        span.record("network", network.as_str());
        span.record("scheme", requirements.scheme.as_str());
        let scheme = match self.scheme_for(&requirements) {
            Ok(s) => s.as_ref(),
            Err((reason, message)) => {
                return Outcome::Rejected(SettleResponse::failure(
                    reason,
                    Some(message),
                    network,
                    None,
                    None,
                ))
            }
        };
        let identity = match scheme.identify(&payment, &requirements) {
            Ok(id) => id,
            Err(e) => {
                return Outcome::Rejected(SettleResponse::failure(
                    e.reason,
                    Some(e.message),
                    network,
                    None,
                    None,
                ))
            }
        };
        let payer = identity.payer.clone();
        span.record("payer", payer.as_str());
        let key = key_of(&requirements, &identity);
        let mut outcome = match AttemptNames::resolve(&payment, attempt) {
            // Not a payment but an operation the chain makes harmless to repeat (a
            // batch-settlement claim or sweep): no ledger key, settled each time asked.
            Ok(_) if scheme.repeatable(&payment) => {
                settle_repeatable(scheme, &payment, &requirements, &payer).await
            }
            Err(message) => Outcome::Rejected(settle_failure(
                ErrorReason::InvalidPaymentIdentifier,
                message,
                &network,
                &payer,
            )),
            Ok(names) => {
                self.settle_named(scheme, &key, &identity, &payment, &requirements, &names)
                    .await
            }
        };
        if let Outcome::Ok(body) = &mut outcome {
            // Schemes whose charge is decided at settlement report it (`amount`), unless the
            // chain told what moved.
            if body.amount.is_none() {
                body.amount = scheme.settled_amount(&payment, &requirements);
            }
        }
        let (label, body) = match &outcome {
            Outcome::Ok(b) => ("success", b),
            Outcome::Pending(b) => ("pending", b),
            Outcome::Rejected(b) => ("failure", b),
            Outcome::Unavailable(b) => ("unavailable", b),
            Outcome::Conflict(b) => ("conflict", b),
        };
        let reason = body.error_reason.as_ref().map(|r| r.to_string());
        let tx = Some(body.transaction.as_str()).filter(|t| !t.is_empty());
        span.record("outcome", label);
        if let Some(tx) = tx {
            span.record("tx_hash", tx);
        }
        if let Err(e) = self
            .inner
            .ledger
            .record(Event {
                kind: "settle",
                network: network.as_str(),
                scheme: Some(&key.scheme),
                payer: Some(&key.payer),
                payment_id: Some(&key.id),
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

    async fn settle_named(
        &self,
        scheme: &dyn SchemeFacilitator,
        key: &PaymentKey,
        identity: &PaymentIdentity,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        names: &AttemptNames,
    ) -> Outcome<SettleResponse> {
        let network = requirements.network.clone();
        let payer = identity.payer.clone();
        let fail = |reason: ErrorReason, message: String| {
            settle_failure(reason, message, &network, &payer)
        };
        match self.bound_elsewhere(names, key).await {
            Ok(Some(message)) => {
                return Outcome::Conflict(fail(ErrorReason::PaymentIdentifierConflict, message))
            }
            Ok(None) => {}
            Err(e) => {
                return Outcome::Unavailable(fail(
                    ErrorReason::UnexpectedSettleError,
                    e.to_string(),
                ))
            }
        }
        // Fast refusal without queueing behind the settlement in progress: the same decision
        // is taken again, authoritatively, under the claim.
        if let Ok(Some(row)) = self.inner.ledger.get(key).await {
            if let Some((reason, message)) = settle_refusal(scheme, &row, names.attempt_str()) {
                return Outcome::Rejected(fail(reason, message));
            }
        }
        let lock = self.lock_for(key);
        let _guard = lock.lock().await;
        let wait = scheme.receipt_timeout() + CLAIM_WAIT_MARGIN;
        match self.claim(key, wait).await {
            Ok(renewal) => {
                let outcome = self
                    .settle_locked(scheme, key, identity, payment, requirements, names)
                    .await;
                drop(renewal);
                if let Err(e) = self.inner.ledger.release(key, &self.inner.instance).await {
                    // The claim expires on its own; until then other instances wait.
                    tracing::warn!(error = %e, "could not release settlement claim");
                }
                outcome
            }
            Err(message) => Outcome::Unavailable(fail(ErrorReason::UnexpectedSettleError, message)),
        }
    }

    /// `POST /settle` without an attempt header: [`settle_attempt`](Self::settle_attempt) with
    /// the payment's `payment-identifier`, if any.
    pub async fn settle(&self, request: &FacilitatorRequest) -> Outcome<SettleResponse> {
        self.settle_attempt(request, None).await
    }

    /// `POST /verify` without an attempt header: [`verify_attempt`](Self::verify_attempt) with
    /// the payment's `payment-identifier`, if any.
    pub async fn verify(&self, request: &FacilitatorRequest) -> Outcome<VerifyResponse> {
        self.verify_attempt(request, None).await
    }

    /// A message when one of `names` is already tied to another payment than `key`.
    async fn bound_elsewhere(
        &self,
        names: &AttemptNames,
        key: &PaymentKey,
    ) -> Result<Option<String>, LedgerError> {
        for name in names.all() {
            if let Some(bound) = self.inner.ledger.attempt_binding(name.as_str()).await? {
                if &bound != key {
                    return Ok(Some(conflict_message(name)));
                }
            }
        }
        Ok(None)
    }

    /// Ties each of `names` to `key`; a message when one was tied to another payment first.
    async fn bind(
        &self,
        names: &AttemptNames,
        key: &PaymentKey,
    ) -> Result<Option<String>, LedgerError> {
        for name in names.all() {
            if &self.inner.ledger.bind_attempt(name.as_str(), key).await? != key {
                return Ok(Some(conflict_message(name)));
            }
        }
        Ok(None)
    }

    /// Whether `payment` is the very payment `row` recorded: the scheme compares the typed
    /// authorization, signature and payee and verifies the signature again; the amount is
    /// compared here (network, scheme, asset and payer are the key). `None` when it is;
    /// otherwise the refusal.
    async fn same_payment(
        &self,
        scheme: &dyn SchemeFacilitator,
        row: &LedgerEntry,
        payer: &str,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<Outcome<SettleResponse>> {
        let network = requirements.network.clone();
        let used = || {
            Outcome::Rejected(settle_failure(
                scheme.already_used_reason(),
                format!(
                    "payment {} of {payer} was already used, by another payment than this request",
                    row.key.id
                ),
                &network,
                payer,
            ))
        };
        let Ok(stored) = serde_json::from_str::<PaymentPayload>(&row.payment_json) else {
            return Some(used());
        };
        if row.amount.parse::<U256>().ok() != Some(requirements.amount.get()) {
            return Some(used());
        }
        match scheme
            .same_payment(&stored, &row.pay_to, payment, requirements)
            .await
        {
            Ok(true) => None,
            Ok(false) => Some(used()),
            Err(e) => Some(unverified_settle(&e, &network, payer)),
        }
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
        scheme: &dyn SchemeFacilitator,
        key: &PaymentKey,
        identity: &PaymentIdentity,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        names: &AttemptNames,
    ) -> Outcome<SettleResponse> {
        let network = requirements.network.clone();
        let payer = identity.payer.clone();
        let ledger = &self.inner.ledger;
        let unavailable = |msg: String| {
            Outcome::Unavailable(settle_failure(
                ErrorReason::UnexpectedSettleError,
                msg,
                &network,
                &payer,
            ))
        };
        let refused = |(reason, message): (ErrorReason, String)| {
            Outcome::Rejected(settle_failure(reason, message, &network, &payer))
        };
        let entry = match ledger.get(key).await {
            Ok(e) => e,
            Err(e) => return unavailable(e.to_string()),
        };
        if let Some(e) = &entry {
            if let Some(refusal) = settle_refusal(scheme, e, names.attempt_str()) {
                return refused(refusal);
            }
            match (e.state, e.tx_hash.as_deref()) {
                (SettlementState::Confirmed, tx) | (SettlementState::Submitted, tx) => {
                    // The same attempt: only the very same payment gets the answer back.
                    if let Some(refusal) = self
                        .same_payment(scheme, e, &payer, payment, requirements)
                        .await
                    {
                        return refusal;
                    }
                    if let (SettlementState::Confirmed, Some(tx)) = (e.state, tx) {
                        // An empty transaction is a settlement that moved nothing (a metered
                        // charge of zero): confirmed without one.
                        return Outcome::Ok(SettleResponse::success(tx.to_owned(), network, payer));
                    }
                    let Some(tx) = tx.filter(|t| !t.is_empty()) else {
                        return unavailable(
                            "the ledger holds a settlement without its transaction".into(),
                        );
                    };
                    let result = scheme.await_settlement(payment, requirements, tx).await;
                    let tx = tx.to_owned();
                    return self
                        .finish(e.clone(), result, network, payer, Some(tx))
                        .await;
                }
                _ => {}
            }
        }

        // A fresh settlement: this attempt (or, without one, an internal name nobody can
        // present) takes the payment for the time it needs. Nothing is written for a request
        // that does not verify, so invalid settles cannot grow the ledger.
        let owner = names
            .attempt_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("~settle-{}", B256::random()));
        let mut row = new_entry(
            key.clone(),
            SettlementState::Verified,
            payment,
            requirements,
            identity.valid_before,
        );
        row.attempt = Some(owner.clone());

        if entry
            .as_ref()
            .is_some_and(|e| e.state == SettlementState::Verified)
        {
            // A run may have died after sending but before recording the transaction: ask the
            // chain before sending anything. Its caller never got an answer, so this attempt —
            // the only one let through while the payment was not settled — gets it.
            match scheme.find_settlement(payment, requirements).await {
                Ok(Some(s)) => {
                    if let Err(e) = self.bind(names, key).await {
                        return unavailable(e.to_string());
                    }
                    let tx = s.transaction.clone();
                    return self.finish(row, Ok(s), network, payer, Some(tx)).await;
                }
                Ok(None) => {}
                Err(err) => return unavailable(err.message),
            }
        }

        // The scheme's settle-time check: the same as `/verify` unless the scheme's
        // requirements mean something else at settlement (a metered charge).
        let verified = match scheme.verify_settlement(payment, requirements).await {
            Ok(v) => v,
            Err(e) => return unverified_settle(&e, &network, &payer),
        };
        match self.bind(names, key).await {
            Ok(None) => {}
            Ok(Some(message)) => {
                return Outcome::Conflict(settle_failure(
                    ErrorReason::PaymentIdentifierConflict,
                    message,
                    &network,
                    &payer,
                ))
            }
            Err(e) => return unavailable(e.to_string()),
        }
        let lease = lease_for(requirements) + scheme.receipt_timeout();
        match ledger.reserve(&row, &owner, lease).await {
            Ok(true) => {}
            Ok(false) => return refused(in_use()),
            Err(e) => return unavailable(e.to_string()),
        }
        let tx = match scheme.submit(&verified).await {
            Ok(tx) => tx,
            Err(e) => return self.finish(row, Err(e), network, payer, None).await,
        };
        row.state = SettlementState::Submitted;
        row.tx_hash = Some(tx.clone());
        if let Err(e) = ledger.put(&row).await {
            // The transaction is out; the chain remembers it even if we could not. The next
            // attempt finds it through the `verified` path above.
            tracing::error!(%tx, error = %e, "could not record submitted settlement");
        }
        let result = scheme.await_settlement(payment, requirements, &tx).await;
        self.finish(row, result, network, payer, Some(tx)).await
    }

    /// Records the end of a settlement attempt and shapes the response.
    async fn finish(
        &self,
        mut row: LedgerEntry,
        result: Result<Settled, SchemeError>,
        network: Network,
        payer: String,
        tx: Option<String>,
    ) -> Outcome<SettleResponse> {
        let outcome = match result {
            Ok(s) => {
                row.state = SettlementState::Confirmed;
                row.tx_hash = Some(s.transaction.clone());
                row.error_reason = None;
                Outcome::Ok(SettleResponse {
                    amount: s.amount,
                    extra: s.extra.map(Box::new),
                    ..SettleResponse::success(s.transaction, network, s.payer)
                })
            }
            Err(e) => {
                let tx = e.transaction.clone().or(tx);
                let body = SettleResponse::failure(
                    e.reason.clone(),
                    Some(e.message),
                    network,
                    Some(payer),
                    tx.clone(),
                );
                row.error_reason = Some(e.reason.to_string());
                match e.fault {
                    SchemeFault::Pending => {
                        row.state = SettlementState::Submitted;
                        row.tx_hash = tx;
                        Outcome::Pending(body)
                    }
                    SchemeFault::Unavailable => {
                        row.state = SettlementState::Failed;
                        Outcome::Unavailable(body)
                    }
                    SchemeFault::Payment => {
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
            // Reserved by a live attempt (perhaps on another instance): found on chain it is
            // confirmed, but not found it stays that attempt's, not ours to end.
            let reserved = entry.state == SettlementState::Verified
                && entry
                    .lease_until
                    .is_some_and(|t| t > crate::ledger::now_millis());
            let Ok(network) = entry.key.network.parse::<Network>() else {
                continue;
            };
            let Ok(scheme_name) = entry.key.scheme.parse::<Scheme>() else {
                report.still_pending += 1;
                continue;
            };
            let Some(scheme) = self.inner.schemes.get(&scheme_name, &network) else {
                report.still_pending += 1;
                continue;
            };
            let Ok(payment) = serde_json::from_str::<PaymentPayload>(&entry.payment_json) else {
                report.still_pending += 1;
                continue;
            };
            let requirements = recorded_requirements(&entry, &payment, network, scheme_name);
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
            let result = match entry.tx_hash.as_deref().filter(|t| !t.is_empty()) {
                Some(tx) if entry.state == SettlementState::Submitted => {
                    Some(scheme.await_settlement(&payment, &requirements, tx).await)
                }
                _ => match scheme.find_settlement(&payment, &requirements).await {
                    Ok(Some(s)) => Some(Ok(s)),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                },
            };
            let mut row = entry.clone();
            let outcome = match result {
                Some(Ok(s)) => {
                    row.state = SettlementState::Confirmed;
                    row.tx_hash = Some(s.transaction);
                    report.confirmed += 1;
                    "success"
                }
                Some(Err(e)) if e.fault != SchemeFault::Payment => {
                    report.still_pending += 1;
                    "pending"
                }
                Some(Err(e)) => {
                    row.state = SettlementState::Failed;
                    row.error_reason = Some(e.reason.to_string());
                    report.failed += 1;
                    "failure"
                }
                None if reserved => {
                    report.still_pending += 1;
                    "pending"
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
                    scheme: Some(&entry.key.scheme),
                    payer: Some(&entry.key.payer),
                    payment_id: Some(&entry.key.id),
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

/// The ledger key of a payment: its network and scheme, and the scheme's identity of it.
fn key_of(requirements: &PaymentRequirements, identity: &PaymentIdentity) -> PaymentKey {
    PaymentKey::new(
        requirements.network.as_str(),
        requirements.scheme.as_str(),
        &identity.asset,
        &identity.payer,
        &identity.id,
    )
}

/// The requirements a recorded payment was settled against: the payment's own `accepted`
/// terms with the recorded payee, amount and asset (what the facilitator checked).
fn recorded_requirements(
    entry: &LedgerEntry,
    payment: &PaymentPayload,
    network: Network,
    scheme: Scheme,
) -> PaymentRequirements {
    let mut requirements = payment.accepted.clone();
    requirements.network = network;
    requirements.scheme = scheme;
    requirements.pay_to = entry.pay_to.clone();
    requirements.asset = entry.key.asset.clone();
    if let Ok(amount) = entry.amount.parse() {
        requirements.amount = amount;
    }
    requirements
}

/// A failed settlement of `payer`'s payment on `network`, with no transaction.
/// Settles a [repeatable](SchemeFacilitator::repeatable) operation: checked, sent and awaited
/// like a payment, without a ledger row (the chain makes a repeat harmless).
async fn settle_repeatable(
    scheme: &dyn SchemeFacilitator,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
    payer: &str,
) -> Outcome<SettleResponse> {
    let network = requirements.network.clone();
    let verified = match scheme.verify_settlement(payment, requirements).await {
        Ok(v) => v,
        Err(e) => return unverified_settle(&e, &network, payer),
    };
    let result = match scheme.submit(&verified).await {
        Ok(tx) => scheme.await_settlement(payment, requirements, &tx).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(s) => Outcome::Ok(SettleResponse {
            amount: s.amount,
            extra: s.extra.map(Box::new),
            ..SettleResponse::success(s.transaction, network, s.payer)
        }),
        Err(e) => {
            let body = SettleResponse::failure(
                e.reason.clone(),
                Some(e.message.clone()),
                network,
                Some(payer.to_owned()),
                e.transaction.clone(),
            );
            match e.fault {
                SchemeFault::Pending => Outcome::Pending(body),
                SchemeFault::Unavailable => Outcome::Unavailable(body),
                SchemeFault::Payment => Outcome::Rejected(body),
            }
        }
    }
}

fn settle_failure(
    reason: ErrorReason,
    message: String,
    network: &Network,
    payer: &str,
) -> SettleResponse {
    SettleResponse::failure(
        reason,
        Some(message),
        network.clone(),
        Some(payer.to_owned()),
        None,
    )
}

/// A settlement the scheme would not verify: rejected when the payment is at fault,
/// unavailable when the chain could not be asked.
fn unverified_settle(e: &SchemeError, network: &Network, payer: &str) -> Outcome<SettleResponse> {
    let body = settle_failure(e.reason.clone(), e.message.clone(), network, payer);
    if e.is_payment_fault() {
        Outcome::Rejected(body)
    } else {
        Outcome::Unavailable(body)
    }
}

/// The names a request gives its attempt: the caller's key (the `Idempotency-Key` header)
/// and the payment's own `payment-identifier` id. The attempt is the first present.
#[derive(Debug, Default)]
struct AttemptNames {
    header: Option<IdempotencyKey>,
    identifier: Option<IdempotencyKey>,
}

impl AttemptNames {
    /// Reads the payment's `payment-identifier`: malformed, or required by the server and
    /// absent, is the caller's error (HTTP 400).
    fn resolve(payment: &PaymentPayload, header: Option<&IdempotencyKey>) -> Result<Self, String> {
        let extensions = payment.extensions.as_ref();
        let identifier = PaymentIdentifier::from_extensions(extensions)
            .map_err(|e| format!("payment-identifier: {e}"))?;
        if identifier.is_none() && PaymentIdentifier::is_required(extensions) {
            return Err(
                "payment-identifier: the server requires an `id` and the payment has none".into(),
            );
        }
        Ok(Self {
            header: header.cloned(),
            identifier: identifier.map(|p| p.id),
        })
    }

    fn attempt_str(&self) -> Option<&str> {
        self.header
            .as_ref()
            .or(self.identifier.as_ref())
            .map(IdempotencyKey::as_str)
    }

    /// The names tied to one payment: only the one naming the attempt. When the caller
    /// sends its own key, the payment's `payment-identifier` id names nothing here, and it
    /// must not be checked or bound either: the id travels unsigned in the buyer's header, so
    /// a stranger who saw it could bind it first to a payment of its own and so have the
    /// seller's real attempt refused (`409`) for good.
    fn all(&self) -> impl Iterator<Item = &IdempotencyKey> {
        self.header
            .as_ref()
            .or(self.identifier.as_ref())
            .into_iter()
    }
}

fn conflict_message(name: &IdempotencyKey) -> String {
    format!("the attempt key {name} was already used for another payment")
}

fn in_use() -> (ErrorReason, String) {
    (
        ErrorReason::PaymentInUse,
        "this payment is in use by another request (reserved, or its settlement is in progress)"
            .into(),
    )
}

fn already_used(scheme: &dyn SchemeFacilitator, row: &LedgerEntry) -> (ErrorReason, String) {
    (
        scheme.already_used_reason(),
        format!(
            "payment {} of {} has been {}",
            row.key.id,
            row.key.payer,
            if row.state == SettlementState::Confirmed {
                "settled"
            } else {
                "submitted for settlement"
            }
        ),
    )
}

/// Whether another attempt than `attempt` holds a live reservation on `row`.
fn held_by_other(row: &LedgerEntry, attempt: Option<&str>) -> bool {
    row.state == SettlementState::Verified
        && row.attempt.is_some()
        && row.attempt.as_deref() != attempt
        && row
            .lease_until
            .is_some_and(|t| t > crate::ledger::now_millis())
}

/// Why `/verify` must refuse a payment in `row`'s state, whatever the chain says.
fn verify_refusal(
    scheme: &dyn SchemeFacilitator,
    row: &LedgerEntry,
    attempt: Option<&str>,
) -> Option<(ErrorReason, String)> {
    match row.state {
        SettlementState::Submitted | SettlementState::Confirmed => Some(already_used(scheme, row)),
        _ if held_by_other(row, attempt) => Some(in_use()),
        _ => None,
    }
}

/// Why `/settle` under `attempt` must refuse a payment in `row`'s state: it is another
/// attempt's (settled → nonce used; in flight or reserved → in use). `None` lets the same
/// attempt through to the re-check, or a free payment to settlement.
fn settle_refusal(
    scheme: &dyn SchemeFacilitator,
    row: &LedgerEntry,
    attempt: Option<&str>,
) -> Option<(ErrorReason, String)> {
    let same = attempt.is_some() && row.attempt.as_deref() == attempt;
    match row.state {
        SettlementState::Confirmed if !same => Some(already_used(scheme, row)),
        SettlementState::Submitted if !same => Some(in_use()),
        _ if held_by_other(row, attempt) => Some(in_use()),
        _ => None,
    }
}

/// How long a verification under an attempt reserves the payment: the requirements'
/// `maxTimeoutSeconds` (the time the seller said the exchange may take), at least
/// [`MIN_LEASE`] so a short timeout still covers a handler, at most [`MAX_LEASE`] so a copy
/// presented first under a stranger's key cannot lock the payment out for long.
fn lease_for(requirements: &PaymentRequirements) -> Duration {
    Duration::from_secs(requirements.max_timeout_seconds).clamp(MIN_LEASE, MAX_LEASE)
}

fn new_entry(
    key: PaymentKey,
    state: SettlementState,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
    valid_before: Option<u64>,
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
        attempt: None,
        lease_until: None,
        valid_before: valid_before.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
    }
}

fn unavailable_verify(message: String, payer: Option<String>) -> Outcome<VerifyResponse> {
    Outcome::Unavailable(VerifyResponse::invalid(
        ErrorReason::UnexpectedVerifyError,
        Some(message),
        payer,
    ))
}
