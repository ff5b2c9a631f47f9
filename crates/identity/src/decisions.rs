//! A durable log of the identity gate's decisions, in SQLite or PostgreSQL.
//!
//! The gate hands every [`Decision`] to a [`DecisionSink`] on the request's path, synchronously.
//! A database write must not hold a paying request up (nor a slow disk or an unreachable
//! PostgreSQL stall the paywall), so [`DecisionLog`] only queues the decision on a **bounded**
//! channel; a background task writes it. When the queue is full the decision is dropped,
//! counted ([`DecisionLogStats::dropped`]) and warned about — the log line the gate already
//! wrote for it stays the record of last resort.
//!
//! The schema is this module's own (`CREATE TABLE IF NOT EXISTS` plus a one-row
//! `identity_decisions_schema` version), not a `tollgate-migrations` track: those migrations
//! version the facilitator's settlement ledger, while a decision log belongs to a seller's
//! gateway and usually lives in a database of its own. A store written by a newer schema is
//! refused rather than written into.
//!
//! The stored columns are exactly the fields of a [`Decision`]; it has no operator-token
//! field, so the token a buyer presents can never reach the store.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;
use tollgate_core::identity::RuleCheck;
use tollgate_proto::Network;
use tollgate_server::{Decision, DecisionResult, DecisionSink};

/// The schema version this module writes.
pub const DECISION_SCHEMA_VERSION: i64 = 1;

/// Default number of decisions queued for the writer before new ones are dropped.
pub const DEFAULT_DECISION_QUEUE: usize = 1024;

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity_decisions_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    payer TEXT NOT NULL,
    network TEXT NOT NULL,
    provider TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    checks TEXT NOT NULL,
    cached INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS identity_decisions_payer ON identity_decisions (payer, at_ms);
";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity_decisions_schema (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS identity_decisions (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    payer TEXT NOT NULL,
    network TEXT NOT NULL,
    provider TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    checks TEXT NOT NULL,
    cached BOOLEAN NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS identity_decisions_payer ON identity_decisions (payer, at_ms);
";

/// Why the decision store failed.
#[derive(Debug, thiserror::Error)]
pub enum DecisionStoreError {
    /// SQLite refused an operation.
    #[error("decision store (SQLite) {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        source: rusqlite::Error,
    },
    /// PostgreSQL refused an operation (or could not be reached).
    #[error("decision store (PostgreSQL) {context}: {source}")]
    Postgres {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The store was written by a newer version of this schema.
    #[error("decision store has schema version {found}, newer than {DECISION_SCHEMA_VERSION}: upgrade Tollgate")]
    NewerSchema {
        /// The version found.
        found: i64,
    },
    /// A stored row cannot be read back as a decision.
    #[error("decision store row {id}: {reason}")]
    BadRow {
        /// The row id.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The blocking SQLite task did not finish.
    #[error("decision store worker stopped: {0}")]
    Worker(String),
}

fn sqlite_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> DecisionStoreError {
    move |source| DecisionStoreError::Sqlite { context, source }
}

fn pg_err(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DecisionStoreError {
    move |source| DecisionStoreError::Postgres { context, source }
}

/// A stored decision with its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    /// The row id (increasing in insertion order).
    pub id: i64,
    /// The decision; `at` has millisecond precision.
    pub decision: Decision,
}

/// Where decisions are kept: a SQLite file or a PostgreSQL database.
#[derive(Clone)]
pub struct DecisionStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    /// rusqlite is blocking: every call runs on the blocking pool, one at a time.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(Arc<tokio_postgres::Client>),
}

impl std::fmt::Debug for DecisionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PostgreSQL URL may hold a password: it is not kept, so it cannot be printed.
        let kind = match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        };
        f.debug_struct("DecisionStore")
            .field("backend", &kind)
            .finish()
    }
}

/// A row's columns, ready for either driver.
struct Row {
    at_ms: i64,
    payer: String,
    network: String,
    provider: String,
    target: String,
    result: &'static str,
    checks: String,
    cached: bool,
    error: Option<String>,
}

impl Row {
    fn of(decision: &Decision) -> Self {
        let at_ms = decision
            .at
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            at_ms,
            payer: decision.payer.clone(),
            network: decision.network.to_string(),
            provider: decision.provider.clone(),
            target: decision.target.clone(),
            result: decision.result.label(),
            // A Vec of plain structs: serializing cannot fail.
            checks: serde_json::to_string(&decision.checks).unwrap_or_else(|_| "[]".into()),
            cached: decision.cached,
            error: decision.error.clone(),
        }
    }
}

/// Columns read back, before they are parsed.
struct RawRow {
    id: i64,
    at_ms: i64,
    payer: String,
    network: String,
    provider: String,
    target: String,
    result: String,
    checks: String,
    cached: bool,
    error: Option<String>,
}

impl RawRow {
    fn parse(self) -> Result<StoredDecision, DecisionStoreError> {
        let id = self.id;
        let bad = |reason: String| DecisionStoreError::BadRow { id, reason };
        let result = match self.result.as_str() {
            "allowed" => DecisionResult::Allowed,
            "refused" => DecisionResult::Refused,
            "unavailable" => DecisionResult::Unavailable,
            "failed_open" => DecisionResult::FailedOpen,
            other => return Err(bad(format!("unknown result {other:?}"))),
        };
        let network = Network::from_str(&self.network)
            .map_err(|e| bad(format!("network {:?}: {e}", self.network)))?;
        let checks: Vec<RuleCheck> =
            serde_json::from_str(&self.checks).map_err(|e| bad(format!("checks: {e}")))?;
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.at_ms).unwrap_or(0));
        Ok(StoredDecision {
            id,
            decision: Decision {
                at,
                payer: self.payer,
                network,
                provider: self.provider,
                target: self.target,
                result,
                checks,
                cached: self.cached,
                error: self.error,
            },
        })
    }
}

const INSERT_SQLITE: &str = "INSERT INTO identity_decisions \
    (at_ms, payer, network, provider, target, result, checks, cached, error) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_POSTGRES: &str = "INSERT INTO identity_decisions \
    (at_ms, payer, network, provider, target, result, checks, cached, error) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const SELECT_RECENT_SQLITE: &str = "SELECT id, at_ms, payer, network, provider, target, result, \
    checks, cached, error FROM identity_decisions ORDER BY id DESC LIMIT ?1";
const SELECT_RECENT_POSTGRES: &str = "SELECT id, at_ms, payer, network, provider, target, \
    result, checks, cached, error FROM identity_decisions ORDER BY id DESC LIMIT $1";

impl DecisionStore {
    /// Opens (creating if needed) a SQLite decision store at `path`.
    pub async fn sqlite(path: impl AsRef<Path>) -> Result<Self, DecisionStoreError> {
        let path = path.as_ref().to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<_, DecisionStoreError> {
            let conn = rusqlite::Connection::open(&path).map_err(sqlite_err("open"))?;
            // Another process (a second gateway) may share the file: wait for its lock.
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(sqlite_err("busy_timeout"))?;
            conn.execute_batch(SQLITE_SCHEMA)
                .map_err(sqlite_err("create schema"))?;
            let tx = conn.unchecked_transaction().map_err(sqlite_err("begin"))?;
            let found: Option<i64> = tx
                .query_row(
                    "SELECT MAX(version) FROM identity_decisions_schema",
                    [],
                    |r| r.get(0),
                )
                .map_err(sqlite_err("read schema version"))?;
            match found {
                Some(v) if v > DECISION_SCHEMA_VERSION => {
                    return Err(DecisionStoreError::NewerSchema { found: v })
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO identity_decisions_schema (version) VALUES (?1)",
                        [DECISION_SCHEMA_VERSION],
                    )
                    .map_err(sqlite_err("write schema version"))?;
                }
            }
            tx.commit().map_err(sqlite_err("commit schema"))?;
            Ok(conn)
        })
        .await
        .map_err(|e| DecisionStoreError::Worker(e.to_string()))??;
        Ok(Self {
            backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
        })
    }

    /// Connects to PostgreSQL at `url` (no TLS: a loopback or private-network database) and
    /// creates the tables if needed.
    pub async fn postgres(url: &str) -> Result<Self, DecisionStoreError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(pg_err("connect"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "identity decision store: PostgreSQL connection closed");
            }
        });
        client
            .batch_execute(POSTGRES_SCHEMA)
            .await
            .map_err(pg_err("create schema"))?;
        // Two gateways starting at once must not both insert the version row.
        client
            .batch_execute(
                "BEGIN; LOCK TABLE identity_decisions_schema IN EXCLUSIVE MODE; \
                 INSERT INTO identity_decisions_schema (version) \
                 SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM identity_decisions_schema); COMMIT;",
            )
            .await
            .map_err(pg_err("write schema version"))?;
        let found: Option<i64> = client
            .query_one("SELECT MAX(version) FROM identity_decisions_schema", &[])
            .await
            .map_err(pg_err("read schema version"))?
            .get(0);
        if let Some(v) = found.filter(|v| *v > DECISION_SCHEMA_VERSION) {
            return Err(DecisionStoreError::NewerSchema { found: v });
        }
        Ok(Self {
            backend: Backend::Postgres(Arc::new(client)),
        })
    }

    /// Writes one decision.
    pub async fn insert(&self, decision: &Decision) -> Result<(), DecisionStoreError> {
        let row = Row::of(decision);
        match &self.backend {
            Backend::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                tokio::task::spawn_blocking(move || -> Result<(), DecisionStoreError> {
                    let conn = conn
                        .lock()
                        .map_err(|_| DecisionStoreError::Worker("SQLite lock poisoned".into()))?;
                    conn.execute(
                        INSERT_SQLITE,
                        rusqlite::params![
                            row.at_ms,
                            row.payer,
                            row.network,
                            row.provider,
                            row.target,
                            row.result,
                            row.checks,
                            row.cached,
                            row.error,
                        ],
                    )
                    .map_err(sqlite_err("insert"))?;
                    Ok(())
                })
                .await
                .map_err(|e| DecisionStoreError::Worker(e.to_string()))?
            }
            Backend::Postgres(client) => {
                client
                    .execute(
                        INSERT_POSTGRES,
                        &[
                            &row.at_ms,
                            &row.payer,
                            &row.network,
                            &row.provider,
                            &row.target,
                            &row.result,
                            &row.checks,
                            &row.cached,
                            &row.error,
                        ],
                    )
                    .await
                    .map_err(pg_err("insert"))?;
                Ok(())
            }
        }
    }

    /// The `limit` most recent decisions, newest first.
    pub async fn recent(&self, limit: u32) -> Result<Vec<StoredDecision>, DecisionStoreError> {
        let raw: Vec<RawRow> = match &self.backend {
            Backend::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                tokio::task::spawn_blocking(move || -> Result<Vec<RawRow>, DecisionStoreError> {
                    let conn = conn
                        .lock()
                        .map_err(|_| DecisionStoreError::Worker("SQLite lock poisoned".into()))?;
                    let mut stmt = conn
                        .prepare(SELECT_RECENT_SQLITE)
                        .map_err(sqlite_err("select"))?;
                    let rows = stmt
                        .query_map([i64::from(limit)], |r| {
                            Ok(RawRow {
                                id: r.get(0)?,
                                at_ms: r.get(1)?,
                                payer: r.get(2)?,
                                network: r.get(3)?,
                                provider: r.get(4)?,
                                target: r.get(5)?,
                                result: r.get(6)?,
                                checks: r.get(7)?,
                                cached: r.get(8)?,
                                error: r.get(9)?,
                            })
                        })
                        .map_err(sqlite_err("select"))?;
                    rows.collect::<Result<Vec<_>, _>>()
                        .map_err(sqlite_err("read row"))
                })
                .await
                .map_err(|e| DecisionStoreError::Worker(e.to_string()))??
            }
            Backend::Postgres(client) => client
                .query(SELECT_RECENT_POSTGRES, &[&i64::from(limit)])
                .await
                .map_err(pg_err("select"))?
                .into_iter()
                .map(|r| -> Result<RawRow, tokio_postgres::Error> {
                    Ok(RawRow {
                        id: r.try_get(0)?,
                        at_ms: r.try_get(1)?,
                        payer: r.try_get(2)?,
                        network: r.try_get(3)?,
                        provider: r.try_get(4)?,
                        target: r.try_get(5)?,
                        result: r.try_get(6)?,
                        checks: r.try_get(7)?,
                        cached: r.try_get(8)?,
                        error: r.try_get(9)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_err("read row"))?,
        };
        raw.into_iter().map(RawRow::parse).collect()
    }
}

/// Counters of a [`DecisionLog`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionLogStats {
    /// Decisions written to the store.
    pub written: u64,
    /// Decisions dropped because the queue was full (or the writer had stopped).
    pub dropped: u64,
    /// Decisions the store refused to write (logged with the store's error).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// A [`DecisionSink`] that queues decisions for a background writer into a [`DecisionStore`],
/// never blocking the request that made them.
///
/// Must be created inside a Tokio runtime (it spawns the writer). The writer stops once every
/// clone of the log is dropped and the queue is drained.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    queue: mpsc::Sender<Decision>,
    counters: Arc<Counters>,
}

impl DecisionLog {
    /// Starts the writer for `store`, with at most `capacity` decisions queued (at least 1).
    pub fn spawn(store: DecisionStore, capacity: usize) -> Self {
        let (queue, mut rx) = mpsc::channel::<Decision>(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let writer_counters = Arc::clone(&counters);
        tokio::spawn(async move {
            while let Some(decision) = rx.recv().await {
                match store.insert(&decision).await {
                    Ok(()) => {
                        writer_counters.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        writer_counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            error = %e,
                            payer = %decision.payer,
                            result = decision.result.label(),
                            "identity decision not stored"
                        );
                    }
                }
            }
        });
        Self { queue, counters }
    }

    /// The counters so far.
    pub fn stats(&self) -> DecisionLogStats {
        DecisionLogStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }
}

impl DecisionSink for DecisionLog {
    fn record(&self, decision: &Decision) {
        if self.queue.try_send(decision.clone()).is_err() {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Warn on the 1st, 2nd, 4th, 8th… drop: visible at once, without a flood of
            // warnings while the store is stuck.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    payer = %decision.payer,
                    result = decision.result.label(),
                    "identity decision log queue full: decision not stored"
                );
            }
        }
    }
}
