//! [`Paywall`]: the service that answers 402s, verifies, runs the handler and settles.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode};
use tollgate_proto::v1::{PaymentRequiredV1, PaymentRequirementsV1};
use tollgate_proto::{
    header, AnyPaymentPayload, AtomicAmount, ErrorReason, FacilitatorRequest, IdempotencyKey,
    Network, PaymentRequired, PaymentRequirements, ResourceInfo, Scheme, SettleResponse,
    SettleResponseV1, VerifyResponse, X402Version, V2,
};
use tower_service::Service;

use super::canonical;
use super::future::ResponseFuture;
use super::html;
use super::layer::SettlementMode;
use super::outcome::PaywallOutcome;
use super::pending::{BufferedResponse, PendingEntry, PendingStore};
use crate::facilitator::FacilitatorError;
use crate::price::{Pricing, RoutePrice, RouteTable};
use crate::FacilitatorClient;

pub(crate) struct Shared<F> {
    pub(crate) routes: RouteTable,
    pub(crate) facilitator: F,
    pub(crate) mode: SettlementMode,
    /// Payments currently being processed, by their canonical form (see `canonical`: one key
    /// for every spelling of a payment). A second request carrying the same payment while the
    /// first is in flight is refused, so one process runs its handler once per payment. Across
    /// processes the facilitator's reservation of the payment for the first attempt key is the
    /// authoritative guard; after settlement the chain itself refuses the reuse.
    pub(crate) claims: Mutex<HashSet<String>>,
    /// Responses whose settlement outlived their exchange, delivered on the buyer's retry.
    pub(crate) pending: PendingStore,
    /// How many times a `/verify` or `/settle` that got no answer is repeated (same attempt
    /// key), within the payment's `maxTimeoutSeconds`.
    pub(crate) retries: u32,
    /// Encoded "no payment yet" challenges by request line, so the common 402 costs a map
    /// lookup instead of serializing and encoding the requirements again. Bounded: cleared
    /// when full, so distinct URLs cannot grow it without limit.
    pub(crate) challenges: Mutex<HashMap<String, (HeaderValue, axum::body::Bytes)>>,
    /// Wallet scripts for the browser paywall page; empty: browsers get the plain 402.
    pub(crate) wallet_scripts: Vec<&'static str>,
    /// The `payment-identifier` extension as offered in every 402 (`None`: not offered), and
    /// whether a payment must carry an id (`PaywallLayer::payment_identifier`).
    pub(crate) payment_identifier: Option<bool>,
}

impl<F> Shared<F> {
    /// The 402's `extensions`: what the paywall offers beyond the requirements.
    fn offered_extensions(&self) -> Option<tollgate_proto::Extensions> {
        let required = self.payment_identifier?;
        let mut extensions = tollgate_proto::Extensions::new();
        extensions.insert(
            tollgate_proto::idempotency::PAYMENT_IDENTIFIER.to_owned(),
            tollgate_proto::PaymentIdentifier::offer(required),
        );
        Some(extensions)
    }
}

/// Most cached challenges kept at once.
const CHALLENGE_CACHE: usize = 4096;

/// What the handler learns about the payment, from request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    /// Protocol version the client used.
    pub version: X402Version,
    /// Payment scheme.
    pub scheme: Scheme,
    /// Network.
    pub network: Network,
    /// Asset.
    pub asset: String,
    /// Amount in atomic units.
    pub amount: AtomicAmount,
    /// The payer, as the facilitator reported it.
    pub payer: Option<String>,
    /// The settlement transaction (only in [`SettlementMode::BeforeHandler`]).
    pub transaction: Option<String>,
}

/// The paywall service; see [`PaywallLayer`](super::PaywallLayer).
pub struct Paywall<S, F> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<F>>,
}

impl<S: Clone, F> Clone for Paywall<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, F> Service<Request<Body>> for Paywall<S, F>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    F: FacilitatorClient,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // One canonical path for pricing and for the inner service, or a 400 (`target.rs`).
        let raw = request.uri().clone();
        let request = match super::target::canonicalize_request(request) {
            Ok(request) => request,
            Err(e) => return ResponseFuture::ready(super::target::refusal(&e)),
        };
        // A router in front of this layer (axum's `Router::layer`) chose its handler from the
        // raw path: refuse a raw path that it may have routed to another priced route than
        // the one the canonical path is priced as.
        if raw.path() != request.uri().path()
            && self
                .shared
                .routes
                .routed_apart(request.method(), raw.path())
        {
            let e = super::target::TargetError::RoutedApart;
            return ResponseFuture::ready(super::target::refusal(&e));
        }
        if let Some(response) = unpaid_static_challenge(&self.shared, &request) {
            return ResponseFuture::ready(response);
        }
        // Take the service that was driven to readiness; leave a clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::boxed(async move { handle(shared, inner, request).await })
    }
}

/// Releases a payment claim when the request — or the settlement it handed to a task of its
/// own ([`settle_detached`]) — ends, however it ends.
struct Claim<F> {
    shared: Arc<Shared<F>>,
    key: String,
}

impl<F> Drop for Claim<F> {
    fn drop(&mut self) {
        self.shared
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn has_payment(request: &Request<Body>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::PAYMENT_SIGNATURE) || headers.contains_key(header::X_PAYMENT)
}

/// The 402 for a request without payment to a statically priced route, from the cache; `None`
/// when the request needs more (a payment to check, a browser page, a dynamic price, no price).
fn unpaid_static_challenge<F>(shared: &Shared<F>, request: &Request<Body>) -> Option<Response> {
    if has_payment(request) {
        return None;
    }
    let browsers = !shared.wallet_scripts.is_empty();
    if browsers && html::wants_html(request.headers()) {
        return None;
    }
    let Some(Pricing::Static(price)) = shared.routes.find(request.method(), request.uri().path())
    else {
        return None;
    };
    let mut response = cached_challenge(shared, request, price);
    if browsers {
        // Browsers get a page at this URL: caches must key on Accept.
        response
            .headers_mut()
            .insert(http::header::VARY, HeaderValue::from_static("Accept"));
    }
    Some(response)
}

async fn handle<S, F>(
    shared: Arc<Shared<F>>,
    mut inner: S,
    mut request: Request<Body>,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = Response> + Send,
    S::Future: Send,
    F: FacilitatorClient,
{
    let browser = !has_payment(&request)
        && !shared.wallet_scripts.is_empty()
        && html::wants_html(request.headers());
    let price: Cow<'_, RoutePrice> =
        match shared.routes.find(request.method(), request.uri().path()) {
            None => return inner.call(request).await,
            // Unpaid non-browser requests never get here: `unpaid_static_challenge` answered.
            Some(Pricing::Static(price)) => Cow::Borrowed(price),
            Some(Pricing::Dynamic(quote)) => match quote(&request).await {
                // This request is free.
                None => return inner.call(request).await,
                Some(price) if price.options.is_empty() => return inner.call(request).await,
                Some(price) => Cow::Owned(price),
            },
        };
    let price = price.as_ref();
    let resource = resource_info(&request, price);
    let accepts: Vec<PaymentRequirements> =
        price.options.iter().map(|o| o.requirements()).collect();
    let offered = shared.offered_extensions();
    let challenge = |error: String| payment_required(&resource, &accepts, offered.as_ref(), error);

    if browser {
        let v2 = challenge_v2(&resource, &accepts, offered.as_ref(), NO_PAYMENT);
        if let Ok(value) = HeaderValue::from_str(&header::encode(&v2)) {
            return Ok(html::html_challenge(
                &v2,
                value,
                request.method(),
                &shared.wallet_scripts,
            ));
        }
    }
    let payment = match header::payment_from_headers(request.headers()) {
        None => return Ok(challenge(NO_PAYMENT.into())),
        Some(Err(e)) => return Ok(challenge(format!("invalid payment header: {e}"))),
        Some(Ok(p)) => p,
    };
    if shared.payment_identifier == Some(true) {
        // Required: a payment without a well-formed id could not be told apart from its own
        // retry, which is what the seller asked the extension for. (v1 payments carry no
        // extensions, so they cannot comply.)
        let extensions = match &payment {
            AnyPaymentPayload::V2(p) => p.extensions.as_ref(),
            AnyPaymentPayload::V1(_) => None,
        };
        if !matches!(
            tollgate_proto::PaymentIdentifier::from_extensions(extensions),
            Ok(Some(_))
        ) {
            return Ok(challenge(format!(
                "{}: this resource requires the payment-identifier extension with a valid id",
                ErrorReason::InvalidPaymentIdentifier
            )));
        }
    }
    let (facilitator_request, chosen, claim_key) = match payment {
        AnyPaymentPayload::V2(p) => {
            let Some(chosen) = accepts.iter().find(|r| **r == p.accepted).cloned() else {
                return Ok(challenge(
                    "the payment's `accepted` matches none of this resource's requirements".into(),
                ));
            };
            let key = canonical::payment_key(&chosen.scheme, &chosen.network, &p.payload);
            let request = FacilitatorRequest::V2 {
                payment_payload: *p,
                payment_requirements: chosen.clone(),
            };
            (request, chosen, key)
        }
        AnyPaymentPayload::V1(p) => {
            let Some(chosen) = accepts
                .iter()
                .find(|r| r.scheme == p.scheme && r.network == p.network.0)
                .cloned()
            else {
                return Ok(challenge(format!(
                    "no {} payment on {} is accepted for this resource",
                    p.scheme, p.network.0
                )));
            };
            let key = canonical::payment_key(&chosen.scheme, &chosen.network, &p.payload);
            let request = FacilitatorRequest::V1 {
                payment_requirements: PaymentRequirementsV1::from_v2(&chosen, &resource),
                payment_payload: p,
            };
            (request, chosen, key)
        }
    };

    let target = format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let retry_after = shared.pending.config.retry_after_secs();
    let pending_challenge = |detail: &str| {
        let mut response = challenge(format!(
            "{}: {detail}; retry with the same payment in {retry_after} s to receive the response",
            ErrorReason::SettlementPending
        ));
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    };

    let claim = {
        let mut claims = shared.claims.lock().unwrap_or_else(|p| p.into_inner());
        if !claims.insert(claim_key.clone()) {
            drop(claims);
            if shared.pending.contains(&claim_key) {
                return Ok(pending_challenge(
                    "the settlement of this payment is being checked by another request",
                ));
            }
            return Ok(challenge(format!(
                "{}: this payment is already being used by another request",
                ErrorReason::PaymentInUse
            )));
        }
        Claim {
            shared: shared.clone(),
            key: claim_key.clone(),
        }
    };

    // A payment whose settlement outlived an earlier exchange: settle again with that
    // exchange's attempt key and deliver what it produced; never run the handler again.
    if let Some(entry) = shared.pending.get(&claim_key) {
        if entry.target != target {
            return Ok(challenge(format!(
                "{}: this payment was made for `{}` and awaits settlement there; retry that request",
                ErrorReason::PaymentInUse,
                entry.target
            )));
        }
        let deadline = Instant::now() + entry.max_timeout;
        return match settle_with_retries(&shared, &entry.request, &entry.attempt, deadline).await {
            Settled::Yes(settled) => {
                shared.pending.remove(&claim_key);
                let version = entry.request.version();
                let mut response = match entry.response {
                    Some(kept) => kept.into_response(),
                    None => {
                        // Settled before the handler: it runs now, once.
                        let mut info = entry.info;
                        info.transaction = Some(settled.transaction.clone());
                        request.extensions_mut().insert(info);
                        inner.call(request).await?
                    }
                };
                deliver_paid(&mut response, version, settled);
                Ok(response)
            }
            Settled::No(reason) => {
                shared.pending.remove(&claim_key);
                Ok(challenge(reason))
            }
            Settled::Unknown(detail) => Ok(pending_challenge(&detail)),
        };
    }

    // This exchange's name with the facilitator, reused for its own retries.
    let attempt = IdempotencyKey::from_random_bytes(rand::random());
    let max_timeout = Duration::from_secs(chosen.max_timeout_seconds.max(1));
    let deadline = Instant::now() + max_timeout;
    let verified =
        match verify_with_retries(&shared, &facilitator_request, &attempt, deadline).await {
            Ok(v) if v.is_valid => v,
            Ok(v) => {
                let reason = v.invalid_reason.map(|r| r.to_string()).unwrap_or_default();
                let detail = v.invalid_message.unwrap_or_default();
                return Ok(challenge(format!("payment rejected: {reason}: {detail}")));
            }
            Err(e) => return Ok(unavailable(e.to_string())),
        };
    let version = facilitator_request.version();
    let mut info = PaymentInfo {
        version,
        scheme: chosen.scheme.clone(),
        network: chosen.network.clone(),
        asset: chosen.asset.clone(),
        amount: chosen.amount,
        payer: verified.payer.clone(),
        transaction: None,
    };
    // What a retry needs if settlement outlives this exchange.
    let keep = |info: PaymentInfo, response: Option<BufferedResponse>| PendingEntry {
        attempt: attempt.clone(),
        request: facilitator_request.clone(),
        target: target.clone(),
        info,
        response,
        max_timeout,
    };

    match shared.mode {
        SettlementMode::BeforeHandler => {
            let Some((settled, _, _claim)) =
                settle_detached(claim, keep(info.clone(), None), None, deadline).await
            else {
                return Ok(service_unavailable(
                    PENDING_LOST,
                    "the settlement task failed".into(),
                ));
            };
            match settled {
                Settled::Yes(settled) => {
                    info.transaction = Some(settled.transaction.clone());
                    request.extensions_mut().insert(info);
                    let mut response = inner.call(request).await?;
                    deliver_paid(&mut response, version, settled);
                    Ok(response)
                }
                Settled::No(reason) => Ok(challenge(reason)),
                Settled::Unknown(detail) => {
                    // The transfer may land: remember the attempt so that the buyer's retry
                    // learns the outcome with this key and then gets the handler's response.
                    match shared.pending.insert(claim_key.clone(), keep(info, None)) {
                        Ok(()) => Ok(pending_challenge(&detail)),
                        Err(e) => {
                            tracing::error!(error = %e, %target, "settlement pending and the payment cannot be remembered");
                            Ok(service_unavailable(
                                PENDING_LOST,
                                format!("this server cannot keep track of the payment: {e}"),
                            ))
                        }
                    }
                }
            }
        }
        SettlementMode::AfterHandler => {
            request.extensions_mut().insert(info.clone());
            let mut response = inner.call(request).await?;
            if response.status().as_u16() >= 400 {
                // The handler failed: the buyer is not charged.
                set_private(&mut response);
                response
                    .extensions_mut()
                    .insert(PaywallOutcome::HandlerFailed);
                return Ok(response);
            }
            let handed_back =
                settle_detached(claim, keep(info.clone(), None), Some(response), deadline).await;
            let Some((settled, Some(mut response), _claim)) = handed_back else {
                return Ok(service_unavailable(
                    PENDING_LOST,
                    "the settlement task failed".into(),
                ));
            };
            match settled {
                Settled::Yes(settled) => {
                    deliver_paid(&mut response, version, settled);
                    Ok(response)
                }
                // The handler's body is dropped: nothing is delivered unpaid.
                Settled::No(reason) => Ok(challenge(reason)),
                Settled::Unknown(detail) => {
                    // Paid means served: the transfer may land, so keep the response for the
                    // buyer's retry instead of dropping it.
                    let limit = shared.pending.config.max_response_bytes;
                    let kept = match BufferedResponse::read(response, limit).await {
                        Ok(kept) => kept,
                        Err(e) => {
                            tracing::error!(error = %e, %target, "settlement pending and the response cannot be kept");
                            return Ok(service_unavailable(
                                PENDING_LOST,
                                format!("the response cannot be kept: {e}"),
                            ));
                        }
                    };
                    match shared
                        .pending
                        .insert(claim_key.clone(), keep(info, Some(kept)))
                    {
                        Ok(()) => Ok(pending_challenge(&detail)),
                        Err(e) => {
                            tracing::error!(error = %e, %target, "settlement pending and the response cannot be kept");
                            Ok(service_unavailable(
                                PENDING_LOST,
                                format!("the response cannot be kept: {e}"),
                            ))
                        }
                    }
                }
            }
        }
    }
}

/// The `error` of a 503 for a payment whose settlement is pending when the store of pending
/// responses cannot take it (full, or the response is over its size cap).
const PENDING_LOST: &str = "settlement pending and the response could not be kept";

/// How a settlement ended, as far as this exchange can tell.
enum Settled {
    /// Settled: deliver with this receipt.
    Yes(SettleResponse),
    /// Refused for good (the payment is at fault, used, or not this attempt's): answer 402
    /// with the reason.
    No(String),
    /// Not known yet: sent but unconfirmed, or no answer after the retries. The transfer may
    /// still land, so this is never treated as "not paid": the outcome is asked again, with
    /// the same attempt key, when the buyer retries.
    Unknown(String),
}

/// What a settlement handed to a task of its own gives back: the outcome, the handler's
/// response (when the handler ran first) and the payment's claim, still held.
type HandedBack<F> = (Settled, Option<Response>, Claim<F>);

/// Settles `entry`'s payment in a task of its own, holding `claim` throughout.
///
/// A buyer who hangs up while the settlement is in flight — a client timeout shorter than a
/// slow chain, a dropped connection — drops this exchange's future; settling inside it would
/// abandon the settlement half-way, after the transfer may have been sent, and the buyer's
/// retry would then find the payment used and nothing to deliver: charged, never served. In
/// its own task the settlement goes on. If the exchange is gone before the outcome is known,
/// what was paid for (the handler's `response`, or with [`SettlementMode::BeforeHandler`] the
/// right to run the handler) is put in the store of responses awaiting settlement at once, so
/// the retry waits for this outcome (`settlement_pending`, the claim is still held) and then
/// gets it; a refused settlement removes it again. `None` only if the task panicked.
async fn settle_detached<F: FacilitatorClient>(
    claim: Claim<F>,
    entry: PendingEntry,
    response: Option<Response>,
    deadline: Instant,
) -> Option<HandedBack<F>> {
    let (mut tx, rx) = tokio::sync::oneshot::channel::<HandedBack<F>>();
    tokio::spawn(async move {
        let shared = claim.shared.clone();
        let (request, attempt) = (entry.request.clone(), entry.attempt.clone());
        let settle = settle_with_retries(&shared, &request, &attempt, deadline);
        tokio::pin!(settle);
        let mut response = response;
        let outcome = tokio::select! {
            outcome = &mut settle => outcome,
            () = tx.closed() => {
                // Kept while the settlement goes on (reading the response may take a while).
                let keep = keep_for_retry(&shared, &claim.key, entry, response.take());
                let ((), outcome) = tokio::join!(keep, &mut settle);
                if let Settled::No(_) = outcome {
                    shared.pending.remove(&claim.key);
                }
                return;
            }
        };
        if let Err((outcome, response, claim)) = tx.send((outcome, response, claim)) {
            // Gone just as the outcome arrived.
            if !matches!(outcome, Settled::No(_)) {
                keep_for_retry(&claim.shared, &claim.key, entry, response).await;
            }
        }
    });
    rx.await.ok()
}

/// Keeps `entry` — with the handler's `response`, read into memory, if it ran — for the
/// buyer's retry after the exchange that paid for it is gone.
async fn keep_for_retry<F>(
    shared: &Shared<F>,
    key: &str,
    mut entry: PendingEntry,
    response: Option<Response>,
) {
    if let Some(response) = response {
        let limit = shared.pending.config.max_response_bytes;
        match BufferedResponse::read(response, limit).await {
            Ok(kept) => entry.response = Some(kept),
            Err(e) => {
                tracing::error!(error = %e, target = %entry.target, "the buyer hung up during settlement and the response cannot be kept");
                return;
            }
        }
    }
    let target = entry.target.clone();
    if let Err(e) = shared.pending.insert(key.to_owned(), entry) {
        tracing::error!(error = %e, %target, "the buyer hung up during settlement and the payment cannot be remembered");
    }
}

/// The first delay between two tries; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest delay between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Waits before try number `tries` (counting from 1) if the retry budget and `deadline`
/// allow it; `false` when the caller must give up.
async fn back_off<F>(shared: &Shared<F>, tries: u32, deadline: Instant) -> bool {
    if tries > shared.retries {
        return false;
    }
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << (tries - 1).min(10))
        .min(MAX_BACKOFF);
    if Instant::now() + delay >= deadline {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

/// `/verify`, repeated with the same key while the facilitator gives no answer.
async fn verify_with_retries<F: FacilitatorClient>(
    shared: &Shared<F>,
    request: &FacilitatorRequest,
    attempt: &IdempotencyKey,
    deadline: Instant,
) -> Result<VerifyResponse, FacilitatorError> {
    let mut tries = 0;
    loop {
        match shared.facilitator.verify(request, Some(attempt)).await {
            Err(e) => {
                tries += 1;
                if !back_off(shared, tries, deadline).await {
                    return Err(e);
                }
                tracing::debug!(error = %e, tries, "verify got no answer; retrying");
            }
            answer => return answer,
        }
    }
}

/// `/settle`, repeated with the same key while the facilitator gives no answer (unreachable,
/// timed out, the response lost): a repeated settle of the same attempt is answered with the
/// original outcome, never with a second transfer.
async fn settle_with_retries<F: FacilitatorClient>(
    shared: &Shared<F>,
    request: &FacilitatorRequest,
    attempt: &IdempotencyKey,
    deadline: Instant,
) -> Settled {
    let mut tries = 0;
    loop {
        match shared.facilitator.settle(request, Some(attempt)).await {
            Ok(s) if s.success => return Settled::Yes(s),
            Ok(s) => {
                let detail = s.error_message.unwrap_or_default();
                return match s.error_reason {
                    Some(ErrorReason::SettlementPending) => Settled::Unknown(format!(
                        "the transfer was sent and is not confirmed yet ({detail})"
                    )),
                    // The facilitator's own failure, not a verdict on the payment.
                    Some(ErrorReason::UnexpectedSettleError) => Settled::Unknown(format!(
                        "the facilitator could not finish the settlement ({detail})"
                    )),
                    reason => Settled::No(format!(
                        "settlement failed: {}: {detail}",
                        reason.map(|r| r.to_string()).unwrap_or_default()
                    )),
                };
            }
            Err(e) => {
                tries += 1;
                if !back_off(shared, tries, deadline).await {
                    tracing::warn!(error = %e, tries, "settlement outcome unknown after retries");
                    return Settled::Unknown(format!("no answer from the facilitator ({e})"));
                }
                tracing::debug!(error = %e, tries, "settle got no answer; retrying");
            }
        }
    }
}

const NO_PAYMENT: &str = "PAYMENT-SIGNATURE header is required";

/// The challenge for a request without payment, from the cache when possible.
fn cached_challenge<F>(
    shared: &Shared<F>,
    request: &Request<Body>,
    price: &RoutePrice,
) -> Response {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let key = format!("{} {host}{target}", request.method());
    let cached = shared
        .challenges
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let (header_value, body) = match cached {
        Some(hit) => hit,
        None => {
            let resource = resource_info(request, price);
            let accepts: Vec<PaymentRequirements> =
                price.options.iter().map(|o| o.requirements()).collect();
            let offered = shared.offered_extensions();
            let response =
                payment_required(&resource, &accepts, offered.as_ref(), NO_PAYMENT.into());
            let Some(header_value) = response.headers().get(header::PAYMENT_REQUIRED).cloned()
            else {
                return response;
            };
            let body = axum::body::Bytes::from(challenge_body(
                &resource,
                &accepts,
                offered.as_ref(),
                NO_PAYMENT,
            ));
            let mut cache = shared.challenges.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CHALLENGE_CACHE {
                cache.clear();
            }
            cache.insert(key, (header_value.clone(), body.clone()));
            (header_value, body)
        }
    };
    challenge_response(header_value, body)
}

fn resource_info(request: &Request<Body>, price: &RoutePrice) -> ResourceInfo {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    ResourceInfo {
        url: format!("http://{host}{path}"),
        description: price.description.clone(),
        mime_type: price.mime_type.clone(),
        ..ResourceInfo::default()
    }
}

/// The 402: the v2 challenge in `PAYMENT-REQUIRED`, and the v1 form as the JSON body so that
/// v1 clients and agents that only read bodies can pay too.
fn payment_required(
    resource: &ResourceInfo,
    accepts: &[PaymentRequirements],
    extensions: Option<&tollgate_proto::Extensions>,
    error: String,
) -> Response {
    let v2 = challenge_v2(resource, accepts, extensions, &error);
    let body = serde_json::to_vec(&PaymentRequiredV1::from_v2(&v2)).unwrap_or_default();
    let mut response = match HeaderValue::from_str(&header::encode(&v2)) {
        Ok(value) => challenge_response(value, body.into()),
        // Unreachable in practice (base64 is always a valid header value); still a 402.
        Err(_) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
            response
        }
    };
    // For metrics outside the paywall (`outcome.rs`).
    response
        .extensions_mut()
        .insert(PaywallOutcome::of_challenge(&error, NO_PAYMENT));
    response
}

fn challenge_v2(
    resource: &ResourceInfo,
    accepts: &[PaymentRequirements],
    extensions: Option<&tollgate_proto::Extensions>,
    error: &str,
) -> PaymentRequired {
    PaymentRequired {
        x402_version: V2,
        error: Some(error.to_owned()),
        resource: resource.clone(),
        accepts: accepts.to_vec(),
        extensions: extensions.cloned(),
    }
}

fn challenge_body(
    resource: &ResourceInfo,
    accepts: &[PaymentRequirements],
    extensions: Option<&tollgate_proto::Extensions>,
    error: &str,
) -> Vec<u8> {
    let v2 = challenge_v2(resource, accepts, extensions, error);
    serde_json::to_vec(&PaymentRequiredV1::from_v2(&v2)).unwrap_or_default()
}

/// A 402 carrying the v2 challenge header and the v1 JSON body.
fn challenge_response(header_value: HeaderValue, body: axum::body::Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::PAYMENT_REQUIRED, header_value);
    // A challenge may carry a reason about one buyer's payment; no cache should keep it.
    headers.insert(http::header::CACHE_CONTROL, NO_STORE);
    super::hints::add_to(headers);
    response
}

/// `Cache-Control` of challenges and errors about a payment.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// `Cache-Control` of paid responses: a shared cache must never hand a paid body to someone
/// else, and no cache should replay it.
const PRIVATE_NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

fn unavailable(message: String) -> Response {
    service_unavailable("payment facilitator unavailable", message)
}

fn service_unavailable(error: &str, message: String) -> Response {
    let body = serde_json::json!({ "error": error, "detail": message });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .extensions_mut()
        .insert(PaywallOutcome::Unavailable);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::CACHE_CONTROL, NO_STORE);
    response
}

/// Marks a response produced for a paying request as uncacheable, replacing the handler's
/// (or the upstream's) own `Cache-Control`.
fn set_private(response: &mut Response) {
    response
        .headers_mut()
        .insert(http::header::CACHE_CONTROL, PRIVATE_NO_STORE);
}

/// Completes a paid response: the receipt, and no caching.
fn deliver_paid(response: &mut Response, version: X402Version, settled: SettleResponse) {
    response.extensions_mut().insert(PaywallOutcome::Paid);
    attach_receipt(response, version, settled);
    set_private(response);
}

fn attach_receipt(response: &mut Response, version: X402Version, settled: SettleResponse) {
    let (name, value) = match version {
        X402Version::V2 => (header::PAYMENT_RESPONSE, header::encode(&settled)),
        X402Version::V1 => (
            header::X_PAYMENT_RESPONSE,
            header::encode(&SettleResponseV1::from(settled)),
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}
