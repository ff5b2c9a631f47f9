//! [`FacilitatorBuilder`]: an in-process facilitator in one expression.
//!
//! [`Facilitator::from_config`] starts a facilitator from a configuration file;
//! [`Facilitator::new`] takes ready-made parts. Between the two, a program that embeds a
//! facilitator (a resource server settling in-process, a test, a devnet demo) names what it
//! has — an RPC endpoint and a key per network, where the ledger lives — and the builder
//! connects, checks and assembles the rest:
//!
//! ```no_run
//! # async fn run(signer: alloy::signers::local::PrivateKeySigner) -> Result<(), Box<dyn std::error::Error>> {
//! use tollgate_facilitator::Facilitator;
//! let facilitator = Facilitator::builder()
//!     .network("http://127.0.0.1:8545", signer)
//!     .ledger_path("settlements.db")
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use tollgate_core::{ChainOps, NetworkPattern, Registry, SchemeFacilitator};
use tollgate_evm::{ChainConfig, ConnectError, EvmChain, FacilitatorConfig};
use tollgate_proto::Network;

use crate::ledger::{Ledger, LedgerError};
use crate::service::{Facilitator, DEFAULT_MIN_SIGNER_BALANCE};

/// Why [`FacilitatorBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No network and no scheme was added: the facilitator could settle nothing.
    #[error("no network: add one with FacilitatorBuilder::network (or a scheme with FacilitatorBuilder::scheme)")]
    NoNetwork,
    /// No ledger was chosen. There is no default, because where settlements are recorded
    /// decides whether a payment can be settled twice across a restart.
    #[error("no ledger: choose in_memory_ledger(), ledger_path(..) or ledger(..)")]
    NoLedger,
    /// A network was added without a signer.
    #[error("network at {rpc_url}: no signer (a facilitator that cannot send cannot settle)")]
    NoSigner {
        /// The RPC endpoint of that network.
        rpc_url: String,
    },
    /// The RPC endpoint could not be reached or named no usable chain.
    #[error("network at {rpc_url}: {source}")]
    Connect {
        /// The RPC endpoint.
        rpc_url: String,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// Two added endpoints serve the same chain; give one network several signers with
    /// [`FacilitatorBuilder::network_with`] instead.
    #[error("network {network} added twice (at {first_url} and {rpc_url})")]
    DuplicateNetwork {
        /// The network both serve.
        network: Network,
        /// The first endpoint.
        first_url: String,
        /// The second.
        rpc_url: String,
    },
    /// The ledger could not be opened or reconciled.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Two schemes were registered for overlapping networks.
    #[error(transparent)]
    Register(#[from] tollgate_core::RegisterError),
}

/// Where the builder's facilitator records settlements.
enum LedgerChoice {
    InMemory,
    Path(PathBuf),
    Given(Ledger),
}

/// One network to settle on.
struct NetworkSpec {
    rpc_url: String,
    signers: Vec<PrivateKeySigner>,
    config: FacilitatorConfig,
    min_signer_balance: U256,
}

/// Builds a [`Facilitator`]: see [`Facilitator::builder`].
#[must_use = "a builder does nothing until build() is awaited"]
pub struct FacilitatorBuilder {
    networks: Vec<NetworkSpec>,
    schemes: Vec<(NetworkPattern, Arc<dyn SchemeFacilitator>)>,
    chains: Vec<Arc<dyn ChainOps>>,
    ledger: Option<LedgerChoice>,
}

impl std::fmt::Debug for FacilitatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Signing keys are never printed: only endpoints and signer addresses.
        f.debug_struct("FacilitatorBuilder")
            .field(
                "networks",
                &self
                    .networks
                    .iter()
                    .map(|n| {
                        (
                            n.rpc_url.as_str(),
                            n.signers.iter().map(|s| s.address()).collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Facilitator {
    /// A builder: add each network's RPC endpoint and signer, choose the ledger, `build()`.
    ///
    /// The network of each endpoint is the chain id its node reports (`eip155:<id>`), so the
    /// facilitator can never settle on a chain other than the one it was pointed at.
    pub fn builder() -> FacilitatorBuilder {
        FacilitatorBuilder {
            networks: Vec::new(),
            schemes: Vec::new(),
            chains: Vec::new(),
            ledger: None,
        }
    }
}

impl FacilitatorBuilder {
    /// Settles on the chain at `rpc_url` with `signer` (which pays the gas), with the default
    /// [`FacilitatorConfig`] and low-gas threshold ([`DEFAULT_MIN_SIGNER_BALANCE`]).
    pub fn network(self, rpc_url: impl Into<String>, signer: PrivateKeySigner) -> Self {
        self.network_with(rpc_url, vec![signer], FacilitatorConfig::default())
    }

    /// Settles on the chain at `rpc_url` with a pool of `signers` (each with its own nonce
    /// sequence) and explicit tunables.
    pub fn network_with(
        mut self,
        rpc_url: impl Into<String>,
        signers: Vec<PrivateKeySigner>,
        config: FacilitatorConfig,
    ) -> Self {
        self.networks.push(NetworkSpec {
            rpc_url: rpc_url.into(),
            signers,
            config,
            min_signer_balance: U256::from(DEFAULT_MIN_SIGNER_BALANCE),
        });
        self
    }

    /// Also serves `scheme` on the networks of `pattern`: any [`SchemeFacilitator`], e.g. one
    /// defined outside Tollgate. The ledger, attempt keys, claims between replicas and crash
    /// recovery work for it as for `exact`.
    pub fn scheme(mut self, pattern: NetworkPattern, scheme: Arc<dyn SchemeFacilitator>) -> Self {
        self.schemes.push((pattern, scheme));
        self
    }

    /// Reports `chain` (its head and signers) in `/health` and metrics: the plumbing of a
    /// network whose schemes were added with [`scheme`](Self::scheme).
    pub fn chain(mut self, chain: Arc<dyn ChainOps>) -> Self {
        self.chains.push(chain);
        self
    }

    /// Records settlements in memory: gone with the process, so after a restart a payment
    /// whose settlement was in flight is not known. For tests, demos and devnets.
    pub fn in_memory_ledger(mut self) -> Self {
        self.ledger = Some(LedgerChoice::InMemory);
        self
    }

    /// Records settlements in the SQLite file at `path` (created if needed). `build()` then
    /// reconciles what a previous run left in flight.
    pub fn ledger_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ledger = Some(LedgerChoice::Path(path.into()));
        self
    }

    /// Records settlements in an opened ledger (e.g. [`Ledger::connect_postgres`], shared by
    /// several instances). `build()` reconciles it.
    pub fn ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(LedgerChoice::Given(ledger));
        self
    }

    /// Connects to every network (asking each node its chain id), opens the ledger and, for a
    /// durable one, reconciles the settlements a previous run left pending.
    pub async fn build(self) -> Result<Facilitator, BuildError> {
        if self.networks.is_empty() && self.schemes.is_empty() {
            return Err(BuildError::NoNetwork);
        }
        let choice = self.ledger.ok_or(BuildError::NoLedger)?;
        let mut registry: Registry<dyn SchemeFacilitator> = Registry::new();
        let mut chains = self.chains;
        let mut urls: Vec<(Network, String)> = Vec::new();
        for spec in self.networks {
            if spec.signers.is_empty() {
                return Err(BuildError::NoSigner {
                    rpc_url: spec.rpc_url,
                });
            }
            let chain_config = ChainConfig {
                min_signer_balance: spec.min_signer_balance,
                ..ChainConfig::from(&spec.config)
            };
            let chain = EvmChain::connect(&[&spec.rpc_url], spec.signers, chain_config)
                .await
                .map_err(|source| BuildError::Connect {
                    rpc_url: spec.rpc_url.clone(),
                    source,
                })?;
            if let Some((_, first_url)) = urls.iter().find(|(n, _)| n == chain.network()) {
                return Err(BuildError::DuplicateNetwork {
                    network: chain.network().clone(),
                    first_url: first_url.clone(),
                    rpc_url: spec.rpc_url,
                });
            }
            tracing::info!(network = %chain.network(), signers = ?chain.signer_addresses(), "network ready");
            // Every EVM scheme the chain crate serves (`exact` with these settings, and the
            // others with their defaults), all on this one chain and its signer pool.
            for scheme in tollgate_evm::config::default_schemes(&chain, spec.config) {
                registry.register_arc(
                    NetworkPattern::One(chain.network().clone()),
                    scheme.scheme(),
                    scheme,
                )?;
            }
            urls.push((chain.network().clone(), spec.rpc_url));
            chains.push(Arc::new(chain));
        }
        for (pattern, scheme) in self.schemes {
            registry.register_arc(pattern, scheme.scheme(), scheme)?;
        }
        let (ledger, durable) = match choice {
            LedgerChoice::InMemory => (Ledger::in_memory()?, false),
            LedgerChoice::Path(path) => (Ledger::open(&path)?, true),
            LedgerChoice::Given(ledger) => (ledger, true),
        };
        let facilitator = Facilitator::from_registry(registry, chains, ledger);
        if durable {
            let report = facilitator.reconcile().await?;
            tracing::info!(?report, "ledger reconciled");
        }
        Ok(facilitator)
    }
}
