//! `[identity]` in the gateway's file: the policy, fail-open and cache settings are validated,
//! the gateway refuses to start without a provider for them, and — with the real facilitator
//! over HTTP on a test chain — a sanctioned payer is refused with 403 before the upstream is
//! called or anything is settled, while a clear payer is served and charged.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, U256};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tollgate_evm::{ExactEvmClient, FacilitatorConfig};
use tollgate_gateway::{ConfigError, GatewayConfig, GatewayError, Plugins};
use tollgate_proto::{header, PaymentRequired};
use tollgate_server::{
    Assessment, Decision, DecisionResult, DecisionSink, IdentityPolicy, IdentityProvider,
    ProviderError, RuleCheck, Subject,
};
use tollgate_testkit::TestChain;

use support::{facilitator, route, serve_url};

const PRICE: u64 = 25_000;
const SANCTIONED: usize = 4;
const CLEAR: usize = 5;

/// A fixed sanctions list: refuses the addresses it holds, counts the questions.
struct SanctionsList {
    refused: HashSet<String>,
    asked: AtomicUsize,
}

impl IdentityProvider for SanctionsList {
    fn name(&self) -> &str {
        "test-sanctions-list"
    }

    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        _policy: &'a IdentityPolicy,
    ) -> Pin<Box<dyn Future<Output = Result<Assessment, ProviderError>> + Send + 'a>> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let listed = self.refused.contains(&subject.payer.to_ascii_lowercase());
            Ok(Assessment {
                allowed: !listed,
                checks: vec![RuleCheck {
                    rule: "require_sanctions_clear".into(),
                    passed: !listed,
                    reason: listed.then(|| "listed".into()),
                    remedy: listed.then(|| "use another wallet".into()),
                }],
            })
        })
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Decision>>);

impl DecisionSink for Recorder {
    fn record(&self, decision: &Decision) {
        self.0.lock().unwrap().push(decision.clone());
    }
}

const BASE: &str = r#"
upstream = "http://127.0.0.1:3000"
[facilitator]
url = "http://127.0.0.1:4020"
[payment]
network = "eip155:8453"
pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
[[routes]]
route = "GET /weather"
price = "$0.001"
"#;

fn config(identity: &str) -> Result<GatewayConfig, ConfigError> {
    let config = GatewayConfig::parse(&format!("{BASE}{identity}"))?;
    config.validate()?;
    Ok(config)
}

#[test]
fn the_identity_table_is_read_and_checked() {
    let c = config(
        "[identity]\nfail_open = true\ncache_ttl_secs = 30\n[identity.policy]\nrequire_sanctions_clear = true\nblocked_jurisdictions = [\"KP\"]\n",
    )
    .unwrap();
    let identity = c.identity.unwrap();
    assert!(identity.fail_open);
    assert_eq!(identity.cache_ttl_secs, 30);
    assert!(identity.policy.require_sanctions_clear);
    assert_eq!(identity.policy.blocked_jurisdictions, vec!["KP".to_owned()]);

    // Defaults: fail closed, five minutes.
    let c = config("[identity.policy]\nrequire_kyc = true\n").unwrap();
    let identity = c.identity.unwrap();
    assert!(!identity.fail_open);
    assert_eq!(identity.cache_ttl_secs, 300);
    assert!(config("").unwrap().identity.is_none());

    for (table, key) in [
        ("[identity.policy]\n", "identity.policy"),
        (
            "[identity.policy]\nblocked_jurisdictions = [\"north korea\"]\n",
            "identity.policy.blocked_jurisdictions",
        ),
        (
            "[identity.policy]\nallowed_jurisdictions = [\"FR\"]\nblocked_jurisdictions = [\"FR\"]\n",
            "identity.policy.allowed_jurisdictions",
        ),
        (
            "[identity]\ncache_ttl_secs = 100000\n[identity.policy]\nrequire_kyc = true\n",
            "identity.cache_ttl_secs",
        ),
    ] {
        match config(table) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{table}"),
            other => panic!("{table}: {other:?}"),
        }
    }
    // Unknown keys, in the table or the policy, are errors: a misspelt rule must not be
    // silently dropped.
    for table in [
        "[identity]\nfailopen = true\n[identity.policy]\nrequire_kyc = true\n",
        "[identity.policy]\nrequire_sanction_clear = true\n",
    ] {
        assert!(
            matches!(config(table), Err(ConfigError::Parse(_))),
            "{table}"
        );
    }
}

/// A gateway whose file asks for an identity check and that was given no provider does not
/// start, rather than serve every payer unchecked.
#[tokio::test]
async fn identity_without_a_provider_does_not_start() {
    let c = config("[identity.policy]\nrequire_sanctions_clear = true\n").unwrap();
    let err = tollgate_gateway::app(&c).await.err().unwrap();
    assert!(matches!(err, GatewayError::NoIdentityProvider), "{err}");
}

#[tokio::test]
async fn a_sanctioned_payer_is_refused_before_the_upstream_and_never_charged() {
    let chain = TestChain::start().await.unwrap();
    let facilitator_url = format!(
        "http://{}",
        facilitator(&chain, FacilitatorConfig::default()).await
    );
    let upstream_calls = Arc::new(AtomicUsize::new(0));
    let calls = upstream_calls.clone();
    let upstream = serve_url(Router::new().route(
        "/weather",
        get(move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            "clear skies"
        }),
    ))
    .await;
    let payee = TestChain::address(9);
    let text = format!(
        "upstream = \"{upstream}\"\n[facilitator]\nurl = \"{facilitator_url}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{payee}\"\n{}[identity]\ncache_ttl_secs = 60\n[identity.policy]\nrequire_sanctions_clear = true\n",
        chain.caip2(),
        route(&chain, "GET /weather", PRICE),
    );
    let config = GatewayConfig::parse(&text).unwrap();
    let provider = Arc::new(SanctionsList {
        refused: [TestChain::address(SANCTIONED)]
            .iter()
            .map(|a| a.to_string().to_ascii_lowercase())
            .collect(),
        asked: AtomicUsize::new(0),
    });
    let decisions = Arc::new(Recorder::default());
    let app = tollgate_gateway::app_with(
        &config,
        Plugins {
            identity: Some(provider.clone()),
            decisions: Some(decisions.clone()),
            ..Plugins::default()
        },
    )
    .await
    .unwrap();
    let gateway = serve_url(app).await;
    let http = reqwest::Client::new();
    let url = format!("{gateway}/weather");
    let balance = |who: Address| {
        let chain = &chain;
        async move { chain.usdc_balance(who).await.unwrap() }
    };
    let pay = |payer: usize| {
        let (http, url) = (&http, &url);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 402);
            let challenge: PaymentRequired = header::payment_required_from_headers(r.headers())
                .unwrap()
                .unwrap();
            let payment = ExactEvmClient::new(TestChain::signer(payer))
                .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
                .await
                .unwrap();
            http.get(url)
                .header("PAYMENT-SIGNATURE", header::encode(&payment))
                // Claims a clear wallet: changes nothing.
                .header("X-Wallet-Address", TestChain::address(CLEAR).to_string())
                .send()
                .await
                .unwrap()
        }
    };

    let sanctioned = TestChain::address(SANCTIONED);
    let (buyer_before, payee_before) = (balance(sanctioned).await, balance(payee).await);
    let r = pay(SANCTIONED).await;
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "identity_check_failed");
    assert_eq!(body["checks"][0]["rule"], "require_sanctions_clear");
    assert_eq!(body["checks"][0]["passed"], false);
    assert_eq!(body["checks"][0]["remedy"], "use another wallet");
    assert_eq!(upstream_calls.load(Ordering::SeqCst), 0);
    assert_eq!(balance(sanctioned).await, buyer_before);
    assert_eq!(balance(payee).await, payee_before);
    // The 402s that fetched the price asked the provider nothing.
    assert_eq!(provider.asked.load(Ordering::SeqCst), 1);

    let r = pay(CLEAR).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "clear skies");
    assert_eq!(upstream_calls.load(Ordering::SeqCst), 1);
    assert_eq!(balance(payee).await, payee_before + U256::from(PRICE));
    assert_eq!(provider.asked.load(Ordering::SeqCst), 2);

    let results: Vec<DecisionResult> = decisions
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.result)
        .collect();
    assert_eq!(
        results,
        vec![DecisionResult::Refused, DecisionResult::Allowed]
    );
}
