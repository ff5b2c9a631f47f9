//! The paying middleware for `reqwest-middleware`.
//!
//! One payment goes: 402 → reconcile held reservations → policy → reserve → sign (the ledger
//! keeps the authorization's handle) → retry with the payment (resent as is, same
//! `payment-identifier`, while the seller answers `402 settlement_pending`) → classify the
//! answer:
//!
//! - a `2xx` with a successful receipt: `paid`;
//! - a rejection whose reason proves the signed authorization can never be used (a bad
//!   signature, a token that is not the one signed for, …): released, as nothing can move;
//! - anything else — `5xx`, `402 settlement_pending`, "payment in use", a dropped connection, a
//!   `200` without a readable receipt — is *ambiguous*: the seller holds a valid authorization
//!   and may have settled it (or may still). The reservation stays held (`pending`) until
//!   [`X402Middleware::reconcile`] learns from the chain that it was used (→ `paid`) or that it
//!   can no longer be used (→ released).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tollgate_proto::idempotency::{IdempotencyKey, PaymentIdentifier, PAYMENT_IDENTIFIER};
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::{
    header, AnyPaymentRequired, ErrorReason, Network, PaymentRequirements, ResourceInfo,
    SettleResponse, X402Version,
};

use crate::ledger::{Attempt, LedgerError, SpendLedger, Unresolved};
use crate::policy::{Priced, Refusal, SpendingPolicy};
use crate::signer::{AuthorizationState, PaymentSigner, StateError};

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

/// What [`X402Middleware::reconcile`] did with the held reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Rows found used on chain: now `paid`.
    pub paid: Vec<i64>,
    /// Rows whose authorization can never be used: released (`failed`).
    pub released: Vec<i64>,
    /// Rows still held (unused but not expired, or the chain could not be asked).
    pub held: Vec<i64>,
}

/// Pays 402 responses: reads the challenge, lets the policy choose and reserve, signs, and
/// retries once with the payment.
///
/// Cheap to clone (shared state): keep a clone to call [`X402Middleware::reconcile`] after
/// handing one to the client builder.
pub struct X402Middleware<W> {
    wallet: Arc<W>,
    policy: Arc<SpendingPolicy>,
    ledger: SpendLedger,
    approve: Option<ApproveHook>,
    rpc_urls: Arc<HashMap<Network, String>>,
    expiry_grace: Duration,
    pending_retries: u32,
    max_retry_wait: Duration,
    /// One reconciliation at a time: concurrent payments wait for it and then see its result
    /// instead of asking the chain the same question in parallel.
    reconciling: Arc<tokio::sync::Mutex<()>>,
}

impl<W> Clone for X402Middleware<W> {
    fn clone(&self) -> Self {
        Self {
            wallet: self.wallet.clone(),
            policy: self.policy.clone(),
            ledger: self.ledger.clone(),
            approve: self.approve.clone(),
            rpc_urls: self.rpc_urls.clone(),
            expiry_grace: self.expiry_grace,
            pending_retries: self.pending_retries,
            max_retry_wait: self.max_retry_wait,
            reconciling: self.reconciling.clone(),
        }
    }
}

/// Asked before each payment is signed, after the policy accepted it; `false` declines (for
/// interactive confirmation). Runs on a blocking thread, so it may read a terminal.
pub type ApproveHook = Arc<dyn Fn(&Priced) -> bool + Send + Sync>;

impl<W> std::fmt::Debug for X402Middleware<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // RPC URLs often embed an API key: list the networks only.
        f.debug_struct("X402Middleware")
            .field("policy", &self.policy)
            .field("rpc_networks", &self.rpc_urls.keys().collect::<Vec<_>>())
            .field("expiry_grace", &self.expiry_grace)
            .finish_non_exhaustive()
    }
}

impl<W: PaymentSigner> X402Middleware<W> {
    /// A middleware paying with `wallet` under `policy`, recording in `ledger`.
    pub fn new(wallet: W, policy: SpendingPolicy, ledger: SpendLedger) -> Self {
        Self {
            wallet: Arc::new(wallet),
            policy: Arc::new(policy),
            ledger,
            approve: None,
            rpc_urls: Arc::new(HashMap::new()),
            expiry_grace: DEFAULT_EXPIRY_GRACE,
            pending_retries: DEFAULT_PENDING_RETRIES,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            reconciling: Arc::new(tokio::sync::Mutex::new(())),
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

    /// How many times a payment is resent — the same payment, with the same
    /// `payment-identifier` — when the seller answers `402 settlement_pending` (its transfer is
    /// being mined and it keeps the response for this retry), waiting its `Retry-After` capped
    /// at `max_wait`; default [`DEFAULT_PENDING_RETRIES`] and [`DEFAULT_MAX_RETRY_WAIT`]. `0`
    /// leaves the answer to the caller (the payment then stays reserved as pending).
    pub fn with_pending_retries(mut self, retries: u32, max_wait: Duration) -> Self {
        self.pending_retries = retries;
        self.max_retry_wait = max_wait;
        self
    }

    /// The spend ledger.
    pub fn ledger(&self) -> &SpendLedger {
        &self.ledger
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A 402 challenge, as v2 types, and the version to answer in.
struct Challenge {
    version: X402Version,
    accepts: Vec<PaymentRequirements>,
    resource: Option<ResourceInfo>,
    extensions: Option<tollgate_proto::Extensions>,
    error: Option<String>,
}

fn read_challenge(headers: &http::HeaderMap, body: &[u8]) -> Result<Challenge, PaymentError> {
    let v2 = |v2: tollgate_proto::PaymentRequired| Challenge {
        version: X402Version::V2,
        accepts: v2.accepts,
        resource: Some(v2.resource),
        extensions: v2.extensions,
        error: v2.error,
    };
    if let Some(found) = header::payment_required_from_headers(headers) {
        return Ok(v2(
            found.map_err(|e| PaymentError::BadChallenge(e.to_string()))?
        ));
    }
    match header::decode_json::<AnyPaymentRequired>(body)
        .map_err(|e| PaymentError::BadChallenge(e.to_string()))?
    {
        AnyPaymentRequired::V2(p) => Ok(v2(p)),
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
            Ok(Challenge {
                version: X402Version::V1,
                accepts,
                resource,
                extensions: None,
                error: Some(v1.error).filter(|e| !e.is_empty()),
            })
        }
    }
}

/// Reasons that, when a seller gives them for refusing a payment, mean the authorization as
/// signed can never pass the token's checks or was never acceptable to this seller, so the
/// seller cannot have settled it and will not: the reservation may be released at once.
///
/// Deliberately absent: `nonce_already_used` (it *was* used — maybe by this very payment on
/// another replica), `settlement_pending`, transaction failures, balance and time-window
/// reasons (the authorization stays valid until `validBefore` and could still be settled), and
/// every code this version does not know.
fn proves_unusable(reason: &ErrorReason) -> bool {
    use ErrorReason as R;
    matches!(
        reason,
        R::InvalidPayload
            | R::InvalidPaymentRequirements
            | R::InvalidScheme
            | R::UnsupportedScheme
            | R::InvalidNetwork
            | R::InvalidX402Version
            | R::InvalidExactEvmPayloadSignature
            | R::InvalidExactEvmSignature
            | R::InvalidExactEvmFailedToParseSignature
            | R::InvalidExactEvmPayloadRecipientMismatch
            | R::InvalidExactEvmRecipientMismatch
            | R::InvalidExactEvmPayloadAuthorizationValue
            | R::InvalidExactEvmPayloadAuthorizationValueMismatch
            | R::InvalidExactEvmAuthorizationValue
            | R::InvalidExactEvmScheme
            | R::InvalidExactEvmNetworkMismatch
            | R::InvalidExactEvmMissingEip712Domain
            | R::InvalidExactEvmTokenNameMismatch
            | R::InvalidExactEvmTokenVersionMismatch
            | R::InvalidExactEvmEip3009NotSupported
            | R::AssetNotDeployedContract
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
enum Outcome {
    /// A receipt: settled.
    Paid(SettleResponse),
    /// Refused in a way that proves the authorization unusable.
    Rejected(String),
    /// Anything else.
    Ambiguous(String),
}

fn classify(status: http::StatusCode, headers: &http::HeaderMap, body: Option<&[u8]>) -> Outcome {
    let settlement = header::settle_response_from_headers(headers);
    match &settlement {
        Some(Ok(s)) if s.success && status.is_success() => return Outcome::Paid(s.clone()),
        Some(Ok(s)) if !s.success => {
            if let Some(reason) = s.error_reason.as_ref().filter(|r| proves_unusable(r)) {
                return Outcome::Rejected(format!("settlement refused: {reason}"));
            }
        }
        _ => {}
    }
    if status.as_u16() == 402 {
        let error = read_challenge(headers, body.unwrap_or_default())
            .ok()
            .and_then(|c| c.error)
            .unwrap_or_default();
        return match first_reason_code(&error) {
            Some(code) if proves_unusable(&code) => {
                Outcome::Rejected(format!("payment rejected: {error}"))
            }
            _ => Outcome::Ambiguous(format!(
                "server answered 402 after payment: {}",
                if error.is_empty() {
                    "no reason"
                } else {
                    &error
                }
            )),
        };
    }
    Outcome::Ambiguous(match settlement {
        Some(Ok(s)) => format!(
            "server answered {status} with an unsuccessful receipt ({})",
            s.error_reason.map(|r| r.to_string()).unwrap_or_default()
        ),
        Some(Err(e)) => format!("server answered {status} with an unreadable receipt: {e}"),
        None => format!("server answered {status} without a receipt"),
    })
}

/// A `402` with the v1 challenge only in its body: the body read (the rebuilt response has no
/// URL, a small price for learning the seller's reason). Anything else is passed through.
async fn buffer_v1_challenge(
    response: Response,
) -> Result<(Response, http::StatusCode, Option<bytes::Bytes>), reqwest::Error> {
    let status = response.status();
    if status.as_u16() != 402 || header::payment_required_from_headers(response.headers()).is_some()
    {
        return Ok((response, status, None));
    }
    let (version, headers) = (response.version(), response.headers().clone());
    let body = response.bytes().await?;
    let mut rebuilt = http::Response::new(body.clone());
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok((Response::from(rebuilt), status, Some(body)))
}

/// Whether the seller says the payment's settlement is still pending and invites a retry with
/// the same payment (`402` whose reason is `settlement_pending`).
fn settlement_pending(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
) -> bool {
    status.as_u16() == 402
        && read_challenge(headers, body.unwrap_or_default())
            .ok()
            .and_then(|c| c.error)
            .and_then(|e| first_reason_code(&e))
            == Some(ErrorReason::SettlementPending)
}

/// The `Retry-After` delay in seconds (the HTTP-date form is not used by x402 sellers and
/// counts as absent); one second when absent.
fn retry_after(headers: &http::HeaderMap) -> Duration {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1))
}

/// A fresh `payment-identifier` id: 16 random bytes.
fn new_payment_id() -> IdempotencyKey {
    IdempotencyKey::from_random_bytes(rand::random())
}

#[async_trait::async_trait]
impl<W: PaymentSigner> Middleware for X402Middleware<W> {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let retry = req.try_clone();
        let method = req.method().to_string();
        let url = req.url().to_string();
        let response = next.clone().run(req, extensions).await?;
        if response.status().as_u16() != 402 {
            return Ok(response);
        }
        let Some(mut retry) = retry else {
            return Err(reqwest_middleware::Error::middleware(
                PaymentError::BodyNotReplayable,
            ));
        };
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(reqwest_middleware::Error::Reqwest)?;
        let pay = || async {
            let challenge = read_challenge(&headers, &body)?;
            let attempt = Attempt {
                method: &method,
                url: &url,
            };
            let payable: Vec<_> = challenge
                .accepts
                .into_iter()
                .filter(|r| self.wallet.supports(r))
                .collect();
            if payable.is_empty() {
                let refusal = Refusal::Unsupported(url.clone());
                self.ledger.record_refusal(&attempt, &refusal)?;
                return Err(PaymentError::Refused(refusal));
            }
            let ranked = match self.policy.rank(payable) {
                Ok(r) => r,
                Err(refusal) => {
                    self.ledger.record_refusal(&attempt, &refusal)?;
                    return Err(PaymentError::Refused(refusal));
                }
            };
            let Some(chosen) = ranked.into_iter().next() else {
                return Err(PaymentError::Refused(Refusal::Unsupported(url.clone())));
            };
            if let Some(hook) = &self.approve {
                let (hook, c) = (hook.clone(), chosen.clone());
                let approved = tokio::task::spawn_blocking(move || hook(&c))
                    .await
                    .unwrap_or(false);
                if !approved {
                    let refusal = Refusal::Declined;
                    self.ledger.record_refusal(&attempt, &refusal)?;
                    return Err(PaymentError::Refused(refusal));
                }
            }
            // Settle what earlier ambiguous payments became before counting them against the
            // budgets (a failure here keeps them held, which only errs towards refusing).
            self.reconcile().await?;
            let ledger = self.ledger.clone();
            let policy = self.policy.clone();
            let (m, u, c) = (method.clone(), url.clone(), chosen.clone());
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
                .sign(&chosen.requirements, challenge.resource)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    self.ledger.release(id, &e.to_string())?;
                    return Err(e.into());
                }
            };
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
            let (name, value) = match challenge.version {
                X402Version::V2 => (header::PAYMENT_SIGNATURE, header::encode(&payment)),
                X402Version::V1 => (
                    header::X_PAYMENT,
                    header::encode(&PaymentPayloadV1::from_v2(&payment)),
                ),
            };
            let value = match http::HeaderValue::from_str(&value) {
                Ok(v) => v,
                Err(e) => {
                    // Never sent: nothing can move.
                    let _ = self.ledger.release(id, "payment header not encodable");
                    return Err(PaymentError::BadChallenge(e.to_string()));
                }
            };
            Ok::<_, PaymentError>((
                id,
                challenge.version,
                chosen.requirements,
                name,
                value,
                signed.authorization.valid_before,
            ))
        };
        let (id, version, requirements, name, value, valid_before) =
            pay().await.map_err(reqwest_middleware::Error::middleware)?;
        retry.headers_mut().insert(name, value);
        let mut retries_left = self.pending_retries;
        let mut sent = false;
        let (mut paid, status, body) = loop {
            // The same request, the same payment header, the same payment-identifier: a retry
            // of this attempt, never a second payment.
            let Some(this_try) = retry.try_clone() else {
                // Unreachable in practice: the body was cloneable once, so it is buffered.
                let reason = "the request could not be sent again";
                let _ = if sent {
                    self.ledger.mark_pending(id, reason)
                } else {
                    self.ledger.release(id, reason)
                };
                return Err(reqwest_middleware::Error::middleware(
                    PaymentError::BodyNotReplayable,
                ));
            };
            sent = true;
            let answer = match next.clone().run(this_try, extensions).await {
                Ok(r) => r,
                Err(e) => {
                    // The payment may have reached the seller before the connection failed.
                    let _ = self
                        .ledger
                        .mark_pending(id, &format!("no answer to the payment: {e}"));
                    return Err(e);
                }
            };
            let (answer, status, body) = match buffer_v1_challenge(answer).await {
                Ok(read) => read,
                Err(e) => {
                    let _ = self
                        .ledger
                        .mark_pending(id, &format!("the answer to the payment broke off: {e}"));
                    return Err(reqwest_middleware::Error::Reqwest(e));
                }
            };
            if retries_left > 0 && settlement_pending(status, answer.headers(), body.as_deref()) {
                let wait = retry_after(answer.headers()).min(self.max_retry_wait);
                // Past validBefore the outcome is settled either way; asking again is useless.
                if unix_now().saturating_add(wait.as_secs()) < valid_before {
                    retries_left -= 1;
                    tracing::info!(%url, wait_s = wait.as_secs(), "settlement pending: retrying the same payment");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            break (answer, status, body);
        };
        match classify(status, paid.headers(), body.as_deref()) {
            Outcome::Paid(s) => {
                self.ledger
                    .mark_paid(id, &s.transaction)
                    .map_err(reqwest_middleware::Error::middleware)?;
                paid.extensions_mut().insert(PaymentReceipt {
                    version,
                    settlement: s,
                    requirements,
                    ledger_id: id,
                });
            }
            Outcome::Rejected(reason) => {
                self.ledger
                    .release(id, &reason)
                    .map_err(reqwest_middleware::Error::middleware)?;
            }
            Outcome::Ambiguous(reason) => {
                tracing::warn!(%url, %reason, "payment outcome unknown: amount stays reserved");
                self.ledger
                    .mark_pending(id, &reason)
                    .map_err(reqwest_middleware::Error::middleware)?;
                paid.extensions_mut().insert(PendingPayment {
                    requirements,
                    ledger_id: id,
                    reason,
                });
            }
        }
        Ok(paid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_found_in_free_text() {
        assert_eq!(
            first_reason_code("payment rejected: invalid_exact_evm_payload_signature: bad sig"),
            Some(ErrorReason::InvalidExactEvmPayloadSignature)
        );
        assert_eq!(
            first_reason_code("settlement failed: settlement_pending: tx 0xab"),
            Some(ErrorReason::SettlementPending)
        );
        assert_eq!(
            first_reason_code("this payment is already being used by another request"),
            None
        );
        assert!(proves_unusable(
            &first_reason_code("invalid_exact_evm_token_name_mismatch").unwrap()
        ));
        for not_proof in [
            "payment_in_use",
            "settlement failed: invalid_exact_evm_nonce_already_used: x",
            "insufficient_funds",
            "invalid_exact_evm_payload_authorization_valid_before",
            "unexpected_settle_error",
            "PAYMENT-SIGNATURE header is required",
        ] {
            let code = first_reason_code(not_proof);
            assert!(!code.as_ref().is_some_and(proves_unusable), "{not_proof}");
        }
    }

    #[test]
    fn only_a_clear_rejection_or_a_receipt_settles_an_attempt() {
        use http::StatusCode;
        let empty = http::HeaderMap::new();
        for status in [500, 502, 503, 504, 200, 404] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(matches!(
                classify(status, &empty, None),
                Outcome::Ambiguous(_)
            ));
        }
        let v1 = |error: &str| {
            serde_json::to_vec(
                &serde_json::json!({"x402Version": 1, "error": error, "accepts": []}),
            )
            .unwrap()
        };
        let body = v1("payment rejected: invalid_exact_evm_payload_signature: x");
        assert!(matches!(
            classify(StatusCode::PAYMENT_REQUIRED, &empty, Some(&body)),
            Outcome::Rejected(_)
        ));
        for ambiguous in [
            "settlement failed: settlement_pending: x",
            "payment_in_use",
            "",
        ] {
            let body = v1(ambiguous);
            assert!(
                matches!(
                    classify(StatusCode::PAYMENT_REQUIRED, &empty, Some(&body)),
                    Outcome::Ambiguous(_)
                ),
                "{ambiguous}"
            );
        }
    }

    #[test]
    fn reconciliation_verdicts() {
        let vb = 1_000;
        let grace = 60;
        let used = || Some(Ok(AuthorizationState::Used));
        let unused = |t| Some(Ok(AuthorizationState::Unused { chain_time: t }));
        let rpc_down = || Some(Err(StateError::Chain("connection refused".into())));
        assert!(matches!(verdict(used(), vb, 0, grace), Verdict::Used(_)));
        assert!(matches!(
            verdict(used(), vb, 5_000, grace),
            Verdict::Used(_)
        ));
        // Unused: released only once the chain's own time (or ours, plus the grace) is past it.
        assert!(matches!(
            verdict(unused(999), vb, 999, grace),
            Verdict::Hold(_)
        ));
        assert!(matches!(
            verdict(unused(1_000), vb, 990, grace),
            Verdict::Unusable(_)
        ));
        assert!(matches!(
            verdict(unused(900), vb, 1_059, grace),
            Verdict::Hold(_)
        ));
        assert!(matches!(
            verdict(unused(900), vb, 1_060, grace),
            Verdict::Unusable(_)
        ));
        // An RPC failure holds, however late.
        assert!(matches!(
            verdict(rpc_down(), vb, 1_000_000, grace),
            Verdict::Hold(_)
        ));
        // No chain access: held until validBefore plus the grace, never earlier.
        assert!(matches!(verdict(None, vb, 1_000, grace), Verdict::Hold(_)));
        assert!(matches!(verdict(None, vb, 1_059, grace), Verdict::Hold(_)));
        assert!(matches!(
            verdict(None, vb, 1_060, grace),
            Verdict::Unusable(_)
        ));
        let unsupported = Some(Err(StateError::Unsupported {
            scheme: "exact".into(),
        }));
        assert!(matches!(
            verdict(unsupported, vb, 1_060, grace),
            Verdict::Unusable(_)
        ));
    }
}
