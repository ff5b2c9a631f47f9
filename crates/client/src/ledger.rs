//! The spend ledger: every payment attempt, in SQLite, and the budget arithmetic over it.
//!
//! Budgets are derived from the ledger, not kept in memory, so they survive restarts. A
//! payment first *reserves* its amount in one transaction that also checks every budget, so
//! parallel requests can never overspend; a payment the server rejects releases its
//! reservation.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use tollgate_proto::money::format_atomic;
use tollgate_proto::U256;

use crate::policy::{Priced, Refusal, SpendingPolicy};

/// The status of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendStatus {
    /// Amount held against the budgets while the payment is in flight.
    Reserved,
    /// Paid and settled.
    Paid,
    /// Signed or sent but not settled; nothing was spent.
    Failed,
    /// Refused by the policy before signing.
    Refused,
}

impl SpendStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Refused => "refused",
        }
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRecord {
    /// Row id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// HTTP method.
    pub method: String,
    /// URL paid for.
    pub url: String,
    /// Recipient.
    pub payee: String,
    /// Network.
    pub network: String,
    /// Asset.
    pub asset: String,
    /// Asset symbol.
    pub symbol: String,
    /// Amount in atomic units.
    pub amount: String,
    /// Amount in human units.
    pub display_amount: String,
    /// Status (`reserved`, `paid`, `failed`, `refused`).
    pub status: String,
    /// Settlement transaction, when paid.
    pub tx_hash: Option<String>,
    /// Why it failed or was refused.
    pub reason: Option<String>,
}

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
#[error("spend ledger error: {0}")]
pub struct LedgerError(String);

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// The ledger. Cheap to clone.
#[derive(Clone)]
pub struct SpendLedger {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SpendLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendLedger").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spends (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    method    TEXT NOT NULL,
    url       TEXT NOT NULL,
    payee     TEXT NOT NULL,
    network   TEXT NOT NULL,
    asset     TEXT NOT NULL,
    symbol    TEXT NOT NULL,
    amount    TEXT NOT NULL,
    decimals  INTEGER NOT NULL,
    scaled    TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('reserved', 'paid', 'failed', 'refused')),
    tx_hash   TEXT,
    reason    TEXT
);
CREATE INDEX IF NOT EXISTS spends_symbol_at ON spends (symbol, at);
";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What the request was, for the record.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL.
    pub url: &'a str,
}

impl SpendLedger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::init(Connection::open(path)?)
    }

    /// An in-memory ledger (budgets last as long as the process).
    pub fn in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, LedgerError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks every budget of `policy` and reserves `priced`'s amount, atomically: two
    /// callers can never both fit in the last of a budget. Refusals are recorded too.
    ///
    /// Returns the reservation id, or the budget that refused.
    pub fn reserve(
        &self,
        policy: &SpendingPolicy,
        priced: &Priced,
        attempt: &Attempt<'_>,
    ) -> Result<Result<i64, Refusal>, LedgerError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let price = priced.scaled();
        let symbol = &priced.asset.symbol;
        let mut refusal = None;
        for (cap, window, budget_text) in policy.budgets_for(symbol) {
            let since = window.map(|w| at - w.as_secs() as i64).unwrap_or(i64::MIN);
            let mut stmt = tx.prepare_cached(
                "SELECT scaled FROM spends
                 WHERE symbol = ?1 AND status IN ('reserved', 'paid') AND at >= ?2",
            )?;
            let rows = stmt.query_map(params![symbol, since], |r| r.get::<_, String>(0))?;
            let mut spent = U256::ZERO;
            for row in rows {
                let v: U256 = row?.parse().unwrap_or(U256::MAX);
                spent = spent.saturating_add(v);
            }
            if spent.saturating_add(price) > cap {
                refusal = Some(Refusal::OverBudget {
                    symbol: symbol.clone(),
                    price: format_atomic(priced.requirements.amount.get(), priced.asset.decimals),
                    budget: budget_text,
                    spent: format_atomic(spent, 18),
                    window: window
                        .map(|w| format!("{} s", w.as_secs()))
                        .unwrap_or_else(|| "total".into()),
                });
                break;
            }
        }
        let (status, reason) = match &refusal {
            Some(r) => (SpendStatus::Refused, Some(r.to_string())),
            None => (SpendStatus::Reserved, None),
        };
        let r = &priced.requirements;
        tx.execute(
            "INSERT INTO spends (at, method, url, payee, network, asset, symbol, amount, decimals,
                                 scaled, status, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                at,
                attempt.method,
                attempt.url,
                r.pay_to,
                r.network.to_string(),
                r.asset,
                symbol,
                r.amount.to_string(),
                priced.asset.decimals,
                price.to_string(),
                status.as_str(),
                reason
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(match refusal {
            Some(r) => Err(r),
            None => Ok(id),
        })
    }

    /// Marks a reservation paid.
    pub fn mark_paid(&self, id: i64, tx_hash: &str) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'paid', tx_hash = ?2, reason = NULL WHERE id = ?1",
            params![id, tx_hash],
        )?;
        Ok(())
    }

    /// Releases a reservation: the payment did not go through.
    pub fn release(&self, id: i64, reason: &str) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'failed', reason = ?2 WHERE id = ?1 AND status = 'reserved'",
            params![id, reason],
        )?;
        Ok(())
    }

    /// Records a refusal that happened before any reservation (e.g. per-request maximum).
    pub fn record_refusal(
        &self,
        attempt: &Attempt<'_>,
        refusal: &Refusal,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "INSERT INTO spends (at, method, url, payee, network, asset, symbol, amount, decimals,
                                 scaled, status, reason)
             VALUES (?1, ?2, ?3, '', '', '', '', '0', 0, '0', 'refused', ?4)",
            params![now(), attempt.method, attempt.url, refusal.to_string()],
        )?;
        Ok(())
    }

    /// The most recent `limit` records, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<SpendRecord>, LedgerError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, at, method, url, payee, network, asset, symbol, amount, decimals, status,
                    tx_hash, reason
             FROM spends ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            let amount: String = r.get(8)?;
            let decimals: u8 = r.get(9)?;
            let display_amount = amount
                .parse::<U256>()
                .map(|a| format_atomic(a, decimals))
                .unwrap_or_default();
            Ok(SpendRecord {
                id: r.get(0)?,
                at: r.get(1)?,
                method: r.get(2)?,
                url: r.get(3)?,
                payee: r.get(4)?,
                network: r.get(5)?,
                asset: r.get(6)?,
                symbol: r.get(7)?,
                amount,
                display_amount,
                status: r.get(10)?,
                tx_hash: r.get(11)?,
                reason: r.get(12)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(Into::into)
    }

    /// How many records have `status`.
    pub fn count(&self, status: SpendStatus) -> Result<i64, LedgerError> {
        Ok(self.lock().query_row(
            "SELECT COUNT(*) FROM spends WHERE status = ?1",
            params![status.as_str()],
            |r| r.get(0),
        )?)
    }
}
