//! The paywall in front of an axum app, with the real facilitator on a real anvil node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use axum::extract::Extension;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::{header, PaymentRequired, PaymentRequiredV1, SettleResponse};
use tollgate_server::{PaymentInfo, PaymentOption, PaywallLayer, RoutePrice, SettlementMode};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;

/// The payee of the second option on `GET /either`.
fn second_payee() -> Address {
    TestChain::address(8)
}

alloy::sol! {
    #[sol(rpc)]
    interface IErc20 {
        function balanceOf(address account) external view returns (uint256);
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// Moves the whole test-USDC balance of dev account `payer` to dev account 0.
async fn drain(rpc: &str, usdc: Address, payer: &str) {
    use alloy::providers::ProviderBuilder;
    let index = (0..10)
        .find(|&i| {
            TestChain::address(i)
                .to_string()
                .eq_ignore_ascii_case(payer)
        })
        .expect("payer is a dev account");
    let provider = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(TestChain::signer(
            index,
        )))
        .connect_http(rpc.parse().unwrap());
    let token = IErc20::new(usdc, &provider);
    let balance = token
        .balanceOf(TestChain::address(index))
        .call()
        .await
        .unwrap();
    let receipt = token
        .transfer(TestChain::address(0), balance)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
}

struct Shop {
    chain: TestChain,
    url: String,
    http: reqwest::Client,
    payee: Address,
    served: Arc<AtomicUsize>,
}

async fn shop(mode: SettlementMode) -> Shop {
    shop_with(mode, false).await
}

/// With `remote`, the paywall talks to the facilitator over HTTP instead of in-process.
async fn shop_with(mode: SettlementMode, remote: bool) -> Shop {
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
    if remote {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = tollgate_facilitator::http::router(facilitator, Default::default());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let layer = PaywallLayer::new(tollgate_server::RemoteFacilitator::new(&url));
        return finish_shop(chain, layer, option, mode, payee).await;
    }
    let layer = PaywallLayer::new(facilitator);
    finish_shop(chain, layer, option, mode, payee).await
}

async fn finish_shop<F: tollgate_server::FacilitatorClient>(
    chain: TestChain,
    layer: PaywallLayer<F>,
    option: PaymentOption,
    mode: SettlementMode,
    payee: Address,
) -> Shop {
    let layer = layer
        .route(
            "GET /weather",
            RoutePrice::new(option.clone())
                .description("Today's weather")
                .mime_type("application/json"),
        )
        .unwrap()
        .route("POST /fail", RoutePrice::new(option.clone()))
        .unwrap()
        .route(
            "GET /either",
            RoutePrice::new(option.clone()).or(PaymentOption::atomic(
                U256::from(2 * PRICE),
                &option.asset,
                option.network.clone(),
                &second_payee().to_string(),
                option.extra.clone(),
            )),
        )
        .unwrap()
        .route("GET /drain", RoutePrice::new(option.clone()))
        .unwrap()
        .dynamic_route(
            "GET /quote",
            std::sync::Arc::new(move |req: &axum::http::Request<axum::body::Body>| {
                // Price by `?size=N`: N thousandths of a cent; size 0 (or none) is free.
                let size: u64 = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("size="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let mut option = option.clone();
                option.amount = U256::from(size * 1_000);
                Box::pin(async move {
                    (size > 0).then(|| RoutePrice::new(option).description("A sized quote"))
                })
            }),
        )
        .unwrap()
        .settlement_mode(mode);
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let (rpc, usdc) = (chain.endpoint(), chain.usdc);
    let app = Router::new()
        .route(
            "/weather",
            get(move |Extension(info): Extension<PaymentInfo>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    // Let concurrent duplicates pile up while this one is in flight.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    axum::Json(json!({
                        "forecast": "sunny",
                        "payer": info.payer,
                        "tx": info.transaction,
                    }))
                }
            }),
        )
        .route(
            "/fail",
            post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/either",
            get(|Extension(info): Extension<PaymentInfo>| async move {
                format!("paid {}", info.amount)
            }),
        )
        .route(
            "/drain",
            get(move |Extension(info): Extension<PaymentInfo>| {
                let rpc = rpc.clone();
                async move {
                    // The payer spends its whole balance while the handler runs, so the
                    // settlement after the handler must fail.
                    drain(&rpc, usdc, info.payer.as_deref().unwrap()).await;
                    "SECRET CONTENT"
                }
            }),
        )
        .route("/free", get(|| async { "free" }))
        .route("/quote", get(|| async { "quote" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop {
        chain,
        url,
        http: reqwest::Client::new(),
        payee,
        served,
    }
}

impl Shop {
    async fn challenge(&self, method: reqwest::Method, path: &str) -> PaymentRequired {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 402);
        header::payment_required_from_headers(r.headers())
            .expect("PAYMENT-REQUIRED header")
            .unwrap()
    }

    async fn payment_header(&self, payer: usize, method: reqwest::Method, path: &str) -> String {
        let challenge = self.challenge(method, path).await;
        let payment = ExactEvmClient::new(TestChain::signer(payer))
            .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
            .await
            .unwrap();
        header::encode(&payment)
    }

    /// Sends `method path` carrying `payment` in `PAYMENT-SIGNATURE`.
    async fn with_payment(
        &self,
        method: reqwest::Method,
        path: &str,
        payment: impl AsRef<str>,
    ) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("PAYMENT-SIGNATURE", payment.as_ref())
            .send()
            .await
            .unwrap()
    }

    async fn balance(&self) -> U256 {
        self.chain.usdc_balance(self.payee).await.unwrap()
    }
}

#[tokio::test]
async fn unpaid_requests_get_a_402_in_both_versions() {
    let s = shop(SettlementMode::AfterHandler).await;
    let r = s
        .http
        .get(format!("{}/weather", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 402);
    let v2 = header::payment_required_from_headers(r.headers())
        .unwrap()
        .unwrap();
    assert_eq!(v2.accepts.len(), 1);
    assert_eq!(v2.accepts[0].amount.to_string(), PRICE.to_string());
    assert_eq!(v2.resource.description.as_deref(), Some("Today's weather"));
    assert!(v2.resource.url.ends_with("/weather"));
    let raw: serde_json::Value = r.json().await.unwrap();
    // No `"outputSchema": null`: the official v1 client (x402-fetch 1.2.0) refuses to pay a
    // 402 whose requirements carry it (docs/interop.md).
    assert!(
        raw["accepts"][0]
            .as_object()
            .unwrap()
            .get("outputSchema")
            .is_none(),
        "{raw}"
    );
    let body: PaymentRequiredV1 = serde_json::from_value(raw).unwrap();
    assert_eq!(
        body.accepts[0].max_amount_required.to_string(),
        PRICE.to_string()
    );
    assert_eq!(body.accepts[0].mime_type, "application/json");

    // Challenges are cached per request line: another query gets its own resource URL, and a
    // repeat gets the same bytes.
    for _ in 0..2 {
        let r = s
            .http
            .get(format!("{}/weather?city=paris", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 402);
        let v2 = header::payment_required_from_headers(r.headers())
            .unwrap()
            .unwrap();
        assert!(
            v2.resource.url.ends_with("/weather?city=paris"),
            "{}",
            v2.resource.url
        );
    }

    // Unpriced routes pass through untouched.
    let r = s.http.get(format!("{}/free", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Garbage in the payment header is a 402 that says why, not a 500.
    let r = s
        .http
        .get(format!("{}/weather", s.url))
        .header("payment-signature", "%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 402);
    let v2 = header::payment_required_from_headers(r.headers())
        .unwrap()
        .unwrap();
    assert!(v2.error.unwrap().contains("invalid payment header"));
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn v2_client_pays_and_gets_the_resource_and_a_receipt() {
    let s = shop(SettlementMode::AfterHandler).await;
    let before = s.balance().await;
    let payment = s.payment_header(1, reqwest::Method::GET, "/weather").await;
    let r = s
        .with_payment(reqwest::Method::GET, "/weather", payment)
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let receipt: SettleResponse = header::settle_response_from_headers(r.headers())
        .expect("PAYMENT-RESPONSE")
        .unwrap();
    assert!(receipt.success);
    assert_eq!(
        receipt.payer.as_deref(),
        Some(TestChain::address(1).to_string().as_str())
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["forecast"], "sunny");
    assert_eq!(body["payer"], TestChain::address(1).to_string());
    assert_eq!(s.balance().await, before + U256::from(PRICE));
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn v1_client_pays_the_same_route() {
    let s = shop(SettlementMode::AfterHandler).await;
    let before = s.balance().await;
    // A v1 client reads the JSON body and pays with X-PAYMENT.
    let r = s
        .http
        .get(format!("{}/weather", s.url))
        .send()
        .await
        .unwrap();
    let body: PaymentRequiredV1 = r.json().await.unwrap();
    let (requirements, resource) = body.accepts[0].to_v2();
    let payment = ExactEvmClient::new(TestChain::signer(2))
        .sign(&requirements, Some(resource))
        .await
        .unwrap();
    let v1 = PaymentPayloadV1::from_v2(&payment);
    let r = s
        .http
        .get(format!("{}/weather", s.url))
        .header("X-PAYMENT", header::encode(&v1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("x-payment-response").is_some());
    assert!(r.headers().get("payment-response").is_none());
    let receipt = header::settle_response_from_headers(r.headers())
        .unwrap()
        .unwrap();
    assert!(receipt.success);
    assert_eq!(s.balance().await, before + U256::from(PRICE));
}

#[tokio::test]
async fn handler_errors_are_not_charged() {
    let s = shop(SettlementMode::AfterHandler).await;
    let before = s.balance().await;
    let payment = s.payment_header(3, reqwest::Method::POST, "/fail").await;
    let r = s
        .with_payment(reqwest::Method::POST, "/fail", payment)
        .await;
    assert_eq!(r.status().as_u16(), 500);
    assert!(r.headers().get("payment-response").is_none());
    assert_eq!(s.balance().await, before);
}

#[tokio::test]
async fn one_payment_sent_many_times_is_served_once() {
    let s = shop(SettlementMode::AfterHandler).await;
    let before = s.balance().await;
    let payment = s.payment_header(4, reqwest::Method::GET, "/weather").await;
    let calls = (0..12).map(|_| {
        s.http
            .get(format!("{}/weather", s.url))
            .header("PAYMENT-SIGNATURE", payment.clone())
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        11,
        "{statuses:?}"
    );
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(s.balance().await, before + U256::from(PRICE));

    // A later reuse is refused with the chain's reason.
    let r = s
        .with_payment(reqwest::Method::GET, "/weather", payment)
        .await;
    assert_eq!(r.status().as_u16(), 402);
    let challenge = header::payment_required_from_headers(r.headers())
        .unwrap()
        .unwrap();
    assert!(
        challenge
            .error
            .unwrap()
            .contains("invalid_exact_evm_nonce_already_used"),
        "reuse must name the reason"
    );
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn settle_before_handler_shows_the_transaction_to_the_handler() {
    let s = shop(SettlementMode::BeforeHandler).await;
    let payment = s.payment_header(5, reqwest::Method::GET, "/weather").await;
    let r = s
        .with_payment(reqwest::Method::GET, "/weather", payment)
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let receipt = header::settle_response_from_headers(r.headers())
        .unwrap()
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tx"], receipt.transaction);
    assert_eq!(receipt.transaction.len(), 66);
}

#[tokio::test]
async fn a_payment_for_other_terms_is_refused_without_running_the_handler() {
    let s = shop(SettlementMode::AfterHandler).await;
    let challenge = s.challenge(reqwest::Method::GET, "/weather").await;
    let mut cheaper = challenge.accepts[0].clone();
    cheaper.amount = tollgate_proto::AtomicAmount::from(1u64);
    let payment = ExactEvmClient::new(TestChain::signer(6))
        .sign(&cheaper, None)
        .await
        .unwrap();
    let before = s.balance().await;
    let r = s
        .with_payment(reqwest::Method::GET, "/weather", header::encode(&payment))
        .await;
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    assert_eq!(s.balance().await, before);
}

#[tokio::test]
async fn paywall_with_a_remote_facilitator_over_http() {
    let s = shop_with(SettlementMode::AfterHandler, true).await;
    let before = s.balance().await;
    let payment = s.payment_header(7, reqwest::Method::GET, "/weather").await;
    let r = s
        .with_payment(reqwest::Method::GET, "/weather", payment.clone())
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        header::settle_response_from_headers(r.headers())
            .unwrap()
            .unwrap()
            .success
    );
    assert_eq!(s.balance().await, before + U256::from(PRICE));
    let r = s
        .with_payment(reqwest::Method::GET, "/weather", payment)
        .await;
    assert_eq!(
        r.status().as_u16(),
        402,
        "a settled payment cannot be reused"
    );
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dynamic_prices_come_from_the_request_and_none_means_free() {
    let s = shop(SettlementMode::AfterHandler).await;
    let r = s
        .http
        .get(format!("{}/quote?size=0", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "size 0 is free");
    let challenge = s.challenge(reqwest::Method::GET, "/quote?size=3").await;
    assert_eq!(challenge.accepts[0].amount.to_string(), "3000");
    assert_eq!(
        challenge.resource.description.as_deref(),
        Some("A sized quote")
    );
    let payment = ExactEvmClient::new(TestChain::signer(8))
        .sign(&challenge.accepts[0], None)
        .await
        .unwrap();
    let before = s.balance().await;
    let r = s
        .with_payment(
            reqwest::Method::GET,
            "/quote?size=3",
            header::encode(&payment),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(s.balance().await, before + U256::from(3_000u64));
    // A payment made for one size does not buy another.
    let other = s.challenge(reqwest::Method::GET, "/quote?size=4").await;
    let payment = ExactEvmClient::new(TestChain::signer(8))
        .sign(&challenge.accepts[0], None)
        .await
        .unwrap();
    let r = s
        .with_payment(
            reqwest::Method::GET,
            "/quote?size=4",
            header::encode(&payment),
        )
        .await;
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(other.accepts[0].amount.to_string(), "4000");
    assert_eq!(s.balance().await, before + U256::from(3_000u64));
}

#[tokio::test]
async fn a_route_with_several_options_is_paid_with_the_one_the_buyer_picks() {
    let s = shop(SettlementMode::AfterHandler).await;
    let challenge = s.challenge(reqwest::Method::GET, "/either").await;
    assert_eq!(challenge.accepts.len(), 2);
    assert_eq!(
        challenge.accepts[1].amount.to_string(),
        (2 * PRICE).to_string()
    );
    assert_eq!(challenge.accepts[1].pay_to, second_payee().to_string());
    let (first_before, second_before) = (
        s.balance().await,
        s.chain.usdc_balance(second_payee()).await.unwrap(),
    );
    let payment = ExactEvmClient::new(TestChain::signer(5))
        .sign(&challenge.accepts[1], Some(challenge.resource.clone()))
        .await
        .unwrap();
    let r = s
        .with_payment(reqwest::Method::GET, "/either", header::encode(&payment))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), format!("paid {}", 2 * PRICE));
    assert_eq!(
        s.balance().await,
        first_before,
        "the first payee got nothing"
    );
    assert_eq!(
        s.chain.usdc_balance(second_payee()).await.unwrap(),
        second_before + U256::from(2 * PRICE)
    );
}

#[tokio::test]
async fn a_failed_settlement_is_a_402_and_the_body_is_not_delivered() {
    let s = shop(SettlementMode::AfterHandler).await;
    let before = s.balance().await;
    let payment = s.payment_header(6, reqwest::Method::GET, "/drain").await;
    let r = s
        .with_payment(reqwest::Method::GET, "/drain", payment)
        .await;
    assert_eq!(r.status().as_u16(), 402);
    let challenge = header::payment_required_from_headers(r.headers())
        .expect("a new challenge")
        .unwrap();
    let reason = challenge.error.unwrap_or_default();
    assert!(reason.contains("insufficient_balance"), "{reason}");
    assert!(r.headers().get("payment-response").is_none());
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("SECRET"),
        "the handler's body leaked: {body}"
    );
    assert_eq!(s.balance().await, before, "nothing was settled");
}
