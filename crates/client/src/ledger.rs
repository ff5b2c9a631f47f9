//! The spend ledger: every payment attempt, in SQLite, and the budget arithmetic over it.
//!
//! Budgets are derived from the ledger, not kept in memory, so they survive restarts. A
//! payment first *reserves* its amount in one transaction that also checks every budget, so
//! parallel requests can never overspend.
//!
//! Once signed, an authorization may move money whatever the seller answers, so only two
//! outcomes settle a reservation at once: a receipt (→ `paid`) or a rejection that proves the
//! authorization unusable (→ `failed`, released). Anything else — a `5xx`, a timeout, a dropped
//! connection, a `402 settlement_pending`, a `200` without a readable receipt — leaves it
//! `pending`: still held against every budget, with what is needed to ask the chain later (the
//! scheme's authorization handle: network, asset, payer, nonce, `validBefore`).
//! Reconciliation ([`crate::X402Middleware::reconcile`]) then moves it to `paid` when the chain
//! shows the authorization used, or releases it once the authorization can no longer be used.
//!
//! A metered payment (the `upto` scheme: the buyer signs a maximum, the seller charges what
//! the work cost) reserves its **maximum**; the receipt's `amount` then says what was charged,
//! and the row keeps both (`amount` the authorised maximum, `charged` the charge) while the
//! budgets count the charge from then on — the unused part is released. A receipt stating more
//! than the maximum is not believed (the signature cannot move more): the maximum stays counted.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use tollgate_proto::money::format_atomic;
use tollgate_proto::{PaymentRequirements, U256};

use crate::policy::{Priced, Refusal, SpendingPolicy};
use crate::signer::AuthorizationHandle;

/// The status of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendStatus {
    /// Amount held against the budgets while the payment is in flight.
    Reserved,
    /// Sent, outcome unknown: the authorization may have been used. Held against the budgets
    /// until reconciliation proves it used (→ `Paid`) or unusable (→ `Failed`).
    Pending,
    /// Paid and settled.
    Paid,
    /// Signed or sent but not settled; nothing was spent.
    Failed,
    /// Refused by the policy before signing.
    Refused,
}

impl SpendStatus {
    /// The status as stored (`reserved`, `pending`, `paid`, `failed`, `refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Pending => "pending",
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
    /// Decimals of the asset's atomic unit.
    pub decimals: u8,
    /// Amount in atomic units.
    pub amount: String,
    /// Amount in human units.
    pub display_amount: String,
    /// What the seller's receipt says was charged, in atomic units, when it differs from or
    /// qualifies `amount` (metered payments: `amount` is the authorised maximum). `None`
    /// when no receipt stated it.
    pub charged: Option<String>,
    /// Status (`reserved`, `pending`, `paid`, `failed`, `refused`).
    pub status: String,
    /// Settlement transaction, when paid and known.
    pub tx_hash: Option<String>,
    /// Why it failed, was refused, is pending, or how it was resolved.
    pub reason: Option<String>,
    /// The payer that signed, once signed.
    pub payer: Option<String>,
    /// The scheme's identity of the signed authorization (EIP-3009: the nonce), once signed.
    pub authorization: Option<String>,
    /// Unix seconds from which the authorization can never be used, once signed.
    pub valid_before: Option<u64>,
    /// The `payment-identifier` sent with the payment, if the seller offered the extension.
    pub payment_id: Option<String>,
    /// `None` for a one-off payment; for a payment channel `deposit` (`amount` is the money
    /// put in), `voucher` (a request paid from a deposit: `amount` its price, counted as
    /// nothing) or `refund` (`amount` the money back, counted negatively).
    pub kind: Option<String>,
}

/// A payment channel this ledger paid through.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The session key (scheme, network, channel id).
    pub key: String,
    /// Network.
    pub network: String,
    /// The seller.
    pub payee: String,
    /// The token.
    pub asset: String,
    /// The scheme's state (for a channel: config, id, charged, balance).
    pub state: serde_json::Value,
    /// Unix seconds of the last change.
    pub updated_at: i64,
    /// Deposited into it, in atomic units (paid or pending deposits).
    pub deposited: u128,
    /// Refunded from it, in atomic units (as credited).
    pub refunded: u128,
}

/// The sum of a comma-separated list of atomic amounts (SQLite's `group_concat`).
fn sum_list(list: Option<&str>) -> u128 {
    list.unwrap_or_default()
        .split(',')
        .filter_map(|a| a.trim().parse::<u128>().ok())
        .fold(0u128, u128::saturating_add)
}

/// What rows of `symbol` at or after `since` count against a budget, on the 18-decimal scale:
/// payments and deposits reserved, pending or paid, less refunds.
fn spent_since(
    tx: &rusqlite::Transaction<'_>,
    symbol: &str,
    since: i64,
) -> Result<U256, LedgerError> {
    let mut stmt = tx.prepare_cached(
        "SELECT scaled, kind FROM spends
         WHERE symbol = ?1 AND status IN ('reserved', 'pending', 'paid') AND at >= ?2",
    )?;
    let rows = stmt.query_map(params![symbol, since], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    let (mut spent, mut back) = (U256::ZERO, U256::ZERO);
    for row in rows {
        let (scaled, kind) = row?;
        let v: U256 = scaled.parse().unwrap_or(U256::MAX);
        if kind.as_deref() == Some("refund") {
            back = back.saturating_add(v);
        } else {
            spent = spent.saturating_add(v);
        }
    }
    Ok(spent.saturating_sub(back))
}

/// A reservation whose outcome is not known yet, with what reconciliation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Row id.
    pub id: i64,
    /// `Reserved` (an in-flight attempt left behind, e.g. by a crash) or `Pending`.
    pub status: SpendStatus,
    /// The signed authorization.
    pub authorization: AuthorizationHandle,
}

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
#[error("spend ledger error: {0}")]
pub struct LedgerError(String);

impl LedgerError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

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

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 3;

/// Version 1: version 0 plus the `pending` status and the authorization handle.
const CREATE_TABLE: &str = "
CREATE TABLE spends (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    method       TEXT NOT NULL,
    url          TEXT NOT NULL,
    payee        TEXT NOT NULL,
    network      TEXT NOT NULL,
    asset        TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    amount       TEXT NOT NULL,
    decimals     INTEGER NOT NULL,
    scaled       TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('reserved', 'pending', 'paid', 'failed', 'refused')),
    tx_hash      TEXT,
    reason       TEXT,
    scheme       TEXT,
    payer        TEXT,
    auth_id      TEXT,
    valid_before INTEGER,
    payment_id   TEXT,
    charged      TEXT,
    kind         TEXT,
    session      TEXT
);
";

/// Version 3: payment channels. A row's `kind` is `NULL` for a one-off payment, `deposit` (the
/// money put into a channel: counted), `voucher` (a request paid from a deposit: counted as
/// nothing, the deposit was) or `refund` (money a channel returned: counted negatively), with
/// the channel's `session` key; `sessions` keeps each channel's state between processes.
const CREATE_SESSIONS: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    key        TEXT PRIMARY KEY,
    network    TEXT NOT NULL,
    payee      TEXT NOT NULL,
    asset      TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spends_session ON spends (session) WHERE session IS NOT NULL;
";

const CREATE_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS spends_symbol_at ON spends (symbol, at);
CREATE INDEX IF NOT EXISTS spends_open ON spends (status) WHERE status IN ('reserved', 'pending');
";

/// The columns version 0 had, copied as they are by the migration.
const V0_COLUMNS: &str =
    "id, at, method, url, payee, network, asset, symbol, amount, decimals, scaled, status, tx_hash, reason";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Brings the database to [`SCHEMA_VERSION`], in one immediate transaction so that two
/// processes opening the same file at once migrate it once.
fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError(format!(
            "the spend ledger was written by a newer Tollgate (schema {version}, this one knows {SCHEMA_VERSION})"
        )));
    }
    if version == 1 || version == 2 {
        if version == 1 {
            // Version 2 adds the charge of metered payments; existing rows charged their amount.
            tx.execute_batch("ALTER TABLE spends ADD COLUMN charged TEXT;")?;
        }
        // Version 3 adds channels; every existing row is a one-off payment.
        tx.execute_batch(
            "ALTER TABLE spends ADD COLUMN kind TEXT;
             ALTER TABLE spends ADD COLUMN session TEXT;",
        )?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    } else if version < SCHEMA_VERSION {
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spends')",
            [],
            |r| r.get(0),
        )?;
        if exists {
            // Version 0 forbade the `pending` status in a CHECK constraint, which SQLite cannot
            // alter: copy the rows into a new table. The index moves with the renamed table and
            // goes with it, so indexes are created after.
            tx.execute_batch("ALTER TABLE spends RENAME TO spends_v0;")?;
            tx.execute_batch(CREATE_TABLE)?;
            tx.execute_batch(&format!(
                "INSERT INTO spends ({V0_COLUMNS}) SELECT {V0_COLUMNS} FROM spends_v0;
                 DROP TABLE spends_v0;"
            ))?;
        } else {
            tx.execute_batch(CREATE_TABLE)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.execute_batch(CREATE_INDEXES)?;
    tx.execute_batch(CREATE_SESSIONS)?;
    tx.commit()?;
    Ok(())
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

    fn init(mut conn: Connection) -> Result<Self, LedgerError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
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
        self.reserve_kind(policy, priced, attempt, None)
    }

    /// Reserves the payment of a request through the channel `session`: a deposit of
    /// `deposit` atomic units is checked against every budget and counted like a payment; a
    /// request the channel already covers (`None`) is recorded at its price but counts as
    /// nothing — its money was counted when it was deposited.
    pub fn reserve_session(
        &self,
        policy: &SpendingPolicy,
        priced: &Priced,
        attempt: &Attempt<'_>,
        session: &str,
        deposit: Option<u128>,
    ) -> Result<Result<i64, Refusal>, LedgerError> {
        self.reserve_kind(policy, priced, attempt, Some((session, deposit)))
    }

    fn reserve_kind(
        &self,
        policy: &SpendingPolicy,
        priced: &Priced,
        attempt: &Attempt<'_>,
        session: Option<(&str, Option<u128>)>,
    ) -> Result<Result<i64, Refusal>, LedgerError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let decimals = priced.asset.decimals;
        // What the row records and what it counts against the budgets.
        let (amount, counted, kind) = match session {
            None => (priced.requirements.amount.get(), priced.scaled(), None),
            Some((_, Some(deposit))) => {
                let deposit = U256::from(deposit);
                (
                    deposit,
                    crate::policy::scale(deposit, decimals),
                    Some("deposit"),
                )
            }
            Some((_, None)) => (
                priced.requirements.amount.get(),
                U256::ZERO,
                Some("voucher"),
            ),
        };
        let symbol = &priced.asset.symbol;
        let mut refusal = None;
        for (cap, window, budget_text) in policy.budgets_for(symbol) {
            let since = window.map(|w| at - w.as_secs() as i64).unwrap_or(i64::MIN);
            let spent = spent_since(&tx, symbol, since)?;
            if spent.saturating_add(counted) > cap {
                refusal = Some(Refusal::OverBudget {
                    symbol: symbol.clone(),
                    price: format_atomic(amount, decimals),
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
                                 scaled, status, reason, kind, session)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                at,
                attempt.method,
                attempt.url,
                r.pay_to,
                r.network.to_string(),
                r.asset,
                symbol,
                amount.to_string(),
                decimals,
                counted.to_string(),
                status.as_str(),
                reason,
                kind,
                session.map(|(key, _)| key)
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(match refusal {
            Some(r) => Err(r),
            None => Ok(id),
        })
    }

    /// What every budget of `policy` for `symbol` still allows right now, in `decimals`-decimal
    /// atomic units (the smallest room of them; `None` when no budget applies). A hint for
    /// sizing a deposit: the reservation itself checks again, atomically.
    pub fn budget_room(
        &self,
        policy: &SpendingPolicy,
        symbol: &str,
        decimals: u8,
    ) -> Result<Option<U256>, LedgerError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let mut room: Option<U256> = None;
        for (cap, window, _) in policy.budgets_for(symbol) {
            let since = window.map(|w| at - w.as_secs() as i64).unwrap_or(i64::MIN);
            let left = cap.saturating_sub(spent_since(&tx, symbol, since)?);
            room = Some(room.map_or(left, |r| r.min(left)));
        }
        let unit = U256::from(10u8).pow(U256::from(18u8.saturating_sub(decimals)));
        Ok(room.map(|r| r / unit))
    }

    /// The stored state of the channel `key`, if this ledger has paid through it.
    pub fn session_state(&self, key: &str) -> Result<Option<serde_json::Value>, LedgerError> {
        let text: Option<String> = self
            .lock()
            .query_row(
                "SELECT state FROM sessions WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| LedgerError(format!("the state of session {key} is unreadable: {e}")))
        })
        .transpose()
    }

    /// Stores the state of the channel `key` (paid under `requirements`).
    pub fn save_session(
        &self,
        key: &str,
        requirements: &PaymentRequirements,
        state: &serde_json::Value,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "INSERT INTO sessions (key, network, payee, asset, state, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                                             updated_at = excluded.updated_at",
            params![
                key,
                requirements.network.to_string(),
                requirements.pay_to,
                requirements.asset,
                state.to_string(),
                now()
            ],
        )?;
        Ok(())
    }

    /// The channels this ledger has paid through, newest first.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, LedgerError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT s.key, s.network, s.payee, s.asset, s.state, s.updated_at,
                    (SELECT group_concat(amount, ',') FROM spends
                      WHERE session = s.key AND kind = 'deposit' AND status IN ('paid', 'pending')),
                    (SELECT group_concat(amount, ',') FROM spends
                      WHERE session = s.key AND kind = 'refund' AND status = 'paid')
             FROM sessions s ORDER BY s.updated_at DESC, s.key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, network, payee, asset, state, updated_at, deposits, refunds) = row?;
            out.push(SessionRecord {
                key,
                network,
                payee,
                asset,
                state: serde_json::from_str(&state).unwrap_or(serde_json::Value::Null),
                updated_at,
                deposited: sum_list(deposits.as_deref()),
                refunded: sum_list(refunds.as_deref()),
            });
        }
        Ok(out)
    }

    /// Marks a channel payment paid: `tx_hash` (a deposit's transaction; empty for a voucher)
    /// and the request's `charged` amount, for the record. What it counts against the budgets
    /// does not change (the deposit; nothing for a voucher).
    pub fn mark_session_paid(
        &self,
        id: i64,
        tx_hash: &str,
        charged: u128,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'paid', tx_hash = ?2, reason = NULL, charged = ?3
             WHERE id = ?1",
            params![id, tx_hash, charged.to_string()],
        )?;
        Ok(())
    }

    /// Records a channel's refund of `refunded` atomic units (transaction `tx_hash`) as money
    /// back under every budget, dated like the channel's last deposit so that it frees the
    /// window that deposit was counted in. Credits at most what this ledger deposited into the
    /// channel and has not had back: a seller's receipt overstating a refund frees nothing
    /// extra. Returns the row and the amount credited.
    #[allow(clippy::too_many_arguments)]
    pub fn record_refund(
        &self,
        session: &str,
        requirements: &PaymentRequirements,
        asset: &crate::policy::AssetInfo,
        attempt: &Attempt<'_>,
        refunded: u128,
        tx_hash: &str,
    ) -> Result<(i64, u128), LedgerError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let sum = |kind: &str, statuses: &str| -> Result<(u128, Option<i64>), LedgerError> {
            let (list, last): (Option<String>, Option<i64>) = tx.query_row(
                &format!(
                    "SELECT group_concat(amount, ','), MAX(at) FROM spends
                     WHERE session = ?1 AND kind = ?2 AND status IN ({statuses})"
                ),
                params![session, kind],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok((sum_list(list.as_deref()), last))
        };
        let (deposited, last_deposit) = sum("deposit", "'paid', 'pending'")?;
        let (returned, _) = sum("refund", "'paid'")?;
        let credit = refunded.min(deposited.saturating_sub(returned));
        if credit < refunded {
            tracing::warn!(session, refunded, credit, "a refund above what was deposited and not yet returned: crediting the remainder only");
        }
        let credit_u = U256::from(credit);
        tx.execute(
            "INSERT INTO spends (at, method, url, payee, network, asset, symbol, amount, decimals,
                                 scaled, status, tx_hash, reason, kind, session, charged)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'paid', ?11, ?12, 'refund', ?13, ?14)",
            params![
                last_deposit.unwrap_or_else(now),
                attempt.method,
                attempt.url,
                requirements.pay_to,
                requirements.network.to_string(),
                requirements.asset,
                asset.symbol,
                credit.to_string(),
                asset.decimals,
                crate::policy::scale(credit_u, asset.decimals).to_string(),
                tx_hash,
                format!("refund of {refunded} from the channel"),
                session,
                refunded.to_string()
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok((id, credit))
    }

    /// Records what was signed for reservation `id`: the authorization's handle and the
    /// `payment-identifier` sent with it. Done before the payment leaves the process, so a
    /// crash after sending still leaves enough behind to reconcile.
    pub fn attach_authorization(
        &self,
        id: i64,
        authorization: &AuthorizationHandle,
        payment_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET scheme = ?2, payer = ?3, auth_id = ?4, valid_before = ?5,
                               payment_id = ?6
             WHERE id = ?1",
            params![
                id,
                authorization.scheme,
                authorization.payer,
                authorization.id,
                clamp_i64(authorization.valid_before),
                payment_id
            ],
        )?;
        Ok(())
    }

    /// Marks a reservation paid (a receipt was received).
    pub fn mark_paid(&self, id: i64, tx_hash: &str) -> Result<(), LedgerError> {
        self.mark_paid_charged(id, tx_hash, None)
    }

    /// Marks a reservation paid with the charge the receipt states (metered payments): the
    /// budgets count `charged` instead of the reserved maximum from now on. A charge above the
    /// reserved amount is kept as a record but not counted (the signed maximum bounds what can
    /// move); `None` counts the reserved amount.
    pub fn mark_paid_charged(
        &self,
        id: i64,
        tx_hash: &str,
        charged: Option<U256>,
    ) -> Result<(), LedgerError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE spends SET status = 'paid', tx_hash = ?2, reason = NULL WHERE id = ?1",
            params![id, tx_hash],
        )?;
        if let Some(charged) = charged {
            let (amount, decimals): (String, u8) = tx.query_row(
                "SELECT amount, decimals FROM spends WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let reserved: U256 = amount.parse().unwrap_or(U256::MAX);
            if charged < reserved {
                tx.execute(
                    "UPDATE spends SET charged = ?2, scaled = ?3 WHERE id = ?1",
                    params![
                        id,
                        charged.to_string(),
                        crate::policy::scale(charged, decimals).to_string()
                    ],
                )?;
            } else {
                if charged > reserved {
                    tracing::warn!(id, %charged, %reserved, "the receipt states a charge above the authorised maximum; counting the maximum");
                }
                tx.execute(
                    "UPDATE spends SET charged = ?2 WHERE id = ?1",
                    params![id, charged.to_string()],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Releases a reservation: the payment did not go through, and nothing can move it now
    /// (never signed, or refused in a way that proves the authorization unusable).
    pub fn release(&self, id: i64, reason: &str) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'failed', reason = ?2 WHERE id = ?1 AND status = 'reserved'",
            params![id, reason],
        )?;
        Ok(())
    }

    /// Marks an in-flight reservation `pending`: the payment was sent and the outcome is
    /// unknown, so the amount stays held until reconciliation.
    pub fn mark_pending(&self, id: i64, reason: &str) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'pending', reason = ?2 WHERE id = ?1 AND status = 'reserved'",
            params![id, reason],
        )?;
        Ok(())
    }

    /// Reservations that reconciliation should look at, at Unix time `now`: every `pending`
    /// row, and every `reserved` row whose authorization expired more than `grace` seconds ago
    /// (an attempt left in flight by a process that died after signing). Rows never signed have
    /// no authorization and are not returned.
    pub fn unresolved(&self, now: u64, grace: u64) -> Result<Vec<Unresolved>, LedgerError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, status, scheme, network, asset, payer, auth_id, valid_before FROM spends
             WHERE auth_id IS NOT NULL AND valid_before IS NOT NULL
               AND (status = 'pending' OR (status = 'reserved' AND valid_before <= ?1))
             ORDER BY id",
        )?;
        let stale_before = clamp_i64(now.saturating_sub(grace));
        let rows = stmt.query_map(params![stale_before], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, status, scheme, network, asset, payer, auth_id, valid_before) = row?;
            let status = if status == "pending" {
                SpendStatus::Pending
            } else {
                SpendStatus::Reserved
            };
            // A row that no longer parses stays held: releasing what cannot be checked would be
            // the unsafe direction.
            let Ok(network) = network.parse() else {
                tracing::warn!(id, %network, "spend ledger: unreadable network on a held row");
                continue;
            };
            out.push(Unresolved {
                id,
                status,
                authorization: AuthorizationHandle {
                    scheme: scheme.unwrap_or_default(),
                    network,
                    asset,
                    payer: payer.unwrap_or_default(),
                    id: auth_id,
                    valid_before: u64::try_from(valid_before).unwrap_or(0),
                },
            });
        }
        Ok(out)
    }

    /// Reconciliation found the authorization used: the reservation is spent.
    pub fn resolve_used(&self, id: i64, reason: &str) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'paid', reason = ?2
             WHERE id = ?1 AND status IN ('reserved', 'pending')",
            params![id, reason],
        )?;
        Ok(())
    }

    /// Reconciliation found the authorization unusable for good: the reservation is released.
    pub fn resolve_expired(&self, id: i64, reason: &str) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE spends SET status = 'failed', reason = ?2
             WHERE id = ?1 AND status IN ('reserved', 'pending')",
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
                    tx_hash, reason, payer, auth_id, valid_before, payment_id, charged, kind
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
                decimals,
                amount,
                display_amount,
                charged: r.get(17)?,
                status: r.get(10)?,
                tx_hash: r.get(11)?,
                reason: r.get(12)?,
                payer: r.get(13)?,
                authorization: r.get(14)?,
                valid_before: r
                    .get::<_, Option<i64>>(15)?
                    .map(|v| u64::try_from(v).unwrap_or(0)),
                payment_id: r.get(16)?,
                kind: r.get(18)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(Into::into)
    }

    /// Whether `payer` has a settled payment for `method url` (a refund is not one): what lets
    /// a wallet sign in instead of paying again.
    pub fn paid_for(&self, method: &str, url: &str, payer: &str) -> Result<bool, LedgerError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM spends
                WHERE status = 'paid' AND (kind IS NULL OR kind <> 'refund')
                  AND upper(method) = upper(?1) AND url = ?2 AND lower(payer) = lower(?3))",
            params![method, url, payer],
            |r| r.get(0),
        )?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AssetInfo;

    fn priced(amount: u64) -> Priced {
        Priced {
            requirements: serde_json::from_value(serde_json::json!({
                "scheme": "exact", "network": "eip155:31337", "amount": amount.to_string(),
                "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                "payTo": "0x0000000000000000000000000000000000000009", "maxTimeoutSeconds": 60
            }))
            .unwrap(),
            asset: AssetInfo {
                symbol: "USDC".into(),
                decimals: 6,
            },
        }
    }

    fn handle(valid_before: u64) -> AuthorizationHandle {
        AuthorizationHandle {
            scheme: "exact".into(),
            network: "eip155:31337".parse().unwrap(),
            asset: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            payer: "0x0000000000000000000000000000000000000001".into(),
            id: format!("0x{:064x}", valid_before),
            valid_before,
        }
    }

    const ATTEMPT: Attempt<'static> = Attempt {
        method: "GET",
        url: "http://127.0.0.1/x",
    };

    #[test]
    fn pending_stays_held_until_resolved() {
        let ledger = SpendLedger::in_memory().unwrap();
        let policy = SpendingPolicy::new().budget("0.0015 USDC", None).unwrap();
        let id = ledger
            .reserve(&policy, &priced(1_000), &ATTEMPT)
            .unwrap()
            .unwrap();
        ledger
            .attach_authorization(id, &handle(1_000), Some("tg_0123456789abcdef"))
            .unwrap();
        ledger.mark_pending(id, "server answered 503").unwrap();
        // A release after the fact cannot undo `pending`: only reconciliation can.
        ledger.release(id, "late").unwrap();
        assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);
        let refused = ledger.reserve(&policy, &priced(1_000), &ATTEMPT).unwrap();
        assert!(matches!(refused, Err(Refusal::OverBudget { .. })));

        let open = ledger.unresolved(500, 60).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].status, SpendStatus::Pending);
        assert_eq!(open[0].authorization, handle(1_000));
        let history = ledger.history(10).unwrap();
        let record = history.iter().find(|r| r.id == id).unwrap();
        assert_eq!(record.payment_id.as_deref(), Some("tg_0123456789abcdef"));
        assert_eq!(record.valid_before, Some(1_000));

        ledger.resolve_expired(id, "expired unused").unwrap();
        assert_eq!(ledger.count(SpendStatus::Failed).unwrap(), 1);
        assert!(ledger.unresolved(500, 60).unwrap().is_empty());
        assert!(ledger
            .reserve(&policy, &priced(1_000), &ATTEMPT)
            .unwrap()
            .is_ok());
    }

    #[test]
    fn in_flight_rows_are_reconciled_only_once_long_expired() {
        let ledger = SpendLedger::in_memory().unwrap();
        let policy = SpendingPolicy::new();
        let id = ledger
            .reserve(&policy, &priced(1), &ATTEMPT)
            .unwrap()
            .unwrap();
        // Never signed: nothing to ask the chain about.
        assert!(ledger.unresolved(u64::MAX, 60).unwrap().is_empty());
        ledger
            .attach_authorization(id, &handle(1_000), None)
            .unwrap();
        assert!(ledger.unresolved(1_059, 60).unwrap().is_empty());
        let open = ledger.unresolved(1_060, 60).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].status, SpendStatus::Reserved);
        ledger.resolve_used(id, "used on chain").unwrap();
        assert_eq!(ledger.count(SpendStatus::Paid).unwrap(), 1);
    }

    #[test]
    fn a_version_0_ledger_is_migrated_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE spends (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
                    method TEXT NOT NULL, url TEXT NOT NULL, payee TEXT NOT NULL,
                    network TEXT NOT NULL, asset TEXT NOT NULL, symbol TEXT NOT NULL,
                    amount TEXT NOT NULL, decimals INTEGER NOT NULL, scaled TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('reserved', 'paid', 'failed', 'refused')),
                    tx_hash TEXT, reason TEXT);
                 CREATE INDEX spends_symbol_at ON spends (symbol, at);
                 INSERT INTO spends (at, method, url, payee, network, asset, symbol, amount,
                                     decimals, scaled, status, tx_hash)
                 VALUES (strftime('%s','now'), 'GET', 'http://x/', '0x09', 'eip155:31337',
                         '0xaa', 'USDC', '1000', 6, '1000000000000000', 'paid', '0xabc');",
            )
            .unwrap();
        }
        let ledger = SpendLedger::open(&path).unwrap();
        let rows = ledger.history(10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "paid");
        assert_eq!(rows[0].tx_hash.as_deref(), Some("0xabc"));
        // The migrated table accepts `pending`, and the old payment still counts.
        let policy = SpendingPolicy::new().budget("0.0015 USDC", None).unwrap();
        let refused = ledger.reserve(&policy, &priced(1_000), &ATTEMPT).unwrap();
        assert!(matches!(refused, Err(Refusal::OverBudget { .. })));
        let id = ledger
            .reserve(&policy, &priced(500), &ATTEMPT)
            .unwrap()
            .unwrap();
        ledger.mark_pending(id, "503").unwrap();
        assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);
        drop(ledger);
        // Opening again is a no-op.
        let again = SpendLedger::open(&path).unwrap();
        assert_eq!(again.history(10).unwrap().len(), 3);
    }

    #[test]
    fn a_metered_receipt_releases_the_unused_part_and_keeps_both_amounts() {
        let ledger = SpendLedger::in_memory().unwrap();
        // Room for exactly one maximum of 1000 (0.001 USDC) and 600 more.
        let policy = SpendingPolicy::new().budget("0.0016 USDC", None).unwrap();
        let id = ledger
            .reserve(&policy, &priced(1_000), &ATTEMPT)
            .unwrap()
            .unwrap();
        // While in flight the maximum is held: a second maximum does not fit.
        assert!(matches!(
            ledger.reserve(&policy, &priced(1_000), &ATTEMPT).unwrap(),
            Err(Refusal::OverBudget { .. })
        ));
        ledger
            .mark_paid_charged(id, "0xabc", Some(U256::from(370u64)))
            .unwrap();
        // 370 counted, 630 released: 1000 more now fits (370 + 1000 <= 1600), 1300 would not.
        assert!(matches!(
            ledger.reserve(&policy, &priced(1_300), &ATTEMPT).unwrap(),
            Err(Refusal::OverBudget { .. })
        ));
        ledger
            .reserve(&policy, &priced(1_000), &ATTEMPT)
            .unwrap()
            .unwrap();
        let record = ledger
            .history(10)
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap();
        assert_eq!(
            record.amount, "1000",
            "the authorised maximum stays on record"
        );
        assert_eq!(record.charged.as_deref(), Some("370"));
        assert_eq!(record.status, "paid");
    }

    #[test]
    fn a_receipt_above_the_maximum_is_not_believed() {
        let ledger = SpendLedger::in_memory().unwrap();
        let policy = SpendingPolicy::new().budget("0.0015 USDC", None).unwrap();
        let id = ledger
            .reserve(&policy, &priced(1_000), &ATTEMPT)
            .unwrap()
            .unwrap();
        ledger
            .mark_paid_charged(id, "0xabc", Some(U256::from(5_000u64)))
            .unwrap();
        // Still 1000 counted (not 5000, which would refuse 500; not less either).
        ledger
            .reserve(&policy, &priced(500), &ATTEMPT)
            .unwrap()
            .unwrap();
        assert!(matches!(
            ledger.reserve(&policy, &priced(1), &ATTEMPT).unwrap(),
            Err(Refusal::OverBudget { .. })
        ));
    }

    #[test]
    fn a_version_1_ledger_gains_the_charge_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(&CREATE_TABLE.replace(
                ",\n    charged      TEXT,\n    kind         TEXT,\n    session      TEXT",
                "",
            ))
            .unwrap();
            tx.execute_batch(
                "INSERT INTO spends (at, method, url, payee, network, asset, symbol, amount,
                                     decimals, scaled, status, tx_hash)
                 VALUES (strftime('%s','now'), 'GET', 'http://x/', '0x09', 'eip155:31337',
                         '0xaa', 'USDC', '1000', 6, '1000000000000000', 'paid', '0xabc');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            tx.commit().unwrap();
            let has_charged: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM pragma_table_info('spends') WHERE name = 'charged')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(!has_charged, "the fixture is a version 1 table");
        }
        let ledger = SpendLedger::open(&path).unwrap();
        let rows = ledger.history(10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].charged, None);
        let id = ledger
            .reserve(&SpendingPolicy::new(), &priced(10), &ATTEMPT)
            .unwrap()
            .unwrap();
        ledger
            .mark_paid_charged(id, "0xdef", Some(U256::from(4u64)))
            .unwrap();
        drop(ledger);
        let again = SpendLedger::open(&path).unwrap();
        assert_eq!(again.history(10).unwrap()[0].charged.as_deref(), Some("4"));
    }

    #[test]
    fn a_version_2_ledger_gains_channels_and_keeps_its_rows_as_one_off_payments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(
                &CREATE_TABLE.replace(",\n    kind         TEXT,\n    session      TEXT", ""),
            )
            .unwrap();
            tx.execute_batch(
                "INSERT INTO spends (at, method, url, payee, network, asset, symbol, amount,
                                     decimals, scaled, status, tx_hash)
                 VALUES (strftime('%s','now'), 'GET', 'http://x/', '0x09', 'eip155:31337',
                         '0xaa', 'USDC', '1000', 6, '1000000000000000', 'paid', '0xabc');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let ledger = SpendLedger::open(&path).unwrap();
        let rows = ledger.history(10).unwrap();
        assert_eq!((rows.len(), rows[0].kind.as_deref()), (1, None));
        assert!(ledger.sessions().unwrap().is_empty());
        // A budget of 0.0025 holds the old 0.001, a deposit of 0.001 and (a voucher counting
        // nothing) a request at 0.001; a refund of 0.0005 frees room for 0.0005 more.
        let policy = SpendingPolicy::new().budget("0.0025 USDC", None).unwrap();
        let deposit = ledger
            .reserve_session(&policy, &priced(1000), &ATTEMPT, "s", Some(1000))
            .unwrap()
            .unwrap();
        ledger.mark_session_paid(deposit, "0xd", 1000).unwrap();
        let voucher = ledger
            .reserve_session(&policy, &priced(1000), &ATTEMPT, "s", None)
            .unwrap()
            .unwrap();
        ledger.mark_session_paid(voucher, "", 1000).unwrap();
        assert!(matches!(
            ledger
                .reserve_session(&policy, &priced(1000), &ATTEMPT, "s", Some(1000))
                .unwrap(),
            Err(Refusal::OverBudget { .. })
        ));
        let r = priced(1000);
        // A refund is credited at most up to what was deposited: 0.001 of the 0.005 claimed.
        let (_, credited) = ledger
            .record_refund("s", &r.requirements, &r.asset, &ATTEMPT, 5000, "0xr")
            .unwrap();
        assert_eq!(credited, 1000);
        let second = ledger
            .reserve_session(&policy, &priced(1000), &ATTEMPT, "s", Some(1000))
            .unwrap()
            .unwrap();
        ledger.mark_session_paid(second, "0xd2", 1000).unwrap();
        let (_, credited) = ledger
            .record_refund("s", &r.requirements, &r.asset, &ATTEMPT, 1000, "0xr2")
            .unwrap();
        assert_eq!(credited, 1000, "the second deposit comes back");
        // Nothing more to credit: everything deposited came back once.
        let (_, credited) = ledger
            .record_refund("s", &r.requirements, &r.asset, &ATTEMPT, 1000, "0xr3")
            .unwrap();
        assert_eq!(credited, 0);
        drop(ledger);
        let again = SpendLedger::open(&path).unwrap();
        let kinds: Vec<_> = again
            .history(10)
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds.len(), 8);
        assert_eq!(
            kinds
                .iter()
                .filter(|k| k.as_deref() == Some("refund"))
                .count(),
            3
        );
    }
}
