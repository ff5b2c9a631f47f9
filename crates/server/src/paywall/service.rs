//! [`Paywall`]: the service that answers 402s, verifies, runs the handler and settles.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode};
use tollgate_proto::v1::{PaymentRequiredV1, PaymentRequirementsV1};
use tollgate_proto::{
    header, AnyPaymentPayload, AtomicAmount, FacilitatorRequest, Network, PaymentRequired,
    PaymentRequirements, ResourceInfo, Scheme, SettleResponse, SettleResponseV1, X402Version, V2,
};
use tower_service::Service;

use super::future::ResponseFuture;
use super::html;
use super::layer::SettlementMode;
use crate::price::{Pricing, RoutePrice, RouteTable};
use crate::FacilitatorClient;

pub(crate) struct Shared<F> {
    pub(crate) routes: RouteTable,
    pub(crate) facilitator: F,
    pub(crate) mode: SettlementMode,
    /// Payments currently being processed, by their scheme payload. A second request carrying
    /// the same payment while the first is in flight is refused, so one payment is served once;
    /// after settlement the chain itself refuses the reuse at verification.
    pub(crate) claims: Mutex<HashSet<String>>,
    /// Encoded "no payment yet" challenges by request line, so the common 402 costs a map
    /// lookup instead of serializing and encoding the requirements again. Bounded: cleared
    /// when full, so distinct URLs cannot grow it without limit.
    pub(crate) challenges: Mutex<HashMap<String, (HeaderValue, axum::body::Bytes)>>,
    /// Wallet scripts for the browser paywall page; empty: browsers get the plain 402.
    pub(crate) wallet_scripts: Vec<&'static str>,
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

/// Releases a payment claim when the request ends, however it ends.
struct Claim<'a> {
    claims: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims
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
    let challenge = |error: String| payment_required(&resource, &accepts, error);

    if browser {
        let v2 = challenge_v2(&resource, &accepts, NO_PAYMENT);
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
    let (facilitator_request, chosen, claim_key) = match payment {
        AnyPaymentPayload::V2(p) => {
            let Some(chosen) = accepts.iter().find(|r| **r == p.accepted).cloned() else {
                return Ok(challenge(
                    "the payment's `accepted` matches none of this resource's requirements".into(),
                ));
            };
            let key = claim_key(&p.payload);
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
            let key = claim_key(&p.payload);
            let request = FacilitatorRequest::V1 {
                payment_requirements: PaymentRequirementsV1::from_v2(&chosen, &resource),
                payment_payload: p,
            };
            (request, chosen, key)
        }
    };

    let _claim = {
        let mut claims = shared.claims.lock().unwrap_or_else(|p| p.into_inner());
        if !claims.insert(claim_key.clone()) {
            return Ok(challenge(
                "this payment is already being used by another request".into(),
            ));
        }
        Claim {
            claims: &shared.claims,
            key: claim_key,
        }
    };

    let verified = match shared.facilitator.verify(&facilitator_request).await {
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

    match shared.mode {
        SettlementMode::BeforeHandler => {
            let settled = match settle(&shared.facilitator, &facilitator_request).await {
                Ok(s) => s,
                Err(SettleFailure::Rejected(e)) => return Ok(challenge(e)),
                Err(SettleFailure::Unavailable(e)) => return Ok(unavailable(e)),
            };
            info.transaction = Some(settled.transaction.clone());
            request.extensions_mut().insert(info);
            let mut response = inner.call(request).await?;
            attach_receipt(&mut response, version, settled);
            Ok(response)
        }
        SettlementMode::AfterHandler => {
            request.extensions_mut().insert(info);
            let mut response = inner.call(request).await?;
            if response.status().as_u16() >= 400 {
                // The handler failed: the buyer is not charged.
                return Ok(response);
            }
            match settle(&shared.facilitator, &facilitator_request).await {
                Ok(settled) => {
                    attach_receipt(&mut response, version, settled);
                    Ok(response)
                }
                // The handler's body is dropped: nothing is delivered unpaid.
                Err(SettleFailure::Rejected(e)) => Ok(challenge(e)),
                Err(SettleFailure::Unavailable(e)) => Ok(unavailable(e)),
            }
        }
    }
}

/// Why a settlement did not succeed.
enum SettleFailure {
    /// The facilitator refused it (or it is still pending): answer 402 with the reason.
    Rejected(String),
    /// The facilitator could not be reached: answer 503.
    Unavailable(String),
}

async fn settle<F: FacilitatorClient>(
    facilitator: &F,
    request: &FacilitatorRequest,
) -> Result<SettleResponse, SettleFailure> {
    match facilitator.settle(request).await {
        Ok(s) if s.success => Ok(s),
        Ok(s) => {
            let reason = s.error_reason.map(|r| r.to_string()).unwrap_or_default();
            let detail = s.error_message.unwrap_or_default();
            Err(SettleFailure::Rejected(format!(
                "settlement failed: {reason}: {detail}"
            )))
        }
        Err(e) => Err(SettleFailure::Unavailable(e.to_string())),
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
            let response = payment_required(&resource, &accepts, NO_PAYMENT.into());
            let Some(header_value) = response.headers().get(header::PAYMENT_REQUIRED).cloned()
            else {
                return response;
            };
            let body = axum::body::Bytes::from(challenge_body(&resource, &accepts, NO_PAYMENT));
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

fn claim_key(payload: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::to_string(payload).unwrap_or_default()
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
    error: String,
) -> Response {
    let v2 = challenge_v2(resource, accepts, &error);
    let body = serde_json::to_vec(&PaymentRequiredV1::from_v2(&v2)).unwrap_or_default();
    match HeaderValue::from_str(&header::encode(&v2)) {
        Ok(value) => challenge_response(value, body.into()),
        // Unreachable in practice (base64 is always a valid header value); still a 402.
        Err(_) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
            response
        }
    }
}

fn challenge_v2(
    resource: &ResourceInfo,
    accepts: &[PaymentRequirements],
    error: &str,
) -> PaymentRequired {
    PaymentRequired {
        x402_version: V2,
        error: Some(error.to_owned()),
        resource: resource.clone(),
        accepts: accepts.to_vec(),
        extensions: None,
    }
}

fn challenge_body(
    resource: &ResourceInfo,
    accepts: &[PaymentRequirements],
    error: &str,
) -> Vec<u8> {
    let v2 = challenge_v2(resource, accepts, error);
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
    response
}

fn unavailable(message: String) -> Response {
    let body = serde_json::json!({ "error": "payment facilitator unavailable", "detail": message });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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
