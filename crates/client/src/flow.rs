//! The pay-flow, apart from any transport: what the paying client decides and records, given
//! what a seller asked and what it answered.
//!
//! [`X402Middleware`](crate::X402Middleware) is a thin HTTP adapter over it (read the 402 into a
//! [`Challenge`], send [`PreparedPayment::header`], read the answer into a [`SellerAnswer`]); a
//! transport that carries x402 elsewhere — an MCP tool call with the payment in its `_meta` —
//! reuses [`PayFlow`] as it is.
//!
//! One payment:
//!
//! 1. [`PayFlow::pay`] — from the [`Challenge`]: the options some wallet supports → the
//!    [`SpendingPolicy`] ranks them (or refuses) → the approval hook → reconciliation of held
//!    reservations → the [`SpendLedger`] reserves the amount under every budget (or refuses) →
//!    the wallet signs (exactly once) → a fresh `payment-identifier` when offered → the
//!    authorization's handle is recorded *before* anything is sent → the payment's header.
//! 2. The transport sends it; while the seller answers `402 settlement_pending`,
//!    [`PendingRetries::next`] says whether to send the *same* payment again, and when.
//! 3. [`PayFlow::record`] — from the [`SellerAnswer`] (its status class and receipt):
//!    - a served answer with a successful receipt: `paid`;
//!    - a rejection whose reason proves the signed authorization can never be used (a bad
//!      signature, a token that is not the one signed for, …): released, as nothing can move;
//!    - anything else — `5xx`, `402 settlement_pending`, "payment in use", a served answer
//!      without a readable receipt — is *ambiguous*: the seller holds a valid authorization and
//!      may have settled it (or may still). The reservation stays held (`pending`) until
//!      [`PayFlow::reconcile`] learns from the chain that it was used (→ `paid`) or that it can
//!      no longer be used (→ released).
//!
//!    - a seller's identity gate refusing the verified payer (`403` with an
//!      `identity_check_failed` body, [`AnswerStatus::IdentityRefused`]): released. The gate
//!      runs after verification and *before* settlement, so its refusal is the seller's word
//!      that nothing was settled; a `403` without that body is not a gate's and stays ambiguous.
//!      (A refusal that comes with a successful settlement receipt contradicts itself and is
//!      held, for the chain to decide.)
//!
//!    No answer at all is [`PayFlow::record_no_answer`] (pending: the payment may have
//!    arrived); a payment that never left is [`PayFlow::record_not_sent`] (released).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate_proto::idempotency::{IdempotencyKey, PaymentIdentifier, PAYMENT_IDENTIFIER};
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::{
    header, AnyPaymentRequired, ErrorReason, Extensions, Network, PaymentPayload, PaymentRequired,
    PaymentRequirements, ResourceInfo, SettleResponse, X402Version,
};

use tollgate_proto::money::format_atomic;
use tollgate_proto::U256;

use crate::identity::{IdentityCheck, IdentityRefusal};
use crate::ledger::{Attempt, LedgerError, SpendLedger, Unresolved};
use crate::policy::{Priced, Refusal, SpendingPolicy};
use crate::signer::{
    AuthorizationHandle, AuthorizationState, PaymentSigner, SignedPayment, StateError,
};
use tollgate_core::{SessionOutlay, SessionPayer, SessionState};

/// How long after an authorization's `validBefore` the local clock must be before a held
/// reservation is released without the chain's word (no RPC URL for its network, or a chain
/// that has not produced a block since). Covers a chain clock running behind this machine's:
/// released early, an authorization mined late would be spent past the budget.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::from_secs(60);

/// How many times a payment whose settlement the seller reports pending is resent.
pub const DEFAULT_PENDING_RETRIES: u32 = 3;

/// The longest wait between such retries, whatever the seller's `Retry-After`.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// A settled payment, attached to the response's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// Protocol version used.
    pub version: X402Version,
    /// The settlement as the server reported it (transaction, network, payer).
    pub settlement: SettleResponse,
    /// What was paid.
    pub requirements: PaymentRequirements,
    /// The ledger row.
    pub ledger_id: i64,
}

/// A payment was sent but its outcome is unknown; attached to the response's extensions (when
/// there is a response). The amount stays reserved until reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPayment {
    /// What was offered.
    pub requirements: PaymentRequirements,
    /// The ledger row, `pending`.
    pub ledger_id: i64,
    /// Why the outcome is unknown.
    pub reason: String,
}

/// Why a request could not be paid for. Returned inside `reqwest_middleware::Error::Middleware`;
/// [`PaymentError::from_middleware_error`] finds it:
///
/// ```
/// # use tollgate_client::{reqwest_middleware, PaymentError, Refusal};
/// let err = reqwest_middleware::Error::middleware(PaymentError::Refused(Refusal::Declined));
/// assert!(matches!(
///     PaymentError::from_middleware_error(&err),
///     Some(PaymentError::Refused(Refusal::Declined))
/// ));
/// // Printed with its causes (`{:#}`), a refusal reads once.
/// assert_eq!(format!("{err:#}"), "payment refused by policy: payment declined by the user");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The spending policy refused. Not a `source`: the message already carries the refusal,
    /// and a second copy would print it twice in a `{:#}` chain.
    #[error("payment refused by policy: {0}")]
    Refused(Refusal),
    /// The 402 could not be understood.
    #[error("unreadable 402 challenge: {0}")]
    BadChallenge(String),
    /// The request body is a stream and cannot be sent a second time with the payment.
    #[error("the request body cannot be replayed with a payment (use a buffered body)")]
    BodyNotReplayable,
    /// Signing failed.
    #[error(transparent)]
    Signer(#[from] crate::signer::SignerError),
    /// The ledger failed; nothing was signed.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// A background task of the ledger failed (nothing was signed).
    #[error("spend ledger task failed: {0}")]
    Task(String),
    /// A payment channel's refund did not go through.
    #[error("{0}")]
    Refund(String),
    /// The seller answered the payment `403`: its identity gate refused the payer. The message
    /// lists each failed rule with the seller's reason and remedy.
    #[error("{}", crate::identity::refusal_message(.payer, .checks, .detail, .held))]
    IdentityRefused {
        /// The payer the gate checked (the verified one), when it said.
        payer: Option<String>,
        /// The rules the gate evaluated (empty when the body was not a gate's JSON).
        checks: Vec<IdentityCheck>,
        /// The body's text, bounded, when it was not a gate's `identity_check_failed` JSON.
        detail: Option<String>,
        /// Whether the amount stays reserved (`pending`): a `403` that is not a gate's
        /// refusal does not say nothing was settled. `false`: released.
        held: bool,
    },
}

impl From<Refusal> for PaymentError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl PaymentError {
    /// The payment error inside a failed request, if the failure was one (`None` for a
    /// transport error of `reqwest` itself): spares the caller matching
    /// `reqwest_middleware::Error::Middleware` and downcasting its `anyhow::Error`.
    pub fn from_middleware_error(err: &reqwest_middleware::Error) -> Option<&PaymentError> {
        match err {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<PaymentError>(),
            _ => None,
        }
    }
}

/// What [`PayFlow::reconcile`] did with the held reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Rows found used on chain: now `paid`.
    pub paid: Vec<i64>,
    /// Rows whose authorization can never be used: released (`failed`).
    pub released: Vec<i64>,
    /// Rows still held (unused but not expired, or the chain could not be asked).
    pub held: Vec<i64>,
}

/// Asked before each payment is signed, after the policy accepted it; `false` declines (for
/// interactive confirmation). Runs on a blocking thread, so it may read a terminal.
pub type ApproveHook = Arc<dyn Fn(&Priced) -> bool + Send + Sync>;

/// A seller's 402 challenge, as v2 types whatever version it came in, and the version to
/// answer in. Built by the transport from what it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The version the payment is answered in.
    pub version: X402Version,
    /// The seller's options, in the seller's order.
    pub accepts: Vec<PaymentRequirements>,
    /// The resource, echoed in the payment.
    pub resource: Option<ResourceInfo>,
    /// The extensions the seller offers (`payment-identifier`…).
    pub extensions: Option<Extensions>,
    /// The seller's error text (why the previous payment, if any, failed).
    pub error: Option<String>,
}

impl From<PaymentRequired> for Challenge {
    fn from(v2: PaymentRequired) -> Self {
        Self {
            version: X402Version::V2,
            accepts: v2.accepts,
            resource: Some(v2.resource),
            extensions: v2.extensions,
            error: v2.error,
        }
    }
}

impl From<AnyPaymentRequired> for Challenge {
    fn from(any: AnyPaymentRequired) -> Self {
        match any {
            AnyPaymentRequired::V2(p) => p.into(),
            AnyPaymentRequired::V1(v1) => {
                let mut resource = None;
                let accepts = v1
                    .accepts
                    .iter()
                    .map(|r| {
                        let (req, res) = r.to_v2();
                        resource.get_or_insert(res);
                        req
                    })
                    .collect();
                Self {
                    version: X402Version::V1,
                    accepts,
                    resource,
                    extensions: None,
                    error: Some(v1.error).filter(|e| !e.is_empty()),
                }
            }
        }
    }
}

/// A signed payment for one challenge, reserved in the ledger and recorded with its
/// authorization, ready to send — and to send again, unchanged, while the seller reports its
/// settlement pending.
///
/// Debug output leaves out the signed payload: it is a bearer authorization to move the
/// payer's money to the payee.
#[derive(Clone)]
pub struct PreparedPayment {
    ledger_id: i64,
    version: X402Version,
    requirements: PaymentRequirements,
    payload: PaymentPayload,
    authorization: AuthorizationHandle,
    payment_id: Option<IdempotencyKey>,
    header_value: String,
    session: Option<SessionHold>,
}

/// A payment through a channel holds the channel (one payment at a time per channel in this
/// process) until its answer is recorded and it is dropped, with the state it was signed from.
#[derive(Clone)]
struct SessionHold {
    key: String,
    state: SessionState,
    deposit: Option<u128>,
    _turn: Arc<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::fmt::Debug for PreparedPayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPayment")
            .field("ledger_id", &self.ledger_id)
            .field("version", &self.version)
            .field("requirements", &self.requirements)
            .field("authorization", &self.authorization)
            .field("payment_id", &self.payment_id)
            .field("session", &self.session.as_ref().map(|h| &h.key))
            .field("deposit", &self.session.as_ref().and_then(|h| h.deposit))
            .finish_non_exhaustive()
    }
}

impl PreparedPayment {
    /// The payment channel it goes through (its session key), when it is a channel payment.
    pub fn session(&self) -> Option<&str> {
        self.session.as_ref().map(|h| h.key.as_str())
    }

    /// The deposit it carries into its channel, in atomic units, if any.
    pub fn deposit(&self) -> Option<u128> {
        self.session.as_ref().and_then(|h| h.deposit)
    }

    /// The ledger row reserving it.
    pub fn ledger_id(&self) -> i64 {
        self.ledger_id
    }

    /// The protocol version it answers.
    pub fn version(&self) -> X402Version {
        self.version
    }

    /// The option paid.
    pub fn requirements(&self) -> &PaymentRequirements {
        &self.requirements
    }

    /// The signed payment (v2 form, with the `payment-identifier` when one was offered), for a
    /// transport that carries it other than in a header.
    pub fn payload(&self) -> &PaymentPayload {
        &self.payload
    }

    /// What was authorized, as recorded in the ledger.
    pub fn authorization(&self) -> &AuthorizationHandle {
        &self.authorization
    }

    /// The `payment-identifier` sent with it, if the seller offered the extension.
    pub fn payment_id(&self) -> Option<&IdempotencyKey> {
        self.payment_id.as_ref()
    }

    /// The HTTP header carrying it: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1), and the
    /// encoded value (base64 JSON, always a valid header value).
    pub fn header(&self) -> (http::HeaderName, &str) {
        let name = match self.version {
            X402Version::V2 => header::PAYMENT_SIGNATURE,
            X402Version::V1 => header::X_PAYMENT,
        };
        (name, &self.header_value)
    }
}

/// A signed refund request for a payment channel, ready to send (holds the channel until
/// dropped).
pub struct PreparedRefund {
    header_value: String,
    requirements: PaymentRequirements,
    asset: crate::policy::AssetInfo,
    key: String,
    state: SessionState,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl std::fmt::Debug for PreparedRefund {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRefund")
            .field("session", &self.key)
            .field("requirements", &self.requirements)
            .finish_non_exhaustive()
    }
}

impl PreparedRefund {
    /// The channel's session key.
    pub fn session(&self) -> &str {
        &self.key
    }

    /// The channel's terms (the seller's option it was opened under).
    pub fn requirements(&self) -> &PaymentRequirements {
        &self.requirements
    }

    /// The header carrying it (`PAYMENT-SIGNATURE`) and its value.
    pub fn header(&self) -> (http::HeaderName, &str) {
        (header::PAYMENT_SIGNATURE, &self.header_value)
    }
}

/// What a refund returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    /// The ledger row of the refund.
    pub ledger_id: i64,
    /// What the seller says it returned, in atomic units.
    pub refunded: u128,
    /// What went back under the budgets (at most what was deposited and not yet returned).
    pub credited: u128,
    /// What is left in the channel, in atomic units.
    pub remaining: u128,
    /// The refund transaction.
    pub transaction: String,
    /// The channel's terms.
    pub requirements: PaymentRequirements,
}

/// What kind of answer a seller gave to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerStatus {
    /// The resource was served (HTTP `2xx`).
    Served,
    /// Payment required again (HTTP `402`), with the seller's error text.
    PaymentRequired {
        /// The challenge's `error`, if any.
        error: Option<String>,
    },
    /// A seller's identity gate refused the verified payer (HTTP `403` with an
    /// `identity_check_failed` body), before settling anything.
    IdentityRefused(IdentityRefusal),
    /// Anything else (a `5xx`, a `4xx` other than `402`, a redirect), named as the transport
    /// names it, for the ledger's reason (e.g. `503 Service Unavailable`).
    Other(String),
}

/// A seller's answer to a payment, as the transport read it: its status class and the
/// settlement receipt it carried, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerAnswer {
    /// What kind of answer.
    pub status: AnswerStatus,
    /// The settlement receipt (`PAYMENT-RESPONSE`): `None` when absent, `Err` with why when
    /// present but unreadable.
    pub receipt: Option<Result<SettleResponse, String>>,
}

impl SellerAnswer {
    /// Whether the seller says the payment's settlement is still pending and invites a retry
    /// with the same payment (`402` whose reason is `settlement_pending`).
    pub fn settlement_pending(&self) -> bool {
        match &self.status {
            AnswerStatus::PaymentRequired { error } => {
                error.as_deref().and_then(first_reason_code) == Some(ErrorReason::SettlementPending)
            }
            _ => false,
        }
    }
}

/// What [`PayFlow::record`] concluded from a seller's answer, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Settled: the row is `paid`.
    Paid(PaymentReceipt),
    /// Refused in a way that proves the authorization can never be used: the reservation is
    /// released (`failed`).
    Refused {
        /// The ledger row.
        ledger_id: i64,
        /// Why.
        reason: String,
    },
    /// Unknown: the amount stays reserved (`pending`) until reconciliation.
    Pending(PendingPayment),
}

/// How often, and how long apart, one payment is sent again while its seller answers `402
/// settlement_pending` (its transfer is being mined and it keeps the response for the retry).
/// One per payment: it counts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRetries {
    left: u32,
    max_wait: Duration,
}

impl PendingRetries {
    /// At most `retries` resends, each after the seller's `Retry-After` capped at `max_wait`.
    pub fn new(retries: u32, max_wait: Duration) -> Self {
        Self {
            left: retries,
            max_wait,
        }
    }

    /// After `answer` to `payment`, whether to send the same payment again and after how long
    /// (`retry_after`: the seller's `Retry-After`, capped at the maximum wait), as of Unix time
    /// `now`. `None`: record the answer as it is. A payment whose authorization expires before
    /// the wait is over is not resent: its outcome is settled either way.
    pub fn next(
        &mut self,
        payment: &PreparedPayment,
        answer: &SellerAnswer,
        retry_after: Duration,
        now: u64,
    ) -> Option<Duration> {
        if self.left == 0 || !answer.settlement_pending() {
            return None;
        }
        let wait = retry_after.min(self.max_wait);
        if now.saturating_add(wait.as_secs()) >= payment.authorization.valid_before {
            return None;
        }
        self.left -= 1;
        Some(wait)
    }
}

/// The pay-flow: a wallet, a spending policy and a spend ledger, and what it takes to settle
/// held reservations from the chain. Cheap to clone (shared state); every clone shares one
/// reconciliation at a time.
#[derive(Clone)]
pub struct PayFlow {
    wallet: Arc<dyn PaymentSigner>,
    policy: Arc<SpendingPolicy>,
    ledger: SpendLedger,
    approve: Option<ApproveHook>,
    rpc_urls: Arc<HashMap<Network, String>>,
    expiry_grace: Duration,
    /// One reconciliation at a time: concurrent payments wait for it and then see its result
    /// instead of asking the chain the same question in parallel.
    reconciling: Arc<tokio::sync::Mutex<()>>,
    /// One payment at a time per payment channel (session key): a seller refuses a second
    /// voucher while the first is in flight, and each voucher builds on the last receipt.
    sessions: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for PayFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // RPC URLs often embed an API key: list the networks only.
        f.debug_struct("PayFlow")
            .field("policy", &self.policy)
            .field("rpc_networks", &self.rpc_urls.keys().collect::<Vec<_>>())
            .field("expiry_grace", &self.expiry_grace)
            .finish_non_exhaustive()
    }
}

impl PayFlow {
    /// Pays with `wallet` (one wallet or [`Wallets`](crate::Wallets)) under `policy`,
    /// recording in `ledger`.
    pub fn new(wallet: impl PaymentSigner, policy: SpendingPolicy, ledger: SpendLedger) -> Self {
        Self::with_shared_wallet(Arc::new(wallet), policy, ledger)
    }

    /// Pays with a wallet shared with other code.
    pub fn with_shared_wallet(
        wallet: Arc<dyn PaymentSigner>,
        policy: SpendingPolicy,
        ledger: SpendLedger,
    ) -> Self {
        Self {
            wallet,
            policy: Arc::new(policy),
            ledger,
            approve: None,
            rpc_urls: Arc::new(HashMap::new()),
            expiry_grace: DEFAULT_EXPIRY_GRACE,
            reconciling: Arc::new(tokio::sync::Mutex::new(())),
            sessions: Arc::default(),
        }
    }

    /// Asks `hook` before signing each payment.
    pub fn with_approval(mut self, hook: ApproveHook) -> Self {
        self.approve = Some(hook);
        self
    }

    /// The JSON-RPC endpoint reconciliation asks about authorizations on `network`. Without
    /// one, an ambiguous payment on that network stays reserved until its authorization has
    /// expired by this machine's clock (plus the grace), and is then released unchecked.
    pub fn with_rpc_url(mut self, network: Network, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.rpc_urls).insert(network, url.into());
        self
    }

    /// How long past `validBefore` (by this machine's clock) a held reservation is released
    /// without a chain block proving the expiry; default [`DEFAULT_EXPIRY_GRACE`].
    pub fn with_expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// The spend ledger.
    pub fn ledger(&self) -> &SpendLedger {
        &self.ledger
    }

    /// The spending policy.
    pub fn policy(&self) -> &SpendingPolicy {
        &self.policy
    }

    /// The wallet.
    pub fn wallet(&self) -> &Arc<dyn PaymentSigner> {
        &self.wallet
    }

    /// Chooses an option of `challenge`, reserves it, signs it (once) and records what was
    /// signed; the result is ready to send. `attempt` names the request for the ledger (an
    /// HTTP method and URL, or a transport's own equivalent).
    ///
    /// A refusal (nothing payable, the policy, the approval hook, a budget) is recorded and
    /// nothing is signed. A failure after reserving releases the reservation, except once
    /// signed and recorded: from then on only [`record`](Self::record) (or
    /// [`record_no_answer`](Self::record_no_answer) /
    /// [`record_not_sent`](Self::record_not_sent)) settles it.
    pub async fn pay(
        &self,
        challenge: Challenge,
        attempt: &Attempt<'_>,
    ) -> Result<PreparedPayment, PaymentError> {
        let url = attempt.url;
        let payable: Vec<_> = challenge
            .accepts
            .iter()
            .filter(|r| self.wallet.supports(r))
            .cloned()
            .collect();
        if payable.is_empty() {
            let refusal = Refusal::Unsupported(url.to_owned());
            self.ledger.record_refusal(attempt, &refusal)?;
            return Err(PaymentError::Refused(refusal));
        }
        let ranked = match self.policy.rank(payable) {
            Ok(r) => r,
            Err(refusal) => {
                self.ledger.record_refusal(attempt, &refusal)?;
                return Err(PaymentError::Refused(refusal));
            }
        };
        let Some(chosen) = ranked.into_iter().next() else {
            return Err(PaymentError::Refused(Refusal::Unsupported(url.to_owned())));
        };
        if let Some(hook) = &self.approve {
            let (hook, c) = (hook.clone(), chosen.clone());
            let approved = tokio::task::spawn_blocking(move || hook(&c))
                .await
                .unwrap_or(false);
            if !approved {
                let refusal = Refusal::Declined;
                self.ledger.record_refusal(attempt, &refusal)?;
                return Err(PaymentError::Refused(refusal));
            }
        }
        // Settle what earlier ambiguous payments became before counting them against the
        // budgets (a failure here keeps them held, which only errs towards refusing).
        self.reconcile().await?;
        if let Some(session) = self.wallet.session(&chosen.requirements) {
            return self.pay_session(session, challenge, chosen, attempt).await;
        }
        let ledger = self.ledger.clone();
        let policy = self.policy.clone();
        let (m, u, c) = (attempt.method.to_owned(), url.to_owned(), chosen.clone());
        let reservation = tokio::task::spawn_blocking(move || {
            ledger.reserve(
                &policy,
                &c,
                &Attempt {
                    method: &m,
                    url: &u,
                },
            )
        })
        .await
        .map_err(|e| PaymentError::Task(e.to_string()))??;
        let id = reservation?;
        tracing::info!(%url, network = %chosen.requirements.network,
            amount = %chosen.requirements.amount, "paying");
        let signed = match self
            .wallet
            .sign(&chosen.requirements, challenge.resource.clone())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.ledger.release(id, &e.to_string())?;
                return Err(e.into());
            }
        };
        self.prepared(id, &challenge, chosen.requirements, signed, None)
    }

    /// [`pay`](Self::pay) through a payment channel: one payment at a time per channel; the
    /// deposit, when the channel needs one, is chosen within the policy's maximum deposit and
    /// reserved under every budget before anything is signed; a request the channel covers is
    /// recorded but counts as nothing.
    async fn pay_session(
        &self,
        session: &dyn SessionPayer,
        challenge: Challenge,
        chosen: Priced,
        attempt: &Attempt<'_>,
    ) -> Result<PreparedPayment, PaymentError> {
        let requirements = &chosen.requirements;
        let key = session.key(requirements)?;
        let turn = Arc::new(self.session_turn(&key).await);
        let state = self.load_session(&key).await?;
        let deposit = match session.outlay(requirements, state.as_ref())? {
            SessionOutlay::Covered => None,
            SessionOutlay::Deposit { needed, wanted } => {
                let max = self.policy.deposit_limit(&chosen);
                if needed > max {
                    let d = chosen.asset.decimals;
                    let refusal = Refusal::OverMaxDeposit {
                        symbol: chosen.asset.symbol.clone(),
                        needed: format_atomic(U256::from(needed), d),
                        max: format_atomic(U256::from(max), d),
                    };
                    self.ledger.record_refusal(attempt, &refusal)?;
                    return Err(PaymentError::Refused(refusal));
                }
                // Within the budgets' room too, when some is left above what is needed: a
                // smaller deposit now beats a refusal (the reservation checks again).
                let room = self
                    .ledger
                    .budget_room(&self.policy, &chosen.asset.symbol, chosen.asset.decimals)?
                    .map_or(u128::MAX, |r| u128::try_from(r).unwrap_or(u128::MAX));
                Some(wanted.min(max).min(room).max(needed))
            }
        };
        let ledger = self.ledger.clone();
        let policy = self.policy.clone();
        let (m, u, c, k) = (
            attempt.method.to_owned(),
            attempt.url.to_owned(),
            chosen.clone(),
            key.clone(),
        );
        let id = tokio::task::spawn_blocking(move || {
            ledger.reserve_session(
                &policy,
                &c,
                &Attempt {
                    method: &m,
                    url: &u,
                },
                &k,
                deposit,
            )
        })
        .await
        .map_err(|e| PaymentError::Task(e.to_string()))???;
        tracing::info!(url = %attempt.url, network = %requirements.network, session = %key,
            price = %requirements.amount, deposit = ?deposit, "paying through a channel");
        let signed = match session
            .sign(requirements, challenge.resource.clone(), state, deposit)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.ledger.release(id, &e.to_string())?;
                return Err(e.into());
            }
        };
        // The channel as it stands while this payment is answered, kept before it leaves: a
        // process that dies now leaves the next one a voucher to resynchronise from.
        if let Err(e) = self.ledger.save_session(&key, requirements, &signed.state) {
            let _ = self.ledger.release(id, "ledger failed before sending");
            return Err(e.into());
        }
        let hold = SessionHold {
            key,
            state: signed.state,
            deposit,
            _turn: turn,
        };
        self.prepared(
            id,
            &challenge,
            chosen.requirements,
            signed.signed,
            Some(hold),
        )
    }

    /// Waits for the turn of the channel `key` in this process.
    async fn session_turn(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    async fn load_session(&self, key: &str) -> Result<Option<SessionState>, PaymentError> {
        let (ledger, k) = (self.ledger.clone(), key.to_owned());
        Ok(
            tokio::task::spawn_blocking(move || ledger.session_state(&k))
                .await
                .map_err(|e| PaymentError::Task(e.to_string()))??,
        )
    }

    /// The signed payment `signed` for reservation `id`, completed (a `payment-identifier`,
    /// the Bazaar echo), recorded with its authorization and encoded: ready to send.
    fn prepared(
        &self,
        id: i64,
        challenge: &Challenge,
        requirements: PaymentRequirements,
        signed: SignedPayment,
        session: Option<SessionHold>,
    ) -> Result<PreparedPayment, PaymentError> {
        let mut payment = signed.payload;
        // One id per payment, generated here and kept with the row: a retry of this same
        // payment carries the same id, so the seller can answer it with the original
        // settlement; another payment never reuses it.
        let payment_id = (challenge.version == X402Version::V2
            && PaymentIdentifier::is_offered(challenge.extensions.as_ref()))
        .then(new_payment_id);
        if let Some(pid) = &payment_id {
            let required = PaymentIdentifier::is_required(challenge.extensions.as_ref());
            payment
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    PAYMENT_IDENTIFIER.to_owned(),
                    PaymentIdentifier::echo(pid, required),
                );
        }
        // The seller's Bazaar description is echoed, as the spec asks of clients
        // (`extensions/bazaar.md`, "Client Behavior"): a facilitator catalogues a resource
        // only from what the payment carries, so without it a paid resource stays undiscoverable.
        if challenge.version == X402Version::V2 {
            if let Some(bazaar) = challenge.extensions.as_ref().and_then(|e| e.get("bazaar")) {
                payment
                    .extensions
                    .get_or_insert_with(Default::default)
                    .entry("bazaar")
                    .or_insert_with(|| bazaar.clone());
            }
        }
        // Recorded before the payment leaves the process: a crash after sending must still
        // leave enough behind to reconcile.
        if let Err(e) = self.ledger.attach_authorization(
            id,
            &signed.authorization,
            payment_id.as_ref().map(IdempotencyKey::as_str),
        ) {
            let _ = self.ledger.release(id, "ledger failed before sending");
            return Err(e.into());
        }
        let header_value = match challenge.version {
            X402Version::V2 => header::encode(&payment),
            X402Version::V1 => header::encode(&PaymentPayloadV1::from_v2(&payment)),
        };
        if !is_header_value(&header_value) {
            // Never sent: nothing can move.
            let _ = self.ledger.release(id, "payment header not encodable");
            return Err(PaymentError::BadChallenge(
                "the payment does not encode as a header value".into(),
            ));
        }
        Ok(PreparedPayment {
            ledger_id: id,
            version: challenge.version,
            requirements,
            payload: payment,
            authorization: signed.authorization,
            payment_id,
            header_value,
            session,
        })
    }

    /// Records what the seller's `answer` to `payment` says about the money: `paid`,
    /// released, or held `pending`.
    pub fn record(
        &self,
        payment: &PreparedPayment,
        answer: &SellerAnswer,
    ) -> Result<PaymentOutcome, LedgerError> {
        if let Some(hold) = &payment.session {
            return self.record_session(payment, hold, answer);
        }
        let id = payment.ledger_id;
        Ok(match classify(answer) {
            Reading::Paid(settlement) => {
                // A metered payment's receipt states the charge; the rest of the reserved
                // maximum is released.
                self.ledger.mark_paid_charged(
                    id,
                    &settlement.transaction,
                    settlement.amount.map(|a| a.get()),
                )?;
                PaymentOutcome::Paid(PaymentReceipt {
                    version: payment.version,
                    settlement,
                    requirements: payment.requirements.clone(),
                    ledger_id: id,
                })
            }
            Reading::Rejected(reason) => {
                self.ledger.release(id, &reason)?;
                PaymentOutcome::Refused {
                    ledger_id: id,
                    reason,
                }
            }
            Reading::Ambiguous(reason) => {
                tracing::warn!(network = %payment.requirements.network, %reason,
                    "payment outcome unknown: amount stays reserved");
                self.ledger.mark_pending(id, &reason)?;
                PaymentOutcome::Pending(PendingPayment {
                    requirements: payment.requirements.clone(),
                    ledger_id: id,
                    reason,
                })
            }
        })
    }

    /// [`record`](Self::record) for a channel payment: a receipt is checked by the scheme and
    /// moves the channel on (a receipt that breaks the scheme's rules halts the channel: nothing
    /// more is signed on it); anything else leaves the channel where it was, the voucher
    /// unanswered. A deposit whose outcome is unknown stays held like any ambiguous payment; a
    /// request the channel covered moved nothing by itself and is released.
    fn record_session(
        &self,
        payment: &PreparedPayment,
        hold: &SessionHold,
        answer: &SellerAnswer,
    ) -> Result<PaymentOutcome, LedgerError> {
        let id = payment.ledger_id;
        let requirements = &payment.requirements;
        let Some(session) = self.wallet.session(requirements) else {
            return Err(LedgerError::new(format!(
                "no wallet pays the channel {} any more",
                hold.key
            )));
        };
        let settlement = match classify(answer) {
            Reading::Paid(settlement) => settlement,
            other => return self.record_session_unpaid(payment, hold, session, other),
        };
        let charged = match session.receipt(requirements, hold.state.clone(), &settlement) {
            Ok(r) => {
                self.ledger
                    .save_session(&hold.key, requirements, &r.state)?;
                r.charged
            }
            Err(e) => {
                tracing::error!(session = %hold.key, error = %e,
                    "the seller's receipt breaks the channel's rules: nothing more is signed on it");
                let halted = session.halt(hold.state.clone(), &e.to_string());
                self.ledger.save_session(&hold.key, requirements, &halted)?;
                // Counted at the price for the record; the deposit bounds what can move.
                u128::try_from(requirements.amount.get()).unwrap_or(u128::MAX)
            }
        };
        self.ledger
            .mark_session_paid(id, &settlement.transaction, charged)?;
        Ok(PaymentOutcome::Paid(PaymentReceipt {
            version: payment.version,
            settlement,
            requirements: requirements.clone(),
            ledger_id: id,
        }))
    }

    fn record_session_unpaid(
        &self,
        payment: &PreparedPayment,
        hold: &SessionHold,
        session: &dyn SessionPayer,
        reading: Reading,
    ) -> Result<PaymentOutcome, LedgerError> {
        let (id, requirements) = (payment.ledger_id, &payment.requirements);
        let unanswered = session.unanswered(hold.state.clone());
        self.ledger
            .save_session(&hold.key, requirements, &unanswered)?;
        Ok(match reading {
            Reading::Paid(_) => unreachable!("handled above"),
            Reading::Ambiguous(reason) if hold.deposit.is_some() => {
                tracing::warn!(session = %hold.key, %reason,
                    "deposit outcome unknown: amount stays reserved");
                self.ledger.mark_pending(id, &reason)?;
                PaymentOutcome::Pending(PendingPayment {
                    requirements: requirements.clone(),
                    ledger_id: id,
                    reason,
                })
            }
            Reading::Rejected(reason) | Reading::Ambiguous(reason) => {
                self.ledger.release(id, &reason)?;
                PaymentOutcome::Refused {
                    ledger_id: id,
                    reason,
                }
            }
        })
    }

    /// Whether `outcome` of `payment` is a channel's refusal because the seller's state of the
    /// channel differs from this client's (another process paid on it, a response was lost):
    /// then [`resync`](Self::resync) from the seller's challenge and pay again.
    pub fn out_of_sync(&self, payment: &PreparedPayment, outcome: &PaymentOutcome) -> bool {
        let reason = match outcome {
            PaymentOutcome::Refused { reason, .. } => reason,
            // A deposit refused for the same reason stays held: its token authorization is
            // valid until it expires, so only the chain can say it was never used.
            PaymentOutcome::Pending(p) => &p.reason,
            PaymentOutcome::Paid(_) => return false,
        };
        payment.session.is_some()
            && self
                .wallet
                .session(&payment.requirements)
                .is_some_and(|s| s.is_out_of_sync(reason))
    }

    /// Adopts the seller's state of `payment`'s channel from its corrective `challenge` (the
    /// scheme checks the seller's proof first). Call before dropping `payment`, which holds
    /// the channel.
    pub fn resync(
        &self,
        payment: &PreparedPayment,
        challenge: &Challenge,
    ) -> Result<(), PaymentError> {
        let (Some(hold), Some(session)) = (
            payment.session.as_ref(),
            self.wallet.session(&payment.requirements),
        ) else {
            return Err(PaymentError::BadChallenge(
                "not a channel payment: nothing to resynchronise".into(),
            ));
        };
        let paid = &payment.requirements;
        let corrective = challenge
            .accepts
            .iter()
            .find(|r| {
                r.scheme == paid.scheme
                    && r.network == paid.network
                    && r.pay_to.eq_ignore_ascii_case(&paid.pay_to)
                    && r.asset.eq_ignore_ascii_case(&paid.asset)
                    && session.key(r).ok().as_deref() == Some(hold.key.as_str())
            })
            .ok_or_else(|| {
                PaymentError::BadChallenge(
                    "the corrective 402 offers no state of this channel".into(),
                )
            })?;
        let state = self.ledger.session_state(&hold.key)?;
        let state = session.resync(corrective, state)?;
        tracing::info!(session = %hold.key, "channel resynchronised from the seller's proof");
        self.ledger.save_session(&hold.key, paid, &state)?;
        Ok(())
    }

    /// Signs a request to refund `amount` (everything unclaimed when `None`) of the channel
    /// this ledger pays `challenge`'s seller through. The refund goes as a payment header to
    /// the same resource; the seller answers it without serving the resource.
    pub async fn refund(
        &self,
        challenge: Challenge,
        amount: Option<u128>,
    ) -> Result<PreparedRefund, PaymentError> {
        let mut open = None;
        for option in &challenge.accepts {
            let Some(session) = self.wallet.session(option) else {
                continue;
            };
            let Ok(key) = session.key(option) else {
                continue;
            };
            if let Some(state) = self.load_session(&key).await? {
                open = Some((option.clone(), key, state));
                break;
            }
        }
        let Some((requirements, key, _)) = open else {
            return Err(PaymentError::BadChallenge(
                "this ledger has no payment channel with this seller for these terms".into(),
            ));
        };
        let asset = self
            .policy
            .asset_info(&requirements.network, &requirements.asset)
            .ok_or_else(|| {
                PaymentError::Refused(Refusal::AssetNotAllowed {
                    network: requirements.network.clone(),
                    asset: requirements.asset.clone(),
                    why: "unknown asset: its decimals are not known (register it)".into(),
                })
            })?;
        let turn = self.session_turn(&key).await;
        // Read again under the channel's turn: a payment may have moved it meanwhile.
        let state = self.load_session(&key).await?.unwrap_or_default();
        let session = self
            .wallet
            .session(&requirements)
            .ok_or_else(|| PaymentError::BadChallenge("no wallet pays this channel".into()))?;
        let payload = session
            .refund(
                &requirements,
                challenge.resource.clone(),
                state.clone(),
                amount,
            )
            .await?;
        Ok(PreparedRefund {
            header_value: header::encode(&payload),
            requirements,
            asset,
            key,
            state,
            _turn: turn,
        })
    }

    /// Adopts the seller's state of `refund`'s channel from the corrective `challenge` it
    /// answered the refund with (its proof checked), and signs the refund again from it.
    pub async fn resync_refund(
        &self,
        refund: &mut PreparedRefund,
        challenge: &Challenge,
        amount: Option<u128>,
    ) -> Result<(), PaymentError> {
        let session = self
            .wallet
            .session(&refund.requirements)
            .ok_or_else(|| PaymentError::BadChallenge("no wallet pays this channel".into()))?;
        let corrective = corrective_option(session, &refund.key, &refund.requirements, challenge)?;
        let state = session.resync(corrective, Some(refund.state.clone()))?;
        self.ledger
            .save_session(&refund.key, &refund.requirements, &state)?;
        let payload = session
            .refund(
                &refund.requirements,
                challenge.resource.clone(),
                state.clone(),
                amount,
            )
            .await?;
        refund.header_value = header::encode(&payload);
        refund.state = state;
        Ok(())
    }

    /// Whether the seller refused `answer`'s refund because its state of the channel differs
    /// from ours (then [`resync_refund`](Self::resync_refund) and send it again).
    pub fn refund_out_of_sync(&self, refund: &PreparedRefund, answer: &SellerAnswer) -> bool {
        match (&answer.status, self.wallet.session(&refund.requirements)) {
            (AnswerStatus::PaymentRequired { error: Some(e) }, Some(session)) => {
                session.is_out_of_sync(e)
            }
            _ => false,
        }
    }

    /// Records the seller's answer to a refund request: the refunded amount goes back under
    /// the budgets (at most what was deposited and not yet returned), and the channel's state
    /// moves on.
    pub fn record_refund(
        &self,
        refund: &PreparedRefund,
        answer: &SellerAnswer,
        attempt: &Attempt<'_>,
    ) -> Result<RefundOutcome, PaymentError> {
        let session = self
            .wallet
            .session(&refund.requirements)
            .ok_or_else(|| PaymentError::BadChallenge("no wallet pays this channel".into()))?;
        let receipt = match (&answer.status, &answer.receipt) {
            (AnswerStatus::Served, Some(Ok(r))) if r.success => r,
            (status, receipt) => {
                let why = match (status, receipt) {
                    (_, Some(Ok(r))) => format!(
                        "the refund failed: {}{}",
                        r.error_reason
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "no reason".into()),
                        r.extra
                            .as_ref()
                            .and_then(|e| e.get("errorMessage").or_else(|| e.get("message")))
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ),
                    (AnswerStatus::PaymentRequired { error }, _) => format!(
                        "the seller refused the refund: {}",
                        error.as_deref().unwrap_or("no reason")
                    ),
                    (_, Some(Err(e))) => format!("the refund's receipt is unreadable: {e}"),
                    (s, None) => {
                        format!("the seller answered the refund without a receipt ({s:?})")
                    }
                };
                return Err(PaymentError::Refund(why));
            }
        };
        let done = session.refunded(&refund.requirements, refund.state.clone(), receipt)?;
        self.ledger
            .save_session(&refund.key, &refund.requirements, &done.state)?;
        let (ledger_id, credited) = self.ledger.record_refund(
            &refund.key,
            &refund.requirements,
            &refund.asset,
            attempt,
            done.refunded,
            &done.transaction,
        )?;
        tracing::info!(session = %refund.key, refunded = done.refunded, credited,
            tx = %done.transaction, "channel refunded");
        Ok(RefundOutcome {
            ledger_id,
            refunded: done.refunded,
            credited,
            remaining: done.remaining,
            transaction: done.transaction,
            requirements: refund.requirements.clone(),
        })
    }

    /// The payment was sent (or may have been) and no answer was read: it stays reserved as
    /// `pending`, as the seller may hold it.
    pub fn record_no_answer(
        &self,
        payment: &PreparedPayment,
        reason: &str,
    ) -> Result<(), LedgerError> {
        self.ledger.mark_pending(payment.ledger_id, reason)
    }

    /// The payment never left this process: its reservation is released.
    pub fn record_not_sent(
        &self,
        payment: &PreparedPayment,
        reason: &str,
    ) -> Result<(), LedgerError> {
        self.ledger.release(payment.ledger_id, reason)
    }

    /// Settles held reservations from the chain: an authorization found used is `paid`; one
    /// that can no longer be used (unused at a block at or past its `validBefore`, or — when
    /// the chain cannot be asked — `validBefore` plus the grace passed by this machine's clock)
    /// is released; anything else, including an RPC failure, stays held.
    ///
    /// Runs before every payment; call it yourself to settle the books without paying.
    pub async fn reconcile(&self) -> Result<ReconcileReport, LedgerError> {
        let _one_at_a_time = self.reconciling.lock().await;
        let now = unix_now();
        let grace = self.expiry_grace.as_secs();
        let ledger = self.ledger.clone();
        let rows = tokio::task::spawn_blocking(move || ledger.unresolved(now, grace))
            .await
            .map_err(|e| LedgerError::new(format!("ledger task failed: {e}")))??;
        let mut report = ReconcileReport::default();
        for row in rows {
            let Unresolved {
                id, authorization, ..
            } = &row;
            // The clock is read *before* the chain: "unused, and already expired" must hold
            // at the moment of the read, not only by the time the answer arrives.
            let asked_at = unix_now();
            let state = match self.rpc_urls.get(&authorization.network) {
                Some(url) => Some(self.wallet.authorization_state(authorization, url).await),
                None => None,
            };
            match verdict(state, authorization.valid_before, asked_at, grace) {
                Verdict::Used(why) => {
                    tracing::info!(id, nonce = %authorization.id, "held payment was used on chain: paid");
                    self.ledger.resolve_used(*id, &why)?;
                    report.paid.push(*id);
                }
                Verdict::Unusable(why) => {
                    tracing::info!(id, nonce = %authorization.id, "held payment can no longer be used: released");
                    self.ledger.resolve_expired(*id, &why)?;
                    report.released.push(*id);
                }
                Verdict::Hold(why) => {
                    tracing::debug!(id, nonce = %authorization.id, %why, "held payment stays reserved");
                    report.held.push(*id);
                }
            }
        }
        Ok(report)
    }
}

/// The option of a corrective `challenge` carrying the seller's state of the channel `key`
/// (the same terms as `paid`).
fn corrective_option<'c>(
    session: &dyn SessionPayer,
    key: &str,
    paid: &PaymentRequirements,
    challenge: &'c Challenge,
) -> Result<&'c PaymentRequirements, PaymentError> {
    challenge
        .accepts
        .iter()
        .find(|r| {
            r.scheme == paid.scheme
                && r.network == paid.network
                && r.pay_to.eq_ignore_ascii_case(&paid.pay_to)
                && r.asset.eq_ignore_ascii_case(&paid.asset)
                && session.key(r).ok().as_deref() == Some(key)
        })
        .ok_or_else(|| {
            PaymentError::BadChallenge("the corrective 402 offers no state of this channel".into())
        })
}

/// What reconciliation concludes about one held authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Spent.
    Used(String),
    /// Can never be used: release.
    Unusable(String),
    /// Unknown yet: keep holding.
    Hold(String),
}

/// The decision, apart from I/O: `state` is the chain's answer (`None` when no RPC URL is
/// known for the network), `now` this machine's Unix time when the chain was asked.
///
/// "Unused at a block whose timestamp is at or past `validBefore`" is final because every
/// later block is at least as late; it reads the latest block, so a reorganisation deeper than
/// the time between that block and `validBefore` could in principle undo it — the same
/// assumption every client of the chain makes about its latest state.
pub(crate) fn verdict(
    state: Option<Result<AuthorizationState, StateError>>,
    valid_before: u64,
    now: u64,
    grace: u64,
) -> Verdict {
    let expired_locally = now >= valid_before.saturating_add(grace);
    match state {
        Some(Ok(AuthorizationState::Used)) => {
            Verdict::Used("authorization used on chain (found by reconciliation)".into())
        }
        Some(Ok(AuthorizationState::Unused { chain_time })) if chain_time >= valid_before => {
            Verdict::Unusable(format!(
                "authorization unused on chain at block time {chain_time}, past its validBefore \
                 {valid_before}: it can never be used"
            ))
        }
        Some(Ok(AuthorizationState::Unused { .. })) if expired_locally => {
            Verdict::Unusable(format!(
                "authorization unused on chain and validBefore {valid_before} passed over \
                 {grace} s ago"
            ))
        }
        Some(Ok(AuthorizationState::Unused { .. })) => {
            Verdict::Hold("unused on chain and not expired yet".into())
        }
        // An RPC failure proves nothing: keep holding, whatever the time.
        Some(Err(e @ StateError::Chain(_))) => Verdict::Hold(e.to_string()),
        // The chain can never be asked about this one: only time settles it.
        Some(Err(e @ (StateError::Unsupported { .. } | StateError::BadHandle(_))))
            if expired_locally =>
        {
            Verdict::Unusable(format!(
                "validBefore {valid_before} passed over {grace} s ago; not checked on chain ({e})"
            ))
        }
        None if expired_locally => Verdict::Unusable(format!(
            "validBefore {valid_before} passed over {grace} s ago; not checked on chain (no RPC \
             URL for its network)"
        )),
        Some(Err(_)) | None => Verdict::Hold("not expired yet; cannot be checked on chain".into()),
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh `payment-identifier` id: 16 random bytes.
fn new_payment_id() -> IdempotencyKey {
    IdempotencyKey::from_random_bytes(rand::random())
}

/// Whether `value` may be sent as an HTTP header value (visible ASCII, spaces and tabs).
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Reasons that, when a seller gives them for refusing a payment, mean the authorization as
/// signed can never pass the token's checks or was never acceptable to this seller, so the
/// seller cannot have settled it and will not: the reservation may be released at once.
///
/// Deliberately absent: `nonce_already_used` (it *was* used — maybe by this very payment on
/// another replica), `settlement_pending`, transaction failures, balance and time-window
/// reasons (the authorization stays valid until `validBefore` and could still be settled), and
/// every code this version does not know. Compared as the spec's strings, so that the codes a
/// chain crate defines read the same whichever crate's enum carries them.
fn proves_unusable(reason: &ErrorReason) -> bool {
    matches!(
        reason.as_str(),
        "invalid_payload"
            | "invalid_payment_requirements"
            | "invalid_scheme"
            | "unsupported_scheme"
            | "invalid_network"
            | "invalid_x402_version"
            | "invalid_exact_evm_payload_signature"
            | "invalid_exact_evm_signature"
            | "invalid_exact_evm_failed_to_parse_signature"
            | "invalid_exact_evm_payload_recipient_mismatch"
            | "invalid_exact_evm_recipient_mismatch"
            | "invalid_exact_evm_payload_authorization_value"
            | "invalid_exact_evm_payload_authorization_value_mismatch"
            | "invalid_exact_evm_authorization_value"
            | "invalid_exact_evm_scheme"
            | "invalid_exact_evm_network_mismatch"
            | "invalid_exact_evm_missing_eip712_domain"
            | "invalid_exact_evm_token_name_mismatch"
            | "invalid_exact_evm_token_version_mismatch"
            | "invalid_exact_evm_eip3009_not_supported"
            | "asset_not_deployed_contract"
    )
}

/// The first reason code in a free-text error (`"payment rejected: invalid_exact_evm_…: …"`,
/// or a bare code as the official SDK writes it): the first word shaped like a code.
fn first_reason_code(text: &str) -> Option<ErrorReason> {
    text.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .find(|w| w.contains('_') && !w.starts_with('_') && !w.ends_with('_'))
        .map(ErrorReason::from)
}

/// What the answer to a paid request says about the money.
#[derive(Debug)]
enum Reading {
    /// A receipt: settled.
    Paid(SettleResponse),
    /// Refused in a way that proves the authorization unusable.
    Rejected(String),
    /// Anything else.
    Ambiguous(String),
}

fn classify(answer: &SellerAnswer) -> Reading {
    let served = answer.status == AnswerStatus::Served;
    match &answer.receipt {
        Some(Ok(s)) if s.success && served => return Reading::Paid(s.clone()),
        Some(Ok(s)) if !s.success => {
            if let Some(reason) = s.error_reason.as_ref().filter(|r| proves_unusable(r)) {
                return Reading::Rejected(format!("settlement refused: {reason}"));
            }
        }
        _ => {}
    }
    if let AnswerStatus::IdentityRefused(refusal) = &answer.status {
        // Refused before settlement — unless a successful receipt says otherwise.
        if !matches!(&answer.receipt, Some(Ok(s)) if s.success) {
            return Reading::Rejected(format!(
                "refused by the seller's identity gate: {}",
                refusal.failed_rules()
            ));
        }
    }
    let subject = match &answer.status {
        AnswerStatus::PaymentRequired { error } => {
            let error = error.as_deref().unwrap_or_default();
            return match first_reason_code(error) {
                Some(code) if proves_unusable(&code) => {
                    Reading::Rejected(format!("payment rejected: {error}"))
                }
                _ => Reading::Ambiguous(format!(
                    "server answered 402 after payment: {}",
                    if error.is_empty() { "no reason" } else { error }
                )),
            };
        }
        AnswerStatus::Served => "the resource was served".to_owned(),
        AnswerStatus::IdentityRefused(_) => "the seller's identity gate refused the payer".into(),
        AnswerStatus::Other(status) => format!("server answered {status}"),
    };
    Reading::Ambiguous(match &answer.receipt {
        Some(Ok(s)) if s.success => format!("{subject} with a successful receipt"),
        Some(Ok(s)) => format!(
            "{subject} with an unsuccessful receipt ({})",
            s.error_reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default()
        ),
        Some(Err(e)) => format!("{subject} with an unreadable receipt: {e}"),
        None => format!("{subject} without a receipt"),
    })
}

#[cfg(test)]
mod tests;
