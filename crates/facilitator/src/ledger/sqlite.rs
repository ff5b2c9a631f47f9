//! The SQLite backend of the ledger: one embedded file, zero set-up.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    now, now_millis, Event, LedgerEntry, LedgerError, PayerHistory, PayerSettlement, PaymentKey,
    PruneReport, SettlementState, FAILED_EVENT, REPLAYED_EVENT,
};

/// The SQLite backend: one connection, owned by one writer thread.
///
/// Every operation is durable when it returns (`synchronous = FULL`), and one `fsync` per
/// operation caps a facilitator at a few hundred verifications a second on an ordinary disk.
/// So operations commit in groups, as databases do: the writer thread takes everything queued
/// while it was writing the previous group, runs each operation in a savepoint of its own (an
/// error undoes exactly its writes) inside one transaction, commits once, and only then answers
/// them. Alone, an operation still commits at once. Writes nobody waits for (write-behind)
/// commit without an `fsync` when their group holds nothing else (see `writer`). One thread,
/// not a task per operation: many blocking tasks queueing on one connection's lock cost more
/// in context switches than the statements themselves.
#[derive(Clone)]
pub(crate) struct SqliteLedger {
    pub(crate) conn: Arc<Mutex<Connection>>,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// An operation run inside the group's transaction, given the connection or why the
/// transaction could not start; what it returns delivers its result once the group has
/// committed (with the commit's error, if that failed).
struct Job {
    /// Reads only: never inside the group's transaction, so a read waits for no `fsync` and
    /// never sees a write that is not yet durable (see `writer` for where it runs).
    read_only: bool,
    /// Whether its caller waits for the write to be durable; a group made only of writes
    /// nobody waits for (write-behind) commits without an `fsync` of its own.
    durable: bool,
    run: Run,
}

/// An operation, given the connection or why the group's transaction could not start.
type Run = Box<dyn FnOnce(Result<&Connection, &LedgerError>) -> Deliver + Send>;
type Deliver = Box<dyn FnOnce(Option<&LedgerError>) + Send>;

/// Most operations in one group: bounds how long the first of them waits for the commit.
const MAX_GROUP: usize = 512;

/// The writer thread: groups, runs and commits until every ledger handle is dropped.
fn writer(conn: Arc<Mutex<Connection>>, jobs: std::sync::mpsc::Receiver<Job>) {
    // The connection's `synchronous` setting, switched per group (see below).
    let mut full_sync = true;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let Ok(guard) = conn.lock() else {
            let error = LedgerError("ledger lock poisoned".into());
            for job in group {
                (job.run)(Err(&error))(None);
            }
            continue;
        };
        // Reads queued before the group's first write run now, on committed state; the
        // writes run in one transaction; reads queued after a write run once it committed,
        // so they see it (a write-behind operation's caller may read right after queueing it).
        let first_write = group
            .iter()
            .position(|j| !j.read_only)
            .unwrap_or(group.len());
        let rest = group.split_off(first_write);
        run_reads(&guard, group);
        let (late_reads, writes): (Vec<Job>, Vec<Job>) =
            rest.into_iter().partition(|j| j.read_only);
        if writes.is_empty() {
            continue;
        }
        // A group nobody waits on (verification rows and events, written behind) commits
        // without an `fsync`: WAL mode keeps the database consistent, and the next durable
        // group's `fsync` of the log makes these frames durable too. A crash in between loses
        // only such rows, which back no answer. Every group with a durable write syncs as
        // before (`synchronous = FULL`).
        let want_full = writes.iter().any(|j| j.durable);
        if want_full != full_sync {
            let mode = if want_full { "FULL" } else { "NORMAL" };
            match guard.pragma_update(None, "synchronous", mode) {
                Ok(()) => full_sync = want_full,
                Err(e) => tracing::warn!(error = %e, mode, "ledger synchronous not switched"),
            }
        }
        if !full_sync && want_full {
            // Never commit a durable write without its fsync: refuse the group instead.
            let error = LedgerError("ledger cannot switch back to synchronous = FULL".into());
            for job in writes {
                (job.run)(Err(&error))(None);
            }
            continue;
        }
        if let Err(e) = guard.cached_execute("BEGIN IMMEDIATE", []) {
            // Nothing ran: every operation of the group gets the reason.
            let error = LedgerError::from(e);
            tracing::warn!(error = %error, "ledger group not started");
            for job in writes {
                (job.run)(Err(&error))(None);
            }
            continue;
        }
        let delivers: Vec<Deliver> = writes
            .into_iter()
            .map(|job| (job.run)(Ok(&guard)))
            .collect();
        let committed = guard
            .cached_execute("COMMIT", [])
            .map(|_| ())
            .map_err(LedgerError::from);
        if committed.is_err() {
            let _ = guard.execute_batch("ROLLBACK");
        }
        let error = committed.err();
        for deliver in delivers {
            deliver(error.as_ref());
        }
        run_reads(&guard, late_reads);
        drop(guard);
    }
}

/// Runs read-only jobs on committed state; several share one read transaction, so the WAL's
/// read lock is taken once for them instead of once per statement.
fn run_reads(conn: &Connection, reads: Vec<Job>) {
    let shared = reads.len() > 1 && conn.cached_execute("BEGIN DEFERRED", []).is_ok();
    for job in reads {
        (job.run)(Ok(conn))(None);
    }
    if shared {
        // A read transaction has nothing to commit; ending it only releases the read lock.
        if conn.cached_execute("COMMIT", []).is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
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
        // Room for every statement the ledger runs (rusqlite keeps 16 by default; the ledger
        // has ~30, and one evicted is parsed again on its next use).
        conn.set_prepared_statement_cache_capacity(64);
        let report = tollgate_migrations::sqlite::migrate(&mut conn)?;
        super::log_migration("sqlite", &report);
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, queue) = std::sync::mpsc::channel();
        let writer_conn = Arc::clone(&conn);
        std::thread::Builder::new()
            .name("tollgate-ledger".into())
            .spawn(move || writer(writer_conn, queue))
            .map_err(|e| LedgerError(format!("cannot start the ledger's writer thread: {e}")))?;
        Ok(Self { conn, jobs })
    }

    /// Runs `f` in the next commit group (see [`SqliteLedger`]) and answers once it is durable.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.submit(false, f).await
    }

    /// Runs `f`, which only reads, on committed state without waiting for a commit.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.submit(true, f).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        read_only: bool,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<T, LedgerError>>();
        self.queue(read_only, true, f, move |result| {
            let _ = reply.send(result);
        })?;
        answer
            .await
            .map_err(|_| LedgerError("ledger group ended without an answer".into()))?
    }

    /// Queues `f`, a write, without waiting for it: it commits with the next group, and a
    /// failure is logged. For writes nobody's answer depends on (see
    /// `Ledger::insert_verified_behind`).
    fn write_behind(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) {
        let queued = self.queue(false, false, f, move |result| {
            if let Err(error) = result {
                tracing::warn!(error = %error, what, "ledger write-behind failed");
            }
        });
        if let Err(error) = queued {
            tracing::warn!(error = %error, what, "ledger write-behind dropped");
        }
    }

    /// Hands `f` to the writer thread; `answer` gets its result once that is final (a write's
    /// once its group committed, or the commit's error instead).
    fn queue<T: Send + 'static>(
        &self,
        read_only: bool,
        durable: bool,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
        answer: impl FnOnce(Result<T, LedgerError>) + Send + 'static,
    ) -> Result<(), LedgerError> {
        let run = Box::new(move |c: Result<&Connection, &LedgerError>| -> Deliver {
            let result = match (c, read_only) {
                (Ok(c), true) => f(c).map_err(LedgerError::from),
                (Ok(c), false) => run_in_savepoint(c, f),
                (Err(e), _) => Err(LedgerError(format!("ledger transaction not started: {e}"))),
            };
            Box::new(move |commit_error: Option<&LedgerError>| {
                answer(match commit_error {
                    Some(e) => Err(LedgerError(format!("ledger commit failed: {e}"))),
                    None => result,
                });
            })
        });
        self.jobs
            .send(Job {
                read_only,
                durable,
                run,
            })
            .map_err(|_| LedgerError("the ledger's writer thread has stopped".into()))
    }

    /// [`insert_verified`](Self::insert_verified) without waiting for the commit.
    pub(crate) fn insert_verified_behind(&self, entry: &LedgerEntry) {
        let e = entry.clone();
        self.write_behind("verified row", move |c| insert_verified_row(c, &e));
    }

    /// [`record`](Self::record) without waiting for the commit.
    pub(crate) fn record_behind(&self, event: Event<'_>, max_rows: i64) {
        let owned = OwnedEvent::from(event);
        self.write_behind("audit event", move |c| record_event(c, &owned, max_rows));
    }

    /// The row of `key`, if any.
    pub(crate) async fn get(&self, key: &PaymentKey) -> Result<Option<LedgerEntry>, LedgerError> {
        let key = key.clone();
        self.read(move |c| {
            c.cached_query_row(
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
            c.cached_execute(
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
        self.with(move |c| insert_verified_row(c, &e)).await
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
            let changed = c.cached_execute(
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
            c.cached_execute(
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
            c.cached_query_row(
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
        self.read(move |c| {
            c.cached_query_row(
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
            // All or nothing: the operation's own savepoint (see `with`).
            let tx = c;
            let events =
                tx.cached_execute("DELETE FROM events WHERE at < ?1", params![events_before])?;
            // Unsettled — verified, or failed before anything was sent (what a restart makes
            // of a verification nobody settled) — and expired, or simply left alone: an
            // authorization may be valid for years, and a row nobody touched since `?1` with
            // no live lease serves nobody.
            let expired = "(state = 'verified' OR (state = 'failed' AND tx_hash IS NULL))
                           AND COALESCE(lease_until, 0) < ?2
                           AND ((valid_before IS NOT NULL AND valid_before < ?1)
                                OR updated_at < ?1)";
            tx.cached_execute(
                &format!(
                    "DELETE FROM attempts WHERE ({KEY_COLUMNS}) IN
                       (SELECT {KEY_COLUMNS} FROM settlements WHERE {expired})"
                ),
                params![verified_before, ms],
            )?;
            let unsettled = tx.cached_execute(
                &format!("DELETE FROM settlements WHERE {expired}"),
                params![verified_before, ms],
            )?;
            Ok(PruneReport {
                events: events as u64,
                unsettled: unsettled as u64,
            })
        })
        .await
    }

    pub(crate) async fn count_all_events(&self) -> Result<i64, LedgerError> {
        self.read(|c| c.cached_query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)))
            .await
    }

    /// Rows still in flight (`verified` or `submitted`), oldest first: what a restarted
    /// facilitator must reconcile.
    pub(crate) async fn unfinished(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.read(|c| {
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
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT state, COUNT(*) FROM settlements GROUP BY state ORDER BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Appends an audit event and deletes those more than `max_rows` inserts old.
    pub(crate) async fn record(&self, event: Event<'_>, max_rows: i64) -> Result<(), LedgerError> {
        let owned = OwnedEvent::from(event);
        self.with(move |c| record_event(c, &owned, max_rows)).await
    }

    /// Number of audit events of `kind` with `outcome`.
    pub(crate) async fn count_events(&self, kind: &str, outcome: &str) -> Result<i64, LedgerError> {
        let (kind, outcome) = (kind.to_owned(), outcome.to_owned());
        self.read(move |c| {
            c.cached_query_row(
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
            let changed = c.cached_execute(
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
        self.read(move |c| {
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
            let (failed, replayed): (i64, i64) = c.cached_query_row(
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
            c.cached_execute(
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

/// Runs `f` between `SAVEPOINT` and `RELEASE`; on an error its writes are rolled back, the
/// group's other operations are not affected.
fn run_in_savepoint<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
) -> Result<T, LedgerError> {
    // Prepared once (the statement cache): parsing them again for every operation cost more
    // than running them.
    c.cached_execute("SAVEPOINT op", [])?;
    match f(c) {
        Ok(v) => {
            c.cached_execute("RELEASE op", [])?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(e.into())
        }
    }
}

fn insert_verified_row(c: &Connection, e: &LedgerEntry) -> Result<(), rusqlite::Error> {
    let k = &e.key;
    c.prepare_cached(&format!(
        "INSERT INTO settlements
           ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
            payment_json, created_at, updated_at, attempt, valid_before)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, ?9, ?10, ?10, ?11, ?12)
         ON CONFLICT ({KEY_COLUMNS}) DO NOTHING"
    ))?
    .execute(params![
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
    ])
    .map(|_| ())
}

/// An [`Event`] that can cross to the writer thread.
struct OwnedEvent {
    kind: String,
    network: String,
    scheme: Option<String>,
    payer: Option<String>,
    payment_id: Option<String>,
    outcome: String,
    reason: Option<String>,
    tx_hash: Option<String>,
}

impl From<Event<'_>> for OwnedEvent {
    fn from(e: Event<'_>) -> Self {
        Self {
            kind: e.kind.to_owned(),
            network: e.network.to_owned(),
            scheme: e.scheme.map(str::to_owned),
            payer: e.payer.map(str::to_owned),
            payment_id: e.payment_id.map(str::to_owned),
            outcome: e.outcome.to_owned(),
            reason: e.reason.map(str::to_owned),
            tx_hash: e.tx_hash.map(str::to_owned),
        }
    }
}

/// Appends an audit event and deletes those more than `max_rows` inserts old.
fn record_event(c: &Connection, e: &OwnedEvent, max_rows: i64) -> Result<(), rusqlite::Error> {
    c.prepare_cached(
        "INSERT INTO events
           (at, kind, network, scheme, payer, payment_id, outcome, reason, tx_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        now(),
        e.kind,
        e.network,
        e.scheme,
        e.payer,
        e.payment_id,
        e.outcome,
        e.reason,
        e.tx_hash
    ])?;
    // Ids only grow, so at most `max_rows` events have an id in (id - max_rows, id].
    let id = c.last_insert_rowid();
    c.prepare_cached("DELETE FROM events WHERE id <= ?1")?
        .execute(params![id.saturating_sub(max_rows)])
        .map(|_| ())
}

/// `query_row` and `execute` through the connection's statement cache: the ledger runs the same
/// few statements for every payment, and preparing one costs more than running it.
trait Cached {
    fn cached_query_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error>;

    fn cached_execute<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<usize, rusqlite::Error>;
}

impl Cached for Connection {
    fn cached_query_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_execute<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<usize, rusqlite::Error> {
        self.prepare_cached(sql)?.execute(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_insert(c: &Connection, kind: &str) -> Result<(), rusqlite::Error> {
        c.cached_execute(
            "INSERT INTO events (at, kind, network, outcome) VALUES (0, ?1, 'eip155:1', 'valid')",
            params![kind],
        )
        .map(|_| ())
    }

    fn count(c: &Connection, kind: &str) -> Result<i64, rusqlite::Error> {
        c.cached_query_row(
            "SELECT COUNT(*) FROM events WHERE kind = ?1",
            params![kind],
            |r| r.get(0),
        )
    }

    /// Operations queued together share a transaction, yet one that fails undoes only its own
    /// writes, and every other one is committed and answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_operation_undoes_only_itself_in_its_group() {
        let ledger = SqliteLedger::in_memory().unwrap();
        let mut calls = Vec::new();
        for i in 0..200 {
            let l = ledger.clone();
            calls.push(tokio::spawn(async move {
                if i == 100 {
                    l.with(|c| {
                        event_insert(c, "settle")?;
                        c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                        Ok(())
                    })
                    .await
                    .map(|()| false)
                } else {
                    l.with(|c| event_insert(c, "verify")).await.map(|()| true)
                }
            }));
        }
        let mut failed = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(true) => {}
                Ok(false) => panic!("the failing operation reported success"),
                Err(e) => {
                    assert!(e.to_string().contains("no_such_table"), "{e}");
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, 1);
        assert_eq!(ledger.read(|c| count(c, "verify")).await.unwrap(), 199);
        assert_eq!(ledger.read(|c| count(c, "settle")).await.unwrap(), 0);
    }

    /// A write queued behind (not awaited) is seen by a read queued after it, and survives a
    /// reopen once that read answered.
    #[tokio::test]
    async fn a_read_after_a_write_behind_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        {
            let ledger = SqliteLedger::open(&path).unwrap();
            for i in 0..50 {
                ledger.record_behind(
                    Event {
                        kind: "verify",
                        network: "eip155:1",
                        outcome: if i % 2 == 0 { "valid" } else { "invalid" },
                        ..Event::default()
                    },
                    1_000,
                );
                assert_eq!(
                    ledger.count_events("verify", "valid").await.unwrap(),
                    i / 2 + 1,
                    "after write-behind {i}"
                );
            }
        }
        let reopened = SqliteLedger::open(&path).unwrap();
        assert_eq!(reopened.count_all_events().await.unwrap(), 50);
    }

    /// A group of write-behind rows alone commits without an `fsync` (`synchronous = NORMAL`);
    /// any group with an awaited write commits under `FULL`, also right after such a group.
    #[tokio::test]
    async fn only_groups_nobody_waits_on_skip_the_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("l.db")).unwrap();
        // The mode a write ran under, read inside its own transaction.
        let mode_of_awaited = || {
            ledger.with(|c| {
                event_insert(c, "settle")?;
                c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
            })
        };
        assert_eq!(mode_of_awaited().await.unwrap(), 2, "FULL");
        let (seen, mode) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let seen = seen.clone();
            ledger.write_behind("test row", move |c| {
                event_insert(c, "verify")?;
                let _ = seen.send(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?);
                Ok(())
            });
            ledger.read(|c| count(c, "verify")).await.unwrap();
            assert_eq!(mode.recv().unwrap(), 1, "NORMAL for a write-behind group");
            assert_eq!(
                mode_of_awaited().await.unwrap(),
                2,
                "FULL again when awaited"
            );
        }
        assert_eq!(ledger.read(|c| count(c, "verify")).await.unwrap(), 3);
    }

    /// Many concurrent callers, each answered only once its write is durable: all there after
    /// a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_all_durable_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        {
            let ledger = SqliteLedger::open(&path).unwrap();
            let calls: Vec<_> = (0..300)
                .map(|_| {
                    let l = ledger.clone();
                    tokio::spawn(async move { l.with(|c| event_insert(c, "settle")).await })
                })
                .collect();
            for call in calls {
                call.await.unwrap().unwrap();
            }
        }
        let reopened = SqliteLedger::open(&path).unwrap();
        assert_eq!(reopened.read(|c| count(c, "settle")).await.unwrap(), 300);
    }
}
