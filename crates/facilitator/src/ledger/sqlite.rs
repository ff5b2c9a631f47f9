//! The SQLite backend of the ledger: one embedded file, zero set-up.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    now, now_millis, Event, LedgerEntry, LedgerError, PaymentKey, PruneReport, SettlementState,
};

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
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS attempts (
    attempt     TEXT NOT NULL PRIMARY KEY,
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_payment ON attempts (network, asset, payer, nonce);
";

/// Columns added to `settlements` after its first release: added to existing files at open.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("attempt", "TEXT"),
    ("lease_until", "INTEGER"),
    ("valid_before", "INTEGER"),
];

/// The columns `row_to_entry_at` reads, in order.
const ENTRY_COLUMNS: &str =
    "state, amount, pay_to, tx_hash, error_reason, payment_json, updated_at, attempt, lease_until, valid_before";

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
        migrate(&conn)?;
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
                &format!(
                    "SELECT {ENTRY_COLUMNS}
                     FROM settlements WHERE network = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4"
                ),
                params![key.network, key.asset, key.payer, key.nonce],
                |r| row_to_entry(key.clone(), r),
            )
            .optional()
        })
        .await
    }

    /// Writes `entry` (insert or replace), keeping the original creation time and the lease.
    pub(crate) async fn put(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let e = entry.clone();
        self.with(move |c| {
            let t = now();
            c.execute(
                "INSERT INTO settlements
                   (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                    payment_json, created_at, updated_at, attempt, valid_before)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13)
                 ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                   state = excluded.state, amount = excluded.amount, pay_to = excluded.pay_to,
                   tx_hash = excluded.tx_hash, error_reason = excluded.error_reason,
                   payment_json = excluded.payment_json, updated_at = excluded.updated_at,
                   attempt = excluded.attempt,
                   valid_before = COALESCE(excluded.valid_before, settlements.valid_before)",
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
                    t,
                    e.attempt,
                    e.valid_before
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub(crate) async fn insert_verified(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let e = entry.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO settlements
                   (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                    payment_json, created_at, updated_at, attempt, valid_before)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?9, ?9, ?10, ?11)
                 ON CONFLICT (network, asset, payer, nonce) DO NOTHING",
                params![
                    e.key.network,
                    e.key.asset,
                    e.key.payer,
                    e.key.nonce,
                    e.state.as_str(),
                    e.amount,
                    e.pay_to,
                    e.payment_json,
                    now(),
                    e.attempt,
                    e.valid_before
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub(crate) async fn reserve(
        &self,
        entry: &LedgerEntry,
        attempt: &str,
        lease: Duration,
        renew_same: bool,
    ) -> Result<bool, LedgerError> {
        let (e, attempt) = (entry.clone(), attempt.to_owned());
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        self.with(move |c| {
            let (t, ms) = (now(), now_millis());
            let changed = c.execute(
                "INSERT INTO settlements
                   (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                    payment_json, created_at, updated_at, attempt, lease_until, valid_before)
                 VALUES (?1, ?2, ?3, ?4, 'verified', ?5, ?6, NULL, NULL, ?7, ?8, ?8, ?9, ?10, ?11)
                 ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                   state = 'verified', amount = excluded.amount, pay_to = excluded.pay_to,
                   error_reason = NULL, payment_json = excluded.payment_json,
                   updated_at = excluded.updated_at, attempt = excluded.attempt,
                   lease_until = excluded.lease_until, valid_before = excluded.valid_before
                 WHERE settlements.state = 'failed'
                    OR (settlements.state = 'verified'
                        AND (settlements.attempt IS NULL
                             OR (?13 AND settlements.attempt = excluded.attempt)
                             OR COALESCE(settlements.lease_until, 0) < ?12))",
                params![
                    e.key.network,
                    e.key.asset,
                    e.key.payer,
                    e.key.nonce,
                    e.amount,
                    e.pay_to,
                    e.payment_json,
                    t,
                    attempt,
                    ms.saturating_add(lease),
                    e.valid_before,
                    ms,
                    renew_same
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn bind_attempt(
        &self,
        attempt: &str,
        key: &PaymentKey,
    ) -> Result<PaymentKey, LedgerError> {
        let (attempt, key) = (attempt.to_owned(), key.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO attempts (attempt, network, asset, payer, nonce, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (attempt) DO NOTHING",
                params![attempt, key.network, key.asset, key.payer, key.nonce, now()],
            )?;
            c.query_row(
                "SELECT network, asset, payer, nonce FROM attempts WHERE attempt = ?1",
                params![attempt],
                |r| {
                    Ok(PaymentKey {
                        network: r.get(0)?,
                        asset: r.get(1)?,
                        payer: r.get(2)?,
                        nonce: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    pub(crate) async fn attempt_binding(
        &self,
        attempt: &str,
    ) -> Result<Option<PaymentKey>, LedgerError> {
        let attempt = attempt.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT network, asset, payer, nonce FROM attempts WHERE attempt = ?1",
                params![attempt],
                |r| {
                    Ok(PaymentKey {
                        network: r.get(0)?,
                        asset: r.get(1)?,
                        payer: r.get(2)?,
                        nonce: r.get(3)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    pub(crate) async fn prune(
        &self,
        events_before: i64,
        verified_before: i64,
    ) -> Result<PruneReport, LedgerError> {
        self.with(move |c| {
            let ms = now_millis();
            let tx = c.unchecked_transaction()?;
            let events = tx.execute("DELETE FROM events WHERE at < ?1", params![events_before])?;
            // Unsettled — verified, or failed before anything was sent (what a restart makes
            // of a verification nobody settled) — and expired, or simply left alone: an
            // authorization may be valid for years, and a row nobody touched since `?1` with
            // no live lease serves nobody.
            let expired = "(state = 'verified' OR (state = 'failed' AND tx_hash IS NULL))
                           AND COALESCE(lease_until, 0) < ?2
                           AND ((valid_before IS NOT NULL AND valid_before < ?1)
                                OR updated_at < ?1)";
            tx.execute(
                &format!(
                    "DELETE FROM attempts WHERE (network, asset, payer, nonce) IN
                       (SELECT network, asset, payer, nonce FROM settlements WHERE {expired})"
                ),
                params![verified_before, ms],
            )?;
            let unsettled = tx.execute(
                &format!("DELETE FROM settlements WHERE {expired}"),
                params![verified_before, ms],
            )?;
            tx.commit()?;
            Ok(PruneReport {
                events: events as u64,
                unsettled: unsettled as u64,
            })
        })
        .await
    }

    pub(crate) async fn count_all_events(&self) -> Result<i64, LedgerError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)))
            .await
    }

    /// Rows still in flight (`verified` or `submitted`), oldest first: what a restarted
    /// facilitator must reconcile.
    pub(crate) async fn unfinished(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT network, asset, payer, nonce, {ENTRY_COLUMNS}
                 FROM settlements WHERE state IN ('verified', 'submitted') ORDER BY updated_at"
            ))?;
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

    /// Appends an audit event and deletes those more than `max_rows` inserts old.
    pub(crate) async fn record(&self, event: Event<'_>, max_rows: i64) -> Result<(), LedgerError> {
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
            )?;
            // Ids only grow, so at most `max_rows` events have an id in (id - max_rows, id].
            let id = c.last_insert_rowid();
            c.execute(
                "DELETE FROM events WHERE id <= ?1",
                params![id.saturating_sub(max_rows)],
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
        attempt: r.get(first + 7)?,
        lease_until: r.get(first + 8)?,
        valid_before: r.get(first + 9)?,
    })
}

/// Brings a ledger file created by an earlier version up to the current schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('settlements')")?;
    let existing: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, ty) in ADDED_COLUMNS {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE settlements ADD COLUMN {name} {ty}"))?;
        }
    }
    Ok(())
}
