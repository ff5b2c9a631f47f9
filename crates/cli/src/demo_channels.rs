//! The demo's channel step: an agent — the paying middleware, its budget and spend ledger —
//! makes 100 calls to a `batch-settlement` route through one payment channel: one deposit,
//! counted against its budget, then a voucher per call checked by the seller's channel manager
//! without a chain call; the seller claims and sweeps everything in two transactions, and the
//! agent takes the unspent rest of its deposit back with a refund request.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use axum::routing::get;
use serde_json::json;
use tollgate::core::{NetworkPattern, Registry, SchemeServer};
use tollgate::evm::batch_settlement::channels::{
    ChannelManager, ChannelManagerConfig, MemoryChannelStore,
};
use tollgate::evm::batch_settlement::{
    BatchSettlementEvmFacilitator, BatchSettlementEvmServer, ReceiverAuthorizer,
};
use tollgate::evm::{ChainConfig, EvmChain};
use tollgate::facilitator::Facilitator;
use tollgate::proto::{header, AtomicAmount, PaymentRequired, Scheme};
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_client::{
    reqwest_middleware, BatchSettlementEvmClient, PaymentReceipt, SpendLedger, SpendingPolicy,
    X402Middleware,
};

use super::{other, short, signer, usdc, DemoError, IErc20Balance};

/// Calls through the channel.
pub(super) const CHANNEL_CALLS: usize = 100;
/// The price of one call (0.001 USDC).
const PRICE: u64 = 1_000;

/// What the step needs from the demo's setup.
pub(super) struct ChannelStep<'a> {
    pub rpc_url: &'a str,
    pub usdc: Address,
    pub network: tollgate::proto::Network,
    pub seller: Address,
}

/// What the step did, for the demo's summary.
pub(super) struct ChannelOutcome {
    pub calls: usize,
    pub deposited: U256,
    pub charged: U256,
    pub transactions: usize,
}

pub(super) async fn run(step: ChannelStep<'_>) -> Result<ChannelOutcome, DemoError> {
    println!("\nA payment channel (batch-settlement): {CHANNEL_CALLS} calls, one deposit");
    // The facilitator's side: its own relayer key (8) and the receiver authorizer it offers
    // sellers (7), on the same chain.
    let chain = EvmChain::connect(&[step.rpc_url], vec![signer(8)], ChainConfig::default())
        .await
        .map_err(other)?;
    let scheme =
        BatchSettlementEvmFacilitator::on_chain(&chain, Some(ReceiverAuthorizer::new(signer(7))));
    let facilitator = Facilitator::builder()
        .scheme(
            NetworkPattern::One(chain.network().clone()),
            Arc::new(scheme),
        )
        .chain(Arc::new(chain))
        .in_memory_ledger()
        .build()
        .await?;
    // The seller: the channel manager in front of the facilitator, the route priced per call.
    // The seller holds the receiver authorizer's key (7, the one the facilitator offers
    // too): it signs its claims and the refunds it completes.
    let manager = ChannelManager::new(
        facilitator,
        Arc::new(MemoryChannelStore::new()),
        ChannelManagerConfig {
            authorizer: Some(signer(7)),
            ..ChannelManagerConfig::default()
        },
    );
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc(
            "eip155:*".parse::<NetworkPattern>().map_err(other)?,
            Scheme::BatchSettlement,
            Arc::new(BatchSettlementEvmServer),
        )
        .map_err(other)?;
    let price = PaymentOption::new(
        Scheme::BatchSettlement,
        step.network.clone(),
        step.usdc.to_string(),
        AtomicAmount::from(PRICE),
        step.seller.to_string(),
    )
    .extra(
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let paywall = PaywallLayer::new(manager.clone())
        .schemes(schemes)
        .map_err(other)?;
    let app = axum::Router::new().route(
        "/tick",
        get(|| async { r#"{"price":"…"}"# })
            .route_layer(paywall.price(RoutePrice::new(price)).map_err(other)?),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(other)?;
    let api = format!("http://{}", listener.local_addr().map_err(other)?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let reader =
        alloy::providers::ProviderBuilder::new().connect_http(step.rpc_url.parse().map_err(other)?);
    let token = IErc20Balance::new(step.usdc, &reader);
    let balance = |who: Address| {
        let call = token.balanceOf(who);
        async move {
            call.call()
                .await
                .map_err(|e| DemoError::Balance(e.to_string()))
        }
    };
    let agent_before = balance(signer(1).address()).await?;
    let seller_before = balance(step.seller).await?;

    // The agent: the paying middleware with a channel wallet funding 150 calls at a time,
    // never more than 0.5 USDC in one deposit, within a 1 USDC budget the deposit counts
    // against (the calls it then pays for do not count again).
    let policy = SpendingPolicy::new()
        .register_asset(step.network.clone(), &step.usdc.to_string(), "USDC", 6)
        .max_deposit("0.5 USDC")
        .map_err(other)?
        .budget("1 USDC", None)
        .map_err(other)?;
    let ledger = SpendLedger::in_memory().map_err(other)?;
    let wallet = BatchSettlementEvmClient::new(signer(1)).with_deposit_requests(150);
    let middleware = X402Middleware::new(wallet, policy, ledger.clone());
    let agent = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .build();
    let challenge = reqwest::get(format!("{api}/tick")).await.map_err(other)?;
    let required: PaymentRequired = header::payment_required_from_headers(challenge.headers())
        .ok_or_else(|| other("no PAYMENT-REQUIRED header"))?
        .map_err(other)?;
    let offer = required.accepts[0].clone();
    println!(
        "GET /tick without payment → 402: batch-settlement, {} per call, receiver authorizer {}",
        usdc(offer.amount.get()),
        offer.extra_str("receiverAuthorizer").unwrap_or("?")
    );
    let mut transactions = 0usize;
    let mut charged = U256::ZERO;
    for call in 1..=CHANNEL_CALLS {
        let response = agent
            .get(format!("{api}/tick"))
            .send()
            .await
            .map_err(other)?;
        let status = response.status().as_u16();
        let receipt = response
            .extensions()
            .get::<PaymentReceipt>()
            .cloned()
            .ok_or_else(|| other(format!("call {call}: HTTP {status} without a receipt")))?;
        let charge = receipt
            .settlement
            .extra
            .as_ref()
            .and_then(|e| e.get("chargedAmount"))
            .and_then(|c| c.as_str())
            .and_then(|c| c.parse::<U256>().ok())
            .ok_or_else(|| other(format!("call {call}: the receipt states no charge")))?;
        charged += charge;
        let deposit = !receipt.settlement.transaction.is_empty();
        if deposit {
            transactions += 1;
        }
        if deposit || call % 25 == 0 {
            let how = if deposit {
                format!(
                    "deposit {} → tx {}",
                    usdc(
                        receipt
                            .settlement
                            .amount
                            .map(|a| a.get())
                            .unwrap_or_default()
                    ),
                    short(&receipt.settlement.transaction)
                )
            } else {
                "voucher, no transaction".to_owned()
            };
            println!(
                "  call {call:>3}: {how}; charged {} → {status}",
                usdc(charge)
            );
        }
    }
    let channel = ledger
        .sessions()
        .map_err(other)?
        .into_iter()
        .next()
        .ok_or_else(|| other("the spend ledger holds no channel"))?;
    let deposited = U256::from(channel.deposited);
    println!(
        "  the agent's budget counts the deposit, {} of 1 USDC, not the {CHANNEL_CALLS} calls",
        usdc(deposited)
    );
    let report = manager.claim().await.map_err(other)?;
    transactions += report.transactions.len();
    for tx in &report.transactions {
        println!("  seller claims and sweeps → tx {}", short(tx));
    }
    // The agent takes back what it did not spend: a refund request to the same resource,
    // answered by the seller without running the handler; the budget gets it back too.
    let http = reqwest::Client::new();
    let request = http.get(format!("{api}/tick")).build().map_err(other)?;
    let refund = middleware
        .refund(&http, request, None)
        .await
        .map_err(other)?;
    transactions += 1;
    println!(
        "  agent asks for a refund → {} back, tx {}",
        usdc(U256::from(refund.refunded)),
        short(&refund.transaction)
    );
    let agent_after = balance(signer(1).address()).await?;
    let seller_after = balance(step.seller).await?;
    println!(
        "  agent {} → {}  seller {} → {}",
        usdc(agent_before),
        usdc(agent_after),
        usdc(seller_before),
        usdc(seller_after)
    );
    if agent_before - agent_after != charged
        || seller_after - seller_before != charged
        || U256::from(report.swept) != charged
        || U256::from(refund.refunded) != deposited - charged
    {
        return Err(other("the channel's balances do not match the calls paid"));
    }
    Ok(ChannelOutcome {
        calls: CHANNEL_CALLS,
        deposited,
        charged,
        transactions,
    })
}
