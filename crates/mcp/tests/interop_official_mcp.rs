//! Interoperability over x402's MCP transport, on anvil, with the official packages pinned in
//! `tests/interop`: the official MCP client (`@modelcontextprotocol/sdk`) with the official x402
//! client signing (`@x402/core` + `@x402/evm`) pays a Tollgate MCP tool, and the Tollgate MCP
//! client pays a tool of an official-SDK MCP server taking payments through the official x402
//! resource server (`tests/interop/mcp-server.mjs`) — both using only the spec's `_meta` keys.
//!
//! Needs Node.js and `npm ci` in `tests/interop` (`./scripts/test` does it).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tollgate_mcp::PayingClient;
use tollgate_proto::U256;
use tollgate_testkit::TestChain;

use support::{sqlite_ledger, tools::Tools, Rig, PRICE};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

#[tokio::test]
async fn the_official_mcp_client_pays_a_tollgate_tool() {
    assert!(
        interop_dir()
            .join("node_modules/@modelcontextprotocol/sdk")
            .exists(),
        "the official MCP SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
    let rig = Rig::start().await;
    let paywall = rig.paywall().await;
    let tools = Tools::default();
    let shared = tools.clone();
    let service = StreamableHttpService::new(
        move || Ok(paywall.wrap(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let payer = TestChain::address(1);
    let (payee_before, payer_before) = (rig.balance(rig.payee).await, rig.balance(payer).await);
    let output = tokio::process::Command::new("node")
        .current_dir(interop_dir())
        .arg("mcp-client.mjs")
        .env("X402_MCP_URL", &url)
        .env("X402_TOOL", "forecast")
        .env("X402_TOOL_ARGS", r#"{"city":"Lisbon"}"#)
        .env("X402_RPC_URL", rig.chain.endpoint())
        .env("X402_CHAIN_ID", rig.chain.chain_id().to_string())
        .env(
            "X402_PAYER_KEY",
            alloy::hex::encode_prefixed(TestChain::signer(1).to_bytes()),
        )
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().last().unwrap_or_default();
    let out: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no JSON from mcp-client.mjs ({e}): {stdout}\n{stderr}"));
    assert!(output.status.success(), "{out}\n{stderr}");

    // What the official client read from our unpaid answer.
    let required = &out["paymentRequired"];
    assert_eq!(required["x402Version"], 2);
    assert_eq!(required["resource"]["url"], "mcp://tool/forecast");
    assert_eq!(required["accepts"][0]["amount"], PRICE.to_string());
    assert_eq!(out["unpaid"]["isError"], true);
    // What it got for its payment: the output, and our receipt where the spec puts it.
    let paid = &out["paid"];
    assert_ne!(paid["isError"], true, "{paid}");
    assert_eq!(paid["content"][0]["text"], "Lisbon: sunny");
    let receipt = &out["paymentResponse"];
    assert_eq!(receipt["success"], true, "{out}");
    assert_eq!(receipt["network"], rig.network.to_string());
    assert_eq!(receipt["payer"], payer.to_string());
    assert_eq!(receipt["transaction"].as_str().unwrap().len(), 66);
    // Funds moved once.
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    assert_eq!(rig.balance(payer).await, payer_before - U256::from(PRICE));
    assert_eq!(tools.served.load(Ordering::SeqCst), 1);
    server.abort();
}

#[tokio::test]
async fn the_tollgate_client_pays_an_official_mcp_server() {
    use tokio::io::AsyncBufReadExt;

    assert!(
        interop_dir()
            .join("node_modules/@modelcontextprotocol/sdk")
            .exists(),
        "the official MCP SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
    let rig = Rig::start().await;
    // Tollgate's facilitator over HTTP, for the official resource server to call.
    let facilitator = Arc::try_unwrap(rig.facilitator().await).ok().unwrap();
    let app = tollgate_facilitator::http::router(facilitator, Default::default())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let facilitator_url = format!("http://{}", listener.local_addr().unwrap());
    let facilitator = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut server = tokio::process::Command::new("node")
        .current_dir(interop_dir())
        .arg("mcp-server.mjs")
        .env("X402_CHAIN_ID", rig.chain.chain_id().to_string())
        .env("X402_FACILITATOR_URL", &facilitator_url)
        .env("X402_PAY_TO", rig.payee.to_string())
        .env("X402_ASSET", rig.chain.usdc.to_string())
        .env("X402_TOKEN_NAME", "USD Coin")
        .env("X402_TOKEN_VERSION", "2")
        .env("X402_PRICE", PRICE.to_string())
        .env("X402_PORT", "0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(port) = line.strip_prefix("ready mcp-server ") {
                return port.trim().to_owned();
            }
        }
        panic!("mcp-server.mjs exited before it was ready");
    })
    .await
    .expect("mcp-server.mjs ready within 30 s");

    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://127.0.0.1:{port}/mcp"
        )))
        .await
        .unwrap();
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(
        client.peer().clone(),
        rig.payer(
            2,
            rig.policy().max_per_request("0.05 USDC").unwrap(),
            ledger.clone(),
        ),
    );
    let payer = TestChain::address(2);
    let (payee_before, payer_before) = (rig.balance(rig.payee).await, rig.balance(payer).await);

    // The free tool: no payment.
    let free = tools
        .call_tool("echo", json!({ "city": "Porto" }).as_object().cloned())
        .await
        .unwrap();
    assert!(free.receipt.is_none());
    assert_eq!(free.result.content[0].as_text().unwrap().text, "Porto");

    let paid = tools
        .call_tool("forecast", json!({ "city": "Porto" }).as_object().cloned())
        .await
        .unwrap();
    assert_eq!(
        paid.result.content[0].as_text().unwrap().text,
        "Porto: cloudy"
    );
    let receipt = paid.receipt.expect("the official server's receipt");
    assert!(receipt.settlement.success);
    assert_eq!(receipt.settlement.transaction.len(), 66);
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    assert_eq!(rig.balance(payer).await, payer_before - U256::from(PRICE));
    let history = ledger.history(10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, "paid");
    assert_eq!(history[0].url, "mcp://tool/forecast");

    // Over budget: refused before signing, nothing moves.
    let (ledger, _dir) = sqlite_ledger();
    let broke = PayingClient::new(
        client.peer().clone(),
        rig.payer(2, rig.policy().budget("0.001 USDC", None).unwrap(), ledger),
    );
    let err = broke
        .call_tool("forecast", json!({ "city": "Porto" }).as_object().cloned())
        .await
        .unwrap_err();
    assert!(err.is_over_budget(), "{err}");
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );

    client.cancel().await.unwrap();
    server.kill().await.unwrap();
    facilitator.abort();
}
