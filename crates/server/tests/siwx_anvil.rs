//! Sign-in-with-x through the paywall, with the real facilitator on a real anvil node: a
//! wallet pays once and then signs in to the same resource without paying again; every
//! failed check (a replay, another origin, another resource, old, future or expired
//! challenges, a chain not offered, a bad signature, a forged field) is a 402 with its reason
//! and serves nothing; an auth-only route lets any wallet that signs in through; the SQLite
//! and PostgreSQL stores keep payments and used nonces across restarts and instances.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use alloy::primitives::U256;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::json;
use tollgate_core::{SiwxSigner, SiwxVerifiers};
use tollgate_evm::{Eip191SiwxVerifier, ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::siwx::{reason, SignatureType, SiwxExtension, SiwxPayload, SIGN_IN_WITH_X};
use tollgate_proto::{header, Network, PaymentRequired};
use tollgate_server::siwx::{
    MemorySiwxStore, PgSiwxStore, SignInWithX, SignedIn, SiwxStore, SqliteSiwxStore,
};
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;

struct Shop {
    chain: TestChain,
    url: String,
    network: Network,
    http: reqwest::Client,
    served: Arc<AtomicUsize>,
}

fn verifiers() -> SiwxVerifiers {
    let mut v = SiwxVerifiers::new();
    v.register("eip155:*".parse().unwrap(), Arc::new(Eip191SiwxVerifier))
        .unwrap();
    v
}

/// A shop on anvil with `/weather` and `/news` priced, `/members` auth-only, and sign-in bound
/// to its own origin.
async fn shop(store: Arc<dyn SiwxStore>) -> Shop {
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
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(PRICE),
        &chain.usdc.to_string(),
        network.clone(),
        &TestChain::address(9).to_string(),
        extra,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let siwx = SignInWithX::new(&url, verifiers(), store)
        .unwrap()
        .statement("Sign in to get what you bought");
    let layer = PaywallLayer::new(facilitator)
        .sign_in_with_x(siwx)
        .route("GET /weather", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /news", RoutePrice::new(option))
        .unwrap()
        .route("GET /members", RoutePrice::auth_only(vec![network.clone()]))
        .unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let handler = move |signed_in: Option<Extension<SignedIn>>| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            match signed_in {
                Some(Extension(s)) => format!("hello {}", s.address),
                None => "sunny".to_owned(),
            }
        }
    };
    let app = Router::new()
        .route("/weather", get(handler.clone()))
        .route("/news", get(handler.clone()))
        .route("/members", get(handler))
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop {
        chain,
        url,
        network,
        http: reqwest::Client::new(),
        served,
    }
}

impl Shop {
    async fn challenge(&self, path: &str) -> PaymentRequired {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 402);
        header::decode(
            response.headers()[header::PAYMENT_REQUIRED.as_str()]
                .to_str()
                .unwrap(),
        )
        .unwrap()
    }

    /// Pays for `path` once with dev account `payer`.
    async fn pay(&self, path: &str, payer: usize) {
        let offered = self.challenge(path).await;
        let client = ExactEvmClient::new(TestChain::signer(payer));
        let payment = client
            .sign(&offered.accepts[0], Some(offered.resource.clone()))
            .await
            .unwrap();
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header(header::PAYMENT_SIGNATURE.as_str(), header::encode(&payment))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// A sign-in to `path`'s fresh challenge by dev account `who`, after `tamper` changed the
    /// unsigned proof.
    async fn sign_in(
        &self,
        path: &str,
        who: usize,
        tamper: impl FnOnce(&mut SiwxPayload),
    ) -> String {
        let offered = self.challenge(path).await;
        let extension = SiwxExtension::from_extensions(offered.extensions.as_ref())
            .expect("offered")
            .unwrap();
        let chain = extension
            .chain(&self.network, SignatureType::Eip191)
            .expect("the shop's network")
            .clone();
        let mut unsigned = extension.unsigned(&chain, "");
        tamper(&mut unsigned);
        let wallet = ExactEvmClient::new(TestChain::signer(who));
        SiwxSigner::sign(&wallet, unsigned).await.unwrap().encode()
    }

    /// Sends `header` to `path`: the status, the body, and the 402's `error`.
    async fn send(&self, path: &str, header: &str) -> (u16, String, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header(SIGN_IN_WITH_X.as_str(), header)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let error = response
            .headers()
            .get(header::PAYMENT_REQUIRED.as_str())
            .map(|v| {
                header::decode::<PaymentRequired>(v.to_str().unwrap())
                    .unwrap()
                    .error
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        assert!(
            status != 200
                || response
                    .headers()
                    .get(header::PAYMENT_RESPONSE.as_str())
                    .is_none(),
            "a sign-in is never a payment"
        );
        (status, response.text().await.unwrap(), error)
    }

    async fn payee_balance(&self) -> U256 {
        self.chain
            .usdc_balance(TestChain::address(9))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_wallet_that_paid_signs_in_without_paying_again_and_once_per_challenge() {
    let shop = shop(Arc::new(MemorySiwxStore::new())).await;
    let offered = shop.challenge("/weather").await;
    let extension = SiwxExtension::from_extensions(offered.extensions.as_ref())
        .unwrap()
        .unwrap();
    let host = shop.url.trim_start_matches("http://");
    assert_eq!(extension.info.domain, host);
    assert_eq!(extension.info.uri, format!("{}/weather", shop.url));
    assert_eq!(extension.info.nonce.len(), 32);
    assert_ne!(
        shop.challenge("/weather").await.extensions,
        offered.extensions,
        "every 402 has a fresh nonce"
    );

    // Not paid yet: signing in is refused, and nothing is served.
    let early = shop.sign_in("/weather", 1, |_| {}).await;
    let (status, _, error) = shop.send("/weather", &early).await;
    assert_eq!(status, 402);
    assert!(error.starts_with(reason::NOT_PAID), "{error}");
    assert_eq!(shop.served.load(Ordering::SeqCst), 0);

    let before = shop.payee_balance().await;
    shop.pay("/weather", 1).await;
    assert_eq!(shop.payee_balance().await, before + U256::from(PRICE));
    assert_eq!(shop.served.load(Ordering::SeqCst), 1);

    // Paid: the sign-in gets the resource, and no money moves.
    let header = shop.sign_in("/weather", 1, |_| {}).await;
    let (status, body, _) = shop.send("/weather", &header).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("hello {:#x}", TestChain::address(1)),
        "the handler sees the wallet"
    );
    assert_eq!(shop.served.load(Ordering::SeqCst), 2);
    assert_eq!(shop.payee_balance().await, before + U256::from(PRICE));

    // The same header again is a replay.
    let (status, _, error) = shop.send("/weather", &header).await;
    assert_eq!(status, 402);
    assert!(error.starts_with(reason::NONCE), "{error}");
    // The early sign-in was refused before its nonce was used: now that the wallet paid, it
    // is accepted (once) while its challenge is fresh.
    let (status, _, _) = shop.send("/weather", &early).await;
    assert_eq!(status, 200);
    assert_eq!(shop.served.load(Ordering::SeqCst), 3);

    // Another wallet, and another resource, have not been paid for.
    let other_wallet = shop.sign_in("/weather", 2, |_| {}).await;
    assert!(shop
        .send("/weather", &other_wallet)
        .await
        .2
        .starts_with(reason::NOT_PAID));
    let other_resource = shop.sign_in("/news", 1, |_| {}).await;
    assert!(shop
        .send("/news", &other_resource)
        .await
        .2
        .starts_with(reason::NOT_PAID));
    // A sign-in for /weather is not one for /news, even for a wallet that paid both.
    shop.pay("/news", 1).await;
    let for_weather = shop.sign_in("/weather", 1, |_| {}).await;
    assert!(shop
        .send("/news", &for_weather)
        .await
        .2
        .starts_with(reason::URI_MISMATCH));
    assert_eq!(shop.served.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn every_failed_check_is_a_402_with_its_reason_and_serves_nothing() {
    let shop = shop(Arc::new(MemorySiwxStore::new())).await;
    shop.pay("/weather", 1).await;
    let served = shop.served.load(Ordering::SeqCst);
    let old = tollgate_proto::siwx::format_time(1_700_000_000_000);
    let future = tollgate_proto::siwx::format_time(
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64)
            + 3_600_000,
    );
    type Tamper = Box<dyn FnOnce(&mut SiwxPayload)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            reason::DOMAIN_MISMATCH,
            Box::new(|p| p.domain = "evil.example".into()),
        ),
        (
            reason::URI_MISMATCH,
            Box::new(|p| p.uri = "http://evil.example/weather".into()),
        ),
        (reason::ISSUED_AT_TOO_OLD, {
            let old = old.clone();
            Box::new(move |p| p.issued_at = old)
        }),
        (reason::ISSUED_AT_IN_FUTURE, {
            let future = future.clone();
            Box::new(move |p| p.issued_at = future)
        }),
        (
            reason::ISSUED_AT,
            Box::new(|p| p.issued_at = "yesterday".into()),
        ),
        (
            reason::EXPIRED,
            Box::new(move |p| p.expiration_time = Some(old)),
        ),
        (
            reason::NOT_YET_VALID,
            Box::new(move |p| p.not_before = Some(future)),
        ),
        (
            reason::UNSUPPORTED_CHAIN,
            Box::new(|p| p.chain_id = Network::eip155(1)),
        ),
        (
            reason::INVALID_FIELDS,
            Box::new(|p| p.statement = Some("ok\n\nURI: http://evil.example/".into())),
        ),
        (reason::INVALID_FIELDS, Box::new(|p| p.version = "2".into())),
        (
            reason::EXPIRATION_TIME,
            Box::new(|p| p.expiration_time = Some("soon".into())),
        ),
        (
            reason::NOT_BEFORE,
            Box::new(|p| p.not_before = Some("later".into())),
        ),
    ];
    for (expected, tamper) in cases {
        let header = shop.sign_in("/weather", 1, tamper).await;
        let (status, _, error) = shop.send("/weather", &header).await;
        assert_eq!(status, 402, "{expected}");
        assert!(
            error.starts_with(expected),
            "expected {expected}, got {error}"
        );
    }
    // A signature over another message, and one by another wallet claiming account 1.
    let good = shop.sign_in("/weather", 1, |_| {}).await;
    let mut forged = SiwxPayload::decode(&good).unwrap();
    forged.statement = Some("something else".into());
    let (_, _, error) = shop.send("/weather", &forged.encode()).await;
    assert!(error.starts_with(reason::SIGNATURE), "{error}");
    let by_two = SiwxPayload::decode(&shop.sign_in("/weather", 2, |_| {}).await).unwrap();
    let mut impostor = by_two.clone();
    impostor.address = TestChain::address(1).to_checksum(None);
    let (_, _, error) = shop.send("/weather", &impostor.encode()).await;
    assert!(error.starts_with(reason::SIGNATURE), "{error}");
    let (status, _, error) = shop.send("/weather", "%%% not base64").await;
    assert_eq!(status, 402);
    assert!(error.starts_with(reason::INVALID_HEADER), "{error}");
    assert_eq!(shop.served.load(Ordering::SeqCst), served, "nothing served");
    // The untampered sign-in still works: none of the refusals used its nonce.
    assert_eq!(shop.send("/weather", &good).await.0, 200);
}

#[tokio::test]
async fn a_sign_in_for_another_origin_is_refused() {
    let store: Arc<dyn SiwxStore> = Arc::new(MemorySiwxStore::new());
    let a = shop(store.clone()).await;
    let b = shop(store).await;
    a.pay("/weather", 1).await;
    b.pay("/weather", 1).await;
    // Signed for shop b's challenge, sent to shop a (same store, same path, same wallet).
    let for_b = b.sign_in("/weather", 1, |_| {}).await;
    let (status, _, error) = a.send("/weather", &for_b).await;
    assert_eq!(status, 402);
    assert!(error.starts_with(reason::DOMAIN_MISMATCH), "{error}");
    assert_eq!(b.send("/weather", &for_b).await.0, 200);
}

#[tokio::test]
async fn an_auth_only_route_lets_any_wallet_that_signs_in_through() {
    let shop = shop(Arc::new(MemorySiwxStore::new())).await;
    let offered = shop.challenge("/members").await;
    assert!(offered.accepts.is_empty(), "no payment is offered");
    let header = shop.sign_in("/members", 5, |_| {}).await;
    let (status, body, _) = shop.send("/members", &header).await;
    assert_eq!(status, 200);
    assert_eq!(body, format!("hello {:#x}", TestChain::address(5)));
    let (status, _, error) = shop.send("/members", &header).await;
    assert_eq!(status, 402);
    assert!(error.starts_with(reason::NONCE), "{error}");
}

#[tokio::test]
async fn the_sqlite_store_keeps_payments_and_used_nonces_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("siwx.db");
    let keep = u64::MAX / 2;
    {
        let store = SqliteSiwxStore::open(&path).unwrap();
        store.record_payment("GET /weather", "0xabc").await.unwrap();
        store.record_payment("GET /weather", "0xabc").await.unwrap();
        assert!(store.use_nonce("n0nce0001", keep).await.unwrap());
        assert!(!store.use_nonce("n0nce0001", keep).await.unwrap());
    }
    let store = SqliteSiwxStore::open(&path).unwrap();
    assert!(store.has_paid("GET /weather", "0xabc").await.unwrap());
    assert!(!store.has_paid("GET /news", "0xabc").await.unwrap());
    assert!(!store.use_nonce("n0nce0001", keep).await.unwrap());
    // A nonce kept until a past second is forgotten (its challenge is too old to accept).
    assert!(store.use_nonce("n0nce0002", 1).await.unwrap());
    assert!(store.use_nonce("n0nce0003", keep).await.unwrap());
    assert!(store.use_nonce("n0nce0002", 1).await.unwrap());
}

#[tokio::test]
async fn two_instances_on_one_postgres_accept_a_sign_in_once() {
    let pg = tollgate_testkit::Postgres::start().unwrap();
    let one: Arc<dyn SiwxStore> = Arc::new(PgSiwxStore::connect(&pg.url()).await.unwrap());
    let two: Arc<dyn SiwxStore> = Arc::new(PgSiwxStore::connect(&pg.url()).await.unwrap());
    // The store level: of many concurrent uses of one nonce on two instances, one wins.
    let keep = u64::MAX / 2;
    let mut uses = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        uses.push(tokio::spawn(async move {
            store.use_nonce("sharednonce1", keep).await.unwrap()
        }));
    }
    let mut won = 0;
    for u in uses {
        won += usize::from(u.await.unwrap());
    }
    assert_eq!(won, 1);

    // Through two paywalls (two origins would refuse each other's sign-ins, so the same
    // challenge is presented twice to one, and a payment recorded by one is seen by both).
    let a = shop(one).await;
    a.pay("/weather", 3).await;
    assert!(two
        .has_paid("GET /weather", &format!("{:#x}", TestChain::address(3)))
        .await
        .unwrap());
    let header = a.sign_in("/weather", 3, |_| {}).await;
    let (first, second) = tokio::join!(a.send("/weather", &header), a.send("/weather", &header));
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 402]);
}
