//! Two `tollgate facilitator` processes on one PostgreSQL ledger: the same payment sent to
//! both, many times at once, moves money exactly once and every caller gets the same answer.

use std::collections::HashSet;

use alloy::primitives::U256;
use serde_json::{json, Value};
use tollgate::evm::ExactEvmClient;
use tollgate::proto::PaymentRequirements;
use tollgate_testkit::{Postgres, TestChain, DEV_KEYS};

mod support;

const PRICE: u64 = 10_000;

async fn tx_count(chain: &TestChain, who: alloy::primitives::Address) -> u64 {
    let n = chain
        .rpc("eth_getTransactionCount", json!([who, "latest"]))
        .await
        .unwrap();
    u64::from_str_radix(n.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_ledger_and_settle_once() {
    let pg = Postgres::start().unwrap();
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("f.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n",
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    // Each instance settles with its own key (one key's nonces are one queue); the ledger URL
    // comes from the environment, as a password-bearing URL should.
    let url = pg.url();
    let (_a, a) = support::start_facilitator(
        &config,
        &[
            ("TOLLGATE_TEST_SIGNER", DEV_KEYS[0]),
            ("TOLLGATE_LEDGER_URL", &url),
        ],
    );
    let (_b, b) = support::start_facilitator(
        &config,
        &[
            ("TOLLGATE_TEST_SIGNER", DEV_KEYS[9]),
            ("TOLLGATE_LEDGER_URL", &url),
        ],
    );
    let signers = [TestChain::address(0), TestChain::address(9)];
    let sent_before: u64 = tx_count(&chain, signers[0]).await + tx_count(&chain, signers[1]).await;

    let payee = TestChain::address(8);
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": chain.caip2(), "amount": PRICE.to_string(),
        "asset": chain.usdc.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 120,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap();
    let body = |payment: &tollgate::proto::PaymentPayload| json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements });
    let http = reqwest::Client::new();
    let post = |base: &str, body: Value| {
        let (http, url) = (http.clone(), format!("{base}/settle"));
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let before = chain.usdc_balance(payee).await.unwrap();

    // One payment, 60 settles at once, alternating between the two processes, no attempt key.
    let payment = ExactEvmClient::new(TestChain::signer(1))
        .sign(&requirements, None)
        .await
        .unwrap();
    let results = futures::future::join_all(
        (0..60).map(|i| post(if i % 2 == 0 { &a } else { &b }, body(&payment))),
    )
    .await;
    // Keyless settles of one payment: the first settles it, every other caller — on either
    // process — is refused (settlement in progress or nonce already used), never told
    // "success" for a payment it did not settle.
    let mut txs = HashSet::new();
    let mut refused = 0;
    for (status, r) in &results {
        if r["success"] == true {
            assert_eq!(*status, 200, "{r}");
            txs.insert(r["transaction"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(*status, 400, "{r}");
            let reason = r["errorReason"].as_str().unwrap_or_default();
            assert!(
                reason == "invalid_exact_evm_nonce_already_used" || reason == "payment_in_use",
                "{r}"
            );
            refused += 1;
        }
    }
    assert_eq!(txs.len(), 1, "exactly one caller settles: {txs:?}");
    assert_eq!(refused, 59);
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(PRICE)
    );
    let sent: u64 = tx_count(&chain, signers[0]).await + tx_count(&chain, signers[1]).await;
    assert_eq!(sent - sent_before, 1, "exactly one settlement transaction");

    // Distinct payments spread over both: all settle, each once.
    let mut payments = Vec::new();
    for i in 0..40 {
        let payer = ExactEvmClient::new(TestChain::signer(2 + i % 6));
        payments.push(payer.sign(&requirements, None).await.unwrap());
    }
    let results = futures::future::join_all(
        payments
            .iter()
            .enumerate()
            .map(|(i, p)| post(if i % 2 == 0 { &a } else { &b }, body(p))),
    )
    .await;
    for (status, r) in &results {
        assert_eq!(*status, 200, "{r}");
    }
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(PRICE * 41)
    );
    // Both processes see the whole shared ledger.
    for base in [&a, &b] {
        let health: Value = http
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["ledger"], json!([["confirmed", 41]]), "{health}");
    }
}
