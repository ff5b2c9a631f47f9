//! The budget when the seller's answer is ambiguous (issue 13, item 4), on a real chain with
//! the real paywall and an in-process facilitator: a signed authorization that may have been
//! used stays reserved until the chain shows it used (→ paid) or it can no longer be used
//! (→ released), and nothing past the budget is ever signed meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::http::{HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tollgate_client::signer::BoxFuture;
use tollgate_client::{
    AuthorizationHandle, AuthorizationState, PaymentError, PaymentReceipt, PaymentSigner,
    PendingPayment, Refusal, SignedPayment, SignerError, SpendLedger, SpendStatus, SpendingPolicy,
    StateError, X402Middleware,
};
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::idempotency::{IdempotencyKey, PaymentIdentifier, PAYMENT_IDENTIFIER};
use tollgate_proto::{header, AnyPaymentPayload, Network, PaymentRequirements, ResourceInfo};
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_testkit::TestChain;

/// 0.001 USDC, against a budget of 0.0015 USDC: room for one payment, not two.
const PRICE: u64 = 1_000;
const BUDGET: &str = "0.0015 USDC";
/// Short enough to wait out, longer than the facilitator's 6 s `validBefore` margin.
const SHORT_TIMEOUT: u64 = 10;

/// Counts signatures, so a test can prove that a refused payment signed nothing.
struct CountingSigner {
    inner: ExactEvmClient<PrivateKeySigner>,
    signed: Arc<AtomicUsize>,
}

impl PaymentSigner for CountingSigner {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        self.inner.supports(requirements)
    }

    fn payer(&self, requirements: &PaymentRequirements) -> String {
        self.inner.payer(requirements)
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        PaymentSigner::sign(&self.inner, requirements, resource)
    }

    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        self.inner.authorization_state(handle, rpc_url)
    }
}

struct Shop {
    chain: TestChain,
    url: String,
    network: Network,
    payee: Address,
    /// `payment-identifier` ids seen in payments, per request.
    payment_ids: Arc<Mutex<Vec<Option<String>>>>,
}

/// A seller with the real paywall, plus two misbehaviours wrapped around it:
/// - `/settled-then-503`: the payment settles, then the answer is replaced by a `503` without
///   receipt (a gateway timing out in front of a slow seller);
/// - `/down`: the handler fails with `503`, so the paywall does not settle (short timeout).
///
/// And `/offers-id`, whose 402 offers the `payment-identifier` extension.
async fn shop() -> Shop {
    let chain = TestChain::start().await.unwrap();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let network: Network = chain.caip2().parse().unwrap();
    let payee = TestChain::address(9);
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(PRICE),
        &chain.usdc.to_string(),
        network.clone(),
        &payee.to_string(),
        extra,
    );
    let mut short = option.clone();
    short.max_timeout_seconds = SHORT_TIMEOUT;
    let layer = PaywallLayer::new(facilitator)
        .route("GET /data", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /settled-then-503", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /offers-id", RoutePrice::new(option.clone()))
        .unwrap()
        .route("GET /pending-once", RoutePrice::new(option))
        .unwrap()
        .route("GET /down", RoutePrice::new(short))
        .unwrap();
    let payment_ids = Arc::new(Mutex::new(Vec::new()));
    let seen = payment_ids.clone();
    let first_payment = Arc::new(AtomicBool::new(true));
    let app = Router::new()
        .route("/data", get(|| async { "paid data" }))
        .route("/settled-then-503", get(|| async { "never delivered" }))
        .route("/offers-id", get(|| async { "identified" }))
        .route("/pending-once", get(|| async { "worth the wait" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .layer(layer)
        .layer(axum::middleware::map_response(
            |uri: axum::http::Uri, mut response: axum::response::Response| async move {
                let settled = response.headers().contains_key("payment-response");
                if uri.path() == "/settled-then-503" && settled {
                    return (StatusCode::SERVICE_UNAVAILABLE, "gateway timeout").into_response();
                }
                let offers = matches!(uri.path(), "/offers-id" | "/pending-once");
                if offers && response.status() == StatusCode::PAYMENT_REQUIRED {
                    offer_payment_identifier(&mut response);
                }
                response
            },
        ))
        .layer(axum::middleware::from_fn(
            move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                let first = first_payment.clone();
                async move {
                    let paid = request.headers().contains_key("payment-signature");
                    if request.uri().path() == "/pending-once"
                        && paid
                        && first.swap(false, Ordering::SeqCst)
                    {
                        // The first paid try is told its settlement is still being mined.
                        request.headers_mut().remove("payment-signature");
                        let mut response = next.run(request).await;
                        settlement_pending(&mut response);
                        return response;
                    }
                    next.run(request).await
                }
            },
        ))
        .layer(axum::middleware::map_request(
            move |request: axum::extract::Request| {
                let seen = seen.clone();
                async move {
                    if let Some(Ok(AnyPaymentPayload::V2(p))) =
                        header::payment_from_headers(request.headers())
                    {
                        let id = PaymentIdentifier::from_extensions(p.extensions.as_ref())
                            .unwrap()
                            .map(|p| p.id.as_str().to_owned());
                        seen.lock().unwrap().push(id);
                    }
                    request
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop {
        chain,
        url,
        network,
        payee,
        payment_ids,
    }
}

use axum::response::IntoResponse;

/// Turns a 402 into "settlement pending, retry with the same payment in 1 s", as a paywall
/// answers while the transfer is mined.
fn settlement_pending(response: &mut axum::response::Response) {
    let Some(Ok(mut challenge)) = header::payment_required_from_headers(response.headers()) else {
        panic!("expected a 402 challenge");
    };
    challenge.error =
        Some("settlement_pending: the transfer is being mined; retry with the same payment".into());
    let headers = response.headers_mut();
    headers.insert(
        "payment-required",
        HeaderValue::from_str(&header::encode(&challenge)).unwrap(),
    );
    headers.insert("retry-after", HeaderValue::from_static("1"));
}

/// Adds the `payment-identifier` offer to a 402's `PAYMENT-REQUIRED`.
fn offer_payment_identifier(response: &mut axum::response::Response) {
    let Some(Ok(mut challenge)) = header::payment_required_from_headers(response.headers()) else {
        return;
    };
    challenge
        .extensions
        .get_or_insert_with(Default::default)
        .insert(PAYMENT_IDENTIFIER.into(), PaymentIdentifier::offer(false));
    response.headers_mut().insert(
        "payment-required",
        HeaderValue::from_str(&header::encode(&challenge)).unwrap(),
    );
}

impl Shop {
    fn policy(&self) -> SpendingPolicy {
        SpendingPolicy::new()
            .register_asset(
                self.network.clone(),
                &self.chain.usdc.to_string(),
                "USDC",
                6,
            )
            .budget(BUDGET, None)
            .unwrap()
    }

    /// A middleware for `payer` on `ledger`, asking the chain when `rpc` is set, and the count
    /// of payments it signed.
    fn middleware(
        &self,
        payer: usize,
        ledger: SpendLedger,
        rpc: bool,
    ) -> (X402Middleware, Arc<AtomicUsize>) {
        let signed = Arc::new(AtomicUsize::new(0));
        let wallet = CountingSigner {
            inner: ExactEvmClient::new(TestChain::signer(payer)),
            signed: signed.clone(),
        };
        let mut mw = X402Middleware::new(wallet, self.policy(), ledger);
        if rpc {
            mw = mw.with_rpc_url(self.network.clone(), self.chain.endpoint());
        }
        (mw, signed)
    }

    async fn payee_balance(&self) -> U256 {
        self.chain.usdc_balance(self.payee).await.unwrap()
    }
}

fn client(mw: &X402Middleware) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(mw.clone())
        .build()
}

fn refusal(err: reqwest_middleware::Error) -> Refusal {
    match err {
        reqwest_middleware::Error::Middleware(e) => match e.downcast::<PaymentError>() {
            Ok(PaymentError::Refused(r)) => r,
            Ok(other) => panic!("not a refusal: {other}"),
            Err(e) => panic!("not a payment error: {e}"),
        },
        other => panic!("not a middleware error: {other}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_settled_payment_answered_with_503_stays_reserved_and_reconciles_as_paid() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    // First without chain access, as `tollgate pay` without an RPC URL.
    let (mw, signed) = s.middleware(1, ledger.clone(), false);
    let before = s.payee_balance().await;

    let r = client(&mw)
        .get(format!("{}/settled-then-503", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.extensions().get::<PaymentReceipt>().is_none());
    let pending = r
        .extensions()
        .get::<PendingPayment>()
        .cloned()
        .expect("the outcome is reported as pending");
    // The money did move.
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);
    assert_eq!(ledger.count(SpendStatus::Failed).unwrap(), 0);
    let row = ledger.history(1).unwrap().remove(0);
    assert_eq!(row.id, pending.ledger_id);
    assert_eq!(row.status, "pending");
    assert_eq!(
        row.payer.as_deref(),
        Some(TestChain::address(1).to_string().as_str())
    );
    assert!(row.authorization.is_some() && row.valid_before.is_some());

    // The next payment would exceed the budget: refused, and nothing is signed.
    let err = client(&mw)
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), Refusal::OverBudget { ref window, .. } if window == "total"));
    assert_eq!(signed.load(Ordering::SeqCst), 1);
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));

    // Without the chain, an unexpired authorization stays held.
    let report = mw.reconcile().await.unwrap();
    assert_eq!(report.held, vec![pending.ledger_id]);
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);

    // With the chain: the authorization was used, so the attempt is paid.
    let (mw, signed) = s.middleware(1, ledger.clone(), true);
    let report = mw.reconcile().await.unwrap();
    assert_eq!(report.paid, vec![pending.ledger_id]);
    assert!(report.released.is_empty() && report.held.is_empty());
    let row = ledger
        .history(10)
        .unwrap()
        .into_iter()
        .find(|r| r.id == pending.ledger_id)
        .unwrap();
    assert_eq!(row.status, "paid");
    assert!(row.reason.unwrap().contains("used on chain"));
    let nonce: B256 = row.authorization.unwrap().parse().unwrap();
    assert!(s
        .chain
        .authorization_used(TestChain::address(1), nonce)
        .await
        .unwrap());

    // It counts as spent: still no room for another payment.
    let err = client(&mw)
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), Refusal::OverBudget { .. }));
    assert_eq!(signed.load(Ordering::SeqCst), 0);
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
    assert_eq!(ledger.count(SpendStatus::Refused).unwrap(), 2);
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));
}

#[tokio::test]
async fn an_unsettled_ambiguous_payment_is_released_only_once_it_can_never_be_used() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let (mw, signed) = s.middleware(2, ledger.clone(), true);
    let before = s.payee_balance().await;

    let r = client(&mw)
        .get(format!("{}/down", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let pending = r.extensions().get::<PendingPayment>().cloned().unwrap();
    assert_eq!(s.payee_balance().await, before);
    let row = ledger.history(1).unwrap().remove(0);
    assert_eq!(row.status, "pending");
    let valid_before = row.valid_before.unwrap();
    let nonce: B256 = row.authorization.unwrap().parse().unwrap();
    assert!(valid_before <= unix_now() + SHORT_TIMEOUT);

    // Unused but still usable by whoever holds it: held, and the next payment is refused.
    let err = client(&mw)
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), Refusal::OverBudget { .. }));
    assert_eq!(signed.load(Ordering::SeqCst), 1);

    // Past validBefore by this machine's clock, but the chain has not moved past it yet (no
    // block since): a transaction could still be mined in time, so it stays held.
    while unix_now() <= valid_before {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let report = mw.reconcile().await.unwrap();
    assert_eq!(report.held, vec![pending.ledger_id]);
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);

    // A block at or past validBefore, and still unused: it can never be used. Released.
    s.chain.mine().await.unwrap();
    let report = mw.reconcile().await.unwrap();
    assert_eq!(report.released, vec![pending.ledger_id]);
    assert!(!s
        .chain
        .authorization_used(TestChain::address(2), nonce)
        .await
        .unwrap());
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 0);
    assert_eq!(ledger.count(SpendStatus::Failed).unwrap(), 1);

    // The budget is free again: the next call pays.
    let r = client(&mw)
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.extensions().get::<PaymentReceipt>().is_some());
    assert_eq!(signed.load(Ordering::SeqCst), 2);
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
}

#[tokio::test]
async fn an_unreachable_chain_keeps_the_reservation() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let (mw, _) = s.middleware(3, ledger.clone(), false);
    let r = client(&mw)
        .get(format!("{}/down", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let valid_before = ledger.history(1).unwrap()[0].valid_before.unwrap();
    // A closed port as the RPC endpoint, no grace: expired by every clock, yet unknown.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mw = mw
        .with_rpc_url(s.network.clone(), dead)
        .with_expiry_grace(Duration::ZERO);
    while unix_now() <= valid_before {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let report = mw.reconcile().await.unwrap();
    assert_eq!(report.held.len(), 1);
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);
    // Without any RPC URL and no grace, the expiry by the local clock releases it.
    let (mw, _) = s.middleware(3, ledger.clone(), false);
    let report = mw
        .with_expiry_grace(Duration::ZERO)
        .reconcile()
        .await
        .unwrap();
    assert_eq!(report.released.len(), 1);
    assert_eq!(ledger.count(SpendStatus::Failed).unwrap(), 1);
}

#[tokio::test]
async fn a_payment_identifier_is_attached_when_offered() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let (mw, _) = s.middleware(4, ledger.clone(), true);
    let r = client(&mw)
        .get(format!("{}/offers-id", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.extensions().get::<PaymentReceipt>().is_some());
    let ids = s.payment_ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone().expect("payment-identifier sent");
    assert!(IdempotencyKey::new(&id).is_ok());
    assert_eq!(
        ledger.history(1).unwrap()[0].payment_id.as_deref(),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn no_payment_identifier_unless_offered() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let (mw, _) = s.middleware(5, ledger.clone(), true);
    let r = client(&mw)
        .get(format!("{}/data", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.payment_ids.lock().unwrap().clone(), vec![None]);
    assert_eq!(ledger.history(1).unwrap()[0].payment_id, None);
}

#[tokio::test]
async fn a_pending_settlement_is_retried_with_the_same_payment_and_identifier() {
    let s = shop().await;
    let ledger = SpendLedger::in_memory().unwrap();
    let (mw, signed) = s.middleware(6, ledger.clone(), true);
    let mw = mw.with_pending_retries(2, Duration::from_secs(2));
    let before = s.payee_balance().await;
    let r = client(&mw)
        .get(format!("{}/pending-once", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.extensions().get::<PaymentReceipt>().is_some());
    assert_eq!(r.text().await.unwrap(), "worth the wait");
    // Signed once, sent twice with one id.
    assert_eq!(signed.load(Ordering::SeqCst), 1);
    let ids = s.payment_ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].is_some());
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
    assert_eq!(ledger.history(1).unwrap()[0].payment_id, ids[0]);
    assert_eq!(s.payee_balance().await, before + U256::from(PRICE));
}
