//! The PostgreSQL backend of the ledger: several facilitator instances share one ledger.
//!
//! Claims use the database server's clock, so instances on machines with skewed clocks still
//! agree on when a claim has expired.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

use super::{
    now, Event, LedgerEntry, LedgerError, PayerHistory, PayerSettlement, PaymentKey, PruneReport,
    SettlementState, FAILED_EVENT, REPLAYED_EVENT,
};

/// Connections kept per instance. Settlement holds none while waiting for the chain, so a few
/// serve many concurrent payments.
const POOL_SIZE: usize = 8;

/// The columns of a payment's key, in [`PostgresLedger`]'s parameter order `$1`–`$5` (schema
/// version 2: see `tollgate-migrations`).
const KEY_COLUMNS: &str = "network, scheme, asset, payer, payment_id";

/// `WHERE` clause matching one payment's key as `$1`–`$5`.
const KEY_MATCH: &str =
    "network = $1 AND scheme = $2 AND asset = $3 AND payer = $4 AND payment_id = $5";

/// The columns `row_to_entry` reads, in order.
const ENTRY_COLUMNS: &str =
    "state, amount, pay_to, tx_hash, error_reason, payment_json, updated_at, attempt, lease_until, valid_before";

/// The database server's clock in Unix milliseconds.
const DB_NOW_MILLIS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

#[derive(Clone)]
pub(crate) struct PostgresLedger {
    pub(crate) pool: Pool,
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
        // Replicas starting together queue on the migrations' advisory lock.
        let mut client = pool.get().await?;
        let report = tollgate_migrations::postgres::migrate(&mut client).await?;
        super::log_migration("postgres", &report);
        Ok(Self { pool })
    }

    pub(crate) async fn get(&self, key: &PaymentKey) -> Result<Option<LedgerEntry>, LedgerError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ENTRY_COLUMNS} FROM settlements WHERE {KEY_MATCH}"),
                &[&key.network, &key.scheme, &key.asset, &key.payer, &key.id],
            )
            .await?;
        row.map(|r| row_to_entry(key.clone(), &r, 0)).transpose()
    }

    pub(crate) async fn put(&self, e: &LedgerEntry) -> Result<(), LedgerError> {
        let client = self.pool.get().await?;
        let k = &e.key;
        client
            .execute(
                &format!(
                    "INSERT INTO settlements
                       ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, valid_before)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14)
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET
                       state = excluded.state, amount = excluded.amount, pay_to = excluded.pay_to,
                       tx_hash = excluded.tx_hash, error_reason = excluded.error_reason,
                       payment_json = excluded.payment_json, updated_at = excluded.updated_at,
                       attempt = excluded.attempt,
                       valid_before = COALESCE(excluded.valid_before, settlements.valid_before)"
                ),
                &[
                    &k.network,
                    &k.scheme,
                    &k.asset,
                    &k.payer,
                    &k.id,
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
        let k = &e.key;
        client
            .execute(
                &format!(
                    "INSERT INTO settlements
                       ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, valid_before)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $10, $11, $12)
                     ON CONFLICT ({KEY_COLUMNS}) DO NOTHING"
                ),
                &[
                    &k.network,
                    &k.scheme,
                    &k.asset,
                    &k.payer,
                    &k.id,
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
        let k = &e.key;
        let changed = client
            .execute(
                &format!(
                    "INSERT INTO settlements
                       ({KEY_COLUMNS}, state, amount, pay_to, tx_hash, error_reason,
                        payment_json, created_at, updated_at, attempt, lease_until, valid_before)
                     VALUES ($1, $2, $3, $4, $5, 'verified', $6, $7, NULL, NULL, $8, $9, $9, $10,
                             {DB_NOW_MILLIS} + $11, $12)
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET
                       state = 'verified', amount = excluded.amount, pay_to = excluded.pay_to,
                       error_reason = NULL, payment_json = excluded.payment_json,
                       updated_at = excluded.updated_at, attempt = excluded.attempt,
                       lease_until = excluded.lease_until, valid_before = excluded.valid_before
                     WHERE settlements.state = 'failed'
                        OR (settlements.state = 'verified'
                            AND (settlements.attempt IS NULL
                                 OR ($13 AND settlements.attempt = excluded.attempt)
                                 OR COALESCE(settlements.lease_until, 0) < {DB_NOW_MILLIS}))"
                ),
                &[
                    &k.network,
                    &k.scheme,
                    &k.asset,
                    &k.payer,
                    &k.id,
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
                &format!(
                    "INSERT INTO attempts ({KEY_COLUMNS}, attempt, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (attempt) DO NOTHING"
                ),
                &[
                    &key.network,
                    &key.scheme,
                    &key.asset,
                    &key.payer,
                    &key.id,
                    &attempt,
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
                &format!("SELECT {KEY_COLUMNS} FROM attempts WHERE attempt = $1"),
                &[&attempt],
            )
            .await?;
        row.map(|r| row_to_key(&r, 0)).transpose()
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
                "DELETE FROM attempts WHERE ({KEY_COLUMNS}) IN
                   (SELECT {KEY_COLUMNS} FROM settlements WHERE {expired})"
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
                    "SELECT {KEY_COLUMNS}, {ENTRY_COLUMNS}
                     FROM settlements WHERE state IN ('verified', 'submitted') ORDER BY updated_at"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| row_to_entry(row_to_key(r, 0)?, r, 5))
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
                   INSERT INTO events
                     (at, kind, network, scheme, payer, payment_id, outcome, reason, tx_hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id)
                 DELETE FROM events WHERE id <= (SELECT id FROM ins) - $10",
                &[
                    &now(),
                    &event.kind,
                    &event.network,
                    &event.scheme,
                    &event.payer,
                    &event.payment_id,
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

    /// A payer's confirmed payments and refused attempts (`payer` already canonical).
    pub(crate) async fn payer_history(&self, payer: &str) -> Result<PayerHistory, LedgerError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT network, asset, pay_to, amount, created_at, updated_at
                 FROM settlements WHERE payer = $1 AND state = 'confirmed'",
                &[&payer],
            )
            .await?;
        let settled = rows
            .iter()
            .map(|r| {
                Ok(PayerSettlement {
                    network: r.try_get(0)?,
                    asset: r.try_get(1)?,
                    pay_to: r.try_get(2)?,
                    amount: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    updated_at: r.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let row = client
            .query_one(
                &format!(
                    "SELECT COALESCE(SUM(CASE WHEN {FAILED_EVENT} THEN 1 ELSE 0 END), 0)::bigint,
                            COALESCE(SUM(CASE WHEN {REPLAYED_EVENT} THEN 1 ELSE 0 END), 0)::bigint
                     FROM events WHERE payer = $1"
                ),
                &[&payer],
            )
            .await?;
        let (failed, replayed): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        Ok(PayerHistory {
            settled,
            failed: u64::try_from(failed).unwrap_or(0),
            replayed: u64::try_from(replayed).unwrap_or(0),
        })
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
                    "INSERT INTO claims ({KEY_COLUMNS}, owner, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, {DB_NOW_MILLIS} + $7)
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET
                       owner = excluded.owner, expires_at = excluded.expires_at
                     WHERE claims.expires_at < {DB_NOW_MILLIS} OR claims.owner = excluded.owner"
                ),
                &[
                    &key.network,
                    &key.scheme,
                    &key.asset,
                    &key.payer,
                    &key.id,
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
                &format!("DELETE FROM claims WHERE {KEY_MATCH} AND owner = $6"),
                &[
                    &key.network,
                    &key.scheme,
                    &key.asset,
                    &key.payer,
                    &key.id,
                    &owner,
                ],
            )
            .await?;
        Ok(())
    }
}

/// A key read from [`KEY_COLUMNS`] starting at column `first`.
fn row_to_key(r: &Row, first: usize) -> Result<PaymentKey, LedgerError> {
    Ok(PaymentKey {
        network: r.try_get(first)?,
        scheme: r.try_get(first + 1)?,
        asset: r.try_get(first + 2)?,
        payer: r.try_get(first + 3)?,
        id: r.try_get(first + 4)?,
    })
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
