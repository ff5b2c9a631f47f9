//! The gateway in front of a small upstream API, with the real facilitator (over HTTP) on a
//! real anvil node: free pass-through, paid routes, streaming bodies both ways, header hygiene,
//! no settlement for upstream errors, and an upstream outage.

mod support;

use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, U256};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use tollgate_evm::{ExactEvmClient, FacilitatorConfig};
use tollgate_gateway::GatewayConfig;
use tollgate_proto::{header, PaymentRequired, SettleResponse};
use tollgate_testkit::TestChain;

use support::{facilitator, route, serve_url};

const PRICE: u64 = 25_000;
const STREAM_CHUNKS: usize = 64;
const CHUNK: usize = 16 * 1024;

/// Headers of every request the upstream received.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

fn chunk(i: usize) -> Vec<u8> {
    (0..CHUNK).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

fn upstream(seen: Seen) -> Router {
    async fn record(State(seen): State<Seen>, headers: HeaderMap) {
        seen.lock().unwrap().push(headers);
    }
    Router::new()
        .route(
            "/weather",
            get(|s: State<Seen>, h: HeaderMap| async move {
                record(s, h).await;
                (
                    [
                        ("content-type", "application/json"),
                        // A paid body must never be kept by a shared cache, whatever the
                        // upstream says.
                        ("cache-control", "public, max-age=600"),
                    ],
                    r#"{"sky":"clear"}"#,
                )
            }),
        )
        .route(
            "/free",
            get(|s: State<Seen>, h: HeaderMap| async move {
                record(s, h).await;
                "free"
            }),
        )
        .route(
            "/fail",
            get(|| async {
                (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "upstream broke",
                )
            }),
        )
        .route(
            "/stream",
            get(|| async {
                // Chunks produced over time: the gateway must pass them on, not buffer a
                // finished body.
                let chunks = futures::stream::iter(0..STREAM_CHUNKS).then(|i| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk(i)))
                });
                Body::from_stream(chunks)
            }),
        )
        .route(
            "/echo",
            post(|s: State<Seen>, h: HeaderMap, body: Body| async move {
                record(s, h).await;
                body
            }),
        )
        .with_state(seen)
}

struct Rig {
    chain: TestChain,
    gateway: String,
    facilitator: String,
    seen: Seen,
    payee: Address,
    http: reqwest::Client,
}

async fn rig() -> Rig {
    rig_with(FacilitatorConfig::default(), "", "").await
}

/// A rig whose facilitator uses `scheme_config`, with `facilitator_keys` added to the
/// gateway's `[facilitator]` table and `tables` appended to its file.
async fn rig_with(scheme_config: FacilitatorConfig, facilitator_keys: &str, tables: &str) -> Rig {
    let chain = TestChain::start().await.unwrap();
    let facilitator_url = format!("http://{}", facilitator(&chain, scheme_config).await);
    let seen: Seen = Arc::default();
    let upstream_url = serve_url(upstream(seen.clone())).await;
    let payee = TestChain::address(9);
    let route = |r: &str| format!("{}description = \"{r}\"\n", route(&chain, r, PRICE));
    let text = format!(
        "upstream = \"{upstream_url}\"\n[facilitator]\nurl = \"{facilitator_url}\"\n{facilitator_keys}\n[payment]\nnetwork = \"{}\"\npay_to = \"{payee}\"\n{}{}{}{}{tables}",
        chain.caip2(),
        route("GET /weather"),
        route("GET /stream"),
        route("POST /echo"),
        route("GET /fail"),
    );
    let config = GatewayConfig::parse(&text).unwrap();
    config.validate().unwrap();
    let app = tollgate_gateway::app(&config).await.unwrap();
    let gateway = serve_url(app).await;
    Rig {
        chain,
        gateway,
        facilitator: facilitator_url,
        seen,
        payee,
        http: reqwest::Client::new(),
    }
}

impl Rig {
    /// Asks for the price of `method path`, and signs a payment for it from `payer`.
    async fn payment_for(&self, method: reqwest::Method, path: &str, payer: usize) -> String {
        let r = self
            .http
            .request(method, format!("{}{path}", self.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 402, "{path} must ask for payment");
        let challenge: PaymentRequired = header::decode(
            r.headers()[header::PAYMENT_REQUIRED.as_str()]
                .to_str()
                .unwrap(),
        )
        .unwrap();
        let description = challenge.resource.description.clone().unwrap_or_default();
        assert!(description.ends_with(path), "{description}");
        let payment = ExactEvmClient::new(TestChain::signer(payer))
            .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
            .await
            .unwrap();
        header::encode(&payment)
    }

    async fn balance(&self, who: Address) -> U256 {
        self.chain.usdc_balance(who).await.unwrap()
    }
}

#[tokio::test]
async fn free_routes_pass_through_and_paid_routes_need_payment() {
    let rig = rig().await;
    let r = rig
        .http
        .get(format!("{}/free", rig.gateway))
        .header("connection", "x-hop")
        .header("x-hop", "per-connection")
        .header("x-tollgate-payer", "0xspoofed")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "free");
    let seen = rig.seen.lock().unwrap().pop().unwrap();
    assert_eq!(seen["x-custom"], "kept");
    assert!(
        !seen.contains_key("x-hop"),
        "a header named in Connection is hop-by-hop"
    );
    assert!(
        !seen.contains_key("x-tollgate-payer"),
        "buyers cannot claim to have paid"
    );
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert!(seen.contains_key("x-forwarded-host"));

    let before = rig.balance(rig.payee).await;
    let payment = rig.payment_for(reqwest::Method::GET, "/weather", 1).await;
    let r = rig
        .http
        .get(format!("{}/weather", rig.gateway))
        .header(header::PAYMENT_SIGNATURE.as_str(), &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let receipt = receipt(&r);
    assert!(receipt.success);
    assert_eq!(r.headers()["content-type"], "application/json");
    let cache: Vec<_> = r.headers().get_all("cache-control").iter().collect();
    assert_eq!(
        cache,
        ["private, no-store"],
        "the upstream's value is replaced"
    );
    assert_eq!(r.text().await.unwrap(), r#"{"sky":"clear"}"#);
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));
    let seen = rig.seen.lock().unwrap().pop().unwrap();
    assert!(!seen.contains_key(header::PAYMENT_SIGNATURE.as_str()));
    assert_eq!(
        seen["x-tollgate-payer"].to_str().unwrap(),
        TestChain::address(1).to_string()
    );
    assert_eq!(seen["x-tollgate-amount"], PRICE.to_string().as_str());

    // The same payment again is refused: nothing reaches the upstream.
    let calls = rig.seen.lock().unwrap().len();
    let again = rig
        .http
        .get(format!("{}/weather", rig.gateway))
        .header(header::PAYMENT_SIGNATURE.as_str(), &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 402);
    assert_eq!(again.headers()["cache-control"], "no-store");
    assert_eq!(rig.seen.lock().unwrap().len(), calls);
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));
}

#[tokio::test]
async fn bodies_stream_through_both_ways() {
    let rig = rig().await;
    let before = rig.balance(rig.payee).await;

    let payment = rig.payment_for(reqwest::Method::GET, "/stream", 2).await;
    let r = rig
        .http
        .get(format!("{}/stream", rig.gateway))
        .header(header::PAYMENT_SIGNATURE.as_str(), &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut got = Vec::new();
    let mut pieces = 0;
    let mut stream = r.bytes_stream();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.unwrap());
        pieces += 1;
    }
    let expected: Vec<u8> = (0..STREAM_CHUNKS).flat_map(chunk).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "streamed body differs");
    assert!(pieces > 1, "the body arrived in pieces, not as one buffer");

    // A request body streamed by the client arrives whole at the upstream and comes back.
    let payment = rig.payment_for(reqwest::Method::POST, "/echo", 3).await;
    let upload: Vec<u8> = (0..8).flat_map(chunk).collect();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|i| Ok(chunk(i))).collect();
    let r = rig
        .http
        .post(format!("{}/echo", rig.gateway))
        .header(header::PAYMENT_SIGNATURE.as_str(), &payment)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let echoed = r.bytes().await.unwrap();
    assert!(echoed.as_ref() == upload.as_slice(), "echo differs");
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE * 2));
}

#[tokio::test]
async fn upstream_errors_are_not_charged_and_outages_are_502() {
    let rig = rig().await;
    let payer = TestChain::address(4);
    let before = rig.balance(payer).await;
    let payment = rig.payment_for(reqwest::Method::GET, "/fail", 4).await;
    let r = rig
        .http
        .get(format!("{}/fail", rig.gateway))
        .header(header::PAYMENT_SIGNATURE.as_str(), &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert!(!r.headers().contains_key(header::PAYMENT_RESPONSE.as_str()));
    assert_eq!(
        rig.balance(payer).await,
        before,
        "no settlement for an upstream error"
    );

    // A gateway whose upstream is gone answers 502 instead of hanging or panicking.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let upstream = tollgate_gateway::Upstream::new(
        &format!("http://127.0.0.1:{dead}"),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let app = Router::new()
        .fallback(tollgate_gateway::proxy::forward)
        .with_state(upstream);
    let url = serve_url(app).await;
    let r = rig.http.get(format!("{url}/free")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 502);
}

#[tokio::test]
async fn start_up_fails_loudly_when_the_facilitator_cannot_settle_a_route() {
    let rig = rig().await;
    let facilitator_url = {
        let seen: Seen = Arc::default();
        // An HTTP server that is not a facilitator.
        serve_url(upstream(seen)).await
    };
    let text = format!(
        "upstream = \"{}\"\n[facilitator]\nurl = \"{facilitator_url}\"\n[payment]\nnetwork = \"eip155:8453\"\npay_to = \"{}\"\n[[routes]]\nroute = \"GET /x\"\nprice = \"$0.01\"\n",
        rig.gateway, rig.payee
    );
    let config = GatewayConfig::parse(&text).unwrap();
    let err = tollgate_gateway::app(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not usable"), "{err}");

    // A real facilitator that does not settle on the route's network.
    let text = text.replace(&facilitator_url, &rig.facilitator);
    let config = GatewayConfig::parse(&text).unwrap();
    let err = tollgate_gateway::app(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not settle `exact` payments on eip155:8453"),
        "{err}"
    );
}

#[tokio::test]
async fn a_settlement_slower_than_the_exchange_is_delivered_on_retry_without_a_second_upstream_call(
) {
    // The facilitator waits 1 s for receipts; the chain mines only when told.
    let rig = rig_with(
        FacilitatorConfig {
            receipt_timeout: std::time::Duration::from_secs(1),
            ..FacilitatorConfig::default()
        },
        "receipt_timeout_secs = 1\ntimeout_secs = 10\n",
        "[settlement]\nmode = \"after-handler\"\nretry_after_secs = 3\n",
    )
    .await;
    let before = rig.balance(rig.payee).await;
    let payment = rig.payment_for(reqwest::Method::GET, "/weather", 6).await;
    rig.chain.set_automine(false).await.unwrap();
    let calls = rig.seen.lock().unwrap().len();
    let send = || {
        rig.http
            .get(format!("{}/weather", rig.gateway))
            .header(header::PAYMENT_SIGNATURE.as_str(), &payment)
            .send()
    };
    for _ in 0..2 {
        let r = send().await.unwrap();
        assert_eq!(r.status().as_u16(), 402);
        assert_eq!(r.headers()["retry-after"], "3");
        assert!(!r.headers().contains_key(header::PAYMENT_RESPONSE.as_str()));
        let challenge: PaymentRequired = header::decode(
            r.headers()[header::PAYMENT_REQUIRED.as_str()]
                .to_str()
                .unwrap(),
        )
        .unwrap();
        let reason = challenge.error.unwrap_or_default();
        assert!(reason.contains("settlement_pending"), "{reason}");
        assert!(!r.text().await.unwrap().contains("sky"));
        assert_eq!(
            rig.seen.lock().unwrap().len(),
            calls + 1,
            "the upstream ran once"
        );
    }

    rig.chain.mine().await.unwrap();
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let receipt = receipt(&r);
    assert!(receipt.success);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(r.text().await.unwrap(), r#"{"sky":"clear"}"#);
    assert_eq!(rig.seen.lock().unwrap().len(), calls + 1);
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));

    // Delivered once.
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(rig.seen.lock().unwrap().len(), calls + 1);
}

/// The settlement receipt a paid response carries.
fn receipt(r: &reqwest::Response) -> SettleResponse {
    header::decode(
        r.headers()[header::PAYMENT_RESPONSE.as_str()]
            .to_str()
            .unwrap(),
    )
    .unwrap()
}
