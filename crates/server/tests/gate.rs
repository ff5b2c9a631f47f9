//! The gate — the paywall's payment flow without HTTP — against a facilitator test double with
//! scripted answers: no chain, no HTTP, a toy scheme the server crate has never heard of.
//!
//! The double records every call with its attempt key, so each test can say not only what the
//! buyer got but what the facilitator was asked: nothing settled on a refusal, the same key on
//! every retry of one exchange.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tollgate_core::{BoxFuture, Registry, SchemeServer};
use tollgate_proto::{
    AnyPaymentPayload, ErrorReason, FacilitatorRequest, IdempotencyKey, Network, PaymentPayload,
    PaymentRequirements, ResourceInfo, Scheme, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse, X402Version, U256,
};
use tollgate_server::gate::{
    Admission, Challenge, Gate, GateBuilder, Offer, Presented, Settlement, SettlementMode,
    Unavailable, NO_PAYMENT,
};
use tollgate_server::paywall::PaywallOutcome;
use tollgate_server::{
    Facilitator, FacilitatorError, PaymentOption, PaywallLayer, PriceError, RoutePrice,
};

/// One scripted answer of the double.
type Answer<T> = Result<T, FacilitatorError>;

/// A call the double received: the endpoint and the attempt key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    endpoint: &'static str,
    attempt: Option<IdempotencyKey>,
}

/// A facilitator whose answers are scripted, in order; an unscripted call is answered
/// "unavailable", which no test expects to reach a buyer as a success.
#[derive(Default)]
struct Script {
    verify: Mutex<VecDeque<Answer<VerifyResponse>>>,
    settle: Mutex<VecDeque<Answer<SettleResponse>>>,
    supported: Mutex<VecDeque<Answer<SupportedResponse>>>,
    calls: Mutex<Vec<Call>>,
}

#[derive(Clone, Default)]
struct Double(Arc<Script>);

impl Double {
    fn verify(&self, answer: Answer<VerifyResponse>) -> &Self {
        self.0.verify.lock().unwrap().push_back(answer);
        self
    }

    fn settle(&self, answer: Answer<SettleResponse>) -> &Self {
        self.0.settle.lock().unwrap().push_back(answer);
        self
    }

    fn supported(&self, answer: Answer<SupportedResponse>) -> &Self {
        self.0.supported.lock().unwrap().push_back(answer);
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.0.calls.lock().unwrap().clone()
    }

    fn count(&self, endpoint: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.endpoint == endpoint)
            .count()
    }

    fn answer<T>(
        &self,
        endpoint: &'static str,
        queue: &Mutex<VecDeque<Answer<T>>>,
        attempt: Option<&IdempotencyKey>,
    ) -> Answer<T> {
        self.0.calls.lock().unwrap().push(Call {
            endpoint,
            attempt: attempt.cloned(),
        });
        queue.lock().unwrap().pop_front().unwrap_or_else(|| {
            Err(FacilitatorError::Unavailable(format!(
                "unscripted {endpoint}"
            )))
        })
    }
}

impl Facilitator for Double {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        let answer = self.answer("verify", &self.0.verify, attempt);
        Box::pin(async move { answer })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        let answer = self.answer("settle", &self.0.settle, attempt);
        Box::pin(async move { answer })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        let answer = self.answer("supported", &self.0.supported, None);
        Box::pin(async move { answer })
    }

    fn abandon<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, ()> {
        self.0.calls.lock().unwrap().push(Call {
            endpoint: "abandon",
            attempt: attempt.cloned(),
        });
        Box::pin(async {})
    }
}

fn toy() -> Scheme {
    "toy".parse().unwrap()
}

fn toy_net() -> Network {
    "toy:1".parse().unwrap()
}

fn price() -> RoutePrice {
    RoutePrice::new(PaymentOption::new(
        toy(),
        toy_net(),
        "TOY",
        5u64.into(),
        "alice",
    ))
    .description("a toy report")
}

fn gate(double: &Double, mode: SettlementMode, retries: u32) -> Gate<Double, String> {
    GateBuilder::new(double.clone())
        .settlement_mode(mode)
        .retries(retries)
        .build()
}

async fn offer(gate: &Gate<Double, String>, target: &str) -> Offer {
    Offer {
        resource: ResourceInfo::new("toy://report"),
        accepts: gate.accepts(&price()).await.unwrap(),
        target: target.into(),
        extensions: Default::default(),
    }
}

/// A toy payment answering `requirements`; `nonce` spelled as given.
fn payment(requirements: &PaymentRequirements, nonce: &str) -> Presented {
    let payload: PaymentPayload = serde_json::from_value(serde_json::json!({
        "x402Version": 2,
        "accepted": requirements,
        "payload": {"nonce": nonce, "from": "bob"},
    }))
    .unwrap();
    Presented::Payment(AnyPaymentPayload::V2(Box::new(payload)))
}

fn settled() -> Answer<SettleResponse> {
    Ok(SettleResponse::success("tx-1", toy_net(), "bob"))
}

fn pending() -> Answer<SettleResponse> {
    Ok(SettleResponse::failure(
        ErrorReason::SettlementPending,
        Some("sent, not final".into()),
        toy_net(),
        Some("bob".into()),
        Some("tx-1".into()),
    ))
}

fn down() -> FacilitatorError {
    FacilitatorError::Unavailable("connection refused".into())
}

fn challenge<F: std::fmt::Debug>(admission: Admission<F, String>) -> Challenge {
    match admission {
        Admission::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn verified(
    admission: Admission<Double, String>,
) -> tollgate_server::gate::VerifiedPayment<Double, String> {
    match admission {
        Admission::Verified(v) => v,
        other => panic!("expected a verified payment, got {other:?}"),
    }
}

impl std::fmt::Debug for Double {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Double")
    }
}

#[tokio::test]
async fn without_a_payment_the_buyer_gets_the_challenge_and_nobody_is_asked() {
    let double = Double::default();
    let gate = gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report").await;
    let c = challenge(gate.admit(offer.clone(), Presented::Nothing).await);
    assert_eq!(c.error(), NO_PAYMENT);
    assert_eq!(c.required.accepts, offer.accepts);
    assert_eq!(c.required.accepts[0].scheme, toy());
    assert_eq!(c.required.accepts[0].pay_to, "alice");
    assert_eq!(c.outcome(), PaywallOutcome::Challenged);
    assert!(!c.is_pending());

    let c = challenge(
        gate.admit(offer.clone(), Presented::from_encoded("not base64!"))
            .await,
    );
    assert!(
        c.error().starts_with("invalid payment header"),
        "{}",
        c.error()
    );

    // A payment for other terms (another amount) matches nothing on offer.
    let mut cheaper = offer.accepts[0].clone();
    cheaper.amount = tollgate_proto::AtomicAmount::from(1u64);
    let c = challenge(gate.admit(offer, payment(&cheaper, "0x01")).await);
    assert!(c.error().contains("matches none"), "{}", c.error());
    assert!(double.calls().is_empty(), "{:?}", double.calls());
}

#[tokio::test]
async fn an_invalid_payment_is_refused_with_its_reason_and_nothing_is_settled() {
    let double = Double::default();
    double.verify(Ok(VerifyResponse::invalid(
        ErrorReason::InsufficientFunds,
        Some("bob holds 2 TOY".into()),
        Some("bob".into()),
    )));
    let gate = gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report").await;
    let p = payment(&offer.accepts[0], "0x01");
    let c = challenge(gate.admit(offer, p).await);
    assert_eq!(
        c.error(),
        "payment rejected: insufficient_funds: bob holds 2 TOY"
    );
    assert_eq!(
        c.outcome(),
        PaywallOutcome::Refused {
            reason: "insufficient_funds".into()
        }
    );
    assert_eq!((double.count("verify"), double.count("settle")), (1, 0));
}

#[tokio::test]
async fn a_failed_settlement_delivers_nothing_in_either_mode() {
    let failure = || {
        Ok(SettleResponse::failure(
            ErrorReason::InsufficientFunds,
            Some("balance moved".into()),
            toy_net(),
            Some("bob".into()),
            None,
        ))
    };
    // After the handler: the handler's delivery is dropped.
    let double = Double::default();
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(failure());
    let gate = gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report").await;
    let p = payment(&offer.accepts[0], "0x01");
    let handle = verified(gate.admit(offer.clone(), p.clone()).await);
    assert_eq!(handle.info().payer.as_deref(), Some("bob"));
    match handle.settle_delivery("the report".to_owned()).await {
        Settlement::Refused(c) => assert_eq!(
            c.error(),
            "settlement failed: insufficient_funds: balance moved"
        ),
        other => panic!("{other:?}"),
    }
    // The claim is released with the refusal: the payment may be presented again (and the
    // facilitator decides).
    double.verify(Ok(VerifyResponse::invalid(
        ErrorReason::PaymentInUse,
        Some("reserved".into()),
        None,
    )));
    let c = challenge(gate.admit(offer, p).await);
    assert!(c.error().contains("payment_in_use"), "{}", c.error());

    // Before the handler: no `Paid`, so the handler never runs.
    let double = Double::default();
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(failure());
    let gate = self::gate(&double, SettlementMode::BeforeHandler, 0);
    let offer = self::offer(&gate, "GET /report").await;
    let handle = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
            .await,
    );
    assert_eq!(handle.mode(), SettlementMode::BeforeHandler);
    assert!(matches!(handle.settle().await, Settlement::Refused(_)));
    assert_eq!(double.count("settle"), 1);
}

#[tokio::test]
async fn the_same_payment_twice_is_refused_the_second_time() {
    let double = Double::default();
    double.verify(Ok(VerifyResponse::valid("bob")));
    let gate = gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report").await;
    let first = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0xab"))
            .await,
    );
    // While the first is in flight, a copy — even spelled otherwise — is refused here,
    // without asking the facilitator.
    for copy in ["0xab", "0xAB", "0XaB"] {
        let c = challenge(
            gate.admit(offer.clone(), payment(&offer.accepts[0], copy))
                .await,
        );
        assert!(
            c.error().starts_with("payment_in_use: "),
            "{copy}: {}",
            c.error()
        );
    }
    assert_eq!(double.count("verify"), 1);
    double.settle(settled());
    let paid = match first.settle_delivery("the report".into()).await {
        Settlement::Paid(paid) => paid,
        other => panic!("{other:?}"),
    };
    let (body, receipt, info) = paid.into_parts();
    assert_eq!(body, "the report");
    assert_eq!(receipt.settlement.transaction, "tx-1");
    assert_eq!(receipt.version, X402Version::V2);
    assert_eq!(
        info.transaction, None,
        "after-handler: the handler ran unsettled"
    );

    // Presented again after delivery: the facilitator refuses the used payment, and the gate
    // delivers nothing.
    double.verify(Ok(VerifyResponse::invalid(
        ErrorReason::InvalidTransactionState,
        Some("already settled".into()),
        None,
    )));
    let c = challenge(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0xAB"))
            .await,
    );
    assert!(c.error().starts_with("payment rejected: "), "{}", c.error());
    assert_eq!(double.count("settle"), 1);
}

#[tokio::test]
async fn an_unreachable_facilitator_is_a_503_and_nothing_is_delivered() {
    let double = Double::default();
    double.verify(Err(down()));
    let gate = gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report").await;
    match gate
        .admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
        .await
    {
        Admission::Unavailable(e @ Unavailable::Facilitator(_)) => {
            assert_eq!(e.label(), "payment facilitator unavailable");
            assert!(e.detail().contains("connection refused"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(double.count("settle"), 0);

    // With a retry, the same attempt key is used again, and the answer gets through.
    let double = Double::default();
    double
        .verify(Err(down()))
        .verify(Ok(VerifyResponse::valid("bob")));
    let gate = self::gate(&double, SettlementMode::AfterHandler, 1);
    let handle = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
            .await,
    );
    let calls = double.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls
        .iter()
        .all(|c| c.attempt.as_ref() == Some(handle.attempt())));
    handle.handler_failed().await;
    assert_eq!(
        double.count("settle"),
        0,
        "a failed handler settles nothing"
    );
}

/// A verified attempt that ends unsettled is abandoned with the facilitator (which lets go of
/// whatever it holds for it, e.g. a payment channel), under its own attempt key: at once when
/// the handler failed — before `handler_failed` returns, so the buyer's retry finds nothing
/// held — and in the background when the handle is dropped (the buyer hung up). A settled
/// attempt is not abandoned.
#[tokio::test]
async fn an_attempt_that_ends_unsettled_is_abandoned_with_the_facilitator() {
    let double = Double::default();
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .verify(Ok(VerifyResponse::valid("bob")))
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(settled());
    let gate = self::gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report").await;
    let abandoned = || {
        double
            .calls()
            .into_iter()
            .filter(|c| c.endpoint == "abandon")
            .map(|c| c.attempt)
            .collect::<Vec<_>>()
    };

    let failed = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
            .await,
    );
    let first = failed.attempt().clone();
    assert!(abandoned().is_empty());
    failed.handler_failed().await;
    assert_eq!(abandoned(), [Some(first)]);

    // The retry: a new attempt, dropped with its request.
    let dropped = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
            .await,
    );
    let second = dropped.attempt().clone();
    drop(dropped);
    for _ in 0..100 {
        if abandoned().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(abandoned()[1], Some(second));

    let paid = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
            .await,
    );
    match paid.settle_delivery("report".to_owned()).await {
        Settlement::Paid(_) => {}
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(abandoned().len(), 2, "a settled attempt is not abandoned");
}

#[tokio::test]
async fn a_lost_settlement_answer_is_recovered_with_the_same_attempt_key() {
    let double = Double::default();
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(Err(down()))
        .settle(settled());
    let gate = gate(&double, SettlementMode::AfterHandler, 2);
    let offer = offer(&gate, "GET /report").await;
    let handle = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x01"))
            .await,
    );
    let key = handle.attempt().clone();
    assert!(matches!(
        handle.settle_delivery("the report".into()).await,
        Settlement::Paid(_)
    ));
    let calls = double.calls();
    assert_eq!(
        calls.iter().map(|c| c.endpoint).collect::<Vec<_>>(),
        ["verify", "settle", "settle"]
    );
    assert!(calls.iter().all(|c| c.attempt.as_ref() == Some(&key)));
    // Each exchange has its own key.
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(settled());
    let other = verified(
        gate.admit(offer.clone(), payment(&offer.accepts[0], "0x02"))
            .await,
    );
    assert_ne!(other.attempt(), &key);
}

#[tokio::test]
async fn a_pending_settlement_keeps_the_delivery_for_the_retry_once() {
    let double = Double::default();
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(pending());
    let gate = gate(&double, SettlementMode::AfterHandler, 0);
    let offer = offer(&gate, "GET /report?day=1").await;
    let p = payment(&offer.accepts[0], "0x0f");
    let handle = verified(gate.admit(offer.clone(), p.clone()).await);
    let key = handle.attempt().clone();
    let c = match handle.settle_delivery("the report".into()).await {
        Settlement::Pending(c) => c,
        other => panic!("{other:?}"),
    };
    assert!(c.is_pending());
    assert_eq!(c.retry_after, Some(5));
    assert!(
        c.error().starts_with("settlement_pending: "),
        "{}",
        c.error()
    );
    assert_eq!(c.outcome(), PaywallOutcome::Pending);

    // The same payment for another target is refused.
    let elsewhere = Offer {
        target: "GET /other".into(),
        ..offer.clone()
    };
    let c = challenge(gate.admit(elsewhere, p.clone()).await);
    assert!(
        c.error().contains("awaits settlement there"),
        "{}",
        c.error()
    );

    // Still pending: 402 again, no verification, same key.
    double.settle(pending());
    let c = challenge(gate.admit(offer.clone(), p.clone()).await);
    assert!(c.is_pending());
    // Settled: the kept delivery, with its receipt; the handler is not asked again.
    double.settle(settled());
    let paid = match gate
        .admit(offer.clone(), payment(&offer.accepts[0], "0x0F"))
        .await
    {
        Admission::Deliver(paid) => paid,
        other => panic!("{other:?}"),
    };
    assert_eq!(paid.receipt().settlement.transaction, "tx-1");
    assert_eq!(paid.into_parts().0, "the report");
    let calls = double.calls();
    assert_eq!(double.count("verify"), 1);
    assert_eq!(double.count("settle"), 3);
    assert!(calls.iter().all(|c| c.attempt.as_ref() == Some(&key)));

    // Delivered once: the next presentation goes to the facilitator, which refuses it.
    double.verify(Ok(VerifyResponse::invalid(
        ErrorReason::InvalidTransactionState,
        Some("already settled".into()),
        None,
    )));
    let c = challenge(gate.admit(offer, p).await);
    assert!(c.error().starts_with("payment rejected: "), "{}", c.error());
}

#[tokio::test]
async fn before_the_handler_an_unknown_outcome_runs_the_handler_on_the_retry() {
    let double = Double::default();
    double
        .verify(Ok(VerifyResponse::valid("bob")))
        .settle(Err(down()));
    let gate = gate(&double, SettlementMode::BeforeHandler, 0);
    let offer = offer(&gate, "POST /order").await;
    let p = payment(&offer.accepts[0], "0x07");
    let handle = verified(gate.admit(offer.clone(), p.clone()).await);
    match handle.settle().await {
        Settlement::Pending(c) => assert!(c.error().contains("no answer"), "{}", c.error()),
        other => panic!("{other:?}"),
    }
    double.settle(settled());
    let paid = match gate.admit(offer, p).await {
        Admission::RunPaid(paid) => paid,
        other => panic!("{other:?}"),
    };
    assert_eq!(paid.info().transaction.as_deref(), Some("tx-1"));
    assert_eq!(paid.info().payer.as_deref(), Some("bob"));
    let ((), receipt, _) = paid.into_parts();
    assert!(receipt.settlement.success);
}

#[tokio::test]
async fn a_buyer_who_hangs_up_during_settlement_still_gets_the_delivery() {
    /// Settles only once released.
    #[derive(Clone)]
    struct Slow {
        release: Arc<tokio::sync::Semaphore>,
    }
    impl Facilitator for Slow {
        fn verify<'a>(
            &'a self,
            _: &'a FacilitatorRequest,
            _: Option<&'a IdempotencyKey>,
        ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
            Box::pin(async { Ok(VerifyResponse::valid("bob")) })
        }
        fn settle<'a>(
            &'a self,
            _: &'a FacilitatorRequest,
            _: Option<&'a IdempotencyKey>,
        ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
            Box::pin(async move {
                match self.release.acquire().await {
                    Ok(_released) => settled(),
                    Err(_) => Err(down()),
                }
            })
        }
        fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
            Box::pin(async { Err(down()) })
        }
    }
    let slow = Slow {
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let gate: Gate<Slow, String> = GateBuilder::new(slow.clone()).retries(0).build();
    let offer = Offer {
        resource: ResourceInfo::new("toy://report"),
        accepts: gate.accepts(&price()).await.unwrap(),
        target: "GET /report".into(),
        extensions: Default::default(),
    };
    let p = payment(&offer.accepts[0], "0x09");
    let handle = match gate.admit(offer.clone(), p.clone()).await {
        Admission::Verified(h) => h,
        _ => panic!("not verified"),
    };
    // The exchange gives up while the settlement is in flight.
    let exchange = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        handle.settle_delivery("the report".into()),
    )
    .await;
    assert!(exchange.is_err(), "the settlement is held");
    // (The settlement task notices the hang-up when it next runs.)
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // The retry waits for the outcome instead of starting another payment…
    let c = match gate.admit(offer.clone(), p.clone()).await {
        Admission::Challenge(c) => c,
        _ => panic!("not a challenge"),
    };
    assert!(c.is_pending(), "{}", c.error());
    // …and gets the delivery once the settlement lands.
    slow.release.add_permits(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match gate.admit(offer.clone(), p.clone()).await {
            Admission::Deliver(paid) => {
                assert_eq!(paid.into_parts().0, "the report");
                break;
            }
            Admission::Challenge(c) if c.is_pending() => {
                assert!(std::time::Instant::now() < deadline, "never delivered");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            _ => panic!("neither pending nor delivered"),
        }
    }
}

/// A toy scheme server: payees are lower-case letters, and requirements carry the
/// facilitator's `feePayer` from `/supported`.
struct ToyServer;

impl SchemeServer for ToyServer {
    fn scheme(&self) -> Scheme {
        toy()
    }

    fn parse_pay_to(&self, _: &Network, pay_to: &str) -> Result<String, String> {
        if !pay_to.is_empty() && pay_to.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(pay_to.to_ascii_lowercase())
        } else {
            Err("a toy payee is letters only".into())
        }
    }

    fn enrich(&self, requirements: &mut PaymentRequirements, kind: &tollgate_proto::SupportedKind) {
        if let Some(payer) = kind.extra.as_ref().and_then(|e| e.get("feePayer")) {
            requirements
                .extra
                .get_or_insert_with(Default::default)
                .insert("feePayer".into(), payer.clone());
        }
    }
}

fn toy_schemes() -> Registry<dyn SchemeServer> {
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc("toy:*".parse().unwrap(), toy(), Arc::new(ToyServer))
        .unwrap();
    schemes
}

fn supported_with_fee_payer(payer: &str) -> Answer<SupportedResponse> {
    let extra = serde_json::json!({ "feePayer": payer });
    Ok(SupportedResponse {
        kinds: vec![SupportedKind {
            x402_version: X402Version::V2,
            scheme: toy(),
            network: toy_net(),
            extra: extra.as_object().cloned(),
        }],
        extensions: vec![],
        signers: Default::default(),
    })
}

#[tokio::test]
async fn scheme_servers_complete_requirements_from_the_facilitators_kinds() {
    let double = Double::default();
    let gate: Gate<Double, String> = GateBuilder::new(double.clone())
        .schemes(toy_schemes())
        .build();
    // Never read and unreadable: nothing can be offered that the facilitator must complete.
    double.supported(Err(down()));
    assert!(matches!(
        gate.accepts(&price()).await,
        Err(Unavailable::Facilitator(_))
    ));
    double.supported(supported_with_fee_payer("carol"));
    let accepts = gate.accepts(&price()).await.unwrap();
    assert_eq!(accepts[0].extra.as_ref().unwrap()["feePayer"], "carol");
    // Read once, then reused.
    gate.accepts(&price()).await.unwrap();
    assert_eq!(double.count("supported"), 2);

    // The payee is the scheme server's to check and to write.
    let mut shouty = RoutePrice::new(PaymentOption::new(
        toy(),
        toy_net(),
        "TOY",
        5u64.into(),
        "ALICE",
    ));
    gate.check_price(&mut shouty).unwrap();
    assert_eq!(shouty.options[0].pay_to, "alice");
    let mut bad = RoutePrice::new(PaymentOption::new(
        toy(),
        toy_net(),
        "TOY",
        5u64.into(),
        "al1ce",
    ));
    let err = gate.check_price(&mut bad).unwrap_err();
    assert!(matches!(err, PriceError::BadPayTo { .. }));
    assert!(err.to_string().contains("\"al1ce\""), "{err}");
}

fn evm_schemes() -> Registry<dyn SchemeServer> {
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc(
            "eip155:*".parse().unwrap(),
            Scheme::Exact,
            Arc::new(tollgate_evm::server::ExactEvmServer::new()),
        )
        .unwrap();
    schemes
}

fn usdc_on_base(pay_to: &str) -> PaymentOption {
    PaymentOption::atomic(
        U256::from(10_000u64),
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "eip155:8453".parse().unwrap(),
        pay_to,
        None,
    )
}

/// `"0xSELLER"` as a payee fails when the seller prices the route, naming the value — not at
/// the first buyer's payment.
#[test]
fn an_unpayable_payee_is_refused_when_the_route_is_priced() {
    let layer = || PaywallLayer::new(Double::default());
    // The dollar constructors check at once.
    let err = PaymentOption::usd("$0.01", "eip155:8453".parse().unwrap(), "0xSELLER").unwrap_err();
    assert!(err.to_string().contains("\"0xSELLER\""), "{err}");
    // `atomic` cannot fail: the layer refuses the route, with or without scheme servers.
    let err = layer()
        .route("GET /weather", RoutePrice::new(usdc_on_base("0xSELLER")))
        .err()
        .unwrap();
    assert!(matches!(err, PriceError::BadPayTo { .. }));
    assert!(err.to_string().contains("\"0xSELLER\""), "{err}");
    let err = layer()
        .schemes(evm_schemes())
        .unwrap()
        .route("GET /weather", RoutePrice::new(usdc_on_base("0xSELLER")))
        .err()
        .unwrap();
    assert!(err.to_string().contains("\"0xSELLER\""), "{err}");
    // Routes priced before the scheme servers were given are checked again.
    let err = layer()
        .route(
            "GET /weather",
            RoutePrice::new(usdc_on_base(
                "0x209693Bc6afc0C5328bA36FaF03C514EF312287c", // checksum broken by one letter
            )),
        )
        .unwrap()
        .schemes(evm_schemes())
        .err()
        .unwrap();
    assert!(err.to_string().contains("checksum"), "{err}");
    // One server at a time in a builder chain: its refusal, or an overlapping registration,
    // is reported by the next route.
    let evm = || Arc::new(tollgate_evm::server::ExactEvmServer::new());
    let err = layer()
        .scheme("eip155:*".parse().unwrap(), evm())
        .route("GET /weather", RoutePrice::new(usdc_on_base("0xSELLER")))
        .err()
        .unwrap();
    assert!(err.to_string().contains("\"0xSELLER\""), "{err}");
    let err = layer()
        .scheme("eip155:*".parse().unwrap(), evm())
        .scheme("eip155:*".parse().unwrap(), evm())
        .route(
            "GET /weather",
            RoutePrice::new(usdc_on_base("0x209693bc6afc0c5328ba36faf03c514ef312287c")),
        )
        .err()
        .unwrap();
    assert!(matches!(err, PriceError::Register(_)), "{err}");
    // A good payee passes; a route in a scheme no server covers does not.
    assert!(layer()
        .schemes(evm_schemes())
        .unwrap()
        .route(
            "GET /weather",
            RoutePrice::new(usdc_on_base("0x209693bc6afc0c5328ba36faf03c514ef312287c")),
        )
        .is_ok());
    assert!(matches!(
        layer()
            .schemes(evm_schemes())
            .unwrap()
            .route("GET /toy", price())
            .err(),
        Some(PriceError::NoSchemeServer { .. })
    ));
}

/// Serves `app` on a free loopback port.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Through the HTTP adapter: the 402 carries what the scheme server added from the
/// facilitator's `/supported` (read once, then reused), and a layer whose scheme server refused
/// a route it was given earlier sells nothing.
#[tokio::test]
async fn the_paywall_offers_requirements_its_scheme_servers_completed() {
    let double = Double::default();
    double.supported(supported_with_fee_payer("carol"));
    let layer = PaywallLayer::new(double.clone())
        .scheme("toy:*".parse().unwrap(), Arc::new(ToyServer))
        .route("GET /toy", price())
        .unwrap();
    let app = axum::Router::new()
        .route("/toy", axum::routing::get(|| async { "the report" }))
        .route("/free", axum::routing::get(|| async { "free" }))
        .layer(layer);
    let url = serve(app).await;
    for _ in 0..2 {
        let response = reqwest::get(format!("{url}/toy")).await.unwrap();
        assert_eq!(response.status(), 402);
        let required = tollgate_proto::header::payment_required_from_headers(response.headers())
            .unwrap()
            .unwrap();
        assert_eq!(
            required.accepts[0].extra.as_ref().unwrap()["feePayer"],
            "carol"
        );
        assert_eq!(required.accepts[0].pay_to, "alice");
    }
    assert_eq!(double.count("supported"), 1);

    // Priced before its scheme server was added, with a payee the server refuses, and no
    // `route` call after it to report the error: priced requests get 500, free ones pass.
    let layer = PaywallLayer::new(Double::default())
        .route(
            "GET /toy",
            RoutePrice::new(PaymentOption::new(
                toy(),
                toy_net(),
                "TOY",
                5u64.into(),
                "al1ce",
            )),
        )
        .unwrap()
        .scheme("toy:*".parse().unwrap(), Arc::new(ToyServer));
    let app = axum::Router::new()
        .route("/toy", axum::routing::get(|| async { "the report" }))
        .route("/free", axum::routing::get(|| async { "free" }))
        .layer(layer);
    let url = serve(app).await;
    let response = reqwest::get(format!("{url}/toy")).await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.text().await.unwrap().contains("al1ce"));
    let response = reqwest::get(format!("{url}/free")).await.unwrap();
    assert_eq!(response.status(), 200);
}
