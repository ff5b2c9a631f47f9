//! x402 over the Model Context Protocol (`specs/transports-v2/mcp.md`), on the official Rust
//! MCP SDK [`rmcp`].
//!
//! - **Seller** — [`McpPaywall`] prices tools (a static [`RoutePrice`] or a function of the
//!   call's arguments) and [`wrap`](McpPaywall::wrap)s any `rmcp` server. An unpaid call of a
//!   paid tool gets a tool result with `isError: true`, the `PaymentRequired` as
//!   `structuredContent` and its JSON in `content[0].text`; a call with
//!   `_meta["x402/payment"]` is verified by the facilitator, the tool runs, the payment is
//!   settled, and the result carries the receipt in `_meta["x402/payment-response"]`. A tool
//!   that fails is not charged; a settlement that fails withholds the tool's output. The
//!   decisions are `tollgate-server`'s transport-free [`Gate`](tollgate_server::Gate), so an
//!   MCP tool is guarded exactly like an HTTP route (replay claims, one attempt key per
//!   exchange, results kept while a settlement is pending).
//! - **Buyer** — [`McpPayer`] (and [`PayingClient`], bound to one connection) pays those
//!   results with `tollgate-client`'s [`PayFlow`](tollgate_client::PayFlow): the same
//!   wallets, [`SpendingPolicy`](tollgate_client::SpendingPolicy) and
//!   [`SpendLedger`](tollgate_client::SpendLedger) as the HTTP middleware, so budgets hold
//!   across both transports.
//! - [`wire`] — the transport's shapes (keys, the payment-required result, the receipt), for
//!   code that speaks it without these wrappers.
//!
//! The wrappers do not depend on an MCP transport: serve a [`PaidServer`] over streamable
//! HTTP (feature `http-server`) or stdio (`stdio`), and pay through a client connected any way
//! (`http-client`, `child-process`). [`rmcp`] is re-exported at the version this crate is
//! built with.
//!
//! # Selling a tool over MCP
//!
//! ```no_run
//! use std::sync::Arc;
//! use tollgate_mcp::rmcp::{handler::server::wrapper::Parameters, tool, tool_router, ServiceExt};
//! use tollgate_mcp::{McpPaywall, PaymentOption, RemoteFacilitator, RoutePrice};
//!
//! struct Weather;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct City {
//!     city: String,
//! }
//!
//! #[tool_router(server_handler)]
//! impl Weather {
//!     #[tool(description = "List the cities with a forecast")]
//!     async fn cities(&self) -> String {
//!         "Paris, Rome".into()
//!     }
//!
//!     #[tool(description = "Tomorrow's forecast for a city")]
//!     async fn forecast(&self, Parameters(City { city }): Parameters<City>) -> String {
//!         format!("{city}: sunny")
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let price = RoutePrice::new(PaymentOption::usd(
//!     "$0.01",
//!     "eip155:84532".parse()?,
//!     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
//! )?)
//! .description("Tomorrow's forecast");
//! let paywall = McpPaywall::new(Arc::new(RemoteFacilitator::new("https://x402.org/facilitator")))
//!     .price("forecast", price)?;
//! // Over stdio; for streamable HTTP, give `rmcp`'s `StreamableHttpService` a factory
//! // returning `paywall.wrap(Weather)`.
//! let server = paywall
//!     .wrap(Weather)
//!     .serve(tollgate_mcp::rmcp::transport::stdio())
//!     .await?;
//! server.waiting().await?;
//! # Ok(()) }
//! ```
//!
//! # Paying for a tool over MCP
//!
//! ```no_run
//! use tollgate_client::{ExactEvmClient, PrivateKeySigner, SpendLedger, SpendingPolicy};
//! use tollgate_mcp::rmcp::ServiceExt;
//! use tollgate_mcp::{McpPayer, McpPaymentError, PayingClient};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key: PrivateKeySigner = std::env::var("AGENT_KEY")?.parse()?;
//! let policy = SpendingPolicy::new().max_per_request("0.05 USDC")?.budget("5 USDC", None)?;
//! let payer = McpPayer::new(ExactEvmClient::new(key), policy, SpendLedger::open("spend.db".as_ref())?);
//! let transport = tollgate_mcp::rmcp::transport::StreamableHttpClientTransport::from_uri(
//!     "http://127.0.0.1:8000/mcp",
//! );
//! let connection = ().serve(transport).await?;
//! let tools = PayingClient::new(connection.peer().clone(), payer);
//! let args = serde_json::json!({ "city": "Paris" }).as_object().cloned();
//! match tools.call_tool("forecast", args).await {
//!     Ok(paid) => {
//!         if let Some(receipt) = &paid.receipt {
//!             println!("paid in {}", receipt.settlement.transaction);
//!         }
//!     }
//!     Err(e) if e.is_over_budget() => println!("not paid: {e}"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

pub mod client;
mod delegate;
pub mod server;
pub mod wire;

pub use client::{McpPayer, McpPaymentError, PaidToolResult, PayingClient};
pub use server::{
    DynamicToolPrice, McpPaywall, McpPriceError, PaidServer, ToolCall, ToolOutput, ToolPricing,
};
pub use wire::{PAYMENT_META_KEY, PAYMENT_RESPONSE_META_KEY};

/// The official Rust MCP SDK, at the version this crate is built with.
pub use rmcp;
/// A facilitator over HTTP, re-exported for a seller that does not run its own.
#[cfg(feature = "remote")]
pub use tollgate_server::RemoteFacilitator;
/// The seller's price types, re-exported so a seller needs no other Tollgate crate to price a
/// tool.
pub use tollgate_server::{PaymentOption, RoutePrice, SettlementMode};

/// The Rust blocks of the guide, `docs/mcp.md`, compiled as this crate's doctests so that the
/// guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/mcp.md")]
pub struct GuideDoctests;
