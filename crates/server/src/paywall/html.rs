//! The browser paywall: a self-contained HTML page served as the 402 body to browsers.
//!
//! A person who opens a priced URL in a browser should see what they are buying and be able to
//! pay, not stare at a JSON error. The page is generic: it shows the resource and each payment
//! option (price, network, recipient) from the v2 [`PaymentRequired`], and leaves signing to
//! *wallet scripts* that scheme crates supply (this crate knows no chain). Everything is inline
//! — no CDN, no external fetch — so the page works offline-first and leaks nothing to third
//! parties, and a strict `Content-Security-Policy` enforces that.
//!
//! # The wallet-script interface
//!
//! Each wallet script runs before the page's own script and registers itself:
//!
//! ```js
//! window.x402Wallets.push({
//!   name: "…",                              // shown to the user
//!   supports(option) { return true; },      // option: one entry of `accepts`
//!   async pay(paymentRequired, option) {    // may throw an Error with a readable message
//!     return { x402Version: 2, resource, accepted: option, payload: { … } };
//!   },
//! });
//! ```
//!
//! The page encodes the returned v2 `PaymentPayload` as base64 JSON in `PAYMENT-SIGNATURE`,
//! repeats the request with the same method and shows the response (or the reason of a new
//! 402).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use tollgate_proto::money::format_atomic;
use tollgate_proto::{asset, PaymentRequired, PaymentRequirements};

/// The page's own script: option selection, payment, retry and display.
const SHELL_SCRIPT: &str = include_str!("paywall.js");

/// The page's stylesheet.
const STYLE: &str = include_str!("paywall.css");

/// Only inline scripts and styles and same-origin requests: the page must not reach out to
/// anything else, whatever a description or a wallet script says.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-src 'self'; \
     base-uri 'none'; form-action 'none'";

/// Whether the client asked for HTML: an `Accept` media range `text/html` with a non-zero
/// quality. Browsers navigating to a page send it; API clients and agents do not.
pub(crate) fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// The 402 response for a browser: the page as the body, the v2 challenge still in
/// `PAYMENT-REQUIRED` (so a wallet extension or agent driving a browser can use it directly).
pub(crate) fn html_challenge(
    challenge: &PaymentRequired,
    header_value: HeaderValue,
    method: &http::Method,
    wallets: &[&'static str],
) -> Response {
    let mut response = Response::new(Body::from(render_page(challenge, method, wallets)));
    *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The same URL answers JSON to API clients: caches must key on Accept.
    headers.insert(http::header::VARY, HeaderValue::from_static("Accept"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(tollgate_proto::header::PAYMENT_REQUIRED, header_value);
    response
}

/// Renders the paywall page for `challenge`; `method` is repeated when paying, `wallets` are
/// the wallet scripts, in order of preference.
pub(crate) fn render_page(
    challenge: &PaymentRequired,
    method: &http::Method,
    wallets: &[&'static str],
) -> String {
    let resource = &challenge.resource;
    let title = resource
        .description
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or("Paid resource");
    let mut options = String::new();
    for (index, option) in challenge.accepts.iter().enumerate() {
        options.push_str(&render_option(index, option));
    }
    let mut scripts = String::new();
    for wallet in wallets {
        scripts.push_str("<script>");
        scripts.push_str(&script_safe(wallet));
        scripts.push_str("</script>\n");
    }
    let service = resource
        .service_name
        .as_deref()
        .map(|s| format!("<p class=\"service\">{}</p>", escape(s)))
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Payment required: {title}</title>
<style>{style}</style>
</head>
<body>
<main id="x402-paywall" data-method="{method}">
<p class="badge">402 Payment Required</p>
{service}<h1 id="x402-description">{title}</h1>
<p class="url" id="x402-url">{url}</p>
<form id="x402-options" onsubmit="return false">
<table>
<thead><tr><th></th><th>Price</th><th>Network</th><th>Recipient</th></tr></thead>
<tbody>
{options}</tbody>
</table>
<button type="button" id="x402-pay" disabled>Pay</button>
</form>
<p id="x402-status" role="status" aria-live="polite">Loading…</p>
<div id="x402-output" hidden></div>
</main>
<script type="application/json" id="x402-payment-required">{json}</script>
<script>window.x402Wallets = window.x402Wallets || [];</script>
{scripts}<script>{shell}</script>
</body>
</html>
"#,
        title = escape(title),
        style = STYLE,
        method = escape(method.as_str()),
        service = service,
        url = escape(&resource.url),
        options = options,
        json = json_for_script(challenge),
        scripts = scripts,
        shell = script_safe(SHELL_SCRIPT),
    )
}

/// One row of the options table.
fn render_option(index: usize, option: &PaymentRequirements) -> String {
    format!(
        "<tr class=\"x402-option\"><td><input type=\"radio\" name=\"x402-option\" value=\"{index}\"{checked} aria-label=\"option {n}\"></td>\
         <td class=\"price\">{price}</td><td class=\"network\">{network}</td>\
         <td class=\"recipient\"><code>{pay_to}</code></td></tr>\n",
        checked = if index == 0 { " checked" } else { "" },
        n = index + 1,
        price = escape(&price(option)),
        network = escape(option.network.as_str()),
        pay_to = escape(&option.pay_to),
    )
}

/// The price in whole tokens when the asset is known (`0.01 USDC`), else in the token's atomic
/// units with its address — a number of unknown scale must not be dressed up as dollars.
fn price(option: &PaymentRequirements) -> String {
    let amount = option.amount.get();
    match asset::find_asset(&option.network, &option.asset) {
        Some(known) => format!("{} {}", format_atomic(amount, known.decimals), known.symbol),
        None => format!("{amount} atomic units of token {}", option.asset),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The challenge as JSON that cannot end its `<script>` element early: `<`, `>` and `&` become
/// JSON `\u` escapes, which `JSON.parse` reads back unchanged.
fn json_for_script(challenge: &PaymentRequired) -> String {
    let json = serde_json::to_string(challenge).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A script body that cannot close its element: `</` only appears inside JS strings or
/// comments, where `<\/` means the same.
fn script_safe(script: &str) -> String {
    script.replace("</", "<\\/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_proto::{ResourceInfo, V2};

    fn challenge(description: &str) -> PaymentRequired {
        let option: PaymentRequirements = serde_json::from_value(serde_json::json!({
            "scheme": "exact", "network": "eip155:8453", "amount": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"><script>alert(2)</script>",
            "maxTimeoutSeconds": 60,
            "extra": { "name": "USD Coin</script><script>alert(3)</script>", "version": "2" }
        }))
        .unwrap();
        PaymentRequired {
            x402_version: V2,
            error: None,
            resource: ResourceInfo {
                url: "http://127.0.0.1:8080/x?a=<b>".into(),
                description: Some(description.into()),
                service_name: Some("<img src=x onerror=alert(4)>".into()),
                icon_url: Some("https://tracker.example/icon.png".into()),
                ..ResourceInfo::default()
            },
            accepts: vec![option],
            extensions: None,
        }
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let hostile = "<script>alert(1)</script> & \"quotes\" 'too'";
        let page = render_page(
            &challenge(hostile),
            &http::Method::GET,
            &["/* wallet </script><script>alert(5) */"],
        );
        // Only the page's own elements end: the JSON, the registry, one wallet, the shell.
        assert_eq!(page.matches("</script").count(), 4, "{page}");
        for n in 1..=4 {
            assert!(
                !page.contains(&format!(">alert({n})")),
                "alert({n}) escaped: {page}"
            );
        }
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &#39;too&#39;"
        ));
        // The wallet script cannot close its element either.
        assert!(page.contains("/* wallet <\\/script><script>alert(5) */"));
        // The embedded challenge reads back exactly.
        let marker = "id=\"x402-payment-required\">";
        let start = page.find(marker).unwrap() + marker.len();
        let end = start + page[start..].find("</script>").unwrap();
        let parsed: PaymentRequired = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(parsed, challenge(hostile));
    }

    #[test]
    fn page_references_nothing_external() {
        let mut challenge = challenge("Weather");
        let page = render_page(&challenge, &http::Method::GET, &[]);
        // The icon is not shown: loading it would tell a third party who looks at the page.
        assert!(!page.contains("<img"));
        assert_eq!(
            page.matches("tracker.example").count(),
            1,
            "only as data in the JSON"
        );
        challenge.resource.icon_url = None;
        challenge.resource.service_name = Some("Weather Inc.".into());
        let page = render_page(&challenge, &http::Method::GET, &[]);
        // The only URL on the page is the resource's own (shown as text, from the challenge).
        let without_own = page.replace("http://127.0.0.1:8080/x?a=&lt;b&gt;", "");
        let without_own = without_own.replace("http://127.0.0.1:8080/x?a=\\u003cb\\u003e", "");
        assert!(!without_own.contains("http://"), "{without_own}");
        assert!(!without_own.contains("https://"), "{without_own}");
        assert!(!page.contains("src="), "no external scripts or images");
        assert!(!page.contains("<link"), "no external stylesheets");
        assert!(!page.contains("url("), "no external fonts or backgrounds");
    }

    #[test]
    fn shows_price_network_and_recipient() {
        let page = render_page(&challenge("Weather"), &http::Method::POST, &[]);
        assert!(page.contains("0.01 USDC"), "known asset in whole tokens");
        assert!(page.contains("eip155:8453"));
        assert!(page.contains("0x209693Bc6afc0C5328bA36FaF03C514EF312287C&quot;&gt;"));
        assert!(page.contains("data-method=\"POST\""));

        let mut unknown = challenge("Weather");
        unknown.accepts[0].asset = "0x0000000000000000000000000000000000000001".into();
        let page = render_page(&unknown, &http::Method::GET, &[]);
        assert!(
            page.contains("10000 atomic units of token 0x0000000000000000000000000000000000000001")
        );
    }

    #[test]
    fn accept_negotiation() {
        let wants = |accept: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::ACCEPT, accept.parse().unwrap());
            wants_html(&headers)
        };
        assert!(wants(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(wants("Text/HTML ; q=0.5"));
        assert!(!wants("application/json"));
        assert!(!wants("*/*"));
        assert!(!wants("text/html;q=0"));
        assert!(!wants_html(&http::HeaderMap::new()));
    }
}
