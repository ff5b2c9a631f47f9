//! x402 for agents: pay for HTTP resources automatically, within a budget.
//!
//! Add [`X402Middleware`] to a `reqwest-middleware` client. On a `402 Payment Required` it
//! reads the challenge (the v2 `PAYMENT-REQUIRED` header, or the v1 JSON body), lets the
//! [`SpendingPolicy`] pick an acceptable option and reserve its amount in the
//! [`SpendLedger`], signs with the [`PaymentSigner`], and retries once with the payment. The
//! settlement receipt is attached to the response as a [`PaymentReceipt`].
//!
//! The client knows wallets only through the object-safe [`PaymentSigner`] of
//! `tollgate-core`, which each chain crate implements; [`Wallets`] holds several (an EVM key
//! and, later, a Solana key) as one. The decisions about money are made HTTP-free in
//! [`flow`], so another transport (an MCP tool call) pays the same way.
//!
//! - [`policy`] — per-request maxima, budgets per window and in total, allowed networks,
//!   assets and payees, preference order.
//! - [`ledger`] — every attempt in SQLite; budgets are derived from it. An attempt whose
//!   outcome is ambiguous (a `5xx`, a timeout, a `402 settlement_pending`…) stays `pending` —
//!   held against every budget — until reconciliation asks the chain.
//! - [`signer`] — the wallet trait, re-exported from `tollgate-core`, including the on-chain
//!   question "was this authorization used?"; [`wallets`] — several wallets as one.
//! - [`flow`] — the pay-flow without HTTP: choose, reserve, sign once, record the answer;
//!   reconciliation of held reservations.
//! - [`middleware`] — the `reqwest-middleware` adapter over the flow, and
//!   [`X402Middleware::reconcile`].
//! - [`identity`] — identity headers (`X-Operator-Token`, `X-Wallet-Address`) sent only on
//!   paid requests to payees the agent names ([`X402Middleware::with_identity`]), and a
//!   seller's `403` identity refusal ([`PaymentError::IdentityRefused`]).
//!
//! When a seller offers `sign-in-with-x` and the ledger shows this wallet paid for the resource
//! before (or the route is auth-only), [`siwx`] signs in instead of paying again.
//!
//! When a seller offers the `payment-identifier` extension, each payment carries a fresh id
//! (kept in the ledger), so a retry of the same payment is recognisable as the same attempt.
//!
//! Everything an agent needs is exported from this crate: with the `evm` feature (default) the
//! `exact` EVM payer [`ExactEvmClient`] and the key type [`PrivateKeySigner`], and the HTTP
//! client crates the middleware plugs into, [`reqwest`] 0.13 and [`reqwest_middleware`] 0.5 —
//! use these re-exports (or exactly those versions), or `ClientBuilder::with` will not accept
//! the middleware. Through the `tollgate` facade (feature `client`) the same paths are under
//! `tollgate::client::…`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tollgate_client::{reqwest, reqwest_middleware, ExactEvmClient, PrivateKeySigner};
//! use tollgate_client::{PaymentError, PaymentReceipt, SpendLedger, SpendingPolicy, X402Middleware};
//!
//! let key: PrivateKeySigner = std::env::var("AGENT_KEY")?.parse()?;
//! let policy = SpendingPolicy::new()
//!     .max_per_request("0.05 USDC")?
//!     .budget("5 USDC", Some(std::time::Duration::from_secs(86_400)))?;
//! let ledger = SpendLedger::open("spend.db".as_ref())?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(X402Middleware::new(ExactEvmClient::new(key), policy, ledger))
//!     .build();
//! match client.get("http://127.0.0.1:3000/weather").send().await {
//!     Ok(response) => {
//!         if let Some(receipt) = response.extensions().get::<PaymentReceipt>() {
//!             println!("paid in {}", receipt.settlement.transaction);
//!         }
//!     }
//!     Err(err) => match PaymentError::from_middleware_error(&err) {
//!         Some(PaymentError::Refused(why)) => println!("not paid: {why}"),
//!         _ => return Err(err.into()),
//!     },
//! }
//! # Ok(()) }
//! ```

pub mod discovery;
pub mod flow;
pub mod identity;
pub mod ledger;
pub mod middleware;
pub mod policy;
pub mod signer;
pub mod siwx;
pub mod wallets;

pub use discovery::{DiscoveryClient, DiscoveryError};
pub use flow::{
    AnswerStatus, Challenge, PayFlow, PaymentOutcome, PendingRetries, PreparedPayment,
    PreparedRefund, RefundOutcome, SellerAnswer,
};
pub use identity::{IdentityCheck, IdentityConfigError, IdentityHeaders, IdentityRefusal};
pub use ledger::{SessionRecord, SpendLedger, SpendRecord, SpendStatus, Unresolved};
pub use middleware::{
    ApproveHook, PaymentError, PaymentReceipt, PendingPayment, ReconcileReport, X402Middleware,
    DEFAULT_EXPIRY_GRACE, DEFAULT_MAX_RETRY_WAIT, DEFAULT_PENDING_RETRIES,
};
pub use policy::Priced;
pub use policy::{
    AssetInfo, Preference, Refusal, SpendingPolicy, DEFAULT_MAX_DEPOSIT, DEFAULT_MAX_PER_REQUEST,
};
pub use signer::{
    AuthorizationHandle, AuthorizationState, PaymentSigner, SignedPayment, SignerError, StateError,
};
pub use siwx::{SignIn, SiwxClientError};
pub use wallets::Wallets;

// What an agent's own code names, re-exported so it need not depend on these crates at
// versions matching ours (a mismatched `reqwest-middleware` makes `ClientBuilder::with` refuse
// the middleware with an error that names no version).
pub use reqwest;
pub use reqwest_middleware;

/// An HTTP client that pays `402` answers with `wallet` (one wallet, or several as
/// [`Wallets`]) under `policy`, recording every attempt
/// in `ledger`: [`X402Middleware::new`] on a default [`reqwest::Client`], built into the
/// [`reqwest_middleware::ClientWithMiddleware`] an agent sends its requests with. For another
/// inner client or more middleware, build the stack with [`reqwest_middleware::ClientBuilder`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tollgate_client::{paying_client, ExactEvmClient, PrivateKeySigner, SpendLedger, SpendingPolicy};
/// let wallet = ExactEvmClient::new(PrivateKeySigner::random());
/// let policy = SpendingPolicy::new().budget("1 USDC", None)?;
/// let agent = paying_client(wallet, policy, SpendLedger::in_memory()?);
/// let _request = agent.get("http://127.0.0.1:3000/weather");
/// # Ok(()) }
/// ```
pub fn paying_client(
    wallet: impl PaymentSigner,
    policy: SpendingPolicy,
    ledger: SpendLedger,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(wallet, policy, ledger))
        .build()
}

#[cfg(feature = "evm")]
pub use alloy::signers::local::PrivateKeySigner;
#[cfg(feature = "evm")]
pub use tollgate_evm::batch_settlement::BatchSettlementEvmClient;
#[cfg(feature = "evm")]
pub use tollgate_evm::ExactEvmClient;
