//! `tollgate proxy` selling a route through `batch-settlement` payment channels, every part a
//! real process: anvil with the channel contracts at their canonical addresses (`TestChain`),
//! `tollgate facilitator` serving the scheme, `tollgate proxy` with a `[channels]` table and the
//! seller's receiver-authorizer key from the environment, in front of an upstream (an axum
//! server in the test counting its calls), and `tollgate pay` runs — separate processes
//! sharing one spend ledger, so the channel is reused across processes.
//!
//! - the gateway end to end: a deposit, vouchers, each request served once; the channel gauges
//!   of `[metrics]`; `tollgate pay --refund` answered without the upstream, the chain showing
//!   the charges claimed and the rest returned, and the receiver paid;
//! - `kill -9` of the proxy between serving and claiming: the restarted proxy, on the same
//!   SQLite file, claims exactly what was served;
//! - two proxies on one PostgreSQL: one channel paid alternately through both, each voucher
//!   charged once with the cumulative amount carried across instances, one voucher replayed
//!   to both at once reaching the upstream, delivered and charged once, and one claim moving
//!   the total.
//!
//! A failing test prints the tail of every process's log.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{json, Value};
use support::{spawn_until, Proc, Shown};
use tollgate::evm::batch_settlement::{abi::IBatchSettlement, BATCH_SETTLEMENT};
use tollgate::proto::{header, PaymentRequired, PaymentRequirements};
use tollgate_testkit::{Postgres, TestChain, DEV_KEYS};

/// The price of one request (0.001 USDC).
const PRICE: u128 = 1_000;
/// `tollgate pay --deposit-requests`: the deposit covers this many requests.
const DEPOSIT_REQUESTS: u128 = 20;
const DEPOSIT: u128 = DEPOSIT_REQUESTS * PRICE;
/// The gateway's scrape endpoint.
const METRICS: &str = "/_tollgate/metrics";
/// The paying wallet.
const PAYER: usize = 1;
/// The seller's receiver authorizer (its key reaches the proxy through the environment).
const SELLER_AUTHORIZER: usize = 5;
/// The facilitator's own receiver authorizer, announced in its `/supported` (the proxy's
/// offers name the seller's instead).
const FACILITATOR_AUTHORIZER: usize = 6;
/// The facilitator's transaction signer.
const FACILITATOR_SIGNER: usize = 8;
/// The services' log level (their logs are printed when a test fails): the claimer's rounds
/// are logged at `info`.
const LOG_FILTER: &str = "info";
/// How long a claim may take to reach the chain once due.
const CLAIM_WAIT: Duration = Duration::from_secs(60);

/// On a failing test, prints the last part of every `*.log` in the test's directory (each
/// process writes its standard error there).
struct LogsOnFailure(PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let start = text.floor_char_boundary(text.len().saturating_sub(8000));
            eprintln!(
                "===== {} =====\n{}",
                log.file_name().unwrap_or_default().to_string_lossy(),
                &text[start..]
            );
        }
    }
}

/// The API being sold: `GET /api` answers "paid data" and counts its calls.
struct Upstream {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/api",
            axum::routing::get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "paid data"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Where a proxy keeps its channels.
enum Store<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// When a proxy's background claimer claims.
struct Claims {
    interval_secs: u64,
    threshold: u128,
}

/// Never within a test: the claimer only claims when told to by a restart or a refund.
const NEVER: Claims = Claims {
    interval_secs: 3_600,
    threshold: 1_000_000_000_000,
};

/// Soon: within two seconds of the proxy's start.
const SOON: Claims = Claims {
    interval_secs: 2,
    threshold: 1_000_000_000_000,
};

/// One test's chain, facilitator, upstream and seller.
struct Rig {
    chain: TestChain,
    dir: tempfile::TempDir,
    _facilitator: Proc,
    facilitator_url: String,
    upstream: Upstream,
    /// The route's `payTo`: a fresh address, so its balance is exactly what was swept to it.
    receiver: Address,
}

impl Rig {
    async fn start() -> Self {
        let chain = TestChain::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("facilitator.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n\
                 [[chains.eip155]]\nnetwork = \"{network}\"\nrpc_urls = [\"{}\"]\n\
                 signer_key_env = \"TOLLGATE_TEST_SIGNER\"\n\
                 [[schemes]]\nscheme = \"batch-settlement\"\nnetworks = \"{network}\"\n\
                 receiver_authorizer = {{ key_env = \"TOLLGATE_TEST_AUTHORIZER\" }}\n",
                dir.path().join("facilitator-ledger.db").display(),
                chain.endpoint(),
                network = chain.caip2(),
            ),
        )
        .unwrap();
        let mut command = support::tollgate();
        command
            .args(["facilitator", "--config"])
            .arg(&config)
            .env("TOLLGATE_TEST_SIGNER", DEV_KEYS[FACILITATOR_SIGNER])
            .env("TOLLGATE_TEST_AUTHORIZER", DEV_KEYS[FACILITATOR_AUTHORIZER])
            .env("TOLLGATE_LOG", LOG_FILTER);
        let (facilitator, facilitator_url) = spawn_until(
            command,
            dir.path().join("facilitator.log"),
            "tollgate facilitator listening on ",
            true,
        );
        Self {
            chain,
            dir,
            _facilitator: facilitator,
            facilitator_url,
            upstream: Upstream::start().await,
            receiver: Address::random(),
        }
    }

    fn logs_on_failure(&self) -> LogsOnFailure {
        LogsOnFailure(self.dir.path().to_owned())
    }

    /// Starts `tollgate proxy` (its config and log named `name`) selling `GET /api` for
    /// [`PRICE`] through channels kept in `store`, claimed per `claims`; returns the process and
    /// its base URL.
    fn proxy(&self, name: &str, store: Store<'_>, claims: &Claims) -> (Proc, String) {
        let store = match store {
            Store::Sqlite(path) => format!("sqlite = \"{}\"", path.display()),
            Store::Postgres(url) => format!("url = \"{url}\""),
        };
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\
                 [facilitator]\nurl = \"{facilitator}\"\n\
                 [payment]\nnetwork = \"{network}\"\npay_to = \"{receiver}\"\n\
                 [metrics]\npath = \"{METRICS}\"\n\
                 [[routes]]\nroute = \"GET /api\"\namount = \"{PRICE}\"\nasset = \"{usdc}\"\n\
                 extra = {{ name = \"USD Coin\", version = \"2\", decimals = 6 }}\n\
                 scheme = \"batch-settlement\"\n\
                 [channels]\n{store}\nclaim_interval_secs = {interval}\n\
                 claim_threshold = \"{threshold}\"\nclaim_check_secs = 1\n\
                 receiver_authorizer_key_env = \"SELLER_AUTHORIZER_KEY\"\n",
                upstream = self.upstream.url,
                facilitator = self.facilitator_url,
                network = self.chain.caip2(),
                receiver = self.receiver,
                usdc = self.chain.usdc,
                interval = claims.interval_secs,
                threshold = claims.threshold,
            ),
        )
        .unwrap();
        let mut command = support::tollgate();
        command
            .args(["proxy", "--config"])
            .arg(&config)
            .env("SELLER_AUTHORIZER_KEY", DEV_KEYS[SELLER_AUTHORIZER])
            .env("TOLLGATE_LOG", LOG_FILTER);
        let (proc, rest) = spawn_until(
            command,
            self.dir.path().join(format!("{name}.log")),
            "tollgate proxy listening on ",
            true,
        );
        let url = rest.split(',').next().unwrap().trim().to_owned();
        (proc, url)
    }

    /// The proxy's 402 offer for `GET /api`, and the channel the payer's deposit opens for it.
    async fn offer(&self, proxy: &str) -> (PaymentRequirements, B256) {
        let unpaid = reqwest::get(format!("{proxy}/api")).await.unwrap();
        assert_eq!(unpaid.status(), 402, "an unpaid request is challenged");
        let required: PaymentRequired =
            header::decode(unpaid.headers()["payment-required"].to_str().unwrap()).unwrap();
        let offer = required
            .accepts
            .iter()
            .find(|o| o.scheme == tollgate::proto::Scheme::BatchSettlement)
            .unwrap_or_else(|| panic!("no batch-settlement offer in {:?}", required.accepts))
            .clone();
        assert_eq!(
            offer.extra_str("receiverAuthorizer"),
            Some(TestChain::address(SELLER_AUTHORIZER).to_string().as_str()),
            "the offer names the seller's own receiver authorizer"
        );
        let (_, id) =
            tollgate::evm::batch_settlement::payer::channel_for(TestChain::address(PAYER), &offer)
                .unwrap();
        (offer, id)
    }

    /// One `tollgate pay` run as [`PAYER`] with the spend ledger `ledger`.
    async fn pay(&self, ledger: &Path, args: &[&str], url: &str) -> Output {
        let mut command: Command = support::tollgate();
        command
            .arg("pay")
            .args([
                "--asset",
                &format!("{}/{}/USDC/6", self.chain.caip2(), self.chain.usdc),
            ])
            .arg("--ledger")
            .arg(ledger)
            .args(["--deposit-requests", &DEPOSIT_REQUESTS.to_string(), "--yes"])
            .args(args)
            .arg(url)
            .env("TOLLGATE_PAY_KEY", DEV_KEYS[PAYER])
            .env_remove("TOLLGATE_RPC_URL");
        tokio::task::spawn_blocking(move || support::run_output(command))
            .await
            .unwrap()
    }

    /// Pays `GET /api` once through `proxy` as the `n`-th charge of the channel: served (the
    /// upstream called exactly once more), charged [`PRICE`], the cumulative charge `n × PRICE`,
    /// a deposit transaction for the first and none (a voucher) after.
    async fn paid_request(&self, ledger: &Path, proxy: &str, n: u128) {
        let hits = self.upstream.hits();
        let out = self.pay(ledger, &["-i"], &format!("{proxy}/api")).await;
        let shown = Shown::tollgate_pay(&out);
        assert_eq!(
            (shown.status, shown.body.as_str()),
            (200, "paid data"),
            "request {n} through {proxy}: {}",
            shown.raw
        );
        assert_eq!(
            self.upstream.hits(),
            hits + 1,
            "request {n}: the upstream serves each paid request once"
        );
        let receipt = shown
            .receipt
            .unwrap_or_else(|| panic!("request {n}: no receipt: {}", shown.raw));
        assert_eq!(
            receipt["extra"]["chargedAmount"],
            PRICE.to_string(),
            "request {n}: {receipt}"
        );
        assert_eq!(
            receipt["extra"]["channelState"]["chargedCumulativeAmount"],
            (n * PRICE).to_string(),
            "request {n}: {receipt}"
        );
        let transaction = receipt["transaction"].as_str().unwrap_or_default();
        assert_eq!(
            transaction.is_empty(),
            n > 1,
            "request {n}: a deposit first, vouchers after: {receipt}"
        );
    }

    /// The channel `id` on chain: `(balance, totalClaimed)`.
    async fn channel(&self, id: B256) -> (u128, u128) {
        let c = IBatchSettlement::new(BATCH_SETTLEMENT, self.chain.provider())
            .channels(id)
            .call()
            .await
            .unwrap();
        (c.balance, c.totalClaimed)
    }

    /// Polls the chain (bounded by [`CLAIM_WAIT`]) until channel `id` has `claimed` claimed;
    /// returns how long that took.
    async fn wait_claimed(&self, id: B256, claimed: u128) -> Duration {
        let started = Instant::now();
        loop {
            let (_, now) = self.channel(id).await;
            if now == claimed {
                return started.elapsed();
            }
            assert!(
                now < claimed,
                "claimed {now}, more than the {claimed} served"
            );
            assert!(
                started.elapsed() < CLAIM_WAIT,
                "totalClaimed still {now} after {CLAIM_WAIT:?}, expected {claimed}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls (bounded by [`CLAIM_WAIT`]) until the receiver holds `amount`.
    async fn wait_received(&self, amount: u128) {
        let started = Instant::now();
        loop {
            let now = self.chain.usdc_balance(self.receiver).await.unwrap();
            if now == U256::from(amount) {
                return;
            }
            assert!(
                now < U256::from(amount),
                "the receiver got {now}, more than {amount}"
            );
            assert!(
                started.elapsed() < CLAIM_WAIT,
                "the receiver holds {now} after {CLAIM_WAIT:?}, expected {amount}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The proxy's channel gauges, from its `[metrics]` scrape: `(open, unclaimed, claim_rounds)`.
async fn channel_gauges(proxy: &str) -> (f64, f64, f64) {
    let response = reqwest::get(format!("{proxy}{METRICS}")).await.unwrap();
    assert_eq!(response.status(), 200, "the scrape endpoint answers");
    let text = response.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let gauge = |name: &str| {
        let found: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                Sample::Gauge(v) | Sample::Untyped(v) => v,
                ref other => panic!("{name} is not a gauge: {other:?}"),
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} once in the scrape:\n{text}");
        found[0]
    };
    (
        gauge("tollgate_gateway_channels_open"),
        gauge("tollgate_gateway_channels_unclaimed"),
        gauge("tollgate_gateway_channels_claim_rounds"),
    )
}

/// Five `tollgate pay` runs on one ledger through the proxy — a deposit, then four vouchers —
/// each served by the upstream once; the gauges show one open channel and the five charges
/// unclaimed; `tollgate pay --refund` is settled without the upstream, claims the charges,
/// returns the rest of the deposit and sweeps the charges to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sells_through_a_channel_and_refunds_the_rest() {
    let rig = Rig::start().await;
    let _logs = rig.logs_on_failure();
    let ledger = rig.dir.path().join("spend.db");
    let (_proxy, proxy) = rig.proxy(
        "proxy",
        Store::Sqlite(&rig.dir.path().join("channels.db")),
        &NEVER,
    );
    let (_, id) = rig.offer(&proxy).await;
    let payer_start = rig
        .chain
        .usdc_balance(TestChain::address(PAYER))
        .await
        .unwrap();
    assert_eq!(channel_gauges(&proxy).await, (0.0, 0.0, 0.0));

    let requests = 5;
    for n in 1..=requests {
        rig.paid_request(&ledger, &proxy, n).await;
    }
    assert_eq!(rig.upstream.hits(), requests as usize);
    assert_eq!(
        rig.channel(id).await,
        (DEPOSIT, 0),
        "one deposit, nothing claimed yet"
    );
    assert_eq!(
        channel_gauges(&proxy).await,
        (1.0, (requests * PRICE) as f64, 0.0),
        "one channel, {requests} charges unclaimed"
    );

    let out = rig
        .pay(&ledger, &["--refund", "--json"], &format!("{proxy}/api"))
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "refund: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refund: Value = serde_json::from_str(stdout.trim()).unwrap();
    let rest = DEPOSIT - requests * PRICE;
    assert_eq!(refund["refunded"], rest.to_string(), "{refund}");
    assert_eq!(refund["credited"], rest.to_string(), "{refund}");
    assert!(
        !refund["transaction"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "the refund is a transaction: {refund}"
    );
    assert_eq!(
        rig.upstream.hits(),
        requests as usize,
        "a refund never reaches the upstream"
    );
    assert_eq!(
        rig.channel(id).await,
        (requests * PRICE, requests * PRICE),
        "the charges claimed, the rest returned"
    );
    assert_eq!(
        rig.chain
            .usdc_balance(TestChain::address(PAYER))
            .await
            .unwrap(),
        payer_start - U256::from(requests * PRICE),
        "the payer paid exactly the served requests"
    );
    rig.wait_received(requests * PRICE).await;
    let (open, unclaimed, _) = channel_gauges(&proxy).await;
    assert_eq!(
        (open, unclaimed),
        (0.0, 0.0),
        "nothing left open or unclaimed"
    );
}

/// Seven requests served through the proxy (a deposit and six vouchers) with claims far off,
/// then `kill -9` of the proxy: nothing claimed on chain. The proxy restarted on the same
/// SQLite file with a short claim interval claims exactly the seven charges, sweeps them to the
/// receiver, and the channel goes on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_killed_before_claiming_claims_everything_after_restart() {
    let rig = Rig::start().await;
    let _logs = rig.logs_on_failure();
    let ledger = rig.dir.path().join("spend.db");
    let channels = rig.dir.path().join("channels.db");
    let (mut first, proxy) = rig.proxy("proxy-first", Store::Sqlite(&channels), &NEVER);
    let (_, id) = rig.offer(&proxy).await;

    let served = 7;
    for n in 1..=served {
        rig.paid_request(&ledger, &proxy, n).await;
    }
    assert_eq!(
        channel_gauges(&proxy).await,
        (1.0, (served * PRICE) as f64, 0.0)
    );
    // SIGKILL (what `Child::kill` sends on Unix): no shutdown, no last claim.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert_eq!(
        rig.channel(id).await,
        (DEPOSIT, 0),
        "killed before any claim"
    );
    assert_eq!(
        rig.chain.usdc_balance(rig.receiver).await.unwrap(),
        U256::ZERO
    );

    let restarted_at = Instant::now();
    let (_second, proxy) = rig.proxy("proxy-restarted", Store::Sqlite(&channels), &SOON);
    let listening = restarted_at.elapsed();
    let claimed_after = rig.wait_claimed(id, served * PRICE).await;
    rig.wait_received(served * PRICE).await;
    let received_after = restarted_at.elapsed();
    eprintln!(
        "restart: listening after {listening:?}, {} claimed {claimed_after:?} later, \
         swept to the receiver {received_after:?} after the restart",
        served * PRICE
    );
    assert_eq!(rig.channel(id).await, (DEPOSIT, served * PRICE));
    assert_eq!(
        channel_gauges(&proxy).await,
        (1.0, 0.0, 1.0),
        "one claim round"
    );

    // The channel survived the kill: the next voucher continues the cumulative amount.
    rig.paid_request(&ledger, &proxy, served + 1).await;
    assert_eq!(rig.upstream.hits(), served as usize + 1);
}

/// Two proxies on one PostgreSQL: one channel paid alternately through A and B (a deposit
/// through A, then vouchers), each request served and charged once with the cumulative amount
/// carried from one instance to the other; one voucher replayed to both at once, its upstream
/// called, delivered and charged once, and `tollgate pay` resynchronising from the corrective
/// 402 that follows; then
/// a third instance replacing A, with a short claim interval, claims the total in one round and
/// sweeps it to the receiver — and B sees nothing left unclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_on_one_postgres_charge_each_voucher_once() {
    let rig = Rig::start().await;
    let _logs = rig.logs_on_failure();
    let pg = Postgres::start().expect("start PostgreSQL (Debian's postgresql package)");
    let url = pg.url();
    let ledger = rig.dir.path().join("spend.db");
    let (mut a, proxy_a) = rig.proxy("proxy-a", Store::Postgres(&url), &NEVER);
    let (_b, proxy_b) = rig.proxy("proxy-b", Store::Postgres(&url), &NEVER);
    let (offer_a, id) = rig.offer(&proxy_a).await;
    let (offer_b, id_b) = rig.offer(&proxy_b).await;
    assert_eq!(id, id_b, "both instances offer the same channel terms");
    assert_eq!(offer_a.pay_to, offer_b.pay_to);

    let requests = 8;
    for n in 1..=requests {
        let proxy = if n % 2 == 1 { &proxy_a } else { &proxy_b };
        rig.paid_request(&ledger, proxy, n).await;
    }
    assert_eq!(rig.upstream.hits(), requests as usize);
    assert_eq!(rig.channel(id).await, (DEPOSIT, 0));
    for proxy in [&proxy_a, &proxy_b] {
        assert_eq!(
            channel_gauges(proxy).await,
            (1.0, (requests * PRICE) as f64, 0.0),
            "{proxy}: one shared channel, every charge unclaimed"
        );
    }

    // The next voucher, signed once and sent to both instances at once, several times each:
    // one upstream call, one delivery, one charge. (A copy on the same instance is the gate's
    // `payment_in_use`; on the other, the channel is held for the first request's attempt, so
    // the copy is `channel_busy` — or, once the first committed, its ceiling is spent.)
    let (config, _) =
        tollgate::evm::batch_settlement::payer::channel_for(TestChain::address(PAYER), &offer_a)
            .unwrap();
    let known: tollgate::evm::batch_settlement::PayerChannel = serde_json::from_value(json!({
        "config": config, "id": id,
        "charged": (requests * PRICE).to_string(), "balance": DEPOSIT.to_string(),
    }))
    .unwrap();
    let voucher = tollgate::evm::batch_settlement::payer::sign_channel_payment(
        &TestChain::signer(PAYER),
        &offer_a,
        None,
        Some(known),
        None,
    )
    .await
    .unwrap();
    let signature = header::encode(&voucher.payload);
    let hits = rig.upstream.hits();
    let http = reqwest::Client::new();
    let replays = 12;
    let answers = futures::future::join_all((0..replays).map(|i| {
        let proxy = if i % 2 == 0 { &proxy_a } else { &proxy_b };
        let request = http
            .get(format!("{proxy}/api"))
            .header("payment-signature", &signature);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    }))
    .await;
    let delivered: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(delivered.len(), 1, "one voucher, one delivery: {answers:?}");
    assert_eq!(delivered[0].1, "paid data");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 402),
        "{answers:?}"
    );
    let upstream_calls = rig.upstream.hits() - hits;
    eprintln!(
        "postgres: {replays} copies of one voucher: 1 delivered, upstream called {upstream_calls} times"
    );
    assert_eq!(
        upstream_calls, 1,
        "one voucher reaches the upstream once across both instances: {answers:?}"
    );
    for proxy in [&proxy_a, &proxy_b] {
        assert_eq!(
            channel_gauges(proxy).await.1,
            ((requests + 1) * PRICE) as f64,
            "{proxy}: the voucher charged once"
        );
    }
    // `tollgate pay`'s ledger does not know of that charge: its next voucher is answered with
    // the corrective 402, it resynchronises and pays the one after — through B.
    let requests = requests + 2;
    rig.paid_request(&ledger, &proxy_b, requests).await;

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let started = Instant::now();
    let (_claimer, proxy_c) = rig.proxy("proxy-c", Store::Postgres(&url), &SOON);
    let claimed_after = rig.wait_claimed(id, requests * PRICE).await;
    rig.wait_received(requests * PRICE).await;
    eprintln!(
        "postgres: {} claimed {claimed_after:?} after the claiming instance started, swept after {:?}",
        requests * PRICE,
        started.elapsed()
    );
    assert_eq!(rig.channel(id).await, (DEPOSIT, requests * PRICE));
    assert_eq!(
        channel_gauges(&proxy_c).await,
        (1.0, 0.0, 1.0),
        "one claim round moved the total"
    );
    let (open, unclaimed, rounds) = channel_gauges(&proxy_b).await;
    assert_eq!(
        (open, unclaimed, rounds),
        (1.0, 0.0, 0.0),
        "B sees the claim through the shared store and claimed nothing itself"
    );

    // Still one channel: the next voucher through B continues from C's claim.
    rig.paid_request(&ledger, &proxy_b, requests + 1).await;
    drop(pg);
}
