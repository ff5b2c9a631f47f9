//! The browser paywall on Solana end to end: a real headless Chromium opens a priced URL, a
//! test wallet injected into the page (a Wallet Standard wallet, or a legacy `window.solana`
//! provider, signing with a devnet dev key through WebCrypto's Ed25519) pays through the
//! page's Pay button with `tollgate_svm::browser::WALLET_SCRIPT`, and the real facilitator
//! co-signs and settles on the embedded Solana devnet. The transaction the page built is
//! checked byte for byte against the one `ExactSvmClient` builds for the same blockhash and
//! memo.
//!
//! Needs Chromium at `/usr/bin/chromium` (`apt-get install -y --no-install-recommends
//! chromium`; `.ci/run` installs it) and the Node dev tools (`npm ci`, for playwright-core).
//! Without them the tests fail and say so: they never skip.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_message::VersionedMessage;
use solana_signature::Signature;
use solana_signer::Signer;
use tollgate_core::{NetworkPattern, Registry, SchemeFacilitator, SchemeServer};
use tollgate_facilitator::Facilitator;
use tollgate_proto::{PaymentPayload, Scheme, U256};
use tollgate_server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_svm::browser::{rpc_url_script, RPC_METHODS, WALLET_SCRIPT};
use tollgate_svm::programs::{self, ComputeBudget, TransferChecked};
use tollgate_svm::{
    ExactSvmClient, ExactSvmFacilitator, ExactSvmServer, PaymentTransaction, SvmFacilitatorConfig,
};
use tollgate_svm_devnet::SvmDevnet;

const CHROMIUM: &str = "/usr/bin/chromium";
const PRICE: u64 = 10_000; // 0.01 USDC
const ARTICLE: &str = "The secret of the day: Solana slots pass every 400 ms.";
const ARTICLE_DESCRIPTION: &str = "Today's article on Solana";
const MEMBERS_PAGE: &str = "<h1>Members only</h1><p>Welcome, Token-2022 payer.</p>";
const MEMBERS_DESCRIPTION: &str = "The members' page";
/// The page's RPC endpoint for every Solana network (`window.x402SolanaRpcUrl`).
const RPC_PATH: &str = "/solana-rpc";
/// The endpoint `/members` names in its own `extra.rpcUrl`, which wins over the global.
const MEMBERS_RPC_PATH: &str = "/members-rpc";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/svm is two levels below the workspace")
        .to_path_buf()
}

/// Fails (not skips) when the browser tooling is missing, saying how to install it.
fn require_browser_tools(root: &Path) {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "no Chromium at {CHROMIUM}: install it with \
         `apt-get update && apt-get install -y --no-install-recommends chromium` (.ci/run does)"
    );
    assert!(
        root.join("node_modules/playwright-core/package.json")
            .is_file(),
        "node_modules lacks playwright-core: run `npm ci` in {}",
        root.display()
    );
}

/// A seller on the devnet: the paywall in front of an axum app, with its facilitator
/// in-process, and a same-origin Solana JSON-RPC endpoint for the paywall page.
struct Shop {
    devnet: SvmDevnet,
    url: String,
    payee: Address,
    fee_payer: Address,
    /// Every JSON-RPC call the page made: (path, method).
    rpc_calls: Arc<Mutex<Vec<(String, String)>>>,
}

impl Shop {
    fn balances(&self, payer: &Address, mint: &Address) -> (u64, u64) {
        (
            self.devnet.token_balance(payer, mint),
            self.devnet.token_balance(&self.payee, mint),
        )
    }

    fn rpc_calls(&self) -> Vec<(String, String)> {
        self.rpc_calls.lock().unwrap().clone()
    }
}

/// The seller's forwarder of the page's JSON-RPC reads to its Solana node: only the methods
/// the wallet script needs, recorded per path.
fn rpc_forwarder(
    path: &'static str,
    upstream: String,
    calls: Arc<Mutex<Vec<(String, String)>>>,
) -> axum::routing::MethodRouter {
    post(move |body: Bytes| {
        let upstream = upstream.clone();
        let calls = calls.clone();
        async move {
            let call: Value = serde_json::from_slice(&body).unwrap_or_default();
            let method = call["method"].as_str().unwrap_or("").to_owned();
            calls
                .lock()
                .unwrap()
                .push((path.to_owned(), method.clone()));
            if !RPC_METHODS.contains(&method.as_str()) {
                return (StatusCode::FORBIDDEN, format!("{method} is not forwarded"));
            }
            match reqwest::Client::new()
                .post(&upstream)
                .json(&call)
                .send()
                .await
            {
                Ok(answer) => (StatusCode::OK, answer.text().await.unwrap_or_default()),
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
            }
        }
    })
}

async fn shop() -> Shop {
    let devnet = SvmDevnet::start().await.expect("devnet starts");
    let scheme = Arc::new(
        ExactSvmFacilitator::connect(
            devnet.url(),
            vec![devnet.keypair(0)],
            SvmFacilitatorConfig::default(),
        )
        .await
        .expect("facilitator connects"),
    );
    let network = scheme.network().clone();
    assert_eq!(network.as_str(), devnet.caip2());
    let facilitator = Facilitator::builder()
        .scheme(
            NetworkPattern::One(network.clone()),
            scheme.clone() as Arc<dyn SchemeFacilitator>,
        )
        .chain(scheme.clone())
        .in_memory_ledger()
        .build()
        .await
        .expect("facilitator builds");

    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc(
            "solana:*".parse().unwrap(),
            Scheme::Exact,
            Arc::new(ExactSvmServer::new()),
        )
        .unwrap();
    let payee = devnet.accounts()[2].address;
    let option = |mint: Address, extra: Option<Value>| {
        PaymentOption::atomic(
            U256::from(PRICE),
            &mint.to_string(),
            network.clone(),
            &payee.to_string(),
            extra.and_then(|e| e.as_object().cloned()),
        )
    };
    let layer = PaywallLayer::new(facilitator)
        .schemes(schemes)
        .unwrap()
        .route(
            "GET /article",
            RoutePrice::new(option(devnet.usdc_mint(), None))
                .description(ARTICLE_DESCRIPTION)
                .mime_type("text/plain"),
        )
        .unwrap()
        .route(
            "GET /members",
            RoutePrice::new(option(
                devnet.token2022_mint(),
                Some(json!({ "rpcUrl": MEMBERS_RPC_PATH })),
            ))
            .description(MEMBERS_DESCRIPTION),
        )
        .unwrap()
        // An option naming the node itself: another origin, which the page may not reach.
        .route(
            "GET /elsewhere",
            RoutePrice::new(option(
                devnet.usdc_mint(),
                Some(json!({ "rpcUrl": devnet.url() })),
            ))
            .description("An option with a cross-origin RPC endpoint"),
        )
        .unwrap()
        .browser_wallet(WALLET_SCRIPT)
        .browser_wallet(rpc_url_script(RPC_PATH));
    let rpc_calls = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/article", get(|| async { ARTICLE }))
        .route(
            "/members",
            get(|| async { axum::response::Html(MEMBERS_PAGE) }),
        )
        .route("/elsewhere", get(|| async { "unreachable" }))
        .route(
            RPC_PATH,
            rpc_forwarder(RPC_PATH, devnet.url().to_owned(), rpc_calls.clone()),
        )
        .route(
            MEMBERS_RPC_PATH,
            rpc_forwarder(MEMBERS_RPC_PATH, devnet.url().to_owned(), rpc_calls.clone()),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Shop {
        fee_payer: devnet.keypair(0).pubkey(),
        devnet,
        url,
        payee,
        rpc_calls,
    }
}

/// Which wallet the page gets.
#[derive(Clone, Copy, Debug)]
enum WalletMode {
    /// A Wallet Standard wallet, registered before the page loads (found by `app-ready`).
    Standard,
    /// A Wallet Standard wallet registered after the page loaded (`register-wallet`) whose
    /// user rejects every signature request.
    Rejecting,
    /// A legacy injected provider at `window.solana`.
    Legacy,
    /// No wallet at all.
    None,
}

impl WalletMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Rejecting => "reject",
            Self::Legacy => "legacy",
            Self::None => "none",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the browser run saw.
struct Run {
    result: Value,
    stderr: String,
}

impl Run {
    fn paid(&self) -> bool {
        !self.result["paid"].is_null()
    }

    fn status_line(&self) -> &str {
        self.result["statusLine"].as_str().unwrap_or("")
    }

    /// The payments the page sent, decoded from their `PAYMENT-SIGNATURE` headers.
    fn payments(&self) -> Vec<PaymentPayload> {
        self.result["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(h.as_str().unwrap())
                    .unwrap();
                serde_json::from_slice(&bytes).unwrap()
            })
            .collect()
    }

    fn wallet_calls(&self) -> Vec<String> {
        self.result["walletLog"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

/// Opens `path` of the shop in headless Chromium with a wallet of `mode` holding `keypair`,
/// clicks Pay and reports what the page showed; screenshots are saved to `screenshots`.
async fn run_browser(
    s: &Shop,
    path: &str,
    mode: WalletMode,
    keypair: &Keypair,
    screenshots: Option<(&Path, &Path)>,
) -> Run {
    let mut node = tokio::process::Command::new("node");
    node.current_dir(workspace_root())
        .arg("--input-type=module")
        .arg("--eval")
        .arg(DRIVER)
        .env("CHROMIUM", CHROMIUM)
        .env("PAYWALL_URL", format!("{}{path}", s.url))
        .env("WALLET_MODE", mode.as_str())
        .env("WALLET_SEED", hex(keypair.secret_bytes()))
        .env("WALLET_PUBLIC_KEY", hex(keypair.pubkey().as_ref()))
        .env("WALLET_ADDRESS", keypair.pubkey().to_string())
        .kill_on_drop(true);
    if let Some((before, after)) = screenshots {
        node.env("SCREENSHOT_BEFORE", before)
            .env("SCREENSHOT_AFTER", after);
    }
    let output = tokio::time::timeout(Duration::from_secs(150), node.output())
        .await
        .expect("the browser run finishes within 150 s")
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the browser driver failed:\n{stderr}\n{stdout}"
    );
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON result line in:\n{stdout}\n{stderr}"));
    let run = Run { result, stderr };
    let r = &run.result;
    assert_eq!(r["httpStatus"], 402, "{r}");
    assert!(
        r["contentType"].as_str().unwrap().starts_with("text/html"),
        "{r}"
    );
    assert_eq!(r["offer"]["network"], s.devnet.caip2(), "{r}");
    assert_eq!(r["offer"]["recipient"], s.payee.to_string(), "{r}");
    assert_eq!(
        r["foreign"],
        json!([]),
        "the page fetched from other origins: {r}"
    );
    assert_eq!(r["pageErrors"], json!([]), "{r}\n{}", run.stderr);
    run
}

/// The page's transaction is the one `ExactSvmClient` builds for the same requirements,
/// blockhash and memo — byte for byte, signature included (Ed25519 is deterministic) — with
/// the fee payer's slot zeroed.
async fn assert_built_like_the_rust_client(
    s: &Shop,
    payment: &PaymentPayload,
    keypair: Keypair,
    mint: Address,
    token_program: Address,
) {
    let sent = PaymentTransaction::from_payload(&Value::Object(payment.payload.clone()))
        .expect("the page's transaction decodes canonically");
    let VersionedMessage::V0(message) = &sent.transaction.message else {
        panic!("not a v0 message: {:?}", sent.transaction.message);
    };
    assert!(message.address_table_lookups.is_empty());
    assert_eq!(message.account_keys[0], s.fee_payer, "fee payer first");
    assert_eq!(sent.transaction.signatures.len(), 2);
    assert_eq!(
        sent.transaction.signatures[0],
        Signature::default(),
        "the fee payer's slot is left for the facilitator"
    );
    let program =
        |i: usize| message.account_keys[usize::from(message.instructions[i].program_id_index)];
    let accounts = |i: usize| -> Vec<Address> {
        message.instructions[i]
            .accounts
            .iter()
            .map(|&a| message.account_keys[usize::from(a)])
            .collect()
    };
    assert_eq!(message.instructions.len(), 4);
    assert_eq!(
        ComputeBudget::decode(&program(0), &accounts(0), &message.instructions[0].data),
        Some(ComputeBudget::UnitLimit(20_000))
    );
    assert_eq!(
        ComputeBudget::decode(&program(1), &accounts(1), &message.instructions[1].data),
        Some(ComputeBudget::UnitPrice(1))
    );
    let ata =
        |who: &Address| programs::associated_token_address(who, &mint, &token_program).unwrap();
    assert_eq!(
        TransferChecked::decode(&program(2), &accounts(2), &message.instructions[2].data),
        Some(TransferChecked {
            program: token_program,
            source: ata(&keypair.pubkey()),
            mint,
            destination: ata(&s.payee),
            authority: keypair.pubkey(),
            amount: PRICE,
            decimals: 6,
        })
    );
    assert_eq!(program(3), programs::MEMO_PROGRAM);
    let memo = String::from_utf8(message.instructions[3].data.clone()).unwrap();
    assert!(
        memo.len() == 32 && memo.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "16 random bytes in hex: {memo:?}"
    );

    let mut requirements = payment.accepted.clone();
    let extra = requirements.extra.get_or_insert_with(Default::default);
    extra.insert(
        "recentBlockhash".into(),
        json!(message.recent_blockhash.to_string()),
    );
    extra.insert("memo".into(), json!(memo));
    let client = ExactSvmClient::new(keypair, s.devnet.url());
    let (expected, _) = client
        .sign_payment(&requirements, None)
        .await
        .expect("the Rust client signs the same requirements");
    assert_eq!(
        expected.payload["transaction"], payment.payload["transaction"],
        "the page and ExactSvmClient build different transactions"
    );
}

#[tokio::test]
async fn a_wallet_standard_wallet_pays_through_the_paywall_page() {
    require_browser_tools(&workspace_root());
    let s = shop().await;
    let payer = s.devnet.keypair(1);
    let usdc = s.devnet.usdc_mint();
    let before = s.balances(&payer.pubkey(), &usdc);

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (shot_before, shot_after) = (
        dir.join("svm-paywall-before.png"),
        dir.join("svm-paywall-after.png"),
    );
    let run = run_browser(
        &s,
        "/article",
        WalletMode::Standard,
        &payer,
        Some((&shot_before, &shot_after)),
    )
    .await;
    let r = &run.result;
    println!("browser: {r}");
    println!(
        "screenshots: {} {}",
        shot_before.display(),
        shot_after.display()
    );
    assert!(run.paid(), "the page did not unlock: {r}\n{}", run.stderr);
    assert_eq!(r["offer"]["description"], ARTICLE_DESCRIPTION, "{r}");
    assert_eq!(r["offer"]["price"], "0.01 USDC", "{r}");
    assert_eq!(r["content"], ARTICLE, "{r}");
    assert_eq!(r["rendered"], "text", "{r}");
    let transaction = r["paid"].as_str().unwrap();
    assert!(
        transaction.parse::<Signature>().is_ok(),
        "the receipt names the transaction's signature: {r}"
    );
    assert!(run.status_line().contains(transaction), "{r}");

    // The wallet was connected, then asked once to sign, on devnet, for its account.
    assert_eq!(
        run.wallet_calls(),
        ["standard:connect", "solana:signTransaction"],
        "{r}"
    );
    let sign = &r["walletLog"][1];
    assert_eq!(sign["chain"], "solana:devnet", "{r}");
    assert_eq!(sign["account"], payer.pubkey().to_string(), "{r}");

    // The page read the mint and a blockhash through the seller's endpoint, nothing else.
    let mut methods: Vec<String> = s
        .rpc_calls()
        .into_iter()
        .map(|(path, m)| {
            assert_eq!(path, RPC_PATH);
            m
        })
        .collect();
    methods.sort();
    assert_eq!(methods, ["getAccountInfo", "getLatestBlockhash"]);

    let payments = run.payments();
    assert_eq!(payments.len(), 1, "{r}");
    assert_built_like_the_rust_client(
        &s,
        &payments[0],
        payer.insecure_clone(),
        usdc,
        programs::TOKEN_PROGRAM,
    )
    .await;

    // Exactly the price moved, from the wallet's account to payTo.
    let after = s.balances(&payer.pubkey(), &usdc);
    assert_eq!(before.0 - after.0, PRICE);
    assert_eq!(after.1 - before.1, PRICE);
}

#[tokio::test]
async fn a_legacy_window_solana_provider_pays_in_token_2022() {
    require_browser_tools(&workspace_root());
    let s = shop().await;
    let payer = s.devnet.keypair(3);
    let mint = s.devnet.token2022_mint();
    let before = s.balances(&payer.pubkey(), &mint);

    let run = run_browser(&s, "/members", WalletMode::Legacy, &payer, None).await;
    let r = &run.result;
    println!("browser: {r}");
    assert!(run.paid(), "the page did not unlock: {r}\n{}", run.stderr);
    assert_eq!(r["offer"]["description"], MEMBERS_DESCRIPTION, "{r}");
    assert_eq!(
        r["offer"]["price"],
        format!("{PRICE} atomic units of token {mint}"),
        "{r}"
    );
    assert_eq!(r["rendered"], "html", "{r}");
    assert_eq!(
        r["content"], "Members onlyWelcome, Token-2022 payer.",
        "{r}"
    );
    assert_eq!(run.wallet_calls(), ["connect", "signTransaction"], "{r}");
    assert_eq!(r["walletLog"][1]["version"], 0, "{r}");

    // The option's own `extra.rpcUrl` wins over the page-wide endpoint.
    let calls = s.rpc_calls();
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|(path, _)| path == MEMBERS_RPC_PATH),
        "{calls:?}"
    );

    let payments = run.payments();
    assert_eq!(payments.len(), 1, "{r}");
    assert_built_like_the_rust_client(
        &s,
        &payments[0],
        payer.insecure_clone(),
        mint,
        programs::TOKEN_2022_PROGRAM,
    )
    .await;

    let after = s.balances(&payer.pubkey(), &mint);
    assert_eq!(before.0 - after.0, PRICE);
    assert_eq!(after.1 - before.1, PRICE);
}

#[tokio::test]
async fn a_payment_the_page_cannot_make_shows_why_and_moves_nothing() {
    require_browser_tools(&workspace_root());
    let s = shop().await;
    let payer = s.devnet.keypair(1);
    let usdc = s.devnet.usdc_mint();
    let before = s.balances(&payer.pubkey(), &usdc);
    let fee_payer_lamports = s.devnet.lamports(&s.fee_payer);

    // The user rejects the signature request (in a wallet that registered after the page).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (shot_before, shot_after) = (
        dir.join("svm-paywall-refused-before.png"),
        dir.join("svm-paywall-refused-after.png"),
    );
    let run = run_browser(
        &s,
        "/article",
        WalletMode::Rejecting,
        &payer,
        Some((&shot_before, &shot_after)),
    )
    .await;
    let r = &run.result;
    assert!(!run.paid(), "{r}");
    assert!(
        run.status_line().starts_with("Payment failed: ")
            && run.status_line().contains("User rejected the request."),
        "{r}"
    );
    assert_eq!(
        run.wallet_calls(),
        ["standard:connect", "solana:signTransaction"],
        "{r}"
    );
    assert_eq!(r["payments"], json!([]), "nothing was sent: {r}");

    // No wallet at all.
    let run = run_browser(&s, "/article", WalletMode::None, &payer, None).await;
    let r = &run.result;
    assert!(!run.paid(), "{r}");
    assert!(run.status_line().contains("No Solana wallet found"), "{r}");
    assert_eq!(r["payments"], json!([]), "{r}");

    // An RPC endpoint on another origin: refused before the wallet is even asked.
    let calls_before = s.rpc_calls().len();
    let run = run_browser(&s, "/elsewhere", WalletMode::Standard, &payer, None).await;
    let r = &run.result;
    assert!(!run.paid(), "{r}");
    assert!(
        run.status_line().contains("is not on this page's origin"),
        "{r}"
    );
    assert_eq!(run.wallet_calls(), Vec::<String>::new(), "{r}");
    assert_eq!(r["payments"], json!([]), "{r}");
    assert_eq!(s.rpc_calls().len(), calls_before);

    assert_eq!(s.balances(&payer.pubkey(), &usdc), before);
    assert_eq!(s.devnet.lamports(&s.fee_payer), fee_payer_lamports);
}

/// The headless-Chromium driver (Node, playwright-core from the workspace's node_modules):
/// injects the test wallet, opens the page, clicks Pay, waits for the content or an error,
/// and prints one JSON line with what the page showed, the wallet's log and the
/// `PAYMENT-SIGNATURE` headers the page sent.
const DRIVER: &str = r##"
import { chromium } from "playwright-core";

const env = process.env;
const url = env.PAYWALL_URL;
const origin = new URL(url).origin;
const timeout = 60000;

// The test wallet, injected before the page's scripts. It signs like a wallet extension after
// the user clicked "approve": Ed25519 (WebCrypto) over the message, in its own signature slot.
function testWallet(config) {
  const log = [];
  window.__testWallet = { log };
  if (config.mode === "none") return;
  const fromHex = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));
  const seed = fromHex(config.seed);
  const publicKey = fromHex(config.publicKey);
  const pkcs8 = new Uint8Array(48);
  pkcs8.set([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
  pkcs8.set(seed, 16);
  const key = crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);

  function compactU16(bytes, at) {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[at++];
      value |= (b & 0x7f) << shift;
      if (!(b & 0x80)) return [value, at];
    }
  }

  async function sign(input) {
    const bytes = Uint8Array.from(input);
    const [count, signaturesAt] = compactU16(bytes, 0);
    const messageAt = signaturesAt + 64 * count;
    let at = messageAt;
    if (bytes[at] & 0x80) at++;
    const required = bytes[at];
    const [keys, keysAt] = compactU16(bytes, at + 3);
    let slot = -1;
    for (let i = 0; i < Math.min(keys, required); i++) {
      const k = bytes.subarray(keysAt + 32 * i, keysAt + 32 * i + 32);
      if (k.every((b, j) => b === publicKey[j])) slot = i;
    }
    if (slot < 0) throw new Error("the transaction does not ask this wallet to sign");
    const signature = await crypto.subtle.sign({ name: "Ed25519" }, await key, bytes.subarray(messageAt));
    bytes.set(new Uint8Array(signature), signaturesAt + 64 * slot);
    return bytes;
  }

  function rejected() {
    const e = new Error("User rejected the request.");
    e.code = 4001;
    return e;
  }

  if (config.mode === "legacy") {
    const provider = {
      isConnected: false,
      publicKey: null,
      async connect() {
        log.push({ call: "connect" });
        provider.isConnected = true;
        provider.publicKey = { toBase58: () => config.address, toString: () => config.address };
        return { publicKey: provider.publicKey };
      },
      async signTransaction(transaction) {
        log.push({ call: "signTransaction", version: transaction.version });
        const signed = await sign(transaction.serialize());
        return { version: 0, serialize: () => signed };
      },
      on() {},
      removeListener() {},
    };
    window.solana = provider;
    return;
  }

  const chains = ["solana:mainnet", "solana:devnet", "solana:testnet"];
  const account = Object.freeze({
    address: config.address,
    publicKey,
    chains,
    features: ["solana:signTransaction"],
  });
  const wallet = {
    version: "1.0.0",
    name: "Tollgate Test Wallet",
    icon: "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
    chains,
    accounts: [],
    features: {
      "standard:connect": {
        version: "1.0.0",
        async connect() {
          log.push({ call: "standard:connect" });
          wallet.accounts = [account];
          return { accounts: wallet.accounts };
        },
      },
      "standard:events": { version: "1.0.0", on: () => () => {} },
      "solana:signTransaction": {
        version: "1.0.0",
        supportedTransactionVersions: ["legacy", 0],
        async signTransaction(...inputs) {
          for (const input of inputs) {
            log.push({ call: "solana:signTransaction", chain: input.chain ?? null, account: input.account.address });
          }
          if (config.mode === "reject") throw rejected();
          return Promise.all(inputs.map(async (input) => ({ signedTransaction: await sign(input.transaction) })));
        },
      },
    },
  };
  // @wallet-standard/wallet's registerWallet: announce, and answer apps that load later.
  function registerWallet() {
    const callback = ({ register }) => register(wallet);
    window.dispatchEvent(new CustomEvent("wallet-standard:register-wallet", { detail: callback }));
    window.addEventListener("wallet-standard:app-ready", ({ detail }) => callback(detail));
  }
  if (config.mode === "reject") {
    document.addEventListener("DOMContentLoaded", registerWallet);
  } else {
    registerWallet();
  }
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: env.CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout,
  });
  const context = await browser.newContext({ viewport: { width: 960, height: 640 } });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const foreign = [];
  const payments = [];
  page.on("request", (request) => {
    const u = request.url();
    if (!u.startsWith("data:") && !u.startsWith("about:") && new URL(u).origin !== origin) foreign.push(u);
    const payment = request.headers()["payment-signature"];
    if (payment) payments.push(payment);
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.addInitScript(testWallet, {
    mode: env.WALLET_MODE,
    seed: env.WALLET_SEED,
    publicKey: env.WALLET_PUBLIC_KEY,
    address: env.WALLET_ADDRESS,
  });

  const response = await page.goto(url, { waitUntil: "load" });
  const text = async (selector) => ((await page.textContent(selector)) ?? "").trim();
  const offer = {
    description: await text("#x402-description"),
    price: await text(".x402-option .price"),
    network: await text(".x402-option .network"),
    recipient: await text(".x402-option .recipient"),
  };
  await page.waitForSelector("#x402-pay:not([disabled])");
  if (env.SCREENSHOT_BEFORE) await page.screenshot({ path: env.SCREENSHOT_BEFORE, fullPage: true });
  await page.click("#x402-pay");
  await page
    .waitForSelector("#x402-paywall[data-paid], #x402-status.error", { timeout })
    .catch(() => {});
  const paid = await page.getAttribute("#x402-paywall", "data-paid");
  let content = null;
  let rendered = null;
  if (paid !== null) {
    if (await page.$("#x402-content")) {
      content = await page.textContent("#x402-content");
      rendered = "text";
    } else {
      const frame = await (await page.waitForSelector("#x402-output iframe")).contentFrame();
      content = ((await frame.textContent("body")) ?? "").trim();
      rendered = "html";
    }
  }
  const statusLine = await text("#x402-status");
  if (env.SCREENSHOT_AFTER) await page.screenshot({ path: env.SCREENSHOT_AFTER, fullPage: true });
  const walletLog = await page.evaluate(() => (window.__testWallet ? window.__testWallet.log : []));
  console.log(JSON.stringify({
    httpStatus: response.status(),
    contentType: response.headers()["content-type"] ?? "",
    offer, paid, content, rendered, statusLine, walletLog, payments, foreign, pageErrors,
  }));
} catch (e) {
  console.error(`browser driver: ${e?.stack ?? String(e)}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
"##;
