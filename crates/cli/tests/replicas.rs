//! One payment buys one delivery, however many replicas it is replayed against.
//!
//! Real processes only: the embedded devnet, `tollgate facilitator` (one on SQLite, or two on
//! one PostgreSQL), and three `tollgate proxy` replicas in front of one plain HTTP upstream that
//! counts every request it receives. The buyer signs **one** payment against one replica's
//! 402, then a hostile caller replays it hundreds of times at once across all three replicas,
//! in many re-encodings of the same authorization (base64 alphabets and padding, JSON key
//! order, whitespace and escapes, hex letter case, `0X` prefixes, leading zeros, v1 framing,
//! the other header name, attacker-chosen `payment-identifier` ids). Exactly one request may
//! reach the upstream and exactly one transfer may land; every other caller gets a `402` with
//! a reason and none of the upstream's body. Replicas sharing no memory is the point: the
//! guard has to live where all of them meet (the facilitator and its ledger).
//!
//! The tests take a process-wide lock so that the three rigs do not compete for the two cores
//! when the file is run as a whole.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use tollgate::evm::ExactEvmClient;
use tollgate::proto::{header, PaymentPayload, PaymentRequired};
use tollgate_testkit::{Postgres, TestChain, DEV_KEYS};

/// The price of the priced route, in atomic units of the test token (0.01 USDC).
const PRICE: u64 = 10_000;
/// What the upstream's priced handler answers: recognisable in any response that leaks it.
const BODY: &str = "priced upstream body 5b1e0c7a";
/// Replays sent at once (the issue asks for at least 300).
const REPLAYS: usize = 360;
/// The buyer's dev account.
const PAYER: usize = 1;
/// How long the priced handler takes: long enough that the replays arrive while the first
/// delivery is between verification and settlement, the window where a per-process guard
/// cannot see the other replicas.
const HANDLER_DELAY: Duration = Duration::from_millis(150);

/// Keeps the rigs of this file from running at the same time on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process, killed and reaped on drop; its stderr is copied to a log file.
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
    /// The end of the log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text[text.floor_char_boundary(start)..].to_owned()
    }
}

/// Spawns `command` with stderr going to `log` (through a thread that keeps the pipe drained)
/// and waits up to a minute for a stderr line starting with `prefix`; returns the rest of it.
fn spawn_until(mut command: Command, log: PathBuf, prefix: &str) -> (Proc, String) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn tollgate");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut file = std::fs::File::create(&log).expect("create log");
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix_owned = prefix.to_owned();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

// ---------------------------------------------------------------------------------------------
// The upstream
// ---------------------------------------------------------------------------------------------

/// A plain HTTP API (no payment logic) recording every request it receives.
struct Upstream {
    url: String,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start() -> Self {
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = hits.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method, uri: axum::http::Uri| {
                let record = record.clone();
                async move {
                    record
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{method} {}", uri.path()));
                    if uri.path() == "/paid" {
                        tokio::time::sleep(HANDLER_DELAY).await;
                        BODY
                    } else {
                        "free"
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, hits, task }
    }

    /// Requests received, per `METHOD path`.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for hit in self.hits.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            *counts.entry(hit.clone()).or_insert(0) += 1;
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------------
// The rig
// ---------------------------------------------------------------------------------------------

/// Devnet, facilitator(s), upstream and three proxies. Fields drop in order: the processes
/// first, the database and the chain last.
struct Rig {
    proxies: Vec<(Proc, String)>,
    facilitators: Vec<(Proc, String)>,
    upstream: Upstream,
    _pg: Option<Postgres>,
    chain: TestChain,
    payee: Address,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Starts the rig with `facilitators` facilitator processes: one on its own SQLite ledger,
    /// or (2) several sharing one PostgreSQL ledger, each settling with its own key.
    async fn start(facilitators: usize) -> Self {
        let chain = TestChain::start_devnet().await.expect("start the devnet");
        let dir = tempfile::tempdir().unwrap();
        let pg = (facilitators > 1).then(|| Postgres::start().expect("start PostgreSQL"));
        let config = dir.path().join("facilitator.toml");
        let ledger = match pg {
            Some(_) => String::new(),
            None => format!(
                "[ledger]\npath = \"{}\"\n",
                dir.path().join("ledger.db").display()
            ),
        };
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{ledger}[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n",
                chain.caip2(),
                chain.endpoint()
            ),
        )
        .unwrap();
        // Facilitator keys: dev accounts 0 and 7 (never the payer, never the payee).
        let keys = [DEV_KEYS[0], DEV_KEYS[7]];
        let mut started = Vec::new();
        for i in 0..facilitators {
            let mut command = tollgate();
            command
                .args(["facilitator", "--config"])
                .arg(&config)
                .env("TOLLGATE_TEST_SIGNER", keys[i % keys.len()]);
            if let Some(pg) = &pg {
                command.env("TOLLGATE_LEDGER_URL", pg.url());
            }
            started.push(spawn_until(
                command,
                dir.path().join(format!("facilitator-{i}.log")),
                "tollgate facilitator listening on ",
            ));
        }
        let upstream = Upstream::start().await;
        // A fresh payee, so that its balance is exactly what this test paid it.
        let payee = PrivateKeySigner::random().address();
        let mut proxies = Vec::new();
        for i in 0..3 {
            let facilitator = &started[i % started.len()].1;
            let config = dir.path().join(format!("proxy-{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n[facilitator]\nurl = \"{facilitator}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{payee}\"\n[[routes]]\nroute = \"GET /paid\"\namount = \"{PRICE}\"\nasset = \"{}\"\nextra = {{ name = \"USD Coin\", version = \"2\" }}\n",
                    upstream.url,
                    chain.caip2(),
                    chain.usdc
                ),
            )
            .unwrap();
            let mut command = tollgate();
            command.args(["proxy", "--config"]).arg(&config);
            let (proc, rest) = spawn_until(
                command,
                dir.path().join(format!("proxy-{i}.log")),
                "tollgate proxy listening on ",
            );
            let url = rest.split(',').next().unwrap().trim().to_owned();
            proxies.push((proc, url));
        }
        Self {
            proxies,
            facilitators: started,
            upstream,
            _pg: pg,
            chain,
            payee,
            _dir: dir,
        }
    }

    fn proxy(&self, i: usize) -> &str {
        &self.proxies[i].1
    }

    /// Every process's log tail, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, (p, url)) in self.facilitators.iter().enumerate() {
            out.push_str(&format!("--- facilitator {i} ({url}):\n{}\n", p.log_tail()));
        }
        for (i, (p, url)) in self.proxies.iter().enumerate() {
            out.push_str(&format!("--- proxy {i} ({url}):\n{}\n", p.log_tail()));
        }
        out
    }

    /// Signs one payment for `GET /paid` against the 402 of proxy `via`, as a buyer would.
    async fn sign_one_payment(&self, via: usize) -> PaymentPayload {
        let response = reqwest::get(format!("{}/paid", self.proxy(via)))
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            402,
            "an unpaid request is asked to pay"
        );
        let required: PaymentRequired = header::payment_required_from_headers(response.headers())
            .expect("a PAYMENT-REQUIRED header")
            .expect("a decodable PAYMENT-REQUIRED header");
        let requirements = required.accepts.first().expect("one way to pay").clone();
        ExactEvmClient::new(TestChain::signer(PAYER))
            .sign(&requirements, Some(required.resource.clone()))
            .await
            .expect("sign")
    }

    /// Events the token emitted for this payment: (`AuthorizationUsed(payer, nonce)` logs,
    /// `Transfer(payer, *)` logs) since genesis.
    async fn events(&self, payer: Address, nonce: B256) -> (usize, usize) {
        let used = keccak256("AuthorizationUsed(address,bytes32)");
        let transfer = keccak256("Transfer(address,address,uint256)");
        let count = |topics: Value| async move {
            let logs = self
                .chain
                .rpc(
                    "eth_getLogs",
                    json!([{ "address": self.chain.usdc, "fromBlock": "0x0", "toBlock": "latest", "topics": topics }]),
                )
                .await
                .expect("eth_getLogs");
            logs.as_array().map(Vec::len).unwrap_or(usize::MAX)
        };
        (
            count(json!([used, payer.into_word(), nonce])).await,
            count(json!([transfer, payer.into_word()])).await,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Re-encodings of one payment
// ---------------------------------------------------------------------------------------------

/// One way of writing the same authorization into a request header.
struct Replay {
    /// What was changed, for failure reports.
    kind: &'static str,
    /// `PAYMENT-SIGNATURE` or `X-PAYMENT`.
    header: &'static str,
    value: String,
}

/// How many distinct re-encodings [`encode_copy`] knows.
const KINDS: usize = 30;

/// JSON with every object's keys in reverse order (serde_json sorts them) and, with `spaced`,
/// whitespace after every separator.
fn reordered(value: &Value, spaced: bool) -> String {
    let (colon, comma) = if spaced { (" : ", " ,\n ") } else { (":", ",") };
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{}{colon}{}", json!(k), reordered(v, spaced)))
                .collect();
            format!("{{{}}}", fields.join(comma))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| reordered(v, spaced)).collect();
            format!("[{}]", items.join(comma))
        }
        other => other.to_string(),
    }
}

/// `0x` + the digits in upper case.
fn upper_hex(s: &str) -> String {
    format!("0x{}", s.trim_start_matches("0x").to_uppercase())
}

/// `0X` + the digits as they were.
fn big_x(s: &str) -> String {
    format!("0X{}", s.trim_start_matches("0x"))
}

/// Every character of `s` as a JSON `\u00XX` escape, quoted: the same string to any JSON
/// parser, different bytes to anything that compares bytes.
fn escaped(s: &str) -> String {
    let inner: String = s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    format!("\"{inner}\"")
}

/// The payment's JSON with `f` applied to `payload.authorization` and `payload.signature`.
fn edited(
    original: &Value,
    f: impl FnOnce(&mut serde_json::Map<String, Value>, &mut Value),
) -> Value {
    let mut v = original.clone();
    let payload = v["payload"].as_object_mut().expect("payload object");
    let mut signature = payload.remove("signature").expect("signature");
    let authorization = payload
        .get_mut("authorization")
        .and_then(Value::as_object_mut)
        .expect("authorization object");
    f(authorization, &mut signature);
    v["payload"]["signature"] = signature;
    v
}

fn map_str(v: &mut Value, f: impl Fn(&str) -> String) {
    if let Some(s) = v.as_str() {
        *v = Value::String(f(s));
    }
}

/// The `i`-th replay's header: re-encoding number `kind` of `original` (the payment as signed).
fn encode_copy(kind: usize, i: usize, original: &Value) -> Replay {
    let compact = original.to_string();
    let b64 = |json: &str| STANDARD.encode(json);
    let v2 = |kind, value| Replay {
        kind,
        header: "PAYMENT-SIGNATURE",
        value,
    };
    let signature = original["payload"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    match kind {
        0 => v2("as signed", b64(&compact)),
        1 => v2("base64 without padding", STANDARD_NO_PAD.encode(&compact)),
        2 => v2("URL-safe base64", URL_SAFE.encode(&compact)),
        3 => v2(
            "URL-safe base64 without padding",
            URL_SAFE_NO_PAD.encode(&compact),
        ),
        4 => v2(
            "whitespace around the value",
            format!("  {}\t", b64(&compact)),
        ),
        5 => v2(
            "JSON keys in reverse order",
            b64(&reordered(original, false)),
        ),
        6 => v2(
            "JSON pretty-printed",
            b64(&serde_json::to_string_pretty(original).unwrap()),
        ),
        7 => v2("JSON reversed and spaced", b64(&reordered(original, true))),
        8 => v2(
            "signature hex upper case",
            b64(&edited(original, |_, s| map_str(s, upper_hex)).to_string()),
        ),
        9 => v2(
            "nonce hex upper case",
            b64(&edited(original, |a, _| map_str(&mut a["nonce"], upper_hex)).to_string()),
        ),
        10 => v2(
            "addresses lower case",
            b64(&edited(original, |a, _| {
                map_str(&mut a["from"], str::to_lowercase);
                map_str(&mut a["to"], str::to_lowercase);
            })
            .to_string()),
        ),
        11 => v2(
            "addresses upper case",
            b64(&edited(original, |a, _| {
                map_str(&mut a["from"], upper_hex);
                map_str(&mut a["to"], upper_hex);
            })
            .to_string()),
        ),
        12 => v2(
            "0X prefixes",
            b64(&edited(original, |a, s| {
                map_str(s, big_x);
                for k in ["from", "to", "nonce"] {
                    map_str(&mut a[k], big_x);
                }
            })
            .to_string()),
        ),
        13 => v2(
            "value with a leading zero",
            b64(&edited(original, |a, _| {
                map_str(&mut a["value"], |s| format!("0{s}"))
            })
            .to_string()),
        ),
        14 => v2(
            "validBefore with a leading zero",
            b64(&edited(original, |a, _| {
                map_str(&mut a["validBefore"], |s| format!("0{s}"))
            })
            .to_string()),
        ),
        15 => v2(
            "every hex upper case, keys reversed, URL-safe unpadded",
            URL_SAFE_NO_PAD.encode(reordered(
                &edited(original, |a, s| {
                    map_str(s, upper_hex);
                    for k in ["from", "to", "nonce"] {
                        map_str(&mut a[k], upper_hex);
                    }
                }),
                false,
            )),
        ),
        16 => v2(
            "signature as JSON \\u escapes",
            b64(&compact.replace(&format!("\"{signature}\""), &escaped(&signature))),
        ),
        17 => {
            // A decoy signature first: a JSON object keeps the last of duplicate keys.
            let payload = &original["payload"];
            let json = format!(
                "{{\"x402Version\":2,\"resource\":{},\"accepted\":{},\"payload\":{{\"signature\":\"0x00\",\"authorization\":{},\"signature\":{}}}}}",
                original["resource"], original["accepted"], payload["authorization"], payload["signature"]
            );
            v2("duplicate signature key", b64(&json))
        }
        18 => {
            let mut v = original.clone();
            v["payload"]["padding"] = json!(i);
            v2("unknown field in payload", b64(&v.to_string()))
        }
        19 => {
            let mut v = original.clone();
            v["resource"] = json!({ "url": format!("http://replay.invalid/paid?copy={i}") });
            v2("another resource", b64(&v.to_string()))
        }
        20 => {
            // An attacker-chosen id per copy: each looks like a new attempt of its own.
            let mut v = original.clone();
            v["extensions"] = json!({ "payment-identifier": { "info": { "required": false, "id": format!("attacker_copy_{i:08}") } } });
            v2("payment-identifier, a new id per copy", b64(&v.to_string()))
        }
        21 => {
            // One attacker-chosen id on every copy: must not make the copies "the same attempt".
            let mut v = original.clone();
            v["extensions"] = json!({ "payment-identifier": { "info": { "required": false, "id": "attacker_fixed_id_0001" } } });
            v2(
                "payment-identifier, one id on every copy",
                b64(&v.to_string()),
            )
        }
        22 => Replay {
            kind: "v2 payment in X-PAYMENT",
            header: "X-PAYMENT",
            value: b64(&compact),
        },
        23 => Replay {
            kind: "v1 framing in X-PAYMENT",
            header: "X-PAYMENT",
            value: b64(&v1_framing(original).to_string()),
        },
        24 => v2(
            "v1 framing in PAYMENT-SIGNATURE",
            b64(&v1_framing(original).to_string()),
        ),
        25 => v2(
            "signature v as 0/1",
            b64(&edited(original, |_, s| {
                map_str(s, |sig| resigned(sig, SigForm::ZeroOneV))
            })
            .to_string()),
        ),
        26 => v2(
            "signature malleated to high s",
            b64(&edited(original, |_, s| {
                map_str(s, |sig| resigned(sig, SigForm::HighS))
            })
            .to_string()),
        ),
        27 => v2(
            "signature as EIP-2098 compact (64 bytes)",
            b64(&edited(original, |_, s| {
                map_str(s, |sig| resigned(sig, SigForm::Compact))
            })
            .to_string()),
        ),
        28 => v2(
            "amounts and times as JSON numbers",
            b64(&edited(original, |a, _| {
                for k in ["value", "validAfter", "validBefore"] {
                    if let Some(n) = a[k].as_str().and_then(|s| s.parse::<u64>().ok()) {
                        a[k] = json!(n);
                    }
                }
            })
            .to_string()),
        ),
        _ => {
            let mut v = original.clone();
            for k in ["payTo", "asset"] {
                map_str(&mut v["accepted"][k], str::to_lowercase);
            }
            v2("accepted addresses lower case", b64(&v.to_string()))
        }
    }
}

/// The same scheme payload framed as an x402 v1 payment.
fn v1_framing(original: &Value) -> Value {
    json!({
        "x402Version": 1,
        "scheme": original["accepted"]["scheme"],
        "network": original["accepted"]["network"],
        "payload": original["payload"],
    })
}

/// Other spellings of one ECDSA signature over the same authorization.
enum SigForm {
    /// `v` as 0/1 instead of 27/28.
    ZeroOneV,
    /// The other valid signature of the same hash: `s' = n - s`, `v` flipped.
    HighS,
    /// EIP-2098: `r ‖ (yParity << 255 | s)`, 64 bytes.
    Compact,
}

/// `sig` (0x + 65 bytes, `r ‖ s ‖ v`) respelled as `form`; unchanged when it is not 65 bytes.
fn resigned(sig: &str, form: SigForm) -> String {
    let Ok(bytes) = alloy::primitives::hex::decode(sig) else {
        return sig.to_owned();
    };
    if bytes.len() != 65 {
        return sig.to_owned();
    }
    let (r, s, v) = (&bytes[..32], U256::from_be_slice(&bytes[32..64]), bytes[64]);
    let parity = u8::from(v == 28 || v == 1);
    let out: Vec<u8> = match form {
        SigForm::ZeroOneV => [r, &s.to_be_bytes::<32>()[..], &[parity]].concat(),
        SigForm::HighS => {
            let n = U256::from_str_radix(
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
                16,
            )
            .expect("the secp256k1 order");
            [r, &(n - s).to_be_bytes::<32>()[..], &[27 + (1 - parity)]].concat()
        }
        SigForm::Compact => {
            let y_parity_and_s: U256 = s | (U256::from(parity) << 255usize);
            [r, &y_parity_and_s.to_be_bytes::<32>()[..]].concat()
        }
    };
    format!("0x{}", alloy::primitives::hex::encode(out))
}

// ---------------------------------------------------------------------------------------------
// Sending and judging
// ---------------------------------------------------------------------------------------------

/// One answer, reduced to what the assertions need.
#[derive(Debug)]
struct Answer {
    copy: usize,
    kind: &'static str,
    proxy: usize,
    /// HTTP status, or 0 when the request failed outright.
    status: u16,
    /// The decoded `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`: (success, transaction).
    receipt: Option<(bool, String)>,
    /// The refusal's reason: `PAYMENT-REQUIRED`'s `error`, else the JSON body's `error`.
    reason: Option<String>,
    body: String,
}

impl Answer {
    fn line(&self) -> String {
        let body: String = self.body.chars().take(160).collect();
        format!(
            "copy {} ({}) via proxy {}: {} receipt={:?} reason={:?} body={body:?}",
            self.copy, self.kind, self.proxy, self.status, self.receipt, self.reason
        )
    }
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    copy: &Replay,
    index: usize,
    proxy: usize,
) -> Answer {
    let mut answer = Answer {
        copy: index,
        kind: copy.kind,
        proxy,
        status: 0,
        receipt: None,
        reason: None,
        body: String::new(),
    };
    let response = match http
        .get(format!("{base}/paid"))
        .header(copy.header, &copy.value)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            answer.body = format!("request failed: {e}");
            return answer;
        }
    };
    answer.status = response.status().as_u16();
    answer.receipt = header::settle_response_from_headers(response.headers())
        .and_then(Result::ok)
        .map(|s| (s.success, s.transaction));
    let header_reason = header::payment_required_from_headers(response.headers())
        .and_then(Result::ok)
        .and_then(|r| r.error);
    answer.body = response.text().await.unwrap_or_default();
    let body_reason = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    answer.reason = header_reason
        .or(body_reason)
        .filter(|r| !r.trim().is_empty());
    answer
}

/// Sends `REPLAYS` re-encoded copies of `payment`, spread evenly over the proxies and the
/// re-encodings, all released at once by a barrier.
async fn replay_concurrently(rig: &Rig, payment: &PaymentPayload) -> Vec<Answer> {
    let original = serde_json::to_value(payment).unwrap();
    let clients: Vec<reqwest::Client> = (0..rig.proxies.len())
        .map(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(45))
                .pool_max_idle_per_host(REPLAYS)
                .build()
                .unwrap()
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(REPLAYS));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..REPLAYS {
        let proxy = i % rig.proxies.len();
        let copy = encode_copy((i / rig.proxies.len()) % KINDS, i, &original);
        let (http, base, barrier) = (
            clients[proxy].clone(),
            rig.proxy(proxy).to_owned(),
            barrier.clone(),
        );
        set.spawn(async move {
            barrier.wait().await;
            send(&http, &base, &copy, i, proxy).await
        });
    }
    let mut answers = Vec::with_capacity(REPLAYS);
    while let Some(answer) = set.join_next().await {
        answers.push(answer.expect("a replay task panicked"));
    }
    answers.sort_by_key(|a| a.copy);
    answers
}

/// What the answers, the upstream and the chain show, in one report; empty when one payment
/// bought exactly one delivery.
async fn one_delivery_violations(
    rig: &Rig,
    answers: &[Answer],
    payment: &PaymentPayload,
    payer_before: U256,
) -> Vec<String> {
    let mut problems = Vec::new();
    let delivered: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    if delivered.len() != 1 {
        problems.push(format!(
            "{} answers were 200, expected exactly 1",
            delivered.len()
        ));
    }
    for a in &delivered {
        if a.body != BODY || !matches!(&a.receipt, Some((true, _))) {
            problems.push(format!(
                "a 200 without the upstream body and a successful receipt: {}",
                a.line()
            ));
        }
    }
    for a in answers.iter().filter(|a| a.status != 200) {
        if a.status != 402 || a.reason.is_none() || a.body.contains(BODY) {
            problems.push(format!(
                "not a 402 with a reason and no upstream body: {}",
                a.line()
            ));
        }
    }
    let counts = rig.upstream.counts();
    let total: usize = counts.values().sum();
    if total != 1 || counts.get("GET /paid") != Some(&1) {
        problems.push(format!(
            "upstream received {total} requests, expected 1 GET /paid: {counts:?}"
        ));
    }
    let payer = TestChain::address(PAYER);
    let payer_after = rig.chain.usdc_balance(payer).await.unwrap();
    let payee_after = rig.chain.usdc_balance(rig.payee).await.unwrap();
    if payer_after != payer_before - U256::from(PRICE) || payee_after != U256::from(PRICE) {
        problems.push(format!(
            "balances: payer {payer_before} -> {payer_after}, payee 0 -> {payee_after}; expected a move of exactly {PRICE}"
        ));
    }
    let nonce: B256 = payment.payload["authorization"]["nonce"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (used, transfers) = rig.events(payer, nonce).await;
    if used != 1 || transfers != 1 {
        problems.push(format!(
            "on chain: {used} AuthorizationUsed and {transfers} Transfer events from the payer, expected 1 each"
        ));
    }
    if let Some(Some((_, tx))) = delivered.first().map(|a| &a.receipt) {
        let receipt = rig
            .chain
            .rpc("eth_getTransactionReceipt", json!([tx]))
            .await
            .unwrap_or(Value::Null);
        if receipt["status"] != json!("0x1") {
            problems.push(format!(
                "the receipt's transaction {tx} is not a successful one on chain: {receipt}"
            ));
        }
    }
    problems
}

/// A compact tally of the answers: status per re-encoding.
fn tally(answers: &[Answer]) -> String {
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        *by_status.entry(a.status).or_insert(0) += 1;
        *by_kind.entry((a.kind, a.status)).or_insert(0) += 1;
        let reason: String = a
            .reason
            .clone()
            .unwrap_or_else(|| "-".into())
            .chars()
            .take(90)
            .collect();
        *by_reason
            .entry(format!("{} {reason}", a.status))
            .or_insert(0) += 1;
    }
    let mut out = format!("statuses: {by_status:?}\nby re-encoding:\n");
    for ((kind, status), n) in by_kind {
        out.push_str(&format!("  {kind}: {status} x{n}\n"));
    }
    out.push_str("by reason:\n");
    for (reason, n) in by_reason {
        out.push_str(&format!("  {n:>4} x {reason}\n"));
    }
    out
}

fn assert_no_violations(problems: &[String], answers: &[Answer], rig: &Rig) {
    if problems.is_empty() {
        // Shown with `--nocapture`: what the refusals said.
        eprintln!(
            "{} answers, one delivery\n{}",
            answers.len(),
            tally(answers)
        );
        return;
    }
    let mut first_answers = String::new();
    let mut shown = 0;
    for a in answers
        .iter()
        .filter(|a| a.status != 402 || a.reason.is_none())
    {
        if shown < 12 {
            first_answers.push_str(&a.line());
            first_answers.push('\n');
            shown += 1;
        }
    }
    panic!(
        "one payment bought more (or less) than one delivery:\n- {}\n{}\nanswers other than a reasoned 402 (first 12):\n{first_answers}\nlogs:\n{}",
        problems.join("\n- "),
        tally(answers),
        rig.logs()
    );
}

async fn concurrent_replays_deliver_once(facilitators: usize) {
    let _serial = SERIAL.lock().await;
    let rig = Rig::start(facilitators).await;
    let payer_before = rig
        .chain
        .usdc_balance(TestChain::address(PAYER))
        .await
        .unwrap();
    let payment = rig.sign_one_payment(0).await;
    let answers = replay_concurrently(&rig, &payment).await;
    assert_eq!(answers.len(), REPLAYS);
    let problems = one_delivery_violations(&rig, &answers, &payment, payer_before).await;
    assert_no_violations(&problems, &answers, &rig);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Three replicas, one facilitator: ≥ 300 concurrent copies (re-encoded) of one payment →
/// one upstream request, one `200` with the body and a receipt, one transfer; every other
/// answer a reasoned `402` without the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_replayed_across_three_proxies_delivers_once() {
    concurrent_replays_deliver_once(1).await;
}

/// The same with two facilitator processes on one PostgreSQL ledger (proxies 0 and 2 use the
/// first, proxy 1 the second): the guard spans facilitator instances too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_replayed_across_proxies_and_two_facilitators_on_postgres_delivers_once() {
    concurrent_replays_deliver_once(2).await;
}

/// The same header sent to each replica in turn — not at once, but a few tens of milliseconds
/// apart while the first delivery is still running (how the official paywall was shown to
/// deliver four times) — and then again, one request at a time, to every replica after the
/// delivery: one `200`, every other answer a reasoned `402`, one upstream run, one transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_replayed_staggered_then_after_delivery_to_each_proxy_delivers_once() {
    let _serial = SERIAL.lock().await;
    let rig = Rig::start(1).await;
    let payer_before = rig
        .chain
        .usdc_balance(TestChain::address(PAYER))
        .await
        .unwrap();
    let payment = rig.sign_one_payment(0).await;
    let original = serde_json::to_value(&payment).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(45))
        .build()
        .unwrap();

    // Staggered: the header as signed to proxy 0, 1, 2, 0, ... every 30 ms, overlapping the
    // first delivery (the handler alone takes HANDLER_DELAY).
    let mut staggered = tokio::task::JoinSet::new();
    let mut index = 0;
    for proxy in [0, 1, 2, 0, 1, 2] {
        let (http, base, copy) = (
            http.clone(),
            rig.proxy(proxy).to_owned(),
            encode_copy(0, index, &original),
        );
        staggered.spawn(async move { send(&http, &base, &copy, index, proxy).await });
        index += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut answers = Vec::new();
    while let Some(answer) = staggered.join_next().await {
        answers.push(answer.expect("a replay task panicked"));
    }

    // After the delivery: one request at a time to every replica, twice, the second round
    // past any short-lived per-process state a replica might keep.
    for round in 0..2 {
        for proxy in 0..rig.proxies.len() {
            for kind in [0, 4, 8, 15, 20, 21, 22, 23, 24, 25, 26, 27, 28] {
                let copy = encode_copy(kind, index, &original);
                answers.push(send(&http, rig.proxy(proxy), &copy, index, proxy).await);
                index += 1;
            }
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    answers.sort_by_key(|a| a.copy);
    let problems = one_delivery_violations(&rig, &answers, &payment, payer_before).await;
    assert_no_violations(&problems, &answers, &rig);
}
