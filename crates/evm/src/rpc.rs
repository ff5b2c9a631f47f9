//! JSON-RPC transport with failover across several endpoints of one chain.
//!
//! A facilitator that loses its only RPC endpoint can neither verify nor settle, so operators
//! configure a primary and backups. [`FailoverTransport`] sends each request to the endpoints in
//! their configured order and moves on to the next when one fails at the transport level
//! (refused connection, timeout, HTTP error status). A JSON-RPC error *answer* is not a failure
//! of the endpoint — the node was reached and said no — so it is returned as it is.
//!
//! An endpoint that failed is tried last for [`FailoverTransport::COOL_DOWN`], so a dead primary
//! does not add a connection timeout to every request; once the cool-down ends it is preferred
//! again, so traffic returns to the primary when it recovers. Re-sending
//! `eth_sendRawTransaction` to a backup is safe: it is the same signed transaction, with the
//! same hash, and a chain includes it at most once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::http::reqwest::{Client, Url};
use alloy::transports::http::Http;
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No endpoint was given.
    #[error("no RPC URL given")]
    NoEndpoint,
    /// An endpoint URL does not parse.
    #[error("invalid RPC URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Parser message.
        reason: String,
    },
}

/// A JSON-RPC transport over HTTP that fails over between several endpoints of one chain.
///
/// ```
/// use tollgate_evm::rpc::FailoverTransport;
///
/// let transport = FailoverTransport::new(["http://127.0.0.1:8545", "http://127.0.0.1:8546"])?;
/// assert_eq!(transport.endpoints().len(), 2);
/// # Ok::<(), tollgate_evm::rpc::RpcError>(())
/// ```
#[derive(Clone, Debug)]
pub struct FailoverTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<Endpoint>,
    /// The clock that `Endpoint::down_until` counts from.
    epoch: Instant,
}

struct Endpoint {
    url: Url,
    http: Http<Client>,
    /// Milliseconds since `Inner::epoch` until which this endpoint is tried last; 0 = healthy.
    down_until: AtomicU64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &redacted(&self.url))
            .field("down_until", &self.down_until)
            .finish_non_exhaustive()
    }
}

/// An endpoint as errors and logs may show it: scheme, host and port, then `/…` when anything
/// else was configured. RPC providers put the API key in the path (`/v2/<key>`), the query
/// (`?apikey=`) or the user-info, and transport errors reach unauthenticated callers of the
/// facilitator (a `503`'s message), so the rest of the URL is never shown.
///
/// ```
/// use tollgate_evm::rpc::redacted;
/// let url = "https://base.example/v2/secret-key".parse().unwrap();
/// assert_eq!(redacted(&url), "https://base.example/…");
/// assert_eq!(redacted(&"http://127.0.0.1:8545".parse().unwrap()), "http://127.0.0.1:8545");
/// ```
pub fn redacted(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?"));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    let more = !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some();
    if more {
        shown.push_str("/…");
    }
    shown
}

/// `message` with every secret-bearing part of `url` replaced (the HTTP client quotes the
/// whole URL in its errors: "error sending request for url (…)").
fn scrub(message: &str, url: &Url) -> String {
    let mut out = message.replace(url.as_str(), &redacted(url));
    let parts = [
        url.query().unwrap_or(""),
        url.fragment().unwrap_or(""),
        url.password().unwrap_or(""),
        // A token given as the user name (`https://<token>@host`); a short name is no secret,
        // and replacing it everywhere would garble the message.
        if url.username().len() >= 8 {
            url.username()
        } else {
            ""
        },
        if url.path() == "/" { "" } else { url.path() },
    ];
    for part in parts {
        if !part.is_empty() {
            out = out.replace(part, "…");
        }
    }
    out
}

impl FailoverTransport {
    /// How long an endpoint that failed is tried only after the others.
    pub const COOL_DOWN: Duration = Duration::from_secs(10);

    /// A connection attempt longer than this counts as a failure of the endpoint.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

    /// A request without an answer after this counts as a failure of the endpoint.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

    /// A transport over `urls`, tried in this order.
    pub fn new<I, S>(urls: I) -> Result<Self, RpcError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let client = Client::builder()
            .connect_timeout(Self::CONNECT_TIMEOUT)
            .timeout(Self::REQUEST_TIMEOUT)
            .build()
            .map_err(|e| RpcError::Url {
                url: String::new(),
                reason: format!("HTTP client: {e}"),
            })?;
        let endpoints = urls
            .into_iter()
            .map(|raw| {
                let raw = raw.as_ref();
                let url = Url::parse(raw).map_err(|e| RpcError::Url {
                    url: raw.to_owned(),
                    reason: e.to_string(),
                })?;
                Ok(Endpoint {
                    http: Http::with_client(client.clone(), url.clone()),
                    url,
                    down_until: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, RpcError>>()?;
        if endpoints.is_empty() {
            return Err(RpcError::NoEndpoint);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                epoch: Instant::now(),
            }),
        })
    }

    /// The endpoints, in configured order.
    pub fn endpoints(&self) -> Vec<&Url> {
        self.inner.endpoints.iter().map(|e| &e.url).collect()
    }

    /// A transport over endpoint `index` alone, for checks that must ask one node (which chain
    /// it serves, at start-up).
    pub fn single(&self, index: usize) -> Option<Http<Client>> {
        self.inner.endpoints.get(index).map(|e| e.http.clone())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Endpoint indices in the order to try at `now`: healthy ones in configured order, then
    /// those cooling down, also in configured order.
    fn order(&self, now: u64) -> Vec<usize> {
        let (healthy, cooling): (Vec<usize>, Vec<usize>) = (0..self.inner.endpoints.len())
            .partition(|&i| self.inner.endpoints[i].down_until.load(Ordering::Relaxed) <= now);
        healthy.into_iter().chain(cooling).collect()
    }

    async fn send(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let mut failures = Vec::new();
        for index in self.order(self.now_ms()) {
            let endpoint = &self.inner.endpoints[index];
            let mut http = endpoint.http.clone();
            match tower::Service::call(&mut http, request.clone()).await {
                Ok(response) => {
                    endpoint.down_until.store(0, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(error) => {
                    let until = self.now_ms() + Self::COOL_DOWN.as_millis() as u64;
                    endpoint.down_until.store(until, Ordering::Relaxed);
                    let shown = redacted(&endpoint.url);
                    let error = scrub(&error.to_string(), &endpoint.url);
                    if self.inner.endpoints.len() > 1 {
                        tracing::warn!(endpoint = %shown, %error, "RPC endpoint failed, trying the next");
                    }
                    failures.push(format!("{shown}: {error}"));
                }
            }
        }
        if failures.len() == 1 {
            // One endpoint: keep its error as it is, so callers see the node's own message.
            return Err(TransportErrorKind::custom_str(&failures.remove(0)));
        }
        Err(TransportErrorKind::custom_str(&format!(
            "every RPC endpoint failed: {}",
            failures.join("; ")
        )))
    }
}

impl tower::Service<RequestPacket> for FailoverTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_quote_the_secret_parts_of_an_endpoint() {
        for raw in [
            "https://base.example/v2/k3y-in-path",
            "https://base.example/?apikey=k3y-in-query",
            "https://user:k3y-as-password@base.example/",
            "https://k3y-as-user-name@base.example/",
        ] {
            let url: Url = raw.parse().unwrap();
            let message = format!("error sending request for url ({url}): refused");
            let shown = scrub(&message, &url);
            assert!(!shown.contains("k3y"), "{shown}");
            assert!(shown.contains("https://base.example/…"), "{shown}");
            assert!(!format!("{:?}", FailoverTransport::new([raw]).unwrap()).contains("k3y"));
        }
    }

    #[test]
    fn refuses_no_endpoints_and_bad_urls() {
        assert!(matches!(
            FailoverTransport::new(Vec::<String>::new()),
            Err(RpcError::NoEndpoint)
        ));
        let err = FailoverTransport::new(["http://127.0.0.1:1", "not a url"]).unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
    }

    #[test]
    fn a_failed_endpoint_is_tried_last_until_its_cool_down_ends() {
        let t = FailoverTransport::new([
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        ])
        .unwrap();
        assert_eq!(t.order(0), vec![0, 1, 2]);
        t.inner.endpoints[0]
            .down_until
            .store(5_000, Ordering::Relaxed);
        t.inner.endpoints[1]
            .down_until
            .store(3_000, Ordering::Relaxed);
        assert_eq!(t.order(2_999), vec![2, 0, 1]);
        assert_eq!(t.order(3_000), vec![1, 2, 0]);
        assert_eq!(
            t.order(5_000),
            vec![0, 1, 2],
            "back to the primary after the cool-down"
        );
    }
}
