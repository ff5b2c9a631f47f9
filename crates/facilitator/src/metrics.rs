//! Prometheus metrics: request counts by result and reason, latency histograms.
//!
//! Kept in-process and rendered in the Prometheus text format by `GET /metrics`; gauges that
//! live elsewhere (pending settlements in the ledger, signer balances on chain) are read when
//! scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum_micros: u128,
}

#[derive(Default)]
struct State {
    /// (endpoint, outcome, reason) → count.
    requests: BTreeMap<(&'static str, &'static str, String), u64>,
    /// endpoint → latency.
    latency: BTreeMap<&'static str, Histogram>,
}

/// A gauge read at scrape time.
#[derive(Debug, Clone)]
pub struct Gauge<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Help text.
    pub help: &'a str,
    /// Label pairs.
    pub labels: Vec<(&'a str, String)>,
    /// Value.
    pub value: f64,
}

/// The facilitator's counters and histograms.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
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
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s.requests
            .entry((endpoint, outcome, reason.to_owned()))
            .or_insert(0) += 1;
        let h = s.latency.entry(endpoint).or_default();
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum_micros += took.as_micros();
    }

    /// Renders everything in the Prometheus text exposition format, followed by `gauges`.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP tollgate_facilitator_requests_total Verify and settle requests by result and reason.\n");
        out.push_str("# TYPE tollgate_facilitator_requests_total counter\n");
        for ((endpoint, outcome, reason), n) in &s.requests {
            let _ = writeln!(
                out,
                "tollgate_facilitator_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\",reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        out.push_str("# HELP tollgate_facilitator_request_duration_seconds Time to answer verify and settle requests.\n");
        out.push_str("# TYPE tollgate_facilitator_request_duration_seconds histogram\n");
        for (endpoint, h) in &s.latency {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tollgate_facilitator_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tollgate_facilitator_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tollgate_facilitator_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}",
                h.sum_micros as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "tollgate_facilitator_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count
            );
        }
        let mut last = "";
        for Gauge {
            name,
            help,
            labels,
            value,
        } in gauges
        {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = m.render(&[Gauge {
            name: "tollgate_facilitator_pending_settlements",
            help: "Settlements sent but not confirmed.",
            labels: vec![],
            value: 2.0,
        }]);
        assert!(text.contains(
            "tollgate_facilitator_requests_total{endpoint=\"settle\",outcome=\"success\",reason=\"\"} 2"
        ));
        assert!(text.contains("reason=\"invalid_exact_evm_signature\"} 1"));
        assert!(text.contains(
            "tollgate_facilitator_request_duration_seconds_bucket{endpoint=\"settle\",le=\"0.05\"} 2"
        ));
        assert!(text.contains(
            "tollgate_facilitator_request_duration_seconds_bucket{endpoint=\"settle\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("\ntollgate_facilitator_pending_settlements 2\n"));
    }
}
