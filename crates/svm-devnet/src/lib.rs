//! An embedded Solana devnet: a real SVM in your process, on a loopback port.
//!
//! [`SvmDevnet::start`] runs [litesvm](https://docs.rs/litesvm) — Agave's runtime, executing
//! the real SPL Token, Token-2022, Memo and Associated Token Account programs — behind
//! Solana's JSON-RPC over HTTP on `127.0.0.1` (never another interface). x402 on Solana is a
//! token transfer signed by the payer and co-signed, simulated and sent by a facilitator;
//! testing that end to end needs a chain that runs the real token programs and answers the
//! RPC methods `@solana/kit` and `@x402/svm` call, with Solana's response shapes and error
//! codes — not a mock of them. Nothing is mocked here: every transaction is sanitized,
//! signature-checked, age-checked, deduplicated and executed. Dropping the [`SvmDevnet`]
//! stops the server.
//!
//! The genesis state is written directly, as a cluster's genesis is: ten dev accounts with
//! [`INITIAL_LAMPORTS`] each, the SPL Token mint at Circle's devnet USDC address
//! ([`USDC_MINT`]) and a Token-2022 mint, both with 6 decimals, and every dev account's
//! associated token account for each mint holding [`INITIAL_TOKENS`]. `getGenesisHash`
//! answers Solana devnet's ([`DEVNET_GENESIS_HASH`]), so the network is devnet's CAIP-2 id
//! and x402 code configured for Solana devnet runs unchanged. Keys are derived from fixed
//! labels, so every run has the same addresses.
//!
//! Slots pass on a timer (400 ms by default), each with a fresh blockhash; a transaction must
//! use one of the last 150, as on a real cluster, so expiry and retry logic can be tested
//! ([`SvmDevnet::advance_slots`] jumps ahead).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_svm_devnet::SvmDevnetError> {
//! let devnet = tollgate_svm_devnet::SvmDevnet::start().await?;
//! assert!(devnet.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(devnet.caip2(), "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
//! let payer = &devnet.accounts()[1];
//! assert_eq!(
//!     devnet.token_balance(&payer.address, &devnet.usdc_mint()),
//!     tollgate_svm_devnet::INITIAL_TOKENS
//! );
//! # Ok(()) }
//! ```
//!
//! Layout:
//! - [`genesis`] — the dev accounts, the mints and the genesis state.
//! - [`token`] — the SPL Token layouts and program addresses.
//! - [`chain`] — litesvm plus slots, the blockhash queue, the validator's checks and the
//!   transaction store.
//! - [`wire`] — Solana's wire and JSON shapes (transactions, accounts, errors).
//! - [`rpc`] — JSON-RPC method dispatch and error objects.
//! - [`server`] — the HTTP server and the slot ticker.
//! - [`node`] — [`SvmDevnet`] and its [`SvmDevnetBuilder`].

pub mod chain;
pub mod genesis;
pub mod node;
pub mod rpc;
pub mod server;
pub mod token;
pub mod wire;

pub use genesis::{DevAccount, DEVNET_GENESIS_HASH, INITIAL_LAMPORTS, INITIAL_TOKENS, USDC_MINT};
pub use node::{SvmDevnet, SvmDevnetBuilder};

/// Why the devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SvmDevnetError {
    /// Writing the genesis state failed.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The loopback listener could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for (0: any free port).
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server's thread or runtime could not be started.
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
}
