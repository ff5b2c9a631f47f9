//! The SQLite runner.
//!
//! Each step runs in a `BEGIN IMMEDIATE` transaction: it takes the file's write lock before
//! reading `schema_migrations`, so two processes opening one file at once (a restart
//! overlapping the old process, a CLI next to a server) migrate one after the other, and the
//! second finds the work done.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::{
    check_adoptable, missing_columns, plan, unix_now, Applied, Backend, Migration, MigrationError,
    MigrationReport, Next, BASELINE, BASELINE_TABLES, MIGRATIONS,
};

/// [`RELEASE_ADDED_COLUMNS`](crate::RELEASE_ADDED_COLUMNS) with the types 0.1.0 gave them.
const RELEASE_ADDED_COLUMNS: &[(&str, &str)] = &[
    ("attempt", "TEXT"),
    ("lease_until", "INTEGER"),
    ("valid_before", "INTEGER"),
];

const CREATE_SCHEMA_MIGRATIONS: &str = "
CREATE TABLE schema_migrations (
    version     INTEGER NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
)";

fn sqlite_err(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> MigrationError {
    move |source| MigrationError::Sqlite {
        context: context.into(),
        source,
    }
}

/// Brings the ledger in `conn` to [`latest_version`](crate::latest_version): adopts a 0.1.0
/// ledger as the baseline, applies each pending migration in its own transaction, and refuses
/// a database newer than this binary or with an altered history. A second run is a no-op.
///
/// Set the connection's busy timeout first: a step waits for another process's step.
pub fn migrate(conn: &mut Connection) -> Result<MigrationReport, MigrationError> {
    let mut report = MigrationReport::default();
    let mut first = true;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_err("taking the write lock"))?;
        if !table_exists(&tx, "schema_migrations")? {
            if has_ledger_tables(&tx)? {
                adopt_baseline(&tx)?;
                tx.commit()
                    .map_err(sqlite_err("committing the adopted baseline"))?;
                report.adopted_baseline = true;
                report.from = BASELINE;
                first = false;
                continue;
            }
            tx.execute_batch(CREATE_SCHEMA_MIGRATIONS)
                .map_err(sqlite_err("creating schema_migrations"))?;
        }
        let applied = read_applied(&tx)?;
        let (current, next) = plan(Backend::Sqlite, &applied)?;
        if first {
            report.from = current;
            first = false;
        }
        match next {
            Next::Done => {
                tx.commit().map_err(sqlite_err("committing"))?;
                report.to = current;
                return Ok(report);
            }
            Next::Apply(m) => {
                let context = || format!("applying migration {} ({})", m.version, m.name);
                tx.execute_batch(m.sqlite).map_err(sqlite_err(context()))?;
                record(&tx, m)?;
                tx.commit().map_err(sqlite_err(context()))?;
                report.applied.push(m.version);
            }
        }
    }
}

/// The newest version recorded in the database's `schema_migrations` (`None` without that
/// table: an empty database, or a 0.1.0 ledger not yet adopted). For health checks and tests.
pub fn current_version(conn: &Connection) -> Result<Option<u32>, MigrationError> {
    if !table_exists(conn, "schema_migrations")? {
        return Ok(None);
    }
    let v: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(sqlite_err("reading schema_migrations"))?;
    Ok(Some(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)))
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool, MigrationError> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![table],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .map_err(sqlite_err(format!("looking for table {table}")))
}

fn has_ledger_tables(conn: &Connection) -> Result<bool, MigrationError> {
    for (table, _) in BASELINE_TABLES {
        if table_exists(conn, table)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, MigrationError> {
    let context = || format!("reading the columns of {table}");
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .map_err(sqlite_err(context()))?;
    let rows = stmt
        .query_map(params![table], |r| r.get(0))
        .map_err(sqlite_err(context()))?;
    rows.collect::<Result<_, _>>()
        .map_err(sqlite_err(context()))
}

/// The first baseline table that lacks version 1's columns, with what it lacks.
fn baseline_gap(
    conn: &Connection,
) -> Result<Option<(&'static str, Vec<&'static str>)>, MigrationError> {
    for (table, wanted) in BASELINE_TABLES {
        let missing = missing_columns(wanted, &columns(conn, table)?);
        if !missing.is_empty() {
            return Ok(Some((table, missing)));
        }
    }
    Ok(None)
}

/// Records a 0.1.0 ledger as version 1. A complete one is not touched (beyond the new
/// `schema_migrations`); an older file is first completed as 0.1.0 completed it at every open
/// (its added columns, then its `CREATE … IF NOT EXISTS` for tables it did not have yet).
fn adopt_baseline(tx: &Transaction<'_>) -> Result<(), MigrationError> {
    if baseline_gap(tx)?.is_some() {
        for (table, wanted) in BASELINE_TABLES {
            check_adoptable(table, wanted, &columns(tx, table)?)?;
        }
        if table_exists(tx, "settlements")? {
            let present = columns(tx, "settlements")?;
            for (name, ty) in RELEASE_ADDED_COLUMNS {
                if !present.iter().any(|p| p.eq_ignore_ascii_case(name)) {
                    tx.execute_batch(&format!("ALTER TABLE settlements ADD COLUMN {name} {ty}"))
                        .map_err(sqlite_err(format!(
                            "adding settlements.{name} to a pre-0.1.0 ledger"
                        )))?;
                }
            }
        }
        for m in MIGRATIONS.iter().filter(|m| m.version <= BASELINE) {
            tx.execute_batch(m.sqlite)
                .map_err(sqlite_err("completing a pre-0.1.0 ledger"))?;
        }
        if let Some((table, missing)) = baseline_gap(tx)? {
            return Err(MigrationError::UnrecognizedBaseline { table, missing });
        }
    }
    tx.execute_batch(CREATE_SCHEMA_MIGRATIONS)
        .map_err(sqlite_err("creating schema_migrations"))?;
    for m in MIGRATIONS.iter().filter(|m| m.version <= BASELINE) {
        record(tx, m)?;
    }
    Ok(())
}

fn read_applied(conn: &Connection) -> Result<Vec<Applied>, MigrationError> {
    let context = "reading schema_migrations";
    let mut stmt = conn
        .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .map_err(sqlite_err(context))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Applied {
                version: r.get(0)?,
                checksum: r.get(1)?,
            })
        })
        .map_err(sqlite_err(context))?;
    rows.collect::<Result<_, _>>().map_err(sqlite_err(context))
}

fn record(conn: &Connection, m: &Migration) -> Result<(), MigrationError> {
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![m.version, m.name, m.checksum(Backend::Sqlite), unix_now()],
    )
    .map(|_| ())
    .map_err(sqlite_err(format!("recording version {}", m.version)))
}
