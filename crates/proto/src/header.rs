//! HTTP header names and the base64-of-JSON codec every x402 header uses.
//!
//! | version | challenge (402) | payment (client → server) | receipt (server → client) |
//! |---|---|---|---|
//! | v1 | JSON body | `X-PAYMENT` | `X-PAYMENT-RESPONSE` |
//! | v2 | `PAYMENT-REQUIRED` | `PAYMENT-SIGNATURE` | `PAYMENT-RESPONSE` |
//!
//! Names are matched case-insensitively (they are `http::HeaderName`s). Decoding checks the
//! size cap before doing any work, and never panics on input.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{HeaderMap, HeaderName};
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
    /// Over [`MAX_HEADER_BYTES`].
    #[error("header value is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes outside visible ASCII.
    #[error("header value is not ASCII base64")]
    NotAscii,
    /// Not base64.
    #[error("header value is not valid base64: {0}")]
    Base64(String),
    /// Base64 of something that is not the expected JSON.
    #[error("header JSON is invalid at `{path}`: {message}")]
    Json {
        /// Where (e.g. `accepted.amount`; `.` for the whole value).
        path: String,
        /// What is wrong there.
        message: String,
    },
}

/// Encodes a message as standard base64 of its compact JSON.
///
/// ```
/// use tollgate_proto::{header, VerifyResponse};
/// let h = header::encode(&VerifyResponse::valid("0xabc"));
/// let back: VerifyResponse = header::decode(&h).unwrap();
/// assert!(back.is_valid);
/// ```
pub fn encode<T: Serialize>(value: &T) -> String {
    // Serializing our own wire types cannot fail: they hold only strings, numbers and maps
    // with string keys.
    let json = serde_json::to_vec(value).unwrap_or_default();
    STANDARD.encode(json)
}

/// Decodes a header value: size cap, then base64 (standard or URL-safe, padded or not), then
/// JSON, reporting the path of the first bad field.
pub fn decode<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
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
    decode_json(&bytes)
}

/// Decodes JSON bytes, reporting the path of the first bad field.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HeaderError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| HeaderError::Json {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
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
    Some(raw.and_then(|v| decode(&v)))
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
