//! Interoperability with the official x402 TypeScript SDK (`@x402/*`, `tests/interop/`): every
//! combination of {official, Tollgate} × {client, resource server, facilitator} pays for one
//! resource on one real anvil chain, and the official and Tollgate facilitators must refuse the
//! same bad payments with the same reason codes.
//!
//! Needs Node.js and `npm ci` in `tests/interop` (`./scripts/test` and `.ci/run` do it).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use tollgate_testkit::{TestChain, DEV_KEYS};

/// The price of the resource, in atomic units of the test token (0.01 USDC).
const PRICE: u64 = 10_000;
/// What the resource returns.
const BODY: &str = "the interop resource";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

fn check_node_project() {
    let modules = interop_dir().join("node_modules/@x402/core");
    assert!(
        modules.is_dir(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
}

/// A child process killed and reaped on drop, its stderr in a log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_owned()
    }
}

/// Spawns `command`, stdout piped and stderr to `log`; waits for a stdout or log line starting
/// with `prefix` and returns the rest of it.
fn spawn_until(
    mut command: Command,
    log: PathBuf,
    prefix: &str,
    on_stderr: bool,
) -> (Proc, String) {
    let file = std::fs::File::create(&log).unwrap();
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    if on_stderr {
        command.stderr(Stdio::piped());
    } else {
        command.stderr(file.try_clone().unwrap());
    }
    let mut child = command.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stream: Box<dyn std::io::Read + Send> = if on_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let prefix_owned = prefix.to_owned();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = file;
        let mut tx = Some(tx);
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(rest) = line.trim().strip_prefix(&prefix_owned) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.to_owned());
                }
            }
        }
    });
    let proc = Proc { child, log };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => (proc, rest),
        Err(_) => panic!("{prefix:?} never printed; log:\n{}", proc.log_tail()),
    }
}

fn node(script: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("node");
    command.current_dir(interop_dir()).arg(script);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Side {
    Official,
    Tollgate,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Side::Official => "official",
            Side::Tollgate => "tollgate",
        })
    }
}

const SIDES: [Side; 2] = [Side::Official, Side::Tollgate];

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
        Side::Official => {
            let command = node(
                if version == 1 {
                    "server-v1.mjs"
                } else {
                    "server.mjs"
                },
                &[
                    ("X402_V1_NETWORK", "base-sepolia".to_owned()),
                    ("X402_CHAIN_ID", chain.chain_id().to_string()),
                    ("X402_FACILITATOR_URL", facilitator_url.to_owned()),
                    ("X402_PAY_TO", payee.to_string()),
                    ("X402_ASSET", chain.usdc.to_string()),
                    ("X402_TOKEN_NAME", "USD Coin".to_owned()),
                    ("X402_TOKEN_VERSION", "2".to_owned()),
                    ("X402_PRICE", PRICE.to_string()),
                    ("X402_BODY", BODY.to_owned()),
                ],
            );
            let (p, port) = spawn_until(
                command,
                dir.join(format!("{name}.log")),
                "ready server ",
                false,
            );
            (p, format!("http://127.0.0.1:{port}"))
        }
    }
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

/// What a client saw: the status, the body and the decoded payment-response header.
#[derive(Debug)]
struct Outcome {
    status: u16,
    body: String,
    receipt: Option<Value>,
    raw: String,
}

fn run_output(mut command: Command) -> std::process::Output {
    command.stdin(Stdio::null());
    command.output().unwrap()
}

async fn pay(rig: &Rig, client: Side, url: &str, payer_key: &str) -> Outcome {
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
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let raw = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
            Outcome {
                status: v["status"].as_u64().unwrap_or(0) as u16,
                body: v["body"].as_str().unwrap_or_default().to_owned(),
                receipt: v.get("paymentResponse").filter(|r| !r.is_null()).cloned(),
                raw,
            }
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
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let raw = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            // `-i`: "HTTP 200 OK", the headers, an empty line, the body.
            let (head, body) = stdout.split_once("\n\n").unwrap_or((&stdout, ""));
            let status = head
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("HTTP "))
                .and_then(|l| l.split(' ').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let receipt = head.lines().find_map(|l| {
                let (name, value) = l.split_once(": ")?;
                (name.eq_ignore_ascii_case("payment-response")
                    || name.eq_ignore_ascii_case("x-payment-response"))
                .then(|| tollgate::proto::header::decode::<Value>(value.trim()).ok())
                .flatten()
            });
            Outcome {
                status,
                body: body.to_owned(),
                receipt,
                raw,
            }
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
    let command = node(
        "sign.mjs",
        &[
            ("X402_RPC_URL", chain.endpoint()),
            ("X402_CHAIN_ID", chain.chain_id().to_string()),
            ("X402_PAYER_KEY", payer_key.to_owned()),
            ("X402_PAYMENT_REQUIRED", payment_required.to_string()),
        ],
    );
    let out = tokio::task::spawn_blocking(move || run_output(command))
        .await
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sign.mjs: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
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

    // A payment already settled (by Tollgate's facilitator), verified again: the nonce is used.
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
    let first_tx = body["transaction"].clone();
    const REPLAY: &str = "replayed after settlement";
    cases.push((REPLAY, settled, requirements.clone()));

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
            let settle_reason = if *name == REPLAY && side == Side::Tollgate {
                // Deliberate: Tollgate's settlement is idempotent. The payment it settled is
                // answered with that settlement again; nothing moves twice.
                assert_eq!(body["success"], json!(true), "{body}");
                assert_eq!(body["transaction"], first_tx, "{body}");
                "(success: the first settlement again)".to_owned()
            } else {
                assert_eq!(
                    body["success"],
                    json!(false),
                    "{side} facilitator settled {name:?} (HTTP {status}): {body}"
                );
                body["errorReason"].as_str().unwrap_or("<none>").to_owned()
            };
            reasons.insert(side, (verify_reason, settle_reason));
        }
        let (official, ours) = (&reasons[&Side::Official], &reasons[&Side::Tollgate]);
        rows.push(format!(
            "| {name} | {} | {} | {} | {} |",
            official.0, ours.0, official.1, ours.1
        ));
        if official.0 != ours.0 || (*name != REPLAY && official.1 != ours.1) {
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
