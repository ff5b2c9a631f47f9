//! Per-client-IP rate limiting of the facilitator's API: a token bucket per address.
//!
//! Verification and settlement cost RPC calls (and settlement costs gas), so one client must
//! not be able to starve the others. The peer address comes from axum's `ConnectInfo`; serve
//! the router with `into_make_service_with_connect_info::<SocketAddr>()` (as `tollgate
//! facilitator` does). Without it every request shares one bucket: the limit still holds, only
//! not per client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Requests allowed per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets beyond this many are pruned of idle (full) ones.
const MAX_BUCKETS: usize = 10_000;

/// The shared state of the limiter.
#[derive(Clone)]
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `ip`; `Err(seconds)` to wait when there is none.
    fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let rate = f64::from(self.limit.per_second.max(1));
        let burst = f64::from(self.limit.burst.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The middleware: 429 with `Retry-After` when the client's bucket is empty.
pub(crate) async fn limit(
    State(limiter): State<Limiter>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match limiter.take(ip) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            tracing::info!(%ip, "rate limited");
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, retry_after.to_string())],
                Json(serde_json::json!({ "error": "rate limit exceeded; retry later" })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_ip_and_refill() {
        let limiter = Limiter::new(RateLimit {
            per_second: 1000,
            burst: 3,
        });
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        for _ in 0..3 {
            limiter.take(a).unwrap();
        }
        assert!(limiter.take(a).is_err(), "burst spent");
        limiter.take(b).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        limiter.take(a).unwrap();
    }
}
