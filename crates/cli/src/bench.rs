//! `tollgate bench`: throughput of the facilitator and the paywall against one local chain (the
//! embedded devnet by default, or anvil), in one run, reported with ratios against a baseline
//! measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use axum::routing::get;
use futures::stream::{self, StreamExt};
use serde_json::json;
use tollgate::evm::{BatchConfig, ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate::facilitator::{http as fhttp, Facilitator, Ledger};
use tollgate::proto::{header, PaymentPayload, PaymentRequirements};
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};

use crate::bench_rig::{signer, BenchChain, ChainKind};

/// Options of `tollgate bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The chain to settle on: the embedded devnet (in this process, nothing to install) or a
    /// real anvil node (installed by `npm ci`, or named by `TOLLGATE_ANVIL`).
    #[arg(long, value_enum, default_value_t = ChainKind::Devnet)]
    chain: ChainKind,
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
    let started = Instant::now();
    let failures: Vec<String> = stream::iter(0..count)
        .map(make)
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
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
        let payer = ExactEvmClient::new(signer(1 + i % 8));
        out.push(payer.sign(requirements, None).await.map_err(err)?);
    }
    Ok(out)
}

pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let chain = BenchChain::start(args.chain).await.map_err(err)?;
    let scheme =
        ExactEvmFacilitator::connect(chain.endpoint(), signer(0), FacilitatorConfig::default())
            .await
            .map_err(err)?;
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
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
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
