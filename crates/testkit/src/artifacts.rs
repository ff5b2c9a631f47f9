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
/// USDT-like ERC-20 ("Tether USD", 6 decimals) with neither EIP-3009 nor EIP-2612: reachable
/// by x402 only through Permit2.
pub const TEST_USDT: Artifact = artifact!("TestUSDT");
/// ERC-20 with EIP-2612 `permit` ("Permit USD", EIP-712 version "1", 6 decimals), for the
/// `eip2612GasSponsoring` extension.
pub const TEST_PERMIT_TOKEN: Artifact = artifact!("TestPermitToken");
/// Permit2's signature transfers; its runtime code goes to [`crate::chain::PERMIT2`].
pub const PERMIT2: Artifact = artifact!("Permit2");
/// `x402ExactPermit2Proxy`; its runtime code goes to [`crate::chain::EXACT_PERMIT2_PROXY`].
pub const EXACT_PERMIT2_PROXY: Artifact = artifact!("x402ExactPermit2Proxy");
/// `x402UptoPermit2Proxy`; its runtime code goes to [`crate::chain::UPTO_PERMIT2_PROXY`].
pub const UPTO_PERMIT2_PROXY: Artifact = artifact!("x402UptoPermit2Proxy");

impl Artifact {
    /// The creation bytecode.
    pub fn bytecode(&self) -> Result<Bytes, TestkitError> {
        self.code("bytecode")
    }

    /// The runtime bytecode (what `eth_getCode` returns once deployed).
    pub fn deployed_bytecode(&self) -> Result<Bytes, TestkitError> {
        self.code("deployedBytecode")
    }

    /// The contract's ABI, as the JSON array solc wrote.
    pub fn abi(&self) -> Result<serde_json::Value, TestkitError> {
        let value: serde_json::Value =
            serde_json::from_str(self.json).map_err(|e| TestkitError::Artifact {
                name: self.name,
                reason: e.to_string(),
            })?;
        value
            .get("abi")
            .filter(|abi| abi.is_array())
            .cloned()
            .ok_or_else(|| TestkitError::Artifact {
                name: self.name,
                reason: "no `abi` array".into(),
            })
    }

    fn code(&self, field: &'static str) -> Result<Bytes, TestkitError> {
        let value: serde_json::Value =
            serde_json::from_str(self.json).map_err(|e| TestkitError::Artifact {
                name: self.name,
                reason: e.to_string(),
            })?;
        let hex =
            value
                .get(field)
                .and_then(|b| b.as_str())
                .ok_or_else(|| TestkitError::Artifact {
                    name: self.name,
                    reason: format!("no `{field}` string"),
                })?;
        hex.parse::<Bytes>().map_err(|e| TestkitError::Artifact {
            name: self.name,
            reason: format!("{field} is not hex: {e}"),
        })
    }
}
