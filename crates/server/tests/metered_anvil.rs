//! A metered route (`upto`: the buyer signs a maximum, the handler states what the work cost)
//! behind the axum paywall, settled by a real facilitator over HTTP on anvil (or the devnet)
//! with the USDT-like token through Permit2:
//!
//! - the handler records 37% of the maximum on the request's `Meter` → exactly that moves, and
//!   the receipt says so;
//! - the handler fails after recording a charge → nothing moves, the authorization stays unused;
//! - the handler records nothing → the maximum is charged (the protocol's default);
//! - a charge of 0 → the response is delivered, no transaction, nothing moves, and the same
//!   payment cannot be settled again at another charge;
//! - a charge above the maximum is refused by the meter itself;
//! - an `exact` route offers its handler no meter.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::json;
use tollgate_core::{NetworkPattern, Registry, SchemeServer};
use tollgate_evm::server::ExactEvmServer;
use tollgate_evm::{ExactEvmClient, UptoEvmClient, UptoEvmServer};
use tollgate_facilitator::{http as facilitator_http, Facilitator};
use tollgate_proto::{header, AtomicAmount, PaymentRequired, Scheme, SettleResponse};
use tollgate_server::{Meter, PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::TestChain;

const MAXIMUM: u64 = 50_000;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[derive(serde::Deserialize)]
struct Work {
    /// Atomic units to charge; absent: record nothing.
    charge: Option<u64>,
    /// Fail after recording the charge.
    #[serde(default)]
    fail: bool,
}

/// The metered handler: records its charge on the meter the paywall handed it.
async fn metered(
    meter: Option<Extension<Meter>>,
    Query(work): Query<Work>,
) -> (StatusCode, String) {
    let Some(Extension(meter)) = meter else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no meter".into());
    };
    assert_eq!(meter.maximum(), AtomicAmount::from(MAXIMUM));
    // Above the maximum is refused by the meter, whatever the handler tries.
    assert!(meter.charge(AtomicAmount::from(MAXIMUM + 1)).is_err());
    if let Some(charge) = work.charge {
        meter.charge(AtomicAmount::from(charge)).unwrap();
    }
    if work.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model crashed".into(),
        );
    }
    (StatusCode::OK, "tokens".into())
}

struct Shop {
    chain: TestChain,
    url: String,
    http: reqwest::Client,
    payee: Address,
}

impl Shop {
    async fn challenge(&self, path: &str) -> PaymentRequired {
        let unpaid = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(unpaid.status(), 402);
        header::decode(unpaid.headers()[header::PAYMENT_REQUIRED].to_str().unwrap()).unwrap()
    }

    /// Pays `path` with a fresh `upto` authorization of the maximum; the status, the body and
    /// the receipt.
    async fn pay(&self, path: &str) -> (StatusCode, String, Option<SettleResponse>, U256) {
        let required = self.challenge(path).await;
        let payment = UptoEvmClient::new(TestChain::signer(1))
            .sign(&required.accepts[0], Some(required.resource.clone()))
            .await
            .unwrap();
        let nonce = nonce_of(&payment.payload);
        let encoded = header::encode(&payment);
        let (status, body, receipt) = self.send(path, &encoded).await;
        (status, body, receipt, nonce)
    }

    async fn send(
        &self,
        path: &str,
        encoded: &str,
    ) -> (StatusCode, String, Option<SettleResponse>) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header(header::PAYMENT_SIGNATURE, encoded)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let receipt = response
            .headers()
            .get(header::PAYMENT_RESPONSE)
            .map(|v| header::decode::<SettleResponse>(v.to_str().unwrap()).unwrap());
        (status, response.text().await.unwrap(), receipt)
    }

    async fn balances(&self) -> (U256, U256) {
        (
            self.chain
                .usdt_balance(TestChain::address(1))
                .await
                .unwrap(),
            self.chain.usdt_balance(self.payee).await.unwrap(),
        )
    }
}

fn nonce_of(payload: &serde_json::Map<String, serde_json::Value>) -> U256 {
    let nonce = &payload["permit2Authorization"]["nonce"];
    nonce
        .as_str()
        .map(|s| s.parse().unwrap())
        .unwrap_or_else(|| panic!("no Permit2 nonce in {payload:?}"))
}

async fn shop() -> Shop {
    let chain = TestChain::start().await.unwrap();
    let facilitator = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    let facilitator_url = serve(facilitator_http::router(
        facilitator,
        facilitator_http::HttpLimits::default(),
    ))
    .await;
    // The payer's one-time, explicit Permit2 approval.
    chain
        .approve_permit2(1, chain.usdt, U256::MAX)
        .await
        .unwrap();

    let network = chain.caip2().parse().unwrap();
    let payee = TestChain::address(9);
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    let evm = || "eip155:*".parse::<NetworkPattern>().unwrap();
    schemes
        .register_arc(evm(), Scheme::Exact, Arc::new(ExactEvmServer::new()))
        .unwrap();
    schemes
        .register_arc(evm(), Scheme::Upto, Arc::new(UptoEvmServer))
        .unwrap();
    let paywall = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url))
        .schemes(schemes)
        .unwrap();
    let upto = RoutePrice::new(PaymentOption::new(
        Scheme::Upto,
        network,
        chain.usdt.to_string(),
        AtomicAmount::from(MAXIMUM),
        payee.to_string(),
    ));
    let exact = RoutePrice::new(PaymentOption::atomic(
        U256::from(1_000u64),
        &chain.usdc.to_string(),
        chain.caip2().parse().unwrap(),
        &payee.to_string(),
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    ));
    let url = serve(
        Router::new()
            .route(
                "/generate",
                get(metered).route_layer(paywall.price(upto).unwrap()),
            )
            .route(
                "/fixed",
                get(|meter: Option<Extension<Meter>>| async move {
                    if meter.is_some() {
                        (StatusCode::INTERNAL_SERVER_ERROR, "metered")
                    } else {
                        (StatusCode::OK, "fixed")
                    }
                })
                .route_layer(paywall.price(exact).unwrap()),
            ),
    )
    .await;
    Shop {
        chain,
        url,
        http: reqwest::Client::new(),
        payee,
    }
}

#[tokio::test]
async fn a_metered_route_charges_what_the_handler_states_and_nothing_when_it_fails() {
    let shop = shop().await;
    let required = shop.challenge("/generate").await;
    assert_eq!(required.accepts[0].scheme, Scheme::Upto);
    assert_eq!(required.accepts[0].amount, AtomicAmount::from(MAXIMUM));
    assert!(
        required.accepts[0]
            .extra_str("facilitatorAddress")
            .is_some(),
        "completed from the facilitator's /supported"
    );

    // 37% of the maximum: exactly that moves, and the receipt says so.
    let (payer0, payee0) = shop.balances().await;
    let charge = MAXIMUM * 37 / 100;
    let (status, body, receipt, _) = shop.pay(&format!("/generate?charge={charge}")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tokens"));
    let receipt = receipt.expect("a receipt");
    assert!(receipt.success);
    assert_eq!(receipt.amount, Some(AtomicAmount::from(charge)));
    assert!(!receipt.transaction.is_empty());
    let (payer1, payee1) = shop.balances().await;
    assert_eq!(payer0 - payer1, U256::from(charge));
    assert_eq!(payee1 - payee0, U256::from(charge));

    // The handler fails after recording a charge: nothing moves, the authorization is unused.
    let (status, _, receipt, nonce) = shop
        .pay(&format!("/generate?charge={charge}&fail=true"))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(receipt.is_none());
    assert_eq!(shop.balances().await, (payer1, payee1));
    assert!(!shop
        .chain
        .permit2_nonce_used(TestChain::address(1), nonce)
        .await
        .unwrap());

    // No charge recorded: the maximum.
    let (status, _, receipt, _) = shop.pay("/generate").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receipt.unwrap().amount, Some(AtomicAmount::from(MAXIMUM)));
    let (payer2, payee2) = shop.balances().await;
    assert_eq!(payer1 - payer2, U256::from(MAXIMUM));
    assert_eq!(payee2 - payee1, U256::from(MAXIMUM));
}

#[tokio::test]
async fn a_zero_charge_delivers_moves_nothing_and_the_payment_is_spent_for_this_seller() {
    let shop = shop().await;
    let required = shop.challenge("/generate?charge=0").await;
    let payment = UptoEvmClient::new(TestChain::signer(1))
        .sign(&required.accepts[0], Some(required.resource.clone()))
        .await
        .unwrap();
    let encoded = header::encode(&payment);
    let before = shop.balances().await;
    let (status, body, receipt) = shop.send("/generate?charge=0", &encoded).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tokens"));
    let receipt = receipt.unwrap();
    assert_eq!(receipt.amount, Some(AtomicAmount::from(0u64)));
    assert_eq!(receipt.transaction, "");
    assert_eq!(shop.balances().await, before);

    // The same authorization again, now asking for a charge: refused; nothing moves.
    let (status, _, receipt) = shop
        .send(&format!("/generate?charge={MAXIMUM}"), &encoded)
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(receipt.is_none());
    assert_eq!(shop.balances().await, before);
}

#[tokio::test]
async fn an_exact_route_offers_no_meter() {
    let shop = shop().await;
    let required = shop.challenge("/fixed").await;
    let payment = ExactEvmClient::new(TestChain::signer(1))
        .sign(&required.accepts[0], Some(required.resource.clone()))
        .await
        .unwrap();
    let (status, body, receipt) = shop.send("/fixed", &header::encode(&payment)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fixed"));
    assert!(receipt.unwrap().success);
}
