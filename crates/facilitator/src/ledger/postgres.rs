//! The PostgreSQL backend of the ledger: several facilitator instances share one ledger.
//!
//! Claims use the database server's clock, so instances on machines with skewed clocks still
//! agree on when a claim has expired.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

use super::{now, Event, LedgerEntry, LedgerError, PaymentKey, PruneReport, SettlementState};

/// Connections kept per instance. Settlement holds none while waiting for the chain, so a few
/// serve many concurrent payments.
const POOL_SIZE: usize = 8;

/// Taken while creating tables, so instances starting together do not race on `CREATE`.
const SCHEMA_LOCK: i64 = 0x7011_6a7e;

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
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (network, asset, payer, nonce)
);
CREATE INDEX IF NOT EXISTS settlements_state ON settlements (state);
CREATE TABLE IF NOT EXISTS events (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('verify', 'settle', 'reconcile')),
    network  TEXT NOT NULL,
    payer    TEXT,
    nonce    TEXT,
    outcome  TEXT NOT NULL,
    reason   TEXT,
    tx_hash  TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (network, asset, payer, nonce)
);
ALTER TABLE settlements ADD COLUMN IF NOT EXISTS attempt TEXT;
ALTER TABLE settlements ADD COLUMN IF NOT EXISTS lease_until BIGINT;
ALTER TABLE settlements ADD COLUMN IF NOT EXISTS valid_before BIGINT;
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS attempts (
    attempt     TEXT NOT NULL PRIMARY KEY,
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_payment ON attempts (network, asset, payer, nonce);
";

/// The columns `row_to_entry` reads, in order.
const ENTRY_COLUMNS: &str =
    "state, amount, pay_to, tx_hash, error_reason, payment_json, updated_at, attempt, lease_until, valid_before";

/// The database server's clock in Unix milliseconds.
const DB_NOW_MILLIS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

#[derive(Clone)]
pub(crate) struct PostgresLedger {
    pool: Pool,
}

impl PostgresLedger {
    pub(crate) async fn connect(url: &str) -> Result<Self, LedgerError> {
        let config: tokio_postgres::Config = url
            .parse()
            // The parser's message may echo the URL, password included: say only what failed.
            .map_err(|_| LedgerError("invalid PostgreSQL URL".into()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| LedgerError(format!("PostgreSQL pool: {e}")))?;
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        Ok(Self { pool })
    }

    pub(crate) async fn get(&self, key: &PaymentKey) -> Result<Option<LedgerEntry>, LedgerError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ENTRY_COLUMNS}
                     FROM settlements WHERE network = $1 AND asset = $2 AND payer = $3 AND nonce = $4"
                ),
                &[&key.network, &key.asset, &key.payer, &key.nonce],
            )
            .await?;
        row.map(|r| row_to_entry(key.clone(), &r, 0)).transpose()
    }

    pub(crate) async fn put(&self, e: &LedgerEntry) -> Result<(), LedgerError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO settlements
                   (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                    payment_json, created_at, updated_at, attempt, valid_before)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)
                 ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                   state = excluded.state, amount = excluded.amount, pay_to = excluded.pay_to,
                   tx_hash = excluded.tx_hash, error_reason = excluded.error_reason,
                   payment_json = excluded.payment_json, updated_at = excluded.updated_at,
                   attempt = excluded.attempt,
                   valid_before = COALESCE(excluded.valid_before, settlements.valid_before)",
                &[
                    &e.key.network,
                    &e.key.asset,
                    &e.key.payer,
                    &e.key.nonce,
                    &e.state.as_str(),
                    &e.amount,
                    &e.pay_to,
                    &e.tx_hash,
                    &e.error_reason,
                    &e.payment_json,
                    &now(),
                    &e.attempt,
                    &e.valid_before,
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn insert_verified(&self, e: &LedgerEntry) -> Result<(), LedgerError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO settlements
                   (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                    payment_json, created_at, updated_at, attempt, valid_before)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $9, $10, $11)
                 ON CONFLICT (network, asset, payer, nonce) DO NOTHING",
                &[
                    &e.key.network,
                    &e.key.asset,
                    &e.key.payer,
                    &e.key.nonce,
                    &e.state.as_str(),
                    &e.amount,
                    &e.pay_to,
                    &e.payment_json,
                    &now(),
                    &e.attempt,
                    &e.valid_before,
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn reserve(
        &self,
        e: &LedgerEntry,
        attempt: &str,
        lease: Duration,
        renew_same: bool,
    ) -> Result<bool, LedgerError> {
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let client = self.pool.get().await?;
        let changed = client
            .execute(
                &format!(
                    "INSERT INTO settlements
                       (network, asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, lease_until, valid_before)
                     VALUES ($1, $2, $3, $4, 'verified', $5, $6, NULL, NULL, $7, $8, $8, $9,
                             {DB_NOW_MILLIS} + $10, $11)
                     ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                       state = 'verified', amount = excluded.amount, pay_to = excluded.pay_to,
                       error_reason = NULL, payment_json = excluded.payment_json,
                       updated_at = excluded.updated_at, attempt = excluded.attempt,
                       lease_until = excluded.lease_until, valid_before = excluded.valid_before
                     WHERE settlements.state = 'failed'
                        OR (settlements.state = 'verified'
                            AND (settlements.attempt IS NULL
                                 OR ($12 AND settlements.attempt = excluded.attempt)
                                 OR COALESCE(settlements.lease_until, 0) < {DB_NOW_MILLIS}))"
                ),
                &[
                    &e.key.network,
                    &e.key.asset,
                    &e.key.payer,
                    &e.key.nonce,
                    &e.amount,
                    &e.pay_to,
                    &e.payment_json,
                    &now(),
                    &attempt,
                    &lease,
                    &e.valid_before,
                    &renew_same,
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    pub(crate) async fn bind_attempt(
        &self,
        attempt: &str,
        key: &PaymentKey,
    ) -> Result<PaymentKey, LedgerError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO attempts (attempt, network, asset, payer, nonce, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (attempt) DO NOTHING",
                &[
                    &attempt,
                    &key.network,
                    &key.asset,
                    &key.payer,
                    &key.nonce,
                    &now(),
                ],
            )
            .await?;
        drop(client);
        self.attempt_binding(attempt)
            .await?
            .ok_or_else(|| LedgerError(format!("attempt {attempt} vanished while binding")))
    }

    pub(crate) async fn attempt_binding(
        &self,
        attempt: &str,
    ) -> Result<Option<PaymentKey>, LedgerError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT network, asset, payer, nonce FROM attempts WHERE attempt = $1",
                &[&attempt],
            )
            .await?;
        row.map(|r| {
            Ok(PaymentKey {
                network: r.try_get(0)?,
                asset: r.try_get(1)?,
                payer: r.try_get(2)?,
                nonce: r.try_get(3)?,
            })
        })
        .transpose()
    }

    pub(crate) async fn prune(
        &self,
        events_before: i64,
        verified_before: i64,
    ) -> Result<PruneReport, LedgerError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let events = tx
            .execute("DELETE FROM events WHERE at < $1", &[&events_before])
            .await?;
        let expired = format!(
            "(state = 'verified' OR (state = 'failed' AND tx_hash IS NULL))
             AND COALESCE(lease_until, 0) < {DB_NOW_MILLIS}
             AND ((valid_before IS NOT NULL AND valid_before < $1) OR updated_at < $1)"
        );
        tx.execute(
            &format!(
                "DELETE FROM attempts WHERE (network, asset, payer, nonce) IN
                   (SELECT network, asset, payer, nonce FROM settlements WHERE {expired})"
            ),
            &[&verified_before],
        )
        .await?;
        let unsettled = tx
            .execute(
                &format!("DELETE FROM settlements WHERE {expired}"),
                &[&verified_before],
            )
            .await?;
        tx.commit().await?;
        Ok(PruneReport { events, unsettled })
    }

    pub(crate) async fn count_all_events(&self) -> Result<i64, LedgerError> {
        let client = self.pool.get().await?;
        let row = client.query_one("SELECT COUNT(*) FROM events", &[]).await?;
        Ok(row.try_get(0)?)
    }

    pub(crate) async fn unfinished(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT network, asset, payer, nonce, {ENTRY_COLUMNS}
                     FROM settlements WHERE state IN ('verified', 'submitted') ORDER BY updated_at"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let key = PaymentKey {
                    network: r.try_get(0)?,
                    asset: r.try_get(1)?,
                    payer: r.try_get(2)?,
                    nonce: r.try_get(3)?,
                };
                row_to_entry(key, r, 4)
            })
            .collect()
    }

    pub(crate) async fn count_by_state(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT state, COUNT(*) FROM settlements GROUP BY state ORDER BY state",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Appends an event and, in the same statement, deletes those more than `max_rows`
    /// inserts old (ids only grow; concurrent inserts may briefly overshoot by their number).
    pub(crate) async fn record(&self, event: Event<'_>, max_rows: i64) -> Result<(), LedgerError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "WITH ins AS (
                   INSERT INTO events (at, kind, network, payer, nonce, outcome, reason, tx_hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id)
                 DELETE FROM events WHERE id <= (SELECT id FROM ins) - $9",
                &[
                    &now(),
                    &event.kind,
                    &event.network,
                    &event.payer,
                    &event.nonce,
                    &event.outcome,
                    &event.reason,
                    &event.tx_hash,
                    &max_rows,
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn count_events(&self, kind: &str, outcome: &str) -> Result<i64, LedgerError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM events WHERE kind = $1 AND outcome = $2",
                &[&kind, &outcome],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    pub(crate) async fn claim(
        &self,
        key: &PaymentKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let client = self.pool.get().await?;
        let changed = client
            .execute(
                &format!(
                    "INSERT INTO claims (network, asset, payer, nonce, owner, expires_at)
                     VALUES ($1, $2, $3, $4, $5, {DB_NOW_MILLIS} + $6)
                     ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
                       owner = excluded.owner, expires_at = excluded.expires_at
                     WHERE claims.expires_at < {DB_NOW_MILLIS} OR claims.owner = excluded.owner"
                ),
                &[
                    &key.network,
                    &key.asset,
                    &key.payer,
                    &key.nonce,
                    &owner,
                    &ttl,
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    pub(crate) async fn release(&self, key: &PaymentKey, owner: &str) -> Result<(), LedgerError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM claims
                 WHERE network = $1 AND asset = $2 AND payer = $3 AND nonce = $4 AND owner = $5",
                &[&key.network, &key.asset, &key.payer, &key.nonce, &owner],
            )
            .await?;
        Ok(())
    }
}

fn row_to_entry(key: PaymentKey, r: &Row, first: usize) -> Result<LedgerEntry, LedgerError> {
    let state: String = r.try_get(first)?;
    let state = SettlementState::parse(&state)
        .ok_or_else(|| LedgerError(format!("unknown settlement state {state:?}")))?;
    Ok(LedgerEntry {
        key,
        state,
        amount: r.try_get(first + 1)?,
        pay_to: r.try_get(first + 2)?,
        tx_hash: r.try_get(first + 3)?,
        error_reason: r.try_get(first + 4)?,
        payment_json: r.try_get(first + 5)?,
        updated_at: r.try_get(first + 6)?,
        attempt: r.try_get(first + 7)?,
        lease_until: r.try_get(first + 8)?,
        valid_before: r.try_get(first + 9)?,
    })
}
