//! The paywall's refusal labels through the tower layer: a facilitator may answer with any
//! reason code (a scheme's own, `invalid_exact_evm_*`, is no longer a variant of the protocol
//! crate's `ErrorReason`), and each is a metrics label until the paywall holds
//! `ReasonLabelSet::MAX` of them; further codes are labelled `other`, while the buyer still
//! reads the facilitator's exact code in the 402.
//!
//! The facilitator is a stand-in that refuses every payment with the code it is told, and the
//! scheme a toy one, so no chain is needed; the paywall, its gate and axum are the real ones.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tollgate_core::BoxFuture;
use tollgate_proto::{
    header, ErrorReason, FacilitatorRequest, IdempotencyKey, PaymentPayload, PaymentRequired,
    SettleResponse, SupportedResponse, VerifyResponse,
};
use tollgate_server::paywall::outcome::{ReasonLabelSet, OTHER_REASON};
use tollgate_server::paywall::PaywallOutcome;
use tollgate_server::{Facilitator, FacilitatorError, PaymentOption, PaywallLayer, RoutePrice};
use tower_layer::Layer;
use tower_service::Service;

/// Refuses every `/verify` with the code last set; never settles.
#[derive(Clone, Default)]
struct Refuser(Arc<Mutex<String>>);

impl Refuser {
    fn answer_with(&self, code: &str) {
        *self.0.lock().unwrap() = code.to_owned();
    }
}

impl Facilitator for Refuser {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
        _: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        let code = self.0.lock().unwrap().clone();
        Box::pin(async move {
            Ok(VerifyResponse::invalid(
                ErrorReason::from(code),
                Some("refused by the test".into()),
                Some("bob".into()),
            ))
        })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
        _: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Unavailable("never settles".into())) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

type App = tollgate_server::paywall::Paywall<axum::Router, Refuser>;

fn paywall(facilitator: &Refuser) -> App {
    let price = RoutePrice::new(PaymentOption::new(
        "toy".parse().unwrap(),
        "toy:1".parse().unwrap(),
        "TOY",
        5u64.into(),
        "alice",
    ));
    let layer = PaywallLayer::new(facilitator.clone())
        .route("GET /toy", price)
        .unwrap();
    let router = axum::Router::new().route("/toy", axum::routing::get(|| async { "the report" }));
    layer.layer(router)
}

async fn send(app: &mut App, request: Request<Body>) -> Response<Body> {
    poll_fn(|cx| app.poll_ready(cx)).await.unwrap();
    app.call(request).await.unwrap()
}

/// The requirements of the toy route, from its challenge.
async fn challenge(app: &mut App) -> PaymentRequired {
    let response = send(app, Request::get("/toy").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    header::payment_required_from_headers(response.headers())
        .unwrap()
        .unwrap()
}

/// Pays with nonce `n` (each payment distinct, so none is refused as in use); returns the
/// label the paywall left on the 402 and the code the buyer reads in it.
async fn refused(app: &mut App, required: &PaymentRequired, n: usize) -> (String, String) {
    let payload: PaymentPayload = serde_json::from_value(serde_json::json!({
        "x402Version": 2,
        "accepted": required.accepts[0],
        "payload": {"nonce": n.to_string(), "from": "bob"},
    }))
    .unwrap();
    let request = Request::get("/toy")
        .header(header::PAYMENT_SIGNATURE, header::encode(&payload))
        .body(Body::empty())
        .unwrap();
    let response = send(app, request).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let label = match response.extensions().get::<PaywallOutcome>() {
        Some(PaywallOutcome::Refused { reason }) => reason.to_string(),
        other => panic!("payment {n}: {other:?}"),
    };
    let error = header::payment_required_from_headers(response.headers())
        .unwrap()
        .unwrap()
        .error
        .unwrap_or_default();
    (label, error)
}

#[tokio::test]
async fn each_paywall_labels_at_most_max_distinct_scheme_codes() {
    let facilitator = Refuser::default();
    let mut app = paywall(&facilitator);
    let required = challenge(&mut app).await;

    // A scheme's own code, as the EVM crate sends it: labelled as itself.
    facilitator.answer_with("invalid_exact_evm_signature");
    let (label, error) = refused(&mut app, &required, 0).await;
    assert_eq!(label, "invalid_exact_evm_signature");
    assert!(error.contains("invalid_exact_evm_signature"), "{error}");

    // Fill the set: MAX distinct non-generic codes in all.
    for i in 1..ReasonLabelSet::MAX {
        let code = format!("scheme_code_{i}");
        facilitator.answer_with(&code);
        assert_eq!(refused(&mut app, &required, i).await.0, code);
    }
    // The next new codes are `other` — the buyer still reads the exact code.
    let mut n = ReasonLabelSet::MAX;
    for code in [
        "scheme_code_64",
        "invalid_exact_svm_transaction",
        "scheme_code_99",
    ] {
        facilitator.answer_with(code);
        let (label, error) = refused(&mut app, &required, n).await;
        assert_eq!(label, OTHER_REASON, "{code}");
        assert!(error.contains(code), "{error}");
        n += 1;
    }
    // Codes seen before the bound keep their label; generic codes always pass.
    for code in [
        "invalid_exact_evm_signature",
        "scheme_code_63",
        "insufficient_funds",
    ] {
        facilitator.answer_with(code);
        assert_eq!(refused(&mut app, &required, n).await.0, code);
        n += 1;
    }
    // A word that is not shaped like a code is not a label at all.
    facilitator.answer_with("Not A Code");
    assert_eq!(refused(&mut app, &required, n).await.0, "refused");

    // Another paywall instance counts its own codes.
    let mut other = paywall(&facilitator);
    facilitator.answer_with("scheme_code_99");
    assert_eq!(
        refused(&mut other, &required, n + 1).await.0,
        "scheme_code_99"
    );
}
