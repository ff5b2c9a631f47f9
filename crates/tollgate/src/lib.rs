//! Tollgate: x402 payments for Rust.
//!
//! This facade re-exports Tollgate's crates, each behind a feature, the way `alloy` does, so an
//! application depends on one crate and turns on the parts it uses:
//!
//! | module | crate | feature | what it is |
//! |---|---|---|---|
//! | [`proto`] | `tollgate-proto` | always | x402 v1/v2 wire types, header codecs, networks, money |
//! | `evm` | `tollgate-evm` | `evm` (default) | the `exact` scheme on EVM chains: sign, verify, settle |
//! | `facilitator` | `tollgate-facilitator` | `facilitator` | verify/settle service with a settlement ledger |
//! | `server` | `tollgate-server` | `server` | the paywall: a tower layer that prices routes |
//! | `gateway` | `tollgate-gateway` | `gateway` | a paying reverse proxy in front of any HTTP API |
//! | `devnet` | `tollgate-devnet` | `devnet` (not in `full`) | an embedded EVM chain on a loopback port, for development and tests |
//!
//! ```
//! use tollgate::proto::money::DecimalAmount;
//! let atomic = "$0.01".parse::<DecimalAmount>().unwrap().to_atomic(6).unwrap();
//! assert_eq!(atomic.to::<u64>(), 10_000);
//! ```

#[doc(inline)]
pub use tollgate_proto as proto;

#[cfg(feature = "evm")]
#[doc(inline)]
pub use tollgate_evm as evm;

#[cfg(feature = "facilitator")]
#[doc(inline)]
pub use tollgate_facilitator as facilitator;

#[cfg(feature = "server")]
#[doc(inline)]
pub use tollgate_server as server;

#[cfg(feature = "gateway")]
#[doc(inline)]
pub use tollgate_gateway as gateway;

#[cfg(feature = "devnet")]
#[doc(inline)]
pub use tollgate_devnet as devnet;
