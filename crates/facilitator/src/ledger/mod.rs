//! The settlement ledger: every verification and settlement, durably — in an embedded SQLite
//! file by default, or in PostgreSQL so that several facilitator instances share one ledger.
//!
//! One row per payment, keyed by (network, asset, payer, authorization nonce) — the identity
//! the token itself enforces — moving through `verified → submitted (tx hash) → confirmed |
//! failed`. The `submitted` state is written *before* waiting for the receipt, so a process
//! killed mid-settlement leaves the hash behind for reconciliation. Every call is also appended
//! to an event log for audit.

mod postgres;
mod sqlite;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::PostgresLedger;
use sqlite::SqliteLedger;

/// The identity of one payment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentKey {
    /// CAIP-2 network.
    pub network: String,
    /// Token address, lower case.
    pub asset: String,
    /// Payer address, lower case.
    pub payer: String,
    /// Authorization nonce, lower-case hex.
    pub nonce: String,
}

impl PaymentKey {
    /// Builds a key, normalizing case so that one payment has one key.
    pub fn new(network: &str, asset: &str, payer: &str, nonce: &str) -> Self {
        Self {
            network: network.to_owned(),
            asset: asset.to_ascii_lowercase(),
            payer: payer.to_ascii_lowercase(),
            nonce: nonce.to_ascii_lowercase(),
        }
    }
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    /// Verified, nothing sent.
    Verified,
    /// Transaction sent; receipt not yet seen.
    Submitted,
    /// Transfer mined and checked.
    Confirmed,
    /// Settlement failed; nothing moved.
    Failed,
}

impl SettlementState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Submitted => "submitted",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "verified" => Self::Verified,
            "submitted" => Self::Submitted,
            "confirmed" => Self::Confirmed,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The payment.
    pub key: PaymentKey,
    /// Its state.
    pub state: SettlementState,
    /// Amount in atomic units (decimal).
    pub amount: String,
    /// Recipient.
    pub pay_to: String,
    /// Settlement transaction, once sent.
    pub tx_hash: Option<String>,
    /// Reason code of the last failure.
    pub error_reason: Option<String>,
    /// The payment as received (JSON), so that reconciliation can finish it after a restart.
    pub payment_json: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// Why the ledger failed. Always fatal for the request: payments are never settled without a
/// durable record.
#[derive(Debug, thiserror::Error)]
#[error("settlement ledger error: {0}")]
pub struct LedgerError(pub(crate) String);

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The driver's Display hides the server's message; show it.
        match e.as_db_error() {
            Some(db) => Self(format!("{}: {}", db.code().code(), db.message())),
            None => Self(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for LedgerError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self(format!("PostgreSQL pool: {e}"))
    }
}

/// Unix milliseconds (claim expiry needs finer steps than seconds).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An event to append to the audit log.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// `verify`, `settle` or `reconcile`.
    pub kind: &'a str,
    /// Network.
    pub network: &'a str,
    /// Payer, if known.
    pub payer: Option<&'a str>,
    /// Nonce, if known.
    pub nonce: Option<&'a str>,
    /// `valid`, `invalid`, `success`, `pending`, `failure`, `unavailable`.
    pub outcome: &'a str,
    /// Reason code.
    pub reason: Option<&'a str>,
    /// Transaction.
    pub tx_hash: Option<&'a str>,
}

/// The ledger, shared by all requests of a facilitator (and, on PostgreSQL, by all instances).
/// Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteLedger),
    Postgres(PostgresLedger),
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A PostgreSQL URL may carry a password: name the backend only.
        let backend = match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        };
        f.debug_struct("Ledger")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(l) => l.$method($($arg),*).await,
            Backend::Postgres(l) => l.$method($($arg),*).await,
        }
    };
}

impl Ledger {
    /// Opens (creating if needed) the SQLite ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Ok(Self {
            backend: Backend::Sqlite(SqliteLedger::open(path)?),
        })
    }

    /// An in-memory SQLite ledger (tests, embedded use without durability).
    pub fn in_memory() -> Result<Self, LedgerError> {
        Ok(Self {
            backend: Backend::Sqlite(SqliteLedger::in_memory()?),
        })
    }

    /// Connects to the PostgreSQL ledger at `url` (`postgres://user:pass@host:port/db`),
    /// creating its tables if needed. Instances connected to one database share the ledger:
    /// one payment is settled once across all of them.
    pub async fn connect_postgres(url: &str) -> Result<Self, LedgerError> {
        Ok(Self {
            backend: Backend::Postgres(PostgresLedger::connect(url).await?),
        })
    }

    /// Opens the ledger a location names: a `postgres://` or `postgresql://` URL, or else a
    /// SQLite file path.
    pub async fn connect(location: &str) -> Result<Self, LedgerError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Self::connect_postgres(location).await
        } else {
            Self::open(Path::new(location))
        }
    }

    /// The row of `key`, if any.
    pub async fn get(&self, key: &PaymentKey) -> Result<Option<LedgerEntry>, LedgerError> {
        dispatch!(self.get(key))
    }

    /// Writes `entry` (insert or replace), keeping the original creation time.
    pub async fn put(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        dispatch!(self.put(entry))
    }

    /// Rows still in flight (`verified` or `submitted`), oldest first: what a restarted
    /// facilitator must reconcile.
    pub async fn unfinished(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        dispatch!(self.unfinished())
    }

    /// Counts rows per state (for health and metrics).
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        dispatch!(self.count_by_state())
    }

    /// Appends an audit event.
    pub async fn record(&self, event: Event<'_>) -> Result<(), LedgerError> {
        dispatch!(self.record(event))
    }

    /// Number of audit events of `kind` with `outcome`.
    pub async fn count_events(&self, kind: &str, outcome: &str) -> Result<i64, LedgerError> {
        dispatch!(self.count_events(kind, outcome))
    }

    /// Takes the exclusive right to settle `key` for `ttl`, unless another owner holds an
    /// unexpired claim. This is what makes settlement exactly-once across facilitator
    /// processes sharing the ledger; the expiry frees a payment whose owner died mid-settle.
    pub async fn claim(
        &self,
        key: &PaymentKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        dispatch!(self.claim(key, owner, ttl))
    }

    /// Gives up `owner`'s claim on `key` (no-op if it holds none).
    pub async fn release(&self, key: &PaymentKey, owner: &str) -> Result<(), LedgerError> {
        dispatch!(self.release(key, owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: SettlementState) -> LedgerEntry {
        LedgerEntry {
            key: PaymentKey::new("eip155:1", "0xAA", "0xBB", "0xCC"),
            state,
            amount: "10".into(),
            pay_to: "0xdd".into(),
            tx_hash: None,
            error_reason: None,
            payment_json: "{}".into(),
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn rows_survive_reopen_and_unfinished_lists_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        {
            let l = Ledger::open(&path).unwrap();
            l.put(&entry(SettlementState::Verified)).await.unwrap();
            let mut e = entry(SettlementState::Submitted);
            e.tx_hash = Some("0x01".into());
            l.put(&e).await.unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        let key = PaymentKey::new("eip155:1", "0xaa", "0xbb", "0xcc");
        let got = l.get(&key).await.unwrap().unwrap();
        assert_eq!(got.state, SettlementState::Submitted);
        assert_eq!(got.tx_hash.as_deref(), Some("0x01"));
        assert_eq!(l.unfinished().await.unwrap().len(), 1);
        let mut done = got.clone();
        done.state = SettlementState::Confirmed;
        l.put(&done).await.unwrap();
        assert!(l.unfinished().await.unwrap().is_empty());
        assert_eq!(
            l.count_by_state().await.unwrap(),
            vec![("confirmed".to_string(), 1)]
        );
        l.record(Event {
            kind: "settle",
            network: "eip155:1",
            outcome: "success",
            ..Event::default()
        })
        .await
        .unwrap();
        assert_eq!(l.count_events("settle", "success").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn claims_are_exclusive_until_released_or_expired() {
        let l = Ledger::in_memory().unwrap();
        let key = PaymentKey::new("eip155:1", "0xaa", "0xbb", "0xcc");
        let long = Duration::from_secs(60);
        assert!(l.claim(&key, "a", long).await.unwrap());
        assert!(
            !l.claim(&key, "b", long).await.unwrap(),
            "b must wait for a"
        );
        assert!(l.claim(&key, "a", long).await.unwrap(), "the owner renews");
        l.release(&key, "b").await.unwrap();
        assert!(
            !l.claim(&key, "b", long).await.unwrap(),
            "only the owner releases"
        );
        l.release(&key, "a").await.unwrap();
        assert!(l.claim(&key, "b", Duration::from_millis(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            l.claim(&key, "c", long).await.unwrap(),
            "an expired claim is free"
        );
    }
}
