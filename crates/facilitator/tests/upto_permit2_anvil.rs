//! `upto` and Permit2 `exact` through the facilitator's generic path (ledger, attempts, the
//! settle-time check of the scheme, the settled amount), on anvil or the devnet: the facilitator
//! never names either, it asks the registry.

use alloy::primitives::{Address, U256};
use serde_json::json;
use tollgate_core::{PaymentSigner, SchemeServer};
use tollgate_evm::reason::EvmReason;
use tollgate_evm::{ExactEvmClient, UptoEvmClient, UptoEvmServer};
use tollgate_facilitator::{Facilitator, Outcome};
use tollgate_proto::{
    AtomicAmount, FacilitatorRequest, IdempotencyKey, PaymentPayload, PaymentRequirements, Scheme,
};
use tollgate_testkit::TestChain;

const MAXIMUM: u64 = 50_000;

fn key(name: &str) -> IdempotencyKey {
    format!("attempt-{name:0>16}").parse().unwrap()
}

fn request(payment: &PaymentPayload, requirements: &PaymentRequirements) -> FacilitatorRequest {
    FacilitatorRequest::V2 {
        payment_payload: payment.clone(),
        payment_requirements: requirements.clone(),
    }
}

fn charged(requirements: &PaymentRequirements, amount: u64) -> PaymentRequirements {
    let mut r = requirements.clone();
    r.amount = AtomicAmount::from(amount);
    r
}

struct Rig {
    chain: TestChain,
    facilitator: Facilitator,
    payee: Address,
}

async fn rig() -> Rig {
    let chain = TestChain::start().await.unwrap();
    let facilitator = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    chain
        .approve_permit2(1, chain.usdt, U256::MAX)
        .await
        .unwrap();
    Rig {
        chain,
        facilitator,
        payee: TestChain::address(9),
    }
}

impl Rig {
    /// `upto` requirements for the maximum, completed from `/supported` as a seller's paywall
    /// does.
    fn upto_requirements(&self) -> PaymentRequirements {
        let mut req: PaymentRequirements = serde_json::from_value(json!({
            "scheme": "upto",
            "network": self.chain.caip2(),
            "amount": MAXIMUM.to_string(),
            "asset": self.chain.usdt.to_string(),
            "payTo": self.payee.to_string(),
            "maxTimeoutSeconds": 120,
            "extra": {}
        }))
        .unwrap();
        let supported = self.facilitator.supported();
        let kind = supported
            .kinds
            .iter()
            .find(|k| k.scheme == Scheme::Upto && k.network == req.network)
            .expect("upto is announced");
        UptoEvmServer.enrich(&mut req, kind);
        req
    }

    async fn payee_balance(&self) -> U256 {
        self.chain.usdt_balance(self.payee).await.unwrap()
    }
}

#[tokio::test]
async fn upto_charges_what_settle_says_and_zero_sends_nothing() {
    let rig = rig().await;
    let req = rig.upto_requirements();
    assert_eq!(
        req.extra_str("facilitatorAddress"),
        Some(TestChain::address(0).to_string().as_str())
    );
    let wallet = UptoEvmClient::new(TestChain::signer(1));
    let start = rig.payee_balance().await;

    // Authorised 50 000, charged 18 500 (37%).
    let payment = wallet.sign(&req, None).await.unwrap();
    let k = key("partial");
    let verified = rig
        .facilitator
        .verify_attempt(&request(&payment, &req), Some(&k))
        .await;
    assert!(matches!(verified, Outcome::Ok(_)), "{:?}", verified.body());
    let charge = MAXIMUM * 37 / 100;
    let settle_req = charged(&req, charge);
    let Outcome::Ok(settled) = rig
        .facilitator
        .settle_attempt(&request(&payment, &settle_req), Some(&k))
        .await
    else {
        panic!("settlement failed");
    };
    assert_eq!(settled.amount, Some(AtomicAmount::from(charge)));
    assert!(!settled.transaction.is_empty());
    assert_eq!(rig.payee_balance().await - start, U256::from(charge));
    // The same attempt asking again gets the same answer; nothing moves twice.
    let Outcome::Ok(again) = rig
        .facilitator
        .settle_attempt(&request(&payment, &settle_req), Some(&k))
        .await
    else {
        panic!("the repeated settlement was refused");
    };
    assert_eq!(again.transaction, settled.transaction);
    assert_eq!(again.amount, Some(AtomicAmount::from(charge)));
    // Another attempt with the same authorization is refused.
    let other = rig
        .facilitator
        .settle_attempt(&request(&payment, &settle_req), Some(&key("thief")))
        .await;
    assert!(matches!(other, Outcome::Rejected(_)), "{:?}", other.body());
    assert_eq!(rig.payee_balance().await - start, U256::from(charge));

    // Charged nothing: no transaction, `transaction: ""`, amount "0".
    let payment = wallet.sign(&req, None).await.unwrap();
    let k = key("zero");
    let verified = rig
        .facilitator
        .verify_attempt(&request(&payment, &req), Some(&k))
        .await;
    assert!(matches!(verified, Outcome::Ok(_)), "{:?}", verified.body());
    let zero = charged(&req, 0);
    let Outcome::Ok(settled) = rig
        .facilitator
        .settle_attempt(&request(&payment, &zero), Some(&k))
        .await
    else {
        panic!("zero settlement failed");
    };
    assert_eq!(settled.transaction, "");
    assert_eq!(settled.amount, Some(AtomicAmount::from(0u64)));
    let wire = serde_json::to_value(&settled).unwrap();
    assert_eq!(wire["transaction"], "");
    assert_eq!(wire["amount"], "0");
    let Outcome::Ok(again) = rig
        .facilitator
        .settle_attempt(&request(&payment, &zero), Some(&k))
        .await
    else {
        panic!("the repeated zero settlement was refused");
    };
    assert_eq!(again.transaction, "");
    // Settled once (for nothing): it cannot be charged again by another attempt.
    let later = rig
        .facilitator
        .settle_attempt(&request(&payment, &charged(&req, 10)), Some(&key("later")))
        .await;
    assert!(matches!(later, Outcome::Rejected(_)), "{:?}", later.body());
    assert_eq!(rig.payee_balance().await - start, U256::from(charge));

    // Above the maximum: refused with the scheme's code, nothing moves.
    let payment = wallet.sign(&req, None).await.unwrap();
    let k = key("greedy");
    let verified = rig
        .facilitator
        .verify_attempt(&request(&payment, &req), Some(&k))
        .await;
    assert!(matches!(verified, Outcome::Ok(_)));
    let refused = rig
        .facilitator
        .settle_attempt(&request(&payment, &charged(&req, MAXIMUM + 1)), Some(&k))
        .await;
    let Outcome::Rejected(body) = refused else {
        panic!(
            "a charge above the maximum must be refused: {:?}",
            refused.body()
        );
    };
    assert_eq!(
        body.error_reason.unwrap(),
        EvmReason::InvalidUptoEvmPayloadSettlementExceedsAmount
    );
    assert_eq!(rig.payee_balance().await - start, U256::from(charge));
}

#[tokio::test]
async fn permit2_exact_settles_through_the_facilitator_and_reports_a_missing_approval() {
    let rig = rig().await;
    let req: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact",
        "network": rig.chain.caip2(),
        "amount": "10000",
        "asset": rig.chain.usdt.to_string(),
        "payTo": rig.payee.to_string(),
        "maxTimeoutSeconds": 120,
        "extra": { "assetTransferMethod": "permit2" }
    }))
    .unwrap();
    let start = rig.payee_balance().await;

    let unapproved = ExactEvmClient::new(TestChain::signer(2));
    let payment = PaymentSigner::sign(&unapproved, &req, None)
        .await
        .unwrap()
        .payload;
    let refused = rig.facilitator.verify(&request(&payment, &req)).await;
    let Outcome::Rejected(body) = refused else {
        panic!("{:?}", refused.body());
    };
    assert_eq!(
        body.invalid_reason.unwrap(),
        EvmReason::Permit2AllowanceRequired
    );
    assert!(body
        .invalid_message
        .unwrap_or_default()
        .starts_with("PERMIT2_ALLOWANCE_REQUIRED"));
    // Over HTTP the spec's status: 412 Precondition Failed, at /verify and at /settle, with the
    // same body as a 400; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = tollgate_facilitator::http::router(
        rig.facilitator.clone(),
        tollgate_facilitator::http::HttpLimits::default(),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    for (path, reason_key) in [("verify", "invalidReason"), ("settle", "errorReason")] {
        let answer = http
            .post(format!("{url}/{path}"))
            .json(&request(&payment, &req))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 412, "/{path}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(
            body[reason_key], "permit2_allowance_required",
            "/{path}: {body}"
        );
    }
    assert_eq!(rig.payee_balance().await, start, "nothing moved");

    let payer = ExactEvmClient::new(TestChain::signer(1));
    let signed = PaymentSigner::sign(&payer, &req, None).await.unwrap();
    assert!(signed.authorization.id.starts_with("permit2:"));
    let Outcome::Ok(settled) = rig
        .facilitator
        .settle(&request(&signed.payload, &req))
        .await
    else {
        panic!("Permit2 settlement failed");
    };
    assert_eq!(settled.amount, None, "exact reports no amount");
    assert_eq!(rig.payee_balance().await - start, U256::from(10_000u64));
    // The payer's wallet reads the spent Permit2 nonce as used.
    assert_eq!(
        payer
            .authorization_state(&signed.authorization, &rig.chain.endpoint())
            .await
            .unwrap(),
        tollgate_core::AuthorizationState::Used
    );
}

#[test]
fn a_schemes_entry_names_upto_and_exact_takes_permit2_settings() {
    use tollgate_facilitator::config::{Config, EvmSchemeSettings, SchemeSettings};
    let text = r#"
        [[chains.eip155]]
        network = "eip155:8453"
        rpc_urls = ["http://127.0.0.1:1"]
        signer_key_env = "SETTLER_KEY"

        [[schemes]]
        scheme = "exact"
        networks = "eip155:*"
        permit2 = { sponsor_erc20_approval = true }

        [[schemes]]
        scheme = "upto"
        networks = "eip155:8453"
        deadline_margin_secs = 12
    "#;
    let config = Config::parse(text).unwrap();
    let layout = config.layout().unwrap();
    let schemes: Vec<Scheme> = layout.evm[0]
        .schemes
        .iter()
        .map(|s| s.settings.scheme())
        .collect();
    assert_eq!(schemes, vec![Scheme::Exact, Scheme::Upto]);
    match &layout.evm[0].schemes[1].settings {
        SchemeSettings::Evm(EvmSchemeSettings::Upto(upto)) => {
            assert_eq!(upto.deadline_margin_secs, 12)
        }
        other => panic!("{other:?}"),
    }
    match &layout.evm[0].schemes[0].settings {
        SchemeSettings::ExactEvm(exact) => assert!(exact.permit2.sponsor_erc20_approval),
        other => panic!("{other:?}"),
    }
    // A mistyped key of an upto entry is an error, as for exact.
    let bad = text.replace("deadline_margin_secs", "deadline_margn_secs");
    assert!(Config::parse(&bad).is_err());
    let unknown = text.replace("scheme = \"upto\"", "scheme = \"auth-capture\"");
    let err = Config::parse(&unknown).unwrap_err().to_string();
    assert!(err.contains("`exact`, `upto`"), "{err}");
}
