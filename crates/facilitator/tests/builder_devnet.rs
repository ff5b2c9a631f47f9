//! `Facilitator::builder()`: what it refuses before touching a chain or a file, and that what
//! it builds settles a real payment on the embedded devnet (and, with a file ledger, records it
//! durably).

use alloy::primitives::{Address, U256};
use serde_json::json;
use tollgate_evm::ExactEvmClient;
use tollgate_facilitator::{BuildError, Facilitator, OutcomeError};
use tollgate_proto::{FacilitatorRequest, PaymentRequirements};
use tollgate_testkit::TestChain;

fn requirements(chain: &TestChain, payee: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": chain.caip2(),
        "amount": "10000",
        "asset": chain.usdc.to_string(),
        "payTo": payee.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap()
}

#[tokio::test]
async fn incomplete_builders_are_refused_with_the_missing_piece() {
    let chain = TestChain::start_devnet().await.unwrap();
    let err = Facilitator::builder()
        .in_memory_ledger()
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::NoNetwork), "{err}");

    let err = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::NoLedger), "{err}");

    let err = Facilitator::builder()
        .network_with(chain.endpoint(), vec![], Default::default())
        .in_memory_ledger()
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::NoSigner { .. }), "{err}");

    let err = Facilitator::builder()
        .network("not a url", TestChain::signer(0))
        .in_memory_ledger()
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, BuildError::Connect { ref rpc_url, .. } if rpc_url == "not a url"),
        "{err}"
    );

    let err = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .network(chain.endpoint(), TestChain::signer(8))
        .in_memory_ledger()
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::DuplicateNetwork { .. }), "{err}");
    // Every refusal is a std error, so `?` carries it into a Box<dyn Error>.
    let _: Box<dyn std::error::Error> = Box::new(err);
}

#[tokio::test]
async fn built_facilitator_settles_once_and_into_result_reports_the_rest() {
    let chain = TestChain::start_devnet().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let facilitator = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .ledger_path(dir.path().join("ledger.db"))
        .build()
        .await
        .unwrap();
    let supported = facilitator.supported();
    assert!(
        supported
            .kinds
            .iter()
            .any(|k| k.network.to_string() == chain.caip2()),
        "{supported:?}"
    );

    let payee = TestChain::address(9);
    let before = chain.usdc_balance(payee).await.unwrap();
    let req = requirements(&chain, payee);
    let payment = ExactEvmClient::new(TestChain::signer(1))
        .sign(&req, None)
        .await
        .unwrap();
    let request = FacilitatorRequest::V2 {
        payment_payload: payment,
        payment_requirements: req.clone(),
    };
    let verified = facilitator.verify(&request).await.into_result().unwrap();
    assert!(verified.is_valid);
    let settled = facilitator.settle(&request).await.into_result().unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(10_000u64)
    );

    // A payment signed for more than the payer holds is the payment's fault: `Rejected`.
    let mut too_much = req.clone();
    too_much.amount = tollgate_proto::AtomicAmount(U256::from(u64::MAX));
    let payment = ExactEvmClient::new(TestChain::signer(2))
        .sign(&too_much, None)
        .await
        .unwrap();
    let request = FacilitatorRequest::V2 {
        payment_payload: payment,
        payment_requirements: too_much,
    };
    let err = facilitator
        .verify(&request)
        .await
        .into_result()
        .unwrap_err();
    assert!(matches!(err, OutcomeError::Rejected(_)), "{err:?}");
    assert!(!err.body().is_valid);
}
