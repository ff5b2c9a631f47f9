//! Who may pay: the policy a seller applies to a **verified** payer before serving or settling,
//! and the providers that answer it.
//!
//! x402 makes payment possible without identity, but a seller must still decide whom it
//! serves (sanctions, KYC, jurisdictions, track record). The paywall asks an
//! [`IdentityProvider`] only when a request carries a payment, and only about the payer the
//! facilitator verified — never about an address the buyer merely claims — so anonymous
//! discovery (the 402) stays untouched and a refused buyer is never charged.

use serde::{Deserialize, Serialize};
use tollgate_proto::Network;

use crate::BoxFuture;

/// What a seller requires of a payer. Field names follow the AgentScore `policy` object, so the
/// same policy can be sent to an AgentScore-compatible service or evaluated locally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPolicy {
    /// The payer's operator must have passed KYC.
    #[serde(default)]
    pub require_kyc: bool,
    /// The payer must not be on a sanctions list.
    #[serde(default)]
    pub require_sanctions_clear: bool,
    /// Minimum age of the verified person behind the payer, in years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<u32>,
    /// When not empty, only these jurisdictions (ISO 3166-1 alpha-2) are served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_jurisdictions: Vec<String>,
    /// These jurisdictions (ISO 3166-1 alpha-2) are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_jurisdictions: Vec<String>,
    /// A track record the payer must have (Tollgate's own reputation, from settlements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reputation: Option<ReputationFloor>,
}

/// The least track record a payer must show, from the settlements a facilitator recorded.
/// Integers only: a volume is in the asset's atomic units, a ratio in parts per million.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReputationFloor {
    /// Settled payments, at least.
    #[serde(default)]
    pub min_settled: u64,
    /// Days since the first settled payment, at least.
    #[serde(default)]
    pub min_age_days: u64,
    /// Failed or replayed attempts per million attempts, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ppm: Option<u64>,
}

/// Whom to assess: the verified payer, and what the request claimed besides. `Debug` never
/// shows the operator token.
#[derive(Clone, PartialEq, Eq)]
pub struct Subject {
    /// The payer the facilitator verified (the only address decisions are about).
    pub payer: String,
    /// The network of the payment.
    pub network: Network,
    /// An operator credential the request carried (`X-Operator-Token`), passed to providers
    /// that identify operators; never logged.
    pub operator_token: Option<String>,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("payer", &self.payer)
            .field("network", &self.network)
            .field(
                "operator_token",
                &self.operator_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCheck {
    /// The rule (`require_kyc`, `require_sanctions_clear`, `min_age`, `allowed_jurisdictions`,
    /// `blocked_jurisdictions`, `min_reputation`).
    pub rule: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed, for the buyer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the buyer can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

/// A provider's verdict on a subject under a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// Every rule passed.
    pub allowed: bool,
    /// Each rule the policy set, with its outcome.
    pub checks: Vec<RuleCheck>,
}

/// Why a provider could not answer (as opposed to answering "refused").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity provider {provider} unavailable: {reason}")]
pub struct ProviderError {
    /// The provider's name.
    pub provider: String,
    /// What went wrong (never a credential).
    pub reason: String,
}

/// Something that can assess a payer against a policy: an AgentScore-compatible service, a
/// sanctions list, a facilitator's reputation service, or several combined. Object-safe.
pub trait IdentityProvider: Send + Sync + 'static {
    /// A short name for logs, errors and decision records.
    fn name(&self) -> &str;

    /// The verdict on `subject` under `policy`. Rules this provider cannot evaluate are
    /// reported failed with a reason (fail closed), never silently passed.
    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a IdentityPolicy,
    ) -> BoxFuture<'a, Result<Assessment, ProviderError>>;
}
