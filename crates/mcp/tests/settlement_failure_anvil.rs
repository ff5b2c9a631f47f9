//! A paid tool whose settlement fails after it ran: its output is withheld, the buyer gets the
//! spec's payment-required result, nothing moves to the seller. The failure is real: the tool
//! itself moves the payer's whole balance away on chain while it runs (between `/verify` and
//! `/settle`), so the transfer the payment authorized can no longer succeed.

mod support;

use std::sync::Arc;

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{tool, tool_router, ErrorData, ServiceExt};
use tollgate_mcp::{wire, McpPaymentError, PayingClient, RoutePrice};
use tollgate_proto::U256;
use tollgate_testkit::TestChain;

use support::{sqlite_ledger, Rig};

alloy::sol! {
    #[sol(rpc)]
    interface IToken {
        function balanceOf(address account) external view returns (uint256);
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// The payer in this test, and where the tool sends its money.
const PAYER: usize = 6;
const SINK: usize = 7;

#[derive(Clone)]
struct Drainer {
    rpc: String,
    token: Address,
    payer: PrivateKeySigner,
}

#[tool_router(server_handler)]
impl Drainer {
    #[tool(description = "A paid tool during whose run the payer's funds leave")]
    async fn drain(&self) -> Result<CallToolResult, ErrorData> {
        let fail = |e: String| ErrorData::internal_error(e, None);
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.payer.clone()))
            .connect_http(self.rpc.parse().map_err(|e| fail(format!("{e}")))?);
        let token = IToken::new(self.token, &provider);
        let balance = token
            .balanceOf(self.payer.address())
            .call()
            .await
            .map_err(|e| fail(e.to_string()))?;
        token
            .transfer(TestChain::address(SINK), balance)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?
            .get_receipt()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            "the secret output",
        )]))
    }
}

#[tokio::test]
async fn a_failed_settlement_withholds_the_tool_output() {
    let rig = Rig::start().await;
    let paywall = tollgate_mcp::McpPaywall::new(rig.facilitator().await)
        .price("drain", RoutePrice::new(rig.option()))
        .unwrap();
    let drainer = Drainer {
        rpc: rig.chain.endpoint(),
        token: rig.chain.usdc,
        payer: TestChain::signer(PAYER),
    };
    let service = StreamableHttpService::new(
        move || Ok(paywall.wrap(drainer.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = ().serve(StreamableHttpClientTransport::from_uri(url)).await.unwrap();
    let (ledger, _dir) = sqlite_ledger();
    let tools = PayingClient::new(
        client.peer().clone(),
        rig.payer(PAYER, rig.policy(), ledger.clone()),
    );
    let payee_before = rig.balance(rig.payee).await;
    let payer_before = rig.balance(TestChain::address(PAYER)).await;
    assert!(payer_before > U256::ZERO);

    // The raw answer, signed by hand: an error result shaped as the spec says, and not a word
    // of the tool's output.
    let call = rmcp::model::CallToolRequestParams::new("drain");
    let challenge = client.call_tool(call.clone()).await.unwrap();
    let required = wire::read_payment_required(&challenge).unwrap().unwrap();
    let payment = tools
        .payer()
        .flow()
        .pay(
            tollgate_client::Challenge::from(required),
            &tollgate_client::ledger::Attempt {
                method: "tools/call",
                url: "mcp://tool/drain",
            },
        )
        .await
        .unwrap();
    let mut paid = call.clone();
    wire::attach_payment(
        &mut paid.meta,
        serde_json::to_value(payment.payload()).unwrap(),
    );
    let raw = client.call_tool(paid).await.unwrap();
    assert_eq!(raw.is_error, Some(true));
    let structured = raw.structured_content.clone().unwrap();
    assert!(
        structured["error"]
            .as_str()
            .unwrap()
            .starts_with("settlement failed"),
        "{structured}"
    );
    assert_eq!(structured["resource"]["url"], "mcp://tool/drain");
    assert!(wire::read_payment_required(&raw).unwrap().is_ok());
    assert!(wire::read_settlement(&raw).is_none());
    let everything = serde_json::to_string(&raw).unwrap();
    assert!(!everything.contains("secret output"), "{everything}");
    // The tool ran (the funds left for the sink); the seller got nothing.
    assert_eq!(rig.balance(TestChain::address(PAYER)).await, U256::ZERO);
    assert!(rig.balance(TestChain::address(SINK)).await >= payer_before);
    assert_eq!(rig.balance(rig.payee).await, payee_before);

    // Through the paying client: a typed error, nothing recorded as paid.
    rig.chain
        .mint(TestChain::address(PAYER), payer_before)
        .await
        .unwrap();
    match tools.call_tool("drain", None).await {
        Err(McpPaymentError::SettlementFailed { tool, error, .. }) => {
            assert_eq!(tool, "drain");
            assert!(error.starts_with("settlement failed"), "{error}");
        }
        other => panic!("expected a settlement failure, got {other:?}"),
    }
    assert_eq!(rig.balance(rig.payee).await, payee_before);
    assert_eq!(ledger.count(tollgate_client::SpendStatus::Paid).unwrap(), 0);
    server.abort();
}
