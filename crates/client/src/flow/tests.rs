//! The pay-flow without HTTP and without a chain: a deterministic in-test wallet (a real
//! `PaymentSigner`, whose "chain" is a set of nonces it was told were used) and an in-memory
//! SQLite spend ledger.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::json;
use tollgate_core::NetworkPattern;
use tollgate_proto::{header, PaymentRequirements, Scheme};

use super::*;
use crate::ledger::SpendStatus;
use crate::signer::{BoxFuture, SignedPayment, SignerError};
use crate::Wallets;

const BASE: &str = "eip155:84532";
const POLYGON: &str = "eip155:80002";
const SOLANA: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
const EVM_USDC: &str = "0x036cbd53842c5426634e7929541ec2318f3dcf7e";
const SOL_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const PAYEE: &str = "0x209693bc6afc0c5328ba36faf03c514ef312287c";

/// A wallet for `exact` on the networks of `networks`: signs deterministically (the payload
/// names the wallet and counts its signatures), can be told to fail, and answers
/// `authorization_state` from the nonces it was told were used.
struct ToyWallet {
    name: &'static str,
    networks: NetworkPattern,
    signed: AtomicUsize,
    fail: bool,
    used: Mutex<HashSet<String>>,
}

impl ToyWallet {
    fn new(name: &'static str, networks: &str) -> Arc<Self> {
        Arc::new(Self {
            name,
            networks: networks.parse().unwrap(),
            signed: AtomicUsize::new(0),
            fail: false,
            used: Mutex::new(HashSet::new()),
        })
    }

    fn failing(name: &'static str, networks: &str) -> Arc<Self> {
        Arc::new(Self {
            fail: true,
            ..Arc::into_inner(Self::new(name, networks)).unwrap()
        })
    }

    fn signatures(&self) -> usize {
        self.signed.load(Ordering::SeqCst)
    }
}

impl PaymentSigner for ToyWallet {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == Scheme::Exact && self.networks.matches(&requirements.network)
    }

    fn payer(&self, _requirements: &PaymentRequirements) -> String {
        format!("{}-payer", self.name)
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        Box::pin(async move {
            let n = self.signed.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail {
                return Err(SignerError(format!("{} is locked", self.name)));
            }
            let nonce = format!("{}-nonce-{n}", self.name);
            let payload: PaymentPayload = serde_json::from_value(json!({
                "x402Version": 2,
                "resource": resource,
                "accepted": requirements,
                "payload": { "signedBy": self.name, "nonce": nonce },
            }))
            .map_err(|e| SignerError(e.to_string()))?;
            Ok(SignedPayment {
                payload,
                authorization: AuthorizationHandle {
                    scheme: requirements.scheme.to_string(),
                    network: requirements.network.clone(),
                    asset: requirements.asset.clone(),
                    payer: self.payer(requirements),
                    id: nonce,
                    valid_before: unix_now() + requirements.max_timeout_seconds,
                },
            })
        })
    }

    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        _rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        Box::pin(async move {
            if !self.networks.matches(&handle.network) {
                return Err(StateError::BadHandle(format!("not {}", self.networks)));
            }
            Ok(if self.used.lock().unwrap().contains(&handle.id) {
                AuthorizationState::Used
            } else {
                AuthorizationState::Unused {
                    chain_time: unix_now(),
                }
            })
        })
    }
}

/// An `exact` option of `amount` atomic units of the network's 6-decimal USDC.
fn option(network: &str, amount: u64) -> PaymentRequirements {
    let asset = if network.starts_with("solana:") {
        SOL_USDC
    } else {
        EVM_USDC
    };
    serde_json::from_value(json!({
        "scheme": "exact", "network": network, "amount": amount.to_string(),
        "asset": asset, "payTo": PAYEE, "maxTimeoutSeconds": 300,
        "extra": { "name": "USDC", "version": "2" },
    }))
    .unwrap()
}

fn challenge(accepts: Vec<PaymentRequirements>) -> Challenge {
    Challenge {
        version: X402Version::V2,
        accepts,
        resource: Some(
            serde_json::from_value(json!({ "url": "http://seller.test/weather" })).unwrap(),
        ),
        extensions: None,
        error: None,
    }
}

/// A policy that knows USDC on every test network, with `budget` in total.
fn policy(budget: Option<&str>) -> SpendingPolicy {
    let mut p = SpendingPolicy::new()
        .register_asset(BASE.parse().unwrap(), EVM_USDC, "USDC", 6)
        .register_asset(POLYGON.parse().unwrap(), EVM_USDC, "USDC", 6)
        .register_asset(SOLANA.parse().unwrap(), SOL_USDC, "USDC", 6);
    if let Some(b) = budget {
        p = p.budget(b, None).unwrap();
    }
    p
}

const ATTEMPT: Attempt<'static> = Attempt {
    method: "GET",
    url: "http://seller.test/weather",
};

fn flow(wallet: impl PaymentSigner, policy: SpendingPolicy) -> PayFlow {
    PayFlow::new(wallet, policy, SpendLedger::in_memory().unwrap())
}

fn served_with_receipt(payment: &PreparedPayment) -> SellerAnswer {
    SellerAnswer {
        status: AnswerStatus::Served,
        receipt: Some(Ok(SettleResponse::success(
            "0xfeed",
            payment.requirements().network.clone(),
            payment.authorization().payer.clone(),
        ))),
    }
}

fn status_of(flow: &PayFlow, id: i64) -> String {
    let rows = flow.ledger().history(100).unwrap();
    rows.into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no row {id}"))
        .status
}

fn refused(result: Result<PreparedPayment, PaymentError>) -> Refusal {
    match result {
        Err(PaymentError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn picks_the_cheapest_acceptable_option() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let policy = policy(None).allow_networks([BASE.parse().unwrap(), POLYGON.parse().unwrap()]);
    let flow = flow(wallet.clone(), policy);
    let offered = vec![
        option(BASE, 50_000),
        // Cheapest, but the wallet cannot pay Solana.
        option(SOLANA, 1_000),
        option(POLYGON, 20_000),
        // Cheaper, but refused by the network allow-list.
        option("eip155:8453", 10_000),
        // Over the default cap of 0.1 USDC.
        option(BASE, 200_000),
    ];
    let payment = flow.pay(challenge(offered), &ATTEMPT).await.unwrap();
    assert_eq!(payment.requirements(), &option(POLYGON, 20_000));
    assert_eq!(wallet.signatures(), 1);
    assert_eq!(status_of(&flow, payment.ledger_id()), "reserved");

    // The header carries exactly what was signed, for the option chosen.
    let (name, value) = payment.header();
    assert_eq!(name, header::PAYMENT_SIGNATURE);
    let sent: PaymentPayload = header::decode(value).unwrap();
    assert_eq!(&sent, payment.payload());
    assert_eq!(sent.accepted, option(POLYGON, 20_000));
    assert_eq!(sent.payload["nonce"], "evm-nonce-1");
    assert_eq!(
        sent.resource.as_ref().map(|r| r.url.as_str()),
        Some("http://seller.test/weather")
    );
    // The ledger holds the authorization before anything is sent.
    let row = &flow.ledger().history(1).unwrap()[0];
    assert_eq!(row.authorization.as_deref(), Some("evm-nonce-1"));
    assert_eq!(row.payer.as_deref(), Some("evm-payer"));
    assert_eq!(
        (row.amount.as_str(), row.network.as_str()),
        ("20000", POLYGON)
    );
}

#[tokio::test]
async fn refuses_over_budget_without_signing() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet.clone(), policy(Some("0.03 USDC")));
    let first = flow
        .pay(challenge(vec![option(BASE, 20_000)]), &ATTEMPT)
        .await
        .unwrap();
    let outcome = flow.record(&first, &served_with_receipt(&first)).unwrap();
    assert!(matches!(&outcome, PaymentOutcome::Paid(r) if r.settlement.transaction == "0xfeed"));
    assert_eq!(status_of(&flow, first.ledger_id()), "paid");

    let refusal = refused(
        flow.pay(challenge(vec![option(BASE, 20_000)]), &ATTEMPT)
            .await,
    );
    assert!(matches!(refusal, Refusal::OverBudget { .. }), "{refusal}");
    assert_eq!(
        wallet.signatures(),
        1,
        "nothing signed for the refused payment"
    );
    assert_eq!(flow.ledger().count(SpendStatus::Refused).unwrap(), 1);

    // What still fits is paid.
    flow.pay(challenge(vec![option(BASE, 10_000)]), &ATTEMPT)
        .await
        .unwrap();
    assert_eq!(wallet.signatures(), 2);

    // A refusal by the static rules signs nothing either (over the default 0.1 cap).
    let refusal = refused(
        flow.pay(challenge(vec![option(BASE, 100_001)]), &ATTEMPT)
            .await,
    );
    assert!(
        matches!(refusal, Refusal::OverMaxPerRequest { .. }),
        "{refusal}"
    );
    assert_eq!(wallet.signatures(), 2);
}

#[tokio::test]
async fn declined_and_unpayable_challenges_sign_nothing() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet.clone(), policy(None));
    let refusal = refused(flow.pay(challenge(vec![option(SOLANA, 1)]), &ATTEMPT).await);
    assert_eq!(refusal, Refusal::Unsupported(ATTEMPT.url.into()));
    let declining = flow.clone().with_approval(Arc::new(|_: &Priced| false));
    let refusal = refused(
        declining
            .pay(challenge(vec![option(BASE, 1)]), &ATTEMPT)
            .await,
    );
    assert_eq!(refusal, Refusal::Declined);
    assert_eq!(wallet.signatures(), 0);
    assert_eq!(flow.ledger().count(SpendStatus::Refused).unwrap(), 2);
}

#[tokio::test]
async fn records_pending_on_an_ambiguous_answer() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet.clone(), policy(Some("0.03 USDC")));
    let payment = flow
        .pay(challenge(vec![option(BASE, 20_000)]), &ATTEMPT)
        .await
        .unwrap();
    let answer = SellerAnswer {
        status: AnswerStatus::Other("503 Service Unavailable".into()),
        receipt: None,
    };
    let PaymentOutcome::Pending(pending) = flow.record(&payment, &answer).unwrap() else {
        panic!("a 503 after paying must leave the payment pending");
    };
    assert_eq!(pending.ledger_id, payment.ledger_id());
    assert_eq!(
        pending.reason,
        "server answered 503 Service Unavailable without a receipt"
    );
    assert_eq!(status_of(&flow, payment.ledger_id()), "pending");
    // Held against the budget: the seller may still settle it.
    let refusal = refused(
        flow.pay(challenge(vec![option(BASE, 20_000)]), &ATTEMPT)
            .await,
    );
    assert!(matches!(refusal, Refusal::OverBudget { .. }), "{refusal}");
    assert_eq!(wallet.signatures(), 1);
}

/// Every class of answer, and what the ledger makes of it.
#[tokio::test]
async fn only_a_receipt_or_a_proof_of_unusability_settles_an_attempt() {
    let network: Network = BASE.parse().unwrap();
    let receipt_ok = Some(Ok(SettleResponse::success("0xt", network.clone(), "p")));
    let refused_receipt = |reason: &str| {
        Some(Ok(SettleResponse::failure(
            ErrorReason::from(reason),
            None,
            network.clone(),
            None,
            None,
        )))
    };
    let required = |error: &str| AnswerStatus::PaymentRequired {
        error: Some(error.to_owned()).filter(|e| !e.is_empty()),
    };
    let other = |s: &str| AnswerStatus::Other(s.to_owned());
    type Receipt = Option<Result<SettleResponse, String>>;
    let cases: Vec<(AnswerStatus, Receipt, &str)> = vec![
        (AnswerStatus::Served, receipt_ok.clone(), "paid"),
        // A receipt on an answer that did not serve the resource proves nothing settled.
        (
            other("500 Internal Server Error"),
            receipt_ok.clone(),
            "pending",
        ),
        (AnswerStatus::Served, None, "pending"),
        (
            AnswerStatus::Served,
            Some(Err("bad base64".into())),
            "pending",
        ),
        (other("502 Bad Gateway"), None, "pending"),
        (other("404 Not Found"), None, "pending"),
        (
            required("payment rejected: invalid_exact_evm_payload_signature: x"),
            None,
            "failed",
        ),
        (
            required("invalid_exact_evm_token_name_mismatch"),
            None,
            "failed",
        ),
        (
            required("settlement failed: settlement_pending: x"),
            None,
            "pending",
        ),
        (required("payment_in_use"), None, "pending"),
        (
            required("settlement failed: invalid_exact_evm_nonce_already_used: x"),
            None,
            "pending",
        ),
        (required("insufficient_funds"), None, "pending"),
        (required(""), None, "pending"),
        (
            required(""),
            refused_receipt("invalid_exact_evm_payload_signature"),
            "failed",
        ),
        (
            AnswerStatus::Served,
            refused_receipt("unexpected_settle_error"),
            "pending",
        ),
    ];
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet.clone(), policy(None));
    for (status, receipt, want) in cases {
        let payment = flow
            .pay(challenge(vec![option(BASE, 1_000)]), &ATTEMPT)
            .await
            .unwrap();
        let answer = SellerAnswer { status, receipt };
        let outcome = flow.record(&payment, &answer).unwrap();
        let got = status_of(&flow, payment.ledger_id());
        assert_eq!(got, want, "{answer:?} → {outcome:?}");
        let kind = match outcome {
            PaymentOutcome::Paid(_) => "paid",
            PaymentOutcome::Refused { .. } => "failed",
            PaymentOutcome::Pending(_) => "pending",
        };
        assert_eq!(kind, want, "{answer:?}");
    }
}

#[tokio::test]
async fn never_signs_twice_for_one_challenge() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet.clone(), policy(None));
    let mut offered = challenge(vec![option(BASE, 1_000), option(POLYGON, 2_000)]);
    offered.extensions = Some(
        [(
            PAYMENT_IDENTIFIER.to_owned(),
            PaymentIdentifier::offer(false),
        )]
        .into_iter()
        .collect(),
    );
    let payment = flow.pay(offered, &ATTEMPT).await.unwrap();
    let first_header = payment.header().1.to_owned();
    let pending = SellerAnswer {
        status: AnswerStatus::PaymentRequired {
            error: Some("settlement_pending".into()),
        },
        receipt: None,
    };
    // The seller keeps saying "pending": the same payment is resent, up to the limit, and
    // each wait is the seller's Retry-After capped at the maximum.
    let mut resends = PendingRetries::new(2, Duration::from_secs(5));
    let now = unix_now();
    assert_eq!(
        resends.next(&payment, &pending, Duration::from_secs(60), now),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        resends.next(&payment, &pending, Duration::from_secs(1), now),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        resends.next(&payment, &pending, Duration::from_secs(1), now),
        None
    );
    // Other answers are never resent; nor is a payment whose authorization expires first.
    let mut fresh = PendingRetries::new(5, Duration::from_secs(5));
    let other = SellerAnswer {
        status: AnswerStatus::Other("503 Service Unavailable".into()),
        receipt: None,
    };
    assert_eq!(
        fresh.next(&payment, &other, Duration::from_secs(1), now),
        None
    );
    let expiry = payment.authorization().valid_before;
    assert_eq!(
        fresh.next(&payment, &pending, Duration::from_secs(1), expiry - 1),
        None
    );
    assert_eq!(
        payment.header().1,
        first_header,
        "the payment is resent unchanged"
    );
    let outcome = flow.record(&payment, &pending).unwrap();
    assert!(matches!(outcome, PaymentOutcome::Pending(_)), "{outcome:?}");
    assert_eq!(wallet.signatures(), 1);
    // The payment-identifier offered was sent, and kept with the row for the resends.
    let id = payment.payment_id().expect("offered, so sent").clone();
    let sent = PaymentIdentifier::from_extensions(payment.payload().extensions.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(sent.id, id);
    let row = &flow.ledger().history(1).unwrap()[0];
    assert_eq!(row.payment_id.as_deref(), Some(id.as_str()));

    // A wallet that fails to sign is asked once, not again for the next option, and the
    // reservation is released.
    let locked = ToyWallet::failing("locked", "eip155:*");
    let flow = self::flow(locked.clone(), policy(None));
    let err = flow
        .pay(
            challenge(vec![option(BASE, 1_000), option(POLYGON, 2_000)]),
            &ATTEMPT,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Signer(_)), "{err}");
    assert_eq!(locked.signatures(), 1);
    assert_eq!(flow.ledger().count(SpendStatus::Failed).unwrap(), 1);
    assert_eq!(flow.ledger().count(SpendStatus::Reserved).unwrap(), 0);
}

#[tokio::test]
async fn multi_wallet_picks_the_wallet_that_supports_the_network() {
    let evm = ToyWallet::new("evm", "eip155:*");
    let sol = ToyWallet::new("sol", "solana:*");
    let wallets = Wallets::new().with(evm.clone()).with(sol.clone());
    let flow = flow(wallets, policy(None));

    // Only Solana offered: the Solana wallet pays.
    let payment = flow
        .pay(challenge(vec![option(SOLANA, 5_000)]), &ATTEMPT)
        .await
        .unwrap();
    assert_eq!(payment.payload().payload["signedBy"], "sol");
    assert_eq!(payment.authorization().payer, "sol-payer");
    assert_eq!((evm.signatures(), sol.signatures()), (0, 1));

    // Both offered: the policy picks the cheaper, and the wallet for its network signs.
    let payment = flow
        .pay(
            challenge(vec![option(SOLANA, 5_000), option(BASE, 4_000)]),
            &ATTEMPT,
        )
        .await
        .unwrap();
    assert_eq!(payment.requirements().network, BASE.parse().unwrap());
    assert_eq!(payment.payload().payload["signedBy"], "evm");
    assert_eq!((evm.signatures(), sol.signatures()), (1, 1));
    let row = &flow.ledger().history(1).unwrap()[0];
    assert_eq!(row.payer.as_deref(), Some("evm-payer"));
}

#[tokio::test]
async fn wallets_limited_to_networks_and_asked_in_order() {
    let base = ToyWallet::new("base-key", "eip155:*");
    let rest = ToyWallet::new("other-key", "eip155:*");
    let wallets = Wallets::new()
        .with_on(BASE.parse().unwrap(), base.clone())
        .with(rest.clone());
    assert_eq!(wallets.len(), 2);
    assert_eq!(wallets.payer(&option(BASE, 1)), "base-key-payer");
    assert_eq!(wallets.payer(&option(POLYGON, 1)), "other-key-payer");
    assert!(!wallets.supports(&option(SOLANA, 1)));
    assert_eq!(wallets.payer(&option(SOLANA, 1)), "");
    let err = wallets.sign(&option(SOLANA, 1), None).await.unwrap_err();
    assert!(
        err.to_string().contains("no wallet pays exact on solana:"),
        "{err}"
    );
    wallets.sign(&option(POLYGON, 1), None).await.unwrap();
    assert_eq!((base.signatures(), rest.signatures()), (0, 1));
    // Keys never show in Debug output.
    assert_eq!(
        format!("{wallets:?}"),
        format!("[\"wallet on {BASE}\", \"wallet\"]")
    );
    // No wallet at all pays nothing.
    assert!(!Wallets::new().supports(&option(BASE, 1)));
}

#[tokio::test]
async fn reconcile_asks_the_wallet_of_the_network() {
    let evm = ToyWallet::new("evm", "eip155:*");
    let sol = ToyWallet::new("sol", "solana:*");
    let flow = flow(
        Wallets::new().with(sol.clone()).with(evm.clone()),
        policy(None),
    )
    .with_rpc_url(BASE.parse().unwrap(), "toy://base")
    .with_rpc_url(SOLANA.parse().unwrap(), "toy://solana");
    let mut ids = Vec::new();
    for network in [BASE, SOLANA, BASE] {
        let payment = flow
            .pay(challenge(vec![option(network, 1_000)]), &ATTEMPT)
            .await
            .unwrap();
        flow.record_no_answer(&payment, "connection reset").unwrap();
        ids.push((payment.ledger_id(), payment.authorization().id.clone()));
    }
    // The "chain" saw the first EVM payment and the Solana one.
    evm.used.lock().unwrap().insert(ids[0].1.clone());
    sol.used.lock().unwrap().insert(ids[1].1.clone());
    let report = flow.reconcile().await.unwrap();
    assert_eq!(report.paid, vec![ids[0].0, ids[1].0]);
    assert_eq!(report.held, vec![ids[2].0]);
    assert!(report.released.is_empty());
    assert_eq!(status_of(&flow, ids[0].0), "paid");
    assert_eq!(status_of(&flow, ids[2].0), "pending");
}

#[tokio::test]
async fn a_v1_challenge_is_answered_in_v1() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet, policy(None));
    let mut offered = challenge(vec![option(BASE, 1_000)]);
    offered.version = X402Version::V1;
    let payment = flow.pay(offered, &ATTEMPT).await.unwrap();
    let (name, value) = payment.header();
    assert_eq!(name, header::X_PAYMENT);
    let sent: PaymentPayloadV1 = header::decode(value).unwrap();
    assert_eq!(sent.payload, payment.payload().payload);
    assert_eq!(sent.network.to_string(), "base-sepolia");
    assert!(payment.payment_id().is_none());
    // A v1 challenge read from its JSON keeps its error and resource.
    let v1: AnyPaymentRequired = serde_json::from_value(json!({
        "x402Version": 1, "error": "settlement_pending",
        "accepts": [{
            "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "1000",
            "resource": "http://seller.test/weather", "description": "", "mimeType": "",
            "payTo": PAYEE, "maxTimeoutSeconds": 60, "asset": EVM_USDC,
        }],
    }))
    .unwrap();
    let read = Challenge::from(v1);
    assert_eq!(read.version, X402Version::V1);
    assert_eq!(read.error.as_deref(), Some("settlement_pending"));
    assert_eq!(read.accepts[0].network, BASE.parse().unwrap());
    assert!(read.resource.is_some());
}

#[test]
fn reason_codes_are_found_in_free_text() {
    assert_eq!(
        first_reason_code("payment rejected: invalid_exact_evm_payload_signature: bad sig"),
        Some(tollgate_evm::EvmReason::InvalidExactEvmPayloadSignature.into())
    );
    assert_eq!(
        first_reason_code("settlement failed: settlement_pending: tx 0xab"),
        Some(ErrorReason::SettlementPending)
    );
    assert_eq!(
        first_reason_code("this payment is already being used by another request"),
        None
    );
    assert!(proves_unusable(
        &first_reason_code("invalid_exact_evm_token_name_mismatch").unwrap()
    ));
    for not_proof in [
        "payment_in_use",
        "settlement failed: invalid_exact_evm_nonce_already_used: x",
        "insufficient_funds",
        "invalid_exact_evm_payload_authorization_valid_before",
        "unexpected_settle_error",
        "PAYMENT-SIGNATURE header is required",
    ] {
        let code = first_reason_code(not_proof);
        assert!(!code.as_ref().is_some_and(proves_unusable), "{not_proof}");
    }
}

#[test]
fn reconciliation_verdicts() {
    let vb = 1_000;
    let grace = 60;
    let used = || Some(Ok(AuthorizationState::Used));
    let unused = |t| Some(Ok(AuthorizationState::Unused { chain_time: t }));
    let rpc_down = || Some(Err(StateError::Chain("connection refused".into())));
    assert!(matches!(verdict(used(), vb, 0, grace), Verdict::Used(_)));
    assert!(matches!(
        verdict(used(), vb, 5_000, grace),
        Verdict::Used(_)
    ));
    // Unused: released only once the chain's own time (or ours, plus the grace) is past it.
    assert!(matches!(
        verdict(unused(999), vb, 999, grace),
        Verdict::Hold(_)
    ));
    assert!(matches!(
        verdict(unused(1_000), vb, 990, grace),
        Verdict::Unusable(_)
    ));
    assert!(matches!(
        verdict(unused(900), vb, 1_059, grace),
        Verdict::Hold(_)
    ));
    assert!(matches!(
        verdict(unused(900), vb, 1_060, grace),
        Verdict::Unusable(_)
    ));
    // An RPC failure holds, however late.
    assert!(matches!(
        verdict(rpc_down(), vb, 1_000_000, grace),
        Verdict::Hold(_)
    ));
    // No chain access: held until validBefore plus the grace, never earlier.
    assert!(matches!(verdict(None, vb, 1_000, grace), Verdict::Hold(_)));
    assert!(matches!(verdict(None, vb, 1_059, grace), Verdict::Hold(_)));
    assert!(matches!(
        verdict(None, vb, 1_060, grace),
        Verdict::Unusable(_)
    ));
    let unsupported = Some(Err(StateError::Unsupported {
        scheme: "exact".into(),
    }));
    assert!(matches!(
        verdict(unsupported, vb, 1_060, grace),
        Verdict::Unusable(_)
    ));
}

/// A gate's refusal releases the reservation (nothing was settled: the budget is whole again);
/// the same refusal with a successful receipt contradicts itself and is held.
#[tokio::test]
async fn an_identity_refusal_releases_the_reservation_unless_a_receipt_says_settled() {
    let wallet = ToyWallet::new("evm", "eip155:*");
    let flow = flow(wallet.clone(), policy(Some("0.03 USDC")));
    let refusal = crate::IdentityRefusal::from_body(
        json!({"error": "identity_check_failed", "payer": "evm-payer", "checks": [
            {"rule": "require_sanctions_clear", "passed": false, "remedy": "appeal"},
            {"rule": "min_age", "passed": true},
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    for _ in 0..3 {
        // Three refusals of 0.02 each under a 0.03 budget: each one released, none counted.
        let payment = flow
            .pay(challenge(vec![option(BASE, 20_000)]), &ATTEMPT)
            .await
            .unwrap();
        let answer = SellerAnswer {
            status: AnswerStatus::IdentityRefused(refusal.clone()),
            receipt: None,
        };
        let outcome = flow.record(&payment, &answer).unwrap();
        assert_eq!(
            outcome,
            PaymentOutcome::Refused {
                ledger_id: payment.ledger_id(),
                reason: "refused by the seller's identity gate: require_sanctions_clear".into()
            }
        );
        assert_eq!(status_of(&flow, payment.ledger_id()), "failed");
    }
    let payment = flow
        .pay(challenge(vec![option(BASE, 20_000)]), &ATTEMPT)
        .await
        .unwrap();
    let mut answer = served_with_receipt(&payment);
    answer.status = AnswerStatus::IdentityRefused(refusal);
    let PaymentOutcome::Pending(pending) = flow.record(&payment, &answer).unwrap() else {
        panic!("a refusal with a successful receipt must be held");
    };
    assert!(
        pending.reason.contains("identity gate"),
        "{}",
        pending.reason
    );
    assert_eq!(status_of(&flow, payment.ledger_id()), "pending");
    assert_eq!(wallet.signatures(), 4);
}
