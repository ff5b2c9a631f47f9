//! Per-client rate limiting of the facilitator's API, on `governor` (GCRA, one state per
//! client).
//!
//! Verification and settlement cost RPC calls (and settlement costs gas), so one client must
//! not be able to starve the others. The peer address comes from axum's `ConnectInfo`; serve
//! the router with `into_make_service_with_connect_info::<SocketAddr>()` (as `tollgate
//! facilitator` does). Without it every request shares one state: the limit still holds, only
//! not per client.
//!
//! A client is an IPv4 address or an IPv6 `/64`: one IPv6 host is routinely given a whole
//! `/64`, so keying on the full address would let it take a fresh quota per request.
//! IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! Memory stays bounded: every [`PRUNE_INTERVAL`] a request drops the clients whose state is
//! back to "fresh" (`retain_recent`), so the map holds only clients seen within about
//! `burst / per_second` seconds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// Requests allowed per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: u32,
}

impl RateLimit {
    /// The `governor` quota; zeros are read as 1 (config validation refuses them anyway).
    fn quota(self) -> Quota {
        let one = NonZeroU32::MIN;
        Quota::per_second(NonZeroU32::new(self.per_second).unwrap_or(one))
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(one))
    }
}

/// How often idle clients are dropped from the limiter's map.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

type Keyed<C> =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The shared state of the limiter.
pub(crate) struct Limiter<C: Clock = DefaultClock> {
    limiter: Arc<Keyed<C>>,
    /// When idle clients were last dropped.
    pruned: Arc<Mutex<C::Instant>>,
}

impl<C: Clock> Clone for Limiter<C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            pruned: self.pruned.clone(),
        }
    }
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self::with_clock(limit, DefaultClock::default())
    }
}

/// The key of a client: its IPv4 address, or the `/64` of its IPv6 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

impl<C: Clock> Limiter<C> {
    pub(crate) fn with_clock(limit: RateLimit, clock: C) -> Self {
        let now = clock.now();
        Self {
            limiter: Arc::new(RateLimiter::dashmap_with_clock(limit.quota(), clock)),
            pruned: Arc::new(Mutex::new(now)),
        }
    }

    /// Takes one request's worth of quota for `ip`; `Err(seconds)` to wait when there is none.
    fn take(&self, ip: IpAddr) -> Result<(), u64> {
        self.prune_if_due();
        match self.limiter.check_key(&client_key(ip)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                // Whole seconds for `Retry-After`, rounded up, never 0.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(secs.max(1))
            }
        }
    }

    /// Drops idle clients at most once per [`PRUNE_INTERVAL`]; a request that finds another
    /// one pruning does not wait for it.
    fn prune_if_due(&self) {
        let Ok(mut pruned) = self.pruned.try_lock() else {
            return;
        };
        let now = self.limiter.clock().now();
        if Duration::from(now.duration_since(*pruned)) < PRUNE_INTERVAL {
            return;
        }
        *pruned = now;
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.limiter.len()
    }
}

/// The middleware: 429 with `Retry-After` when the client's quota is spent.
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
    use governor::clock::FakeRelativeClock;

    fn limiter(per_second: u32, burst: u32) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limit = RateLimit { per_second, burst };
        (Limiter::with_clock(limit, clock.clone()), clock)
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn quota_is_per_ip_and_refills() {
        let (limiter, clock) = limiter(2, 3);
        for _ in 0..3 {
            limiter.take(A).unwrap();
        }
        // One request refills every 500 ms: the wait is rounded up to a whole second.
        assert_eq!(limiter.take(A), Err(1), "burst spent");
        limiter.take(B).unwrap();
        clock.advance(Duration::from_millis(499));
        assert!(limiter.take(A).is_err(), "not refilled yet");
        clock.advance(Duration::from_millis(1));
        limiter.take(A).unwrap();
        assert!(limiter.take(A).is_err(), "one request refilled, not more");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let (limiter, clock) = limiter(1, 1);
        limiter.take(A).unwrap();
        assert_eq!(limiter.take(A), Err(1));
        clock.advance(Duration::from_millis(300));
        assert_eq!(limiter.take(A), Err(1), "700 ms left is still 1 s");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let (limiter, _) = limiter(1, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.take(a).unwrap();
        assert!(limiter.take(same_64).is_err(), "same /64, same quota");
        limiter.take(other_64).unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        limiter.take(mapped).unwrap();
        assert!(limiter.take(A).is_err(), "IPv4-mapped is the IPv4 client");
    }

    #[test]
    fn idle_clients_are_pruned() {
        let (limiter, clock) = limiter(10, 1);
        for i in 0..100u8 {
            limiter
                .take(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                .unwrap();
        }
        assert_eq!(limiter.clients(), 100);
        // Before the interval nothing is dropped, however idle.
        clock.advance(PRUNE_INTERVAL - Duration::from_millis(1));
        limiter.take(A).unwrap();
        assert_eq!(limiter.clients(), 101);
        clock.advance(Duration::from_millis(1));
        limiter.take(B).unwrap();
        // Every idle client is gone; the two just seen (still within their quota) stay.
        assert_eq!(limiter.clients(), 2);
        assert!(
            limiter.take(B).is_err(),
            "pruning forgets only idle clients"
        );
    }
}
