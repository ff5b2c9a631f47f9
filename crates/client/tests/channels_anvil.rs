//! The paying client through payment channels (`batch-settlement`), on anvil (or the devnet):
//! the middleware against the paywall's channel manager in front of a real facilitator.
//!
//! - the first request opens a channel with a deposit of `deposit_requests` requests' worth
//!   (within the policy's maximum deposit), the next ones are vouchers, and a new deposit tops
//!   the channel up when it runs dry; the budget counts the deposits, never the requests;
//! - a second process on the same ledger file pays through the same channel (no new deposit);
//! - a client that does not know the channel (a fresh ledger, the same key) is sent the
//!   corrective 402, checks the seller's proof, resynchronises and pays once more;
//! - a deposit is sized within the policy's maximum deposit and the budgets' room; one that
//!   cannot pay the request within them is refused before anything is signed;
//! - a refund (partial, then full) returns the unclaimed balance to the wallet and to the
//!   budgets; a Permit2 deposit funds a channel in a token without EIP-3009.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tollgate_client::{
    BatchSettlementEvmClient, PaymentError, PaymentReceipt, Refusal, SpendLedger, SpendingPolicy,
    X402Middleware,
};
use tollgate_core::{NetworkPattern, Registry, SchemeServer};
use tollgate_evm::batch_settlement::abi::IBatchSettlement;
use tollgate_evm::batch_settlement::channels::{
    ChannelManager, ChannelManagerConfig, MemoryChannelStore,
};
use tollgate_evm::batch_settlement::server::BatchSettlementEvmServer;
use tollgate_evm::batch_settlement::{
    channel_id, payer::config_for, BatchSettlementEvmFacilitator, ReceiverAuthorizer,
    BATCH_SETTLEMENT,
};
use tollgate_evm::{ChainConfig, EvmChain};
use tollgate_facilitator::{http as facilitator_http, Facilitator};
use tollgate_proto::{header, AtomicAmount, PaymentRequired, PaymentRequirements, Scheme};
use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::TestChain;

/// One request: 0.001 USDC.
const PRICE: u128 = 1_000;
const PAYER: usize = 1;
const AUTHORIZER: usize = 8;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Shop {
    chain: TestChain,
    url: String,
    manager: ChannelManager<RemoteFacilitator>,
}

async fn shop() -> Shop {
    shop_selling(|chain| (chain.usdc, json!({"name": "USD Coin", "version": "2"}))).await
}

/// A shop selling in the token (and with the route `extra`) `asset` picks from the chain.
async fn shop_selling(asset: impl Fn(&TestChain) -> (Address, serde_json::Value)) -> Shop {
    let chain = TestChain::start().await.unwrap();
    let (token, extra) = asset(&chain);
    let evm = EvmChain::connect(
        &[chain.endpoint()],
        vec![TestChain::signer(0)],
        ChainConfig::default(),
    )
    .await
    .unwrap();
    let scheme = BatchSettlementEvmFacilitator::on_chain(
        &evm,
        Some(ReceiverAuthorizer::new(TestChain::signer(AUTHORIZER))),
    );
    let facilitator = Facilitator::builder()
        .scheme(NetworkPattern::One(evm.network().clone()), Arc::new(scheme))
        .chain(Arc::new(evm))
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    let facilitator_url = serve(facilitator_http::router(
        facilitator,
        facilitator_http::HttpLimits::default(),
    ))
    .await;
    let manager = ChannelManager::new(
        RemoteFacilitator::new(&facilitator_url),
        Arc::new(MemoryChannelStore::default()),
        // The seller holds the receiver authorizer's key: it signs the refunds it completes.
        ChannelManagerConfig {
            authorizer: Some(TestChain::signer(AUTHORIZER)),
            ..ChannelManagerConfig::default()
        },
    );
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc(
            "eip155:*".parse::<NetworkPattern>().unwrap(),
            Scheme::BatchSettlement,
            Arc::new(BatchSettlementEvmServer),
        )
        .unwrap();
    let paywall = PaywallLayer::new(manager.clone()).schemes(schemes).unwrap();
    let price = RoutePrice::new(
        PaymentOption::new(
            Scheme::BatchSettlement,
            chain.caip2().parse().unwrap(),
            token.to_string(),
            AtomicAmount(U256::from(PRICE)),
            Address::random().to_string(),
        )
        .extra(extra.as_object().cloned().unwrap()),
    );
    let url = serve(Router::new().route(
        "/api",
        get(|| async { "data" }).route_layer(paywall.price(price).unwrap()),
    ))
    .await;
    Shop {
        chain,
        url,
        manager,
    }
}

impl Shop {
    fn policy(&self) -> SpendingPolicy {
        SpendingPolicy::new()
            .register_asset(
                self.chain.caip2().parse().unwrap(),
                &self.chain.usdc.to_string(),
                "USDC",
                6,
            )
            .register_asset(
                self.chain.caip2().parse().unwrap(),
                &self.chain.usdt.to_string(),
                "USDT",
                6,
            )
    }

    fn agent(
        &self,
        policy: SpendingPolicy,
        ledger: SpendLedger,
        deposit_requests: u128,
    ) -> (X402Middleware, reqwest_middleware::ClientWithMiddleware) {
        let wallet = BatchSettlementEvmClient::new(TestChain::signer(PAYER))
            .with_deposit_requests(deposit_requests);
        let middleware = X402Middleware::new(wallet, policy, ledger);
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(middleware.clone())
            .build();
        (middleware, client)
    }

    async fn offer(&self) -> PaymentRequirements {
        let unpaid = reqwest::get(format!("{}/api", self.url)).await.unwrap();
        assert_eq!(unpaid.status(), 402);
        let required: PaymentRequired =
            header::decode(unpaid.headers()[header::PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
        required.accepts[0].clone()
    }

    /// The channel's (balance, totalClaimed) on chain.
    async fn on_chain(&self, offer: &PaymentRequirements) -> (u128, u128) {
        let config = config_for(TestChain::signer(PAYER).address(), offer).unwrap();
        let id = channel_id(&config, self.chain.chain_id());
        let c = IBatchSettlement::new(BATCH_SETTLEMENT, self.chain.provider())
            .channels(id)
            .call()
            .await
            .unwrap();
        (c.balance, c.totalClaimed)
    }
}

async fn get_paid(client: &reqwest_middleware::ClientWithMiddleware, url: &str) -> PaymentReceipt {
    let response = client.get(format!("{url}/api")).send().await.unwrap();
    if response.status() != 200 {
        let required = response
            .headers()
            .get(header::PAYMENT_REQUIRED)
            .and_then(|v| header::decode::<PaymentRequired>(v.to_str().ok()?).ok());
        panic!("answered {}: {required:?}", response.status());
    }
    let receipt = response
        .extensions()
        .get::<PaymentReceipt>()
        .cloned()
        .expect("a receipt");
    assert_eq!(response.text().await.unwrap(), "data");
    receipt
}

#[tokio::test]
async fn channels_are_opened_reused_across_processes_and_budgeted_by_their_deposits() {
    let shop = shop().await;
    let offer = shop.offer().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("spend.db");
    // Deposits of 10 requests' worth (0.01 USDC), at most 0.035 USDC in total.
    let policy = || {
        shop.policy()
            .max_deposit("0.02 USDC")
            .unwrap()
            .budget("0.035 USDC", None)
            .unwrap()
    };

    // Process 1: 25 requests — three deposits (requests 1, 11, 21), 22 vouchers.
    let (_, agent) = shop.agent(policy(), SpendLedger::open(&ledger_path).unwrap(), 10);
    let mut transactions = Vec::new();
    for _ in 0..25 {
        let receipt = get_paid(&agent, &shop.url).await;
        assert_eq!(
            receipt.settlement.extra.as_ref().unwrap()["chargedAmount"],
            json!(PRICE.to_string())
        );
        transactions.push(receipt.settlement.transaction);
    }
    let deposits: Vec<usize> = transactions
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        deposits,
        vec![0, 10, 20],
        "deposits on requests 1, 11 and 21"
    );
    assert_eq!(shop.on_chain(&offer).await, (30 * PRICE, 0));
    drop(agent);

    // The ledger: the deposits counted, the requests recorded at their price and charge.
    let ledger = SpendLedger::open(&ledger_path).unwrap();
    let rows = ledger.history(100).unwrap();
    let kinds = |kind: &str| {
        rows.iter()
            .filter(|r| r.kind.as_deref() == Some(kind))
            .count()
    };
    assert_eq!((kinds("deposit"), kinds("voucher")), (3, 22));
    assert!(rows.iter().all(|r| r.status == "paid"));
    assert!(rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("deposit"))
        .all(|r| r.amount == "10000" && r.tx_hash.as_deref().is_some_and(|t| !t.is_empty())));
    assert!(rows
        .iter()
        .all(|r| r.charged.as_deref() == Some(PRICE.to_string().as_str())));
    let channels = ledger.sessions().unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].deposited, 30 * PRICE);
    assert_eq!(
        channels[0].state["charged"],
        json!((25 * PRICE).to_string())
    );
    assert_eq!(
        channels[0].state["balance"],
        json!((30 * PRICE).to_string())
    );

    // Process 2, the same ledger file: the same channel, five more vouchers, no deposit.
    let (_, agent) = shop.agent(policy(), ledger, 10);
    for _ in 0..5 {
        let receipt = get_paid(&agent, &shop.url).await;
        assert_eq!(
            receipt.settlement.transaction, "",
            "a voucher, not a deposit"
        );
    }
    assert_eq!(shop.on_chain(&offer).await, (30 * PRICE, 0));

    // Request 31 needs a fourth deposit: 0.01 more would pass the 0.035 budget, so it is sized
    // to the budget's room, 0.005; four vouchers later the channel is dry and the budget full,
    // and request 36 is refused before anything is signed.
    let receipt = get_paid(&agent, &shop.url).await;
    assert_eq!(
        receipt.settlement.amount.unwrap().get(),
        U256::from(5 * PRICE)
    );
    for _ in 0..4 {
        assert_eq!(get_paid(&agent, &shop.url).await.settlement.transaction, "");
    }
    assert_eq!(shop.on_chain(&offer).await, (35 * PRICE, 0));
    let refused = agent
        .get(format!("{}/api", shop.url))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            PaymentError::from_middleware_error(&refused),
            Some(PaymentError::Refused(Refusal::OverBudget { .. }))
        ),
        "{refused:#}"
    );
    assert_eq!(shop.on_chain(&offer).await, (35 * PRICE, 0));

    // What the seller charged is what one claim moves.
    assert_eq!(shop.manager.stats().await.unwrap().unclaimed, 35 * PRICE);
    let claimed = shop.manager.claim().await.unwrap();
    assert_eq!(claimed.claimed, 35 * PRICE);
    assert_eq!(shop.on_chain(&offer).await, (35 * PRICE, 35 * PRICE));
}

#[tokio::test]
async fn a_client_that_lost_its_channel_resynchronises_from_the_sellers_proof() {
    let shop = shop().await;
    let offer = shop.offer().await;
    let (_, agent) = shop.agent(shop.policy(), SpendLedger::in_memory().unwrap(), 5);
    for _ in 0..3 {
        get_paid(&agent, &shop.url).await;
    }
    assert_eq!(shop.on_chain(&offer).await, (5 * PRICE, 0));

    // The same key with a fresh ledger: it believes nothing was charged and offers a deposit
    // with the voucher of a first request. The seller answers with its state and the last
    // voucher this key signed; the client checks that signature, adopts the state and pays the
    // fourth request's voucher from the balance left.
    let fresh = SpendLedger::in_memory().unwrap();
    let (_, agent) = shop.agent(shop.policy(), fresh.clone(), 5);
    let receipt = get_paid(&agent, &shop.url).await;
    assert_eq!(receipt.settlement.transaction, "", "paid from the balance");
    let state = &receipt.settlement.extra.as_ref().unwrap()["channelState"];
    assert_eq!(
        state["chargedCumulativeAmount"],
        json!((4 * PRICE).to_string())
    );
    let rows = fresh.history(10).unwrap();
    assert_eq!(rows.len(), 2, "the refused deposit and the paid voucher");
    // The refused deposit's authorization stays valid until it expires: held, for the chain
    // to settle, like any payment whose fate the seller did not prove.
    assert_eq!(rows[1].status, "pending");
    assert_eq!(rows[1].kind.as_deref(), Some("deposit"));
    assert!(rows[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("invalid_batch_settlement_evm_cumulative_amount_mismatch"));
    assert_eq!(
        (rows[0].status.as_str(), rows[0].kind.as_deref()),
        ("paid", Some("voucher"))
    );
    // Nothing was deposited twice.
    assert_eq!(shop.on_chain(&offer).await, (5 * PRICE, 0));
    let sessions = fresh.sessions().unwrap();
    assert_eq!(sessions[0].state["charged"], json!((4 * PRICE).to_string()));
}

#[tokio::test]
async fn a_deposit_above_the_policys_maximum_is_refused_unsigned() {
    let shop = shop().await;
    let offer = shop.offer().await;
    // A price of 0.001 USDC and a maximum deposit below it: no deposit can pay a request.
    let policy = shop.policy().max_deposit("0.0005 USDC").unwrap();
    let ledger = SpendLedger::in_memory().unwrap();
    let (_, agent) = shop.agent(policy, ledger.clone(), 100);
    let refused = agent
        .get(format!("{}/api", shop.url))
        .send()
        .await
        .unwrap_err();
    match PaymentError::from_middleware_error(&refused) {
        Some(PaymentError::Refused(Refusal::OverMaxDeposit { needed, max, .. })) => {
            assert_eq!((needed.as_str(), max.as_str()), ("0.001", "0.0005"));
        }
        other => panic!("expected a max-deposit refusal, got {other:?}"),
    }
    // A larger maximum caps the deposit below the 100 requests' worth wanted: 0.05 USDC.
    let policy = shop.policy().max_deposit("0.05 USDC").unwrap();
    let (_, agent) = shop.agent(policy, ledger.clone(), 100);
    get_paid(&agent, &shop.url).await;
    assert_eq!(shop.on_chain(&offer).await, (50 * PRICE, 0));
    assert!(ledger.sessions().unwrap()[0].deposited == 50 * PRICE);
}

#[tokio::test]
async fn a_token_without_eip3009_is_deposited_through_permit2() {
    let shop = shop_selling(|chain| (chain.usdt, json!({"assetTransferMethod": "permit2"}))).await;
    let offer = shop.offer().await;
    shop.chain
        .approve_permit2(PAYER, shop.chain.usdt, U256::MAX)
        .await
        .unwrap();
    let before = shop
        .chain
        .usdt_balance(TestChain::address(PAYER))
        .await
        .unwrap();
    let ledger = SpendLedger::in_memory().unwrap();
    let (_, agent) = shop.agent(shop.policy(), ledger.clone(), 10);
    let first = get_paid(&agent, &shop.url).await;
    assert!(
        !first.settlement.transaction.is_empty(),
        "the Permit2 deposit"
    );
    for _ in 0..4 {
        assert_eq!(get_paid(&agent, &shop.url).await.settlement.transaction, "");
    }
    assert_eq!(shop.on_chain(&offer).await, (10 * PRICE, 0));
    assert_eq!(
        shop.chain
            .usdt_balance(TestChain::address(PAYER))
            .await
            .unwrap(),
        before - U256::from(10 * PRICE)
    );
    let rows = ledger.history(10).unwrap();
    let deposit = rows
        .iter()
        .find(|r| r.kind.as_deref() == Some("deposit"))
        .unwrap();
    assert!(deposit
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("permit2:"));
    assert_eq!(deposit.symbol, "USDT");
}

#[tokio::test]
async fn a_refund_returns_the_unclaimed_balance_to_the_wallet_and_the_budget() {
    let shop = shop().await;
    let offer = shop.offer().await;
    let payer = TestChain::address(PAYER);
    let before = shop.chain.usdc_balance(payer).await.unwrap();
    // A budget of exactly one deposit (10 requests' worth).
    let policy = || shop.policy().budget("0.01 USDC", None).unwrap();
    let ledger = SpendLedger::in_memory().unwrap();
    let (middleware, agent) = shop.agent(policy(), ledger.clone(), 10);
    for _ in 0..4 {
        get_paid(&agent, &shop.url).await;
    }
    // A partial refund, then everything else.
    let http = reqwest::Client::new();
    let request = || http.get(format!("{}/api", shop.url)).build().unwrap();
    let partial = middleware
        .refund(&http, request(), Some(2 * PRICE))
        .await
        .unwrap();
    assert_eq!((partial.refunded, partial.credited), (2 * PRICE, 2 * PRICE));
    assert!(!partial.transaction.is_empty());
    assert_eq!(
        partial.remaining,
        4 * PRICE,
        "10 deposited, 4 charged, 2 refunded"
    );
    let full = middleware.refund(&http, request(), None).await.unwrap();
    assert_eq!(
        (full.refunded, full.credited, full.remaining),
        (4 * PRICE, 4 * PRICE, 0)
    );
    // The seller claimed the four charges; the payer is out exactly four prices.
    assert_eq!(shop.on_chain(&offer).await, (4 * PRICE, 4 * PRICE));
    assert_eq!(
        shop.chain.usdc_balance(payer).await.unwrap(),
        before - U256::from(4 * PRICE)
    );
    // The budget got the 0.006 back: 0.004 of 0.01 is spent, so the next deposit is sized to
    // the budget's room (0.006), not the 10 requests' worth (0.01) the wallet wants.
    let receipt = get_paid(&agent, &shop.url).await;
    assert!(
        !receipt.settlement.transaction.is_empty(),
        "a new deposit into the same channel"
    );
    assert_eq!(
        receipt.settlement.amount.unwrap().get(),
        U256::from(6 * PRICE)
    );
    let channel = &ledger.sessions().unwrap()[0];
    assert_eq!(
        (channel.deposited, channel.refunded),
        (16 * PRICE, 6 * PRICE)
    );
    // Now the budget is full: the next request is a voucher (the deposit covers it), and once
    // the channel runs dry nothing more can be deposited.
    for _ in 0..5 {
        assert_eq!(get_paid(&agent, &shop.url).await.settlement.transaction, "");
    }
    let refused = agent
        .get(format!("{}/api", shop.url))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        PaymentError::from_middleware_error(&refused),
        Some(PaymentError::Refused(Refusal::OverBudget { .. }))
    ));
    // A refund with nothing left to return is the seller's refusal, and credits nothing.
    let err = middleware.refund(&http, request(), None).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("invalid_batch_settlement_evm_refund_no_balance"),
        "{err:#}"
    );
    assert_eq!(ledger.sessions().unwrap()[0].refunded, 6 * PRICE);
}
