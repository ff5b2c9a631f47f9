//! An MCP server selling a tool for x402 payments, over stdio (default) or streamable HTTP
//! (`--http 127.0.0.1:8000`, served at `/mcp`), settling through an in-process facilitator.
//!
//! Configured from the environment:
//!
//! - `TOLLGATE_RPC_URL` — the chain's JSON-RPC endpoint;
//! - `TOLLGATE_FACILITATOR_KEY` — the facilitator's key (hex), which pays the settlement gas;
//! - `TOLLGATE_NETWORK` — the CAIP-2 network (`eip155:31337`);
//! - `TOLLGATE_ASSET` — the token's address, with `TOLLGATE_ASSET_NAME` and
//!   `TOLLGATE_ASSET_VERSION` its EIP-712 domain (default `USD Coin`, `2`);
//! - `TOLLGATE_PAY_TO` — the seller's address;
//! - `TOLLGATE_PRICE` — the price of `forecast`, `broken` and `crash` in atomic units
//!   (default 10000).
//!
//! Over stdio, stdout is the MCP channel: nothing else is written to it.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use serde_json::json;
use tollgate_evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_mcp::{McpPaywall, PaymentOption, RoutePrice};
use tollgate_proto::U256;

#[path = "../tests/support/tools.rs"]
mod tools;

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key: alloy::signers::local::PrivateKeySigner = env("TOLLGATE_FACILITATOR_KEY")?.parse()?;
    let scheme =
        ExactEvmFacilitator::connect(&env("TOLLGATE_RPC_URL")?, key, FacilitatorConfig::default())
            .await?;
    let facilitator = Arc::new(Facilitator::new(vec![scheme], Ledger::in_memory()?));
    let price: u64 = std::env::var("TOLLGATE_PRICE")
        .ok()
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(10_000);
    let domain = json!({
        "name": std::env::var("TOLLGATE_ASSET_NAME").unwrap_or_else(|_| "USD Coin".into()),
        "version": std::env::var("TOLLGATE_ASSET_VERSION").unwrap_or_else(|_| "2".into()),
    });
    let option = PaymentOption::atomic(
        U256::from(price),
        &env("TOLLGATE_ASSET")?,
        env("TOLLGATE_NETWORK")?.parse()?,
        &env("TOLLGATE_PAY_TO")?,
        domain.as_object().cloned(),
    );
    let paywall = McpPaywall::new(facilitator)
        .price(
            "forecast",
            RoutePrice::new(option.clone()).description("Tomorrow's forecast"),
        )?
        .price("broken", RoutePrice::new(option.clone()))?
        .price("crash", RoutePrice::new(option))?;

    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("--http"), Some(addr)) => {
            let service = StreamableHttpService::new(
                move || Ok(paywall.wrap(tools::Tools::default())),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            );
            let app = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("serving MCP at http://{}/mcp", listener.local_addr()?);
            axum::serve(listener, app).await?;
        }
        (None, _) => {
            let server = paywall
                .wrap(tools::Tools::default())
                .serve(rmcp::transport::stdio())
                .await?;
            server.waiting().await?;
        }
        _ => return Err("usage: paid_tool_server [--http ADDR]".into()),
    }
    Ok(())
}
