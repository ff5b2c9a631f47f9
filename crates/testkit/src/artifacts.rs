//! The project's compiled contracts, embedded from `contracts/out/`.
//!
//! Artifacts are committed (rebuilt by `npm run build:contracts`), so tests need no Solidity
//! compiler.

use alloy::primitives::Bytes;

use crate::TestkitError;

/// One compiled contract.
#[derive(Debug, Clone, Copy)]
pub struct Artifact {
    /// Contract name, as in the Solidity source.
    pub name: &'static str,
    json: &'static str,
}

macro_rules! artifact {
    ($name:literal) => {
        Artifact {
            name: $name,
            json: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../contracts/out/",
                $name,
                ".json"
            )),
        }
    };
}

/// USDC-compatible ERC-20 with EIP-3009 ("USD Coin", version "2", 6 decimals).
pub const TEST_USDC: Artifact = artifact!("TestUSDC");
/// Multicall3-compatible batching contract.
pub const MULTICALL3: Artifact = artifact!("Multicall3");
/// Minimal EIP-1271 smart wallet owned by one EOA.
pub const WALLET_1271: Artifact = artifact!("TestWallet1271");
/// CREATE2 factory for [`WALLET_1271`], used for EIP-6492 counterfactual wallets.
pub const WALLET_FACTORY: Artifact = artifact!("WalletFactory");
/// Deployless EIP-6492 universal signature validator.
pub const EIP6492_VALIDATOR: Artifact = artifact!("Eip6492Validator");

impl Artifact {
    /// The creation bytecode.
    pub fn bytecode(&self) -> Result<Bytes, TestkitError> {
        let value: serde_json::Value =
            serde_json::from_str(self.json).map_err(|e| TestkitError::Artifact {
                name: self.name,
                reason: e.to_string(),
            })?;
        let hex = value
            .get("bytecode")
            .and_then(|b| b.as_str())
            .ok_or_else(|| TestkitError::Artifact {
                name: self.name,
                reason: "no `bytecode` string".into(),
            })?;
        hex.parse::<Bytes>().map_err(|e| TestkitError::Artifact {
            name: self.name,
            reason: format!("bytecode is not hex: {e}"),
        })
    }
}
