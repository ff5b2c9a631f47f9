//! Bazaar discovery, buyer side: what a facilitator's catalogue lists and how to search it.
//!
//! A facilitator that implements the bazaar extension catalogues the resources it settled
//! payments for and serves `GET /discovery/resources` (filters and offset pages) and
//! `GET /discovery/search?query=…` (full text). [`DiscoveryClient`] asks either and returns
//! the typed bodies of [`tollgate_proto::discovery`]; every way that can fail is one
//! [`DiscoveryError`] variant, so a caller (the `tollgate discover` command, an agent's tool)
//! can tell "the facilitator is down" from "it answered an error" from "it answered garbage".
//!
//! A catalogue is third-party input: the response body is read with a size cap
//! ([`DEFAULT_MAX_BODY_BYTES`], settable) before it is parsed, so a hostile or broken
//! facilitator cannot make the client buffer an unbounded body, and a parse failure names the
//! JSON path that broke (`items[3].lastUpdated: …`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tollgate_client::discovery::DiscoveryError> {
//! use tollgate_client::discovery::{DiscoveryClient, ResourcesQuery, ResourceType, SearchQuery};
//! let bazaar = DiscoveryClient::new("https://facilitator.example.com")?;
//!
//! // The first 20 HTTP resources.
//! let mut query = ResourcesQuery::default();
//! query.filter.kind = Some(ResourceType::Http);
//! let page = bazaar.resources(&query).await?;
//! for item in &page.items {
//!     println!("{} ({} ways to pay)", item.resource, item.accepts.len());
//! }
//! println!("{} in total", page.pagination.total);
//!
//! // Full-text search.
//! let found = bazaar.search(&SearchQuery::new("weather forecast")).await?;
//! println!("{} matches", found.resources.len());
//! # Ok(()) }
//! ```

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

pub use tollgate_proto::discovery::{
    DiscoveredAccept, DiscoveryFilter, DiscoveryResource, LastUpdated, Pagination, ResourceType,
    ResourcesQuery, ResourcesResponse, SearchPagination, SearchQuery, SearchResponse,
    DEFAULT_LIMIT, MAX_LIMIT, RESOURCES_PATH, SEARCH_PATH,
};

/// Largest response body read by default: 8 MiB. A full page (100 items) with generous
/// bazaar schemas and examples is well under 2 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Whole-request timeout by default (connect, send, read the body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error response's body is kept in [`DiscoveryError::Status`].
const ERROR_BODY_CHARS: usize = 512;
/// How much of an error response's body is read at most.
const ERROR_BODY_BYTES: usize = 4096;

/// Why a discovery request failed. Each variant names the URL asked.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The facilitator URL is not an absolute `http(s)` URL.
    #[error("invalid facilitator URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The facilitator could not be reached or did not answer in time (connection refused,
    /// DNS, TLS, timeout, connection reset while reading).
    #[error("cannot reach the facilitator at {url}: {source}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The facilitator answered with an HTTP error status (a 404 usually means it does not
    /// implement discovery; a 400 names the bad parameter in `body`).
    #[error("the facilitator answered {status} for {url}{}", fmt_body(body))]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The start of the response body (at most 512 characters), for the message.
        body: String,
    },
    /// The response body is larger than the cap.
    #[error("the response from {url} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The response is not the discovery JSON the spec describes.
    #[error("malformed discovery response from {url}: {path}: {message}")]
    Malformed {
        /// The URL asked.
        url: String,
        /// The JSON path where parsing failed (`.` for the whole body).
        path: String,
        /// What was wrong there.
        message: String,
    },
}

fn fmt_body(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl DiscoveryError {
    /// Whether the facilitator was not reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// Whether the facilitator answered something that is not a discovery response
    /// (malformed JSON, a wrong shape, or too large).
    pub fn is_bad_response(&self) -> bool {
        matches!(self, Self::Malformed { .. } | Self::TooLarge { .. })
    }
}

/// A client of one facilitator's discovery endpoints.
///
/// Cheap to clone (the inner `reqwest::Client` is shared). Requests are plain `GET`s with no
/// credentials; discovery needs none.
#[derive(Debug, Clone)]
pub struct DiscoveryClient {
    http: reqwest::Client,
    base: Url,
    max_body: usize,
    timeout: Duration,
}

impl DiscoveryClient {
    /// A client of the facilitator at `facilitator_url` (e.g. `https://x402.example.com`, or
    /// one with a path prefix: `https://example.com/facilitator`; the endpoint paths are
    /// appended to it, as the official SDK does).
    pub fn new(facilitator_url: &str) -> Result<Self, DiscoveryError> {
        Self::with_http_client(reqwest::Client::new(), facilitator_url)
    }

    /// Like [`DiscoveryClient::new`], on an existing `reqwest::Client` (its proxy, TLS and
    /// pool settings).
    pub fn with_http_client(
        http: reqwest::Client,
        facilitator_url: &str,
    ) -> Result<Self, DiscoveryError> {
        let invalid = |reason: &str| DiscoveryError::InvalidUrl {
            url: facilitator_url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(facilitator_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("expected an http:// or https:// URL"));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL has no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("the URL must not have a query or fragment"));
        }
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&path);
        Ok(Self {
            http,
            base,
            max_body: DEFAULT_MAX_BODY_BYTES,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Caps the response body at `bytes` (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets the whole-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The facilitator's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET /discovery/resources`: one page of the catalogue, filtered.
    pub async fn resources(
        &self,
        query: &ResourcesQuery,
    ) -> Result<ResourcesResponse, DiscoveryError> {
        self.get(RESOURCES_PATH, &query.to_pairs()).await
    }

    /// `GET /discovery/search`: resources matching `query.text`, best first.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResponse, DiscoveryError> {
        self.get(SEARCH_PATH, &query.to_pairs()).await
    }

    fn endpoint(&self, path: &str, pairs: &[(&'static str, String)]) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{path}", self.base.path().trim_end_matches('/'));
        url.set_path(&joined);
        if !pairs.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        pairs: &[(&'static str, String)],
    ) -> Result<T, DiscoveryError> {
        let url = self.endpoint(path, pairs);
        let shown = url.to_string();
        let unreachable = |source| DiscoveryError::Unreachable {
            url: shown.clone(),
            source,
        };
        let mut response = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            // An error answer is read only as far as the message needs: a 404 page of any
            // size is still "answered 404", never "too large".
            let mut head = Vec::new();
            while head.len() < ERROR_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
            head.truncate(ERROR_BODY_BYTES);
            let text: String = String::from_utf8_lossy(&head)
                .trim()
                .chars()
                .filter(|c| !c.is_control() || *c == ' ')
                .take(ERROR_BODY_CHARS)
                .collect();
            return Err(DiscoveryError::Status {
                url: shown,
                status,
                body: text,
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(DiscoveryError::TooLarge {
                url: shown,
                limit: self.max_body,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(DiscoveryError::TooLarge {
                    url: shown,
                    limit: self.max_body,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let malformed = |path: String, message: String| DiscoveryError::Malformed {
            url: shown.clone(),
            path,
            message,
        };
        let mut de = serde_json::Deserializer::from_slice(&body);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| malformed(e.path().to_string(), e.inner().to_string()))?;
        de.end()
            .map_err(|e| malformed(".".to_owned(), e.to_string()))?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated_and_joined() {
        let c = DiscoveryClient::new("http://127.0.0.1:8402/").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8402");
        let q = ResourcesQuery::default();
        assert_eq!(
            c.endpoint(RESOURCES_PATH, &q.to_pairs()).as_str(),
            "http://127.0.0.1:8402/discovery/resources?limit=20"
        );
        let c = DiscoveryClient::new("https://example.com/facilitator/").unwrap();
        let s = SearchQuery::new("weather & maps");
        assert_eq!(
            c.endpoint(SEARCH_PATH, &s.to_pairs()).as_str(),
            "https://example.com/facilitator/discovery/search?query=weather+%26+maps&limit=20"
        );
        for bad in [
            "",
            "127.0.0.1:8402",
            "ftp://example.com",
            "http://example.com/?x=1",
            "unix:/tmp/sock",
        ] {
            let err = DiscoveryClient::new(bad).unwrap_err();
            assert!(
                matches!(err, DiscoveryError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    /// A loopback server answering the spec's §8.1 example at `/discovery/resources` and the
    /// same body, trailing garbage appended, under `/trailing`.
    async fn spec_server() -> String {
        use axum::routing::get;
        const BODY: &str = r#"{"x402Version":2,"items":[{"resource":"https://api.example.com/premium-data",
          "type":"http","x402Version":1,"accepts":[{"scheme":"exact","network":"eip155:84532",
          "amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e",
          "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60}],
          "lastUpdated":1703123456,"metadata":{"category":"finance"}}],
          "pagination":{"limit":10,"offset":0,"total":1}}"#;
        let app = axum::Router::new()
            .route(RESOURCES_PATH, get(|| async { BODY }))
            .route(
                &format!("/trailing{RESOURCES_PATH}"),
                get(|| async { format!("{BODY} {{}}") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn reads_a_spec_page_within_its_cap() {
        let url = spec_server().await;
        let client = DiscoveryClient::new(&url).unwrap();
        let page = client.resources(&ResourcesQuery::default()).await.unwrap();
        assert_eq!(
            page.items[0].resource,
            "https://api.example.com/premium-data"
        );
        assert_eq!(page.items[0].last_updated.unix_seconds(), 1_703_123_456);
        assert_eq!(page.pagination.total, 1);

        let capped = client.clone().max_body_bytes(100);
        let e = capped
            .resources(&ResourcesQuery::default())
            .await
            .unwrap_err();
        assert!(
            matches!(e, DiscoveryError::TooLarge { limit: 100, .. }),
            "{e}"
        );
        assert!(e.is_bad_response());

        let e = DiscoveryClient::new(&format!("{url}/trailing"))
            .unwrap()
            .resources(&ResourcesQuery::default())
            .await
            .unwrap_err();
        assert!(matches!(e, DiscoveryError::Malformed { .. }), "{e}");

        // The search endpoint is absent here: a 404, not a parse error.
        let e = client.search(&SearchQuery::new("x")).await.unwrap_err();
        assert!(
            matches!(e, DiscoveryError::Status { status, .. } if status == StatusCode::NOT_FOUND),
            "{e}"
        );
    }

    #[test]
    fn error_messages_carry_context() {
        let e = DiscoveryError::Status {
            url: "http://x/discovery/resources".into(),
            status: StatusCode::NOT_FOUND,
            body: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "the facilitator answered 404 Not Found for http://x/discovery/resources"
        );
        let e = DiscoveryError::Malformed {
            url: "u".into(),
            path: "items[0].lastUpdated".into(),
            message: "bad".into(),
        };
        assert!(e.is_bad_response());
        assert_eq!(
            e.to_string(),
            "malformed discovery response from u: items[0].lastUpdated: bad"
        );
    }
}
