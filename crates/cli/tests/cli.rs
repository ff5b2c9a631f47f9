//! The `tollgate` binary as a user runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

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
        text.contains("5 calls paid and settled on chain, 2 refused"),
        "{text}"
    );
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
