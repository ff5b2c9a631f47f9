//! An AgentScore-compatible identity service over HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, Subject,
};
use tollgate_core::BoxFuture;

use crate::wire::{AssessRequest, AssessResponse, ErrorBody, Reputation, Signer};

/// The largest answer read from the service; a bigger one is an outage, not an answer.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How much of a service's error message is quoted in a [`ProviderError`].
const MAX_QUOTED: usize = 200;

/// Why a client could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not an absolute `http`/`https` URL.
    #[error("identity service base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The environment variable meant to hold the API key is unset or empty.
    #[error("identity service API key: environment variable {var} is not set")]
    MissingKey {
        /// The variable.
        var: String,
    },
    /// The file meant to hold the API key cannot be read or is empty.
    #[error("identity service API key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong (never the file's content).
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("identity service HTTP client: {0}")]
    Http(String),
}

/// How to reach an AgentScore-compatible service.
///
/// `base_url` is the prefix the routes are appended to: `assess` and `reputation/{address}`.
/// For AgentScore that is `https://…/v1/`; for a Tollgate facilitator its root
/// (`http://127.0.0.1:4020/`), which serves `/assess` and `/reputation/{address}`.
#[derive(Clone)]
pub struct AgentScoreConfig {
    base_url: String,
    timeout: Duration,
    api_key: Option<String>,
    name: String,
}

impl std::fmt::Debug for AgentScoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentScoreConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("name", &self.name)
            .finish()
    }
}

impl AgentScoreConfig {
    /// A service at `base_url`, with a 5 s timeout and no API key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(5),
            api_key: None,
            name: "agentscore".into(),
        }
    }

    /// The longest a request may take, connection included; beyond it the service is
    /// considered down (a [`ProviderError`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bearer key sent as `Authorization: Bearer …` (never in Debug, logs or errors).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The bearer key from the environment variable `var`.
    pub fn api_key_from_env(self, var: &str) -> Result<Self, ClientError> {
        match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Ok(self.api_key(key.trim())),
            _ => Err(ClientError::MissingKey { var: var.into() }),
        }
    }

    /// The bearer key from the file at `path` (surrounding whitespace trimmed).
    pub fn api_key_from_file(self, path: &Path) -> Result<Self, ClientError> {
        let key = std::fs::read_to_string(path).map_err(|e| ClientError::KeyFile {
            path: path.into(),
            reason: e.kind().to_string(),
        })?;
        if key.trim().is_empty() {
            return Err(ClientError::KeyFile {
                path: path.into(),
                reason: "empty".into(),
            });
        }
        Ok(self.api_key(key.trim()))
    }

    /// The provider's name in logs, errors and decision records (`agentscore` by default).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The client.
    pub fn build(self) -> Result<AgentScoreClient, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidBaseUrl {
            url: self.base_url.clone(),
            reason: reason.into(),
        };
        let mut text = self.base_url.clone();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = Url::parse(&text).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("only http and https are supported"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("credentials belong in the API key, not the URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            // A redirect could carry the bearer key elsewhere; a service that moved is down.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(AgentScoreClient {
            base,
            http,
            api_key: self.api_key,
            name: self.name,
        })
    }
}

/// An [`IdentityProvider`] over an AgentScore-compatible HTTP API: `POST {base}assess` with an
/// [`AssessRequest`], and `GET {base}reputation/{address}`.
///
/// An outage — no connection, a timeout, a 5xx, an answer that is not the expected JSON, a
/// 4xx (the service refused *our* request, e.g. a bad key) — is a [`ProviderError`] naming
/// what happened (the status for an HTTP error), never the key. The answer becomes an
/// [`Assessment`] through [`AssessResponse::into_assessment`], which fails closed.
#[derive(Clone)]
pub struct AgentScoreClient {
    base: Url,
    http: reqwest::Client,
    api_key: Option<String>,
    name: String,
}

impl std::fmt::Debug for AgentScoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentScoreClient")
            .field("base", &self.base.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("name", &self.name)
            .finish()
    }
}

impl AgentScoreClient {
    fn error(&self, reason: impl Into<String>) -> ProviderError {
        ProviderError {
            provider: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| self.error("base URL cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        route: &str,
    ) -> Result<T, ProviderError> {
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let mut response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            self.error(format!("{route}: {what}: {}", e.without_url()))
        })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.error(format!("{route}: reading the answer: {}", e.without_url())))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.error(format!(
                    "{route}: answer larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error.chars().take(MAX_QUOTED).collect::<String>())
                .ok();
            let kind = if status.is_server_error() {
                "service error"
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                "API key refused"
            } else {
                "request refused"
            };
            return Err(self.error(match message {
                Some(m) => format!("{route}: {kind}: HTTP {status}: {m}"),
                None => format!("{route}: {kind}: HTTP {status}"),
            }));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("{route}: malformed answer (HTTP {status}): {e}")))
    }

    /// `POST {base}assess`: the service's answer as sent.
    pub async fn assess_raw(
        &self,
        request: &AssessRequest,
        operator_token: Option<&str>,
    ) -> Result<AssessResponse, ProviderError> {
        let mut builder = self.http.post(self.url(&["assess"])?).json(request);
        if let Some(token) = operator_token {
            builder = builder.header("X-Operator-Token", token);
        }
        self.send(builder, "assess").await
    }

    /// `GET {base}reputation/{address}` as Tollgate's [`Reputation`] report (a Tollgate
    /// facilitator's shape; for another service's shape use
    /// [`reputation_json`](Self::reputation_json)).
    pub async fn reputation(&self, address: &str) -> Result<Reputation, ProviderError> {
        self.send(
            self.http.get(self.url(&["reputation", address])?),
            "reputation",
        )
        .await
    }

    /// `GET {base}reputation/{address}` as untyped JSON.
    pub async fn reputation_json(&self, address: &str) -> Result<serde_json::Value, ProviderError> {
        self.send(
            self.http.get(self.url(&["reputation", address])?),
            "reputation",
        )
        .await
    }
}

impl IdentityProvider for AgentScoreClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a IdentityPolicy,
    ) -> BoxFuture<'a, Result<Assessment, ProviderError>> {
        Box::pin(async move {
            let request = AssessRequest {
                address: subject.payer.clone(),
                chain: subject.network.to_string(),
                policy: policy.clone(),
                signer: Some(Signer {
                    address: subject.payer.clone(),
                    network: subject.network.to_string(),
                }),
            };
            let answer = self
                .assess_raw(&request, subject.operator_token.as_deref())
                .await?;
            Ok(answer.into_assessment())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let config = AgentScoreConfig::new("http://127.0.0.1:1").api_key("sk-secret-123");
        assert!(!format!("{config:?}").contains("sk-secret"));
        let client = config.build().unwrap();
        assert!(!format!("{client:?}").contains("sk-secret"));
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in [
            "ftp://x/",
            "not a url",
            "http://user:pw@host/",
            "http://h/?q=1",
        ] {
            assert!(
                matches!(
                    AgentScoreConfig::new(bad).build(),
                    Err(ClientError::InvalidBaseUrl { .. })
                ),
                "{bad}"
            );
        }
        let c = AgentScoreConfig::new("http://h/v1").build().unwrap();
        assert_eq!(c.url(&["assess"]).unwrap().as_str(), "http://h/v1/assess");
        // An address cannot escape its path segment.
        assert_eq!(
            c.url(&["reputation", "../x?y"]).unwrap().as_str(),
            "http://h/v1/reputation/..%2Fx%3Fy"
        );
    }

    #[test]
    fn key_from_env_and_file() {
        assert!(matches!(
            AgentScoreConfig::new("http://h/").api_key_from_env("TOLLGATE_IDENTITY_TEST_UNSET_VAR"),
            Err(ClientError::MissingKey { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  sk-file \n").unwrap();
        let c = AgentScoreConfig::new("http://h/")
            .api_key_from_file(&path)
            .unwrap();
        assert_eq!(c.api_key.as_deref(), Some("sk-file"));
        std::fs::write(&path, "\n").unwrap();
        let err = AgentScoreConfig::new("http://h/")
            .api_key_from_file(&path)
            .unwrap_err();
        assert!(matches!(err, ClientError::KeyFile { .. }));
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_a_provider_error() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = AgentScoreConfig::new(format!("http://127.0.0.1:{port}/"))
            .api_key("sk-secret-123")
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let subject = Subject {
            payer: "0x0000000000000000000000000000000000000001".into(),
            network: tollgate_proto::Network::eip155(8453),
            operator_token: None,
        };
        let err = client
            .assess(&subject, &IdentityPolicy::default())
            .await
            .unwrap_err();
        assert_eq!(err.provider, "agentscore");
        assert!(err.reason.contains("cannot connect"), "{err}");
        assert!(!err.to_string().contains("sk-secret"));
        assert!(client.reputation("0x01").await.is_err());
    }
}
