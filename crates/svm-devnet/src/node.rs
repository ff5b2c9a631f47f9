//! [`SvmDevnet`]: a running devnet, and the [`SvmDevnetBuilder`] that starts one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use solana_address::Address;
use solana_keypair::Keypair;

use crate::chain::Chain;
use crate::genesis::{self, DevAccount, DEVNET_GENESIS_HASH};
use crate::server::{self, Shared};
use crate::SvmDevnetError;

/// The default slot time (Solana's target, 400 ms).
pub const DEFAULT_SLOT_INTERVAL: Duration = Duration::from_millis(400);

/// Configures a devnet before it starts. Defaults: a slot every 400 ms, a free port.
#[derive(Debug, Clone)]
pub struct SvmDevnetBuilder {
    slot_interval: Duration,
    port: u16,
}

impl Default for SvmDevnetBuilder {
    fn default() -> Self {
        Self {
            slot_interval: DEFAULT_SLOT_INTERVAL,
            port: 0,
        }
    }
}

impl SvmDevnetBuilder {
    /// How often a slot (with a fresh blockhash) passes (default 400 ms; at least 1 ms). A
    /// blockhash expires 150 slots after it was produced.
    pub fn slot_interval(mut self, every: Duration) -> Self {
        self.slot_interval = every.max(Duration::from_millis(1));
        self
    }

    /// The loopback port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Builds the genesis state and starts serving and ticking (on a thread and runtime of
    /// its own).
    #[tracing::instrument(name = "svm_devnet_start", skip(self), fields(port = self.port))]
    pub async fn start(self) -> Result<SvmDevnet, SvmDevnetError> {
        let accounts = genesis::dev_accounts();
        let chain = Chain::new(&accounts)?;
        let shared = Arc::new(Shared {
            chain: Mutex::new(chain),
        });
        let listener = server::bind(self.port)?;
        let port = listener
            .local_addr()
            .map_err(|source| SvmDevnetError::Bind {
                port: self.port,
                source,
            })?
            .port();
        let server = server::spawn(listener, Arc::clone(&shared), self.slot_interval)?;
        let url = format!("http://127.0.0.1:{port}");
        tracing::info!(%url, usdc = genesis::USDC_MINT, "svm devnet listening");
        Ok(SvmDevnet {
            url,
            accounts,
            server,
            shared,
        })
    }
}

/// A running Solana devnet. Dropping it stops the HTTP server and the slot ticker (in-flight
/// requests are answered, idle connections closed).
pub struct SvmDevnet {
    url: String,
    accounts: Vec<DevAccount>,
    server: server::Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SvmDevnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvmDevnet")
            .field("url", &self.url)
            .field("slot", &self.slot())
            .finish_non_exhaustive()
    }
}

impl SvmDevnet {
    /// A builder, to choose the slot interval and the port.
    pub fn builder() -> SvmDevnetBuilder {
        SvmDevnetBuilder::default()
    }

    /// Starts a devnet with the defaults (a slot every 400 ms, a free loopback port).
    pub async fn start() -> Result<Self, SvmDevnetError> {
        SvmDevnetBuilder::default().start().await
    }

    /// The JSON-RPC endpoint, e.g. `http://127.0.0.1:38211`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CAIP-2 id: `solana:` and the first 32 characters of the genesis hash — Solana
    /// devnet's, `solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`.
    pub fn caip2(&self) -> String {
        let reference: String = DEVNET_GENESIS_HASH.chars().take(32).collect();
        format!("solana:{reference}")
    }

    /// The SPL Token mint at [`crate::USDC_MINT`] (6 decimals).
    pub fn usdc_mint(&self) -> Address {
        genesis::usdc_mint()
    }

    /// The Token-2022 mint (6 decimals, no extensions), at the public key of
    /// `sha256("tollgate-svm-devnet token-2022 mint")`.
    pub fn token2022_mint(&self) -> Address {
        genesis::token_2022_mint()
    }

    /// The ten dev accounts, each with [`crate::INITIAL_LAMPORTS`] and
    /// [`crate::INITIAL_TOKENS`] of each mint. Account 0 is both mints' mint authority.
    pub fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    /// Dev account `i`'s keypair.
    ///
    /// # Panics
    ///
    /// If `i` is not a dev account (0–9), as indexing [`Self::accounts`] would.
    pub fn keypair(&self, i: usize) -> Keypair {
        self.accounts[i].keypair()
    }

    /// The current slot (= block height).
    pub fn slot(&self) -> u64 {
        self.shared.lock().slot()
    }

    /// Advances `n` slots at once, each with a fresh blockhash: `advance_slots(151)` expires
    /// every blockhash handed out so far.
    pub fn advance_slots(&self, n: u64) {
        self.shared.lock().advance(n);
    }

    /// The balance of `owner`'s associated token account for `mint` (under the mint's token
    /// program), 0 if there is none.
    pub fn token_balance(&self, owner: &Address, mint: &Address) -> u64 {
        self.shared.lock().token_balance(owner, mint)
    }

    /// Lamports of an account (0 if it does not exist).
    pub fn lamports(&self, address: &Address) -> u64 {
        self.shared.lock().lamports(address)
    }

    /// What a client needs to use the devnet, as JSON: `rpcUrl`, `network` (CAIP-2),
    /// `genesisHash`, `mints` (`usdc`, `token2022`: address, token program, decimals) and
    /// `accounts` (address and `secretKey`: the base58 64-byte keypair, as the Solana CLI and
    /// wallets import it).
    pub fn facts(&self) -> Value {
        let mints = genesis::mints();
        let mint_json = |m: &genesis::GenesisMint| {
            json!({
                "address": m.address.to_string(),
                "tokenProgram": m.token_program.to_string(),
                "decimals": m.decimals,
            })
        };
        let accounts: Vec<Value> = self
            .accounts
            .iter()
            .map(|a| {
                json!({
                    "address": a.address.to_string(),
                    "secretKey": a.keypair().to_base58_string(),
                })
            })
            .collect();
        json!({
            "rpcUrl": self.url,
            "network": self.caip2(),
            "genesisHash": DEVNET_GENESIS_HASH,
            "mints": {
                "usdc": mint_json(&mints[0]),
                "token2022": mint_json(&mints[1]),
            },
            "accounts": accounts,
            "note": "the secret keys are derived from public labels: test use only, never with real funds",
        })
    }
}

impl Drop for SvmDevnet {
    fn drop(&mut self) {
        self.server.stop();
    }
}
