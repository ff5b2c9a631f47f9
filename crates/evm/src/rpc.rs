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

#[derive(Debug)]
struct Endpoint {
    url: Url,
    http: Http<Client>,
    /// Milliseconds since `Inner::epoch` until which this endpoint is tried last; 0 = healthy.
    down_until: AtomicU64,
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
                    if self.inner.endpoints.len() > 1 {
                        tracing::warn!(endpoint = %endpoint.url, %error, "RPC endpoint failed, trying the next");
                    }
                    failures.push(format!("{}: {error}", endpoint.url));
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
