//! Interoperability of `batch-settlement` with the official x402 TypeScript SDK (`@x402/evm`
//! 2.27.0, `tests/interop/`), on Tollgate's own `x402BatchSettlement` and ERC-3009 deposit
//! collector at their canonical addresses. Every combination of
//! {official, Tollgate} payload signer × {official, Tollgate} facilitator opens a channel with
//! a deposit, pays two more requests with vouchers, has the facilitator claim the last voucher
//! (signing as the channel's receiver authorizer, announced in its `/supported`) and sweep the
//! claimed value to the receiver — and the chain shows exactly that:
//!
//! - official signer: `batch-sign.mjs` (`@x402/evm`'s batch-settlement client code:
//!   `createBatchSettlementEIP3009DepositPayload`, `signVoucher`, `computeChannelId`);
//!   Tollgate's: `tollgate_evm::batch_settlement` (`sign_erc3009_deposit`, `sign_voucher`);
//! - official facilitator: `batch-facilitator.mjs` (`@x402/core`'s `x402Facilitator` with
//!   `@x402/evm`'s batch-settlement facilitator scheme); Tollgate's: `tollgate facilitator` with
//!   a `[[schemes]] scheme = "batch-settlement"` entry and a receiver authorizer.
//!
//! Needs Node.js and `npm ci` in `tests/interop` (`./scripts/test` and `.ci/run` do it).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use serde_json::{json, Value};
use support::{interop_dir, node, spawn_until, Proc};
use tollgate::evm::batch_settlement::{
    abi::IBatchSettlement, channel_id, sign_erc3009_deposit, sign_voucher, ChannelConfig,
    Erc3009DepositTerms, BATCH_SETTLEMENT,
};
use tollgate_testkit::{TestChain, DEV_KEYS};

/// The price of one request (0.001 USDC).
const PRICE: u128 = 1_000;
/// What each channel is opened with (0.05 USDC).
const DEPOSIT: u128 = 50_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Official,
    Tollgate,
}

/// Facilitator keys: Tollgate's sends from 8 and authorizes as 6; the official one sends from 9
/// and authorizes as 7. Payers are 1–4.
///
/// `api_key`: Tollgate's facilitator then requires it as a bearer key and signs refunds (which
/// it does only for an authenticated seller).
fn start_facilitator(
    chain: &TestChain,
    dir: &Path,
    side: Side,
    api_key: Option<&str>,
) -> (Proc, String) {
    match side {
        Side::Tollgate => {
            let config = dir.join("facilitator.toml");
            let (auth, refunds) = match api_key {
                Some(_) => (
                    "api_key_env = \"TOLLGATE_INTEROP_API_KEY\"\n",
                    "sign_refunds = true\n",
                ),
                None => ("", ""),
            };
            std::fs::write(
                &config,
                format!(
                    "[server]\nlisten = \"127.0.0.1:0\"\n{auth}[ledger]\npath = \"{}\"\n\
                     [[chains.eip155]]\nnetwork = \"{network}\"\nrpc_urls = [\"{}\"]\n\
                     signer_key_env = \"TOLLGATE_INTEROP_SIGNER\"\n\
                     [[schemes]]\nscheme = \"batch-settlement\"\nnetworks = \"{network}\"\n\
                     {refunds}receiver_authorizer = {{ key_env = \"TOLLGATE_INTEROP_AUTHORIZER\" }}\n",
                    dir.join("ledger.db").display(),
                    chain.endpoint(),
                    network = chain.caip2(),
                ),
            )
            .unwrap();
            let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
            command
                .args(["facilitator", "--config"])
                .arg(&config)
                .env("TOLLGATE_INTEROP_SIGNER", DEV_KEYS[8])
                .env("TOLLGATE_INTEROP_AUTHORIZER", DEV_KEYS[6]);
            if let Some(key) = api_key {
                command.env("TOLLGATE_INTEROP_API_KEY", key);
            }
            spawn_until(
                command,
                dir.join("tollgate-facilitator.log"),
                "tollgate facilitator listening on ",
                true,
            )
        }
        Side::Official => {
            let env = [
                ("X402_RPC_URL", chain.endpoint()),
                ("X402_CHAIN_ID", chain.chain_id().to_string()),
                ("X402_FACILITATOR_KEY", DEV_KEYS[9].to_owned()),
                ("X402_AUTHORIZER_KEY", DEV_KEYS[7].to_owned()),
            ];
            let (p, port) = spawn_until(
                node("batch-facilitator.mjs", &env),
                dir.join("official-facilitator.log"),
                "ready facilitator ",
                false,
            );
            (p, format!("http://127.0.0.1:{port}"))
        }
    }
}

struct Row<'a> {
    chain: &'a TestChain,
    http: reqwest::Client,
    url: String,
    requirements: Value,
    payer: usize,
    signer: Side,
    facilitator: Side,
}

impl Row<'_> {
    async fn post(&self, path: &str, payload: &Value) -> Value {
        let body = json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "accepted": self.requirements, "payload": payload},
            "paymentRequirements": self.requirements,
        });
        let response = self
            .http
            .post(format!("{}/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    fn context(&self) -> String {
        format!(
            "signer {:?}, facilitator {:?}",
            self.signer, self.facilitator
        )
    }

    /// The deposit (ceiling one price) and two vouchers, from the row's signer.
    async fn payloads(&self, config: &ChannelConfig) -> (Value, Vec<Value>) {
        let chain_id = self.chain.chain_id();
        let id = channel_id(config, chain_id);
        match self.signer {
            Side::Official => {
                let output = node(
                    "batch-sign.mjs",
                    &[
                        ("X402_REQUIREMENTS", self.requirements.to_string()),
                        ("X402_PAYER_KEY", DEV_KEYS[self.payer].to_owned()),
                        ("X402_SALT", config.salt.to_string()),
                        ("X402_DEPOSIT", DEPOSIT.to_string()),
                        (
                            "X402_VOUCHERS",
                            json!([PRICE, 2 * PRICE, 3 * PRICE]).to_string(),
                        ),
                    ],
                )
                .output()
                .unwrap();
                assert!(
                    output.status.success(),
                    "batch-sign.mjs: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let out: Value = serde_json::from_slice(&output.stdout).unwrap();
                assert_eq!(out["channelId"], id.to_string(), "channel id");
                let vouchers = out["vouchers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| json!({"type": "voucher", "channelConfig": out["config"], "voucher": v}))
                    .collect();
                (out["deposit"].clone(), vouchers)
            }
            Side::Tollgate => {
                let payer = TestChain::signer(self.payer);
                let now = self
                    .chain
                    .provider()
                    .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                    .await
                    .unwrap()
                    .unwrap()
                    .header
                    .timestamp;
                let terms = Erc3009DepositTerms {
                    channel_id: id,
                    from: config.payer,
                    amount: DEPOSIT,
                    valid_after: 0,
                    valid_before: now + 3600,
                    salt: B256::random(),
                };
                let domain = alloy::sol_types::eip712_domain! {
                    name: "USD Coin",
                    version: "2",
                    chain_id: chain_id,
                    verifying_contract: self.chain.usdc,
                };
                let auth = sign_erc3009_deposit(&payer, &terms, &domain).await.unwrap();
                let first = sign_voucher(&payer, id, PRICE, chain_id).await.unwrap();
                let deposit = json!({
                    "type": "deposit",
                    "channelConfig": config,
                    "voucher": first,
                    "deposit": {
                        "amount": DEPOSIT.to_string(),
                        "authorization": {"erc3009Authorization": auth}
                    }
                });
                let mut vouchers = Vec::new();
                for n in 2..=3 {
                    let v = sign_voucher(&payer, id, n * PRICE, chain_id).await.unwrap();
                    vouchers
                        .push(json!({"type": "voucher", "channelConfig": config, "voucher": v}));
                }
                (deposit, vouchers)
            }
        }
    }

    async fn run(&self, authorizer: Address, receiver: Address, salt: u8) {
        let ctx = self.context();
        let chain_id = self.chain.chain_id();
        let config = ChannelConfig {
            payer: TestChain::address(self.payer),
            payer_authorizer: TestChain::address(self.payer),
            receiver,
            receiver_authorizer: authorizer,
            token: self.chain.usdc,
            withdraw_delay: 900,
            salt: B256::with_last_byte(salt),
        };
        let id = channel_id(&config, chain_id);
        let contract = IBatchSettlement::new(BATCH_SETTLEMENT, self.chain.provider());
        let payer_start = self.chain.usdc_balance(config.payer).await.unwrap();
        let (deposit, vouchers) = self.payloads(&config).await;

        let verified = self.post("verify", &deposit).await;
        assert_eq!(
            verified["isValid"], true,
            "{ctx}: deposit verify {verified}"
        );
        let settled = self.post("settle", &deposit).await;
        assert_eq!(settled["success"], true, "{ctx}: deposit settle {settled}");
        assert_eq!(
            contract.channels(id).call().await.unwrap().balance,
            DEPOSIT,
            "{ctx}"
        );
        assert_eq!(
            self.chain.usdc_balance(config.payer).await.unwrap(),
            payer_start - U256::from(DEPOSIT),
            "{ctx}"
        );
        for v in &vouchers {
            let verified = self.post("verify", v).await;
            assert_eq!(
                verified["isValid"], true,
                "{ctx}: voucher verify {verified}"
            );
            assert_eq!(
                verified["extra"]["balance"],
                DEPOSIT.to_string(),
                "{ctx}: {verified}"
            );
        }

        // The server's claim of the last voucher, signed by the facilitator's authorizer.
        let last = &vouchers[1]["voucher"];
        let claimed = 3 * PRICE;
        let claim = json!({"type": "claim", "claims": [{
            "voucher": {"channel": config, "maxClaimableAmount": last["maxClaimableAmount"]},
            "signature": last["signature"],
            "totalClaimed": claimed.to_string()
        }]});
        let result = self.post("settle", &claim).await;
        assert_eq!(result["success"], true, "{ctx}: claim {result}");
        assert_eq!(
            contract.channels(id).call().await.unwrap().totalClaimed,
            claimed,
            "{ctx}"
        );

        let receiver_start = self.chain.usdc_balance(receiver).await.unwrap();
        let sweep = json!({"type": "settle", "receiver": receiver, "token": self.chain.usdc});
        let result = self.post("settle", &sweep).await;
        assert_eq!(result["success"], true, "{ctx}: sweep {result}");
        assert_eq!(result["amount"], claimed.to_string(), "{ctx}: {result}");
        assert_eq!(
            self.chain.usdc_balance(receiver).await.unwrap(),
            receiver_start + U256::from(claimed),
            "{ctx}"
        );
    }
}

#[tokio::test]
async fn batch_settlement_interop_matrix() {
    assert!(
        interop_dir()
            .join("node_modules/@x402/evm/dist/esm/batch-settlement")
            .is_dir(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
    let chain = TestChain::start().await.unwrap();
    // The official facilitator reads channel state through Multicall3 at its canonical
    // address, where every public chain has it.
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut payer = 0;
    for facilitator in [Side::Official, Side::Tollgate] {
        let (proc, url) = start_facilitator(&chain, dir.path(), facilitator, None);
        let supported: Value = http
            .get(format!("{url}/supported"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kind = supported["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["scheme"] == "batch-settlement")
            .unwrap_or_else(|| panic!("{facilitator:?}: no batch-settlement in {supported}"))
            .clone();
        let authorizer: Address = kind["extra"]["receiverAuthorizer"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let expected = if facilitator == Side::Tollgate { 6 } else { 7 };
        assert_eq!(authorizer, TestChain::address(expected));
        for signer in [Side::Official, Side::Tollgate] {
            payer += 1;
            let receiver = Address::random();
            let requirements = json!({
                "scheme": "batch-settlement",
                "network": chain.caip2(),
                "amount": PRICE.to_string(),
                "asset": chain.usdc.to_string(),
                "payTo": receiver.to_string(),
                "maxTimeoutSeconds": 3600,
                "extra": {
                    "receiverAuthorizer": authorizer.to_string(),
                    "withdrawDelay": 900,
                    "name": "USD Coin",
                    "version": "2"
                }
            });
            let row = Row {
                chain: &chain,
                http: http.clone(),
                url: url.clone(),
                requirements,
                payer,
                signer,
                facilitator,
            };
            let run = row.run(authorizer, receiver, payer as u8);
            if tokio::time::timeout(Duration::from_secs(120), run)
                .await
                .is_err()
            {
                panic!("{} timed out; log:\n{}", row.context(), proc.log_tail());
            }
        }
        drop(proc);
    }
}

/// One `tollgate pay` run against `url` as payer `payer` with the ledger `ledger`.
fn tollgate_pay(
    chain: &TestChain,
    ledger: &Path,
    payer: usize,
    args: &[&str],
    url: &str,
) -> std::process::Output {
    let mut command = support::tollgate();
    command
        .arg("pay")
        .args([
            "--asset",
            &format!("{}/{}/USDC/6", chain.caip2(), chain.usdc),
        ])
        .arg("--ledger")
        .arg(ledger)
        .args(["--deposit-requests", "20", "--yes"])
        .args(args)
        .arg(url)
        .env("TOLLGATE_PAY_KEY", DEV_KEYS[payer])
        .env_remove("TOLLGATE_RPC_URL");
    support::run_output(command)
}

/// Every resource server × client × facilitator: the official resource server
/// (`batch-server.mjs`: `@x402/express` with `@x402/evm`'s batch-settlement server scheme) and
/// Tollgate's (`tollgate proxy` with a batch-settlement route and `[channels]`), in front of
/// each facilitator, paid by each client — the official `batch-client.mjs` and `tollgate pay`
/// (three runs, three processes, one spend ledger: a deposit, then two vouchers through the
/// same channel) — and refunded on `tollgate pay --refund`, with the chain showing exactly the
/// deposit, the charges and the refund.
// Multi-threaded: the upstream behind `tollgate proxy` runs on this runtime while the test
// waits for the client processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_settlement_server_client_facilitator_matrix() {
    assert!(
        interop_dir()
            .join("node_modules/@x402/evm/dist/esm/batch-settlement/server")
            .is_dir(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
    let chain = TestChain::start().await.unwrap();
    chain.install_canonical_multicall3().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let contract = IBatchSettlement::new(BATCH_SETTLEMENT, chain.provider());
    // Tollgate's resource server is `tollgate proxy` in front of this upstream.
    let upstream = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            axum::Router::new().route("/api", axum::routing::get(|| async { "interop data" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    };
    let (mut payer, mut row) = (0, 0);
    for facilitator in [Side::Official, Side::Tollgate] {
        // Tollgate's facilitator signs the refunds the official server asks for (the seller
        // holds no authorizer key) only behind its API key, which the server then sends.
        let api_key = "interop-seller-key";
        let (facilitator_proc, facilitator_url) =
            start_facilitator(&chain, dir.path(), facilitator, Some(api_key));
        for (server_side, client) in [
            (Side::Official, Side::Official),
            (Side::Official, Side::Tollgate),
            (Side::Tollgate, Side::Official),
            (Side::Tollgate, Side::Tollgate),
        ] {
            payer = payer % 4 + 1;
            row += 1;
            let ctx =
                format!("server {server_side:?}, facilitator {facilitator:?}, client {client:?}");
            let receiver = Address::random();
            let (server, url) = match server_side {
                Side::Official => {
                    let env = [
                        ("X402_CHAIN_ID", chain.chain_id().to_string()),
                        ("X402_FACILITATOR_URL", facilitator_url.clone()),
                        ("X402_PAY_TO", receiver.to_string()),
                        ("X402_ASSET", chain.usdc.to_string()),
                        ("X402_PRICE", PRICE.to_string()),
                        ("X402_BODY", "interop data".to_owned()),
                        ("X402_PORT", "0".to_owned()),
                        ("X402_FACILITATOR_API_KEY", api_key.to_owned()),
                    ];
                    let (server, port) = spawn_until(
                        node("batch-server.mjs", &env),
                        dir.path().join(format!("official-server-{row}.log")),
                        "ready server ",
                        false,
                    );
                    (server, format!("http://127.0.0.1:{port}/api"))
                }
                Side::Tollgate => {
                    // `tollgate proxy` with a batch-settlement route, its channels in SQLite,
                    // the seller holding its receiver authorizer's key (account 5).
                    let config = dir.path().join(format!("proxy-{row}.toml"));
                    std::fs::write(
                        &config,
                        format!(
                            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\
                             [facilitator]\nurl = \"{facilitator_url}\"\n\
                             api_key_env = \"INTEROP_FACILITATOR_KEY\"\n\
                             [payment]\nnetwork = \"{network}\"\npay_to = \"{receiver}\"\n\
                             [[routes]]\nroute = \"GET /api\"\namount = \"{PRICE}\"\n\
                             asset = \"{usdc}\"\n\
                             extra = {{ name = \"USD Coin\", version = \"2\" }}\n\
                             scheme = \"batch-settlement\"\n\
                             [channels]\nsqlite = \"{channels}\"\nclaim_interval_secs = 3600\n\
                             receiver_authorizer_key_env = \"INTEROP_SELLER_AUTHORIZER\"\n",
                            network = chain.caip2(),
                            usdc = chain.usdc,
                            channels = dir.path().join(format!("channels-{row}.db")).display(),
                        ),
                    )
                    .unwrap();
                    let mut command = support::tollgate();
                    command
                        .args(["proxy", "--config"])
                        .arg(&config)
                        .env("INTEROP_FACILITATOR_KEY", api_key)
                        .env("INTEROP_SELLER_AUTHORIZER", DEV_KEYS[5]);
                    let (server, rest) = spawn_until(
                        command,
                        dir.path().join(format!("proxy-{row}.log")),
                        "tollgate proxy listening on ",
                        true,
                    );
                    let addr = rest.split(',').next().unwrap().trim().to_owned();
                    (server, format!("{addr}/api"))
                }
            };

            let unpaid = http.get(&url).send().await.unwrap();
            assert_eq!(unpaid.status(), 402, "{ctx}");
            let required: tollgate::proto::PaymentRequired = tollgate::proto::header::decode(
                unpaid.headers()["payment-required"].to_str().unwrap(),
            )
            .unwrap();
            let offer = required.accepts[0].clone();
            let (_, id) = tollgate::evm::batch_settlement::payer::channel_for(
                TestChain::address(payer),
                &offer,
            )
            .unwrap();
            let payer_start = chain.usdc_balance(TestChain::address(payer)).await.unwrap();
            match client {
                Side::Official => {
                    let out = support::run_output(node(
                        "batch-client.mjs",
                        &[
                            ("X402_URL", url.clone()),
                            ("X402_RPC_URL", chain.endpoint()),
                            ("X402_CHAIN_ID", chain.chain_id().to_string()),
                            ("X402_PAYER_KEY", DEV_KEYS[payer].to_owned()),
                            ("X402_CALLS", "3".to_owned()),
                        ],
                    ));
                    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect();
                    assert_eq!(
                        lines.len(),
                        3,
                        "{ctx}: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        server.log_tail()
                    );
                    let types: Vec<_> = lines.iter().map(|l| l["payloadType"].clone()).collect();
                    assert_eq!(
                        types,
                        vec![json!("deposit"), json!("voucher"), json!("voucher")],
                        "{ctx}: {lines:?}"
                    );
                    assert!(
                        lines
                            .iter()
                            .all(|l| l["status"] == 200 && l["body"] == "interop data"),
                        "{ctx}: {lines:?}"
                    );
                }
                Side::Tollgate => {
                    let ledger = dir.path().join(format!("spend-{payer}.db"));
                    for n in 1..=3u128 {
                        let out = tollgate_pay(&chain, &ledger, payer, &["-i"], &url);
                        let shown = support::Shown::tollgate_pay(&out);
                        assert_eq!(
                            (shown.status, shown.body.as_str()),
                            (200, "interop data"),
                            "{ctx}: {}{}",
                            shown.raw,
                            server.log_tail()
                        );
                        let receipt = shown
                            .receipt
                            .unwrap_or_else(|| panic!("{ctx}: no receipt: {}", shown.raw));
                        assert_eq!(
                            receipt["extra"]["chargedAmount"],
                            PRICE.to_string(),
                            "{ctx}: {receipt}"
                        );
                        assert_eq!(
                            receipt["extra"]["channelState"]["chargedCumulativeAmount"],
                            (n * PRICE).to_string(),
                            "{ctx}: {receipt}"
                        );
                        // A deposit on the first run (a transaction), vouchers after.
                        assert_eq!(
                            receipt["transaction"].as_str().unwrap().is_empty(),
                            n > 1,
                            "{ctx}: {receipt}"
                        );
                    }
                    assert_eq!(
                        contract.channels(id).call().await.unwrap().balance,
                        20 * PRICE,
                        "{ctx}"
                    );
                    // The refund: the server claims the three charges and returns the rest.
                    let out = tollgate_pay(&chain, &ledger, payer, &["--refund", "--json"], &url);
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        out.status.success(),
                        "{ctx}: refund: {stdout}{}{}{}",
                        String::from_utf8_lossy(&out.stderr),
                        server.log_tail(),
                        facilitator_proc.log_tail()
                    );
                    let refund: Value = serde_json::from_str(stdout.trim()).unwrap();
                    assert_eq!(
                        refund["refunded"],
                        (17 * PRICE).to_string(),
                        "{ctx}: {refund}"
                    );
                    assert_eq!(
                        refund["credited"],
                        (17 * PRICE).to_string(),
                        "{ctx}: {refund}"
                    );
                    let channel = contract.channels(id).call().await.unwrap();
                    assert_eq!(
                        (channel.balance, channel.totalClaimed),
                        (3 * PRICE, 3 * PRICE),
                        "{ctx}"
                    );
                    assert_eq!(
                        chain.usdc_balance(TestChain::address(payer)).await.unwrap(),
                        payer_start - U256::from(3 * PRICE),
                        "{ctx}: the payer paid exactly three requests"
                    );
                    let out = tollgate_pay(&chain, &ledger, payer, &["--channels", "--json"], &url);
                    let channels: Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(
                        channels[0]["deposited"],
                        (20 * PRICE).to_string(),
                        "{ctx}: {channels}"
                    );
                    assert_eq!(
                        channels[0]["refunded"],
                        (17 * PRICE).to_string(),
                        "{ctx}: {channels}"
                    );
                }
            }
            drop(server);
        }
        drop(facilitator_proc);
    }
}
