//! The configuration of EVM chains and of `exact` on them, as a facilitator's TOML file names
//! them.
//!
//! A facilitator's file has one `[[chains.eip155]]` table per EVM network
//! ([`EvmChainSettings`]: RPC endpoints, where the settlement keys come from, how transactions
//! are sent and watched) and `[[schemes]]` tables saying which schemes run on which networks
//! (for `exact` on EVM, the scheme's own settings are [`ExactEvmSettings`]). The types live
//! here, in the chain crate, so that a facilitator knows no EVM field by name: it deserializes
//! these, asks them to [`validate`](EvmChainSettings::validate), and calls
//! [`connect`](EvmChainSettings::connect) and [`ExactEvmSettings::on_chain`].
//!
//! Unknown keys are errors (a mistyped `recipt_timeout_secs` must not silently fall back to a
//! default). Signer keys are never in the file: it names an environment variable or a key
//! file, read only by [`EvmChainSettings::load_signers`], and no error or `Debug` output ever
//! contains a key.
//!
//! ```
//! use tollgate_evm::config::{EvmChainSettings, ExactEvmSettings};
//! // What `[[chains.eip155]]` and the rest of an `exact` `[[schemes]]` table deserialize into
//! // (from TOML in a facilitator; JSON reads the same).
//! let chain: EvmChainSettings = serde_json::from_str(r#"{
//!     "network": "eip155:8453",
//!     "rpc_urls": ["https://mainnet.base.org"],
//!     "signer_key_env": "SETTLER_KEY"
//! }"#)?;
//! chain.validate()?;
//! assert_eq!(chain.chain_config().receipt_timeout.as_secs(), 60);
//! let exact: ExactEvmSettings = serde_json::from_str(r#"{"valid_before_margin_secs": 10}"#)?;
//! assert_eq!(exact.facilitator_config().valid_before_margin.as_secs(), 10);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize;
use tollgate_proto::Network;

use crate::facilitator::{
    BatchConfig, ChainConfig, ConnectError, EvmChain, ExactEvmFacilitator, FacilitatorConfig,
    ProbeConfig, Replacement, SignerSelection, DEFAULT_MIN_SIGNER_BALANCE,
};

/// A well-typed setting whose value is not acceptable. `key` is relative to the table it was
/// read from (`rpc_urls`, `signers[1]`, `batch.max_size`): the facilitator prefixes the
/// table's own place in its file (`chains.eip155[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct SettingsError {
    /// The key at fault, relative to its table.
    pub key: String,
    /// What is wrong. Never contains a signer key.
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Why [`EvmChainSettings::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainSetupError {
    /// A setting is unusable or a signer key could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No RPC endpoint answered, or they disagree about the chain.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The endpoints answer, but for another chain than the configured network.
    #[error("the RPC endpoints serve {served}, not the configured network {configured}")]
    WrongChain {
        /// The `network` of the settings.
        configured: Network,
        /// What the endpoints report.
        served: Network,
    },
}

/// One EVM network (`[[chains.eip155]]`): its endpoints, its settlement signers and how they
/// send. Every scheme a facilitator runs on this network settles through the one
/// [`EvmChain`] built from it, sharing its signer pool and nonces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmChainSettings {
    /// CAIP-2 id, e.g. `eip155:8453`.
    pub network: Network,
    /// JSON-RPC endpoints of this network: the first is used while it answers, the others take
    /// over when it fails (each request moves to the next endpoint on a transport error). All
    /// that answer at start-up must serve the configured chain.
    pub rpc_urls: Vec<String>,
    /// Name of the environment variable holding the settlement signer's private key.
    #[serde(default)]
    pub signer_key_env: Option<String>,
    /// Path of a file holding the settlement signer's private key (hex, one line).
    #[serde(default)]
    pub signer_key_file: Option<PathBuf>,
    /// A pool of settlement signers instead of the single `signer_key_env`/`signer_key_file`:
    /// each key has its own nonce sequence, so settlements proceed in parallel.
    #[serde(default)]
    pub signers: Vec<SignerSource>,
    /// How a settlement picks its signer: `round-robin` or `least-busy`.
    #[serde(default)]
    pub signer_selection: SignerSelection,
    /// A settlement transaction unmined after this many seconds is re-sent with a higher fee
    /// (same nonce). 0 never replaces.
    #[serde(default = "default_replace_after")]
    pub replace_after_secs: u64,
    /// Fee increase of each replacement, in percent (nodes require at least 10).
    #[serde(default = "default_fee_bump")]
    pub fee_bump_percent: u64,
    /// A signer whose native balance is below this (in wei) is reported as low on gas in
    /// `/health` (status `degraded`) and `/metrics`.
    #[serde(default = "default_min_signer_balance")]
    pub min_signer_balance_wei: U256,
    /// How long settlement waits for a receipt before answering "pending".
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_secs: u64,
}

/// Where one pool signer's key comes from: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSource {
    /// Environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// File holding the key (hex, one line).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `exact` on an EVM network (a `[[schemes]]` entry with `scheme = "exact"`, less its
/// `scheme` and `networks`): what verification accepts and whether settlements are batched.
/// How transactions are sent is the chain's business ([`EvmChainSettings`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactEvmSettings {
    /// Authorizations expiring sooner than this are refused.
    #[serde(default = "default_valid_before_margin")]
    pub valid_before_margin_secs: u64,
    /// EIP-6492 wallet factories allowed to deploy payers' wallets (none by default).
    #[serde(default)]
    pub eip6492_factories: Vec<Address>,
    /// Batch settlement (opt-in): payments arriving together share one Multicall3 transaction.
    #[serde(default)]
    pub batch: Option<BatchSettings>,
    /// The Permit2 transfer method (`extra.assetTransferMethod: "permit2"`, for tokens
    /// without EIP-3009): which gas-sponsoring extensions are accepted. Always served; the
    /// seller's requirements decide per token which method a payment uses.
    #[serde(default)]
    pub permit2: Permit2Settings,
    /// Coalesced verification reads (on by default): concurrent verifications share one
    /// `eth_call` (a helper run from a state override) instead of two round trips each.
    #[serde(default)]
    pub coalesce: CoalesceSettings,
}

impl Default for ExactEvmSettings {
    fn default() -> Self {
        Self {
            valid_before_margin_secs: default_valid_before_margin(),
            eip6492_factories: Vec::new(),
            batch: None,
            permit2: Permit2Settings::default(),
            coalesce: CoalesceSettings::default(),
        }
    }
}

/// `coalesce` of `exact`: how verifications share chain reads ([`ProbeConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoalesceSettings {
    /// Off reads the chain for each payment on its own (two round trips).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Most payments judged by one call.
    #[serde(default = "default_coalesce_batch")]
    pub max_batch: usize,
    /// Calls in flight at once.
    #[serde(default = "default_coalesce_in_flight")]
    pub max_in_flight: usize,
    /// How long the first payment of a call waits for others, in milliseconds (0: none).
    #[serde(default)]
    pub window_ms: u64,
}

impl Default for CoalesceSettings {
    fn default() -> Self {
        let probe = ProbeConfig::default();
        Self {
            enabled: true,
            max_batch: probe.max_batch,
            max_in_flight: probe.max_in_flight,
            window_ms: probe.window.as_millis() as u64,
        }
    }
}

fn default_coalesce_batch() -> usize {
    ProbeConfig::default().max_batch
}

fn default_coalesce_in_flight() -> usize {
    ProbeConfig::default().max_in_flight
}

/// `permit2` of `exact`, and the sponsoring settings of `upto`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permit2Settings {
    /// Accept `eip2612GasSponsoring` (a permit for Permit2 submitted with the settlement).
    #[serde(default = "yes")]
    pub sponsor_eip2612: bool,
    /// Accept `erc20ApprovalGasSponsoring`: pay for and relay the payer's signed approval
    /// (and fund its gas). Off by default: it spends the facilitator's gas on a third party's
    /// transaction.
    #[serde(default)]
    pub sponsor_erc20_approval: bool,
}

impl Default for Permit2Settings {
    fn default() -> Self {
        Self {
            sponsor_eip2612: true,
            sponsor_erc20_approval: false,
        }
    }
}

impl Permit2Settings {
    fn engine_config(&self, deadline_margin_secs: u64) -> crate::permit2::engine::Permit2Config {
        crate::permit2::engine::Permit2Config {
            deadline_margin: Duration::from_secs(deadline_margin_secs),
            sponsor_eip2612: self.sponsor_eip2612,
            sponsor_erc20_approval: self.sponsor_erc20_approval,
        }
    }
}

fn yes() -> bool {
    true
}

/// `upto` on an EVM network (a `[[schemes]]` entry with `scheme = "upto"`, less `networks`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UptoEvmSettings {
    /// Authorizations whose Permit2 deadline is closer than this are refused.
    #[serde(default = "default_valid_before_margin")]
    pub deadline_margin_secs: u64,
    /// Accept `eip2612GasSponsoring`.
    #[serde(default = "yes")]
    pub sponsor_eip2612: bool,
    /// Accept `erc20ApprovalGasSponsoring` (off by default, see [`Permit2Settings`]).
    #[serde(default)]
    pub sponsor_erc20_approval: bool,
}

impl Default for UptoEvmSettings {
    fn default() -> Self {
        Self {
            deadline_margin_secs: default_valid_before_margin(),
            sponsor_eip2612: true,
            sponsor_erc20_approval: false,
        }
    }
}

impl UptoEvmSettings {
    /// `upto` with these settings on `chain`, sharing its signer pool.
    pub fn on_chain(&self, chain: &EvmChain) -> crate::upto::UptoEvmFacilitator {
        let sponsoring = Permit2Settings {
            sponsor_eip2612: self.sponsor_eip2612,
            sponsor_erc20_approval: self.sponsor_erc20_approval,
        };
        crate::upto::UptoEvmFacilitator::on_chain(
            chain,
            sponsoring.engine_config(self.deadline_margin_secs),
        )
    }
}

/// `batch-settlement` on an EVM network (a `[[schemes]]` entry with
/// `scheme = "batch-settlement"`, less `networks`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettlementEvmSettings {
    /// The receiver authorizer this facilitator offers servers (announced in `/supported` as
    /// `extra.receiverAuthorizer`; it signs claims and refunds of channels that name it), read
    /// from this environment variable or `receiver_authorizer`'s `key_file`. Without one,
    /// servers sign their own claims and refunds.
    #[serde(default)]
    pub receiver_authorizer: Option<SignerSource>,
    /// Let the receiver authorizer sign refunds too. A refund returns value the server has
    /// served but not claimed yet, so only turn this on when `/settle` is reachable by the
    /// seller alone (the facilitator's `api_key`); start-up refuses it otherwise.
    #[serde(default)]
    pub sign_refunds: bool,
}

impl BatchSettlementEvmSettings {
    /// `batch-settlement` with these settings on `chain`, sharing its signer pool; reads the
    /// receiver authorizer's key.
    pub fn on_chain(
        &self,
        chain: &EvmChain,
    ) -> Result<crate::batch_settlement::BatchSettlementEvmFacilitator, SettingsError> {
        let authorizer = match &self.receiver_authorizer {
            Some(source) => {
                let authorizer = crate::batch_settlement::ReceiverAuthorizer::new(load_key(
                    source,
                    "receiver_authorizer.key_env",
                    "receiver_authorizer.key_file",
                )?);
                Some(if self.sign_refunds {
                    authorizer.signing_refunds()
                } else {
                    authorizer
                })
            }
            None => None,
        };
        Ok(crate::batch_settlement::BatchSettlementEvmFacilitator::on_chain(chain, authorizer))
    }
}

/// The settings of an EVM scheme other than `exact` (whose [`ExactEvmSettings`] a facilitator
/// types itself), chosen by the `scheme` key of its `[[schemes]]` table. A facilitator reads
/// such a table (`networks` removed, `scheme` kept) into this type without naming the scheme.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "scheme")]
pub enum EvmSchemeSettings {
    /// `upto`.
    #[serde(rename = "upto")]
    Upto(UptoEvmSettings),
    /// `batch-settlement`.
    #[serde(rename = "batch-settlement")]
    BatchSettlement(BatchSettlementEvmSettings),
}

impl EvmSchemeSettings {
    /// The schemes besides `exact` these settings can configure.
    pub const SCHEMES: &'static [&'static str] = &["upto", "batch-settlement"];

    /// The scheme configured.
    pub fn scheme(&self) -> tollgate_proto::Scheme {
        match self {
            Self::Upto(_) => tollgate_proto::Scheme::Upto,
            Self::BatchSettlement(_) => tollgate_proto::Scheme::BatchSettlement,
        }
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Self::BatchSettlement(s) = self {
            if let Some(source) = &s.receiver_authorizer {
                if source.key_env.is_some() == source.key_file.is_some() {
                    return Err(invalid(
                        "receiver_authorizer",
                        "set exactly one of key_env and key_file",
                    ));
                }
            } else if s.sign_refunds {
                return Err(invalid(
                    "sign_refunds",
                    "needs a receiver_authorizer to sign with",
                ));
            }
        }
        Ok(())
    }

    /// The scheme built on `chain`, sharing its signer pool. An error when a key it needs
    /// cannot be read.
    pub fn on_chain(
        &self,
        chain: &EvmChain,
    ) -> Result<std::sync::Arc<dyn tollgate_core::SchemeFacilitator>, SettingsError> {
        Ok(match self {
            Self::Upto(s) => std::sync::Arc::new(s.on_chain(chain)),
            Self::BatchSettlement(s) => std::sync::Arc::new(s.on_chain(chain)?),
        })
    }
}

/// Every EVM scheme Tollgate serves, with default settings but `exact`'s, on `chain`: what a
/// facilitator registers for an EVM network it is simply given (`exact`, with EIP-3009 and
/// Permit2, and `upto`). All share the chain's signer pool.
pub fn default_schemes(
    chain: &EvmChain,
    exact: FacilitatorConfig,
) -> Vec<std::sync::Arc<dyn tollgate_core::SchemeFacilitator>> {
    vec![
        std::sync::Arc::new(ExactEvmFacilitator::on_chain(chain, exact)),
        std::sync::Arc::new(UptoEvmSettings::default().on_chain(chain)),
    ]
}

/// `batch` of `exact` on EVM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// How long the first settlement of a batch waits for others, in milliseconds.
    #[serde(default = "default_batch_window")]
    pub window_ms: u64,
    /// Most settlements in one transaction.
    #[serde(default = "default_batch_size")]
    pub max_size: usize,
    /// The chain's Multicall3 contract.
    #[serde(default = "default_multicall3")]
    pub multicall3: Address,
}

impl EvmChainSettings {
    /// Settings for `network` at `rpc_urls` with every default, and no signer yet.
    pub fn new(network: Network, rpc_urls: Vec<String>) -> Self {
        Self {
            network,
            rpc_urls,
            signer_key_env: None,
            signer_key_file: None,
            signers: Vec::new(),
            signer_selection: SignerSelection::default(),
            replace_after_secs: default_replace_after(),
            fee_bump_percent: default_fee_bump(),
            min_signer_balance_wei: default_min_signer_balance(),
            receipt_timeout_secs: default_receipt_timeout(),
        }
    }

    /// Checks every value that the types alone cannot (no I/O: keys are read by
    /// [`load_signers`](Self::load_signers)).
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.network.eip155_chain_id().is_none() {
            return Err(invalid(
                "network",
                format!("{} is not an EVM (eip155) network", self.network),
            ));
        }
        if self.rpc_urls.is_empty() {
            return Err(invalid("rpc_urls", "give at least one RPC URL"));
        }
        for url in &self.rpc_urls {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "http://".len();
            if !ok {
                return Err(invalid(
                    "rpc_urls",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        match (
            &self.signer_key_env,
            &self.signer_key_file,
            self.signers.is_empty(),
        ) {
            (Some(_), Some(_), _) => {
                return Err(invalid(
                    "signer_key_env",
                    "set signer_key_env or signer_key_file, not both",
                ))
            }
            (Some(_), None, false) | (None, Some(_), false) => {
                return Err(invalid(
                    "signers",
                    "set either a signer pool (signers) or one signer_key_env/signer_key_file, not both",
                ))
            }
            (None, None, true) => {
                return Err(invalid(
                    "signer_key_env",
                    "set signer_key_env (an environment variable name), signer_key_file, or a signers pool",
                ))
            }
            _ => {}
        }
        for (j, source) in self.signers.iter().enumerate() {
            if source.key_env.is_some() == source.key_file.is_some() {
                return Err(invalid(
                    format!("signers[{j}]"),
                    "set exactly one of key_env and key_file",
                ));
            }
        }
        if self.replace_after_secs > 0 && self.fee_bump_percent < 10 {
            return Err(invalid(
                "fee_bump_percent",
                "nodes refuse replacements that raise the fee by less than 10 percent",
            ));
        }
        if self.receipt_timeout_secs == 0 {
            return Err(invalid("receipt_timeout_secs", "must be positive"));
        }
        Ok(())
    }

    /// How the chain built from these settings sends and watches transactions.
    pub fn chain_config(&self) -> ChainConfig {
        ChainConfig {
            selection: self.signer_selection,
            replacement: (self.replace_after_secs > 0).then(|| Replacement {
                after: Duration::from_secs(self.replace_after_secs),
                fee_bump_percent: self.fee_bump_percent,
            }),
            receipt_timeout: Duration::from_secs(self.receipt_timeout_secs),
            min_signer_balance: self.min_signer_balance_wei,
        }
    }

    /// Reads every signer key (the single one, or the pool) from the environment or key files.
    /// A key never appears in an error: only where it was looked for.
    pub fn load_signers(&self) -> Result<Vec<PrivateKeySigner>, SettingsError> {
        if self.signers.is_empty() {
            let source = SignerSource {
                key_env: self.signer_key_env.clone(),
                key_file: self.signer_key_file.clone(),
            };
            return Ok(vec![load_key(
                &source,
                "signer_key_env",
                "signer_key_file",
            )?]);
        }
        self.signers
            .iter()
            .enumerate()
            .map(|(i, source)| {
                load_key(
                    source,
                    &format!("signers[{i}].key_env"),
                    &format!("signers[{i}].key_file"),
                )
            })
            .collect()
    }

    /// Validates, reads the signer keys, connects to the endpoints and checks that they serve
    /// the configured network: the one [`EvmChain`] of this network, for every scheme on it.
    pub async fn connect(&self) -> Result<EvmChain, ChainSetupError> {
        self.validate()?;
        let signers = self.load_signers()?;
        let chain = EvmChain::connect(&self.rpc_urls, signers, self.chain_config()).await?;
        if chain.network() != &self.network {
            return Err(ChainSetupError::WrongChain {
                configured: self.network.clone(),
                served: chain.network().clone(),
            });
        }
        Ok(chain)
    }
}

fn load_key(
    source: &SignerSource,
    env_key: &str,
    file_key: &str,
) -> Result<PrivateKeySigner, SettingsError> {
    let (key, from, raw) = match (&source.key_env, &source.key_file) {
        (Some(var), _) => (
            env_key,
            format!("environment variable {var}"),
            std::env::var(var)
                .map_err(|_| invalid(env_key, format!("environment variable {var} is not set")))?,
        ),
        (None, Some(path)) => (
            file_key,
            format!("key file {}", path.display()),
            std::fs::read_to_string(path)
                .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => return Err(invalid(env_key, "no signer configured")),
    };
    // The parser's message could quote the input: say only where the key was looked for.
    raw.trim().parse::<PrivateKeySigner>().map_err(|_| {
        invalid(
            key,
            format!("{from} does not hold a valid 32-byte hex private key"),
        )
    })
}

impl ExactEvmSettings {
    /// Checks every value that the types alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(batch) = &self.batch {
            if batch.max_size < 2 || batch.max_size > 500 {
                return Err(invalid("batch.max_size", "must be between 2 and 500"));
            }
            if batch.window_ms == 0 || batch.window_ms > 10_000 {
                return Err(invalid(
                    "batch.window_ms",
                    "must be between 1 and 10000 milliseconds",
                ));
            }
        }
        let c = &self.coalesce;
        if c.max_batch == 0 || c.max_batch > 256 {
            return Err(invalid("coalesce.max_batch", "must be between 1 and 256"));
        }
        if c.max_in_flight == 0 || c.max_in_flight > 64 {
            return Err(invalid(
                "coalesce.max_in_flight",
                "must be between 1 and 64",
            ));
        }
        if c.window_ms > 1_000 {
            return Err(invalid(
                "coalesce.window_ms",
                "must be at most 1000 milliseconds (it delays every verification)",
            ));
        }
        Ok(())
    }

    /// The scheme's tunables. Its chain-level fields (signer selection, replacement, receipt
    /// timeout) are defaults here: [`ExactEvmFacilitator::on_chain`] takes them from the chain.
    pub fn facilitator_config(&self) -> FacilitatorConfig {
        FacilitatorConfig {
            valid_before_margin: Duration::from_secs(self.valid_before_margin_secs),
            allowed_factories: self.eip6492_factories.clone(),
            batch: self.batch.as_ref().map(|b| BatchConfig {
                window: Duration::from_millis(b.window_ms),
                max_size: b.max_size,
                multicall3: b.multicall3,
            }),
            probe: self.coalesce.enabled.then(|| ProbeConfig {
                max_batch: self.coalesce.max_batch,
                max_in_flight: self.coalesce.max_in_flight,
                window: Duration::from_millis(self.coalesce.window_ms),
            }),
            ..FacilitatorConfig::default()
        }
    }

    /// `exact` with these settings on `chain`, sharing its signer pool.
    pub fn on_chain(&self, chain: &EvmChain) -> ExactEvmFacilitator {
        ExactEvmFacilitator::on_chain(chain, self.facilitator_config())
            .with_permit2(self.permit2.engine_config(self.valid_before_margin_secs))
    }
}

fn default_replace_after() -> u64 {
    30
}
fn default_fee_bump() -> u64 {
    20
}
fn default_min_signer_balance() -> U256 {
    // 0.001 ETH: a few hundred settlements on an L2, a handful on mainnet.
    U256::from(DEFAULT_MIN_SIGNER_BALANCE)
}
fn default_receipt_timeout() -> u64 {
    60
}
fn default_valid_before_margin() -> u64 {
    6
}
fn default_batch_window() -> u64 {
    50
}
fn default_batch_size() -> usize {
    50
}
fn default_multicall3() -> Address {
    alloy::primitives::address!("cA11bde05977b3631167028862bE2a173976CA11")
}

#[cfg(test)]
mod tests {
    #[test]
    fn other_evm_schemes_are_typed_by_their_scheme_key() {
        use super::{EvmSchemeSettings, UptoEvmSettings};
        let upto: EvmSchemeSettings = serde_json::from_value(serde_json::json!({
            "scheme": "upto", "deadline_margin_secs": 9, "sponsor_erc20_approval": true
        }))
        .unwrap();
        assert_eq!(upto.scheme(), tollgate_proto::Scheme::Upto);
        assert_eq!(
            upto,
            EvmSchemeSettings::Upto(UptoEvmSettings {
                deadline_margin_secs: 9,
                sponsor_eip2612: true,
                sponsor_erc20_approval: true,
            })
        );
        for bad in [
            serde_json::json!({"scheme": "upto", "deadline_margn_secs": 9}),
            serde_json::json!({"scheme": "exact"}),
        ] {
            assert!(
                serde_json::from_value::<EvmSchemeSettings>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let exact: super::ExactEvmSettings =
            serde_json::from_value(serde_json::json!({"permit2": {"sponsor_eip2612": false}}))
                .unwrap();
        assert!(!exact.permit2.sponsor_eip2612 && !exact.permit2.sponsor_erc20_approval);
    }

    use serde_json::{json, Value};

    use super::*;

    /// Settings for eip155:8453 with `extra` keys added (the tests use JSON, which these types
    /// read like TOML).
    fn chain(extra: Value) -> EvmChainSettings {
        let mut v = json!({"network": "eip155:8453", "rpc_urls": ["http://127.0.0.1:8545"]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_chain_config() {
        let c = chain(json!({"signer_key_env": "K"}));
        c.validate().unwrap();
        let mut expected = EvmChainSettings::new(c.network.clone(), c.rpc_urls.clone());
        expected.signer_key_env = Some("K".into());
        assert_eq!(c, expected);
        let cc = c.chain_config();
        assert_eq!(cc.receipt_timeout, Duration::from_secs(60));
        assert_eq!(cc.replacement.unwrap().fee_bump_percent, 20);
        assert_eq!(
            cc.min_signer_balance,
            U256::from(DEFAULT_MIN_SIGNER_BALANCE)
        );
        let never =
            chain(json!({"signer_key_env": "K", "replace_after_secs": 0, "fee_bump_percent": 1}));
        never.validate().unwrap();
        assert_eq!(never.chain_config().replacement, None);
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            (json!({}), "signer_key_env"),
            (
                json!({"signer_key_env": "K", "signer_key_file": "/k"}),
                "signer_key_env",
            ),
            (
                json!({"signer_key_env": "K", "signers": [{"key_env": "A"}]}),
                "signers",
            ),
            (
                json!({"signers": [{"key_env": "A", "key_file": "/k"}]}),
                "signers[0]",
            ),
            (
                json!({"signer_key_env": "K", "fee_bump_percent": 5}),
                "fee_bump_percent",
            ),
            (
                json!({"signer_key_env": "K", "receipt_timeout_secs": 0}),
                "receipt_timeout_secs",
            ),
        ];
        for (extra, key) in cases {
            assert_eq!(
                chain(extra.clone()).validate().unwrap_err().key,
                key,
                "{extra}"
            );
        }
        let mut c = chain(json!({"signer_key_env": "K"}));
        c.rpc_urls = vec!["ws://x".into()];
        assert_eq!(c.validate().unwrap_err().key, "rpc_urls");
        c.rpc_urls.clear();
        assert_eq!(c.validate().unwrap_err().key, "rpc_urls");
        let mut c = chain(json!({"signer_key_env": "K"}));
        c.network = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1".parse().unwrap();
        assert_eq!(c.validate().unwrap_err().key, "network");
        // A scheme setting in a chain's table is an unknown key.
        let err = serde_json::from_value::<EvmChainSettings>(
            json!({"network": "eip155:1", "rpc_urls": [], "valid_before_margin_secs": 6}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("valid_before_margin_secs"), "{err}");
    }

    #[test]
    fn exact_settings_validate_and_convert() {
        let s: ExactEvmSettings =
            serde_json::from_value(json!({"batch": {"max_size": 1}})).unwrap();
        assert_eq!(s.validate().unwrap_err().key, "batch.max_size");
        let s: ExactEvmSettings =
            serde_json::from_value(json!({"batch": {"window_ms": 0}})).unwrap();
        assert_eq!(s.validate().unwrap_err().key, "batch.window_ms");
        let s: ExactEvmSettings = serde_json::from_value(json!({
            "valid_before_margin_secs": 9,
            "eip6492_factories": ["0x0000000000000000000000000000000000000001"],
            "batch": {"max_size": 20},
        }))
        .unwrap();
        s.validate().unwrap();
        let f = s.facilitator_config();
        assert_eq!(f.valid_before_margin, Duration::from_secs(9));
        assert_eq!(f.allowed_factories.len(), 1);
        let batch = f.batch.unwrap();
        assert_eq!(
            (batch.max_size, batch.window),
            (20, Duration::from_millis(50))
        );
        assert_eq!(
            ExactEvmSettings::default(),
            serde_json::from_value(json!({})).unwrap()
        );
        // A chain setting in a scheme's table is an unknown key.
        let err = serde_json::from_value::<ExactEvmSettings>(json!({"rpc_urls": []}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rpc_urls"), "{err}");
    }

    #[test]
    fn coalescing_is_on_by_default_and_configurable() {
        let default = ExactEvmSettings::default().facilitator_config();
        assert_eq!(default.probe, Some(ProbeConfig::default()));
        let s: ExactEvmSettings = serde_json::from_value(
            json!({"coalesce": {"max_batch": 16, "max_in_flight": 1, "window_ms": 2}}),
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(
            s.facilitator_config().probe,
            Some(ProbeConfig {
                max_batch: 16,
                max_in_flight: 1,
                window: Duration::from_millis(2)
            })
        );
        let off: ExactEvmSettings =
            serde_json::from_value(json!({"coalesce": {"enabled": false}})).unwrap();
        assert_eq!(off.facilitator_config().probe, None);
        for (bad, key) in [
            (json!({"max_batch": 0}), "coalesce.max_batch"),
            (json!({"max_batch": 1000}), "coalesce.max_batch"),
            (json!({"max_in_flight": 0}), "coalesce.max_in_flight"),
            (json!({"window_ms": 5000}), "coalesce.window_ms"),
        ] {
            let s: ExactEvmSettings = serde_json::from_value(json!({ "coalesce": bad })).unwrap();
            assert_eq!(s.validate().unwrap_err().key, key);
        }
        assert!(
            serde_json::from_value::<ExactEvmSettings>(json!({"coalesce": {"size": 3}}))
                .unwrap_err()
                .to_string()
                .contains("size")
        );
    }

    #[test]
    fn key_errors_name_the_source_never_the_key() {
        let dir = std::env::temp_dir().join(format!("tollgate-evm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "0xnot-a-key-but-secret-ish").unwrap();
        let c = chain(json!({"signer_key_file": path}));
        let err = c.load_signers().unwrap_err();
        assert_eq!(err.key, "signer_key_file");
        assert!(!err.to_string().contains("secret-ish"), "{err}");
        assert!(!format!("{err:?}").contains("secret-ish"), "{err:?}");
        std::fs::write(
            &path,
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
        )
        .unwrap();
        let signer = c.load_signers().unwrap().remove(0);
        assert_eq!(
            signer.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        let pool = chain(json!({
            "signers": [{"key_file": path}, {"key_env": "TOLLGATE_EVM_CONFIG_TEST_UNSET"}],
        }));
        let err = pool.load_signers().unwrap_err();
        assert_eq!(err.key, "signers[1].key_env");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
