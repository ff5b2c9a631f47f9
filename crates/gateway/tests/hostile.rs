//! A hostile buyer against `tollgate proxy`: variants of "served unpaid", "served twice for one
//! payment", "identity spoofed to the upstream" and "a 500 on bad input" beyond those the issue
//! listed — with the real facilitator (over HTTP) on a real chain, and requests written byte
//! for byte on raw TCP sockets (HTTP client libraries normalise what a hostile buyer sends).
//!
//! The upstream is deliberately careless, the way real ones are:
//!
//! - it percent-decodes the whole request-target *before* splitting off the query and the
//!   fragment (so `/weather%3Fx` is `/weather` to it), resolves dot segments and ignores case;
//! - it names request headers the way lighttpd's CGI/FastCGI and old Apache do: every
//!   character that is not a letter or digit becomes `_` (so `X.Tollgate.Payer` is
//!   `HTTP_X_TOLLGATE_PAYER`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_evm::{ExactEvmClient, FacilitatorConfig};
use tollgate_gateway::GatewayConfig;
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::{header, PaymentPayload, PaymentRequired};
use tollgate_testkit::TestChain;

use support::{
    answer, facilitator, percent_decode_lossy, priced_runs, route, serve, Log, Received,
};

const PRICE: u64 = 25_000;
const PREMIUM: u64 = 50_000;

// ---------------------------------------------------------------------------------------------
// The careless upstream.

/// A header name as lighttpd's CGI and FastCGI modules (and Apache before 2.4) name it: every
/// character that is not a letter or a digit becomes `_`, letters are upper-cased.
fn cgi(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The path this upstream routes on: the raw path percent-decoded first, then cut at the
/// first `?` or `#`, then dot segments resolved, empty segments dropped, lower-cased, and a
/// format extension of the last segment dropped (Rails' `(.:format)`, Spring's `/weather.*`).
fn decode_first_path(raw: &str) -> String {
    let decoded = percent_decode_lossy(raw);
    let cut = decoded.find(['?', '#']).unwrap_or(decoded.len());
    let mut out: Vec<String> = Vec::new();
    for segment in decoded[..cut].split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_lowercase()),
        }
    }
    if let Some(last) = out.last_mut() {
        if let Some(dot) = last.find('.').filter(|&d| d > 0) {
            last.truncate(dot);
        }
    }
    format!("/{}", out.join("/"))
}

async fn careless(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> impl IntoResponse {
    let path = decode_first_path(uri.path());
    let m = method.as_str().to_ascii_uppercase();
    let priced = match (m.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/weather" | "/other" | "/premium") => Some(format!("GET {path}")),
        ("POST", p) if p == "/v1" || p.starts_with("/v1/") => Some(format!("POST {p}")),
        // A script that answers whatever the method.
        (m, "/any") => Some(format!("{m} /any")),
        _ => None,
    };
    answer(&log, &method, &uri, headers, &path, priced)
}

// ---------------------------------------------------------------------------------------------
// The rig: a chain, one facilitator, two gateways (replicas) in front of the careless upstream.

struct Rig {
    chain: TestChain,
    /// Two replicas of one gateway configuration, sharing the facilitator.
    gateways: [SocketAddr; 2],
    log: Log,
}

impl Rig {
    fn gateway(&self) -> SocketAddr {
        self.gateways[0]
    }

    fn priced_runs(&self) -> Vec<Received> {
        priced_runs(&self.log)
    }

    fn last(&self) -> Received {
        self.log.lock().unwrap().last().cloned().expect("a request")
    }

    async fn earned(&self) -> U256 {
        self.chain
            .usdc_balance(TestChain::address(9))
            .await
            .unwrap()
    }

    /// The challenge for `method path`.
    async fn challenge(&self, method: &str, path: &str) -> PaymentRequired {
        let r = send(self.gateway(), method, path, &[]).await;
        assert_eq!(r.status, 402, "{method} {path}: {}", r.head);
        header::decode(r.header("payment-required").unwrap()).unwrap()
    }

    /// A payment for `method path` signed by dev account `payer`.
    async fn pay(&self, method: &str, path: &str, payer: usize) -> PaymentPayload {
        let challenge = self.challenge(method, path).await;
        ExactEvmClient::new(TestChain::signer(payer))
            .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
            .await
            .unwrap()
    }
}

async fn rig() -> Rig {
    let chain = TestChain::start().await.unwrap();
    let facilitator = facilitator(&chain, FacilitatorConfig::default()).await;
    let log: Log = Arc::default();
    let upstream = serve(Router::new().fallback(careless).with_state(log.clone())).await;
    let route = |r: &str, amount: u64| route(&chain, r, amount);
    let text = format!(
        "upstream = \"http://{upstream}\"\n[facilitator]\nurl = \"http://{facilitator}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{}\"\n{}{}{}{}{}",
        chain.caip2(),
        TestChain::address(9),
        route("GET /weather", PRICE),
        route("GET /other", PRICE),
        route("GET /premium", PREMIUM),
        route("POST /v1/*", PRICE),
        route("* /any", PRICE),
    );
    let config = GatewayConfig::parse(&text).unwrap();
    let a = serve(tollgate_gateway::app(&config).await.unwrap()).await;
    let b = serve(tollgate_gateway::app(&config).await.unwrap()).await;
    Rig {
        chain,
        gateways: [a, b],
        log,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1.

/// A response read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The challenge's `error` of a 402.
    fn reason(&self) -> String {
        self.header("payment-required")
            .and_then(|v| header::decode::<PaymentRequired>(v).ok())
            .and_then(|c| c.error)
            .unwrap_or_default()
    }
}

/// Splits responses framed by `Content-Length` (or ending at the close).
fn parse_responses(mut bytes: &[u8]) -> Vec<Raw> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length = head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        });
        let rest = &bytes[end + 4..];
        let take = if status == 100 {
            0
        } else {
            length.unwrap_or(rest.len()).min(rest.len())
        };
        out.push(Raw {
            status,
            head,
            body: String::from_utf8_lossy(&rest[..take]).into_owned(),
        });
        bytes = &rest[take..];
    }
    out
}

/// Writes `request` as given and reads until the server closes; every response, in order.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<Raw> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    // A server that waits for more (a half-sent body) is closed on by us after a while.
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes)).await;
    parse_responses(&bytes)
}

/// One request with `Connection: close` and no body.
async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    exchange(addr, request.as_bytes())
        .await
        .into_iter()
        .next()
        .unwrap_or(Raw {
            status: 0,
            head: String::new(),
            body: String::new(),
        })
}

// ---------------------------------------------------------------------------------------------
// Paths.

/// Targets the careless upstream resolves to a priced route, each answered `402` or `400`.
const DECODE_FIRST_FORMS: &[(&str, &str)] = &[
    ("GET", "/weather%3F"),
    ("GET", "/weather%3f"),
    ("GET", "/weather%3Fpaid=no"),
    ("GET", "/weather%3F/../free"),
    ("GET", "/weather%23"),
    ("GET", "/weather%23/x"),
    ("GET", "/WEATHER%23frag"),
    ("GET", "/weather/%3F"),
    ("GET", "/weather/%23"),
    ("HEAD", "/weather%3F"),
    ("GET", "/premium%3Fx"),
    ("POST", "/v1%3F"),
    ("POST", "/v1%23/a"),
    ("POST", "/V1/a%3F/../b"),
    // Format extensions.
    ("GET", "/weather.json"),
    ("GET", "/WEATHER.XML"),
    ("GET", "/weather%2Ejson"),
    ("GET", "/x/../weather.json/"),
    ("HEAD", "/weather.html"),
    ("GET", "/premium.json"),
    ("POST", "/v1.json"),
    ("GET", "/any.php"),
];

#[tokio::test]
async fn encoded_delimiters_and_format_extensions_do_not_open_a_priced_path() {
    let rig = rig().await;
    assert_eq!(decode_first_path("/weather%3Fpaid=no"), "/weather");
    assert_eq!(decode_first_path("/WEATHER%23frag"), "/weather");
    assert_eq!(decode_first_path("/weather.json"), "/weather");

    let mut wrong = Vec::new();
    for (method, target) in DECODE_FIRST_FORMS {
        let r = send(rig.gateway(), method, target, &[]).await;
        // `/weather%3F/../free` resolves to `/free` for everyone: free is right.
        if r.status != 402 && r.status != 400 && r.body != "free" {
            wrong.push(format!("{method} {target}: {} {}", r.status, r.body));
        }
    }
    let served: Vec<String> = rig
        .priced_runs()
        .iter()
        .map(|r| format!("{} {} ran {:?}", r.method, r.target, r.priced))
        .collect();
    assert!(
        wrong.is_empty() && served.is_empty(),
        "answered neither 402 nor 400:\n{}\npriced upstream handlers run unpaid:\n{}",
        wrong.join("\n"),
        served.join("\n")
    );
    // Free routes stay free.
    assert_eq!(send(rig.gateway(), "GET", "/free", &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Identity headers.

#[tokio::test]
async fn identity_headers_spelled_with_any_punctuation_never_reach_the_upstream() {
    let rig = rig().await;
    // Every header-name character (RFC 9110 `tchar`) that is not a letter, a digit or `-`.
    let punctuation = "!#$%&'*+.^_`|~";
    let names: Vec<String> = punctuation
        .chars()
        .flat_map(|c| {
            [
                format!("X{c}Tollgate{c}Payer"),
                format!("x-tollgate{c}amount"),
                format!("X{c}Original{c}URL"),
                format!("X{c}HTTP{c}Method{c}Override"),
            ]
        })
        .collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|n| {
            let value = if n.to_ascii_lowercase().contains("url") {
                "/weather"
            } else if n.to_ascii_lowercase().contains("override") {
                "GET"
            } else {
                "0x000000000000000000000000000000000000dEaD"
            };
            (n.as_str(), value)
        })
        .collect();
    let r = send(rig.gateway(), "GET", "/free", &headers).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let got = rig.last();
    let leaked: Vec<String> = got
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| {
            let c = cgi(k);
            c.starts_with("X_TOLLGATE_") || c == "X_ORIGINAL_URL" || c == "X_HTTP_METHOD_OVERRIDE"
        })
        .map(str::to_owned)
        .collect();
    assert!(
        leaked.is_empty(),
        "the upstream reads these as the gateway's own: {leaked:?}"
    );
    // Harmless punctuation in other names still passes.
    let r = send(rig.gateway(), "GET", "/free", &[("X.Request.Id", "7")]).await;
    assert_eq!(r.status, 200);
    assert!(rig.last().headers.contains_key("x.request.id"));
}

// ---------------------------------------------------------------------------------------------
// Framing: smuggling, pipelining, odd request lines.

/// Unpaid requests whose framing a sloppy proxy might read differently from its upstream, or
/// that hide a priced request inside another: none runs a priced handler.
#[tokio::test]
async fn smuggled_and_pipelined_requests_never_run_a_priced_handler_unpaid() {
    let rig = rig().await;
    let a = rig.gateway();
    let host = format!("Host: {a}\r\n");
    let hidden = format!("GET /weather HTTP/1.1\r\n{host}\r\n");
    let cases: Vec<(&str, String)> = [
        ("TE and CL (CL first), a priced request after the empty chunked body", "POST /free HTTP/1.1\r\n{host}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ("TE and CL (TE first)", "POST /free HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{hidden}"),
        ("TE: chunked, identity", "POST /free HTTP/1.1\r\n{host}Transfer-Encoding: chunked, identity\r\nContent-Length: {len}\r\n\r\n{hidden}"),
        ("TE: identity with CL", "POST /free HTTP/1.1\r\n{host}Transfer-Encoding: identity\r\nContent-Length: {len}\r\n\r\n{hidden}"),
        ("two TE headers", "POST /free HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n{hidden}"),
        ("duplicate CL, different values", "POST /free HTTP/1.1\r\n{host}Content-Length: 0\r\nContent-Length: {len}\r\n\r\n{hidden}"),
        ("CL with a sign", "POST /free HTTP/1.1\r\n{host}Content-Length: +{len}\r\n\r\n{hidden}"),
        ("a priced request as the body of a free one", "GET /free HTTP/1.1\r\n{host}Content-Length: {len}\r\nConnection: close\r\n\r\n{hidden}"),
        ("chunked body with an identity header as a trailer", "POST /free HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nTrailer: X-Tollgate-Payer\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Tollgate-Payer: 0xdead\r\nX-Original-URL: /weather\r\n\r\n"),
        ("chunked on HTTP/1.0", "POST /free HTTP/1.0\r\n{host}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ("obs-fold continuation line", "GET /free HTTP/1.1\r\n{host}X-A: 1\r\n X-Original-URL: /weather\r\nConnection: close\r\n\r\n"),
        ("space before the colon", "GET /free HTTP/1.1\r\n{host}X-Original-URL : /weather\r\nConnection: close\r\n\r\n"),
        ("pipelined: a free request, then a priced one", "GET /free HTTP/1.1\r\n{host}\r\nGET /weather HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
        ("HTTP/1.0 without Host", "GET /weather HTTP/1.0\r\n\r\n"),
        ("absolute-form naming another host", "GET http://elsewhere.test/x/../weather HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
        ("lower-case method", "get /weather HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
        ("HEAD of a GET price", "HEAD /WEATHER/ HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
        ("Expect: 100-continue on a priced POST", "POST /v1/a HTTP/1.1\r\n{host}Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"),
        ("Upgrade on a priced path", "GET /weather HTTP/1.1\r\n{host}Connection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n"),
        ("CONNECT to the upstream", "CONNECT {a} HTTP/1.1\r\n{host}\r\n"),
        ("OPTIONS *", "OPTIONS * HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
    ]
    .into_iter()
    .map(|(name, template)| {
        let request = template
            .replace("{host}", &host)
            .replace("{hidden}", &hidden)
            .replace("{len}", &hidden.len().to_string())
            .replace("{a}", &a.to_string());
        (name, request)
    })
    .collect();
    let mut wrong = Vec::new();
    for (name, request) in &cases {
        let answers = exchange(a, request.as_bytes()).await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        eprintln!("{name}: {statuses:?}");
        for r in &answers {
            if r.body.contains("PRICED") || r.status >= 500 {
                wrong.push(format!("{name}: {} {}", r.status, r.body));
            }
        }
        if let Some(leak) = rig.log.lock().unwrap().iter().find(|r| {
            r.headers.keys().any(|k| {
                let c = cgi(k.as_str());
                c.starts_with("X_TOLLGATE_") || c == "X_ORIGINAL_URL"
            })
        }) {
            wrong.push(format!("{name}: the upstream got {:?}", leak.headers));
        }
    }
    let served: Vec<String> = rig
        .priced_runs()
        .iter()
        .map(|r| format!("{} {} ran {:?}", r.method, r.target, r.priced))
        .collect();
    assert!(
        wrong.is_empty() && served.is_empty(),
        "{}\npriced upstream handlers run unpaid:\n{}",
        wrong.join("\n"),
        served.join("\n")
    );
}

/// Three requests on one keep-alive connection, written at once, carrying one payment (as is,
/// re-encoded, and at another route of the same price): one delivery.
#[tokio::test]
async fn one_payment_pipelined_on_one_connection_is_delivered_once() {
    let rig = rig().await;
    let a = rig.gateway();
    let before = rig.earned().await;
    let payment = rig.pay("GET", "/weather", 1).await;
    let encoded = header::encode(&payment);
    let request = format!(
        "GET /weather HTTP/1.1\r\nHost: {a}\r\nPAYMENT-SIGNATURE: {encoded}\r\n\
         Connection: X-Tollgate-Payer, X-Tollgate-Amount, X-Forwarded-For\r\n\r\n\
         GET /weather HTTP/1.1\r\nHost: {a}\r\nPAYMENT-SIGNATURE: {}\r\n\r\n\
         GET /other HTTP/1.1\r\nHost: {a}\r\nPAYMENT-SIGNATURE: {encoded}\r\nConnection: close\r\n\r\n",
        url_safe(&encoded),
    );
    let answers = exchange(a, request.as_bytes()).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 402, 402], "{answers:#?}");
    assert_eq!(answers[0].body, "PRICED GET /weather");
    let runs = rig.priced_runs();
    assert_eq!(runs.len(), 1);
    // `Connection` naming the gateway's own headers removes the caller's, never the gateway's.
    let payer = TestChain::address(1).to_string();
    assert_eq!(runs[0].headers["x-tollgate-payer"], payer.as_str());
    assert_eq!(
        runs[0].headers["x-tollgate-amount"],
        PRICE.to_string().as_str()
    );
    assert!(runs[0].headers.contains_key("x-forwarded-for"));
    assert_eq!(rig.earned().await, before + U256::from(PRICE));
}

// ---------------------------------------------------------------------------------------------
// One payment, many spellings, two replicas.

/// `value` in the URL-safe base64 alphabet without padding.
fn url_safe(value: &str) -> String {
    value
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// The JSON of `payment` with every hex string's letters upper-cased (`0x` kept) and the
/// payload's keys in reverse order.
fn shouted(payment: &Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if s.starts_with("0x") => {
                *s = format!("0x{}", s[2..].to_ascii_uppercase());
            }
            Value::Object(o) => {
                let reversed: serde_json::Map<String, Value> = std::mem::take(o)
                    .into_iter()
                    .rev()
                    .map(|(k, mut v)| {
                        walk(&mut v);
                        (k, v)
                    })
                    .collect();
                *o = reversed;
            }
            _ => {}
        }
    }
    let mut out = payment.clone();
    walk(&mut out["payload"]);
    out
}

/// Every spelling of `payment` a buyer might send, as (header name, value).
fn spellings(payment: &PaymentPayload) -> Vec<(&'static str, String)> {
    let v2 = header::encode(payment);
    let json = serde_json::to_value(payment).unwrap();
    let loud = header::encode(&shouted(&json));
    let v1 = PaymentPayloadV1::from_v2(payment);
    let v1_json = serde_json::to_value(&v1).unwrap();
    let v1_encoded = header::encode(&v1);
    vec![
        ("PAYMENT-SIGNATURE", v2.clone()),
        ("payment-signature", url_safe(&v2)),
        ("Payment-Signature", v2.trim_end_matches('=').to_owned()),
        ("PAYMENT-SIGNATURE", format!("  {v2}\t")),
        ("PAYMENT-SIGNATURE", loud.clone()),
        ("PAYMENT-SIGNATURE", url_safe(&loud)),
        ("X-PAYMENT", v1_encoded.clone()),
        ("X-PAYMENT", url_safe(&v1_encoded)),
        ("X-PAYMENT", header::encode(&shouted(&v1_json))),
        ("PAYMENT-SIGNATURE", v1_encoded),
    ]
}

/// One request carrying `headers`, on its own connection.
async fn send_owned(addr: SocketAddr, target: &str, headers: Vec<(String, String)>) -> Raw {
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    send(addr, "GET", target, &refs).await
}

#[tokio::test]
async fn one_payment_in_every_spelling_at_once_across_two_replicas_is_delivered_once() {
    let rig = rig().await;
    let before = rig.earned().await;
    let payment = rig.pay("GET", "/weather", 2).await;
    let mut sends = Vec::new();
    for round in 0..3 {
        for (i, (name, value)) in spellings(&payment).into_iter().enumerate() {
            let gateway = rig.gateways[(round + i) % 2];
            // The same price buys `/other` too: a copy may be aimed there.
            let target = if i % 3 == 0 { "/other" } else { "/weather" };
            sends.push(send_owned(gateway, target, vec![(name.to_owned(), value)]));
        }
    }
    let answers = futures::future::join_all(sends).await;
    let ok: Vec<&Raw> = answers.iter().filter(|r| r.status == 200).collect();
    let other: Vec<String> = answers
        .iter()
        .filter(|r| r.status != 200 && r.status != 402)
        .map(|r| format!("{}: {}", r.status, r.body))
        .collect();
    assert_eq!(ok.len(), 1, "{answers:#?}");
    assert!(other.is_empty(), "{other:?}");
    for r in answers.iter().filter(|r| r.status == 402) {
        assert!(!r.reason().is_empty(), "a refusal says why");
        assert!(!r.body.contains("PRICED"));
    }
    assert_eq!(rig.priced_runs().len(), 1, "the upstream ran once");
    assert_eq!(rig.earned().await, before + U256::from(PRICE));

    // Afterwards, every spelling at either replica is refused.
    for (name, value) in spellings(&payment) {
        for gateway in rig.gateways {
            let r = send(gateway, "GET", "/weather", &[(name, &value)]).await;
            assert_eq!(r.status, 402, "{name}: {value}: {}", r.body);
        }
    }
    assert_eq!(rig.priced_runs().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Headers with two payments; a payment at another route.

#[tokio::test]
async fn two_payments_in_one_request_buy_one_delivery_and_charge_one() {
    let rig = rig().await;
    let a = rig.gateway();
    let before = rig.earned().await;
    let first = rig.pay("GET", "/weather", 3).await;
    let second = rig.pay("GET", "/weather", 4).await;
    let v1_second = header::encode(&PaymentPayloadV1::from_v2(&second));

    // v2 and v1 headers with different payments: the v2 one is used, the other is untouched.
    expect(
        a,
        "GET",
        "/weather",
        &[
            ("X-PAYMENT", &v1_second),
            ("PAYMENT-SIGNATURE", &header::encode(&first)),
        ],
        200,
    )
    .await;
    assert_eq!(rig.earned().await, before + U256::from(PRICE));
    assert!(
        !rig.last()
            .headers
            .keys()
            .any(|k| cgi(k.as_str()).contains("PAYMENT")),
        "no payment header reaches the upstream"
    );

    // Two `PAYMENT-SIGNATURE` headers: a used payment first, an unused one second.
    expect(
        a,
        "GET",
        "/weather",
        &[
            ("PAYMENT-SIGNATURE", &header::encode(&first)),
            ("PAYMENT-SIGNATURE", &header::encode(&second)),
        ],
        402,
    )
    .await;
    // A valid one first and a used one second: one delivery, one charge.
    expect(
        a,
        "GET",
        "/weather",
        &[
            ("PAYMENT-SIGNATURE", &header::encode(&second)),
            ("PAYMENT-SIGNATURE", &header::encode(&first)),
            ("X-PAYMENT", &v1_second),
        ],
        200,
    )
    .await;
    assert_eq!(rig.earned().await, before + U256::from(2 * PRICE));
    assert_eq!(rig.priced_runs().len(), 2);
    // Both are spent now, in any header.
    for (name, value) in [
        ("X-PAYMENT", v1_second),
        ("PAYMENT-SIGNATURE", header::encode(&second)),
    ] {
        expect(a, "GET", "/weather", &[(name, &value)], 402).await;
    }
    assert_eq!(rig.priced_runs().len(), 2);
}

#[tokio::test]
async fn a_payment_for_a_cheap_route_does_not_buy_a_dear_one() {
    let rig = rig().await;
    let a = rig.gateway();
    let before = rig.earned().await;
    let cheap = rig.pay("GET", "/weather", 5).await;
    let premium = rig.challenge("GET", "/premium").await;

    // As signed: its `accepted` matches nothing the premium route offers.
    expect(
        a,
        "GET",
        "/premium",
        &[("PAYMENT-SIGNATURE", &header::encode(&cheap))],
        402,
    )
    .await;
    // `accepted` rewritten to the premium requirements: the signed amount is short.
    let mut forged = cheap.clone();
    forged.accepted = premium.accepts[0].clone();
    expect(
        a,
        "GET",
        "/premium",
        &[("PAYMENT-SIGNATURE", &header::encode(&forged))],
        402,
    )
    .await;
    // The v1 form names no amount at all: it is checked against the premium price.
    let v1 = header::encode(&PaymentPayloadV1::from_v2(&cheap));
    expect(a, "GET", "/premium", &[("X-PAYMENT", &v1)], 402).await;
    // The premium route's `maxTimeoutSeconds` or recipient swapped into `accepted` of the
    // cheap route's payment: no match either.
    let mut forged = cheap.clone();
    forged.accepted.max_timeout_seconds += 1;
    expect(
        a,
        "GET",
        "/weather",
        &[("PAYMENT-SIGNATURE", &header::encode(&forged))],
        402,
    )
    .await;
    assert!(rig.priced_runs().is_empty());
    assert_eq!(rig.earned().await, before);

    // The payment still buys what it was made for, once.
    expect(a, "GET", "/weather", &[("X-PAYMENT", &v1)], 200).await;
    assert_eq!(rig.earned().await, before + U256::from(PRICE));
}

// ---------------------------------------------------------------------------------------------
// Bad input.

/// Hostile payment headers are a `402` (or a `400`/`431` from the HTTP layer), never a 5xx,
/// and the facilitator is never blamed for them.
#[tokio::test]
async fn malformed_payment_headers_are_refused_without_a_server_error() {
    let rig = rig().await;
    let a = rig.gateway();
    let valid = rig.pay("GET", "/weather", 6).await;
    let valid_json = serde_json::to_value(&valid).unwrap();
    let with = |path: &[&str], value: Value| {
        let mut v = valid_json.clone();
        let mut at = &mut v;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        header::encode(&v)
    };
    let deep = format!("{}{}", "[".repeat(4000), "]".repeat(4000));
    let huge_number = "1".repeat(100);
    let mut values: Vec<String> = vec![
        String::new(),
        "!!!!".into(),
        "====".into(),
        "e30=".into(),
        header::encode(&Value::Null),
        header::encode(&serde_json::json!([])),
        header::encode(&serde_json::json!({"x402Version": 99})),
        header::encode(&serde_json::json!({"x402Version": "2"})),
        url_safe(&header::encode(&deep)),
        "A".repeat(20_000),
        with(&["payload"], Value::Null),
        with(&["payload"], serde_json::json!({})),
        with(&["payload", "authorization"], serde_json::json!("x")),
        with(&["payload", "signature"], serde_json::json!("0x")),
        with(
            &["payload", "signature"],
            serde_json::json!("0x".to_owned() + &"ab".repeat(5000)),
        ),
        with(
            &["payload", "authorization", "value"],
            Value::String(huge_number.clone()),
        ),
        with(
            &["payload", "authorization", "value"],
            serde_json::json!(-1),
        ),
        with(
            &["payload", "authorization", "value"],
            serde_json::json!("0x61a8"),
        ),
        with(
            &["payload", "authorization", "validBefore"],
            Value::String(huge_number.clone()),
        ),
        with(
            &["payload", "authorization", "validBefore"],
            serde_json::json!(1.5),
        ),
        with(
            &["payload", "authorization", "nonce"],
            serde_json::json!("0x01"),
        ),
        with(
            &["payload", "authorization", "from"],
            serde_json::json!("0x1234"),
        ),
        with(
            &["payload", "authorization", "to"],
            serde_json::json!("nobody"),
        ),
        with(&["accepted", "amount"], serde_json::json!("1e3")),
        with(
            &["accepted", "network"],
            serde_json::json!("eip155:99999999999999999999999"),
        ),
        with(&["accepted", "asset"], serde_json::json!("not an address")),
        with(
            &["extensions"],
            serde_json::json!({"payment-identifier": {"info": {"id": "x"}}}),
        ),
        with(
            &["extensions"],
            serde_json::json!({"payment-identifier": 5}),
        ),
        header::encode(&serde_json::json!({
            "x402Version": 1, "scheme": "exact", "network": "nowhere", "payload": {}
        })),
        header::encode(&serde_json::json!({
            "x402Version": 1, "scheme": "exact", "network": valid.accepted.network, "payload": {"n": 1}
        })),
        header::encode(&serde_json::json!({
            "x402Version": 1, "scheme": "upto", "network": valid.accepted.network, "payload": valid.payload
        })),
    ];
    // Duplicate keys: the payload twice, the second one empty.
    let dup = serde_json::to_string(&valid_json).unwrap();
    let dup = format!("{},\"payload\":{{}}}}", &dup[..dup.len() - 1]);
    values.push(header::encode(
        &serde_json::from_str::<Value>(&dup).unwrap_or(Value::Null),
    ));
    values.push(base64_standard(dup.as_bytes()));

    let mut wrong = Vec::new();
    for value in &values {
        for name in ["PAYMENT-SIGNATURE", "X-PAYMENT"] {
            let r = send(a, "GET", "/weather", &[(name, value)]).await;
            let blamed = r.body.contains("facilitator unavailable");
            if !matches!(r.status, 400 | 402 | 431) || blamed {
                let shown: String = value.chars().take(80).collect();
                wrong.push(format!("{name}: {shown}: {} {}", r.status, r.body));
            }
        }
    }
    // Bytes outside ASCII in the value.
    let mut raw =
        format!("GET /weather HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nPAYMENT-SIGNATURE: ")
            .into_bytes();
    raw.extend_from_slice(&[0xff, 0xfe, b'e', b'3', b'0', b'=']);
    raw.extend_from_slice(b"\r\n\r\n");
    for r in exchange(a, &raw).await {
        if !matches!(r.status, 400 | 402) {
            wrong.push(format!("non-ASCII: {} {}", r.status, r.body));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(rig.priced_runs().is_empty());
    // Still serving, and the valid payment still buys its one delivery.
    expect(
        a,
        "GET",
        "/weather",
        &[("PAYMENT-SIGNATURE", &header::encode(&valid))],
        200,
    )
    .await;
}

/// Standard base64 with padding, without a dependency.
fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Methods.

/// An upstream that answers a path whatever the method is priced with `* /path`: every method
/// pays, in any case, with `OPTIONS` and made-up methods too.
#[tokio::test]
async fn a_star_route_prices_every_method_of_a_method_blind_upstream() {
    let rig = rig().await;
    let mut wrong = Vec::new();
    for method in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO", "get", "Post",
        "PROPFIND",
    ] {
        for target in ["/any", "/ANY/", "/x/../any", "/any%3Fx"] {
            let r = send(rig.gateway(), method, target, &[]).await;
            if r.status != 402 {
                wrong.push(format!("{method} {target}: {} {}", r.status, r.body));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(rig.priced_runs().is_empty());

    let before = rig.earned().await;
    let payment = rig.pay("FOO", "/any", 7).await;
    let r = expect(
        rig.gateway(),
        "FOO",
        "/any",
        &[("PAYMENT-SIGNATURE", &header::encode(&payment))],
        200,
    )
    .await;
    assert_eq!(r.body, "PRICED FOO /any");
    assert_eq!(rig.earned().await, before + U256::from(PRICE));
}

/// Sends `method target` with `headers` and asserts the answer's status.
async fn expect(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    status: u16,
) -> Raw {
    let r = send(addr, method, target, headers).await;
    assert_eq!(r.status, status, "{}", r.body);
    r
}
