//! Coalesced verification reads ([`ProbeConfig`]) against a real node: concurrent verifications
//! share one `eth_call`, yet every payment is judged as it would be alone — by its own fault,
//! never by another payment of the batch — and judged the same as one-by-one verification.
//! (Contract-wallet payers take the EIP-1271 way after the probe sees their code: the wallet
//! tests of `exact_evm_anvil.rs` run with coalescing on, the default.)

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use tollgate_evm::reason::EvmReason;
use tollgate_evm::{
    AuthorizationWindow, ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig, ProbeConfig,
};
use tollgate_proto::{ErrorReason, PaymentPayload, PaymentRequirements};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;

fn requirements(chain: &TestChain, pay_to: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": chain.caip2(),
        "amount": PRICE.to_string(),
        "asset": chain.usdc.to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap()
}

/// A probe that waits long enough for every concurrent verification of a test to join one call.
fn gathering(max_batch: usize) -> FacilitatorConfig {
    FacilitatorConfig {
        probe: Some(ProbeConfig {
            max_batch,
            max_in_flight: 1,
            window: Duration::from_millis(500),
        }),
        ..FacilitatorConfig::default()
    }
}

async fn facilitator(chain: &TestChain, config: FacilitatorConfig) -> ExactEvmFacilitator {
    ExactEvmFacilitator::connect(&chain.endpoint(), TestChain::signer(0), config)
        .await
        .unwrap()
}

/// A fresh payer holding `balance` atomic units.
async fn payer_with(chain: &TestChain, balance: u64) -> ExactEvmClient<PrivateKeySigner> {
    let key = PrivateKeySigner::random();
    if balance > 0 {
        chain
            .mint(key.address(), U256::from(balance))
            .await
            .unwrap();
    }
    ExactEvmClient::new(key)
}

fn reason_of(result: &Result<tollgate_evm::VerifiedPayment, tollgate_evm::VerifyError>) -> String {
    match result {
        Ok(_) => "valid".into(),
        Err(e) => e.reason().to_string(),
    }
}

#[tokio::test]
async fn two_payments_of_one_payer_are_judged_alone_in_one_call_and_only_one_settles() {
    let chain = TestChain::start().await.unwrap();
    let payee = TestChain::address(9);
    let req = requirements(&chain, payee);
    let facilitator = facilitator(&chain, gathering(2)).await;
    // Enough for one payment, not for two.
    let payer = payer_with(&chain, PRICE + PRICE / 2).await;
    let first = payer.sign(&req, None).await.unwrap();
    let second = payer.sign(&req, None).await.unwrap();

    let (a, b) = tokio::join!(
        facilitator.verify(&first, &req),
        facilitator.verify(&second, &req)
    );
    // Each fits the balance alone: both valid, although the batch ran both transfers.
    assert!(a.is_ok(), "{:?}", a.err());
    assert!(b.is_ok(), "{:?}", b.err());
    let stats = facilitator.probe_stats().expect("the probe ran");
    assert_eq!(
        (stats.calls, stats.payments, stats.largest),
        (1, 2, 2),
        "both verifications must have shared one call: {stats:?}"
    );

    let before = chain.usdc_balance(payee).await.unwrap();
    facilitator.settle(&first, &req).await.unwrap();
    let refused = facilitator
        .settle(&second, &req)
        .await
        .expect_err("the payer cannot afford the second payment");
    assert_eq!(
        refused.reason(),
        ErrorReason::from(EvmReason::InvalidExactEvmInsufficientBalance),
        "{refused}"
    );
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(PRICE),
        "exactly one payment moved"
    );
}

/// Payments that fail in different ways, and valid ones, verified together: each must get the
/// reason it gets when verified alone, with coalescing off.
#[tokio::test]
async fn a_batch_judges_each_payment_by_its_own_fault_as_one_by_one_does() {
    let chain = TestChain::start().await.unwrap();
    let payee = TestChain::address(9);
    let req = requirements(&chain, payee);

    let rich = payer_with(&chain, 100 * PRICE).await;
    let broke = payer_with(&chain, 0).await;
    let valid = rich.sign(&req, None).await.unwrap();
    let valid_too = rich.sign(&req, None).await.unwrap();
    let unaffordable = broke.sign(&req, None).await.unwrap();
    // Signed by one key for another address: the dry run reverts on the signature.
    let mut forged = rich.sign(&req, None).await.unwrap();
    forged.payload["authorization"]["from"] = json!(broke.address().to_string());
    // A nonce already used on chain.
    let spent = rich.sign(&req, None).await.unwrap();
    let settler = facilitator(&chain, FacilitatorConfig::default()).await;
    settler.settle(&spent, &req).await.unwrap();
    // Expired.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = rich
        .sign_with_window(
            &req,
            None,
            AuthorizationWindow {
                valid_after: 0,
                valid_before: now - 1,
                nonce: B256::random(),
            },
        )
        .await
        .unwrap();
    let payments: Vec<PaymentPayload> =
        vec![valid, unaffordable, forged, spent, expired, valid_too];

    let one_by_one = facilitator(
        &chain,
        FacilitatorConfig {
            probe: None,
            ..FacilitatorConfig::default()
        },
    )
    .await;
    let mut alone = Vec::new();
    for p in &payments {
        alone.push(reason_of(&one_by_one.verify(p, &req).await));
    }
    assert_eq!(
        alone,
        [
            "valid",
            "invalid_exact_evm_insufficient_balance",
            "invalid_exact_evm_signature",
            "invalid_exact_evm_nonce_already_used",
            "invalid_exact_evm_payload_authorization_valid_before",
            "valid"
        ],
        "the reasons one-by-one verification gives"
    );
    assert_eq!(one_by_one.probe_stats(), None);

    let coalesced = facilitator(&chain, gathering(payments.len())).await;
    let together =
        futures::future::join_all(payments.iter().map(|p| coalesced.verify(p, &req))).await;
    let together: Vec<String> = together.iter().map(reason_of).collect();
    assert_eq!(together, alone);
    let stats = coalesced.probe_stats().unwrap();
    // Every payment with an EOA-shaped signature went through the probe; one call for all.
    assert_eq!(stats.calls, 1, "{stats:?}");
    assert_eq!(stats.payments as usize, payments.len(), "{stats:?}");
}
