//! The embedded devnet through its public API carries a whole paid request: `Devnet::start`,
//! an in-process facilitator, a paywalled route, a paying client, and the money on chain.

use alloy::primitives::{Address, U256};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use tollgate::evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate::facilitator::{Facilitator, Ledger};
use tollgate::proto::Network;
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_client::{PaymentReceipt, SpendLedger, SpendingPolicy, X402Middleware};
use tollgate_devnet::Devnet;

alloy::sol! {
    #[sol(rpc)]
    interface IToken {
        function balanceOf(address account) external view returns (uint256);
    }
}

async fn balance(url: &str, token: Address, who: Address) -> U256 {
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    IToken::new(token, provider)
        .balanceOf(who)
        .call()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_request_settles_on_the_devnet() {
    let devnet = Devnet::start().await.unwrap();
    let url = devnet.url();
    let network: Network = devnet.caip2().parse().unwrap();
    let signer = |i: usize| {
        devnet.accounts()[i]
            .key
            .parse::<PrivateKeySigner>()
            .unwrap()
    };
    let seller = devnet.accounts()[9].address;
    let buyer = signer(1);
    let buyer_address = buyer.address();

    let scheme = ExactEvmFacilitator::connect(&url, signer(0), FacilitatorConfig::default())
        .await
        .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let option = PaymentOption::atomic(
        U256::from(10_000u64),
        &devnet.token().to_string(),
        network.clone(),
        &seller.to_string(),
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    );
    let paywall = PaywallLayer::new(facilitator.clone())
        .route("GET /weather", RoutePrice::new(option))
        .unwrap();
    let app = axum::Router::new()
        .route("/weather", axum::routing::get(|| async { "sunny" }))
        .layer(paywall);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let policy = SpendingPolicy::new()
        .register_asset(network, &devnet.token().to_string(), "USDC", 6)
        .max_per_request("0.1 USDC")
        .unwrap();
    let agent = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(
            ExactEvmClient::new(buyer),
            policy,
            SpendLedger::in_memory().unwrap(),
        ))
        .build();

    let buyer_before = balance(&url, devnet.token(), buyer_address).await;
    let seller_before = balance(&url, devnet.token(), seller).await;
    assert_eq!(buyer_before, U256::from(tollgate_devnet::INITIAL_USDC));
    let blocks_before = devnet.block_number();

    let response = agent.get(format!("{api}/weather")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let receipt = response
        .extensions()
        .get::<PaymentReceipt>()
        .cloned()
        .unwrap();
    assert!(receipt.settlement.success);
    let body = response.text().await.unwrap();
    assert_eq!(body, "sunny");

    assert_eq!(
        balance(&url, devnet.token(), buyer_address).await,
        buyer_before - U256::from(10_000u64)
    );
    assert_eq!(
        balance(&url, devnet.token(), seller).await,
        seller_before + U256::from(10_000u64)
    );
    assert_eq!(
        devnet.block_number(),
        blocks_before + 1,
        "one settlement, one block"
    );
}
