//! `tollgate devnet`: the embedded EVM chain, standalone, until SIGINT/SIGTERM.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use tollgate_devnet::Devnet;

/// Options of `tollgate devnet`.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// Loopback port to listen on (0: any free port).
    #[arg(long, default_value_t = 8545)]
    port: u16,
    /// Chain id.
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Also mine a block every this many milliseconds (transactions are mined on arrival
    /// either way).
    #[arg(long)]
    block_time_ms: Option<u64>,
}

/// Starts the devnet, prints its facts as one JSON object on stdout, and serves until a
/// signal. The printed private keys are anvil's public, well-known dev keys (never use them
/// with real funds).
pub async fn run(args: DevnetArgs) -> Result<(), String> {
    let mut builder = Devnet::builder().chain_id(args.chain_id).port(args.port);
    if let Some(ms) = args.block_time_ms.filter(|ms| *ms > 0) {
        builder = builder.block_time(Duration::from_millis(ms));
    }
    let devnet = builder.start().await.map_err(|e| e.to_string())?;
    let accounts: Vec<_> = devnet
        .accounts()
        .iter()
        .map(|a| json!({ "address": a.address, "privateKey": a.key }))
        .collect();
    let facts = json!({
        "rpcUrl": devnet.url(),
        "chainId": devnet.chain_id(),
        "network": devnet.caip2(),
        "token": { "address": devnet.token(), "name": "USD Coin", "version": "2", "decimals": 6 },
        "multicall3": devnet.multicall3(),
        "walletFactory": devnet.wallet_factory(),
        "accounts": accounts,
        "note": "the private keys are anvil's public dev keys: test use only, never with real funds",
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{facts:#}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    crate::shutdown::signal().await;
    drop(devnet);
    Ok(())
}
