//! `tollgate discover` as a user runs it: against a real facilitator whose catalogue holds a
//! resource that settled a payment on anvil (table and JSON, list and search, filters), and
//! against facilitators that are down, answer errors, answer garbage or answer too much — each
//! with its documented exit code and a message that says what went wrong.

mod support;

use std::process::{Command, Output};

use alloy::primitives::U256;
use axum::routing::get;
use serde_json::{json, Value};
use tollgate::server::bazaar::Bazaar;
use tollgate::server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::{TestChain, DEV_KEYS};

/// What the paid route returns.
const BODY: &str = "foggy, 14 degrees";

async fn discover(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("discover")
        .args(args)
        .env_remove("TOLLGATE_FACILITATOR")
        .stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A resource catalogued by a real facilitator: `tollgate facilitator` on anvil, a paywalled
/// route describing itself with bazaar metadata, paid once by `tollgate pay`.
struct Catalogued {
    _chain: TestChain,
    _facilitator: support::Running,
    facilitator_url: String,
    resource: String,
    network: String,
    _dir: tempfile::TempDir,
}

async fn catalogued() -> Catalogued {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("facilitator.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n",
            dir.path().join("ledger.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let (facilitator, addr) =
        support::start_facilitator(&config, &[("TOLLGATE_TEST_SIGNER", DEV_KEYS[0])]);
    let facilitator_url = if addr.starts_with("http") {
        addr
    } else {
        format!("http://{addr}")
    };

    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(2_500u64),
        &chain.usdc.to_string(),
        chain.caip2().parse().unwrap(),
        &TestChain::address(9).to_string(),
        extra,
    );
    let price = RoutePrice::new(option)
        .description("Hourly weather forecasts for any city")
        .discoverable(
            Bazaar::http_get()
                .required_query_param("city", "Paris")
                .output_example(json!({ "city": "Paris", "weather": "foggy" })),
        )
        .unwrap()
        .service("Example Weather", &["weather", "forecast"], None)
        .unwrap();
    let layer = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url))
        .route("GET /weather", price)
        .unwrap();
    let app = axum::Router::new()
        .route("/weather", get(|| async { BODY }))
        .layer(layer);
    let seller = serve(app).await;
    let resource = format!("{seller}/weather");

    // One payment, by the Tollgate client as a user runs it.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("pay")
        .arg(format!("{resource}?city=Paris"))
        .arg("--asset")
        .arg(format!("{}/{}/USDC/6", chain.caip2(), chain.usdc))
        .arg("--max")
        .arg("0.01 USDC")
        .arg("--ledger")
        .arg(dir.path().join("spend.db"))
        .env("TOLLGATE_PAY_KEY", DEV_KEYS[2])
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(BODY), "{stdout}");

    Catalogued {
        network: chain.caip2(),
        _chain: chain,
        _facilitator: facilitator,
        facilitator_url,
        resource,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_and_searches_a_catalogued_resource() {
    let c = catalogued().await;
    let url = c.facilitator_url.as_str();

    // JSON (stdout is a pipe here, so JSON is the default; --json says it explicitly).
    for args in [
        vec!["--facilitator", url],
        vec!["--facilitator", url, "--json"],
    ] {
        let out = discover(&args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        let page: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(page["x402Version"], 2);
        assert_eq!(page["pagination"]["total"], 1, "{page}");
        let item = &page["items"][0];
        assert_eq!(item["resource"], c.resource.as_str(), "{page}");
        assert_eq!(item["type"], "http");
        assert_eq!(item["accepts"][0]["amount"], "2500");
        assert_eq!(item["accepts"][0]["network"], c.network.as_str());
        assert_eq!(
            item["extensions"]["bazaar"]["info"]["input"]["method"],
            "GET"
        );
        assert!(
            item["lastUpdated"].as_str().unwrap().ends_with('Z'),
            "{item}"
        );
    }

    // The table: resource, price (the devnet token is not in the asset table: atomic units
    // and the token), network, scheme, input shape.
    let out = discover(&["--facilitator", url, "--table"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("RESOURCE"), "{stdout}");
    for column in ["PRICE", "NETWORK", "SCHEME", "INPUT"] {
        assert!(lines[0].contains(column), "{stdout}");
    }
    let row = lines
        .iter()
        .find(|l| l.starts_with(&c.resource))
        .unwrap_or_else(|| panic!("no row for {}: {stdout}", c.resource));
    assert!(row.contains("2500 of 0x"), "{row}");
    assert!(row.contains(&c.network), "{row}");
    assert!(row.contains("exact"), "{row}");
    assert!(row.contains("GET ?city"), "{row}");
    assert!(stdout.contains("1-1 of 1"), "{stdout}");

    // Search by a word of the description; a word of nothing finds nothing (exit 0).
    let out = discover(&["forecasts", "--facilitator", url]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let found: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        found["resources"][0]["resource"],
        c.resource.as_str(),
        "{found}"
    );
    let out = discover(&["zzqxj", "--facilitator", url, "--table"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 shown") || stdout.contains("0 matching"),
        "{stdout}"
    );

    // Filters reach the facilitator: another network or MCP tools only list nothing.
    for args in [
        vec!["--facilitator", url, "--network", "eip155:8453"],
        vec!["--facilitator", url, "--type", "mcp"],
    ] {
        let out = discover(&args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        let page: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(page["pagination"]["total"], 0, "{args:?}: {page}");
        assert_eq!(page["items"], json!([]));
    }
    let out = discover(&[
        "--facilitator",
        url,
        "--type",
        "http",
        "--network",
        &c.network,
    ])
    .await;
    let page: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(page["pagination"]["total"], 1, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_reports_a_facilitator_that_is_down() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = discover(&["--facilitator", &url, "--table"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("cannot reach the facilitator"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    // With --json the failure is JSON on stdout too.
    let out = discover(&["weather", "--facilitator", &url, "--json"]).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["exitCode"], 3);
    assert!(v["error"].as_str().unwrap().contains("cannot reach"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_refuses_bad_answers_with_their_exit_codes() {
    let big = "x".repeat(9 << 20);
    let big_error = big.clone();
    let app = axum::Router::new()
        .route(
            "/bad-shape/discovery/resources",
            get(|| async {
                axum::Json(
                    json!({ "x402Version": 2, "items": [{ "resource": "https://a.example",
                    "type": "http", "x402Version": 2, "accepts": [],
                    "lastUpdated": "not a date" }],
                    "pagination": { "limit": 20, "offset": 0, "total": 1 } }),
                )
            }),
        )
        .route(
            "/not-json/discovery/resources",
            get(|| async { "<html>hello</html>" }),
        )
        .route(
            "/huge/discovery/resources",
            get(move || {
                let big = big.clone();
                async move { big }
            }),
        )
        .route(
            "/huge-error/discovery/resources",
            get(move || {
                let big = big_error.clone();
                async move { (axum::http::StatusCode::SERVICE_UNAVAILABLE, big) }
            }),
        )
        .route(
            "/bad-request/discovery/search",
            get(|| async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({ "error": "invalid limit" })),
                )
            }),
        );
    let base = serve(app).await;

    // A malformed item: exit 5, and the message names the JSON path that broke.
    let out = discover(&["--facilitator", &format!("{base}/bad-shape")]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(stderr.contains("malformed discovery response"), "{stderr}");
    assert!(stderr.contains("items[0].lastUpdated"), "{stderr}");
    // Not JSON at all.
    let out = discover(&["--facilitator", &format!("{base}/not-json"), "--table"]).await;
    assert_eq!(out.status.code(), Some(5), "{:?}", text(&out));
    // Too large: refused before parsing.
    let out = discover(&["--facilitator", &format!("{base}/huge")]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("larger than"), "{stderr}");
    // An error answer of any size is still an HTTP error (exit 4), not "too large".
    let out = discover(&["--facilitator", &format!("{base}/huge-error")]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(
        stderr.len() < 2_000,
        "the error body is cut: {} bytes",
        stderr.len()
    );
    // No discovery there (404) and a refused query (400, its body in the message): exit 4.
    let out = discover(&["--facilitator", &base]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    let out = discover(&["words", "--facilitator", &format!("{base}/bad-request")]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("400") && stderr.contains("invalid limit"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_checks_its_options_before_asking() {
    // Nothing listens here, so reaching the network would be exit 3, not 1.
    let url = "http://127.0.0.1:9";
    for (args, needle) in [
        (
            vec!["--facilitator", url, "--network", "nowhere"],
            "--network",
        ),
        (vec!["--facilitator", url, "--scheme", "Exact"], "--scheme"),
        (
            vec!["--facilitator", "ftp://example.com"],
            "invalid facilitator URL",
        ),
    ] {
        let out = discover(&args).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    // Out-of-range --limit and a missing --facilitator are command-line errors (clap: 2).
    for args in [
        vec!["--facilitator", url, "--limit", "0"],
        vec!["--facilitator", url, "--limit", "101"],
        vec![],
    ] {
        let out = discover(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", text(&out));
    }
    // --help documents the exit codes.
    let out = discover(&["--help"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("Exit codes:")
            && stdout.contains("3  the facilitator could not be reached"),
        "{stdout}"
    );
}
