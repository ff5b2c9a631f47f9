//! x402 over MCP on streamable HTTP: an `rmcp` server with a free and paid tools behind an
//! `McpPaywall` (in-process facilitator, SQLite ledgers) on a loopback port, paid on anvil by
//! the Tollgate MCP client.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use tollgate_client::ledger::Attempt;
use tollgate_client::{Challenge, Refusal, SpendStatus};
use tollgate_facilitator::Facilitator;
use tollgate_mcp::{
    wire, McpPaymentError, McpPaywall, PayingClient, RoutePrice, ToolCall,
    PAYMENT_RESPONSE_META_KEY,
};
use tollgate_proto::U256;
use tollgate_server::{GateBuilder, SettlementMode};
use tollgate_testkit::TestChain;

use support::{sqlite_ledger, tools::Tools, Rig, PRICE};

/// A running MCP server and what the tests look at.
struct Server {
    url: String,
    tools: Tools,
    _stop: tokio_util_stop::Stop,
}

mod tokio_util_stop {
    /// Aborts the server task when the test ends.
    pub struct Stop(pub tokio::task::JoinHandle<()>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}

async fn serve(rig: &Rig) -> Server {
    serve_with(rig.paywall().await).await
}

async fn serve_with(paywall: McpPaywall<Arc<Facilitator>>) -> Server {
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
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        url,
        tools,
        _stop: tokio_util_stop::Stop(task),
    }
}

async fn connect(url: &str) -> RunningService<RoleClient, ()> {
    ().serve(StreamableHttpClientTransport::from_uri(url.to_owned()))
        .await
        .unwrap()
}

fn city(name: &str) -> Option<JsonObject> {
    json!({ "city": name }).as_object().cloned()
}

fn text(result: &CallToolResult) -> String {
    result.content[0].as_text().unwrap().text.clone()
}

#[tokio::test]
async fn an_unpaid_call_gets_the_spec_shaped_challenge() {
    let rig = Rig::start().await;
    let server = serve(&rig).await;
    let client = connect(&server.url).await;

    // The free tool answers without any payment.
    let mut free = CallToolRequestParams::new("echo");
    free.arguments = city("Paris");
    let result = client.call_tool(free).await.unwrap();
    assert_ne!(result.is_error, Some(true));
    assert_eq!(text(&result), "Paris");

    let mut paid = CallToolRequestParams::new("forecast");
    paid.arguments = city("Paris");
    let result = client.call_tool(paid).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let structured = result
        .structured_content
        .clone()
        .expect("structuredContent");
    // content[0].text is the same object, JSON-encoded.
    assert_eq!(
        serde_json::from_str::<Value>(&text(&result)).unwrap(),
        structured
    );
    assert_eq!(structured["x402Version"], 2);
    assert_eq!(
        structured["error"],
        "Payment required to access this resource"
    );
    assert_eq!(structured["resource"]["url"], "mcp://tool/forecast");
    assert_eq!(structured["resource"]["description"], "Tomorrow's forecast");
    assert_eq!(structured["resource"]["mimeType"], "application/json");
    let accepts = structured["accepts"].as_array().unwrap();
    assert_eq!(accepts.len(), 1);
    assert_eq!(accepts[0]["scheme"], "exact");
    assert_eq!(accepts[0]["network"], rig.network.to_string());
    assert_eq!(accepts[0]["amount"], PRICE.to_string());
    assert_eq!(accepts[0]["payTo"], rig.payee.to_string());
    assert_eq!(accepts[0]["asset"], rig.chain.usdc.to_string());
    assert_eq!(accepts[0]["extra"]["name"], "USD Coin");
    assert!(result.meta.is_none());
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 0);

    // An unreadable payment is refused with the same shape.
    let mut junk = CallToolRequestParams::new("forecast");
    junk.arguments = city("Paris");
    wire::attach_payment(&mut junk.meta, json!({"x402Version": 2, "nonsense": true}));
    let result = client.call_tool(junk).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let structured = result.structured_content.unwrap();
    assert!(
        structured["error"]
            .as_str()
            .unwrap()
            .contains("x402/payment"),
        "{structured}"
    );
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_paid_call_moves_the_funds_once_and_returns_the_receipt() {
    let rig = Rig::start().await;
    let server = serve(&rig).await;
    let client = connect(&server.url).await;
    let (ledger, _dir) = sqlite_ledger();
    let payer = rig.payer(
        1,
        rig.policy().max_per_request("0.05 USDC").unwrap(),
        ledger.clone(),
    );
    let tools = PayingClient::new(client.peer().clone(), payer);
    let (payee_before, payer_before) = (
        rig.balance(rig.payee).await,
        rig.balance(TestChain::address(1)).await,
    );

    let paid = tools.call_tool("forecast", city("Paris")).await.unwrap();
    assert_ne!(paid.result.is_error, Some(true));
    assert_eq!(text(&paid.result), "Paris: sunny");
    let receipt = paid.receipt.expect("receipt");
    assert!(receipt.settlement.success);
    assert_eq!(receipt.settlement.transaction.len(), 66);
    assert_eq!(
        receipt.settlement.payer.as_deref(),
        Some(TestChain::address(1).to_string().as_str())
    );
    // The receipt travelled in `_meta["x402/payment-response"]`.
    let meta = paid.result.meta.as_ref().unwrap();
    assert_eq!(
        meta.0[PAYMENT_RESPONSE_META_KEY]["transaction"],
        receipt.settlement.transaction
    );
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    assert_eq!(
        rig.balance(TestChain::address(1)).await,
        payer_before - U256::from(PRICE)
    );
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 1);
    let history = ledger.history(10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, "paid");
    assert_eq!(history[0].url, "mcp://tool/forecast");
    assert_eq!(
        history[0].tx_hash.as_deref(),
        Some(receipt.settlement.transaction.as_str())
    );

    // A free tool through the paying client: no payment, no receipt, nothing recorded.
    let free = tools.call_tool("echo", city("Rome")).await.unwrap();
    assert_eq!(text(&free.result), "Rome");
    assert!(free.receipt.is_none() && free.pending.is_none());
    assert_eq!(ledger.history(10).unwrap().len(), 1);
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_replayed_payment_is_refused_and_nothing_more_moves() {
    let rig = Rig::start().await;
    let server = serve(&rig).await;
    let client = connect(&server.url).await;
    let (ledger, _dir) = sqlite_ledger();
    let payer = rig.payer(2, rig.policy(), ledger.clone());

    // Sign by hand, to hold on to the payment.
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
    let first = client.call_tool(call.clone()).await.unwrap();
    assert_ne!(first.is_error, Some(true));
    assert!(wire::read_settlement(&first).unwrap().unwrap().success);
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));

    // The same payment again, on this connection and on another one: refused, the tool does
    // not run again, no receipt, no transfer.
    let other = connect(&server.url).await;
    for session in [&client, &other] {
        let again = session.call_tool(call.clone()).await.unwrap();
        assert_eq!(again.is_error, Some(true), "{again:?}");
        assert!(wire::read_payment_required(&again).unwrap().is_ok());
        assert!(wire::read_settlement(&again).is_none());
        assert!(!text(&again).contains("sunny"));
    }
    // With other arguments: also refused.
    let mut elsewhere = call.clone();
    elsewhere.arguments = city("Rome");
    let again = other.call_tool(elsewhere).await.unwrap();
    assert_eq!(again.is_error, Some(true));
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 1);
    client.cancel().await.unwrap();
    other.cancel().await.unwrap();
}

#[tokio::test]
async fn a_failing_tool_is_not_charged() {
    let rig = Rig::start().await;
    let server = serve(&rig).await;
    let client = connect(&server.url).await;
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(
        client.peer().clone(),
        rig.payer(3, rig.policy(), ledger.clone()),
    );
    let (payee_before, payer_before) = (
        rig.balance(rig.payee).await,
        rig.balance(TestChain::address(3)).await,
    );

    // An error result: passed on, no receipt; the client holds the amount until the chain
    // says the authorization was never used.
    let failed = tools.call_tool("broken", None).await.unwrap();
    assert_eq!(failed.result.is_error, Some(true));
    assert_eq!(text(&failed.result), "upstream weather service down");
    assert!(failed.receipt.is_none());
    assert!(failed.pending.is_some());
    assert!(wire::read_settlement(&failed.result).is_none());

    // A protocol error: the MCP error, nothing settled.
    match tools.call_tool("crash", None).await {
        Err(McpPaymentError::Service { tool, .. }) => assert_eq!(tool, "crash"),
        other => panic!("expected the tool's protocol error, got {other:?}"),
    }
    assert_eq!(rig.balance(rig.payee).await, payee_before);
    assert_eq!(rig.balance(TestChain::address(3)).await, payer_before);
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 0);

    // The same payer can still pay for a working tool afterwards.
    let paid = tools.call_tool("forecast", city("Oslo")).await.unwrap();
    assert!(paid.receipt.is_some());
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn over_budget_is_refused_before_signing() {
    let rig = Rig::start().await;
    let server = serve(&rig).await;
    let client = connect(&server.url).await;
    let before = rig.balance(rig.payee).await;
    for policy in [
        rig.policy().budget("0.005 USDC", None).unwrap(),
        rig.policy().max_per_request("0.001 USDC").unwrap(),
    ] {
        let (ledger, _dir) = sqlite_ledger();
        let tools = PayingClient::new(client.peer().clone(), rig.payer(4, policy, ledger.clone()));
        let err = tools
            .call_tool("forecast", city("Paris"))
            .await
            .unwrap_err();
        assert!(err.is_over_budget(), "{err}");
        assert!(matches!(
            err,
            McpPaymentError::Refused(
                Refusal::OverBudget { .. } | Refusal::OverMaxPerRequest { .. }
            )
        ));
        // Refused before signing: recorded as refused, nothing authorized.
        assert_eq!(ledger.count(SpendStatus::Refused).unwrap(), 1);
        assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 0);
        assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 0);
        assert!(ledger.history(10).unwrap()[0].tx_hash.is_none());
    }
    // A policy that allows no network: no acceptable requirement.
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(
        client.peer().clone(),
        rig.payer(
            4,
            rig.policy()
                .allow_networks(["eip155:8453".parse().unwrap()]),
            ledger,
        ),
    );
    let err = tools
        .call_tool("forecast", city("Paris"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, McpPaymentError::Refused(Refusal::NetworkNotAllowed(_))),
        "{err}"
    );
    assert_eq!(rig.balance(rig.payee).await, before);
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_dynamic_price_follows_the_arguments() {
    let rig = Rig::start().await;
    let option = rig.option();
    let paywall = McpPaywall::new(rig.facilitator().await)
        .price_dynamic("forecast", move |call: &ToolCall| {
            let city = call
                .arguments
                .as_ref()
                .and_then(|a| a.get("city"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut option = option.clone();
            async move {
                match city.as_str() {
                    "Nowhere" => None,
                    "Paris" => Some(RoutePrice::new(option)),
                    _ => {
                        option.amount = U256::from(2 * PRICE);
                        Some(RoutePrice::new(option))
                    }
                }
            }
        })
        .unwrap();
    let server = serve_with(paywall).await;
    let client = connect(&server.url).await;

    // Free for this argument.
    let mut free = CallToolRequestParams::new("forecast");
    free.arguments = city("Nowhere");
    let result = client.call_tool(free).await.unwrap();
    assert_eq!(text(&result), "Nowhere: sunny");

    // Twice the price for Rome, asked and paid.
    let mut rome = CallToolRequestParams::new("forecast");
    rome.arguments = city("Rome");
    let challenge = client.call_tool(rome).await.unwrap();
    assert_eq!(
        challenge.structured_content.unwrap()["accepts"][0]["amount"],
        (2 * PRICE).to_string()
    );
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(client.peer().clone(), rig.payer(8, rig.policy(), ledger));
    let before = rig.balance(rig.payee).await;
    let paid = tools.call_tool("forecast", city("Rome")).await.unwrap();
    assert!(paid.receipt.is_some());
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(2 * PRICE));
    let paid = tools.call_tool("forecast", city("Paris")).await.unwrap();
    assert!(paid.receipt.is_some());
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(3 * PRICE));
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 3);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn one_payment_sent_twice_at_once_is_delivered_once() {
    let rig = Rig::start().await;
    let server = serve(&rig).await;
    let (a, b) = (connect(&server.url).await, connect(&server.url).await);
    let (ledger, _dir) = sqlite_ledger();
    let payer = rig.payer(3, rig.policy(), ledger);
    let mut call = CallToolRequestParams::new("forecast");
    call.arguments = city("Paris");
    let challenge = a.call_tool(call.clone()).await.unwrap();
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
    let (first, second) = tokio::join!(a.call_tool(call.clone()), b.call_tool(call.clone()));
    let answers = [first.unwrap(), second.unwrap()];
    let delivered = answers.iter().filter(|r| r.is_error != Some(true)).count();
    assert_eq!(delivered, 1, "{answers:?}");
    for refused in answers.iter().filter(|r| r.is_error == Some(true)) {
        assert!(wire::read_payment_required(refused).unwrap().is_ok());
        assert!(wire::read_settlement(refused).is_none());
    }
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 1);
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn settling_before_the_tool_charges_even_a_failing_tool_and_says_so() {
    let rig = Rig::start().await;
    let paywall = McpPaywall::with_gate(
        GateBuilder::new(rig.facilitator().await).settlement_mode(SettlementMode::BeforeHandler),
    )
    .price("forecast", RoutePrice::new(rig.option()))
    .unwrap()
    .price("broken", RoutePrice::new(rig.option()))
    .unwrap();
    let server = serve_with(paywall).await;
    let client = connect(&server.url).await;
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(
        client.peer().clone(),
        rig.payer(5, rig.policy(), ledger.clone()),
    );
    let before = rig.balance(rig.payee).await;

    let paid = tools.call_tool("forecast", city("Paris")).await.unwrap();
    assert_eq!(text(&paid.result), "Paris: sunny");
    assert!(paid.receipt.is_some());
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(PRICE));

    // Settled before it ran, so charged: its error result carries the receipt, and the
    // client records it as paid.
    let failed = tools.call_tool("broken", None).await.unwrap();
    assert_eq!(failed.result.is_error, Some(true));
    assert_eq!(text(&failed.result), "upstream weather service down");
    let receipt = failed
        .receipt
        .expect("the receipt of a payment settled before the tool");
    assert!(receipt.settlement.success);
    assert!(failed.pending.is_none());
    assert_eq!(rig.balance(rig.payee).await, before + U256::from(2 * PRICE));
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 2);
    assert_eq!(server.tools.served.load(Ordering::SeqCst), 1);
    client.cancel().await.unwrap();
}
