//! The `batch-settlement` contracts on a real chain (anvil, or the devnet with
//! `TOLLGATE_TEST_CHAIN=devnet`), driven by `tollgate_evm::batch_settlement`: a channel opened
//! with an ERC-3009 deposit (and one with a Permit2 deposit), 1,000 cumulative vouchers checked
//! locally, one signed claim, settlement to the receiver, refunds (signed and direct, a replayed
//! and a forged one refused) and the timed withdrawal; every refusal by its contract error with
//! balances unchanged; and the official SDK's client payloads read by our types and accepted by
//! our contracts.

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{eip712_domain, SolCall, SolInterface};
use serde_json::json;
use tollgate_evm::batch_settlement::abi::IBatchSettlement::{self, IBatchSettlementErrors};
use tollgate_evm::batch_settlement::{
    channel_id, claim_batch_digest, refund_digest, sign_claim_batch, sign_erc3009_deposit,
    sign_permit2_deposit, sign_refund, sign_voucher, voucher_digest, BatchPayload, ChannelConfig,
    ClaimRow, ClaimVoucher, DepositAuthorization, Erc3009DepositTerms, SignedVoucher, VoucherError,
    VoucherVerifier, BATCH_SETTLEMENT, ERC3009_DEPOSIT_COLLECTOR, PERMIT2_DEPOSIT_COLLECTOR,
};
use tollgate_testkit::TestChain;

/// Account roles: 1 pays, 8 is the receiver authorizer (signs claims and refunds), 9 receives,
/// 0 relays (the facilitator).
const PAYER: usize = 1;
const AUTHORIZER: usize = 8;
const RECEIVER: usize = 9;
const RELAY: usize = 0;

const DEPOSIT: u128 = 100_000;
const PRICE: u128 = 37;

fn addr(i: usize) -> Address {
    TestChain::address(i)
}

/// A channel of `token` between the test roles; `salt` tells channels apart.
fn config(token: Address, salt: u8) -> ChannelConfig {
    ChannelConfig {
        payer: addr(PAYER),
        payer_authorizer: addr(PAYER),
        receiver: addr(RECEIVER),
        receiver_authorizer: addr(AUTHORIZER),
        token,
        withdraw_delay: 900,
        salt: B256::with_last_byte(salt),
    }
}

fn contract(
    chain: &TestChain,
    from: usize,
) -> IBatchSettlement::IBatchSettlementInstance<DynProvider> {
    IBatchSettlement::new(BATCH_SETTLEMENT, chain.provider_for(from).unwrap())
}

async fn now(chain: &TestChain) -> u64 {
    let block = chain
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap();
    block.header.timestamp
}

/// Sends `data` to the settlement contract from `from` and requires success.
async fn send(chain: &TestChain, from: usize, data: Vec<u8>) {
    let provider = chain.provider_for(from).unwrap();
    let tx = TransactionRequest::default()
        .with_from(addr(from))
        .with_to(BATCH_SETTLEMENT)
        .with_input(data)
        .with_gas_limit(3_000_000);
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "transaction reverted");
}

/// `data` from `from` must revert with `expected` (checked with `eth_call`), and sent anyway it
/// must revert on chain and change none of `watched` token balances nor the channel `id`.
/// What a refused transaction must leave unchanged: these holders' balances of `token` (and
/// the settlement contract's), and channel `id`'s state and refund nonce.
struct Watch<'a> {
    token: Address,
    watched: &'a [Address],
    id: B256,
}

async fn refused(
    chain: &TestChain,
    from: usize,
    to: Address,
    data: Vec<u8>,
    expected: &str,
    watch: &Watch<'_>,
) {
    let provider = chain.provider_for(from).unwrap();
    let tx = TransactionRequest::default()
        .with_from(addr(from))
        .with_to(to)
        .with_input(data);
    let err = provider
        .call(tx.clone())
        .await
        .expect_err(&format!("expected a revert with {expected}"));
    let revert = err
        .as_error_resp()
        .and_then(|e| e.as_revert_data())
        .unwrap_or_else(|| panic!("no revert data in {err}"));
    let name = IBatchSettlementErrors::abi_decode(&revert)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|_| format!("undecoded {revert}"));
    assert!(
        name.starts_with(expected),
        "reverted with {name}, expected {expected}"
    );
    let before = snapshot(chain, watch).await;
    let receipt = provider
        .send_transaction(tx.with_gas_limit(1_000_000))
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        !receipt.status(),
        "{expected}: the transaction went through"
    );
    assert_eq!(
        snapshot(chain, watch).await,
        before,
        "{expected}: something moved"
    );
}

async fn snapshot(chain: &TestChain, watch: &Watch<'_>) -> (Vec<U256>, u128, u128, U256) {
    let Watch { token, watched, id } = *watch;
    let mut balances = Vec::new();
    for who in watched.iter().chain([&BATCH_SETTLEMENT]) {
        balances.push(chain.token_balance(token, *who).await.unwrap());
    }
    let c = contract(chain, RELAY);
    let state = c.channels(id).call().await.unwrap();
    let nonce = c.refundNonce(id).call().await.unwrap();
    (balances, state.balance, state.totalClaimed, nonce)
}

fn usdc_domain(chain: &TestChain) -> alloy::sol_types::Eip712Domain {
    eip712_domain! {
        name: "USD Coin",
        version: "2",
        chain_id: chain.chain_id(),
        verifying_contract: chain.usdc,
    }
}

/// Opens `config`'s channel with an ERC-3009 deposit of `amount` signed by the payer and
/// relayed by account 0; returns the channel id.
async fn open_erc3009(chain: &TestChain, config: &ChannelConfig, amount: u128) -> B256 {
    let id = channel_id(config, chain.chain_id());
    let start = now(chain).await;
    let terms = Erc3009DepositTerms {
        channel_id: id,
        from: config.payer,
        amount,
        valid_after: 0,
        valid_before: start + 3600,
        salt: B256::random(),
    };
    let auth = sign_erc3009_deposit(&TestChain::signer(PAYER), &terms, &usdc_domain(chain))
        .await
        .unwrap();
    let call = IBatchSettlement::depositCall {
        config: config.to_abi(),
        amount,
        collector: ERC3009_DEPOSIT_COLLECTOR,
        collectorData: auth.collector_data(),
    };
    send(chain, RELAY, call.abi_encode()).await;
    id
}

fn row(config: &ChannelConfig, voucher: &SignedVoucher, claimed: u128) -> ClaimRow {
    ClaimRow {
        voucher: ClaimVoucher {
            channel: config.clone(),
            max_claimable_amount: voucher.max_claimable_amount,
        },
        signature: voucher.signature.clone(),
        total_claimed: claimed,
    }
}

async fn claim_call(chain: &TestChain, rows: &[ClaimRow], signer: usize) -> Vec<u8> {
    let signature = sign_claim_batch(&TestChain::signer(signer), rows, chain.chain_id())
        .await
        .unwrap();
    IBatchSettlement::claimWithSignatureCall {
        voucherClaims: rows.iter().map(ClaimRow::to_abi).collect(),
        authorizerSignature: signature,
    }
    .abi_encode()
}

#[tokio::test]
async fn digests_and_channel_ids_match_the_contract() {
    let chain = TestChain::start().await.unwrap();
    let c = contract(&chain, RELAY);
    let chain_id = chain.chain_id();
    let mut rows = Vec::new();
    for salt in 1..=3u8 {
        let config = config(chain.usdc, salt);
        let id = channel_id(&config, chain_id);
        assert_eq!(c.getChannelId(config.to_abi()).call().await.unwrap(), id);
        let voucher = sign_voucher(
            &TestChain::signer(PAYER),
            id,
            1_000 * u128::from(salt),
            chain_id,
        )
        .await
        .unwrap();
        assert_eq!(
            c.getVoucherDigest(id, voucher.max_claimable_amount)
                .call()
                .await
                .unwrap(),
            voucher_digest(id, voucher.max_claimable_amount, chain_id)
        );
        assert_eq!(
            c.getRefundDigest(id, U256::from(salt), 55)
                .call()
                .await
                .unwrap(),
            refund_digest(id, U256::from(salt), 55, chain_id)
        );
        rows.push(row(&config, &voucher, 500));
        assert_eq!(
            c.getClaimBatchDigest(rows.iter().map(ClaimRow::to_abi).collect())
                .call()
                .await
                .unwrap(),
            claim_batch_digest(&rows, chain_id),
            "claim batch of {} rows",
            rows.len()
        );
    }
    // Another chain id is another channel.
    let config = config(chain.usdc, 1);
    assert_ne!(
        channel_id(&config, chain_id),
        channel_id(&config, chain_id + 1)
    );
}

#[tokio::test]
async fn open_a_thousand_vouchers_claim_settle_and_refund() {
    let chain = TestChain::start().await.unwrap();
    let chain_id = chain.chain_id();
    let token = chain.usdc;
    let config = config(token, 7);
    let payer_before = chain.usdc_balance(addr(PAYER)).await.unwrap();
    let receiver_before = chain.usdc_balance(addr(RECEIVER)).await.unwrap();

    let id = open_erc3009(&chain, &config, DEPOSIT).await;
    let c = contract(&chain, RELAY);
    let state = c.channels(id).call().await.unwrap();
    assert_eq!((state.balance, state.totalClaimed), (DEPOSIT, 0));
    assert_eq!(
        chain.usdc_balance(addr(PAYER)).await.unwrap(),
        payer_before - U256::from(DEPOSIT)
    );
    assert_eq!(
        chain.usdc_balance(BATCH_SETTLEMENT).await.unwrap(),
        U256::from(DEPOSIT)
    );
    assert_eq!(
        chain.usdc_balance(ERC3009_DEPOSIT_COLLECTOR).await.unwrap(),
        U256::ZERO,
        "the collector keeps nothing"
    );

    // 1,000 requests, each paid with a cumulative voucher checked locally.
    let verifier = VoucherVerifier::new(chain_id);
    let payer = TestChain::signer(PAYER);
    let mut last = None;
    for n in 1..=1_000u128 {
        let voucher = sign_voucher(&payer, id, n * PRICE, chain_id).await.unwrap();
        verifier.verify(&config, &voucher).unwrap();
        last = Some(voucher);
    }
    let last = last.unwrap();
    let earned = 1_000 * PRICE;

    // One signed claim, relayed by the facilitator.
    let rows = [row(&config, &last, earned)];
    let claim = claim_call(&chain, &rows, AUTHORIZER).await;
    send(&chain, RELAY, claim.clone()).await;
    let state = c.channels(id).call().await.unwrap();
    assert_eq!((state.balance, state.totalClaimed), (DEPOSIT, earned));
    let r = c.receivers(addr(RECEIVER), token).call().await.unwrap();
    assert_eq!((r.totalClaimed, r.totalSettled), (earned, 0));
    // The same claim again changes nothing (cumulative amounts make replays no-ops).
    send(&chain, RELAY, claim).await;
    assert_eq!(c.channels(id).call().await.unwrap().totalClaimed, earned);

    // Settlement moves the claimed value to the receiver, once.
    let settle = IBatchSettlement::settleCall {
        receiver: addr(RECEIVER),
        token,
    }
    .abi_encode();
    send(&chain, RELAY, settle.clone()).await;
    send(&chain, RELAY, settle).await;
    assert_eq!(
        chain.usdc_balance(addr(RECEIVER)).await.unwrap(),
        receiver_before + U256::from(earned)
    );
    let r = c.receivers(addr(RECEIVER), token).call().await.unwrap();
    assert_eq!((r.totalClaimed, r.totalSettled), (earned, earned));

    // A partial refund signed by the receiver authorizer, relayed by anyone.
    let nonce = c.refundNonce(id).call().await.unwrap();
    assert_eq!(nonce, U256::ZERO);
    let refund_sig = sign_refund(&TestChain::signer(AUTHORIZER), id, nonce, 1_000, chain_id)
        .await
        .unwrap();
    let refund = IBatchSettlement::refundWithSignatureCall {
        config: config.to_abi(),
        amount: 1_000,
        nonce,
        receiverAuthorizerSignature: refund_sig,
    }
    .abi_encode();
    send(&chain, RELAY, refund.clone()).await;
    assert_eq!(c.refundNonce(id).call().await.unwrap(), U256::from(1));
    assert_eq!(
        c.channels(id).call().await.unwrap().balance,
        DEPOSIT - 1_000
    );
    let watched = [addr(PAYER), addr(RECEIVER)];
    let watch = Watch {
        token,
        watched: &watched,
        id,
    };
    // Replayed: its nonce is used.
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        refund,
        "InvalidRefundNonce",
        &watch,
    )
    .await;
    // Forged: signed by the payer, not the receiver authorizer.
    let forged_sig = sign_refund(&payer, id, U256::from(1), 5_000, chain_id)
        .await
        .unwrap();
    let forged = IBatchSettlement::refundWithSignatureCall {
        config: config.to_abi(),
        amount: 5_000,
        nonce: U256::from(1),
        receiverAuthorizerSignature: forged_sig,
    }
    .abi_encode();
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        forged,
        "InvalidSignature",
        &watch,
    )
    .await;
    // A direct refund by a stranger (the payer) is refused; by the receiver it returns the rest,
    // capped to what is unclaimed.
    let direct = IBatchSettlement::refundCall {
        config: config.to_abi(),
        amount: u128::MAX,
    }
    .abi_encode();
    refused(
        &chain,
        PAYER,
        BATCH_SETTLEMENT,
        direct.clone(),
        "NotAuthorizedToRefund",
        &watch,
    )
    .await;
    send(&chain, RECEIVER, direct).await;
    let state = c.channels(id).call().await.unwrap();
    assert_eq!((state.balance, state.totalClaimed), (earned, earned));
    assert_eq!(c.refundNonce(id).call().await.unwrap(), U256::from(2));
    // The payer got back everything it did not spend; the contract holds nothing unowed.
    assert_eq!(
        chain.usdc_balance(addr(PAYER)).await.unwrap(),
        payer_before - U256::from(earned)
    );
    assert_eq!(
        chain.usdc_balance(BATCH_SETTLEMENT).await.unwrap(),
        U256::ZERO
    );
}

#[tokio::test]
async fn claims_refused_by_reason_move_nothing() {
    let chain = TestChain::start().await.unwrap();
    let chain_id = chain.chain_id();
    let token = chain.usdc;
    let config = config(token, 11);
    let id = open_erc3009(&chain, &config, 10_000).await;
    let watched = [addr(PAYER), addr(RECEIVER)];
    let watch = Watch {
        token,
        watched: &watched,
        id,
    };
    let payer = TestChain::signer(PAYER);

    // Over the balance.
    let big = sign_voucher(&payer, id, 20_000, chain_id).await.unwrap();
    let call = claim_call(&chain, &[row(&config, &big, 15_000)], AUTHORIZER).await;
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call,
        "ClaimExceedsBalance",
        &watch,
    )
    .await;
    // Over the voucher's ceiling.
    let small = sign_voucher(&payer, id, 1_000, chain_id).await.unwrap();
    let call = claim_call(&chain, &[row(&config, &small, 1_001)], AUTHORIZER).await;
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call,
        "ClaimExceedsCeiling",
        &watch,
    )
    .await;
    // A voucher not signed by the payer authorizer.
    let stranger = TestChain::signer(5);
    let forged = sign_voucher(&stranger, id, 1_000, chain_id).await.unwrap();
    let call = claim_call(&chain, &[row(&config, &forged, 1_000)], AUTHORIZER).await;
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call,
        "InvalidSignature",
        &watch,
    )
    .await;
    // A voucher of another channel presented for this one.
    let other = sign_voucher(&payer, B256::repeat_byte(1), 1_000, chain_id)
        .await
        .unwrap();
    let call = claim_call(&chain, &[row(&config, &other, 1_000)], AUTHORIZER).await;
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call,
        "InvalidSignature",
        &watch,
    )
    .await;
    // A claim batch signed by someone other than the receiver authorizer.
    let call = claim_call(&chain, &[row(&config, &small, 1_000)], 5).await;
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call,
        "InvalidSignature",
        &watch,
    )
    .await;
    // An unsigned claim from someone who is neither receiver nor authorizer.
    let call = IBatchSettlement::claimCall {
        voucherClaims: vec![row(&config, &small, 1_000).to_abi()],
    }
    .abi_encode();
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call.clone(),
        "NotAuthorizedToClaim",
        &watch,
    )
    .await;
    // ... which the receiver itself may send.
    send(&chain, RECEIVER, call).await;
    assert_eq!(
        contract(&chain, RELAY)
            .channels(id)
            .call()
            .await
            .unwrap()
            .totalClaimed,
        1_000
    );

    // Deposits: a delay outside 15 min – 30 days, a deposit signed for another channel, and the
    // collector called directly (which would let anyone holding a deposit authorization pull
    // the payer's tokens elsewhere).
    let mut short = config.clone();
    short.withdraw_delay = 899;
    let start = now(&chain).await;
    let terms = Erc3009DepositTerms {
        channel_id: channel_id(&short, chain_id),
        from: addr(PAYER),
        amount: 1_000,
        valid_after: 0,
        valid_before: start + 3600,
        salt: B256::random(),
    };
    let auth = sign_erc3009_deposit(&payer, &terms, &usdc_domain(&chain))
        .await
        .unwrap();
    let call = IBatchSettlement::depositCall {
        config: short.to_abi(),
        amount: 1_000,
        collector: ERC3009_DEPOSIT_COLLECTOR,
        collectorData: auth.collector_data(),
    }
    .abi_encode();
    refused(
        &chain,
        RELAY,
        BATCH_SETTLEMENT,
        call,
        "WithdrawDelayOutOfRange",
        &watch,
    )
    .await;

    let terms = Erc3009DepositTerms {
        channel_id: B256::repeat_byte(2),
        ..terms
    };
    let auth = sign_erc3009_deposit(&payer, &terms, &usdc_domain(&chain))
        .await
        .unwrap();
    let call = IBatchSettlement::depositCall {
        config: config.to_abi(),
        amount: 1_000,
        collector: ERC3009_DEPOSIT_COLLECTOR,
        collectorData: auth.collector_data(),
    }
    .abi_encode();
    let provider = chain.provider_for(RELAY).unwrap();
    let before = snapshot(&chain, &watch).await;
    let tx = TransactionRequest::default()
        .with_to(BATCH_SETTLEMENT)
        .with_input(call)
        .with_gas_limit(1_000_000);
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        !receipt.status(),
        "a deposit signed for another channel went through"
    );
    assert_eq!(snapshot(&chain, &watch).await, before);

    sol_collector_direct(&chain, &config, id, &watched).await;
}

alloy::sol! {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes collectorData) external;
}

async fn sol_collector_direct(
    chain: &TestChain,
    config: &ChannelConfig,
    id: B256,
    watched: &[Address],
) {
    let start = now(chain).await;
    let terms = Erc3009DepositTerms {
        channel_id: id,
        from: addr(PAYER),
        amount: 1_000,
        valid_after: 0,
        valid_before: start + 3600,
        salt: B256::random(),
    };
    let auth = sign_erc3009_deposit(&TestChain::signer(PAYER), &terms, &usdc_domain(chain))
        .await
        .unwrap();
    let call = collectCall {
        payer: addr(PAYER),
        token: config.token,
        amount: U256::from(1_000),
        channelId: id,
        collectorData: auth.collector_data(),
    }
    .abi_encode();
    let provider = chain.provider_for(RELAY).unwrap();
    let tx = TransactionRequest::default()
        .with_to(ERC3009_DEPOSIT_COLLECTOR)
        .with_input(call);
    let err = provider
        .call(tx.clone())
        .await
        .expect_err("collector called directly");
    let revert = err
        .as_error_resp()
        .and_then(|e| e.as_revert_data())
        .unwrap();
    // `OnlyX402BatchSettlement()`.
    assert_eq!(
        &revert[..4],
        &alloy::primitives::keccak256("OnlyX402BatchSettlement()")[..4]
    );
    let watch = Watch {
        token: config.token,
        watched,
        id,
    };
    let before = snapshot(chain, &watch).await;
    let receipt = provider
        .send_transaction(tx.with_gas_limit(500_000))
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!receipt.status());
    assert_eq!(snapshot(chain, &watch).await, before);
}

#[tokio::test]
async fn permit2_deposit_and_timed_withdrawal() {
    let chain = TestChain::start().await.unwrap();
    let chain_id = chain.chain_id();
    let token = chain.usdt;
    chain
        .approve_permit2(PAYER, token, U256::MAX)
        .await
        .unwrap();
    let config = config(token, 21);
    let id = channel_id(&config, chain_id);
    let payer = TestChain::signer(PAYER);
    let payer_before = chain.usdt_balance(addr(PAYER)).await.unwrap();
    let start = now(&chain).await;

    let auth = sign_permit2_deposit(
        &payer,
        id,
        token,
        DEPOSIT,
        U256::from(77),
        start + 3600,
        chain_id,
    )
    .await
    .unwrap();
    assert_eq!(auth.spender, PERMIT2_DEPOSIT_COLLECTOR);
    let deposit = IBatchSettlement::depositCall {
        config: config.to_abi(),
        amount: DEPOSIT,
        collector: PERMIT2_DEPOSIT_COLLECTOR,
        collectorData: auth.collector_data(Bytes::new()),
    }
    .abi_encode();
    send(&chain, RELAY, deposit.clone()).await;
    let c = contract(&chain, RELAY);
    assert_eq!(c.channels(id).call().await.unwrap().balance, DEPOSIT);
    assert_eq!(
        chain.usdt_balance(BATCH_SETTLEMENT).await.unwrap(),
        U256::from(DEPOSIT)
    );
    // The same Permit2 signature again: its nonce is spent, nothing moves.
    let watched = [addr(PAYER), addr(RECEIVER)];
    let watch = Watch {
        token,
        watched: &watched,
        id,
    };
    let before = snapshot(&chain, &watch).await;
    let provider = chain.provider_for(RELAY).unwrap();
    let receipt = provider
        .send_transaction(
            TransactionRequest::default()
                .with_to(BATCH_SETTLEMENT)
                .with_input(deposit)
                .with_gas_limit(1_000_000),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!receipt.status(), "a Permit2 deposit went through twice");
    assert_eq!(snapshot(&chain, &watch).await, before);

    // The payer starts a timed withdrawal of more than is unclaimed: refused; of 60,000: fine.
    let over = IBatchSettlement::initiateWithdrawCall {
        config: config.to_abi(),
        amount: DEPOSIT + 1,
    }
    .abi_encode();
    refused(
        &chain,
        PAYER,
        BATCH_SETTLEMENT,
        over,
        "WithdrawAmountExceedsAvailable",
        &watch,
    )
    .await;
    let initiate = IBatchSettlement::initiateWithdrawCall {
        config: config.to_abi(),
        amount: 60_000,
    }
    .abi_encode();
    refused(
        &chain,
        RECEIVER,
        BATCH_SETTLEMENT,
        initiate.clone(),
        "InvalidChannel",
        &watch,
    )
    .await;
    send(&chain, PAYER, initiate.clone()).await;
    let pending = c.pendingWithdrawals(id).call().await.unwrap();
    assert_eq!(pending.amount, 60_000);
    assert!(pending.initiatedAt.to::<u64>() >= start);
    refused(
        &chain,
        PAYER,
        BATCH_SETTLEMENT,
        initiate,
        "WithdrawalAlreadyPending",
        &watch,
    )
    .await;
    let finalize = IBatchSettlement::finalizeWithdrawCall {
        config: config.to_abi(),
    }
    .abi_encode();
    refused(
        &chain,
        PAYER,
        BATCH_SETTLEMENT,
        finalize.clone(),
        "WithdrawDelayNotElapsed",
        &watch,
    )
    .await;

    // Within the window the receiver claims 50,000 of vouchers.
    let voucher = sign_voucher(&payer, id, 50_000, chain_id).await.unwrap();
    let claim = claim_call(&chain, &[row(&config, &voucher, 50_000)], AUTHORIZER).await;
    send(&chain, RELAY, claim).await;

    // After the delay the withdrawal completes, capped to the 50,000 still unclaimed.
    let initiated = pending.initiatedAt.to::<u64>();
    chain
        .rpc("evm_mine", json!([initiated + config.withdraw_delay]))
        .await
        .unwrap();
    refused(
        &chain,
        RECEIVER,
        BATCH_SETTLEMENT,
        finalize.clone(),
        "NotAuthorizedToFinalizeWithdraw",
        &watch,
    )
    .await;
    send(&chain, PAYER, finalize.clone()).await;
    let state = c.channels(id).call().await.unwrap();
    assert_eq!((state.balance, state.totalClaimed), (50_000, 50_000));
    assert_eq!(
        chain.usdt_balance(addr(PAYER)).await.unwrap(),
        payer_before - U256::from(DEPOSIT) + U256::from(50_000u64)
    );
    let pending = c.pendingWithdrawals(id).call().await.unwrap();
    assert_eq!((pending.amount, pending.initiatedAt.to::<u64>()), (0, 0));
    refused(
        &chain,
        PAYER,
        BATCH_SETTLEMENT,
        finalize,
        "WithdrawalNotPending",
        &watch,
    )
    .await;
    // The claimed 50,000 are the receiver's to settle.
    let settle = IBatchSettlement::settleCall {
        receiver: addr(RECEIVER),
        token,
    }
    .abi_encode();
    let receiver_before = chain.usdt_balance(addr(RECEIVER)).await.unwrap();
    send(&chain, RELAY, settle).await;
    assert_eq!(
        chain.usdt_balance(addr(RECEIVER)).await.unwrap(),
        receiver_before + U256::from(50_000u64)
    );
}

#[tokio::test]
async fn a_refund_shrinks_a_pending_withdrawal() {
    let chain = TestChain::start().await.unwrap();
    let config = config(chain.usdc, 31);
    let id = open_erc3009(&chain, &config, 10_000).await;
    let c = contract(&chain, RELAY);
    send(
        &chain,
        PAYER,
        IBatchSettlement::initiateWithdrawCall {
            config: config.to_abi(),
            amount: 8_000,
        }
        .abi_encode(),
    )
    .await;
    let refund = |amount| {
        IBatchSettlement::refundCall {
            config: config.to_abi(),
            amount,
        }
        .abi_encode()
    };
    send(&chain, AUTHORIZER, refund(3_000)).await;
    assert_eq!(c.pendingWithdrawals(id).call().await.unwrap().amount, 5_000);
    send(&chain, AUTHORIZER, refund(6_000)).await;
    let pending = c.pendingWithdrawals(id).call().await.unwrap();
    assert_eq!((pending.amount, pending.initiatedAt.to::<u64>()), (0, 0));
    let state = c.channels(id).call().await.unwrap();
    assert_eq!(state.balance, 1_000);
    // A refund when nothing is left still uses a nonce (so no pre-signed refund survives it).
    send(&chain, AUTHORIZER, refund(5_000)).await;
    send(&chain, AUTHORIZER, refund(5_000)).await;
    assert_eq!(c.channels(id).call().await.unwrap().balance, 0);
    assert_eq!(c.refundNonce(id).call().await.unwrap(), U256::from(4));
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// The official SDK's client signs a deposit and vouchers; our types read them, our local
/// verifier accepts the vouchers, and our contracts take the deposit and the claim.
#[tokio::test]
async fn the_official_client_payloads_work_against_our_contracts() {
    assert!(
        interop_dir().join("node_modules/@x402/evm").is_dir(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
    let chain = TestChain::start().await.unwrap();
    let chain_id = chain.chain_id();
    let requirements = json!({
        "scheme": "batch-settlement",
        "network": chain.caip2(),
        "amount": "1000",
        "asset": chain.usdc.to_string(),
        "payTo": addr(RECEIVER).to_string(),
        "maxTimeoutSeconds": 3600,
        "extra": {
            "receiverAuthorizer": addr(AUTHORIZER).to_string(),
            "withdrawDelay": 900,
            "name": "USD Coin",
            "version": "2"
        }
    });
    let salt = B256::repeat_byte(0x5a);
    let key = format!(
        "0x{}",
        alloy::hex::encode(TestChain::signer(PAYER).to_bytes())
    );
    let output = Command::new("node")
        .current_dir(interop_dir())
        .arg("batch-sign.mjs")
        .env("X402_REQUIREMENTS", requirements.to_string())
        .env("X402_PAYER_KEY", key)
        .env("X402_SALT", salt.to_string())
        .env("X402_DEPOSIT", "50000")
        .env("X402_VOUCHERS", "[1000, 2000, 2700]")
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "batch-sign.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let config: ChannelConfig = serde_json::from_value(out["config"].clone()).unwrap();
    let id = channel_id(&config, chain_id);
    assert_eq!(
        out["channelId"].as_str().unwrap(),
        id.to_string(),
        "channel id"
    );
    let payload: BatchPayload = serde_json::from_value(out["deposit"].clone()).unwrap();
    let BatchPayload::Deposit(deposit) = payload else {
        panic!("not a deposit payload: {payload:?}");
    };
    assert_eq!(deposit.channel_config, config);
    assert_eq!(deposit.deposit.amount, 50_000);
    let DepositAuthorization::Erc3009(auth) = &deposit.deposit.authorization else {
        panic!("not an ERC-3009 deposit");
    };
    let verifier = VoucherVerifier::new(chain_id);
    verifier.verify(&config, &deposit.voucher).unwrap();
    // Written back, our JSON is read by our types as the same payload.
    let again: BatchPayload = serde_json::from_value(
        serde_json::to_value(BatchPayload::Deposit(deposit.clone())).unwrap(),
    )
    .unwrap();
    assert_eq!(again, BatchPayload::Deposit(deposit.clone()));

    let call = IBatchSettlement::depositCall {
        config: config.to_abi(),
        amount: deposit.deposit.amount,
        collector: ERC3009_DEPOSIT_COLLECTOR,
        collectorData: auth.collector_data(),
    };
    send(&chain, RELAY, call.abi_encode()).await;
    let c = contract(&chain, RELAY);
    assert_eq!(c.channels(id).call().await.unwrap().balance, 50_000);

    let vouchers: Vec<SignedVoucher> = serde_json::from_value(out["vouchers"].clone()).unwrap();
    assert_eq!(vouchers.len(), 2);
    for v in &vouchers {
        verifier.verify(&config, v).unwrap();
    }
    // A tampered ceiling fails the local check as it would fail the contract's.
    let mut tampered = vouchers[1].clone();
    tampered.max_claimable_amount += 1;
    assert!(matches!(
        verifier.verify(&config, &tampered),
        Err(VoucherError::Signature { .. })
    ));
    let last = &vouchers[1];
    let claim = claim_call(&chain, &[row(&config, last, 2_700)], AUTHORIZER).await;
    send(&chain, RELAY, claim).await;
    assert_eq!(c.channels(id).call().await.unwrap().totalClaimed, 2_700);
}

/// The local voucher check refuses what the contract refuses.
#[tokio::test]
async fn local_voucher_check_refusals() {
    let payer = PrivateKeySigner::random();
    let config = ChannelConfig {
        payer: payer.address(),
        payer_authorizer: payer.address(),
        receiver: addr(RECEIVER),
        receiver_authorizer: addr(AUTHORIZER),
        token: Address::repeat_byte(3),
        withdraw_delay: 900,
        salt: B256::ZERO,
    };
    let verifier = VoucherVerifier::new(8453);
    let id = channel_id(&config, 8453);
    let good = sign_voucher(&payer, id, 5_000, 8453).await.unwrap();
    verifier.verify(&config, &good).unwrap();

    // Another chain's voucher.
    let other_chain = sign_voucher(&payer, id, 5_000, 1).await.unwrap();
    assert!(matches!(
        verifier.verify(&config, &other_chain),
        Err(VoucherError::Signature { .. })
    ));
    // A config that is not the voucher's channel.
    let mut wrong = config.clone();
    wrong.salt = B256::with_last_byte(1);
    let err = verifier.verify(&wrong, &good).unwrap_err();
    assert_eq!(
        err.reason(),
        "invalid_batch_settlement_evm_channel_id_mismatch"
    );
    // The malleable twin (high s) and v in {0, 1}: the contract refuses both.
    let sig = alloy::primitives::Signature::from_raw(&good.signature).unwrap();
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let twin = alloy::primitives::Signature::new(sig.r(), n - sig.s(), !sig.v());
    let mut high_s = good.clone();
    high_s.signature = Bytes::from(twin.as_bytes().to_vec());
    assert!(verifier.verify(&config, &high_s).is_err());
    let mut v01 = good.clone();
    let mut raw = good.signature.to_vec();
    raw[64] -= 27;
    v01.signature = Bytes::from(raw);
    assert!(verifier.verify(&config, &v01).is_err());
    // EIP-2098 compact form of the same signature: accepted, as by the contract.
    let mut compact = good.clone();
    compact.signature = Bytes::from(sig.as_erc2098().to_vec());
    verifier.verify(&config, &compact).unwrap();
    // A zero payer authorizer: the payer may be a contract wallet, which only the chain can tell.
    let mut delegated = config.clone();
    delegated.payer_authorizer = Address::ZERO;
    let voucher = sign_voucher(&payer, channel_id(&delegated, 8453), 5_000, 8453)
        .await
        .unwrap();
    assert_eq!(
        verifier.verify(&delegated, &voucher),
        Err(VoucherError::NeedsChain)
    );
    // Signed by someone else.
    let other = PrivateKeySigner::random();
    let forged = sign_voucher(&other, id, 5_000, 8453).await.unwrap();
    assert!(matches!(
        verifier.verify(&config, &forged),
        Err(VoucherError::Signature { .. })
    ));
}
