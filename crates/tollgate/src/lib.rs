//! Tollgate: x402 payments for Rust.
//!
//! This facade re-exports Tollgate's crates, each behind a feature, the way `alloy` does, so an
//! application depends on one crate and turns on the parts it uses:
//!
//! | module | crate | feature | what it is |
//! |---|---|---|---|
//! | [`proto`] | `tollgate-proto` | always | x402 v1/v2 wire types, header codecs, networks, money |
//! | [`evm`] | `tollgate-evm` | `evm` (default) | the `exact` scheme on EVM chains: sign, verify, settle |
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
