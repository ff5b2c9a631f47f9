//! Every JSON example of the v1 and v2 specifications parses into our types and serializes
//! back to the same JSON; header codecs; version dispatch; decoding never panics.

use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tollgate_proto::header::{self, HeaderError};
use tollgate_proto::v1::{PaymentPayloadV1, PaymentRequiredV1};
use tollgate_proto::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Parses the spec's example and checks the re-serialization is the same JSON value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let json = fixture(name);
    let parsed: T = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut back = serde_json::to_value(&parsed).unwrap();
    let mut expected = json;
    // The spec's examples disagree on whether an absent `outputSchema` is `null` or omitted,
    // and sometimes write empty `extensions: {}`; compare without those.
    for v in [&mut back, &mut expected] {
        strip_empty(v);
    }
    assert_eq!(back, expected, "{name} does not round-trip");
    parsed
}

fn strip_empty(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, v| !v.is_null() && !matches!(v, Value::Object(m) if m.is_empty()));
        map.values_mut().for_each(strip_empty);
    }
}

#[test]
fn v2_spec_examples_round_trip() {
    let required: PaymentRequired = round_trip("v2_payment_required.json");
    assert_eq!(required.accepts[0].scheme, Scheme::Exact);
    assert_eq!(required.accepts[0].network, Network::eip155(84532));
    let payload: PaymentPayload = round_trip("v2_payment_payload.json");
    assert_eq!(payload.accepted, required.accepts[0]);
    let _: PaymentPayload = round_trip("exact_evm_payload.json");
    let request: FacilitatorRequest = round_trip("v2_verify_request.json");
    assert_eq!(request.version(), X402Version::V2);
    let valid: VerifyResponse = round_trip("v2_verify_valid.json");
    assert!(valid.is_valid);
    let invalid: VerifyResponse = round_trip("v2_verify_invalid.json");
    assert_eq!(invalid.invalid_reason, Some(ErrorReason::InsufficientFunds));
    let ok: SettleResponse = round_trip("v2_settle_success.json");
    assert!(ok.success);
    let failed: SettleResponse = round_trip("v2_settle_failure.json");
    assert_eq!(failed.transaction, "");
    let supported: SupportedResponse = round_trip("v2_supported.json");
    assert_eq!(supported.kinds.len(), 4);
    assert_eq!(supported.signers["eip155:*"].len(), 1);
}

#[test]
fn v1_spec_examples_round_trip() {
    let required: PaymentRequiredV1 = round_trip("v1_payment_required.json");
    assert_eq!(required.accepts[0].network.0, Network::eip155(84532));
    let _: PaymentPayloadV1 = round_trip("v1_payment_payload.json");
    let request: FacilitatorRequest = round_trip("v1_verify_request.json");
    assert_eq!(request.version(), X402Version::V1);
    let ok: SettleResponseV1 = round_trip("v1_settle_success.json");
    assert_eq!(ok.clone().into_v2().network, Network::eip155(84532));
    let supported: SupportedResponse =
        serde_json::from_value(fixture("v1_supported.json")).unwrap();
    let back = serde_json::to_value(&supported).unwrap();
    assert_eq!(back["kinds"], fixture("v1_supported.json")["kinds"]);
}

#[test]
fn v1_is_a_thin_adapter_over_v2() {
    let required: PaymentRequired =
        serde_json::from_value(fixture("v2_payment_required.json")).unwrap();
    let v1 = PaymentRequiredV1::from_v2(&required);
    assert_eq!(v1.accepts.len(), required.accepts.len());
    let (req2, resource) = v1.accepts[0].to_v2();
    assert_eq!(req2, required.accepts[0]);
    assert_eq!(resource.url, required.resource.url);
    assert_eq!(resource.description, required.resource.description);
    let json = serde_json::to_value(&v1).unwrap();
    assert_eq!(json["accepts"][0]["network"], "base-sepolia");
    assert_eq!(json["accepts"][0]["maxAmountRequired"], "10000");

    // A v1 facilitator request normalizes to v2, keeping the payload's own network.
    let request: FacilitatorRequest =
        serde_json::from_value(fixture("v1_verify_request.json")).unwrap();
    let (payment, requirements) = request.to_v2();
    assert_eq!(payment.accepted, requirements);
    let mut json = fixture("v1_verify_request.json");
    json["paymentPayload"]["network"] = "base".into();
    let request: FacilitatorRequest = serde_json::from_value(json).unwrap();
    let (payment, requirements) = request.to_v2();
    assert_eq!(payment.accepted.network, Network::eip155(8453));
    assert_eq!(requirements.network, Network::eip155(84532));
    let v1_payment = PaymentPayloadV1::from_v2(&payment);
    assert_eq!(
        serde_json::to_value(&v1_payment).unwrap()["network"],
        "base"
    );
}

#[test]
fn version_dispatch_reports_the_failing_field() {
    let mut json = fixture("v2_verify_request.json");
    json["x402Version"] = 3.into();
    let err = serde_json::from_value::<FacilitatorRequest>(json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x402Version"), "{err}");

    let mut json = fixture("v2_verify_request.json");
    json["paymentRequirements"]["amount"] = "12.5".into();
    let err = serde_json::from_value::<FacilitatorRequest>(json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("paymentRequirements.amount"), "{err}");

    let mut json = fixture("v2_payment_payload.json");
    json.as_object_mut().unwrap().remove("x402Version");
    assert!(serde_json::from_value::<AnyPaymentPayload>(json).is_err());
}

#[test]
fn header_codec_round_trips_and_reports_paths() {
    let payment: PaymentPayload =
        serde_json::from_value(fixture("v2_payment_payload.json")).unwrap();
    let encoded = header::encode(&payment);
    match header::decode::<AnyPaymentPayload>(&encoded).unwrap() {
        AnyPaymentPayload::V2(p) => assert_eq!(*p, payment),
        other => panic!("decoded as {other:?}"),
    }
    // URL-safe and unpadded encodings of the same JSON decode too.
    use base64::Engine;
    let json = serde_json::to_vec(&payment).unwrap();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&json);
    assert_eq!(header::decode::<PaymentPayload>(&url).unwrap(), payment);

    let too_big = "A".repeat(header::MAX_HEADER_BYTES + 1);
    assert!(matches!(
        header::decode::<PaymentPayload>(&too_big),
        Err(HeaderError::TooLarge { .. })
    ));
    assert!(matches!(
        header::decode::<PaymentPayload>("%%%not-base64%%%"),
        Err(HeaderError::Base64(_))
    ));
    let mut bad = serde_json::to_value(&payment).unwrap();
    bad["accepted"]["amount"] = "-1".into();
    let err = header::decode::<PaymentPayload>(&header::encode(&bad)).unwrap_err();
    match err {
        HeaderError::Json { path, message } => {
            assert_eq!(path, "accepted.amount");
            assert!(message.contains("negative"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut wrong_version = serde_json::to_value(&payment).unwrap();
    wrong_version["x402Version"] = 1.into();
    let err = header::decode::<PaymentPayload>(&header::encode(&wrong_version)).unwrap_err();
    assert!(
        err.to_string().contains("expected x402Version 2, got 1"),
        "{err}"
    );
}

#[test]
fn header_lookup_is_case_insensitive_and_version_aware() {
    let payment: PaymentPayload =
        serde_json::from_value(fixture("v2_payment_payload.json")).unwrap();
    let v1: PaymentPayloadV1 = serde_json::from_value(fixture("v1_payment_payload.json")).unwrap();

    let mut headers = HeaderMap::new();
    headers.insert(
        http::HeaderName::from_bytes(b"Payment-Signature").unwrap(),
        HeaderValue::from_str(&header::encode(&payment)).unwrap(),
    );
    assert!(matches!(
        header::payment_from_headers(&headers),
        Some(Ok(AnyPaymentPayload::V2(_)))
    ));

    let mut headers = HeaderMap::new();
    headers.insert(
        http::HeaderName::from_bytes(b"X-PAYMENT").unwrap(),
        HeaderValue::from_str(&header::encode(&v1)).unwrap(),
    );
    assert!(matches!(
        header::payment_from_headers(&headers),
        Some(Ok(AnyPaymentPayload::V1(_)))
    ));
    assert!(header::payment_from_headers(&HeaderMap::new()).is_none());

    let settle: SettleResponseV1 =
        serde_json::from_value(fixture("v1_settle_success.json")).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-payment-response",
        HeaderValue::from_str(&header::encode(&settle)).unwrap(),
    );
    let receipt = header::settle_response_from_headers(&headers)
        .unwrap()
        .unwrap();
    assert_eq!(receipt.network, Network::eip155(84532));

    let required: PaymentRequired =
        serde_json::from_value(fixture("v2_payment_required.json")).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "PAYMENT-REQUIRED",
        HeaderValue::from_str(&header::encode(&required)).unwrap(),
    );
    assert_eq!(
        header::payment_required_from_headers(&headers)
            .unwrap()
            .unwrap(),
        required
    );
}

#[test]
fn decoding_random_and_mutated_headers_never_panics() {
    let valid = header::encode(
        &serde_json::from_value::<PaymentPayload>(fixture("v2_payment_payload.json")).unwrap(),
    );
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_";
    let mut accepted = 0;
    for round in 0..20_000 {
        let candidate: String = if round % 2 == 0 {
            let len = (next() % 600) as usize;
            (0..len)
                .map(|_| B64[(next() % B64.len() as u64) as usize] as char)
                .collect()
        } else {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..(1 + next() % 4) {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = B64[(next() % B64.len() as u64) as usize];
            }
            String::from_utf8(bytes).unwrap()
        };
        if header::decode::<AnyPaymentPayload>(&candidate).is_ok() {
            accepted += 1;
        }
        let _ = header::decode::<FacilitatorRequest>(&candidate);
        let _ = header::decode::<PaymentRequired>(&candidate);
    }
    // Mutations inside signature hex or string values can still decode; most must not.
    assert!(
        accepted < 10_000,
        "{accepted} of 20000 random inputs decoded"
    );
}
