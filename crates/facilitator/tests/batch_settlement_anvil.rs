//! `batch-settlement` through the facilitator's generic path, on anvil or the devnet: a deposit
//! verified and settled once (its repeat refused, nothing moved twice), vouchers verified with
//! the channel's state in `extra`, every verification refusal by its reason code, a claim the
//! facilitator signs as the channel's receiver authorizer (repeatable: the repeat moves
//! nothing), the sweep to the receiver (`amount`), and refunds the facilitator completes.

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use tollgate_core::NetworkPattern;
use tollgate_evm::batch_settlement::{
    channel_id, sign_erc3009_deposit, sign_voucher, BatchSettlementEvmFacilitator, ChannelConfig,
    Erc3009DepositTerms, ReceiverAuthorizer, BATCH_SETTLEMENT,
};
use tollgate_evm::{ChainConfig, EvmChain};
use tollgate_facilitator::{Facilitator, Outcome};
use tollgate_proto::{
    AtomicAmount, FacilitatorRequest, IdempotencyKey, PaymentPayload, PaymentRequirements, Scheme,
};
use tollgate_testkit::TestChain;

const PAYER: usize = 1;
const AUTHORIZER: usize = 8;
const RECEIVER: usize = 9;
const DEPOSIT: u128 = 100_000;
const PRICE: u128 = 1_000;

fn addr(i: usize) -> Address {
    TestChain::address(i)
}

fn key(name: &str) -> IdempotencyKey {
    format!("attempt-{name:0>16}").parse().unwrap()
}

struct Rig {
    chain: TestChain,
    facilitator: Facilitator,
    requirements: PaymentRequirements,
    config: ChannelConfig,
    id: B256,
}

async fn rig(sign_refunds: bool) -> Rig {
    let chain = TestChain::start().await.unwrap();
    let evm = EvmChain::connect(
        &[chain.endpoint()],
        vec![TestChain::signer(0)],
        ChainConfig::default(),
    )
    .await
    .unwrap();
    let authorizer = ReceiverAuthorizer::new(TestChain::signer(AUTHORIZER));
    let authorizer = if sign_refunds {
        authorizer.signing_refunds()
    } else {
        authorizer
    };
    let scheme = BatchSettlementEvmFacilitator::on_chain(&evm, Some(authorizer));
    let facilitator = Facilitator::builder()
        .scheme(NetworkPattern::One(evm.network().clone()), Arc::new(scheme))
        .chain(Arc::new(evm))
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    // The seller takes the receiver authorizer from /supported.
    let supported = facilitator.supported();
    let kind = supported
        .kinds
        .iter()
        .find(|k| k.scheme == Scheme::BatchSettlement)
        .expect("batch-settlement is announced");
    let authorizer = kind.extra.as_ref().unwrap()["receiverAuthorizer"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(authorizer.parse::<Address>().unwrap(), addr(AUTHORIZER));
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "batch-settlement",
        "network": chain.caip2(),
        "amount": PRICE.to_string(),
        "asset": chain.usdc.to_string(),
        "payTo": addr(RECEIVER).to_string(),
        "maxTimeoutSeconds": 3600,
        "extra": {
            "receiverAuthorizer": authorizer,
            "withdrawDelay": 900,
            "name": "USD Coin",
            "version": "2"
        }
    }))
    .unwrap();
    let config = ChannelConfig {
        payer: addr(PAYER),
        payer_authorizer: addr(PAYER),
        receiver: addr(RECEIVER),
        receiver_authorizer: addr(AUTHORIZER),
        token: chain.usdc,
        withdraw_delay: 900,
        salt: B256::with_last_byte(3),
    };
    let id = channel_id(&config, chain.chain_id());
    Rig {
        chain,
        facilitator,
        requirements,
        config,
        id,
    }
}

fn payment(requirements: &PaymentRequirements, payload: Value) -> PaymentPayload {
    serde_json::from_value(json!({
        "x402Version": 2,
        "accepted": requirements,
        "payload": payload,
    }))
    .unwrap()
}

fn request(payment: &PaymentPayload, requirements: &PaymentRequirements) -> FacilitatorRequest {
    FacilitatorRequest::V2 {
        payment_payload: payment.clone(),
        payment_requirements: requirements.clone(),
    }
}

impl Rig {
    async fn deposit_payload(
        &self,
        signer: &PrivateKeySigner,
        config: &ChannelConfig,
        amount: u128,
        ceiling: u128,
        valid_before: u64,
    ) -> Value {
        let id = channel_id(config, self.chain.chain_id());
        let terms = Erc3009DepositTerms {
            channel_id: id,
            from: config.payer,
            amount,
            valid_after: 0,
            valid_before,
            salt: B256::random(),
        };
        let domain = alloy::sol_types::eip712_domain! {
            name: "USD Coin",
            version: "2",
            chain_id: self.chain.chain_id(),
            verifying_contract: self.chain.usdc,
        };
        let auth = sign_erc3009_deposit(signer, &terms, &domain).await.unwrap();
        let voucher = sign_voucher(signer, id, ceiling, self.chain.chain_id())
            .await
            .unwrap();
        json!({
            "type": "deposit",
            "channelConfig": config,
            "voucher": voucher,
            "deposit": {"amount": amount.to_string(), "authorization": {"erc3009Authorization": auth}}
        })
    }

    async fn voucher_payload(&self, config: &ChannelConfig, ceiling: u128) -> Value {
        let voucher = sign_voucher(
            &TestChain::signer(PAYER),
            channel_id(config, self.chain.chain_id()),
            ceiling,
            self.chain.chain_id(),
        )
        .await
        .unwrap();
        json!({"type": "voucher", "channelConfig": config, "voucher": voucher})
    }

    async fn verify(
        &self,
        payload: Value,
        requirements: &PaymentRequirements,
    ) -> Outcome<tollgate_proto::VerifyResponse> {
        let p = payment(requirements, payload);
        self.facilitator.verify(&request(&p, requirements)).await
    }

    async fn refused(&self, payload: Value, requirements: &PaymentRequirements, reason: &str) {
        let outcome = self.verify(payload, requirements).await;
        let body = outcome.body();
        assert!(!body.is_valid, "expected {reason}, got valid");
        assert_eq!(
            body.invalid_reason.as_ref().map(|r| r.as_str()),
            Some(reason),
            "{:?}",
            body.invalid_message
        );
    }

    async fn settle(
        &self,
        payload: Value,
        attempt: &str,
    ) -> Outcome<tollgate_proto::SettleResponse> {
        let p = payment(&self.requirements, payload);
        self.facilitator
            .settle_attempt(&request(&p, &self.requirements), Some(&key(attempt)))
            .await
    }

    async fn usdc(&self, who: Address) -> U256 {
        self.chain.usdc_balance(who).await.unwrap()
    }

    async fn valid_before(&self) -> u64 {
        use alloy::providers::Provider;
        let block = self
            .chain
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .unwrap();
        block.header.timestamp + 3600
    }
}

fn state(extra: &serde_json::Map<String, Value>) -> (String, String) {
    (
        extra["balance"].as_str().unwrap().to_owned(),
        extra["totalClaimed"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn deposit_vouchers_claim_settle_and_refund_through_the_facilitator() {
    let rig = rig(true).await;
    let req = &rig.requirements;
    let payer_start = rig.usdc(addr(PAYER)).await;
    let receiver_start = rig.usdc(addr(RECEIVER)).await;
    let valid_before = rig.valid_before().await;

    // Deposit: verified (the channel is still empty), settled once.
    let deposit = rig
        .deposit_payload(
            &TestChain::signer(PAYER),
            &rig.config,
            DEPOSIT,
            PRICE,
            valid_before,
        )
        .await;
    let Outcome::Ok(verified) = rig.verify(deposit.clone(), req).await else {
        panic!("deposit refused");
    };
    let extra = verified.extra.expect("channel state in extra");
    assert_eq!(extra["channelId"].as_str().unwrap(), rig.id.to_string());
    assert_eq!(state(&extra), ("0".into(), "0".into()));
    let Outcome::Ok(settled) = rig.settle(deposit.clone(), "deposit").await else {
        panic!("deposit settlement failed");
    };
    assert_eq!(settled.amount, Some(AtomicAmount(U256::from(DEPOSIT))));
    assert!(!settled.transaction.is_empty());
    let channel = &settled.extra.as_ref().unwrap()["channelState"];
    assert_eq!(channel["balance"], DEPOSIT.to_string());
    assert_eq!(
        rig.usdc(addr(PAYER)).await,
        payer_start - U256::from(DEPOSIT)
    );
    // The same deposit again, by another attempt: refused; nothing moves twice.
    let again = rig.settle(deposit, "deposit-again").await;
    assert!(matches!(again, Outcome::Rejected(_)), "{:?}", again.body());
    assert_eq!(rig.usdc(BATCH_SETTLEMENT).await, U256::from(DEPOSIT));

    // Vouchers: valid with the channel's state; a /settle of one is refused (the server claims).
    let v = rig.voucher_payload(&rig.config, 2 * PRICE).await;
    let Outcome::Ok(ok) = rig.verify(v.clone(), req).await else {
        panic!("voucher refused");
    };
    assert_eq!(state(&ok.extra.unwrap()), (DEPOSIT.to_string(), "0".into()));
    let r = rig.settle(v, "voucher").await;
    assert_eq!(
        r.body().error_reason.as_ref().map(|r| r.as_str()),
        Some("invalid_batch_settlement_evm_payload_type")
    );

    // Claim 40 vouchers' worth, signed by the facilitator as receiver authorizer.
    let earned = 40 * PRICE;
    let last = sign_voucher(
        &TestChain::signer(PAYER),
        rig.id,
        earned,
        rig.chain.chain_id(),
    )
    .await
    .unwrap();
    let claim = json!({"type": "claim", "claims": [{
        "voucher": {"channel": rig.config, "maxClaimableAmount": earned.to_string()},
        "signature": last.signature,
        "totalClaimed": earned.to_string()
    }]});
    let Outcome::Ok(claimed) = rig.settle(claim.clone(), "claim").await else {
        panic!("claim failed");
    };
    assert!(!claimed.transaction.is_empty());
    // Repeatable: sent again, it changes nothing.
    let Outcome::Ok(_) = rig.settle(claim, "claim-again").await else {
        panic!("the repeated claim failed");
    };
    let v = rig.voucher_payload(&rig.config, earned).await;
    rig.refused(
        v,
        req,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    )
    .await;

    // Sweep to the receiver: the amount moved; a second sweep has nothing to move.
    let sweep = json!({"type": "settle", "receiver": addr(RECEIVER), "token": rig.chain.usdc});
    let Outcome::Ok(swept) = rig.settle(sweep.clone(), "sweep").await else {
        panic!("sweep failed");
    };
    assert_eq!(swept.amount, Some(AtomicAmount(U256::from(earned))));
    assert_eq!(
        rig.usdc(addr(RECEIVER)).await,
        receiver_start + U256::from(earned)
    );
    let r = rig.settle(sweep, "sweep-again").await;
    assert_eq!(
        r.body().error_reason.as_ref().map(|r| r.as_str()),
        Some("invalid_batch_settlement_evm_nothing_to_settle")
    );
    assert_eq!(
        rig.usdc(addr(RECEIVER)).await,
        receiver_start + U256::from(earned)
    );

    // A partial refund the facilitator completes (nonce from the chain, its signature).
    let zero_charge = sign_voucher(
        &TestChain::signer(PAYER),
        rig.id,
        earned,
        rig.chain.chain_id(),
    )
    .await
    .unwrap();
    let refund = json!({"type": "refund", "channelConfig": rig.config, "voucher": zero_charge, "amount": "5000"});
    let Outcome::Ok(refunded) = rig.settle(refund.clone(), "refund").await else {
        panic!("refund failed");
    };
    assert_eq!(refunded.amount, Some(AtomicAmount(U256::from(5_000u64))));
    let channel = &refunded.extra.as_ref().unwrap()["channelState"];
    assert_eq!(channel["balance"], (DEPOSIT - 5_000).to_string());
    assert_eq!(channel["refundNonce"], "1");
    // The same refund request again is the same payment: refused by another attempt.
    let r = rig.settle(refund, "refund-again").await;
    assert!(matches!(r, Outcome::Rejected(_)), "{:?}", r.body());
    // The rest, after claiming 3 more requests in the same transaction.
    let more = earned + 3 * PRICE;
    let last = sign_voucher(
        &TestChain::signer(PAYER),
        rig.id,
        more,
        rig.chain.chain_id(),
    )
    .await
    .unwrap();
    let full = json!({
        "type": "refund", "channelConfig": rig.config, "voucher": last,
        "refundNonce": "1",
        "claims": [{
            "voucher": {"channel": rig.config, "maxClaimableAmount": more.to_string()},
            "signature": last.signature,
            "totalClaimed": more.to_string()
        }]
    });
    let Outcome::Ok(done) = rig.settle(full, "refund-full").await else {
        panic!("full refund failed");
    };
    assert_eq!(
        done.amount,
        Some(AtomicAmount(U256::from(DEPOSIT - 5_000 - more)))
    );
    let channel = &done.extra.as_ref().unwrap()["channelState"];
    assert_eq!(channel["balance"], more.to_string());
    assert_eq!(channel["totalClaimed"], more.to_string());
    // The payer paid exactly what it used.
    assert_eq!(rig.usdc(addr(PAYER)).await, payer_start - U256::from(more));
}

#[tokio::test]
async fn verification_refusals_by_reason() {
    let rig = rig(false).await;
    let req = &rig.requirements;
    let valid_before = rig.valid_before().await;
    let deposit = rig
        .deposit_payload(
            &TestChain::signer(PAYER),
            &rig.config,
            10_000,
            PRICE,
            valid_before,
        )
        .await;
    let Outcome::Ok(_) = rig.settle(deposit, "open").await else {
        panic!("deposit failed");
    };
    let good = rig.voucher_payload(&rig.config, PRICE).await;
    let Outcome::Ok(_) = rig.verify(good.clone(), req).await else {
        panic!("voucher refused");
    };
    let with = |path: &[&str], value: Value| {
        let mut p = good.clone();
        let mut at = &mut p;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        at[path[path.len() - 1]] = value;
        p
    };
    let req_with = |key: &str, value: Value| {
        let mut r = req.clone();
        if let Some(extra) = r.extra.as_mut() {
            extra.insert(key.into(), value);
        }
        r
    };
    let code = |s: &str| format!("invalid_batch_settlement_evm_{s}");

    // Bad signature (another key), tampered ceiling.
    let stranger = sign_voucher(&TestChain::signer(5), rig.id, PRICE, rig.chain.chain_id())
        .await
        .unwrap();
    rig.refused(
        with(&["voucher", "signature"], json!(stranger.signature)),
        req,
        &code("voucher_signature"),
    )
    .await;
    rig.refused(
        with(&["voucher", "maxClaimableAmount"], json!("1001")),
        req,
        &code("voucher_signature"),
    )
    .await;
    // Wrong channel: the config does not hash to the voucher's id.
    rig.refused(
        with(&["channelConfig", "salt"], json!(B256::repeat_byte(9))),
        req,
        &code("channel_id_mismatch"),
    )
    .await;
    // Channels not matching the requirements.
    let mut other = rig.config.clone();
    other.receiver = addr(7);
    rig.refused(
        rig.voucher_payload(&other, PRICE).await,
        req,
        &code("receiver_mismatch"),
    )
    .await;
    let mut other = rig.config.clone();
    other.receiver_authorizer = addr(6);
    rig.refused(
        rig.voucher_payload(&other, PRICE).await,
        req,
        &code("receiver_authorizer_mismatch"),
    )
    .await;
    let mut other = rig.config.clone();
    other.withdraw_delay = 1_000;
    rig.refused(
        rig.voucher_payload(&other, PRICE).await,
        req,
        &code("withdraw_delay_mismatch"),
    )
    .await;
    let mut other = rig.config.clone();
    other.withdraw_delay = 600;
    rig.refused(
        rig.voucher_payload(&other, PRICE).await,
        &req_with("withdrawDelay", json!(600)),
        &code("withdraw_delay_out_of_range"),
    )
    .await;
    let mut other = rig.config.clone();
    other.token = rig.chain.usdt;
    rig.refused(
        rig.voucher_payload(&other, PRICE).await,
        req,
        &code("token_mismatch"),
    )
    .await;
    // A channel nobody funded; a ceiling over the balance.
    let mut empty = rig.config.clone();
    empty.salt = B256::with_last_byte(200);
    rig.refused(
        rig.voucher_payload(&empty, PRICE).await,
        req,
        &code("channel_not_found"),
    )
    .await;
    rig.refused(
        rig.voucher_payload(&rig.config, 10_001).await,
        req,
        &code("cumulative_exceeds_balance"),
    )
    .await;
    // Malformed or unknown payloads; another network.
    rig.refused(
        with(&["voucher", "maxClaimableAmount"], json!("01000")),
        req,
        &code("voucher_payload"),
    )
    .await;
    rig.refused(with(&["type"], json!("tip")), req, &code("payload_type"))
        .await;
    let mut elsewhere = req.clone();
    elsewhere.network = "eip155:1".parse().unwrap();
    let p = payment(&elsewhere, good.clone());
    let outcome = rig.facilitator.verify(&request(&p, req)).await;
    assert!(!outcome.body().is_valid);

    // Deposits: expired, unfunded payer, bad deposit signature.
    let expired = rig
        .deposit_payload(&TestChain::signer(PAYER), &rig.config, 1_000, 2 * PRICE, 1)
        .await;
    rig.refused(expired, req, &code("payload_authorization_valid_before"))
        .await;
    let poor = PrivateKeySigner::random();
    let mut poor_config = rig.config.clone();
    poor_config.payer = poor.address();
    poor_config.payer_authorizer = poor.address();
    let unfunded = rig
        .deposit_payload(&poor, &poor_config, 1_000, PRICE, valid_before)
        .await;
    rig.refused(unfunded, req, &code("insufficient_balance"))
        .await;
    let mut forged = rig
        .deposit_payload(
            &TestChain::signer(PAYER),
            &rig.config,
            1_000,
            2 * PRICE,
            valid_before,
        )
        .await;
    forged["deposit"]["amount"] = json!("2000");
    rig.refused(forged, req, &code("receive_authorization_signature"))
        .await;
    // This facilitator signs claims but not refunds (nobody authenticated the seller): a refund
    // without the seller's signature is refused, and nothing moves.
    let zero_charge = sign_voucher(
        &TestChain::signer(PAYER),
        rig.id,
        PRICE,
        rig.chain.chain_id(),
    )
    .await
    .unwrap();
    let refund = json!({"type": "refund", "channelConfig": rig.config, "voucher": zero_charge});
    let before = rig.usdc(addr(PAYER)).await;
    let r = rig.settle(refund, "refund-unsigned").await;
    assert_eq!(
        r.body().error_reason.as_ref().map(|r| r.as_str()),
        Some(code("refund_payload").as_str())
    );
    assert_eq!(rig.usdc(addr(PAYER)).await, before);
    // A refund of a channel with nothing unclaimed left is refused before anything is sent.
    let claimed = sign_voucher(
        &TestChain::signer(PAYER),
        rig.id,
        10_000,
        rig.chain.chain_id(),
    )
    .await
    .unwrap();
    let claim = json!({"type": "claim", "claims": [{
        "voucher": {"channel": rig.config, "maxClaimableAmount": "10000"},
        "signature": claimed.signature,
        "totalClaimed": "10000"
    }]});
    let Outcome::Ok(_) = rig.settle(claim, "claim-all").await else {
        panic!("claim failed");
    };
    let refund = json!({"type": "refund", "channelConfig": rig.config, "voucher": claimed});
    rig.refused(refund, req, &code("refund_no_balance")).await;
}
