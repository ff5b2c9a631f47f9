//! Prices on axum's own routes (`PaywallLayer::price` + `MethodRouter::route_layer`): axum's
//! router alone decides which requests reach a priced handler, and every request that does is
//! charged — `HEAD` with `GET`, and whatever other spelling axum routes there — while sibling
//! routes stay free. Paid over real HTTP through the in-process facilitator on a test chain:
//! served once, a replay refused.
//!
//! Unpaid requests go over a raw TCP socket, since HTTP client libraries resolve `..` and
//! re-encode paths before sending. Which spellings axum routes to the handler is not assumed:
//! a twin router with the same routes and no paywall is asked, and every spelling it serves
//! from the priced handler must cost money behind the paywall.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use axum::extract::Extension;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::{header, PaymentRequired};
use tollgate_server::{
    PaymentInfo, PaymentOption, PaywallLayer, PriceError, RemoteFacilitator, RoutePrice,
    SettlementMode,
};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;
/// The price of the `/reports/{*name}` route, distinct from `/weather`'s.
const REPORT_PRICE: u64 = 30_000;

/// The marker the weather handler answers with, in the shop and in its free twin.
const WEATHER: &str = "weather-handler";
const REPORT: &str = "report-handler";

/// The shop's routes: `/weather` and `/reports/{*name}` priced when `paywall` is given, free
/// otherwise; `/health` always free. `served` counts runs of the weather and report handlers.
fn routes<F: tollgate_server::FacilitatorClient>(
    paywall: Option<(&PaywallLayer<F>, &PaymentOption)>,
    served: Arc<AtomicUsize>,
) -> Router {
    let (weather_runs, report_runs) = (served.clone(), served);
    let mut weather = get(move |info: Option<Extension<PaymentInfo>>| async move {
        weather_runs.fetch_add(1, Ordering::SeqCst);
        let tx = info.and_then(|Extension(i)| i.transaction);
        axum::Json(json!({ "handler": WEATHER, "tx": tx }))
    });
    let mut reports = get(move || async move {
        report_runs.fetch_add(1, Ordering::SeqCst);
        REPORT
    });
    if let Some((paywall, option)) = paywall {
        let weather_price = RoutePrice::new(option.clone()).description("Today's weather");
        let mut report_option = option.clone();
        report_option.amount = U256::from(REPORT_PRICE);
        weather = weather.route_layer(paywall.price(weather_price).unwrap());
        reports = reports.route_layer(paywall.price(RoutePrice::new(report_option)).unwrap());
    }
    Router::new()
        .route("/weather", weather)
        .route("/reports/{*name}", reports)
        .route("/health", get(|| async { "ok" }))
}

struct Shop {
    chain: TestChain,
    url: String,
    addr: String,
    /// The same routes without a paywall.
    twin: String,
    http: reqwest::Client,
    payee: Address,
    served: Arc<AtomicUsize>,
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn shop(mode: SettlementMode) -> Shop {
    let chain = TestChain::start().await.unwrap();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let payee = TestChain::address(9);
    let network: tollgate_proto::Network = chain.caip2().parse().unwrap();
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(PRICE),
        &chain.usdc.to_string(),
        network,
        &payee.to_string(),
        extra,
    );
    // Configured first, then its routes priced: they share its settlement mode.
    let paywall = PaywallLayer::new(facilitator).settlement_mode(mode);
    let served = Arc::new(AtomicUsize::new(0));
    let addr = serve(routes(Some((&paywall, &option)), served.clone())).await;
    let twin = serve(routes::<RemoteFacilitator>(None, Arc::default())).await;
    Shop {
        chain,
        url: format!("http://{addr}"),
        addr,
        twin,
        http: reqwest::Client::new(),
        payee,
        served,
    }
}

/// A response read off the wire.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method target` as written, byte for byte, and reads the whole answer.
async fn send(addr: &str, method: &str, target: &str) -> Raw {
    let addr = addr.to_owned();
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Raw {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    })
    .await
    .unwrap()
}

impl Raw {
    fn challenge(&self) -> PaymentRequired {
        let value = self
            .head
            .lines()
            .find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(header::PAYMENT_REQUIRED.as_str())
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no challenge in {}", self.head));
        header::decode(&value).unwrap()
    }
}

impl Shop {
    async fn challenge(&self, path: &str) -> PaymentRequired {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 402);
        header::payment_required_from_headers(r.headers())
            .expect("PAYMENT-REQUIRED header")
            .unwrap()
    }

    async fn payment_header(&self, payer: usize, path: &str) -> String {
        let challenge = self.challenge(path).await;
        let payment = ExactEvmClient::new(TestChain::signer(payer))
            .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
            .await
            .unwrap();
        header::encode(&payment)
    }

    async fn paid_get(&self, path: &str, payment: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header("PAYMENT-SIGNATURE", payment)
            .send()
            .await
            .unwrap()
    }
}

/// Every spelling axum routes to a priced handler — asked of the free twin, not assumed —
/// gets `402` at that route's price, for `GET` and `HEAD`; no spelling runs a priced handler
/// unpaid.
#[tokio::test]
async fn every_request_axum_routes_to_a_priced_handler_pays() {
    let s = shop(SettlementMode::AfterHandler).await;
    let spellings = [
        "/weather",
        "/weather?city=paris",
        "/weather/",
        "//weather",
        "/%77eather",
        "/WEATHER",
        "/weather.json",
        "/x/../weather",
        "/./weather",
        "http://elsewhere.test/weather",
        "/reports/q3",
        "/reports/q3/",
        "/reports/%71%33",
        "/reports/q3/../../weather",
        "/reports/a/../..",
        "/reports//x",
    ];
    let mut routed = 0;
    for target in spellings {
        for method in ["GET", "HEAD"] {
            // What axum does with this spelling: the twin's handlers say which one ran.
            let twin = send(&s.twin, "GET", target).await;
            let handler = [WEATHER, REPORT]
                .into_iter()
                .find(|h| twin.status == 200 && twin.body.contains(h));
            let r = send(&s.addr, method, target).await;
            match handler {
                Some(handler) => {
                    routed += 1;
                    assert_eq!(r.status, 402, "{method} {target}: {}", r.head);
                    let amount = r.challenge().accepts[0].amount.0;
                    let expected = if handler == WEATHER {
                        PRICE
                    } else {
                        REPORT_PRICE
                    };
                    assert_eq!(amount, U256::from(expected), "{method} {target}");
                }
                // Not routed to a priced handler by axum: not a paid answer either.
                None => assert_ne!(r.status, 200, "{method} {target}: {}", r.head),
            }
        }
    }
    // axum 0.8 routes nine of these spellings to a priced handler (`/weather` with a query or
    // in absolute form; everything under `/reports/`, dot segments included), each by `GET`
    // and `HEAD`. Fewer would mean the twin stopped telling which handler ran.
    assert!(routed >= 2 * 9, "only {routed} routed requests");
    assert_eq!(
        s.served.load(Ordering::SeqCst),
        0,
        "a priced handler ran unpaid"
    );

    // A method the route has no handler for is axum's 405, not a price.
    let r = send(&s.addr, "POST", "/weather").await;
    assert_eq!(r.status, 405, "{}", r.head);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unpriced_sibling_route_is_free() {
    let s = shop(SettlementMode::AfterHandler).await;
    for method in ["GET", "HEAD"] {
        let r = send(&s.addr, method, "/health").await;
        assert_eq!(r.status, 200, "{method}: {}", r.head);
        assert!(!r.head.to_ascii_lowercase().contains("payment-required"));
    }
    assert_eq!(send(&s.addr, "GET", "/health").await.body, "ok");
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_paid_request_is_served_once_and_its_replay_is_refused() {
    let s = shop(SettlementMode::AfterHandler).await;
    let before = s.chain.usdc_balance(s.payee).await.unwrap();
    let payment = s.payment_header(4, "/weather").await;

    let r = s.paid_get("/weather", &payment).await;
    assert_eq!(r.status().as_u16(), 200);
    let receipt = header::settle_response_from_headers(r.headers())
        .expect("PAYMENT-RESPONSE header")
        .unwrap();
    assert!(receipt.success);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["handler"], WEATHER);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.chain.usdc_balance(s.payee).await.unwrap(),
        before + U256::from(PRICE)
    );

    // The same payment again, on the same route or another spelling axum routes there.
    for path in ["/weather", "/weather?again=1"] {
        let r = s.paid_get(path, &payment).await;
        assert_eq!(r.status().as_u16(), 402, "{path}");
        let challenge = header::payment_required_from_headers(r.headers())
            .unwrap()
            .unwrap();
        assert!(
            challenge
                .error
                .as_deref()
                .is_some_and(|e| e.contains("invalid_exact_evm_nonce_already_used")),
            "{path}: {:?}",
            challenge.error
        );
    }
    // Nor does it buy the dearer sibling route.
    let r = s.paid_get("/reports/q3", &payment).await;
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.chain.usdc_balance(s.payee).await.unwrap(),
        before + U256::from(PRICE)
    );
}

/// The route's layer settles in the paywall's mode: before the handler, the handler sees the
/// transaction.
#[tokio::test]
async fn a_route_layer_uses_the_paywalls_settlement_mode() {
    let s = shop(SettlementMode::BeforeHandler).await;
    let payment = s.payment_header(5, "/weather").await;
    let r = s.paid_get("/weather", &payment).await;
    assert_eq!(r.status().as_u16(), 200);
    let receipt = header::settle_response_from_headers(r.headers())
        .unwrap()
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tx"], receipt.transaction);
    assert_eq!(receipt.transaction.len(), 66);
}

/// A price with an unpayable payee, or with no option, is refused when the route is priced.
#[test]
fn a_route_price_is_checked_when_made() {
    let paywall = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:9"));
    let option = PaymentOption::atomic(
        U256::from(1u64),
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        tollgate_proto::Network::eip155(31337),
        "0xSELLER",
        None,
    );
    let err = paywall
        .price(RoutePrice::new(option.clone()))
        .err()
        .unwrap();
    assert!(matches!(err, PriceError::BadPayTo { .. }), "{err}");
    let mut empty = RoutePrice::new(option);
    empty.options.clear();
    assert_eq!(paywall.price(empty).err().unwrap(), PriceError::NoOptions);
}
