//! v1 as a thin adapter over v2, and dispatch on `x402Version` for facilitator requests,
//! payments and challenges.

mod common;

use common::{json, parse};
use serde_json::Value;
use tollgate_proto::*;

#[test]
fn v2_challenge_to_v1_and_back() {
    let required: PaymentRequired = parse("v2/payment_required.json");
    let v1 = PaymentRequiredV1::from_v2(&required);
    assert_eq!(v1.error, required.error.clone().unwrap());
    assert_eq!(v1.accepts.len(), required.accepts.len());
    for (v1_req, v2_req) in v1.accepts.iter().zip(&required.accepts) {
        let (back, resource) = v1_req.to_v2();
        assert_eq!(&back, v2_req);
        assert_eq!(resource, required.resource);
        assert_eq!(PaymentRequirementsV1::from_v2(&back, &resource), *v1_req);
    }
    // The v1 form is exactly the spec's v1 example, except for the error text and the
    // example's `"outputSchema": null`, which we omit (the official v1 client rejects null).
    let mut expected = json("v1/payment_required.json");
    expected["error"] = required.error.clone().unwrap().into();
    let mut ours = serde_json::to_value(&v1).unwrap();
    assert!(ours["accepts"][0]
        .as_object()
        .unwrap()
        .get("outputSchema")
        .is_none());
    common::align_output_schema(&mut ours, &expected);
    assert_eq!(ours, expected);
}

#[test]
fn v1_challenge_to_v2_matches_the_v2_example() {
    let v1: PaymentRequiredV1 = parse("v1/payment_required.json");
    let v2: PaymentRequired = parse("v2/payment_required.json");
    let (requirements, resource) = v1.accepts[0].to_v2();
    assert_eq!(requirements, v2.accepts[0]);
    assert_eq!(resource, v2.resource);
}

#[test]
fn payments_convert_both_ways() {
    let v2: PaymentPayload = parse("v2/payment_payload.json");
    let v1 = PaymentPayloadV1::from_v2(&v2);
    assert_eq!(v1, parse::<PaymentPayloadV1>("v1/payment_payload.json"));
    let requirements = PaymentRequirementsV1::from_v2(&v2.accepted, v2.resource.as_ref().unwrap());
    let back = v1.to_v2(&requirements);
    // The spec's v2 example has `extensions: {}`, which v1 cannot carry.
    assert_eq!(
        back,
        PaymentPayload {
            extensions: None,
            ..v2
        }
    );
}

#[test]
fn v1_payment_keeps_its_own_scheme_and_network() {
    let mut body = json("v1/verify_request.json");
    let (payment, requirements) = parse_request(&body).to_v2();
    assert_eq!(payment.accepted, requirements);
    assert_eq!(requirements.network, Network::eip155(84532));
    assert_eq!(
        payment.resource.unwrap().url,
        "https://api.example.com/premium-data"
    );

    body["paymentPayload"]["network"] = "base".into();
    body["paymentPayload"]["scheme"] = "upto".into();
    let (payment, requirements) = parse_request(&body).to_v2();
    assert_eq!(payment.accepted.network, Network::eip155(8453));
    assert_eq!(payment.accepted.scheme, Scheme::Upto);
    assert_eq!(requirements.network, Network::eip155(84532));
    assert_eq!(requirements.scheme, Scheme::Exact);
    assert_ne!(payment.accepted, requirements);
    let v1 = PaymentPayloadV1::from_v2(&payment);
    assert_eq!(serde_json::to_value(&v1).unwrap()["network"], "base");
}

fn parse_request(body: &Value) -> FacilitatorRequest {
    serde_json::from_value(body.clone()).unwrap()
}

#[test]
fn facilitator_request_dispatch() {
    let v1 = parse_request(&json("v1/verify_request.json"));
    assert_eq!(v1.version(), X402Version::V1);
    assert!(matches!(v1, FacilitatorRequest::V1 { .. }));
    let v2 = parse_request(&json("v2/verify_request.json"));
    assert_eq!(v2.version(), X402Version::V2);
    assert!(matches!(v2, FacilitatorRequest::V2 { .. }));
    let (payment, requirements) = v2.to_v2();
    assert_eq!(payment.accepted, requirements);

    let mut body = json("v2/verify_request.json");
    body["x402Version"] = 3.into();
    let err = serde_json::from_value::<FacilitatorRequest>(body)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x402Version") && err.contains('3'), "{err}");

    let mut body = json("v2/verify_request.json");
    body["paymentRequirements"]["amount"] = "12.5".into();
    let err = serde_json::from_value::<FacilitatorRequest>(body)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("paymentRequirements.amount: "), "{err}");

    let mut body = json("v1/verify_request.json");
    body["paymentRequirements"]["network"] = "nowhere".into();
    let err = serde_json::from_value::<FacilitatorRequest>(body)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("paymentRequirements.network: "), "{err}");

    // v1 requirements in a v2 request: the version decides the shape.
    let mut body = json("v1/verify_request.json");
    body["x402Version"] = 2.into();
    assert!(serde_json::from_value::<FacilitatorRequest>(body).is_err());
}

#[test]
fn any_payment_and_challenge_dispatch() {
    let v1: AnyPaymentPayload = serde_json::from_value(json("v1/payment_payload.json")).unwrap();
    assert_eq!(v1.version(), X402Version::V1);
    let v2: AnyPaymentPayload = serde_json::from_value(json("v2/payment_payload.json")).unwrap();
    assert_eq!(v2.version(), X402Version::V2);
    assert_eq!(
        serde_json::to_value(&v2).unwrap(),
        json("v2/payment_payload.json")
    );
    let mut none = json("v2/payment_payload.json");
    none.as_object_mut().unwrap().remove("x402Version");
    assert!(serde_json::from_value::<AnyPaymentPayload>(none).is_err());

    let c1: AnyPaymentRequired = serde_json::from_value(json("v1/payment_required.json")).unwrap();
    assert!(matches!(c1, AnyPaymentRequired::V1(_)));
    let c2: AnyPaymentRequired = serde_json::from_value(json("v2/payment_required.json")).unwrap();
    assert!(matches!(c2, AnyPaymentRequired::V2(_)));
    assert_eq!(
        serde_json::to_value(&c2).unwrap(),
        json("v2/payment_required.json")
    );
}

#[test]
fn unknown_schemes_do_not_break_a_challenge() {
    let mut body = json("v2/payment_required.json");
    let mut later = body["accepts"][0].clone();
    later["scheme"] = "auth-capture".into();
    later["network"] = "stellar:pubnet".into();
    later["someNewField"] = true.into();
    body["accepts"].as_array_mut().unwrap().insert(0, later);
    let required: PaymentRequired = serde_json::from_value(body).unwrap();
    let payable: Vec<_> = required
        .accepts
        .iter()
        .filter(|r| r.scheme.is_known())
        .collect();
    assert_eq!(payable.len(), 1);
    assert_eq!(
        required.accepts[0].scheme,
        Scheme::Unknown("auth-capture".into())
    );

    let mut body = json("v2/payment_required.json");
    body["accepts"][0]["scheme"] = "Exact Payment".into();
    assert!(serde_json::from_value::<PaymentRequired>(body).is_err());
}

#[test]
fn settle_responses_across_versions() {
    let v2: SettleResponse = parse("v2/settle_response_failure.json");
    let v1 = SettleResponseV1::from(v2.clone());
    assert_eq!(
        serde_json::to_value(&v1).unwrap(),
        json("v1/settle_response_failure.json")
    );
    assert_eq!(v1.into_v2(), v2);
}
