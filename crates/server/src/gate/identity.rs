//! The identity gate: whom a seller serves, decided about the **verified** payer after
//! `/verify` and before the handler runs or anything is settled.
//!
//! It runs only for a request that carries a payment the facilitator found valid, so anonymous
//! discovery (the 402) never reaches a provider, and it asks about the payer the facilitator
//! reported — never an address the buyer merely claims in a header — so a buyer cannot borrow
//! another wallet's standing. A refusal releases the verified payment unsettled (as
//! [`VerifiedPayment::handler_failed`](super::VerifiedPayment::handler_failed) does): a refused
//! buyer is never charged. A provider that cannot answer closes the gate (`503`, nothing
//! settled, nothing served) unless the seller opted into fail-open.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, RuleCheck, Subject,
};
use tollgate_proto::Network;

/// The `error` of a 403 identity refusal.
pub const IDENTITY_CHECK_FAILED: &str = "identity_check_failed";

/// The request header whose value is passed to providers as
/// [`Subject::operator_token`]; never logged.
pub const OPERATOR_TOKEN: &str = "x-operator-token";

/// Default lifetime of a cached decision.
pub const DEFAULT_IDENTITY_CACHE_TTL: Duration = Duration::from_secs(300);

/// Most decisions cached at once: distinct payers cannot grow the cache without limit.
const CACHE_CAPACITY: usize = 10_000;

/// How a decision was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionResult {
    /// Every rule passed: the request goes on to the handler and settlement.
    Allowed,
    /// At least one rule failed: `403`, nothing settled, nothing served.
    Refused,
    /// The provider could not answer and the gate is closed: `503`, nothing settled.
    Unavailable,
    /// The provider could not answer and the seller opted into fail-open: served unchecked.
    FailedOpen,
}

impl DecisionResult {
    /// A stable label for logs and stores.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::FailedOpen => "failed_open",
        }
    }
}

/// One identity decision, as logged and handed to a [`DecisionSink`]: who, when, under which
/// rules, with what result. Never holds the operator token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// When it was made (or, for a cached verdict, reused).
    #[serde(skip)]
    pub at: SystemTime,
    /// The verified payer.
    pub payer: String,
    /// The payment's network.
    pub network: Network,
    /// The provider's name.
    pub provider: String,
    /// The exchange (`"GET /weather"`).
    pub target: String,
    /// The result.
    pub result: DecisionResult,
    /// Each rule with its outcome (empty when the provider could not answer).
    pub checks: Vec<RuleCheck>,
    /// Whether the verdict came from the cache rather than the provider.
    pub cached: bool,
    /// Why the provider could not answer, when it could not.
    pub error: Option<String>,
}

/// Where decisions are recorded beyond the log: a durable store (SQLite, PostgreSQL…) plugs in
/// here without the server crate depending on a database. Called on the request's path, so an
/// implementation should hand the record off (a channel, a buffer) rather than block.
pub trait DecisionSink: Send + Sync + 'static {
    /// Records one decision.
    fn record(&self, decision: &Decision);
}

/// A `403`: the payer's identity does not meet the seller's policy. The payment was verified
/// and is released unsettled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRefusal {
    /// The verified payer.
    pub payer: String,
    /// Every rule, failed ones with their reason and remedy.
    pub checks: Vec<RuleCheck>,
}

impl IdentityRefusal {
    /// The rules that failed.
    pub fn failed(&self) -> impl Iterator<Item = &RuleCheck> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The 403's JSON body: `{"error": "identity_check_failed", "payer": …, "checks": […]}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": IDENTITY_CHECK_FAILED,
            "payer": self.payer,
            "checks": self.checks,
        })
    }
}

/// What the identity gate says about one verified payment.
pub(crate) enum Verdict {
    /// Go on: allowed, or the provider failed and the gate fails open.
    Pass,
    /// `403`.
    Refuse(IdentityRefusal),
    /// `503`: the provider could not answer and the gate fails closed.
    Unavailable(String),
}

/// The identity settings of a gate: off until a provider is given.
pub(crate) struct IdentityGate {
    pub(crate) provider: Option<(Arc<dyn IdentityProvider>, IdentityPolicy)>,
    pub(crate) fail_open: bool,
    pub(crate) ttl: Duration,
    pub(crate) sink: Option<Arc<dyn DecisionSink>>,
    cache: Mutex<HashMap<CacheKey, (Instant, Assessment)>>,
    /// Keys the operator-token fingerprints with a per-process secret, so the cache holds no
    /// reversible trace of a token.
    hasher: std::collections::hash_map::RandomState,
}

/// A cached verdict's key: the payer, the network and (a fingerprint of) the operator token —
/// the token may change what a provider knows about the payer (a buyer who adds one after a
/// KYC refusal is asked about again).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    payer: String,
    network: Network,
    token: Option<u64>,
}

impl Default for IdentityGate {
    fn default() -> Self {
        Self {
            provider: None,
            fail_open: false,
            ttl: DEFAULT_IDENTITY_CACHE_TTL,
            sink: None,
            cache: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl IdentityGate {
    /// Whether a provider is configured.
    pub(crate) fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Decides about the verified `payer` (`None`: the facilitator reported none) of a payment
    /// on `network` for `target`.
    pub(crate) async fn check(
        &self,
        payer: Option<&str>,
        network: &Network,
        operator_token: Option<&str>,
        target: &str,
    ) -> Verdict {
        let Some((provider, policy)) = &self.provider else {
            return Verdict::Pass;
        };
        let Some(payer) = payer.filter(|p| !p.is_empty()) else {
            // Nothing to assess: refusing is the only answer that cannot serve a sanctioned
            // buyer. The buyer cannot fix this; the seller's facilitator must report payers.
            let checks = vec![RuleCheck {
                rule: "verified_payer".into(),
                passed: false,
                reason: Some("the facilitator did not report who paid".into()),
                remedy: Some("pay through a facilitator that reports the payer".into()),
            }];
            self.decide(Decision {
                at: SystemTime::now(),
                payer: String::new(),
                network: network.clone(),
                provider: provider.name().to_owned(),
                target: target.to_owned(),
                result: DecisionResult::Refused,
                checks: checks.clone(),
                cached: false,
                error: None,
            });
            return Verdict::Refuse(IdentityRefusal {
                payer: String::new(),
                checks,
            });
        };
        let key = CacheKey {
            payer: payer.to_owned(),
            network: network.clone(),
            token: operator_token.map(|t| self.hasher.hash_one(t)),
        };
        let (assessed, cached) = match self.cached(&key) {
            Some(a) => (Ok(a), true),
            None => {
                let subject = Subject {
                    payer: payer.to_owned(),
                    network: network.clone(),
                    operator_token: operator_token.map(str::to_owned),
                };
                let answer = provider.assess(&subject, policy).await;
                if let Ok(a) = &answer {
                    self.remember(key, a.clone());
                }
                (answer, false)
            }
        };
        let mut decision = Decision {
            at: SystemTime::now(),
            payer: payer.to_owned(),
            network: network.clone(),
            provider: provider.name().to_owned(),
            target: target.to_owned(),
            result: DecisionResult::Allowed,
            checks: Vec::new(),
            cached,
            error: None,
        };
        let verdict = match assessed {
            Ok(Assessment { allowed, checks }) => {
                // A verdict of "allowed" with a failed rule is treated as a refusal: a
                // provider's inconsistency must not let a failed rule through.
                let refused = !allowed || checks.iter().any(|c| !c.passed);
                decision.checks = checks.clone();
                if refused {
                    decision.result = DecisionResult::Refused;
                    Verdict::Refuse(IdentityRefusal {
                        payer: payer.to_owned(),
                        checks,
                    })
                } else {
                    Verdict::Pass
                }
            }
            Err(ProviderError { provider, reason }) => {
                let detail = format!("identity provider {provider} unavailable: {reason}");
                decision.error = Some(detail.clone());
                if self.fail_open {
                    decision.result = DecisionResult::FailedOpen;
                    Verdict::Pass
                } else {
                    decision.result = DecisionResult::Unavailable;
                    Verdict::Unavailable(detail)
                }
            }
        };
        self.decide(decision);
        verdict
    }

    /// Logs `decision` (a structured event) and hands it to the sink.
    fn decide(&self, decision: Decision) {
        let rules = decision
            .checks
            .iter()
            .map(|c| format!("{}={}", c.rule, if c.passed { "pass" } else { "fail" }))
            .collect::<Vec<_>>()
            .join(",");
        let error = decision.error.as_deref().unwrap_or("");
        match decision.result {
            DecisionResult::Allowed => tracing::info!(
                target: "tollgate::identity",
                payer = %decision.payer, network = %decision.network,
                provider = %decision.provider, exchange = %decision.target,
                result = decision.result.label(), rules = %rules, cached = decision.cached,
                "identity decision"
            ),
            DecisionResult::Refused => tracing::info!(
                target: "tollgate::identity",
                payer = %decision.payer, network = %decision.network,
                provider = %decision.provider, exchange = %decision.target,
                result = decision.result.label(), rules = %rules, cached = decision.cached,
                "identity decision"
            ),
            DecisionResult::Unavailable | DecisionResult::FailedOpen => tracing::warn!(
                target: "tollgate::identity",
                payer = %decision.payer, network = %decision.network,
                provider = %decision.provider, exchange = %decision.target,
                result = decision.result.label(), error = %error,
                "identity decision without the provider's verdict"
            ),
        }
        if let Some(sink) = &self.sink {
            sink.record(&decision);
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Assessment> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(key) {
            Some((at, a)) if at.elapsed() < self.ttl => Some(a.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: CacheKey, assessment: Assessment) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), assessment));
    }
}
