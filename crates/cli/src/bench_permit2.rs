//! The Permit2 section of `tollgate bench`: what settling a token without EIP-3009 costs
//! against EIP-3009, measured on one facilitator in one run.
//!
//! One facilitator (`Facilitator::builder().network(..)`, which serves every EVM scheme
//! Tollgate has on the chain: `exact` with both transfer methods, and `upto`, from one signer)
//! settles, one transaction per payment over `POST /settle`, in turn: `exact` in the EIP-3009 test token (the baseline),
//! `exact` through Permit2 in the USDT-like token, and `upto` in the same token charged half of
//! the signed maximum. The rates are reported as ratios to the baseline, and the gas of each
//! settlement is read from its receipt (deterministic, unlike the timings), so the price of
//! Permit2's extra checks and calls is visible both in time and in gas.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use serde_json::{json, Value};
use tollgate::evm::permit2::approve_permit2;
use tollgate::evm::{ExactEvmClient, UptoEvmClient};
use tollgate::facilitator::{http as fhttp, Facilitator};
use tollgate::proto::{PaymentPayload, PaymentRequirements, Scheme};

use super::{err, measure, serve, BenchError, Measured};
use crate::bench_rig::{signer, BenchChain};

/// The dev accounts that pay (as in the other sections; 0 is the facilitator's key, 9 the
/// payee).
const PAYERS: std::ops::RangeInclusive<usize> = 1..=8;
/// The price of each payment, and the `upto` maximum (atomic units, 6 decimals).
const PRICE: u64 = 1_000;
/// The `upto` charge: half the maximum, so the charged path (not "settle the maximum") runs.
const UPTO_MAXIMUM: u64 = 2 * PRICE;

/// The section's knobs, from `tollgate bench`'s options.
pub(super) struct Permit2Args {
    /// Settlements per method.
    pub payments: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Rounds in which the methods take turns.
const ROUNDS: usize = 3;

/// One way to pay, and what its measured settlements added up to.
struct Method {
    name: &'static str,
    /// What the buyer signs (for `upto`: the maximum).
    signed: PaymentRequirements,
    /// What the seller settles with (for `upto`: the charge).
    settled: PaymentRequirements,
    count: usize,
    took: Duration,
    transactions: usize,
    gas: u128,
}

impl Method {
    fn new(name: &'static str, signed: PaymentRequirements, settled: PaymentRequirements) -> Self {
        Self {
            name,
            signed,
            settled,
            count: 0,
            took: Duration::ZERO,
            transactions: 0,
            gas: 0,
        }
    }

    fn per_sec(&self) -> f64 {
        self.count as f64 / self.took.as_secs_f64()
    }

    fn gas_per_payment(&self) -> f64 {
        self.gas as f64 / self.count.max(1) as f64
    }

    /// Settles `payments` (each must succeed with a mined transaction) and, when `counted`,
    /// adds their time, transactions and gas to the method's totals.
    async fn settle_round(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        provider: &alloy::providers::DynProvider,
        payments: Vec<PaymentPayload>,
        concurrency: usize,
        counted: bool,
    ) -> Result<(), BenchError> {
        let (measured, transactions, gas) = settle(
            self.name,
            http,
            url,
            provider,
            payments,
            &self.settled,
            concurrency,
        )
        .await?;
        if counted {
            self.count += measured.count;
            self.took += measured.took;
            self.transactions += transactions;
            self.gas += gas;
        }
        Ok(())
    }
}

/// Signs `count` payments for `method`, spread over the payers (`offset` varies the first).
async fn sign(
    method: &Method,
    count: usize,
    offset: usize,
) -> Result<Vec<PaymentPayload>, BenchError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let payer = signer(PAYERS.start() + (i + offset) % PAYERS.clone().count());
        let payment = if method.signed.scheme == Scheme::Upto {
            UptoEvmClient::new(payer)
                .sign(&method.signed, None)
                .await
                .map_err(err)?
        } else {
            ExactEvmClient::new(payer)
                .sign(&method.signed, None)
                .await
                .map_err(err)?
        };
        out.push(payment);
    }
    Ok(out)
}

/// Runs the section and prints it.
pub(super) async fn run(
    chain: &BenchChain,
    dir: &Path,
    args: &Permit2Args,
) -> Result<(), BenchError> {
    if args.payments == 0 {
        // No payments, no rates to compare.
        return Ok(());
    }
    // Runs after the scenarios that settle with key 0 have finished: each send reads the
    // node's pending nonce, so two facilitators never race for one nonce.
    let facilitator = Facilitator::builder()
        .network(chain.endpoint(), signer(0))
        .ledger_path(dir.join("bench-ledger-permit2.db"))
        .build()
        .await
        .map_err(err)?;
    let url = serve(fhttp::router(facilitator, fhttp::HttpLimits::default())).await?;
    let http = reqwest::Client::new();

    // The payers' one-time approval of Permit2 for the token: an explicit step, as for any
    // payer (no gas-sponsoring extension is used here).
    for i in PAYERS {
        approve_permit2(chain.endpoint(), signer(i), chain.usdt, U256::MAX)
            .await
            .map_err(|e| err(format!("approving Permit2 for payer {i}: {e}")))?;
    }

    let network = chain.caip2();
    let payee = signer(9).address();
    let eip3009: PaymentRequirements = requirements(json!({
        "scheme": "exact", "network": network, "asset": chain.usdc.to_string(),
        "amount": PRICE.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 300,
        "extra": { "name": "USD Coin", "version": "2" },
    }))?;
    let permit2: PaymentRequirements = requirements(json!({
        "scheme": "exact", "network": network, "asset": chain.usdt.to_string(),
        "amount": PRICE.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 300,
        "extra": { "assetTransferMethod": "permit2" },
    }))?;
    // `upto` names the facilitator that may settle it: as a seller does, from `/supported`.
    let supported: Value = http
        .get(format!("{url}/supported"))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let facilitator_address = supported["kinds"]
        .as_array()
        .and_then(|kinds| {
            kinds
                .iter()
                .find(|k| k["scheme"] == "upto" && k["network"] == json!(network))
        })
        .and_then(|k| k["extra"]["facilitatorAddress"].as_str())
        .ok_or_else(|| {
            err(format!(
                "the facilitator announces no upto on {network}: {supported}"
            ))
        })?
        .to_owned();
    let upto: PaymentRequirements = requirements(json!({
        "scheme": "upto", "network": network, "asset": chain.usdt.to_string(),
        "amount": UPTO_MAXIMUM.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 300,
        "extra": { "facilitatorAddress": facilitator_address },
    }))?;
    // The seller settles the charge: the requirements of `/settle` carry the actual amount.
    let mut upto_charged = upto.clone();
    upto_charged.amount = PRICE.to_string().parse().map_err(err)?;

    let provider = ProviderBuilder::new()
        .connect_http(chain.endpoint().parse().map_err(err)?)
        .erased();
    let c = args.concurrency;
    let mut methods = [
        Method::new(
            "POST /settle exact, EIP-3009 (USDC, baseline)",
            eip3009.clone(),
            eip3009,
        ),
        Method::new(
            "POST /settle exact, Permit2 (USDT)",
            permit2.clone(),
            permit2,
        ),
        Method::new(
            "POST /settle upto, Permit2 (USDT, half the maximum)",
            upto,
            upto_charged,
        ),
    ];
    // Unmeasured warm-up (connections, the ledger, the signer's nonce), one payment per
    // concurrent slot and method; then the methods take turns over the rounds, so neither the
    // warm-up nor a drift of the machine's speed favours the one measured first.
    for method in &mut methods {
        let warm_up = sign(method, c.clamp(1, 16), 0).await?;
        method
            .settle_round(&http, &url, &provider, warm_up, c, false)
            .await?;
    }
    let rounds = ROUNDS.min(args.payments);
    for round in 0..rounds {
        let count = args.payments / rounds + usize::from(round < args.payments % rounds);
        for method in &mut methods {
            let payments = sign(method, count, round).await?;
            method
                .settle_round(&http, &url, &provider, payments, c, true)
                .await?;
        }
    }
    let [baseline, exact, metered] = &methods;

    println!(
        "\nPermit2 (a token without EIP-3009; one facilitator, one tx per payment, concurrency {c}):"
    );
    println!(
        "{:<52} {:>10} {:>8} {:>10} {:>12} {:>14}",
        "method", "payments", "txs", "settles/s", "vs EIP-3009", "gas/payment"
    );
    for m in [baseline, exact, metered] {
        println!(
            "{:<52} {:>10} {:>8} {:>10.1} {:>11.3}x {:>14.0}",
            m.name,
            m.count,
            m.transactions,
            m.per_sec(),
            m.per_sec() / baseline.per_sec(),
            m.gas_per_payment()
        );
    }
    println!(
        "Permit2 exact /settle = {:.3}x EIP-3009 /settle; upto /settle = {:.3}x EIP-3009 /settle \
         (gas {:.2}x and {:.2}x)",
        exact.per_sec() / baseline.per_sec(),
        metered.per_sec() / baseline.per_sec(),
        exact.gas_per_payment() / baseline.gas_per_payment(),
        metered.gas_per_payment() / baseline.gas_per_payment(),
    );
    Ok(())
}

fn requirements(value: Value) -> Result<PaymentRequirements, BenchError> {
    serde_json::from_value(value).map_err(|e| err(format!("bench requirements: {e}")))
}

/// Settles every payment over `POST /settle` (each must succeed with a transaction), then
/// reads the gas of those transactions from their receipts: the measurement, the distinct
/// transactions and their total gas.
async fn settle(
    name: &'static str,
    http: &reqwest::Client,
    url: &str,
    provider: &alloy::providers::DynProvider,
    payments: Vec<PaymentPayload>,
    requirements: &PaymentRequirements,
    concurrency: usize,
) -> Result<(Measured, usize, u128), BenchError> {
    let count = payments.len();
    let payments = Arc::new(payments);
    let hashes = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let measured = measure(name, count, concurrency, |i| {
        let (http, url, payments, req, hashes) = (
            http.clone(),
            url.to_owned(),
            payments.clone(),
            requirements.clone(),
            hashes.clone(),
        );
        async move {
            let body = json!({
                "x402Version": 2, "paymentPayload": payments[i], "paymentRequirements": req,
            });
            let response = http
                .post(format!("{url}/settle"))
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let answer: Value = response.json().await.map_err(|e| e.to_string())?;
            let hash = answer["transaction"]
                .as_str()
                .and_then(|t| t.parse::<B256>().ok())
                .filter(|_| status.is_success() && answer["success"] == json!(true))
                .ok_or_else(|| format!("HTTP {status}: {answer}"))?;
            hashes.lock().map_err(|_| "poisoned".to_owned())?.push(hash);
            Ok(())
        }
    })
    .await?;
    let mut hashes = std::mem::take(&mut *hashes.lock().map_err(|_| err("poisoned"))?);
    hashes.sort();
    hashes.dedup();
    let mut gas = 0u128;
    for hash in &hashes {
        let receipt = provider
            .get_transaction_receipt(*hash)
            .await
            .map_err(err)?
            .ok_or_else(|| err(format!("no receipt for settled transaction {hash}")))?;
        if !receipt.status() {
            return Err(err(format!("{name}: transaction {hash} reverted")));
        }
        gas += u128::from(receipt.gas_used);
    }
    Ok((measured, hashes.len(), gas))
}
