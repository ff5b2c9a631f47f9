//! Where the paywall sends payments: a facilitator in this process or one over HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tollgate_proto::{FacilitatorRequest, SettleResponse, VerifyResponse};

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
}

#[cfg(feature = "remote")]
impl std::fmt::Debug for RemoteFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFacilitator")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "remote")]
impl RemoteFacilitator {
    /// A facilitator at `base_url` (e.g. `http://127.0.0.1:4020`), with a 30 s timeout.
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            timeout: Duration::from_secs(30),
            auth: None,
        }
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
}
