//! Identity providers for Tollgate's payer gate.
//!
//! The gate (in `tollgate-server`) asks an [`IdentityProvider`] about the payer the facilitator
//! **verified**, under an [`IdentityPolicy`]. This crate supplies the providers:
//!
//! - [`AgentScoreClient`] — an AgentScore-compatible HTTP service (`POST {base}assess`,
//!   `GET {base}reputation/{address}`). A Tollgate facilitator serves the same two routes
//!   (`/assess`, `/reputation/{address}`), so the client works against it too.
//! - [`SanctionsList`] — addresses from a local file (one per line, `#` comments), reloaded
//!   when the file changes.
//! - [`All`] — several providers combined: allowed only if every one allows.
//! - with the `store` feature, `DecisionLog` — the gate's decisions written to SQLite or
//!   PostgreSQL by a background writer (a `tollgate_server::DecisionSink`).
//!
//! and the pieces a provider is built from: the [`wire`] types of the AgentScore API and of
//! Tollgate's reputation report, and [`evaluate`] — a policy judged against known [`Facts`],
//! failing closed on every rule whose fact is unknown.
//!
//! Every provider fails **closed**: a rule it cannot evaluate is reported failed with a reason
//! ("this provider does not know …"), never silently passed; an outage is a
//! [`ProviderError`], which the gate turns into a 503 unless the route opts into fail-open.

mod agentscore;
mod all;
#[cfg(feature = "store")]
mod decisions;
mod evaluate;
mod sanctions;
pub mod wire;

pub use agentscore::{AgentScoreClient, AgentScoreConfig, ClientError};
pub use all::All;
#[cfg(feature = "store")]
pub use decisions::{
    DecisionLog, DecisionLogStats, DecisionStore, DecisionStoreError, StoredDecision,
    DECISION_SCHEMA_VERSION, DEFAULT_DECISION_QUEUE,
};
pub use evaluate::{evaluate, score, Facts, ReputationFacts, SCORE_MAX};
pub use sanctions::{SanctionsError, SanctionsList, MAX_ENTRIES, MAX_FILE_BYTES};
pub use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, ReputationFloor, RuleCheck,
    Subject,
};
