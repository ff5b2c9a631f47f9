//! x402 for agents: pay for HTTP resources automatically, within a budget.
//!
//! Add [`X402Middleware`] to a `reqwest-middleware` client. On a `402 Payment Required` it
//! reads the challenge (the v2 `PAYMENT-REQUIRED` header, or the v1 JSON body), lets the
//! [`SpendingPolicy`] pick an acceptable option and reserve its amount in the
//! [`SpendLedger`], signs with the [`PaymentSigner`], and retries once with the payment. The
//! settlement receipt is attached to the response as a [`PaymentReceipt`].
//!
//! - [`policy`] — per-request maxima, budgets per window and in total, allowed networks,
//!   assets and payees, preference order.
//! - [`ledger`] — every attempt in SQLite; budgets are derived from it.
//! - [`signer`] — the wallet trait (EVM `exact` implementation behind the `evm` feature).
//! - [`middleware`] — the middleware itself.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use alloy::signers::local::PrivateKeySigner;
//! use tollgate_client::{PaymentReceipt, SpendLedger, SpendingPolicy, X402Middleware};
//!
//! let key: PrivateKeySigner = std::env::var("AGENT_KEY")?.parse()?;
//! let policy = SpendingPolicy::new()
//!     .max_per_request("0.05 USDC")?
//!     .budget("5 USDC", Some(std::time::Duration::from_secs(86_400)))?;
//! let ledger = SpendLedger::open("spend.db".as_ref())?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(X402Middleware::new(tollgate_evm::ExactEvmClient::new(key), policy, ledger))
//!     .build();
//! let response = client.get("http://127.0.0.1:3000/weather").send().await?;
//! if let Some(receipt) = response.extensions().get::<PaymentReceipt>() {
//!     println!("paid in {}", receipt.settlement.transaction);
//! }
//! # Ok(()) }
//! ```

pub mod ledger;
pub mod middleware;
pub mod policy;
pub mod signer;

pub use ledger::{SpendLedger, SpendRecord, SpendStatus};
pub use middleware::{ApproveHook, PaymentError, PaymentReceipt, X402Middleware};
pub use policy::Priced;
pub use policy::{Preference, Refusal, SpendingPolicy};
pub use signer::{PaymentSigner, SignerError};
