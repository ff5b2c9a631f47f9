//! One payment, one delivery; paid means served. The paywall against the real facilitator on a
//! real chain (anvil, or the embedded devnet with `TOLLGATE_TEST_CHAIN=devnet`; the slow-chain
//! tests always use the devnet, which can hold blocks back):
//!
//! - a lost `/settle` response is recovered by the paywall's retry with the same attempt key,
//!   and a different key is refused for that payment;
//! - a settlement that outlives the exchange (a chain slower than the facilitator's receipt
//!   wait) keeps the handler's response: `402 settlement_pending` + `Retry-After` until the
//!   block is mined, then the kept response with its receipt; the handler runs once;
//! - re-encoded copies of one payment sent at once to one paywall, and copies sent at once to
//!   several paywalls sharing one facilitator, are served once;
//! - paid responses are `Cache-Control: private, no-store`, challenges `no-store`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::{header, FacilitatorRequest, PaymentPayload, PaymentRequired, SettleResponse};
use tollgate_server::{
    FacilitatorClient, PaymentOption, PaywallLayer, PendingConfig, RemoteFacilitator, RoutePrice,
    SettlementMode,
};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;
const BODY: &str = "the paid report";

alloy::sol! {
    #[sol(rpc)]
    interface IErc20 {
        function balanceOf(address account) external view returns (uint256);
    }
}

/// Where payments go.
fn payee() -> Address {
    TestChain::address(9)
}

/// The priced option for `token` on `network`.
fn option(network: &str, token: Address) -> PaymentOption {
    PaymentOption::atomic(
        U256::from(PRICE),
        &token.to_string(),
        network.parse().unwrap(),
        &payee().to_string(),
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

/// Serves `app` on a free loopback port; the server task ends with the test's runtime.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// An app selling `GET /report` through `layer`; `served` counts handler runs. The handler
/// takes `delay`, so concurrent copies overlap, and asks caches to keep its answer (which a
/// paid response must not let them do).
async fn shop<F: FacilitatorClient>(
    layer: PaywallLayer<F>,
    option: PaymentOption,
    served: Arc<AtomicUsize>,
    delay: Duration,
) -> String {
    let layer = layer.route("GET /report", RoutePrice::new(option)).unwrap();
    let app = Router::new()
        .route(
            "/report",
            get(move || {
                let served = served.clone();
                async move {
                    served.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    ([("cache-control", "public, max-age=3600")], BODY)
                }
            }),
        )
        .route(
            "/free",
            get(|| async { ([("cache-control", "public, max-age=60")], "free") }),
        )
        .layer(layer);
    format!("http://{}", serve(app).await)
}

/// Signs a payment of `/report` at `url` by dev account `payer`: the `PAYMENT-SIGNATURE` value.
async fn pay(http: &reqwest::Client, url: &str, payer: usize) -> String {
    let r = http.get(format!("{url}/report")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(
        r.headers()["cache-control"],
        "no-store",
        "a challenge is not cacheable"
    );
    let challenge: PaymentRequired = header::payment_required_from_headers(r.headers())
        .unwrap()
        .unwrap();
    let payment = ExactEvmClient::new(TestChain::signer(payer))
        .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
        .await
        .unwrap();
    header::encode(&payment)
}

async fn get_report(http: &reqwest::Client, url: &str, payment: &str) -> reqwest::Response {
    http.get(format!("{url}/report"))
        .header("PAYMENT-SIGNATURE", payment)
        .send()
        .await
        .unwrap()
}

/// The challenge's `error` of a 402.
fn reason(r: &reqwest::Response) -> String {
    header::payment_required_from_headers(r.headers())
        .expect("a 402 carries PAYMENT-REQUIRED")
        .unwrap()
        .error
        .unwrap_or_default()
}

/// The same payment spelled differently: hex digits upper-cased in field `variant % 5`
/// (signature, nonce, from, to, all of them), keys in another order.
fn reencode(payment: &str, variant: usize) -> String {
    let mut value: Value = header::decode(payment).unwrap();
    let upper = |v: &mut Value| {
        let s = v.as_str().unwrap();
        *v = Value::String(format!("0x{}", s[2..].to_ascii_uppercase()));
    };
    let payload = value["payload"].as_object_mut().unwrap();
    match variant % 5 {
        0 => upper(payload.get_mut("signature").unwrap()),
        1 => upper(&mut payload["authorization"]["nonce"]),
        2 => upper(&mut payload["authorization"]["from"]),
        3 => upper(&mut payload["authorization"]["to"]),
        _ => {
            upper(payload.get_mut("signature").unwrap());
            for field in ["nonce", "from", "to"] {
                upper(&mut payload["authorization"][field]);
            }
        }
    }
    // Re-insert the payload's keys in reverse order.
    let reversed: serde_json::Map<String, Value> =
        std::mem::take(payload).into_iter().rev().collect();
    *payload = reversed;
    let encoded = header::encode(&value);
    assert_ne!(encoded, payment, "variant {variant} is a new spelling");
    encoded
}

async fn token_balance(rpc: &str, token: Address, who: Address) -> U256 {
    let provider = alloy::providers::ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    IErc20::new(token, &provider)
        .balanceOf(who)
        .call()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// A lost /settle response.

/// Each forwarded request's path and `Idempotency-Key`.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A TCP forwarder between a paywall and a facilitator that reads each HTTP/1.1 exchange
/// (bodies framed by `Content-Length`, as both sides send them) and drops the connection,
/// response unsent, after forwarding the first `/settle`. It records each request's path and
/// `Idempotency-Key`.
struct LossyForwarder {
    url: String,
    seen: Log,
}

impl LossyForwarder {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Log = Arc::default();
        let settles = Arc::new(AtomicUsize::new(0));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target, log.clone(), settles.clone()));
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, seen: Log, settles: Arc<AtomicUsize>) {
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let (mut from_client, mut from_upstream) = (Vec::new(), Vec::new());
    loop {
        let Some((head, request)) = read_message(&mut client, &mut from_client).await else {
            return;
        };
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_owned();
        let key = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("idempotency-key")
                .then(|| value.trim().to_owned())
        });
        seen.lock().unwrap().push((path.clone(), key));
        if upstream.write_all(&request).await.is_err() {
            return;
        }
        let Some((_, response)) = read_message(&mut upstream, &mut from_upstream).await else {
            return;
        };
        if path == "/settle" && settles.fetch_add(1, Ordering::SeqCst) == 0 {
            // The facilitator has answered; the paywall never hears it.
            return;
        }
        if client.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 message (head and `Content-Length` body) from `stream`, keeping extra
/// bytes in `buf`; `None` at end of stream.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            assert!(
                !head.to_ascii_lowercase().contains("transfer-encoding"),
                "the forwarder only frames Content-Length bodies: {head}"
            );
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            if buf.len() >= total {
                let message: Vec<u8> = buf.drain(..total).collect();
                return Some((head, message));
            }
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn a_lost_settle_response_is_recovered_with_the_same_key_and_another_key_is_refused() {
    let chain = TestChain::start().await.unwrap();
    let facilitator = in_process(&chain.endpoint(), Duration::from_secs(30)).await;
    let facilitator_addr = serve(tollgate_facilitator::http::router(
        facilitator,
        Default::default(),
    ))
    .await;
    let forwarder = LossyForwarder::start(facilitator_addr).await;
    let served = Arc::new(AtomicUsize::new(0));
    let url = shop(
        PaywallLayer::new(RemoteFacilitator::new(&forwarder.url)),
        option(&chain.caip2(), chain.usdc),
        served.clone(),
        Duration::ZERO,
    )
    .await;
    let http = reqwest::Client::new();
    let before = chain.usdc_balance(payee()).await.unwrap();
    let payment = pay(&http, &url, 1).await;

    let r = get_report(&http, &url, &payment).await;
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.headers());
    let receipt: SettleResponse = header::settle_response_from_headers(r.headers())
        .expect("PAYMENT-RESPONSE")
        .unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.transaction.len(), 66);
    assert_eq!(r.text().await.unwrap(), BODY);
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(
        chain.usdc_balance(payee()).await.unwrap(),
        before + U256::from(PRICE),
        "one transfer"
    );

    // One verify and two settles went through, all under one attempt key.
    let seen = forwarder.seen();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/verify", "/settle", "/settle"], "{seen:?}");
    let key = seen[0].1.clone().expect("the paywall names its attempt");
    assert!(
        key.parse::<tollgate_proto::IdempotencyKey>().is_ok(),
        "{key}"
    );
    assert!(
        seen.iter().all(|(_, k)| k.as_deref() == Some(key.as_str())),
        "{seen:?}"
    );

    // Anyone else asking to settle this payment — with another key, or none — is refused.
    let payment: PaymentPayload = header::decode(&payment).unwrap();
    let body = FacilitatorRequest::V2 {
        payment_requirements: payment.accepted.clone(),
        payment_payload: payment,
    };
    for other in [Some("another_attempt_0123456789"), None] {
        let mut request = http
            .post(format!("http://{facilitator_addr}/settle"))
            .json(&body);
        if let Some(k) = other {
            request = request.header("Idempotency-Key", k);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let answer: SettleResponse = r.json().await.unwrap();
        assert!(
            !answer.success,
            "key {other:?} was told the payment settled for it"
        );
        assert_eq!(status, 400, "{answer:?}");
    }
    // The same key still gets the original settlement.
    let r = http
        .post(format!("http://{facilitator_addr}/settle"))
        .header("Idempotency-Key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let again: SettleResponse = r.json().await.unwrap();
    assert!(again.success);
    assert_eq!(again.transaction, receipt.transaction);
    assert_eq!(
        chain.usdc_balance(payee()).await.unwrap(),
        before + U256::from(PRICE)
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // The key names that one payment: with another, the facilitator answers 409, which the
    // client reads as a refusal (a spec body), not as an outage to retry.
    let remote = RemoteFacilitator::new(&format!("http://{facilitator_addr}"));
    let other: PaymentPayload = header::decode(&pay(&http, &url, 2).await).unwrap();
    let other = FacilitatorRequest::V2 {
        payment_requirements: other.accepted.clone(),
        payment_payload: other,
    };
    let key: tollgate_proto::IdempotencyKey = key.parse().unwrap();
    let answer = remote
        .verify(&other, Some(&key))
        .await
        .expect("a 409 is an answer");
    assert!(!answer.is_valid);
    assert_eq!(
        answer.invalid_reason,
        Some(tollgate_proto::ErrorReason::PaymentIdentifierConflict)
    );
}

// ---------------------------------------------------------------------------------------------
// A chain slower than the facilitator's receipt wait.

/// The embedded devnet mining only when told (its interval, an hour, is far beyond every
/// timeout here), a facilitator waiting 1 s for receipts, and a paywall in `mode`.
struct SlowChain {
    devnet: tollgate_devnet::Devnet,
    url: String,
    served: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl SlowChain {
    async fn start(mode: SettlementMode) -> Self {
        let devnet = tollgate_devnet::Devnet::builder()
            .automine(false)
            .block_time(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        let facilitator = in_process(&devnet.url(), Duration::from_secs(1)).await;
        let served = Arc::new(AtomicUsize::new(0));
        let layer = PaywallLayer::new(facilitator)
            .settlement_mode(mode)
            .pending_responses(PendingConfig {
                retry_after: Duration::from_secs(2),
                ..PendingConfig::default()
            })
            .unwrap();
        let url = shop(
            layer,
            option(&devnet.caip2(), devnet.token()),
            served.clone(),
            Duration::ZERO,
        )
        .await;
        Self {
            devnet,
            url,
            served,
            http: reqwest::Client::new(),
        }
    }

    async fn mine(&self) {
        let r: Value = self
            .http
            .post(self.devnet.url())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(r.get("error").is_none(), "{r}");
    }

    async fn balance(&self) -> U256 {
        token_balance(&self.devnet.url(), self.devnet.token(), payee()).await
    }

    /// A `402 settlement_pending` with `Retry-After` and nothing of the handler's body.
    async fn assert_pending(&self, r: reqwest::Response) {
        assert_eq!(r.status().as_u16(), 402);
        let why = reason(&r);
        assert!(why.contains("settlement_pending"), "{why}");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers().get("payment-response").is_none());
        assert!(!r.text().await.unwrap().contains(BODY));
    }
}

#[tokio::test]
async fn a_slow_chain_delivers_the_kept_response_on_retry_and_runs_the_handler_once() {
    let s = SlowChain::start(SettlementMode::AfterHandler).await;
    let before = s.balance().await;
    let payment = pay(&s.http, &s.url, 2).await;

    // The transfer is sent, its receipt is late: not delivered yet, not lost either.
    s.assert_pending(get_report(&s.http, &s.url, &payment).await)
        .await;
    assert_eq!(s.served.load(Ordering::SeqCst), 1);

    // Retries while pending — the same header, a re-encoded copy, both at once — wait too;
    // the handler does not run again.
    let copy = reencode(&payment, 4);
    let (a, b) = tokio::join!(
        get_report(&s.http, &s.url, &payment),
        get_report(&s.http, &s.url, &copy),
    );
    s.assert_pending(a).await;
    s.assert_pending(b).await;
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(s.balance().await, before, "nothing mined yet");

    s.mine().await;
    let r = get_report(&s.http, &s.url, &payment).await;
    assert_eq!(r.status().as_u16(), 200);
    let receipt = header::settle_response_from_headers(r.headers())
        .expect("PAYMENT-RESPONSE")
        .unwrap();
    assert!(receipt.success);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(r.text().await.unwrap(), BODY);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(s.balance().await, before + U256::from(PRICE));

    // Delivered once: the kept response is gone, and the payment is used.
    let r = get_report(&s.http, &s.url, &payment).await;
    assert_eq!(r.status().as_u16(), 402);
    assert!(!reason(&r).contains("settlement_pending"), "{}", reason(&r));
    assert!(!r.text().await.unwrap().contains(BODY));
    s.mine().await;
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.balance().await,
        before + U256::from(PRICE),
        "money moved once"
    );
}

#[tokio::test]
async fn settling_before_the_handler_on_a_slow_chain_runs_it_once_settled() {
    let s = SlowChain::start(SettlementMode::BeforeHandler).await;
    let before = s.balance().await;
    let payment = pay(&s.http, &s.url, 3).await;
    s.assert_pending(get_report(&s.http, &s.url, &payment).await)
        .await;
    s.assert_pending(get_report(&s.http, &s.url, &payment).await)
        .await;
    assert_eq!(s.served.load(Ordering::SeqCst), 0, "not paid yet: not run");

    s.mine().await;
    let r = get_report(&s.http, &s.url, &payment).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(header::settle_response_from_headers(r.headers()).is_some());
    assert_eq!(r.text().await.unwrap(), BODY);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(s.balance().await, before + U256::from(PRICE));

    let r = get_report(&s.http, &s.url, &payment).await;
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Copies of one payment at once.

/// Sends every header in `payments` to the matching URL at once; the statuses.
async fn all_at_once(http: &reqwest::Client, sends: &[(String, String)]) -> Vec<(u16, String)> {
    let calls = sends.iter().map(|(url, payment)| async move {
        let r = get_report(http, url, payment).await;
        let status = r.status().as_u16();
        let text = if status == 402 {
            reason(&r)
        } else {
            String::new()
        };
        let body = r.text().await.unwrap();
        if status != 200 {
            assert!(!body.contains(BODY), "a {status} leaked the body");
        }
        (status, text)
    });
    futures::future::join_all(calls).await
}

#[tokio::test]
async fn re_encoded_copies_sent_at_once_to_one_paywall_are_served_once() {
    let chain = TestChain::start().await.unwrap();
    let facilitator = in_process(&chain.endpoint(), Duration::from_secs(30)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let url = shop(
        PaywallLayer::new(facilitator),
        option(&chain.caip2(), chain.usdc),
        served.clone(),
        Duration::from_millis(300),
    )
    .await;
    let http = reqwest::Client::new();
    let before = chain.usdc_balance(payee()).await.unwrap();
    let payment = pay(&http, &url, 4).await;
    let mut sends = vec![(url.clone(), payment.clone())];
    sends.extend((0..10).map(|i| (url.clone(), reencode(&payment, i))));

    let answers = all_at_once(&http, &sends).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 402),
        "{answers:?}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1, "{answers:?}");
    assert_eq!(
        chain.usdc_balance(payee()).await.unwrap(),
        before + U256::from(PRICE)
    );
}

#[tokio::test]
async fn copies_sent_at_once_to_several_paywalls_sharing_a_facilitator_are_served_once() {
    let chain = TestChain::start().await.unwrap();
    let facilitator = in_process(&chain.endpoint(), Duration::from_secs(30)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let mut urls = Vec::new();
    for _ in 0..3 {
        urls.push(
            shop(
                PaywallLayer::new(facilitator.clone()),
                option(&chain.caip2(), chain.usdc),
                served.clone(),
                Duration::from_millis(300),
            )
            .await,
        );
    }
    let http = reqwest::Client::new();
    let before = chain.usdc_balance(payee()).await.unwrap();
    let payment = pay(&http, &urls[0], 5).await;
    let mut sends = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        sends.push((url.clone(), payment.clone()));
        sends.push((url.clone(), payment.clone()));
        sends.push((url.clone(), reencode(&payment, i)));
    }

    let answers = all_at_once(&http, &sends).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 402),
        "{answers:?}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1, "{answers:?}");
    assert_eq!(
        chain.usdc_balance(payee()).await.unwrap(),
        before + U256::from(PRICE)
    );
}

// ---------------------------------------------------------------------------------------------
// Caching.

#[tokio::test]
async fn paid_responses_are_private_and_uncacheable() {
    let chain = TestChain::start().await.unwrap();
    let facilitator = in_process(&chain.endpoint(), Duration::from_secs(30)).await;
    let served = Arc::new(AtomicUsize::new(0));
    let url = shop(
        PaywallLayer::new(facilitator),
        option(&chain.caip2(), chain.usdc),
        served.clone(),
        Duration::ZERO,
    )
    .await;
    let http = reqwest::Client::new();
    let payment = pay(&http, &url, 6).await;
    let r = get_report(&http, &url, &payment).await;
    assert_eq!(r.status().as_u16(), 200);
    let values: Vec<_> = r.headers().get_all("cache-control").iter().collect();
    assert_eq!(
        values,
        ["private, no-store"],
        "the handler's value is replaced"
    );

    // A refused payment's 402 is not cacheable either.
    let r = get_report(&http, &url, &payment).await;
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(r.headers()["cache-control"], "no-store");

    // Free routes are left alone.
    let r = http.get(format!("{url}/free")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
}
