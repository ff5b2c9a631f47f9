//! `kill -9` of a facilitator in the middle of a settlement loses nothing and sends nothing
//! twice: the restarted process reconciles the ledger against the chain.

use std::time::Duration;

use alloy::primitives::U256;
use serde_json::json;
use tollgate::evm::ExactEvmClient;
use tollgate::proto::PaymentRequirements;
use tollgate_testkit::{TestChain, DEV_KEYS};

mod support;

fn start(config: &std::path::Path) -> (support::Running, String) {
    support::start_facilitator(config, &[("TOLLGATE_TEST_SIGNER", DEV_KEYS[0])])
}

/// The paywall's attempt key for the settlement that is interrupted and retried.
const ATTEMPT: &str = "crash-test-attempt-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_settlement_then_restart_reconciles() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("f.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\nreceipt_timeout_secs = 60\n",
            dir.path().join("ledger.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let payee = TestChain::address(9);
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": chain.caip2(), "amount": "10000",
        "asset": chain.usdc.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 120,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap();
    let payment = ExactEvmClient::new(TestChain::signer(1))
        .sign(&requirements, None)
        .await
        .unwrap();
    let body =
        json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements });
    let before = chain.usdc_balance(payee).await.unwrap();
    // What the rig's set-up sent from the facilitator's key (deployments, mints).
    let set_up = chain
        .rpc(
            "eth_getTransactionCount",
            json!([TestChain::address(0), "latest"]),
        )
        .await
        .unwrap();
    let set_up =
        u64::from_str_radix(set_up.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();

    let (mut first, addr) = start(&config);
    chain.set_automine(false).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{addr}/settle");
    let stuck = tokio::spawn({
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        async move {
            http.post(url)
                .header("idempotency-key", ATTEMPT)
                .json(&body)
                .send()
                .await
        }
    });
    // Wait until the settlement transaction is in the mempool, then kill the process.
    let signer = TestChain::address(0);
    for _ in 0..100 {
        let pending = chain
            .rpc("eth_getTransactionCount", json!([signer, "pending"]))
            .await
            .unwrap();
        let latest = chain
            .rpc("eth_getTransactionCount", json!([signer, "latest"]))
            .await
            .unwrap();
        if pending != latest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill_9();
    assert!(stuck.await.unwrap().is_err(), "the killed process answered");

    // The transaction lands while no facilitator runs.
    chain.mine().await.unwrap();
    chain.set_automine(true).await.unwrap();
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(10_000u64)
    );

    // A new process on the same ledger: the retry of the same attempt gets the original
    // settlement, no new transfer.
    let (mut second, addr) = start(&config);
    let r = http
        .post(format!("{addr}/settle"))
        .header("idempotency-key", ATTEMPT)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(r["success"], true, "{r}");
    let tx = r["transaction"].as_str().unwrap().to_owned();
    let receipt = chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await
        .unwrap();
    assert_eq!(receipt["status"], json!("0x1"));
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(10_000u64)
    );
    let nonce = chain
        .rpc("eth_getTransactionCount", json!([signer, "latest"]))
        .await
        .unwrap();
    assert_eq!(
        nonce,
        json!(format!("{:#x}", set_up + 1)),
        "exactly one settlement tx"
    );
    // Anyone else presenting the same payment — without the attempt's key — is refused.
    let r: serde_json::Value = http
        .post(format!("{addr}/settle"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(
        r["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{r}"
    );
    second.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_settlements_before_exiting() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("f.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\nreceipt_timeout_secs = 60\n",
            dir.path().join("ledger.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let payee = TestChain::address(9);
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": chain.caip2(), "amount": "10000",
        "asset": chain.usdc.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 120,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap();
    let payment = ExactEvmClient::new(TestChain::signer(2))
        .sign(&requirements, None)
        .await
        .unwrap();
    let body =
        json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements });
    let (mut running, addr) = start(&config);
    chain.set_automine(false).await.unwrap();
    let in_flight = tokio::spawn({
        let (url, body) = (format!("{addr}/settle"), body.clone());
        async move { reqwest::Client::new().post(url).json(&body).send().await }
    });
    let signer = TestChain::address(0);
    for _ in 0..100 {
        let pending = chain
            .rpc("eth_getTransactionCount", json!([signer, "pending"]))
            .await
            .unwrap();
        let latest = chain
            .rpc("eth_getTransactionCount", json!([signer, "latest"]))
            .await
            .unwrap();
        if pending != latest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Asked to stop while the settlement waits for its block.
    running.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        running.still_running(),
        "exited with a settlement in flight"
    );
    let before = chain.usdc_balance(payee).await.unwrap();
    chain.mine().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status().as_u16(), 200);
    let settled: serde_json::Value = response.json().await.unwrap();
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(10_000u64)
    );
    assert!(
        running.wait_exit(Duration::from_secs(10)),
        "did not exit after draining"
    );
}
