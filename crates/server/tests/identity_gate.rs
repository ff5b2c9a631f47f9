//! The identity gate of the paywall (`PaywallLayer::identity`), over real HTTP on loopback with
//! the in-process facilitator on a test chain.
//!
//! The provider is a real `IdentityProvider`: a fixed list of refused ("sanctioned")
//! addresses, which records whom it was asked about and can be switched off to stand for an
//! outage. What is checked is the paywall's behaviour around it: no check without a payment,
//! the verified payer (not a header) is checked, a refused buyer is never charged, an outage
//! fails closed unless the route opts into fail-open, and verdicts are cached for their TTL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tollgate_core::BoxFuture;
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::{header, PaymentRequired};
use tollgate_server::{
    Assessment, Decision, DecisionResult, DecisionSink, IdentityPolicy, IdentityProvider,
    PaymentOption, PaywallLayer, ProviderError, RoutePrice, RuleCheck, SettlementMode, Subject,
};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;
/// The dev account on the refused list.
const SANCTIONED: usize = 4;
/// A dev account that is not.
const CLEAR: usize = 5;

/// A sanctions list: the addresses it refuses, fixed at start. Records every subject it is
/// asked about (payer and operator token); `down` makes it answer as an unreachable provider.
struct SanctionsList {
    refused: HashSet<String>,
    down: AtomicBool,
    asked: Mutex<Vec<(String, Option<String>)>>,
}

impl SanctionsList {
    fn new(refused: &[Address]) -> Arc<Self> {
        Arc::new(Self {
            refused: refused
                .iter()
                .map(|a| a.to_string().to_ascii_lowercase())
                .collect(),
            down: AtomicBool::new(false),
            asked: Mutex::default(),
        })
    }

    fn asked(&self) -> Vec<(String, Option<String>)> {
        self.asked.lock().unwrap().clone()
    }
}

impl IdentityProvider for SanctionsList {
    fn name(&self) -> &str {
        "test-sanctions-list"
    }

    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a IdentityPolicy,
    ) -> BoxFuture<'a, Result<Assessment, ProviderError>> {
        Box::pin(async move {
            self.asked
                .lock()
                .unwrap()
                .push((subject.payer.clone(), subject.operator_token.clone()));
            if self.down.load(Ordering::SeqCst) {
                return Err(ProviderError {
                    provider: self.name().into(),
                    reason: "connection refused".into(),
                });
            }
            let mut checks = Vec::new();
            if policy.require_sanctions_clear {
                let listed = self.refused.contains(&subject.payer.to_ascii_lowercase());
                checks.push(RuleCheck {
                    rule: "require_sanctions_clear".into(),
                    passed: !listed,
                    reason: listed.then(|| "the payer is on the sanctions list".into()),
                    remedy: listed.then(|| "pay from a wallet that is not sanctioned".into()),
                });
            }
            Ok(Assessment {
                allowed: checks.iter().all(|c| c.passed),
                checks,
            })
        })
    }
}

/// Keeps every decision, as a durable store would.
#[derive(Default)]
struct Recorder(Mutex<Vec<Decision>>);

impl DecisionSink for Recorder {
    fn record(&self, decision: &Decision) {
        self.0.lock().unwrap().push(decision.clone());
    }
}

struct Shop {
    chain: TestChain,
    url: String,
    http: reqwest::Client,
    payee: Address,
    served: Arc<AtomicUsize>,
    provider: Arc<SanctionsList>,
    decisions: Arc<Recorder>,
}

struct Options {
    mode: SettlementMode,
    fail_open: bool,
    ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: SettlementMode::AfterHandler,
            fail_open: false,
            ttl: Duration::ZERO,
        }
    }
}

async fn shop(options: Options) -> Shop {
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
    let provider = SanctionsList::new(&[TestChain::address(SANCTIONED)]);
    let decisions = Arc::new(Recorder::default());
    let policy = IdentityPolicy {
        require_sanctions_clear: true,
        ..IdentityPolicy::default()
    };
    let paywall = PaywallLayer::new(facilitator)
        .settlement_mode(options.mode)
        .identity(provider.clone(), policy)
        .fail_open(options.fail_open)
        .identity_cache_ttl(options.ttl)
        .decision_sink(decisions.clone());
    let served = Arc::new(AtomicUsize::new(0));
    let runs = served.clone();
    let weather = get(move || async move {
        runs.fetch_add(1, Ordering::SeqCst);
        "sunny"
    })
    .route_layer(paywall.price(RoutePrice::new(option)).unwrap());
    let app = Router::new()
        .route("/weather", weather)
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop {
        chain,
        url: format!("http://{addr}/weather"),
        http: reqwest::Client::new(),
        payee,
        served,
        provider,
        decisions,
    }
}

impl Shop {
    async fn challenge(&self) -> PaymentRequired {
        let r = self.http.get(&self.url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 402);
        header::payment_required_from_headers(r.headers())
            .expect("PAYMENT-REQUIRED header")
            .unwrap()
    }

    async fn payment(&self, payer: usize) -> String {
        let challenge = self.challenge().await;
        let payment = ExactEvmClient::new(TestChain::signer(payer))
            .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
            .await
            .unwrap();
        header::encode(&payment)
    }

    async fn paid(&self, payment: &str, headers: &[(&str, String)]) -> reqwest::Response {
        let mut request = self
            .http
            .get(&self.url)
            .header("PAYMENT-SIGNATURE", payment);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    async fn balance(&self, who: Address) -> U256 {
        self.chain.usdc_balance(who).await.unwrap()
    }

    fn decisions(&self) -> Vec<Decision> {
        self.decisions.0.lock().unwrap().clone()
    }
}

fn lower(a: Address) -> String {
    a.to_string().to_ascii_lowercase()
}

/// Anonymous discovery is untouched: the 402, and the provider is never asked — not even when
/// the request names a sanctioned wallet in `X-Wallet-Address`.
#[tokio::test]
async fn an_unpaid_request_gets_the_402_without_an_identity_check() {
    let s = shop(Options::default()).await;
    for headers in [
        vec![],
        vec![(
            "X-Wallet-Address",
            TestChain::address(SANCTIONED).to_string(),
        )],
    ] {
        let mut request = s.http.get(&s.url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 402);
        assert!(header::payment_required_from_headers(r.headers()).is_some());
    }
    // A payment header that cannot be read is refused with the 402 too, unchecked.
    let r = s.paid("not-a-payment", &[]).await;
    assert_eq!(r.status().as_u16(), 402);
    assert!(s.provider.asked().is_empty(), "{:?}", s.provider.asked());
    assert!(s.decisions().is_empty());
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

async fn assert_sanctioned_payer_is_refused(mode: SettlementMode) {
    let s = shop(Options {
        mode,
        ..Options::default()
    })
    .await;
    let buyer = TestChain::address(SANCTIONED);
    let (buyer_before, payee_before) = (s.balance(buyer).await, s.balance(s.payee).await);
    let payment = s.payment(SANCTIONED).await;

    let r = s.paid(&payment, &[]).await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(header::settle_response_from_headers(r.headers()).is_none());
    assert_eq!(
        r.headers()["cache-control"].to_str().unwrap(),
        "no-store",
        "a refusal about one buyer is not cacheable"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "identity_check_failed");
    assert_eq!(
        body["payer"].as_str().unwrap().to_ascii_lowercase(),
        lower(buyer)
    );
    let checks = body["checks"].as_array().unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["passed"] == false).collect();
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["rule"], "require_sanctions_clear");
    assert_eq!(failed[0]["reason"], "the payer is on the sanctions list");
    assert_eq!(
        failed[0]["remedy"],
        "pay from a wallet that is not sanctioned"
    );

    assert_eq!(s.served.load(Ordering::SeqCst), 0, "the handler ran");
    assert_eq!(
        s.balance(buyer).await,
        buyer_before,
        "the buyer was charged"
    );
    assert_eq!(s.balance(s.payee).await, payee_before);
    let decisions = s.decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].result, DecisionResult::Refused);
    assert_eq!(decisions[0].provider, "test-sanctions-list");
    assert_eq!(decisions[0].target, "GET /weather");
    assert!(!decisions[0].cached);

    // Released unsettled, as when a handler fails: the facilitator's reservation of the
    // payment for the refused exchange lapses on its own, and until then another attempt with
    // it is `payment_in_use`. Nothing moves either way.
    let r = s.paid(&payment, &[]).await;
    assert_eq!(r.status().as_u16(), 402);
    let challenge = header::payment_required_from_headers(r.headers())
        .unwrap()
        .unwrap();
    assert!(
        challenge
            .error
            .as_deref()
            .is_some_and(|e| e.contains("payment_in_use")),
        "{:?}",
        challenge.error
    );
    assert_eq!(s.balance(buyer).await, buyer_before);
    assert_eq!(s.balance(s.payee).await, payee_before);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_sanctioned_payer_is_refused_with_403_and_never_charged() {
    assert_sanctioned_payer_is_refused(SettlementMode::AfterHandler).await;
}

/// With settlement before the handler too, the check comes first: nothing is settled.
#[tokio::test]
async fn a_sanctioned_payer_is_refused_before_a_settle_first_route_settles() {
    assert_sanctioned_payer_is_refused(SettlementMode::BeforeHandler).await;
}

/// A payer who meets the policy is served and charged; the provider is told the request's
/// operator token, and asked about the verified payer.
#[tokio::test]
async fn an_allowed_payer_is_served_and_settled() {
    let s = shop(Options::default()).await;
    let buyer = TestChain::address(CLEAR);
    let (buyer_before, payee_before) = (s.balance(buyer).await, s.balance(s.payee).await);
    let payment = s.payment(CLEAR).await;
    let r = s
        .paid(&payment, &[("X-Operator-Token", "op-secret-123".into())])
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let receipt = header::settle_response_from_headers(r.headers())
        .expect("PAYMENT-RESPONSE header")
        .unwrap();
    assert!(receipt.success);
    assert_eq!(r.text().await.unwrap(), "sunny");
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(s.balance(buyer).await, buyer_before - U256::from(PRICE));
    assert_eq!(s.balance(s.payee).await, payee_before + U256::from(PRICE));

    let asked = s.provider.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0.to_ascii_lowercase(), lower(buyer));
    assert_eq!(asked[0].1.as_deref(), Some("op-secret-123"));
    let decisions = s.decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].result, DecisionResult::Allowed);
    assert_eq!(decisions[0].checks.len(), 1);
    assert!(decisions[0].checks[0].passed);
    assert!(!format!("{:?}", decisions[0]).contains("op-secret-123"));
}

/// A provider that cannot answer closes the gate: 503, nothing served, nothing settled.
#[tokio::test]
async fn a_provider_outage_is_a_503_and_nothing_is_settled() {
    let s = shop(Options::default()).await;
    s.provider.down.store(true, Ordering::SeqCst);
    let buyer = TestChain::address(CLEAR);
    let (buyer_before, payee_before) = (s.balance(buyer).await, s.balance(s.payee).await);
    let payment = s.payment(CLEAR).await;
    let r = s.paid(&payment, &[]).await;
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "identity provider unavailable");
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    assert_eq!(s.balance(buyer).await, buyer_before);
    assert_eq!(s.balance(s.payee).await, payee_before);
    assert_eq!(s.decisions()[0].result, DecisionResult::Unavailable);

    // An outage is not cached: once the provider is back, the buyer is asked about and
    // served (with a new payment: the first one's reservation has not lapsed yet).
    s.provider.down.store(false, Ordering::SeqCst);
    let payment = s.payment(CLEAR).await;
    let r = s.paid(&payment, &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(s.balance(s.payee).await, payee_before + U256::from(PRICE));
    assert_eq!(s.provider.asked().len(), 2);
}

/// A route that opts into fail-open is served (and charged) while the provider is down.
#[tokio::test]
async fn a_fail_open_route_is_served_during_an_outage() {
    let s = shop(Options {
        fail_open: true,
        ..Options::default()
    })
    .await;
    s.provider.down.store(true, Ordering::SeqCst);
    let payee_before = s.balance(s.payee).await;
    let payment = s.payment(SANCTIONED).await;
    let r = s.paid(&payment, &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
    assert_eq!(s.balance(s.payee).await, payee_before + U256::from(PRICE));
    let decisions = s.decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].result, DecisionResult::FailedOpen);
    assert!(decisions[0]
        .error
        .as_deref()
        .unwrap()
        .contains("connection refused"));
}

/// `X-Wallet-Address` claims nothing: whose identity is checked is the verified payer's. A
/// sanctioned payer naming a clear wallet is refused; a clear payer naming a sanctioned one is
/// served.
#[tokio::test]
async fn a_forged_wallet_header_does_not_change_whose_identity_is_checked() {
    let s = shop(Options::default()).await;
    let (sanctioned, clear) = (TestChain::address(SANCTIONED), TestChain::address(CLEAR));
    let buyer_before = s.balance(sanctioned).await;

    let payment = s.payment(SANCTIONED).await;
    let r = s
        .paid(&payment, &[("X-Wallet-Address", clear.to_string())])
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(s.balance(sanctioned).await, buyer_before);

    let payment = s.payment(CLEAR).await;
    let r = s
        .paid(&payment, &[("X-Wallet-Address", sanctioned.to_string())])
        .await;
    assert_eq!(r.status().as_u16(), 200);

    let asked: Vec<String> = s
        .provider
        .asked()
        .into_iter()
        .map(|(payer, _)| payer.to_ascii_lowercase())
        .collect();
    assert_eq!(asked, vec![lower(sanctioned), lower(clear)]);
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}

/// Within the TTL a verdict is reused (the provider is not asked again, refusals included).
#[tokio::test]
async fn a_verdict_is_cached_within_its_ttl() {
    let s = shop(Options {
        ttl: Duration::from_secs(600),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        let payment = s.payment(CLEAR).await;
        assert_eq!(s.paid(&payment, &[]).await.status().as_u16(), 200);
        let payment = s.payment(SANCTIONED).await;
        assert_eq!(s.paid(&payment, &[]).await.status().as_u16(), 403);
    }
    assert_eq!(s.provider.asked().len(), 2, "{:?}", s.provider.asked());
    assert_eq!(s.served.load(Ordering::SeqCst), 2);
    let cached: Vec<bool> = s.decisions().iter().map(|d| d.cached).collect();
    assert_eq!(cached, vec![false, false, true, true]);
    // Another operator token is another question.
    let payment = s.payment(CLEAR).await;
    let r = s
        .paid(&payment, &[("X-Operator-Token", "other".into())])
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(s.provider.asked().len(), 3);
}

/// After the TTL the provider is asked again.
#[tokio::test]
async fn a_cached_verdict_expires() {
    let ttl = Duration::from_millis(300);
    let s = shop(Options {
        ttl,
        ..Options::default()
    })
    .await;
    let payment = s.payment(CLEAR).await;
    assert_eq!(s.paid(&payment, &[]).await.status().as_u16(), 200);
    assert_eq!(s.provider.asked().len(), 1);
    tokio::time::sleep(ttl * 2).await;
    let payment = s.payment(CLEAR).await;
    assert_eq!(s.paid(&payment, &[]).await.status().as_u16(), 200);
    assert_eq!(s.provider.asked().len(), 2);
    assert!(s.decisions().iter().all(|d| !d.cached));
}
