//! Sign-in-with-x through `tollgate proxy` (`[siwx]`) with `tollgate pay`, all real processes
//! on anvil: the first request to a priced route is paid; the same wallet's next requests are
//! signed in (nothing paid, the upstream still called once each); an `auth_only` route lets any
//! wallet in that signs; a wallet that never paid pays.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{run_output, tollgate, Running};
use tollgate_testkit::{TestChain, DEV_KEYS};

const PRICE: u64 = 5_000;
const PAYEE: usize = 9;

fn pay(chain: &TestChain, ledger: &std::path::Path, payer: usize, url: &str) -> (bool, String) {
    let mut command = tollgate();
    command
        .arg("pay")
        .args([
            "--asset",
            &format!("{}/{}/USDC/6", chain.caip2(), chain.usdc),
        ])
        .arg("--ledger")
        .arg(ledger)
        .args(["--yes", url])
        .env("TOLLGATE_PAY_KEY", DEV_KEYS[payer])
        .env_remove("TOLLGATE_RPC_URL");
    let out = run_output(command);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_that_paid_signs_in_through_the_gateway_and_auth_only_routes_ask_no_payment() {
    let chain = TestChain::start().await.unwrap();
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
    let (_facilitator, facilitator_url) =
        support::start_facilitator(&fconfig, &[("TOLLGATE_TEST_SIGNER", DEV_KEYS[0])]);

    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let counted = calls.clone();
    let app = axum::Router::new()
        .route(
            "/data",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "paid data" }
            }),
        )
        .route("/members", axum::routing::get(|| async { "members only" }));
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    // The origin names the gateway's own address, so it listens on a port chosen now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    let gconfig = dir.path().join("g.toml");
    std::fs::write(
        &gconfig,
        format!(
            "listen = \"127.0.0.1:{port}\"\nupstream = \"{upstream_url}\"\n\
             [facilitator]\nurl = \"{facilitator_url}\"\n\
             [payment]\nnetwork = \"{network}\"\npay_to = \"{payee}\"\n\
             [siwx]\norigin = \"{origin}\"\nsqlite = \"{siwx}\"\n\
             [[routes]]\nroute = \"GET /data\"\namount = \"{PRICE}\"\nasset = \"{usdc}\"\n\
             extra = {{ name = \"USD Coin\", version = \"2\" }}\n\
             [[routes]]\nroute = \"GET /members\"\nauth_only = true\n",
            network = chain.caip2(),
            payee = TestChain::address(PAYEE),
            siwx = dir.path().join("siwx.db").display(),
            usdc = chain.usdc,
        ),
    )
    .unwrap();
    let mut proxy = Running::spawn(tollgate().args(["proxy", "--config"]).arg(&gconfig));
    proxy.wait_for_line("tollgate proxy listening on ");

    let ledger = dir.path().join("spend.db");
    let balance = || chain.usdc_balance(TestChain::address(PAYEE));
    let before = balance().await.unwrap();
    let data = format!("{origin}/data");
    let (ok, out) = pay(&chain, &ledger, 1, &data);
    assert!(
        ok && out.contains("paid data") && out.contains("paid 0.005 USDC"),
        "{out}"
    );
    assert_eq!(
        balance().await.unwrap(),
        before + alloy::primitives::U256::from(PRICE)
    );
    // The same wallet again, in new processes: signed in, nothing paid.
    for _ in 0..2 {
        let (ok, out) = pay(&chain, &ledger, 1, &data);
        assert!(ok && out.contains("paid data"), "{out}");
        assert!(out.contains("signed in as"), "{out}");
        assert!(!out.contains("paid 0.005"), "{out}");
    }
    assert_eq!(
        balance().await.unwrap(),
        before + alloy::primitives::U256::from(PRICE)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the upstream served each request once"
    );
    // Auth-only: any wallet that signs in, never a payment.
    let (ok, out) = pay(
        &chain,
        &dir.path().join("other.db"),
        2,
        &format!("{origin}/members"),
    );
    assert!(
        ok && out.contains("members only") && out.contains("signed in as"),
        "{out}"
    );
    // A wallet that never paid for /data pays.
    let (ok, out) = pay(&chain, &dir.path().join("other.db"), 2, &data);
    assert!(
        ok && out.contains("paid 0.005 USDC") && !out.contains("signed in"),
        "{out}"
    );
    assert_eq!(
        balance().await.unwrap(),
        before + alloy::primitives::U256::from(2 * PRICE)
    );
    proxy.kill_9();
}
