//! The HTTP API: `POST /verify`, `POST /settle`, `GET /supported`, `GET /health`.
//!
//! Bodies are exactly the spec's. Status codes: 200 for a valid / settled payment, 202 for a
//! settlement sent but not yet confirmed, 400 for a payment at fault or a malformed body (with
//! the spec's reason string and a readable message), 503 when the chain or the ledger cannot be
//! reached. Never a 500 for a client's mistake.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, Network, SettleResponse, SettleResponseV1, VerifyResponse,
    X402Version,
};

use crate::service::{Facilitator, Outcome};

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone)]
struct AppState {
    facilitator: Facilitator,
    limits: HttpLimits,
}

/// The facilitator's routes, ready to serve.
pub fn router(facilitator: Facilitator, limits: HttpLimits) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .with_state(AppState {
            facilitator,
            limits,
        })
}

/// Decodes a request body; serde's message names the failing field for our dispatching types
/// (e.g. `paymentRequirements.amount: amounts cannot be negative`).
fn parse(body: &[u8]) -> Result<FacilitatorRequest, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

fn bad_request_reason(message: &str) -> ErrorReason {
    if message.contains("x402Version") {
        ErrorReason::InvalidX402Version
    } else {
        ErrorReason::InvalidPayload
    }
}

async fn verify(State(state): State<AppState>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(r) => r,
        Err(message) => {
            let reason = bad_request_reason(&message);
            return (
                StatusCode::BAD_REQUEST,
                Json(VerifyResponse::invalid(reason, Some(message), None)),
            )
                .into_response();
        }
    };
    let work = state.facilitator.verify(&request);
    match tokio::time::timeout(state.limits.request_timeout, work).await {
        Ok(outcome) => respond(outcome),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(VerifyResponse::invalid(
                ErrorReason::UnexpectedVerifyError,
                Some("verification timed out".into()),
                None,
            )),
        )
            .into_response(),
    }
}

async fn settle(State(state): State<AppState>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(r) => r,
        Err(message) => {
            let reason = bad_request_reason(&message);
            let network = network_hint(&body);
            return (
                StatusCode::BAD_REQUEST,
                Json(SettleResponse::failure(
                    reason,
                    Some(message),
                    network,
                    None,
                    None,
                )),
            )
                .into_response();
        }
    };
    let version = request.version();
    let work = state.facilitator.settle(&request);
    let outcome = match tokio::time::timeout(state.limits.request_timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let (_, requirements) = request.to_v2();
            Outcome::Unavailable(SettleResponse::failure(
                ErrorReason::UnexpectedSettleError,
                Some(
                    "settlement timed out; it may still complete — retry to learn its result"
                        .into(),
                ),
                requirements.network,
                None,
                None,
            ))
        }
    };
    match version {
        X402Version::V2 => respond(outcome),
        X402Version::V1 => respond(match outcome {
            Outcome::Ok(b) => Outcome::Ok(SettleResponseV1::from(b)),
            Outcome::Pending(b) => Outcome::Pending(SettleResponseV1::from(b)),
            Outcome::Rejected(b) => Outcome::Rejected(SettleResponseV1::from(b)),
            Outcome::Unavailable(b) => Outcome::Unavailable(SettleResponseV1::from(b)),
        }),
    }
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
    };
    (status, Json(outcome.into_body())).into_response()
}

async fn supported(State(state): State<AppState>) -> Response {
    Json(state.facilitator.supported()).into_response()
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
    signer: String,
    rpc_ok: bool,
    block_number: Option<u64>,
    signer_balance_wei: Option<String>,
}

async fn health(State(state): State<AppState>) -> Response {
    use alloy::providers::Provider;
    let mut networks = Vec::new();
    let mut ok = true;
    for kind in state.facilitator.supported().kinds {
        if kind.x402_version != X402Version::V2 {
            continue;
        }
        let Some(scheme) = state.facilitator.scheme(&kind.network) else {
            continue;
        };
        let provider = scheme.provider();
        let block = provider.get_block_number().await.ok();
        let balance = provider
            .get_balance(scheme.signer_address())
            .await
            .ok()
            .map(|b| b.to_string());
        ok &= block.is_some();
        networks.push(NetworkHealth {
            network: kind.network.to_string(),
            signer: scheme.signer_address().to_string(),
            rpc_ok: block.is_some(),
            block_number: block,
            signer_balance_wei: balance,
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
