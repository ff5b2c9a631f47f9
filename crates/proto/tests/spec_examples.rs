//! Every JSON example of the x402 v1 and v2 specifications, their HTTP transport texts and the
//! exact-EVM scheme text parses into our types and serializes back to the same JSON.

mod common;

use common::{json, parse, round_trip, text};
use serde_json::Value;
use tollgate_proto::header;
use tollgate_proto::*;

#[test]
fn v2_core_examples() {
    let required: PaymentRequired = round_trip("v2/payment_required.json");
    assert_eq!(required.accepts[0].scheme, Scheme::Exact);
    assert_eq!(required.accepts[0].network, Network::eip155(84532));
    assert_eq!(required.extensions, Some(Extensions::new()));
    let payment: PaymentPayload = round_trip("v2/payment_payload.json");
    assert_eq!(payment.accepted, required.accepts[0]);
    assert_eq!(payment.resource.as_ref(), Some(&required.resource));

    let receipt: SettleResponse = round_trip("v2/settlement_response.json");
    assert!(receipt.success);
    assert_eq!(receipt.network, Network::eip155(84532));
}

#[test]
fn v2_facilitator_examples() {
    let request: FacilitatorRequest = round_trip("v2/verify_request.json");
    assert_eq!(request.version(), X402Version::V2);
    let (payment, requirements) = request.to_v2();
    assert_eq!(payment.accepted, requirements);

    let valid: VerifyResponse = round_trip("v2/verify_response_valid.json");
    assert!(valid.is_valid);
    let invalid: VerifyResponse = round_trip("v2/verify_response_invalid.json");
    assert_eq!(invalid.invalid_reason, Some(ErrorReason::InsufficientFunds));

    let ok: SettleResponse = round_trip("v2/settle_response_success.json");
    assert!(ok.success);
    let failed: SettleResponse = round_trip("v2/settle_response_failure.json");
    assert_eq!(failed.error_reason, Some(ErrorReason::InsufficientFunds));
    assert_eq!(failed.transaction, "");

    let supported: SupportedResponse = round_trip("v2/supported.json");
    assert_eq!(supported.kinds.len(), 4);
    assert!(supported
        .kinds
        .iter()
        .all(|k| k.x402_version == X402Version::V2 && k.scheme == Scheme::Exact));
    assert_eq!(supported.signers["eip155:*"].len(), 1);
    assert_eq!(supported.signers["solana:*"].len(), 1);
}

#[test]
fn v2_discovery_example_carries_v2_requirements() {
    let discovery = json("v2/discovery_resources.json");
    let accepts = &discovery["items"][0]["accepts"];
    let parsed: Vec<PaymentRequirements> = serde_json::from_value(accepts.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&parsed).unwrap(), accepts);
}

#[test]
fn v1_core_examples() {
    let required: PaymentRequiredV1 = round_trip("v1/payment_required.json");
    assert_eq!(required.accepts[0].network.0, Network::eip155(84532));
    assert_eq!(required.accepts[0].output_schema, None);
    let payment: PaymentPayloadV1 = round_trip("v1/payment_payload.json");
    assert_eq!(payment.network.0, Network::eip155(84532));
    let receipt: SettleResponseV1 = round_trip("v1/settlement_response.json");
    assert_eq!(receipt.into_v2().network, Network::eip155(84532));
}

#[test]
fn v1_facilitator_examples() {
    let request: FacilitatorRequest = round_trip("v1/verify_request.json");
    assert_eq!(request.version(), X402Version::V1);
    let valid: VerifyResponse = round_trip("v1/verify_response_valid.json");
    assert!(valid.is_valid);
    let invalid: VerifyResponse = round_trip("v1/verify_response_invalid.json");
    assert_eq!(invalid.invalid_reason, Some(ErrorReason::InsufficientFunds));
    let ok: SettleResponseV1 = round_trip("v1/settle_response_success.json");
    assert_eq!(ok.network.0, Network::eip155(84532));
    let failed: SettleResponseV1 = round_trip("v1/settle_response_failure.json");
    assert_eq!(failed.error_reason, Some(ErrorReason::InsufficientFunds));

    // v1 answers have no `extensions` / `signers`; we always write both (v2 requires them,
    // v1 clients ignore them), so only `kinds` is compared.
    let supported: SupportedResponse = parse("v1/supported.json");
    let expected = json("v1/supported.json");
    assert_eq!(
        serde_json::to_value(&supported).unwrap()["kinds"],
        expected["kinds"]
    );
    let names: Vec<_> = supported
        .kinds
        .iter()
        .map(|k| k.network.v1_name().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "base-sepolia",
            "base",
            "avalanche-fuji",
            "avalanche",
            "iotex"
        ]
    );
}

#[test]
fn v1_discovery_example_carries_v1_requirements() {
    let discovery = json("v1/discovery_resources.json");
    let accepts = &discovery["items"][0]["accepts"];
    let parsed: Vec<PaymentRequirementsV1> = serde_json::from_value(accepts.clone()).unwrap();
    let mut back = serde_json::to_value(&parsed).unwrap();
    common::align_output_schema(&mut back, accepts);
    assert_eq!(&back, accepts);
}

#[test]
fn exact_evm_scheme_examples_are_opaque_payloads() {
    for (name, key) in [
        ("exact_evm/eip3009_payload.json", "authorization"),
        ("exact_evm/permit2_payload.json", "permit2Authorization"),
        ("exact_evm/erc7710_payload.json", "delegationManager"),
    ] {
        let payment: PaymentPayload = round_trip(name);
        assert!(payment.payload.contains_key(key), "{name}");
        assert!(payment.accepted.extra_str("assetTransferMethod").is_some());
    }
}

/// The HTTP transport texts show each header's base64 value next to the JSON it decodes to.
#[test]
fn http_v2_headers_decode_to_their_documented_json() {
    let required: PaymentRequired = header::decode(&text("http_v2/payment_required.b64")).unwrap();
    assert_eq!(required, round_trip("http_v2/payment_required.json"));
    // Our field order is the spec's, so the challenge encodes byte for byte like the example.
    assert_eq!(
        header::encode(&required),
        text("http_v2/payment_required.b64")
    );

    let payment: AnyPaymentPayload =
        header::decode(&text("http_v2/payment_signature.b64")).unwrap();
    let expected: PaymentPayload = round_trip("http_v2/payment_signature.json");
    assert_eq!(payment, AnyPaymentPayload::V2(Box::new(expected.clone())));
    let reencoded: Value = header::decode(&header::encode(&expected)).unwrap();
    assert_eq!(reencoded, json("http_v2/payment_signature.json"));

    for name in ["payment_response_success", "payment_response_failure"] {
        let b64 = text(&format!("http_v2/{name}.b64"));
        let receipt: SettleResponse = header::decode(&b64).unwrap();
        assert_eq!(receipt, round_trip(&format!("http_v2/{name}.json")));
        assert_eq!(header::encode(&receipt), b64, "{name}");
    }
}

#[test]
fn http_v1_examples() {
    let required: PaymentRequiredV1 = round_trip("http_v1/payment_required.json");
    assert_eq!(required.error, "Payment required to access this resource");

    let payment: AnyPaymentPayload = header::decode(&text("http_v1/x_payment.b64")).unwrap();
    let expected: PaymentPayloadV1 = round_trip("http_v1/x_payment.json");
    assert_eq!(payment, AnyPaymentPayload::V1(expected));

    let b64 = text("http_v1/x_payment_response_success.b64");
    let receipt: SettleResponseV1 = header::decode(&b64).unwrap();
    assert_eq!(
        receipt,
        round_trip("http_v1/x_payment_response_success.json")
    );
    assert_eq!(header::encode(&receipt), b64);

    // The failure example shows only the header.
    let b64 = text("http_v1/x_payment_response_failure.b64");
    let receipt: SettleResponseV1 = header::decode(&b64).unwrap();
    assert!(!receipt.success);
    assert_eq!(receipt.error_reason, Some(ErrorReason::InsufficientFunds));
    assert_eq!(receipt.network.0, Network::eip155(84532));
    assert_eq!(header::encode(&receipt), b64);
}
