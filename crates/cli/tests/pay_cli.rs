//! `tollgate pay` end to end: a real paywall and facilitator on anvil, the binary as a user
//! runs it, exit codes included.

use std::process::{Command, Output};

use alloy::primitives::U256;
use axum::routing::get;
use serde_json::json;
use tollgate::evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate::facilitator::{Facilitator, Ledger};
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_testkit::{TestChain, DEV_KEYS};

struct Env {
    chain: TestChain,
    url: String,
    asset_flag: String,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let chain = TestChain::start().await.unwrap();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(10_000u64),
        &chain.usdc.to_string(),
        chain.caip2().parse().unwrap(),
        &TestChain::address(9).to_string(),
        extra,
    );
    let layer = PaywallLayer::new(facilitator)
        .route("GET /data", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /broken", RoutePrice::new(option))
        .unwrap();
    let app = axum::Router::new()
        .route("/data", get(|| async { "the paid data" }))
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }),
        )
        .route("/free", get(|| async { "free" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let asset_flag = format!("{}/{}/USDC/6", chain.caip2(), chain.usdc);
    Env {
        chain,
        url,
        asset_flag,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Env {
    async fn pay(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("pay")
            .args(args)
            .arg("--asset")
            .arg(&self.asset_flag)
            .arg("--ledger")
            .arg(self.dir.path().join("spend.db"))
            .env("TOLLGATE_PAY_KEY", DEV_KEYS[2])
            .stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_cli_pays_refuses_and_reports_with_exit_codes() {
    let e = env().await;
    let payee = TestChain::address(9);
    let before = e.chain.usdc_balance(payee).await.unwrap();
    let data = format!("{}/data", e.url);

    // --dry-run: shows the price, signs nothing.
    let out = e.pay(&[&data, "--dry-run"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("would pay 0.01 USDC"), "{stdout}");
    assert_eq!(e.chain.usdc_balance(payee).await.unwrap(), before);

    // Refused by --max: exit 2, nothing paid.
    let out = e.pay(&[&data, "--max", "0.001 USDC"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("per-request maximum"), "{stderr}");
    assert_eq!(e.chain.usdc_balance(payee).await.unwrap(), before);

    // Paid: body on stdout, receipt on stderr, -i shows the receipt header.
    let out = e.pay(&[&data, "--max", "0.05 USDC", "-i"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("HTTP 200"), "{stdout}");
    assert!(
        stdout.to_lowercase().contains("payment-response:"),
        "{stdout}"
    );
    assert!(stdout.ends_with("the paid data"), "{stdout}");
    assert!(
        stderr.contains(&format!("paid 0.01 USDC to {payee} on")),
        "{stderr}"
    );
    assert_eq!(
        e.chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(10_000u64)
    );

    // --json.
    let out = e.pay(&[&data, "--json", "--budget", "0.02 USDC/day"]).await;
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], 200);
    assert_eq!(summary["paid"]["amount"], "0.01");
    assert_eq!(summary["paid"]["symbol"], "USDC");
    assert_eq!(summary["paid"]["atomicAmount"], "10000");
    assert_eq!(summary["paid"]["transaction"].as_str().unwrap().len(), 66);
    // Addresses in one form: EIP-55 checksummed.
    assert_eq!(summary["paid"]["payTo"], payee.to_checksum(None));
    assert_eq!(summary["paid"]["asset"], e.chain.usdc.to_checksum(None));
    assert_eq!(
        summary["paid"]["payer"],
        TestChain::address(2).to_checksum(None)
    );

    // The daily budget of 0.02 is now used up (two payments in the ledger): exit 2, and the
    // --json summary says which budget and by how much.
    let out = e.pay(&[&data, "--budget", "0.02 USDC/day"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    let out = e.pay(&[&data, "--budget", "0.02 USDC/day", "--json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["refused"]["rule"], "budget");
    assert_eq!(summary["refused"]["budget"], "0.02");
    assert_eq!(summary["refused"]["window"], "86400 s");

    // A server error after payment was offered: exit 4, not charged — but the buyer cannot
    // know that, so the amount stays reserved (pending) and the summary says so.
    let out = e.pay(&[&format!("{}/broken", e.url), "--json"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], 502);
    assert_eq!(summary["paid"], serde_json::Value::Null);
    assert_eq!(summary["pending"]["amount"], "0.01");
    assert!(stderr.contains("--rpc-url"), "{stderr}");
    assert_eq!(
        e.chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(20_000u64)
    );
    // The chain shows it unused but it has not expired: --reconcile keeps holding it.
    let out = e
        .pay(&["--reconcile", "--json", "--rpc-url", &e.chain.endpoint()])
        .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["held"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["released"].as_array().unwrap().len(), 0, "{report}");

    // --history lists every attempt.
    let out = e.pay(&["--history", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "paid").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "refused").count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "pending").count(),
        1,
        "{statuses:?}"
    );
    let held = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "pending")
        .unwrap();
    assert_eq!(held["payer"], TestChain::address(2).to_checksum(None));
    assert_eq!(held["amount"], "0.01");
    assert!(held["validBefore"].as_u64().is_some(), "{held}");

    // No key: a clear setup error, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["pay", &data, "--key-env", "TOLLGATE_NO_SUCH_KEY"])
        .arg("--ledger")
        .arg(e.dir.path().join("other.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("TOLLGATE_NO_SUCH_KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_with_json_prints_its_summary_on_stdout() {
    let e = env().await;
    let payee = TestChain::address(9);
    let before = e.chain.usdc_balance(payee).await.unwrap();
    let data = format!("{}/data", e.url);
    // Refused by --max, with --json: the summary is on stdout, in the token's units.
    let out = e.pay(&[&data, "--max", "0.001 USDC", "--json"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON summary ({e}): {stdout:?}, stderr: {stderr}")
    });
    assert_eq!(summary["status"], 402);
    assert_eq!(summary["paid"], serde_json::Value::Null);
    assert_eq!(summary["exitCode"], 2);
    assert_eq!(summary["refused"]["rule"], "max_per_request");
    assert_eq!(summary["refused"]["price"], "0.01");
    assert_eq!(summary["refused"]["max"], "0.001");
    assert_eq!(summary["refused"]["symbol"], "USDC");
    assert!(summary["refused"]["message"]
        .as_str()
        .unwrap()
        .contains("per-request maximum"));
    assert_eq!(e.chain.usdc_balance(payee).await.unwrap(), before);
    // --dry-run --json says the same, and what would be paid, in one address form.
    let out = e.pay(&[&data, "--dry-run", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["wouldPay"]["amount"], "0.01");
    assert_eq!(summary["wouldPay"]["payTo"], payee.to_checksum(None));
    assert_eq!(summary["wouldPay"]["asset"], e.chain.usdc.to_checksum(None));
    let out = e
        .pay(&[&data, "--dry-run", "--json", "--max", "0.001 USDC"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["refused"]["rule"], "max_per_request");

    // Nothing was reserved or paid: the ledger holds the refusal only.
    let out = e.pay(&["--history", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["refused"]);
}
