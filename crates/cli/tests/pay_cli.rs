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
    assert!(stderr.contains("paid 10000"), "{stderr}");
    assert_eq!(
        e.chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(10_000u64)
    );

    // --json.
    let out = e.pay(&[&data, "--json", "--budget", "0.02 USDC/day"]).await;
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], 200);
    assert_eq!(summary["paid"]["amount"], "10000");
    assert_eq!(summary["paid"]["transaction"].as_str().unwrap().len(), 66);

    // The daily budget of 0.02 is now used up (two payments in the ledger): exit 2.
    let out = e.pay(&[&data, "--budget", "0.02 USDC/day"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);

    // A server error after payment was offered: exit 4, not charged.
    let out = e.pay(&[&format!("{}/broken", e.url)]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out).1);
    assert_eq!(
        e.chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(20_000u64)
    );

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
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "failed").count(),
        1,
        "{statuses:?}"
    );

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
