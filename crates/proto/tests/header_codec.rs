//! The header codec: round trips, the size cap, error reporting, version-aware lookup, and a
//! fuzz-style loop showing that decoding never panics.

mod common;

use base64::Engine;
use common::{parse, XorShift};
use http::{HeaderMap, HeaderName, HeaderValue};
use tollgate_proto::header::{self, HeaderError, MAX_HEADER_BYTES};
use tollgate_proto::*;

fn payment() -> PaymentPayload {
    parse("v2/payment_payload.json")
}

#[test]
fn header_names() {
    assert_eq!(header::PAYMENT_REQUIRED.as_str(), "payment-required");
    assert_eq!(header::PAYMENT_SIGNATURE.as_str(), "payment-signature");
    assert_eq!(header::PAYMENT_RESPONSE.as_str(), "payment-response");
    assert_eq!(header::X_PAYMENT.as_str(), "x-payment");
    assert_eq!(header::X_PAYMENT_RESPONSE.as_str(), "x-payment-response");
    assert_eq!(MAX_HEADER_BYTES, 16 * 1024);
}

#[test]
fn round_trips_in_every_base64_dialect() {
    let payment = payment();
    let encoded = header::encode(&payment);
    assert!(encoded.len().is_multiple_of(4));
    match header::decode::<AnyPaymentPayload>(&encoded).unwrap() {
        AnyPaymentPayload::V2(p) => assert_eq!(*p, payment),
        other => panic!("decoded as {other:?}"),
    }
    let json = serde_json::to_vec(&payment).unwrap();
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for encoded in [
        STANDARD_NO_PAD.encode(&json),
        URL_SAFE.encode(&json),
        URL_SAFE_NO_PAD.encode(&json),
        format!("  {encoded}\t"),
    ] {
        assert_eq!(header::decode::<PaymentPayload>(&encoded).unwrap(), payment);
    }
    let v1: PaymentPayloadV1 = parse("v1/payment_payload.json");
    assert_eq!(
        header::decode::<AnyPaymentPayload>(&header::encode(&v1)).unwrap(),
        AnyPaymentPayload::V1(v1)
    );
}

#[test]
fn oversized_values_are_refused_before_decoding() {
    // Not even base64: only the size can be reported if the cap is checked first.
    let too_big = "!".repeat(MAX_HEADER_BYTES + 1);
    assert_eq!(
        header::decode::<PaymentPayload>(&too_big),
        Err(HeaderError::TooLarge {
            len: MAX_HEADER_BYTES + 1,
            max: MAX_HEADER_BYTES
        })
    );
    // Whitespace counts: the cap is on what was received.
    let padded = format!(
        "{}{}",
        " ".repeat(MAX_HEADER_BYTES),
        header::encode(&payment())
    );
    assert!(matches!(
        header::decode::<PaymentPayload>(&padded),
        Err(HeaderError::TooLarge { .. })
    ));
    // A valid payment inflated past the cap by a long string is refused too.
    let mut big = payment();
    big.payload
        .insert("padding".into(), "x".repeat(MAX_HEADER_BYTES).into());
    let encoded = header::encode(&big);
    assert!(matches!(
        header::decode::<PaymentPayload>(&encoded),
        Err(HeaderError::TooLarge { .. })
    ));
    let mut headers = HeaderMap::new();
    headers.insert(header::X_PAYMENT, HeaderValue::from_str(&encoded).unwrap());
    assert!(matches!(
        header::payment_from_headers(&headers),
        Some(Err(HeaderError::TooLarge { .. }))
    ));
    // Exactly at the cap is decoded (and fails only for what it is).
    let at_cap = "A".repeat(MAX_HEADER_BYTES);
    assert!(!matches!(
        header::decode::<PaymentPayload>(&at_cap),
        Err(HeaderError::TooLarge { .. })
    ));
}

#[test]
fn bad_base64_and_non_ascii() {
    for bad in ["%%%not-base64%%%", "ab=c", "a b c d", "e30=e30=", "e30*"] {
        assert!(
            matches!(
                header::decode::<PaymentPayload>(bad),
                Err(HeaderError::Base64(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        header::decode::<PaymentPayload>("eyJ9é"),
        Err(HeaderError::NotAscii)
    );
    let msg = header::decode::<PaymentPayload>("%%%")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not base64"), "{msg}");
}

#[test]
fn json_errors_name_the_failing_field() {
    let payment = payment();
    let mut bad = serde_json::to_value(&payment).unwrap();
    bad["accepted"]["amount"] = "-1".into();
    let encoded = header::encode(&bad);
    for err in [
        header::decode::<PaymentPayload>(&encoded).unwrap_err(),
        // Through the version dispatch, too.
        header::decode::<AnyPaymentPayload>(&encoded).unwrap_err(),
    ] {
        match err {
            HeaderError::Json { path, message } => {
                assert_eq!(path, "accepted.amount");
                assert!(message.contains("negative"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    let mut request: serde_json::Value = common::json("v2/verify_request.json");
    request["paymentRequirements"]["network"] = "base".into();
    match header::decode::<FacilitatorRequest>(&header::encode(&request)).unwrap_err() {
        HeaderError::Json { path, message } => {
            assert_eq!(path, "paymentRequirements.network");
            assert!(message.contains("eip155:8453"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let mut supported = common::json("v2/supported.json");
    supported["kinds"][1]["network"] = "nowhere".into();
    match header::decode::<SupportedResponse>(&header::encode(&supported)).unwrap_err() {
        HeaderError::Json { path, .. } => assert_eq!(path, "kinds[1].network"),
        other => panic!("{other:?}"),
    }

    // Not JSON at all, and JSON with trailing garbage.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert!(matches!(
        header::decode::<PaymentPayload>(&b64("not json")),
        Err(HeaderError::Json { .. })
    ));
    assert!(matches!(
        header::decode::<VerifyResponse>(&b64(r#"{"isValid":true} x"#)),
        Err(HeaderError::Json { .. })
    ));
    assert!(matches!(
        header::decode::<VerifyResponse>(""),
        Err(HeaderError::Json { .. })
    ));
}

#[test]
fn wrong_version_is_reported() {
    let mut v1_tagged = serde_json::to_value(payment()).unwrap();
    v1_tagged["x402Version"] = 1.into();
    let err = header::decode::<PaymentPayload>(&header::encode(&v1_tagged)).unwrap_err();
    assert!(
        err.to_string().contains("expected x402Version 2, got 1"),
        "{err}"
    );
    assert!(matches!(&err, HeaderError::Json { path, .. } if path == "x402Version"));

    let mut v3 = serde_json::to_value(payment()).unwrap();
    v3["x402Version"] = 3.into();
    match header::decode::<AnyPaymentPayload>(&header::encode(&v3)).unwrap_err() {
        HeaderError::Json { path, message } => {
            assert_eq!(path, "x402Version");
            assert!(message.contains("unsupported x402Version 3"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn header_lookup_is_case_insensitive_and_version_aware() {
    let v2 = payment();
    let v1: PaymentPayloadV1 = parse("v1/payment_payload.json");

    let h = headers(&[("Payment-Signature", header::encode(&v2))]);
    assert!(matches!(
        header::payment_from_headers(&h),
        Some(Ok(AnyPaymentPayload::V2(_)))
    ));
    let h = headers(&[("X-PAYMENT", header::encode(&v1))]);
    assert_eq!(
        header::payment_from_headers(&h),
        Some(Ok(AnyPaymentPayload::V1(v1.clone())))
    );
    // A v1 payment sent in the v2 header is still accepted, as v1.
    let h = headers(&[("PAYMENT-SIGNATURE", header::encode(&v1))]);
    assert_eq!(
        header::payment_from_headers(&h),
        Some(Ok(AnyPaymentPayload::V1(v1.clone())))
    );
    // Both present: the v2 header wins.
    let h = headers(&[
        ("x-payment", header::encode(&v1)),
        ("payment-signature", header::encode(&v2)),
    ]);
    assert!(matches!(
        header::payment_from_headers(&h),
        Some(Ok(AnyPaymentPayload::V2(_)))
    ));
    assert!(header::payment_from_headers(&HeaderMap::new()).is_none());
    let h = headers(&[("Payment-Signature", "%%%".to_owned())]);
    assert!(matches!(
        header::payment_from_headers(&h),
        Some(Err(HeaderError::Base64(_)))
    ));

    let required: PaymentRequired = parse("v2/payment_required.json");
    let h = headers(&[("PAYMENT-REQUIRED", header::encode(&required))]);
    assert_eq!(
        header::payment_required_from_headers(&h),
        Some(Ok(required))
    );
    assert!(header::payment_required_from_headers(&HeaderMap::new()).is_none());

    let receipt: SettleResponse = parse("v2/settle_response_success.json");
    let h = headers(&[("Payment-Response", header::encode(&receipt))]);
    assert_eq!(
        header::settle_response_from_headers(&h),
        Some(Ok(receipt.clone()))
    );
    let receipt_v1: SettleResponseV1 = parse("v1/settle_response_success.json");
    let h = headers(&[("X-Payment-Response", header::encode(&receipt_v1))]);
    let converted = header::settle_response_from_headers(&h).unwrap().unwrap();
    assert_eq!(converted, receipt_v1.into_v2());
    assert_eq!(converted.network, Network::eip155(84532));
    assert!(header::settle_response_from_headers(&HeaderMap::new()).is_none());
}

#[test]
fn decoding_random_and_mutated_headers_never_panics() {
    let valid = header::encode(&payment());
    let valid_v1 = header::encode(&parse::<PaymentPayloadV1>("v1/payment_payload.json"));
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ ";
    let mut decoded = 0;
    for round in 0..20_000 {
        let candidate: String = match round % 4 {
            // Random base64-alphabet strings.
            0 => {
                let len = rng.below(600);
                (0..len)
                    .map(|_| B64[rng.below(B64.len())] as char)
                    .collect()
            }
            // Random bytes (lossily made a string: that is what a header value can be).
            1 => {
                let len = rng.below(300);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            // A few characters of a valid header replaced.
            2 => {
                let source = if rng.below(2) == 0 { &valid } else { &valid_v1 };
                let mut bytes = source.clone().into_bytes();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(bytes.len());
                    bytes[i] = B64[rng.below(B64.len())];
                }
                String::from_utf8(bytes).unwrap()
            }
            // Base64 of a valid JSON message with bytes flipped, truncated or extended.
            _ => {
                let mut json = serde_json::to_vec(&payment()).unwrap();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(json.len());
                    match rng.below(3) {
                        0 => json[i] = rng.next_u64() as u8,
                        1 => json.truncate(i),
                        _ => json.insert(i, b"{}[]\":,0-9e"[rng.below(11)]),
                    }
                    if json.is_empty() {
                        break;
                    }
                }
                base64::engine::general_purpose::STANDARD.encode(&json)
            }
        };
        if header::decode::<AnyPaymentPayload>(&candidate).is_ok() {
            decoded += 1;
        }
        let _ = header::decode::<FacilitatorRequest>(&candidate);
        let _ = header::decode::<PaymentRequired>(&candidate);
        let _ = header::decode::<SettleResponse>(&candidate);
    }
    // Mutations inside string values (signature hex, nonce) can still decode; most must not.
    assert!(decoded < 10_000, "{decoded} of 20000 random inputs decoded");
}
