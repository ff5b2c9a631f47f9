//! x402 on Solana: the `exact` scheme for SPL Token and Token-2022 mints, as Tollgate's
//! facilitator, paywall and paying client use it through the plug-in traits of
//! [`tollgate_core`]. Every Solana-specific line of Tollgate lives in this crate.
//!
//! - [`programs`] — the programs a payment touches and the instruction layouts it reads.
//! - [`payload`] — the payload (`{transaction}`) and its canonical decoding.
//! - [`verify`] — the sponsor's checks before it signs as fee payer (no I/O).
//! - [`reason`] — the `invalid_exact_svm_*` reason codes, as the official SDK spells them.
//! - [`rpc`] — the Solana JSON-RPC calls the scheme makes.
//! - [`facilitator`] — [`ExactSvmFacilitator`]: verify, co-sign, simulate, send, confirm.
//! - [`client`] — [`ExactSvmClient`]: a wallet that builds and signs the transfer.
//! - [`server`] — [`ExactSvmServer`]: the seller's payee check and `extra.feePayer`.
//! - [`browser`] — the wallet script that pays from the browser paywall page.
//! - [`config`] — `[[chains.solana]]` in the facilitator's configuration file.
//! - [`keys`] — keypairs from the environment or a file, never printed.
//! - [`siwx`] — sign-in-with-x: the Sign-In With Solana message, the seller's Ed25519
//!   verifier, the buyer's signer.

pub mod browser;
pub mod client;
pub mod config;
pub mod facilitator;
pub mod keys;
pub mod payload;
pub mod programs;
pub mod reason;
pub mod rpc;
pub mod server;
pub mod siwx;
pub mod verify;

pub use client::ExactSvmClient;
pub use facilitator::{ExactSvmFacilitator, SvmFacilitatorConfig};
pub use payload::{ExactSvmPayload, PaymentTransaction};
pub use reason::SvmReason;
pub use server::ExactSvmServer;
pub use siwx::Ed25519SiwxVerifier;
pub use verify::Limits;

/// Re-exported so users name keys and addresses with the versions this crate uses.
pub use solana_address::Address;
pub use solana_keypair::Keypair;
