//! The facilitator's HTTP API against a real anvil node: bodies as the spec defines them,
//! status codes, idempotent settlement, and reconciliation after a restart.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use serde_json::{json, Value};
use tollgate_evm::{AuthorizationWindow, ExactEvmClient};
use tollgate_facilitator::ledger::{PaymentKey, SettlementState};
use tollgate_facilitator::{http, Config, Facilitator};
use tollgate_proto::v1::{PaymentPayloadV1, PaymentRequirementsV1};
use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo};
use tollgate_testkit::{TestChain, DEV_KEYS};

mod support;

use support::{now, requirements_for, serve, PRICE};

struct Setup {
    chain: TestChain,
    config: Config,
    facilitator: Facilitator,
    url: String,
    server: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
    requirements: PaymentRequirements,
    payee: Address,
    _dir: tempfile::TempDir,
}

fn config_for(chain: &TestChain, dir: &std::path::Path, receipt_timeout_secs: u64) -> Config {
    let key = dir.join("signer.key");
    std::fs::write(&key, format!("{}\n", DEV_KEYS[0])).unwrap();
    config_with(
        chain,
        dir,
        &format!(
            "signer_key_file = \"{}\"\nreceipt_timeout_secs = {receipt_timeout_secs}",
            key.display()
        ),
    )
}

/// A one-network config whose `[[networks]]` entry ends with `network_lines`.
fn config_with(chain: &TestChain, dir: &std::path::Path, network_lines: &str) -> Config {
    let text = format!(
        r#"
[ledger]
path = "{ledger}"

[[networks]]
network = "{network}"
rpc_urls = ["{rpc}"]
{network_lines}
"#,
        ledger = dir.join("ledger.db").display(),
        network = chain.caip2(),
        rpc = chain.endpoint(),
    );
    let config = Config::parse(&text).unwrap();
    config.validate().unwrap();
    config
}

async fn setup_with(receipt_timeout_secs: u64) -> Setup {
    setup_config(|chain, dir| config_for(chain, dir, receipt_timeout_secs)).await
}

async fn setup_config(config: impl FnOnce(&TestChain, &std::path::Path) -> Config) -> Setup {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&chain, dir.path());
    let (facilitator, report) = Facilitator::from_config(&config).await.unwrap();
    assert_eq!(report, Default::default());
    let (url, server) = serve(facilitator.clone()).await;
    let payee = TestChain::address(9);
    let requirements = requirements_for(&chain, payee, chain.usdc);
    Setup {
        chain,
        config,
        facilitator,
        url,
        server,
        http: reqwest::Client::new(),
        requirements,
        payee,
        _dir: dir,
    }
}

async fn setup() -> Setup {
    setup_with(30).await
}

impl Setup {
    async fn pay(&self, payer: usize) -> PaymentPayload {
        support::sign(&self.requirements, payer).await
    }

    fn body(&self, payment: &PaymentPayload) -> Value {
        support::body(payment, &self.requirements)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        support::post(&self.http, &self.url, path, body, None).await
    }

    /// [`post`](Self::post) as part of the settlement attempt `key` (`Idempotency-Key`).
    async fn post_keyed(&self, path: &str, body: &Value, key: &str) -> (u16, Value) {
        support::post(&self.http, &self.url, path, body, Some(key)).await
    }

    async fn balance(&self, who: Address) -> U256 {
        self.chain.usdc_balance(who).await.unwrap()
    }
}

#[tokio::test]
async fn verify_then_settle_over_http() {
    let s = setup().await;
    let payment = s.pay(1).await;
    let before = s.balance(s.payee).await;

    let (status, verify) = s.post("/verify", &s.body(&payment)).await;
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["isValid"], true);
    assert_eq!(verify["payer"], TestChain::address(1).to_string());
    assert!(verify.get("invalidReason").is_none());

    let (status, settle) = s.post("/settle", &s.body(&payment)).await;
    assert_eq!(status, 200, "{settle}");
    assert_eq!(settle["success"], true);
    assert_eq!(settle["network"], s.chain.caip2());
    assert_eq!(settle["payer"], TestChain::address(1).to_string());
    let tx = settle["transaction"].as_str().unwrap();
    assert_eq!(tx.len(), 66);
    assert_eq!(s.balance(s.payee).await, before + U256::from(PRICE));

    let evm = tollgate_evm::ExactEvmPayload::from_payment(&payment).unwrap();
    let key = PaymentKey::new(
        &s.chain.caip2(),
        "exact",
        &s.chain.usdc.to_string(),
        &evm.authorization.from.to_string(),
        &evm.authorization.nonce.to_string(),
    );
    let row = s.facilitator.ledger().get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, SettlementState::Confirmed);
    assert_eq!(row.tx_hash.as_deref(), Some(tx));
    assert_eq!(
        s.facilitator
            .ledger()
            .count_events("verify", "valid")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.facilitator
            .ledger()
            .count_events("settle", "success")
            .await
            .unwrap(),
        1
    );

    let supported: Value = s
        .http
        .get(format!("{}/supported", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        supported["kinds"],
        json!([{ "x402Version": 2, "scheme": "exact", "network": s.chain.caip2() }])
    );
    assert_eq!(
        supported["signers"]["eip155:*"][0],
        TestChain::address(0).to_string()
    );

    let health = s
        .http
        .get(format!("{}/health", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["networks"][0]["rpcOk"], true);
}

#[tokio::test]
async fn settling_one_payment_many_times_transfers_once() {
    let s = setup().await;
    let payment = s.pay(2).await;
    let before_payee = s.balance(s.payee).await;
    let before_payer = s.balance(TestChain::address(2)).await;
    let body = s.body(&payment);

    // Without an attempt key, one caller settles; nobody else is told "success" (the official
    // facilitator's behaviour: a copy of a payment header buys nothing).
    let calls = (0..50).map(|_| s.post("/settle", &body));
    let results = futures::future::join_all(calls).await;
    let mut hashes = std::collections::HashSet::new();
    for (status, r) in &results {
        if r["success"] == true {
            assert_eq!(*status, 200, "{r}");
            hashes.insert(r["transaction"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(*status, 400, "{r}");
            let reason = r["errorReason"].as_str().unwrap();
            assert!(
                reason == "payment_in_use" || reason == "invalid_exact_evm_nonce_already_used",
                "{r}"
            );
        }
    }
    assert_eq!(
        hashes.len(),
        1,
        "exactly one caller is told it settled: {results:?}"
    );
    assert_eq!(
        results.iter().filter(|(_, r)| r["success"] == true).count(),
        1
    );
    assert_eq!(s.balance(s.payee).await, before_payee + U256::from(PRICE));
    assert_eq!(
        s.balance(TestChain::address(2)).await,
        before_payer - U256::from(PRICE)
    );

    // And once more, later: the nonce is used.
    let (status, again) = s.post("/settle", &body).await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(again["errorReason"], "invalid_exact_evm_nonce_already_used");
    assert_eq!(s.balance(s.payee).await, before_payee + U256::from(PRICE));
}

#[tokio::test]
async fn bad_payments_and_bodies_get_400_with_the_spec_reason() {
    let s = setup().await;
    let t = now();
    let expired = ExactEvmClient::new(TestChain::signer(3))
        .sign_with_window(
            &s.requirements,
            None,
            AuthorizationWindow {
                valid_after: t - 600,
                valid_before: t - 1,
                nonce: B256::random(),
            },
        )
        .await
        .unwrap();
    let (status, r) = s.post("/verify", &s.body(&expired)).await;
    assert_eq!(status, 400);
    assert_eq!(r["isValid"], false);
    assert_eq!(
        r["invalidReason"],
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    assert!(r["invalidMessage"].as_str().unwrap().contains("expires"));
    let (status, r) = s.post("/settle", &s.body(&expired)).await;
    assert_eq!(status, 400);
    assert_eq!(r["success"], false);
    assert_eq!(
        r["errorReason"],
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    assert_eq!(r["transaction"], "");

    // Malformed bodies: the message names the field.
    let payment = s.pay(3).await;
    let mut body = s.body(&payment);
    body["paymentRequirements"]["amount"] = json!("-1");
    let (status, r) = s.post("/verify", &body).await;
    assert_eq!(status, 400);
    assert_eq!(r["invalidReason"], "invalid_payload");
    assert!(
        r["invalidMessage"]
            .as_str()
            .unwrap()
            .contains("paymentRequirements.amount"),
        "{r}"
    );
    let mut body = s.body(&payment);
    body["x402Version"] = json!(7);
    let (status, r) = s.post("/settle", &body).await;
    assert_eq!(status, 400);
    assert_eq!(r["errorReason"], "invalid_x402_version");
    let raw = s
        .http
        .post(format!("{}/verify", s.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);

    // A network this facilitator does not serve.
    let mut body = s.body(&payment);
    body["paymentRequirements"]["network"] = json!("eip155:1");
    let (status, r) = s.post("/verify", &body).await;
    assert_eq!(status, 400);
    assert_eq!(r["invalidReason"], "invalid_network");

    // Oversized bodies are refused before parsing.
    let huge = json!({ "pad": "x".repeat(100 * 1024) });
    let r = s
        .http
        .post(format!("{}/verify", s.url))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        s.balance(s.payee).await,
        U256::from(tollgate_testkit::chain::INITIAL_USDC)
    );
}

#[tokio::test]
async fn v1_requests_are_served_with_v1_shapes() {
    let s = setup().await;
    let payment = s.pay(4).await;
    let resource = ResourceInfo {
        url: "http://127.0.0.1/thing".into(),
        ..ResourceInfo::default()
    };
    let body = json!({
        "x402Version": 1,
        "paymentPayload": PaymentPayloadV1::from_v2(&payment),
        "paymentRequirements": PaymentRequirementsV1::from_v2(&s.requirements, &resource),
    });
    let (status, r) = s.post("/verify", &body).await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = s.post("/settle", &body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["success"], true);
    assert_eq!(
        r["network"],
        s.chain.caip2(),
        "no v1 name for a local chain"
    );
}

#[tokio::test]
async fn pending_settlement_is_reconciled_after_restart() {
    let s = setup_with(1).await;
    let payment = s.pay(5).await;
    let before = s.balance(s.payee).await;
    s.chain.set_automine(false).await.unwrap();

    let attempt = "paywall-attempt-0000000001";
    let (status, r) = s.post_keyed("/settle", &s.body(&payment), attempt).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["success"], false);
    assert_eq!(r["errorReason"], "settlement_pending");
    let tx = r["transaction"].as_str().unwrap().to_owned();
    assert_eq!(tx.len(), 66);

    // The process goes away with the settlement in flight.
    let body = s.body(&payment);
    s.server.abort();
    drop(s.facilitator);
    s.chain.mine().await.unwrap();
    s.chain.set_automine(true).await.unwrap();

    // A new process on the same ledger finishes it, and a retry of the same attempt gets the
    // same answer.
    let (facilitator, report) = Facilitator::from_config(&s.config).await.unwrap();
    assert_eq!(report.confirmed, 1, "{report:?}");
    let (url, _server) = serve(facilitator).await;
    let r: Value = s
        .http
        .post(format!("{url}/settle"))
        .header("Idempotency-Key", attempt)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["transaction"], tx.as_str());
    assert_eq!(
        s.chain.usdc_balance(s.payee).await.unwrap(),
        before + U256::from(PRICE)
    );
}

#[tokio::test]
async fn chain_outage_is_503_not_the_payers_fault() {
    let s = setup().await;
    let payment = s.pay(6).await;
    let body = s.body(&payment);
    let Setup {
        chain, url, http, ..
    } = s;
    drop(chain); // anvil is killed
    let r = http
        .post(format!("{url}/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["invalidReason"], "unexpected_verify_error");
    let r = http
        .post(format!("{url}/settle"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn many_distinct_payments_settle_concurrently() {
    let s = setup().await;
    let before = s.balance(s.payee).await;
    // What the rig's set-up sent from account 0 (deployments, mints).
    let set_up = tx_count(&s.chain, TestChain::address(0), "latest").await;
    let mut payments = Vec::new();
    for i in 0..100 {
        payments.push(s.pay(1 + i % 8).await);
    }
    let bodies: Vec<Value> = payments.iter().map(|p| s.body(p)).collect();
    let results = futures::future::join_all(bodies.iter().map(|b| s.post("/settle", b))).await;
    let mut hashes = std::collections::HashSet::new();
    for (status, r) in &results {
        assert_eq!(*status, 200, "{r}");
        hashes.insert(r["transaction"].as_str().unwrap().to_owned());
    }
    assert_eq!(hashes.len(), 100, "one transaction per payment");
    assert_eq!(s.balance(s.payee).await, before + U256::from(PRICE * 100));
    // The signer's nonces have no gaps or reuse: the set-up's, then one per payment.
    let nonce = s
        .chain
        .rpc(
            "eth_getTransactionCount",
            json!([TestChain::address(0), "latest"]),
        )
        .await
        .unwrap();
    assert_eq!(nonce, json!(format!("{:#x}", set_up + 100)));
}

#[tokio::test]
async fn metrics_count_results_by_reason() {
    let s = setup().await;
    let payment = s.pay(7).await;
    assert_eq!(s.post("/settle", &s.body(&payment)).await.0, 200);
    let mut bad = s.body(&s.pay(7).await);
    bad["paymentPayload"]["payload"]["signature"] = json!("0x1234");
    assert_eq!(s.post("/verify", &bad).await.0, 400);
    let text = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "tollgate_facilitator_requests_total{endpoint=\"settle\",outcome=\"success\",reason=\"\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("endpoint=\"verify\",outcome=\"invalid\",reason=\"invalid_exact_evm_failed_to_parse_signature\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tollgate_facilitator_request_duration_seconds_count{endpoint=\"settle\"} 1")
    );
    assert!(text.contains("tollgate_facilitator_pending_settlements 0"));
    assert!(text.contains("tollgate_facilitator_ledger_entries{state=\"confirmed\"} 1"));
    assert!(text.contains("tollgate_facilitator_signer_balance_wei{network="));
}

#[tokio::test]
async fn api_key_guards_verify_and_settle() {
    let s = setup().await;
    let limits = http::HttpLimits {
        api_key: Some("k3y-with-enough-length".into()),
        ..http::HttpLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = http::router(s.facilitator.clone(), limits);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let payment = s.pay(8).await;
    let body = s.body(&payment);
    for (auth, expected) in [
        (None, 401),
        (Some("Bearer wrong-key-of-some-length"), 401),
        (Some("k3y-with-enough-length"), 401),
        (Some("Bearer k3y-with-enough-length"), 200),
    ] {
        let mut req = s.http.post(format!("{url}/verify")).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            expected,
            "{auth:?}"
        );
    }
    let r = s
        .http
        .post(format!("{url}/settle"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Discovery stays open.
    let r = s.http.get(format!("{url}/supported")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(!format!(
        "{:?}",
        http::HttpLimits {
            api_key: Some("k3y-with-enough-length".into()),
            ..http::HttpLimits::default()
        }
    )
    .contains("k3y"));
}

/// The transaction count of `who` at `block` ("latest" or "pending").
async fn tx_count(chain: &TestChain, who: Address, block: &str) -> u64 {
    support::tx_count_at(chain, who, block).await
}

#[tokio::test]
async fn signer_pool_settles_concurrently_without_nonce_gaps() {
    // Three signers: account 0 (which set the rig up) and two fresh ones.
    let pool = [0usize, 10, 11];
    // Keys come from the environment, as in production.
    std::env::set_var("POOL_KEY_0", DEV_KEYS[0]);
    std::env::set_var("POOL_KEY_1", POOL_KEYS[0]);
    std::env::set_var("POOL_KEY_2", POOL_KEYS[1]);
    let s = setup_config(|chain, dir| {
        config_with(
            chain,
            dir,
            "signer_selection = \"least-busy\"\nsigners = [{ key_env = \"POOL_KEY_0\" }, { key_env = \"POOL_KEY_1\" }, { key_env = \"POOL_KEY_2\" }]",
        )
    })
    .await;
    let signers: Vec<Address> = vec![TestChain::address(0), pool_address(0), pool_address(1)];
    for (i, who) in signers.iter().enumerate().skip(1) {
        fund(&s.chain, *who).await;
        assert_eq!(
            tx_count(&s.chain, *who, "latest").await,
            0,
            "signer {}",
            pool[i]
        );
    }
    let before = s.balance(s.payee).await;
    let set_up = tx_count(&s.chain, TestChain::address(0), "latest").await;
    let mut bodies = Vec::new();
    for i in 0..120 {
        bodies.push(s.body(&s.pay(1 + i % 8).await));
    }
    let results = futures::future::join_all(bodies.iter().map(|b| s.post("/settle", b))).await;
    let mut hashes = std::collections::HashSet::new();
    for (status, r) in &results {
        assert_eq!(*status, 200, "{r}");
        hashes.insert(r["transaction"].as_str().unwrap().to_owned());
    }
    assert_eq!(hashes.len(), 120, "one transaction per payment");
    assert_eq!(s.balance(s.payee).await, before + U256::from(PRICE * 120));
    // Every signer took a share, and each one's nonces run without gaps: latest == pending, and
    // together they sent exactly one transaction per payment.
    let mut sent = 0;
    for (i, who) in signers.iter().enumerate() {
        let latest = tx_count(&s.chain, *who, "latest").await;
        assert_eq!(latest, tx_count(&s.chain, *who, "pending").await);
        let own = if i == 0 { latest - set_up } else { latest };
        assert!(own > 0, "signer {i} settled nothing");
        sent += own;
    }
    assert_eq!(sent, 120);
    let health: Value = s
        .http
        .get(format!("{}/health", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["networks"][0]["signers"].as_array().unwrap().len(),
        3
    );
}

/// Keys of accounts that are not anvil dev accounts (public test keys: never use with value).
const POOL_KEYS: [&str; 2] = [
    "0x1111111111111111111111111111111111111111111111111111111111111111",
    "0x2222222222222222222222222222222222222222222222222222222222222222",
];

fn pool_address(i: usize) -> Address {
    POOL_KEYS[i]
        .parse::<alloy::signers::local::PrivateKeySigner>()
        .unwrap()
        .address()
}

/// Gives `who` 10 ETH for gas.
async fn fund(chain: &TestChain, who: Address) {
    chain
        .rpc(
            "anvil_setBalance",
            json!([
                who,
                format!(
                    "{:#x}",
                    U256::from(10u64) * U256::from(10u64).pow(U256::from(18))
                )
            ]),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn batch_settles_together_and_a_poisoned_authorization_fails_alone() {
    let s = setup_config(|chain, dir| {
        let key = dir.join("signer.key");
        std::fs::write(&key, DEV_KEYS[0]).unwrap();
        config_with(
            chain,
            dir,
            &format!(
                "signer_key_file = \"{}\"\n[networks.batch]\nwindow_ms = 300\nmax_size = 20\nmulticall3 = \"{}\"",
                key.display(),
                chain.multicall3
            ),
        )
    })
    .await;
    // Payer 1 signs two payments of 600 USDC against a balance of 1000: each verifies alone,
    // together they overdraw. Whichever runs second in the batch is the poisoned one.
    let big = U256::from(600_000_000u64);
    let mut big_requirements = s.requirements.clone();
    big_requirements.amount = big.into();
    let client = ExactEvmClient::new(TestChain::signer(1));
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let p = client.sign(&big_requirements, None).await.unwrap();
        bodies.push(json!({ "x402Version": 2, "paymentPayload": p, "paymentRequirements": big_requirements }));
    }
    for b in &bodies {
        assert_eq!(s.post("/verify", b).await.0, 200);
    }
    for payer in 2..=7 {
        bodies.push(s.body(&s.pay(payer).await));
    }
    let payee_before = s.balance(s.payee).await;
    let blocks_before = s.chain.provider().get_block_number().await.unwrap();
    let results = futures::future::join_all(bodies.iter().map(|b| s.post("/settle", b))).await;

    let mut batch_txs = std::collections::HashSet::new();
    let mut poisoned = 0;
    for (i, (status, r)) in results.iter().enumerate() {
        if *status == 200 {
            batch_txs.insert(r["transaction"].as_str().unwrap().to_owned());
            continue;
        }
        assert!(i < 2, "only one of the overdrawing pair may fail: {r}");
        assert_eq!(*status, 400, "{r}");
        assert_eq!(
            r["errorReason"], "invalid_exact_evm_insufficient_balance",
            "{r}"
        );
        assert_eq!(r["transaction"], "", "{r}");
        poisoned += 1;
    }
    assert_eq!(poisoned, 1, "{results:?}");
    assert_eq!(
        batch_txs.len(),
        1,
        "the seven good payments share one transaction: {batch_txs:?}"
    );
    assert_eq!(
        s.balance(s.payee).await,
        payee_before + big + U256::from(PRICE * 6)
    );
    assert_eq!(
        s.balance(TestChain::address(1)).await,
        U256::from(400_000_000u64)
    );
    // One block, one transaction, from the signer to Multicall3.
    let blocks_after = s.chain.provider().get_block_number().await.unwrap();
    assert_eq!(blocks_after, blocks_before + 1);
    let tx: B256 = batch_txs.into_iter().next().unwrap().parse().unwrap();
    let receipt = s
        .chain
        .provider()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.to, Some(s.chain.multicall3));
    // Settling a batched payment again without its attempt key is refused from the ledger.
    let again = s.post("/settle", &bodies[2]).await;
    assert_eq!(again.0, 400, "{}", again.1);
    assert_eq!(
        again.1["errorReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    assert!(receipt.status());
}

#[tokio::test]
async fn a_signer_low_on_gas_degrades_health() {
    let s = setup_config(|chain, dir| {
        let key = dir.join("signer.key");
        std::fs::write(&key, DEV_KEYS[0]).unwrap();
        config_with(
            chain,
            dir,
            &format!(
                "signer_key_file = \"{}\"\nmin_signer_balance_wei = \"1000000000000000000000000\"",
                key.display()
            ),
        )
    })
    .await;
    let r = s
        .http
        .get(format!("{}/health", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["networks"][0]["rpcOk"], true);
    assert_eq!(
        health["networks"][0]["signers"][0]["lowOnGas"], true,
        "{health}"
    );
    let text = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "tollgate_facilitator_signer_low_on_gas{{network=\"{}\",signer=\"{}\"}} 1",
            s.chain.caip2(),
            TestChain::address(0)
        )),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limit_is_per_client_and_spares_health() {
    let s = setup().await;
    let limits = http::HttpLimits {
        rate_limit: Some(tollgate_facilitator::rate_limit::RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..http::HttpLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = http::router(s.facilitator.clone(), limits)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = s.http.get(format!("{url}/supported")).send().await.unwrap();
        if r.status().as_u16() == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // A settlement from the same client is refused too, before touching the chain.
    let payment = s.pay(3).await;
    assert_eq!(
        s.http
            .post(format!("{url}/settle"))
            .json(&s.body(&payment))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        429
    );
    let health = s.http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "health checks are never limited"
    );
}

/// A loopback TCP forwarder to `target` (`http://host:port`). Aborting the returned task
/// closes the listener and every connection through it: an RPC endpoint going down.
fn forwarder(target: &str) -> (String, tokio::task::JoinHandle<()>) {
    let target = target.trim_start_matches("http://").to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let target = target.clone();
            connections.spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn rpc_endpoints_fail_over_at_start_up_and_while_running() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut primary = None;
    let s = setup_config(|chain, dir| {
        let (url, task) = forwarder(&chain.endpoint());
        primary = Some(task);
        let mut config = config_for(chain, dir, 30);
        // The primary answers, the first backup is down from the start, the last one is the node.
        config.networks[0].chain.rpc_urls = vec![url, closed.clone(), chain.endpoint()];
        config.validate().unwrap();
        config
    })
    .await;
    let first = s.pay(1).await;
    let (status, r) = s.post("/verify", &s.body(&first)).await;
    assert_eq!((status, &r["isValid"]), (200, &json!(true)), "{r}");

    primary.unwrap().abort();
    let before = s.balance(s.payee).await;
    for payment in [first, s.pay(2).await] {
        let (status, r) = s.post("/settle", &s.body(&payment)).await;
        assert_eq!((status, &r["success"]), (200, &json!(true)), "{r}");
    }
    assert_eq!(s.balance(s.payee).await, before + U256::from(2 * PRICE));

    // Endpoints that serve another chain than the configured one stop the start.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&s.chain, dir.path(), 30);
    config.networks[0].chain.network = "eip155:1".parse().unwrap();
    let err = Facilitator::from_config(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("eip155:1") && err.contains("eip155:31337"),
        "{err}"
    );
}
