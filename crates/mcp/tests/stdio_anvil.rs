//! x402 over MCP on stdio: `examples/paid_tool_server.rs` as a child process (its own
//! in-process facilitator and SQLite ledger), paid on anvil by the Tollgate MCP client.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use tollgate_client::SpendStatus;
use tollgate_mcp::{wire, McpPaymentError, PayingClient};
use tollgate_proto::U256;
use tollgate_testkit::TestChain;

use support::{sqlite_ledger, Rig, PRICE};

/// The example server, built by `cargo test` next to the test binaries.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/stdio_anvil-… → target/debug/examples/paid_tool_server
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("paid_tool_server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tollgate-mcp --examples` (./scripts/test does)",
        bin.display()
    );
    bin
}

/// The server process, killed when the test ends however it ends.
struct Child {
    pid: Option<u32>,
    client: Option<RunningService<RoleClient, ()>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.client.take());
        if let Some(pid) = self.pid {
            // rmcp kills the child from a task of the runtime, which may be gone by now.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn spawn(rig: &Rig) -> Child {
    let mut command = tokio::process::Command::new(server_binary());
    command.envs(rig.server_env());
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = transport.id();
    let client = ().serve(transport).await.unwrap();
    Child {
        pid,
        client: Some(client),
    }
}

#[tokio::test]
async fn a_tool_is_sold_and_paid_over_stdio() {
    let rig = Rig::start().await;
    let child = spawn(&rig).await;
    let client = child.client.as_ref().unwrap();

    // Unpaid: the spec's payment-required result.
    let mut call = CallToolRequestParams::new("forecast");
    call.arguments = json!({ "city": "Lima" }).as_object().cloned();
    let unpaid = client.call_tool(call).await.unwrap();
    assert_eq!(unpaid.is_error, Some(true));
    let structured = unpaid.structured_content.clone().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&unpaid.content[0].as_text().unwrap().text).unwrap(),
        structured
    );
    assert_eq!(structured["resource"]["url"], "mcp://tool/forecast");
    assert_eq!(structured["accepts"][0]["amount"], PRICE.to_string());

    // Paid: once.
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(
        client.peer().clone(),
        rig.payer(
            5,
            rig.policy().budget("0.025 USDC", None).unwrap(),
            ledger.clone(),
        ),
    );
    let (payee_before, payer_before) = (
        rig.balance(rig.payee).await,
        rig.balance(TestChain::address(5)).await,
    );
    let paid = tools
        .call_tool("forecast", json!({ "city": "Lima" }).as_object().cloned())
        .await
        .unwrap();
    assert_eq!(
        paid.result.content[0].as_text().unwrap().text,
        "Lima: sunny"
    );
    let receipt = paid.receipt.expect("receipt");
    assert!(receipt.settlement.success);
    assert_eq!(
        wire::read_settlement(&paid.result).unwrap().unwrap(),
        receipt.settlement
    );
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    assert_eq!(
        rig.balance(TestChain::address(5)).await,
        payer_before - U256::from(PRICE)
    );

    // A failing tool: not charged.
    let failed = tools.call_tool("broken", None).await.unwrap();
    assert_eq!(failed.result.is_error, Some(true));
    assert!(failed.receipt.is_none());
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );

    // The budget (0.025) has 0.01 paid and 0.01 held for the failed call's authorization
    // until the chain shows it unused past its validity: the next call is refused unsigned.
    let err = tools
        .call_tool("forecast", json!({ "city": "Quito" }).as_object().cloned())
        .await
        .unwrap_err();
    assert!(err.is_over_budget(), "{err}");
    assert!(matches!(err, McpPaymentError::Refused(_)));
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
    assert_eq!(ledger.count(SpendStatus::Refused).unwrap(), 1);
    assert_eq!(
        rig.balance(rig.payee).await,
        payee_before + U256::from(PRICE)
    );
    drop(child);
}
