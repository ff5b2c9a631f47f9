//! `tollgate pay URL`: a curl that pays.
//!
//! Exit codes: 0 success, 1 usage or setup error, 2 refused by the spending policy (or
//! declined), 3 the payment failed (the server still answered 402), 4 an HTTP or server error,
//! 5 the seller's identity gate refused the payer (`403` to the paid request; the failed rules
//! and their remedies are printed, and with `--json` are in the summary's `identityRefused`).
//!
//! Identity headers (`--identity-header X-Operator-Token=env:OP_TOKEN`, also `@file`) are sent
//! only with the payment, and only when the chosen option's `payTo` is one of `--identity-for`;
//! with them configured, redirects are followed within the same host only, so a payee cannot
//! redirect them elsewhere.
//!
//! With `--json`, stdout always carries one JSON summary, failures included, so a script never
//! has to scrape stderr. Amounts are shown in the token's units when its decimals are known
//! (`0.001 USDC`), and EVM addresses in their EIP-55 checksummed form throughout.
//!
//! A payment whose outcome is ambiguous (the seller answered `5xx`, or nothing) stays reserved
//! in the spend ledger. Give the chain's RPC URL (`--rpc-url`, `TOLLGATE_RPC_URL`) and the next
//! run (or `--reconcile`) settles it from the chain; without one it stays reserved until the
//! authorization has expired.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use tollgate::evm::ExactEvmClient;
use tollgate::proto::money::format_atomic;
use tollgate::proto::{header, AnyPaymentRequired, Network, PaymentRequirements};
use tollgate_client::{
    IdentityCheck, IdentityHeaders, PaymentError, PaymentReceipt, PendingPayment, Priced,
    ReconcileReport, Refusal, SpendLedger, SpendingPolicy, Wallets, X402Middleware,
};

/// Options of `tollgate pay`.
#[derive(Debug, clap::Args)]
pub struct PayArgs {
    /// The URL to fetch (and pay for).
    #[arg(required_unless_present_any = ["history", "reconcile", "approve_permit2", "channels"])]
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
    /// Most to pay for this request, e.g. "0.05 USDC". Without it a payment is capped at 0.1 of
    /// its token (the spending policy's default); raise it here to pay more.
    #[arg(long)]
    max: Option<String>,
    /// Spending budget, e.g. "5 USDC" (total) or "5 USDC/day" ("/hour", "/day", "/week").
    #[arg(long)]
    budget: Vec<String>,
    /// Only allow these networks (CAIP-2, repeatable).
    #[arg(long = "network")]
    networks: Vec<String>,
    /// Most to deposit at once into a payment channel (`batch-settlement` offers), e.g.
    /// "1 USDC"; without it, 1 of the token. A deposit counts against --budget when it is made;
    /// the requests it then pays for do not count again, and a refund gives it back.
    #[arg(long)]
    max_deposit: Option<String>,
    /// How many requests' worth a payment channel is funded with when it is opened or runs dry
    /// (within --max-deposit). The channel is kept in the ledger and reused by later runs.
    #[arg(long, default_value_t = 100)]
    deposit_requests: u64,
    /// Ask URL's seller to refund the payment channel this ledger pays it through (everything
    /// not yet charged, or --refund-amount), print what came back, and exit.
    #[arg(long)]
    refund: bool,
    /// With --refund: how much to return, in atomic units of the token (default: all).
    #[arg(long, requires = "refund")]
    refund_amount: Option<u128>,
    /// List the payment channels in the ledger (deposited, charged, balance) and exit.
    #[arg(long)]
    channels: bool,
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
    /// JSON-RPC endpoint of a payment network, used to settle payments whose outcome was
    /// ambiguous (a 5xx after paying) from the chain: `URL` (its chain id is asked) or
    /// `NETWORK=URL`; repeatable or comma-separated. Without one, such a payment stays reserved
    /// against the budgets until its authorization has expired.
    #[arg(long = "rpc-url", env = "TOLLGATE_RPC_URL", value_delimiter = ',')]
    rpc_urls: Vec<String>,
    /// Settle pending payments from the chain (needs --rpc-url), print what changed, and exit
    /// (with --history, list the ledger after).
    #[arg(long)]
    reconcile: bool,
    /// The spend ledger (SQLite; created if missing).
    #[arg(long, default_value = "tollgate-spend.db")]
    ledger: PathBuf,
    /// Environment variable holding the payer's private key.
    #[arg(long, default_value = "TOLLGATE_PAY_KEY")]
    key_env: String,
    /// File holding the payer's private key (instead of --key-env).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Environment variable holding the payer's Solana keypair (base58, or the Solana CLI's
    /// JSON array of 64 bytes), for `exact` offers on `solana:` networks; needs
    /// --solana-rpc-url. Without an EVM key, only Solana offers are paid.
    #[cfg(feature = "solana")]
    #[arg(long, default_value = "TOLLGATE_SOLANA_PAY_KEY")]
    solana_key_env: String,
    /// File holding the payer's Solana keypair (instead of --solana-key-env).
    #[cfg(feature = "solana")]
    #[arg(long)]
    solana_key_file: Option<PathBuf>,
    /// The Solana JSON-RPC endpoint the payer reads the mint and a recent blockhash from.
    /// Solana offers are paid only when it is set.
    #[cfg(feature = "solana")]
    #[arg(long, env = "TOLLGATE_SOLANA_RPC_URL")]
    solana_rpc_url: Option<String>,
    /// Identity header for sellers that gate on it, NAME=VALUE (repeatable): NAME is
    /// X-Operator-Token or X-Wallet-Address; VALUE is literal, `@FILE` (read from a file) or
    /// `env:VAR` (read from the environment), so a secret need not be on the command line.
    /// Sent only with the payment, and only to the payees of --identity-for; never by default.
    #[arg(long = "identity-header", value_name = "NAME=VALUE")]
    identity_headers: Vec<String>,
    /// A payee (payTo address) that may receive the identity headers (repeatable).
    #[arg(long = "identity-for", value_name = "PAYEE")]
    identity_for: Vec<String>,
    /// The payer's one-time approval of the canonical Permit2 contract for a token, which
    /// Permit2 payments (`exact` with `assetTransferMethod: permit2`, and `upto`) need: sent
    /// from the payer's key (it pays the gas) through the --rpc-url of the token's chain, and
    /// awaited. Then pays URL if one is given, or exits. Never done without this option.
    #[arg(long = "approve-permit2", value_name = "TOKEN")]
    approve_permit2: Option<String>,
    /// The most Permit2 may move after --approve-permit2, in atomic units of the token, or
    /// `max` (the usual: Permit2 itself moves only what the payer signs for, each time).
    #[arg(
        long = "approve-amount",
        default_value = "max",
        requires = "approve_permit2"
    )]
    approve_amount: String,
}

const EXIT_REFUSED: u8 = 2;
const EXIT_PAYMENT_FAILED: u8 = 3;
const EXIT_HTTP: u8 = 4;
const EXIT_IDENTITY_REFUSED: u8 = 5;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate pay: {message}");
    ExitCode::from(code)
}

/// Fails with `message` on stderr and, with `--json`, a summary on stdout.
fn fail_as(json: bool, code: u8, message: impl std::fmt::Display) -> ExitCode {
    if json {
        println!(
            "{}",
            json!({ "status": Value::Null, "paid": Value::Null, "error": message.to_string(),
                    "exitCode": code })
        );
    }
    fail(code, message)
}

pub async fn run(args: PayArgs) -> ExitCode {
    let ledger = match SpendLedger::open(&args.ledger) {
        Ok(l) => l,
        Err(e) => return fail_as(args.json, 1, e),
    };
    let rpc_urls = resolve_rpc_urls(&args.rpc_urls).await;
    if args.reconcile {
        // Asking the chain about an authorization needs no key: any wallet of the scheme does.
        let checker = with_rpc_urls(
            X402Middleware::new(
                wallets(PrivateKeySigner::random()),
                SpendingPolicy::new(),
                ledger.clone(),
            ),
            &rpc_urls,
        );
        match checker.reconcile().await {
            Ok(report) => print_reconcile(&report, args.json && !args.history),
            Err(e) => return fail_as(args.json, 1, e),
        }
        if !args.history {
            return ExitCode::SUCCESS;
        }
    }
    if args.history {
        return history(&ledger, args.json);
    }
    if args.channels {
        return channels(&ledger, args.json);
    }
    if let Some(token) = &args.approve_permit2 {
        if let Err(e) = approve(&args, token, &rpc_urls).await {
            return fail_as(args.json, 1, e);
        }
        if args.url.is_none() {
            return ExitCode::SUCCESS;
        }
    }
    let Some(url) = args.url.clone() else {
        return fail(1, "a URL is required");
    };
    let policy = match build_policy(&args) {
        Ok(p) => p,
        Err(e) => return fail_as(args.json, 1, e),
    };
    let method = match reqwest::Method::from_bytes(args.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return fail_as(args.json, 1, format!("invalid method {:?}", args.method)),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return fail_as(args.json, 1, format!("header {h:?} is not \"Name: value\""));
        };
        match (
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
            reqwest::header::HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return fail_as(args.json, 1, format!("invalid header {h:?}")),
        }
    }

    if args.dry_run {
        return dry_run(&url, method, headers, args.data.clone(), &policy, args.json).await;
    }

    let identity = match identity_headers(&args.identity_headers, &args.identity_for) {
        Ok(i) => i,
        Err(e) => return fail_as(args.json, 1, e),
    };
    #[cfg(feature = "solana")]
    let solana = match solana_wallet(&args) {
        Ok(w) => w,
        Err(e) => return fail_as(args.json, 1, e),
    };
    #[cfg(not(feature = "solana"))]
    let solana: Option<std::convert::Infallible> = None;
    let deposit_requests = u128::from(args.deposit_requests);
    let wallets = match (load_key(&args), solana) {
        (Ok(key), None) => wallets_depositing(key, deposit_requests),
        #[cfg(feature = "solana")]
        (Ok(key), Some(solana)) => wallets_depositing(key, deposit_requests).with(solana),
        // A Solana-only payer: no EVM key was asked for by name.
        #[cfg(feature = "solana")]
        (Err(_), Some(solana)) if args.key_file.is_none() => Wallets::new().with(solana),
        (Err(e), _) => return fail_as(args.json, 1, e),
    };
    let same_host_redirects = !identity.is_empty();
    let mut middleware = with_rpc_urls(
        X402Middleware::new(wallets, policy.clone(), ledger),
        &rpc_urls,
    )
    .with_identity(identity);
    // On a terminal, a spinner while the request (and a paid one's settlement, which can take
    // a while on a slow chain) is in flight; hidden while the approval prompt is shown.
    let waiting = crate::progress::spinner("waiting for the response (a paid one settles first)");
    if !args.yes && std::io::stdin().is_terminal() {
        let waiting = waiting.clone();
        middleware = middleware.with_approval(Arc::new(move |p| waiting.suspend(|| confirm(p))));
    }
    let mut inner = reqwest::Client::builder();
    if same_host_redirects {
        inner = inner.redirect(same_host_only());
    }
    let inner = match inner.build() {
        Ok(c) => c,
        Err(e) => return fail_as(args.json, 1, e),
    };
    if args.refund {
        let mut request = inner.request(method, &url).headers(headers);
        if let Some(data) = args.data.clone() {
            request = request.body(data);
        }
        let request = match request.build() {
            Ok(r) => r,
            Err(e) => return fail_as(args.json, 1, e),
        };
        let done = middleware.refund(&inner, request, args.refund_amount).await;
        waiting.finish_and_clear();
        return print_refund(done, &policy, args.json);
    }
    let client = reqwest_middleware::ClientBuilder::new(inner)
        .with(middleware)
        .build();
    let mut request = client.request(method, &url).headers(headers);
    if let Some(data) = args.data.clone() {
        request = request.body(data);
    }
    let sent = request.send().await;
    waiting.finish_and_clear();
    let response = match sent {
        Ok(r) => r,
        Err(reqwest_middleware::Error::Middleware(e)) => {
            return match e.downcast::<PaymentError>() {
                Ok(PaymentError::Refused(r)) => {
                    if args.json {
                        println!(
                            "{}",
                            json!({
                                "status": 402,
                                "paid": Value::Null,
                                "refused": refusal_json(&r),
                                "exitCode": EXIT_REFUSED,
                            })
                        );
                    }
                    fail(EXIT_REFUSED, r)
                }
                Ok(PaymentError::IdentityRefused {
                    payer,
                    checks,
                    detail,
                    held,
                }) => {
                    if args.json {
                        println!(
                            "{}",
                            json!({
                                "status": 403,
                                "paid": Value::Null,
                                "identityRefused": identity_refusal_json(
                                    payer.as_deref(), &checks, detail.as_deref(), held),
                                "exitCode": EXIT_IDENTITY_REFUSED,
                            })
                        );
                    }
                    eprint!(
                        "{}",
                        identity_refusal_text(payer.as_deref(), &checks, detail.as_deref(), held)
                    );
                    ExitCode::from(EXIT_IDENTITY_REFUSED)
                }
                Ok(other) => fail_as(args.json, EXIT_PAYMENT_FAILED, other),
                Err(e) => fail_as(args.json, EXIT_PAYMENT_FAILED, e),
            };
        }
        Err(e) => return fail_as(args.json, EXIT_HTTP, e),
    };
    let status = response.status();
    let receipt = response.extensions().get::<PaymentReceipt>().cloned();
    let pending = response.extensions().get::<PendingPayment>().cloned();
    let signed_in = response
        .extensions()
        .get::<tollgate_client::SignIn>()
        .cloned();
    let response_headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return fail_as(args.json, EXIT_HTTP, e),
    };
    let code = if status.is_success() {
        0
    } else if status.as_u16() == 402 {
        EXIT_PAYMENT_FAILED
    } else {
        EXIT_HTTP
    };
    let amount_of = |r: &PaymentRequirements| Shown::new(&policy, r);
    if args.json {
        let summary = json!({
            "status": status.as_u16(),
            "paid": receipt.as_ref().map(|r| {
                let shown = amount_of(&r.requirements);
                json!({
                    "transaction": r.settlement.transaction,
                    "network": r.settlement.network.to_string(),
                    "payer": r.settlement.payer.as_deref().map(checksummed),
                    "amount": shown.amount,
                    "symbol": shown.symbol,
                    "decimals": shown.decimals,
                    "atomicAmount": r.requirements.amount.to_string(),
                    "asset": checksummed(&r.requirements.asset),
                    "payTo": checksummed(&r.requirements.pay_to),
                    "scheme": r.requirements.scheme.to_string(),
                    "extra": r.settlement.extra,
                })
            }),
            "pending": pending.as_ref().map(|p| {
                let shown = amount_of(&p.requirements);
                json!({
                    "reason": p.reason,
                    "network": p.requirements.network.to_string(),
                    "amount": shown.amount,
                    "symbol": shown.symbol,
                    "decimals": shown.decimals,
                    "atomicAmount": p.requirements.amount.to_string(),
                    "asset": checksummed(&p.requirements.asset),
                    "payTo": checksummed(&p.requirements.pay_to),
                    "ledgerId": p.ledger_id,
                })
            }),
            "signedIn": signed_in.as_ref().map(|s| json!({
                "address": checksummed(&s.address),
                "network": s.network.to_string(),
                "authOnly": s.auth_only,
            })),
            "body": String::from_utf8_lossy(&body),
            "exitCode": code,
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
    }
    if let Some(r) = &receipt {
        if r.settlement.transaction.is_empty() {
            eprintln!(
                "paid {} to {} on {} from the payment channel (a voucher; nothing on chain)",
                amount_of(&r.requirements),
                checksummed(&r.requirements.pay_to),
                r.settlement.network,
            );
        } else {
            eprintln!(
                "paid {} to {} on {} in {}",
                amount_of(&r.requirements),
                checksummed(&r.requirements.pay_to),
                r.settlement.network,
                r.settlement.transaction
            );
        }
    }
    if let Some(s) = &signed_in {
        eprintln!(
            "signed in as {} on {} ({}): nothing paid",
            checksummed(&s.address),
            s.network,
            if s.auth_only {
                "the route asks for a sign-in only"
            } else {
                "this wallet paid for the resource before"
            }
        );
    }
    if let Some(p) = &pending {
        eprintln!(
            "payment outcome unknown ({}): {} stays reserved against the budgets until the chain \
             shows it used or expired{}",
            p.reason,
            amount_of(&p.requirements),
            if rpc_urls.contains_key(&p.requirements.network) {
                ""
            } else {
                " (pass --rpc-url to check it on chain)"
            }
        );
    }
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        fail(code, format!("server answered {status}"))
    }
}

/// The identity headers of `--identity-header NAME=VALUE` for the payees of `--identity-for`.
/// A value is literal, `@FILE` (the file's content, trailing newline trimmed) or `env:VAR`.
/// Errors name the header and where its value came from, never the value.
fn identity_headers(specs: &[String], payees: &[String]) -> Result<IdentityHeaders, String> {
    if specs.is_empty() {
        return if payees.is_empty() {
            Ok(IdentityHeaders::new())
        } else {
            Err("--identity-for names payees but no --identity-header is given".into())
        };
    }
    if payees.is_empty() {
        return Err(
            "--identity-header needs --identity-for PAYEE: identity headers are sent \
                    only to the payees named"
                .into(),
        );
    }
    let mut identity = IdentityHeaders::new();
    for spec in specs {
        let Some((name, value)) = spec.split_once('=') else {
            return Err(
                "--identity-header expects NAME=VALUE (VALUE may be @FILE or env:VAR)".into(),
            );
        };
        let name = name.trim();
        let value = if let Some(path) = value.strip_prefix('@') {
            std::fs::read_to_string(path)
                .map_err(|e| format!("--identity-header {name}: cannot read {path}: {e}"))?
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        } else if let Some(var) = value.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                format!("--identity-header {name}: environment variable {var} is not set")
            })?
        } else {
            value.to_owned()
        };
        identity = identity
            .with(name, &value, payees)
            .map_err(|e| format!("--identity-header: {e}"))?;
    }
    Ok(identity)
}

/// A redirect policy that follows up to 10 redirects on the same scheme, host and port only:
/// with identity headers configured, a payee must not be able to send them (and the payment)
/// to another origin. The response to the stopped redirect is returned as it is.
fn same_host_only() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = |u: &reqwest::Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port_or_known_default(),
            )
        };
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| origin(first) == origin(attempt.url()));
        if !same {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// A gate's refusal for a person: each failed rule, its reason and its remedy, and what became
/// of the reserved amount. The texts are the seller's, already bounded and stripped of control
/// characters by the client.
fn identity_refusal_text(
    payer: Option<&str>,
    checks: &[IdentityCheck],
    detail: Option<&str>,
    held: bool,
) -> String {
    let mut out = format!(
        "tollgate pay: the seller's identity gate refused {} (403)\n",
        payer.map(checksummed).as_deref().unwrap_or("the payer")
    );
    for c in checks.iter().filter(|c| !c.passed) {
        out.push_str(&format!(
            "  failed: {}{}\n",
            c.rule,
            c.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
        if let Some(remedy) = &c.remedy {
            out.push_str(&format!("    remedy: {remedy}\n"));
        }
    }
    if let Some(detail) = detail {
        out.push_str(&format!("  the seller said: {detail}\n"));
    }
    out.push_str(if held {
        "not a gate's identity_check_failed answer: the amount stays reserved until the chain \
         shows it used or expired\n"
    } else {
        "nothing was settled: the reserved amount was released\n"
    });
    out
}

fn identity_refusal_json(
    payer: Option<&str>,
    checks: &[IdentityCheck],
    detail: Option<&str>,
    held: bool,
) -> Value {
    json!({
        "payer": payer.map(checksummed),
        "checks": checks.iter().map(|c| json!({
            "rule": c.rule, "passed": c.passed, "reason": c.reason, "remedy": c.remedy,
        })).collect::<Vec<_>>(),
        "detail": detail,
        "held": held,
    })
}

/// The agent's wallets for `key`: the one place the binary names a chain's payer, so `pay`,
/// `demo` and `bench` pay through the client's chain-agnostic `PaymentSigner` and a chain added
/// here is paid on by all of them. Today: `exact` (EIP-3009, or Permit2 when the offer says
/// so) and `upto` (Permit2) on every EVM network. Permit2 payments need the payer's one-time
/// approval of Permit2 for the token, which is never sent from here.
pub(crate) fn wallets(key: PrivateKeySigner) -> Wallets {
    wallets_depositing(
        key,
        tollgate::evm::batch_settlement::DEFAULT_DEPOSIT_REQUESTS,
    )
}

/// [`wallets`], with payment channels (`batch-settlement`) funded with `deposit_requests`
/// requests' worth.
pub(crate) fn wallets_depositing(key: PrivateKeySigner, deposit_requests: u128) -> Wallets {
    Wallets::new()
        .with(ExactEvmClient::new(key.clone()))
        .with(tollgate::evm::UptoEvmClient::new(key.clone()))
        .with(
            tollgate::evm::batch_settlement::BatchSettlementEvmClient::new(key)
                .with_deposit_requests(deposit_requests),
        )
}

/// What `--refund` prints: the refunded amount, what went back under the budgets, what is
/// left in the channel, the transaction.
fn print_refund(
    done: reqwest_middleware::Result<tollgate_client::RefundOutcome>,
    policy: &SpendingPolicy,
    json: bool,
) -> ExitCode {
    let done = match done {
        Ok(d) => d,
        Err(reqwest_middleware::Error::Middleware(e)) => {
            return fail_as(json, EXIT_PAYMENT_FAILED, format!("refund failed: {e:#}"))
        }
        Err(e) => return fail_as(json, EXIT_HTTP, e),
    };
    let r = &done.requirements;
    let shown = |atomic: u128| match policy.asset_info(&r.network, &r.asset) {
        Some(a) => format!(
            "{} {}",
            format_atomic(tollgate::proto::U256::from(atomic), a.decimals),
            a.symbol
        ),
        None => format!("{atomic} (atomic) of {}", checksummed(&r.asset)),
    };
    if json {
        println!(
            "{}",
            json!({
                "refunded": done.refunded.to_string(),
                "credited": done.credited.to_string(),
                "remaining": done.remaining.to_string(),
                "transaction": done.transaction,
                "network": r.network.to_string(),
                "payTo": checksummed(&r.pay_to),
                "asset": checksummed(&r.asset),
                "ledgerId": done.ledger_id,
                "exitCode": 0,
            })
        );
    }
    eprintln!(
        "refunded {} from the payment channel with {} on {} in {} ({} back under the budgets; {} left in the channel)",
        shown(done.refunded),
        checksummed(&r.pay_to),
        r.network,
        done.transaction,
        shown(done.credited),
        shown(done.remaining),
    );
    ExitCode::SUCCESS
}

/// `--channels`: the payment channels of the ledger.
fn channels(ledger: &SpendLedger, json: bool) -> ExitCode {
    let rows = match ledger.sessions() {
        Ok(r) => r,
        Err(e) => return fail_as(json, 1, e),
    };
    let field = |s: &Value, k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|c| {
                json!({
                    "session": c.key,
                    "network": c.network,
                    "payTo": checksummed(&c.payee),
                    "asset": checksummed(&c.asset),
                    "deposited": c.deposited.to_string(),
                    "refunded": c.refunded.to_string(),
                    "charged": field(&c.state, "charged"),
                    "balance": field(&c.state, "balance"),
                    "halted": c.state.get("halted"),
                    "updatedAt": c.updated_at,
                })
            })
            .collect();
        println!("{}", Value::Array(list));
    } else if rows.is_empty() {
        println!("no payment channels");
    } else {
        for c in &rows {
            println!(
                "{} {} pay {} asset {}: deposited {}, refunded {}, charged {}, balance {}{}",
                c.network,
                c.key.rsplit('/').next().unwrap_or_default(),
                checksummed(&c.payee),
                checksummed(&c.asset),
                c.deposited,
                c.refunded,
                field(&c.state, "charged"),
                field(&c.state, "balance"),
                c.state
                    .get("halted")
                    .and_then(|h| h.as_str())
                    .map(|h| format!(" (halted: {h})"))
                    .unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

/// An amount as a person reads it: `0.001 USDC` when the asset's decimals are known, else the
/// atomic amount and the asset's address.
struct Shown {
    amount: String,
    symbol: Option<String>,
    decimals: Option<u8>,
    asset: String,
}

impl Shown {
    fn new(policy: &SpendingPolicy, r: &PaymentRequirements) -> Self {
        match policy.asset_info(&r.network, &r.asset) {
            Some(info) => Self {
                amount: format_atomic(r.amount.get(), info.decimals),
                symbol: Some(info.symbol),
                decimals: Some(info.decimals),
                asset: checksummed(&r.asset),
            },
            None => Self {
                amount: r.amount.to_string(),
                symbol: None,
                decimals: None,
                asset: checksummed(&r.asset),
            },
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.symbol {
            Some(symbol) => write!(f, "{} {symbol}", self.amount),
            None => write!(f, "{} atomic units of asset {}", self.amount, self.asset),
        }
    }
}

/// One payment option as the summaries show it: token units, checksummed addresses.
pub(crate) fn option_json(policy: &SpendingPolicy, r: &PaymentRequirements) -> Value {
    let shown = Shown::new(policy, r);
    json!({
        "scheme": r.scheme.to_string(),
        "network": r.network.to_string(),
        "amount": shown.amount,
        "symbol": shown.symbol,
        "decimals": shown.decimals,
        "atomicAmount": r.amount.to_string(),
        "asset": shown.asset,
        "payTo": checksummed(&r.pay_to),
    })
}

/// An EVM address in its EIP-55 form, so one address has one spelling in every summary;
/// anything else (another chain's address format) as it was given.
pub(crate) fn checksummed(address: &str) -> String {
    address
        .parse::<Address>()
        .map(|a| a.to_checksum(None))
        .unwrap_or_else(|_| address.to_owned())
}

/// A policy refusal as JSON: which rule (`rule`), its message, and its figures.
pub(crate) fn refusal_json(refusal: &Refusal) -> Value {
    let message = refusal.to_string();
    let (rule, mut details) = match refusal {
        Refusal::Declined => ("declined", json!({})),
        Refusal::Unsupported(what) => ("unsupported", json!({ "detail": what })),
        Refusal::NetworkNotAllowed(network) => (
            "network_not_allowed",
            json!({ "network": network.to_string() }),
        ),
        Refusal::AssetNotAllowed {
            network,
            asset,
            why,
        } => (
            "asset_not_allowed",
            json!({ "network": network.to_string(), "asset": checksummed(asset), "why": why }),
        ),
        Refusal::PayeeNotAllowed(payee) => {
            ("payee_not_allowed", json!({ "payTo": checksummed(payee) }))
        }
        Refusal::OverMaxPerRequest {
            symbol,
            price,
            max,
            over,
        } => (
            "max_per_request",
            json!({ "symbol": symbol, "price": price, "max": max, "over": over }),
        ),
        Refusal::OverMaxDeposit {
            symbol,
            needed,
            max,
        } => (
            "max_deposit",
            json!({ "symbol": symbol, "needed": needed, "max": max }),
        ),
        Refusal::OverBudget {
            symbol,
            price,
            budget,
            spent,
            window,
        } => (
            "budget",
            json!({ "symbol": symbol, "price": price, "budget": budget,
                    "spentOrReserved": spent, "window": window }),
        ),
    };
    if let Some(map) = details.as_object_mut() {
        map.insert("rule".into(), rule.into());
        map.insert("message".into(), message.into());
    }
    details
}

/// `--rpc-url` values as (network → URL). A bare URL's network is asked from it; one that
/// does not answer is skipped with a warning (its payments then wait for expiry).
pub(crate) async fn resolve_rpc_urls(
    specs: &[String],
) -> std::collections::HashMap<Network, String> {
    let mut out = std::collections::HashMap::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if let Some((network, url)) = spec.split_once('=').filter(|(n, _)| !n.contains("://")) {
            match network.parse::<Network>() {
                Ok(n) => {
                    out.insert(n, url.to_owned());
                }
                Err(e) => eprintln!("tollgate pay: ignoring --rpc-url {network}=…: {e}"),
            }
            continue;
        }
        let chain_id = match spec.parse() {
            Ok(url) => ProviderBuilder::new()
                .disable_recommended_fillers()
                .connect_http(url)
                .get_chain_id()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("not a URL: {e}")),
        };
        match chain_id {
            Ok(id) => {
                out.insert(Network::eip155(id), spec.to_owned());
            }
            // The URL may carry an API key: name the failure, not the URL.
            Err(e) => eprintln!(
                "tollgate pay: an --rpc-url did not answer ({e}); pending payments on its chain \
                 stay reserved until they expire"
            ),
        }
    }
    out
}

pub(crate) fn with_rpc_urls(
    mut middleware: X402Middleware,
    urls: &std::collections::HashMap<Network, String>,
) -> X402Middleware {
    for (network, url) in urls {
        middleware = middleware.with_rpc_url(network.clone(), url.clone());
    }
    middleware
}

fn print_reconcile(report: &ReconcileReport, json: bool) {
    if json {
        println!(
            "{}",
            json!({ "paid": report.paid, "released": report.released, "held": report.held })
        );
    } else {
        eprintln!(
            "reconciled: {} found paid on chain, {} released (expired unused), {} still reserved",
            report.paid.len(),
            report.released.len(),
            report.held.len()
        );
    }
}

fn build_policy(args: &PayArgs) -> Result<SpendingPolicy, String> {
    let policy = policy_from(
        &args.assets,
        args.max.as_deref(),
        &args.budget,
        &args.networks,
    )?;
    match &args.max_deposit {
        Some(max) => policy
            .max_deposit(max)
            .map_err(|e| format!("--max-deposit: {e}")),
        None => Ok(policy),
    }
}

/// The spending policy of the `--asset`, `--max`, `--budget` and `--network` options (shared
/// with `tollgate mcp`, whose options mean the same).
pub(crate) fn policy_from(
    assets: &[String],
    max: Option<&str>,
    budgets: &[String],
    networks: &[String],
) -> Result<SpendingPolicy, String> {
    let mut policy = SpendingPolicy::new();
    for spec in assets {
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
    if let Some(max) = max {
        policy = policy
            .max_per_request(max)
            .map_err(|e| format!("--max: {e}"))?;
    }
    for budget in budgets {
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
    if !networks.is_empty() {
        let networks = networks
            .iter()
            .map(|n| n.parse::<Network>().map_err(|e| format!("--network: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        policy = policy.allow_networks(networks);
    }
    Ok(policy)
}

/// The Solana payer, when --solana-rpc-url is set and a Solana key is found.
#[cfg(feature = "solana")]
fn solana_wallet(args: &PayArgs) -> Result<Option<tollgate::svm::ExactSvmClient>, String> {
    use tollgate::svm::keys;
    let Some(rpc_url) = &args.solana_rpc_url else {
        return Ok(None);
    };
    let keypair = match &args.solana_key_file {
        Some(path) => keys::keypair_from_file(path).map_err(|e| e.to_string())?,
        None => keys::keypair_from_env(&args.solana_key_env).map_err(|e| {
            format!("--solana-rpc-url is set but there is no Solana key: {e} (or pass --solana-key-file)")
        })?,
    };
    Ok(Some(tollgate::svm::ExactSvmClient::new(
        keypair,
        rpc_url.clone(),
    )))
}

fn load_key(args: &PayArgs) -> Result<PrivateKeySigner, String> {
    key_from(args.key_file.as_deref(), &args.key_env)
}

/// The payer's key from `key_file`, else from the environment variable `key_env`. Errors name
/// where the key was looked for, never its content.
pub(crate) fn key_from(
    key_file: Option<&std::path::Path>,
    key_env: &str,
) -> Result<PrivateKeySigner, String> {
    let (source, raw) = match key_file {
        Some(path) => (
            format!("key file {}", path.display()),
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
        ),
        None => (
            format!("environment variable {key_env}"),
            std::env::var(key_env).map_err(|_| {
                format!("no payer key: set {key_env} or pass --key-file (or use --dry-run)")
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
            json!({
                "status": 402,
                // The seller's options verbatim, as the protocol carries them.
                "accepts": accepts,
                "wouldPay": choice
                    .as_ref()
                    .ok()
                    .and_then(|c| c.first())
                    .map(|p| option_json(policy, &p.requirements)),
                "refusal": choice.as_ref().err().map(|r| r.to_string()),
                "refused": choice.as_ref().err().map(refusal_json),
            })
        );
    } else {
        println!("{url} requires payment; options:");
        for r in &accepts {
            println!(
                "  {} {} on {} to {}",
                r.scheme,
                Shown::new(policy, r),
                r.network,
                checksummed(&r.pay_to)
            );
        }
        match &choice {
            Ok(c) => {
                let p = &c[0];
                println!(
                    "would pay {} on {} (dry run: nothing signed)",
                    Shown::new(policy, &p.requirements),
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

/// A record's charge in human units, when a receipt stated one.
fn charged_display(r: &tollgate::client::SpendRecord) -> Option<String> {
    let charged = r.charged.as_deref()?.parse().ok()?;
    Some(tollgate::proto::money::format_atomic(charged, r.decimals))
}

/// `--approve-permit2 TOKEN`: the payer approves Permit2 for TOKEN on the chain of the one
/// --rpc-url given (or the one naming TOKEN's network as `NETWORK=URL` when several are).
async fn approve(
    args: &PayArgs,
    token: &str,
    rpc_urls: &std::collections::HashMap<Network, String>,
) -> Result<(), String> {
    let token: Address = token
        .trim()
        .parse()
        .map_err(|e| format!("--approve-permit2 {token:?} is not a token address: {e}"))?;
    let amount = match args.approve_amount.trim() {
        "max" => alloy::primitives::U256::MAX,
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse()
            .map_err(|e| format!("--approve-amount {digits:?}: {e}"))?,
        other => {
            return Err(format!(
                "--approve-amount {other:?} is neither `max` nor a whole number of atomic units"
            ))
        }
    };
    let (network, rpc_url) = match rpc_urls.len() {
        1 => rpc_urls.iter().next().expect("one entry"),
        0 => return Err("--approve-permit2 needs --rpc-url for the token's chain".into()),
        _ => {
            return Err(
                "--approve-permit2 with several --rpc-url: give only the token's chain's".into(),
            )
        }
    };
    let key = load_key(args)?;
    let payer = key.address();
    let before = tollgate::evm::permit2::permit2_allowance(rpc_url, token, payer)
        .await
        .map_err(|e| e.to_string())?;
    if before >= amount {
        eprintln!(
            "tollgate pay: Permit2 may already move {before} of {token} for {payer} on {network}; nothing sent"
        );
        return Ok(());
    }
    let tx = tollgate::evm::permit2::approve_permit2(rpc_url, key, token, amount)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("tollgate pay: approved Permit2 for {token} on {network} from {payer}: {tx}");
    if args.json && args.url.is_none() {
        println!(
            "{}",
            json!({ "approved": { "token": token.to_checksum(None), "network": network.to_string(),
                                  "payer": payer.to_checksum(None), "transaction": tx.to_string(),
                                  "amount": amount.to_string() } })
        );
    }
    Ok(())
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
                json!({
                    "id": r.id, "at": r.at, "method": r.method, "url": r.url,
                    "payee": checksummed(&r.payee), "network": r.network,
                    "asset": checksummed(&r.asset), "symbol": r.symbol,
                    "amount": r.display_amount, "atomicAmount": r.amount, "decimals": r.decimals,
                    "status": r.status, "transaction": r.tx_hash, "reason": r.reason,
                    "payer": r.payer.as_deref().map(checksummed),
                    "authorization": r.authorization, "validBefore": r.valid_before,
                    "paymentId": r.payment_id,
                    // Metered payments: `amount` is the authorised maximum.
                    "atomicCharged": r.charged, "charged": charged_display(r),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for r in &records {
            let amount = match charged_display(r) {
                Some(charged) if r.charged.as_deref() != Some(r.amount.as_str()) => {
                    format!("{charged} (of at most {})", r.display_amount)
                }
                _ => r.display_amount.clone(),
            };
            println!(
                "#{:<4} {:<8} {} {:<40} {} {} {}",
                r.id,
                r.status,
                r.method,
                r.url,
                amount,
                r.symbol,
                r.tx_hash.as_deref().or(r.reason.as_deref()).unwrap_or("")
            );
        }
    }
    ExitCode::SUCCESS
}
