//! Facilitator side of the `exact` EVM scheme: verify a payment, then settle it on chain.
//!
//! - [`ExactEvmFacilitator`]: one chain, one RPC provider, a pool of settlement signers.
//! - [`verify`](ExactEvmFacilitator::verify): every check of the spec's verification list,
//!   each failing with its own [`VerifyError`] variant and x402 reason code.
//! - [`settle`](ExactEvmFacilitator::settle): re-verifies, submits `transferWithAuthorization`,
//!   waits for the receipt, and checks the `Transfer` event — alone, or batched with others
//!   in one Multicall3 transaction ([`BatchConfig`]).

mod batch;
mod chain;
mod error;
mod probe;
mod sender;
mod settle;
mod verify;

pub(crate) use verify::is_transport_failure;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use tollgate_proto::{
    Network, PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse,
};

pub use batch::BatchConfig;
pub use chain::{ChainConfig, EvmChain, DEFAULT_MIN_SIGNER_BALANCE};
pub use error::{SettleError, VerifyError};
pub use probe::{dry_run_call, dry_runs_succeeded, ProbeConfig, ProbeStats};
pub use sender::{Replacement, SignerSelection};

use batch::Batcher;
use probe::Prober;

use crate::payload::Authorization;
use crate::signature::PayerSignature;

/// Tunables of verification and settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilitatorConfig {
    /// An authorization whose `validBefore` is closer than this is refused: settlement takes a
    /// block or two, and a transfer that expires in flight costs the facilitator gas for nothing.
    pub valid_before_margin: Duration,
    /// Factories an EIP-6492 signature may call to deploy the payer's wallet. Empty means none:
    /// an unknown factory is arbitrary code the facilitator would pay to run, so this fails closed.
    pub allowed_factories: Vec<Address>,
    /// How long settlement waits for a receipt before answering "pending".
    pub receipt_timeout: Duration,
    /// How a settlement picks one of several signers.
    pub selection: SignerSelection,
    /// Re-sending transactions stuck in the mempool with a higher fee; `None` never replaces.
    pub replacement: Option<Replacement>,
    /// Settling payments together in Multicall3 batches; `None` sends one transaction each.
    pub batch: Option<BatchConfig>,
    /// Verifying concurrent payments with one `eth_call` between them (an `eth_call` state
    /// override runs a helper contract; see [`ProbeConfig`]). `None` reads the chain for each
    /// payment on its own — for a node that refuses state overrides, although the facilitator
    /// also notices that by itself and falls back for a while.
    pub probe: Option<ProbeConfig>,
}

impl Default for FacilitatorConfig {
    fn default() -> Self {
        Self {
            valid_before_margin: Duration::from_secs(6),
            allowed_factories: Vec::new(),
            receipt_timeout: Duration::from_secs(60),
            selection: SignerSelection::default(),
            replacement: Some(Replacement::default()),
            batch: None,
            probe: Some(ProbeConfig::default()),
        }
    }
}

/// A payment that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayment {
    /// The payer.
    pub payer: Address,
    /// The token.
    pub asset: Address,
    /// The signed authorization.
    pub authorization: Authorization,
    /// How the payer signed, which decides the settlement call.
    pub signature: PayerSignature,
}

/// A settled payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The transaction that moved the funds.
    pub tx_hash: B256,
    /// The payer.
    pub payer: Address,
    /// The network.
    pub network: Network,
    /// The amount moved, in atomic units.
    pub amount: U256,
    /// The block the transfer landed in.
    pub block_number: Option<u64>,
}

/// Verifies and settles `exact` EVM payments on one chain.
///
/// Clone it freely: the provider is reference-counted.
#[derive(Clone)]
pub struct ExactEvmFacilitator {
    /// Provider, network and signer pool, possibly shared with other schemes.
    chain: EvmChain,
    config: FacilitatorConfig,
    /// Started on the first batched settlement (it needs a running runtime).
    batcher: Arc<OnceLock<Batcher>>,
    /// Started on the first verification (it needs a running runtime).
    prober: Arc<OnceLock<Prober>>,
    /// Assets seen with contract code. Code does not disappear, so one `eth_getCode` per asset
    /// suffices; assets without code are not cached (a token may be deployed later).
    deployed_assets: Arc<std::sync::Mutex<std::collections::HashSet<Address>>>,
    /// The Permit2 transfer method (`extra.assetTransferMethod: "permit2"`), on the same chain.
    permit2: crate::permit2::engine::Permit2Engine,
}

impl std::fmt::Debug for ExactEvmFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The provider holds the signing key: never print it.
        f.debug_struct("ExactEvmFacilitator")
            .field("network", &self.chain.network)
            .field("signers", &self.chain.pool.addresses())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a facilitator could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Parser message.
        reason: String,
    },
    /// No node answered `eth_chainId`.
    #[error("RPC {url} did not answer eth_chainId: {reason}")]
    ChainId {
        /// The URL (every configured one, when several).
        url: String,
        /// Transport message.
        reason: String,
    },
    /// Two endpoints configured for one network serve different chains.
    #[error("RPC {url} serves chain {chain_id}, but {first_url} serves chain {first}: endpoints of one network must serve one chain")]
    MixedChains {
        /// The endpoint that answered first.
        first_url: String,
        /// Its chain id.
        first: u64,
        /// The endpoint that disagrees.
        url: String,
        /// Its chain id.
        chain_id: u64,
    },
}

impl ExactEvmFacilitator {
    /// A facilitator over an existing provider. `provider` must be able to sign transactions
    /// from every address of `signers` (at least one) and be connected to the chain `network`
    /// names. Transactions are filled here (nonce from the node's pending count, gas, fees), so
    /// the provider's own fillers are not relied on.
    ///
    /// # Panics
    ///
    /// If `signers` is empty: a facilitator that cannot send cannot settle.
    pub fn new(
        provider: DynProvider,
        signers: Vec<Address>,
        network: Network,
        config: FacilitatorConfig,
    ) -> Self {
        let chain = EvmChain::new(provider, signers, network, ChainConfig::from(&config));
        Self::on_chain(&chain, config)
    }

    /// Connects to `rpc_url` over HTTP, asks the node its chain id, and settles with `signer`.
    pub async fn connect(
        rpc_url: &str,
        signer: PrivateKeySigner,
        config: FacilitatorConfig,
    ) -> Result<Self, ConnectError> {
        Self::connect_pool(rpc_url, vec![signer], config).await
    }

    /// Connects to `rpc_url` over HTTP and settles with a pool of `signers` (at least one),
    /// each with its own nonce sequence, picked per settlement by
    /// [`FacilitatorConfig::selection`].
    pub async fn connect_pool(
        rpc_url: &str,
        signers: Vec<PrivateKeySigner>,
        config: FacilitatorConfig,
    ) -> Result<Self, ConnectError> {
        Self::connect_failover(&[rpc_url], signers, config).await
    }

    /// Like [`connect_pool`](Self::connect_pool), over several RPC endpoints of one chain with
    /// failover between them ([`FailoverTransport`](crate::rpc::FailoverTransport)): the first is used while it answers.
    ///
    /// At start-up every endpoint is asked its chain id. One that answers with another chain
    /// than the rest is a configuration mistake and an error; one that does not answer is
    /// logged and kept (it is tried last while it stays down); none answering is an error.
    pub async fn connect_failover<S: AsRef<str>>(
        rpc_urls: &[S],
        signers: Vec<PrivateKeySigner>,
        config: FacilitatorConfig,
    ) -> Result<Self, ConnectError> {
        let chain = EvmChain::connect(rpc_urls, signers, ChainConfig::from(&config)).await?;
        Ok(Self::on_chain(&chain, config))
    }

    /// `exact` on an existing chain: its provider and its signer pool are shared with every
    /// other scheme built on `chain`, so their settlements take nonces from one sequence per
    /// signer instead of racing for the same ones. The chain's own signer selection,
    /// replacement policy and receipt timeout apply; those fields of `config` are ignored.
    pub fn on_chain(chain: &EvmChain, mut config: FacilitatorConfig) -> Self {
        config.selection = chain.config().selection;
        config.replacement = chain.config().replacement;
        config.receipt_timeout = chain.config().receipt_timeout;
        let permit2 = crate::permit2::engine::Permit2Engine::new(
            chain,
            crate::permit2::engine::Permit2Config {
                deadline_margin: config.valid_before_margin,
                ..Default::default()
            },
        );
        Self {
            chain: chain.clone(),
            config,
            batcher: Default::default(),
            prober: Default::default(),
            deployed_assets: Default::default(),
            permit2,
        }
    }

    /// The same facilitator with its Permit2 transfer method configured (which gas-sponsoring
    /// extensions it accepts, the deadline margin).
    pub fn with_permit2(mut self, config: crate::permit2::engine::Permit2Config) -> Self {
        self.permit2 = crate::permit2::engine::Permit2Engine::new(&self.chain, config);
        self
    }

    /// The Permit2 transfer method's verification and settlement.
    pub fn permit2(&self) -> &crate::permit2::engine::Permit2Engine {
        &self.permit2
    }

    /// The chain this facilitator settles on (shared with other schemes built on it).
    pub fn chain(&self) -> &EvmChain {
        &self.chain
    }

    /// The network this facilitator settles on.
    pub fn network(&self) -> &Network {
        &self.chain.network
    }

    /// The first settlement signer (the `from` of dry runs).
    pub fn signer_address(&self) -> Address {
        self.chain.pool.primary()
    }

    /// Every address that sends settlement transactions (and pays their gas).
    pub fn signer_addresses(&self) -> Vec<Address> {
        self.chain.pool.addresses()
    }

    /// Settlement transactions sent and not yet seen mined, per signer.
    pub fn signers_in_flight(&self) -> Vec<(Address, usize)> {
        self.chain.pool.in_flight()
    }

    /// The configuration.
    pub fn config(&self) -> &FacilitatorConfig {
        &self.config
    }

    /// The RPC provider.
    pub fn provider(&self) -> &DynProvider {
        &self.chain.provider
    }

    /// How the coalesced verification reads went so far; `None` when they are off
    /// ([`FacilitatorConfig::probe`]) or nothing was verified yet.
    pub fn probe_stats(&self) -> Option<ProbeStats> {
        self.prober.get().map(Prober::stats)
    }

    /// The coalescing prober, started on first use; `None` when configured off.
    fn prober(&self) -> Option<&Prober> {
        let config = self.config.probe?;
        Some(
            self.prober
                .get_or_init(|| Prober::spawn(self.chain.provider.clone(), config)),
        )
    }

    /// [`verify`](Self::verify), shaped as the wire's `VerifyResponse`.
    pub async fn verify_response(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> VerifyResponse {
        match self.verify(payment, requirements).await {
            Ok(v) => VerifyResponse::valid(v.payer.to_string()),
            Err(e) => VerifyResponse::invalid(
                e.reason(),
                Some(e.to_string()),
                claimed_payer(payment).map(|a| a.to_string()),
            ),
        }
    }

    /// [`settle`](Self::settle), shaped as the wire's `SettleResponse`.
    pub async fn settle_response(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> SettleResponse {
        let payer = claimed_payer(payment).map(|a| a.to_string());
        match self.settle(payment, requirements).await {
            Ok(s) => SettleResponse {
                success: true,
                error_reason: None,
                error_message: None,
                payer: Some(s.payer.to_string()),
                transaction: s.tx_hash.to_string(),
                network: s.network,
                amount: None,
                extensions: None,
                extra: None,
            },
            Err(e) => SettleResponse {
                success: false,
                error_reason: Some(e.reason()),
                error_message: Some(e.to_string()),
                payer,
                transaction: e.tx_hash().map(|h| h.to_string()).unwrap_or_default(),
                network: requirements.network.clone(),
                amount: None,
                extensions: None,
                extra: None,
            },
        }
    }
}

/// The payer a payload claims, if it parses at all (used to fill `payer` in error responses).
fn claimed_payer(payment: &PaymentPayload) -> Option<Address> {
    crate::payload::ExactEvmPayload::from_payment(payment)
        .ok()
        .map(|p| p.authorization.from)
}
