//! [`Devnet`]: a running devnet, and the [`DevnetBuilder`] that starts one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use alloy_signer_local::PrivateKeySigner;
use tollgate_proto::token::Token;

use crate::chain::Chain;
use crate::genesis::{self, Contracts, DevAccount};
use crate::server::{self, Shared};
use crate::DevnetError;

/// The test token's ticker.
const USDC_SYMBOL: &str = "USDC";
/// The test token's decimals.
const USDC_DECIMALS: u8 = 6;
/// The test token's EIP-712 domain name (the contract's `name()`), as on Base's USDC.
const USDC_EIP712_NAME: &str = "USD Coin";
/// The test token's EIP-712 domain version.
const USDC_EIP712_VERSION: &str = "2";
/// The USDT-like token's ticker (its `symbol()`).
const USDT_SYMBOL: &str = "USDT";
/// The EIP-2612 token's ticker (its `symbol()`).
const PERMIT_TOKEN_SYMBOL: &str = "PUSD";
/// The EIP-2612 token's EIP-712 domain name (its `name()`).
const PERMIT_TOKEN_EIP712_NAME: &str = "Permit USD";
/// The EIP-2612 token's EIP-712 domain version (its `version()`).
const PERMIT_TOKEN_EIP712_VERSION: &str = "1";
/// Decimals of both Permit2 test tokens.
const PERMIT2_TOKENS_DECIMALS: u8 = 6;

/// Configures a devnet before it starts. Defaults: chain id 31337, a free port, automine on,
/// no interval mining.
#[derive(Debug, Clone)]
pub struct DevnetBuilder {
    chain_id: u64,
    port: u16,
    block_time: Option<Duration>,
    automine: bool,
    extra: Vec<(Address, U256)>,
}

impl Default for DevnetBuilder {
    fn default() -> Self {
        Self {
            chain_id: 31337,
            port: 0,
            block_time: None,
            automine: true,
            extra: Vec::new(),
        }
    }
}

impl DevnetBuilder {
    /// The chain id (default 31337, anvil's).
    pub fn chain_id(mut self, chain_id: u64) -> Self {
        self.chain_id = chain_id;
        self
    }

    /// The loopback port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Also mines a block every `every` (with whatever the mempool holds).
    pub fn block_time(mut self, every: Duration) -> Self {
        self.block_time = Some(every);
        self
    }

    /// Whether each transaction is mined into a block on arrival (default on).
    pub fn automine(mut self, on: bool) -> Self {
        self.automine = on;
        self
    }

    /// Funds another account with `wei` at genesis.
    pub fn fund(mut self, address: Address, wei: U256) -> Self {
        self.extra.push((address, wei));
        self
    }

    /// Builds the genesis state and starts serving (on a thread and runtime of its own).
    #[tracing::instrument(name = "devnet_start", skip(self), fields(chain_id = self.chain_id))]
    pub async fn start(self) -> Result<Devnet, DevnetError> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (state, contracts) = genesis::build(self.chain_id, timestamp, &self.extra)?;
        let mut chain = Chain::new(self.chain_id, state, timestamp);
        chain.set_automine(self.automine);
        let accounts = genesis::dev_accounts();
        let shared = Arc::new(Shared {
            chain: Mutex::new(chain),
            accounts: accounts.iter().map(|a| a.address).collect(),
        });
        let listener = server::bind(self.port)?;
        let port = listener
            .local_addr()
            .map_err(|source| DevnetError::Bind {
                port: self.port,
                source,
            })?
            .port();
        let server = server::spawn(listener, Arc::clone(&shared), self.block_time)?;
        tracing::info!(port, token = %contracts.token, "devnet listening on 127.0.0.1");
        Ok(Devnet {
            port,
            chain_id: self.chain_id,
            accounts,
            contracts,
            server,
            shared,
        })
    }
}

/// A running devnet. Dropping it stops the server (in-flight requests are answered, idle
/// connections closed).
pub struct Devnet {
    port: u16,
    chain_id: u64,
    accounts: Vec<DevAccount>,
    contracts: Contracts,
    server: server::Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("url", &self.url())
            .field("chain_id", &self.chain_id)
            .field("token", &self.contracts.token)
            .finish_non_exhaustive()
    }
}

impl Devnet {
    /// Starts a devnet with the defaults (chain id 31337, a free loopback port, automine).
    pub async fn start() -> Result<Self, DevnetError> {
        DevnetBuilder::default().start().await
    }

    /// A builder, to choose chain id, port, block time and extra accounts.
    pub fn builder() -> DevnetBuilder {
        DevnetBuilder::default()
    }

    /// The JSON-RPC endpoint, e.g. `http://127.0.0.1:38211`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The CAIP-2 id of the chain, e.g. `eip155:31337`.
    pub fn caip2(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    /// The funded dev accounts (anvil's ten well-known keys), in order. Account 0 owns the
    /// token; accounts 1–9 hold [`crate::INITIAL_USDC`] each.
    pub fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    /// The EIP-3009 test token ("USD Coin", version "2", 6 decimals).
    pub fn token(&self) -> Address {
        self.contracts.token
    }

    /// The test token as a typed [`Token`]: this chain's network, its address, symbol `USDC`,
    /// 6 decimals and its EIP-712 domain (`"USD Coin"`, `"2"`). Hand it to the paywall
    /// (`PaymentOption::price`) and to the payer's spending policy
    /// (`SpendingPolicy::register_token`), so neither side copies the token's metadata by hand
    /// — metadata that, if wrong, makes every signature valid for nothing.
    pub fn usdc(&self) -> Token {
        Token::new(
            tollgate_proto::Network::eip155(self.chain_id),
            &self.contracts.token.to_string(),
            USDC_SYMBOL,
            USDC_DECIMALS,
        )
        .eip712(USDC_EIP712_NAME, USDC_EIP712_VERSION)
    }

    /// Dev account `index` (0–9) as a signer, ready for a facilitator (account 0 pays gas and
    /// owns the token) or a payer (accounts 1–9 hold [`crate::INITIAL_USDC`] each).
    pub fn account(&self, index: usize) -> Result<PrivateKeySigner, DevnetError> {
        let no_such = || DevnetError::NoSuchAccount {
            index,
            last: self.accounts.len().saturating_sub(1),
        };
        let account = self.accounts.get(index).ok_or_else(no_such)?;
        // The keys are anvil's published test keys, parsed once already in `dev_accounts`.
        account.key.parse().map_err(|_| no_such())
    }

    /// Where genesis put the deployed contracts (tokens, Multicall3, wallet factory). Permit2
    /// and the x402 proxies are at their canonical addresses, [`crate::PERMIT2`],
    /// [`crate::EXACT_PERMIT2_PROXY`] and [`crate::UPTO_PERMIT2_PROXY`].
    pub fn contracts(&self) -> Contracts {
        self.contracts
    }

    /// The USDT-like test token as a typed [`Token`]: symbol `USDT`, 6 decimals and no EIP-712
    /// domain of its own (it has neither EIP-3009 nor EIP-2612: payments in it are Permit2
    /// signatures, whose domain is Permit2's). Accounts 1–9 hold [`crate::INITIAL_USDT`] each.
    pub fn usdt(&self) -> Token {
        Token::new(
            tollgate_proto::Network::eip155(self.chain_id),
            &self.contracts.usdt.to_string(),
            USDT_SYMBOL,
            PERMIT2_TOKENS_DECIMALS,
        )
    }

    /// The EIP-2612 test token as a typed [`Token`]: symbol `PUSD`, 6 decimals, EIP-712 domain
    /// (`"Permit USD"`, `"1"`) — the domain its `permit` signatures use, which the
    /// `eip2612GasSponsoring` extension needs as `extra.name`/`extra.version`. Accounts 1–9
    /// hold [`crate::INITIAL_PERMIT_TOKEN`] each.
    pub fn permit_token(&self) -> Token {
        Token::new(
            tollgate_proto::Network::eip155(self.chain_id),
            &self.contracts.permit_token.to_string(),
            PERMIT_TOKEN_SYMBOL,
            PERMIT2_TOKENS_DECIMALS,
        )
        .eip712(PERMIT_TOKEN_EIP712_NAME, PERMIT_TOKEN_EIP712_VERSION)
    }

    /// Multicall3.
    pub fn multicall3(&self) -> Address {
        self.contracts.multicall3
    }

    /// The CREATE2 factory of EIP-1271 test wallets.
    pub fn wallet_factory(&self) -> Address {
        self.contracts.wallet_factory
    }

    /// The latest block number.
    pub fn block_number(&self) -> u64 {
        self.shared
            .chain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .head_number()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.server.stop();
    }
}
