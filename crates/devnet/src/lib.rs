//! An embedded EVM devnet: a real chain in your process, on a loopback port.
//!
//! [`Devnet::start`] builds a genesis state by executing Tollgate's compiled contracts
//! (`contracts/out/`) in [revm](https://docs.rs/revm) — the EIP-3009 test token, Multicall3,
//! the EIP-1271 wallet factory, a USDT-like token and an EIP-2612 token, plus Permit2 and the
//! x402 Permit2 proxies at their canonical addresses — funds anvil's ten well-known dev
//! accounts with ETH and the test tokens, and serves standard Ethereum JSON-RPC over HTTP on
//! `127.0.0.1` (never another interface). Every transaction is decoded from its signed envelope, its signer recovered, its
//! nonce, balance and gas checked, and its bytecode executed; nothing is mocked. Dropping the
//! [`Devnet`] stops the server.
//!
//! The genesis state is the one the anvil test rig (`tollgate-testkit`) reaches after its
//! set-up: dev account 0 deployed the token, Multicall3 and the wallet factory (nonces 0–2, so
//! at the same addresses as on anvil) and minted 1,000 USDC to each of accounts 1–9 (nonces
//! 3–11), then deployed a USDT-like token and an EIP-2612 token (nonces 12–13) and minted
//! 1,000 of each to accounts 1–9 (nonces 14–15). Permit2 and the x402 `exact` and `upto`
//! Permit2 proxies sit at their canonical addresses ([`PERMIT2`], [`EXACT_PERMIT2_PROXY`],
//! [`UPTO_PERMIT2_PROXY`]), as on every public chain. Tests therefore run unchanged on either
//! backend.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_devnet::DevnetError> {
//! let devnet = tollgate_devnet::Devnet::builder().chain_id(31337).start().await?;
//! assert!(devnet.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(devnet.accounts().len(), 10);
//! println!("USDC at {} on {}", devnet.token(), devnet.caip2());
//! let usdc = devnet.usdc(); // the same token, typed: network, decimals, EIP-712 domain
//! let payer = devnet.account(1)?; // a funded dev account, as a signer
//! assert_eq!((usdc.decimals, payer.address()), (6, devnet.accounts()[1].address));
//! # Ok(()) }
//! ```
//!
//! Layout:
//! - [`genesis`] — the contracts, dev accounts and the genesis state built by executing them.
//! - [`executor`] — revm's configuration and the conversions into its environment.
//! - [`chain`] — state per block, the mempool, mining and the block store.
//! - [`rpc`] — JSON-RPC method dispatch and error objects.
//! - [`server`] — the HTTP server and interval mining.
//! - [`node`] — [`Devnet`] and its [`DevnetBuilder`].

pub mod chain;
pub mod executor;
pub mod genesis;
pub mod node;
pub mod rpc;
pub mod server;

pub use genesis::{
    DevAccount, BATCH_SETTLEMENT, DEV_KEYS, ERC3009_DEPOSIT_COLLECTOR, EXACT_PERMIT2_PROXY,
    INITIAL_ETH, INITIAL_PERMIT_TOKEN, INITIAL_USDC, INITIAL_USDT, PERMIT2,
    PERMIT2_DEPOSIT_COLLECTOR, UPTO_PERMIT2_PROXY,
};
pub use node::{Devnet, DevnetBuilder};

/// Why the devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A committed contract artifact is missing or malformed.
    #[error("contract artifact {name}: {reason}")]
    Artifact {
        /// Contract name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Executing the genesis set-up (deployments, mints) failed.
    #[error("genesis: {step} failed: {reason}")]
    Genesis {
        /// Which step.
        step: String,
        /// The EVM's answer.
        reason: String,
    },
    /// [`Devnet::account`] was asked for an account the devnet does not fund.
    #[error("the devnet has dev accounts 0–{last}, not {index}")]
    NoSuchAccount {
        /// The index asked for.
        index: usize,
        /// The highest valid index.
        last: usize,
    },
    /// The loopback listener could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for (0: any free port).
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
}
