//! The reverse proxy behind the paywall: forwards each request to the upstream API and streams
//! both bodies through.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and every header it names, `Keep-Alive`,
//! `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) describe one connection and are
//! dropped in both directions. The buyer's payment header is dropped too: the upstream gets
//! what it needs to know about the payment as `X-Tollgate-*` headers instead.
//!
//! Only the gateway may speak for the payment, so every `X-Tollgate-*` header the caller sent
//! is removed in every spelling an upstream may fold into the same name: CGI, WSGI, Rack and
//! PHP read `X-Tollgate-Payer` and `X_Tollgate_Payer` both as `HTTP_X_TOLLGATE_PAYER`, and
//! lighttpd reads `X.Tollgate.Payer` (any punctuation) that way too. The
//! same goes for headers that make frameworks re-route a request or change its method after
//! it was priced (`X-HTTP-Method-Override`, `X-Original-URL`, …), and for underscore
//! spellings of the headers the gateway sets or removes itself (`X_Forwarded_For`, …).
//!
//! The path forwarded is the canonical one the paywall priced
//! ([`canonical_path`](tollgate_server::paywall::target::canonical_path)); the query passes
//! unchanged.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use tollgate_proto::header as x402;
use tollgate_proto::AtomicAmount;
use tollgate_server::paywall::target::canonical_path;
use tollgate_server::{Meter, PaymentInfo};
use tracing::Instrument;

/// Forwards requests to one upstream base URL.
#[derive(Clone)]
pub struct Upstream {
    base: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish()
    }
}

/// Headers of one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

impl Upstream {
    /// An upstream at `base` (`http://host:port`, optionally with a path prefix); `timeout`
    /// bounds how long the upstream may take to start answering.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // The gateway passes redirects to the buyer rather than following them itself.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }
}

/// Drops hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Request headers that make frameworks route or dispatch a request differently from the
/// method and path that were priced (Symfony, Laravel, Express `method-override`, Rails/Rack,
/// IIS URL Rewrite, nginx conventions); compared in the `-` spelling, lower case.
const REROUTING: [&str; 6] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
];

/// Headers the gateway sets or removes itself; a caller's `_` spelling of them is dropped
/// too, since a CGI-style upstream would read it as the real one.
const MANAGED: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "host",
    "payment-signature",
    "x-payment",
];

/// Whether a caller's request header must not reach the upstream: it claims to be the
/// gateway's payment facts, or re-routes the request, in any spelling an upstream may fold
/// into the same name. Case, and every character that is not a letter or a digit: CGI names
/// a header by turning `-` into `_`, and lighttpd (CGI, FastCGI, SCGI) and Apache before 2.4
/// turn *every* other character into `_` too, so `X.Tollgate.Payer` and `X~Tollgate~Payer`
/// are `HTTP_X_TOLLGATE_PAYER` there.
fn is_reserved(name: &HeaderName) -> bool {
    // `HeaderName`s are lower case already.
    let folded: String = name
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    folded.starts_with("x-tollgate-")
        || REROUTING.contains(&folded.as_str())
        // The buyer's operator credential is for the identity gate in front of the upstream,
        // not for the upstream: it never leaves the gateway.
        || folded == "x-operator-token"
        || (folded != name.as_str()
            && (MANAGED.contains(&folded.as_str())
                || HOP_BY_HOP.iter().any(|h| h.as_str() == folded)))
}

/// Drops every header [`is_reserved`] names.
fn strip_reserved(headers: &mut HeaderMap) {
    let reserved: Vec<HeaderName> = headers.keys().filter(|k| is_reserved(k)).cloned().collect();
    for name in reserved {
        headers.remove(name);
    }
}

fn payment_headers(info: &PaymentInfo) -> Vec<(HeaderName, String)> {
    let mut out = vec![
        (
            HeaderName::from_static("x-tollgate-network"),
            info.network.to_string(),
        ),
        (
            HeaderName::from_static("x-tollgate-asset"),
            info.asset.clone(),
        ),
        (
            HeaderName::from_static("x-tollgate-amount"),
            info.amount.to_string(),
        ),
    ];
    if let Some(payer) = &info.payer {
        out.push((HeaderName::from_static("x-tollgate-payer"), payer.clone()));
    }
    if let Some(tx) = &info.transaction {
        out.push((
            HeaderName::from_static("x-tollgate-transaction"),
            tx.clone(),
        ));
    }
    out
}

/// The response header in which an upstream behind a metered route (a scheme such as `upto`,
/// where the buyer authorises a maximum) states what the request cost, in atomic units of the
/// payment's asset. Removed before the buyer sees the response. Absent: the maximum is
/// charged. Malformed or above the maximum: `502`, and nothing is charged.
pub const CHARGE_HEADER: &str = "x-tollgate-charge";

/// The request header telling the upstream the most a metered request may be charged.
pub const MAXIMUM_HEADER: &str = "x-tollgate-maximum";

/// Records the upstream's `X-Tollgate-Charge` on the payment's meter, or says why it cannot.
fn record_charge(meter: &Meter, charge: Option<&HeaderValue>) -> Result<(), String> {
    let Some(value) = charge else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| "X-Tollgate-Charge is not text".to_owned())?
        .trim();
    // Digits only: no sign, no decimals, no exponent, no units — atomic units, exactly.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "X-Tollgate-Charge must be a whole number of atomic units, got {text:?}"
        ));
    }
    let amount: AtomicAmount = text
        .parse()
        .map_err(|e| format!("X-Tollgate-Charge {text:?}: {e}"))?;
    meter.charge(amount).map_err(|e| e.to_string())
}

/// The handler: forward `request` upstream and stream the answer back.
pub async fn forward(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // Behind the paywall the path is canonical already (this is then the same string); used
    // on its own, the proxy still never forwards a path other than the canonical one.
    let path = match canonical_path(parts.uri.path()) {
        Ok(path) => match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        },
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "error": "invalid_request_target",
                    "detail": e.to_string(),
                })),
            )
                .into_response();
        }
    };
    let url = format!("{}{path}", upstream.base);

    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(x402::PAYMENT_SIGNATURE);
    headers.remove(x402::X_PAYMENT);
    // Only the gateway may say who paid, and the request is routed as it was priced.
    strip_reserved(&mut headers);
    if let Some(info) = parts.extensions.get::<PaymentInfo>() {
        for (name, value) in payment_headers(info) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    let meter = parts.extensions.get::<Meter>().cloned();
    if let Some(meter) = &meter {
        // A metered payment: the upstream learns the most it may charge, and reports its charge
        // in `X-Tollgate-Charge` on the response.
        if let Ok(value) = HeaderValue::from_str(&meter.maximum().to_string()) {
            headers.insert(HeaderName::from_static(MAXIMUM_HEADER), value);
        }
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let forwarded = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if let Some(host) = parts.headers.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));

    let span = tracing::info_span!("gateway.forward", method = %parts.method, %path);
    let sent = upstream
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .instrument(span)
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let status = if e.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            tracing::warn!(error = %e, "upstream failed");
            return (
                status,
                axum::Json(serde_json::json!({ "error": "the upstream API did not answer" })),
            )
                .into_response();
        }
    };
    let status = response.status();
    let mut headers = response.headers().clone();
    strip_hop_by_hop(&mut headers);
    // The upstream's charge is for the gateway only, metered route or not.
    let charge = headers.remove(CHARGE_HEADER);
    if let Some(meter) = &meter {
        if let Err(detail) = record_charge(meter, charge.as_ref()) {
            // A 5xx: the paywall settles nothing for it, and the buyer is not charged for an
            // upstream that cannot say what it used.
            tracing::error!(%detail, "the upstream's charge is unusable");
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(serde_json::json!({
                    "error": "the upstream reported an unusable charge",
                    "detail": detail,
                })),
            )
                .into_response();
        }
    }
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_charge_is_whole_atomic_units_within_the_maximum() {
        let meter = || Meter::new(AtomicAmount::from(50_000u64));
        let value = |s: &str| HeaderValue::from_str(s).unwrap();
        // Absent: nothing recorded (the maximum is charged).
        let m = meter();
        record_charge(&m, None).unwrap();
        assert_eq!(m.charged(), None);
        for ok in ["18500", " 0 ", "50000", "00042"] {
            let m = meter();
            record_charge(&m, Some(&value(ok))).unwrap();
            assert_eq!(
                m.charged(),
                Some(ok.trim().parse::<AtomicAmount>().unwrap()),
                "{ok:?}"
            );
        }
        for bad in [
            "50001",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "0x10",
            "18500 USDT",
            "",
            "99999999999999999999999999999999999999999999999999999999999999999999999999999999",
        ] {
            let m = meter();
            assert!(record_charge(&m, Some(&value(bad))).is_err(), "{bad:?}");
            assert_eq!(m.charged(), None, "{bad:?} recorded nothing");
        }
        let not_text = HeaderValue::from_bytes(b"\xff").unwrap();
        assert!(record_charge(&meter(), Some(&not_text)).is_err());
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Session"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-session", HeaderValue::from_static("abc"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn identity_and_rerouting_headers_are_dropped_in_every_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "x-tollgate-payer",
            "X-TOLLGATE-AMOUNT",
            "X_Tollgate_Payer",
            "x_tollgate-network",
            "x-tollgate_transaction",
            "X-HTTP-Method-Override",
            "x_http_method_override",
            "X-HTTP-Method",
            "X-Method-Override",
            "X_Original_URL",
            "x-original-uri",
            "X-Rewrite-URL",
            "X_Forwarded_For",
            "x_forwarded_host",
            "Payment_Signature",
            "transfer_encoding",
            "X.Tollgate.Payer",
            "x~tollgate~amount",
            "x-tollgate|network",
            "X.Original.URL",
            "x!http!method!override",
            "Payment.Signature",
            "X.Forwarded.Host",
            "X-Operator-Token",
            "x_operator_token",
            "X.Operator.Token",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("spoofed"),
            );
        }
        for kept in [
            "x-forwarded-for",
            "x-request-id",
            "x_request_id",
            "x.request.id",
            "x-tollgatex",
        ] {
            h.insert(
                HeaderName::from_bytes(kept.as_bytes()).unwrap(),
                HeaderValue::from_static("kept"),
            );
        }
        strip_reserved(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "x-forwarded-for",
                "x-request-id",
                "x-tollgatex",
                "x.request.id",
                "x_request_id"
            ]
        );
    }
}
