//! Where the paywall sends payments: any [`Facilitator`] — the in-process one
//! (`tollgate_facilitator::Facilitator`, which implements the trait in its own crate) or
//! `RemoteFacilitator` over HTTP (feature `remote`).
//!
//! The trait and its error live in `tollgate-core`, so this crate depends on no facilitator
//! implementation: a seller who talks to a remote facilitator compiles no database and no chain
//! provider. The trait is object-safe, so a binary that picks its facilitator at run time (from
//! a config file) hands the paywall an `Arc<dyn Facilitator>`:
//!
//! ```
//! # #[cfg(feature = "remote")] {
//! use std::sync::Arc;
//! use tollgate_server::{Facilitator, PaywallLayer, RemoteFacilitator};
//! let url = "http://127.0.0.1:4020";
//! let facilitator: Arc<dyn Facilitator> = Arc::new(RemoteFacilitator::new(url));
//! let paywall: PaywallLayer<Arc<dyn Facilitator>> = PaywallLayer::new(facilitator);
//! # let _ = paywall;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "remote")]
use tollgate_core::BoxFuture;
#[cfg(feature = "remote")]
use tollgate_proto::{
    FacilitatorRequest, IdempotencyKey, SettleResponse, SupportedResponse, VerifyResponse,
};
#[cfg(feature = "remote")]
use tracing::Instrument;

pub use tollgate_core::{Facilitator, FacilitatorError};

/// The facilitator trait under the name this crate used before it moved to `tollgate-core`:
/// the same trait, so `F: FacilitatorClient` bounds and `use tollgate_server::FacilitatorClient`
/// keep compiling.
pub use tollgate_core::Facilitator as FacilitatorClient;

/// Adds headers to each facilitator request, e.g. a freshly minted JWT. Gets the endpoint
/// name (`"verify"` or `"settle"`).
pub type AuthHook = Arc<dyn Fn(&str) -> http::HeaderMap + Send + Sync>;

/// The default per-request timeout of [`RemoteFacilitator`]: 90 s, longer than a facilitator's
/// default receipt wait (60 s), so a slow settlement is answered ("pending" at worst) instead of
/// being cut off with an unknown outcome.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// A facilitator reached over HTTP.
#[cfg(feature = "remote")]
#[derive(Clone)]
pub struct RemoteFacilitator {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
    auth: Option<AuthHook>,
    supported_ttl: Duration,
    /// The last `/supported` answer and when it was fetched; shared by clones.
    supported: Arc<tokio::sync::Mutex<Option<(std::time::Instant, SupportedResponse)>>>,
}

#[cfg(feature = "remote")]
impl std::fmt::Debug for RemoteFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFacilitator")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field("supported_ttl", &self.supported_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "remote")]
impl RemoteFacilitator {
    /// A facilitator at `base_url` (e.g. `http://127.0.0.1:4020`), with a
    /// [`DEFAULT_TIMEOUT`] per request and `/supported` cached for 5 minutes.
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            timeout: DEFAULT_TIMEOUT,
            auth: None,
            supported_ttl: Duration::from_secs(300),
            supported: Default::default(),
        }
    }

    /// How long a `/supported` answer is reused before asking again.
    pub fn with_supported_ttl(mut self, ttl: Duration) -> Self {
        self.supported_ttl = ttl;
        self
    }

    /// Sets the per-request timeout. Keep it longer than the facilitator's receipt wait
    /// (`receipt_timeout_secs`, 60 s by default): a settle cut short by this timeout has an
    /// unknown outcome, which the paywall can only resolve by retrying later.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds headers to each request (called per request, so tokens can be fresh).
    pub fn with_auth(mut self, hook: AuthHook) -> Self {
        self.auth = Some(hook);
        self
    }

    async fn fetch_supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let mut builder = self
            .http
            .get(format!("{}/supported", self.base))
            .timeout(self.timeout);
        if let Some(hook) = &self.auth {
            builder = builder.headers(hook("supported"));
        }
        let response = builder
            .send()
            .await
            .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
        if status != 200 {
            return Err(FacilitatorError::Unavailable(format!(
                "GET /supported: HTTP {status}"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| FacilitatorError::BadResponse(e.to_string()))
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Result<T, FacilitatorError> {
        let mut builder = self
            .http
            .post(format!("{}/{endpoint}", self.base))
            .timeout(self.timeout)
            .json(request);
        if let Some(hook) = &self.auth {
            builder = builder.headers(hook(endpoint));
        }
        if let Some(key) = attempt {
            // A validated key is `[A-Za-z0-9_-]{16,128}`: always a valid header value.
            if let Ok(value) = http::HeaderValue::from_str(key.as_str()) {
                builder = builder.header(tollgate_proto::idempotency::IDEMPOTENCY_KEY, value);
            }
        }
        // A client span per call; with `otel`, its W3C trace context goes along so the
        // facilitator's spans are children of this one, in the paid request's trace.
        let span = tracing::info_span!(
            "facilitator.call",
            otel.name = %format_args!("POST /{endpoint}"),
            otel.kind = "client",
            server.address = %self.base,
            http.response.status_code = tracing::field::Empty,
        );
        #[cfg(feature = "otel")]
        {
            builder = builder.headers(tollgate_telemetry::propagation::headers_for(&span));
        }
        let (status, bytes) = async {
            let response = builder
                .send()
                .await
                .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
            let status = response.status().as_u16();
            tracing::Span::current().record("http.response.status_code", status);
            // The facilitator's word on the route's Bazaar description (`EXTENSION-RESPONSES`;
            // kept from the buyer, as in the official SDK): a rejection is the seller's to fix.
            if let Some(answer) =
                tollgate_proto::bazaar::BazaarResponse::from_headers(response.headers())
            {
                if answer.status == tollgate_proto::bazaar::BazaarStatus::Rejected {
                    tracing::warn!(
                        reason = answer.rejected_reason.as_deref().unwrap_or(""),
                        "the facilitator did not catalogue this route's bazaar description"
                    );
                }
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
            Ok::<_, FacilitatorError>((status, bytes))
        }
        .instrument(span)
        .await?;
        // 200 valid/settled, 202 pending, 400 rejected, 412 rejected for a missing step of the
        // payer's (Permit2 approval), 409 refused (the payment belongs to another attempt, or
        // its identifier names another payment): all carry a spec body.
        if !matches!(status, 200 | 202 | 400 | 409 | 412) {
            return Err(FacilitatorError::Unavailable(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| FacilitatorError::BadResponse(e.to_string()))
    }
}

#[cfg(feature = "remote")]
impl RemoteFacilitator {
    async fn settle_any(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        match request.version() {
            tollgate_proto::X402Version::V2 => self.post("settle", request, attempt).await,
            tollgate_proto::X402Version::V1 => self
                .post::<tollgate_proto::SettleResponseV1>("settle", request, attempt)
                .await
                .map(tollgate_proto::SettleResponseV1::into_v2),
        }
    }

    async fn cached_supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        // One fetch at a time: concurrent callers after expiry wait for it instead of
        // stampeding the facilitator.
        let mut cached = self.supported.lock().await;
        if let Some((at, answer)) = cached.as_ref() {
            if at.elapsed() < self.supported_ttl {
                return Ok(answer.clone());
            }
        }
        let answer = self.fetch_supported().await?;
        *cached = Some((std::time::Instant::now(), answer.clone()));
        Ok(answer)
    }
}

#[cfg(feature = "remote")]
impl Facilitator for RemoteFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(self.post("verify", request, attempt))
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(self.settle_any(request, attempt))
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(self.cached_supported())
    }
}
