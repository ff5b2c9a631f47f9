//! The channels section of `tollgate bench`: a request paid with a `batch-settlement` voucher
//! through the paywall's channel manager, against the bare route, the unpaid 402 and an `exact`
//! paid request measured in the same run.
//!
//! `channels` channels (one per concurrent buyer: a channel takes one request at a time) are
//! opened with a deposit each through the paywall; then every buyer sends its pre-signed
//! vouchers in order (signing is the buyer's cost, not the seller's). Measured twice: with the
//! channels in memory and in a SQLite file (`synchronous = FULL`, every voucher durable before
//! its response). The claim of everything charged follows, once, and is timed apart.

use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::{Address, B256, U256};
use axum::routing::get;
use futures::future::try_join_all;
use serde_json::{json, Value};
use tollgate::core::{NetworkPattern, Registry, SchemeServer};
use tollgate::evm::batch_settlement::channels::{
    ChannelManager, ChannelManagerConfig, ChannelStore, MemoryChannelStore, SqliteChannelStore,
};
use tollgate::evm::batch_settlement::{
    channel_id, sign_erc3009_deposit, sign_voucher, BatchSettlementEvmFacilitator,
    BatchSettlementEvmServer, ChannelConfig, Erc3009DepositTerms, ReceiverAuthorizer,
    VoucherVerifier,
};
use tollgate::evm::{ChainConfig, EvmChain};
use tollgate::facilitator::Facilitator;
use tollgate::proto::{header, AtomicAmount, PaymentRequired, PaymentRequirements, Scheme};
use tollgate::server::{PaymentOption, PaywallLayer, RoutePrice};

use super::{err, serve, BenchError, Measured};
use crate::bench_rig::{signer, BenchChain};

/// The price of a request (atomic units, 6 decimals).
const PRICE: u128 = 1_000;
/// The receiver authorizer's key (the facilitator's; it signs the claims).
const AUTHORIZER: usize = 8;

/// The section's knobs, from `tollgate bench`'s options.
pub(super) struct ChannelsArgs<'a> {
    /// Voucher-paid requests per store.
    pub requests: usize,
    /// Channels, one buyer each, in flight at once.
    pub channels: usize,
    /// The run's baselines.
    pub bare_route: &'a Measured,
    pub challenge: &'a Measured,
    pub exact_paid: &'a Measured,
}

struct Buyer {
    config: ChannelConfig,
    id: B256,
    payer: usize,
}

async fn paywall(
    facilitator: Facilitator,
    store: Arc<dyn ChannelStore>,
    requirements_option: PaymentOption,
) -> Result<(String, ChannelManager<Facilitator>), BenchError> {
    let manager = ChannelManager::new(facilitator, store, ChannelManagerConfig::default());
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    schemes
        .register_arc(
            "eip155:*".parse::<NetworkPattern>().map_err(err)?,
            Scheme::BatchSettlement,
            Arc::new(BatchSettlementEvmServer),
        )
        .map_err(err)?;
    let layer = PaywallLayer::new(manager.clone())
        .schemes(schemes)
        .map_err(err)?;
    let app = axum::Router::new().route(
        "/weather",
        get(|| async { "sunny" }).route_layer(
            layer
                .price(RoutePrice::new(requirements_option))
                .map_err(err)?,
        ),
    );
    Ok((serve(app).await?, manager))
}

/// The `PAYMENT-SIGNATURE` value of `payload` under `requirements`.
fn encode(requirements: &PaymentRequirements, payload: &Value) -> String {
    header::encode(&json!({"x402Version": 2, "accepted": requirements, "payload": payload}))
}

async fn send(http: &reqwest::Client, url: &str, encoded: &str) -> Result<(), String> {
    let response = http
        .get(format!("{url}/weather"))
        .header(header::PAYMENT_SIGNATURE, encoded)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let reason = response
        .headers()
        .get(header::PAYMENT_REQUIRED.as_str())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| header::decode::<PaymentRequired>(v).ok())
        .and_then(|r| r.error)
        .unwrap_or_default();
    Err(format!("HTTP {status}: {reason}"))
}

/// Opens one channel per buyer, pre-signs `per_channel` vouchers each, sends them (each buyer
/// in order, the buyers at once) and returns the measurement.
async fn run_store(
    chain: &BenchChain,
    url: &str,
    requirements: &PaymentRequirements,
    salt_base: u64,
    args: &ChannelsArgs<'_>,
    name: &'static str,
) -> Result<Measured, BenchError> {
    let http = reqwest::Client::new();
    let chain_id = chain.chain_id();
    let authorizer: Address = requirements
        .extra_str("receiverAuthorizer")
        .ok_or_else(|| err("the offer names no receiver authorizer"))?
        .parse()
        .map_err(err)?;
    let per_channel = args.requests.div_ceil(args.channels.max(1));
    // The local chain's clock is the machine's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(err)?
        .as_secs();
    let domain = alloy::sol_types::eip712_domain! {
        name: "USD Coin",
        version: "2",
        chain_id: chain_id,
        verifying_contract: chain.usdc,
    };
    let mut buyers = Vec::new();
    for i in 0..args.channels {
        let payer = 1 + i % 8;
        let config = ChannelConfig {
            payer: signer(payer).address(),
            payer_authorizer: signer(payer).address(),
            receiver: requirements.pay_to.parse().map_err(err)?,
            receiver_authorizer: authorizer,
            token: chain.usdc,
            withdraw_delay: 900,
            salt: B256::from(U256::from(salt_base + i as u64)),
        };
        buyers.push(Buyer {
            id: channel_id(&config, chain_id),
            config,
            payer,
        });
    }
    // Open every channel: a deposit covering all its requests, the first request paid with it.
    for b in &buyers {
        let deposit = PRICE * (per_channel as u128 + 1);
        let terms = Erc3009DepositTerms {
            channel_id: b.id,
            from: b.config.payer,
            amount: deposit,
            valid_after: 0,
            valid_before: now + 3600,
            salt: B256::random(),
        };
        let auth = sign_erc3009_deposit(&signer(b.payer), &terms, &domain)
            .await
            .map_err(err)?;
        let voucher = sign_voucher(&signer(b.payer), b.id, PRICE, chain_id)
            .await
            .map_err(err)?;
        let payload = json!({
            "type": "deposit", "channelConfig": b.config, "voucher": voucher,
            "deposit": {"amount": deposit.to_string(), "authorization": {"erc3009Authorization": auth}}
        });
        send(&http, url, &encode(requirements, &payload))
            .await
            .map_err(|e| err(format!("{name}: opening a channel: {e}")))?;
    }
    // The buyers' vouchers, signed and encoded before the clock starts (the buyer's work).
    let mut lanes: Vec<Vec<String>> = Vec::new();
    for b in &buyers {
        let mut lane = Vec::with_capacity(per_channel);
        for k in 0..per_channel as u128 {
            let v = sign_voucher(&signer(b.payer), b.id, PRICE * (k + 2), chain_id)
                .await
                .map_err(err)?;
            let payload = json!({"type": "voucher", "channelConfig": b.config, "voucher": v});
            lane.push(encode(requirements, &payload));
        }
        lanes.push(lane);
    }
    let progress = crate::progress::bar(per_channel * buyers.len(), name);
    let started = Instant::now();
    try_join_all(lanes.into_iter().map(|lane| {
        let (http, url, progress) = (http.clone(), url.to_owned(), progress.clone());
        async move {
            for encoded in lane {
                send(&http, &url, &encoded).await?;
                progress.inc(1);
            }
            Ok::<_, String>(())
        }
    }))
    .await
    .map_err(|e| err(format!("{name}: {e}")))?;
    let took = started.elapsed();
    progress.finish_and_clear();
    Ok(Measured {
        name,
        count: per_channel * buyers.len(),
        took,
    })
}

/// The voucher check's own cost: `count` signature checks of one channel's voucher (the
/// public-key recovery a paywall makes per voucher-paid request), on every core at once,
/// without HTTP or state: the part of a voucher-paid request no paywall can skip.
async fn signature_checks(chain_id: u64, count: usize) -> Result<Measured, BenchError> {
    let config = ChannelConfig {
        payer: signer(1).address(),
        payer_authorizer: signer(1).address(),
        receiver: signer(9).address(),
        receiver_authorizer: signer(AUTHORIZER).address(),
        token: Address::ZERO,
        withdraw_delay: 900,
        salt: B256::ZERO,
    };
    let voucher = sign_voucher(&signer(1), channel_id(&config, chain_id), PRICE, chain_id)
        .await
        .map_err(err)?;
    let verifier = VoucherVerifier::new(chain_id);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = count.div_ceil(threads);
    let started = Instant::now();
    let checked = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..per_thread).all(|_| verifier.verify_signature(&config, &voucher).is_ok())
                })
            })
            .collect();
        workers.into_iter().all(|w| w.join().unwrap_or(false))
    });
    let took = started.elapsed();
    if !checked {
        return Err(err("a correctly signed voucher failed its signature check"));
    }
    Ok(Measured {
        name: "voucher signature check alone (every core, no HTTP)",
        count: per_thread * threads,
        took,
    })
}

pub(super) async fn run(
    chain: &BenchChain,
    dir: &std::path::Path,
    args: &ChannelsArgs<'_>,
) -> Result<(), BenchError> {
    let evm = EvmChain::connect(&[chain.endpoint()], vec![signer(0)], ChainConfig::default())
        .await
        .map_err(err)?;
    let scheme = BatchSettlementEvmFacilitator::on_chain(
        &evm,
        Some(ReceiverAuthorizer::new(signer(AUTHORIZER))),
    );
    let facilitator = Facilitator::builder()
        .scheme(NetworkPattern::One(evm.network().clone()), Arc::new(scheme))
        .chain(Arc::new(evm))
        .in_memory_ledger()
        .build()
        .await
        .map_err(err)?;
    let option = PaymentOption::new(
        Scheme::BatchSettlement,
        chain.caip2().parse().map_err(err)?,
        chain.usdc.to_string(),
        AtomicAmount(U256::from(PRICE)),
        signer(9).address().to_string(),
    )
    .extra(
        json!({"name": "USD Coin", "version": "2"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );

    let mut rows = Vec::new();
    let stores: [(&'static str, Arc<dyn ChannelStore>); 2] = [
        (
            "voucher-paid request (channels in memory)",
            Arc::new(MemoryChannelStore::new()),
        ),
        (
            "voucher-paid request (channels in SQLite, durable)",
            Arc::new(SqliteChannelStore::open(dir.join("bench-channels.db")).map_err(err)?),
        ),
    ];
    let mut managers = Vec::new();
    for (n, (name, store)) in stores.into_iter().enumerate() {
        let (url, manager) = paywall(facilitator.clone(), store, option.clone()).await?;
        let unpaid = reqwest::get(format!("{url}/weather")).await.map_err(err)?;
        let required: PaymentRequired = unpaid
            .headers()
            .get(header::PAYMENT_REQUIRED.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| header::decode(v).ok())
            .ok_or_else(|| err("the channel paywall answered without PAYMENT-REQUIRED"))?;
        let requirements = required.accepts[0].clone();
        rows.push(
            run_store(
                chain,
                &url,
                &requirements,
                1_000_000 * (n as u64 + 1),
                args,
                name,
            )
            .await?,
        );
        managers.push(manager);
    }

    let checks = signature_checks(chain.chain_id(), args.requests).await?;

    println!(
        "\nbatch-settlement channels ({} channels, one request at a time each; vouchers pre-signed)",
        args.channels
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12} {:>12}",
        "scenario", "count", "req/s", "vs 402", "vs exact"
    );
    for m in [args.bare_route, args.challenge, args.exact_paid]
        .into_iter()
        .chain(rows.iter())
        .chain([&checks])
    {
        println!(
            "{:<52} {:>10} {:>10.0} {:>11.3}x {:>11.1}x",
            m.name,
            m.count,
            m.per_sec(),
            m.per_sec() / args.challenge.per_sec(),
            m.per_sec() / args.exact_paid.per_sec()
        );
    }
    for (m, _) in rows.iter().zip(&managers) {
        println!(
            "{}: costs {:.2}x an unpaid 402 (target ≤ 2x)",
            m.name,
            args.challenge.per_sec() / m.per_sec()
        );
    }
    // The floor: a voucher-paid request is an exchange like the 402's plus this check.
    println!(
        "of which one voucher signature check alone costs {:.2}x an unpaid 402 (with the 402's own exchange: a floor of {:.2}x)",
        args.challenge.per_sec() / checks.per_sec(),
        1.0 + args.challenge.per_sec() / checks.per_sec()
    );
    // Everything charged, claimed and swept: two transactions per store, however many requests.
    for (m, manager) in rows.iter().zip(&managers) {
        let started = Instant::now();
        let report = manager.claim().await.map_err(err)?;
        println!(
            "claim after {}: {} channels, {} atomic units claimed and {} swept in {} transactions, {:.0} ms",
            m.name,
            report.channels,
            report.claimed,
            report.swept,
            report.transactions.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
