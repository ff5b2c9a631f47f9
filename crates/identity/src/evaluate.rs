//! A policy judged locally against what is known about a payer.

use tollgate_core::identity::{Assessment, IdentityPolicy, ReputationFloor, RuleCheck};

/// What a provider knows about a payer. `None` means *unknown*, and a rule that needs an
/// unknown fact fails (closed) with a reason naming what the provider does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Whether the payer is on a sanctions list (`None`: no list consulted).
    pub sanctioned: Option<bool>,
    /// Whether the payer's operator passed KYC.
    pub kyc_verified: Option<bool>,
    /// The verified age of the person behind the payer, in years.
    pub age: Option<u32>,
    /// The operator's jurisdiction (ISO 3166-1 alpha-2).
    pub jurisdiction: Option<String>,
    /// The payer's settlement record.
    pub reputation: Option<ReputationFacts>,
}

/// A payer's settlement record, as numbers a [`ReputationFloor`] can be checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReputationFacts {
    /// Settled (confirmed) payments.
    pub settled: u64,
    /// Unix seconds of the first settled payment.
    pub first_settled_at: Option<u64>,
    /// Attempts refused as invalid or that failed to settle.
    pub failed: u64,
    /// Attempts refused because the payment was already used or in use by another request.
    pub replayed: u64,
    /// Unix seconds "now", for ages (a parameter so evaluation is deterministic).
    pub now: u64,
    /// Distinct payees of the settled payments.
    pub distinct_payees: u64,
}

impl ReputationFacts {
    /// Whole days since the first settled payment (0 without one).
    pub fn age_days(&self) -> u64 {
        self.first_settled_at
            .map_or(0, |first| self.now.saturating_sub(first) / 86_400)
    }

    /// Failed or replayed attempts per million attempts (settled + failed + replayed); 0 when
    /// there were no attempts at all (a floor's `min_settled` is what refuses a newcomer).
    pub fn failure_ppm(&self) -> u64 {
        let bad = u128::from(self.failed) + u128::from(self.replayed);
        let all = bad + u128::from(self.settled);
        if all == 0 {
            return 0;
        }
        u64::try_from(bad * 1_000_000 / all).unwrap_or(u64::MAX)
    }
}

/// The highest [`score`].
pub const SCORE_MAX: u32 = 1000;

/// Tollgate's reputation score of a payer, an integer from 0 to 1000:
///
/// ```text
/// score = min(settled, 100) × 4                      (track record, ≤ 400)
///       + min(age_days, 365) × 300 / 365              (time since first settlement, ≤ 300)
///       + min(distinct_payees, 20) × 10               (breadth: many sellers, ≤ 200)
///       + 100 × settled / (settled + failed + replayed) (reliability, ≤ 100; 0 with no attempts)
/// ```
///
/// Why these terms: a record that is long, old, spread over many payees and free of failed
/// or replayed attempts is expensive to fake; each term saturates so that no single one (for
/// example thousands of tiny payments to oneself) can buy the whole score. Volume is left out
/// on purpose: it is in each asset's own units, and buying a high score with one large payment
/// should not be possible. A fresh address scores 0.
pub fn score(facts: &ReputationFacts) -> u32 {
    let record = facts.settled.min(100) * 4;
    let age = facts.age_days().min(365) * 300 / 365;
    let breadth = facts.distinct_payees.min(20) * 10;
    let attempts =
        u128::from(facts.settled) + u128::from(facts.failed) + u128::from(facts.replayed);
    let reliability = (100 * u128::from(facts.settled))
        .checked_div(attempts)
        .map_or(0, |r| u64::try_from(r).unwrap_or(100));
    u32::try_from(record + age + breadth + reliability)
        .unwrap_or(SCORE_MAX)
        .min(SCORE_MAX)
}

fn unknown(rule: &str, what: &str, remedy: &str) -> RuleCheck {
    RuleCheck {
        rule: rule.into(),
        passed: false,
        reason: Some(format!("this provider does not know {what}")),
        remedy: Some(remedy.into()),
    }
}

fn check(rule: &str, passed: bool, reason: String, remedy: &str) -> RuleCheck {
    RuleCheck {
        rule: rule.into(),
        passed,
        reason: (!passed).then_some(reason),
        remedy: (!passed).then(|| remedy.to_owned()),
    }
}

const OTHER_PROVIDER: &str =
    "the seller must configure an identity provider that can evaluate this rule";

/// Judges `policy` against `facts`: one [`RuleCheck`] per rule the policy sets, in a fixed
/// order (`require_kyc`, `require_sanctions_clear`, `min_age`, `allowed_jurisdictions`,
/// `blocked_jurisdictions`, `min_reputation`); allowed only if every one passed. A rule whose
/// fact is unknown fails with the reason "this provider does not know …" (fail closed).
pub fn evaluate(policy: &IdentityPolicy, facts: &Facts) -> Assessment {
    let mut checks = Vec::new();
    if policy.require_kyc {
        checks.push(match facts.kyc_verified {
            None => unknown(
                "require_kyc",
                "whether the payer passed KYC",
                OTHER_PROVIDER,
            ),
            Some(ok) => check(
                "require_kyc",
                ok,
                "the payer's operator has not passed KYC".into(),
                "complete KYC with the seller's identity provider and send its operator token",
            ),
        });
    }
    if policy.require_sanctions_clear {
        checks.push(match facts.sanctioned {
            None => unknown(
                "require_sanctions_clear",
                "whether the payer is sanctioned (no sanctions list configured)",
                OTHER_PROVIDER,
            ),
            Some(listed) => check(
                "require_sanctions_clear",
                !listed,
                "the payer's address is on a sanctions list".into(),
                "none: payments from sanctioned addresses are refused",
            ),
        });
    }
    if let Some(min) = policy.min_age {
        checks.push(match facts.age {
            None => unknown("min_age", "the payer's age", OTHER_PROVIDER),
            Some(age) => check(
                "min_age",
                age >= min,
                format!("the payer's verified age is below {min}"),
                "verify the age of the person behind the paying agent",
            ),
        });
    }
    let jurisdiction = facts.jurisdiction.as_deref().map(str::to_ascii_uppercase);
    if !policy.allowed_jurisdictions.is_empty() {
        checks.push(match &jurisdiction {
            None => unknown(
                "allowed_jurisdictions",
                "the payer's jurisdiction",
                OTHER_PROVIDER,
            ),
            Some(j) => check(
                "allowed_jurisdictions",
                policy
                    .allowed_jurisdictions
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(j)),
                format!("jurisdiction {j} is not among those served"),
                "this seller serves only the listed jurisdictions",
            ),
        });
    }
    if !policy.blocked_jurisdictions.is_empty() {
        checks.push(match &jurisdiction {
            None => unknown(
                "blocked_jurisdictions",
                "the payer's jurisdiction",
                OTHER_PROVIDER,
            ),
            Some(j) => check(
                "blocked_jurisdictions",
                !policy
                    .blocked_jurisdictions
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(j)),
                format!("jurisdiction {j} is not served"),
                "this seller does not serve that jurisdiction",
            ),
        });
    }
    if let Some(floor) = &policy.min_reputation {
        checks.push(match &facts.reputation {
            None => unknown(
                "min_reputation",
                "the payer's settlement record",
                OTHER_PROVIDER,
            ),
            Some(r) => reputation_check(floor, r),
        });
    }
    Assessment {
        allowed: checks.iter().all(|c| c.passed),
        checks,
    }
}

fn reputation_check(floor: &ReputationFloor, r: &ReputationFacts) -> RuleCheck {
    let mut short = Vec::new();
    if r.settled < floor.min_settled {
        short.push(format!(
            "{} settled payments, at least {} required",
            r.settled, floor.min_settled
        ));
    }
    if r.age_days() < floor.min_age_days {
        short.push(format!(
            "first settlement {} days ago, at least {} required",
            r.age_days(),
            floor.min_age_days
        ));
    }
    if let Some(max) = floor.max_failure_ppm {
        if r.failure_ppm() > max {
            short.push(format!(
                "{} failed or replayed attempts per million, at most {max} allowed",
                r.failure_ppm()
            ));
        }
    }
    check(
        "min_reputation",
        short.is_empty(),
        format!("insufficient track record: {}", short.join("; ")),
        "build a record of settled payments with sellers that do not require one",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_facts_fail_closed_and_known_ones_decide() {
        let policy = IdentityPolicy {
            require_kyc: true,
            require_sanctions_clear: true,
            min_age: Some(18),
            allowed_jurisdictions: vec!["US".into()],
            blocked_jurisdictions: vec!["KP".into()],
            min_reputation: Some(ReputationFloor {
                min_settled: 1,
                ..Default::default()
            }),
        };
        let a = evaluate(&policy, &Facts::default());
        assert!(!a.allowed);
        assert_eq!(a.checks.len(), 6);
        assert!(a.checks.iter().all(|c| !c.passed
            && c.reason
                .as_deref()
                .unwrap()
                .starts_with("this provider does not know")));

        let facts = Facts {
            sanctioned: Some(false),
            kyc_verified: Some(true),
            age: Some(30),
            jurisdiction: Some("us".into()),
            reputation: Some(ReputationFacts {
                settled: 1,
                ..Default::default()
            }),
        };
        let a = evaluate(&policy, &facts);
        assert!(a.allowed, "{a:?}");
        let a = evaluate(
            &policy,
            &Facts {
                sanctioned: Some(true),
                ..facts.clone()
            },
        );
        assert!(!a.allowed);
        let failed: Vec<_> = a.checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].rule, "require_sanctions_clear");
        assert!(failed[0].remedy.is_some());
    }

    #[test]
    fn empty_policy_allows_anyone() {
        let a = evaluate(&IdentityPolicy::default(), &Facts::default());
        assert!(a.allowed);
        assert!(a.checks.is_empty());
    }

    #[test]
    fn reputation_floor_and_score() {
        let fresh = ReputationFacts {
            now: 1_000_000,
            ..Default::default()
        };
        assert_eq!(score(&fresh), 0);
        let floor = ReputationFloor {
            min_settled: 2,
            min_age_days: 1,
            max_failure_ppm: Some(100_000),
        };
        assert!(!reputation_check(&floor, &fresh).passed);
        let good = ReputationFacts {
            settled: 10,
            first_settled_at: Some(1_000_000 - 2 * 86_400),
            failed: 1,
            replayed: 0,
            now: 1_000_000,
            distinct_payees: 2,
        };
        // 10 × 4 + 2 × 300 / 365 + 2 × 10 + 100 × 10 / 11
        assert_eq!(score(&good), 40 + 1 + 20 + 90);
        assert_eq!(good.failure_ppm(), 90_909);
        assert!(reputation_check(&floor, &good).passed);
        let flaky = ReputationFacts { failed: 5, ..good };
        let c = reputation_check(&floor, &flaky);
        assert!(!c.passed);
        assert!(c.reason.unwrap().contains("per million"));
        let maxed = ReputationFacts {
            settled: u64::MAX,
            first_settled_at: Some(0),
            failed: 0,
            replayed: 0,
            now: u64::MAX,
            distinct_payees: u64::MAX,
        };
        assert_eq!(score(&maxed), SCORE_MAX);
    }
}
