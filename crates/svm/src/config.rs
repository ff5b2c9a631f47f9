//! `[[chains.solana]]`: one Solana cluster in the facilitator's configuration file, typed
//! here so the facilitator crate names no Solana field.
//!
//! ```toml
//! [[chains.solana]]
//! network = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"   # checked against the node's genesis hash
//! rpc_url = "http://127.0.0.1:8899"
//! fee_payer_key_env = "SOLANA_FEE_PAYER_KEY"            # or fee_payer_key_file = "fee-payer.json"
//! max_compute_units = 400000                             # optional caps (the defaults shown)
//! max_compute_unit_price = 5000000                       # micro-lamports per compute unit
//! receipt_timeout_secs = 60
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use solana_keypair::Keypair;
use tollgate_proto::Network;

use crate::facilitator::{ConnectError, ExactSvmFacilitator, SvmFacilitatorConfig};
use crate::keys::{self, KeyError};
use crate::verify::Limits;

/// One `[[chains.solana]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvmChainSettings {
    /// The CAIP-2 id the node must serve (its genesis hash decides).
    pub network: Network,
    /// The node's JSON-RPC endpoint.
    pub rpc_url: String,
    /// Environment variables holding fee payer keypairs (base58 or the Solana CLI's JSON).
    #[serde(default)]
    pub fee_payer_key_env: Vec<String>,
    /// Files holding fee payer keypairs.
    #[serde(default)]
    pub fee_payer_key_file: Vec<PathBuf>,
    /// The highest compute unit limit sponsored.
    #[serde(default)]
    pub max_compute_units: Option<u32>,
    /// The highest compute unit price sponsored, micro-lamports per unit.
    #[serde(default)]
    pub max_compute_unit_price: Option<u64>,
    /// Seconds to wait for confirmation before answering `settlement_pending`.
    #[serde(default)]
    pub receipt_timeout_secs: Option<u64>,
}

/// Why a `[[chains.solana]]` table could not be turned into a facilitator.
#[derive(Debug, thiserror::Error)]
pub enum SvmSetupError {
    /// A setting is wrong.
    #[error("{0}")]
    Settings(String),
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The node could not be reached, or serves another cluster.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

impl SvmChainSettings {
    /// Checks what can be checked without the network or the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.network.namespace() != "solana" {
            return Err(format!("network {} is not a solana: network", self.network));
        }
        if self.fee_payer_key_env.is_empty() && self.fee_payer_key_file.is_empty() {
            return Err(
                "no fee payer: set fee_payer_key_env = [\"VAR\"] or fee_payer_key_file = [\"path\"]"
                    .to_owned(),
            );
        }
        if !(self.rpc_url.starts_with("http://") || self.rpc_url.starts_with("https://")) {
            return Err(format!("rpc_url {:?} is not an http(s) URL", self.rpc_url));
        }
        if self.receipt_timeout_secs == Some(0) {
            return Err("receipt_timeout_secs must be at least 1".to_owned());
        }
        Ok(())
    }

    /// The facilitator configuration these settings give.
    pub fn facilitator_config(&self) -> SvmFacilitatorConfig {
        let defaults = SvmFacilitatorConfig::default();
        SvmFacilitatorConfig {
            limits: Limits {
                max_compute_units: self
                    .max_compute_units
                    .unwrap_or(defaults.limits.max_compute_units),
                max_compute_unit_price: self
                    .max_compute_unit_price
                    .unwrap_or(defaults.limits.max_compute_unit_price),
                ..defaults.limits
            },
            receipt_timeout: self
                .receipt_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.receipt_timeout),
            ..defaults
        }
    }

    /// Loads the keys, connects, and checks the node serves `network`.
    pub async fn connect(&self) -> Result<ExactSvmFacilitator, SvmSetupError> {
        self.validate().map_err(SvmSetupError::Settings)?;
        let mut fee_payers: Vec<Keypair> = Vec::new();
        for var in &self.fee_payer_key_env {
            fee_payers.push(keys::keypair_from_env(var)?);
        }
        for path in &self.fee_payer_key_file {
            fee_payers.push(keys::keypair_from_file(path)?);
        }
        let facilitator =
            ExactSvmFacilitator::connect(&self.rpc_url, fee_payers, self.facilitator_config())
                .await?;
        if facilitator.network() != &self.network {
            return Err(SvmSetupError::Settings(format!(
                "the node at {} serves {}, not the configured {}",
                self.rpc_url,
                facilitator.network(),
                self.network
            )));
        }
        Ok(facilitator)
    }
}
