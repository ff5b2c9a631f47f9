//! The `exact` EVM scheme against a real anvil node: sign → verify → settle with on-chain
//! balance checks, and every verification check failing with its x402 reason code.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::Signer;
use serde_json::{json, Value};
use tollgate_evm::client::authorization_digest;
use tollgate_evm::reason::EvmReason;
use tollgate_evm::signature::wrap_eip6492;
use tollgate_evm::{
    Authorization, AuthorizationWindow, ExactEvmClient, ExactEvmFacilitator, ExactEvmPayload,
    FacilitatorConfig, SettleError, TokenDomain, VerifyError,
};
use tollgate_proto::{ErrorReason, PaymentPayload, PaymentRequirements};
use tollgate_testkit::TestChain;

const PRICE: u64 = 10_000; // 0.01 USDC

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn requirements_for(
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
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap()
}

struct Rig {
    chain: TestChain,
    facilitator: ExactEvmFacilitator,
    payer: ExactEvmClient<PrivateKeySigner>,
    payee: Address,
    requirements: PaymentRequirements,
}

async fn rig_with(config: FacilitatorConfig) -> Rig {
    let chain = TestChain::start().await.expect("test chain");
    let facilitator = ExactEvmFacilitator::connect(&chain.endpoint(), TestChain::signer(0), config)
        .await
        .expect("facilitator");
    let payee = TestChain::address(9);
    let requirements = requirements_for(&chain.caip2(), chain.usdc, payee, PRICE);
    Rig {
        payer: ExactEvmClient::new(TestChain::signer(1)),
        chain,
        facilitator,
        payee,
        requirements,
    }
}

async fn rig() -> Rig {
    rig_with(FacilitatorConfig::default()).await
}

fn window(valid_after: u64, valid_before: u64) -> AuthorizationWindow {
    AuthorizationWindow {
        valid_after,
        valid_before,
        nonce: B256::random(),
    }
}

fn evm_payload(payment: &PaymentPayload) -> ExactEvmPayload {
    ExactEvmPayload::from_payment(payment).unwrap()
}

async fn expect_invalid(
    rig: &Rig,
    payment: &PaymentPayload,
    reason: impl Into<ErrorReason>,
) -> VerifyError {
    let reason = reason.into();
    let err = rig
        .facilitator
        .verify(payment, &rig.requirements)
        .await
        .expect_err("payment must be rejected");
    assert_eq!(err.reason(), reason, "wrong reason; error was: {err}");
    assert!(err.is_payment_fault());
    // Settling the same payment must fail identically and move nothing.
    let before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    let settle = rig
        .facilitator
        .settle(payment, &rig.requirements)
        .await
        .expect_err("settle must fail");
    assert_eq!(settle.reason(), reason);
    assert_eq!(rig.chain.usdc_balance(rig.payee).await.unwrap(), before);
    err
}

#[tokio::test]
async fn sign_verify_settle_moves_exact_amount() {
    let rig = rig().await;
    let payer = rig.payer.address();
    let payer_before = rig.chain.usdc_balance(payer).await.unwrap();
    let payee_before = rig.chain.usdc_balance(rig.payee).await.unwrap();

    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    // The payment survives the trip through JSON, as it does through a header.
    let payment: PaymentPayload =
        serde_json::from_str(&serde_json::to_string(&payment).unwrap()).unwrap();

    let verified = rig
        .facilitator
        .verify(&payment, &rig.requirements)
        .await
        .unwrap();
    assert_eq!(verified.payer, payer);
    assert!(matches!(
        verified.signature,
        tollgate_evm::PayerSignature::Eoa(_)
    ));

    let settlement = rig
        .facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap();
    assert_eq!(settlement.payer, payer);
    assert_eq!(settlement.amount, U256::from(PRICE));
    assert_eq!(settlement.network.to_string(), rig.chain.caip2());
    assert_ne!(settlement.tx_hash, B256::ZERO);

    assert_eq!(
        rig.chain.usdc_balance(payer).await.unwrap(),
        payer_before - U256::from(PRICE)
    );
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        payee_before + U256::from(PRICE)
    );
    let nonce = evm_payload(&payment).authorization.nonce;
    assert!(rig.chain.authorization_used(payer, nonce).await.unwrap());

    // Wire-shaped responses carry the reason codes the spec names.
    let response = rig
        .facilitator
        .settle_response(&payment, &rig.requirements)
        .await;
    assert!(!response.success);
    assert_eq!(
        response.error_reason,
        Some(EvmReason::InvalidExactEvmNonceAlreadyUsed.into())
    );
    assert_eq!(response.transaction, "");
}

#[tokio::test]
async fn second_settle_of_same_payload_fails_and_moves_no_money() {
    let rig = rig().await;
    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    rig.facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap();
    let payer_after_first = rig.chain.usdc_balance(rig.payer.address()).await.unwrap();
    let payee_after_first = rig.chain.usdc_balance(rig.payee).await.unwrap();

    let err = rig
        .facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), EvmReason::InvalidExactEvmNonceAlreadyUsed);
    assert!(err.tx_hash().is_none(), "nothing may be sent for a replay");
    assert_eq!(
        rig.chain.usdc_balance(rig.payer.address()).await.unwrap(),
        payer_after_first
    );
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        payee_after_first
    );
    let verify = rig
        .facilitator
        .verify_response(&payment, &rig.requirements)
        .await;
    assert!(!verify.is_valid);
    assert_eq!(
        verify.invalid_reason,
        Some(EvmReason::InvalidExactEvmNonceAlreadyUsed.into())
    );
}

#[tokio::test]
async fn wrong_recipient_is_rejected() {
    let rig = rig().await;
    // The payer signs a transfer to someone else and presents it as payment to the seller.
    let elsewhere = requirements_for(
        &rig.chain.caip2(),
        rig.chain.usdc,
        TestChain::address(8),
        PRICE,
    );
    let mut payment = rig.payer.sign(&elsewhere, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmRecipientMismatch).await;
}

#[tokio::test]
async fn underpayment_is_rejected() {
    let rig = rig().await;
    let cheaper = requirements_for(&rig.chain.caip2(), rig.chain.usdc, rig.payee, PRICE - 1);
    let mut payment = rig.payer.sign(&cheaper, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmPayloadAuthorizationValueMismatch,
    )
    .await;
    // Overpaying is not `exact` either.
    let dearer = requirements_for(&rig.chain.caip2(), rig.chain.usdc, rig.payee, PRICE + 1);
    let mut payment = rig.payer.sign(&dearer, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmPayloadAuthorizationValueMismatch,
    )
    .await;
}

#[tokio::test]
async fn amount_tampered_after_signing_is_rejected() {
    let rig = rig().await;
    let cheaper = requirements_for(&rig.chain.caip2(), rig.chain.usdc, rig.payee, 1);
    let mut payment = rig.payer.sign(&cheaper, None).await.unwrap();
    // Sign for 1 unit, then rewrite the value to the price: the signature no longer covers it.
    let mut evm = evm_payload(&payment);
    evm.authorization.value = U256::from(PRICE);
    payment.payload = evm.to_json_object();
    payment.accepted = rig.requirements.clone();
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmSignature).await;
}

#[tokio::test]
async fn wrong_asset_is_rejected() {
    let rig = rig().await;
    let other_token = Address::repeat_byte(0x42);
    let other = requirements_for(&rig.chain.caip2(), other_token, rig.payee, PRICE);
    // Paid in another asset, declared as such.
    let payment = rig.payer.sign(&other, None).await.unwrap();
    let err = expect_invalid(&rig, &payment, ErrorReason::InvalidPayload).await;
    assert!(matches!(err, VerifyError::AssetMismatch { .. }));
    // Paid in another asset, but claiming to be the required one: the signature is over the
    // other token's domain, so it does not verify.
    let mut payment = rig.payer.sign(&other, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmSignature).await;
}

#[tokio::test]
async fn wrong_chain_is_rejected() {
    let rig = rig().await;
    // Signed for Base (chain 8453) and presented as such to a facilitator of chain 31337.
    let base = requirements_for("eip155:8453", rig.chain.usdc, rig.payee, PRICE);
    let payment = rig.payer.sign(&base, None).await.unwrap();
    let err = rig.facilitator.verify(&payment, &base).await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::InvalidNetwork);
    // Signed for chain 8453 but presented against this chain's requirements.
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmNetworkMismatch).await;
    // Signed under chain 8453's domain but relabelled as this chain: the signature fails.
    let mut payment = rig.payer.sign(&base, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmSignature).await;
}

#[tokio::test]
async fn expired_authorization_is_rejected() {
    let rig = rig().await;
    let t = now();
    let payment = rig
        .payer
        .sign_with_window(&rig.requirements, None, window(t - 600, t - 10))
        .await
        .unwrap();
    expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmPayloadAuthorizationValidBefore,
    )
    .await;
}

#[tokio::test]
async fn authorization_too_close_to_expiry_is_rejected() {
    let rig = rig().await;
    let t = now();
    // Still valid for 3 s, under the 6 s safety margin: it could expire before it is mined.
    let payment = rig
        .payer
        .sign_with_window(&rig.requirements, None, window(t - 600, t + 3))
        .await
        .unwrap();
    expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmPayloadAuthorizationValidBefore,
    )
    .await;
}

#[tokio::test]
async fn not_yet_valid_authorization_is_rejected() {
    let rig = rig().await;
    let t = now();
    let payment = rig
        .payer
        .sign_with_window(&rig.requirements, None, window(t + 3600, t + 7200))
        .await
        .unwrap();
    expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmPayloadAuthorizationValidAfter,
    )
    .await;
}

#[tokio::test]
async fn bad_signatures_are_rejected() {
    let rig = rig().await;
    // Signed by someone else than `from`.
    let impostor = ExactEvmClient::new(TestChain::signer(2));
    let mut payment = impostor.sign(&rig.requirements, None).await.unwrap();
    let mut evm = evm_payload(&payment);
    evm.authorization.from = rig.payer.address();
    payment.payload = evm.to_json_object();
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmSignature).await;

    // Random bytes of the right length.
    let mut payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    let mut evm = evm_payload(&payment);
    evm.signature = Bytes::from(vec![0x5a; 65]);
    payment.payload = evm.to_json_object();
    expect_invalid(&rig, &payment, EvmReason::InvalidExactEvmSignature).await;

    // Not 65 bytes from an EOA: cannot even be parsed.
    let mut evm = evm_payload(&payment);
    evm.signature = Bytes::from(vec![0x01; 64]);
    payment.payload = evm.to_json_object();
    expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmFailedToParseSignature,
    )
    .await;
}

#[tokio::test]
async fn malformed_payload_is_rejected() {
    let rig = rig().await;
    let mut payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    payment.payload.remove("authorization");
    expect_invalid(&rig, &payment, ErrorReason::InvalidPayload).await;
    let mut payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    payment.payload["authorization"]["value"] = json!("-5");
    expect_invalid(&rig, &payment, ErrorReason::InvalidPayload).await;
}

#[tokio::test]
async fn insufficient_balance_is_rejected() {
    let rig = rig().await;
    let broke = ExactEvmClient::new(PrivateKeySigner::random());
    let payment = broke.sign(&rig.requirements, None).await.unwrap();
    let err = expect_invalid(
        &rig,
        &payment,
        EvmReason::InvalidExactEvmInsufficientBalance,
    )
    .await;
    assert!(err.to_string().contains("holds 0"), "{err}");
}

#[tokio::test]
async fn token_without_eip3009_is_rejected() {
    let rig = rig().await;
    // Multicall3 has code but no `authorizationState`.
    let requirements = requirements_for(&rig.chain.caip2(), rig.chain.multicall3, rig.payee, PRICE);
    let payment = rig.payer.sign(&requirements, None).await.unwrap();
    let err = rig
        .facilitator
        .verify(&payment, &requirements)
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        EvmReason::InvalidExactEvmEip3009NotSupported,
        "{err}"
    );
}

#[tokio::test]
async fn wrong_token_domain_name_is_rejected() {
    let rig = rig().await;
    let mut requirements = rig.requirements.clone();
    requirements.extra = Some(
        json!({ "name": "USDC", "version": "2" })
            .as_object()
            .unwrap()
            .clone(),
    );
    let payment = rig.payer.sign(&requirements, None).await.unwrap();
    let err = rig
        .facilitator
        .verify(&payment, &requirements)
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        EvmReason::InvalidExactEvmTokenNameMismatch,
        "{err}"
    );
}

/// Builds a payment from `wallet`, signed by `owner` over the EIP-712 digest (what an EIP-1271
/// wallet's owner signs).
async fn contract_wallet_payment(
    rig: &Rig,
    wallet: Address,
    owner: &PrivateKeySigner,
    wrap: Option<(Address, Bytes)>,
) -> PaymentPayload {
    let t = now();
    let authorization = Authorization {
        from: wallet,
        to: rig.payee,
        value: U256::from(PRICE),
        valid_after: U256::from(t - 600),
        valid_before: U256::from(t + 60),
        nonce: B256::random(),
    };
    let domain = TokenDomain::resolve(&rig.requirements).unwrap();
    let digest = authorization_digest(&authorization, &domain);
    let inner = Bytes::from(owner.sign_hash(&digest).await.unwrap().as_bytes().to_vec());
    let signature = match wrap {
        Some((factory, calldata)) => wrap_eip6492(factory, calldata, inner),
        None => inner,
    };
    let payload = ExactEvmPayload {
        signature,
        authorization,
    };
    PaymentPayload {
        x402_version: tollgate_proto::V2,
        resource: None,
        accepted: rig.requirements.clone(),
        payload: payload.to_json_object(),
        extensions: None,
    }
}

#[tokio::test]
async fn eip1271_wallet_pays_and_bad_owner_signature_fails() {
    let rig = rig().await;
    let owner = TestChain::signer(3);
    let wallet = rig.chain.deploy_wallet_1271(owner.address()).await.unwrap();
    rig.chain.mint(wallet, U256::from(1_000_000)).await.unwrap();

    let bad = contract_wallet_payment(&rig, wallet, &TestChain::signer(4), None).await;
    expect_invalid(&rig, &bad, EvmReason::InvalidExactEvmSignature).await;

    let payment = contract_wallet_payment(&rig, wallet, &owner, None).await;
    let verified = rig
        .facilitator
        .verify(&payment, &rig.requirements)
        .await
        .unwrap();
    assert!(matches!(
        verified.signature,
        tollgate_evm::PayerSignature::Contract(_)
    ));
    let before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    let settlement = rig
        .facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap();
    assert_eq!(settlement.payer, wallet);
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        before + U256::from(PRICE)
    );
    assert_eq!(
        rig.chain.usdc_balance(wallet).await.unwrap(),
        U256::from(1_000_000 - PRICE)
    );
}

#[tokio::test]
async fn eip6492_factory_not_on_allowlist_fails_closed() {
    let rig = rig().await; // default config: empty allowlist
    let owner = TestChain::signer(5);
    let salt = B256::repeat_byte(7);
    let wallet = rig
        .chain
        .predict_wallet(owner.address(), salt)
        .await
        .unwrap();
    rig.chain.mint(wallet, U256::from(1_000_000)).await.unwrap();
    let calldata = TestChain::wallet_factory_calldata(owner.address(), salt);
    let payment = contract_wallet_payment(
        &rig,
        wallet,
        &owner,
        Some((rig.chain.wallet_factory, calldata)),
    )
    .await;
    expect_invalid(&rig, &payment, EvmReason::Eip6492FactoryNotAllowed).await;
    assert!(
        !rig.chain.has_code(wallet).await.unwrap(),
        "nothing was deployed"
    );
}

#[tokio::test]
async fn eip6492_counterfactual_wallet_pays_through_allowed_factory() {
    // The rig deploys USDC, Multicall3, then the factory from account 0: nonce 2.
    let factory = TestChain::address(0).create(2);
    let rig = rig_with(FacilitatorConfig {
        allowed_factories: vec![factory],
        ..FacilitatorConfig::default()
    })
    .await;
    assert_eq!(rig.chain.wallet_factory, factory);

    let owner = TestChain::signer(5);
    let salt = B256::repeat_byte(9);
    let wallet = rig
        .chain
        .predict_wallet(owner.address(), salt)
        .await
        .unwrap();
    rig.chain.mint(wallet, U256::from(1_000_000)).await.unwrap();
    let calldata = TestChain::wallet_factory_calldata(owner.address(), salt);

    // A wrong owner signature is caught by the deployless validator, before anything is deployed.
    let bad = contract_wallet_payment(
        &rig,
        wallet,
        &TestChain::signer(6),
        Some((factory, calldata.clone())),
    )
    .await;
    expect_invalid(&rig, &bad, EvmReason::InvalidExactEvmSignature).await;
    assert!(!rig.chain.has_code(wallet).await.unwrap());

    let payment = contract_wallet_payment(&rig, wallet, &owner, Some((factory, calldata))).await;
    let verified = rig
        .facilitator
        .verify(&payment, &rig.requirements)
        .await
        .unwrap();
    assert!(matches!(
        verified.signature,
        tollgate_evm::PayerSignature::Counterfactual { .. }
    ));
    let before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    rig.facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap();
    assert!(
        rig.chain.has_code(wallet).await.unwrap(),
        "wallet deployed by settlement"
    );
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        before + U256::from(PRICE)
    );
}

#[tokio::test]
async fn receipt_timeout_is_reported_as_pending_with_tx_hash() {
    let rig = rig_with(FacilitatorConfig {
        receipt_timeout: Duration::from_secs(2),
        ..FacilitatorConfig::default()
    })
    .await;
    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    rig.chain.set_automine(false).await.unwrap();
    let err = rig
        .facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap_err();
    let SettleError::ReceiptTimeout { tx_hash, .. } = err else {
        panic!("expected a receipt timeout, got {err}");
    };
    assert_eq!(err.reason(), ErrorReason::SettlementPending);
    // The transaction was really sent: mining it moves the money.
    let before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    rig.chain.mine().await.unwrap();
    rig.chain.set_automine(true).await.unwrap();
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        before + U256::from(PRICE)
    );
    let receipt = rig
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx_hash]))
        .await
        .unwrap();
    assert_eq!(receipt["status"], json!("0x1"));
}

#[tokio::test]
async fn stuck_settlement_is_replaced_with_a_higher_fee_and_lands_once() {
    let rig = rig_with(FacilitatorConfig {
        receipt_timeout: Duration::from_secs(30),
        replacement: Some(tollgate_evm::Replacement {
            after: Duration::from_millis(800),
            fee_bump_percent: 25,
        }),
        ..FacilitatorConfig::default()
    })
    .await;
    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    let verified = rig
        .facilitator
        .verify(&payment, &rig.requirements)
        .await
        .unwrap();
    let before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    // No blocks: the settlement sits in the mempool, as behind a base-fee spike.
    rig.chain.set_automine(false).await.unwrap();
    let first = rig.facilitator.submit_verified(&verified).await.unwrap();
    let original = rig
        .chain
        .rpc("eth_getTransactionByHash", json!([first]))
        .await
        .unwrap();
    let waiter = {
        let facilitator = rig.facilitator.clone();
        let (asset, auth) = (verified.asset, verified.authorization.clone());
        tokio::spawn(async move { facilitator.await_settlement(asset, &auth, first).await })
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pool = rig.chain.rpc("txpool_content", json!([])).await.unwrap();
    let pending: Vec<&Value> = pool["pending"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|by_nonce| by_nonce.as_object().unwrap().values())
        .collect();
    assert_eq!(
        pending.len(),
        1,
        "the replacement took the original's place: {pool}"
    );
    let replacement = pending[0];
    assert_eq!(replacement["nonce"], original["nonce"]);
    let fee = |tx: &Value| {
        u128::from_str_radix(
            tx["maxFeePerGas"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap()
    };
    assert!(
        fee(replacement) >= fee(&original) * 125 / 100,
        "{replacement} vs {original}"
    );

    rig.chain.mine().await.unwrap();
    rig.chain.set_automine(true).await.unwrap();
    let settlement = waiter.await.unwrap().unwrap();
    assert_ne!(
        settlement.tx_hash, first,
        "the mined version is the replacement"
    );
    assert_eq!(replacement["hash"], json!(settlement.tx_hash));
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        before + U256::from(PRICE),
        "exactly one transfer"
    );
    let gone = rig
        .chain
        .rpc("eth_getTransactionReceipt", json!([first]))
        .await
        .unwrap();
    assert!(gone.is_null(), "the original was never mined: {gone}");
    // A restarted process that only knows the first hash still finds the settlement.
    let found = rig
        .facilitator
        .find_settlement_tx(verified.asset, &verified.authorization)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.tx_hash, settlement.tx_hash);
}

#[tokio::test]
async fn rpc_outage_is_not_blamed_on_the_payer() {
    let rig = rig().await;
    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    // A facilitator whose node is gone: a closed loopback port.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    use alloy::providers::Provider as _;
    let provider = alloy::providers::ProviderBuilder::new()
        .connect_http(format!("http://127.0.0.1:{dead}").parse().unwrap())
        .erased();
    let offline = ExactEvmFacilitator::new(
        provider,
        vec![TestChain::address(0)],
        rig.facilitator.network().clone(),
        FacilitatorConfig::default(),
    );
    let err = offline
        .verify(&payment, &rig.requirements)
        .await
        .unwrap_err();
    assert!(!err.is_payment_fault(), "{err}");
    assert_eq!(err.reason(), ErrorReason::UnexpectedVerifyError);
    let response = offline.verify_response(&payment, &rig.requirements).await;
    assert!(!response.is_valid);
}

alloy::sol! {
    struct CancelAuthorization {
        address authorizer;
        bytes32 nonce;
    }

    #[sol(rpc)]
    interface ICancel {
        function cancelAuthorization(address authorizer, bytes32 nonce, bytes signature) external;
    }
}

#[tokio::test]
async fn authorization_cancelled_after_verify_is_not_settled() {
    use alloy::sol_types::SolStruct;
    let rig = rig().await;
    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    let verified = rig
        .facilitator
        .verify(&payment, &rig.requirements)
        .await
        .unwrap();

    // Between /verify and /settle the payer cancels the authorization on chain (EIP-3009).
    let nonce = verified.authorization.nonce;
    let cancel = CancelAuthorization {
        authorizer: rig.payer.address(),
        nonce,
    };
    let domain = TokenDomain::resolve(&rig.requirements).unwrap().eip712();
    let signature = TestChain::signer(1)
        .sign_hash(&cancel.eip712_signing_hash(&domain))
        .await
        .unwrap();
    ICancel::new(rig.chain.usdc, rig.chain.provider())
        .cancelAuthorization(
            rig.payer.address(),
            nonce,
            signature.as_bytes().to_vec().into(),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(rig
        .chain
        .authorization_used(rig.payer.address(), nonce)
        .await
        .unwrap());

    let before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    // Settling the stale verification is refused by the node before anything is mined.
    let err = rig
        .facilitator
        .settle_verified(&verified)
        .await
        .unwrap_err();
    assert!(matches!(err, SettleError::WouldRevert(_)), "{err}");
    assert_eq!(err.reason(), EvmReason::InvalidExactEvmTransactionFailed);
    // Settling afresh re-verifies and names the cause.
    let err = rig
        .facilitator
        .settle(&payment, &rig.requirements)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), EvmReason::InvalidExactEvmNonceAlreadyUsed);
    assert_eq!(rig.chain.usdc_balance(rig.payee).await.unwrap(), before);

    // The refused transaction must not leave a gap in the signer's nonces: the next payment
    // settles at once.
    let next = rig.payer.sign(&rig.requirements, None).await.unwrap();
    rig.facilitator
        .settle(&next, &rig.requirements)
        .await
        .unwrap();
    assert_eq!(
        rig.chain.usdc_balance(rig.payee).await.unwrap(),
        before + U256::from(PRICE)
    );
}

#[tokio::test]
async fn a_settlement_is_found_again_from_the_chain() {
    let rig = rig().await;
    let payment = rig.payer.sign(&rig.requirements, None).await.unwrap();
    let verified = rig
        .facilitator
        .verify(&payment, &rig.requirements)
        .await
        .unwrap();
    let found = rig
        .facilitator
        .find_settlement_tx(verified.asset, &verified.authorization)
        .await
        .unwrap();
    assert!(found.is_none(), "nothing settled yet");

    // Submit, then "lose" the hash, as a crash between sending and recording would.
    let sent = rig.facilitator.submit_verified(&verified).await.unwrap();
    let awaited = rig
        .facilitator
        .await_settlement(verified.asset, &verified.authorization, sent)
        .await
        .unwrap();
    let found = rig
        .facilitator
        .find_settlement_tx(verified.asset, &verified.authorization)
        .await
        .unwrap()
        .expect("the used authorization leads back to its transaction");
    assert_eq!(found.tx_hash, sent);
    assert_eq!(found.amount, U256::from(PRICE));
    assert_eq!(awaited, found);
}
