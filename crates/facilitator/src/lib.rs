//! The x402 facilitator: verifies payments and settles them on chain, exactly once.
//!
//! - [`config`] — the typed TOML configuration, validated at start-up.
//! - [`ledger`] — the durable settlement ledger (SQLite).
//! - [`builder`] — [`Facilitator::builder`]: an in-process facilitator from an RPC URL, a signer
//!   and a ledger choice.
//! - [`service`] — [`Facilitator`], the library type: verify, idempotent settle, supported,
//!   reconciliation after a restart. Embed it in a resource server to skip the HTTP hop.
//! - [`http`] — the spec's HTTP API over a [`Facilitator`], with bearer-key auth and limits.
//! - [`metrics`] — Prometheus counters, histograms and gauges for `GET /metrics` (`prometheus-client`).
//! - [`reputation`] — `GET /reputation/{address}` and `POST /assess`: the ledger as an identity provider.
//! - [`discovery`] — the Bazaar catalogue of settled resources (`/discovery/resources`, `/discovery/search`).
//! - [`rate_limit`] — per-client (IPv4 address, IPv6 `/64`) rate limits in front of the API (`governor`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tollgate_facilitator::{config::Config, http, Facilitator};
//! let config = Config::load("facilitator.toml".as_ref())?;
//! let (facilitator, _reconciled) = Facilitator::from_config(&config).await?;
//! let app = http::router(facilitator, http::HttpLimits::default());
//! let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod builder;
pub mod config;
pub mod discovery;
mod embedded;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod rate_limit;
pub mod reputation;
pub mod service;

pub use builder::{BuildError, FacilitatorBuilder};
pub use config::Config;
pub use ledger::Ledger;
pub use service::{
    Facilitator, Outcome, OutcomeError, ReconcileReport, SignerStatus, DEFAULT_MIN_SIGNER_BALANCE,
};
