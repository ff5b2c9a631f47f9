//! `tollgate`: one binary, a subcommand per role.

mod bench;
mod bench_rig;
mod demo;
mod devnet;
mod discover;
mod facilitator;
mod init;
mod mcp;
mod pay;
mod progress;
mod proxy;
mod shutdown;

use clap::{Parser, Subcommand};

/// Every role of the binary allocates per request (JSON, headers, rows) from several worker
/// threads at once; mimalloc's thread-local heaps beat glibc's arenas there (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shown by `tollgate --version`: the version, then where to start.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\n\nExample (the whole system on a local chain, offline):\n  tollgate demo\n\
     Then `tollgate help` lists the roles; `tollgate <role> --help` shows each one's example."
);

/// The top-level `--help`'s closing example.
const EXAMPLES: &str = "Examples:
  tollgate demo                                    # everything in one process, offline
  tollgate devnet --write-configs local            # the local loop, step 1 (see README)
  tollgate pay --max \"0.01 USDC\" https://api.example.com/weather";

/// x402 payments for Rust: pay and get paid per HTTP request in stablecoins.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, long_version = LONG_VERSION, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole system on the embedded devnet (offline, nothing to install): a
    /// facilitator, a paid API and an agent with a budget making paid calls.
    #[command(after_help = "Example:
  tollgate demo --calls 10")]
    Demo(demo::DemoArgs),
    /// Runs the embedded EVM devnet on a loopback port, with the test USDC token and
    /// Multicall3 deployed and the dev accounts funded; prints its facts as JSON.
    #[command(
        after_help = "Example (writes local/devnet.json, local/facilitator.toml and the dev keys for the
next steps: tollgate facilitator, tollgate init, tollgate pay):
  tollgate devnet --write-configs local"
    )]
    Devnet(devnet::DevnetArgs),
    /// Runs the facilitator service: POST /verify, POST /settle, GET /supported, GET /health,
    /// with a durable settlement ledger.
    #[command(after_help = "Examples:
  tollgate facilitator --print-config-example > facilitator.toml
  TOLLGATE_SIGNER_KEY=0x... tollgate facilitator --config facilitator.toml
  tollgate facilitator --config local/facilitator.toml   # written by `tollgate devnet --write-configs local`")]
    Facilitator(facilitator::FacilitatorArgs),
    /// Fetches a URL like curl, paying its x402 price within limits. Exit codes: 0 success,
    /// 1 usage or setup error, 2 refused by policy, 3 payment failed, 4 HTTP error, 5 refused by
    /// the seller's identity gate (403).
    #[command(after_help = "Examples:
  TOLLGATE_PAY_KEY=0x... tollgate pay --max \"0.01 USDC\" --budget \"1 USDC/day\" https://api.example.com/weather
  tollgate pay --dry-run https://api.example.com/weather
  tollgate pay --key-file local/payer.key --asset eip155:31337/0x5FbDB2315678afecb367f032d93F642f64180aa3/USDC/6 \\
    --max \"0.01 USDC\" http://127.0.0.1:8402/weather")]
    Pay(Box<pay::PayArgs>),
    /// Puts x402 in front of any HTTP API: a reverse proxy that charges for the routes its
    /// TOML file prices and streams everything through.
    #[command(after_help = "Example (`tollgate init` writes the file):
  tollgate proxy --config gateway.toml")]
    Proxy(proxy::ProxyArgs),
    /// Writes a commented starter configuration for `tollgate proxy`, on any network.
    #[command(after_help = "Examples:
  tollgate init --network eip155:84532 --pay-to 0xYourAddress --output gateway.toml
  tollgate init --devnet-json local/devnet.json --pay-to 0xa0Ee7A142d267C1f36714E4a8F75612F20a79720 --output local/gateway.toml
  tollgate init --network eip155:31337 --asset 0x5FbDB2315678afecb367f032d93F642f64180aa3 --decimals 6 \\
    --eip712-name \"USD Coin\" --eip712-version 2 --pay-to 0xYourAddress")]
    Init(Box<init::InitArgs>),
    /// Measures facilitator and paywall throughput on a local chain (the embedded devnet, or
    /// anvil), with ratios against a bare axum route measured in the same run.
    #[command(after_help = "Examples:
  tollgate bench
  tollgate bench --chain anvil --payments 500 --concurrency 32")]
    Bench(bench::BenchArgs),
    /// Lists or searches a facilitator's bazaar catalogue: paid resources with their price,
    /// network and input shape (a table on a terminal, JSON otherwise).
    #[command(after_help = discover::AFTER_HELP)]
    Discover(discover::DiscoverArgs),
    /// Gives an agent a wallet over MCP: an MCP server on stdio with tools to discover paid
    /// resources, quote a URL's price, fetch (pay for) it within a budget, and read spending.
    #[command(after_help = mcp::AFTER_HELP)]
    Mcp(Box<mcp::McpArgs>),
}

/// The variable holding the stderr log filter (`EnvFilter` syntax; `warn` when unset).
const LOG_ENV: &str = "TOLLGATE_LOG";

/// The stderr log filter from [`LOG_ENV`].
pub(crate) fn log_filter() -> Option<String> {
    std::env::var(LOG_ENV).ok()
}

/// Installs the subscriber of a service role from its `[telemetry]` table: logs, plus OTLP
/// span export when configured. The guard flushes the last spans when the service stops.
pub(crate) fn start_telemetry(
    config: &tollgate_telemetry::TelemetryConfig,
    service_name: &str,
) -> Result<tollgate_telemetry::TelemetryGuard, tollgate_telemetry::InitError> {
    let filter = log_filter();
    tollgate_telemetry::init(
        config,
        tollgate_telemetry::InitOptions {
            default_service_name: service_name,
            log_filter: filter.as_deref(),
        },
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The services install theirs once their configuration (with `[telemetry]`) is read; the
    // other commands only log.
    if !matches!(cli.command, Command::Facilitator(_) | Command::Proxy(_)) {
        if let Err(e) = tollgate_telemetry::init_logs(log_filter().as_deref()) {
            eprintln!("warning: {e}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await.map_err(|e| e.to_string()),
            Command::Devnet(args) => devnet::run(args).await,
            Command::Facilitator(args) => facilitator::run(args).await.map_err(|e| e.to_string()),
            Command::Pay(args) => return Ok(pay::run(*args).await),
            Command::Discover(args) => return Ok(discover::run(args).await),
            Command::Mcp(args) => mcp::run(*args).await.map_err(|e| e.to_string()),
            Command::Bench(args) => bench::run(args).await.map_err(|e| e.to_string()),
            Command::Proxy(args) => proxy::run(args).await.map_err(|e| e.to_string()),
            Command::Init(args) => init::run(*args).await.map_err(|e| e.to_string()),
        }
        .map(|()| std::process::ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
