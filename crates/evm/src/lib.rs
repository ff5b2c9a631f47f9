//! The x402 schemes on EVM chains: `exact` through EIP-3009 (`transferWithAuthorization`, as
//! used by USDC) or through Permit2 (any ERC-20, e.g. USDT: `extra.assetTransferMethod:
//! "permit2"`), and `upto` (authorise a maximum through Permit2, settle the actual charge).
//!
//! Everything EVM-specific in Tollgate lives here, so the protocol, server and client crates
//! never learn what EIP-712 or EIP-3009 is. A payment flows through this crate twice:
//!
//! - **client side** ([`ExactEvmClient`]): from a seller's `PaymentRequirements` and any alloy
//!   signer, build the EIP-3009 authorization (random nonce, validity window), sign it under the
//!   token's EIP-712 domain ([`TokenDomain`]), and wrap it as a `PaymentPayload`;
//! - **facilitator side** ([`ExactEvmFacilitator`]): verify every check of the spec (each
//!   failure a [`VerifyError`] with its x402 reason code) and settle on chain.
//!
//! Modules:
//! - [`batch_settlement`] — the `batch-settlement` scheme: payment channels in the canonical
//!   `x402BatchSettlement`, cumulative vouchers checked locally, claims in batches.
//! - [`browser`] — the wallet script for tollgate-server's HTML paywall page.
//! - [`payload`] — the scheme's `payload` object ([`ExactEvmPayload`], [`Authorization`]).
//! - [`domain`] — EIP-712 domain resolution.
//! - [`signature`] — EOA / EIP-1271 / EIP-6492 signature classes.
//! - [`siwx`] — sign-in-with-x: the EIP-4361 message, the seller's EIP-191 verifier, the
//!   buyer's signer.
//! - [`client`] — signing.
//! - [`facilitator`] — verification and settlement.
//! - [`contracts`] — the Solidity interfaces used.
//! - [`reason`] — the EVM family's x402 error reason codes ([`EvmReason`]).
//! - [`rpc`] — the JSON-RPC transport with failover across a network's endpoints.
//! - [`permit2`] — Permit2 payments (`exact` with `assetTransferMethod: "permit2"`, and
//!   `upto`): payload types, signing, the one-time approval, the gas-sponsoring extensions, and
//!   the verification/settlement engine both schemes share.
//! - [`upto`] — the `upto` scheme (authorise a maximum, settle the actual charge): its
//!   facilitator, seller and payer sides.
//! - [`config`] — a facilitator's settings of an EVM chain (`[[chains.eip155]]`) and of `exact` on it.

pub mod batch_settlement;
pub mod browser;
pub mod client;
pub mod client_state;
pub mod config;
pub mod contracts;
pub mod domain;
pub mod facilitator;
pub mod payer;
pub mod payload;
pub mod permit2;
pub mod plug;
pub mod reason;
pub mod rpc;
pub mod server;
pub mod signature;
pub mod siwx;
pub mod upto;

pub use client::{AuthorizationWindow, ExactEvmClient, SignError};
pub use config::{EvmChainSettings, ExactEvmSettings};
pub use domain::TokenDomain;
pub use facilitator::{
    BatchConfig, ChainConfig, ConnectError, EvmChain, ExactEvmFacilitator, FacilitatorConfig,
    ProbeConfig, ProbeStats, Replacement, SettleError, Settlement, SignerSelection,
    VerifiedPayment, VerifyError,
};
pub use payload::{Authorization, ExactEvmPayload};
pub use reason::EvmReason;
pub use signature::PayerSignature;
pub use siwx::Eip191SiwxVerifier;
pub use upto::{UptoEvmClient, UptoEvmFacilitator, UptoEvmServer};
