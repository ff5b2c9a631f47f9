//! The Solana section of `tollgate bench`: `exact` on the embedded Solana devnet (litesvm
//! running the real SPL Token program, in this process), its facilitator's `POST /verify` and
//! `POST /settle` as ratios to the EVM ones measured earlier in the same run.
//!
//! Measured as the EVM scenarios are: one Tollgate facilitator (`exact` on the cluster, a
//! SQLite ledger) served over loopback HTTP, the payments signed before the clock starts (dev
//! accounts 1–8 pay account 9, as on EVM), `--concurrency` requests in flight. `/verify`
//! takes `--requests` requests spread over the pre-signed payments; `/settle` settles `N`
//! fresh ones, each answered only once the cluster has confirmed its transaction. Afterwards
//! the section checks that every settlement has its own transaction and that the payee's
//! balance grew by exactly `N` payments.
//!
//! A Solana payment carries a recent blockhash and cannot land once 150 slots (60 s at the
//! devnet's 400 ms) have passed, so each scenario signs its payments right before it runs.

use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tollgate::core::{NetworkPattern, SchemeFacilitator};
use tollgate::facilitator::{http as fhttp, Facilitator};
use tollgate::proto::{PaymentPayload, PaymentRequirements};
use tollgate::svm::{ExactSvmClient, ExactSvmFacilitator, SvmFacilitatorConfig};
use tollgate_svm_devnet::SvmDevnet;

use super::{err, measure, serve, BenchError, Measured};

/// The dev accounts that pay (as on EVM: 0 is the facilitator's key, here the fee payer; 9 is
/// the payee).
const PAYERS: std::ops::RangeInclusive<usize> = 1..=8;
/// The payee's dev account.
const PAYEE: usize = 9;
/// The price of each payment (atomic units of the devnet's USDC, 6 decimals), as on EVM.
const PRICE: u64 = 1_000;

/// The section's knobs, from `tollgate bench`'s options.
pub(super) struct SolanaArgs<'a> {
    /// Payments settled (and pre-signed for `/verify`).
    pub payments: usize,
    /// `/verify` requests, as for the EVM `/verify`.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The EVM chain the baselines ran on (`devnet`, `anvil`), for the report.
    pub evm_backend: &'static str,
    /// The run's EVM baselines: `POST /verify` and `POST /settle` (one transaction per
    /// payment) on Tollgate's facilitator over HTTP.
    pub evm_verify: &'a Measured,
    pub evm_settle: &'a Measured,
}

/// Signs `count` distinct payments (each client draws a random memo, so two payments of the
/// same payer and amount are two transactions), spread over the payers.
async fn sign(
    clients: &[ExactSvmClient],
    requirements: &PaymentRequirements,
    count: usize,
) -> Result<Vec<PaymentPayload>, BenchError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (payment, _) = clients[i % clients.len()]
            .sign_payment(requirements, None)
            .await
            .map_err(|e| err(format!("signing a Solana payment: {e}")))?;
        out.push(payment);
    }
    Ok(out)
}

/// `POST {url}/verify` of `payment`; it must answer 200 with `isValid: true`.
async fn verify(
    http: &reqwest::Client,
    url: &str,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> Result<(), String> {
    let body =
        json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements });
    let response = http
        .post(format!("{url}/verify"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() && answer["isValid"] == json!(true) {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {answer}"))
    }
}

/// Runs the section and prints it.
pub(super) async fn run(dir: &std::path::Path, args: &SolanaArgs<'_>) -> Result<(), BenchError> {
    if args.payments == 0 {
        return Ok(());
    }
    let devnet = SvmDevnet::start()
        .await
        .map_err(|e| err(format!("the Solana devnet did not start: {e}")))?;
    let scheme = Arc::new(
        ExactSvmFacilitator::connect(
            devnet.url(),
            vec![devnet.keypair(0)],
            SvmFacilitatorConfig::default(),
        )
        .await
        .map_err(err)?,
    );
    let facilitator = Facilitator::builder()
        .scheme(
            NetworkPattern::One(scheme.network().clone()),
            scheme.clone() as Arc<dyn SchemeFacilitator>,
        )
        .chain(scheme.clone())
        .ledger_path(dir.join("bench-ledger-solana.db"))
        .build()
        .await
        .map_err(err)?;
    let url = serve(fhttp::router(facilitator, fhttp::HttpLimits::default())).await?;

    let accounts = devnet.accounts();
    let mint = devnet.usdc_mint();
    let payee = accounts[PAYEE].address;
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": devnet.caip2(), "asset": mint.to_string(),
        "amount": PRICE.to_string(), "payTo": payee.to_string(), "maxTimeoutSeconds": 60,
        "extra": { "feePayer": accounts[0].address.to_string() },
    }))
    .map_err(|e| err(format!("bench requirements: {e}")))?;
    let clients: Vec<ExactSvmClient> = PAYERS
        .map(|i| ExactSvmClient::new(devnet.keypair(i), devnet.url()))
        .collect();
    let http = reqwest::Client::new();
    let c = args.concurrency;

    // `/verify`: `--requests` requests over the pre-signed payments (verifying moves nothing,
    // so a payment may be verified more than once, as in the EVM scenario). An unmeasured
    // round first, so one-time costs (connections, the cluster's first executions) fall
    // outside the measurement.
    let to_verify = Arc::new(sign(&clients, &requirements, args.payments.min(500)).await?);
    stream::iter(to_verify.iter().take(c.max(1)))
        .map(|payment| verify(&http, &url, payment, &requirements))
        .buffer_unordered(c.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map_err(|e| err(format!("Solana /verify warm-up: {e}")))?;
    let verified = measure("Solana: facilitator POST /verify", args.requests, c, |i| {
        let (http, url, payments, req) = (
            http.clone(),
            url.clone(),
            to_verify.clone(),
            requirements.clone(),
        );
        async move { verify(&http, &url, &payments[i % payments.len()], &req).await }
    })
    .await?;

    // `/settle`: fresh payments, each answered once its transaction is confirmed.
    let before = devnet.token_balance(&payee, &mint);
    let to_settle = Arc::new(sign(&clients, &requirements, args.payments).await?);
    let signatures = Arc::new(Mutex::new(Vec::with_capacity(args.payments)));
    let settled = measure(
        "Solana: facilitator POST /settle (confirmed)",
        args.payments,
        c,
        |i| {
            let (http, url, payments, req, signatures) = (
                http.clone(),
                url.clone(),
                to_settle.clone(),
                requirements.clone(),
                signatures.clone(),
            );
            async move {
                let body = json!({ "x402Version": 2, "paymentPayload": payments[i], "paymentRequirements": req });
                let response = http
                    .post(format!("{url}/settle"))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let answer: Value = response.json().await.map_err(|e| e.to_string())?;
                let signature = answer["transaction"]
                    .as_str()
                    .filter(|s| {
                        status.is_success() && answer["success"] == json!(true) && !s.is_empty()
                    })
                    .ok_or_else(|| format!("HTTP {status}: {answer}"))?
                    .to_owned();
                signatures
                    .lock()
                    .map_err(|_| "poisoned".to_owned())?
                    .push(signature);
                Ok(())
            }
        },
    )
    .await?;
    let mut signatures = std::mem::take(&mut *signatures.lock().map_err(|_| err("poisoned"))?);
    signatures.sort();
    signatures.dedup();
    let received = devnet.token_balance(&payee, &mint).saturating_sub(before);
    let expected = PRICE.saturating_mul(args.payments as u64);
    if signatures.len() != args.payments || received != expected {
        return Err(err(format!(
            "Solana /settle: {} settlements answered with {} distinct transactions and moved {} \
             atomic units to the payee, expected {} of each and {expected}",
            args.payments,
            signatures.len(),
            received,
            args.payments
        )));
    }

    println!(
        "\nSolana (exact, SPL Token on the embedded litesvm devnet; one facilitator over HTTP, \
         SQLite ledger, concurrency {c}; payments pre-signed):"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12}",
        "scenario", "count", "req/s", "vs EVM"
    );
    let evm = args.evm_backend;
    for (name, m, baseline) in [
        (
            format!("EVM ({evm}) POST /verify"),
            args.evm_verify,
            args.evm_verify,
        ),
        (
            format!("EVM ({evm}) POST /settle (one tx per payment)"),
            args.evm_settle,
            args.evm_settle,
        ),
        ("Solana POST /verify".to_owned(), &verified, args.evm_verify),
        (
            "Solana POST /settle (confirmed)".to_owned(),
            &settled,
            args.evm_settle,
        ),
    ] {
        println!(
            "{name:<52} {:>10} {:>10.0} {:>11.3}x",
            m.count,
            m.per_sec(),
            m.per_sec() / baseline.per_sec()
        );
    }
    println!(
        "Solana settled: {} of {} payments, each in its own confirmed transaction; payee +{received} \
         atomic units",
        signatures.len(),
        args.payments,
    );
    println!(
        "Solana /verify = {:.3}x EVM /verify; Solana /settle = {:.3}x EVM /settle (EVM on {evm})",
        verified.per_sec() / args.evm_verify.per_sec(),
        settled.per_sec() / args.evm_settle.per_sec(),
    );
    Ok(())
}
