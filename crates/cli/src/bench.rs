//! `tollgate bench`: throughput of the facilitator and the paywall against one local chain (the
//! embedded devnet by default, or anvil), in one run, reported with ratios against a baseline
//! measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use axum::routing::get;
use futures::stream::{self, StreamExt};
use serde_json::json;
use tollgate::evm::{BatchConfig, ExactEvmFacilitator, FacilitatorConfig};
use tollgate::facilitator::{http as fhttp, Facilitator, Ledger};
use tollgate::proto::{header, PaymentPayload, PaymentRequirements};
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};
use tollgate_client::PaymentSigner;

use crate::bench_rig::{signer, BenchChain, ChainKind};

/// The identity section (reputation service on a large ledger, the identity gate's cost): a
/// child module, so that it measures with the same helpers as the sections here.
#[path = "bench_identity.rs"]
mod identity;

/// Requests/s and latency percentiles of concurrent requests, for the sections below.
#[path = "bench_timed.rs"]
mod timed;

/// The discovery section (the Bazaar catalogue's endpoints on a large catalogue).
#[path = "bench_discovery.rs"]
mod discovery;

/// The Permit2 section (`exact` through Permit2 and `upto` against EIP-3009 settlement).
#[path = "bench_permit2.rs"]
mod permit2;

/// The verification section: `/verify` against the node's `eth_call` rate and other
/// facilitators (`--peer`).
#[path = "bench_peers.rs"]
mod peers;

pub use peers::Peer;

/// The channels section: `batch-settlement` voucher-paid requests through the paywall's channel
/// manager against the unpaid 402 and `exact`.
#[path = "bench_channels.rs"]
mod channels;

/// The Solana section: `exact` on the embedded Solana devnet, `/verify` and `/settle` as ratios
/// to the EVM ones.
#[cfg(feature = "solana")]
#[path = "bench_solana.rs"]
mod solana;

/// Options of `tollgate bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The chain to settle on: the embedded devnet (in this process, nothing to install) or a
    /// real anvil node (installed by `npm ci`, or named by `TOLLGATE_ANVIL`).
    #[arg(long, value_enum, default_value_t = ChainKind::Devnet)]
    chain: ChainKind,
    /// Use a running anvil (with its dev accounts) instead of starting a node, so that the
    /// facilitators named by `--peer` can be pointed at it first. Overrides `--chain`.
    #[arg(long, value_name = "URL")]
    rpc_url: Option<String>,
    /// Another x402 facilitator to measure with the same payments on the same node, as
    /// `NAME=URL` (its `/verify`, and `/settle` with `--peer-settle`); repeatable. It must
    /// serve the node of `--rpc-url`.
    #[arg(long = "peer", value_name = "NAME=URL")]
    peers: Vec<Peer>,
    /// Payments settled through Tollgate and each peer in the verification section (0: only
    /// `/verify` is compared).
    #[arg(long, default_value_t = 0)]
    peer_settle: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per unpaid scenario (bare route, 402 challenge, /verify).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Payments per paid scenario (/settle, paid request end to end).
    #[arg(long, default_value_t = 200)]
    payments: usize,
    /// Batch window of the batched /settle scenario, in milliseconds.
    #[arg(long, default_value_t = 20)]
    batch_window_ms: u64,
    /// Payments per mode of the settlement-cost section (single, then each batch size); 0
    /// skips the section. Rounded up to a whole number of batches.
    #[arg(long, default_value_t = 200)]
    settle_payments: usize,
    /// Batch sizes the settlement-cost section compares with one transaction per payment. A
    /// batch must fit in one block: ~39,000 gas a payment against both chains' 30M gas limit.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 50, 100])]
    batch_sizes: Vec<usize>,
    /// Batch window of the settlement-cost section, in milliseconds: the longest the first
    /// payment of a batch waits for the others (a full batch leaves at once).
    #[arg(long, default_value_t = 250)]
    settle_window_ms: u64,
    /// Batches in flight at once in the settlement-cost section: with 2, the next batch fills
    /// while the previous one is mined (more payments/s on a chain with slow blocks, more
    /// latency on an instant local chain).
    #[arg(long, default_value_t = 1)]
    settle_batches_in_flight: usize,
    /// Rows (settlements and their audit events) of the identity section's synthetic SQLite
    /// ledger, on which `GET /reputation/{address}`, `POST /assess` and the identity gate's
    /// cost on a paid request are measured; 0 skips the section.
    #[arg(long, default_value_t = 1_000_000)]
    identity_rows: usize,
    /// Payers the identity ledger's rows are spread over (at most one per 100 rows).
    #[arg(long, default_value_t = 10_000)]
    identity_payers: usize,
    /// Channels (one buyer each) of the batch-settlement section, which measures
    /// voucher-paid requests (`--requests` of them per channel store) against the unpaid 402
    /// and `exact`; 0 skips the section.
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Resources of the discovery section's synthetic catalogue (SQLite), on which
    /// `GET /discovery/resources` and `GET /discovery/search` are measured; 0 skips the section.
    #[arg(long, default_value_t = 100_000)]
    discovery_resources: usize,
    /// Payments of the Solana section (default: `--payments`), which starts the embedded
    /// Solana devnet in this process and measures its facilitator's `/verify` (`--requests`
    /// of them) and `/settle` (each confirmed) as ratios to the EVM ones; 0 skips the section.
    #[cfg(feature = "solana")]
    #[arg(long, value_name = "N")]
    solana: Option<usize>,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(String);

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

struct Measured {
    name: &'static str,
    count: usize,
    took: Duration,
}

impl Measured {
    fn per_sec(&self) -> f64 {
        self.count as f64 / self.took.as_secs_f64()
    }
}

/// Runs `count` calls of `make(i)` with `concurrency` in flight; every call must succeed.
async fn measure<F, Fut>(
    name: &'static str,
    count: usize,
    concurrency: usize,
    make: F,
) -> Result<Measured, BenchError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let progress = crate::progress::bar(count, name);
    let started = Instant::now();
    let failures: Vec<String> = stream::iter(0..count)
        .map(make)
        .buffer_unordered(concurrency.max(1))
        .inspect(|_| progress.inc(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    progress.finish_and_clear();
    if let Some(first) = failures.first() {
        return Err(err(format!(
            "{name}: {} of {count} requests failed, first: {first}",
            failures.len()
        )));
    }
    Ok(Measured {
        name,
        count,
        took: started.elapsed(),
    })
}

async fn sign_many(
    requirements: &PaymentRequirements,
    count: usize,
) -> Result<Vec<PaymentPayload>, BenchError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let payer = crate::pay::wallets(signer(1 + i % 8));
        out.push(payer.sign(requirements, None).await.map_err(err)?.payload);
    }
    Ok(out)
}

pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    // Checked before the first scenario, not after a minute of it.
    if let Some(size) = args.batch_sizes.iter().find(|&&size| size < 2) {
        return Err(err(format!(
            "--batch-sizes: {size} is not a batch (2 or more)"
        )));
    }
    if args.identity_rows != 0 && args.identity_rows < identity::MIN_ROWS {
        return Err(err(format!(
            "--identity-rows: {} is too few (0 skips the section; otherwise at least {})",
            args.identity_rows,
            identity::MIN_ROWS
        )));
    }
    if args.discovery_resources != 0 && args.discovery_resources < discovery::MIN_RESOURCES {
        return Err(err(format!(
            "--discovery-resources: {} is too few (0 skips the section; otherwise at least {})",
            args.discovery_resources,
            discovery::MIN_RESOURCES
        )));
    }
    if !args.peers.is_empty() && args.rpc_url.is_none() {
        return Err(err(
            "--peer needs --rpc-url: the peers must verify against the benchmark's node \
             (scripts/bench-peers starts one, the peers and the benchmark)",
        ));
    }
    let chain = match &args.rpc_url {
        Some(url) => BenchChain::attach(url).await.map_err(err)?,
        None => BenchChain::start(args.chain).await.map_err(err)?,
    };
    let scheme =
        ExactEvmFacilitator::connect(chain.endpoint(), signer(0), FacilitatorConfig::default())
            .await
            .map_err(err)?;
    let probed = scheme.clone();
    let dir = tempfile_dir()?;
    let facilitator = Facilitator::new(
        vec![scheme],
        Ledger::open(&dir.join("bench-ledger.db")).map_err(err)?,
    );
    let network: tollgate::proto::Network = chain.caip2().parse().map_err(err)?;
    let payee = signer(9).address();
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let option = PaymentOption::atomic(
        U256::from(1_000u64),
        &chain.usdc.to_string(),
        network,
        &payee.to_string(),
        extra,
    );
    let requirements = option.requirements();

    // Facilitators over HTTP: one transaction per payment, and batched (its own signer and
    // ledger, same chain).
    let facilitator_url = serve(fhttp::router(
        facilitator.clone(),
        fhttp::HttpLimits::default(),
    ))
    .await?;
    let batched = ExactEvmFacilitator::connect(
        chain.endpoint(),
        signer(9),
        FacilitatorConfig {
            batch: Some(BatchConfig {
                window: Duration::from_millis(args.batch_window_ms),
                max_size: args.concurrency.clamp(2, 500),
                multicall3: chain.multicall3,
            }),
            ..FacilitatorConfig::default()
        },
    )
    .await
    .map_err(err)?;
    let batched = Facilitator::new(
        vec![batched],
        Ledger::open(&dir.join("bench-ledger-batched.db")).map_err(err)?,
    );
    let batched_url = serve(fhttp::router(batched, fhttp::HttpLimits::default())).await?;

    // The same axum route, bare and behind the paywall.
    let bare = axum::Router::new().route("/weather", get(|| async { "sunny" }));
    let paywall = PaywallLayer::new(facilitator.clone())
        .route("GET /weather", RoutePrice::new(option.clone()))
        .map_err(err)?;
    let paid = axum::Router::new()
        .route("/weather", get(|| async { "sunny" }))
        .layer(paywall);
    let bare_url = serve(bare).await?;
    let paid_url = serve(paid).await?;

    // A bare route answering with the very bytes of the paywall's challenge: the difference
    // to the 402 path is the layer's own cost, without the larger response's I/O.
    let first = reqwest::get(format!("{paid_url}/weather"))
        .await
        .map_err(err)?;
    let challenge_header = first
        .headers()
        .get(header::PAYMENT_REQUIRED.as_str())
        .cloned()
        .ok_or_else(|| err("the paywall answered without PAYMENT-REQUIRED"))?;
    let challenge_body = first.bytes().await.map_err(err)?;
    let same_size = axum::Router::new().route(
        "/weather",
        get(move || {
            let (h, b) = (challenge_header.clone(), challenge_body.clone());
            async move {
                (
                    axum::http::StatusCode::PAYMENT_REQUIRED,
                    [
                        (header::PAYMENT_REQUIRED.clone(), h),
                        (
                            axum::http::header::CONTENT_TYPE,
                            axum::http::HeaderValue::from_static("application/json"),
                        ),
                    ],
                    b,
                )
            }
        }),
    );
    let same_size_url = serve(same_size).await?;

    let http = reqwest::Client::new();
    let c = args.concurrency;
    println!(
        "tollgate bench: {} at {}, concurrency {c}, {} requests, {} payments per paid scenario",
        chain.backend(),
        chain.endpoint(),
        args.requests,
        args.payments
    );

    // Warm-up (connections, allocator, caches): not measured, so the first scenario is not
    // penalized against the later ones.
    for url in [&bare_url, &same_size_url, &paid_url] {
        measure("warm-up", args.requests / 2, c, |_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(format!("{url}/weather"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
    }
    let bare_route = measure("bare axum route", args.requests, c, |_| {
        let (http, url) = (http.clone(), bare_url.clone());
        async move { expect_status(http.get(format!("{url}/weather")).send().await, 200).await }
    })
    .await?;
    let same_size_route = measure(
        "bare route, same bytes as the 402 (static)",
        args.requests,
        c,
        |_| {
            let (http, url) = (http.clone(), same_size_url.clone());
            async move { expect_status(http.get(format!("{url}/weather")).send().await, 402).await }
        },
    )
    .await?;
    let challenge = measure(
        "402 challenge (paywall, no payment)",
        args.requests,
        c,
        |_| {
            let (http, url) = (http.clone(), paid_url.clone());
            async move { expect_status(http.get(format!("{url}/weather")).send().await, 402).await }
        },
    )
    .await?;

    let to_verify = Arc::new(sign_many(&requirements, args.requests.min(500)).await?);
    let verify = measure("facilitator POST /verify", args.requests, c, |i| {
        let (http, url, payments, req) = (
            http.clone(),
            facilitator_url.clone(),
            to_verify.clone(),
            requirements.clone(),
        );
        async move {
            let body = json!({ "x402Version": 2, "paymentPayload": payments[i % payments.len()], "paymentRequirements": req });
            expect_status(http.post(format!("{url}/verify")).json(&body).send().await, 200).await
        }
    })
    .await?;

    let to_settle = Arc::new(sign_many(&requirements, args.payments).await?);
    let settle = measure("facilitator POST /settle (one tx per payment)", args.payments, c, |i| {
        let (http, url, payments, req) = (
            http.clone(),
            facilitator_url.clone(),
            to_settle.clone(),
            requirements.clone(),
        );
        async move {
            let body = json!({ "x402Version": 2, "paymentPayload": payments[i], "paymentRequirements": req });
            expect_status(http.post(format!("{url}/settle")).json(&body).send().await, 200).await
        }
    })
    .await?;

    let to_batch = Arc::new(sign_many(&requirements, args.payments).await?);
    let settle_batched = measure(
        "facilitator POST /settle (Multicall3 batches)",
        args.payments,
        c,
        |i| {
            let (http, url, payments, req) = (
                http.clone(),
                batched_url.clone(),
                to_batch.clone(),
                requirements.clone(),
            );
            async move {
                let body = json!({ "x402Version": 2, "paymentPayload": payments[i], "paymentRequirements": req });
                expect_status(http.post(format!("{url}/settle")).json(&body).send().await, 200)
                    .await
            }
        },
    )
    .await?;

    let to_pay = Arc::new(sign_many(&requirements, args.payments).await?);
    let end_to_end = measure(
        "paid request end to end (in-process facilitator)",
        args.payments,
        c,
        |i| {
            let (http, url, payments) = (http.clone(), paid_url.clone(), to_pay.clone());
            async move {
                let response = http
                    .get(format!("{url}/weather"))
                    .header(header::PAYMENT_SIGNATURE, header::encode(&payments[i]))
                    .send()
                    .await;
                expect_status(response, 200).await
            }
        },
    )
    .await?;

    println!(
        "\n{:<52} {:>10} {:>10} {:>14}",
        "scenario", "count", "req/s", "vs bare route"
    );
    for m in [
        &bare_route,
        &same_size_route,
        &challenge,
        &verify,
        &settle,
        &settle_batched,
        &end_to_end,
    ] {
        println!(
            "{:<52} {:>10} {:>10.0} {:>13.3}x",
            m.name,
            m.count,
            m.per_sec(),
            m.per_sec() / bare_route.per_sec()
        );
    }
    println!(
        "\n402 path costs {:.1}% of the bare route's throughput; settle/verify = {:.3}",
        (1.0 - challenge.per_sec() / bare_route.per_sec()) * 100.0,
        settle.per_sec() / verify.per_sec()
    );
    println!(
        "the paywall's own cost on the 402 path: {:.1}% (402 path vs a bare route sending the same bytes)",
        (1.0 - challenge.per_sec() / same_size_route.per_sec()) * 100.0
    );
    println!(
        "batched /settle = {:.2}x single-transaction /settle (window {} ms, concurrency {c})",
        settle_batched.per_sec() / settle.per_sec(),
        args.batch_window_ms
    );
    if let Some(stats) = probed.probe_stats() {
        println!(
            "coalesced verification reads: {} payments in {} eth_calls ({:.1} per call, largest {})",
            stats.payments,
            stats.calls,
            stats.payments as f64 / stats.calls.max(1) as f64,
            stats.largest
        );
    }
    let section = peers::PeersArgs {
        requests: args.requests,
        concurrency: c,
        settle_payments: args.peer_settle,
        peers: &args.peers,
        tollgate_url: &facilitator_url,
    };
    peers::run(&chain, &requirements, &section).await?;

    #[cfg(feature = "solana")]
    {
        let section = solana::SolanaArgs {
            payments: args.solana.unwrap_or(args.payments),
            requests: args.requests,
            concurrency: c,
            evm_backend: chain.backend(),
            evm_verify: &verify,
            evm_settle: &settle,
        };
        solana::run(&dir, &section).await?;
    }

    if args.channels > 0 {
        let section = channels::ChannelsArgs {
            requests: args.requests,
            channels: args.channels,
            bare_route: &bare_route,
            challenge: &challenge,
            exact_paid: &end_to_end,
        };
        channels::run(&chain, &dir, &section).await?;
    }

    let section = permit2::Permit2Args {
        payments: args.payments,
        concurrency: c,
    };
    permit2::run(&chain, &dir, &section).await?;

    if args.settle_payments > 0 {
        let costs = settle_costs(&chain, &requirements, &args).await?;
        print_settle_costs(&costs, &args);
    }
    let identity = if args.identity_rows > 0 {
        let section = identity::IdentityArgs {
            rows: args.identity_rows,
            payers: args.identity_payers,
            requests: args.requests,
            payments: args.payments,
            concurrency: args.concurrency,
        };
        identity::run(&chain, &option, &dir, &section).await
    } else {
        Ok(())
    };
    let discovery = match identity {
        Ok(()) if args.discovery_resources > 0 => {
            let section = discovery::DiscoveryArgs {
                resources: args.discovery_resources,
                requests: args.requests,
                concurrency: args.concurrency,
            };
            discovery::run(&chain, &dir, &section).await
        }
        other => other,
    };
    // The identity ledger is hundreds of MB: removed whether or not its section succeeded.
    let _ = std::fs::remove_dir_all(&dir);
    discovery
}

/// What one settlement mode cost, from the receipts of the transactions it sent.
struct SettleCost {
    /// `None`: one transaction per payment; `Some(n)`: Multicall3 batches of at most `n`.
    batch_size: Option<usize>,
    payments: usize,
    transactions: usize,
    /// Sum of the receipts' `gasUsed`.
    gas_used: u128,
    /// Payments per transaction: smallest and largest batch actually sent.
    smallest: usize,
    largest: usize,
    took: Duration,
    /// Each `settle` call's latency (verify, submit, receipt), sorted.
    latencies: Vec<Duration>,
}

impl SettleCost {
    fn label(&self) -> String {
        match self.batch_size {
            None => "single (1 tx per payment)".into(),
            Some(n) => format!("Multicall3 batch of {n}"),
        }
    }

    fn gas_per_payment(&self) -> f64 {
        self.gas_used as f64 / self.payments as f64
    }

    fn payments_per_tx(&self) -> f64 {
        self.payments as f64 / self.transactions as f64
    }

    fn per_sec(&self) -> f64 {
        self.payments as f64 / self.took.as_secs_f64()
    }

    /// The `pct`th percentile latency (nearest rank), in milliseconds.
    fn latency_ms(&self, pct: usize) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let rank = (n * pct).div_ceil(100).clamp(1, n);
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// Settles `--settle-payments` payments one transaction each, then in batches of each
/// `--batch-sizes`, in-process (the HTTP cost is measured above; this is the chain's cost).
///
/// A batched mode keeps `size` settlements per batch in flight (times
/// `--settle-batches-in-flight`), so each batch fills to `size` as soon as its payments are
/// verified, and is not cut short by the window; the single mode uses `--concurrency`.
async fn settle_costs(
    chain: &BenchChain,
    requirements: &PaymentRequirements,
    args: &BenchArgs,
) -> Result<Vec<SettleCost>, BenchError> {
    let mut modes = vec![None];
    modes.extend(args.batch_sizes.iter().map(|&size| Some(size)));
    let mut out = Vec::with_capacity(modes.len());
    for mode in modes {
        let (config, signer_index, concurrency, count) = match mode {
            None => (
                FacilitatorConfig::default(),
                0,
                args.concurrency.max(1),
                args.settle_payments,
            ),
            Some(size) => (
                FacilitatorConfig {
                    batch: Some(BatchConfig {
                        window: Duration::from_millis(args.settle_window_ms),
                        max_size: size,
                        multicall3: chain.multicall3,
                    }),
                    ..FacilitatorConfig::default()
                },
                9,
                size.saturating_mul(args.settle_batches_in_flight.max(1)),
                args.settle_payments.div_ceil(size).saturating_mul(size),
            ),
        };
        // The modes run one after another, so the two settling keys are never in use by two
        // facilitators at once (each send reads the node's pending nonce).
        let scheme = ExactEvmFacilitator::connect(chain.endpoint(), signer(signer_index), config)
            .await
            .map_err(err)?;
        let payments = sign_many(requirements, count).await?;
        let label = mode.map_or("settle single".to_string(), |n| format!("settle batch {n}"));
        let progress = crate::progress::bar(count, &label);
        let started = Instant::now();
        let outcomes: Vec<Result<(B256, Duration), String>> = stream::iter(payments.iter())
            .map(|payment| {
                let scheme = &scheme;
                async move {
                    let t = Instant::now();
                    scheme
                        .settle(payment, requirements)
                        .await
                        .map(|s| (s.tx_hash, t.elapsed()))
                        .map_err(|e| e.to_string())
                }
            })
            .buffer_unordered(concurrency)
            .inspect(|_| progress.inc(1))
            .collect()
            .await;
        progress.finish_and_clear();
        let took = started.elapsed();
        let mut per_tx: std::collections::HashMap<B256, usize> = Default::default();
        let mut latencies = Vec::with_capacity(count);
        for outcome in outcomes {
            let (hash, latency) = outcome.map_err(|e| {
                err(format!(
                    "settlement cost ({}): a settlement failed: {e}",
                    mode.map_or("single".to_string(), |n| format!("batch {n}"))
                ))
            })?;
            *per_tx.entry(hash).or_default() += 1;
            latencies.push(latency);
        }
        latencies.sort();
        let mut gas_used = 0u128;
        for hash in per_tx.keys() {
            let receipt = scheme
                .provider()
                .get_transaction_receipt(*hash)
                .await
                .map_err(err)?
                .ok_or_else(|| err(format!("no receipt for settled transaction {hash}")))?;
            gas_used += u128::from(receipt.gas_used);
        }
        out.push(SettleCost {
            batch_size: mode,
            payments: count,
            transactions: per_tx.len(),
            gas_used,
            smallest: per_tx.values().copied().min().unwrap_or(0),
            largest: per_tx.values().copied().max().unwrap_or(0),
            took,
            latencies,
        });
    }
    Ok(out)
}

fn print_settle_costs(costs: &[SettleCost], args: &BenchArgs) {
    let Some(single) = costs.iter().find(|c| c.batch_size.is_none()) else {
        return;
    };
    println!(
        "\nsettlement cost (gas from the receipts; batch window {} ms, {} batch(es) in flight, \
         single at concurrency {})",
        args.settle_window_ms,
        args.settle_batches_in_flight.max(1),
        args.concurrency
    );
    println!(
        "{:<26} {:>8} {:>5} {:>8} {:>17} {:>11} {:>9} {:>10} {:>8} {:>8}",
        "mode",
        "payments",
        "txs",
        "tx/pay",
        "batch min/avg/max",
        "gas/payment",
        "gas less",
        "payments/s",
        "p50 ms",
        "p99 ms"
    );
    for c in costs {
        println!(
            "{:<26} {:>8} {:>5} {:>8.3} {:>17} {:>11.0} {:>8.2}x {:>10.0} {:>8.1} {:>8.1}",
            c.label(),
            c.payments,
            c.transactions,
            1.0 / c.payments_per_tx(),
            format!("{}/{:.1}/{}", c.smallest, c.payments_per_tx(), c.largest),
            c.gas_per_payment(),
            single.gas_per_payment() / c.gas_per_payment(),
            c.per_sec(),
            c.latency_ms(50),
            c.latency_ms(99),
        );
    }
    for c in costs.iter().filter(|c| c.batch_size.is_some()) {
        println!(
            "{}: {:.2}x less gas per payment, {:.1} payments per transaction, {:.2}x the \
             payments/s, p99 latency {:.1} ms vs {:.1} ms single",
            c.label(),
            single.gas_per_payment() / c.gas_per_payment(),
            c.payments_per_tx(),
            c.per_sec() / single.per_sec(),
            c.latency_ms(99),
            single.latency_ms(99),
        );
    }
    // A batch of n costs about F + n·m gas (F: the transaction's base cost, shared; m: each
    // payment's own transfer). Two batch sizes give m, the floor no batch size gets under.
    let mut batched: Vec<&SettleCost> = costs.iter().filter(|c| c.batch_size.is_some()).collect();
    batched.sort_by_key(|c| c.batch_size);
    if let [.., a, b] = batched[..] {
        let (na, nb) = (a.payments_per_tx(), b.payments_per_tx());
        if nb > na {
            let marginal = (nb * b.gas_per_payment() - na * a.gas_per_payment()) / (nb - na);
            println!(
                "each further payment in a batch costs ~{marginal:.0} gas (its own transfer: \
                 the authorization's fresh nonce slot, signature recovery, balances, events, \
                 calldata), so no batch size gets below it: at most {:.2}x less gas than single",
                single.gas_per_payment() / marginal
            );
        }
    }
}

async fn serve(app: axum::Router) -> Result<String, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err)?;
    let url = format!("http://{}", listener.local_addr().map_err(err)?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

async fn expect_status(
    response: Result<reqwest::Response, reqwest::Error>,
    expected: u16,
) -> Result<(), String> {
    let response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status == expected {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status} (expected {expected}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

fn tempfile_dir() -> Result<std::path::PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(err)?;
    Ok(dir)
}
