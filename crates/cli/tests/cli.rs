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
    assert!(text.contains("confirmed  5"), "{text}");
    assert!(text.contains("exceeds the per-request maximum"), "{text}");
    assert!(text.contains("would exceed the total budget"), "{text}");
}

#[test]
fn bench_runs_every_scenario() {
    // A smoke run with tiny counts: the figures are for humans, the test checks it works.
    let out = tollgate()
        .args([
            "bench",
            "--requests",
            "40",
            "--payments",
            "4",
            "--concurrency",
            "4",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in [
        "bare axum route",
        "402 challenge",
        "POST /verify",
        "POST /settle",
        "paid request end to end",
    ] {
        assert!(text.contains(scenario), "missing {scenario}: {text}");
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].price"));
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
