//! The rig shared by the gateway's integration tests: serving an app on a free port, the real
//! facilitator (over HTTP) on a test chain, a priced route's table in the gateway's file, and
//! what a logging upstream received. Each test binary uses a subset.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use tollgate_evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_testkit::TestChain;

/// Serves `app` (with connect info) on a free local port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// [`serve`], answering the base URL (`http://127.0.0.1:port`).
pub async fn serve_url(app: Router) -> String {
    format!("http://{}", serve(app).await)
}

/// The real facilitator, settling on `chain` with dev account 0, served over HTTP.
pub async fn facilitator(chain: &TestChain, config: FacilitatorConfig) -> SocketAddr {
    let scheme = ExactEvmFacilitator::connect(&chain.endpoint(), TestChain::signer(0), config)
        .await
        .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    serve(tollgate_facilitator::http::router(
        facilitator,
        Default::default(),
    ))
    .await
}

/// A `[[routes]]` table pricing `route` at `amount` of the chain's USDC.
pub fn route(chain: &TestChain, route: &str, amount: u64) -> String {
    format!(
        "[[routes]]\nroute = \"{route}\"\namount = \"{amount}\"\nasset = \"{}\"\nextra = {{ name = \"USD Coin\", version = \"2\" }}\n",
        chain.usdc
    )
}

/// `%XX` escapes decoded, anything else (and invalid UTF-8) kept as it is.
pub fn percent_decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request as a logging upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    /// The priced handler it ran (`"GET /weather"`), if any.
    pub priced: Option<String>,
}

pub type Log = Arc<Mutex<Vec<Received>>>;

/// The requests in `log` that ran a priced handler.
pub fn priced_runs(log: &Log) -> Vec<Received> {
    let log = log.lock().unwrap();
    log.iter().filter(|r| r.priced.is_some()).cloned().collect()
}

/// A logging upstream's answer once it has routed `path`: `PRICED ...` from the priced
/// handler it ran, `free` at `/free`, else 404; the request is added to `log`.
pub fn answer(
    log: &Log,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    path: &str,
    priced: Option<String>,
) -> (StatusCode, String) {
    let (status, body) = match (&priced, path) {
        (Some(p), _) => (StatusCode::OK, format!("PRICED {p}")),
        (None, "/free") => (StatusCode::OK, "free".to_owned()),
        (None, _) => (StatusCode::NOT_FOUND, "not found".to_owned()),
    };
    log.lock().unwrap().push(Received {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        priced,
    });
    (status, body)
}
