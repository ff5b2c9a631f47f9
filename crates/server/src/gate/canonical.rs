//! One spelling per payment: the key of the paywall's in-flight claims and of its store of
//! responses awaiting settlement.
//!
//! A payment arrives as base64 JSON, and the same signed authorization can be spelled many
//! ways: hex digits in either case, keys in any order, an integer as a JSON number or a string,
//! with or without leading zeros. Keying a guard on the header's bytes lets each spelling pass
//! as a "different" payment, so the paywall keys on a canonical form instead.
//!
//! This crate knows no chain (the scheme payload is opaque to it), so the form is generic:
//! the payload parsed as JSON, object keys sorted, every `0x…` hex string lower-cased, every
//! integer (a JSON number, or a string of decimal digits) written as a decimal string without
//! leading zeros. Two spellings of one payment map to one key; two different payments never
//! do, unless they differ only in ways the chain does not see either.
//!
//! This guard is per process and only as precise as a generic form can be (a scheme may have
//! several *valid* encodings of one authorization, e.g. another signature encoding). The
//! authoritative guard is the facilitator's: it reserves the payment by its scheme's canonical
//! identity (network, asset, payer, nonce) for the first attempt that verified it, across
//! every paywall and replica in front of it. This key is the cheap first line that keeps one
//! process from running its handler twice for one payment.

use serde_json::{Map, Value};
use tollgate_proto::{Network, Scheme};

/// The canonical key of a payment of `scheme` on `network` with scheme payload `payload`.
///
/// Written straight into the key (no canonical copy of the payload is built): every paid
/// request computes one.
pub(crate) fn payment_key(
    scheme: &Scheme,
    network: &Network,
    payload: &Map<String, Value>,
) -> String {
    let mut key = format!("{scheme}|{network}|");
    write_object(&mut key, payload);
    key
}

/// An object with its keys sorted, its values canonical.
fn write_object(out: &mut String, object: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = object.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (n, (k, v)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Object(o) => write_object(out, o),
        Value::Array(a) => {
            out.push('[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_value(out, v);
            }
            out.push(']');
        }
        Value::String(s) => write_str(out, &canonical_string(s)),
        Value::Number(n) => write_str(
            out,
            &match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u.to_string(),
                (None, Some(i)) => i.to_string(),
                _ => n.to_string(),
            },
        ),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Null => out.push_str("null"),
    }
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
fn write_str(out: &mut String, s: &str) {
    // Serializing a `str` cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn canonical_string(s: &str) -> String {
    let bytes = s.as_bytes();
    let is_hex = bytes.len() >= 2
        && bytes[0] == b'0'
        && (bytes[1] == b'x' || bytes[1] == b'X')
        && bytes[2..].iter().all(u8::is_ascii_hexdigit);
    if is_hex {
        return s.to_ascii_lowercase();
    }
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        let trimmed = s.trim_start_matches('0');
        return if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        };
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(v: Value) -> String {
        payment_key(
            &Scheme::Exact,
            &"eip155:8453".parse().unwrap(),
            v.as_object().unwrap(),
        )
    }

    /// The key as first written: a canonical copy of the payload, serialized.
    fn reference_key(scheme: &Scheme, network: &Network, payload: &Map<String, Value>) -> String {
        fn object(o: &Map<String, Value>) -> Value {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), value(&o[k]));
            }
            Value::Object(out)
        }
        fn value(v: &Value) -> Value {
            match v {
                Value::Object(o) => object(o),
                Value::Array(a) => Value::Array(a.iter().map(value).collect()),
                Value::String(s) => Value::String(canonical_string(s)),
                Value::Number(n) => Value::String(match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => u.to_string(),
                    (None, Some(i)) => i.to_string(),
                    _ => n.to_string(),
                }),
                Value::Bool(_) | Value::Null => v.clone(),
            }
        }
        format!(
            "{scheme}|{network}|{}",
            serde_json::to_string(&object(payload)).unwrap()
        )
    }

    #[test]
    fn the_streamed_key_is_the_serialized_canonical_copy() {
        let network: Network = "eip155:8453".parse().unwrap();
        for payload in [
            json!({}),
            json!({"b": [1, -2, 3.5, "0x0A", "007", "", null, true, false, {"z": {}, "a": []}], "a": "x"}),
            json!({"q\"uote": "line\nbreak\t\u{1}é€", "ü": {"0XfF": "0XfF", "n": 18446744073709551615u64}}),
            json!({"type": "voucher", "voucher": {"channelId": "0xAB", "maxClaimableAmount": "0002000", "signature": "0x1b"}}),
            json!({"deep": [[[{"k": [-9223372036854775808i64, 1e300]}]]]}),
        ] {
            let payload = payload.as_object().unwrap();
            assert_eq!(
                payment_key(&Scheme::Exact, &network, payload),
                reference_key(&Scheme::Exact, &network, payload)
            );
        }
    }

    #[test]
    fn spellings_of_one_payment_share_a_key() {
        let a = key(json!({
            "signature": "0xabcdef01",
            "authorization": {"from": "0xAbCd", "value": "1000", "nonce": "0x0f", "validAfter": 5}
        }));
        let b = key(json!({
            "authorization": {"validAfter": "005", "nonce": "0X0F", "value": 1000, "from": "0xABCD"},
            "signature": "0xABCDEF01"
        }));
        assert_eq!(a, b);
    }

    #[test]
    fn different_payments_do_not() {
        let a = key(json!({"authorization": {"nonce": "0x01"}, "signature": "0xaa"}));
        for other in [
            json!({"authorization": {"nonce": "0x02"}, "signature": "0xaa"}),
            json!({"authorization": {"nonce": "0x01"}, "signature": "0xab"}),
            json!({"authorization": {"nonce": "0x01", "extra": true}, "signature": "0xaa"}),
            json!({"authorization": {"nonce": "0x01"}, "signature": "aa"}),
        ] {
            assert_ne!(a, key(other));
        }
        // Non-hex text keeps its case.
        assert_ne!(key(json!({"memo": "Hello"})), key(json!({"memo": "hello"})));
        // The network is part of the key.
        let payload = json!({"n": 1});
        assert_ne!(
            key(payload.clone()),
            payment_key(
                &Scheme::Exact,
                &"eip155:1".parse().unwrap(),
                payload.as_object().unwrap()
            )
        );
    }
}
