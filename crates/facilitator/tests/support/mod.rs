//! The test rig the facilitator's integration tests share: a facilitator's HTTP router on a
//! local port, payment requirements for a token on the test chain, signed payments, and
//! request helpers.
#![allow(dead_code)]

use alloy::primitives::{Address, U256};
use serde_json::{json, Value};
use tollgate_evm::ExactEvmClient;
use tollgate_facilitator::{http, Config, Facilitator};
use tollgate_proto::{PaymentPayload, PaymentRequirements};
use tollgate_testkit::TestChain;

pub const PRICE: u64 = 10_000;

/// Serves `facilitator`'s HTTP API on a local port: its base URL and the server task.
pub async fn serve(facilitator: Facilitator) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = http::router(facilitator, http::HttpLimits::default());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}

/// `exact` requirements for [`PRICE`] of `asset` (a USD Coin, version 2) paid to `payee`.
pub fn requirements_for(chain: &TestChain, payee: Address, asset: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": chain.caip2(),
        "amount": PRICE.to_string(),
        "asset": asset.to_string(),
        "payTo": payee.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .unwrap()
}

/// A payment of `requirements` signed by the test account `payer`.
pub async fn sign(requirements: &PaymentRequirements, payer: usize) -> PaymentPayload {
    ExactEvmClient::new(TestChain::signer(payer))
        .sign(requirements, None)
        .await
        .unwrap()
}

/// A v2 `/verify` or `/settle` body.
pub fn body(payment: &PaymentPayload, requirements: &PaymentRequirements) -> Value {
    json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements })
}

/// POSTs `body` to `{url}{path}`, with an `Idempotency-Key` when `key` is given: the status
/// and the JSON answer.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = client.post(format!("{url}{path}")).json(body);
    if let Some(k) = key {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The transaction count of `who` at `block` ("latest", "pending").
pub async fn tx_count_at(chain: &TestChain, who: Address, block: &str) -> u64 {
    let n = chain
        .rpc("eth_getTransactionCount", json!([who, block]))
        .await
        .unwrap();
    u64::from_str_radix(n.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One facilitator on a fresh test chain, served over HTTP, with requirements paying
/// [`PRICE`] of the chain's USDC to test account 9.
pub struct Rig {
    pub chain: TestChain,
    pub facilitator: Facilitator,
    pub url: String,
    pub http: reqwest::Client,
    pub requirements: PaymentRequirements,
    pub payee: Address,
    pub _server: tokio::task::JoinHandle<()>,
    pub _dir: tempfile::TempDir,
}

impl Rig {
    /// Starts a chain and a facilitator with the configuration `config` writes for it (given
    /// the chain and a temporary directory).
    pub async fn start(config: impl FnOnce(&TestChain, &std::path::Path) -> Config) -> Rig {
        let chain = TestChain::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = config(&chain, dir.path());
        let (facilitator, _) = Facilitator::from_config(&config).await.unwrap();
        let (url, server) = serve(facilitator.clone()).await;
        let payee = TestChain::address(9);
        let requirements = requirements_for(&chain, payee, chain.usdc);
        Rig {
            chain,
            facilitator,
            url,
            http: reqwest::Client::new(),
            requirements,
            payee,
            _server: server,
            _dir: dir,
        }
    }

    pub async fn pay(&self, payer: usize) -> PaymentPayload {
        sign(&self.requirements, payer).await
    }

    pub fn body(&self, payment: &PaymentPayload) -> Value {
        body(payment, &self.requirements)
    }

    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        post(&self.http, &self.url, path, body, key).await
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.chain.usdc_balance(who).await.unwrap()
    }

    /// Transactions the facilitator's signer has sent.
    pub async fn sent(&self) -> u64 {
        tx_count_at(&self.chain, TestChain::address(0), "latest").await
    }
}
