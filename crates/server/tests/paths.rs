//! The paywall layer in front of an axum router: every spelling of a priced path is priced
//! (or refused with `400`), `HEAD` is priced by a `GET` price, and the router behind the layer
//! receives the canonical path.
//!
//! Requests go over a raw TCP socket: HTTP client libraries resolve `..` and re-encode paths
//! before sending, which is exactly what a hostile buyer does not do.
//!
//! No payment is ever made here, so the facilitator is never contacted: the paywall answers
//! unpaid requests to static prices from its own challenge. It points at a closed port, so a
//! request that did reach it would fail loudly instead of passing.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;
use tollgate_proto::{header, PaymentRequired, U256};
use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};

/// A response read off the wire.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `method target` as written, byte for byte, and reads the whole answer.
async fn send(addr: &str, method: &str, target: &str) -> Raw {
    let addr = addr.to_owned();
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Raw {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    })
    .await
    .unwrap()
}

struct Shop {
    addr: String,
    /// Runs of the priced handlers.
    served: Arc<AtomicUsize>,
}

async fn shop() -> Shop {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let option = PaymentOption::atomic(
        U256::from(10_000u64),
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        tollgate_proto::Network::eip155(31337),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        None,
    );
    let layer = PaywallLayer::new(RemoteFacilitator::new(&format!("http://{closed}")))
        .route("GET /weather", RoutePrice::new(option.clone()))
        .unwrap()
        .route("POST /v1/*", RoutePrice::new(option))
        .unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let (s1, s2) = (served.clone(), served.clone());
    let app = Router::new()
        .route(
            "/weather",
            get(move || async move {
                s1.fetch_add(1, Ordering::SeqCst);
                "sunny"
            }),
        )
        .route(
            "/v1/{*rest}",
            post(move || async move {
                s2.fetch_add(1, Ordering::SeqCst);
                "v1"
            }),
        )
        // Free: says which target the router was given.
        .route(
            "/echo/{*rest}",
            get(|uri: Uri| async move { uri.to_string() }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop { addr, served }
}

#[tokio::test]
async fn every_spelling_of_a_priced_route_asks_for_payment() {
    let shop = shop().await;
    let priced: &[(&str, &str)] = &[
        ("GET", "/weather"),
        ("HEAD", "/weather"),
        ("HEAD", "/x/../weather"),
        ("GET", "/x/../weather"),
        ("GET", "/x/%2e%2e/weather"),
        ("GET", "/x/.%2E/weather"),
        ("GET", "/./weather"),
        ("GET", "//weather"),
        ("GET", "/%77eather"),
        ("GET", "/%57EATHER"),
        ("GET", "/weather/"),
        ("GET", "/WEATHER"),
        ("GET", "/weather."),
        ("GET", "/weather?q=/../free"),
        ("GET", "http://elsewhere.test/x/../weather"),
        ("POST", "/v1"),
        ("POST", "/v1/a"),
        ("POST", "/x/../v1/a"),
        ("POST", "/V1//a/./b"),
    ];
    let refused: &[(&str, &str)] = &[
        ("GET", "/weather;x=1"),
        ("GET", "/x/..;/weather"),
        ("GET", "/x%2F..%2Fweather"),
        ("GET", "/x\\..\\weather"),
        ("GET", "/x%5C..%5Cweather"),
        ("GET", "/x/%252e%252e/weather"),
        ("GET", "/weather%00"),
        ("GET", "/weather%zz"),
        ("GET", "/../weather"),
        ("GET", "/x/.../weather"),
        ("GET", "/x/%EF%BC%8E%EF%BC%8E/weather"),
        ("POST", "/v1;a/x"),
    ];
    let mut wrong = Vec::new();
    for (method, target) in priced {
        let r = send(&shop.addr, method, target).await;
        if r.status != 402 {
            wrong.push(format!("{method} {target}: {} (want 402)", r.status));
        }
    }
    for (method, target) in refused {
        let r = send(&shop.addr, method, target).await;
        if r.status != 400 || !r.body.contains("invalid_request_target") {
            wrong.push(format!(
                "{method} {target}: {} {} (want 400)",
                r.status, r.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        shop.served.load(Ordering::SeqCst),
        0,
        "a priced handler ran unpaid"
    );
}

#[tokio::test]
async fn the_challenge_and_the_router_see_the_canonical_path() {
    let shop = shop().await;
    let r = send(&shop.addr, "GET", "/x/../%77eather/?a=%2e%2e").await;
    assert_eq!(r.status, 402);
    let challenge: PaymentRequired =
        header::decode(r.header(header::PAYMENT_REQUIRED.as_str()).unwrap()).unwrap();
    assert_eq!(challenge.resource.url, "http://shop.test/weather/?a=%2e%2e");

    // A free route behind the layer gets the canonical path and the query untouched.
    let r = send(&shop.addr, "GET", "/echo/a/../B/%7Ex/%2e/?q=%2e%2e/x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "/echo/B/~x/?q=%2e%2e/x");
    assert_eq!(shop.served.load(Ordering::SeqCst), 0);
}
