//! The browser paywall end to end: a real headless Chromium opens a priced URL, its test
//! wallet (an EIP-1193 provider signing with an anvil dev key) pays through the page's Pay
//! button, and the real facilitator settles on a real anvil node.
//!
//! Needs Chromium at `/usr/bin/chromium` (`apt-get install -y --no-install-recommends
//! chromium`; `.ci/run` installs it) and the Node dev tools (`npm ci`). Without them the test
//! fails and says so: it never skips.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tollgate_evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::{header, PaymentRequiredV1};
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_testkit::{TestChain, DEV_KEYS};

const PRICE: u64 = 10_000;
const ARTICLE: &str = "The secret of the day: anvil mines instantly.";
const DESCRIPTION: &str = "Today's article <b>with</b> \"quotes\"";
const MEMBERS_PAGE: &str = "<h1>Members only</h1><p>Welcome, paying reader.</p>";
const MEMBERS_DESCRIPTION: &str = "The members' page";
const CHROMIUM: &str = "/usr/bin/chromium";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/server is two levels below the workspace")
        .to_path_buf()
}

/// Fails (not skips) when the browser tooling is missing, saying how to install it.
fn require_browser_tools(root: &Path) {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "no Chromium at {CHROMIUM}: install it with \
         `apt-get update && apt-get install -y --no-install-recommends chromium` (.ci/run does)"
    );
    assert!(
        root.join("node_modules/playwright-core/package.json")
            .is_file()
            && root.join("node_modules/viem/package.json").is_file(),
        "node_modules lacks playwright-core or viem: run `npm ci` in {}",
        root.display()
    );
}

struct Shop {
    chain: TestChain,
    url: String,
    payee: Address,
}

async fn shop() -> Shop {
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
    let quote_option = option.clone();
    let layer = PaywallLayer::new(facilitator)
        .route(
            "GET /article",
            RoutePrice::new(option.clone())
                .description(DESCRIPTION)
                .mime_type("text/plain"),
        )
        .unwrap()
        .route(
            "GET /members",
            RoutePrice::new(option).description(MEMBERS_DESCRIPTION),
        )
        .unwrap()
        .dynamic_route(
            "GET /quote",
            std::sync::Arc::new(move |_: &axum::http::Request<axum::body::Body>| {
                let price = RoutePrice::new(quote_option.clone()).description("A quote");
                Box::pin(async move { Some(price) })
            }),
        )
        .unwrap()
        .browser_wallet(tollgate_evm::browser::WALLET_SCRIPT);
    let app = Router::new()
        .route("/article", get(|| async { ARTICLE }))
        .route("/quote", get(|| async { "quote" }))
        .route(
            "/members",
            get(|| async { axum::response::Html(MEMBERS_PAGE) }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop { chain, url, payee }
}

#[tokio::test]
async fn a_browser_pays_through_the_paywall_page() {
    let root = workspace_root();
    require_browser_tools(&root);
    let s = shop().await;
    let page_url = format!("{}/article", s.url);
    let http = reqwest::Client::new();

    // A browser gets the page: still a 402 with the machine-readable challenge.
    let r = http
        .get(&page_url)
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let challenge = header::payment_required_from_headers(r.headers())
        .expect("PAYMENT-REQUIRED on the HTML 402")
        .unwrap();
    assert_eq!(challenge.accepts[0].amount.to_string(), PRICE.to_string());
    let page = r.text().await.unwrap();
    assert!(page.contains("Today&#39;s article &lt;b&gt;with&lt;/b&gt; &quot;quotes&quot;"));
    assert!(
        page.contains("window.x402Wallets.push"),
        "the EVM wallet script is inline"
    );

    // Dynamically priced routes serve the page too.
    let r = http
        .get(format!("{}/quote", s.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<h1 id=\"x402-description\">A quote</h1>"));

    // API clients still get JSON, with or without an Accept header (and twice: the cache).
    for accept in [None, Some("application/json"), None] {
        let mut request = http.get(&page_url);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 402);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        assert_eq!(r.headers()["vary"], "Accept", "caches must not mix the two");
        assert!(header::payment_required_from_headers(r.headers()).is_some());
        let body: PaymentRequiredV1 = r.json().await.unwrap();
        assert_eq!(
            body.accepts[0].max_amount_required.to_string(),
            PRICE.to_string()
        );
    }

    let payer = TestChain::address(1);
    let payer_before = s.chain.usdc_balance(payer).await.unwrap();
    let payee_before = s.chain.usdc_balance(s.payee).await.unwrap();

    // A wallet whose account holds no USDC: the page shows the facilitator's refusal, and
    // nothing moves.
    let broke = "0x0000000000000000000000000000000000000000000000000000000000000007";
    let (ok, stdout, stderr) = run_browser(&s, &page_url, DESCRIPTION, broke).await;
    assert!(!ok, "an unfunded wallet unlocked the page:\n{stdout}");
    assert!(
        stderr.contains("Payment refused") && stderr.contains("insufficient"),
        "the page should show why the payment was refused:\n{stderr}"
    );
    assert_eq!(s.chain.usdc_balance(payer).await.unwrap(), payer_before);
    assert_eq!(s.chain.usdc_balance(s.payee).await.unwrap(), payee_before);

    let (ok, stdout, stderr) = run_browser(&s, &page_url, DESCRIPTION, DEV_KEYS[1]).await;
    assert!(ok, "browser run failed:\n{stderr}\n{stdout}");
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON result line in:\n{stdout}\n{stderr}"));
    println!("browser: {result}");

    // The page unlocked and shows exactly what the handler served.
    assert_eq!(result["content"], ARTICLE, "{result}");
    assert_eq!(result["rendered"], "text", "{result}");
    assert_eq!(result["offer"]["network"], s.chain.caip2(), "{result}");
    assert_eq!(
        result["offer"]["recipient"],
        s.payee.to_string(),
        "{result}"
    );
    assert_eq!(result["payer"], payer.to_string(), "{result}");
    let calls: Vec<&str> = result["walletCalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(calls.contains(&"eth_signTypedData_v4"), "{result}");
    let transaction = result["transaction"].as_str().unwrap();
    assert!(
        transaction.starts_with("0x") && transaction.len() == 66,
        "{result}"
    );
    assert!(result["status"].as_str().unwrap().contains(transaction));

    // And the money moved on chain: exactly the price, from the wallet's account to payTo.
    let payer_after = s.chain.usdc_balance(payer).await.unwrap();
    let payee_after = s.chain.usdc_balance(s.payee).await.unwrap();
    assert_eq!(payer_before - payer_after, U256::from(PRICE));
    assert_eq!(payee_after - payee_before, U256::from(PRICE));

    // An HTML resource is rendered (in the page's sandboxed frame), paid by another account.
    let members = format!("{}/members", s.url);
    let (ok, stdout, stderr) = run_browser(&s, &members, MEMBERS_DESCRIPTION, DEV_KEYS[2]).await;
    assert!(ok, "browser run failed:\n{stderr}\n{stdout}");
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON result line in:\n{stdout}\n{stderr}"));
    assert_eq!(result["rendered"], "html", "{result}");
    assert_eq!(
        result["content"], "Members onlyWelcome, paying reader.",
        "{result}"
    );
    assert_eq!(
        s.chain.usdc_balance(s.payee).await.unwrap() - payee_after,
        U256::from(PRICE)
    );
}

/// Runs the headless-Chromium script against `page_url` (expected to offer `description`)
/// with a wallet holding `key`: whether it succeeded, its stdout and stderr.
async fn run_browser(
    s: &Shop,
    page_url: &str,
    description: &str,
    key: &str,
) -> (bool, String, String) {
    let mut node = tokio::process::Command::new("node");
    node.current_dir(workspace_root())
        .arg("tests/browser/paywall.mjs")
        .arg(page_url)
        .arg(key)
        .arg(s.chain.chain_id().to_string())
        .env("CHROMIUM", CHROMIUM)
        .env("EXPECT_NETWORK", s.chain.caip2())
        .env("EXPECT_PAY_TO", s.payee.to_string())
        .env(
            "EXPECT_PRICE",
            format!("{PRICE} atomic units of token {}", s.chain.usdc),
        )
        .env("EXPECT_DESCRIPTION", description)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), node.output())
        .await
        .expect("the browser run finishes within two minutes")
        .expect("node runs (is Node.js installed?)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
