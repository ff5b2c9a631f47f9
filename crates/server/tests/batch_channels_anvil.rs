//! A `batch-settlement` route behind the axum paywall, with the seller's channel manager
//! (`tollgate_evm::batch_settlement::channels`) in front of a real facilitator over HTTP, on
//! anvil (or the devnet), its channels in a SQLite file:
//!
//! - the first request opens a channel with a deposit (a transaction); the next 1,000 are paid
//!   with vouchers checked locally — no transaction, `transaction: ""`, `extra.chargedAmount`
//!   and `extra.channelState` in the receipt — and the handler's metered charge (≤ the price)
//!   is what is committed;
//! - a voucher whose ceiling is not `charged + price` gets the corrective 402, whose
//!   `channelState` and signed `voucherState` let the client resync (the signature checked);
//! - a second voucher while the channel's request is in flight is refused `channel_busy`;
//! - a failed handler commits nothing, and the same voucher is then accepted (the gate abandons
//!   the failed attempt, which releases the channel);
//! - a voucher holds its channel for one attempt: a copy presented by another attempt is busy
//!   until the first is abandoned;
//! - one claim moves exactly what was charged; a manager reopened on the same file (a restarted
//!   seller) claims what was served after that and never claimed.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};
use tollgate_core::{NetworkPattern, Registry, SchemeServer};
use tollgate_evm::batch_settlement::abi::IBatchSettlement;
use tollgate_evm::batch_settlement::channels::{
    ChannelManager, ChannelManagerConfig, SqliteChannelStore,
};
use tollgate_evm::batch_settlement::server::BatchSettlementEvmServer;
use tollgate_evm::batch_settlement::{
    channel_id, sign_erc3009_deposit, sign_voucher, BatchSettlementEvmFacilitator, ChannelConfig,
    Erc3009DepositTerms, ReceiverAuthorizer, SignedVoucher, VoucherVerifier, BATCH_SETTLEMENT,
};
use tollgate_evm::{ChainConfig, EvmChain};
use tollgate_facilitator::{http as facilitator_http, Facilitator};
use tollgate_proto::{
    header, AtomicAmount, PaymentRequired, PaymentRequirements, Scheme, SettleResponse,
};
use tollgate_server::{Meter, PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::TestChain;

/// The price of one request: the most a voucher adds (0.001 USDC).
const PRICE: u128 = 1_000;
/// What the handler charges when asked to meter (70% of the price).
const METERED: u128 = 700;
const DEPOSIT: u128 = 2_000_000;
const PAYER: usize = 1;
const AUTHORIZER: usize = 8;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[derive(serde::Deserialize)]
struct Work {
    #[serde(default)]
    metered: bool,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    slow: bool,
}

/// How many times the handler ran (payment operations must never reach it).
#[derive(Clone, Default)]
struct Calls(Arc<std::sync::atomic::AtomicUsize>);

impl Calls {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn api(
    meter: Option<Extension<Meter>>,
    calls: Option<Extension<Calls>>,
    Query(work): Query<Work>,
) -> (StatusCode, String) {
    if let Some(Extension(calls)) = calls {
        calls.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let Some(Extension(meter)) = meter else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no meter".into());
    };
    if work.slow {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    if work.metered {
        meter.charge(AtomicAmount(U256::from(METERED))).unwrap();
    }
    if work.fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "failed".into());
    }
    (StatusCode::OK, "data".into())
}

struct Shop {
    chain: TestChain,
    url: String,
    http: reqwest::Client,
    payee: Address,
    manager: ChannelManager<RemoteFacilitator>,
    facilitator_url: String,
    store_path: std::path::PathBuf,
    calls: Calls,
    _dir: tempfile::TempDir,
}

async fn app(
    manager: ChannelManager<RemoteFacilitator>,
    chain: &TestChain,
    payee: Address,
    calls: Calls,
) -> String {
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc(
            "eip155:*".parse::<NetworkPattern>().unwrap(),
            Scheme::BatchSettlement,
            Arc::new(BatchSettlementEvmServer),
        )
        .unwrap();
    let paywall = PaywallLayer::new(manager).schemes(schemes).unwrap();
    let price = RoutePrice::new(
        PaymentOption::new(
            Scheme::BatchSettlement,
            chain.caip2().parse().unwrap(),
            chain.usdc.to_string(),
            AtomicAmount(U256::from(PRICE)),
            payee.to_string(),
        )
        .extra(
            json!({"name": "USD Coin", "version": "2"})
                .as_object()
                .cloned()
                .unwrap(),
        ),
    );
    serve(
        Router::new()
            .route("/api", get(api).route_layer(paywall.price(price).unwrap()))
            .layer(Extension(calls)),
    )
    .await
}

async fn shop() -> Shop {
    shop_with(ChannelManagerConfig::default()).await
}

async fn shop_with(config: ChannelManagerConfig) -> Shop {
    let chain = TestChain::start().await.unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("channels.db");
    let manager = ChannelManager::new(
        RemoteFacilitator::new(&facilitator_url),
        Arc::new(SqliteChannelStore::open(&store_path).unwrap()),
        config,
    );
    let payee = Address::random();
    let calls = Calls::default();
    let url = app(manager.clone(), &chain, payee, calls.clone()).await;
    Shop {
        chain,
        url,
        http: reqwest::Client::new(),
        payee,
        manager,
        facilitator_url,
        store_path,
        calls,
        _dir: dir,
    }
}

/// The buyer's side of one channel, done by hand (the client for this scheme is not part of
/// this test): the config, the charged cumulative amount it believes, the last receipt.
struct Buyer {
    config: ChannelConfig,
    id: B256,
    chain_id: u64,
    charged: u128,
}

impl Shop {
    async fn challenge(&self) -> PaymentRequirements {
        let unpaid = self
            .http
            .get(format!("{}/api", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(unpaid.status(), 402);
        let required: PaymentRequired =
            header::decode(unpaid.headers()[header::PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
        required.accepts[0].clone()
    }

    async fn send(
        &self,
        query: &str,
        requirements: &PaymentRequirements,
        payload: Value,
    ) -> (StatusCode, Option<SettleResponse>, Option<PaymentRequired>) {
        let payment = json!({"x402Version": 2, "accepted": requirements, "payload": payload});
        let encoded = header::encode(&payment);
        let response = self
            .http
            .get(format!("{}/api{query}", self.url))
            .header(header::PAYMENT_SIGNATURE, encoded)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let receipt = response
            .headers()
            .get(header::PAYMENT_RESPONSE)
            .map(|v| header::decode::<SettleResponse>(v.to_str().unwrap()).unwrap());
        let required = response
            .headers()
            .get(header::PAYMENT_REQUIRED)
            .map(|v| header::decode::<PaymentRequired>(v.to_str().unwrap()).unwrap());
        (status, receipt, required)
    }

    /// [`send`](Self::send), with the response's body.
    async fn send_body(
        &self,
        requirements: &PaymentRequirements,
        payload: Value,
    ) -> (
        StatusCode,
        Option<SettleResponse>,
        Option<PaymentRequired>,
        String,
    ) {
        let payment = json!({"x402Version": 2, "accepted": requirements, "payload": payload});
        let response = self
            .http
            .get(format!("{}/api", self.url))
            .header(header::PAYMENT_SIGNATURE, header::encode(&payment))
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let receipt = response
            .headers()
            .get(header::PAYMENT_RESPONSE)
            .map(|v| header::decode(v.to_str().unwrap()).unwrap());
        let required = response
            .headers()
            .get(header::PAYMENT_REQUIRED)
            .map(|v| header::decode(v.to_str().unwrap()).unwrap());
        (status, receipt, required, response.text().await.unwrap())
    }

    fn buyer(&self, requirements: &PaymentRequirements, salt: u8) -> Buyer {
        let authorizer: Address = requirements
            .extra_str("receiverAuthorizer")
            .unwrap()
            .parse()
            .unwrap();
        let config = ChannelConfig {
            payer: TestChain::address(PAYER),
            payer_authorizer: TestChain::address(PAYER),
            receiver: self.payee,
            receiver_authorizer: authorizer,
            token: self.chain.usdc,
            withdraw_delay: 900,
            salt: B256::with_last_byte(salt),
        };
        let chain_id = self.chain.chain_id();
        Buyer {
            id: channel_id(&config, chain_id),
            config,
            chain_id,
            charged: 0,
        }
    }
}

impl Buyer {
    async fn voucher(&self, ceiling: u128) -> (SignedVoucher, Value) {
        let v = sign_voucher(&TestChain::signer(PAYER), self.id, ceiling, self.chain_id)
            .await
            .unwrap();
        let payload = json!({"type": "voucher", "channelConfig": self.config, "voucher": v});
        (v, payload)
    }

    async fn deposit(&self, chain: &TestChain, amount: u128) -> Value {
        let now = chain
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .unwrap()
            .header
            .timestamp;
        let terms = Erc3009DepositTerms {
            channel_id: self.id,
            from: self.config.payer,
            amount,
            valid_after: 0,
            valid_before: now + 3600,
            salt: B256::random(),
        };
        let domain = alloy::sol_types::eip712_domain! {
            name: "USD Coin",
            version: "2",
            chain_id: self.chain_id,
            verifying_contract: chain.usdc,
        };
        let auth = sign_erc3009_deposit(&TestChain::signer(PAYER), &terms, &domain)
            .await
            .unwrap();
        let (v, _) = self.voucher(self.charged + PRICE).await;
        json!({
            "type": "deposit", "channelConfig": self.config, "voucher": v,
            "deposit": {"amount": amount.to_string(), "authorization": {"erc3009Authorization": auth}}
        })
    }

    /// Checks a receipt as the spec's client must, and adopts its charged cumulative amount.
    fn accept(&mut self, receipt: &SettleResponse, expected_charge: u128) {
        let extra = receipt.extra.as_ref().expect("receipt extra");
        let charge: u128 = extra["chargedAmount"].as_str().unwrap().parse().unwrap();
        assert_eq!(charge, expected_charge);
        assert!(charge <= PRICE);
        let state = &extra["channelState"];
        assert_eq!(state["channelId"], self.id.to_string());
        let charged: u128 = state["chargedCumulativeAmount"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(charged, self.charged + charge);
        self.charged = charged;
    }
}

use alloy::providers::Provider;

#[tokio::test]
async fn a_thousand_voucher_paid_requests_through_one_channel() {
    let shop = shop().await;
    let requirements = shop.challenge().await;
    assert_eq!(requirements.scheme, Scheme::BatchSettlement);
    assert_eq!(
        requirements
            .extra_str("receiverAuthorizer")
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        TestChain::address(AUTHORIZER),
        "the facilitator's receiver authorizer, from /supported"
    );
    assert_eq!(requirements.extra.as_ref().unwrap()["withdrawDelay"], 900);
    let mut buyer = shop.buyer(&requirements, 1);
    let payer_start = shop
        .chain
        .usdc_balance(TestChain::address(PAYER))
        .await
        .unwrap();

    // Open: one deposit, the first request charged at the metered 700.
    let deposit = buyer.deposit(&shop.chain, DEPOSIT).await;
    let (status, receipt, _) = shop.send("?metered=true", &requirements, deposit).await;
    assert_eq!(status, StatusCode::OK);
    let receipt = receipt.unwrap();
    assert!(
        receipt.transaction.starts_with("0x"),
        "a deposit is a transaction"
    );
    buyer.accept(&receipt, METERED);

    // 1,000 requests, each paid with a voucher and no transaction.
    for n in 0..1_000 {
        let metered = n % 2 == 0;
        let (_, payload) = buyer.voucher(buyer.charged + PRICE).await;
        let query = if metered { "?metered=true" } else { "" };
        let (status, receipt, _) = shop.send(query, &requirements, payload).await;
        assert_eq!(status, StatusCode::OK, "request {n}");
        let receipt = receipt.unwrap();
        assert_eq!(receipt.transaction, "");
        buyer.accept(&receipt, if metered { METERED } else { PRICE });
    }
    let charged = buyer.charged;
    assert_eq!(charged, METERED + 500 * METERED + 500 * PRICE);

    // A stale client: the corrective 402 carries the seller's state and the last voucher.
    let (_, stale) = buyer.voucher(charged - 5 + PRICE).await;
    let (status, _, required) = shop.send("", &requirements, stale).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let required = required.unwrap();
    assert!(
        required
            .error
            .as_deref()
            .unwrap()
            .contains("invalid_batch_settlement_evm_cumulative_amount_mismatch"),
        "{:?}",
        required.error
    );
    let extra = required.accepts[0].extra.as_ref().unwrap();
    let state = &extra["channelState"];
    assert_eq!(state["chargedCumulativeAmount"], charged.to_string());
    let voucher_state = &extra["voucherState"];
    // The client checks the seller's proof before adopting it: its own signature.
    let proof = SignedVoucher {
        channel_id: buyer.id,
        max_claimable_amount: voucher_state["signedMaxClaimable"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        signature: voucher_state["signature"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    };
    VoucherVerifier::new(buyer.chain_id)
        .verify(&buyer.config, &proof)
        .unwrap();
    assert!(proof.max_claimable_amount >= charged);

    // A failed handler commits nothing; the same voucher then pays.
    let (_, payload) = buyer.voucher(charged + PRICE).await;
    let (status, receipt, _) = shop
        .send("?fail=true&metered=true", &requirements, payload.clone())
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(receipt.is_none());
    let (status, receipt, _) = shop.send("", &requirements, payload).await;
    assert_eq!(status, StatusCode::OK);
    buyer.accept(&receipt.unwrap(), PRICE);

    // One request at a time per channel.
    let (_, slow) = buyer.voucher(buyer.charged + PRICE).await;
    let (_, other) = buyer.voucher(buyer.charged + 2 * PRICE).await;
    let first = shop.send("?slow=true", &requirements, slow);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        shop.send("", &requirements, other).await
    };
    let ((s1, r1, _), (s2, _, required)) = tokio::join!(first, second);
    assert_eq!(s1, StatusCode::OK);
    buyer.accept(&r1.unwrap(), PRICE);
    assert_eq!(s2, StatusCode::PAYMENT_REQUIRED);
    assert!(required
        .unwrap()
        .error
        .unwrap()
        .contains("invalid_batch_settlement_evm_channel_busy"));

    // Nothing has moved but the deposit; one claim moves exactly what was charged.
    let charged = buyer.charged;
    let contract = IBatchSettlement::new(BATCH_SETTLEMENT, shop.chain.provider());
    assert_eq!(
        contract
            .channels(buyer.id)
            .call()
            .await
            .unwrap()
            .totalClaimed,
        0
    );
    let stats = shop.manager.stats().await.unwrap();
    assert_eq!(stats.unclaimed, charged);
    let report = shop.manager.claim().await.unwrap();
    assert_eq!(
        (report.channels, report.claimed, report.swept),
        (1, charged, charged)
    );
    assert_eq!(
        contract
            .channels(buyer.id)
            .call()
            .await
            .unwrap()
            .totalClaimed,
        charged
    );
    assert_eq!(
        shop.chain.usdc_balance(shop.payee).await.unwrap(),
        U256::from(charged)
    );
    assert_eq!(
        shop.chain
            .usdc_balance(TestChain::address(PAYER))
            .await
            .unwrap(),
        payer_start - U256::from(DEPOSIT)
    );
    assert_eq!(shop.manager.stats().await.unwrap().unclaimed, 0);

    // Served and not claimed, then the seller restarts: the reopened store still claims it.
    for _ in 0..3 {
        let (_, payload) = buyer.voucher(buyer.charged + PRICE).await;
        let (status, receipt, _) = shop.send("", &requirements, payload).await;
        assert_eq!(status, StatusCode::OK);
        buyer.accept(&receipt.unwrap(), PRICE);
    }
    drop(shop.manager.clone());
    let restarted = ChannelManager::new(
        RemoteFacilitator::new(&shop.facilitator_url),
        Arc::new(SqliteChannelStore::open(&shop.store_path).unwrap()),
        ChannelManagerConfig::default(),
    );
    let report = restarted.claim().await.unwrap();
    assert_eq!(report.claimed, 3 * PRICE);
    assert_eq!(
        contract
            .channels(buyer.id)
            .call()
            .await
            .unwrap()
            .totalClaimed,
        buyer.charged
    );
    assert_eq!(
        shop.chain.usdc_balance(shop.payee).await.unwrap(),
        U256::from(buyer.charged)
    );
}

/// The buyer's `ChannelPayer` against the same paywall: it opens the channel with a deposit
/// of many calls' worth and pays the rest with vouchers; a payer that lost its state (a new
/// process with the same key) is told the seller's state by the corrective 402, checks the
/// seller's proof (its own signature) and continues the channel instead of depositing again; a
/// forged proof or a receipt charging above the price is not accepted.
#[tokio::test]
async fn the_channel_payer_pays_resyncs_and_checks_receipts() {
    use tollgate_evm::batch_settlement::{ChannelPayError, ChannelPayer};
    let shop = shop().await;
    let offer = shop.challenge().await;
    let mut payer = ChannelPayer::new(TestChain::signer(PAYER), 50, 1_000_000);
    let pay = |payment: tollgate_proto::PaymentPayload| {
        let shop = &shop;
        async move {
            let encoded = header::encode(&payment);
            let response = shop
                .http
                .get(format!("{}/api", shop.url))
                .header(header::PAYMENT_SIGNATURE, encoded)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let receipt = response
                .headers()
                .get(header::PAYMENT_RESPONSE)
                .map(|v| header::decode::<SettleResponse>(v.to_str().unwrap()).unwrap());
            let required = response
                .headers()
                .get(header::PAYMENT_REQUIRED)
                .map(|v| header::decode::<PaymentRequired>(v.to_str().unwrap()).unwrap());
            (status, receipt, required)
        }
    };
    for call in 0..5 {
        let payment = payer.pay(&offer, None).await.unwrap();
        let kind = payment.payload["type"].as_str().unwrap().to_owned();
        assert_eq!(kind, if call == 0 { "deposit" } else { "voucher" });
        let (status, receipt, _) = pay(payment).await;
        assert_eq!(status, 200);
        assert_eq!(payer.receipt(&offer, &receipt.unwrap()).unwrap(), PRICE);
    }
    let channel = payer.channel(&offer).unwrap().clone();
    assert_eq!(channel.charged, 5 * PRICE);
    assert_eq!(channel.balance, 50 * PRICE);

    // A new process with the same key: no state, so it would deposit again; the seller's
    // corrective 402 tells it where the channel stands, with proof.
    let mut fresh = ChannelPayer::new(TestChain::signer(PAYER), 50, 1_000_000);
    let payment = fresh.pay(&offer, None).await.unwrap();
    assert_eq!(payment.payload["type"], "deposit");
    let (status, _, required) = pay(payment).await;
    assert_eq!(status, 402);
    let corrective = required.unwrap().accepts[0].clone();
    // A forged proof (someone else's signature) is not adopted.
    let mut forged = corrective.clone();
    let other = sign_voucher(
        &TestChain::signer(5),
        channel.id,
        5 * PRICE,
        shop.chain.chain_id(),
    )
    .await
    .unwrap();
    forged.extra.as_mut().unwrap()["voucherState"]["signature"] = json!(other.signature);
    assert!(matches!(
        fresh.resync(&forged),
        Err(ChannelPayError::Resync(_))
    ));
    fresh.resync(&corrective).unwrap();
    assert_eq!(fresh.channel(&offer).unwrap().charged, 5 * PRICE);
    let payment = fresh.pay(&offer, None).await.unwrap();
    assert_eq!(payment.payload["type"], "voucher", "no second deposit");
    let (status, receipt, _) = pay(payment).await;
    assert_eq!(status, 200);
    let receipt = receipt.unwrap();
    // A receipt claiming more than the price is refused (and the channel is not advanced).
    let mut greedy = receipt.clone();
    let extra = greedy.extra.as_mut().unwrap();
    extra.insert("chargedAmount".into(), json!((PRICE + 1).to_string()));
    assert!(matches!(
        fresh.receipt(&offer, &greedy),
        Err(ChannelPayError::Receipt(_))
    ));
    assert_eq!(fresh.receipt(&offer, &receipt).unwrap(), PRICE);
    assert_eq!(fresh.channel(&offer).unwrap().charged, 6 * PRICE);
    // One deposit only: the payer's balance dropped by exactly it.
    let contract = IBatchSettlement::new(BATCH_SETTLEMENT, shop.chain.provider());
    assert_eq!(
        contract.channels(channel.id).call().await.unwrap().balance,
        50 * PRICE
    );
}

/// A voucher holds its channel for the attempt that verified it: the same voucher verified by
/// two attempts at once is taken by one and refused `channel_busy` to the other (so a replayed
/// copy never reaches a second handler, whichever replica it is sent to), the holder's own
/// retry is taken again, and once the holder is abandoned (its handler failed) the other attempt
/// takes the channel and settles — and the abandoned one can no longer.
#[tokio::test]
async fn a_voucher_holds_its_channel_for_one_attempt_until_it_is_abandoned() {
    use tollgate_core::Facilitator as _;
    use tollgate_proto::{FacilitatorRequest, IdempotencyKey};
    let shop = shop().await;
    let requirements = shop.challenge().await;
    let mut buyer = shop.buyer(&requirements, 11);
    let deposit = buyer.deposit(&shop.chain, DEPOSIT).await;
    let (status, receipt, _) = shop.send("", &requirements, deposit).await;
    assert_eq!(status, StatusCode::OK);
    buyer.accept(&receipt.unwrap(), PRICE);

    let (_, payload) = buyer.voucher(buyer.charged + PRICE).await;
    let request = FacilitatorRequest::V2 {
        payment_payload: serde_json::from_value(
            json!({"x402Version": 2, "accepted": requirements, "payload": payload}),
        )
        .unwrap(),
        payment_requirements: requirements.clone(),
    };
    let keys = [
        IdempotencyKey::from_random_bytes(rand::random()),
        IdempotencyKey::from_random_bytes(rand::random()),
    ];
    let manager = &shop.manager;
    let (one, two) = tokio::join!(
        manager.verify(&request, Some(&keys[0])),
        manager.verify(&request, Some(&keys[1]))
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert!(
        one.is_valid != two.is_valid,
        "one attempt holds: {one:?} {two:?}"
    );
    let (holder, other, refusal) = if one.is_valid {
        (&keys[0], &keys[1], two)
    } else {
        (&keys[1], &keys[0], one)
    };
    let busy = |v: &tollgate_proto::VerifyResponse| {
        v.invalid_reason
            .as_ref()
            .is_some_and(|r| r.to_string() == "invalid_batch_settlement_evm_channel_busy")
    };
    assert!(busy(&refusal), "{refusal:?}");
    // The holder's own retry is taken again; the other attempt is still busy.
    assert!(
        manager
            .verify(&request, Some(holder))
            .await
            .unwrap()
            .is_valid
    );
    assert!(busy(&manager.verify(&request, Some(other)).await.unwrap()));

    // The holder's handler failed: abandoned, the channel is the other attempt's.
    manager.abandon(&request, Some(holder)).await;
    assert!(
        manager
            .verify(&request, Some(other))
            .await
            .unwrap()
            .is_valid
    );
    let settled = manager.settle(&request, Some(other)).await.unwrap();
    assert!(settled.success, "{settled:?}");
    buyer.accept(&settled, PRICE);
    // The abandoned attempt settles nothing: the voucher's ceiling is spent.
    let late = manager.settle(&request, Some(holder)).await.unwrap();
    assert!(!late.success, "{late:?}");
    assert_eq!(manager.stats().await.unwrap().unclaimed, buyer.charged);
    assert_eq!(shop.calls.get(), 1, "only the deposit reached the handler");
}

/// Two seller instances (two paywalls, each with its own channel manager) on one PostgreSQL
/// channel store, in front of one facilitator: the buyer's vouchers alternate between them and
/// each is charged once; the same voucher sent to both at once is delivered and charged once;
/// another voucher while one instance's request is in flight is refused busy by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_charge_each_voucher_once() {
    use tollgate_evm::batch_settlement::channels::PgChannelStore;
    use tollgate_testkit::Postgres;
    let pg = Postgres::start().unwrap();
    let first = shop().await;
    let instance = |_: u8| async {
        ChannelManager::new(
            RemoteFacilitator::new(&first.facilitator_url),
            Arc::new(PgChannelStore::connect(&pg.url()).await.unwrap()),
            ChannelManagerConfig::default(),
        )
    };
    let (a, b) = (instance(1).await, instance(2).await);
    let calls = Calls::default();
    let url_a = app(a.clone(), &first.chain, first.payee, calls.clone()).await;
    let url_b = app(b.clone(), &first.chain, first.payee, calls.clone()).await;
    let requirements = first.challenge().await;
    let mut buyer = first.buyer(&requirements, 9);
    let send = |url: String, payload: Value| {
        let http = first.http.clone();
        let requirements = requirements.clone();
        async move {
            let payment = json!({"x402Version": 2, "accepted": requirements, "payload": payload});
            // `url` may carry a query for the handler: `http://…?slow=true` → `/api?slow=true`.
            let target = match url.split_once('?') {
                Some((base, query)) => format!("{base}/api?{query}"),
                None => format!("{url}/api"),
            };
            let response = http
                .get(target)
                .header(header::PAYMENT_SIGNATURE, header::encode(&payment))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let receipt = response
                .headers()
                .get(header::PAYMENT_RESPONSE)
                .map(|v| header::decode::<SettleResponse>(v.to_str().unwrap()).unwrap());
            let required = response
                .headers()
                .get(header::PAYMENT_REQUIRED)
                .map(|v| header::decode::<PaymentRequired>(v.to_str().unwrap()).unwrap());
            (status, receipt, required)
        }
    };

    // Opened on A; then 20 vouchers alternating between the instances.
    let deposit = buyer.deposit(&first.chain, DEPOSIT).await;
    let (status, receipt, _) = send(url_a.clone(), deposit).await;
    assert_eq!(status, 200);
    buyer.accept(&receipt.unwrap(), PRICE);
    for n in 0..20 {
        let (_, payload) = buyer.voucher(buyer.charged + PRICE).await;
        let url = if n % 2 == 0 {
            url_b.clone()
        } else {
            url_a.clone()
        };
        let (status, receipt, _) = send(url, payload).await;
        assert_eq!(status, 200, "voucher {n}");
        buyer.accept(&receipt.unwrap(), PRICE);
    }
    assert_eq!(buyer.charged, 21 * PRICE);

    // The same voucher to both instances at once: one handler call, one delivery, one charge.
    let (_, payload) = buyer.voucher(buyer.charged + PRICE).await;
    let handled = calls.get();
    let ((s1, r1, _), (s2, r2, _)) = tokio::join!(
        send(url_a.clone(), payload.clone()),
        send(url_b.clone(), payload.clone())
    );
    let delivered = [(s1, r1), (s2, r2)]
        .into_iter()
        .filter(|(s, _)| *s == 200)
        .collect::<Vec<_>>();
    assert_eq!(
        delivered.len(),
        1,
        "one delivery for one voucher ({s1}, {s2})"
    );
    buyer.accept(delivered[0].1.as_ref().unwrap(), PRICE);
    assert_eq!(calls.get(), handled + 1, "one voucher, one handler call");
    // And again afterwards, to either: refused (its ceiling is spent).
    let (status, _, _) = send(url_b.clone(), payload).await;
    assert_eq!(status, 402);

    // A request in flight on A holds the channel for B too.
    let (_, slow) = buyer.voucher(buyer.charged + PRICE).await;
    let (_, other) = buyer.voucher(buyer.charged + 2 * PRICE).await;
    let slow_on_a = send(format!("{url_a}?slow=true"), slow);
    let other_on_b = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        send(url_b.clone(), other).await
    };
    let ((s1, r1, _), (s2, _, required)) = tokio::join!(slow_on_a, other_on_b);
    assert_eq!(s1, 200);
    buyer.accept(&r1.unwrap(), PRICE);
    assert_eq!(s2, 402);
    assert!(required
        .unwrap()
        .error
        .unwrap()
        .contains("invalid_batch_settlement_evm_channel_busy"));

    // Either instance claims everything both charged, once.
    let report = b.claim().await.unwrap();
    assert_eq!(report.claimed, buyer.charged);
    assert_eq!(a.claim().await.unwrap().claimed, 0);
    let contract = IBatchSettlement::new(BATCH_SETTLEMENT, first.chain.provider());
    assert_eq!(
        contract
            .channels(buyer.id)
            .call()
            .await
            .unwrap()
            .totalClaimed,
        buyer.charged
    );
    assert_eq!(
        first.chain.usdc_balance(first.payee).await.unwrap(),
        U256::from(buyer.charged)
    );
}

/// The official SDK's batch-settlement client (`@x402/fetch` with `@x402/evm`'s
/// `BatchSettlementEvmScheme`, `tests/interop/batch-client.mjs`) against this paywall: it opens
/// a channel with one deposit and pays the next calls with vouchers the channel manager takes
/// locally; the seller then claims exactly what the client was charged.
#[tokio::test]
async fn the_official_client_pays_through_a_channel() {
    let interop = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    assert!(
        interop
            .join("node_modules/@x402/evm/dist/esm/batch-settlement")
            .is_dir(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
    let shop = shop().await;
    // The official client reads channel state through Multicall3 at its canonical address.
    shop.chain.install_canonical_multicall3().await.unwrap();
    let calls = 12;
    // Awaited, not blocking: the paywall it calls runs on this test's runtime.
    let output = tokio::process::Command::new("node")
        .current_dir(&interop)
        .arg("batch-client.mjs")
        .env("X402_URL", format!("{}/api", shop.url))
        .env("X402_RPC_URL", shop.chain.endpoint())
        .env("X402_CHAIN_ID", shop.chain.chain_id().to_string())
        .env("X402_PAYER_KEY", tollgate_testkit::DEV_KEYS[3])
        .env("X402_CALLS", calls.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), calls, "{stdout}");
    let mut transactions = 0;
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["status"], 200, "call {i}: {line}");
        assert_eq!(line["body"], "data");
        let receipt = &line["paymentResponse"];
        assert_eq!(receipt["success"], true, "{line}");
        let expected_type = if i == 0 { "deposit" } else { "voucher" };
        assert_eq!(line["payloadType"], expected_type, "call {i}: {line}");
        if receipt["transaction"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            transactions += 1;
        }
        assert_eq!(
            receipt["extra"]["channelState"]["chargedCumulativeAmount"],
            (PRICE * (i as u128 + 1)).to_string(),
            "{line}"
        );
    }
    assert_eq!(transactions, 1, "only the deposit is a transaction");
    let report = shop.manager.claim().await.unwrap();
    assert_eq!(report.claimed, PRICE * calls as u128);
    assert_eq!(
        shop.chain.usdc_balance(shop.payee).await.unwrap(),
        U256::from(PRICE * calls as u128)
    );
}

/// A zero-charge refund request for `buyer`'s channel, signed by `signer` at `ceiling`.
async fn refund_request(
    buyer: &Buyer,
    signer: usize,
    ceiling: u128,
    amount: Option<u128>,
) -> Value {
    let v = sign_voucher(
        &TestChain::signer(signer),
        buyer.id,
        ceiling,
        buyer.chain_id,
    )
    .await
    .unwrap();
    let mut payload = json!({"type": "refund", "channelConfig": buyer.config, "voucher": v});
    if let Some(amount) = amount {
        payload["amount"] = json!(amount.to_string());
    }
    payload
}

fn refusal(required: Option<PaymentRequired>) -> String {
    required.unwrap().error.unwrap_or_default()
}

/// Refunds over HTTP at the paywall (the spec's cooperative refund flow), with the seller
/// holding the receiver authorizer's key: a refund is verified by the facilitator, completed by
/// the channel manager (amount, nonce, claim, signatures), settled on chain and answered `200`
/// with the refund's receipt — the handler never runs. A refund whose ceiling is not the charged
/// amount gets the corrective 402; one not signed by the payer is refused; one while a voucher
/// of the channel is in flight is busy; a partial refund keeps the channel (it pays on), a full
/// one deletes its record.
#[tokio::test]
async fn refunds_are_payment_operations_settled_without_the_handler() {
    let shop = shop_with(ChannelManagerConfig {
        authorizer: Some(TestChain::signer(AUTHORIZER)),
        ..ChannelManagerConfig::default()
    })
    .await;
    let requirements = shop.challenge().await;
    let mut buyer = shop.buyer(&requirements, 7);
    let payer = TestChain::address(PAYER);
    let payer_start = shop.chain.usdc_balance(payer).await.unwrap();
    let contract = IBatchSettlement::new(BATCH_SETTLEMENT, shop.chain.provider());

    let deposit = buyer.deposit(&shop.chain, DEPOSIT).await;
    let (status, receipt, _) = shop.send("", &requirements, deposit).await;
    assert_eq!(status, StatusCode::OK);
    buyer.accept(&receipt.unwrap(), PRICE);
    for _ in 0..3 {
        let (_, payload) = buyer.voucher(buyer.charged + PRICE).await;
        let (status, receipt, _) = shop.send("?metered=true", &requirements, payload).await;
        assert_eq!(status, StatusCode::OK);
        buyer.accept(&receipt.unwrap(), METERED);
    }
    let served = shop.calls.get();
    assert_eq!(served, 4);
    let charged = buyer.charged;
    assert_eq!(charged, PRICE + 3 * METERED);

    // A refund whose ceiling is a paid request's (charged + price), not the charged amount:
    // the corrective 402 with the seller's state; nothing moves.
    let wrong = refund_request(&buyer, PAYER, charged + PRICE, None).await;
    let (status, receipt, required, _) = shop.send_body(&requirements, wrong).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(receipt.is_none());
    let required = required.unwrap();
    assert!(
        required
            .error
            .as_deref()
            .unwrap()
            .contains("invalid_batch_settlement_evm_cumulative_amount_mismatch"),
        "{:?}",
        required.error
    );
    assert_eq!(
        required.accepts[0].extra.as_ref().unwrap()["channelState"]["chargedCumulativeAmount"],
        charged.to_string()
    );

    // A forged refund: the right ceiling, signed by someone else.
    let forged = refund_request(&buyer, 2, charged, None).await;
    let (status, _, required, _) = shop.send_body(&requirements, forged).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(
        refusal(required).contains("invalid_batch_settlement_evm_voucher_signature"),
        "a forged refund is refused for its signature"
    );
    assert_eq!(
        shop.chain.usdc_balance(payer).await.unwrap(),
        payer_start - U256::from(DEPOSIT)
    );

    // A refund while a voucher of the channel is in flight: busy.
    let (_, slow) = buyer.voucher(charged + PRICE).await;
    let during = refund_request(&buyer, PAYER, charged, None).await;
    let first = shop.send("?slow=true", &requirements, slow);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        shop.send_body(&requirements, during).await
    };
    let ((s1, r1, _), (s2, r2, required, _)) = tokio::join!(first, second);
    assert_eq!(s1, StatusCode::OK);
    buyer.accept(&r1.unwrap(), PRICE);
    assert_eq!(s2, StatusCode::PAYMENT_REQUIRED);
    assert!(r2.is_none());
    assert!(refusal(required).contains("invalid_batch_settlement_evm_channel_busy"));
    let charged = buyer.charged;
    assert_eq!(shop.calls.get(), served + 1);
    let served = served + 1;

    // A partial refund: 200 with the refund's receipt and the official body; the charged amount
    // is claimed in the same transaction and swept to the receiver; the channel pays on.
    const PARTIAL: u128 = 500_000;
    let partial = refund_request(&buyer, PAYER, charged, Some(PARTIAL)).await;
    let (status, receipt, _, body) = shop.send_body(&requirements, partial).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"message": "Refund acknowledged", "channelId": buyer.id.to_string()})
    );
    let receipt = receipt.unwrap();
    assert!(receipt.success && receipt.transaction.starts_with("0x"));
    assert_eq!(receipt.amount, Some(AtomicAmount(U256::from(PARTIAL))));
    let extra = receipt.extra.as_ref().unwrap();
    assert!(
        extra.get("chargedAmount").is_none(),
        "a refund charges nothing"
    );
    let state = &extra["channelState"];
    assert_eq!(state["balance"], (DEPOSIT - PARTIAL).to_string());
    assert_eq!(state["totalClaimed"], charged.to_string());
    assert_eq!(state["refundNonce"], "1");
    assert_eq!(state["chargedCumulativeAmount"], charged.to_string());
    let on_chain = contract.channels(buyer.id).call().await.unwrap();
    assert_eq!(
        (on_chain.balance, on_chain.totalClaimed),
        (DEPOSIT - PARTIAL, charged)
    );
    assert_eq!(
        shop.chain.usdc_balance(payer).await.unwrap(),
        payer_start - U256::from(DEPOSIT - PARTIAL)
    );
    assert_eq!(
        shop.chain.usdc_balance(shop.payee).await.unwrap(),
        U256::from(charged)
    );
    let record = shop.manager.store().load(buyer.id).await.unwrap().unwrap();
    assert_eq!(
        (record.balance, record.total_claimed, record.charged),
        (DEPOSIT - PARTIAL, charged, charged)
    );
    assert_eq!(
        shop.calls.get(),
        served,
        "the handler never ran for a refund"
    );

    // The channel pays on after a partial refund.
    let (_, payload) = buyer.voucher(charged + PRICE).await;
    let (status, receipt, _) = shop.send("", &requirements, payload).await;
    assert_eq!(status, StatusCode::OK);
    buyer.accept(&receipt.unwrap(), PRICE);
    let served = served + 1;
    let charged = buyer.charged;

    // A full refund (no amount): everything not charged goes back, the record is deleted.
    let full = refund_request(&buyer, PAYER, charged, None).await;
    let (status, receipt, _, _) = shop.send_body(&requirements, full).await;
    assert_eq!(status, StatusCode::OK);
    let receipt = receipt.unwrap();
    let returned = DEPOSIT - PARTIAL - charged;
    assert_eq!(receipt.amount, Some(AtomicAmount(U256::from(returned))));
    let on_chain = contract.channels(buyer.id).call().await.unwrap();
    assert_eq!(
        (on_chain.balance, on_chain.totalClaimed),
        (charged, charged)
    );
    assert!(shop.manager.store().load(buyer.id).await.unwrap().is_none());
    assert_eq!(
        shop.chain.usdc_balance(payer).await.unwrap(),
        payer_start - U256::from(charged)
    );
    assert_eq!(
        shop.chain.usdc_balance(shop.payee).await.unwrap(),
        U256::from(charged)
    );
    assert_eq!(
        shop.calls.get(),
        served,
        "the handler never ran for a refund"
    );
    // Nothing left: a refund now is refused, and nothing is left to claim.
    let again = refund_request(&buyer, PAYER, charged, None).await;
    let (status, _, required, _) = shop.send_body(&requirements, again).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(refusal(required).contains("refund_no_balance"));
    assert_eq!(shop.manager.claim().await.unwrap().claimed, 0);
    assert_eq!(shop.calls.get(), served);
}
