//! The README's local loop, as a user types it, with the real binary:
//! `tollgate devnet --write-configs` → `tollgate facilitator` → `tollgate init --devnet-json` →
//! `tollgate proxy` → `tollgate pay`, each step's input written by the one before; and the
//! informational `X-Payment-*` hints of the 402, through the proxy and the axum paywall, agree
//! with the signed `PAYMENT-REQUIRED`.
//!
//! Ports are the one thing the test changes: every process listens on a free loopback port
//! (`--port 0`, `TOLLGATE_LISTEN=127.0.0.1:0`) instead of the README's fixed ones, so tests can
//! run side by side.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use alloy::primitives::{Address, U256};
use alloy::providers::ProviderBuilder;
use tollgate::proto::{asset, header, money, PaymentRequired};

mod support;

alloy::sol! {
    #[sol(rpc)]
    interface IBalance {
        function balanceOf(address account) external view returns (uint256);
    }
}

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

/// `tollgate devnet` as a child process, its facts read from stdout; killed when dropped.
struct DevnetProcess {
    child: std::process::Child,
    facts: serde_json::Value,
}

impl DevnetProcess {
    fn start(write_configs: &Path) -> Self {
        Self::start_chain("evm", write_configs)
    }

    fn start_chain(chain: &str, write_configs: &Path) -> Self {
        let mut child = tollgate()
            .args(["devnet", "--chain", chain, "--port", "0", "--write-configs"])
            .arg(write_configs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        let facts = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("devnet exited before printing its facts: {text}");
            }
            text.push_str(&line);
            if line.trim_end() == "}" {
                break serde_json::from_str(&text).unwrap();
            }
        };
        std::thread::spawn(move || for _ in stdout.lines() {});
        Self { child, facts }
    }
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn balance(rpc: &str, token: Address, who: Address) -> U256 {
    let provider = ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    IBalance::new(token, &provider)
        .balanceOf(who)
        .call()
        .await
        .unwrap()
}

/// Checks the four hints of a 402 against the first option of its own `PAYMENT-REQUIRED`, and
/// returns that challenge.
fn hints_agree(response: &reqwest::Response, decimals: Option<u8>) -> PaymentRequired {
    assert_eq!(response.status().as_u16(), 402);
    let headers = response.headers();
    let challenge = header::payment_required_from_headers(headers)
        .expect("PAYMENT-REQUIRED")
        .unwrap();
    let first = &challenge.accepts[0];
    let hint = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(hint("x-payment-address"), first.pay_to);
    assert_eq!(hint("x-payment-chain"), first.network.to_string());
    let known = asset::find_asset(&first.network, &first.asset);
    match decimals {
        Some(d) => assert_eq!(
            hint("x-payment-amount"),
            money::format_atomic(first.amount.get(), d)
        ),
        None => assert_eq!(
            hint("x-payment-amount"),
            format!("{} (atomic units)", first.amount.get())
        ),
    }
    assert_eq!(
        hint("x-payment-currency"),
        known
            .map(|k| k.symbol.to_owned())
            .unwrap_or(first.asset.clone())
    );
    challenge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_local_loop_pays_through_the_proxy_with_exact_balances() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");

    // 1. tollgate devnet --write-configs local
    let devnet = DevnetProcess::start(&local);
    let rpc = devnet.facts["rpcUrl"].as_str().unwrap().to_owned();
    let token: Address = devnet.facts["token"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let seller: Address = devnet.facts["accounts"][9]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let buyer: Address = devnet.facts["accounts"][1]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for file in [
        "devnet.json",
        "facilitator.toml",
        "facilitator.key",
        "payer.key",
    ] {
        assert!(local.join(file).is_file(), "devnet did not write {file}");
    }
    let config = std::fs::read_to_string(local.join("facilitator.toml")).unwrap();
    assert!(
        !config.contains(devnet.facts["accounts"][0]["privateKey"].as_str().unwrap()),
        "the signer key belongs in its key file, not in the config"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(local.join("facilitator.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");

    // 2. tollgate facilitator --config local/facilitator.toml
    let (_facilitator, facilitator_url) = support::start_facilitator(
        &local.join("facilitator.toml"),
        &[("TOLLGATE_LISTEN", "127.0.0.1:0")],
    );

    // The API being sold: a tiny upstream.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/weather",
        axum::routing::get(|| async { "sunny, 24 degrees" }),
    );
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    // 3. tollgate init --devnet-json local/devnet.json --pay-to … --output local/gateway.toml
    let gateway_toml = local.join("gateway.toml");
    let init = tollgate()
        .args(["init", "--devnet-json"])
        .arg(local.join("devnet.json"))
        .args(["--pay-to", &seller.to_string()])
        .args(["--upstream", &upstream_url])
        .args(["--facilitator", &facilitator_url])
        .arg("--output")
        .arg(&gateway_toml)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    // 4. tollgate proxy --config local/gateway.toml
    let mut proxy = support::Running::spawn(
        tollgate()
            .args(["proxy", "--config"])
            .arg(&gateway_toml)
            .env("TOLLGATE_LISTEN", "127.0.0.1:0"),
    );
    let proxy_url = proxy
        .wait_for_line("tollgate proxy listening on ")
        .split(',')
        .next()
        .unwrap()
        .to_owned();

    // What `curl -i` shows: the 402 with its hints, agreeing with PAYMENT-REQUIRED.
    let unpaid = reqwest::get(format!("{proxy_url}/weather")).await.unwrap();
    let challenge = hints_agree(&unpaid, Some(6));
    let price = challenge.accepts[0].amount.get();
    assert_eq!(price, U256::from(1_000u64), "the starter's 0.001 USDC");
    assert_eq!(unpaid.headers()["x-payment-amount"], "0.001");

    let buyer_before = balance(&rpc, token, buyer).await;
    let seller_before = balance(&rpc, token, seller).await;

    // 5. tollgate pay --key-file local/payer.key --asset … --max "0.01 USDC" URL
    let asset_flag = format!(
        "{}/{}/USDC/6",
        devnet.facts["network"].as_str().unwrap(),
        token
    );
    let mut pay = tollgate();
    pay.arg("pay")
        .arg("--key-file")
        .arg(local.join("payer.key"))
        .args(["--asset", &asset_flag, "--max", "0.01 USDC", "-y"])
        .arg("--ledger")
        .arg(dir.path().join("spend.db"))
        .arg(format!("{proxy_url}/weather"))
        .stdin(Stdio::null());
    let paid = tokio::task::spawn_blocking(move || pay.output().unwrap())
        .await
        .unwrap();
    assert!(
        paid.status.success(),
        "pay failed: {}",
        String::from_utf8_lossy(&paid.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&paid.stdout), "sunny, 24 degrees");

    assert_eq!(balance(&rpc, token, buyer).await, buyer_before - price);
    assert_eq!(balance(&rpc, token, seller).await, seller_before + price);
    proxy.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_paywall_402_hints_agree_with_payment_required() {
    use tollgate::evm::{ExactEvmFacilitator, FacilitatorConfig};
    use tollgate::facilitator::{Facilitator, Ledger};
    use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};

    let devnet = tollgate_devnet::Devnet::builder()
        .port(0)
        .start()
        .await
        .unwrap();
    let signer: alloy::signers::local::PrivateKeySigner =
        tollgate_devnet::DEV_KEYS[0].parse().unwrap();
    let scheme = ExactEvmFacilitator::connect(&devnet.url(), signer, FacilitatorConfig::default())
        .await
        .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let payee = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    // A token nobody knows the decimals of: the amount stays atomic, the currency its address.
    let unknown = PaymentOption::atomic(
        U256::from(2_500u64),
        &devnet.token().to_string(),
        devnet.caip2().parse().unwrap(),
        payee,
        serde_json::json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    );
    // A known stablecoin, priced in dollars: symbol and exact decimal.
    let known = PaymentOption::usd("$0.0125", "eip155:84532".parse().unwrap(), payee).unwrap();
    let layer = PaywallLayer::new(facilitator)
        .route("GET /local", RoutePrice::new(unknown))
        .unwrap()
        .route("GET /sepolia", RoutePrice::new(known))
        .unwrap();
    let app = axum::Router::new()
        .route("/local", axum::routing::get(|| async { "local" }))
        .route("/sepolia", axum::routing::get(|| async { "sepolia" }))
        .route("/free", axum::routing::get(|| async { "free" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let local = reqwest::get(format!("{url}/local")).await.unwrap();
    hints_agree(&local, None);
    assert_eq!(local.headers()["x-payment-amount"], "2500 (atomic units)");

    let sepolia = reqwest::get(format!("{url}/sepolia")).await.unwrap();
    hints_agree(&sepolia, Some(6));
    assert_eq!(sepolia.headers()["x-payment-amount"], "0.0125");
    assert_eq!(sepolia.headers()["x-payment-currency"], "USDC");
    assert_eq!(sepolia.headers()["x-payment-chain"], "eip155:84532");

    // Hints ride on 402s only.
    let free = reqwest::get(format!("{url}/free")).await.unwrap();
    assert_eq!(free.status().as_u16(), 200);
    assert!(free.headers().get("x-payment-amount").is_none());
}

/// A token account balance on the Solana devnet, over its JSON-RPC.
async fn spl_balance(rpc: &str, owner: &str, mint: &str) -> u64 {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(rpc)
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "getTokenAccountsByOwner",
            "params": [owner, {"mint": mint}, {"encoding": "jsonParsed"}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["result"]["value"][0]["account"]["data"]["parsed"]["info"]["tokenAmount"]["amount"]
        .as_str()
        .unwrap_or_else(|| panic!("no token account: {answer}"))
        .parse()
        .unwrap()
}

/// The README's Solana loop: `tollgate devnet --chain solana --write-configs` →
/// `tollgate facilitator` (its `[[chains.solana]]`) → `tollgate proxy` priced on `solana:…` →
/// `tollgate pay --solana-key-file … --solana-rpc-url …`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_solana_loop_pays_through_the_proxy_with_exact_balances() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local-sol");
    let devnet = DevnetProcess::start_chain("solana", &local);
    let rpc = devnet.facts["rpcUrl"].as_str().unwrap().to_owned();
    let network = devnet.facts["network"].as_str().unwrap().to_owned();
    let usdc = devnet.facts["mints"]["usdc"]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let seller = devnet.facts["accounts"][9]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let buyer = devnet.facts["accounts"][1]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    for file in [
        "devnet.json",
        "facilitator.toml",
        "fee-payer.json",
        "payer.json",
    ] {
        assert!(local.join(file).is_file(), "devnet did not write {file}");
    }
    let mode = std::fs::metadata(local.join("fee-payer.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");

    let (_facilitator, facilitator_url) = support::start_facilitator(
        &local.join("facilitator.toml"),
        &[("TOLLGATE_LISTEN", "127.0.0.1:0")],
    );
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let app = axum::Router::new().route("/weather", axum::routing::get(|| async { "sunny" }));
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });
    let gateway_toml = local.join("gateway.toml");
    std::fs::write(
        &gateway_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream_url}\"\n[facilitator]\nurl = \"{facilitator_url}\"\n\
             [payment]\nnetwork = \"{network}\"\npay_to = \"{seller}\"\n\
             [[routes]]\nroute = \"GET /weather\"\nprice = \"$0.01\"\n"
        ),
    )
    .unwrap();
    let mut proxy =
        support::Running::spawn(tollgate().args(["proxy", "--config"]).arg(&gateway_toml));
    let proxy_url = proxy
        .wait_for_line("tollgate proxy listening on ")
        .split(',')
        .next()
        .unwrap()
        .to_owned();

    let unpaid = reqwest::get(format!("{proxy_url}/weather")).await.unwrap();
    let challenge = hints_agree(&unpaid, Some(6));
    assert_eq!(challenge.accepts[0].asset, usdc, "the network's known USDC");
    assert!(
        challenge.accepts[0].extra_str("feePayer").is_some(),
        "the fee payer from /supported"
    );
    let price = 10_000;
    let (buyer_before, seller_before) = (
        spl_balance(&rpc, &buyer, &usdc).await,
        spl_balance(&rpc, &seller, &usdc).await,
    );

    let mut pay = tollgate();
    pay.args(["pay", "-y", "--solana-rpc-url", &rpc, "--solana-key-file"])
        .arg(local.join("payer.json"))
        .arg("--ledger")
        .arg(dir.path().join("spend.db"))
        .arg(format!("{proxy_url}/weather"))
        .env_remove("TOLLGATE_PAY_KEY")
        .stdin(Stdio::null());
    let paid = tokio::task::spawn_blocking(move || pay.output().unwrap())
        .await
        .unwrap();
    assert!(
        paid.status.success(),
        "pay failed: {}",
        String::from_utf8_lossy(&paid.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&paid.stdout), "sunny");
    assert_eq!(spl_balance(&rpc, &buyer, &usdc).await, buyer_before - price);
    assert_eq!(
        spl_balance(&rpc, &seller, &usdc).await,
        seller_before + price
    );
    proxy.kill_9();
}
