//! The wire types: the AgentScore-compatible `POST /v1/assess` request and response, and
//! Tollgate's reputation report (`GET /reputation/{address}` on a facilitator).
//!
//! Field names are AgentScore's (snake case). Unknown response fields are ignored, so a
//! service that adds fields keeps working; request fields Tollgate adds (`policy.min_reputation`)
//! are omitted when unset, so a plain AgentScore policy is sent unchanged.

use serde::{Deserialize, Serialize};
use tollgate_core::identity::{Assessment, IdentityPolicy, RuleCheck};

use crate::evaluate::ReputationFacts;

/// `POST /v1/assess`: assess `address` on `chain` under `policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessRequest {
    /// The address assessed (the verified payer).
    pub address: String,
    /// The chain of the payment (a CAIP-2 network, e.g. `eip155:8453`).
    pub chain: String,
    /// What the seller requires.
    #[serde(default)]
    pub policy: IdentityPolicy,
    /// The wallet that signed the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
}

/// The signer of the payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// Its address.
    pub address: String,
    /// Its network (CAIP-2).
    pub network: String,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Serve the payer.
    Allow,
    /// Refuse the payer.
    Deny,
}

/// The answer to [`AssessRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessResponse {
    /// The verdict.
    pub decision: Decision,
    /// Why, for a `deny` (one line per failed rule).
    #[serde(default)]
    pub decision_reasons: Vec<String>,
    /// Each rule's outcome.
    pub policy_result: PolicyResult,
    /// What the sanctions screening of the signer found, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_sanctions: Option<SignerSanctions>,
}

/// The rules' outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// Every rule passed.
    pub all_passed: bool,
    /// One per rule the policy set.
    #[serde(default)]
    pub checks: Vec<RuleCheck>,
}

/// The sanctions screening of the signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerSanctions {
    /// The address screened.
    pub address: String,
    /// Whether a list was consulted at all.
    #[serde(default)]
    pub screened: bool,
    /// Whether the address is listed.
    #[serde(default)]
    pub sanctioned: bool,
}

impl AssessResponse {
    /// The wire form of an [`Assessment`].
    pub fn from_assessment(
        assessment: &Assessment,
        signer_sanctions: Option<SignerSanctions>,
    ) -> Self {
        let all_passed = assessment.allowed && assessment.checks.iter().all(|c| c.passed);
        Self {
            decision: if all_passed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            decision_reasons: assessment
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| match &c.reason {
                    Some(r) => format!("{}: {r}", c.rule),
                    None => c.rule.clone(),
                })
                .collect(),
            policy_result: PolicyResult {
                all_passed,
                checks: assessment.checks.clone(),
            },
            signer_sanctions,
        }
    }

    /// The [`Assessment`] this answer makes. Fails closed: allowed only when the decision is
    /// `allow` *and* every reported check passed; a `deny` without a failed check gets one
    /// (`decision`) carrying the service's reasons, so the buyer always sees why.
    pub fn into_assessment(self) -> Assessment {
        let mut checks = self.policy_result.checks;
        let allowed = self.decision == Decision::Allow
            && self.policy_result.all_passed
            && checks.iter().all(|c| c.passed);
        if !allowed && checks.iter().all(|c| c.passed) {
            checks.push(RuleCheck {
                rule: "decision".into(),
                passed: false,
                reason: Some(if self.decision_reasons.is_empty() {
                    "the identity service denied the payer".into()
                } else {
                    self.decision_reasons.join("; ")
                }),
                remedy: None,
            });
        }
        Assessment { allowed, checks }
    }
}

/// One (network, asset) line of a [`Reputation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetActivity {
    /// CAIP-2 network.
    pub network: String,
    /// The asset (an EVM token address in lower case).
    pub asset: String,
    /// Settled (confirmed) payments.
    pub settled_count: u64,
    /// Their total, in the asset's atomic units (a decimal string: it can exceed 64 bits).
    pub settled_volume: String,
    /// Unix seconds of the first settled payment.
    pub first_seen: u64,
    /// Unix seconds of the last settled payment.
    pub last_seen: u64,
}

/// Tollgate's reputation report of a payer (`GET /reputation/{address}` on a facilitator),
/// computed from its settlement ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    /// The payer, canonical (EVM addresses in lower case).
    pub address: String,
    /// [`crate::score`] of this record, 0–1000.
    pub score: u32,
    /// Settled payments over every network and asset.
    pub settled_count: u64,
    /// Unix seconds of the first settled payment, if any.
    pub first_seen: Option<u64>,
    /// Unix seconds of the last settled payment, if any.
    pub last_seen: Option<u64>,
    /// Attempts refused as invalid or that failed to settle (in the retained event log).
    pub failed_attempts: u64,
    /// Attempts refused because the payment was already used or in use (in the retained
    /// event log).
    pub replayed_attempts: u64,
    /// Distinct payees of the settled payments.
    pub distinct_payees: u64,
    /// Per network and asset.
    pub assets: Vec<AssetActivity>,
    /// Unix seconds when the report was computed.
    pub as_of: u64,
}

impl Reputation {
    /// The numbers a [`ReputationFloor`](tollgate_core::identity::ReputationFloor) is checked
    /// against.
    pub fn facts(&self) -> ReputationFacts {
        ReputationFacts {
            settled: self.settled_count,
            first_settled_at: self.first_seen,
            failed: self.failed_attempts,
            replayed: self.replayed_attempts,
            now: self.as_of,
            distinct_payees: self.distinct_payees,
        }
    }
}

/// An error body (`{"error": "…"}`), as a Tollgate facilitator and most JSON APIs answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agentscore_shapes_round_trip() {
        let request: AssessRequest = serde_json::from_value(serde_json::json!({
            "address": "0xabc",
            "chain": "eip155:8453",
            "policy": {
                "require_kyc": true, "require_sanctions_clear": true, "min_age": 21,
                "allowed_jurisdictions": ["US"], "blocked_jurisdictions": ["KP"]
            },
            "signer": { "address": "0xabc", "network": "eip155:8453" }
        }))
        .unwrap();
        assert_eq!(request.policy.min_age, Some(21));
        let response: AssessResponse = serde_json::from_value(serde_json::json!({
            "decision": "deny",
            "decision_reasons": ["sanctioned"],
            "policy_result": { "all_passed": false, "checks": [
                { "rule": "require_sanctions_clear", "passed": false, "reason": "listed" }
            ]},
            "signer_sanctions": { "address": "0xabc", "sanctioned": true, "lists": ["OFAC"] },
            "operator_verification": { "anything": 1 }
        }))
        .unwrap();
        let a = response.into_assessment();
        assert!(!a.allowed);
        assert_eq!(a.checks.len(), 1);
    }

    #[test]
    fn deny_without_a_failed_check_still_says_why() {
        let r = AssessResponse {
            decision: Decision::Deny,
            decision_reasons: vec!["operator unknown".into()],
            policy_result: PolicyResult {
                all_passed: true,
                checks: vec![],
            },
            signer_sanctions: None,
        };
        let a = r.into_assessment();
        assert!(!a.allowed);
        assert_eq!(a.checks[0].reason.as_deref(), Some("operator unknown"));
    }
}
