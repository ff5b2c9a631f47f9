//! The demo's channel step: an agent makes 100 calls to a `batch-settlement` route through one
//! payment channel — one deposit, then a voucher per call checked by the seller's channel
//! manager without a chain call — and the seller claims and sweeps everything in two
//! transactions.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use axum::routing::get;
use serde_json::json;
use tollgate::core::{NetworkPattern, Registry, SchemeServer};
use tollgate::evm::batch_settlement::channels::{
    ChannelManager, ChannelManagerConfig, MemoryChannelStore,
};
use tollgate::evm::batch_settlement::{
    BatchSettlementEvmFacilitator, BatchSettlementEvmServer, ChannelPayer, ReceiverAuthorizer,
    BATCH_SETTLEMENT,
};
use tollgate::evm::{ChainConfig, EvmChain};
use tollgate::facilitator::Facilitator;
use tollgate::proto::{header, AtomicAmount, PaymentRequired, Scheme, SettleResponse};
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};

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
    let manager = ChannelManager::new(
        facilitator,
        Arc::new(MemoryChannelStore::new()),
        ChannelManagerConfig::default(),
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

    // The agent: a channel payer depositing 150 calls' worth, never more than 0.5 USDC.
    let mut payer = ChannelPayer::new(signer(1), 150, 500_000);
    let http = reqwest::Client::new();
    let challenge = http
        .get(format!("{api}/tick"))
        .send()
        .await
        .map_err(other)?;
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
    let mut deposited = U256::ZERO;
    for call in 1..=CHANNEL_CALLS {
        let payment = payer
            .pay(&offer, Some(required.resource.clone()))
            .await
            .map_err(other)?;
        let deposit = payment.payload.get("type").and_then(|t| t.as_str()) == Some("deposit");
        if deposit {
            deposited += payment.payload["deposit"]["amount"]
                .as_str()
                .and_then(|a| a.parse::<U256>().ok())
                .unwrap_or_default();
        }
        let response = http
            .get(format!("{api}/tick"))
            .header(header::PAYMENT_SIGNATURE, header::encode(&payment))
            .send()
            .await
            .map_err(other)?;
        let status = response.status().as_u16();
        let receipt: SettleResponse = response
            .headers()
            .get(header::PAYMENT_RESPONSE.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| header::decode(v).ok())
            .ok_or_else(|| other(format!("call {call}: HTTP {status} without a receipt")))?;
        let charge = payer.receipt(&offer, &receipt).map_err(other)?;
        if !receipt.transaction.is_empty() {
            transactions += 1;
        }
        if deposit || call % 25 == 0 {
            let how = if deposit {
                format!(
                    "deposit {} → tx {}",
                    usdc(deposited),
                    short(&receipt.transaction)
                )
            } else {
                "voucher, no transaction".to_owned()
            };
            println!(
                "  call {call:>3}: {how}; charged {} → {status}",
                usdc(U256::from(charge))
            );
        }
    }
    let charged = payer
        .channel(&offer)
        .map(|c| U256::from(c.charged))
        .unwrap_or_default();
    let report = manager.claim().await.map_err(other)?;
    transactions += report.transactions.len();
    for tx in &report.transactions {
        println!("  seller claims and sweeps → tx {}", short(tx));
    }
    let agent_after = balance(signer(1).address()).await?;
    let seller_after = balance(step.seller).await?;
    let held = balance(BATCH_SETTLEMENT).await?;
    println!(
        "  agent {} → {} ({} in the channel, refundable)  seller {} → {}",
        usdc(agent_before),
        usdc(agent_after),
        usdc(held),
        usdc(seller_before),
        usdc(seller_after)
    );
    if agent_before - agent_after != deposited
        || seller_after - seller_before != charged
        || U256::from(report.swept) != charged
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
