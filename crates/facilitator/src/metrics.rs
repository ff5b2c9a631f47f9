//! Prometheus metrics: request counts by result and reason, latency histograms, and gauges
//! read when scraped.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client) instead of a
//! hand-written renderer, so escaping and the exposition format are the library's job. Each
//! [`Metrics`] owns its own [`Registry`]: several facilitators in one process (tests, an
//! embedding application) never mix their counts, and nothing is installed globally.
//!
//! Gauges that live elsewhere (pending settlements in the ledger, signer balances on chain) are
//! refreshed from a [`ScrapeState`] on every scrape. Their series are cleared first, so a
//! value that cannot be read this time (an unreachable ledger, a balance the node did not
//! return) is absent from the scrape rather than a stale number an alert would trust.
//!
//! Series names and labels are those of the earlier renderer, so dashboards keep working:
//! `tollgate_facilitator_requests_total{endpoint,outcome,reason}`,
//! `tollgate_facilitator_request_duration_seconds{endpoint}` (histogram),
//! `tollgate_facilitator_pending_settlements`, `tollgate_facilitator_ledger_entries{state}`,
//! `tollgate_facilitator_signer_balance_wei{network,signer}`,
//! `tollgate_facilitator_signer_low_on_gas{network,signer}` and
//! `tollgate_facilitator_signer_in_flight{network,signer}`. The text is OpenMetrics (served as
//! [`CONTENT_TYPE`]), which Prometheus scrapes natively.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignerLabels {
    network: String,
    signer: String,
}

/// A series without labels that can still be absent (a `Gauge` registered alone is always
/// encoded).
type Unlabelled = [(&'static str, &'static str); 0];

/// What `GET /metrics` reads from the ledger and the chain just before rendering.
#[derive(Debug, Clone, Default)]
pub struct ScrapeState {
    /// Ledger entries by settlement state; `None` when the ledger could not be read.
    pub ledger: Option<Vec<(String, u64)>>,
    /// One entry per settlement signer.
    pub signers: Vec<SignerGauges>,
}

/// The scrape-time gauges of one settlement signer.
#[derive(Debug, Clone)]
pub struct SignerGauges {
    /// CAIP-2 network.
    pub network: String,
    /// The signer's address.
    pub signer: String,
    /// Native balance in wei; `None` when the node did not answer. Prometheus values are
    /// floats: the gauge is for alerting, not accounting.
    pub balance_wei: Option<f64>,
    /// The balance is below the configured minimum.
    pub low_on_gas: bool,
    /// Settlement transactions sent and not yet seen mined.
    pub in_flight: u64,
}

/// The facilitator's counters, histograms and scrape-time gauges, in a registry of its own.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    pending: Family<Unlabelled, Gauge>,
    ledger_entries: Family<StateLabels, Gauge>,
    signer_balance: Family<SignerLabels, Gauge<f64, AtomicU64>>,
    signer_low_on_gas: Family<SignerLabels, Gauge>,
    signer_in_flight: Family<SignerLabels, Gauge>,
    /// Held from refreshing the scrape-time gauges to the end of encoding, so two concurrent
    /// scrapes never see each other's half-refreshed families.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let pending = Family::<Unlabelled, Gauge>::default();
        let ledger_entries = Family::<StateLabels, Gauge>::default();
        let signer_balance = Family::<SignerLabels, Gauge<f64, AtomicU64>>::default();
        let signer_low_on_gas = Family::<SignerLabels, Gauge>::default();
        let signer_in_flight = Family::<SignerLabels, Gauge>::default();
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder appends it to the samples.
        registry.register(
            "tollgate_facilitator_requests",
            "Verify and settle requests by result and reason",
            requests.clone(),
        );
        registry.register(
            "tollgate_facilitator_request_duration_seconds",
            "Time to answer verify and settle requests",
            latency.clone(),
        );
        registry.register(
            "tollgate_facilitator_pending_settlements",
            "Settlements sent but not yet confirmed",
            pending.clone(),
        );
        registry.register(
            "tollgate_facilitator_ledger_entries",
            "Ledger entries by settlement state",
            ledger_entries.clone(),
        );
        registry.register(
            "tollgate_facilitator_signer_balance_wei",
            "Native balance of each settlement signer (pays gas)",
            signer_balance.clone(),
        );
        registry.register(
            "tollgate_facilitator_signer_low_on_gas",
            "1 when a settlement signer's balance is below the configured minimum",
            signer_low_on_gas.clone(),
        );
        registry.register(
            "tollgate_facilitator_signer_in_flight",
            "Settlement transactions sent and not yet seen mined, per signer",
            signer_in_flight.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            pending,
            ledger_entries,
            signer_balance,
            signer_low_on_gas,
            signer_in_flight,
            scrape: Mutex::new(()),
        }
    }
}

/// Clamps a count into a gauge's `i64`.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Counts one request to `endpoint` (`verify`/`settle`) that ended in `outcome` with
    /// `reason` (empty when none), and records how long it took.
    pub fn observe(
        &self,
        endpoint: &'static str,
        outcome: &'static str,
        reason: &str,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                outcome,
                reason: reason.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(took.as_secs_f64());
    }

    /// Refreshes the scrape-time gauges from `state` and renders everything in the
    /// OpenMetrics text format.
    pub fn render(&self, state: &ScrapeState) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.pending.clear();
        self.ledger_entries.clear();
        self.signer_balance.clear();
        self.signer_low_on_gas.clear();
        self.signer_in_flight.clear();
        if let Some(counts) = &state.ledger {
            let submitted = counts
                .iter()
                .find(|(s, _)| s == "submitted")
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.pending.get_or_create(&[]).set(gauge_value(submitted));
            for (s, n) in counts {
                self.ledger_entries
                    .get_or_create(&StateLabels { state: s.clone() })
                    .set(gauge_value(*n));
            }
        }
        for signer in &state.signers {
            let labels = SignerLabels {
                network: signer.network.clone(),
                signer: signer.signer.clone(),
            };
            if let Some(balance) = signer.balance_wei {
                self.signer_balance.get_or_create(&labels).set(balance);
            }
            self.signer_low_on_gas
                .get_or_create(&labels)
                .set(i64::from(signer.low_on_gas));
            self.signer_in_flight
                .get_or_create(&labels)
                .set(gauge_value(signer.in_flight));
        }
        let mut out = String::new();
        // Writing into a `String` cannot fail; an encoder error would be a bug in a label.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    /// The value of the one sample named `name` whose labels include `labels`.
    fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = s
            .samples
            .iter()
            .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} is ambiguous");
        found.first().map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is not a scalar: {other:?}"),
        })
    }

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.observe("settle", "success", "", Duration::from_millis(30));
        m.observe(
            "settle",
            "failure",
            "invalid_exact_evm_signature",
            Duration::from_millis(3),
        );
        m.observe("settle", "success", "", Duration::from_millis(300));
        let text = m.render(&ScrapeState {
            ledger: Some(vec![("confirmed".into(), 5), ("submitted".into(), 2)]),
            signers: vec![SignerGauges {
                network: "eip155:31337".into(),
                signer: "0xabc".into(),
                balance_wei: Some(1e18),
                low_on_gas: true,
                in_flight: 3,
            }],
        });
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The exact series the earlier renderer wrote, for dashboards and the HTTP tests.
        assert!(text.contains(
            "tollgate_facilitator_requests_total{endpoint=\"settle\",outcome=\"success\",reason=\"\"} 2"
        ), "{text}");
        assert!(
            text.contains("\ntollgate_facilitator_pending_settlements 2\n"),
            "{text}"
        );
        let s = scrape(&text);
        let requests = "tollgate_facilitator_requests_total";
        assert_eq!(
            value(&s, requests, &[("outcome", "success"), ("reason", "")]),
            Some(2.0)
        );
        assert_eq!(
            value(&s, requests, &[("reason", "invalid_exact_evm_signature")]),
            Some(1.0)
        );
        let histogram = s
            .samples
            .iter()
            .find(|x| x.metric == "tollgate_facilitator_request_duration_seconds")
            .expect("histogram");
        let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
            panic!("{histogram:?}");
        };
        let count_at = |le: f64| {
            buckets
                .iter()
                .find(|b| b.less_than == le)
                .map(|b| b.count)
                .unwrap()
        };
        assert_eq!(count_at(0.005), 1.0);
        assert_eq!(count_at(0.05), 2.0);
        assert_eq!(count_at(f64::INFINITY), 3.0);
        assert_eq!(
            value(
                &s,
                "tollgate_facilitator_request_duration_seconds_count",
                &[("endpoint", "settle")]
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &s,
                "tollgate_facilitator_ledger_entries",
                &[("state", "confirmed")]
            ),
            Some(5.0)
        );
        let signer = [("network", "eip155:31337"), ("signer", "0xabc")];
        assert_eq!(
            value(&s, "tollgate_facilitator_signer_balance_wei", &signer),
            Some(1e18)
        );
        assert_eq!(
            value(&s, "tollgate_facilitator_signer_low_on_gas", &signer),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "tollgate_facilitator_signer_in_flight", &signer),
            Some(3.0)
        );
    }

    #[test]
    fn unreadable_gauges_are_absent_not_stale() {
        let m = Metrics::default();
        let signer = SignerGauges {
            network: "eip155:31337".into(),
            signer: "0xabc".into(),
            balance_wei: Some(5.0),
            low_on_gas: false,
            in_flight: 0,
        };
        m.render(&ScrapeState {
            ledger: Some(vec![("submitted".into(), 4)]),
            signers: vec![signer.clone()],
        });
        let text = m.render(&ScrapeState {
            ledger: None,
            signers: vec![SignerGauges {
                balance_wei: None,
                ..signer
            }],
        });
        let s = scrape(&text);
        assert_eq!(
            value(&s, "tollgate_facilitator_pending_settlements", &[]),
            None
        );
        assert_eq!(value(&s, "tollgate_facilitator_ledger_entries", &[]), None);
        assert_eq!(
            value(&s, "tollgate_facilitator_signer_balance_wei", &[]),
            None
        );
        assert_eq!(
            value(&s, "tollgate_facilitator_signer_low_on_gas", &[]),
            Some(0.0)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.observe("verify", "invalid", "a\"b\\c\nd", Duration::ZERO);
        let text = m.render(&ScrapeState::default());
        assert!(text.contains(r#"reason="a\"b\\c\nd""#), "{text}");
    }

    #[test]
    fn registries_are_per_instance() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.observe("verify", "valid", "", Duration::ZERO);
        let s = scrape(&b.render(&ScrapeState::default()));
        assert_eq!(value(&s, "tollgate_facilitator_requests_total", &[]), None);
    }
}
