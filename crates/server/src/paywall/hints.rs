//! Plain, human-readable payment hints on the 402: `X-Payment-Address`, `X-Payment-Amount`,
//! `X-Payment-Currency` and `X-Payment-Chain`.
//!
//! Common x402 write-ups describe these headers, and people with `curl -i` or simple scripts
//! read them: one look tells what a route costs. They are **informational only**. They are
//! derived from the first accepted option of the challenge that the same response carries in
//! `PAYMENT-REQUIRED`, which stays the one source of truth: a payer signs what that header says
//! (every option, with its signing domain and time limit), and the paywall accepts a payment
//! only when it matches one of those requirements. Nothing is ever accepted or refused on the
//! strength of a hint, and a client must not build a payment from them.
//!
//! - `X-Payment-Address`: the option's `payTo`.
//! - `X-Payment-Amount`: the amount as an exact decimal in the token's units (`0.01`), when the
//!   decimals are known — from the known-asset table, else a numeric `extra.decimals` — and
//!   otherwise the atomic amount followed by ` (atomic units)`, so a script never mistakes
//!   atomic units for whole tokens.
//! - `X-Payment-Currency`: the token's symbol when the known-asset table has it, else the asset
//!   as the option names it (its address; a seller-chosen label is never shown).
//! - `X-Payment-Chain`: the option's CAIP-2 network, e.g. `eip155:8453`.

use std::cell::RefCell;
use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tollgate_proto::{asset, header, money, PaymentRequired, PaymentRequirements};

/// `X-Payment-Address`: who is paid.
pub const X_PAYMENT_ADDRESS: HeaderName = HeaderName::from_static("x-payment-address");
/// `X-Payment-Amount`: how much, in the token's units.
pub const X_PAYMENT_AMOUNT: HeaderName = HeaderName::from_static("x-payment-amount");
/// `X-Payment-Currency`: in what token.
pub const X_PAYMENT_CURRENCY: HeaderName = HeaderName::from_static("x-payment-currency");
/// `X-Payment-Chain`: on which network (CAIP-2).
pub const X_PAYMENT_CHAIN: HeaderName = HeaderName::from_static("x-payment-chain");

/// Distinct challenges whose hints each thread remembers. The paywall caches its encoded
/// challenges, so the same header value comes back on every unpaid request to a route; the
/// memo spares decoding it each time.
const MEMO_SIZE: usize = 64;

type Hints = Vec<(HeaderName, HeaderValue)>;

thread_local! {
    static MEMO: RefCell<HashMap<HeaderValue, Hints>> = RefCell::new(HashMap::new());
}

/// Adds the hints to a 402's `headers`, derived from the `PAYMENT-REQUIRED` header already in
/// them. Adds nothing when that header is absent or undecodable, or the challenge offers no
/// option: a hint must never say more than the signed challenge.
pub fn add_to(headers: &mut HeaderMap) {
    let Some(challenge) = headers.get(header::PAYMENT_REQUIRED).cloned() else {
        return;
    };
    let hints = MEMO.with(|memo| {
        if let Some(hit) = memo.borrow().get(&challenge) {
            return hit.clone();
        }
        let hints = decode_hints(&challenge);
        let mut memo = memo.borrow_mut();
        if memo.len() >= MEMO_SIZE {
            memo.clear();
        }
        memo.insert(challenge, hints.clone());
        hints
    });
    for (name, value) in hints {
        headers.insert(name, value);
    }
}

fn decode_hints(challenge: &HeaderValue) -> Hints {
    let Ok(text) = challenge.to_str() else {
        return Hints::new();
    };
    match header::decode::<PaymentRequired>(text) {
        Ok(required) => required.accepts.first().map(for_option).unwrap_or_default(),
        Err(_) => Hints::new(),
    }
}

/// The hints for one accepted option. A field whose text is not a valid header value is left
/// out rather than altered.
pub fn for_option(option: &PaymentRequirements) -> Hints {
    let known = asset::find_asset(&option.network, &option.asset);
    let decimals = known.map(|k| k.decimals).or_else(|| extra_decimals(option));
    let amount = match decimals {
        Some(d) => money::format_atomic(option.amount.get(), d),
        None => format!("{} (atomic units)", option.amount.get()),
    };
    // A ticker only from the table: a seller-chosen label on an unknown token could pass it
    // off as another; its address cannot.
    let currency = known
        .map(|k| k.symbol.to_owned())
        .unwrap_or_else(|| option.asset.clone());
    [
        (X_PAYMENT_ADDRESS, option.pay_to.clone()),
        (X_PAYMENT_AMOUNT, amount),
        (X_PAYMENT_CURRENCY, currency),
        (X_PAYMENT_CHAIN, option.network.to_string()),
    ]
    .into_iter()
    .filter_map(|(name, text)| HeaderValue::from_str(&text).ok().map(|v| (name, v)))
    .collect()
}

/// `extra.decimals`, as a number or a numeric string, when it fits a `u8` (the unit of every
/// token amount in this crate).
fn extra_decimals(option: &PaymentRequirements) -> Option<u8> {
    let value = option.extra.as_ref()?.get("decimals")?;
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_proto::{AtomicAmount, Network, ResourceInfo, Scheme, V2};

    fn option(
        network: Network,
        asset: &str,
        atomic: u64,
        extra: serde_json::Value,
    ) -> PaymentRequirements {
        PaymentRequirements {
            scheme: Scheme::Exact,
            network,
            amount: AtomicAmount(tollgate_proto::U256::from(atomic)),
            asset: asset.to_owned(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".to_owned(),
            max_timeout_seconds: 60,
            extra: extra.as_object().cloned(),
        }
    }

    fn get(hints: &Hints, name: &HeaderName) -> String {
        hints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn known_asset_gets_symbol_and_exact_decimal() {
        let usdc = asset::default_asset(&Network::eip155(8453)).unwrap();
        let hints = for_option(&option(
            Network::eip155(8453),
            usdc.address,
            1_234_567,
            serde_json::json!({ "name": "USD Coin", "version": "2" }),
        ));
        assert_eq!(get(&hints, &X_PAYMENT_AMOUNT), "1.234567");
        assert_eq!(get(&hints, &X_PAYMENT_CURRENCY), "USDC");
        assert_eq!(get(&hints, &X_PAYMENT_CHAIN), "eip155:8453");
        assert_eq!(
            get(&hints, &X_PAYMENT_ADDRESS),
            "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
        );
    }

    #[test]
    fn unknown_asset_uses_extra_decimals_or_says_atomic() {
        let token = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        let local = Network::eip155(31337);
        let with = for_option(&option(
            local.clone(),
            token,
            1_000,
            serde_json::json!({ "name": "USD Coin", "version": "2", "decimals": 6 }),
        ));
        assert_eq!(get(&with, &X_PAYMENT_AMOUNT), "0.001");
        assert_eq!(get(&with, &X_PAYMENT_CURRENCY), token);
        let without = for_option(&option(local, token, 1_000, serde_json::json!({})));
        assert_eq!(get(&without, &X_PAYMENT_AMOUNT), "1000 (atomic units)");
        assert_eq!(get(&without, &X_PAYMENT_CURRENCY), token);
    }

    #[test]
    fn headers_follow_the_first_option_of_the_challenge() {
        let first = option(Network::eip155(31337), "0xabc", 5, serde_json::json!({}));
        let second = option(Network::eip155(1), "0xdef", 7, serde_json::json!({}));
        let challenge = PaymentRequired {
            x402_version: V2,
            error: None,
            resource: ResourceInfo::new("http://localhost/x"),
            accepts: vec![first, second],
            extensions: None,
        };
        let mut headers = HeaderMap::new();
        add_to(&mut headers);
        assert!(headers.is_empty(), "no challenge, no hints");
        headers.insert(
            header::PAYMENT_REQUIRED,
            header::to_header_value(&challenge),
        );
        add_to(&mut headers);
        add_to(&mut headers); // memoized path
        assert_eq!(headers[X_PAYMENT_CHAIN], "eip155:31337");
        assert_eq!(headers[X_PAYMENT_AMOUNT], "5 (atomic units)");
        assert_eq!(headers[X_PAYMENT_CURRENCY], "0xabc");

        let mut garbage = HeaderMap::new();
        garbage.insert(
            header::PAYMENT_REQUIRED,
            HeaderValue::from_static("not base64!"),
        );
        add_to(&mut garbage);
        assert_eq!(garbage.len(), 1);
    }
}
