//! The gateway in front of a lenient upstream — one that resolves paths the way permissive
//! frameworks and servers do (dot segments, percent-decoding twice, `\` as `/`, `;params`
//! stripped, trailing slashes, dots and spaces ignored, case-insensitive, fullwidth letters
//! folded, method-override and `X-Original-URL` headers honoured, CGI-style header names) —
//! with the real facilitator on a real chain.
//!
//! Every request-target that this upstream would resolve to a priced route must be answered
//! `402` (priced as that route) or `400` (refused) by the gateway: the priced handler never
//! runs unpaid. Identity headers sent by the caller, in any spelling, never reach the
//! upstream. Requests go over a raw TCP socket, since HTTP client libraries normalise the path
//! before sending.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use axum::Router;
use tollgate_evm::{ExactEvmClient, FacilitatorConfig};
use tollgate_gateway::GatewayConfig;
use tollgate_proto::{header, PaymentRequired};
use tollgate_testkit::TestChain;

use support::{
    answer, facilitator, percent_decode_lossy, priced_runs, route, serve, Log, Received,
};

/// A header as CGI, WSGI, Rack and PHP name it: upper case, `-` as `_`.
fn cgi(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The path a lenient framework routes on, from the raw path it was given.
fn lenient_path(raw: &str) -> String {
    let mut p = raw.to_owned();
    // Decode twice (a decoding proxy in front of a decoding app), `\` as `/` each time.
    for _ in 0..2 {
        p = percent_decode_lossy(&p.replace('\\', "/")).replace('\\', "/");
    }
    // C strings end at NUL; line breaks and tabs are dropped.
    if let Some(nul) = p.find('\0') {
        p.truncate(nul);
    }
    p.retain(|c| !matches!(c, '\r' | '\n' | '\t'));
    // Fullwidth ASCII folds to ASCII (NFKC).
    let p: String = p
        .chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    for segment in p.split('/') {
        // `;params` stripped (Tomcat, Spring).
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => {
                // Windows drops trailing dots and spaces.
                let s = s.trim_end_matches(['.', ' ']);
                if !s.is_empty() {
                    out.push(s.to_lowercase());
                }
            }
        }
    }
    format!("/{}", out.join("/"))
}

/// The upstream: priced handlers `GET /weather` and `POST /v1/*`, a free `/free`; it logs
/// every request.
async fn lenient(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| cgi(k.as_str()) == cgi(name))
            .and_then(|(_, v)| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut effective = method.as_str().to_ascii_uppercase();
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        if let Some(m) = header(name) {
            effective = m.to_ascii_uppercase();
        }
    }
    if effective == "HEAD" {
        effective = "GET".into();
    }
    let raw_path = header("x-original-url")
        .or_else(|| header("x-rewrite-url"))
        .unwrap_or_else(|| uri.path().to_owned());
    let path = lenient_path(&raw_path);
    let priced = match (effective.as_str(), path.as_str()) {
        ("GET", "/weather") => Some("GET /weather".to_owned()),
        ("POST", p) if p == "/v1" || p.starts_with("/v1/") => Some(format!("POST {p}")),
        _ => None,
    };
    answer(&log, &method, &uri, headers.clone(), &path, priced)
}

/// A response read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `method target` exactly as written, with `headers`, and reads the answer's head.
async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Raw { status, head }
    })
    .await
    .unwrap()
}

struct Rig {
    _chain: TestChain,
    gateway: SocketAddr,
    log: Log,
}

impl Rig {
    fn priced_runs(&self) -> Vec<Received> {
        priced_runs(&self.log)
    }

    fn last(&self) -> Received {
        self.log
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream got a request")
    }
}

async fn rig() -> Rig {
    let chain = TestChain::start().await.unwrap();
    let facilitator = facilitator(&chain, FacilitatorConfig::default()).await;
    let log: Log = Arc::default();
    let upstream = serve(Router::new().fallback(lenient).with_state(log.clone())).await;
    let route = |r: &str| route(&chain, r, 25_000);
    let text = format!(
        "upstream = \"http://{upstream}\"\n[facilitator]\nurl = \"http://{facilitator}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{}\"\n{}{}",
        chain.caip2(),
        TestChain::address(9),
        route("GET /weather"),
        route("POST /v1/*"),
    );
    let config = GatewayConfig::parse(&text).unwrap();
    let gateway = serve(tollgate_gateway::app(&config).await.unwrap()).await;
    Rig {
        _chain: chain,
        gateway,
        log,
    }
}

/// Request-targets the lenient upstream resolves to a priced route.
const PRICED_FORMS: &[(&str, &str)] = &[
    ("GET", "/weather"),
    ("HEAD", "/weather"),
    ("HEAD", "/x/../weather"),
    ("get", "/weather"),
    ("GET", "/weather/"),
    ("GET", "/WEATHER"),
    ("GET", "/Weather/"),
    ("GET", "//weather"),
    ("GET", "/./weather"),
    ("GET", "/x/../weather"),
    ("GET", "/x/./../weather"),
    ("GET", "/x/y/../../weather"),
    ("GET", "/x/%2e%2e/weather"),
    ("GET", "/x/%2E%2E/weather"),
    ("GET", "/x/.%2e/weather"),
    ("GET", "/%2e/weather"),
    ("GET", "/%77eather"),
    ("GET", "/%57%45%41%54%48%45%52"),
    ("GET", "/we%61ther"),
    ("GET", "/weather."),
    ("GET", "/weather.."),
    ("GET", "/weather%20"),
    ("GET", "/weather?then=/../free"),
    ("GET", "/weather#fragment"),
    ("GET", "/%EF%BD%97eather"),
    ("GET", "/ｗｅａｔｈｅｒ"),
    ("GET", "http://elsewhere.test/x/../weather"),
    ("POST", "/v1"),
    ("POST", "/v1/"),
    ("POST", "/v1/a"),
    ("POST", "/V1/a"),
    ("POST", "/x/../v1/a"),
    ("POST", "//v1//a"),
    ("POST", "/%76%31/a"),
    ("POST", "/v1./a"),
    // Refused forms (400).
    ("GET", "/weather;x=1"),
    ("GET", "/weather;"),
    ("GET", "/x;y/../weather"),
    ("GET", "/x/..;/weather"),
    ("GET", "/x%2F..%2Fweather"),
    ("GET", "/x%2f..%2fweather"),
    ("GET", "/x\\..\\weather"),
    ("GET", "/x%5C..%5Cweather"),
    ("GET", "/x/%252e%252e/weather"),
    ("GET", "/%2577eather"),
    ("GET", "/x%252F..%252Fweather"),
    ("GET", "/weather%00"),
    ("GET", "/weather%00.json"),
    ("GET", "/weather%0a"),
    ("GET", "/weather%09"),
    ("GET", "/weather%"),
    ("GET", "/weather%zz"),
    ("GET", "/x/.../weather"),
    ("GET", "/x/%EF%BC%8E%EF%BC%8E/weather"),
    ("GET", "/x%EF%BC%8F..%EF%BC%8Fweather"),
    ("GET", "/x%EF%BC%BC..%EF%BC%BCweather"),
    ("GET", "/..%2Fweather"),
    ("GET", "/../weather"),
    ("GET", "/.."),
    ("POST", "/v1;a/x"),
    ("POST", "/x/..;/v1/a"),
    ("POST", "/x%2F..%2Fv1/a"),
];

#[tokio::test]
async fn every_form_of_a_priced_path_is_priced_or_refused() {
    let rig = rig().await;
    // The lenient upstream really does serve these forms as the priced routes.
    assert_eq!(lenient_path("/x/..;/WEATHER."), "/weather");
    assert_eq!(lenient_path("/x%252F..%252Fweather"), "/weather");
    assert_eq!(lenient_path("/x\\..\\weather"), "/weather");

    let mut wrong = Vec::new();
    for (method, target) in PRICED_FORMS {
        let r = send(rig.gateway, method, target, &[]).await;
        if r.status != 402 && r.status != 400 {
            wrong.push(format!("{method} {target}: {}", r.status));
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
}

/// Extra request headers, name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn rerouting_headers_do_not_reach_the_upstream() {
    let rig = rig().await;
    let spoof: &[(&str, &str, Headers)] = &[
        ("POST", "/weather", &[("X-HTTP-Method-Override", "GET")]),
        ("POST", "/weather", &[("X_HTTP_Method_Override", "GET")]),
        ("POST", "/weather", &[("X-HTTP-Method", "GET")]),
        ("POST", "/weather", &[("X-Method-Override", "GET")]),
        ("GET", "/v1/a", &[("x-http-method-override", "POST")]),
        ("GET", "/free", &[("X-Original-URL", "/weather")]),
        ("GET", "/free", &[("X_Original_URL", "/weather")]),
        ("GET", "/free", &[("X-Rewrite-URL", "/weather")]),
    ];
    let mut wrong = Vec::new();
    for (method, target, headers) in spoof {
        let r = send(rig.gateway, method, target, headers).await;
        if r.status == 200 {
            // Only a free route may answer 200 for nothing.
            let got = rig.last();
            if got.priced.is_some() {
                wrong.push(format!(
                    "{method} {target} {headers:?}: ran {:?}",
                    got.priced
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(rig.priced_runs().is_empty());
    let r = send(
        rig.gateway,
        "GET",
        "/free",
        &[("X-Original-URL", "/weather")],
    )
    .await;
    assert_eq!(r.status, 200);
    let got = rig.last();
    assert_eq!(got.target, "/free");
    assert!(got
        .headers
        .keys()
        .all(|k| cgi(k.as_str()) != "X_ORIGINAL_URL"));
}

/// Caller-sent identity headers in every spelling; the gateway's own are the only ones left.
const SPOOFED: &[(&str, &str)] = &[
    (
        "X_Tollgate_Payer",
        "0x000000000000000000000000000000000000dEaD",
    ),
    (
        "x-tollgate-payer",
        "0x000000000000000000000000000000000000bEEF",
    ),
    (
        "X-TOLLGATE-PAYER",
        "0x000000000000000000000000000000000000F00D",
    ),
    ("X_TOLLGATE_AMOUNT", "999999999"),
    ("x-tollgate_network", "eip155:1"),
    ("X-Tollgate-Transaction", "0xfeed"),
    ("X_Forwarded_For", "203.0.113.9"),
];

fn identity_headers(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| cgi(k.as_str()).starts_with("X_TOLLGATE_"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect()
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let rig = rig().await;
    let r = send(rig.gateway, "GET", "/free", SPOOFED).await;
    assert_eq!(r.status, 200);
    let got = rig.last();
    assert_eq!(identity_headers(&got.headers), vec![], "on a free route");
    assert!(got.headers.keys().all(|k| k.as_str() != "x_forwarded_for"));

    // A paid request to an odd spelling of the route: the upstream gets the canonical path,
    // the real payer and nothing the caller claimed.
    let target = "/x/../%77eather/";
    let r = send(rig.gateway, "GET", target, &[]).await;
    assert_eq!(r.status, 402);
    let challenge: PaymentRequired =
        header::decode(r.header(header::PAYMENT_REQUIRED.as_str()).unwrap()).unwrap();
    assert_eq!(
        challenge.resource.url,
        format!("http://{}/weather/", rig.gateway),
        "the challenge names the canonical path"
    );
    let payment = ExactEvmClient::new(TestChain::signer(5))
        .sign(&challenge.accepts[0], Some(challenge.resource.clone()))
        .await
        .unwrap();
    let payment = header::encode(&payment);
    let mut headers = SPOOFED.to_vec();
    let name = header::PAYMENT_SIGNATURE;
    headers.push((name.as_str(), &payment));
    let r = send(rig.gateway, "GET", target, &headers).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let runs = rig.priced_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let got = &runs[0];
    assert_eq!(
        got.target, "/weather/",
        "the upstream gets the path that was priced"
    );
    let payer = TestChain::address(5).to_string();
    let mut ids = identity_headers(&got.headers);
    ids.sort();
    let names: Vec<&str> = ids.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-tollgate-amount",
            "x-tollgate-asset",
            "x-tollgate-network",
            "x-tollgate-payer"
        ],
        "{ids:?}"
    );
    assert!(ids.contains(&("x-tollgate-payer".into(), payer)), "{ids:?}");
    assert!(
        ids.contains(&("x-tollgate-amount".into(), "25000".into())),
        "{ids:?}"
    );
}
