//! Where the paywall sends payments: a facilitator in this process or one over HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tollgate_proto::{
    FacilitatorRequest, IdempotencyKey, SettleResponse, SupportedResponse, VerifyResponse,
};

/// Why the facilitator could not give an answer (as opposed to answering "invalid").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// Not reachable, timed out, or reported itself unavailable.
    #[error("facilitator unavailable: {0}")]
    Unavailable(String),
    /// Answered something that is not a spec response.
    #[error("facilitator answered an unexpected response: {0}")]
    BadResponse(String),
}

/// A facilitator as the paywall needs it: verify, then settle.
///
/// Both calls carry the **attempt key** (`Idempotency-Key`): the paywall names each paid
/// request it serves with a fresh random key and uses it for that request's `/verify` and
/// `/settle`, and again for its own retries. The facilitator records the first key that
/// verified a payment as its owner, and only that key gets the original settlement back from a
/// repeated `/settle`; anyone else presenting a copy of the payment is refused. So a retry
/// after a lost answer recovers the outcome, while a replica or a replayed header cannot be
/// told "settled" for a payment it did not settle.
pub trait FacilitatorClient: Send + Sync + 'static {
    /// `POST /verify`, as part of the attempt `attempt`.
    fn verify(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> impl Future<Output = Result<VerifyResponse, FacilitatorError>> + Send;

    /// `POST /settle`, as part of the attempt `attempt`. Repeating it with the same key after
    /// an error is safe: the facilitator settles a payment at most once and answers the same
    /// attempt with the original outcome.
    fn settle(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> impl Future<Output = Result<SettleResponse, FacilitatorError>> + Send;

    /// `GET /supported`: what the facilitator can verify and settle. Sellers check their
    /// prices against it at start-up instead of finding out at the first payment.
    fn supported(&self)
        -> impl Future<Output = Result<SupportedResponse, FacilitatorError>> + Send;
}

#[cfg(feature = "in-process")]
impl FacilitatorClient for tollgate_facilitator::Facilitator {
    async fn verify(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Result<VerifyResponse, FacilitatorError> {
        use tollgate_facilitator::Outcome;
        match tollgate_facilitator::Facilitator::verify_attempt(self, request, attempt).await {
            Outcome::Unavailable(body) => Err(FacilitatorError::Unavailable(
                body.invalid_message.unwrap_or_default(),
            )),
            other => Ok(other.into_body()),
        }
    }

    async fn settle(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        use tollgate_facilitator::Outcome;
        match tollgate_facilitator::Facilitator::settle_attempt(self, request, attempt).await {
            Outcome::Unavailable(body) => Err(FacilitatorError::Unavailable(
                body.error_message.unwrap_or_default(),
            )),
            other => Ok(other.into_body()),
        }
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(tollgate_facilitator::Facilitator::supported(self))
    }
}

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
        let response = builder
            .send()
            .await
            .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
        // 200 valid/settled, 202 pending, 400 rejected, 409 refused (the payment belongs to
        // another attempt, or its identifier names another payment): all carry a spec body.
        if !matches!(status, 200 | 202 | 400 | 409) {
            return Err(FacilitatorError::Unavailable(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| FacilitatorError::BadResponse(e.to_string()))
    }
}

#[cfg(feature = "remote")]
impl FacilitatorClient for RemoteFacilitator {
    async fn verify(
        &self,
        request: &FacilitatorRequest,
        attempt: Option<&IdempotencyKey>,
    ) -> Result<VerifyResponse, FacilitatorError> {
        self.post("verify", request, attempt).await
    }

    async fn settle(
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

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
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
