//! The settlement ledger: every verification and settlement, durably — in an embedded SQLite
//! file by default, or in PostgreSQL so that several facilitator instances share one ledger.
//!
//! One row per payment, keyed by (network, scheme, asset, payer, payment id) — the identity
//! the scheme itself enforces (for `exact` on EVM, the token's authorization nonce) — moving
//! through `verified → submitted (tx hash) → confirmed | failed`. The `submitted` state is written *before* waiting for the receipt, so a process
//! killed mid-settlement leaves the hash behind for reconciliation. Every call is also appended
//! to an event log for audit.
//!
//! A row also names the **attempt** that owns the payment (an idempotency key or a
//! `payment-identifier` id) with a lease: [`Ledger::reserve`] takes it atomically, so that
//! across every instance sharing the ledger one attempt at a time may use a payment, and only
//! the attempt that settled it is ever told so again. [`Ledger::bind_attempt`] ties each
//! attempt name to the one payment it was first used for.
//!
//! The schema is versioned: opening a ledger applies `tollgate-migrations`' pending versions
//! (adopting a release 0.1.0 ledger as version 1) and refuses one written by a newer binary;
//! see `docs/ledger.md`.
//!
//! Retention ([`Retention`]): the event log is bounded by age and by row count on every
//! insert, and `verified` rows nobody settled go once their authorization has expired (or
//! once they sat untouched for the grace period), so
//! unauthenticated traffic cannot grow the database without bound.

mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::PostgresLedger;
use sqlite::SqliteLedger;

/// The identity of one payment: its network and scheme, and what the scheme names it by
/// ([`tollgate_core::PaymentIdentity`]): asset, payer and the scheme's id (for `exact` on EVM,
/// the EIP-3009 nonce). Built from parsed values, so one payment has one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentKey {
    /// CAIP-2 network.
    pub network: String,
    /// The scheme (`exact`, `upto`, …).
    pub scheme: String,
    /// The asset, canonical (an EVM token address in lower case).
    pub asset: String,
    /// The payer, canonical.
    pub payer: String,
    /// The scheme's id of the payment among the payer's payments of the asset.
    pub id: String,
}

impl PaymentKey {
    /// Builds a key. The scheme canonicalizes asset, payer and id; EVM-style hex is also
    /// lower-cased here so that a scheme forgetting to cannot split one payment in two.
    pub fn new(network: &str, scheme: &str, asset: &str, payer: &str, id: &str) -> Self {
        let hex_lower = |s: &str| {
            if s.starts_with("0x") || s.starts_with("0X") {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        Self {
            network: network.to_owned(),
            scheme: scheme.to_owned(),
            asset: hex_lower(asset),
            payer: hex_lower(payer),
            id: hex_lower(id),
        }
    }
}

/// One confirmed payment of a payer, as the reputation service reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerSettlement {
    /// CAIP-2 network.
    pub network: String,
    /// The asset, canonical.
    pub asset: String,
    /// The payee.
    pub pay_to: String,
    /// Amount in atomic units (decimal).
    pub amount: String,
    /// Unix seconds the payment was first recorded.
    pub created_at: i64,
    /// Unix seconds of its last change (its confirmation).
    pub updated_at: i64,
}

/// What the ledger knows about one payer: its confirmed payments and its refused attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayerHistory {
    /// Every confirmed payment of the payer.
    pub settled: Vec<PayerSettlement>,
    /// Audit events of the payer's payments refused as invalid or failed to settle (replays
    /// excluded), within the event log's retention.
    pub failed: u64,
    /// Audit events of the payer's payments refused because they were already used or in use
    /// by another attempt (`payment_in_use`, `*_already_used`, attempt-key conflicts), within
    /// the event log's retention.
    pub replayed: u64,
}

/// The SQL condition (over `events`) of a refusal that is a replay: the payment was in use,
/// already used, or its attempt key was bound to another payment.
pub(crate) const REPLAYED_EVENT: &str = "(outcome = 'conflict' \
     OR COALESCE(reason, '') = 'payment_in_use' \
     OR COALESCE(reason, '') LIKE '%already\\_used' ESCAPE '\\')";

/// The SQL condition (over `events`) of a refusal or failure that is not a replay.
pub(crate) const FAILED_EVENT: &str = "(outcome IN ('invalid', 'failure') \
     AND COALESCE(reason, '') <> 'payment_in_use' \
     AND COALESCE(reason, '') NOT LIKE '%already\\_used' ESCAPE '\\')";

/// The ledger's spelling of a payer: EVM-style hex in lower case, as [`PaymentKey::new`] writes it.
pub fn canonical_payer(payer: &str) -> String {
    PaymentKey::new("", "", "", payer.trim(), "").payer
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
    /// The attempt that owns the payment (holds its reservation, or settled it): an
    /// idempotency key, a `payment-identifier` id, or an internal name (starting with `~`, so
    /// no caller can present it) for a settlement that came without either.
    pub attempt: Option<String>,
    /// Unix milliseconds until which `attempt`'s reservation holds (read-only: written by
    /// [`Ledger::reserve`] on the ledger's clock; ignored by [`Ledger::put`]).
    pub lease_until: Option<i64>,
    /// The authorization's `validBefore` (Unix seconds, saturated), after which an unsettled
    /// row can be pruned.
    pub valid_before: Option<i64>,
}

/// How long the ledger keeps what unauthenticated traffic can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Audit events older than this are deleted.
    pub events_max_age: Duration,
    /// At most this many audit events are kept (the oldest go first).
    pub events_max_rows: u64,
    /// A `verified` row nobody settled is deleted this long after its authorization expired
    /// (the margin leaves reconciliation time to find a transfer a crashed run may have sent),
    /// or this long after it was last written, whichever comes first, once no reservation
    /// holds it: a payer may sign authorizations valid for years, and valid verifications of
    /// those must not pile up either.
    pub unsettled_grace: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events_max_age: Duration::from_secs(30 * 24 * 3600),
            events_max_rows: 1_000_000,
            unsettled_grace: Duration::from_secs(3600),
        }
    }
}

/// What one [`Ledger::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Audit events deleted for age.
    pub events: u64,
    /// Unsettled rows deleted (with their attempt bindings): `verified`, or `failed` with no
    /// transaction sent.
    pub unsettled: u64,
}

/// The age pass of retention runs every this many recorded events (the count bound is kept
/// on every insert).
const PRUNE_EVERY: u64 = 1024;

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

impl From<tollgate_migrations::MigrationError> for LedgerError {
    fn from(e: tollgate_migrations::MigrationError) -> Self {
        Self(format!("schema migration: {e}"))
    }
}

/// Says what opening the ledger did to its schema (nothing, usually).
pub(crate) fn log_migration(backend: &str, report: &tollgate_migrations::MigrationReport) {
    if report.adopted_baseline || !report.applied.is_empty() {
        tracing::info!(
            backend,
            from = report.from,
            to = report.to,
            adopted_release_ledger = report.adopted_baseline,
            applied = ?report.applied,
            "ledger schema migrated"
        );
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
    /// Scheme, if known.
    pub scheme: Option<&'a str>,
    /// Payer, if known.
    pub payer: Option<&'a str>,
    /// The scheme's payment id, if known.
    pub payment_id: Option<&'a str>,
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
    retention: Retention,
    /// Events recorded by this handle, to run the age pass every [`PRUNE_EVERY`].
    recorded: Arc<AtomicU64>,
}

/// A handle on the ledger's database ([`Ledger::database`]).
#[derive(Clone)]
pub(crate) enum Database {
    /// The SQLite connection (one, shared, used from blocking tasks).
    Sqlite(Arc<std::sync::Mutex<rusqlite::Connection>>),
    /// The PostgreSQL pool.
    Postgres(deadpool_postgres::Pool),
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
        Ok(Self::with_backend(Backend::Sqlite(SqliteLedger::open(
            path,
        )?)))
    }

    /// An in-memory SQLite ledger (tests, embedded use without durability).
    pub fn in_memory() -> Result<Self, LedgerError> {
        Ok(Self::with_backend(Backend::Sqlite(
            SqliteLedger::in_memory()?,
        )))
    }

    /// Connects to the PostgreSQL ledger at `url` (`postgres://user:pass@host:port/db`),
    /// creating its tables if needed. Instances connected to one database share the ledger:
    /// one payment is settled once across all of them.
    pub async fn connect_postgres(url: &str) -> Result<Self, LedgerError> {
        Ok(Self::with_backend(Backend::Postgres(
            PostgresLedger::connect(url).await?,
        )))
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

    fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            retention: Retention::default(),
            recorded: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same ledger with other retention limits.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The retention limits in force.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The database under the ledger, for tables kept beside it in the same schema (the
    /// discovery catalogue, `crate::discovery`).
    pub(crate) fn database(&self) -> Database {
        match &self.backend {
            Backend::Sqlite(l) => Database::Sqlite(l.conn.clone()),
            Backend::Postgres(l) => Database::Postgres(l.pool.clone()),
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

    /// Writes `entry` unless a row for its payment exists (never downgrading or disowning a
    /// payment reserved, in flight or done).
    pub async fn insert_verified(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        dispatch!(self.insert_verified(entry))
    }

    /// [`insert_verified`](Self::insert_verified) for a plain verification, whose answer does
    /// not depend on the row being durable: nothing is refused, reserved or settled on its
    /// strength (a settlement writes its own row), so losing it to a crash loses no record of
    /// money. On SQLite the write is queued in order and committed with the next group without
    /// waiting for its `fsync` (a failure is logged); on PostgreSQL it is awaited as usual.
    pub async fn insert_verified_behind(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => {
                l.insert_verified_behind(entry);
                Ok(())
            }
            Backend::Postgres(l) => l.insert_verified(entry).await,
        }
    }

    /// [`record`](Self::record) of an audit event nobody's answer depends on (a verification),
    /// queued like [`insert_verified_behind`](Self::insert_verified_behind).
    pub async fn record_behind(&self, event: Event<'_>) -> Result<(), LedgerError> {
        let Backend::Sqlite(l) = &self.backend else {
            return self.record(event).await;
        };
        l.record_behind(event, self.events_max_rows());
        self.prune_now_and_then().await;
        Ok(())
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

    /// Appends an audit event, deleting the oldest beyond
    /// [`Retention::events_max_rows`]; every [`PRUNE_EVERY`] events also runs [`prune`](Self::prune).
    pub async fn record(&self, event: Event<'_>) -> Result<(), LedgerError> {
        dispatch!(self.record(event, self.events_max_rows()))?;
        self.prune_now_and_then().await;
        Ok(())
    }

    fn events_max_rows(&self) -> i64 {
        i64::try_from(self.retention.events_max_rows).unwrap_or(i64::MAX)
    }

    /// Counts a recorded event; every [`PRUNE_EVERY`]th runs [`prune`](Self::prune).
    async fn prune_now_and_then(&self) {
        if self.recorded.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            if let Err(e) = self.prune().await {
                tracing::warn!(error = %e, "ledger retention pass failed");
            }
        }
    }

    /// Deletes audit events older than [`Retention::events_max_age`] and unsettled rows —
    /// `verified`, or `failed` with no transaction sent (a restart's reconciliation turns a
    /// verification nobody settled into one) — with their attempt bindings, whose
    /// reservation has lapsed and whose authorization expired, or which were last written,
    /// more than [`Retention::unsettled_grace`] ago. Nothing moved for such a row, so losing
    /// it loses no record of money.
    pub async fn prune(&self) -> Result<PruneReport, LedgerError> {
        let events_before = now().saturating_sub(
            i64::try_from(self.retention.events_max_age.as_secs()).unwrap_or(i64::MAX),
        );
        let verified_before = now().saturating_sub(
            i64::try_from(self.retention.unsettled_grace.as_secs()).unwrap_or(i64::MAX),
        );
        dispatch!(self.prune(events_before, verified_before))
    }

    /// Number of audit events.
    pub async fn count_all_events(&self) -> Result<i64, LedgerError> {
        dispatch!(self.count_all_events())
    }

    /// Atomically makes `attempt` the owner of `entry.key` for `lease`, writing `entry` as a
    /// `verified` row, unless the payment is submitted or confirmed, or another attempt holds
    /// a live lease on it (a `failed` payment is free). Returns whether `attempt` now owns it.
    ///
    /// This is the cross-instance guard of verification: two requests presenting one payment
    /// under different attempts cannot both be told it is theirs.
    pub async fn reserve(
        &self,
        entry: &LedgerEntry,
        attempt: &str,
        lease: Duration,
    ) -> Result<bool, LedgerError> {
        dispatch!(self.reserve(entry, attempt, lease, true))
    }

    /// Like [`reserve`](Self::reserve), but the same attempt cannot renew a live reservation
    /// either: for attempt names a *client* chose (the `payment-identifier` id), which travel
    /// inside the payment and so come with every copy of it. A paywall's own retries carry
    /// its `Idempotency-Key` header instead and go through `reserve`.
    pub async fn reserve_exclusive(
        &self,
        entry: &LedgerEntry,
        attempt: &str,
        lease: Duration,
    ) -> Result<bool, LedgerError> {
        dispatch!(self.reserve(entry, attempt, lease, false))
    }

    /// Ties `attempt` to the payment `key` if it is tied to none yet. Returns the payment it is
    /// tied to (now `key`, or the one it was first used with).
    pub async fn bind_attempt(
        &self,
        attempt: &str,
        key: &PaymentKey,
    ) -> Result<PaymentKey, LedgerError> {
        dispatch!(self.bind_attempt(attempt, key))
    }

    /// The payment `attempt` is tied to, if any.
    pub async fn attempt_binding(&self, attempt: &str) -> Result<Option<PaymentKey>, LedgerError> {
        dispatch!(self.attempt_binding(attempt))
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

    /// The confirmed payments and refused attempts of `payer` (canonicalized with
    /// [`canonical_payer`]): an index range scan on `settlements (payer, state)` and
    /// `events (payer)` (schema version 3), however large the ledger.
    pub async fn payer_history(&self, payer: &str) -> Result<PayerHistory, LedgerError> {
        let payer = canonical_payer(payer);
        dispatch!(self.payer_history(&payer))
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
            key: PaymentKey::new("eip155:1", "exact", "0xAA", "0xBB", "0xCC"),
            state,
            amount: "10".into(),
            pay_to: "0xdd".into(),
            tx_hash: None,
            error_reason: None,
            payment_json: "{}".into(),
            updated_at: 0,
            attempt: None,
            lease_until: None,
            valid_before: None,
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
        let key = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0xcc");
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
        let key = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0xcc");
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
    #[tokio::test]
    async fn reservations_are_exclusive_per_live_attempt_and_end_with_settlement() {
        let l = Ledger::in_memory().unwrap();
        let long = Duration::from_secs(60);
        let row = entry(SettlementState::Verified);
        assert!(l.reserve(&row, "attempt-one-0123456", long).await.unwrap());
        assert!(
            !l.reserve(&row, "attempt-two-0123456", long).await.unwrap(),
            "a live reservation belongs to its attempt"
        );
        assert!(
            l.reserve(&row, "attempt-one-0123456", long).await.unwrap(),
            "the owner renews"
        );
        assert!(
            !l.reserve_exclusive(&row, "attempt-one-0123456", long)
                .await
                .unwrap(),
            "an exclusive reservation is not renewed by the same name while it lives"
        );
        // Keyless verification never takes or clears ownership.
        l.insert_verified(&row).await.unwrap();
        let got = l.get(&row.key).await.unwrap().unwrap();
        assert_eq!(got.attempt.as_deref(), Some("attempt-one-0123456"));
        assert!(got.lease_until.unwrap() > now_millis());
        // A failed payment is free again.
        let mut failed = got.clone();
        failed.state = SettlementState::Failed;
        l.put(&failed).await.unwrap();
        assert!(l.reserve(&row, "attempt-two-0123456", long).await.unwrap());
        // A live lease still excludes a third attempt, whatever lease it asks for.
        assert!(l
            .reserve(&row, "attempt-three-012345", Duration::from_millis(1))
            .await
            .is_ok_and(|won| !won));
        let mut settled = l.get(&row.key).await.unwrap().unwrap();
        settled.state = SettlementState::Submitted;
        l.put(&settled).await.unwrap();
        assert!(
            !l.reserve(&row, "attempt-two-0123456", long).await.unwrap(),
            "nobody reserves a payment in flight, not even its owner"
        );
        settled.state = SettlementState::Confirmed;
        l.put(&settled).await.unwrap();
        let done = l.get(&row.key).await.unwrap().unwrap();
        assert_eq!(done.attempt.as_deref(), Some("attempt-two-0123456"));

        let other = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0xdd");
        let lapsing = LedgerEntry {
            key: other.clone(),
            ..entry(SettlementState::Verified)
        };
        assert!(l
            .reserve(&lapsing, "attempt-one-0123456", Duration::from_millis(1))
            .await
            .unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(l
            .reserve(&lapsing, "attempt-two-0123456", long)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn attempts_bind_to_their_first_payment() {
        let l = Ledger::in_memory().unwrap();
        let a = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0x01");
        let b = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0x02");
        assert_eq!(l.attempt_binding("k-0123456789abcdef").await.unwrap(), None);
        assert_eq!(l.bind_attempt("k-0123456789abcdef", &a).await.unwrap(), a);
        assert_eq!(l.bind_attempt("k-0123456789abcdef", &b).await.unwrap(), a);
        assert_eq!(
            l.attempt_binding("k-0123456789abcdef").await.unwrap(),
            Some(a)
        );
    }

    #[tokio::test]
    async fn events_stay_under_the_row_bound_and_expired_unsettled_rows_go() {
        let l = Ledger::in_memory().unwrap().with_retention(Retention {
            events_max_rows: 100,
            ..Retention::default()
        });
        for _ in 0..2_500 {
            l.record(Event {
                kind: "verify",
                network: "eip155:1",
                outcome: "invalid",
                ..Event::default()
            })
            .await
            .unwrap();
        }
        assert_eq!(l.count_all_events().await.unwrap(), 100);

        let mut expired = entry(SettlementState::Verified);
        expired.valid_before = Some(now() - 7200);
        l.insert_verified(&expired).await.unwrap();
        l.bind_attempt("k-0123456789abcdef", &expired.key)
            .await
            .unwrap();
        let mut live = entry(SettlementState::Verified);
        live.key.id = "0x02".into();
        live.valid_before = Some(now() + 60);
        l.insert_verified(&live).await.unwrap();
        let mut confirmed = entry(SettlementState::Confirmed);
        confirmed.key.id = "0x03".into();
        confirmed.valid_before = Some(now() - 7200);
        l.put(&confirmed).await.unwrap();
        let report = l.prune().await.unwrap();
        assert_eq!(report.unsettled, 1);
        assert!(l.get(&expired.key).await.unwrap().is_none());
        assert_eq!(l.attempt_binding("k-0123456789abcdef").await.unwrap(), None);
        assert!(l.get(&live.key).await.unwrap().is_some());
        assert!(
            l.get(&confirmed.key).await.unwrap().is_some(),
            "settled rows stay"
        );
    }

    /// A ledger file written before attempts existed opens and gains the new columns.
    #[tokio::test]
    async fn an_old_sqlite_ledger_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE settlements (
                    network TEXT NOT NULL, asset TEXT NOT NULL, payer TEXT NOT NULL,
                    nonce TEXT NOT NULL, state TEXT NOT NULL, amount TEXT NOT NULL,
                    pay_to TEXT NOT NULL, tx_hash TEXT, error_reason TEXT,
                    payment_json TEXT NOT NULL, created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL, PRIMARY KEY (network, asset, payer, nonce));
                 INSERT INTO settlements VALUES ('eip155:1', '0xaa', '0xbb', '0xcc', 'confirmed',
                    '10', '0xdd', '0x01', NULL, '{}', 1, 1);",
            )
            .unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        let key = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0xcc");
        let row = l.get(&key).await.unwrap().unwrap();
        assert_eq!(row.state, SettlementState::Confirmed);
        assert_eq!(row.attempt, None);
        assert!(!l
            .reserve(&row, "k-0123456789abcdef", Duration::from_secs(9))
            .await
            .unwrap());
        drop(l);
        Ledger::open(&path).unwrap();
    }

    /// One payment id under two schemes is two payments: rows, claims, attempt bindings and
    /// events keep the scheme, on both backends.
    async fn schemes_are_part_of_the_key(l: &Ledger) {
        let exact = entry(SettlementState::Verified);
        let upto = LedgerEntry {
            key: PaymentKey::new("eip155:1", "upto", "0xaa", "0xbb", "0xcc"),
            ..entry(SettlementState::Verified)
        };
        let long = Duration::from_secs(60);
        assert!(l.reserve(&exact, "attempt-exact-0001", long).await.unwrap());
        assert!(
            l.reserve(&upto, "attempt-upto-00001", long).await.unwrap(),
            "another scheme's payment with the same id is free"
        );
        let mut confirmed = l.get(&upto.key).await.unwrap().unwrap();
        assert_eq!(confirmed.key, upto.key);
        confirmed.state = SettlementState::Confirmed;
        confirmed.tx_hash = Some("0x02".into());
        l.put(&confirmed).await.unwrap();
        assert_eq!(
            l.get(&exact.key).await.unwrap().unwrap().state,
            SettlementState::Verified
        );
        let unfinished = l.unfinished().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].key, exact.key);

        assert!(l.claim(&exact.key, "a", long).await.unwrap());
        assert!(l.claim(&upto.key, "b", long).await.unwrap());
        l.release(&upto.key, "b").await.unwrap();
        assert!(!l.claim(&exact.key, "b", long).await.unwrap());

        assert_eq!(
            l.bind_attempt("k-upto-0123456789", &upto.key)
                .await
                .unwrap(),
            upto.key
        );
        assert_eq!(
            l.attempt_binding("k-upto-0123456789").await.unwrap(),
            Some(upto.key.clone())
        );
        l.record(Event {
            kind: "settle",
            network: "eip155:1",
            scheme: Some("upto"),
            payer: Some("0xbb"),
            payment_id: Some("0xcc"),
            outcome: "success",
            reason: None,
            tx_hash: Some("0x02"),
        })
        .await
        .unwrap();
        assert_eq!(l.count_events("settle", "success").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn schemes_are_part_of_the_key_on_sqlite() {
        schemes_are_part_of_the_key(&Ledger::in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn schemes_are_part_of_the_key_on_postgres() {
        let pg = tollgate_testkit::Postgres::start().unwrap();
        let l = Ledger::connect_postgres(&pg.url()).await.unwrap();
        schemes_are_part_of_the_key(&l).await;
        // A second instance on the migrated database finds nothing to do.
        let again = Ledger::connect_postgres(&pg.url()).await.unwrap();
        assert_eq!(again.count_all_events().await.unwrap(), 1);
    }

    /// A ledger migrated by a newer binary is refused at open, naming both versions.
    #[tokio::test]
    async fn a_ledger_from_a_newer_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        drop(Ledger::open(&path).unwrap());
        let future = tollgate_migrations::latest_version() + 1;
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations VALUES (?1, 'from_the_future', 'x', 0)",
                rusqlite::params![future],
            )
            .unwrap();
        let err = Ledger::open(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("schema version {future}"))
                && err.contains(&format!(
                    "version {}",
                    tollgate_migrations::latest_version()
                )),
            "{err}"
        );
    }
}
