//! The paying client against Tollgate's paywall and facilitator on a real anvil node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use tollgate_client::{
    PaymentError, PaymentReceipt, Refusal, SpendLedger, SpendStatus, SpendingPolicy, X402Middleware,
};
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::Network;
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000; // 0.01 USDC

struct Shop {
    chain: TestChain,
    url: String,
    network: Network,
    payee: Address,
    served: Arc<AtomicUsize>,
}

async fn shop() -> Shop {
    let chain = TestChain::start().await.unwrap();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let network: Network = chain.caip2().parse().unwrap();
    let payee = TestChain::address(9);
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(PRICE),
        &chain.usdc.to_string(),
        network.clone(),
        &payee.to_string(),
        extra,
    );
    // Names an EIP-712 domain the token does not have: every payment signed for it is refused
    // by the facilitator and can never be used on chain.
    let wrong_domain = PaymentOption::atomic(
        U256::from(PRICE),
        &chain.usdc.to_string(),
        network.clone(),
        &payee.to_string(),
        json!({ "name": "Not USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    );
    let layer = PaywallLayer::new(facilitator)
        .route("GET /data", RoutePrice::new(option.clone()))
        .unwrap()
        .route("POST /echo", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /v1/data", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /broken", RoutePrice::new(option))
        .unwrap()
        .route("GET /wrong-domain", RoutePrice::new(wrong_domain))
        .unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let app = Router::new()
        .route(
            "/data",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "paid data"
                }
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .route("/v1/data", get(|| async { "v1 data" }))
        .route("/wrong-domain", get(|| async { "unreachable" }))
        .layer(layer)
        // Under /v1, behave like a v1-only server: no PAYMENT-REQUIRED header, so clients
        // must read the challenge from the JSON body and pay with X-PAYMENT.
        .layer(axum::middleware::map_response(
            |uri: axum::http::Uri, mut response: axum::response::Response| async move {
                if uri.path().starts_with("/v1/") {
                    response.headers_mut().remove("payment-required");
                }
                response
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop {
        chain,
        url,
        network,
        payee,
        served,
    }
}

impl Shop {
    fn policy(&self) -> SpendingPolicy {
        SpendingPolicy::new().register_asset(
            self.network.clone(),
            &self.chain.usdc.to_string(),
            "USDC",
            6,
        )
    }

    fn client(
        &self,
        payer: usize,
        policy: SpendingPolicy,
        ledger: SpendLedger,
    ) -> reqwest_middleware::ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(X402Middleware::new(
                ExactEvmClient::new(TestChain::signer(payer)),
                policy,
                ledger,
            ))
            .build()
    }

    async fn payee_balance(&self) -> U256 {
        self.chain.usdc_balance(self.payee).await.unwrap()
    }
}

fn refusal(err: reqwest_middleware::Error) -> Refusal {
    match err {
        reqwest_middleware::Error::Middleware(e) => match e.downcast::<PaymentError>() {
            Ok(PaymentError::Refused(r)) => r,
            Ok(other) => panic!("not a refusal: {other}"),
            Err(e) => panic!("not a payment error: {e}"),
        },
        other => panic!("not a middleware error: {other}"),
    }
}

#[tokio::test]
async fn pays_a_route_and_exposes_the_receipt() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let client = s.client(
        1,
        s.policy().max_per_request("0.05 USDC").unwrap(),
        ledger.clone(),
    );
    let before = s.payee_balance().await;
    let r = client.get(format!("{}/data", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let receipt = r
        .extensions()
        .get::<PaymentReceipt>()
        .cloned()
        .expect("receipt");
    assert!(receipt.settlement.success);
    assert_eq!(receipt.settlement.transaction.len(), 66);
    assert_eq!(
        receipt.settlement.payer.as_deref(),
        Some(TestChain::address(1).to_string().as_str())
    );
    assert_eq!(r.text().await.unwrap(), "paid data");
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));
    let history = ledger.history(10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, "paid");
    assert_eq!(history[0].display_amount, "0.01");
    assert_eq!(
        history[0].tx_hash.as_deref(),
        Some(receipt.settlement.transaction.as_str())
    );

    // A request body is replayed with the payment.
    let r = client
        .post(format!("{}/echo", s.url))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    assert_eq!(s.payee_balance().await, before + U256::from(2 * PRICE));
}

#[tokio::test]
async fn each_policy_rule_refuses_before_signing() {
    let s = shop().await;
    let url = format!("{}/data", s.url);
    let before = s.payee_balance().await;
    type Expect = fn(&Refusal) -> bool;
    let cases: Vec<(SpendingPolicy, Expect)> = vec![
        (
            s.policy().max_per_request("0.005 USDC").unwrap(),
            |r| matches!(r, Refusal::OverMaxPerRequest { over, .. } if over == "0.005"),
        ),
        (
            s.policy().allow_networks(["eip155:8453".parse().unwrap()]),
            |r| matches!(r, Refusal::NetworkNotAllowed(_)),
        ),
        (
            s.policy()
                .allow_payees(["0x0000000000000000000000000000000000000001".into()]),
            |r| matches!(r, Refusal::PayeeNotAllowed(_)),
        ),
        (
            s.policy().allow_assets([(
                s.network.clone(),
                "0x0000000000000000000000000000000000000002".into(),
            )]),
            |r| matches!(r, Refusal::AssetNotAllowed { .. }),
        ),
        (SpendingPolicy::new(), |r| {
            matches!(r, Refusal::AssetNotAllowed { .. })
        }),
        (
            s.policy().budget("0.005 USDC", None).unwrap(),
            |r| matches!(r, Refusal::OverBudget { window, .. } if window == "total"),
        ),
        (
            s.policy()
                .budget("0.005 USDC", Some(Duration::from_secs(3600)))
                .unwrap(),
            |r| matches!(r, Refusal::OverBudget { window, .. } if window == "3600 s"),
        ),
    ];
    for (policy, expected) in cases {
        let ledger = SpendLedger::in_memory().unwrap();
        let err = s
            .client(2, policy, ledger.clone())
            .get(&url)
            .send()
            .await
            .unwrap_err();
        let r = refusal(err);
        assert!(expected(&r), "unexpected refusal: {r}");
        assert_eq!(ledger.count(SpendStatus::Refused).unwrap(), 1);
        assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 0);
    }
    assert_eq!(s.payee_balance().await, before);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn parallel_requests_never_overspend_a_budget() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    // Budget for exactly 10 payments.
    let policy = s
        .policy()
        .budget("0.1 USDC", Some(Duration::from_secs(86_400)))
        .unwrap();
    let client = s.client(3, policy, ledger.clone());
    let before = s.payee_balance().await;
    let payer_before = s.chain.usdc_balance(TestChain::address(3)).await.unwrap();
    let url = format!("{}/data", s.url);
    let results = futures::future::join_all((0..100).map(|_| client.get(&url).send())).await;
    let mut paid = 0;
    let mut refused = 0;
    for r in results {
        match r {
            Ok(r) if r.status().as_u16() == 200 => paid += 1,
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(e) => {
                assert!(matches!(refusal(e), Refusal::OverBudget { .. }));
                refused += 1;
            }
        }
    }
    assert_eq!((paid, refused), (10, 90));
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 10);
    assert_eq!(ledger.count(SpendStatus::Refused).unwrap(), 90);
    assert_eq!(ledger.count(SpendStatus::Reserved).unwrap(), 0);
    assert_eq!(s.payee_balance().await, before + U256::from(10 * PRICE));
    assert_eq!(
        s.chain.usdc_balance(TestChain::address(3)).await.unwrap(),
        payer_before - U256::from(10 * PRICE)
    );
    assert_eq!(s.served.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn budget_survives_a_restart_and_rejections_release_it() {
    let s = shop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spend.db");
    let policy = || s.policy().budget("0.02 USDC", None).unwrap();
    {
        let client = s.client(4, policy(), SpendLedger::open(&path).unwrap());
        // A clear rejection (signed for a token domain that is not the asset's): nothing was
        // charged and nothing ever can be, so the reservation is released.
        let r = client
            .get(format!("{}/wrong-domain", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 402);
        assert!(r.extensions().get::<PaymentReceipt>().is_none());
        for _ in 0..2 {
            let r = client.get(format!("{}/data", s.url)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    // A new process with the same ledger has no budget left.
    let ledger = SpendLedger::open(&path).unwrap();
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 2);
    assert_eq!(ledger.count(SpendStatus::Failed).unwrap(), 1);
    let failed = ledger
        .history(10)
        .unwrap()
        .into_iter()
        .find(|r| r.status == "failed")
        .unwrap();
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .contains("invalid_exact_evm"),
        "{failed:?}"
    );
    let client = s.client(4, policy(), ledger);
    let err = client
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), Refusal::OverBudget { .. }));
}

#[tokio::test]
async fn a_server_error_after_payment_holds_the_reservation() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let client = s.client(
        6,
        s.policy().budget("0.01 USDC", None).unwrap(),
        ledger.clone(),
    );
    let before = s.payee_balance().await;
    // The handler fails and the paywall does not settle, but the buyer cannot know that: the
    // seller still holds a valid authorization.
    let r = client
        .get(format!("{}/broken", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);
    let err = client
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), Refusal::OverBudget { .. }));
    assert_eq!(s.payee_balance().await, before);
}

#[tokio::test]
async fn pays_a_v1_only_route_from_the_json_body() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let client = s.client(5, s.policy(), ledger.clone());
    let before = s.payee_balance().await;
    let r = client
        .get(format!("{}/v1/data", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("x-payment-response").is_some());
    let receipt = r
        .extensions()
        .get::<PaymentReceipt>()
        .cloned()
        .expect("receipt");
    assert_eq!(receipt.version, tollgate_proto::X402Version::V1);
    assert!(receipt.settlement.success);
    assert_eq!(receipt.requirements.amount.to_string(), PRICE.to_string());
    assert_eq!(r.text().await.unwrap(), "v1 data");
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
}
