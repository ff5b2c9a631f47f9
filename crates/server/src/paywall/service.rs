//! [`Paywall`]: the HTTP adapter of the [gate](crate::gate). It finds the request's price,
//! reads the payment header, asks the gate, runs the inner service when the gate says so, and
//! writes the challenge, the receipt and the cache headers. Every payment decision is the
//! gate's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode};
use tollgate_proto::v1::PaymentRequiredV1;
use tollgate_proto::{header, ResourceInfo, X402Version};
use tower_service::Service;

use super::future::ResponseFuture;
use super::html;
use super::outcome::PaywallOutcome;
use crate::gate::{
    Admission, Challenge, Gate, IdentityRefusal, Offer, PaymentInfo, Presented, Receipt,
    Settlement, SettlementMode, Unavailable, IDENTITY_CHECK_FAILED, NO_PAYMENT, OPERATOR_TOKEN,
};
use crate::price::{Pricing, RoutePrice, RouteTable};
use crate::FacilitatorClient;

pub(crate) struct Shared<F> {
    /// The paywall's own route table ([`PaywallLayer::route`](super::PaywallLayer::route));
    /// empty for a per-route layer.
    pub(crate) routes: RouteTable,
    /// The price of every request this service sees, for a layer on one route
    /// ([`PaywallLayer::price`](super::PaywallLayer::price)): the router in front of it has
    /// already chosen the route, so there is no table to consult, and none to disagree with.
    pub(crate) route: Option<Pricing>,
    /// Every payment decision: claims, verification, settlement, kept responses.
    pub(crate) gate: Gate<F, Response>,
    /// Encoded "no payment yet" challenges by request line, so the common 402 costs a map
    /// lookup instead of serializing and encoding the requirements again. Bounded: cleared
    /// when full, so distinct URLs cannot grow it without limit.
    pub(crate) challenges: Mutex<HashMap<String, (HeaderValue, axum::body::Bytes)>>,
    /// Wallet scripts for the browser paywall page; empty: browsers get the plain 402.
    pub(crate) wallet_scripts: Vec<&'static str>,
    /// A configuration error no builder call has reported yet (`PaywallLayer::scheme`):
    /// priced requests are answered `500` rather than sold at an unchecked price.
    pub(crate) misconfigured: Option<crate::price::PriceError>,
    /// The refusal reasons this paywall labels its responses with, bounded (`outcome.rs`).
    pub(crate) reason_labels: super::outcome::ReasonLabelSet,
    /// Sign-in-with-x, when offered (`PaywallLayer::sign_in_with_x`).
    pub(crate) siwx: Option<Arc<crate::siwx::SignInWithX>>,
}

impl<F> Shared<F> {
    /// How a request for `method` and `path` (canonical) is priced, if it is.
    fn pricing(&self, method: &http::Method, path: &str) -> Option<&Pricing> {
        match &self.route {
            Some(pricing) => Some(pricing),
            None => self.routes.find(method, path),
        }
    }
}

/// Most cached challenges kept at once.
const CHALLENGE_CACHE: usize = 4096;

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
        ResponseFuture::boxed(async move {
            let mut response = handle(shared.clone(), inner, request).await?;
            shared.reason_labels.bound_response(&mut response);
            Ok(response)
        })
    }
}

fn has_payment(request: &Request<Body>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::PAYMENT_SIGNATURE) || headers.contains_key(header::X_PAYMENT)
}

/// The 402 for a request without payment to a statically priced route, from the cache; `None`
/// when the request needs more (a payment to check, a browser page, a dynamic price, no price,
/// requirements the gate cannot complete without asking the facilitator).
fn unpaid_static_challenge<F: FacilitatorClient>(
    shared: &Shared<F>,
    request: &Request<Body>,
) -> Option<Response> {
    if has_payment(request) {
        return None;
    }
    let browsers = !shared.wallet_scripts.is_empty();
    if browsers && html::wants_html(request.headers()) {
        return None;
    }
    if shared.misconfigured.is_some() {
        return None;
    }
    // Each sign-in challenge has a fresh nonce: nothing to cache.
    if shared.siwx.is_some() {
        return None;
    }
    let Some(Pricing::Static(price)) = shared.pricing(request.method(), request.uri().path())
    else {
        return None;
    };
    let mut response = cached_challenge(shared, request, price)?;
    if browsers {
        // Browsers get a page at this URL: caches must key on Accept.
        response
            .headers_mut()
            .insert(http::header::VARY, HeaderValue::from_static("Accept"));
    }
    Some(response)
}

/// `METHOD path?query`: the exchange's identity for the gate.
fn target_of(request: &Request<Body>) -> String {
    format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    )
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
    let gate = &shared.gate;
    let browser = !has_payment(&request)
        && !shared.wallet_scripts.is_empty()
        && html::wants_html(request.headers());
    let pricing = shared.pricing(request.method(), request.uri().path());
    if let (Some(_), Some(e)) = (pricing, &shared.misconfigured) {
        return Ok(misconfigured(e.to_string()));
    }
    let price: Cow<'_, RoutePrice> = match pricing {
        None => return inner.call(request).await,
        // Static payees were checked when the route was priced.
        Some(Pricing::Static(price)) => Cow::Borrowed(price),
        Some(Pricing::Dynamic(quote)) => match quote(&request).await {
            // This request is free.
            None => return inner.call(request).await,
            Some(price) if price.options.is_empty() && price.auth_only.is_empty() => {
                return inner.call(request).await
            }
            Some(mut price) => {
                if let Err(e) = gate.check_price(&mut price) {
                    tracing::error!(error = %e, target = %target_of(&request), "the route's dynamic price cannot be offered");
                    return Ok(misconfigured(e.to_string()));
                }
                Cow::Owned(price)
            }
        },
    };
    let price = price.as_ref();
    let accepts = match gate.accepts(price).await {
        Ok(accepts) => accepts,
        Err(e) => return Ok(unavailable(&e)),
    };
    let mut offer = Offer {
        resource: resource_info(&request, price),
        accepts,
        target: target_of(&request),
        extensions: price.offered_extensions(),
    };
    // Sign-in-with-x: offered in the 402; a wallet that paid (any wallet, auth-only) gets in.
    if let Some(siwx) = &shared.siwx {
        let paying = has_payment(&request);
        match super::sign_in::check(
            siwx,
            &mut offer,
            price,
            request.uri(),
            request.headers(),
            paying,
        )
        .await
        {
            super::sign_in::SignIn::Pay => {}
            super::sign_in::SignIn::Granted(signed_in) => {
                request.extensions_mut().insert(signed_in);
                let mut response = inner.call(request).await?;
                set_private(&mut response);
                response.extensions_mut().insert(PaywallOutcome::SignedIn);
                return Ok(response);
            }
            super::sign_in::SignIn::Refused(error) => {
                return Ok(payment_required(&gate.challenge(&offer, error)))
            }
            super::sign_in::SignIn::Unavailable(detail) => {
                let mut response = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sign-in store unavailable",
                    &detail,
                );
                response
                    .extensions_mut()
                    .insert(PaywallOutcome::Unavailable);
                return Ok(response);
            }
        }
    }
    let paid_target = shared.siwx.as_ref().map(|_| offer.target.clone());
    let record = |info: PaymentInfo| {
        let shared = shared.clone();
        let target = paid_target.clone();
        async move { super::sign_in::record(shared.siwx.as_deref(), target.as_deref(), &info).await }
    };

    if browser {
        let challenge = gate.challenge(&offer, NO_PAYMENT);
        if let Ok(value) = HeaderValue::from_str(&header::encode(&challenge.required)) {
            return Ok(html::html_challenge(
                &challenge.required,
                value,
                request.method(),
                &shared.wallet_scripts,
            ));
        }
    }
    let presented = Presented::from(header::payment_from_headers(request.headers()));
    // Passed to the identity provider only; whose identity is checked is the verified payer's,
    // whatever the request claims (`X-Wallet-Address` is not read).
    let operator_token = request
        .headers()
        .get(OPERATOR_TOKEN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match gate
        .admit_as(offer, presented, operator_token.as_deref())
        .await
    {
        Admission::Challenge(challenge) => Ok(payment_required(&challenge)),
        Admission::Refused(refusal) => Ok(identity_refused(&refusal)),
        Admission::Unavailable(e) => Ok(unavailable(&e)),
        Admission::Deliver(paid) => {
            let (mut response, receipt, info) = paid.into_parts();
            record(info).await;
            deliver_paid(&mut response, &receipt);
            Ok(response)
        }
        // A payment operation (a refund): settled; its body with the receipt, and the
        // handler does not run.
        Admission::Operation(paid) => {
            let (operation, receipt, _) = paid.into_parts();
            let mut response = Response::new(Body::from(operation.body.to_string()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            deliver_paid(&mut response, &receipt);
            response.extensions_mut().insert(PaywallOutcome::Operation);
            Ok(response)
        }
        Admission::RunPaid(paid) => {
            request.extensions_mut().insert(paid.info().clone());
            let mut response = inner.call(request).await?;
            let ((), receipt, info) = paid.into_parts();
            record(info).await;
            deliver_paid(&mut response, &receipt);
            Ok(response)
        }
        Admission::Verified(payment) => match payment.mode() {
            SettlementMode::BeforeHandler => match payment.settle().await {
                Settlement::Paid(paid) => {
                    request.extensions_mut().insert(paid.info().clone());
                    let mut response = inner.call(request).await?;
                    let ((), receipt, info) = paid.into_parts();
                    record(info).await;
                    deliver_paid(&mut response, &receipt);
                    Ok(response)
                }
                Settlement::Refused(challenge) | Settlement::Pending(challenge) => {
                    Ok(payment_required(&challenge))
                }
                Settlement::Unavailable(e) => Ok(unavailable(&e)),
            },
            SettlementMode::AfterHandler => {
                request.extensions_mut().insert(payment.info().clone());
                if let Some(meter) = payment.meter() {
                    // A metered payment: the handler records its charge here (`Meter::charge`).
                    request.extensions_mut().insert(meter.clone());
                }
                let mut response = inner.call(request).await?;
                if response.status().as_u16() >= 400 {
                    // The handler failed: the buyer is not charged.
                    payment.handler_failed().await;
                    set_private(&mut response);
                    response
                        .extensions_mut()
                        .insert(PaywallOutcome::HandlerFailed);
                    return Ok(response);
                }
                match payment.settle_delivery(response).await {
                    Settlement::Paid(paid) => {
                        let (mut response, receipt, info) = paid.into_parts();
                        record(info).await;
                        deliver_paid(&mut response, &receipt);
                        Ok(response)
                    }
                    // The handler's body is dropped: nothing is delivered unpaid.
                    Settlement::Refused(challenge) | Settlement::Pending(challenge) => {
                        Ok(payment_required(&challenge))
                    }
                    Settlement::Unavailable(e) => Ok(unavailable(&e)),
                }
            }
        },
    }
}

/// The challenge for a request without payment, from the cache when possible; `None` when the
/// gate must ask the facilitator first.
fn cached_challenge<F: FacilitatorClient>(
    shared: &Shared<F>,
    request: &Request<Body>,
    price: &RoutePrice,
) -> Option<Response> {
    let (accepts, generation) = shared.gate.accepts_now(price)?;
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
    let key = format!("{generation} {} {host}{target}", request.method());
    let cached = shared
        .challenges
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let (header_value, body) = match cached {
        Some(hit) => hit,
        None => {
            let offer = Offer {
                resource: resource_info(request, price),
                accepts,
                target: target_of(request),
                extensions: price.offered_extensions(),
            };
            let challenge = shared.gate.challenge(&offer, NO_PAYMENT);
            let Ok(header_value) = HeaderValue::from_str(&header::encode(&challenge.required))
            else {
                return Some(payment_required(&challenge));
            };
            let body = axum::body::Bytes::from(v1_body(&challenge));
            let mut cache = shared.challenges.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CHALLENGE_CACHE {
                cache.clear();
            }
            cache.insert(key, (header_value.clone(), body.clone()));
            (header_value, body)
        }
    };
    Some(challenge_response(header_value, body))
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
    let mut resource = ResourceInfo {
        url: format!("http://{host}{path}"),
        description: price.description.clone(),
        mime_type: price.mime_type.clone(),
        ..ResourceInfo::default()
    };
    price.service.apply_to(&mut resource);
    resource
}

/// The v1 form of a challenge, the 402's JSON body.
fn v1_body(challenge: &Challenge) -> Vec<u8> {
    serde_json::to_vec(&PaymentRequiredV1::from_v2(&challenge.required)).unwrap_or_default()
}

/// The 402: the v2 challenge in `PAYMENT-REQUIRED`, and the v1 form as the JSON body so that
/// v1 clients and agents that only read bodies can pay too; `Retry-After` for a pending
/// settlement.
fn payment_required(challenge: &Challenge) -> Response {
    let body = v1_body(challenge);
    let mut response = match HeaderValue::from_str(&header::encode(&challenge.required)) {
        Ok(value) => challenge_response(value, body.into()),
        // Unreachable in practice (base64 is always a valid header value); still a 402.
        Err(_) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
            response
        }
    };
    if let Some(seconds) = challenge.retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    // For metrics outside the paywall (`outcome.rs`).
    response.extensions_mut().insert(challenge.outcome());
    response
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

fn unavailable(e: &Unavailable) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, e.label(), e.detail());
    response
        .extensions_mut()
        .insert(PaywallOutcome::Unavailable);
    response
}

/// The `403` of a payer refused by the identity policy: each rule with its reason and remedy.
/// Nothing was settled. Not cacheable: it is about one buyer.
fn identity_refused(refusal: &IdentityRefusal) -> Response {
    let mut response = Response::new(Body::from(refusal.body().to_string()));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::CACHE_CONTROL, NO_STORE);
    response.extensions_mut().insert(PaywallOutcome::Refused {
        reason: Cow::Borrowed(IDENTITY_CHECK_FAILED),
    });
    response
}

/// A `500` for a price this paywall cannot offer (a dynamic price with a payee its scheme
/// refuses): the seller's mistake, not the buyer's.
fn misconfigured(detail: String) -> Response {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the route's price is misconfigured",
        &detail,
    )
}

fn json_error(status: StatusCode, error: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "error": error, "detail": detail });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
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
fn deliver_paid(response: &mut Response, receipt: &Receipt) {
    response.extensions_mut().insert(PaywallOutcome::Paid);
    let name = match receipt.version {
        X402Version::V2 => header::PAYMENT_RESPONSE,
        X402Version::V1 => header::X_PAYMENT_RESPONSE,
    };
    if let Ok(value) = HeaderValue::from_str(&receipt.encoded()) {
        response.headers_mut().insert(name, value);
    }
    set_private(response);
}
