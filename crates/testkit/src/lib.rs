//! Test rig for Tollgate: a real chain with our contracts on it.
//!
//! Chain behaviour is never faked in Tollgate's tests. [`TestChain::start`] runs a real
//! [anvil](Anvil) node on a free loopback port (or, with `TOLLGATE_TEST_CHAIN=devnet`, the
//! embedded revm devnet of `tollgate-devnet`, whose genesis is the same set-up), deploys the project's own contracts from the
//! committed artifacts in `contracts/out/` (a USDC-compatible EIP-3009 token, Multicall3, an
//! EIP-1271 wallet factory, a USDT-like token and an EIP-2612 token), funds the dev accounts
//! with all three tokens, puts Permit2 and the x402 Permit2 proxies at their canonical
//! addresses, and stops the node when the value is dropped.
//!
//! - [`anvil`] — spawning and reaping the node.
//! - [`artifacts`] — the compiled contracts.
//! - [`chain`] — the deployed rig and helpers to read balances, mint and deploy wallets.
//! - [`permit2`] — Permit2 and the x402 `exact`/`upto` Permit2 proxies at their canonical
//!   addresses (present on both backends): ABIs and the EIP-712 hashes payers sign.
//! - [`postgres`] — a throwaway PostgreSQL server, for tests of instances sharing a ledger.

pub mod anvil;
pub mod artifacts;
pub mod chain;
pub mod permit2;
pub mod postgres;

pub use anvil::Anvil;
pub use chain::{Backend, TestChain, BACKEND_ENV, DEV_KEYS};
pub use permit2::{EXACT_PERMIT2_PROXY, PERMIT2, UPTO_PERMIT2_PROXY};
pub use postgres::Postgres;

/// Why the rig could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// No anvil binary: the npm dev dependencies are not installed.
    #[error("anvil not found: run `npm ci` in the repository root (or set TOLLGATE_ANVIL)")]
    AnvilNotFound,
    /// PostgreSQL is missing or did not come up.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// anvil was found but did not come up.
    #[error("anvil failed to start: {0}")]
    AnvilStart(String),
    /// A committed artifact is missing or malformed.
    #[error("contract artifact {name}: {reason}")]
    Artifact {
        /// Contract name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON-RPC call or transaction against the node failed.
    #[error("chain call failed during {context}: {reason}")]
    Chain {
        /// What the rig was doing.
        context: &'static str,
        /// The underlying error.
        reason: String,
    },
}

impl TestkitError {
    pub(crate) fn chain(context: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Chain {
            context,
            reason: err.to_string(),
        }
    }
}
