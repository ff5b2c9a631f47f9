//! A hostile buyer against the paywall layer: variants of "served unpaid", "served twice for
//! one payment" and "a panic or a 500 on bad input" that the issue did not list.
//!
//! Requests that need exact bytes on the wire (paths, duplicate headers, pipelining) go over a
//! raw TCP socket; payments are real (signed by dev accounts, verified and settled by the
//! in-process facilitator on anvil, or the embedded devnet with `TOLLGATE_TEST_CHAIN=devnet`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_proto::U256;
use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};

/// A response read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Writes `request` as given and reads until the server closes the connection; every
/// response found in the bytes, in order.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<Raw> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers and closes within a minute")
        .unwrap();
    parse_responses(&bytes)
}

/// Splits HTTP/1.1 responses framed by `Content-Length` (or ending at the close).
fn parse_responses(mut bytes: &[u8]) -> Vec<Raw> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length = head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        });
        let rest = &bytes[end + 4..];
        let take = length.unwrap_or(rest.len()).min(rest.len());
        out.push(Raw {
            status,
            head,
            body: String::from_utf8_lossy(&rest[..take]).into_owned(),
        });
        bytes = &rest[take..];
    }
    out
}

/// One `GET`-like request with `Connection: close`.
async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    exchange(addr, request.as_bytes())
        .await
        .into_iter()
        .next()
        .expect("one response")
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A price on a closed port's facilitator: unpaid requests are answered from the paywall's
/// own challenge, and anything that did reach the facilitator would fail loudly.
fn closed_facilitator() -> RemoteFacilitator {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    RemoteFacilitator::new(&format!("http://{closed}"))
}

fn fixed_option() -> PaymentOption {
    PaymentOption::atomic(
        U256::from(10_000u64),
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        tollgate_proto::Network::eip155(31337),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// Routing before the paywall.

/// `Router::layer` runs the paywall *after* axum has routed the request on its raw path (axum
/// documents that middleware added this way cannot rewrite the URI for routing). A raw path
/// that axum hands to a priced wildcard handler must not be priced as whatever its canonical
/// form resolves to.
#[tokio::test]
async fn a_path_routed_before_the_paywall_is_priced_as_routed_or_refused() {
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let layer = PaywallLayer::new(closed_facilitator())
        .route("GET /reports/*", RoutePrice::new(fixed_option()))
        .unwrap();
    let app = Router::new()
        .route(
            "/reports/{*name}",
            get(move |Path(name): Path<String>| {
                let s = s.clone();
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    // The report is named by the first segment.
                    let id = name.split('/').next().unwrap_or("").to_owned();
                    format!("PAID REPORT {id}")
                }
            }),
        )
        .route("/", get(|| async { "home" }))
        .route("/free", get(|| async { "free" }))
        .layer(layer);
    let addr = serve(app).await;

    let mut wrong = Vec::new();
    for target in [
        "/reports/q3",
        "/reports/q3/../..",
        "/reports/q3/%2e%2e/%2E%2E",
        "/reports/q3/../../free",
        "/reports/q3/..%2f..",
        "/reports/q3//../..",
        "/reports/q3/./../../",
        "/reports/../free",
        "/reports/%2e%2e/free",
    ] {
        let r = send(addr, "GET", target, &[]).await;
        if r.status != 402 && r.status != 400 || r.body.contains("PAID REPORT") {
            wrong.push(format!("GET {target}: {} {}", r.status, r.body));
        }
    }
    assert!(wrong.is_empty(), "served unpaid:\n{}", wrong.join("\n"));
    assert_eq!(served.load(Ordering::SeqCst), 0, "the priced handler ran");
    // Free routes stay free, also in odd spellings that do not cross a priced route.
    assert_eq!(send(addr, "GET", "/free", &[]).await.status, 200);
    assert_eq!(send(addr, "GET", "/x/../free", &[]).await.status, 404);
}

// ---------------------------------------------------------------------------------------------
// Paying shops on a real chain.

use alloy::primitives::Address;
use serde_json::{json, Value};
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::{header, PaymentPayload, PaymentRequired};
use tollgate_server::{DynamicPrice, FacilitatorClient, PendingConfig, SettlementMode};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;
const DEAR: u64 = 40_000;

fn option_for(network: &str, token: Address, amount: u64) -> PaymentOption {
    PaymentOption::atomic(
        U256::from(amount),
        &token.to_string(),
        network.parse().unwrap(),
        &TestChain::address(9).to_string(),
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    )
}

async fn in_process(rpc: &str, receipt_timeout: Duration) -> Facilitator {
    let scheme = ExactEvmFacilitator::connect(
        rpc,
        TestChain::signer(0),
        FacilitatorConfig {
            receipt_timeout,
            ..FacilitatorConfig::default()
        },
    )
    .await
    .unwrap();
    Facilitator::new(vec![scheme], Ledger::in_memory().unwrap())
}

/// A shop selling `GET /report` and `GET /other` at [`PRICE`], and `GET /sized?size=…` at a
/// price set per request (`large` is [`DEAR`]), through `layer`; `served` counts runs of the
/// priced handlers.
async fn shop<F: FacilitatorClient>(
    layer: PaywallLayer<F>,
    network: &str,
    token: Address,
    served: Arc<AtomicUsize>,
) -> SocketAddr {
    let cheap = option_for(network, token, PRICE);
    let dear = option_for(network, token, DEAR);
    let sized: DynamicPrice = Arc::new(move |request| {
        let large = request.uri().query().unwrap_or("").contains("size=large");
        let option = if large { dear.clone() } else { cheap.clone() };
        Box::pin(async move { Some(RoutePrice::new(option)) })
    });
    let layer = layer
        .route(
            "GET /report",
            RoutePrice::new(option_for(network, token, PRICE)),
        )
        .unwrap()
        .route(
            "GET /other",
            RoutePrice::new(option_for(network, token, PRICE)),
        )
        .unwrap()
        .dynamic_route("GET /sized", sized)
        .unwrap();
    let handler = |name: &'static str| {
        let served = served.clone();
        get(move || {
            let served = served.clone();
            async move {
                served.fetch_add(1, Ordering::SeqCst);
                format!("PAID {name}")
            }
        })
    };
    let app = Router::new()
        .route("/report", handler("report"))
        .route("/other", handler("other"))
        .route("/sized", handler("sized"))
        .layer(layer);
    serve(app).await
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn reason(&self) -> String {
        self.header("payment-required")
            .and_then(|v| header::decode::<PaymentRequired>(v).ok())
            .and_then(|c| c.error)
            .unwrap_or_default()
    }
}

/// A payment for `target` at `shop`, signed by dev account `payer`.
async fn pay(shop: SocketAddr, target: &str, payer: usize) -> PaymentPayload {
    let r = send(shop, "GET", target, &[]).await;
    assert_eq!(r.status, 402, "{target}: {}", r.head);
    let challenge: PaymentRequired = header::decode(r.header("payment-required").unwrap()).unwrap();
    ExactEvmClient::new(TestChain::signer(payer))
        .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
        .await
        .unwrap()
}

/// `value` in the URL-safe base64 alphabet without padding.
fn url_safe(value: &str) -> String {
    value
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// The payload's hex strings upper-cased and its keys reversed.
fn shouted(payment: &Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if s.starts_with("0x") => {
                *s = format!("0x{}", s[2..].to_ascii_uppercase());
            }
            Value::Object(o) => {
                let reversed: serde_json::Map<String, Value> = std::mem::take(o)
                    .into_iter()
                    .rev()
                    .map(|(k, mut v)| {
                        walk(&mut v);
                        (k, v)
                    })
                    .collect();
                *o = reversed;
            }
            _ => {}
        }
    }
    let mut out = payment.clone();
    walk(&mut out["payload"]);
    out
}

/// Spellings of one payment: (header, value).
fn spellings(payment: &PaymentPayload) -> Vec<(&'static str, String)> {
    let v2 = header::encode(payment);
    let loud = header::encode(&shouted(&serde_json::to_value(payment).unwrap()));
    let v1 = PaymentPayloadV1::from_v2(payment);
    let v1_encoded = header::encode(&v1);
    vec![
        ("PAYMENT-SIGNATURE", v2.clone()),
        ("PAYMENT-SIGNATURE", url_safe(&v2)),
        ("PAYMENT-SIGNATURE", loud.clone()),
        ("PAYMENT-SIGNATURE", url_safe(&loud)),
        ("X-PAYMENT", v1_encoded.clone()),
        (
            "X-PAYMENT",
            header::encode(&shouted(&serde_json::to_value(&v1).unwrap())),
        ),
        ("PAYMENT-SIGNATURE", v1_encoded),
    ]
}

async fn send_owned(
    addr: SocketAddr,
    method: &str,
    target: &str,
    name: &str,
    value: String,
) -> Raw {
    send(addr, method, target, &[(name, &value)]).await
}

/// Settling before the handler, two paywalls (replicas) sharing one facilitator: every spelling
/// of one payment, v1 and v2, at once, at both routes of its price → one delivery.
#[tokio::test]
async fn copies_at_once_to_two_settle_first_replicas_are_served_once() {
    let chain = TestChain::start().await.unwrap();
    let facilitator = in_process(&chain.endpoint(), Duration::from_secs(30)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let mut shops = Vec::new();
    for _ in 0..2 {
        let layer =
            PaywallLayer::new(facilitator.clone()).settlement_mode(SettlementMode::BeforeHandler);
        shops.push(shop(layer, &chain.caip2(), chain.usdc, served.clone()).await);
    }
    let before = chain.usdc_balance(TestChain::address(9)).await.unwrap();
    let payment = pay(shops[0], "/report", 3).await;
    let mut sends = Vec::new();
    for round in 0..3 {
        for (i, (name, value)) in spellings(&payment).into_iter().enumerate() {
            let target = if (i + round) % 3 == 0 {
                "/other"
            } else {
                "/report"
            };
            sends.push(send_owned(
                shops[(i + round) % 2],
                "GET",
                target,
                name,
                value,
            ));
        }
    }
    let answers = futures::future::join_all(sends).await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{answers:#?}");
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 402, "{r:?}");
        assert!(!r.reason().is_empty());
        assert!(!r.body.contains("PAID"));
    }
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(
        chain.usdc_balance(TestChain::address(9)).await.unwrap(),
        before + U256::from(PRICE)
    );
}

/// A per-request price: the cheap quote's payment does not buy the dear quote, whatever its
/// `accepted` says; the browser page never swallows a payment.
#[tokio::test]
async fn a_dynamic_price_cannot_be_paid_with_a_cheaper_quote() {
    let chain = TestChain::start().await.unwrap();
    let facilitator = in_process(&chain.endpoint(), Duration::from_secs(30)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let layer = PaywallLayer::new(facilitator).browser_wallet("/* a wallet */");
    let s = shop(layer, &chain.caip2(), chain.usdc, served.clone()).await;
    let before = chain.usdc_balance(TestChain::address(9)).await.unwrap();

    let cheap = pay(s, "/sized?size=small", 4).await;
    let dear = {
        let r = send(s, "GET", "/sized?size=large", &[]).await;
        header::decode::<PaymentRequired>(r.header("payment-required").unwrap()).unwrap()
    };
    assert_eq!(dear.accepts[0].amount.to_string(), DEAR.to_string());
    let mut forged = cheap.clone();
    forged.accepted = dear.accepts[0].clone();
    let v1 = header::encode(&PaymentPayloadV1::from_v2(&cheap));
    for (name, value) in [
        ("PAYMENT-SIGNATURE", header::encode(&cheap)),
        ("PAYMENT-SIGNATURE", header::encode(&forged)),
        ("X-PAYMENT", v1.clone()),
    ] {
        for target in ["/sized?size=large", "/sized?size=small&size=large"] {
            let r = send(s, "GET", target, &[(name, &value)]).await;
            assert_eq!(r.status, 402, "{name} at {target}: {}", r.body);
        }
    }
    assert_eq!(served.load(Ordering::SeqCst), 0);
    assert_eq!(
        chain.usdc_balance(TestChain::address(9)).await.unwrap(),
        before
    );

    // A browser's `Accept` with a payment is a payment, not a page; once.
    let html = ("Accept", "text/html,application/xhtml+xml");
    let r = send(s, "GET", "/sized?size=small", &[html, ("X-PAYMENT", &v1)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "PAID sized");
    let r = send(
        s,
        "GET",
        "/sized?size=small",
        &[html, ("PAYMENT-SIGNATURE", &header::encode(&cheap))],
    )
    .await;
    assert_eq!(r.status, 402);
    assert!(!r.body.contains("PAID"));
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(
        chain.usdc_balance(TestChain::address(9)).await.unwrap(),
        before + U256::from(PRICE)
    );
}

// ---------------------------------------------------------------------------------------------
// The store of responses awaiting settlement.

async fn mine(devnet: &tollgate_devnet::Devnet) {
    let r: Value = reqwest::Client::new()
        .post(devnet.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.get("error").is_none(), "{r}");
}

/// While a payment's settlement is pending, its kept response goes to the request that made
/// it and to nothing else: not another path, method or replica, not after delivery.
#[tokio::test]
async fn a_kept_response_is_delivered_once_and_only_where_it_was_bought() {
    let devnet = tollgate_devnet::Devnet::builder()
        .automine(false)
        .block_time(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let facilitator = in_process(&devnet.url(), Duration::from_secs(1)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let mut shops = Vec::new();
    for _ in 0..2 {
        let layer = PaywallLayer::new(facilitator.clone())
            .pending_responses(PendingConfig {
                retry_after: Duration::from_secs(1),
                ..PendingConfig::default()
            })
            .unwrap();
        shops.push(shop(layer, &devnet.caip2(), devnet.token(), served.clone()).await);
    }
    let (a, b) = (shops[0], shops[1]);
    let payment = pay(a, "/report", 5).await;
    let encoded = header::encode(&payment);
    let pending = |r: &Raw| r.status == 402 && r.reason().contains("settlement_pending");

    let r = send(a, "GET", "/report", &[("PAYMENT-SIGNATURE", &encoded)]).await;
    assert!(pending(&r), "{r:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // Elsewhere while pending: refused, and nothing runs.
    let elsewhere: &[(SocketAddr, &str, &str)] = &[
        (a, "GET", "/other"),
        (a, "HEAD", "/report"),
        (a, "get", "/report"),
        (a, "GET", "/report?x=1"),
        (a, "GET", "/sized?size=small"),
        (b, "GET", "/report"),
        (b, "GET", "/other"),
    ];
    for (shop, method, target) in elsewhere {
        for (name, value) in spellings(&payment) {
            let r = send(*shop, method, target, &[(name, &value)]).await;
            assert_eq!(r.status, 402, "{method} {target} {name}: {r:?}");
            assert!(!r.body.contains("PAID"), "{method} {target}: {}", r.body);
        }
    }
    assert_eq!(served.load(Ordering::SeqCst), 1, "nothing ran again");

    mine(&devnet).await;
    // Still not elsewhere once mined.
    for (shop, method, target) in elsewhere {
        let r = send(*shop, method, target, &[("PAYMENT-SIGNATURE", &encoded)]).await;
        assert_eq!(r.status, 402, "{method} {target}: {r:?}");
    }
    // The buyer's retry — here a v1 re-encoding of the same payment — gets the kept response.
    let v1 = header::encode(&shouted(
        &serde_json::to_value(PaymentPayloadV1::from_v2(&payment)).unwrap(),
    ));
    let r = send(a, "GET", "/report", &[("X-PAYMENT", &v1)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "PAID report");
    // Once.
    for (name, value) in spellings(&payment) {
        let r = send(a, "GET", "/report", &[(name, &value)]).await;
        assert_eq!(r.status, 402, "{name}: {r:?}");
    }
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// Transactions of the facilitator's signer waiting in the devnet's mempool.
async fn in_mempool(devnet: &tollgate_devnet::Devnet) -> usize {
    let r: Value = reqwest::Client::new()
        .post(devnet.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "txpool_content", "params": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["result"]["pending"].as_object().map_or(0, |by_sender| {
        by_sender
            .values()
            .filter_map(Value::as_object)
            .map(|n| n.len())
            .sum()
    })
}

/// A buyer whose connection drops while the settlement is in flight (a client timeout, a
/// flaky network) has paid: the retry with the same payment gets the response, the handler
/// having run once, and the money moved once.
async fn hang_up_during_settlement(mode: SettlementMode) {
    let devnet = tollgate_devnet::Devnet::builder()
        .automine(false)
        .block_time(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    // The facilitator waits long for the receipt: the settle call is in flight when the buyer
    // hangs up.
    let facilitator = in_process(&devnet.url(), Duration::from_secs(20)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let layer = PaywallLayer::new(facilitator.clone())
        .settlement_mode(mode)
        .pending_responses(PendingConfig {
            retry_after: Duration::from_secs(1),
            ..PendingConfig::default()
        })
        .unwrap();
    let s = shop(layer, &devnet.caip2(), devnet.token(), served.clone()).await;
    let payment = pay(s, "/report", 6).await;
    let encoded = header::encode(&payment);
    let earned = || async {
        let provider =
            alloy::providers::ProviderBuilder::new().connect_http(devnet.url().parse().unwrap());
        IErc20::new(devnet.token(), &provider)
            .balanceOf(TestChain::address(9))
            .call()
            .await
            .unwrap()
    };
    let before = earned().await;

    let mut stream = TcpStream::connect(s).await.unwrap();
    let request = format!(
        "GET /report HTTP/1.1\r\nHost: shop.test\r\nPAYMENT-SIGNATURE: {encoded}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Hang up once the transfer is sent (the facilitator is now waiting for its receipt).
    for _ in 0..200 {
        if in_mempool(&devnet).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(in_mempool(&devnet).await, 1, "the transfer is in flight");
    drop(stream);

    // A retry before the transfer is mined waits; nothing runs (again).
    let r = send(s, "GET", "/report", &[("PAYMENT-SIGNATURE", &encoded)]).await;
    assert_eq!(r.status, 402, "{r:?}");
    assert!(r.reason().contains("settlement_pending"), "{r:?}");
    let ran = served.load(Ordering::SeqCst);
    assert_eq!(ran, usize::from(mode == SettlementMode::AfterHandler));

    mine(&devnet).await;
    let mut last = None;
    for _ in 0..60 {
        let r = send(s, "GET", "/report", &[("PAYMENT-SIGNATURE", &encoded)]).await;
        if r.status == 402 && r.reason().contains("settlement_pending") {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        last = Some(r);
        break;
    }
    let r = last.expect("settled within 15 s");
    assert_eq!(r.status, 200, "paid, never served: {r:?}");
    assert_eq!(r.body, "PAID report");
    assert!(r.header("payment-response").is_some());
    assert_eq!(served.load(Ordering::SeqCst), 1, "the handler ran once");
    assert_eq!(earned().await, before + U256::from(PRICE));
    // Delivered once.
    let r = send(s, "GET", "/report", &[("PAYMENT-SIGNATURE", &encoded)]).await;
    assert_eq!(r.status, 402, "{r:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

alloy::sol! {
    #[sol(rpc)]
    interface IErc20 {
        function balanceOf(address account) external view returns (uint256);
    }
}

#[tokio::test]
async fn a_buyer_who_hangs_up_during_settlement_is_served_on_retry() {
    hang_up_during_settlement(SettlementMode::AfterHandler).await;
}

#[tokio::test]
async fn a_buyer_who_hangs_up_during_settlement_before_the_handler_is_served_on_retry() {
    hang_up_during_settlement(SettlementMode::BeforeHandler).await;
}
