//! The gateway's `[metrics]` endpoint, scraped after known requests through a real facilitator
//! on a real anvil node, and parsed with a Prometheus text-format parser: 402s, paid requests,
//! refusals by reason and upstream latency counted exactly; the endpoint off by default and
//! never shadowing a priced route.

mod support;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_parse::{Scrape, Value};
use tollgate_evm::{ExactEvmClient, FacilitatorConfig};
use tollgate_gateway::GatewayConfig;
use tollgate_proto::{header, PaymentRequired};
use tollgate_testkit::TestChain;

use support::{facilitator, route, serve_url};

const PRICE: u64 = 25_000;
const METRICS: &str = "/_tollgate/metrics";

fn upstream() -> Router {
    Router::new()
        .route("/weather", get(|| async { r#"{"sky":"clear"}"# }))
        .route("/free", get(|| async { "free" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke") }),
        )
        // What the upstream itself serves at the path the gateway may take for metrics.
        .route(METRICS, get(|| async { "the upstream's own page" }))
}

struct Rig {
    _chain: TestChain,
    gateway: String,
    http: reqwest::Client,
}

/// The gateway's file, with `tables` appended.
fn config_text(chain: &TestChain, upstream: &str, facilitator: &str, tables: &str) -> String {
    let route = |r: &str| route(chain, r, PRICE);
    format!(
        "upstream = \"{upstream}\"\n[facilitator]\nurl = \"{facilitator}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{}\"\n{}{}{tables}",
        chain.caip2(),
        TestChain::address(9),
        route("GET /weather"),
        route("GET /fail"),
    )
}

async fn rig(tables: &str) -> Rig {
    let chain = TestChain::start().await.unwrap();
    let facilitator_url = format!(
        "http://{}",
        facilitator(&chain, FacilitatorConfig::default()).await
    );
    let upstream_url = serve_url(upstream()).await;
    let config = GatewayConfig::parse(&config_text(
        &chain,
        &upstream_url,
        &facilitator_url,
        tables,
    ))
    .unwrap();
    config.validate().unwrap();
    let gateway = serve_url(tollgate_gateway::app(&config).await.unwrap()).await;
    Rig {
        _chain: chain,
        gateway,
        http: reqwest::Client::new(),
    }
}

impl Rig {
    async fn get(&self, path: &str, payment: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.gateway));
        if let Some(payment) = payment {
            request = request.header(header::PAYMENT_SIGNATURE.as_str(), payment);
        }
        request.send().await.unwrap()
    }

    /// Asks for the price of `GET path` (one 402) and signs a payment for it from `payer`.
    async fn payment_for(&self, path: &str, payer: usize) -> String {
        let r = self.get(path, None).await;
        assert_eq!(r.status(), 402);
        let challenge: PaymentRequired = header::decode(
            r.headers()[header::PAYMENT_REQUIRED.as_str()]
                .to_str()
                .unwrap(),
        )
        .unwrap();
        let payment = ExactEvmClient::new(TestChain::signer(payer))
            .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
            .await
            .unwrap();
        header::encode(&payment)
    }

    async fn scrape(&self) -> Scrape {
        let r = self.get(METRICS, None).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
            "{:?}",
            r.headers()
        );
        let text = r.text().await.unwrap();
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }
}

/// The value of the one sample named `name` with exactly `labels`; 0 when there is none (a
/// counter never incremented is not rendered).
fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
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
    found.first().copied().unwrap_or(0.0)
}

/// Every sample named `name`, summed.
fn total(s: &Scrape, name: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn scrape_counts_402s_payments_refusals_and_upstream_latency() {
    let rig = rig(&format!("[metrics]\npath = \"{METRICS}\"\n")).await;
    let requests = "tollgate_gateway_requests_total";
    let before = rig.scrape().await;
    assert_eq!(total(&before, requests), 0.0, "nothing counted yet");

    // 1 free request, 2 plain challenges.
    assert_eq!(rig.get("/free", None).await.status(), 200);
    assert_eq!(rig.get("/weather", None).await.status(), 402);
    assert_eq!(rig.get("/weather", None).await.status(), 402);
    // A paid request (its price asked first: one more challenge).
    let payment = rig.payment_for("/weather", 1).await;
    let paid = rig.get("/weather", Some(&payment)).await;
    assert_eq!(paid.status(), 200);
    assert!(paid
        .headers()
        .contains_key(header::PAYMENT_RESPONSE.as_str()));
    // Refusals: the same payment again, and a header that is not a payment.
    let replay = rig.get("/weather", Some(&payment)).await;
    assert_eq!(replay.status(), 402);
    let replay_error = header::decode::<PaymentRequired>(
        replay.headers()[header::PAYMENT_REQUIRED.as_str()]
            .to_str()
            .unwrap(),
    )
    .unwrap()
    .error
    .unwrap();
    assert_eq!(
        rig.get("/weather", Some("not a payment")).await.status(),
        402
    );
    // The upstream fails after verification: not charged (its price asked first).
    let payment = rig.payment_for("/fail", 2).await;
    assert_eq!(rig.get("/fail", Some(&payment)).await.status(), 500);

    let s = rig.scrape().await;
    let by = |outcome: &str, status: &str| {
        counter(&s, requests, &[("outcome", outcome), ("status", status)])
    };
    assert_eq!(by("unpriced", "200"), 1.0);
    assert_eq!(by("challenged", "402"), 4.0);
    assert_eq!(by("paid", "200"), 1.0);
    assert_eq!(by("refused", "402"), 2.0);
    assert_eq!(by("handler_failed", "500"), 1.0);
    assert_eq!(total(&s, requests), 9.0, "scrapes are not counted");

    let refusals = "tollgate_gateway_refusals_total";
    assert_eq!(
        counter(&s, refusals, &[("reason", "invalid_payment_header")]),
        1.0
    );
    // The replay is refused with the facilitator's x402 reason, and counted under it.
    let replay_reason = s
        .samples
        .iter()
        .find(|x| x.metric == refusals && x.labels.get("reason") != Some("invalid_payment_header"))
        .and_then(|x| x.labels.get("reason"))
        .expect("the replay's refusal")
        .to_owned();
    assert!(
        replay_error.contains(&replay_reason) && replay_reason != "refused",
        "{replay_reason} vs {replay_error}"
    );
    assert_eq!(total(&s, refusals), 2.0);

    // The upstream answered three times: /free and the paid /weather (2xx), /fail (5xx).
    let histogram = |class: &str| {
        s.samples
            .iter()
            .find(|x| {
                x.metric == "tollgate_gateway_upstream_duration_seconds"
                    && x.labels.get("status_class") == Some(class)
            })
            .map(|x| match &x.value {
                Value::Histogram(buckets) => {
                    buckets
                        .iter()
                        .find(|b| b.less_than == f64::INFINITY)
                        .unwrap()
                        .count
                }
                other => panic!("{other:?}"),
            })
            .unwrap_or(0.0)
    };
    assert_eq!(histogram("2xx"), 2.0);
    assert_eq!(histogram("5xx"), 1.0);
    assert_eq!(
        counter(
            &s,
            "tollgate_gateway_upstream_duration_seconds_count",
            &[("status_class", "2xx")]
        ),
        2.0
    );
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_shadow_a_priced_route() {
    // Off: the path is the upstream's like any other.
    let rig = rig("").await;
    let r = rig.get(METRICS, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "the upstream's own page");

    let chain = &rig._chain;
    let on_priced = config_text(
        chain,
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "[metrics]\npath = \"/weather\"\n",
    );
    let err = GatewayConfig::parse(&on_priced)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("metrics.path"), "{err}");
    for bad in ["metrics", "/a/../weather", "/a//b", "/a?b", "/%77eather"] {
        let text = config_text(
            chain,
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            &format!("[metrics]\npath = \"{bad}\"\n"),
        );
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.path"), "{bad}: {err}");
    }
    let typo = config_text(
        chain,
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "[metrics]\nparh = \"/m\"\n",
    );
    assert!(
        GatewayConfig::parse(&typo).is_err(),
        "unknown keys are errors"
    );
}
