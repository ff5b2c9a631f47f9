//! Tollgate: x402 payments for Rust.
//!
//! This facade re-exports Tollgate's crates, each behind a feature, the way `alloy` does, so an
//! application depends on one crate and turns on the parts it uses:
//!
//! | module | crate | feature | what it is |
//! |---|---|---|---|
//! | [`proto`] | `tollgate-proto` | always | x402 v1/v2 wire types, header codecs, networks, money |
//! | [`core`] | `tollgate-core` | always | the plug-in points: object-safe traits for schemes, chains and facilitators, and the registry keyed by (scheme, network pattern) |
//! | `evm` | `tollgate-evm` | `evm` (default) | the `exact` scheme on EVM chains: sign, verify, settle; plus `alloy`'s `PrivateKeySigner` |
//! | `facilitator` | `tollgate-facilitator` | `facilitator` | verify/settle service with a settlement ledger; with `server`, the paywall settles through it in-process |
//! | `server` | `tollgate-server` | `server` | the paywall: a tower layer that prices routes, settling through `RemoteFacilitator` (HTTP) or any `tollgate_core::Facilitator`; alone it compiles no database and no chain provider |
//! | `gateway` | `tollgate-gateway` | `gateway` | a paying reverse proxy in front of any HTTP API |
//! | `client` | `tollgate-client` | `client` | the paying client for agents: `reqwest-middleware` middleware under a spending policy; plus `reqwest` 0.13 and `reqwest-middleware` 0.5 |
//! | `svm` | `tollgate-svm` | `solana` (not in `full`) | the `exact` scheme on Solana (SPL Token and Token-2022): payer, seller's scheme server, facilitator scheme |
//! | `svm_devnet` | `tollgate-svm-devnet` | `solana-devnet` (not in `full`) | an embedded Solana cluster (litesvm with the real SPL programs) on a loopback port |
//! | `devnet` | `tollgate-devnet` | `devnet` (not in `full`) | an embedded EVM chain on a loopback port, for development and tests |
//! | `mcp` | `tollgate-mcp` | `mcp` (not in `full`) | x402 over MCP: paid tools on an `rmcp` server, and an `rmcp` client that pays them under a spending policy |
//!
//! The README's feature table gives the number of crates each feature set compiles (checked
//! against `cargo tree` by this crate's `feature_deps` test).
//!
//! Types that cross the boundary between Tollgate and a dependency of yours — the signer, the
//! HTTP client the middleware plugs into — are re-exported next to the part that takes them, so
//! a program that uses `tollgate::evm::PrivateKeySigner` and `tollgate::client::reqwest` never
//! has to match those crates' versions by hand (a mismatch shows up as "trait `Middleware` is
//! not implemented" with no version in sight).
//!
//! The README's *Library quick start* (a doctest of this crate, run by `cargo test --doc`) puts
//! the parts together with `features = ["full", "devnet"]`: `Devnet::start`, its typed
//! `usdc()` and `account(i)`, `Facilitator::builder()`, `PaymentOption::price`, the
//! `PaywallLayer`, and `client::paying_client` under a `SpendingPolicy`.
//!
//! ```
//! use tollgate::proto::money::DecimalAmount;
//! let atomic = "$0.01".parse::<DecimalAmount>().unwrap().to_atomic(6).unwrap();
//! assert_eq!(atomic.to::<u64>(), 10_000);
//! ```

#[doc(inline)]
pub use tollgate_proto as proto;

#[doc(inline)]
pub use tollgate_core as core;

/// The `exact` scheme on EVM chains (`tollgate-evm`): signing for payers, verification and
/// settlement for facilitators, the browser wallet script for the paywall page.
///
/// Also re-exports the `alloy` signer a payer or facilitator key is loaded into, and `alloy`
/// itself, at the version `tollgate-evm` is built with.
#[cfg(feature = "evm")]
pub mod evm {
    #[doc(inline)]
    pub use tollgate_evm::*;

    /// `alloy`, at the version and with the features Tollgate is built with (addresses,
    /// signers, providers).
    pub use alloy;

    /// A private key in memory (`alloy`'s local signer): what `ExactEvmClient::new` and
    /// `ExactEvmFacilitator::connect` take. Parse it from a `0x…` hex string.
    pub use alloy::signers::local::PrivateKeySigner;
}

#[cfg(feature = "facilitator")]
#[doc(inline)]
pub use tollgate_facilitator as facilitator;

#[cfg(feature = "server")]
#[doc(inline)]
pub use tollgate_server as server;

#[cfg(feature = "gateway")]
#[doc(inline)]
pub use tollgate_gateway as gateway;

#[cfg(feature = "mcp")]
#[doc(inline)]
pub use tollgate_mcp as mcp;

/// The paying client for agents (`tollgate-client`): [`X402Middleware`](client::X402Middleware)
/// pays `402` answers under a [`SpendingPolicy`](client::SpendingPolicy) and records every
/// attempt in a [`SpendLedger`](client::SpendLedger).
///
/// The middleware plugs into [`reqwest_middleware`](client::reqwest_middleware) 0.5 over
/// [`reqwest`](client::reqwest) 0.13; both are re-exported here so the client you build is
/// the one the middleware implements. With the `evm` feature (default), the `exact` EVM payer
/// [`ExactEvmClient`](client::ExactEvmClient) and its key type
/// [`PrivateKeySigner`](client::PrivateKeySigner) are here too.
///
/// [`DiscoveryClient`](client::DiscoveryClient) (module [`discovery`](client::discovery)) reads
/// a facilitator's Bazaar catalogue: `GET /discovery/resources` and `GET /discovery/search`.
#[cfg(feature = "client")]
pub mod client {
    #[doc(inline)]
    pub use tollgate_client::*;
}

#[cfg(feature = "devnet")]
#[doc(inline)]
pub use tollgate_devnet as devnet;

#[cfg(feature = "solana")]
#[doc(inline)]
pub use tollgate_svm as svm;

#[cfg(feature = "solana-devnet")]
#[doc(inline)]
pub use tollgate_svm_devnet as svm_devnet;

/// The README's Rust snippets, compiled (and, where they need no running service, run) by
/// `cargo test --doc`, so a snippet that drifts from the API fails the test suite.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
