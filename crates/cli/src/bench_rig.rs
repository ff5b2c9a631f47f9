//! The chain behind `tollgate bench`: the embedded devnet (the default, nothing to install) or
//! a real anvil node spawned from `node_modules` with the token and Multicall3 deployed from
//! the committed artifacts in `contracts/out/` (and, for the Permit2 section, the USDT-like
//! token, with Permit2 and the x402 proxies at their canonical addresses).
//!
//! This is the little of the test rig (`tollgate-testkit`) that the benchmark needs, kept here
//! so the shipped binary does not link a test rig: start a node on a free loopback port, put
//! the same contracts at the same addresses as the devnet's genesis (account 0 deploys at nonces
//! 0 and 1), fund the payers, and stop the node when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use tollgate_devnet::genesis::{Artifact, CANONICAL, MULTICALL3, TEST_USDC, TEST_USDT};
use tollgate_devnet::{Devnet, DEV_KEYS, INITIAL_USDC, INITIAL_USDT};

/// Environment variable naming an anvil binary to use instead of the one `npm ci` installs.
pub const ANVIL_ENV: &str = "TOLLGATE_ANVIL";

/// How long anvil may take to listen before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which node `tollgate bench` runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChainKind {
    /// The embedded revm devnet, in this process (no download, no npm step).
    Devnet,
    /// A real anvil process (`npm ci` installs it; or set `TOLLGATE_ANVIL`).
    Anvil,
}

/// Why the bench chain could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("the devnet did not start: {0}")]
    Devnet(#[from] tollgate_devnet::DevnetError),
    #[error(
        "anvil not found: run `npm ci` in the repository root, set {ANVIL_ENV}, \
         or use `--chain devnet`"
    )]
    AnvilNotFound,
    #[error("anvil failed to start: {0}")]
    AnvilStart(String),
    #[error("contract artifact {name}: {reason}")]
    Artifact { name: &'static str, reason: String },
    #[error("chain call failed during {context}: {reason}")]
    Chain {
        context: &'static str,
        reason: String,
    },
}

fn chain_err(context: &'static str, e: impl std::fmt::Display) -> RigError {
    RigError::Chain {
        context,
        reason: e.to_string(),
    }
}

sol! {
    #[sol(rpc)]
    interface IBenchToken {
        function mint(address to, uint256 amount) external;
    }
}

/// The node, held so that dropping the chain stops it.
enum Node {
    Devnet {
        _running: Devnet,
    },
    Anvil {
        _running: AnvilProcess,
    },
    /// Started and stopped by someone else.
    External,
}

/// A running chain with the token and Multicall3 deployed and dev accounts 1–9 holding
/// [`INITIAL_USDC`] each. Dropping it stops the node.
pub struct BenchChain {
    node: Node,
    endpoint: String,
    chain_id: u64,
    /// The EIP-3009 test token ("USD Coin", version "2", 6 decimals).
    pub usdc: Address,
    /// Multicall3, for the batched-settlement scenario.
    pub multicall3: Address,
    /// The USDT-like test token (no EIP-3009: paid through Permit2, which with the two x402
    /// proxies sits at its canonical address), for the Permit2 section. Dev accounts 1–9 hold
    /// [`INITIAL_USDT`] each; nobody has approved Permit2.
    pub usdt: Address,
}

impl BenchChain {
    /// Starts the chain `kind` names, with chain id 31337.
    pub async fn start(kind: ChainKind) -> Result<Self, RigError> {
        match kind {
            ChainKind::Devnet => {
                let devnet = Devnet::builder().chain_id(31337).port(0).start().await?;
                Ok(Self {
                    endpoint: devnet.url(),
                    chain_id: devnet.chain_id(),
                    usdc: devnet.token(),
                    multicall3: devnet.multicall3(),
                    usdt: devnet.contracts().usdt,
                    node: Node::Devnet { _running: devnet },
                })
            }
            ChainKind::Anvil => Self::start_anvil().await,
        }
    }

    async fn start_anvil() -> Result<Self, RigError> {
        let anvil = AnvilProcess::start(31337)?;
        let endpoint = anvil.endpoint();
        Self::set_up(Node::Anvil { _running: anvil }, endpoint).await
    }

    /// Uses an anvil node someone else started (at `endpoint`, with anvil's dev accounts), so
    /// that other facilitators can be pointed at the same node before the benchmark starts
    /// (`--rpc-url`, for `--peer`). The contracts are deployed there as on a fresh node.
    pub async fn attach(endpoint: &str) -> Result<Self, RigError> {
        Self::set_up(Node::External, endpoint.to_owned()).await
    }

    async fn set_up(node: Node, endpoint: String) -> Result<Self, RigError> {
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer(0)))
            .connect_http(endpoint.parse().map_err(|e| chain_err("parse url", e))?)
            .erased();
        // The dev keys must be anvil's accounts, or the payers would have no funds.
        let accounts = provider
            .get_accounts()
            .await
            .map_err(|e| chain_err("eth_accounts", e))?;
        for (i, account) in accounts.iter().enumerate().take(DEV_KEYS.len()) {
            if *account != signer(i).address() {
                return Err(chain_err(
                    "check dev keys",
                    format!("anvil account {i} is {account}, not the dev key's address"),
                ));
            }
        }
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| chain_err("eth_chainId", e))?;
        let usdc = deploy(&provider, &TEST_USDC).await?;
        let multicall3 = deploy(&provider, &MULTICALL3).await?;
        let token = IBenchToken::new(usdc, &provider);
        for i in 1..DEV_KEYS.len() {
            let receipt = token
                .mint(signer(i).address(), U256::from(INITIAL_USDC))
                .send()
                .await
                .map_err(|e| chain_err("mint", e))?
                .get_receipt()
                .await
                .map_err(|e| chain_err("mint receipt", e))?;
            if !receipt.status() {
                return Err(chain_err("mint", "reverted"));
            }
        }
        let usdt = place_permit2(&provider, &endpoint).await?;
        Ok(Self {
            node,
            endpoint,
            chain_id,
            usdc,
            multicall3,
            usdt,
        })
    }

    /// The node's JSON-RPC endpoint on loopback.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The chain id (31337).
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The CAIP-2 id, `eip155:31337`.
    pub fn caip2(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    /// `devnet` or `anvil`, for the report.
    pub fn backend(&self) -> &'static str {
        match self.node {
            Node::Devnet { .. } => "devnet",
            Node::Anvil { .. } => "anvil",
            Node::External => "anvil (external)",
        }
    }
}

/// The signer of dev account `index` (0–9).
pub fn signer(index: usize) -> PrivateKeySigner {
    DEV_KEYS[index % DEV_KEYS.len()]
        .parse()
        .expect("the dev keys are valid hex keys")
}

async fn deploy(provider: &DynProvider, artifact: &Artifact) -> Result<Address, RigError> {
    let tx = TransactionRequest::default().with_deploy_code(artifact.bytecode().map_err(|e| {
        RigError::Artifact {
            name: artifact.name(),
            reason: e.to_string(),
        }
    })?);
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|e| chain_err("deploy", e))?
        .get_receipt()
        .await
        .map_err(|e| chain_err("deploy receipt", e))?;
    if !receipt.status() {
        return Err(chain_err("deploy", format!("{} reverted", artifact.name())));
    }
    receipt
        .contract_address
        .ok_or_else(|| chain_err("deploy", "receipt has no contract address"))
}

/// What the devnet's genesis holds for Permit2 payments, on anvil: the USDT-like token deployed
/// from account 0 and minted to accounts 1–9, and Permit2 with the two x402 proxies copied to
/// their canonical addresses (their runtime code has no constructor state, so `anvil_setCode`
/// places the whole contract; the official SDK and Tollgate's clients sign for exactly those
/// addresses). Returns the token's address.
async fn place_permit2(provider: &DynProvider, endpoint: &str) -> Result<Address, RigError> {
    let usdt = deploy(provider, &TEST_USDT).await?;
    let token = IBenchToken::new(usdt, provider);
    for i in 1..DEV_KEYS.len() {
        let receipt = token
            .mint(signer(i).address(), U256::from(INITIAL_USDT))
            .send()
            .await
            .map_err(|e| chain_err("mint USDT", e))?
            .get_receipt()
            .await
            .map_err(|e| chain_err("mint USDT receipt", e))?;
        if !receipt.status() {
            return Err(chain_err("mint USDT", "reverted"));
        }
    }
    for (address, artifact) in CANONICAL {
        let code = artifact
            .deployed_bytecode()
            .map_err(|e| RigError::Artifact {
                name: artifact.name(),
                reason: e.to_string(),
            })?;
        provider
            .raw_request::<_, serde_json::Value>("anvil_setCode".into(), (address, code))
            .await
            .map_err(|e| chain_err("anvil_setCode", format!("{endpoint}: {e}")))?;
    }
    Ok(usdt)
}

/// An anvil child process on a loopback port, killed and reaped when dropped.
struct AnvilProcess {
    child: Child,
    port: u16,
}

impl AnvilProcess {
    /// Picking a free port and binding it are two steps, so another process can win the race;
    /// the start is retried on a new port a few times.
    fn start(chain_id: u64) -> Result<Self, RigError> {
        let binary = find_anvil().ok_or(RigError::AnvilNotFound)?;
        let mut last = None;
        for _ in 0..4 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| RigError::AnvilStart(format!("no free loopback port: {e}")))?
                .port();
            match spawn(&binary, port, chain_id) {
                Ok(child) => return Ok(Self { child, port }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RigError::AnvilStart("no attempt made".into())))
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for AnvilProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, port: u16, chain_id: u64) -> Result<Child, RigError> {
    let mut child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--chain-id", &chain_id.to_string()])
        .args(["--accounts", "10", "--balance", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| RigError::AnvilStart(format!("cannot run {}: {e}", binary.display())))?;
    // anvil prints "Listening on 127.0.0.1:PORT" once it serves; keep draining stdout after
    // that so a chatty node never blocks on a full pipe.
    let Some(stdout) = child.stdout.take() else {
        return Err(RigError::AnvilStart("stdout not captured".into()));
    };
    let (tx, rx) = std::sync::mpsc::channel::<bool>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(true);
                }
            }
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(false);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let outcome = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    if outcome == Ok(true) {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(RigError::AnvilStart(match outcome {
        Ok(_) => "anvil exited before listening".into(),
        Err(_) => format!("anvil did not listen within {START_TIMEOUT:?}"),
    }))
}

/// Finds anvil: `$TOLLGATE_ANVIL`, else the native binary `npm ci` put under
/// `node_modules/@foundry-rs/` in the current directory or one of its parents (or of this
/// source tree, for a binary run from its build directory), else `anvil` on `PATH`.
///
/// The npm package's `bin` entry is a Node wrapper; the native binary it wraps is run instead,
/// so killing the child really stops the node.
fn find_anvil() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ANVIL_ENV) {
        return Some(PathBuf::from(path));
    }
    let roots = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for root in roots.iter().flatten() {
        for dir in root.ancestors() {
            if let Some(found) = anvil_under(&dir.join("node_modules").join("@foundry-rs")) {
                return Some(found);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("anvil"))
            .find(|c| c.is_file())
    })
}

fn anvil_under(scope: &Path) -> Option<PathBuf> {
    std::fs::read_dir(scope)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("anvil-"))
        .map(|e| e.path().join("bin").join("anvil"))
        .find(|c| c.is_file())
}
