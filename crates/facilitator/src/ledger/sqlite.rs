//! The SQLite backend of the ledger: one embedded file, zero set-up.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    now, now_millis, Event, LedgerEntry, LedgerError, PayerHistory, PayerSettlement, PaymentKey,
    PruneReport, SettlementState, FAILED_EVENT, REPLAYED_EVENT,
};

/// The SQLite backend: one connection, used from blocking tasks.
#[derive(Clone)]
pub(crate) struct SqliteLedger {
    pub(crate) conn: Arc<Mutex<Connection>>,
}

/// The columns of a payment's key, in [`key_params`] order (schema version 2: see
/// `tollgate-migrations`).
const KEY_COLUMNS: &str = "network, scheme, asset, payer, payment_id";

/// `WHERE` clause matching one payment's key as `?1`–`?5`.
const KEY_MATCH: &str =
    "network = ?1 AND scheme = ?2 AND asset = ?3 AND payer = ?4 AND payment_id = ?5";

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

    fn init(mut conn: Connection) -> Result<Self, LedgerError> {
        // WAL lets readers proceed during writes; FULL sync makes a recorded `submitted` state
        // survive power loss, which is the point of writing it before waiting.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Also how long a migration step waits for another process's step on the same file.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let report = tollgate_migrations::sqlite::migrate(&mut conn)?;
        super::log_migration("sqlite", &report);
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
                &format!("SELECT {ENTRY_COLUMNS} FROM settlements WHERE {KEY_MATCH}"),
                key_params(&key),
                |r| row_to_entry_at(key.clone(), r, 0),
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
            let k = &e.key;
            c.execute(
                &format!(
                    "INSERT INTO settlements
                       ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, valid_before)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET
                       state = excluded.state, amount = excluded.amount, pay_to = excluded.pay_to,
                       tx_hash = excluded.tx_hash, error_reason = excluded.error_reason,
                       payment_json = excluded.payment_json, updated_at = excluded.updated_at,
                       attempt = excluded.attempt,
                       valid_before = COALESCE(excluded.valid_before, settlements.valid_before)"
                ),
                params![
                    k.network,
                    k.scheme,
                    k.asset,
                    k.payer,
                    k.id,
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
            let k = &e.key;
            c.execute(
                &format!(
                    "INSERT INTO settlements
                       ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, valid_before)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, ?9, ?10, ?10, ?11, ?12)
                     ON CONFLICT ({KEY_COLUMNS}) DO NOTHING"
                ),
                params![
                    k.network,
                    k.scheme,
                    k.asset,
                    k.payer,
                    k.id,
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
            let k = &e.key;
            let changed = c.execute(
                &format!(
                    "INSERT INTO settlements
                       ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, lease_until, valid_before)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'verified', ?6, ?7, NULL, NULL, ?8, ?9, ?9, ?10,
                             ?11, ?12)
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET
                       state = 'verified', amount = excluded.amount, pay_to = excluded.pay_to,
                       error_reason = NULL, payment_json = excluded.payment_json,
                       updated_at = excluded.updated_at, attempt = excluded.attempt,
                       lease_until = excluded.lease_until, valid_before = excluded.valid_before
                     WHERE settlements.state = 'failed'
                        OR (settlements.state = 'verified'
                            AND (settlements.attempt IS NULL
                                 OR (?14 AND settlements.attempt = excluded.attempt)
                                 OR COALESCE(settlements.lease_until, 0) < ?13))"
                ),
                params![
                    k.network,
                    k.scheme,
                    k.asset,
                    k.payer,
                    k.id,
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
                &format!(
                    "INSERT INTO attempts ({KEY_COLUMNS}, attempt, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (attempt) DO NOTHING"
                ),
                params![
                    key.network,
                    key.scheme,
                    key.asset,
                    key.payer,
                    key.id,
                    attempt,
                    now()
                ],
            )?;
            c.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM attempts WHERE attempt = ?1"),
                params![attempt],
                |r| row_to_key(r, 0),
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
                &format!("SELECT {KEY_COLUMNS} FROM attempts WHERE attempt = ?1"),
                params![attempt],
                |r| row_to_key(r, 0),
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
                    "DELETE FROM attempts WHERE ({KEY_COLUMNS}) IN
                       (SELECT {KEY_COLUMNS} FROM settlements WHERE {expired})"
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
                "SELECT {KEY_COLUMNS}, {ENTRY_COLUMNS}
                 FROM settlements WHERE state IN ('verified', 'submitted') ORDER BY updated_at"
            ))?;
            let rows = stmt.query_map([], |r| row_to_entry_at(row_to_key(r, 0)?, r, 5))?;
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
            event.scheme.map(str::to_owned),
            event.payer.map(str::to_owned),
            event.payment_id.map(str::to_owned),
            event.outcome.to_owned(),
            event.reason.map(str::to_owned),
            event.tx_hash.map(str::to_owned),
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO events
                   (at, kind, network, scheme, payer, payment_id, outcome, reason, tx_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    now(),
                    owned.0,
                    owned.1,
                    owned.2,
                    owned.3,
                    owned.4,
                    owned.5,
                    owned.6,
                    owned.7
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
                &format!(
                    "INSERT INTO claims ({KEY_COLUMNS}, owner, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET
                       owner = excluded.owner, expires_at = excluded.expires_at
                     WHERE claims.expires_at < ?8 OR claims.owner = excluded.owner"
                ),
                params![
                    key.network,
                    key.scheme,
                    key.asset,
                    key.payer,
                    key.id,
                    owner,
                    t.saturating_add(ttl),
                    t
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// A payer's confirmed payments and refused attempts (`payer` already canonical).
    pub(crate) async fn payer_history(&self, payer: &str) -> Result<PayerHistory, LedgerError> {
        let payer = payer.to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT network, asset, pay_to, amount, created_at, updated_at
                 FROM settlements WHERE payer = ?1 AND state = 'confirmed'",
            )?;
            let settled = stmt
                .query_map(params![payer], |r| {
                    Ok(PayerSettlement {
                        network: r.get(0)?,
                        asset: r.get(1)?,
                        pay_to: r.get(2)?,
                        amount: r.get(3)?,
                        created_at: r.get(4)?,
                        updated_at: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let (failed, replayed): (i64, i64) = c.query_row(
                &format!(
                    "SELECT COALESCE(SUM(CASE WHEN {FAILED_EVENT} THEN 1 ELSE 0 END), 0),
                            COALESCE(SUM(CASE WHEN {REPLAYED_EVENT} THEN 1 ELSE 0 END), 0)
                     FROM events WHERE payer = ?1"
                ),
                params![payer],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(PayerHistory {
                settled,
                failed: u64::try_from(failed).unwrap_or(0),
                replayed: u64::try_from(replayed).unwrap_or(0),
            })
        })
        .await
    }

    pub(crate) async fn release(&self, key: &PaymentKey, owner: &str) -> Result<(), LedgerError> {
        let (key, owner) = (key.clone(), owner.to_owned());
        self.with(move |c| {
            c.execute(
                &format!("DELETE FROM claims WHERE {KEY_MATCH} AND owner = ?6"),
                params![key.network, key.scheme, key.asset, key.payer, key.id, owner],
            )
            .map(|_| ())
        })
        .await
    }
}

/// A key's values as `?1`–`?5`, in [`KEY_COLUMNS`] order.
fn key_params(key: &PaymentKey) -> [&dyn rusqlite::ToSql; 5] {
    [&key.network, &key.scheme, &key.asset, &key.payer, &key.id]
}

/// A key read from [`KEY_COLUMNS`] starting at column `first`. Read back verbatim: the key was
/// canonical when written.
fn row_to_key(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<PaymentKey> {
    Ok(PaymentKey {
        network: r.get(first)?,
        scheme: r.get(first + 1)?,
        asset: r.get(first + 2)?,
        payer: r.get(first + 3)?,
        id: r.get(first + 4)?,
    })
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
