//! Two schemes on one network settle concurrently through that network's one signer pool.
//!
//! `exact` and a second EVM scheme defined only in this file (`notary`: the facilitator records
//! the payment's memo on chain in a zero-value transaction to the payee) are registered on the
//! same test network, both built on one [`EvmChain`] with a single settlement key. Settled at the
//! same time, every settlement gets its own nonce from the shared pool: the signer's nonce
//! advances by exactly the number of settlements, every transaction a settlement reported is
//! mined and succeeded, and nothing is left pending. (Two pools over one key would hand out
//! the same nonce twice: one transaction replaces the other, or waits behind a gap.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use serde_json::json;
use tollgate_core::{
    BoxFuture, ChainOps, NetworkPattern, PaymentIdentity, Registry, SchemeError, SchemeFacilitator,
    Settled, Verified,
};
use tollgate_evm::{ChainConfig, EvmChain, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger, Outcome};
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, IdempotencyKey, PaymentPayload, PaymentRequirements, Scheme,
    SupportedKind, X402Version,
};
use tollgate_testkit::TestChain;

/// A second EVM scheme: the payload names a payer and a 32-byte memo; settling sends the memo
/// from the chain's signer pool to the payee.
struct Notary {
    chain: EvmChain,
}

fn notary() -> Scheme {
    "notary".parse().unwrap()
}

fn memo_of(payment: &PaymentPayload) -> Result<(Address, B256), SchemeError> {
    let field = |name: &str| {
        payment
            .payload
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| SchemeError::payment(ErrorReason::InvalidPayload, format!("no {name}")))
    };
    let from = field("from")?
        .parse()
        .map_err(|e| SchemeError::payment(ErrorReason::InvalidPayload, format!("from: {e}")))?;
    let memo = field("memo")?
        .parse()
        .map_err(|e| SchemeError::payment(ErrorReason::InvalidPayload, format!("memo: {e}")))?;
    Ok((from, memo))
}

impl SchemeFacilitator for Notary {
    fn scheme(&self) -> Scheme {
        notary()
    }

    fn supported(&self) -> Vec<SupportedKind> {
        vec![SupportedKind {
            x402_version: X402Version::V2,
            scheme: notary(),
            network: self.chain.network().clone(),
            extra: None,
        }]
    }

    fn signers(&self) -> Vec<(String, Vec<String>)> {
        vec![(
            "eip155:*".into(),
            vec![self.chain.primary_signer().to_string()],
        )]
    }

    fn receipt_timeout(&self) -> Duration {
        self.chain.config().receipt_timeout
    }

    fn identify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError> {
        let (from, memo) = memo_of(payment)?;
        Ok(PaymentIdentity {
            asset: requirements.asset.clone(),
            payer: from.to_string(),
            id: memo.to_string(),
            valid_before: None,
        })
    }

    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(async move {
            let identity = self.identify(payment, requirements)?;
            let to: Address = requirements.pay_to.parse().map_err(|e| {
                SchemeError::payment(ErrorReason::InvalidPaymentRequirements, format!("{e}"))
            })?;
            let (_, memo) = memo_of(payment)?;
            Ok(Verified {
                identity,
                proof: Box::new((to, memo)),
            })
        })
    }

    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>> {
        Box::pin(async move {
            Ok(stored.payload == presented.payload
                && stored_pay_to.eq_ignore_ascii_case(&requirements.pay_to))
        })
    }

    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>> {
        Box::pin(async move {
            let (to, memo) = verified
                .proof
                .downcast_ref::<(Address, B256)>()
                .copied()
                .expect("verified by this scheme");
            let tx = TransactionRequest::default()
                .with_to(to)
                .with_input(memo.to_vec());
            let hash = self.chain.send(tx, 10).await.map_err(SchemeError::from)?;
            Ok(hash.to_string())
        })
    }

    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>> {
        Box::pin(async move {
            let (from, _) = memo_of(payment)?;
            let hash: B256 = transaction.parse().unwrap();
            let receipt = self
                .chain
                .wait_receipt(hash)
                .await
                .map_err(SchemeError::from)?;
            if !receipt.status() {
                return Err(SchemeError::payment(
                    ErrorReason::UnexpectedSettleError,
                    "memo transaction reverted",
                ));
            }
            Ok(Settled::new(
                receipt.transaction_hash.to_string(),
                from.to_string(),
            ))
        })
    }

    fn find_settlement<'a>(
        &'a self,
        _payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Option<Settled>, SchemeError>> {
        Box::pin(async { Ok(None) })
    }
}

fn notary_request(chain: &TestChain, payee: Address, payer: Address, i: u8) -> FacilitatorRequest {
    let requirements = json!({
        "scheme": "notary",
        "network": chain.caip2(),
        "amount": "1",
        "asset": "memo",
        "payTo": payee.to_string(),
        "maxTimeoutSeconds": 60,
    });
    serde_json::from_value(json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "accepted": requirements,
            "payload": { "from": payer.to_string(), "memo": B256::repeat_byte(i).to_string() },
        },
        "paymentRequirements": requirements,
    }))
    .unwrap()
}

#[tokio::test]
async fn exact_and_a_second_scheme_settle_concurrently_from_one_signer_pool() {
    let chain = TestChain::start().await.unwrap();
    let evm = EvmChain::connect(
        &[chain.endpoint()],
        vec![TestChain::signer(0)],
        ChainConfig::default(),
    )
    .await
    .unwrap();
    let exact = ExactEvmFacilitator::on_chain(&evm, FacilitatorConfig::default());
    let network: tollgate_proto::Network = chain.caip2().parse().unwrap();
    let mut schemes: Registry<dyn SchemeFacilitator> = Registry::new();
    schemes
        .register_arc(
            NetworkPattern::One(network.clone()),
            Scheme::Exact,
            Arc::new(exact),
        )
        .unwrap();
    schemes
        .register_arc(
            NetworkPattern::One(network.clone()),
            notary(),
            Arc::new(Notary { chain: evm.clone() }),
        )
        .unwrap();
    let chains: Vec<Arc<dyn ChainOps>> = vec![Arc::new(evm.clone())];
    let facilitator = Facilitator::from_registry(schemes, chains, Ledger::in_memory().unwrap());

    let kinds = facilitator.supported().kinds;
    assert!(kinds
        .iter()
        .any(|k| k.scheme == Scheme::Exact && k.network == network));
    assert!(kinds
        .iter()
        .any(|k| k.scheme == notary() && k.network == network));

    let payee = TestChain::address(9);
    let exact_requirements = support::requirements_for(&chain, payee, chain.usdc);
    let mut requests = Vec::new();
    for i in 0..8u8 {
        let payer = 1 + usize::from(i % 4);
        let payment = support::sign(&exact_requirements, payer).await;
        requests.push(
            serde_json::from_value::<FacilitatorRequest>(support::body(
                &payment,
                &exact_requirements,
            ))
            .unwrap(),
        );
        requests.push(notary_request(
            &chain,
            payee,
            TestChain::address(payer),
            i + 1,
        ));
    }
    let nonce_before = support::tx_count_at(&chain, TestChain::address(0), "latest").await;
    let settles = requests.iter().enumerate().map(|(i, request)| {
        let facilitator = facilitator.clone();
        async move {
            let key = IdempotencyKey::new(&format!("shared-chain-attempt-{i:04}")).unwrap();
            facilitator.settle_attempt(request, Some(&key)).await
        }
    });
    let outcomes = futures::future::join_all(settles).await;

    let mut transactions = Vec::new();
    for (request, outcome) in requests.iter().zip(&outcomes) {
        let (_, requirements) = request.to_v2();
        match outcome {
            Outcome::Ok(body) => transactions.push(body.transaction.clone()),
            other => panic!("{} settlement failed: {other:?}", requirements.scheme),
        }
    }
    let latest = support::tx_count_at(&chain, TestChain::address(0), "latest").await;
    let pending = support::tx_count_at(&chain, TestChain::address(0), "pending").await;
    assert_eq!(
        latest - nonce_before,
        requests.len() as u64,
        "one transaction per settlement, none replaced or dropped"
    );
    assert_eq!(pending, latest, "no transaction left stuck");
    transactions.sort();
    transactions.dedup();
    assert_eq!(transactions.len(), requests.len());
    for tx in &transactions {
        let receipt = chain
            .provider()
            .get_transaction_receipt(tx.parse().unwrap())
            .await
            .unwrap()
            .expect("every reported transaction is mined");
        assert!(receipt.status(), "{tx} succeeded");
        assert_eq!(receipt.from, TestChain::address(0));
    }
    let status = evm.signer_status().await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].in_flight, 0, "{status:?}");
}
