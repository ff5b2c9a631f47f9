//! `tollgate pay --approve-permit2`: the payer's one-time, explicit approval of the canonical
//! Permit2 contract for a token without EIP-3009, sent from the payer's key through the
//! `--rpc-url` of the token's chain — and never sent when it is not asked for, or when the
//! allowance is already there.

use std::process::{Command, Output};

use alloy::primitives::U256;
use tollgate_testkit::{TestChain, DEV_KEYS};

fn pay(args: &[&str], key: &str, ledger: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("pay")
        .args(args)
        .arg("--ledger")
        .arg(ledger)
        .env("TOLLGATE_PAY_KEY", key)
        .env_remove("TOLLGATE_RPC_URL")
        .output()
        .unwrap()
}

#[tokio::test]
async fn approve_permit2_is_explicit_bounded_and_sent_once() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("spend.db");
    let payer = TestChain::address(4);
    let usdt = chain.usdt.to_string();
    let rpc = chain.endpoint();
    assert_eq!(
        chain.permit2_allowance(chain.usdt, payer).await.unwrap(),
        U256::ZERO
    );

    // A bounded approval, with a JSON summary naming the transaction.
    let out = pay(
        &[
            "--approve-permit2",
            &usdt,
            "--approve-amount",
            "2500000",
            "--rpc-url",
            &rpc,
            "--json",
        ],
        DEV_KEYS[4],
        &ledger,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["approved"]["amount"], "2500000");
    assert_eq!(
        summary["approved"]["payer"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        payer.to_string().to_lowercase()
    );
    let tx = summary["approved"]["transaction"].as_str().unwrap();
    let receipt = chain
        .rpc("eth_getTransactionReceipt", serde_json::json!([tx]))
        .await
        .unwrap();
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(
        chain.permit2_allowance(chain.usdt, payer).await.unwrap(),
        U256::from(2_500_000u64)
    );
    let nonce_after = chain
        .rpc(
            "eth_getTransactionCount",
            serde_json::json!([payer, "latest"]),
        )
        .await
        .unwrap();

    // Asking again for no more than is there sends nothing.
    let out = pay(
        &[
            "--approve-permit2",
            &usdt,
            "--approve-amount",
            "1000",
            "--rpc-url",
            &rpc,
        ],
        DEV_KEYS[4],
        &ledger,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing sent"));
    assert_eq!(
        chain
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([payer, "latest"])
            )
            .await
            .unwrap(),
        nonce_after
    );

    // `max` is the usual unlimited approval.
    let out = pay(
        &["--approve-permit2", &usdt, "--rpc-url", &rpc],
        DEV_KEYS[4],
        &ledger,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        chain.permit2_allowance(chain.usdt, payer).await.unwrap(),
        U256::MAX
    );

    // Bad input: a clear error, nothing sent.
    for (args, says) in [
        (
            vec![
                "--approve-permit2",
                "not-an-address",
                "--rpc-url",
                rpc.as_str(),
            ],
            "not a token address",
        ),
        (
            vec![
                "--approve-permit2",
                usdt.as_str(),
                "--approve-amount",
                "1.5",
                "--rpc-url",
                rpc.as_str(),
            ],
            "neither `max`",
        ),
        (vec!["--approve-permit2", usdt.as_str()], "needs --rpc-url"),
    ] {
        let out = pay(&args, DEV_KEYS[5], &ledger);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains(DEV_KEYS[5].trim_start_matches("0x")),
            "the key never appears"
        );
    }
    assert_eq!(
        chain
            .permit2_allowance(chain.usdt, TestChain::address(5))
            .await
            .unwrap(),
        U256::ZERO
    );
}
