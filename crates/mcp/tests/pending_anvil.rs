//! Paid means served, over MCP: when the chain is slow to confirm a settlement, the tool's
//! result is kept and delivered — once — on the buyer's retry with the same payment, and the
//! tool does not run again. Anvil mines only when told; the facilitator waits 1 s for receipts.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::json;
use tollgate_client::ledger::Attempt;
use tollgate_client::Challenge;
use tollgate_evm::FacilitatorConfig;
use tollgate_mcp::{wire, McpPaywall, PayingClient, RoutePrice};
use tollgate_proto::U256;
use tollgate_server::{GateBuilder, PendingConfig};

use support::{sqlite_ledger, tools::Tools, Rig, PRICE};

fn city(name: &str) -> Option<JsonObject> {
    json!({ "city": name }).as_object().cloned()
}

/// A `settlement_pending` answer: the challenge with the reason and the retry delay, and
/// nothing of the tool's output.
fn assert_pending(result: &CallToolResult) {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let structured = result.structured_content.as_ref().unwrap();
    let error = structured["error"].as_str().unwrap();
    assert!(error.contains("settlement_pending"), "{error}");
    assert_eq!(
        result.meta.as_ref().unwrap().0[wire::RETRY_AFTER_META_KEY],
        2
    );
    assert!(wire::read_settlement(result).is_none());
    assert!(!serde_json::to_string(result).unwrap().contains("sunny"));
}

#[tokio::test]
async fn a_slow_settlement_keeps_the_result_for_the_retry_and_runs_the_tool_once() {
    let rig = Rig::start().await;
    let facilitator = rig
        .facilitator_with(FacilitatorConfig {
            receipt_timeout: Duration::from_secs(1),
            ..FacilitatorConfig::default()
        })
        .await;
    let gate = GateBuilder::new(facilitator)
        .pending_responses(PendingConfig {
            retry_after: Duration::from_secs(2),
            ..PendingConfig::default()
        })
        .unwrap();
    let paywall = McpPaywall::with_gate(gate)
        .price("forecast", RoutePrice::new(rig.option()))
        .unwrap();
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
    let client = ().serve(StreamableHttpClientTransport::from_uri(url)).await.unwrap();
    rig.chain.set_automine(false).await.unwrap();

    // By hand, to look at each answer.
    let (ledger, _dir) = sqlite_ledger();
    let payer = rig.payer(2, rig.policy(), ledger);
    let mut call = CallToolRequestParams::new("forecast");
    call.arguments = city("Paris");
    let challenge = client.call_tool(call.clone()).await.unwrap();
    let required = wire::read_payment_required(&challenge).unwrap().unwrap();
    let payment = payer
        .flow()
        .pay(
            Challenge::from(required),
            &Attempt {
                method: "tools/call",
                url: "mcp://tool/forecast",
            },
        )
        .await
        .unwrap();
    wire::attach_payment(
        &mut call.meta,
        serde_json::to_value(payment.payload()).unwrap(),
    );
    let before = rig.balance(rig.payee).await;
    assert_pending(&client.call_tool(call.clone()).await.unwrap());
    assert_eq!(tools.served.load(Ordering::SeqCst), 1);
    // Retried while still unmined: pending again; the tool does not run again.
    assert_pending(&client.call_tool(call.clone()).await.unwrap());
    assert_eq!(tools.served.load(Ordering::SeqCst), 1);
    // The kept result belongs to this call: the same payment for other arguments gets nothing.
    let mut other = call.clone();
    other.arguments = city("Rome");
    let refused = client.call_tool(other).await.unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(!serde_json::to_string(&refused).unwrap().contains("sunny"));
    assert_eq!(rig.balance(rig.payee).await, before, "nothing mined yet");

    rig.chain.mine().await.unwrap();
    let delivered = client.call_tool(call.clone()).await.unwrap();
    assert_ne!(delivered.is_error, Some(true), "{delivered:?}");
    assert_eq!(delivered.content[0].as_text().unwrap().text, "Paris: sunny");
    assert!(wire::read_settlement(&delivered).unwrap().unwrap().success);
    assert_eq!(tools.served.load(Ordering::SeqCst), 1);
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));

    // Delivered once.
    let again = client.call_tool(call.clone()).await.unwrap();
    assert_eq!(again.is_error, Some(true));
    assert!(!serde_json::to_string(&again).unwrap().contains("sunny"));
    rig.chain.mine().await.unwrap();
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));

    // The paying client resends the same payment while the seller reports it pending, and
    // gets the result once a block confirms it (mined in the background until it returns).
    let (ledger, _dir) = sqlite_ledger();
    let paying = PayingClient::new(
        client.peer().clone(),
        rig.payer(3, rig.policy(), ledger.clone())
            .pending_retries(5, Duration::from_secs(2)),
    );
    let call = paying.call_tool("forecast", city("Oslo"));
    tokio::pin!(call);
    let paid = loop {
        tokio::select! {
            paid = &mut call => break paid,
            () = tokio::time::sleep(Duration::from_millis(1500)) => rig.chain.mine().await.unwrap(),
        }
    };
    let paid = paid.unwrap();
    assert_eq!(
        paid.result.content[0].as_text().unwrap().text,
        "Oslo: sunny"
    );
    assert!(paid.receipt.unwrap().settlement.success);
    assert_eq!(tools.served.load(Ordering::SeqCst), 2);
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(2 * PRICE));
    assert_eq!(ledger.history(10).unwrap()[0].status, "paid");
    server.abort();
}
