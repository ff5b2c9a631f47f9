//! The reputation service: what the settlement ledger says about a payer, over HTTP.
//!
//! - `GET /reputation/{address}` — a [`Reputation`] report: per network and asset the
//!   payments settled (count, volume in atomic units as a decimal string, first and last seen
//!   in Unix seconds), failed and replayed attempts from the audit log, distinct payees, and a
//!   score from 0 to 1000 ([`tollgate_identity::score`]):
//!
//!   ```text
//!   score = min(settled, 100) × 4
//!         + min(days since first settlement, 365) × 300 / 365
//!         + min(distinct payees, 20) × 10
//!         + 100 × settled / (settled + failed + replayed)     (0 with no attempts)
//!   ```
//!
//! - `POST /assess` — the AgentScore request and response shape
//!   ([`AssessRequest`] → [`AssessResponse`]), evaluated locally with
//!   [`tollgate_identity::evaluate`]: `require_sanctions_clear` against the configured
//!   sanctions list (`[identity] sanctions_file`), `min_reputation` against the ledger. The
//!   facilitator knows nothing of KYC, age or jurisdiction, so those rules fail closed.
//!
//! So a Tollgate facilitator *is* an identity provider: point a
//! [`tollgate_identity::AgentScoreClient`] at its root URL. Both routes only read; they sit
//! behind the API key and the rate limit like `/verify`.
//!
//! "Failed" and "replayed" come from the audit event log, which retention bounds by age and
//! count (`[ledger] events_max_age_days`, `events_max_rows`): they count recent history.
//! A replayed attempt is a refusal of the payer's payment as already used, in use or bound to
//! another attempt key — whoever presented it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use alloy::primitives::U256;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, Subject,
};
use tollgate_core::BoxFuture;
use tollgate_identity::wire::{
    AssessRequest, AssessResponse, AssetActivity, ErrorBody, Reputation, SignerSanctions,
};
use tollgate_identity::{evaluate, score, Facts, SanctionsError, SanctionsList};

use crate::ledger::{canonical_payer, Ledger, LedgerError, PayerHistory};

/// The longest address accepted (CAIP-10 account ids of every chain fit).
const MAX_ADDRESS_LEN: usize = 128;

/// Why the service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    /// The address is not one (empty, too long, or with characters no chain uses).
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The sanctions list changed and cannot be loaded (fail closed).
    #[error(transparent)]
    Sanctions(#[from] SanctionsError),
}

impl ReputationError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidAddress(_) => StatusCode::BAD_REQUEST,
            Self::Ledger(_) | Self::Sanctions(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ReputationError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "reputation service unavailable");
        }
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// The reputation service over a ledger and an optional sanctions list. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ReputationService {
    ledger: Ledger,
    sanctions: Option<Arc<SanctionsList>>,
}

fn check_address(address: &str) -> Result<(), ReputationError> {
    let ok = !address.is_empty()
        && address.len() <= MAX_ADDRESS_LEN
        && address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ReputationError::InvalidAddress(format!(
            "expected at most {MAX_ADDRESS_LEN} letters, digits, ':', '_', '-' or '.'"
        )))
    }
}

fn unix(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// Folds a payer's history into its report (`now`: Unix seconds).
pub fn report(address: &str, history: &PayerHistory, now: u64) -> Reputation {
    struct Acc {
        count: u64,
        volume: U256,
        first: u64,
        last: u64,
    }
    let mut per: BTreeMap<(&str, &str), Acc> = BTreeMap::new();
    let mut payees = BTreeSet::new();
    for s in &history.settled {
        let amount = U256::from_str_radix(s.amount.trim(), 10).unwrap_or_else(|_| {
            tracing::warn!(amount = %s.amount, "ledger amount is not a decimal integer; counted as 0");
            U256::ZERO
        });
        let acc = per
            .entry((s.network.as_str(), s.asset.as_str()))
            .or_insert(Acc {
                count: 0,
                volume: U256::ZERO,
                first: u64::MAX,
                last: 0,
            });
        acc.count += 1;
        acc.volume = acc.volume.saturating_add(amount);
        acc.first = acc.first.min(unix(s.created_at));
        acc.last = acc.last.max(unix(s.updated_at));
        payees.insert(s.pay_to.to_ascii_lowercase());
    }
    let assets: Vec<AssetActivity> = per
        .into_iter()
        .map(|((network, asset), a)| AssetActivity {
            network: network.into(),
            asset: asset.into(),
            settled_count: a.count,
            settled_volume: a.volume.to_string(),
            first_seen: a.first,
            last_seen: a.last,
        })
        .collect();
    let mut reputation = Reputation {
        address: canonical_payer(address),
        score: 0,
        settled_count: assets.iter().map(|a| a.settled_count).sum(),
        first_seen: assets.iter().map(|a| a.first_seen).min(),
        last_seen: assets.iter().map(|a| a.last_seen).max(),
        failed_attempts: history.failed,
        replayed_attempts: history.replayed,
        distinct_payees: payees.len() as u64,
        assets,
        as_of: now,
    };
    reputation.score = score(&reputation.facts());
    reputation
}

impl ReputationService {
    /// The service over `ledger`, with a sanctions list if given.
    pub fn new(ledger: Ledger, sanctions: Option<Arc<SanctionsList>>) -> Self {
        Self { ledger, sanctions }
    }

    /// The service the configuration describes: the sanctions list of
    /// `[identity] sanctions_file`, loaded now (an unreadable or malformed file is an error, so
    /// the facilitator refuses to start rather than serve without it).
    pub async fn from_config(
        ledger: Ledger,
        identity: &crate::config::IdentityConfig,
    ) -> Result<Self, ReputationError> {
        let sanctions = match &identity.sanctions_file {
            Some(path) => Some(Arc::new(SanctionsList::load(path).await?)),
            None => None,
        };
        Ok(Self::new(ledger, sanctions))
    }

    /// The report on `address`.
    pub async fn reputation(&self, address: &str) -> Result<Reputation, ReputationError> {
        check_address(address)?;
        let history = self.ledger.payer_history(address).await?;
        Ok(report(address, &history, unix(crate::ledger::now())))
    }

    /// `request` judged from the ledger and the sanctions list. Both `address` and, when
    /// given, `signer.address` are screened: either listed makes the payer sanctioned.
    pub async fn assess(&self, request: &AssessRequest) -> Result<AssessResponse, ReputationError> {
        check_address(&request.address)?;
        let signer = request.signer.as_ref().map(|s| s.address.as_str());
        if let Some(s) = signer {
            check_address(s)?;
        }
        let policy = &request.policy;
        let mut facts = Facts::default();
        let mut screening = None;
        if let Some(list) = &self.sanctions {
            let mut sanctioned = list.is_sanctioned(&request.address).await?;
            if let Some(s) = signer {
                sanctioned |= list.is_sanctioned(s).await?;
            }
            facts.sanctioned = Some(sanctioned);
            screening = Some(SignerSanctions {
                address: canonical_payer(signer.unwrap_or(&request.address)),
                screened: true,
                sanctioned,
            });
        }
        if policy.min_reputation.is_some() {
            facts.reputation = Some(self.reputation(&request.address).await?.facts());
        }
        Ok(AssessResponse::from_assessment(
            &evaluate(policy, &facts),
            screening,
        ))
    }

    /// `GET /reputation/{address}`.
    pub(crate) async fn reputation_response(&self, address: &str) -> Response {
        match self.reputation(address).await {
            Ok(r) => Json(r).into_response(),
            Err(e) => e.into_response(),
        }
    }

    /// `POST /assess`.
    pub(crate) async fn assess_response(&self, body: &[u8]) -> Response {
        let request: AssessRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(ErrorBody {
                        error: format!("invalid assess request: {e}"),
                    }),
                )
                    .into_response()
            }
        };
        match self.assess(&request).await {
            Ok(r) => Json(r).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// The facilitator's own reputation as an in-process [`IdentityProvider`] (what
/// `POST /assess` answers, without the HTTP hop).
impl IdentityProvider for ReputationService {
    fn name(&self) -> &str {
        "tollgate-reputation"
    }

    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a IdentityPolicy,
    ) -> BoxFuture<'a, Result<Assessment, ProviderError>> {
        Box::pin(async move {
            let request = AssessRequest {
                address: subject.payer.clone(),
                chain: subject.network.to_string(),
                policy: policy.clone(),
                signer: None,
            };
            ReputationService::assess(self, &request)
                .await
                .map(AssessResponse::into_assessment)
                .map_err(|e| ProviderError {
                    provider: "tollgate-reputation".into(),
                    reason: e.to_string(),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PayerSettlement;

    fn settled(network: &str, asset: &str, pay_to: &str, amount: &str, at: i64) -> PayerSettlement {
        PayerSettlement {
            network: network.into(),
            asset: asset.into(),
            pay_to: pay_to.into(),
            amount: amount.into(),
            created_at: at,
            updated_at: at + 5,
        }
    }

    #[test]
    fn report_aggregates_per_network_and_asset_without_overflow() {
        let big = U256::MAX.to_string();
        let history = PayerHistory {
            settled: vec![
                settled("eip155:1", "0xaa", "0x01", "10", 100),
                settled("eip155:1", "0xaa", "0x02", "15", 50),
                settled("eip155:8453", "0xbb", "0x01", &big, 200),
                settled("eip155:8453", "0xbb", "0x01", "1", 300),
            ],
            failed: 1,
            replayed: 2,
        };
        let r = report("0xABC", &history, 400);
        assert_eq!(r.address, "0xabc");
        assert_eq!(r.settled_count, 4);
        assert_eq!(r.distinct_payees, 2);
        assert_eq!((r.first_seen, r.last_seen), (Some(50), Some(305)));
        assert_eq!(r.assets.len(), 2);
        assert_eq!(r.assets[0].settled_volume, "25");
        assert_eq!((r.assets[0].first_seen, r.assets[0].last_seen), (50, 105));
        assert_eq!(r.assets[1].settled_volume, big, "saturates, never wraps");
        // 4 × 4 + 0 days + 2 × 10 + 100 × 4 / 7
        assert_eq!(r.score, 16 + 20 + 57);
    }

    #[test]
    fn the_identity_section_parses_strictly() {
        let c = crate::Config::parse("[identity]\nsanctions_file = \"/x/sdn.txt\"\n").unwrap();
        assert_eq!(
            c.identity.sanctions_file.as_deref(),
            Some(std::path::Path::new("/x/sdn.txt"))
        );
        assert!(crate::Config::parse("[identity]\nsanction_file = \"x\"\n").is_err());
        assert_eq!(
            crate::Config::parse("").unwrap().identity.sanctions_file,
            None
        );
    }

    #[tokio::test]
    async fn without_a_list_sanctions_fail_closed_and_a_broken_list_stops_the_start() {
        let ledger = Ledger::in_memory().unwrap();
        let service = ReputationService::from_config(ledger.clone(), &Default::default())
            .await
            .unwrap();
        let request: AssessRequest = serde_json::from_value(serde_json::json!({
            "address": "0x0000000000000000000000000000000000000001",
            "chain": "eip155:8453",
            "policy": { "require_sanctions_clear": true }
        }))
        .unwrap();
        let answer = service.assess(&request).await.unwrap();
        assert_eq!(answer.decision, tollgate_identity::wire::Decision::Deny);
        assert!(answer.signer_sanctions.is_none());
        assert!(answer.decision_reasons[0].contains("does not know"));

        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("sdn.txt");
        std::fs::write(&broken, "0x12\n").unwrap();
        let config = crate::config::IdentityConfig {
            sanctions_file: Some(broken),
        };
        let err = ReputationService::from_config(ledger, &config)
            .await
            .unwrap_err();
        assert!(matches!(err, ReputationError::Sanctions(_)), "{err}");
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("0x8589427373D6D84E98730D7795D8f6f8731FDA16").is_ok());
        assert!(check_address("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:7S3P4H").is_ok());
        for bad in ["", "a b", "0x'; DROP", &"a".repeat(129)] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
