//! The SQLite backend of the ledger: one embedded file, zero set-up.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, now_millis, Event, LedgerEntry, LedgerError, PaymentKey, SettlementState};

/// The SQLite backend: one connection, used from blocking tasks.
#[derive(Clone)]
pub(crate) struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
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
CREATE TABLE IF NOT EXISTS claims (
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (network, asset, payer, nonce)
);
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

impl SqliteLedger {
    /// Opens (creating if needed) the SQLite ledger at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub(crate) fn in_memory() -> Result<Self, LedgerError> {
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
    pub(crate) async fn get(&self, key: &PaymentKey) -> Result<Option<LedgerEntry>, LedgerError> {
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
    pub(crate) async fn put(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
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
    pub(crate) async fn unfinished(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
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
    pub(crate) async fn count_by_state(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT state, COUNT(*) FROM settlements GROUP BY state ORDER BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Appends an audit event.
    pub(crate) async fn record(&self, event: Event<'_>) -> Result<(), LedgerError> {
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
    pub(crate) async fn count_events(&self, kind: &str, outcome: &str) -> Result<i64, LedgerError> {
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

    pub(crate) async fn claim(
        &self,
        key: &PaymentKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        let (key, owner) = (key.clone(), owner.to_owned());
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.with(move |c| {
            let t = now_millis();
            let changed = c.execute(
                "INSERT INTO claims (network, asset, payer, nonce, owner, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                   owner = excluded.owner, expires_at = excluded.expires_at
                 WHERE claims.expires_at < ?7 OR claims.owner = excluded.owner",
                params![
                    key.network,
                    key.asset,
                    key.payer,
                    key.nonce,
                    owner,
                    t.saturating_add(ttl),
                    t
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn release(&self, key: &PaymentKey, owner: &str) -> Result<(), LedgerError> {
        let (key, owner) = (key.clone(), owner.to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM claims
                 WHERE network = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND owner = ?5",
                params![key.network, key.asset, key.payer, key.nonce, owner],
            )
            .map(|_| ())
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
