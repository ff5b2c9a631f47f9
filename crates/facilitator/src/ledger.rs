//! The settlement ledger: every verification and settlement, durably, in SQLite.
//!
//! One row per payment, keyed by (network, asset, payer, authorization nonce) — the identity
//! the token itself enforces — moving through `verified → submitted (tx hash) → confirmed |
//! failed`. The `submitted` state is written *before* waiting for the receipt, so a process
//! killed mid-settlement leaves the hash behind for reconciliation. Every call is also appended
//! to an event log for audit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

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
    fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Submitted => "submitted",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
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
pub struct LedgerError(String);

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// The ledger, shared by all requests of a facilitator.
#[derive(Clone)]
pub struct Ledger {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settlements (
    network       TEXT NOT NULL,
    asset         TEXT NOT NULL,
    payer         TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('verified', 'submitted', 'confirmed', 'failed')),
    amount        TEXT NOT NULL,
    pay_to        TEXT NOT NULL,
    tx_hash       TEXT,
    error_reason  TEXT,
    payment_json  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (network, asset, payer, nonce)
);
CREATE INDEX IF NOT EXISTS settlements_state ON settlements (state);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('verify', 'settle', 'reconcile')),
    network  TEXT NOT NULL,
    payer    TEXT,
    nonce    TEXT,
    outcome  TEXT NOT NULL,
    reason   TEXT,
    tx_hash  TEXT
);
";

fn now() -> i64 {
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

impl Ledger {
    /// Opens (creating if needed) the SQLite ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory ledger (tests, embedded use without durability).
    pub fn in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, LedgerError> {
        // WAL lets readers proceed during writes; FULL sync makes a recorded `submitted` state
        // survive power loss, which is the point of writing it before waiting.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| LedgerError("ledger lock poisoned".into()))?;
            f(&guard).map_err(LedgerError::from)
        })
        .await
        .map_err(|e| LedgerError(format!("ledger task failed: {e}")))?
    }

    /// The row of `key`, if any.
    pub async fn get(&self, key: &PaymentKey) -> Result<Option<LedgerEntry>, LedgerError> {
        let key = key.clone();
        self.with(move |c| {
            c.query_row(
                "SELECT state, amount, pay_to, tx_hash, error_reason, payment_json, updated_at
                 FROM settlements WHERE network = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
                params![key.network, key.asset, key.payer, key.nonce],
                |r| row_to_entry(key.clone(), r),
            )
            .optional()
        })
        .await
    }

    /// Writes `entry` (insert or replace), keeping the original creation time.
    pub async fn put(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let e = entry.clone();
        self.with(move |c| {
            let t = now();
            c.execute(
                "INSERT INTO settlements
                   (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                    payment_json, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
                 ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                   state = excluded.state, amount = excluded.amount, pay_to = excluded.pay_to,
                   tx_hash = excluded.tx_hash, error_reason = excluded.error_reason,
                   payment_json = excluded.payment_json, updated_at = excluded.updated_at",
                params![
                    e.key.network,
                    e.key.asset,
                    e.key.payer,
                    e.key.nonce,
                    e.state.as_str(),
                    e.amount,
                    e.pay_to,
                    e.tx_hash,
                    e.error_reason,
                    e.payment_json,
                    t
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Rows still in flight (`verified` or `submitted`), oldest first: what a restarted
    /// facilitator must reconcile.
    pub async fn unfinished(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT network, asset, payer, nonce, state, amount, pay_to, tx_hash,
                        error_reason, payment_json, updated_at
                 FROM settlements WHERE state IN ('verified', 'submitted') ORDER BY updated_at",
            )?;
            let rows = stmt.query_map([], |r| {
                let key = PaymentKey {
                    network: r.get(0)?,
                    asset: r.get(1)?,
                    payer: r.get(2)?,
                    nonce: r.get(3)?,
                };
                row_to_entry_at(key, r, 4)
            })?;
            rows.collect()
        })
        .await
    }

    /// Counts rows per state (for health and metrics).
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT state, COUNT(*) FROM settlements GROUP BY state ORDER BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Appends an audit event.
    pub async fn record(&self, event: Event<'_>) -> Result<(), LedgerError> {
        let owned = (
            event.kind.to_owned(),
            event.network.to_owned(),
            event.payer.map(str::to_owned),
            event.nonce.map(str::to_owned),
            event.outcome.to_owned(),
            event.reason.map(str::to_owned),
            event.tx_hash.map(str::to_owned),
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO events (at, kind, network, payer, nonce, outcome, reason, tx_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    now(),
                    owned.0,
                    owned.1,
                    owned.2,
                    owned.3,
                    owned.4,
                    owned.5,
                    owned.6
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Number of audit events of `kind` with `outcome`.
    pub async fn count_events(&self, kind: &str, outcome: &str) -> Result<i64, LedgerError> {
        let (kind, outcome) = (kind.to_owned(), outcome.to_owned());
        self.with(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM events WHERE kind = ?1 AND outcome = ?2",
                params![kind, outcome],
                |r| r.get(0),
            )
        })
        .await
    }
}

fn row_to_entry(key: PaymentKey, r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    row_to_entry_at(key, r, 0)
}

fn row_to_entry_at(
    key: PaymentKey,
    r: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<LedgerEntry> {
    let state: String = r.get(first)?;
    let state = SettlementState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            first,
            rusqlite::types::Type::Text,
            format!("unknown settlement state {state:?}").into(),
        )
    })?;
    Ok(LedgerEntry {
        key,
        state,
        amount: r.get(first + 1)?,
        pay_to: r.get(first + 2)?,
        tx_hash: r.get(first + 3)?,
        error_reason: r.get(first + 4)?,
        payment_json: r.get(first + 5)?,
        updated_at: r.get(first + 6)?,
    })
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
}
