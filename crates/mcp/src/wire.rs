//! The x402 MCP transport's wire shapes (`specs/transports-v2/mcp.md`): where the challenge,
//! the payment and the receipt travel in a `tools/call`, apart from any server or client.

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, RequestMetaObject};
use serde_json::Value;
use tollgate_proto::{AnyPaymentRequired, PaymentRequired, SettleResponse};

/// The request `_meta` key carrying the buyer's `PaymentPayload` on a paid `tools/call`.
pub const PAYMENT_META_KEY: &str = "x402/payment";

/// The result `_meta` key carrying the seller's `SettlementResponse` on a paid result.
pub const PAYMENT_RESPONSE_META_KEY: &str = "x402/payment-response";

/// The result `_meta` key with which a Tollgate seller says, on a `settlement_pending`
/// challenge, after how many seconds to send the same payment again (the MCP counterpart of
/// HTTP's `Retry-After`; not part of the x402 spec, so other clients ignore it).
pub const RETRY_AFTER_META_KEY: &str = "tollgate/retry-after";

/// The resource URL of tool `name` in challenges and payments: `mcp://tool/<name>`.
pub fn tool_resource_url(name: &str) -> String {
    format!("mcp://tool/{name}")
}

/// A tool result announcing that payment is required (or refused, or failed to settle): as the
/// spec requires, `isError: true`, the `PaymentRequired` as `structuredContent`, and the same
/// object JSON-encoded in `content[0].text`.
///
/// ```
/// use tollgate_mcp::wire::{payment_required_result, read_payment_required};
/// use tollgate_proto::{AnyPaymentRequired, PaymentRequired};
///
/// let required: PaymentRequired = serde_json::from_value(serde_json::json!({
///     "x402Version": 2,
///     "error": "Payment required to access this resource",
///     "resource": { "url": "mcp://tool/forecast" },
///     "accepts": [{
///         "scheme": "exact", "network": "eip155:84532", "amount": "10000",
///         "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
///         "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60
///     }]
/// }))?;
/// let result = payment_required_result(&required);
/// assert_eq!(result.is_error, Some(true));
/// let text = &result.content[0].as_text().unwrap().text;
/// assert_eq!(result.structured_content, Some(serde_json::from_str(text)?));
/// assert_eq!(
///     read_payment_required(&result).unwrap()?,
///     AnyPaymentRequired::V2(required)
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn payment_required_result(required: &PaymentRequired) -> CallToolResult {
    let value = serde_json::to_value(required).unwrap_or(Value::Null);
    let text = value.to_string();
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// Why a tool result could not be read as a payment-required result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable x402 payment-required result: {0}")]
pub struct BadChallenge(pub String);

/// The challenge in a tool result, as a client must look for it: only on an error result,
/// `structuredContent` first, then `content[0].text`, each taken as a challenge when it is an
/// object with `x402Version` and a non-empty `accepts`. `None`: the result is not a
/// payment-required result (a free tool, or a tool's own error); `Some(Err)`: it has the
/// shape of one and does not parse.
pub fn read_payment_required(
    result: &CallToolResult,
) -> Option<Result<AnyPaymentRequired, BadChallenge>> {
    if result.is_error != Some(true) {
        return None;
    }
    let from_text = || {
        let text = result.content.first()?.as_text()?;
        serde_json::from_str::<Value>(&text.text).ok()
    };
    let candidate = result
        .structured_content
        .as_ref()
        .filter(|v| looks_like_challenge(v))
        .cloned()
        .or_else(|| from_text().filter(looks_like_challenge))?;
    Some(serde_json::from_value(candidate).map_err(|e| BadChallenge(e.to_string())))
}

/// An object with `x402Version` and a non-empty `accepts` array.
fn looks_like_challenge(value: &Value) -> bool {
    value.get("x402Version").is_some()
        && value
            .get("accepts")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// A result's structured content, or else its first text block parsed as JSON, when that is an
/// object whose `error` is `error` (a seller's identity refusal).
pub(crate) fn error_object(result: &CallToolResult, error: &str) -> Option<Value> {
    let is = |v: &Value| v.get("error").and_then(Value::as_str) == Some(error);
    if let Some(v) = result.structured_content.as_ref().filter(|v| is(v)) {
        return Some(v.clone());
    }
    let text = result.content.first()?.as_text()?;
    serde_json::from_str::<Value>(&text.text).ok().filter(is)
}

/// The settlement receipt in a result's `_meta`: `None` when absent, `Err` with why when
/// present and unreadable.
pub fn read_settlement(result: &CallToolResult) -> Option<Result<SettleResponse, String>> {
    let value = result.meta.as_ref()?.0.get(PAYMENT_RESPONSE_META_KEY)?;
    Some(match value {
        // Some SDKs wrote it as a JSON string.
        Value::String(s) => serde_json::from_str(s).map_err(|e| e.to_string()),
        v => serde_json::from_value(v.clone()).map_err(|e| e.to_string()),
    })
}

/// Sets `key` in a result's `_meta`.
pub(crate) fn set_result_meta(result: &mut CallToolResult, key: &str, value: Value) {
    result
        .meta
        .get_or_insert_with(Default::default)
        .0
        .insert(key.to_owned(), value);
}

/// Removes and returns the payment from a request's `_meta` (the tool never sees it: it is a
/// bearer authorization to move the buyer's money).
pub(crate) fn take_payment(meta: &mut RequestMetaObject) -> Option<Value> {
    meta.0 .0.remove(PAYMENT_META_KEY)
}

/// Sets `payment` (a `PaymentPayload` as JSON) in a request's `_meta` (e.g.
/// `CallToolRequestParams::meta`), for a client that signs the payment itself.
pub fn attach_payment(meta: &mut Option<RequestMetaObject>, payment: Value) {
    meta.get_or_insert_with(RequestMetaObject::new)
        .0
         .0
        .insert(PAYMENT_META_KEY.to_owned(), payment);
}

/// The arguments' identity for the gate's target: a retry with the same payment must be the
/// same call to receive what it paid for.
pub(crate) fn arguments_digest(arguments: Option<&JsonObject>) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same arguments give the same digest in this process, which
    // is all a target needs (it never leaves the process).
    let mut hasher = std::hash::DefaultHasher::new();
    match arguments {
        Some(args) => serde_json::to_string(args)
            .unwrap_or_default()
            .hash(&mut hasher),
        None => "".hash(&mut hasher),
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn challenge() -> PaymentRequired {
        serde_json::from_value(json!({
            "x402Version": 2,
            "error": "Payment required to access this resource",
            "resource": {"url": "mcp://tool/financial_analysis", "mimeType": "application/json"},
            "accepts": [{
                "scheme": "exact", "network": "eip155:84532", "amount": "10000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}
            }]
        }))
        .unwrap()
    }

    #[test]
    fn payment_required_is_structured_and_text() {
        let result = payment_required_result(&challenge());
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.clone().unwrap();
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), structured);
        assert_eq!(structured["x402Version"], 2);
        match read_payment_required(&result) {
            Some(Ok(AnyPaymentRequired::V2(p))) => assert_eq!(p, challenge()),
            other => panic!("not read back: {other:?}"),
        }
    }

    #[test]
    fn text_is_the_fallback_and_other_errors_are_not_challenges() {
        let mut result = payment_required_result(&challenge());
        result.structured_content = None;
        assert!(matches!(read_payment_required(&result), Some(Ok(_))));
        // Not an error: never a challenge, whatever it contains.
        result.is_error = Some(false);
        assert!(read_payment_required(&result).is_none());
        let plain = CallToolResult::error(vec![ContentBlock::text("division by zero")]);
        assert!(read_payment_required(&plain).is_none());
        let empty = CallToolResult::error(vec![ContentBlock::text(
            json!({"x402Version": 2, "accepts": []}).to_string(),
        )]);
        assert!(read_payment_required(&empty).is_none());
        let broken = CallToolResult::error(vec![ContentBlock::text(
            json!({"x402Version": 2, "accepts": [{"scheme": 7}]}).to_string(),
        )]);
        assert!(matches!(read_payment_required(&broken), Some(Err(_))));
    }

    #[test]
    fn settlement_is_read_from_meta_as_object_or_string() {
        let settle = json!({"success": true, "transaction": "0xab", "network": "eip155:84532"});
        let mut result = CallToolResult::success(vec![]);
        assert!(read_settlement(&result).is_none());
        set_result_meta(&mut result, PAYMENT_RESPONSE_META_KEY, settle.clone());
        assert!(read_settlement(&result).unwrap().unwrap().success);
        set_result_meta(
            &mut result,
            PAYMENT_RESPONSE_META_KEY,
            Value::String(settle.to_string()),
        );
        assert_eq!(
            read_settlement(&result).unwrap().unwrap().transaction,
            "0xab"
        );
        set_result_meta(&mut result, PAYMENT_RESPONSE_META_KEY, json!(5));
        assert!(read_settlement(&result).unwrap().is_err());
    }

    #[test]
    fn arguments_digest_tells_calls_apart() {
        let a = json!({"city": "Paris"}).as_object().cloned();
        let b = json!({"city": "Rome"}).as_object().cloned();
        assert_eq!(arguments_digest(a.as_ref()), arguments_digest(a.as_ref()));
        assert_ne!(arguments_digest(a.as_ref()), arguments_digest(b.as_ref()));
        assert_ne!(arguments_digest(a.as_ref()), arguments_digest(None));
    }
}
