//! `GET /metrics` of the facilitator on a real anvil node, scraped after known requests and
//! parsed with a Prometheus text-format parser, the way a scraper reads it: exact counts by
//! endpoint, outcome and reason, the latency histogram, the ledger and signer gauges, and one
//! registry per router.

use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};
use tollgate_facilitator::{Config, Facilitator};
use tollgate_proto::{PaymentPayload, PaymentRequirements};
use tollgate_testkit::{TestChain, DEV_KEYS};

mod support;

struct Rig {
    chain: TestChain,
    facilitator: Facilitator,
    url: String,
    http: reqwest::Client,
    requirements: PaymentRequirements,
    _dir: tempfile::TempDir,
}

/// The facilitator's HTTP API on a local port, its server left running: the base URL.
async fn serve(facilitator: Facilitator) -> String {
    support::serve(facilitator).await.0
}

async fn rig() -> Rig {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    std::fs::write(&key, DEV_KEYS[0]).unwrap();
    let config = Config::parse(&format!(
        "[ledger]\npath = \"{}\"\n\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_file = \"{}\"\n",
        dir.path().join("ledger.db").display(),
        chain.caip2(),
        chain.endpoint(),
        key.display()
    ))
    .unwrap();
    config.validate().unwrap();
    let (facilitator, _) = Facilitator::from_config(&config).await.unwrap();
    let url = serve(facilitator.clone()).await;
    let requirements = support::requirements_for(&chain, TestChain::address(9), chain.usdc);
    Rig {
        chain,
        facilitator,
        url,
        http: reqwest::Client::new(),
        requirements,
        _dir: dir,
    }
}

impl Rig {
    async fn pay(&self, payer: usize) -> PaymentPayload {
        support::sign(&self.requirements, payer).await
    }

    fn body(&self, payment: &PaymentPayload) -> Json {
        support::body(payment, &self.requirements)
    }

    async fn post(&self, url: &str, path: &str, body: &Json) -> u16 {
        self.http
            .post(format!("{url}{path}"))
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn scrape(&self, url: &str) -> Scrape {
        let r = self
            .http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let text = r.text().await.unwrap();
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }
}

/// The value of the one sample named `name` with exactly `labels`; `None` when absent.
fn sample(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| {
            x.metric == name
                && x.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v))
        })
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} is not a scalar: {other:?}"),
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().copied()
}

const REQUESTS: &str = "tollgate_facilitator_requests_total";

#[tokio::test]
async fn scrape_after_known_requests() {
    let rig = rig().await;
    let url = rig.url.clone();
    // Two valid verifications and one settlement of the second payment.
    let first = rig.body(&rig.pay(1).await);
    let second = rig.body(&rig.pay(2).await);
    assert_eq!(rig.post(&url, "/verify", &first).await, 200);
    assert_eq!(rig.post(&url, "/verify", &second).await, 200);
    assert_eq!(rig.post(&url, "/settle", &second).await, 200);
    // Three refusals: a signature that does not parse (twice), an amount above the balance.
    let mut bad = rig.body(&rig.pay(3).await);
    bad["paymentPayload"]["payload"]["signature"] = json!("0x1234");
    assert_eq!(rig.post(&url, "/verify", &bad).await, 400);
    assert_eq!(rig.post(&url, "/settle", &bad).await, 400);
    // A body that is not a payment at all.
    assert_eq!(
        rig.post(&url, "/verify", &json!({"x402Version": 2})).await,
        400
    );

    let s = rig.scrape(&url).await;
    let count = |endpoint: &str, outcome: &str, reason: &str| {
        sample(
            &s,
            REQUESTS,
            &[
                ("endpoint", endpoint),
                ("outcome", outcome),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(count("verify", "valid", ""), Some(2.0));
    assert_eq!(count("settle", "success", ""), Some(1.0));
    let unparsable = "invalid_exact_evm_failed_to_parse_signature";
    assert_eq!(count("verify", "invalid", unparsable), Some(1.0));
    assert_eq!(count("settle", "failure", unparsable), Some(1.0));
    assert_eq!(count("verify", "invalid", "invalid_payload"), Some(1.0));
    let every: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == REQUESTS)
        .map(|x| match x.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(every, 6.0, "nothing else counted");

    // The latency histogram: one observation per request, each bucket cumulative.
    let histogram = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "tollgate_facilitator_request_duration_seconds"
                && x.labels.get("endpoint") == Some("verify")
        })
        .expect("verify latency");
    let Value::Histogram(buckets) = &histogram.value else {
        panic!("{histogram:?}");
    };
    assert_eq!(buckets.len(), 11, "10 bounds and +Inf: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    assert_eq!(buckets.last().unwrap().less_than, f64::INFINITY);
    assert_eq!(buckets.last().unwrap().count, 4.0);
    assert_eq!(
        sample(
            &s,
            "tollgate_facilitator_request_duration_seconds_count",
            &[("endpoint", "settle")]
        ),
        Some(2.0)
    );

    // Scrape-time gauges: the ledger and the signer.
    assert_eq!(
        sample(&s, "tollgate_facilitator_pending_settlements", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &s,
            "tollgate_facilitator_ledger_entries",
            &[("state", "confirmed")]
        ),
        Some(1.0)
    );
    let caip2 = rig.chain.caip2();
    let signer = TestChain::address(0).to_string();
    let signer = [("network", caip2.as_str()), ("signer", signer.as_str())];
    let balance = sample(&s, "tollgate_facilitator_signer_balance_wei", &signer).unwrap();
    assert!(balance > 1e18, "the dev signer is funded: {balance}");
    assert_eq!(
        sample(&s, "tollgate_facilitator_signer_low_on_gas", &signer),
        Some(0.0)
    );
    assert_eq!(
        sample(&s, "tollgate_facilitator_signer_in_flight", &signer),
        Some(0.0)
    );

    // A second router over the same facilitator keeps counts of its own (no global recorder);
    // the ledger gauges are the shared ledger's.
    let other = serve(rig.facilitator.clone()).await;
    let s = rig.scrape(&other).await;
    assert!(
        s.samples.iter().all(|x| x.metric != REQUESTS),
        "a fresh router has counted nothing"
    );
    assert_eq!(
        sample(
            &s,
            "tollgate_facilitator_ledger_entries",
            &[("state", "confirmed")]
        ),
        Some(1.0)
    );
}
