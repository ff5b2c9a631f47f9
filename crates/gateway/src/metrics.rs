//! The gateway's Prometheus metrics, served at `[metrics] path` when configured.
//!
//! - `tollgate_gateway_requests_total{outcome,status}`: every request that reached the
//!   paywall, by what the paywall did ([`PaywallOutcome::label`], or `unpriced` when it took
//!   no payment decision: a free route, or a request refused before pricing) and the HTTP
//!   status sent. 402s are `status="402"` (outcomes `challenged`, `refused`, `pending`).
//! - `tollgate_gateway_refusals_total{reason}`: refused payments by x402 reason code.
//! - `tollgate_gateway_upstream_duration_seconds{status_class}`: time until the upstream's
//!   response head (or the proxy's own 502/504), by status class (`2xx` … `5xx`).
//!
//! - with `[channels]` (the seller's `batch-settlement` channels), read at each scrape:
//!   `tollgate_gateway_channels_open`, `tollgate_gateway_channels_unclaimed` (value charged and
//!   not claimed, atomic units), `tollgate_gateway_channels_claim_lag_seconds` (age of the
//!   oldest unclaimed charge) and `tollgate_gateway_channels_claim_rounds` (claims that moved
//!   value since start).
//!
//! The counts come from the [`PaywallOutcome`] the paywall leaves in each response's
//! extensions, so the paywall itself knows nothing of Prometheus. Each gateway has a registry
//! of its own (`prometheus-client`), so gateways in one process never mix their counts.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tollgate_server::paywall::PaywallOutcome;

/// The `Content-Type` of the rendered text (OpenMetrics, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the upstream latency buckets.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    status_class: &'static str,
}

/// The gateway's counters and histogram, in a registry of its own.
pub struct GatewayMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    upstream: Family<UpstreamLabels, Histogram>,
    channels: Option<(Arc<dyn crate::Channels>, ChannelMetrics)>,
}

/// The channel gauges, set from [`Channels::gauges`](crate::Channels::gauges) at each scrape.
#[derive(Default)]
struct ChannelMetrics {
    open: Gauge,
    unclaimed: Gauge,
    lag: Gauge,
    claims: Gauge,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

fn upstream_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let refusals = Family::<ReasonLabels, Counter>::default();
        let upstream = Family::<UpstreamLabels, Histogram>::new_with_constructor(
            upstream_histogram as fn() -> Histogram,
        );
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder appends it to the samples.
        registry.register(
            "tollgate_gateway_requests",
            "Requests by what the paywall did and the status sent",
            requests.clone(),
        );
        registry.register(
            "tollgate_gateway_refusals",
            "Refused payments by x402 reason code",
            refusals.clone(),
        );
        registry.register(
            "tollgate_gateway_upstream_duration_seconds",
            "Time until the upstream's response head, by status class",
            upstream.clone(),
        );
        Self {
            registry,
            requests,
            refusals,
            upstream,
            channels: None,
        }
    }
}

impl GatewayMetrics {
    /// The metrics, with the channel gauges when the gateway takes `batch-settlement`.
    pub fn new(channels: Option<Arc<dyn crate::Channels>>) -> Self {
        let mut metrics = Self::default();
        if let Some(channels) = channels {
            let gauges = ChannelMetrics::default();
            let r = &mut metrics.registry;
            r.register(
                "tollgate_gateway_channels_open",
                "Payment channels the seller knows",
                gauges.open.clone(),
            );
            r.register(
                "tollgate_gateway_channels_unclaimed",
                "Value charged through channels and not claimed, in atomic units",
                gauges.unclaimed.clone(),
            );
            r.register(
                "tollgate_gateway_channels_claim_lag_seconds",
                "Age of the oldest unclaimed charge",
                gauges.lag.clone(),
            );
            r.register(
                "tollgate_gateway_channels_claim_rounds",
                "Claims that moved value since start",
                gauges.claims.clone(),
            );
            metrics.channels = Some((channels, gauges));
        }
        metrics
    }

    /// Reads the channels' figures into their gauges (before a scrape).
    async fn refresh_channels(&self) {
        let Some((channels, gauges)) = &self.channels else {
            return;
        };
        let Some(now) = channels.gauges().await else {
            return;
        };
        let clamp = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
        gauges.open.set(clamp(now.open.into()));
        gauges.unclaimed.set(clamp(now.unclaimed));
        gauges.lag.set(clamp(now.claim_lag_secs.into()));
        gauges.claims.set(clamp(now.claims.into()));
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl GatewayMetrics {
    /// Counts one response that left the paywall.
    pub fn observe_response(&self, response: &Response) {
        let outcome = response.extensions().get::<PaywallOutcome>();
        let label = match outcome {
            Some(outcome) => outcome.label(),
            // The paywall labels every decision but its cached challenges and browser page.
            None if response.status() == StatusCode::PAYMENT_REQUIRED => "challenged",
            None => "unpriced",
        };
        self.requests
            .get_or_create(&RequestLabels {
                outcome: label,
                status: response.status().as_u16(),
            })
            .inc();
        if let Some(PaywallOutcome::Refused { reason }) = outcome {
            self.refusals
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Records how long the upstream took to answer with `status`.
    pub fn observe_upstream(&self, status: StatusCode, took: std::time::Duration) {
        self.upstream
            .get_or_create(&UpstreamLabels {
                status_class: status_class(status),
            })
            .observe(took.as_secs_f64());
    }

    /// Everything in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a `String` cannot fail; an encoder error would be a bug in a label.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Middleware outside the paywall: counts what it did with each request.
pub(crate) async fn count(
    State(metrics): State<Arc<GatewayMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    metrics.observe_response(&response);
    response
}

/// Middleware around the proxy, inside the paywall: times the upstream.
pub(crate) async fn time_upstream(
    State(metrics): State<Arc<GatewayMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe_upstream(response.status(), started.elapsed());
    response
}

/// `GET` of the scrape endpoint.
pub(crate) async fn scrape(State(metrics): State<Arc<GatewayMetrics>>) -> Response {
    metrics.refresh_channels().await;
    (
        [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn response(status: StatusCode, outcome: Option<PaywallOutcome>) -> Response {
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = status;
        if let Some(o) = outcome {
            r.extensions_mut().insert(o);
        }
        r
    }

    #[test]
    fn counts_outcomes_statuses_and_reasons() {
        let m = GatewayMetrics::default();
        m.observe_response(&response(StatusCode::PAYMENT_REQUIRED, None));
        m.observe_response(&response(
            StatusCode::PAYMENT_REQUIRED,
            Some(PaywallOutcome::Challenged),
        ));
        m.observe_response(&response(
            StatusCode::PAYMENT_REQUIRED,
            Some(PaywallOutcome::Refused {
                reason: Cow::Borrowed("payment_in_use"),
            }),
        ));
        m.observe_response(&response(StatusCode::OK, Some(PaywallOutcome::Paid)));
        m.observe_response(&response(StatusCode::OK, None));
        m.observe_upstream(StatusCode::OK, std::time::Duration::from_millis(20));
        m.observe_upstream(StatusCode::BAD_GATEWAY, std::time::Duration::from_secs(1));
        let text = m.render();
        for line in [
            "tollgate_gateway_requests_total{outcome=\"challenged\",status=\"402\"} 2",
            "tollgate_gateway_requests_total{outcome=\"refused\",status=\"402\"} 1",
            "tollgate_gateway_requests_total{outcome=\"paid\",status=\"200\"} 1",
            "tollgate_gateway_requests_total{outcome=\"unpriced\",status=\"200\"} 1",
            "tollgate_gateway_refusals_total{reason=\"payment_in_use\"} 1",
            "tollgate_gateway_upstream_duration_seconds_count{status_class=\"2xx\"} 1",
            "tollgate_gateway_upstream_duration_seconds_count{status_class=\"5xx\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
