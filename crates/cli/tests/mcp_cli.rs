//! `tollgate mcp` as an MCP host runs it: the binary as a child process, driven over stdio by
//! a real MCP client (`rmcp`), against `tollgate facilitator` on anvil with a paywalled route
//! that describes itself for the bazaar and is already catalogued (paid once). The agent
//! discovers the route, quotes it, pays for it (the balances move once), reads its spending,
//! and is refused — unsigned, nothing moving — when a fetch would break its budget or its
//! per-request maximum.

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use alloy::primitives::U256;
use axum::routing::get;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tollgate::server::bazaar::Bazaar;
use tollgate::server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::{TestChain, DEV_KEYS};

/// What the paid route returns.
const BODY: &str = "foggy, 14 degrees";
/// The catalogued route's price: 0.0025 USDC.
const PRICE: u64 = 2_500;
/// The dev account `tollgate mcp` pays from.
const AGENT: usize = 3;
/// The seller's dev account.
const PAYEE: usize = 9;

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A seller whose `/weather` is catalogued by a real facilitator (`tollgate facilitator` on
/// anvil, paid once by `tollgate pay`), plus an expensive `/report` (0.05 USDC).
struct Seller {
    chain: TestChain,
    _facilitator: support::Running,
    facilitator_url: String,
    base: String,
    dir: tempfile::TempDir,
}

impl Seller {
    fn weather(&self) -> String {
        format!("{}/weather", self.base)
    }

    fn asset_option(&self) -> String {
        format!("{}/{}/USDC/6", self.chain.caip2(), self.chain.usdc)
    }
}

async fn seller() -> Seller {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("facilitator.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n",
            dir.path().join("ledger.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let (facilitator, addr) =
        support::start_facilitator(&config, &[("TOLLGATE_TEST_SIGNER", DEV_KEYS[0])]);
    let facilitator_url = if addr.starts_with("http") {
        addr
    } else {
        format!("http://{addr}")
    };

    let option = |amount: u64| {
        PaymentOption::atomic(
            U256::from(amount),
            &chain.usdc.to_string(),
            chain.caip2().parse().unwrap(),
            &TestChain::address(PAYEE).to_string(),
            json!({ "name": "USD Coin", "version": "2" })
                .as_object()
                .cloned(),
        )
    };
    let weather = RoutePrice::new(option(PRICE))
        .description("Hourly weather forecasts for any city")
        .discoverable(
            Bazaar::http_get()
                .required_query_param("city", "Paris")
                .output_example(json!({ "city": "Paris", "weather": "foggy" })),
        )
        .unwrap()
        .service("Example Weather", &["weather", "forecast"], None)
        .unwrap();
    let report = RoutePrice::new(option(50_000)).description("A long report");
    let layer = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url))
        .route("GET /weather", weather)
        .unwrap()
        .route("GET /report", report)
        .unwrap();
    let app = axum::Router::new()
        .route("/weather", get(|| async { BODY }))
        .route("/report", get(|| async { "the report" }))
        .layer(layer);
    let base = serve(app).await;
    let s = Seller {
        chain,
        _facilitator: facilitator,
        facilitator_url,
        base,
        dir,
    };

    // One payment by another buyer, so the facilitator catalogues the route.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("pay")
        .arg(format!("{}?city=Paris", s.weather()))
        .args([
            "--asset",
            &s.asset_option(),
            "--max",
            "0.01 USDC",
            "--ledger",
        ])
        .arg(s.dir.path().join("other-buyer.db"))
        .env("TOLLGATE_PAY_KEY", DEV_KEYS[2])
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

/// `tollgate mcp` with an MCP client session on its stdio; the process is killed when this
/// is dropped, however the test ends.
struct Agent {
    pid: Option<u32>,
    client: Option<RunningService<RoleClient, ()>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.client.take());
        if let Some(pid) = self.pid {
            // rmcp kills the child from a task of the runtime, which may be gone by now.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

impl Agent {
    async fn start(s: &Seller, extra: &[&str]) -> Agent {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
        command
            .arg("mcp")
            .args(["--facilitator", &s.facilitator_url])
            .args(["--asset", &s.asset_option()])
            .arg("--ledger")
            .arg(s.dir.path().join("agent.db"))
            .args(extra)
            .env("TOLLGATE_PAY_KEY", DEV_KEYS[AGENT])
            .env("TOLLGATE_LOG", "debug")
            .env_remove("TOLLGATE_FACILITATOR")
            .env_remove("TOLLGATE_RPC_URL");
        let (transport, stderr) = TokioChildProcess::builder(command)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = transport.id();
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = stderr {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let client = ().serve(transport).await.unwrap();
        Agent {
            pid,
            client: Some(client),
            stderr: log,
        }
    }

    fn client(&self) -> &RunningService<RoleClient, ()> {
        self.client.as_ref().unwrap()
    }

    /// Calls `tool` and returns whether it failed (`isError`) and its structured content,
    /// checking the text content says the same.
    async fn call(&self, tool: &'static str, args: Value) -> (bool, Value) {
        let mut call = CallToolRequestParams::new(tool);
        call.arguments = args.as_object().cloned();
        let result: CallToolResult = self.client().call_tool(call).await.unwrap();
        let structured = result
            .structured_content
            .clone()
            .unwrap_or_else(|| panic!("{tool}: no structured content: {result:?}"));
        let text: Value = serde_json::from_str(&result.content[0].as_text().unwrap().text).unwrap();
        assert_eq!(
            text, structured,
            "{tool}: text and structured content differ"
        );
        let key = DEV_KEYS[AGENT].trim_start_matches("0x");
        assert!(
            !structured.to_string().contains(key),
            "{tool} leaked the key"
        );
        (result.is_error == Some(true), structured)
    }
}

fn tool<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
    tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

/// The names of a tool's input properties, and its required ones.
fn schema(t: &Tool) -> (Vec<String>, Vec<String>) {
    assert_eq!(t.input_schema["type"], "object", "{}", t.name);
    let mut props: Vec<String> = t.input_schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    props.sort();
    let required = t
        .input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    (props, required)
}

async fn balances(s: &Seller) -> (U256, U256) {
    (
        s.chain
            .usdc_balance(TestChain::address(AGENT))
            .await
            .unwrap(),
        s.chain
            .usdc_balance(TestChain::address(PAYEE))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_discovers_quotes_pays_and_reads_its_spending_over_mcp() {
    let s = seller().await;
    // Room for one payment of 0.0025 in the day's budget, not two.
    let agent = Agent::start(&s, &["--budget", "0.004 USDC/day", "--max", "0.01 USDC"]).await;

    // The tools and their input schemas.
    let tools = agent.client().list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, ["discover", "fetch", "quote", "spending"]);
    let (props, required) = schema(tool(&tools, "discover"));
    assert_eq!(props, ["limit", "network", "offset", "query", "type"]);
    assert!(required.is_empty(), "{required:?}");
    let schema_text = serde_json::to_string(&*tool(&tools, "discover").input_schema).unwrap();
    assert!(
        schema_text.contains("\"http\"") && schema_text.contains("\"mcp\""),
        "the type's values are in the schema: {schema_text}"
    );
    assert_eq!(
        tool(&tools, "discover").input_schema["properties"]["type"]["enum"],
        json!(["http", "mcp", null])
    );
    assert!(!schema_text.contains("$ref"), "inlined: {schema_text}");
    for name in ["quote", "fetch"] {
        let (props, required) = schema(tool(&tools, name));
        assert_eq!(props, ["body", "content_type", "method", "url"], "{name}");
        assert_eq!(required, ["url"], "{name}");
    }
    let (props, required) = schema(tool(&tools, "spending"));
    assert_eq!(props, ["history"]);
    assert!(required.is_empty());
    for t in &tools {
        assert!(
            t.description.as_deref().is_some_and(|d| d.len() > 40),
            "{} is described",
            t.name
        );
    }
    let read_only = |name| {
        tool(&tools, name)
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
    };
    assert_eq!(read_only("quote"), Some(true));
    assert_eq!(read_only("fetch"), Some(false));

    // discover: by a word of the description, and the whole catalogue.
    for args in [json!({ "query": "forecasts" }), json!({ "type": "http" })] {
        let (failed, found) = agent.call("discover", args.clone()).await;
        assert!(!failed, "{args}: {found}");
        let first = &found["resources"][0];
        assert_eq!(first["resource"], s.weather(), "{found}");
        assert_eq!(
            first["description"],
            "Hourly weather forecasts for any city"
        );
        assert_eq!(first["prices"][0]["amount"], "0.0025", "{found}");
        assert_eq!(first["prices"][0]["symbol"], "USDC");
        assert_eq!(first["prices"][0]["allowed"], true);
        assert_eq!(first["input"]["queryParams"]["city"], "Paris", "{found}");
    }
    let (failed, none) = agent
        .call(
            "discover",
            json!({ "type": "mcp", "network": "eip155:8453" }),
        )
        .await;
    assert!(!failed);
    assert_eq!(none["resources"], json!([]), "{none}");
    let (failed, bad) = agent
        .call("discover", json!({ "network": "nowhere" }))
        .await;
    assert!(failed, "{bad}");

    // quote: the price, nothing signed, nothing moves.
    let url = format!("{}?city=Paris", s.weather());
    let before = balances(&s).await;
    let (failed, quote) = agent.call("quote", json!({ "url": url })).await;
    assert!(!failed, "{quote}");
    assert_eq!(quote["status"], 402);
    assert_eq!(
        quote["description"],
        "Hourly weather forecasts for any city"
    );
    let option = &quote["options"][0];
    assert_eq!(option["scheme"], "exact");
    assert_eq!(option["network"], s.chain.caip2());
    assert_eq!(option["amount"], "0.0025");
    assert_eq!(option["atomicAmount"], "2500");
    assert_eq!(option["symbol"], "USDC");
    assert_eq!(option["asset"], s.chain.usdc.to_checksum(None));
    assert_eq!(option["payTo"], TestChain::address(PAYEE).to_checksum(None));
    assert_eq!(quote["allowed"], true, "{quote}");
    assert_eq!(quote["wouldPay"]["amount"], "0.0025");
    assert_eq!(balances(&s).await, before);

    // fetch: paid once, the body and the receipt back.
    let (failed, fetched) = agent.call("fetch", json!({ "url": url })).await;
    assert!(!failed, "{fetched}");
    assert_eq!(fetched["status"], 200);
    assert_eq!(fetched["body"], BODY);
    assert_eq!(fetched["truncated"], false);
    let paid = &fetched["paid"];
    assert_eq!(paid["charged"], "0.0025", "{fetched}");
    assert_eq!(paid["payer"], TestChain::address(AGENT).to_checksum(None));
    let tx = paid["transaction"].as_str().unwrap().to_owned();
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    let after = balances(&s).await;
    assert_eq!(after.0, before.0 - U256::from(PRICE));
    assert_eq!(after.1, before.1 + U256::from(PRICE));

    // spending: the payment, and what the budget has left.
    let (failed, spending) = agent.call("spending", json!({})).await;
    assert!(!failed, "{spending}");
    assert_eq!(
        spending["payer"],
        TestChain::address(AGENT).to_checksum(None)
    );
    let budget = &spending["budgets"][0];
    assert_eq!(budget["symbol"], "USDC");
    assert_eq!(budget["window"], "day");
    assert_eq!(budget["budget"], "0.004");
    assert_eq!(budget["spentOrReserved"], "0.0025", "{spending}");
    assert_eq!(budget["left"], "0.0015");
    assert_eq!(spending["maxPerRequest"], "0.01 USDC");
    let history = spending["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{spending}");
    assert_eq!(history[0]["status"], "paid");
    assert_eq!(history[0]["transaction"], tx);
    assert_eq!(history[0]["amount"], "0.0025");

    // Over the budget: quote says so, fetch refuses unsigned, nothing moves.
    let (_, quote) = agent.call("quote", json!({ "url": url })).await;
    assert_eq!(quote["allowed"], false, "{quote}");
    assert_eq!(quote["refused"]["rule"], "budget");
    let (failed, refused) = agent.call("fetch", json!({ "url": url })).await;
    assert!(failed, "{refused}");
    assert_eq!(refused["refused"]["rule"], "budget", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("budget"),
        "{refused}"
    );
    assert_eq!(refused["paid"], Value::Null);
    assert_eq!(balances(&s).await, after);

    // Over the per-request maximum (0.05 > 0.01): refused by that rule.
    let report = format!("{}/report", s.base);
    let (_, quote) = agent.call("quote", json!({ "url": report })).await;
    assert_eq!(quote["allowed"], false, "{quote}");
    assert_eq!(quote["options"][0]["allowed"], false);
    let (failed, refused) = agent.call("fetch", json!({ "url": report })).await;
    assert!(failed, "{refused}");
    assert_eq!(refused["refused"]["rule"], "max_per_request", "{refused}");
    assert_eq!(refused["refused"]["max"], "0.01");
    assert_eq!(balances(&s).await, after);

    // The ledger shows one payment and the two refusals; the budget still has 0.0015 left.
    let (_, spending) = agent.call("spending", json!({ "history": 10 })).await;
    let statuses: Vec<&str> = spending["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "paid").count(), 1);
    assert!(statuses.contains(&"refused"), "{spending}");
    assert_eq!(spending["budgets"][0]["left"], "0.0015");

    // A URL that is not a web URL is refused before any request.
    let (failed, bad) = agent
        .call("fetch", json!({ "url": "file:///etc/passwd" }))
        .await;
    assert!(failed, "{bad}");

    // The key never reaches the logs (they are on, at debug).
    let log = agent.stderr.lock().unwrap().clone();
    assert!(log.contains("tollgate mcp serving on stdio"), "{log}");
    assert!(
        !log.contains(DEV_KEYS[AGENT].trim_start_matches("0x")),
        "the key is in the log"
    );
    drop(agent);
}

#[tokio::test]
async fn mcp_without_a_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args([
        "mcp",
        "--budget",
        "1 USDC/day",
        "--key-env",
        "TOLLGATE_TEST_NO_KEY",
    ])
    .arg("--ledger")
    .arg(dir.path().join("spend.db"))
    .env_remove("TOLLGATE_TEST_NO_KEY")
    .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TOLLGATE_TEST_NO_KEY"), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout is the MCP channel");

    // A bad budget is named.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(["mcp", "--budget", "1 USDC/fortnight"])
        .env("TOLLGATE_PAY_KEY", DEV_KEYS[AGENT])
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--budget"), "{stderr}");
}
