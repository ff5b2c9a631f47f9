//! The demo's Solana step: the same agent's wallet set gains a Solana key and pays a route
//! priced in USDC on the embedded Solana cluster (litesvm running the real SPL programs): each
//! call is one `TransferChecked` the facilitator checks, co-signs as fee payer, simulates, sends
//! and confirms, and the agent's spend ledger records it like any other payment.

use std::sync::Arc;

use axum::routing::get;
use tollgate::client::{reqwest_middleware, SpendLedger, SpendingPolicy, X402Middleware};
use tollgate::facilitator::Facilitator;
use tollgate::proto::U256;
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate::svm::{ExactSvmClient, ExactSvmFacilitator, ExactSvmServer, SvmFacilitatorConfig};
use tollgate_svm_devnet::SvmDevnet;

use super::{other, short, usdc, DemoError};

/// Paid calls on Solana.
pub(super) const SOLANA_CALLS: usize = 3;
/// The price of one call (0.002 USDC).
const PRICE: u64 = 2_000;

/// What the step did, for the demo's summary.
pub(super) struct SolanaOutcome {
    pub calls: usize,
    pub spent: u64,
    pub fees_lamports: u64,
}

pub(super) async fn run() -> Result<SolanaOutcome, DemoError> {
    let devnet = SvmDevnet::start().await.map_err(other)?;
    println!(
        "\nSolana: exact (SPL Token) on {}, USDC mint {}",
        devnet.caip2(),
        devnet.usdc_mint()
    );
    // The facilitator sponsors fees with dev account 0; the seller is account 9, the agent 1.
    let sponsor = Arc::new(
        ExactSvmFacilitator::connect(
            devnet.url(),
            vec![devnet.keypair(0)],
            SvmFacilitatorConfig::default(),
        )
        .await
        .map_err(other)?,
    );
    let facilitator = Facilitator::builder()
        .scheme(
            "solana:*".parse().map_err(other)?,
            sponsor.clone() as Arc<dyn tollgate::core::SchemeFacilitator>,
        )
        .chain(sponsor.clone())
        .in_memory_ledger()
        .build()
        .await?;
    let seller = devnet.accounts()[9].address;
    let agent = devnet.accounts()[1].address;
    let fee_payer = devnet.accounts()[0].address;
    let network = devnet.caip2().parse().map_err(other)?;
    // Devnet USDC is the network's known USDC, so the price is in dollars.
    let price = PaymentOption::usd("$0.002", network, &seller.to_string()).map_err(other)?;
    let paywall = PaywallLayer::new(facilitator)
        .scheme(
            "solana:*".parse().map_err(other)?,
            Arc::new(ExactSvmServer::new()),
        )
        .route("GET /quote", RoutePrice::new(price))
        .map_err(other)?;
    let app = axum::Router::new()
        .route("/quote", get(|| async { r#"{"SOL/USDC":"…"}"# }))
        .layer(paywall);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(other)?;
    let api = format!("http://{}", listener.local_addr().map_err(other)?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let mint = devnet.usdc_mint();
    let (agent_before, seller_before, sponsor_before) = (
        devnet.token_balance(&agent, &mint),
        devnet.token_balance(&seller, &mint),
        devnet.lamports(&fee_payer),
    );
    let ledger = SpendLedger::in_memory().map_err(other)?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(
            ExactSvmClient::new(devnet.keypair(1), devnet.url()),
            SpendingPolicy::new(),
            ledger,
        ))
        .build();
    println!("agent      {agent}  (Solana key; the same spending policy)");
    for i in 1..=SOLANA_CALLS {
        let response = client
            .get(format!("{api}/quote"))
            .send()
            .await
            .map_err(other)?;
        let status = response.status();
        let receipt = response
            .headers()
            .get("payment-response")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| tollgate::proto::header::decode::<serde_json::Value>(v).ok());
        if !status.is_success() {
            return Err(other(format!("GET /quote on Solana answered {status}")));
        }
        let signature = receipt
            .as_ref()
            .and_then(|r| r["transaction"].as_str())
            .unwrap_or("?")
            .to_owned();
        println!(
            "  call {i}: GET /quote → {status}, paid {} → signature {}",
            usdc(U256::from(PRICE)),
            short(&signature)
        );
    }
    let (agent_after, seller_after, sponsor_after) = (
        devnet.token_balance(&agent, &mint),
        devnet.token_balance(&seller, &mint),
        devnet.lamports(&fee_payer),
    );
    let spent = PRICE * SOLANA_CALLS as u64;
    if agent_before - agent_after != spent || seller_after - seller_before != spent {
        return Err(other(
            "the Solana payments did not move exactly the price of each call",
        ));
    }
    let shown = |atomic: u64| usdc(U256::from(atomic));
    println!(
        "  agent {} → {}  seller {} → {}",
        shown(agent_before),
        shown(agent_after),
        shown(seller_before),
        shown(seller_after)
    );
    Ok(SolanaOutcome {
        calls: SOLANA_CALLS,
        spent,
        fees_lamports: sponsor_before - sponsor_after,
    })
}
