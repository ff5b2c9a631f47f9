//! `tollgate devnet`: the embedded EVM chain, standalone, until SIGINT/SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tollgate_devnet::Devnet;

/// Which chain family `tollgate devnet` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChainFamily {
    /// The embedded EVM chain (revm), port 8545 by default.
    Evm,
    /// The embedded Solana cluster (litesvm with the real SPL Token, Token-2022, Memo and
    /// ATA programs), port 8899 by default; its CAIP-2 id is Solana devnet's.
    #[cfg(feature = "solana")]
    Solana,
}

/// Options of `tollgate devnet`.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// Which chain to run.
    #[arg(long, value_enum, default_value = "evm")]
    chain: ChainFamily,
    /// Loopback port to listen on (0: any free port; default 8545, or 8899 for Solana).
    #[arg(long)]
    port: Option<u16>,
    /// Chain id.
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Also mine a block every this many milliseconds (transactions are mined on arrival
    /// either way).
    #[arg(long)]
    block_time_ms: Option<u64>,
    /// Also write the next steps' inputs into this directory (created if missing; earlier
    /// files there are replaced): `devnet.json` (the facts, for `tollgate init --devnet-json`),
    /// `facilitator.toml` (for `tollgate facilitator --config`, settling with dev account 0),
    /// and the dev keys `facilitator.key` and `payer.key` (mode 0600, for `--key-file`).
    #[arg(long, value_name = "DIR")]
    write_configs: Option<PathBuf>,
}

/// Where the facilitator written by `--write-configs` listens: the default `tollgate init`
/// points a gateway at.
const FACILITATOR_LISTEN: &str = "127.0.0.1:4020";

/// Starts the devnet, prints its facts as one JSON object on stdout, and serves until a
/// signal. The printed private keys are anvil's public, well-known dev keys (never use them
/// with real funds).
pub async fn run(args: DevnetArgs) -> Result<(), String> {
    #[cfg(feature = "solana")]
    if args.chain == ChainFamily::Solana {
        return run_solana(args).await;
    }
    let mut builder = Devnet::builder()
        .chain_id(args.chain_id)
        .port(args.port.unwrap_or(8545));
    if let Some(ms) = args.block_time_ms.filter(|ms| *ms > 0) {
        builder = builder.block_time(Duration::from_millis(ms));
    }
    let devnet = builder.start().await.map_err(|e| e.to_string())?;
    let Some(shutdown) = arm_shutdown().await else {
        return Ok(());
    };
    let accounts: Vec<_> = devnet
        .accounts()
        .iter()
        .map(|a| json!({ "address": a.address.to_checksum(None), "privateKey": a.key }))
        .collect();
    let facts = json!({
        "rpcUrl": devnet.url(),
        "chainId": devnet.chain_id(),
        "network": devnet.caip2(),
        "token": {
            "address": devnet.token().to_checksum(None),
            "symbol": "USDC",
            "name": "USD Coin",
            "version": "2",
            "decimals": 6,
        },
        // Tokens without EIP-3009, paid through Permit2 (x402 `exact` with
        // `assetTransferMethod: "permit2"`, and `upto`); payers approve Permit2 first.
        "usdt": {
            "address": devnet.contracts().usdt.to_checksum(None),
            "symbol": "USDT",
            "name": "Tether USD",
            "decimals": 6,
        },
        "permitToken": {
            "address": devnet.contracts().permit_token.to_checksum(None),
            "symbol": "PUSD",
            "name": "Permit USD",
            "version": "1",
            "decimals": 6,
        },
        "permit2": tollgate_devnet::PERMIT2.to_checksum(None),
        "exactPermit2Proxy": tollgate_devnet::EXACT_PERMIT2_PROXY.to_checksum(None),
        "uptoPermit2Proxy": tollgate_devnet::UPTO_PERMIT2_PROXY.to_checksum(None),
        "multicall3": devnet.multicall3().to_checksum(None),
        "walletFactory": devnet.wallet_factory().to_checksum(None),
        "accounts": accounts,
        "note": "the private keys are anvil's public dev keys: test use only, never with real funds",
    });
    if let Some(dir) = &args.write_configs {
        write_configs(dir, &devnet, &facts)?;
    }
    serve(devnet, shutdown, &facts).await
}

/// Writes `devnet.json`, `facilitator.toml`, `facilitator.key` and `payer.key` into `dir`, so
/// each next step of the local loop reads its input from the one before. The keys go to files
/// (0600), never into the TOML or a log line; the TOML is validated before it is written.
fn write_configs(dir: &Path, devnet: &Devnet, facts: &serde_json::Value) -> Result<(), String> {
    let fail = |what: &Path, e: std::io::Error| format!("--write-configs: {}: {e}", what.display());
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| fail(dir, e))?;
    let accounts = devnet.accounts();
    let (Some(settler), Some(payer)) = (accounts.first(), accounts.get(1)) else {
        return Err("--write-configs: the devnet has fewer than two dev accounts".into());
    };
    let facilitator_key = dir.join("facilitator.key");
    let payer_key = dir.join("payer.key");
    write_secret(&facilitator_key, &settler.key).map_err(|e| fail(&facilitator_key, e))?;
    write_secret(&payer_key, &payer.key).map_err(|e| fail(&payer_key, e))?;
    let toml_str = |s: &str| serde_json::Value::from(s).to_string();
    let config = format!(
        "# Written by `tollgate devnet --write-configs`: a facilitator settling on the devnet at\n\
         # {url}. Run: tollgate facilitator --config {config}\n\
         # (`tollgate facilitator --print-config-example` documents every key.)\n\
         [server]\n\
         listen = {listen}\n\
         \n\
         [ledger]\n\
         # The devnet forgets its chain when it stops; start a new ledger with a new devnet.\n\
         path = {ledger}\n\
         \n\
         # The devnet's chain. Every scheme served on it settles through this signer.\n\
         [[chains.eip155]]\n\
         network = {network}\n\
         rpc_urls = [{url_str}]\n\
         # Dev account 0 ({settler}) pays the gas; its key is a public anvil dev key.\n\
         signer_key_file = {key}\n\
         receipt_timeout_secs = 30\n\
         \n\
         # What is served where: `exact` on every configured EVM chain.\n\
         [[schemes]]\n\
         scheme = \"exact\"\n\
         networks = \"eip155:*\"\n",
        url = devnet.url(),
        config = dir.join("facilitator.toml").display(),
        listen = toml_str(FACILITATOR_LISTEN),
        ledger = toml_str(&dir.join("facilitator-ledger.db").to_string_lossy()),
        network = toml_str(&devnet.caip2()),
        url_str = toml_str(&devnet.url()),
        settler = settler.address,
        key = toml_str(&facilitator_key.to_string_lossy()),
    );
    write_checked(&dir, &config, facts, "facilitator.key and payer.key")
}

/// Installs the signal handlers before the facts are printed: whoever reads them may send
/// SIGTERM at once, and a signal that arrives before the handler exists kills the process
/// instead of shutting it down cleanly. Polling the future once registers both handlers;
/// `None` when a signal already came.
async fn arm_shutdown() -> Option<std::pin::Pin<Box<impl std::future::Future<Output = ()>>>> {
    let mut shutdown = Box::pin(crate::shutdown::signal());
    tokio::select! {
        biased;
        _ = &mut shutdown => None,
        _ = std::future::ready(()) => Some(shutdown),
    }
}

/// Prints the facts as one JSON object on stdout and keeps `devnet` serving until the signal.
async fn serve<D>(
    devnet: D,
    shutdown: std::pin::Pin<Box<impl std::future::Future<Output = ()>>>,
    facts: &serde_json::Value,
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{facts:#}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    shutdown.await;
    drop(devnet);
    Ok(())
}

/// Validates the facilitator configuration `config` before writing it, with the devnet's
/// facts, into `dir`; says on stderr what was written (`keys`: the key files beside them).
fn write_checked(
    dir: &Path,
    config: &str,
    facts: &serde_json::Value,
    keys: &str,
) -> Result<(), String> {
    let fail = |what: &Path, e: std::io::Error| format!("--write-configs: {}: {e}", what.display());
    let parsed = tollgate_facilitator::Config::parse(config)
        .map_err(|e| format!("--write-configs: the facilitator config does not parse: {e}"))?;
    parsed
        .validate()
        .map_err(|e| format!("--write-configs: the facilitator config is invalid: {e}"))?;
    let config_path = dir.join("facilitator.toml");
    std::fs::write(&config_path, config).map_err(|e| fail(&config_path, e))?;
    let facts_path = dir.join("devnet.json");
    std::fs::write(&facts_path, format!("{facts:#}\n")).map_err(|e| fail(&facts_path, e))?;
    eprintln!(
        "wrote {dir}/devnet.json, facilitator.toml, {keys}; next: \
         tollgate facilitator --config {dir}/facilitator.toml",
        dir = dir.display()
    );
    Ok(())
}

/// Writes a key file readable by its owner only (replacing an earlier one).
fn write_secret(path: &Path, key: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a new file; an older one may have been created looser.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{key}")
}

/// `tollgate devnet --chain solana`: the embedded Solana cluster, its facts on stdout, until a
/// signal. With `--write-configs`, a facilitator configuration sponsoring fees with dev
/// account 0 and the dev keys as Solana CLI keypair files.
#[cfg(feature = "solana")]
async fn run_solana(args: DevnetArgs) -> Result<(), String> {
    use tollgate_svm_devnet::SvmDevnet;
    let mut builder = SvmDevnet::builder().port(args.port.unwrap_or(8899));
    if let Some(ms) = args.block_time_ms.filter(|ms| *ms > 0) {
        builder = builder.slot_interval(Duration::from_millis(ms));
    }
    let devnet = builder.start().await.map_err(|e| e.to_string())?;
    let Some(shutdown) = arm_shutdown().await else {
        return Ok(());
    };
    let mut facts = devnet.facts();
    facts["note"] =
        json!("the keys are derived from public seeds: test use only, never with real funds");
    if let Some(dir) = &args.write_configs {
        write_solana_configs(dir, &devnet, &facts)?;
    }
    serve(devnet, shutdown, &facts).await
}

/// `devnet.json`, `facilitator.toml` (`[[chains.solana]]`), and the fee payer's and payer's
/// keypairs as the Solana CLI writes them (a JSON array of 64 bytes, mode 0600).
#[cfg(feature = "solana")]
fn write_solana_configs(
    dir: &Path,
    devnet: &tollgate_svm_devnet::SvmDevnet,
    facts: &serde_json::Value,
) -> Result<(), String> {
    let fail = |what: &Path, e: std::io::Error| format!("--write-configs: {}: {e}", what.display());
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| fail(dir, e))?;
    let keypair_json =
        |i: usize| serde_json::Value::from(devnet.keypair(i).to_bytes().to_vec()).to_string();
    let fee_payer_key = dir.join("fee-payer.json");
    let payer_key = dir.join("payer.json");
    write_secret(&fee_payer_key, &keypair_json(0)).map_err(|e| fail(&fee_payer_key, e))?;
    write_secret(&payer_key, &keypair_json(1)).map_err(|e| fail(&payer_key, e))?;
    let toml_str = |s: &str| serde_json::Value::from(s).to_string();
    let config = format!(
        "# Written by `tollgate devnet --chain solana --write-configs`: a facilitator\n\
         # sponsoring `exact` payments on the Solana devnet at {url}.\n\
         # Run: tollgate facilitator --config {config}\n\
         [server]\n\
         listen = {listen}\n\
         \n\
         [ledger]\n\
         path = {ledger}\n\
         \n\
         [[chains.solana]]\n\
         network = {network}\n\
         rpc_url = {url_str}\n\
         # Dev account 0 ({fee_payer}) pays the fees.\n\
         fee_payer_key_file = [{key}]\n\
         receipt_timeout_secs = 30\n",
        url = devnet.url(),
        config = dir.join("facilitator.toml").display(),
        listen = toml_str(FACILITATOR_LISTEN),
        ledger = toml_str(&dir.join("facilitator-ledger.db").to_string_lossy()),
        network = toml_str(&devnet.caip2()),
        url_str = toml_str(devnet.url()),
        fee_payer = devnet.accounts()[0].address,
        key = toml_str(&fee_payer_key.to_string_lossy()),
    );
    write_checked(&dir, &config, facts, "fee-payer.json and payer.json")
}
