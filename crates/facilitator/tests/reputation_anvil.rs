//! The reputation service (`GET /reputation/{address}`, `POST /assess`) of a running
//! facilitator, read by `tollgate_identity::AgentScoreClient` — the AgentScore-compatible
//! client tested against a real server: ours — after real payments settled on anvil.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tollgate_core::identity::{IdentityPolicy, IdentityProvider, ReputationFloor, Subject};
use tollgate_facilitator::reputation::ReputationService;
use tollgate_facilitator::{http, Config, Facilitator};
use tollgate_identity::{AgentScoreConfig, All, SanctionsList};
use tollgate_testkit::{TestChain, DEV_KEYS};

mod support;

use support::{body, requirements_for, sign, PRICE};

const KEY: &str = "reputation-test-key";
const PAYER: usize = 1;
const SANCTIONED: usize = 3;
const FRESH: usize = 5;

struct Served {
    chain: TestChain,
    url: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Served {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    std::fs::write(&key, format!("{}\n", DEV_KEYS[0])).unwrap();
    let sanctions = dir.path().join("sdn.txt");
    // Listed in upper case: EVM addresses compare as 20-byte values.
    std::fs::write(
        &sanctions,
        format!(
            "# test list\n0x{}  # account {SANCTIONED}\n",
            hex_upper(TestChain::address(SANCTIONED))
        ),
    )
    .unwrap();
    let text = format!(
        r#"
[ledger]
path = "{ledger}"

[identity]
sanctions_file = "{sanctions}"

[[networks]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_key_file = "{key}"
"#,
        ledger = dir.path().join("ledger.db").display(),
        sanctions = sanctions.display(),
        network = chain.caip2(),
        rpc = chain.endpoint(),
        key = key.display(),
    );
    let config = Config::parse(&text).unwrap();
    config.validate().unwrap();
    let (facilitator, _) = Facilitator::from_config(&config).await.unwrap();
    let reputation = ReputationService::from_config(facilitator.ledger().clone(), &config.identity)
        .await
        .unwrap();
    let limits = http::HttpLimits {
        api_key: Some(KEY.into()),
        ..Default::default()
    };
    let app = http::router_with_reputation(facilitator, limits, reputation);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Served {
        chain,
        url,
        server,
        _dir: dir,
    }
}

fn hex_upper(a: alloy::primitives::Address) -> String {
    a.to_string()[2..].to_ascii_uppercase()
}

fn subject(chain: &TestChain, account: usize) -> Subject {
    Subject {
        payer: TestChain::address(account).to_string(),
        network: chain.caip2().parse().unwrap(),
        operator_token: None,
    }
}

async fn post_settle(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    key: &str,
) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{url}/settle"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn agentscore_client_reads_reputation_and_assessments_from_a_running_facilitator() {
    let s = start().await;
    let url = s.url.clone();
    let http = reqwest::Client::new();
    let payee = TestChain::address(9);
    let requirements = requirements_for(&s.chain, payee, s.chain.usdc);
    let client = AgentScoreConfig::new(&s.url)
        .api_key(KEY)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let payer = TestChain::address(PAYER);

    // Before any payment: nothing known, score 0.
    let before = client.reputation(&payer.to_string()).await.unwrap();
    assert_eq!((before.settled_count, before.score), (0, 0));
    assert!(before.assets.is_empty() && before.first_seen.is_none());

    // Two payments settled on chain.
    let first = sign(&requirements, PAYER).await;
    let (status, answer) = post_settle(
        &http,
        &s.url,
        &body(&first, &requirements),
        "reputation-attempt-pay-1",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let second = sign(&requirements, PAYER).await;
    let (status, answer) = post_settle(
        &http,
        &s.url,
        &body(&second, &requirements),
        "reputation-attempt-pay-2",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // The first payment presented again under another attempt: refused as a replay.
    let (status, answer) = post_settle(
        &http,
        &s.url,
        &body(&first, &requirements),
        "reputation-attempt-replay",
    )
    .await;
    assert!(status == 400 || status == 409, "{status} {answer}");
    // A payment that does not meet the requirements (a higher price): refused, a failure.
    let mut dearer = requirements.clone();
    dearer.amount = (PRICE * 2).to_string().parse().unwrap();
    let short = sign(&requirements, PAYER).await;
    let (status, answer) = post_settle(
        &http,
        &s.url,
        &body(&short, &dearer),
        "reputation-attempt-short",
    )
    .await;
    assert_eq!(status, 400, "{answer}");

    // The checksummed spelling finds the ledger's lower-case rows.
    let r = client.reputation(&payer.to_checksum(None)).await.unwrap();
    assert_eq!(r.address, payer.to_string().to_ascii_lowercase());
    assert_eq!(r.settled_count, 2);
    assert_eq!(r.assets.len(), 1);
    let asset = &r.assets[0];
    assert_eq!(asset.network, s.chain.caip2().to_string());
    assert_eq!(asset.asset, s.chain.usdc.to_string().to_ascii_lowercase());
    assert_eq!(asset.settled_count, 2);
    assert_eq!(asset.settled_volume, (2 * PRICE).to_string());
    assert!(asset.first_seen <= asset.last_seen && asset.last_seen <= r.as_of);
    assert_eq!(r.distinct_payees, 1);
    assert!(r.replayed_attempts >= 1, "{r:?}");
    assert!(r.failed_attempts >= 1, "{r:?}");
    assert!(r.score > 0, "{r:?}");
    println!(
        "GET /reputation/{payer}: {}",
        serde_json::to_string_pretty(&r).unwrap()
    );

    // Sanctions: the listed address is denied, another allowed.
    let sanctions = IdentityPolicy {
        require_sanctions_clear: true,
        ..Default::default()
    };
    let denied = client
        .assess(&subject(&s.chain, SANCTIONED), &sanctions)
        .await
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.checks[0].rule, "require_sanctions_clear");
    assert!(!denied.checks[0].passed && denied.checks[0].remedy.is_some());
    let allowed = client
        .assess(&subject(&s.chain, PAYER), &sanctions)
        .await
        .unwrap();
    assert!(allowed.allowed, "{allowed:?}");

    // A track record: a fresh address has none; the payer has two settlements.
    let record = IdentityPolicy {
        min_reputation: Some(ReputationFloor {
            min_settled: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let fresh = client
        .assess(&subject(&s.chain, FRESH), &record)
        .await
        .unwrap();
    assert!(!fresh.allowed);
    assert_eq!(fresh.checks[0].rule, "min_reputation");
    assert!(fresh.checks[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("0 settled"));
    let known = client
        .assess(&subject(&s.chain, PAYER), &record)
        .await
        .unwrap();
    assert!(known.allowed, "{known:?}");

    // The facilitator knows nothing of KYC: that rule fails closed.
    let kyc = IdentityPolicy {
        require_kyc: true,
        ..Default::default()
    };
    let a = client
        .assess(&subject(&s.chain, PAYER), &kyc)
        .await
        .unwrap();
    assert!(!a.allowed);
    assert!(a.checks[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("does not know"));

    // Combined with a local list (empty here): still allowed only if both allow.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.txt"), "# nobody\n").unwrap();
    let local = SanctionsList::load(dir.path().join("empty.txt"))
        .await
        .unwrap();
    let both = All(vec![Arc::new(client.clone()), Arc::new(local)]);
    assert!(
        both.assess(&subject(&s.chain, PAYER), &sanctions)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !both
            .assess(&subject(&s.chain, SANCTIONED), &sanctions)
            .await
            .unwrap()
            .allowed
    );

    // The raw wire shape is AgentScore's.
    let raw = http
        .post(format!("{}/assess", s.url))
        .bearer_auth(KEY)
        .json(&json!({
            "address": TestChain::address(SANCTIONED).to_string(),
            "chain": s.chain.caip2().to_string(),
            "policy": { "require_sanctions_clear": true },
            "signer": { "address": TestChain::address(SANCTIONED).to_string(), "network": s.chain.caip2().to_string() }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let raw: serde_json::Value = raw.json().await.unwrap();
    println!("POST /assess (sanctioned): {raw}");
    assert_eq!(raw["decision"], "deny");
    assert_eq!(raw["policy_result"]["all_passed"], false);
    assert_eq!(raw["signer_sanctions"]["sanctioned"], true);
    assert!(!raw["decision_reasons"].as_array().unwrap().is_empty());

    // Without the API key: a ProviderError naming the status, never the key.
    let anonymous = AgentScoreConfig::new(&s.url).build().unwrap();
    let err = anonymous
        .assess(&subject(&s.chain, PAYER), &sanctions)
        .await
        .unwrap_err();
    assert!(err.reason.contains("401"), "{err}");
    let wrong = AgentScoreConfig::new(&s.url)
        .api_key("wrong-secret-key")
        .build()
        .unwrap();
    let err = wrong.reputation(&payer.to_string()).await.unwrap_err();
    assert!(
        err.reason.contains("401") && !err.to_string().contains("wrong-secret"),
        "{err}"
    );

    // A malformed address: a 4xx with a JSON error, named in the ProviderError.
    let err = client.reputation("not an address").await.unwrap_err();
    assert!(
        err.reason.contains("400") && err.reason.contains("invalid address"),
        "{err}"
    );

    // The server going down: a ProviderError (the gate's 503), not a verdict. (A new client:
    // the old one's pooled connection is served by its own task until it closes.)
    let Served { server, .. } = s;
    server.abort();
    let _ = server.await;
    let client = AgentScoreConfig::new(&url).api_key(KEY).build().unwrap();
    let err = client
        .assess(&subject(&s.chain, PAYER), &sanctions)
        .await
        .unwrap_err();
    assert_eq!(err.provider, "agentscore");
}
