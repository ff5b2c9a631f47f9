//! `tollgate demo`: the whole system on the embedded devnet (a real EVM in this process, no
//! download, no network) — a facilitator, a paid API, and an agent with a budget making paid
//! calls, then one metered (`upto`) call: the agent authorises a maximum, the seller's handler
//! charges what the work cost, and exactly that moves; then 100 calls through one payment
//! channel (`batch-settlement`): one deposit, a voucher per call, one claim.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::Extension;
use serde_json::json;
use tollgate::core::{NetworkPattern, Registry, SchemeServer};
use tollgate::evm::server::ExactEvmServer;
use tollgate::evm::UptoEvmServer;
use tollgate::facilitator::Facilitator;
use tollgate::proto::{header, money, AtomicAmount, Network, Scheme};
use tollgate::server::{Meter, PaymentOption, PaywallLayer, RoutePrice};
use tollgate_client::{PaymentError, PaymentReceipt, SpendLedger, SpendingPolicy, X402Middleware};
use tollgate_devnet::{Devnet, DevnetError, DEV_KEYS};

/// The channel step: 100 calls through one `batch-settlement` payment channel.
#[path = "demo_channels.rs"]
mod channels;
#[cfg(feature = "solana")]
#[path = "demo_solana.rs"]
mod solana;

alloy::sol! {
    #[sol(rpc)]
    interface IErc20Balance {
        function balanceOf(address account) external view returns (uint256);
    }
}

/// Options of `tollgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of paid calls the agent makes to /weather.
    #[arg(long, default_value_t = 6)]
    calls: usize,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("devnet: {0}")]
    Devnet(#[from] DevnetError),
    #[error("balanceOf on the devnet: {0}")]
    Balance(String),
    #[error("facilitator: {0}")]
    Facilitator(#[from] tollgate::facilitator::BuildError),
    #[error("Permit2 approval: {0}")]
    Approve(#[from] tollgate::evm::permit2::ApproveError),
    #[error("ledger: {0}")]
    Ledger(String),
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> DemoError {
    DemoError::Other(e.to_string())
}

const DECIMALS: u8 = 6;

/// The most the agent authorises for one metered `/generate` call: 0.05 USDT.
const METERED_MAXIMUM: u64 = 50_000;
/// What `/generate` costs per generated token: 0.000025 USDT.
const PRICE_PER_TOKEN: u64 = 25;
/// The tokens the demo's metered call asks for: 740 × 0.000025 = 0.0185 USDT, under the maximum.
const DEMO_TOKENS: u64 = 740;

/// Dev account `index`'s signer: one of anvil's public, well-known test keys.
fn signer(index: usize) -> alloy::signers::local::PrivateKeySigner {
    DEV_KEYS[index]
        .parse()
        .expect("the dev keys are valid hex keys")
}

fn usdc(amount: U256) -> String {
    format!("{} USDC", money::format_atomic(amount, DECIMALS))
}

fn usdt(amount: U256) -> String {
    format!("{} USDT", money::format_atomic(amount, DECIMALS))
}

/// The seller's metered handler: it does the work, then records what the work cost on the
/// request's [`Meter`]; the paywall settles exactly that (never more than the buyer authorised).
async fn generate(meter: Option<Extension<Meter>>, uri: Uri) -> (StatusCode, String) {
    let Some(Extension(meter)) = meter else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no meter: the route is not metered".into(),
        );
    };
    // How many tokens to generate (`?tokens=N`): the work, and so the charge, depends on it.
    let tokens = uri
        .query()
        .and_then(|q| q.strip_prefix("tokens="))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let cost = AtomicAmount::from(tokens.saturating_mul(PRICE_PER_TOKEN));
    match meter.charge(cost) {
        Ok(()) => (
            StatusCode::OK,
            format!(r#"{{"generated_tokens":{tokens}}}"#),
        ),
        // More work than the buyer authorised: refuse rather than deliver unpaid work.
        Err(e) => (StatusCode::PAYMENT_REQUIRED, e.to_string()),
    }
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    println!("Tollgate demo: an agent pays for API calls with x402, on a local chain.\n");
    let chain = Devnet::builder().chain_id(31337).port(0).start().await?;
    let usdc_address = chain.token();
    let network: Network = chain.caip2().parse().map_err(other)?;
    println!(
        "chain      {} at {} (embedded devnet: revm in this process)",
        network,
        chain.url()
    );
    println!("USDC       {usdc_address} (EIP-3009 test token)");
    let usdt_address = chain.contracts().usdt;
    println!("USDT       {usdt_address} (no EIP-3009: paid through Permit2)");

    // The facilitator, in-process, with its settlement ledger: `exact` and `upto` on this chain.
    let facilitator = Facilitator::builder()
        .network(chain.url(), signer(0))
        .in_memory_ledger()
        .build()
        .await?;

    // The seller's API: two priced routes and a free one.
    let seller = signer(9).address();
    let extra = json!({ "name": "USD Coin", "version": "2" })
        .as_object()
        .cloned();
    let price = |atomic: u64| {
        PaymentOption::atomic(
            U256::from(atomic),
            &usdc_address.to_string(),
            network.clone(),
            &seller.to_string(),
            extra.clone(),
        )
    };
    let per_symbol = price(2_000);
    // The scheme servers the paywall prices with: `exact` and the metered `upto`.
    let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    let evm = || "eip155:*".parse::<NetworkPattern>().map_err(other);
    schemes
        .register_arc(evm()?, Scheme::Exact, Arc::new(ExactEvmServer::new()))
        .map_err(other)?;
    schemes
        .register_arc(evm()?, Scheme::Upto, Arc::new(UptoEvmServer))
        .map_err(other)?;
    let paywall = PaywallLayer::new(facilitator.clone())
        .schemes(schemes)
        .map_err(other)?
        .route(
            "GET /weather",
            RoutePrice::new(price(10_000)).description("Today's weather"),
        )
        .map_err(other)?
        .route(
            "GET /report",
            RoutePrice::new(price(250_000)).description("Deep market report"),
        )
        .map_err(other)?
        .dynamic_route(
            "GET /quote",
            Arc::new(move |req: &axum::http::Request<axum::body::Body>| {
                // 0.002 USDC per quoted symbol; a request for no symbols is free.
                let symbols = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("symbols="))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                let mut option = per_symbol.clone();
                option.amount *= U256::from(symbols);
                Box::pin(async move {
                    (symbols > 0)
                        .then(|| RoutePrice::new(option).description("Stock quotes, per symbol"))
                })
            }),
        )
        .map_err(other)?
        .route(
            "GET /generate",
            RoutePrice::new(PaymentOption::new(
                Scheme::Upto,
                network.clone(),
                usdt_address.to_string(),
                AtomicAmount::from(METERED_MAXIMUM),
                seller.to_string(),
            ))
            .description("Text generation, metered per token"),
        )
        .map_err(other)?;
    let app = axum::Router::new()
        .route(
            "/weather",
            get(|| async { r#"{"forecast":"sunny","high":24}"# }),
        )
        .route("/report", get(|| async { "a long report" }))
        .route("/quote", get(|| async { r#"{"quotes":"…"}"# }))
        .route("/generate", get(generate))
        .route("/health", get(|| async { "ok" }))
        .layer(paywall);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(other)?;
    let api = format!("http://{}", listener.local_addr().map_err(other)?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    println!(
        "paid API   {api}  (GET /weather 0.01 USDC, GET /report 0.25 USDC, \
         GET /quote?symbols=N 0.002 USDC per symbol)"
    );
    println!(
        "           GET /generate?tokens=N: metered (upto), 0.000025 USDT per token, at most {}",
        usdt(U256::from(METERED_MAXIMUM))
    );

    // The agent: at most 0.1 USDC per call, 0.05 USDC in total.
    let buyer = signer(1);
    let buyer_address = buyer.address();
    let policy = SpendingPolicy::new()
        .register_asset(network.clone(), &usdc_address.to_string(), "USDC", DECIMALS)
        .register_asset(network.clone(), &usdt_address.to_string(), "USDT", DECIMALS)
        .max_per_request("0.1 USDC")
        .map_err(other)?
        .budget("0.05 USDC", None)
        .map_err(other)?;
    let spend = SpendLedger::in_memory().map_err(|e| DemoError::Ledger(e.to_string()))?;
    let agent = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(
            crate::pay::wallets(buyer.clone()),
            policy,
            spend.clone(),
        ))
        .build();
    println!("agent      {buyer_address}  (max 0.1 USDC per call, budget 0.05 USDC)\n");

    let reader =
        alloy::providers::ProviderBuilder::new().connect_http(chain.url().parse().map_err(other)?);
    let token = IErc20Balance::new(usdc_address, &reader);
    let balances = |who: Address| {
        let call = token.balanceOf(who);
        async move {
            call.call()
                .await
                .map_err(|e| DemoError::Balance(e.to_string()))
        }
    };
    let buyer_before = balances(buyer_address).await?;
    let seller_before = balances(seller).await?;

    // What the agent sees first: the 402 challenge.
    let raw = reqwest::Client::new()
        .get(format!("{api}/weather"))
        .send()
        .await
        .map_err(other)?;
    let challenge = header::payment_required_from_headers(raw.headers())
        .ok_or_else(|| other("no PAYMENT-REQUIRED header"))?
        .map_err(other)?;
    let option = &challenge.accepts[0];
    println!(
        "GET /weather without payment → {} Payment Required: {} {} on {} to {}",
        raw.status().as_u16(),
        challenge.accepts.len(),
        if challenge.accepts.len() == 1 {
            "option"
        } else {
            "options"
        },
        option.network,
        option.pay_to
    );
    println!();

    let mut calls: Vec<&str> = vec!["/weather"; args.calls];
    calls.insert(2.min(calls.len()), "/report");
    calls.insert(3.min(calls.len()), "/quote?symbols=3");
    calls.insert(4.min(calls.len()), "/quote?symbols=0");
    let total = calls.len();
    let mut paid = 0usize;
    let mut refused = 0usize;
    let mut spent = U256::ZERO;
    for (i, path) in calls.iter().enumerate() {
        let bar = progress(i + 1, total);
        match agent.get(format!("{api}{path}")).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.extensions().get::<PaymentReceipt>().cloned() {
                    Some(receipt) => {
                        paid += 1;
                        spent += receipt.requirements.amount.get();
                        println!(
                            "{bar} GET {path:<17} 402 → chose {} → signed → settled {} → {status}",
                            usdc(receipt.requirements.amount.get()),
                            short(&receipt.settlement.transaction),
                        );
                    }
                    None => println!("{bar} GET {path:<17} → {status} (free: no payment asked)"),
                }
            }
            Err(reqwest_middleware::Error::Middleware(e)) => match e.downcast::<PaymentError>() {
                Ok(PaymentError::Refused(r)) => {
                    refused += 1;
                    println!("{bar} GET {path:<17} 402 → refused by policy: {r}");
                }
                Ok(other_err) => return Err(other(other_err)),
                Err(e) => return Err(other(e)),
            },
            Err(e) => return Err(other(e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let buyer_after = balances(buyer_address).await?;
    let seller_after = balances(seller).await?;

    let metered = metered_call(MeteredCall {
        agent: &agent,
        api: &api,
        rpc_url: &chain.url(),
        buyer: buyer.clone(),
        seller,
        usdt: IErc20Balance::new(usdt_address, &reader),
    })
    .await?;
    println!("\nBalances");
    println!(
        "  agent   {:>14} → {}",
        usdc(buyer_before),
        usdc(buyer_after)
    );
    println!(
        "  seller  {:>14} → {}",
        usdc(seller_before),
        usdc(seller_after)
    );
    println!("\nAgent's spend ledger");
    let history = spend
        .history(100)
        .map_err(|e| DemoError::Ledger(e.to_string()))?;
    for rec in history.iter().rev() {
        let what = if rec.status == "paid" {
            match rec.charged.as_deref().and_then(|c| c.parse::<U256>().ok()) {
                // A metered payment: the row's amount is the maximum the agent authorised.
                Some(charged) if charged.to_string() != rec.amount => format!(
                    "{} {} charged (authorised {} {})",
                    money::format_atomic(charged, rec.decimals),
                    rec.symbol,
                    rec.display_amount,
                    rec.symbol
                ),
                _ => format!("{} {}", rec.display_amount, rec.symbol),
            }
        } else {
            rec.reason.clone().unwrap_or_default()
        };
        println!(
            "  #{:<3} {:<8} {:<50} {}",
            rec.id, rec.status, rec.url, what
        );
    }
    println!("\nFacilitator's settlement ledger");
    let states = facilitator
        .ledger()
        .count_by_state()
        .await
        .map_err(|e| DemoError::Ledger(e.to_string()))?;
    for (state, count) in &states {
        println!("  {state:<10} {count}");
    }
    let confirmed = states
        .iter()
        .find(|(s, _)| s == "confirmed")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    if seller_after != seller_before + spent
        || buyer_after != buyer_before - spent
        || confirmed != paid as i64 + 1
    {
        return Err(other("balances and ledger do not match the payments made"));
    }
    println!(
        "\n{paid} calls paid ({}) and settled on chain, {refused} refused by the agent's policy; \
         balances match both ledgers.",
        usdc(spent)
    );
    println!(
        "1 metered call: {} authorised, {} charged and settled; the unused {} never left the agent.",
        usdt(metered.maximum),
        usdt(metered.charged),
        usdt(metered.maximum - metered.charged)
    );
    let channel = channels::run(channels::ChannelStep {
        rpc_url: &chain.url(),
        usdc: usdc_address,
        network: network.clone(),
        seller,
    })
    .await?;
    println!(
        "{} calls through one channel: {} deposited, {} charged, {} transactions on chain \
         (one deposit, one claim, one sweep, one refund of the rest).",
        channel.calls,
        usdc(channel.deposited),
        usdc(channel.charged),
        channel.transactions
    );
    #[cfg(feature = "solana")]
    {
        let solana = solana::run().await?;
        println!(
            "{} calls paid on Solana ({}) with SPL Token transfers; the facilitator paid {} \
             lamports of fees and moved nothing else.",
            solana.calls,
            usdc(U256::from(solana.spent)),
            solana.fees_lamports
        );
    }
    Ok(())
}

/// What the metered step needs from the demo's setup.
struct MeteredCall<'a, P> {
    agent: &'a reqwest_middleware::ClientWithMiddleware,
    api: &'a str,
    rpc_url: &'a str,
    buyer: alloy::signers::local::PrivateKeySigner,
    seller: Address,
    usdt: IErc20Balance::IErc20BalanceInstance<P>,
}

/// What the metered step authorised and what it was charged, in USDT atomic units.
struct Metered {
    maximum: U256,
    charged: U256,
}

/// One `upto` call in USDT through Permit2: the agent's one-time Permit2 approval, then a call
/// authorising at most [`METERED_MAXIMUM`] whose handler charges for the tokens it generated;
/// checks that exactly the charge moved.
async fn metered_call<P: alloy::providers::Provider>(
    step: MeteredCall<'_, P>,
) -> Result<Metered, DemoError> {
    let balance = |who: Address| {
        let call = step.usdt.balanceOf(who);
        async move {
            call.call()
                .await
                .map_err(|e| DemoError::Balance(e.to_string()))
        }
    };
    println!(
        "\nMetered call (scheme upto, USDT through Permit2): the agent authorises a maximum, \
         the seller charges for the work done"
    );
    // USDT has no EIP-3009: the agent lets Permit2 move its USDT once, explicitly, and signs
    // each payment as a Permit2 authorisation after that.
    let buyer_address = step.buyer.address();
    let approval = tollgate::evm::permit2::approve_permit2(
        step.rpc_url,
        step.buyer,
        *step.usdt.address(),
        U256::MAX,
    )
    .await?;
    println!("  agent approves Permit2 for its USDT (one-time, explicit) → tx {approval}");
    let buyer_before = balance(buyer_address).await?;
    let seller_before = balance(step.seller).await?;
    let path = format!("/generate?tokens={DEMO_TOKENS}");
    let response = step
        .agent
        .get(format!("{}{path}", step.api))
        .send()
        .await
        .map_err(other)?;
    let status = response.status().as_u16();
    let receipt = response
        .extensions()
        .get::<PaymentReceipt>()
        .cloned()
        .ok_or_else(|| other(format!("GET {path} → {status} without a payment receipt")))?;
    let maximum = receipt.requirements.amount.get();
    let charged = receipt
        .settlement
        .amount
        .map(|a| a.get())
        .ok_or_else(|| other("the metered receipt states no charged amount"))?;
    println!(
        "  GET {path}  402 → authorised up to {} → signed → handler charged {} → settled → {status}",
        usdt(maximum),
        usdt(charged)
    );
    println!("  transaction {}", receipt.settlement.transaction);
    let buyer_after = balance(buyer_address).await?;
    let seller_after = balance(step.seller).await?;
    println!(
        "  agent   {:>14} → {}",
        usdt(buyer_before),
        usdt(buyer_after)
    );
    println!(
        "  seller  {:>14} → {}",
        usdt(seller_before),
        usdt(seller_after)
    );
    if charged >= maximum
        || buyer_after.checked_add(charged) != Some(buyer_before)
        || seller_before.checked_add(charged) != Some(seller_after)
    {
        return Err(other(
            "the metered call did not move exactly the charged amount",
        ));
    }
    println!(
        "  moved exactly the charge: {} (of {} authorised)",
        usdt(charged),
        usdt(maximum)
    );
    Ok(Metered { maximum, charged })
}

fn progress(done: usize, total: usize) -> String {
    let width = 10;
    let filled = done * width / total.max(1);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

fn short(tx: &str) -> String {
    if tx.len() > 14 {
        format!("{}…{}", &tx[..10], &tx[tx.len() - 4..])
    } else {
        tx.to_owned()
    }
}
