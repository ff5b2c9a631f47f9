//! `tollgate bench`'s identity section: the reputation service on a large ledger, and the
//! identity gate's cost on a paid request, measured in the same run as the rest of the bench.
//!
//! 1. A fresh SQLite ledger (schema from [`Ledger::open`], so the migrations' indexes are the
//!    ones measured) is filled with `--identity-rows` synthetic rows in one transaction:
//!    settlements and their audit events, spread over `--identity-payers` payers — among them
//!    the bench's own payers (dev accounts 1–8), so the gate below has a track record to read.
//! 2. `GET /reputation/{address}` and `POST /assess` (a sanctions list and `min_reputation`)
//!    are measured over HTTP against the facilitator's router on loopback.
//! 3. The same paid request is measured through a paywall without an identity gate, with one
//!    asking that facilitator's `/assess` on every payment (no cache: the worst case), and with
//!    the default verdict cache (the common case); the ratios gated/ungated are the gate's cost.
//!
//! Nothing here asserts a speed: a failed request stops the bench, a slow one does not.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use serde_json::json;
use tollgate::evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate::facilitator::reputation::ReputationService;
use tollgate::facilitator::{http as fhttp, Facilitator, Ledger};
use tollgate::proto::{header, PaymentRequirements};
use tollgate::server::{
    IdentityPolicy, IdentityProvider, PaymentOption, PaywallLayer, ReputationFloor, RoutePrice,
};
use tollgate_identity::wire::{AssessResponse, Decision, Reputation};
use tollgate_identity::{AgentScoreConfig, SanctionsList};

use super::timed::{timed, Timed};
use super::{err, expect_status, serve, sign_many, BenchError};
use crate::bench_rig::{signer, BenchChain};

/// The fewest rows the section accepts: below it the bench's payers would have too little
/// history for the policy's floor, and the gate would refuse them.
pub const MIN_ROWS: usize = 1_000;

/// Payees the synthetic payments go to (the report counts distinct payees).
const PAYEES: u64 = 50;

/// Synthetic addresses on the sanctions list besides the listed synthetic payers.
const SANCTIONED_OTHERS: u64 = 1_000;

/// One synthetic payer in this many is on the sanctions list (the bench's payers never are).
const SANCTIONED_EVERY: usize = 100;

/// Settlements go back this far; audit events stay within the ledger's default retention.
const HISTORY_DAYS: u64 = 400;
const EVENT_DAYS: u64 = 30;

/// Rounds the paid modes take turns in.
const ROUNDS: usize = 3;

/// What the section needs from `tollgate bench`'s options.
pub struct IdentityArgs {
    /// Synthetic ledger rows (settlements and audit events together).
    pub rows: usize,
    /// Payers the rows are spread over (fewer when the rows are too few for that many).
    pub payers: usize,
    /// Requests per reputation scenario.
    pub requests: usize,
    /// Payments per paid scenario.
    pub payments: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// What the fill wrote.
struct Filled {
    settlements: u64,
    events: u64,
    payers: usize,
    took: Duration,
}

/// A synthetic EVM address (lower-case hex, the ledger's spelling): `tag` keeps payers,
/// payees and unrelated listed addresses apart.
fn synthetic_address(tag: u8, n: u64) -> String {
    format!("0x{tag:02x}{n:038x}")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The payers: the bench's own first (so a small fill still gives them a full history), then
/// synthetic ones sorted, so that inserts walk the `(payer, …)` indexes in order.
fn payers(count: usize) -> Vec<String> {
    let mut own: Vec<String> = (1..=8)
        .map(|i| signer(i).address().to_string().to_ascii_lowercase())
        .collect();
    let mut synthetic: Vec<String> = (0..count.saturating_sub(own.len()) as u64)
        .map(|n| synthetic_address(0xa0, n))
        .collect();
    synthetic.sort();
    own.extend(synthetic);
    own
}

/// The synthetic payers on the sanctions list (never the bench's own payers, which come first).
fn is_listed(payer_index: usize) -> bool {
    payer_index >= 8 && payer_index.is_multiple_of(SANCTIONED_EVERY)
}

/// Fills the ledger at `path` (already created by [`Ledger::open`]) with `rows` rows in one
/// transaction through prepared statements. Per payment: a settlement row and its `verify`
/// and `settle` events, as the facilitator writes them; one payment in 20 failed on chain, one
/// in 20 was refused at `/verify`, one in 20 was a replay (`conflict`).
fn fill(
    path: &Path,
    rows: usize,
    payers: &[String],
    network: &str,
    asset: &str,
) -> Result<Filled, rusqlite::Error> {
    let started = Instant::now();
    let mut c = rusqlite::Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(30))?;
    // A throwaway file: durability of the fill is not what is measured.
    c.pragma_update(None, "synchronous", "OFF")?;
    c.pragma_update(None, "cache_size", -262_144)?;
    let tx = c.transaction()?;
    let (mut settlements, mut events) = (0u64, 0u64);
    let mut with_history = 0usize;
    {
        let mut put_settlement = tx.prepare(
            "INSERT INTO settlements
               (network, scheme, asset, payer, payment_id, state, amount, pay_to, tx_hash,
                error_reason, payment_json, created_at, updated_at, attempt, lease_until,
                valid_before)
             VALUES (?1, 'exact', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL, ?14)",
        )?;
        let mut put_event = tx.prepare(
            "INSERT INTO events
               (at, kind, network, scheme, payer, payment_id, outcome, reason, tx_hash)
             VALUES (?1, ?2, ?3, 'exact', ?4, ?5, ?6, ?7, ?8)",
        )?;
        let now = unix_now();
        let history = (HISTORY_DAYS * 86_400) as i64;
        let event_window = (EVENT_DAYS * 86_400) as i64;
        let mut serial = 0u64;
        for (p, payer) in payers.iter().enumerate() {
            // Every payer gets its share of the rows (the first ones one more), so the count
            // is exact and no payer is left without history.
            let quota = rows / payers.len() + usize::from(p < rows % payers.len());
            if quota == 0 {
                break;
            }
            with_history += 1;
            // ~2.8 rows a payment (17 of 20 write three rows, the refusals one).
            let per_payer = (quota * 10).div_ceil(28).max(1) as u64;
            let mut mine = 0usize;
            let mut k = 0u64;
            while mine < quota {
                let remaining = quota - mine;
                // Payments past the estimate share the newest time slot.
                let slot = k.min(per_payer - 1);
                k += 1;
                serial += 1;
                let id = format!("0x{serial:064x}");
                // Oldest first, spread evenly over the history; events inside the retention.
                let created = now - history * (per_payer - slot) as i64 / per_payer as i64;
                let at = now - event_window * (per_payer - slot) as i64 / per_payer as i64;
                let amount = (1_000 * (1 + (serial % 100))).to_string();
                let pay_to = synthetic_address(0xb0, (p as u64 + k) % PAYEES);
                let tx_hash = format!("0x{:064x}", serial.wrapping_mul(0x9E37_79B9));
                // The last row or two are refusals (one row each), so the count is exact.
                let kind = if remaining < 3 {
                    1
                } else {
                    (p as u64 + k) % 20
                };
                if kind == 1 {
                    // Refused at /verify: only the event.
                    put_event.execute(rusqlite::params![
                        at,
                        "verify",
                        network,
                        payer,
                        id,
                        "invalid",
                        "invalid_exact_evm_payload_authorization_value",
                        Option::<String>::None
                    ])?;
                    events += 1;
                    mine += 1;
                    continue;
                }
                if kind == 2 {
                    // A replay of a payment already in use.
                    put_event.execute(rusqlite::params![
                        at,
                        "verify",
                        network,
                        payer,
                        id,
                        "conflict",
                        "payment_in_use",
                        Option::<String>::None
                    ])?;
                    events += 1;
                    mine += 1;
                    continue;
                }
                let failed = kind == 0;
                let payment_json = json!({
                    "x402Version": 2,
                    "accepted": { "scheme": "exact", "network": network, "asset": asset,
                                  "amount": amount, "payTo": pay_to },
                    "payload": {
                        "signature": format!("0x{}", "5a".repeat(65)),
                        "authorization": {
                            "from": payer, "to": pay_to, "value": amount,
                            "validAfter": "0", "validBefore": (created + 300).to_string(),
                            "nonce": id,
                        }
                    }
                })
                .to_string();
                put_settlement.execute(rusqlite::params![
                    network,
                    asset,
                    payer,
                    id,
                    if failed { "failed" } else { "confirmed" },
                    amount,
                    pay_to,
                    tx_hash,
                    failed.then_some("transaction_failed"),
                    payment_json,
                    created,
                    created + 3,
                    format!("~settle-{serial}"),
                    created + 300,
                ])?;
                put_event.execute(rusqlite::params![
                    at,
                    "verify",
                    network,
                    payer,
                    id,
                    "valid",
                    Option::<String>::None,
                    Option::<String>::None
                ])?;
                put_event.execute(rusqlite::params![
                    at + 2,
                    "settle",
                    network,
                    payer,
                    id,
                    if failed { "failure" } else { "success" },
                    failed.then_some("transaction_failed"),
                    tx_hash
                ])?;
                settlements += 1;
                events += 2;
                mine += 3;
            }
        }
    }
    tx.commit()?;
    // The planner's statistics, as a long-running ledger would have them.
    c.execute_batch("ANALYZE")?;
    Ok(Filled {
        settlements,
        events,
        payers: with_history,
        took: started.elapsed(),
    })
}

/// The policy measured: sanctions screening and a track-record floor the bench's payers meet.
fn policy() -> IdentityPolicy {
    IdentityPolicy {
        require_sanctions_clear: true,
        min_reputation: Some(ReputationFloor {
            min_settled: 5,
            min_age_days: 7,
            max_failure_ppm: Some(250_000),
        }),
        ..IdentityPolicy::default()
    }
}

/// Runs the identity section and prints its table.
pub async fn run(
    chain: &BenchChain,
    option: &PaymentOption,
    dir: &Path,
    args: &IdentityArgs,
) -> Result<(), BenchError> {
    if args.rows < MIN_ROWS {
        return Err(err(format!(
            "--identity-rows: {} is too few (0 skips the section; otherwise at least {MIN_ROWS})",
            args.rows
        )));
    }
    let requirements = option.requirements();
    let network = chain.caip2();
    let asset = chain.usdc.to_string().to_ascii_lowercase();
    // About 35 payments a payer, however many rows (at most `--identity-payers` payers).
    let payers = payers(args.payers.min(args.rows / 100).max(8 + 1));
    let c = args.concurrency;

    let path = dir.join("bench-identity-ledger.db");
    let ledger = Ledger::open(&path).map_err(err)?;
    let filled = {
        let (path, rows, payers, network, asset) = (
            path.clone(),
            args.rows,
            payers.clone(),
            network.clone(),
            asset.clone(),
        );
        tokio::task::spawn_blocking(move || fill(&path, rows, &payers, &network, &asset))
            .await
            .map_err(err)?
            .map_err(|e| err(format!("filling the identity ledger: {e}")))?
    };
    let file_mb = std::fs::metadata(&path).map_or(0, |m| m.len()) / 1_000_000;

    // The sanctions list: one synthetic payer in SANCTIONED_EVERY, and addresses of nobody.
    let mut list = String::from("# tollgate bench: synthetic sanctions list\n");
    let mut listed = 0u64;
    for (i, payer) in payers.iter().enumerate().take(filled.payers) {
        if is_listed(i) {
            list.push_str(payer);
            list.push('\n');
            listed += 1;
        }
    }
    for n in 0..SANCTIONED_OTHERS {
        list.push_str(&synthetic_address(0xc0, n));
        list.push('\n');
    }
    let list_path = dir.join("bench-sanctions.txt");
    std::fs::write(&list_path, list).map_err(err)?;
    let sanctions = SanctionsList::load(&list_path).await.map_err(err)?;

    // The facilitator over that ledger: it settles the paid requests below and answers the
    // gate's /assess.
    let scheme =
        ExactEvmFacilitator::connect(chain.endpoint(), signer(0), FacilitatorConfig::default())
            .await
            .map_err(err)?;
    let facilitator = Facilitator::new(vec![scheme], ledger.clone());
    let reputation = ReputationService::new(ledger, Some(Arc::new(sanctions)));
    let facilitator_url = serve(fhttp::router_with_reputation(
        facilitator.clone(),
        fhttp::HttpLimits::default(),
        reputation,
    ))
    .await?;

    println!(
        "\nidentity: ledger of {} rows ({} settlements, {} audit events) over {} payers, \
         filled in {:.1} s ({file_mb} MB); sanctions list of {} addresses",
        filled.settlements + filled.events,
        filled.settlements,
        filled.events,
        filled.payers,
        filled.took.as_secs_f64(),
        listed + SANCTIONED_OTHERS,
    );

    let http = reqwest::Client::new();
    let policy = policy();
    // The answers are checked once before timing: a bench of wrong answers measures nothing.
    let own = payers[0].clone();
    let report: Reputation = http
        .get(format!("{facilitator_url}/reputation/{own}"))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    if report.settled_count < policy.min_reputation.as_ref().map_or(0, |f| f.min_settled) {
        return Err(err(format!(
            "the identity ledger gave {own} {} settled payments, below the policy's floor",
            report.settled_count
        )));
    }
    let assess_body =
        |address: &str| json!({ "address": address, "chain": network, "policy": policy });
    let mut probes = vec![(0, Decision::Allow)];
    if filled.payers > SANCTIONED_EVERY {
        probes.push((SANCTIONED_EVERY, Decision::Deny));
    }
    for (i, expected) in probes {
        let answer: AssessResponse = http
            .post(format!("{facilitator_url}/assess"))
            .json(&assess_body(&payers[i]))
            .send()
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        if answer.decision != expected {
            return Err(err(format!(
                "/assess of {} answered {:?}, expected {expected:?}: {:?}",
                payers[i], answer.decision, answer.decision_reasons
            )));
        }
    }

    let known = filled.payers;
    let addresses = Arc::new(payers);
    let reputation_run = timed("GET /reputation/{address}", args.requests, c, |i| {
        let (http, url, addresses) = (http.clone(), facilitator_url.clone(), addresses.clone());
        async move {
            let address = &addresses[i.wrapping_mul(7919) % known];
            expect_status(
                http.get(format!("{url}/reputation/{address}")).send().await,
                200,
            )
            .await
        }
    })
    .await?;
    let bodies: Arc<Vec<serde_json::Value>> =
        Arc::new(addresses[..known].iter().map(|a| assess_body(a)).collect());
    let assess_run = timed(
        "POST /assess (sanctions + min_reputation)",
        args.requests,
        c,
        |i| {
            let (http, url, bodies) = (http.clone(), facilitator_url.clone(), bodies.clone());
            async move {
                let body = &bodies[i.wrapping_mul(7919) % bodies.len()];
                expect_status(
                    http.post(format!("{url}/assess")).json(body).send().await,
                    200,
                )
                .await
            }
        },
    )
    .await?;

    // The same route and price, settled by the same facilitator: only the gate differs.
    let provider: Arc<dyn IdentityProvider> = Arc::new(
        AgentScoreConfig::new(facilitator_url.clone())
            .name("tollgate-facilitator")
            .build()
            .map_err(err)?,
    );
    let route = |layer: PaywallLayer<Facilitator>| -> Result<axum::Router, BenchError> {
        let layer = layer
            .route("GET /weather", RoutePrice::new(option.clone()))
            .map_err(err)?;
        Ok(axum::Router::new()
            .route("/weather", get(|| async { "sunny" }))
            .layer(layer))
    };
    let ungated_url = serve(route(PaywallLayer::new(facilitator.clone()))?).await?;
    let no_cache_url = serve(route(
        PaywallLayer::new(facilitator.clone())
            .identity(provider.clone(), policy.clone())
            .identity_cache_ttl(Duration::ZERO),
    )?)
    .await?;
    let cached_url = serve(route(
        PaywallLayer::new(facilitator.clone()).identity(provider.clone(), policy.clone()),
    )?)
    .await?;

    // The modes take turns, in a rotating order over ROUNDS rounds, so that a drift over the
    // run (a growing ledger and chain, a warming cache) does not favour one of them.
    let modes = [
        ("paid request, no identity gate", &ungated_url),
        (
            "paid request, gate asking /assess every time (no cache)",
            &no_cache_url,
        ),
        (
            "paid request, gate with the default 300 s cache",
            &cached_url,
        ),
    ];
    for (_, url) in &modes {
        // Connections and the paywall's cached `/supported` are warmed by unpaid 402s.
        for _ in 0..c.max(1) {
            expect_status(http.get(format!("{url}/weather")).send().await, 402)
                .await
                .map_err(err)?;
        }
    }
    let mut paid: Vec<Timed> = modes
        .iter()
        .map(|(name, _)| Timed {
            name: (*name).to_owned(),
            count: 0,
            took: Duration::ZERO,
            latencies: Vec::new(),
        })
        .collect();
    for round in 0..ROUNDS {
        let n = args.payments / ROUNDS + usize::from(round < args.payments % ROUNDS);
        for turn in 0..modes.len() {
            let m = (round + turn) % modes.len();
            let (name, url) = modes[m];
            let t = paid_run(name, url, &http, &requirements, n, c).await?;
            paid[m].count += t.count;
            paid[m].took += t.took;
            paid[m].latencies.extend(t.latencies);
        }
    }
    for m in &mut paid {
        m.latencies.sort();
    }

    println!(
        "{:<58} {:>8} {:>9} {:>8} {:>8} {:>12}",
        "scenario (identity)", "count", "req/s", "p50 ms", "p99 ms", "vs ungated"
    );
    for m in [&reputation_run, &assess_run] {
        println!(
            "{:<58} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>12}",
            m.name,
            m.count,
            m.per_sec(),
            m.latency_ms(50),
            m.latency_ms(99),
            ""
        );
    }
    let ungated = &paid[0];
    for m in &paid {
        println!(
            "{:<58} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>11.3}x",
            m.name,
            m.count,
            m.per_sec(),
            m.latency_ms(50),
            m.latency_ms(99),
            m.per_sec() / ungated.per_sec()
        );
    }
    println!(
        "identity gate on a paid request: gated/ungated = {:.3} without a cache (one /assess \
         over HTTP per payment), {:.3} with the default cache; p99 {:.1} / {:.1} ms vs {:.1} ms \
         ungated",
        paid[1].per_sec() / ungated.per_sec(),
        paid[2].per_sec() / ungated.per_sec(),
        paid[1].latency_ms(99),
        paid[2].latency_ms(99),
        ungated.latency_ms(99),
    );
    Ok(())
}

/// `count` paid requests to `{url}/weather`, each with a fresh signed payment; all must be
/// served (`200`): a refusal by the gate stops the bench.
async fn paid_run(
    name: &str,
    url: &str,
    http: &reqwest::Client,
    requirements: &PaymentRequirements,
    count: usize,
    concurrency: usize,
) -> Result<Timed, BenchError> {
    let payments = Arc::new(sign_many(requirements, count).await?);
    timed(name, count, concurrency, |i| {
        let (http, url, payments) = (http.clone(), url.to_owned(), payments.clone());
        async move {
            let response = http
                .get(format!("{url}/weather"))
                .header(header::PAYMENT_SIGNATURE, header::encode(&payments[i]))
                .send()
                .await;
            expect_status(response, 200).await
        }
    })
    .await
}
