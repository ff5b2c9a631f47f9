//! The HTTP API: `POST /verify`, `POST /settle`, `GET /supported`, `GET /health`, the
//! reputation service's `GET /reputation/{address}` and `POST /assess`
//! ([`crate::reputation`]), and Bazaar discovery's `GET /discovery/resources` and
//! `GET /discovery/search` ([`crate::discovery`]; public, behind the rate limit). A settlement
//! whose payment carries a bazaar extension answers whether it was catalogued in the
//! `EXTENSION-RESPONSES` header.
//!
//! Bodies are exactly the spec's. Status codes: 200 for a valid / settled payment, 202 for a
//! settlement sent but not yet confirmed, 400 for a payment at fault or a malformed body (with
//! the spec's reason string and a readable message), 409 when the attempt key (the
//! `Idempotency-Key` header or the payment's `payment-identifier` id) was already used for
//! another payment, 503 when the chain or the ledger cannot be reached. Never a 500 for a
//! client's mistake.
//!
//! `POST /verify` and `POST /settle` accept an optional `Idempotency-Key` header naming the
//! settlement attempt (see [`Facilitator::settle_attempt`]); a malformed one is a 400
//! (`invalid_payment_identifier`), never ignored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tollgate_proto::bazaar::{BazaarResponse, EXTENSION_RESPONSES};
use tollgate_proto::discovery::{
    RawDiscoveryParams, ResourcesQuery, SearchQuery, RESOURCES_PATH, SEARCH_PATH,
};
use tollgate_proto::idempotency::{IdempotencyKey, IDEMPOTENCY_KEY};
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, Network, SettleResponse, SettleResponseV1, VerifyResponse,
    X402Version,
};

use crate::discovery::Catalogue;
use crate::metrics::{Metrics, ScrapeState, SignerGauges};
use crate::rate_limit::{Limiter, RateLimit};
use crate::reputation::ReputationService;
use crate::service::{Facilitator, Outcome};

/// Limits and access control applied to every request.
#[derive(Clone)]
pub struct HttpLimits {
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// When set, `/verify` and `/settle` require `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// When set, requests to `/verify`, `/settle` and `/supported` beyond this rate per
    /// client IP get 429 (see [`rate_limit`](crate::rate_limit)).
    pub rate_limit: Option<RateLimit>,
}

impl std::fmt::Debug for HttpLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLimits")
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(120),
            api_key: None,
            rate_limit: None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    facilitator: Facilitator,
    catalogue: Catalogue,
    reputation: ReputationService,
    limits: Arc<HttpLimits>,
    metrics: Arc<Metrics>,
}

/// The facilitator's routes, ready to serve. The reputation service (`/reputation/{address}`,
/// `/assess`) reads the facilitator's ledger and has no sanctions list; use
/// [`router_with_reputation`] to give it one.
pub fn router(facilitator: Facilitator, limits: HttpLimits) -> Router {
    let reputation = ReputationService::new(facilitator.ledger().clone(), None);
    router_with_reputation(facilitator, limits, reputation)
}

/// The facilitator's routes with `reputation` answering `GET /reputation/{address}` and
/// `POST /assess` (read-only; behind the API key and the rate limit like `/verify`).
pub fn router_with_reputation(
    facilitator: Facilitator,
    limits: HttpLimits,
    reputation: ReputationService,
) -> Router {
    let mut api = Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .route("/reputation/{address}", get(reputation_of))
        .route("/assess", post(assess))
        .route(RESOURCES_PATH, get(discovery_resources))
        .route(SEARCH_PATH, get(discovery_search));
    if let Some(rate) = limits.rate_limit {
        // Health checks and scrapes are exempt: a load balancer must always see the truth.
        api = api.layer(axum::middleware::from_fn_with_state(
            Limiter::new(rate),
            crate::rate_limit::limit,
        ));
    }
    api.route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .with_state(AppState {
            catalogue: Catalogue::new(facilitator.ledger()),
            facilitator,
            reputation,
            limits: Arc::new(limits),
            metrics: Arc::new(Metrics::default()),
        })
        // Outermost: one span per request, a child of the paywall's span when the request
        // carries its `traceparent`, so verify and settle join the paid request's trace.
        .layer(tollgate_telemetry::HttpTraceLayer::continue_incoming())
}

/// Checks the bearer key in constant time (no early exit on the first differing byte).
fn authorized(limits: &HttpLimits, headers: &HeaderMap) -> bool {
    let Some(key) = &limits.api_key else {
        return true;
    };
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), key.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "missing or invalid bearer API key" })),
    )
        .into_response()
}

fn outcome_label<T>(
    outcome: &Outcome<T>,
    ok: &'static str,
    rejected: &'static str,
) -> &'static str {
    match outcome {
        Outcome::Ok(_) => ok,
        Outcome::Pending(_) => "pending",
        Outcome::Rejected(_) => rejected,
        Outcome::Unavailable(_) => "unavailable",
        Outcome::Conflict(_) => "conflict",
    }
}

/// The `Idempotency-Key` header: absent, or exactly one well-formed value.
fn attempt_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, String> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Idempotency-Key header".into());
    }
    let value = value
        .to_str()
        .map_err(|_| "Idempotency-Key is not visible ASCII".to_string())?;
    IdempotencyKey::new(value)
        .map(Some)
        .map_err(|e| format!("Idempotency-Key: {e}"))
}

/// Decodes a request body; serde's message names the failing field for our dispatching types
/// (e.g. `paymentRequirements.amount: amounts cannot be negative`).
fn parse(body: &[u8]) -> Result<FacilitatorRequest, String> {
    FacilitatorRequest::from_json(body).map_err(|e| e.to_string())
}

fn bad_request_reason(message: &str) -> ErrorReason {
    if message.contains("x402Version") {
        ErrorReason::InvalidX402Version
    } else {
        ErrorReason::InvalidPayload
    }
}

async fn verify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state.limits, &headers) {
        return unauthorized();
    }
    let started = Instant::now();
    let outcome = match (parse(&body), attempt_key(&headers)) {
        (Err(message), _) => Outcome::Rejected(VerifyResponse::invalid(
            bad_request_reason(&message),
            Some(message),
            None,
        )),
        (Ok(_), Err(message)) => Outcome::Rejected(VerifyResponse::invalid(
            ErrorReason::InvalidPaymentIdentifier,
            Some(message),
            None,
        )),
        (Ok(request), Ok(attempt)) => {
            let work = state.facilitator.verify_attempt(&request, attempt.as_ref());
            match tokio::time::timeout(state.limits.request_timeout, work).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Unavailable(VerifyResponse::invalid(
                    ErrorReason::UnexpectedVerifyError,
                    Some("verification timed out".into()),
                    None,
                )),
            }
        }
    };
    let reason = outcome
        .body()
        .invalid_reason
        .as_ref()
        .map(|r| r.to_string());
    state.metrics.observe(
        "verify",
        outcome_label(&outcome, "valid", "invalid"),
        reason.as_deref().unwrap_or(""),
        started.elapsed(),
    );
    let precondition = rejection_status(&outcome, outcome.body().invalid_reason.as_ref());
    with_status(respond(outcome), precondition)
}

/// `412` when a rejection's reason is a missing precondition of the payer's (the spec's
/// `PERMIT2_ALLOWANCE_REQUIRED`): the body is the same as a `400`'s.
fn rejection_status<T>(outcome: &Outcome<T>, reason: Option<&ErrorReason>) -> Option<StatusCode> {
    match (outcome, reason) {
        (Outcome::Rejected(_), Some(reason)) => StatusCode::from_u16(reason.rejection_status())
            .ok()
            .filter(|s| *s != StatusCode::BAD_REQUEST),
        _ => None,
    }
}

fn with_status(mut response: Response, status: Option<StatusCode>) -> Response {
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    response
}

async fn settle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state.limits, &headers) {
        return unauthorized();
    }
    let started = Instant::now();
    let mut catalogued: Option<BazaarResponse> = None;
    let (version, outcome) = match (parse(&body), attempt_key(&headers)) {
        (Err(message), _) => (
            X402Version::V2,
            Outcome::Rejected(SettleResponse::failure(
                bad_request_reason(&message),
                Some(message),
                network_hint(&body),
                None,
                None,
            )),
        ),
        (Ok(request), Err(message)) => (
            request.version(),
            Outcome::Rejected(SettleResponse::failure(
                ErrorReason::InvalidPaymentIdentifier,
                Some(message),
                request.to_v2().1.network,
                None,
                None,
            )),
        ),
        (Ok(request), Ok(attempt)) => {
            let work = state.facilitator.settle_attempt(&request, attempt.as_ref());
            let outcome = match tokio::time::timeout(state.limits.request_timeout, work).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Unavailable(SettleResponse::failure(
                    ErrorReason::UnexpectedSettleError,
                    Some(
                        "settlement timed out; it may still complete — retry to learn its result"
                            .into(),
                    ),
                    request.to_v2().1.network,
                    None,
                    None,
                )),
            };
            // Only what settled is catalogued (a v1 payment carries no extensions).
            if let (FacilitatorRequest::V2 { .. }, Outcome::Ok(settled)) = (&request, &outcome) {
                let (payment, requirements) = request.to_v2();
                catalogued = state
                    .catalogue
                    .record_settlement(&payment, &requirements, settled)
                    .await;
            }
            (request.version(), outcome)
        }
    };
    let reason = outcome.body().error_reason.as_ref().map(|r| r.to_string());
    state.metrics.observe(
        "settle",
        outcome_label(&outcome, "success", "failure"),
        reason.as_deref().unwrap_or(""),
        started.elapsed(),
    );
    let precondition = rejection_status(&outcome, outcome.body().error_reason.as_ref());
    let mut response = match version {
        X402Version::V2 => respond(outcome),
        X402Version::V1 => respond(match outcome {
            Outcome::Ok(b) => Outcome::Ok(SettleResponseV1::from(b)),
            Outcome::Pending(b) => Outcome::Pending(SettleResponseV1::from(b)),
            Outcome::Rejected(b) => Outcome::Rejected(SettleResponseV1::from(b)),
            Outcome::Unavailable(b) => Outcome::Unavailable(SettleResponseV1::from(b)),
            Outcome::Conflict(b) => Outcome::Conflict(SettleResponseV1::from(b)),
        }),
    };
    response = with_status(response, precondition);
    if let Some(answer) = catalogued {
        response
            .headers_mut()
            .insert(EXTENSION_RESPONSES, answer.header_value());
    }
    response
}

/// `SettleResponse.network` is required even when the body is garbage; use the requirements'
/// network if it can be read at all.
fn network_hint(body: &[u8]) -> Network {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("paymentRequirements")?
                .get("network")?
                .as_str()
                .and_then(|s| Network::parse_any(s).ok())
        })
        .unwrap_or_else(|| Network::eip155(0))
}

fn respond<T: Serialize>(outcome: Outcome<T>) -> Response {
    let status = match &outcome {
        Outcome::Ok(_) => StatusCode::OK,
        Outcome::Pending(_) => StatusCode::ACCEPTED,
        Outcome::Rejected(_) => StatusCode::BAD_REQUEST,
        Outcome::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Conflict(_) => StatusCode::CONFLICT,
    };
    (status, Json(outcome.into_body())).into_response()
}

/// `GET /reputation/{address}`: see [`crate::reputation`].
async fn reputation_of(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    if !authorized(&state.limits, &headers) {
        return unauthorized();
    }
    state.reputation.reputation_response(&address).await
}

/// `POST /assess`: see [`crate::reputation`].
async fn assess(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state.limits, &headers) {
        return unauthorized();
    }
    state.reputation.assess_response(&body).await
}

/// `GET /supported`, with the extensions this API implements: `bazaar` (settled payments'
/// discovery data catalogued, `/discovery/*` served).
async fn supported(State(state): State<AppState>) -> Response {
    let mut supported = state.facilitator.supported();
    if !supported
        .extensions
        .iter()
        .any(|e| e == tollgate_proto::bazaar::BAZAAR)
    {
        supported
            .extensions
            .push(tollgate_proto::bazaar::BAZAAR.to_owned());
    }
    Json(supported).into_response()
}

/// A discovery request's parameters, or why the query string cannot be read (a 400).
fn discovery_params(
    query: Result<
        axum::extract::Query<RawDiscoveryParams>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<RawDiscoveryParams, String> {
    query
        .map(|q| q.0)
        .map_err(|e| format!("malformed query string: {}", e.body_text()))
}

fn discovery_error(status: StatusCode, parameter: Option<&str>, message: String) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(parameter) = parameter {
        body["parameter"] = parameter.into();
    }
    (status, Json(body)).into_response()
}

fn catalogue_unavailable(e: crate::discovery::CatalogueError) -> Response {
    tracing::warn!(error = %e, "discovery catalogue read failed");
    discovery_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the discovery catalogue cannot be read right now".into(),
    )
}

/// `GET /discovery/resources`: see [`crate::discovery`].
async fn discovery_resources(
    State(state): State<AppState>,
    query: Result<
        axum::extract::Query<RawDiscoveryParams>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let raw = match discovery_params(query) {
        Ok(raw) => raw,
        Err(message) => return discovery_error(StatusCode::BAD_REQUEST, None, message),
    };
    let query = match ResourcesQuery::from_raw(&raw) {
        Ok(q) => q,
        Err(e) => {
            return discovery_error(StatusCode::BAD_REQUEST, Some(e.parameter()), e.to_string())
        }
    };
    match state.catalogue.list(&query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => catalogue_unavailable(e),
    }
}

/// `GET /discovery/search`: see [`crate::discovery`].
async fn discovery_search(
    State(state): State<AppState>,
    query: Result<
        axum::extract::Query<RawDiscoveryParams>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let raw = match discovery_params(query) {
        Ok(raw) => raw,
        Err(message) => return discovery_error(StatusCode::BAD_REQUEST, None, message),
    };
    let query = match SearchQuery::from_raw(&raw) {
        Ok(q) => q,
        Err(e) => {
            return discovery_error(StatusCode::BAD_REQUEST, Some(e.parameter()), e.to_string())
        }
    };
    match state.catalogue.search(&query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => catalogue_unavailable(e),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    networks: Vec<NetworkHealth>,
    ledger: Vec<(String, i64)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkHealth {
    network: String,
    rpc_ok: bool,
    block_number: Option<u64>,
    signers: Vec<SignerHealth>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignerHealth {
    address: String,
    balance_wei: Option<String>,
    low_on_gas: bool,
    in_flight: usize,
}

/// `GET /health`: 200 `ok` when every network's node answers, the ledger is readable and no
/// signer is low on gas; otherwise 503 `degraded` (a load balancer then routes elsewhere, and
/// the body says which part failed).
async fn health(State(state): State<AppState>) -> Response {
    let mut networks = Vec::new();
    let mut ok = true;
    let signers = state.facilitator.signer_status().await;
    let mut chains: Vec<_> = state.facilitator.chains().iter().collect();
    chains.sort_by(|a, b| a.network().cmp(b.network()));
    for chain in chains {
        let network = chain.network();
        let block = chain.head().await;
        ok &= block.is_some();
        let signers: Vec<SignerHealth> = signers
            .iter()
            .filter(|s| &s.network == network)
            .map(|s| SignerHealth {
                address: s.address.clone(),
                balance_wei: s.balance.map(|b| b.to_string()),
                low_on_gas: s.low_on_gas,
                in_flight: s.in_flight,
            })
            .collect();
        ok &= !signers.iter().any(|s| s.low_on_gas);
        networks.push(NetworkHealth {
            network: network.to_string(),
            rpc_ok: block.is_some(),
            block_number: block,
            signers,
        });
    }
    let ledger = match state.facilitator.ledger().count_by_state().await {
        Ok(counts) => counts,
        Err(_) => {
            ok = false;
            Vec::new()
        }
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ok { "ok" } else { "degraded" },
            networks,
            ledger,
        }),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let ledger = state
        .facilitator
        .ledger()
        .count_by_state()
        .await
        .ok()
        .map(|counts| {
            counts
                .into_iter()
                .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
                .collect()
        });
    let signers = state
        .facilitator
        .signer_status()
        .await
        .into_iter()
        .map(|signer| SignerGauges {
            network: signer.network.to_string(),
            signer: signer.address.to_string(),
            balance_wei: signer.balance.map(f64::from),
            low_on_gas: signer.low_on_gas,
            in_flight: signer.in_flight as u64,
        })
        .collect();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(&ScrapeState { ledger, signers }),
    )
        .into_response()
}
