//! Where the paywall sends payments: a facilitator in this process or one over HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tollgate_proto::{FacilitatorRequest, SettleResponse, SupportedResponse, VerifyResponse};

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
pub trait FacilitatorClient: Send + Sync + 'static {
    /// `POST /verify`.
    fn verify(
        &self,
        request: &FacilitatorRequest,
    ) -> impl Future<Output = Result<VerifyResponse, FacilitatorError>> + Send;

    /// `POST /settle`.
    fn settle(
        &self,
        request: &FacilitatorRequest,
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
    ) -> Result<VerifyResponse, FacilitatorError> {
        use tollgate_facilitator::Outcome;
        match tollgate_facilitator::Facilitator::verify(self, request).await {
            Outcome::Unavailable(body) => Err(FacilitatorError::Unavailable(
                body.invalid_message.unwrap_or_default(),
            )),
            other => Ok(other.into_body()),
        }
    }

    async fn settle(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        use tollgate_facilitator::Outcome;
        match tollgate_facilitator::Facilitator::settle(self, request).await {
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
    /// A facilitator at `base_url` (e.g. `http://127.0.0.1:4020`), with a 30 s timeout and
    /// `/supported` cached for 5 minutes.
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            timeout: Duration::from_secs(30),
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

    /// Sets the per-request timeout.
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
    ) -> Result<T, FacilitatorError> {
        let mut builder = self
            .http
            .post(format!("{}/{endpoint}", self.base))
            .timeout(self.timeout)
            .json(request);
        if let Some(hook) = &self.auth {
            builder = builder.headers(hook(endpoint));
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
        // 200 valid/settled, 202 pending, 400 rejected: all carry a spec body.
        if !matches!(status, 200 | 202 | 400) {
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
    ) -> Result<VerifyResponse, FacilitatorError> {
        self.post("verify", request).await
    }

    async fn settle(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        match request.version() {
            tollgate_proto::X402Version::V2 => self.post("settle", request).await,
            tollgate_proto::X402Version::V1 => self
                .post::<tollgate_proto::SettleResponseV1>("settle", request)
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
