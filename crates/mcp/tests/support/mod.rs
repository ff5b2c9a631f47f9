//! The rig of the MCP tests: a chain (anvil via `tollgate-testkit`), an in-process facilitator
//! with its SQLite ledger, the tool server behind an `McpPaywall`, and payers.
#![allow(dead_code)]

pub mod tools;

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use serde_json::json;
use tollgate_client::{ExactEvmClient, SpendLedger, SpendingPolicy};
use tollgate_evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_mcp::{McpPayer, McpPaywall, PaymentOption, RoutePrice};
use tollgate_proto::Network;
use tollgate_testkit::TestChain;

/// The price of every paid tool: 0.01 USDC.
pub const PRICE: u64 = 10_000;

/// The seller's account.
pub const PAYEE: usize = 9;

pub struct Rig {
    pub chain: TestChain,
    pub network: Network,
    pub payee: Address,
}

impl Rig {
    pub async fn start() -> Self {
        let chain = TestChain::start().await.unwrap();
        let network: Network = chain.caip2().parse().unwrap();
        Self {
            chain,
            network,
            payee: TestChain::address(PAYEE),
        }
    }

    pub fn option(&self) -> PaymentOption {
        PaymentOption::atomic(
            U256::from(PRICE),
            &self.chain.usdc.to_string(),
            self.network.clone(),
            &self.payee.to_string(),
            json!({ "name": "USD Coin", "version": "2" })
                .as_object()
                .cloned(),
        )
    }

    /// An in-process facilitator (SQLite ledger) paying gas from account 0.
    pub async fn facilitator(&self) -> Arc<Facilitator> {
        self.facilitator_with(FacilitatorConfig::default()).await
    }

    /// The same with `config`.
    pub async fn facilitator_with(&self, config: FacilitatorConfig) -> Arc<Facilitator> {
        let scheme =
            ExactEvmFacilitator::connect(&self.chain.endpoint(), TestChain::signer(0), config)
                .await
                .unwrap();
        Arc::new(Facilitator::new(vec![scheme], Ledger::in_memory().unwrap()))
    }

    /// The paywall the example server builds: `forecast`, `broken` and `crash` at [`PRICE`].
    pub async fn paywall(&self) -> McpPaywall<Arc<Facilitator>> {
        McpPaywall::new(self.facilitator().await)
            .price(
                "forecast",
                RoutePrice::new(self.option()).description("Tomorrow's forecast"),
            )
            .unwrap()
            .price("broken", RoutePrice::new(self.option()))
            .unwrap()
            .price("crash", RoutePrice::new(self.option()))
            .unwrap()
    }

    /// A policy that knows the test token.
    pub fn policy(&self) -> SpendingPolicy {
        SpendingPolicy::new().register_asset(
            self.network.clone(),
            &self.chain.usdc.to_string(),
            "USDC",
            6,
        )
    }

    pub fn payer(&self, account: usize, policy: SpendingPolicy, ledger: SpendLedger) -> McpPayer {
        McpPayer::new(
            ExactEvmClient::new(TestChain::signer(account)),
            policy,
            ledger,
        )
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.chain.usdc_balance(who).await.unwrap()
    }

    /// The environment of `examples/paid_tool_server.rs` for this rig.
    pub fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TOLLGATE_RPC_URL", self.chain.endpoint()),
            (
                "TOLLGATE_FACILITATOR_KEY",
                alloy::hex::encode_prefixed(TestChain::signer(0).to_bytes()),
            ),
            ("TOLLGATE_NETWORK", self.network.to_string()),
            ("TOLLGATE_ASSET", self.chain.usdc.to_string()),
            ("TOLLGATE_PAY_TO", self.payee.to_string()),
            ("TOLLGATE_PRICE", PRICE.to_string()),
        ]
    }
}

/// A spend ledger in a temporary SQLite file (kept alive by the returned directory).
pub fn sqlite_ledger() -> (SpendLedger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SpendLedger::open(&dir.path().join("spend.db")).unwrap();
    (ledger, dir)
}
