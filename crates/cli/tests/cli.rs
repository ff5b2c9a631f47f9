//! The `tollgate` binary as a user runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

mod support;

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

#[test]
fn help_lists_the_roles() {
    let out = tollgate().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for role in ["demo", "facilitator", "proxy", "pay", "devnet"] {
        assert!(
            text.contains(role),
            "--help does not mention {role}:\n{text}"
        );
    }
}

#[test]
fn facilitator_config_errors_name_the_key_and_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let example = tollgate()
        .args(["facilitator", "--print-config-example"])
        .output()
        .unwrap();
    assert!(example.status.success());
    let text = String::from_utf8(example.stdout).unwrap();
    let bad = text.replace("request_timeout_secs", "request_timout_secs");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = tollgate()
        .args(["facilitator", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("request_timout_secs"), "{err}");

    let out = tollgate().arg("facilitator").output().unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn facilitator_serves_supported_on_a_real_chain() {
    let chain = tollgate_testkit::TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("f.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n",
            dir.path().join("l.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let mut child = tollgate()
        .args(["facilitator", "--config"])
        .arg(&config)
        .env("TOLLGATE_TEST_SIGNER", tollgate_testkit::DEV_KEYS[0])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("facilitator exited before listening");
        }
        assert!(
            !line.contains(tollgate_testkit::DEV_KEYS[0]),
            "key leaked: {line}"
        );
        if let Some(rest) = line
            .trim()
            .strip_prefix("tollgate facilitator listening on http://")
        {
            break rest.to_owned();
        }
    };
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /supported HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(&chain.caip2()), "{response}");
}

#[test]
fn demo_runs_end_to_end_and_exits_zero() {
    let out = tollgate().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("5 calls paid (0.046 USDC) and settled on chain, 3 refused"),
        "{text}"
    );
    assert!(text.contains("(free: no payment asked)"), "{text}");
    // Five exact payments and the metered one, all confirmed by the facilitator.
    assert!(text.contains("confirmed  6"), "{text}");
    assert!(text.contains("exceeds the per-request maximum"), "{text}");
    assert!(text.contains("would exceed the total budget"), "{text}");

    // The metered (`upto`) step: an explicit Permit2 approval, a maximum authorised, less
    // charged, and exactly the charge moved between the two USDT balances.
    assert!(
        text.contains("agent approves Permit2 for its USDT (one-time, explicit) → tx 0x"),
        "{text}"
    );
    let metered = text
        .lines()
        .find(|l| l.contains("GET /generate?tokens=") && l.contains("authorised up to"))
        .unwrap_or_else(|| panic!("no metered call in:\n{text}"));
    let amount_after = |line: &str, marker: &str| -> i64 {
        let at = line
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {line}"));
        micro_usd(line[at + marker.len()..].split_whitespace().next().unwrap())
    };
    let maximum = amount_after(metered, "authorised up to ");
    let charged = amount_after(metered, "handler charged ");
    assert!(metered.ends_with("→ 200"), "{metered}");
    assert!(charged > 0 && charged < maximum, "{metered}");
    let tx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("transaction 0x"))
        .unwrap_or_else(|| panic!("no metered transaction in:\n{text}"));
    assert_eq!(tx.len(), 64, "{tx}");
    // The USDT balances printed under the metered call: "agent  1000 USDT → 999.9815 USDT".
    let moved = |who: &str| -> i64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(who) && l.contains("USDT →"))
            .unwrap_or_else(|| panic!("no USDT balance of {who} in:\n{text}"));
        let amounts: Vec<i64> = line
            .split_whitespace()
            .filter(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .map(micro_usd)
            .collect();
        assert_eq!(amounts.len(), 2, "{line}");
        amounts[1] - amounts[0]
    };
    assert_eq!(moved("agent"), -charged, "{text}");
    assert_eq!(moved("seller"), charged, "{text}");
    assert!(
        text.contains("0.0185 USDT charged (authorised 0.05 USDT)"),
        "the spend ledger records the charge and the maximum:\n{text}"
    );
    assert!(
        text.contains("1 metered call: 0.05 USDT authorised, 0.0185 USDT charged and settled"),
        "{text}"
    );
    // The Solana step: three SPL Token payments, each fee (two signatures and a priority
    // fee of one micro-lamport per unit of 20,000 compute units, rounded up) sponsored by the
    // facilitator and nothing else taken from it.
    assert!(
        text.contains(
            "3 calls paid on Solana (0.006 USDC) with SPL Token transfers; the facilitator paid \
             30003 lamports of fees and moved nothing else."
        ),
        "{text}"
    );
    assert!(
        text.contains("agent 1000 USDC → 999.994 USDC  seller 1000 USDC → 1000.006 USDC"),
        "{text}"
    );
    // The channel step: 100 calls, one deposit, then vouchers; one claim and one sweep; the
    // rest of the deposit refunded.
    assert!(
        text.contains(
            "100 calls through one channel: 0.15 USDC deposited, 0.1 USDC charged, 4 transactions on chain"
        ),
        "{text}"
    );
    assert!(
        text.contains("agent asks for a refund → 0.05 USDC back"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("voucher, no transaction"))
            .count(),
        4,
        "{text}"
    );
}

/// A 6-decimal amount as the demo prints it (`999.9815`) in atomic units, exactly.
fn micro_usd(text: &str) -> i64 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(fraction.len() <= 6, "more than 6 decimals: {text}");
    let whole: i64 = whole
        .parse()
        .unwrap_or_else(|_| panic!("not an amount: {text}"));
    let fraction: i64 = format!("{fraction:0<6}").parse().unwrap();
    whole * 1_000_000 + fraction
}

#[test]
fn bench_runs_every_scenario_on_both_chains() {
    // A smoke run with tiny counts: the figures are for humans, the test checks it works, on
    // the default chain (the devnet) and on anvil.
    for chain in ["devnet", "anvil"] {
        bench_runs_every_scenario_on(chain);
    }
}

fn bench_runs_every_scenario_on(chain: &str) {
    let out = tollgate()
        .args([
            "bench",
            "--chain",
            chain,
            "--requests",
            "40",
            "--payments",
            "4",
            "--concurrency",
            "4",
            "--settle-payments",
            "10",
            "--batch-sizes",
            "5",
            "--identity-rows",
            "2000",
            "--discovery-resources",
            "2000",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("tollgate bench: {chain} at ")),
        "{text}"
    );
    for scenario in [
        "bare axum route",
        "402 challenge",
        "POST /verify",
        "POST /settle",
        "paid request end to end",
        "settlement cost",
        "identity: ledger of 2000 rows",
        "GET /reputation/{address}",
        "POST /assess",
        "paid request, no identity gate",
        "identity gate on a paid request: gated/ungated",
        "discovery: catalogue of 2000 resources",
        "Permit2 (a token without EIP-3009",
        "POST /settle exact, Permit2 (USDT)",
        "POST /settle upto, Permit2 (USDT, half the maximum)",
        "Permit2 exact /settle = ",
        "list: payTo filter",
        "search: rare word",
        // The verification section's limit: the node's dry runs and a bare exchange of the
        // same bodies, measured in the run (every dry run checked to have succeeded).
        "node eth_calls of 32 dry runs (direct)",
        "bare axum route (same bodies) POST /verify",
        "no facilitator that dry-runs verifies more than",
    ] {
        assert!(text.contains(scenario), "missing {scenario}: {text}");
    }
    // The settlement-cost rows: payments, transactions, tx/payment, batch min/avg/max and
    // gas/payment, from the receipts (gas is deterministic, unlike the timings).
    let single = settle_cost_row(&text, "single (1 tx per payment)");
    let batched = settle_cost_row(&text, "Multicall3 batch of 5");
    assert_eq!((single.payments, single.txs), (10, 10), "{text}");
    assert_eq!(single.batches, "1/1.0/1", "{text}");
    assert_eq!((batched.payments, batched.txs), (10, 2), "{text}");
    assert_eq!(batched.batches, "5/5.0/5", "{text}");
    assert!((batched.tx_per_payment - 0.2).abs() < 1e-9, "{text}");
    // A transfer costs tens of thousands of gas; sharing the transaction's base cost makes
    // each batched payment cheaper.
    assert!(single.gas_per_payment > 30_000.0, "{text}");
    assert!(batched.gas_per_payment < single.gas_per_payment, "{text}");
    assert!(text.contains("less gas per payment"), "{text}");
}

struct SettleCostRow {
    payments: usize,
    txs: usize,
    tx_per_payment: f64,
    batches: String,
    gas_per_payment: f64,
}

fn settle_cost_row(text: &str, label: &str) -> SettleCostRow {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?}: {text}"));
    let fields: Vec<&str> = line[label.len()..].split_whitespace().collect();
    let parse = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("field {i} of {line:?}"))
    };
    SettleCostRow {
        payments: parse(0) as usize,
        txs: parse(1) as usize,
        tx_per_payment: parse(2),
        batches: fields.get(3).map(|f| f.to_string()).unwrap_or_default(),
        gas_per_payment: parse(4),
    }
}

#[test]
fn init_writes_a_valid_starter_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let init = || {
        tollgate()
            .args([
                "init",
                "--network",
                "eip155:84532",
                "--pay-to",
                "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "--output",
            ])
            .arg(&path)
            .output()
            .unwrap()
    };
    assert!(init().status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("network = \"eip155:84532\""), "{text}");
    let again = init();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // The starter runs as is, and stops loudly when its facilitator is not there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = tollgate()
        .args(["proxy", "--config"])
        .arg(&path)
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .env("TOLLGATE_UPSTREAM", format!("http://127.0.0.1:{dead}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("facilitator http://127.0.0.1:4020 is not usable"),
        "{err}"
    );

    // A network without a known stablecoin cannot take the starter's dollar prices.
    let out = tollgate()
        .args([
            "init",
            "--network",
            "eip155:31337",
            "--pay-to",
            "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no known stablecoin on eip155:31337"), "{err}");
    for flag in [
        "--asset",
        "--decimals",
        "--eip712-name",
        "--eip712-version",
        "--devnet-json",
        "--from-devnet",
    ] {
        assert!(err.contains(flag), "the error does not name {flag}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_takes_the_asset_from_flags_or_a_running_devnet() {
    const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    let run = |args: Vec<String>| {
        let out = tollgate().arg("init").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let owned = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let token = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

    // Every fact by flag: routes in atomic units of that token.
    let (ok, text, err) = tokio::task::spawn_blocking(move || {
        run(owned(&[
            "--network",
            "eip155:31337",
            "--pay-to",
            PAYEE,
            "--asset",
            token,
            "--decimals",
            "6",
            "--eip712-name",
            "USD Coin",
            "--eip712-version",
            "2",
            "--symbol",
            "USDC",
        ]))
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(text.contains("amount = \"1000\""), "{text}");
    assert!(text.contains(&format!("asset = \"{token}\"")), "{text}");
    assert!(text.contains("# 0.001 USDC"), "{text}");
    let config = tollgate::gateway::GatewayConfig::parse(&text).unwrap();
    config.validate().unwrap();

    // A fact missing: the error names the flags still needed.
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(owned(&[
            "--network",
            "eip155:31337",
            "--pay-to",
            PAYEE,
            "--asset",
            token,
            "--decimals",
            "6",
        ]))
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("--eip712-name") && err.contains("--eip712-version"),
        "{err}"
    );
    assert!(!err.contains("--decimals"), "{err}");

    // A known token on its network needs nothing else.
    let (ok, text, err) = tokio::task::spawn_blocking(move || {
        run(owned(&[
            "--network",
            "eip155:84532",
            "--pay-to",
            PAYEE,
            "--asset",
            "0x036cbd53842c5426634e7929541ec2318f3dcf7e",
        ]))
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(text.contains("name = \"USDC\", version = \"2\""), "{text}");

    // Flags that contradict the known-asset table are refused, naming the flag.
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(owned(&[
            "--network",
            "eip155:84532",
            "--pay-to",
            PAYEE,
            "--asset",
            "0x036cbd53842c5426634e7929541ec2318f3dcf7e",
            "--eip712-name",
            "USD Coin",
        ]))
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("--eip712-name \"USD Coin\" contradicts"),
        "{err}"
    );

    // --from-devnet: the chain id and the token's facts read from a running devnet.
    let devnet = tollgate_devnet::Devnet::builder()
        .chain_id(1337)
        .port(0)
        .start()
        .await
        .unwrap();
    let url = devnet.url();
    let (ok, text, err) = tokio::task::spawn_blocking(move || {
        run(owned(&["--from-devnet", &url, "--pay-to", PAYEE]))
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(text.contains("network = \"eip155:1337\""), "{text}");
    assert!(
        text.contains(&format!("asset = \"{}\"", devnet.token().to_checksum(None))),
        "{text}"
    );
    assert!(
        text.contains("extra = { name = \"USD Coin\", version = \"2\", decimals = 6 }"),
        "{text}"
    );
    drop(devnet);

    // A node that is not there: the error names the URL.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(owned(&["--from-devnet", &dead, "--pay-to", PAYEE]))
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("--from-devnet http://127.0.0.1:"), "{err}");
}

#[test]
fn version_and_every_subcommand_help_show_an_example() {
    let out = tollgate().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(concat!("tollgate ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains("Example") && text.contains("tollgate demo"),
        "{text}"
    );
    let top = String::from_utf8(tollgate().arg("--help").output().unwrap().stdout).unwrap();
    assert!(top.contains("Examples:"), "{top}");
    for role in [
        "demo",
        "devnet",
        "facilitator",
        "pay",
        "proxy",
        "init",
        "bench",
    ] {
        let out = tollgate().args([role, "--help"]).output().unwrap();
        assert!(out.status.success(), "{role} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let example = text
            .split_once("Example")
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("{role} --help shows no example:\n{text}"));
        assert!(
            example.contains(&format!("tollgate {role}")),
            "{role}'s example does not run it:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_charges_priced_routes_and_passes_the_rest() {
    let chain = tollgate_testkit::TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fconfig = dir.path().join("f.toml");
    std::fs::write(
        &fconfig,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n",
            dir.path().join("l.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let (_facilitator, facilitator_url) = support::start_facilitator(
        &fconfig,
        &[("TOLLGATE_TEST_SIGNER", tollgate_testkit::DEV_KEYS[0])],
    );
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/report", axum::routing::get(|| async { "the report" }))
        .route("/status", axum::routing::get(|| async { "up" }));
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });
    let gconfig = dir.path().join("g.toml");
    std::fs::write(
        &gconfig,
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream_url}\"\n[facilitator]\nurl = \"{facilitator_url}\"\n[payment]\nnetwork = \"{}\"\npay_to = \"{}\"\n[[routes]]\nroute = \"GET /report\"\namount = \"5000\"\nasset = \"{}\"\nextra = {{ name = \"USD Coin\", version = \"2\" }}\n",
            chain.caip2(),
            tollgate_testkit::TestChain::address(9),
            chain.usdc
        ),
    )
    .unwrap();
    let mut child = support::Running::spawn(tollgate().args(["proxy", "--config"]).arg(&gconfig));
    let addr = child.wait_for_line("tollgate proxy listening on ");
    let addr = addr.split(',').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let paid = http.get(format!("{addr}/report")).send().await.unwrap();
    assert_eq!(paid.status().as_u16(), 402);
    assert!(paid.headers().contains_key("payment-required"));
    let free = http.get(format!("{addr}/status")).send().await.unwrap();
    assert_eq!(free.status().as_u16(), 200);
    assert_eq!(free.text().await.unwrap(), "up");
    child.kill_9();
}

#[test]
fn devnet_prints_its_facts_serves_rpc_and_stops_on_sigterm() {
    let mut child = tollgate()
        .args(["devnet", "--port", "0", "--chain-id", "1337"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let facts: serde_json::Value = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("devnet exited before printing its facts: {text}");
        }
        text.push_str(&line);
        if line.trim_end() == "}" {
            break serde_json::from_str(&text).unwrap();
        }
    };
    assert_eq!(facts["chainId"], 1337);
    assert_eq!(facts["network"], "eip155:1337");
    assert_eq!(facts["accounts"].as_array().unwrap().len(), 10);
    assert_eq!(
        facts["accounts"][0]["privateKey"],
        tollgate_testkit::DEV_KEYS[0]
    );
    assert!(facts["token"]["address"].is_string());
    assert_eq!(facts["usdt"]["symbol"], "USDT");
    assert_eq!(facts["permitToken"]["version"], "1");
    assert_eq!(
        facts["permit2"],
        tollgate_testkit::PERMIT2.to_checksum(None).as_str()
    );
    assert_eq!(
        facts["uptoPermit2Proxy"],
        tollgate_testkit::UPTO_PERMIT2_PROXY
            .to_checksum(None)
            .as_str()
    );
    let url = facts["rpcUrl"].as_str().unwrap();
    let addr = url
        .strip_prefix("http://127.0.0.1:")
        .map(|p| format!("127.0.0.1:{p}"))
        .unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.contains(r#""result":"0x539""#), "{response}");
    // SIGTERM: a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

/// `./scripts/test` on a machine without Chromium and PostgreSQL, as a user who can neither
/// install them (not root) nor use passwordless sudo, in a clean environment: it stops within
/// seconds, before compiling anything, naming the command to run. Chromium and PostgreSQL are
/// looked for under an empty root (`TOLLGATE_DEPS_SYSROOT`), so the check runs on machines
/// that have them.
#[test]
fn scripts_test_stops_fast_naming_the_install_command_when_it_cannot_install() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy/scripts");
    let empty_root = scratch.path().join("empty-root");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::create_dir_all(&empty_root).unwrap();
    std::fs::copy(repo.join("scripts/test"), copy.join("test")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        for dir in [
            scratch.path(),
            &scratch.path().join("copy"),
            &copy,
            &empty_root,
        ] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut command = if is_root {
        // As root the script would install; run it as `nobody`, who cannot.
        if !std::path::Path::new("/usr/bin/setpriv").exists() {
            eprintln!("skipped: running as root without setpriv to drop to a user without sudo");
            return;
        }
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        c.arg(copy.join("test"));
        c
    } else {
        let can_sudo = Command::new("sudo")
            .args(["-n", "true"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if can_sudo {
            eprintln!("skipped: this user has passwordless sudo, so the script would install");
            return;
        }
        Command::new(copy.join("test"))
    };
    let started = std::time::Instant::now();
    let out = command
        .arg("--deps-only")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TOLLGATE_DEPS_SYSROOT", &empty_root)
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("apt-get install -y --no-install-recommends chromium postgresql"),
        "{err}"
    );
    assert!(err.contains("neither install them"), "{err}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}
