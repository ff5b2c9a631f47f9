//! HTTP header names and the base64-of-JSON codec every x402 header uses.
//!
//! | version | challenge (402) | payment (client → server) | receipt (server → client) |
//! |---|---|---|---|
//! | v1 | JSON body | `X-PAYMENT` | `X-PAYMENT-RESPONSE` |
//! | v2 | `PAYMENT-REQUIRED` | `PAYMENT-SIGNATURE` | `PAYMENT-RESPONSE` |
//!
//! Every value is base64 of a compact JSON message. Names are `http::HeaderName` constants in
//! lower case; `HeaderMap` lookups are case-insensitive, so `Payment-Signature` and
//! `PAYMENT-SIGNATURE` both match. Decoding checks a size cap before doing any work and never
//! panics on input: these headers arrive from anyone on the internet.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::facilitator::{SettleResponse, SettleResponseV1};
use crate::versioned::AnyPaymentPayload;
use crate::PaymentRequired;

/// v2 challenge header.
pub const PAYMENT_REQUIRED: HeaderName = HeaderName::from_static("payment-required");
/// v2 payment header.
pub const PAYMENT_SIGNATURE: HeaderName = HeaderName::from_static("payment-signature");
/// v2 receipt header.
pub const PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("payment-response");
/// v1 payment header.
pub const X_PAYMENT: HeaderName = HeaderName::from_static("x-payment");
/// v1 receipt header.
pub const X_PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("x-payment-response");

/// Largest header value decoded. Real payments are under 2 KiB; the cap bounds the work an
/// attacker can cause per request.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why a header value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Over [`MAX_HEADER_BYTES`]; refused before any decoding work.
    #[error("header value is {len} bytes, over the {max}-byte limit: an x402 header is base64 of a compact JSON message, a few KiB at most")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes outside visible ASCII.
    #[error(
        "header value contains non-ASCII bytes: x402 headers carry base64, which is plain ASCII"
    )]
    NotAscii,
    /// Not base64.
    #[error("header value is not base64 ({0}): send base64 (standard or URL-safe alphabet) of the JSON message")]
    Base64(String),
    /// Base64 of something that is not the expected JSON message.
    #[error("header JSON is invalid at `{path}`: {message}")]
    Json {
        /// The failing field, e.g. `accepted.amount`; `.` for the value as a whole.
        path: String,
        /// What is wrong there.
        message: String,
    },
}

/// Encodes a message as standard base64 (with padding) of its compact JSON — the form every
/// x402 header uses.
///
/// Serializing this crate's types cannot fail (they hold only strings, numbers, booleans and
/// string-keyed maps); for a foreign type whose `Serialize` fails the result is empty.
///
/// ```
/// use tollgate_proto::{header, VerifyResponse};
/// let h = header::encode(&VerifyResponse::valid("0xabc"));
/// assert_eq!(h, "eyJpc1ZhbGlkIjp0cnVlLCJwYXllciI6IjB4YWJjIn0=");
/// let back: VerifyResponse = header::decode(&h).unwrap();
/// assert!(back.is_valid);
/// ```
pub fn encode<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    STANDARD.encode(json)
}

/// [`encode`] as an [`http::HeaderValue`], ready to insert into a `HeaderMap`.
///
/// ```
/// use tollgate_proto::{header, Network, SettleResponse};
/// let mut headers = http::HeaderMap::new();
/// let receipt = SettleResponse::success("0x12", Network::eip155(8453), "0xabc");
/// headers.insert(header::PAYMENT_RESPONSE, header::to_header_value(&receipt));
/// assert_eq!(header::settle_response_from_headers(&headers).unwrap().unwrap(), receipt);
/// ```
pub fn to_header_value<T: Serialize>(value: &T) -> HeaderValue {
    // Base64 is visible ASCII, which is always a valid header value.
    HeaderValue::from_str(&encode(value)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Decodes a header value: size cap first (before trimming or any other work), then surrounding
/// whitespace trimmed, then base64 (standard or URL-safe alphabet, padded or not), then JSON.
/// A JSON error names the failing field (`accepted.amount`), also inside messages that dispatch
/// on `x402Version` such as [`AnyPaymentPayload`]. Never panics, whatever the input.
///
/// ```
/// use tollgate_proto::header::{self, HeaderError};
/// use tollgate_proto::AnyPaymentPayload;
/// let bad = header::encode(&serde_json::json!({
///     "x402Version": 1, "scheme": "exact", "network": "base", "payload": 5
/// }));
/// match header::decode::<AnyPaymentPayload>(&bad) {
///     Err(HeaderError::Json { path, .. }) => assert_eq!(path, "payload"),
///     other => panic!("{other:?}"),
/// }
/// assert!(matches!(header::decode::<AnyPaymentPayload>("%%%"), Err(HeaderError::Base64(_))));
/// ```
pub fn decode<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    decode_json(&decode_base64(value)?)
}

/// The JSON bytes of a header value: within [`MAX_HEADER_BYTES`], ASCII, base64 in any of
/// its four alphabets.
fn decode_base64(value: &str) -> Result<Vec<u8>, HeaderError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLarge {
            len: value.len(),
            max: MAX_HEADER_BYTES,
        });
    }
    let value = value.trim();
    if !value.is_ascii() {
        return Err(HeaderError::NotAscii);
    }
    let bytes = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(value).ok())
        .ok_or_else(|| {
            HeaderError::Base64(
                STANDARD
                    .decode(value)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            )
        })?;
    Ok(bytes)
}

/// Decodes JSON bytes (e.g. a v1 402 body), reporting the path of the first bad field as
/// [`decode`] does.
///
/// Valid JSON is decoded once without tracking paths (every paid request carries some); only a
/// failure is decoded again, tracked, to name the field.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HeaderError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let outer = e.path().to_string();
        let message = e.into_inner().to_string();
        json_error(outer, message)
    })?;
    de.end()
        .map_err(|e| json_error(".".to_owned(), e.to_string()))?;
    Ok(value)
}

/// Builds [`HeaderError::Json`], moving a field path that a version-dispatching type put at
/// the front of its message (`"accepted.amount: …"`) into `path`.
fn json_error(outer: String, message: String) -> HeaderError {
    let inner = message.split_once(": ").filter(|(head, _)| {
        !head.is_empty()
            && head
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
    });
    match inner {
        Some((path, rest)) => HeaderError::Json {
            path: if outer == "." {
                path.to_owned()
            } else {
                format!("{outer}.{path}")
            },
            message: rest.to_owned(),
        },
        None => HeaderError::Json {
            path: outer,
            message,
        },
    }
}

fn header_str(headers: &HeaderMap, name: &HeaderName) -> Option<Result<String, HeaderError>> {
    let value = headers.get(name)?;
    if value.len() > MAX_HEADER_BYTES {
        return Some(Err(HeaderError::TooLarge {
            len: value.len(),
            max: MAX_HEADER_BYTES,
        }));
    }
    Some(
        value
            .to_str()
            .map(str::to_owned)
            .map_err(|_| HeaderError::NotAscii),
    )
}

/// The payment a request carries: `PAYMENT-SIGNATURE` (v2; a v1 payment in it is accepted as
/// v1), else `X-PAYMENT` (v1). `None` when neither header is present.
pub fn payment_from_headers(headers: &HeaderMap) -> Option<Result<AnyPaymentPayload, HeaderError>> {
    let raw =
        header_str(headers, &PAYMENT_SIGNATURE).or_else(|| header_str(headers, &X_PAYMENT))?;
    Some(raw.and_then(|v| {
        let bytes = decode_base64(&v)?;
        // A v2 payment (every paid request of a v2 client) is read straight into its type,
        // whose `x402Version` admits only 2; anything else takes the version dispatch.
        if let Ok(payment) = serde_json::from_slice::<crate::PaymentPayload>(&bytes) {
            return Ok(AnyPaymentPayload::V2(Box::new(payment)));
        }
        decode_json(&bytes)
    }))
}

/// The v2 challenge in a 402 response's `PAYMENT-REQUIRED` header.
pub fn payment_required_from_headers(
    headers: &HeaderMap,
) -> Option<Result<PaymentRequired, HeaderError>> {
    Some(header_str(headers, &PAYMENT_REQUIRED)?.and_then(|v| decode(&v)))
}

/// The settlement receipt of a response: `PAYMENT-RESPONSE`, else `X-PAYMENT-RESPONSE`
/// (converted from v1).
pub fn settle_response_from_headers(
    headers: &HeaderMap,
) -> Option<Result<SettleResponse, HeaderError>> {
    if let Some(raw) = header_str(headers, &PAYMENT_RESPONSE) {
        return Some(raw.and_then(|v| decode(&v)));
    }
    let raw = header_str(headers, &X_PAYMENT_RESPONSE)?;
    Some(
        raw.and_then(|v| decode::<SettleResponseV1>(&v))
            .map(SettleResponseV1::into_v2),
    )
}
