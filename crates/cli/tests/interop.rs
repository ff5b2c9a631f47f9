//! Interoperability with the official x402 TypeScript SDK (`@x402/*`, `tests/interop/`): every
//! combination of {official, Tollgate} × {client, resource server, facilitator} pays for one
//! resource on one real anvil chain, and the official and Tollgate facilitators must refuse the
//! same bad payments with the same reason codes. The replay rows (issue 13) put the official
//! `@x402/express` paywall in front of each facilitator and send one payment several times (one
//! delivery, one transfer), and drive the official `payment-identifier` extension
//! (`@x402/extensions`) through both facilitators: only the attempt that owns an id gets an earlier
//! settlement back, the same id with another payment is a `409`, a malformed id a `400`.
//!
//! Needs Node.js and `npm ci` in `tests/interop` (`./scripts/test` and `.ci/run` do it).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use support::{interop_dir, node, run_output, spawn_until, tollgate, Proc, Shown, Side, SIDES};
use tollgate_testkit::{TestChain, DEV_KEYS};

/// The price of the resource, in atomic units of the test token (0.01 USDC).
const PRICE: u64 = 10_000;
/// What the resource returns.
const BODY: &str = "the interop resource";

fn check_node_project() {
    let modules = interop_dir().join("node_modules/@x402/core");
    assert!(
        modules.is_dir(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
}

/// The shared rig: one anvil, both facilitators, and the four resource servers (each kind in
/// front of each facilitator).
struct Rig {
    /// The x402 version the official packages speak: 2 (`@x402/*`) or 1 (`x402-fetch`,
    /// `x402-express`).
    version: u8,
    chain: TestChain,
    dir: tempfile::TempDir,
    payee: Address,
    facilitators: BTreeMap<Side, (Proc, String)>,
    servers: BTreeMap<(Side, Side), (Proc, String)>,
}

impl Rig {
    fn chain_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("X402_RPC_URL", self.chain.endpoint()),
            ("X402_CHAIN_ID", self.chain.chain_id().to_string()),
        ]
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (side, (p, _)) in &self.facilitators {
            out.push_str(&format!("--- {side} facilitator:\n{}\n", p.log_tail()));
        }
        for ((s, f), (p, _)) in &self.servers {
            out.push_str(&format!(
                "--- {s} server (facilitator {f}):\n{}\n",
                p.log_tail()
            ));
        }
        out
    }
}

async fn start_facilitator(chain: &TestChain, dir: &Path, side: Side) -> (Proc, String) {
    let v1_network = match chain.chain_id() {
        84532 => Some("base-sepolia"),
        _ => None,
    };
    match side {
        Side::Tollgate => {
            let config = dir.join("facilitator.toml");
            std::fs::write(
                &config,
                format!(
                    "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_INTEROP_SIGNER\"\n",
                    dir.join("ledger.db").display(),
                    chain.caip2(),
                    chain.endpoint()
                ),
            )
            .unwrap();
            let mut command = tollgate();
            command
                .args(["facilitator", "--config"])
                .arg(&config)
                .env("TOLLGATE_INTEROP_SIGNER", DEV_KEYS[8]);
            let (p, addr) = spawn_until(
                command,
                dir.join("tollgate-facilitator.log"),
                "tollgate facilitator listening on ",
                true,
            );
            (p, addr)
        }
        Side::Official => {
            let mut env = vec![
                ("X402_RPC_URL", chain.endpoint()),
                ("X402_CHAIN_ID", chain.chain_id().to_string()),
                ("X402_FACILITATOR_KEY", DEV_KEYS[9].to_owned()),
            ];
            if let Some(name) = v1_network {
                env.push(("X402_V1_NETWORK", name.to_owned()));
            }
            let command = node("facilitator.mjs", &env);
            let (p, port) = spawn_until(
                command,
                dir.join("official-facilitator.log"),
                "ready facilitator ",
                false,
            );
            (p, format!("http://127.0.0.1:{port}"))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_server(
    version: u8,
    chain: &TestChain,
    dir: &Path,
    side: Side,
    facilitator: Side,
    facilitator_url: &str,
    payee: Address,
    upstream: &str,
) -> (Proc, String) {
    let name = format!("{side}-server-via-{facilitator}");
    match side {
        Side::Tollgate => {
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n[facilitator]\nurl = \"{facilitator_url}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{payee}\"\n[[routes]]\nroute = \"GET /paid\"\namount = \"{PRICE}\"\nasset = \"{}\"\nextra = {{ name = \"USD Coin\", version = \"2\" }}\n",
                    chain.caip2(),
                    chain.usdc
                ),
            )
            .unwrap();
            let mut command = tollgate();
            command.args(["proxy", "--config"]).arg(&config);
            let (p, rest) = spawn_until(
                command,
                dir.join(format!("{name}.log")),
                "tollgate proxy listening on ",
                true,
            );
            let addr = rest.split(',').next().unwrap().to_owned();
            (p, addr)
        }
        Side::Official => official_server(
            if version == 1 {
                "server-v1.mjs"
            } else {
                "server.mjs"
            },
            chain,
            dir,
            &name,
            facilitator_url,
            payee,
            &[],
        ),
    }
}

/// Starts an official resource server script (`server.mjs` or `server-v1.mjs`) selling `GET
/// /paid` for [`PRICE`], with `extra` environment on top (e.g. `X402_HANDLER_DELAY_MS`,
/// `X402_PAYMENT_IDENTIFIER`); returns it and its base URL.
#[allow(clippy::too_many_arguments)]
fn official_server(
    script: &str,
    chain: &TestChain,
    dir: &Path,
    name: &str,
    facilitator_url: &str,
    payee: Address,
    extra: &[(&str, String)],
) -> (Proc, String) {
    let mut env = vec![
        ("X402_V1_NETWORK", "base-sepolia".to_owned()),
        ("X402_CHAIN_ID", chain.chain_id().to_string()),
        ("X402_FACILITATOR_URL", facilitator_url.to_owned()),
        ("X402_PAY_TO", payee.to_string()),
        ("X402_ASSET", chain.usdc.to_string()),
        ("X402_TOKEN_NAME", "USD Coin".to_owned()),
        ("X402_TOKEN_VERSION", "2".to_owned()),
        ("X402_PRICE", PRICE.to_string()),
        ("X402_BODY", BODY.to_owned()),
    ];
    env.extend(extra.iter().cloned());
    let command = node(script, &env);
    let (p, port) = spawn_until(
        command,
        dir.join(format!("{name}.log")),
        "ready server ",
        false,
    );
    (p, format!("http://127.0.0.1:{port}"))
}

async fn rig(version: u8) -> Rig {
    check_node_project();
    // x402 v1 names networks; Base Sepolia's chain id makes anvil `base-sepolia`.
    let chain = match version {
        1 => TestChain::start_with_chain_id(84532).await.unwrap(),
        _ => TestChain::start().await.unwrap(),
    };
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payee = PrivateKeySigner::random().address();

    // The upstream behind `tollgate proxy`.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let app = axum::Router::new().route("/paid", axum::routing::get(|| async { BODY }));
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    let mut facilitators = BTreeMap::new();
    for side in SIDES {
        facilitators.insert(side, start_facilitator(&chain, dir.path(), side).await);
    }
    let mut servers = BTreeMap::new();
    for server in SIDES {
        for facilitator in SIDES {
            let url = facilitators[&facilitator].1.clone();
            servers.insert(
                (server, facilitator),
                start_server(
                    version,
                    &chain,
                    dir.path(),
                    server,
                    facilitator,
                    &url,
                    payee,
                    &upstream_url,
                )
                .await,
            );
        }
    }
    Rig {
        version,
        chain,
        dir,
        payee,
        facilitators,
        servers,
    }
}

async fn pay(rig: &Rig, client: Side, url: &str, payer_key: &str) -> Shown {
    match client {
        Side::Official => {
            let mut env = rig.chain_env();
            env.push(("X402_URL", url.to_owned()));
            env.push(("X402_PAYER_KEY", payer_key.to_owned()));
            let script = if rig.version == 1 {
                "client-v1.mjs"
            } else {
                "client.mjs"
            };
            let command = node(script, &env);
            let out = tokio::task::spawn_blocking(move || run_output(command))
                .await
                .unwrap();
            Shown::official(&out)
        }
        Side::Tollgate => {
            let mut command = tollgate();
            command
                .args(["pay", url, "-i", "-y", "--asset"])
                .arg(format!("{}/{}/USDC/6", rig.chain.caip2(), rig.chain.usdc))
                .arg("--ledger")
                .arg(
                    rig.dir
                        .path()
                        .join(format!("spend-{}.db", rand_suffix(payer_key))),
                )
                .env("TOLLGATE_PAY_KEY", payer_key);
            let out = tokio::task::spawn_blocking(move || run_output(command))
                .await
                .unwrap();
            Shown::tollgate_pay(&out)
        }
    }
}

fn rand_suffix(key: &str) -> String {
    key[key.len() - 8..].to_owned()
}

/// Checks one combination; returns why it failed.
async fn check_combination(
    rig: &Rig,
    client: Side,
    server: Side,
    facilitator: Side,
) -> Result<String, String> {
    let payer = PrivateKeySigner::random();
    let payer_key = format!("0x{}", alloy::hex::encode(payer.to_bytes()));
    rig.chain
        .mint(payer.address(), U256::from(1_000_000u64))
        .await
        .unwrap();
    let payer_before = rig.chain.usdc_balance(payer.address()).await.unwrap();
    let payee_before = rig.chain.usdc_balance(rig.payee).await.unwrap();
    let url = format!("{}/paid", rig.servers[&(server, facilitator)].1);
    let outcome = pay(rig, client, &url, &payer_key).await;
    let fail = |why: String| Err(format!("{why}\nclient output: {}", outcome.raw));
    if outcome.status != 200 {
        return fail(format!("HTTP {}", outcome.status));
    }
    if outcome.body != BODY {
        return fail(format!("body {:?}", outcome.body));
    }
    let Some(receipt) = &outcome.receipt else {
        return fail("no payment-response header".into());
    };
    if receipt["success"] != json!(true) {
        return fail(format!("receipt not successful: {receipt}"));
    }
    // A v1 payment (an official v1 party on either end) is answered in v1 terms.
    let expected_network =
        if rig.version == 1 && (client == Side::Official || server == Side::Official) {
            "base-sepolia".to_owned()
        } else {
            rig.chain.caip2()
        };
    if receipt["network"] != json!(expected_network) {
        return fail(format!("receipt network: {receipt}"));
    }
    let payer_in_receipt = receipt["payer"].as_str().unwrap_or_default();
    if !payer_in_receipt.eq_ignore_ascii_case(&payer.address().to_string()) {
        return fail(format!("receipt payer: {receipt}"));
    }
    let Some(tx) = receipt["transaction"]
        .as_str()
        .and_then(|t| t.parse::<B256>().ok())
    else {
        return fail(format!("receipt transaction: {receipt}"));
    };
    match rig.chain.provider().get_transaction_receipt(tx).await {
        Ok(Some(r)) if r.status() => {}
        other => {
            return fail(format!(
                "transaction {tx} not mined successfully: {other:?}"
            ))
        }
    }
    let payer_after = rig.chain.usdc_balance(payer.address()).await.unwrap();
    let payee_after = rig.chain.usdc_balance(rig.payee).await.unwrap();
    let price = U256::from(PRICE);
    if payer_before - payer_after != price || payee_after - payee_before != price {
        return fail(format!(
            "balances: payer {payer_before} -> {payer_after}, payee {payee_before} -> {payee_after}"
        ));
    }
    Ok(format!("{tx}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_matrix_all_eight_combinations_pay() {
    matrix(2).await;
}

/// x402 v1: the official v1 client and server (`x402-fetch`, `x402-express` 1.2.0) with
/// Tollgate's and the official facilitator, on anvil as `base-sepolia`. Tollgate client with
/// Tollgate server speaks v2 and is covered by the v2 matrix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_matrix_v1_official_packages_pay() {
    matrix(1).await;
}

async fn matrix(version: u8) {
    let rig = rig(version).await;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for client in SIDES {
        for server in SIDES {
            for facilitator in SIDES {
                if version == 1 && client == Side::Tollgate && server == Side::Tollgate {
                    continue;
                }
                let result = check_combination(&rig, client, server, facilitator).await;
                let verdict = match &result {
                    Ok(_) => "PASS".to_owned(),
                    Err(e) => {
                        failures.push(format!(
                            "client {client} / server {server} / facilitator {facilitator}: {e}"
                        ));
                        "FAIL".to_owned()
                    }
                };
                rows.push(format!(
                    "| {client:<8} | {server:<8} | {facilitator:<11} | {verdict} |"
                ));
            }
        }
    }
    println!("x402 v{version}:");
    println!("| client   | server   | facilitator | result |");
    println!("|----------|----------|-------------|--------|");
    for row in &rows {
        println!("{row}");
    }
    assert!(
        failures.is_empty(),
        "x402 v{version}: {} of {} combinations failed:\n{}\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n"),
        rig.logs()
    );
}

/// Signs `accepts[0]` of a challenge with the official client (`tests/interop/sign.mjs`).
async fn official_sign(chain: &TestChain, payment_required: &Value, payer_key: &str) -> Value {
    official_sign_many(chain, payment_required, payer_key, 1, None)
        .await
        .remove(0)
}

/// Signs `count` payments (each its own nonce) for `accepts[0]` of a challenge with the official
/// client (`tests/interop/sign.mjs`); with `payment_id`, the client attaches it with
/// `@x402/extensions`' `appendPaymentIdentifierToExtensions`, which it does only when the
/// challenge declares `payment-identifier`.
async fn official_sign_many(
    chain: &TestChain,
    payment_required: &Value,
    payer_key: &str,
    count: usize,
    payment_id: Option<&str>,
) -> Vec<Value> {
    let mut env = vec![
        ("X402_RPC_URL", chain.endpoint()),
        ("X402_CHAIN_ID", chain.chain_id().to_string()),
        ("X402_PAYER_KEY", payer_key.to_owned()),
        ("X402_PAYMENT_REQUIRED", payment_required.to_string()),
        ("X402_COUNT", count.to_string()),
    ];
    if let Some(id) = payment_id {
        env.push(("X402_PAYMENT_ID", id.to_owned()));
    }
    let command = node("sign.mjs", &env);
    let out = tokio::task::spawn_blocking(move || run_output(command))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let payloads: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "sign.mjs: {e}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(
        payloads.len(),
        count,
        "sign.mjs printed {} payments: {stdout}{}",
        payloads.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    payloads
}

async fn funded_payer(chain: &TestChain, amount: u64) -> String {
    let payer = PrivateKeySigner::random();
    if amount > 0 {
        chain
            .mint(payer.address(), U256::from(amount))
            .await
            .unwrap();
    }
    format!("0x{}", alloy::hex::encode(payer.to_bytes()))
}

/// The official client's bad payments, sent to both facilitators' `POST /verify`, are refused
/// by both with the same `invalidReason`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_both_facilitators_refuse_bad_payments_with_the_same_reasons() {
    check_node_project();
    let chain = TestChain::start().await.unwrap();
    // The official facilitator explains a failed simulation (balance, nonce, token name) with
    // one Multicall3 call at the canonical address; without it every such refusal would read
    // `invalid_exact_evm_transaction_simulation_failed`.
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut facilitators = BTreeMap::new();
    for side in SIDES {
        facilitators.insert(side, start_facilitator(&chain, dir.path(), side).await);
    }
    let payee = PrivateKeySigner::random().address();
    let requirements = json!({
        "scheme": "exact",
        "network": chain.caip2(),
        "asset": chain.usdc.to_string(),
        "amount": PRICE.to_string(),
        "payTo": payee.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USD Coin", "version": "2" },
    });
    let challenge = json!({
        "x402Version": 2,
        "resource": { "url": "http://127.0.0.1/paid", "description": "interop" },
        "accepts": [requirements.clone()],
    });

    // (case, payment payload, requirements sent with it)
    let mut cases: Vec<(&str, Value, Value)> = Vec::new();

    // Too little balance: 0.005 USDC for a 0.01 USDC price.
    let poor = funded_payer(&chain, PRICE / 2).await;
    let payload = official_sign(&chain, &challenge, &poor).await;
    cases.push(("insufficient balance", payload, requirements.clone()));

    let rich = funded_payer(&chain, 1_000_000).await;
    let signed = official_sign(&chain, &challenge, &rich).await;

    // The authorized value raised after signing (still matching nothing it was signed for).
    let mut p = signed.clone();
    p["payload"]["authorization"]["value"] = json!((PRICE * 2).to_string());
    cases.push(("value raised after signing", p, requirements.clone()));

    // The value and the price both lowered after signing: the amounts agree, the signature not.
    let mut p = signed.clone();
    p["payload"]["authorization"]["value"] = json!((PRICE / 2).to_string());
    p["accepted"]["amount"] = json!((PRICE / 2).to_string());
    let mut r = requirements.clone();
    r["amount"] = json!((PRICE / 2).to_string());
    cases.push(("value and price lowered after signing", p, r));

    // A corrupted signature (one byte of `s` flipped).
    let mut p = signed.clone();
    let sig = p["payload"]["signature"].as_str().unwrap().to_owned();
    let mut bytes = alloy::hex::decode(&sig).unwrap();
    bytes[40] ^= 0x01;
    p["payload"]["signature"] = json!(format!("0x{}", alloy::hex::encode(&bytes)));
    cases.push(("corrupted signature", p, requirements.clone()));

    // The requirement asks a different recipient than the one signed for.
    let mut r = requirements.clone();
    let other = PrivateKeySigner::random().address().to_string();
    r["payTo"] = json!(other);
    let mut p = signed.clone();
    p["accepted"]["payTo"] = json!(other);
    cases.push(("recipient changed", p, r));

    // A price higher than what was signed for.
    let mut r = requirements.clone();
    r["amount"] = json!((PRICE * 2).to_string());
    let mut p = signed.clone();
    p["accepted"]["amount"] = json!((PRICE * 2).to_string());
    cases.push(("price raised after signing", p, r));

    let http = reqwest::Client::new();

    // A payment already settled (by Tollgate's facilitator, keyless), verified and settled
    // again by someone with no claim to that attempt: the nonce is used, on both sides.
    let replayer = funded_payer(&chain, 1_000_000).await;
    let settled = official_sign(&chain, &challenge, &replayer).await;
    let response = http
        .post(format!("{}/settle", facilitators[&Side::Tollgate].1))
        .json(&json!({
            "x402Version": 2,
            "paymentPayload": settled,
            "paymentRequirements": requirements,
        }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], json!(true), "{body}");
    cases.push(("replayed after settlement", settled, requirements.clone()));

    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for (name, payload, reqs) in &cases {
        let mut reasons = BTreeMap::new();
        for side in SIDES {
            let url = format!("{}/verify", facilitators[&side].1);
            let response = http
                .post(&url)
                .json(&json!({
                    "x402Version": 2,
                    "paymentPayload": payload,
                    "paymentRequirements": reqs,
                }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                body["isValid"],
                json!(false),
                "{side} facilitator accepted {name:?} (HTTP {status}): {body}"
            );
            let verify_reason = body["invalidReason"]
                .as_str()
                .unwrap_or("<none>")
                .to_owned();
            // Settling it fails too, for the same reason, and moves nothing.
            let response = http
                .post(format!("{}/settle", facilitators[&side].1))
                .json(&json!({
                    "x402Version": 2,
                    "paymentPayload": payload,
                    "paymentRequirements": reqs,
                }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                body["success"],
                json!(false),
                "{side} facilitator settled {name:?} (HTTP {status}): {body}"
            );
            let settle_reason = body["errorReason"].as_str().unwrap_or("<none>").to_owned();
            reasons.insert(side, (verify_reason, settle_reason));
        }
        let (official, ours) = (&reasons[&Side::Official], &reasons[&Side::Tollgate]);
        rows.push(format!(
            "| {name} | {} | {} | {} | {} |",
            official.0, ours.0, official.1, ours.1
        ));
        if official.0 != ours.0 || official.1 != ours.1 {
            mismatches.push(format!(
                "{name}: official {official:?}, tollgate {ours:?} (verify, settle)"
            ));
        }
    }
    println!(
        "| case | official invalidReason | tollgate invalidReason | official errorReason | tollgate errorReason |"
    );
    println!("|---|---|---|---|---|");
    for row in &rows {
        println!("{row}");
    }
    assert!(
        mismatches.is_empty(),
        "reason codes differ:\n{}",
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Replay and retry rows (issue 13): one payment buys one delivery behind the official paywall,
// and the official `payment-identifier` extension (`@x402/extensions` 2.27.0) names the only
// attempt that may be answered with an earlier settlement.
// ---------------------------------------------------------------------------------------------

/// How many copies of one payment header the replay rows send.
const COPIES: usize = 4;

/// The address of a payer key made by [`funded_payer`].
fn address_of(key: &str) -> Address {
    key.parse::<PrivateKeySigner>().unwrap().address()
}

/// A `payment-identifier` id as the official helper makes them (`pay_` and 32 hex digits), with
/// a fresh random part.
fn fresh_payment_id() -> String {
    format!("pay_{}", &alloy::hex::encode(B256::random())[..32])
}

/// A payment with its `payment-identifier` id replaced (`Some`) or the extension removed
/// (`None`). Extensions are not part of the signed authorization, so the payment stays valid.
fn with_payment_id(payment: &Value, id: Option<&str>) -> Value {
    let mut p = payment.clone();
    match id {
        Some(id) => p["extensions"]["payment-identifier"]["info"]["id"] = json!(id),
        None => {
            if let Some(extensions) = p["extensions"].as_object_mut() {
                extensions.remove("payment-identifier");
            }
        }
    }
    p
}

/// An HTTP client that gives up on a hung request instead of hanging the test.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The `PaymentRequired` of a resource: its unpaid `402`'s `PAYMENT-REQUIRED` header, decoded.
async fn challenge_of(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 402, "unpaid GET {url}");
    let header = response
        .headers()
        .get("payment-required")
        .unwrap_or_else(|| panic!("no PAYMENT-REQUIRED header from {url}"))
        .to_str()
        .unwrap()
        .to_owned();
    tollgate::proto::header::decode::<Value>(&header).unwrap()
}

/// How many times the official server's paid handler has run (`GET /handler-runs`).
async fn handler_runs(http: &reqwest::Client, server: &str) -> u64 {
    let body: Value = http
        .get(format!("{server}/handler-runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["runs"].as_u64().unwrap()
}

/// `POST {facilitator}/{endpoint}` with one payment: the HTTP status and the JSON body (`Null`
/// when the body is not JSON).
async fn facilitator_post(
    http: &reqwest::Client,
    facilitator: &str,
    endpoint: &str,
    payment: &Value,
    requirements: &Value,
) -> (u16, Value) {
    let response = http
        .post(format!("{facilitator}/{endpoint}"))
        .json(&json!({
            "x402Version": 2,
            "paymentPayload": payment,
            "paymentRequirements": requirements,
        }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// How the copies of one payment header are sent.
#[derive(Clone, Copy)]
enum Copies {
    /// All at the same moment.
    AtOnce,
    /// One every so often, without waiting for the previous answer.
    Apart(Duration),
}

/// Sends [`COPIES`] copies of one `PAYMENT-SIGNATURE` to `url`; returns each (status, body).
async fn send_copies(
    http: &reqwest::Client,
    url: &str,
    header: &str,
    how: Copies,
) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for i in 0..COPIES {
        let (http, url, header) = (http.clone(), url.to_owned(), header.to_owned());
        let delay = match how {
            Copies::AtOnce => Duration::ZERO,
            Copies::Apart(step) => step * i as u32,
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let response = http
                .get(&url)
                .header("PAYMENT-SIGNATURE", header)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Issue 13, item 2: the official `@x402/express` paywall (handler of 500 ms) in front of each
/// facilitator, one payment header sent 4 times at once and 4 times 100 ms apart: exactly one
/// `200` with the body, three `402`s, one transfer. The paywall verifies, runs the handler and
/// settles; only the facilitator can tell the copies apart, so a facilitator that answers every
/// settle of a settled payment with "success" turns one payment into four deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_official_paywall_delivers_one_payment_once_with_either_facilitator() {
    check_node_project();
    let chain = TestChain::start().await.unwrap();
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payee = PrivateKeySigner::random().address();
    let mut facilitators = BTreeMap::new();
    for side in SIDES {
        facilitators.insert(side, start_facilitator(&chain, dir.path(), side).await);
    }
    // (facilitator, declares payment-identifier) → the slow official server in front of it.
    let mut servers = BTreeMap::new();
    for side in SIDES {
        for declares_id in [false, true] {
            let mut env = vec![("X402_HANDLER_DELAY_MS", "500".to_owned())];
            if declares_id {
                env.push(("X402_PAYMENT_IDENTIFIER", "optional".to_owned()));
            }
            let name = format!(
                "slow-official-server{}-via-{side}",
                if declares_id { "-with-id" } else { "" }
            );
            let server = official_server(
                "server.mjs",
                &chain,
                dir.path(),
                &name,
                &facilitators[&side].1,
                payee,
                &env,
            );
            servers.insert((side, declares_id), server);
        }
    }
    let http = http_client();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    // (copies, how they are sent, whether the payment carries a `payment-identifier` id). The
    // official paywall sends no `Idempotency-Key`, so with an id the buyer's id is the only
    // attempt name the Tollgate facilitator sees: a copy's `/verify` under the id while the
    // first holds the payment is refused as a copy (`payment_in_use`), never renewed.
    let scenarios = [
        ("4 at once", Copies::AtOnce, false),
        (
            "4, 100 ms apart",
            Copies::Apart(Duration::from_millis(100)),
            false,
        ),
        ("4 at once, payment carries an id", Copies::AtOnce, true),
        (
            "4, 100 ms apart, payment carries an id",
            Copies::Apart(Duration::from_millis(100)),
            true,
        ),
    ];
    for side in SIDES {
        for (how_name, how, with_id) in scenarios {
            let server = servers[&(side, with_id)].1.clone();
            let url = format!("{server}/paid");
            let key = funded_payer(&chain, 1_000_000).await;
            let payer = address_of(&key);
            let challenge = challenge_of(&http, &url).await;
            let id = with_id.then(fresh_payment_id);
            let payment = official_sign_many(&chain, &challenge, &key, 1, id.as_deref())
                .await
                .remove(0);
            if with_id {
                assert_eq!(
                    payment["extensions"]["payment-identifier"]["info"]["id"],
                    json!(id),
                    "{payment}"
                );
            }
            let header = tollgate::proto::header::encode(&payment);

            let runs_before = handler_runs(&http, &server).await;
            let payer_before = chain.usdc_balance(payer).await.unwrap();
            let payee_before = chain.usdc_balance(payee).await.unwrap();
            let answers = send_copies(&http, &url, &header, how).await;
            let runs = handler_runs(&http, &server).await - runs_before;
            let paid = payer_before - chain.usdc_balance(payer).await.unwrap();
            let received = chain.usdc_balance(payee).await.unwrap() - payee_before;

            let delivered = answers
                .iter()
                .filter(|(s, b)| *s == 200 && b == BODY)
                .count();
            let refused = answers
                .iter()
                .filter(|(s, b)| *s == 402 && !b.contains(BODY))
                .count();
            let price = U256::from(PRICE);
            let ok = delivered == 1 && refused == COPIES - 1 && paid == price && received == price;
            let verdict = if ok { "PASS" } else { "FAIL" };
            rows.push(format!(
                "| {side} | {how_name} | {delivered} | {refused} | {runs} | {} | {verdict} |",
                paid / price,
            ));
            if !ok {
                failures.push(format!(
                    "facilitator {side}, {how_name}: {delivered} delivered, {refused} refused \
                     (answers {:?}), payer paid {paid}, payee received {received}",
                    answers.iter().map(|(s, _)| *s).collect::<Vec<_>>()
                ));
            }
        }
    }
    println!(
        "official @x402/express paywall, handler 500 ms, one payment header sent {COPIES} times:"
    );
    println!("| facilitator | copies | 200 with body | 402 | handler runs | transfers | result |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{row}");
    }
    assert!(
        failures.is_empty(),
        "one payment was not delivered exactly once:\n{}\n--- tollgate facilitator:\n{}",
        failures.join("\n"),
        facilitators[&Side::Tollgate].0.log_tail()
    );
}

/// Runs the official client (`client.mjs`) against `url` with a `payment-identifier` id; returns
/// its JSON line (status, body, paymentResponse, paymentPayload).
async fn official_pay_with_id(chain: &TestChain, url: &str, key: &str, id: &str) -> Value {
    let command = node(
        "client.mjs",
        &[
            ("X402_RPC_URL", chain.endpoint()),
            ("X402_CHAIN_ID", chain.chain_id().to_string()),
            ("X402_URL", url.to_owned()),
            ("X402_PAYER_KEY", key.to_owned()),
            ("X402_PAYMENT_ID", id.to_owned()),
        ],
    );
    let out = tokio::task::spawn_blocking(move || run_output(command))
        .await
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client.mjs: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One facilitator answer, for the tables: status, verdict, reason or transaction.
fn summarize(status: u16, body: &Value) -> String {
    let verdict = if body.get("isValid").is_some() {
        if body["isValid"] == json!(true) {
            "valid".to_owned()
        } else {
            format!(
                "invalid `{}`",
                body["invalidReason"].as_str().unwrap_or("-")
            )
        }
    } else if body["success"] == json!(true) {
        let tx = body["transaction"].as_str().unwrap_or_default();
        format!("success {}", &tx[..tx.len().min(10)])
    } else if body.get("success").is_some() {
        format!("failure `{}`", body["errorReason"].as_str().unwrap_or("-"))
    } else {
        format!("{body}")
    };
    format!("{status} {verdict}")
}

/// `payment-identifier`, end to end with the official packages: the official client attaches an
/// id with `@x402/extensions`' own helper to a payment for an official server that declares the
/// extension with `declarePaymentIdentifierExtension`, settled by each facilitator. Then the same
/// `/settle` again: with the same id (the client's own retry, the same attempt) Tollgate answers
/// the original settlement — same transaction; with another id or none (someone else holding a
/// copy) it refuses with `invalid_exact_evm_nonce_already_used`. The official facilitator has no
/// idempotency and refuses all three. The same header sent to the official server again is
/// recorded; nothing moves twice on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_payment_identifier_retry_gets_the_original_settlement_only_for_its_own_attempt() {
    check_node_project();
    let chain = TestChain::start().await.unwrap();
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payee = PrivateKeySigner::random().address();
    let mut facilitators = BTreeMap::new();
    for side in SIDES {
        facilitators.insert(side, start_facilitator(&chain, dir.path(), side).await);
    }
    let mut servers = BTreeMap::new();
    for side in SIDES {
        let server = official_server(
            "server.mjs",
            &chain,
            dir.path(),
            &format!("payment-identifier-server-via-{side}"),
            &facilitators[&side].1,
            payee,
            &[("X402_PAYMENT_IDENTIFIER", "optional".to_owned())],
        );
        servers.insert(side, server);
    }
    let http = http_client();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for side in SIDES {
        let facilitator = facilitators[&side].1.clone();
        let server = servers[&side].1.clone();
        let key = funded_payer(&chain, 1_000_000).await;
        let payer = address_of(&key);
        let payer_before = chain.usdc_balance(payer).await.unwrap();
        let id = fresh_payment_id();

        // The purchase: official client → official server (extension declared) → facilitator.
        let out = official_pay_with_id(&chain, &format!("{server}/paid"), &key, &id).await;
        assert_eq!(
            out["status"],
            json!(200),
            "official client via {side}: {out}"
        );
        assert_eq!(
            out["body"],
            json!(BODY),
            "official client via {side}: {out}"
        );
        let payment = out["paymentPayload"].clone();
        assert_eq!(
            payment["extensions"]["payment-identifier"]["info"]["id"],
            json!(id),
            "the official helper did not attach the id: {payment}"
        );
        assert_eq!(
            payment["extensions"]["payment-identifier"]["info"]["required"],
            json!(false),
            "{payment}"
        );
        let tx = out["paymentResponse"]["transaction"].clone();
        assert!(tx.as_str().is_some_and(|t| t.len() == 66), "{out}");
        rows.push(format!(
            "| {side} | official client pays, id attached by the helper | 200 success {} |",
            &tx.as_str().unwrap()[..10]
        ));

        let requirements = payment["accepted"].clone();
        let other_id = fresh_payment_id();
        let cases = [
            (
                "`/settle` again, same payment, same id (the client's retry)",
                payment.clone(),
                true,
            ),
            (
                "`/settle` again, same payment, another id",
                with_payment_id(&payment, Some(&other_id)),
                false,
            ),
            (
                "`/settle` again, same payment, no id",
                with_payment_id(&payment, None),
                false,
            ),
        ];
        for (name, p, same_attempt) in cases {
            let (status, body) =
                facilitator_post(&http, &facilitator, "settle", &p, &requirements).await;
            rows.push(format!(
                "| {side} | {name} | {} |",
                summarize(status, &body)
            ));
            if side != Side::Tollgate {
                continue;
            }
            let ok = if same_attempt {
                status == 200 && body["success"] == json!(true) && body["transaction"] == tx
            } else {
                body["success"] != json!(true)
                    && body["errorReason"] == json!("invalid_exact_evm_nonce_already_used")
                    && status != 200
            };
            if !ok {
                failures.push(format!("{side}: {name}: HTTP {status} {body}"));
            }
        }

        // The same header sent to the official server again (recorded: the official paywall
        // verifies before it settles, so what it answers is up to each facilitator's /verify).
        let header = tollgate::proto::header::encode(&payment);
        let response = http
            .get(format!("{server}/paid"))
            .header("PAYMENT-SIGNATURE", header)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        rows.push(format!(
            "| {side} | the same header to the official server again | HTTP {status}{} |",
            if body == BODY { " with the body" } else { "" }
        ));

        let paid = payer_before - chain.usdc_balance(payer).await.unwrap();
        if paid != U256::from(PRICE) {
            failures.push(format!("{side}: the payer paid {paid}, not {PRICE} once"));
        }
    }
    println!("payment-identifier: official client + official server, then /settle again:");
    println!("| facilitator | request | answer |");
    println!("|---|---|---|");
    for row in &rows {
        println!("{row}");
    }
    assert!(
        failures.is_empty(),
        "payment-identifier retries:\n{}\n--- tollgate facilitator:\n{}",
        failures.join("\n"),
        facilitators[&Side::Tollgate].0.log_tail()
    );
}

/// One row of the `payment-identifier` conflict table.
struct IdCase {
    name: &'static str,
    payment: Value,
    /// The status Tollgate must give `/verify` (200: valid; otherwise refused, 409 with
    /// `payment_identifier_conflict`, 400 with `invalid_payment_identifier`), or not called.
    verify: Option<u16>,
    /// The same for `/settle` (200: success).
    settle: Option<u16>,
}

/// `payment-identifier` at the facilitators' HTTP API, with payments made by the official client
/// for challenges from official servers that declare the extension (optional, and `required:
/// true`): a payment with id X settles; another payment with the same id X → `409` at `/verify`
/// and `/settle`; a malformed id (too short, bad characters, too long) → `400`; `required: true`
/// echoed without an id → `400`. Each refused payment is first shown valid without the extension,
/// so the refusal is the id's doing. The official facilitator's answers to the same cases are
/// recorded for comparison (it ignores the extension).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_payment_identifier_conflicts_and_malformed_ids_at_the_facilitator() {
    check_node_project();
    let chain = TestChain::start().await.unwrap();
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payee = PrivateKeySigner::random().address();
    let mut facilitators = BTreeMap::new();
    for side in SIDES {
        facilitators.insert(side, start_facilitator(&chain, dir.path(), side).await);
    }
    // Official servers only to obtain their challenges (the facilitator behind them is unused).
    let mut challenges = BTreeMap::new();
    let http = http_client();
    let mut servers = Vec::new();
    for mode in ["optional", "required"] {
        let (p, url) = official_server(
            "server.mjs",
            &chain,
            dir.path(),
            &format!("payment-identifier-{mode}-server"),
            &facilitators[&Side::Tollgate].1,
            payee,
            &[("X402_PAYMENT_IDENTIFIER", mode.to_owned())],
        );
        let challenge = challenge_of(&http, &format!("{url}/paid")).await;
        assert_eq!(
            challenge["extensions"]["payment-identifier"]["info"]["required"],
            json!(mode == "required"),
            "{challenge}"
        );
        challenges.insert(mode, challenge);
        servers.push(p);
    }

    let mut table: BTreeMap<&str, BTreeMap<Side, [String; 2]>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut failures = Vec::new();
    let mut paid = BTreeMap::new();
    let mut first_tx = None;
    for side in SIDES {
        let facilitator = facilitators[&side].1.clone();
        let key = funded_payer(&chain, 1_000_000).await;
        let payer = address_of(&key);
        let payer_before = chain.usdc_balance(payer).await.unwrap();
        let id = fresh_payment_id();
        let mut signed =
            official_sign_many(&chain, &challenges["optional"], &key, 5, Some(&id)).await;
        for p in &signed {
            assert_eq!(
                p["extensions"]["payment-identifier"]["info"]["id"],
                json!(id),
                "{p}"
            );
        }
        let required = official_sign_many(&chain, &challenges["required"], &key, 1, None)
            .await
            .remove(0);
        assert_eq!(
            required["extensions"]["payment-identifier"]["info"],
            json!({ "required": true }),
            "the official client echoes the declaration without an id: {required}"
        );
        let requirements = signed[0]["accepted"].clone();
        let long = signed.pop().unwrap();
        let chars = signed.pop().unwrap();
        let short = signed.pop().unwrap();
        let (first, second) = (signed[0].clone(), signed[1].clone());
        // (row, its control row, the payment, the malformed id put in it)
        let malformed = [
            (
                "an id of 9 characters",
                "control: the payment of 'an id of 9 characters' without the extension",
                short,
                "pay_short".to_owned(),
            ),
            (
                "an id with characters outside [A-Za-z0-9_-]",
                "control: the payment of 'characters outside' without the extension",
                chars,
                "pay_0123456789abcdef.!".to_owned(),
            ),
            (
                "an id of 129 characters",
                "control: the payment of 'an id of 129 characters' without the extension",
                long,
                format!("pay_{}", "a".repeat(125)),
            ),
        ];
        let mut cases = Vec::new();
        for (_, control, p, _) in &malformed {
            cases.push(IdCase {
                name: control,
                payment: with_payment_id(p, None),
                verify: Some(200),
                settle: None,
            });
        }
        cases.push(IdCase {
            name: "control: the payment of 'required, no id' without the extension",
            payment: with_payment_id(&required, None),
            verify: Some(200),
            settle: None,
        });
        cases.push(IdCase {
            name: "a payment with id X",
            payment: first.clone(),
            verify: Some(200),
            settle: Some(200),
        });
        cases.push(IdCase {
            name: "the same payment with id X again (same attempt)",
            payment: first.clone(),
            verify: None,
            settle: Some(200),
        });
        cases.push(IdCase {
            name: "another payment with the same id X",
            payment: second,
            verify: Some(409),
            settle: Some(409),
        });
        for (name, _, p, bad) in malformed {
            cases.push(IdCase {
                name,
                payment: with_payment_id(&p, Some(&bad)),
                verify: Some(400),
                settle: Some(400),
            });
        }
        cases.push(IdCase {
            name: "`required: true` echoed without an id",
            payment: required,
            verify: Some(400),
            settle: Some(400),
        });

        for case in cases {
            if side == SIDES[0] {
                order.push(case.name);
            }
            let mut cells = [String::from("-"), String::from("-")];
            for (i, (endpoint, expected)) in [("verify", case.verify), ("settle", case.settle)]
                .into_iter()
                .enumerate()
            {
                let Some(expected) = expected else { continue };
                let (status, body) =
                    facilitator_post(&http, &facilitator, endpoint, &case.payment, &requirements)
                        .await;
                cells[i] = summarize(status, &body);
                if side != Side::Tollgate {
                    continue;
                }
                if case.name == "a payment with id X" && endpoint == "settle" {
                    first_tx = Some(body["transaction"].clone());
                }
                let accepted = body["isValid"] == json!(true) || body["success"] == json!(true);
                let mut ok = status == expected && accepted == (expected == 200);
                // The reason codes of docs/interop.md: a conflict, or a malformed/missing id.
                let reason = body["invalidReason"]
                    .as_str()
                    .or(body["errorReason"].as_str());
                ok &= match expected {
                    409 => reason == Some("payment_identifier_conflict"),
                    400 => reason == Some("invalid_payment_identifier"),
                    _ => true,
                };
                if case.name == "the same payment with id X again (same attempt)" {
                    ok &= first_tx.as_ref() == Some(&body["transaction"]);
                }
                if !ok {
                    failures.push(format!(
                        "{}: /{endpoint}: expected HTTP {expected}, got {status} {body}",
                        case.name
                    ));
                }
            }
            table.entry(case.name).or_default().insert(side, cells);
        }
        paid.insert(
            side,
            (payer_before - chain.usdc_balance(payer).await.unwrap()) / U256::from(PRICE),
        );
    }
    // Only the payment with id X moved money at Tollgate.
    if paid[&Side::Tollgate] != U256::from(1) {
        failures.push(format!(
            "tollgate: {} transfers from the payer, expected 1",
            paid[&Side::Tollgate]
        ));
    }

    println!("payment-identifier at the facilitators (official-client payments):");
    println!(
        "| case | tollgate /verify | tollgate /settle | official /verify | official /settle |"
    );
    println!("|---|---|---|---|---|");
    for name in &order {
        let row = &table[name];
        println!(
            "| {name} | {} | {} | {} | {} |",
            row[&Side::Tollgate][0],
            row[&Side::Tollgate][1],
            row[&Side::Official][0],
            row[&Side::Official][1]
        );
    }
    println!(
        "transfers from the payer: tollgate {}, official {}",
        paid[&Side::Tollgate],
        paid[&Side::Official]
    );
    assert!(
        failures.is_empty(),
        "payment-identifier at the Tollgate facilitator:\n{}\n--- tollgate facilitator:\n{}",
        failures.join("\n"),
        facilitators[&Side::Tollgate].0.log_tail()
    );
}
