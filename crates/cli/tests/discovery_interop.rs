//! Bazaar discovery interoperability: the official TypeScript discovery client (`withBazaar`
//! from `@x402/extensions` 2.27.0, `tests/interop/discovery.mjs`) reads a Tollgate
//! facilitator's `GET /discovery/resources` and `GET /discovery/search`.
//!
//! The catalogue is filled the real way: `tollgate facilitator` on anvil settles two payments
//! for paywalled routes that describe themselves with bazaar metadata — one paid by the
//! official client (`client.mjs`, which echoes the 402's extensions as the SDK does), one by
//! `tollgate pay` (Tollgate's client, which echoes the bazaar extension too). The script checks
//! every answer against the SDK's published types and runs the SDK's own bazaar validator on
//! the echoed extension; this test asserts what it saw.
//!
//! Needs Node.js and `npm ci` in `tests/interop` (`./scripts/test` and `.ci/run` do it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use alloy::primitives::U256;
use axum::routing::{get, post};
use serde_json::{json, Value};
use tollgate::server::bazaar::{Bazaar, BodyType};
use tollgate::server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::{TestChain, DEV_KEYS};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

fn check_node_project() {
    assert!(
        interop_dir()
            .join("node_modules/@x402/extensions/package.json")
            .is_file(),
        "the official SDK is not installed: run `npm ci` in tests/interop (./scripts/test does)"
    );
}

/// Runs `node <script>` in tests/interop with `env`; returns its exit status and stdout, with
/// stderr in the panic message when stdout is not one JSON line.
async fn node_json(script: &str, env: &[(&str, String)]) -> (Option<i32>, Value, String) {
    let mut command = Command::new("node");
    command
        .current_dir(interop_dir())
        .arg(script)
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let raw = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().last().unwrap_or_default();
    let value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{script} did not print JSON ({e}):\n{raw}"));
    (out.status.code(), value, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_bazaar_client_reads_tollgate_discovery() {
    check_node_project();
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
    let (_facilitator, facilitator_url) =
        support::start_facilitator(&config, &[("TOLLGATE_TEST_SIGNER", DEV_KEYS[0])]);

    // The seller: two discoverable routes, a GET with a query parameter and a POST with a
    // JSON body, behind one paywall settling through the Tollgate facilitator.
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(10_000u64),
        &chain.usdc.to_string(),
        chain.caip2().parse().unwrap(),
        &TestChain::address(9).to_string(),
        extra,
    );
    let weather = RoutePrice::new(option.clone())
        .description("Hourly weather forecasts for any city")
        .discoverable(
            Bazaar::http_get()
                .required_query_param("city", "Paris")
                .output_example(json!({ "city": "Paris", "weather": "foggy" })),
        )
        .unwrap()
        .service("Example Weather", &["weather", "forecast"], None)
        .unwrap();
    let translate = RoutePrice::new(option)
        .description("Translates short texts between languages")
        .discoverable(
            Bazaar::http_post(BodyType::Json)
                .body_example(json!({ "text": "bonjour", "to": "en" }))
                .output_example(json!({ "text": "hello" })),
        )
        .unwrap();
    let layer = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url))
        .route("GET /weather", weather)
        .unwrap()
        .route("POST /translate", translate)
        .unwrap();
    let app = axum::Router::new()
        .route("/weather", get(|| async { "foggy" }))
        .route("/translate", post(|| async { "hello" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seller = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let weather_url = format!("{seller}/weather");

    // Paid by the official client.
    let (code, paid, raw) = node_json(
        "client.mjs",
        &[
            ("X402_URL", format!("{weather_url}?city=Paris")),
            ("X402_RPC_URL", chain.endpoint()),
            ("X402_CHAIN_ID", chain.chain_id().to_string()),
            ("X402_PAYER_KEY", DEV_KEYS[3].to_owned()),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{raw}");
    assert_eq!(paid["status"], 200, "{raw}");
    assert!(
        paid["paymentPayload"]["extensions"]["bazaar"].is_object(),
        "the official client echoes the bazaar extension: {raw}"
    );

    // Paid by Tollgate's client.
    let mut pay = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    pay.args(["pay", "-X", "POST", "-d", r#"{"text":"bonjour","to":"en"}"#])
        .arg(format!("{seller}/translate"))
        .arg("--asset")
        .arg(format!("{}/{}/USDC/6", chain.caip2(), chain.usdc))
        .args(["--max", "0.05 USDC", "--ledger"])
        .arg(dir.path().join("spend.db"))
        .env("TOLLGATE_PAY_KEY", DEV_KEYS[2])
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || pay.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The official discovery client reads the catalogue.
    let (code, seen, raw) = node_json(
        "discovery.mjs",
        &[
            ("X402_FACILITATOR_URL", facilitator_url.clone()),
            ("X402_EXPECT_RESOURCE", weather_url.clone()),
            ("X402_NETWORK", chain.caip2()),
            ("X402_SEARCH", "forecasts".to_owned()),
        ],
    )
    .await;
    assert_eq!(seen["problems"], json!([]), "{raw}");
    assert_eq!(code, Some(0), "{raw}");

    // Both resources, newest first, each as the SDK types them.
    assert_eq!(seen["list"]["total"], 2, "{raw}");
    let items = seen["list"]["items"].as_array().unwrap();
    let resources: Vec<&str> = items
        .iter()
        .map(|i| i["resource"].as_str().unwrap())
        .collect();
    assert!(resources.contains(&weather_url.as_str()), "{raw}");
    assert!(
        resources.contains(&format!("{seller}/translate").as_str()),
        "{raw}"
    );
    let weather = items
        .iter()
        .find(|i| i["resource"] == weather_url.as_str())
        .unwrap();
    assert_eq!(weather["type"], "http");
    assert_eq!(
        weather["description"],
        "Hourly weather forecasts for any city"
    );
    assert_eq!(weather["serviceName"], "Example Weather");
    assert_eq!(weather["tags"], json!(["weather", "forecast"]));
    assert_eq!(weather["accepts"][0]["amount"], "10000");
    assert_eq!(weather["accepts"][0]["network"], chain.caip2());
    assert_eq!(weather["bazaar"]["info"]["input"]["method"], "GET");
    assert_eq!(
        weather["bazaar"]["info"]["input"]["queryParams"]["city"],
        "Paris"
    );

    // Filters and pages: one item a page, the second page holds the other resource.
    assert_eq!(seen["filtered"]["pagination"]["limit"], 1, "{raw}");
    assert_eq!(seen["filtered"]["pagination"]["total"], 2, "{raw}");
    assert_eq!(seen["filtered"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(seen["page2"]["pagination"]["offset"], 1, "{raw}");
    let page2 = &seen["page2"]["items"][0]["resource"];
    assert!(page2.is_string(), "{raw}");
    assert_ne!(page2, &seen["filtered"]["items"][0]["resource"], "{raw}");

    // Search by a word of one description finds that one only; nonsense finds nothing.
    let found = seen["search"]["resources"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{raw}");
    assert_eq!(found[0]["resource"], weather_url.as_str());
    assert_eq!(seen["miss"]["count"], 0, "{raw}");

    // A limit outside 1-100 is a 400 the official client surfaces with its status.
    let bad = seen["badLimit"]["error"].as_str().unwrap_or_default();
    assert!(bad.contains("(400)"), "{raw}");
}
