//! The `upto` scheme against a real chain (anvil, or the devnet with
//! `TOLLGATE_TEST_CHAIN=devnet`): a maximum authorised through Permit2, settled at the maximum,
//! below it, at zero (no transaction) and above it (refused), with balances checked each time.

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use tollgate_core::{PaymentSigner, SchemeError, SchemeFacilitator, SchemeServer};
use tollgate_evm::permit2::engine::Permit2Config;
use tollgate_evm::permit2::{Permit2Window, UptoPermit2Payload, UPTO_PERMIT2_PROXY};
use tollgate_evm::reason::EvmReason;
use tollgate_evm::{ChainConfig, EvmChain, UptoEvmClient, UptoEvmFacilitator, UptoEvmServer};
use tollgate_proto::{AtomicAmount, ErrorReason, PaymentPayload, PaymentRequirements, Scheme};
use tollgate_testkit::TestChain;

const MAXIMUM: u64 = 20_000;

struct Rig {
    chain: TestChain,
    upto: UptoEvmFacilitator,
    payer: UptoEvmClient<PrivateKeySigner>,
    payee: Address,
    requirements: PaymentRequirements,
}

async fn rig() -> Rig {
    let chain = TestChain::start().await.expect("test chain");
    let evm = EvmChain::connect(
        &[chain.endpoint()],
        vec![TestChain::signer(0), TestChain::signer(7)],
        ChainConfig::default(),
    )
    .await
    .unwrap();
    let upto = UptoEvmFacilitator::on_chain(&evm, Permit2Config::default());
    chain
        .approve_permit2(1, chain.usdt, U256::MAX)
        .await
        .unwrap();
    let payee = TestChain::address(9);
    let mut requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "upto",
        "network": chain.caip2(),
        "amount": MAXIMUM.to_string(),
        "asset": chain.usdt.to_string(),
        "payTo": payee.to_string(),
        "maxTimeoutSeconds": 120,
        "extra": {}
    }))
    .unwrap();
    // The seller completes its offer from the facilitator's /supported.
    let kinds = upto.supported();
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[0].scheme, Scheme::Upto);
    UptoEvmServer.enrich(&mut requirements, &kinds[0]);
    assert_eq!(
        requirements.extra_str("facilitatorAddress"),
        Some(TestChain::address(0).to_string().as_str())
    );
    Rig {
        chain,
        upto,
        payer: UptoEvmClient::new(TestChain::signer(1)),
        payee,
        requirements,
    }
}

impl Rig {
    fn charged(&self, amount: u64) -> PaymentRequirements {
        let mut r = self.requirements.clone();
        r.amount = AtomicAmount::from(amount);
        r
    }

    async fn balances(&self) -> (U256, U256) {
        (
            self.chain.usdt_balance(self.payer.address()).await.unwrap(),
            self.chain.usdt_balance(self.payee).await.unwrap(),
        )
    }

    /// `/verify` at the maximum, then `/settle` charging `charge`, as the facilitator runs
    /// them: returns the transaction ("" when nothing was sent) and the reported amount.
    async fn verify_and_settle(
        &self,
        payment: &PaymentPayload,
        charge: u64,
    ) -> Result<(String, Option<AtomicAmount>), SchemeError> {
        self.upto.verify(payment, &self.requirements).await?;
        let settle_req = self.charged(charge);
        let verified = self.upto.verify_settlement(payment, &settle_req).await?;
        let tx = self.upto.submit(&verified).await?;
        let settled = self
            .upto
            .await_settlement(payment, &settle_req, &tx)
            .await?;
        assert_eq!(settled.transaction, tx);
        Ok((tx, self.upto.settled_amount(payment, &settle_req)))
    }
}

async fn sign(rig: &Rig) -> PaymentPayload {
    PaymentSigner::sign(&rig.payer, &rig.requirements, None)
        .await
        .unwrap()
        .payload
}

#[tokio::test]
async fn upto_settles_at_the_maximum_below_it_and_at_zero() {
    let rig = rig().await;
    let start = rig.balances().await;

    // At the maximum.
    let payment = sign(&rig).await;
    let (tx, amount) = rig.verify_and_settle(&payment, MAXIMUM).await.unwrap();
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    assert_eq!(amount, Some(AtomicAmount::from(MAXIMUM)));
    let after_max = rig.balances().await;
    assert_eq!(start.0 - after_max.0, U256::from(MAXIMUM));
    assert_eq!(after_max.1 - start.1, U256::from(MAXIMUM));

    // Below it: 37% of the maximum moves, and only that.
    let charge = MAXIMUM * 37 / 100;
    let payment = sign(&rig).await;
    let (tx, amount) = rig.verify_and_settle(&payment, charge).await.unwrap();
    assert!(!tx.is_empty());
    assert_eq!(amount, Some(AtomicAmount::from(charge)));
    let after_partial = rig.balances().await;
    assert_eq!(after_max.0 - after_partial.0, U256::from(charge));
    assert_eq!(after_partial.1 - after_max.1, U256::from(charge));
    // Found again after a "crash", with the charged amount.
    let found = rig
        .upto
        .find_settlement(&payment, &rig.charged(charge))
        .await
        .unwrap()
        .expect("on chain");
    assert_eq!(found.transaction, tx);

    // Zero: no transaction, amount "0", nothing moves, the Permit2 nonce stays unused.
    let payment = sign(&rig).await;
    let (tx, amount) = rig.verify_and_settle(&payment, 0).await.unwrap();
    assert_eq!(tx, "");
    assert_eq!(amount, Some(AtomicAmount::from(0u64)));
    assert_eq!(rig.balances().await, after_partial);
    let nonce = UptoPermit2Payload::from_payment(&payment)
        .unwrap()
        .permit2_authorization
        .nonce;
    assert!(!rig
        .chain
        .permit2_nonce_used(rig.payer.address(), nonce)
        .await
        .unwrap());
}

#[tokio::test]
async fn upto_refuses_above_the_maximum_and_foreign_facilitators_and_moves_nothing() {
    let rig = rig().await;
    let start = rig.balances().await;

    // Above the maximum.
    let payment = sign(&rig).await;
    rig.upto.verify(&payment, &rig.requirements).await.unwrap();
    let err = rig
        .upto
        .verify_settlement(&payment, &rig.charged(MAXIMUM + 1))
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        EvmReason::InvalidUptoEvmPayloadSettlementExceedsAmount
    );
    // At /verify the amount is the maximum: anything else is a mismatch.
    let err = rig
        .upto
        .verify(&payment, &rig.charged(MAXIMUM - 1))
        .await
        .unwrap_err();
    assert_eq!(err.reason, EvmReason::Permit2AmountMismatch);

    // A witness naming a facilitator that is not one of ours.
    let mut foreign = rig.requirements.clone();
    foreign.extra.as_mut().unwrap().insert(
        "facilitatorAddress".into(),
        TestChain::address(5).to_string().into(),
    );
    let mut payment = rig.payer.sign(&foreign, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    let err = rig
        .upto
        .verify(&payment, &rig.requirements)
        .await
        .unwrap_err();
    assert_eq!(err.reason, EvmReason::UptoFacilitatorMismatch);

    // A second signer of the pool is a valid facilitator too: the settlement goes out from it.
    let mut second = rig.requirements.clone();
    second.extra.as_mut().unwrap().insert(
        "facilitatorAddress".into(),
        TestChain::address(7).to_string().into(),
    );
    let mut payment = rig.payer.sign(&second, None).await.unwrap();
    payment.accepted = rig.requirements.clone();
    let (tx, _) = rig.verify_and_settle(&payment, 1_000).await.unwrap();
    assert!(!tx.is_empty());
    let mid = rig.balances().await;
    assert_eq!(start.0 - mid.0, U256::from(1_000u64));

    // Expired and not-yet-valid authorizations; an exact-scheme payload for upto.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let late = rig
        .payer
        .sign_with_window(
            &rig.requirements,
            None,
            Permit2Window {
                valid_after: 0,
                deadline: now - 1,
                nonce: tollgate_evm::permit2::random_nonce(),
            },
        )
        .await
        .unwrap();
    let err = rig.upto.verify(&late, &rig.requirements).await.unwrap_err();
    assert_eq!(err.reason, EvmReason::Permit2DeadlineExpired);
    let mut exact_req = rig.requirements.clone();
    exact_req.scheme = Scheme::Exact;
    let err = rig
        .upto
        .verify(&sign(&rig).await, &exact_req)
        .await
        .unwrap_err();
    assert_eq!(err.reason, EvmReason::InvalidUptoEvmScheme);
    // The spender must be the upto proxy (an exact Permit2 payload is not an upto one).
    let p = UptoPermit2Payload::from_payment(&sign(&rig).await).unwrap();
    assert_eq!(p.permit2_authorization.spender, UPTO_PERMIT2_PROXY);
    let mut garbage = sign(&rig).await;
    garbage.payload.remove("permit2Authorization");
    let err = rig
        .upto
        .verify(&garbage, &rig.requirements)
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::InvalidPayload);

    assert_eq!(rig.balances().await, mid, "no refused payment moved money");
}
