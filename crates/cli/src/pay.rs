//! `tollgate pay URL`: a curl that pays.
//!
//! Exit codes: 0 success, 1 usage or setup error, 2 refused by the spending policy (or
//! declined), 3 the payment failed (the server still answered 402), 4 an HTTP or server error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use tollgate::evm::ExactEvmClient;
use tollgate::proto::money::format_atomic;
use tollgate::proto::{header, AnyPaymentRequired, Network, PaymentRequirements};
use tollgate_client::{
    PaymentError, PaymentReceipt, Priced, SpendLedger, SpendingPolicy, X402Middleware,
};

/// Options of `tollgate pay`.
#[derive(Debug, clap::Args)]
pub struct PayArgs {
    /// The URL to fetch (and pay for).
    #[arg(required_unless_present = "history")]
    url: Option<String>,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Write the response body to this file instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Print the response status and headers before the body.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// Most to pay for this request, e.g. "0.05 USDC".
    #[arg(long)]
    max: Option<String>,
    /// Spending budget, e.g. "5 USDC" (total) or "5 USDC/day" ("/hour", "/day", "/week").
    #[arg(long)]
    budget: Vec<String>,
    /// Only allow these networks (CAIP-2, repeatable).
    #[arg(long = "network")]
    networks: Vec<String>,
    /// Teach the policy an asset: NETWORK/ADDRESS/SYMBOL/DECIMALS, e.g.
    /// eip155:31337/0x5FbDB2315678afecb367f032d93F642f64180aa3/USDC/6.
    #[arg(long = "asset")]
    assets: Vec<String>,
    /// Show the price and what would be paid; sign nothing.
    #[arg(long)]
    dry_run: bool,
    /// Pay without asking, even on a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print a JSON summary instead of the body.
    #[arg(long)]
    json: bool,
    /// List the spend ledger and exit.
    #[arg(long)]
    history: bool,
    /// The spend ledger (SQLite; created if missing).
    #[arg(long, default_value = "tollgate-spend.db")]
    ledger: PathBuf,
    /// Environment variable holding the payer's private key.
    #[arg(long, default_value = "TOLLGATE_PAY_KEY")]
    key_env: String,
    /// File holding the payer's private key (instead of --key-env).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

const EXIT_REFUSED: u8 = 2;
const EXIT_PAYMENT_FAILED: u8 = 3;
const EXIT_HTTP: u8 = 4;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate pay: {message}");
    ExitCode::from(code)
}

pub async fn run(args: PayArgs) -> ExitCode {
    let ledger = match SpendLedger::open(&args.ledger) {
        Ok(l) => l,
        Err(e) => return fail(1, e),
    };
    if args.history {
        return history(&ledger, args.json);
    }
    let Some(url) = args.url.clone() else {
        return fail(1, "a URL is required");
    };
    let policy = match build_policy(&args) {
        Ok(p) => p,
        Err(e) => return fail(1, e),
    };
    let method = match reqwest::Method::from_bytes(args.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return fail(1, format!("invalid method {:?}", args.method)),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return fail(1, format!("header {h:?} is not \"Name: value\""));
        };
        match (
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
            reqwest::header::HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return fail(1, format!("invalid header {h:?}")),
        }
    }

    if args.dry_run {
        return dry_run(&url, method, headers, args.data.clone(), &policy, args.json).await;
    }

    let key = match load_key(&args) {
        Ok(k) => k,
        Err(e) => return fail(1, e),
    };
    let mut middleware = X402Middleware::new(ExactEvmClient::new(key), policy, ledger);
    if !args.yes && std::io::stdin().is_terminal() {
        middleware = middleware.with_approval(Arc::new(confirm));
    }
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let mut request = client.request(method, &url).headers(headers);
    if let Some(data) = args.data.clone() {
        request = request.body(data);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(reqwest_middleware::Error::Middleware(e)) => {
            return match e.downcast::<PaymentError>() {
                Ok(PaymentError::Refused(r)) => fail(EXIT_REFUSED, r),
                Ok(other) => fail(EXIT_PAYMENT_FAILED, other),
                Err(e) => fail(EXIT_PAYMENT_FAILED, e),
            }
        }
        Err(e) => return fail(EXIT_HTTP, e),
    };
    let status = response.status();
    let receipt = response.extensions().get::<PaymentReceipt>().cloned();
    let response_headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return fail(EXIT_HTTP, e),
    };
    let code = if status.is_success() {
        0
    } else if status.as_u16() == 402 {
        EXIT_PAYMENT_FAILED
    } else {
        EXIT_HTTP
    };
    if args.json {
        let summary = serde_json::json!({
            "status": status.as_u16(),
            "paid": receipt.as_ref().map(|r| serde_json::json!({
                "transaction": r.settlement.transaction,
                "network": r.settlement.network.to_string(),
                "payer": r.settlement.payer,
                "amount": r.requirements.amount.to_string(),
                "asset": r.requirements.asset,
                "payTo": r.requirements.pay_to,
            })),
            "body": String::from_utf8_lossy(&body),
        });
        println!("{summary}");
    } else {
        if args.include {
            println!("HTTP {status}");
            for (name, value) in &response_headers {
                println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
            }
            println!();
        }
        if let Some(path) = &args.output {
            if let Err(e) = std::fs::write(path, &body) {
                return fail(1, format!("cannot write {}: {e}", path.display()));
            }
        } else {
            let _ = std::io::stdout().write_all(&body);
        }
        if let Some(r) = &receipt {
            eprintln!(
                "paid {} (asset {}) on {} in {}",
                r.requirements.amount,
                r.requirements.asset,
                r.settlement.network,
                r.settlement.transaction
            );
        }
    }
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        fail(code, format!("server answered {status}"))
    }
}

fn build_policy(args: &PayArgs) -> Result<SpendingPolicy, String> {
    let mut policy = SpendingPolicy::new();
    for spec in &args.assets {
        let parts: Vec<&str> = spec.split('/').collect();
        let [network, address, symbol, decimals] = parts.as_slice() else {
            return Err(format!(
                "--asset {spec:?}: expected NETWORK/ADDRESS/SYMBOL/DECIMALS"
            ));
        };
        let network: Network = network
            .parse()
            .map_err(|e| format!("--asset {spec:?}: {e}"))?;
        let decimals: u8 = decimals
            .parse()
            .map_err(|_| format!("--asset {spec:?}: decimals must be 0-255"))?;
        policy = policy.register_asset(network, address, symbol, decimals);
    }
    if let Some(max) = &args.max {
        policy = policy
            .max_per_request(max)
            .map_err(|e| format!("--max: {e}"))?;
    }
    for budget in &args.budget {
        let (amount, window) = match budget.split_once('/') {
            None => (budget.as_str(), None),
            Some((a, "hour")) => (a, Some(Duration::from_secs(3600))),
            Some((a, "day")) => (a, Some(Duration::from_secs(86_400))),
            Some((a, "week")) => (a, Some(Duration::from_secs(7 * 86_400))),
            Some((_, w)) => {
                return Err(format!("--budget: unknown window {w:?} (hour, day, week)"))
            }
        };
        policy = policy
            .budget(amount, window)
            .map_err(|e| format!("--budget: {e}"))?;
    }
    if !args.networks.is_empty() {
        let networks = args
            .networks
            .iter()
            .map(|n| n.parse::<Network>().map_err(|e| format!("--network: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        policy = policy.allow_networks(networks);
    }
    Ok(policy)
}

fn load_key(args: &PayArgs) -> Result<PrivateKeySigner, String> {
    let (source, raw) = match &args.key_file {
        Some(path) => (
            format!("key file {}", path.display()),
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
        ),
        None => (
            format!("environment variable {}", args.key_env),
            std::env::var(&args.key_env).map_err(|_| {
                format!(
                    "no payer key: set {} or pass --key-file (or use --dry-run)",
                    args.key_env
                )
            })?,
        ),
    };
    raw.trim()
        .parse()
        .map_err(|_| format!("{source} does not hold a valid private key"))
}

fn confirm(priced: &Priced) -> bool {
    let r = &priced.requirements;
    eprint!(
        "Pay {} {} to {} on {}? [y/N] ",
        format_atomic(r.amount.get(), priced.asset.decimals),
        priced.asset.symbol,
        r.pay_to,
        r.network
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

async fn dry_run(
    url: &str,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    data: Option<String>,
    policy: &SpendingPolicy,
    json: bool,
) -> ExitCode {
    let mut request = reqwest::Client::new().request(method, url).headers(headers);
    if let Some(d) = data {
        request = request.body(d);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return fail(EXIT_HTTP, e),
    };
    if response.status().as_u16() != 402 {
        let status = response.status();
        if json {
            println!(
                "{}",
                serde_json::json!({ "status": status.as_u16(), "paymentRequired": false })
            );
        } else {
            println!("{url} answered {status}: no payment required");
        }
        return if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_HTTP)
        };
    }
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    let accepts: Vec<PaymentRequirements> = match header::payment_required_from_headers(&headers) {
        Some(Ok(v2)) => v2.accepts,
        _ => match header::decode_json::<AnyPaymentRequired>(&body) {
            Ok(AnyPaymentRequired::V2(v2)) => v2.accepts,
            Ok(AnyPaymentRequired::V1(v1)) => v1.accepts.iter().map(|r| r.to_v2().0).collect(),
            Err(e) => return fail(EXIT_PAYMENT_FAILED, format!("unreadable 402: {e}")),
        },
    };
    let choice = policy.rank(accepts.clone());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "status": 402,
                "accepts": accepts,
                "wouldPay": choice.as_ref().ok().and_then(|c| c.first()).map(|p| &p.requirements),
                "refusal": choice.as_ref().err().map(|r| r.to_string()),
            })
        );
    } else {
        println!("{url} requires payment; options:");
        for r in &accepts {
            println!(
                "  {} {} of asset {} on {} to {}",
                r.scheme, r.amount, r.asset, r.network, r.pay_to
            );
        }
        match &choice {
            Ok(c) => {
                let p = &c[0];
                println!(
                    "would pay {} {} on {} (dry run: nothing signed)",
                    format_atomic(p.requirements.amount.get(), p.asset.decimals),
                    p.asset.symbol,
                    p.requirements.network
                );
            }
            Err(r) => println!("would refuse: {r}"),
        }
    }
    match choice {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_REFUSED),
    }
}

fn history(ledger: &SpendLedger, json: bool) -> ExitCode {
    let records = match ledger.history(1000) {
        Ok(r) => r,
        Err(e) => return fail(1, e),
    };
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "at": r.at, "method": r.method, "url": r.url, "payee": r.payee,
                    "network": r.network, "asset": r.asset, "symbol": r.symbol,
                    "amount": r.amount, "status": r.status, "transaction": r.tx_hash,
                    "reason": r.reason,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for r in &records {
            println!(
                "#{:<4} {:<8} {} {:<40} {} {} {}",
                r.id,
                r.status,
                r.method,
                r.url,
                r.display_amount,
                r.symbol,
                r.tx_hash.as_deref().or(r.reason.as_deref()).unwrap_or("")
            );
        }
    }
    ExitCode::SUCCESS
}
