//! The client's sign-in-with-x ([`tollgate_client::siwx`]) against Tollgate's paywall on a
//! real anvil node: no sign-in before the wallet paid; after one payment through the
//! middleware (recorded in the spend ledger) the client signs in and is served without a
//! second payment; an auth-only route is signed in to by any wallet; a challenge naming
//! another site is never signed.

use std::sync::Arc;

use alloy::primitives::U256;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tollgate_client::siwx::{
    send_signed_in, sign_in, try_sign_in, SignedInAnswer, SiwxClientError,
};
use tollgate_client::{reqwest_middleware, SignIn};
use tollgate_client::{Challenge, SpendLedger, SpendStatus, SpendingPolicy, X402Middleware};
use tollgate_core::PaymentSigner;
use tollgate_core::SiwxVerifiers;
use tollgate_evm::{Eip191SiwxVerifier, ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::{header, Network, PaymentRequired};
use tollgate_server::siwx::{MemorySiwxStore, SignInWithX};
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;

async fn shop(chain: &TestChain) -> String {
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let network: Network = chain.caip2().parse().unwrap();
    let option = PaymentOption::atomic(
        U256::from(PRICE),
        &chain.usdc.to_string(),
        network.clone(),
        &TestChain::address(9).to_string(),
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut verifiers = SiwxVerifiers::new();
    verifiers
        .register("eip155:*".parse().unwrap(), Arc::new(Eip191SiwxVerifier))
        .unwrap();
    let siwx = SignInWithX::new(&url, verifiers, Arc::new(MemorySiwxStore::new())).unwrap();
    let layer = PaywallLayer::new(facilitator)
        .sign_in_with_x(siwx)
        .route("GET /data", RoutePrice::new(option))
        .unwrap()
        .route("GET /members", RoutePrice::auth_only(vec![network]))
        .unwrap();
    let app = Router::new()
        .route("/data", get(|| async { "paid data" }))
        .route("/members", get(|| async { "members only" }))
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn challenge(url: &str) -> Challenge {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 402);
    let required: PaymentRequired = header::decode(
        response.headers()[header::PAYMENT_REQUIRED.as_str()]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    required.into()
}

#[tokio::test]
async fn after_paying_once_the_client_signs_in_instead_of_paying_again() {
    let chain = TestChain::start().await.unwrap();
    let base = shop(&chain).await;
    let url = format!("{base}/data");
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("spend.db");
    let ledger = SpendLedger::open(&ledger_path).unwrap();
    let wallet = ExactEvmClient::new(TestChain::signer(1));

    // Never paid: pay, do not sign in.
    let first = challenge(&url).await;
    assert!(try_sign_in(&wallet, &ledger, &first, "GET", &url)
        .await
        .unwrap()
        .is_none());

    let agent = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(
            ExactEvmClient::new(TestChain::signer(1)),
            SpendingPolicy::new().register_asset(
                chain.caip2().parse().unwrap(),
                &chain.usdc.to_string(),
                "USDC",
                6,
            ),
            SpendLedger::open(&ledger_path).unwrap(),
        ))
        .build();
    let paid = agent.get(&url).send().await.unwrap();
    assert_eq!(paid.status(), 200);
    let balance = chain.usdc_balance(TestChain::address(9)).await.unwrap();

    // Paid before: the next 402 is answered with a sign-in, and no money moves.
    let again = challenge(&url).await;
    let sign_in = try_sign_in(&wallet, &ledger, &again, "GET", &url)
        .await
        .unwrap()
        .expect("paid before");
    assert!(!sign_in.auth_only);
    let (name, value) = sign_in.header();
    let response = reqwest::Client::new()
        .get(&url)
        .header(name, value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get(header::PAYMENT_RESPONSE.as_str())
        .is_none());
    assert_eq!(response.text().await.unwrap(), "paid data");
    assert_eq!(
        chain.usdc_balance(TestChain::address(9)).await.unwrap(),
        balance
    );
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);

    // Another wallet has no payment in this ledger: it pays.
    let other = ExactEvmClient::new(TestChain::signer(2));
    assert!(try_sign_in(&other, &ledger, &again, "GET", &url)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn auth_only_routes_are_signed_in_to_and_foreign_challenges_never_signed() {
    let chain = TestChain::start().await.unwrap();
    let base = shop(&chain).await;
    let url = format!("{base}/members");
    let ledger = SpendLedger::in_memory().unwrap();
    let wallet = ExactEvmClient::new(TestChain::signer(4));
    let offered = challenge(&url).await;
    let sign_in = try_sign_in(&wallet, &ledger, &offered, "GET", &url)
        .await
        .unwrap()
        .expect("auth-only");
    assert!(sign_in.auth_only);
    let (name, value) = sign_in.header();
    let response = reqwest::Client::new()
        .get(&url)
        .header(name, value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "members only");

    // The same challenge, as if another site had answered: refused before signing.
    let elsewhere = "http://127.0.0.1:1/members";
    let err = try_sign_in(&wallet, &ledger, &challenge(&url).await, "GET", elsewhere)
        .await
        .unwrap_err();
    assert!(matches!(err, SiwxClientError::NotBound { .. }), "{err}");
    // A challenge whose uri points elsewhere, from the right host.
    let mut forged = challenge(&url).await;
    let ext = forged
        .extensions
        .as_mut()
        .unwrap()
        .get_mut("sign-in-with-x")
        .unwrap();
    ext["info"]["uri"] = json!("https://evil.example/members");
    let err = try_sign_in(&wallet, &ledger, &forged, "GET", &url)
        .await
        .unwrap_err();
    assert!(matches!(err, SiwxClientError::NotBound { .. }), "{err}");
}

/// The wiring proposed for `X402Middleware::handle`, as a middleware of its own: on a 402,
/// sign in when [`sign_in`] says so and send the request again with [`send_signed_in`].
struct SignInFirst {
    wallet: Arc<dyn PaymentSigner>,
    ledger: SpendLedger,
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for SignInFirst {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let retry = req.try_clone();
        let (method, url) = (req.method().to_string(), req.url().to_string());
        let response = next.clone().run(req, extensions).await?;
        if response.status() != 402 {
            return Ok(response);
        }
        let value = response.headers()[header::PAYMENT_REQUIRED.as_str()]
            .to_str()
            .unwrap()
            .to_owned();
        let challenge: Challenge = header::decode::<PaymentRequired>(&value).unwrap().into();
        let signed = sign_in(
            self.wallet.as_ref(),
            &self.ledger,
            &challenge,
            &method,
            &url,
        )
        .await;
        match (signed, retry) {
            (Some(signed), Some(again)) => {
                match send_signed_in(&signed, again, extensions, next).await? {
                    SignedInAnswer::Served(response) => Ok(response),
                    SignedInAnswer::Refused(c) => Err(reqwest_middleware::Error::middleware(
                        std::io::Error::other(format!("sign-in refused: {:?}", c.error)),
                    )),
                }
            }
            _ => Ok(response),
        }
    }
}

#[tokio::test]
async fn the_middleware_wiring_signs_in_after_a_payment_and_not_before() {
    let chain = TestChain::start().await.unwrap();
    let base = shop(&chain).await;
    let url = format!("{base}/data");
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("spend.db");
    let agent = |payer: usize| {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(SignInFirst {
                wallet: Arc::new(ExactEvmClient::new(TestChain::signer(payer))),
                ledger: SpendLedger::open(&ledger_path).unwrap(),
            })
            .build()
    };
    // Nothing paid yet: the 402 comes back untouched.
    let before = agent(1).get(&url).send().await.unwrap();
    assert_eq!(before.status(), 402);
    assert!(before.extensions().get::<SignIn>().is_none());

    let payer = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(
            ExactEvmClient::new(TestChain::signer(1)),
            SpendingPolicy::new().register_asset(
                chain.caip2().parse().unwrap(),
                &chain.usdc.to_string(),
                "USDC",
                6,
            ),
            SpendLedger::open(&ledger_path).unwrap(),
        ))
        .build();
    assert_eq!(payer.get(&url).send().await.unwrap().status(), 200);
    let balance = chain.usdc_balance(TestChain::address(9)).await.unwrap();

    let served = agent(1).get(&url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let signed = served
        .extensions()
        .get::<SignIn>()
        .cloned()
        .expect("marked");
    assert_eq!(signed.address, TestChain::address(1).to_checksum(None));
    assert_eq!(served.text().await.unwrap(), "paid data");
    assert_eq!(
        chain.usdc_balance(TestChain::address(9)).await.unwrap(),
        balance
    );
    // Another wallet sharing the ledger never paid: no sign-in.
    assert_eq!(agent(2).get(&url).send().await.unwrap().status(), 402);
}

#[tokio::test]
async fn the_middleware_signs_in_by_itself_once_it_has_paid() {
    let chain = TestChain::start().await.unwrap();
    let base = shop(&chain).await;
    let ledger = SpendLedger::in_memory().unwrap();
    let agent = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(
            ExactEvmClient::new(TestChain::signer(3)),
            SpendingPolicy::new().register_asset(
                chain.caip2().parse().unwrap(),
                &chain.usdc.to_string(),
                "USDC",
                6,
            ),
            ledger.clone(),
        ))
        .build();
    let url = format!("{base}/data");
    let first = agent.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(
        first.extensions().get::<SignIn>().is_none(),
        "paid, not signed in"
    );
    let balance = chain.usdc_balance(TestChain::address(9)).await.unwrap();
    // The same agent, the same resource: signed in, served, nothing paid.
    for _ in 0..3 {
        let again = agent.get(&url).send().await.unwrap();
        assert_eq!(again.status(), 200);
        assert!(again.extensions().get::<SignIn>().is_some());
        assert_eq!(again.text().await.unwrap(), "paid data");
    }
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
    assert_eq!(
        chain.usdc_balance(TestChain::address(9)).await.unwrap(),
        balance
    );
    // An auth-only route: signed in at once, never paid.
    let members = agent.get(format!("{base}/members")).send().await.unwrap();
    assert_eq!(members.status(), 200);
    assert_eq!(members.text().await.unwrap(), "members only");
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
}
