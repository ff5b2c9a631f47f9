//! `tollgate`: one binary, a subcommand per role.

mod bench;
mod demo;
mod devnet;
mod facilitator;
mod pay;
mod proxy;
mod shutdown;

use clap::{Parser, Subcommand};

/// x402 payments for Rust: pay and get paid per HTTP request in stablecoins.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole system on the embedded devnet (offline, nothing to install): a
    /// facilitator, a paid API and an agent with a budget making paid calls.
    Demo(demo::DemoArgs),
    /// Runs the embedded EVM devnet on a loopback port, with the test USDC token and
    /// Multicall3 deployed and the dev accounts funded; prints its facts as JSON.
    Devnet(devnet::DevnetArgs),
    /// Runs the facilitator service: POST /verify, POST /settle, GET /supported, GET /health,
    /// with a durable settlement ledger.
    Facilitator(facilitator::FacilitatorArgs),
    /// Fetches a URL like curl, paying its x402 price within limits. Exit codes: 0 success,
    /// 2 refused by policy, 3 payment failed, 4 HTTP error.
    Pay(Box<pay::PayArgs>),
    /// Puts x402 in front of any HTTP API: a reverse proxy that charges for the routes its
    /// TOML file prices and streams everything through.
    Proxy(proxy::ProxyArgs),
    /// Writes a commented starter configuration for `tollgate proxy`.
    Init(proxy::InitArgs),
    /// Measures facilitator and paywall throughput against a local anvil node, with ratios
    /// against a bare axum route measured in the same run.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
            Command::Bench(args) => bench::run(args).await.map_err(|e| e.to_string()),
            Command::Proxy(args) => proxy::run(args).await.map_err(|e| e.to_string()),
            Command::Init(args) => proxy::init(args).map_err(|e| e.to_string()),
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
