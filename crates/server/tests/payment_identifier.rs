//! `PaywallLayer::payment_identifier`: the 402 offers the official `payment-identifier`
//! extension, and when it is required a payment without an id is refused before anything is
//! verified or settled, while one carrying an id is served. Against the embedded devnet and an
//! in-process facilitator.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tollgate_devnet::Devnet;
use tollgate_evm::ExactEvmClient;
use tollgate_facilitator::Facilitator;
use tollgate_proto::idempotency::PAYMENT_IDENTIFIER;
use tollgate_proto::{header, IdempotencyKey, PaymentIdentifier, PaymentRequired};
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};

alloy::sol! {
    #[sol(rpc)]
    interface IErc20 {
        function balanceOf(address account) external view returns (uint256);
    }
}

async fn serve(
    devnet: &Devnet,
    configure: impl FnOnce(PaywallLayer<Facilitator>) -> PaywallLayer<Facilitator>,
) -> SocketAddr {
    let facilitator = Facilitator::builder()
        .network(devnet.url(), devnet.account(0).unwrap())
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    let price = PaymentOption::price(
        "$0.01",
        &devnet.usdc(),
        devnet.account(9).unwrap().address(),
    )
    .unwrap();
    let layer = configure(PaywallLayer::new(facilitator))
        .route("GET /weather", RoutePrice::new(price))
        .unwrap();
    let app = Router::new()
        .route("/weather", get(|| async { "sunny" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn challenge(url: &str) -> PaymentRequired {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 402);
    let value = response.headers()[header::PAYMENT_REQUIRED.as_str()]
        .to_str()
        .unwrap()
        .to_owned();
    header::decode(&value).unwrap()
}

#[tokio::test]
async fn the_402_offers_the_extension_only_when_asked() {
    let devnet = Devnet::start().await.unwrap();
    let plain = serve(&devnet, |l| l).await;
    assert_eq!(
        challenge(&format!("http://{plain}/weather"))
            .await
            .extensions,
        None
    );

    let offering = serve(&devnet, |l| l.payment_identifier(false)).await;
    let offered = challenge(&format!("http://{offering}/weather")).await;
    let extensions = offered.extensions.expect("offered");
    assert_eq!(
        extensions[PAYMENT_IDENTIFIER],
        PaymentIdentifier::offer(false)
    );
    assert!(!PaymentIdentifier::is_required(Some(&extensions)));
}

#[tokio::test]
async fn a_required_id_is_enforced_before_anything_is_settled() {
    let devnet = Devnet::start().await.unwrap();
    let addr = serve(&devnet, |l| l.payment_identifier(true)).await;
    let url = format!("http://{addr}/weather");
    let offered = challenge(&url).await;
    assert!(PaymentIdentifier::is_required(offered.extensions.as_ref()));

    let provider =
        alloy::providers::ProviderBuilder::new().connect_http(devnet.url().parse().unwrap());
    let token = IErc20::new(devnet.token(), provider);
    let payee = devnet.account(9).unwrap().address();
    let before = token.balanceOf(payee).call().await.unwrap();

    let payer = ExactEvmClient::new(devnet.account(1).unwrap());
    let requirements = &offered.accepts[0];
    let without_id = payer
        .sign(requirements, Some(offered.resource.clone()))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let refused = http
        .get(&url)
        .header(
            header::PAYMENT_SIGNATURE.as_str(),
            header::encode(&without_id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let why: PaymentRequired = header::decode(
        refused.headers()[header::PAYMENT_REQUIRED.as_str()]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert!(why.error.unwrap_or_default().contains("payment-identifier"));
    assert_eq!(
        token.balanceOf(payee).call().await.unwrap(),
        before,
        "nothing settled"
    );

    let mut with_id = payer
        .sign(requirements, Some(offered.resource.clone()))
        .await
        .unwrap();
    let id = IdempotencyKey::from_random_bytes(rand::random());
    let mut extensions = tollgate_proto::Extensions::new();
    extensions.insert(
        PAYMENT_IDENTIFIER.into(),
        PaymentIdentifier::echo(&id, true),
    );
    with_id.extensions = Some(extensions);
    let served = http
        .get(&url)
        .header(header::PAYMENT_SIGNATURE.as_str(), header::encode(&with_id))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.unwrap(), "sunny");
    assert_eq!(
        token.balanceOf(payee).call().await.unwrap(),
        before + alloy::primitives::U256::from(10_000u64)
    );
}
