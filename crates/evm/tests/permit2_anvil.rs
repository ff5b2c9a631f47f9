//! `exact` with the Permit2 transfer method against a real chain (anvil, or the devnet with
//! `TOLLGATE_TEST_CHAIN=devnet`): the USDT-like token (no EIP-3009) paid through
//! `x402ExactPermit2Proxy`; every verification failure by its reason code with nothing moved;
//! both gas-sponsoring extensions; crash recovery by the Permit2 nonce.

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use tollgate_core::{SchemeError, SchemeFacilitator};
use tollgate_evm::permit2::engine::Permit2Config;
use tollgate_evm::permit2::extensions::{
    attach, sign_eip2612_permit, sign_erc20_approval, EIP2612_GAS_SPONSORING,
    ERC20_APPROVAL_GAS_SPONSORING,
};
use tollgate_evm::permit2::{
    permit2_allowance, sign_permit2, ExactPermit2Payload, ExactWitness, Permit2Authorization,
    Permit2Payload, Permit2Window, TokenPermissions, EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY,
};
use tollgate_evm::reason::EvmReason;
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_proto::{ErrorReason, PaymentPayload, PaymentRequirements};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn requirements(
    network: &str,
    asset: Address,
    pay_to: Address,
    amount: u64,
) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": network,
        "amount": amount.to_string(),
        "asset": asset.to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 120,
        "extra": { "assetTransferMethod": "permit2" }
    }))
    .unwrap()
}

struct Rig {
    chain: TestChain,
    facilitator: ExactEvmFacilitator,
    payee: Address,
}

async fn rig() -> Rig {
    let chain = TestChain::start().await.expect("test chain");
    let facilitator = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .expect("facilitator")
    .with_permit2(Permit2Config {
        sponsor_erc20_approval: true,
        ..Permit2Config::default()
    });
    Rig {
        chain,
        facilitator,
        payee: TestChain::address(9),
    }
}

impl Rig {
    fn req(&self, amount: u64) -> PaymentRequirements {
        requirements(&self.chain.caip2(), self.chain.usdt, self.payee, amount)
    }

    async fn verify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<tollgate_core::Verified, SchemeError> {
        SchemeFacilitator::verify(&self.facilitator, payment, requirements).await
    }

    /// Verifies, submits and waits; returns the transaction.
    async fn settle(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<String, SchemeError> {
        let verified = self.verify(payment, requirements).await?;
        let tx = self.facilitator.submit(&verified).await?;
        let settled =
            SchemeFacilitator::await_settlement(&self.facilitator, payment, requirements, &tx)
                .await?;
        assert_eq!(settled.transaction, tx);
        Ok(tx)
    }

    async fn balances(&self, token: Address, payer: Address) -> (U256, U256) {
        (
            self.chain.token_balance(token, payer).await.unwrap(),
            self.chain.token_balance(token, self.payee).await.unwrap(),
        )
    }
}

fn payload(payment: &PaymentPayload) -> ExactPermit2Payload {
    ExactPermit2Payload::from_payment(payment).unwrap()
}

/// A payment signed over `auth` as given (spender and all), for the checks a well-behaved
/// client never trips.
async fn hand_signed(
    key: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    auth: Permit2Authorization<ExactWitness>,
) -> PaymentPayload {
    let chain_id = requirements.network.eip155_chain_id().unwrap();
    let signature = sign_permit2(key, &auth, chain_id).await.unwrap();
    let payload = Permit2Payload {
        signature: Bytes::from(signature.to_vec()),
        permit2_authorization: auth,
    };
    PaymentPayload {
        x402_version: tollgate_proto::V2,
        resource: None,
        accepted: requirements.clone(),
        payload: payload.to_json_object(),
        extensions: None,
    }
}

fn assert_reason(
    result: Result<tollgate_core::Verified, SchemeError>,
    reason: impl Into<ErrorReason>,
) -> SchemeError {
    let reason = reason.into();
    let err = result.expect_err("the payment must be refused");
    assert_eq!(
        err.reason, reason,
        "wrong reason; error was: {}",
        err.message
    );
    assert!(err.is_payment_fault(), "{}", err.message);
    err
}

#[tokio::test]
async fn permit2_exact_settles_the_usdt_like_token_once() {
    let rig = rig().await;
    let key = TestChain::signer(1);
    let payer = key.address();
    rig.chain
        .approve_permit2(1, rig.chain.usdt, U256::MAX)
        .await
        .unwrap();
    let req = rig.req(PRICE);
    let client = ExactEvmClient::new(key);
    let payment = client.sign(&req, None).await.unwrap();
    // The transfer method decided the payload's type: a Permit2 payload for the exact proxy.
    let p = payload(&payment);
    assert_eq!(p.permit2_authorization.spender, EXACT_PERMIT2_PROXY);
    // It survives the trip through JSON, as through a header.
    let payment: PaymentPayload =
        serde_json::from_str(&serde_json::to_string(&payment).unwrap()).unwrap();

    let identity = rig.facilitator.identify(&payment, &req).unwrap();
    assert_eq!(identity.payer, payer.to_string());
    assert_eq!(
        identity.id,
        format!("permit2:{}", p.permit2_authorization.nonce)
    );

    let (payer_before, payee_before) = rig.balances(rig.chain.usdt, payer).await;
    let tx = rig.settle(&payment, &req).await.unwrap();
    let (payer_after, payee_after) = rig.balances(rig.chain.usdt, payer).await;
    assert_eq!(payer_before - payer_after, U256::from(PRICE));
    assert_eq!(payee_after - payee_before, U256::from(PRICE));
    assert!(rig
        .chain
        .permit2_nonce_used(payer, p.permit2_authorization.nonce)
        .await
        .unwrap());

    // Crash recovery: the settlement is found again from the Permit2 nonce and the transfer.
    let found = rig
        .facilitator
        .find_settlement(&payment, &req)
        .await
        .unwrap()
        .expect("the settlement is on chain");
    assert_eq!(found.transaction, tx);

    // Presented again: the nonce is spent; nothing moves.
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2InvalidNonce,
    );
    // The same nonce in a fresh signature is the same spent nonce.
    let reused = client
        .sign_permit2(
            &req,
            None,
            Permit2Window {
                valid_after: now() - 60,
                deadline: now() + 120,
                nonce: p.permit2_authorization.nonce,
            },
        )
        .await
        .unwrap();
    assert_reason(
        rig.verify(&reused, &req).await,
        EvmReason::Permit2InvalidNonce,
    );
    assert_eq!(
        rig.balances(rig.chain.usdt, payer).await,
        (payer_after, payee_after)
    );
}

#[tokio::test]
async fn every_permit2_check_fails_with_its_reason_and_nothing_moves() {
    let rig = rig().await;
    let key = TestChain::signer(1);
    let payer = key.address();
    rig.chain
        .approve_permit2(1, rig.chain.usdt, U256::MAX)
        .await
        .unwrap();
    let client = ExactEvmClient::new(key.clone());
    let req = rig.req(PRICE);
    let window = || Permit2Window {
        valid_after: now() - 60,
        deadline: now() + 120,
        nonce: tollgate_evm::permit2::random_nonce(),
    };
    let before = rig.balances(rig.chain.usdt, payer).await;

    // 1. Signature: signed by another key, claiming the payer.
    let mut forged = client.sign(&req, None).await.unwrap();
    let other = ExactEvmClient::new(PrivateKeySigner::random());
    let other_payment = other.sign(&req, None).await.unwrap();
    let mut p = payload(&other_payment);
    p.permit2_authorization.from = payer;
    forged.payload = p.to_json_object();
    assert_reason(
        rig.verify(&forged, &req).await,
        EvmReason::InvalidPermit2Signature,
    );

    // 2. Allowance: a payer who never approved Permit2 → 412 PERMIT2_ALLOWANCE_REQUIRED.
    let unapproved = ExactEvmClient::new(TestChain::signer(2));
    let payment = unapproved.sign(&req, None).await.unwrap();
    let err = assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2AllowanceRequired,
    );
    assert!(
        err.message.starts_with("PERMIT2_ALLOWANCE_REQUIRED"),
        "{}",
        err.message
    );

    // 3. Balance: more than the payer holds.
    let big = rig.req(tollgate_testkit::chain::INITIAL_USDT + 1);
    let payment = client.sign(&big, None).await.unwrap();
    assert_reason(
        rig.verify(&payment, &big).await,
        EvmReason::Permit2InsufficientBalance,
    );

    // 4. Amount: signed for PRICE, required twice that.
    let payment = client.sign(&req, None).await.unwrap();
    let double = rig.req(2 * PRICE);
    assert_reason(
        rig.verify(&payment, &double).await,
        EvmReason::Permit2AmountMismatch,
    );

    // 5. Deadline passed; validAfter in the future.
    let mut w = window();
    w.deadline = now() - 10;
    let payment = client.sign_permit2(&req, None, w).await.unwrap();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2DeadlineExpired,
    );
    let mut w = window();
    w.valid_after = now() + 3600;
    let payment = client.sign_permit2(&req, None, w).await.unwrap();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2NotYetValid,
    );

    // 6. Token: the permit names USDC, the requirements USDT.
    let usdc_req = requirements(&rig.chain.caip2(), rig.chain.usdc, rig.payee, PRICE);
    let mut payment = client.sign(&usdc_req, None).await.unwrap();
    payment.accepted = req.clone();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2TokenMismatch,
    );
    // Network: made for another chain.
    let mut payment = client.sign(&req, None).await.unwrap();
    payment.accepted.network = "eip155:1".parse().unwrap();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::InvalidExactEvmNetworkMismatch,
    );

    // Wrong spender: the upto proxy (or the facilitator itself) instead of the exact proxy.
    for spender in [UPTO_PERMIT2_PROXY, TestChain::address(0)] {
        let auth = Permit2Authorization {
            permitted: TokenPermissions {
                token: rig.chain.usdt,
                amount: U256::from(PRICE),
            },
            from: payer,
            spender,
            nonce: tollgate_evm::permit2::random_nonce(),
            deadline: U256::from(now() + 120),
            witness: ExactWitness {
                to: rig.payee,
                valid_after: U256::ZERO,
            },
        };
        let payment = hand_signed(&key, &req, auth).await;
        assert_reason(
            rig.verify(&payment, &req).await,
            EvmReason::InvalidPermit2Spender,
        );
    }
    // Wrong payee in the witness.
    let mut other_payee = req.clone();
    other_payee.pay_to = TestChain::address(8).to_string();
    let mut payment = client.sign(&other_payee, None).await.unwrap();
    payment.accepted = req.clone();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::InvalidPermit2RecipientMismatch,
    );
    // A Permit2 payload offered where the seller asked for EIP-3009 is not reinterpreted.
    let mut eip3009_req = req.clone();
    eip3009_req.extra =
        Some(serde_json::from_value(json!({"name": "Tether USD", "version": "1"})).unwrap());
    let payment = client.sign(&req, None).await.unwrap();
    assert_reason(
        rig.verify(&payment, &eip3009_req).await,
        ErrorReason::InvalidPayload,
    );

    assert_eq!(rig.balances(rig.chain.usdt, payer).await, before);
}

#[tokio::test]
async fn eip2612_sponsoring_approves_permit2_inside_the_settlement() {
    let rig = rig().await;
    let (name, version) = tollgate_testkit::chain::PERMIT_TOKEN_EIP712;
    let token = rig.chain.permit_token;
    let key = TestChain::signer(3);
    let payer = key.address();
    let mut req = requirements(&rig.chain.caip2(), token, rig.payee, PRICE);
    let extra = req.extra.as_mut().unwrap();
    extra.insert("name".into(), name.into());
    extra.insert("version".into(), version.into());
    assert_eq!(
        permit2_allowance(&rig.chain.endpoint(), token, payer)
            .await
            .unwrap(),
        U256::ZERO
    );
    let client = ExactEvmClient::new(key.clone());
    let mut payment = client.sign(&req, None).await.unwrap();
    // Without the extension: the approval is missing.
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2AllowanceRequired,
    );
    let deadline = payload(&payment).permit2_authorization.deadline;
    let permit = sign_eip2612_permit(
        &key,
        &rig.chain.endpoint(),
        token,
        name,
        version,
        U256::from(PRICE),
        deadline,
    )
    .await
    .unwrap();
    // A permit naming another owner is refused by its reason.
    let mut wrong = payment.clone();
    let mut foreign = permit.clone();
    foreign.from = TestChain::address(4);
    attach(&mut wrong, EIP2612_GAS_SPONSORING, &foreign);
    assert_reason(
        rig.verify(&wrong, &req).await,
        EvmReason::Eip2612FromMismatch,
    );

    attach(&mut payment, EIP2612_GAS_SPONSORING, &permit);
    let before = rig.balances(token, payer).await;
    rig.settle(&payment, &req).await.unwrap();
    let after = rig.balances(token, payer).await;
    assert_eq!(before.0 - after.0, U256::from(PRICE));
    assert_eq!(after.1 - before.1, U256::from(PRICE));
}

#[tokio::test]
async fn erc20_approval_sponsoring_funds_relays_and_settles() {
    let rig = rig().await;
    // A payer with tokens and no ETH at all: the facilitator funds its approval's gas.
    let key = PrivateKeySigner::random();
    let payer = key.address();
    rig.chain
        .mint_token(rig.chain.usdt, payer, U256::from(PRICE * 3))
        .await
        .unwrap();
    let req = rig.req(PRICE);
    let client = ExactEvmClient::new(key.clone());
    let mut payment = client.sign(&req, None).await.unwrap();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2AllowanceRequired,
    );
    let approval = sign_erc20_approval(
        key.clone(),
        &rig.chain.endpoint(),
        rig.chain.chain_id(),
        rig.chain.usdt,
        U256::MAX,
    )
    .await
    .unwrap();
    // An approval signed by someone else is refused.
    let mut wrong = payment.clone();
    let stranger = sign_erc20_approval(
        TestChain::signer(5),
        &rig.chain.endpoint(),
        rig.chain.chain_id(),
        rig.chain.usdt,
        U256::MAX,
    )
    .await
    .unwrap();
    let mut forged = stranger.clone();
    forged.from = payer;
    attach(&mut wrong, ERC20_APPROVAL_GAS_SPONSORING, &forged);
    assert_reason(
        rig.verify(&wrong, &req).await,
        EvmReason::Erc20ApprovalTxSignerMismatch,
    );

    attach(&mut payment, ERC20_APPROVAL_GAS_SPONSORING, &approval);
    let before = rig.balances(rig.chain.usdt, payer).await;
    rig.settle(&payment, &req).await.unwrap();
    let after = rig.balances(rig.chain.usdt, payer).await;
    assert_eq!(before.0 - after.0, U256::from(PRICE));
    assert_eq!(after.1 - before.1, U256::from(PRICE));
    assert_eq!(
        permit2_allowance(&rig.chain.endpoint(), rig.chain.usdt, payer)
            .await
            .unwrap(),
        U256::MAX,
        "the relayed approval is in place (an unlimited allowance is not spent down)"
    );
}

#[tokio::test]
async fn the_library_approval_is_explicit_and_enables_payment() {
    let rig = rig().await;
    let key = TestChain::signer(6);
    let payer = key.address();
    let req = rig.req(PRICE);
    let client = ExactEvmClient::new(key.clone());
    let payment = client.sign(&req, None).await.unwrap();
    assert_reason(
        rig.verify(&payment, &req).await,
        EvmReason::Permit2AllowanceRequired,
    );
    tollgate_evm::permit2::approve_permit2(&rig.chain.endpoint(), key, rig.chain.usdt, U256::MAX)
        .await
        .unwrap();
    assert_eq!(
        permit2_allowance(&rig.chain.endpoint(), rig.chain.usdt, payer)
            .await
            .unwrap(),
        U256::MAX
    );
    rig.verify(&payment, &req).await.unwrap();
}
