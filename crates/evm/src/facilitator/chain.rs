//! One EVM network's settlement plumbing, shared by every EVM scheme settling on it.
//!
//! A provider (with failover between RPC endpoints), the pool of settlement signers with their
//! unconfirmed transactions, and the receipt timeout. `exact`, and later `upto` or Permit2,
//! registered on the same network take nonces from this one pool: two schemes each with a
//! pool of their own over the same keys would hand out one nonce twice, and one transaction
//! would replace the other or be stuck behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use tollgate_core::{BoxFuture, ChainOps, SignerStatus};
use tollgate_proto::Network;

use super::sender::SignerPool;
use super::{ConnectError, FacilitatorConfig, Replacement, SettleError, SignerSelection};
use crate::rpc::{FailoverTransport, RpcError};

/// How often a pending transaction's receipt is polled.
const RECEIPT_POLL: Duration = Duration::from_millis(100);

/// Default low-gas threshold of a signer: 0.001 ETH (wei).
pub const DEFAULT_MIN_SIGNER_BALANCE: u64 = 1_000_000_000_000_000;

/// How a chain sends and watches transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    /// Which signer sends the next transaction.
    pub selection: SignerSelection,
    /// Fee-bumped replacement of stuck transactions (`None`: never replace).
    pub replacement: Option<Replacement>,
    /// How long a settlement waits for its receipt before it is reported pending.
    pub receipt_timeout: Duration,
    /// Below this native balance (wei) a signer is reported low on gas.
    pub min_signer_balance: U256,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self::from(&FacilitatorConfig::default())
    }
}

impl From<&FacilitatorConfig> for ChainConfig {
    fn from(c: &FacilitatorConfig) -> Self {
        Self {
            selection: c.selection,
            replacement: c.replacement,
            receipt_timeout: c.receipt_timeout,
            min_signer_balance: U256::from(DEFAULT_MIN_SIGNER_BALANCE),
        }
    }
}

/// One EVM network's provider and signer pool. Cheap to clone: clones share the pool.
///
/// ```no_run
/// # async fn run(key: alloy::signers::local::PrivateKeySigner) -> Result<(), Box<dyn std::error::Error>> {
/// use tollgate_evm::{ChainConfig, EvmChain, ExactEvmFacilitator, FacilitatorConfig};
/// let base = EvmChain::connect(&["http://127.0.0.1:8545"], vec![key], ChainConfig::default()).await?;
/// let exact = ExactEvmFacilitator::on_chain(&base, FacilitatorConfig::default());
/// // Another EVM scheme built on `base` sends through the same signer pool.
/// # let _ = exact; Ok(()) }
/// ```
#[derive(Clone)]
pub struct EvmChain {
    pub(super) provider: DynProvider,
    pub(super) network: Network,
    pub(super) pool: Arc<SignerPool>,
    config: ChainConfig,
}

impl std::fmt::Debug for EvmChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The provider holds the signing keys: never print it.
        f.debug_struct("EvmChain")
            .field("network", &self.network)
            .field("signers", &self.pool.addresses())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EvmChain {
    /// A chain over an existing provider, which must be able to sign for every address of
    /// `signers` and be connected to `network`.
    ///
    /// # Panics
    ///
    /// If `signers` is empty: a chain that cannot send cannot settle.
    pub fn new(
        provider: DynProvider,
        signers: Vec<Address>,
        network: Network,
        config: ChainConfig,
    ) -> Self {
        assert!(!signers.is_empty(), "a chain needs at least one signer");
        let pool = SignerPool::new(signers, config.selection, config.replacement);
        Self {
            provider,
            network,
            pool: Arc::new(pool),
            config,
        }
    }

    /// Connects to several RPC endpoints of one chain with failover between them
    /// ([`FailoverTransport`]): the first is used while it answers. Every endpoint that
    /// answers at start-up must serve the same chain; the network is that chain's id.
    pub async fn connect<S: AsRef<str>>(
        rpc_urls: &[S],
        signers: Vec<PrivateKeySigner>,
        config: ChainConfig,
    ) -> Result<Self, ConnectError> {
        let transport = FailoverTransport::new(rpc_urls).map_err(|e| match e {
            RpcError::Url { url, reason } => ConnectError::Url { url, reason },
            RpcError::NoEndpoint => ConnectError::Url {
                url: String::new(),
                reason: e.to_string(),
            },
        })?;
        let urls: Vec<String> = transport
            .endpoints()
            .iter()
            .map(|u| u.to_string())
            .collect();
        let mut signers = signers.into_iter();
        let first = signers.next().ok_or_else(|| ConnectError::Url {
            url: urls[0].clone(),
            reason: "no signer key given".into(),
        })?;
        let chain_id = Self::common_chain_id(&transport, &urls).await?;
        let mut addresses = vec![first.address()];
        let mut wallet = EthereumWallet::from(first);
        for signer in signers {
            addresses.push(signer.address());
            wallet.register_signer(signer);
        }
        let is_local = transport
            .endpoints()
            .iter()
            .all(|u| alloy::transports::utils::guess_local_url(u.as_str()));
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_chain_id(chain_id)
            .wallet(wallet)
            .connect_client(RpcClient::new(transport, is_local))
            .erased();
        Ok(Self::new(
            provider,
            addresses,
            Network::eip155(chain_id),
            config,
        ))
    }

    /// The chain id every reachable endpoint of `transport` reports.
    async fn common_chain_id(
        transport: &FailoverTransport,
        urls: &[String],
    ) -> Result<u64, ConnectError> {
        let mut chain: Option<(u64, &str)> = None;
        let mut unreachable = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let http = transport.single(i).expect("index from the endpoint list");
            let probe = ProviderBuilder::new()
                .disable_recommended_fillers()
                .connect_client(RpcClient::new(http, true));
            match probe.get_chain_id().await {
                Ok(id) => match chain {
                    Some((first, first_url)) if first != id => {
                        return Err(ConnectError::MixedChains {
                            first_url: first_url.to_owned(),
                            first,
                            url: url.clone(),
                            chain_id: id,
                        })
                    }
                    Some(_) => {}
                    None => chain = Some((id, url)),
                },
                Err(e) => {
                    tracing::warn!(endpoint = %url, error = %e, "RPC endpoint did not answer at start-up; kept as a fallback");
                    unreachable.push(format!("{url}: {e}"));
                }
            }
        }
        chain
            .map(|(id, _)| id)
            .ok_or_else(|| ConnectError::ChainId {
                url: urls.join(", "),
                reason: unreachable.join("; "),
            })
    }

    /// The same chain (sharing its signer pool), reporting signers low on gas below
    /// `wei`.
    pub fn with_min_signer_balance(mut self, wei: U256) -> Self {
        self.config.min_signer_balance = wei;
        self
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The provider (signs for every signer of the pool).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// How this chain sends and watches transactions.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The first signer: the `from` of simulations.
    pub fn primary_signer(&self) -> Address {
        self.pool.primary()
    }

    /// Every settlement signer.
    pub fn signer_addresses(&self) -> Vec<Address> {
        self.pool.addresses()
    }

    /// Unconfirmed transactions per signer.
    pub fn signers_in_flight(&self) -> Vec<(Address, usize)> {
        self.pool.in_flight()
    }

    /// Sends `tx` from the pool's next signer (nonce, gas with `gas_margin_percent` over the
    /// estimate, and fees filled here) and returns its hash. What every scheme on this chain
    /// sends goes through here, so one signer's nonces are handed out once.
    pub async fn send(
        &self,
        tx: TransactionRequest,
        gas_margin_percent: u64,
    ) -> Result<B256, SettleError> {
        self.pool.send(&self.provider, tx, gas_margin_percent).await
    }

    /// Like [`send`](Self::send), from the pool's signer `from`: for a transaction only one
    /// key may send (an `upto` settlement must come from the facilitator its payer named).
    /// Nonces still come from that signer's one sequence. An error when `from` is not one of
    /// this chain's signers.
    pub async fn send_from(
        &self,
        from: Address,
        tx: TransactionRequest,
        gas_margin_percent: u64,
    ) -> Result<B256, SettleError> {
        match self
            .pool
            .send_from(&self.provider, from, tx, gas_margin_percent)
            .await
        {
            Some(result) => result,
            None => Err(SettleError::WouldRevert(format!(
                "{from} is not a settlement signer of {}",
                self.network
            ))),
        }
    }

    /// Polls for the receipt of `tx_hash` (or of a fee-bumped replacement of it) until the
    /// receipt timeout. Once a transaction has been accepted, every failure to see its
    /// receipt is [`SettleError::ReceiptTimeout`] with the hash: it may still land, so the
    /// caller must treat it as pending, never as failed.
    pub async fn wait_receipt(&self, tx_hash: B256) -> Result<TransactionReceipt, SettleError> {
        let started = Instant::now();
        loop {
            match self.pool.poll(&self.provider, tx_hash).await {
                Ok(Some(receipt)) => return Ok(receipt),
                Ok(None) => {}
                Err(e) => tracing::warn!(%tx_hash, error = %e, "receipt poll failed"),
            }
            if started.elapsed() >= self.config.receipt_timeout {
                return Err(SettleError::ReceiptTimeout {
                    tx_hash,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(RECEIPT_POLL).await;
        }
    }
}

impl ChainOps for EvmChain {
    fn network(&self) -> &Network {
        &self.network
    }

    fn head(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move { self.provider.get_block_number().await.ok() })
    }

    fn signer_status(&self) -> BoxFuture<'_, Vec<SignerStatus>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for (address, in_flight) in self.pool.in_flight() {
                let balance = self.provider.get_balance(address).await.ok();
                out.push(SignerStatus {
                    network: self.network.clone(),
                    address: address.to_string(),
                    balance,
                    low_on_gas: balance.is_some_and(|b| b < self.config.min_signer_balance),
                    in_flight,
                });
            }
            out
        })
    }
}
