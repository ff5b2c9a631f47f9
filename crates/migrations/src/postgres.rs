//! The PostgreSQL runner.
//!
//! Several facilitator replicas share one PostgreSQL ledger and may start together. Every step
//! (adopting the baseline, or applying one version) is one transaction that first takes
//! [`LOCK_KEY`] with `pg_advisory_xact_lock` and only then reads `schema_migrations`: replicas
//! queue on the lock, and each finds what the one before it did. A transaction-scoped lock is
//! released by `COMMIT`, `ROLLBACK` or a dropped connection, so a replica that dies mid-step
//! cannot leave the others waiting. PostgreSQL's DDL is transactional, so a failed step leaves
//! nothing behind.

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::{
    check_adoptable, missing_columns, plan, unix_now, Applied, Backend, Migration, MigrationError,
    MigrationReport, Next, BASELINE, BASELINE_TABLES, MIGRATIONS,
};

/// The advisory lock key held by every migration step. It is the key release 0.1.0 took
/// around its `CREATE TABLE IF NOT EXISTS`, so a 0.1.0 replica starting during an upgrade
/// waits for the migration too (and then fails loudly on the new columns instead of racing).
pub const LOCK_KEY: i64 = 0x7011_6a7e;

const CREATE_SCHEMA_MIGRATIONS: &str = "
CREATE TABLE schema_migrations (
    version     INTEGER NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  BIGINT NOT NULL
)";

/// The server's message for a database error (the driver's `Display` says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn pg_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> MigrationError {
    move |source| MigrationError::Postgres {
        context: context.into(),
        source,
    }
}

/// Brings the ledger in the database `client` is connected to (its current schema) to
/// [`latest_version`](crate::latest_version): adopts a 0.1.0 ledger as the baseline, applies
/// each pending migration in its own transaction under the advisory lock, and refuses a
/// database newer than this binary or with an altered history. A second run is a no-op.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, MigrationError> {
    let mut report = MigrationReport::default();
    let mut first = true;
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(pg_err("beginning a transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(pg_err("taking the migration lock"))?;
        if !table_exists(&tx, "schema_migrations").await? {
            if has_ledger_tables(&tx).await? {
                adopt_baseline(&tx).await?;
                tx.commit()
                    .await
                    .map_err(pg_err("committing the adopted baseline"))?;
                report.adopted_baseline = true;
                report.from = BASELINE;
                first = false;
                continue;
            }
            tx.batch_execute(CREATE_SCHEMA_MIGRATIONS)
                .await
                .map_err(pg_err("creating schema_migrations"))?;
        }
        let applied = read_applied(&tx).await?;
        let (current, next) = plan(Backend::Postgres, &applied)?;
        if first {
            report.from = current;
            first = false;
        }
        match next {
            Next::Done => {
                tx.commit().await.map_err(pg_err("committing"))?;
                report.to = current;
                return Ok(report);
            }
            Next::Apply(m) => {
                let context = || format!("applying migration {} ({})", m.version, m.name);
                tx.batch_execute(m.postgres)
                    .await
                    .map_err(pg_err(context()))?;
                record(&tx, m).await?;
                tx.commit().await.map_err(pg_err(context()))?;
                report.applied.push(m.version);
            }
        }
    }
}

/// The newest version recorded in `schema_migrations` (`None` without that table: an empty
/// database, or a 0.1.0 ledger not yet adopted). For health checks and tests.
pub async fn current_version(client: &impl GenericClient) -> Result<Option<u32>, MigrationError> {
    if !table_exists(client, "schema_migrations").await? {
        return Ok(None);
    }
    let row = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .await
        .map_err(pg_err("reading schema_migrations"))?;
    let v: Option<i32> = row
        .try_get(0)
        .map_err(pg_err("reading schema_migrations"))?;
    Ok(Some(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)))
}

async fn table_exists(client: &impl GenericClient, table: &str) -> Result<bool, MigrationError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema::text = current_schema() AND table_name::text = $1)",
            &[&table],
        )
        .await
        .map_err(pg_err(format!("looking for table {table}")))?;
    row.try_get(0)
        .map_err(pg_err(format!("looking for table {table}")))
}

async fn has_ledger_tables(client: &impl GenericClient) -> Result<bool, MigrationError> {
    for (table, _) in BASELINE_TABLES {
        if table_exists(client, table).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn columns(client: &impl GenericClient, table: &str) -> Result<Vec<String>, MigrationError> {
    let context = || format!("reading the columns of {table}");
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema::text = current_schema() AND table_name::text = $1",
            &[&table],
        )
        .await
        .map_err(pg_err(context()))?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(pg_err(context())))
        .collect()
}

async fn baseline_gap(
    client: &impl GenericClient,
) -> Result<Option<(&'static str, Vec<&'static str>)>, MigrationError> {
    for (table, wanted) in BASELINE_TABLES {
        let missing = missing_columns(wanted, &columns(client, table).await?);
        if !missing.is_empty() {
            return Ok(Some((table, missing)));
        }
    }
    Ok(None)
}

/// Records a 0.1.0 ledger as version 1. A complete one is not touched (beyond the new
/// `schema_migrations`); an older one is first completed by version 1's statements, which are
/// 0.1.0's own idempotent `CREATE … IF NOT EXISTS` / `ADD COLUMN IF NOT EXISTS`.
async fn adopt_baseline(tx: &Transaction<'_>) -> Result<(), MigrationError> {
    if baseline_gap(tx).await?.is_some() {
        for (table, wanted) in BASELINE_TABLES {
            check_adoptable(table, wanted, &columns(tx, table).await?)?;
        }
        for m in MIGRATIONS.iter().filter(|m| m.version <= BASELINE) {
            tx.batch_execute(m.postgres)
                .await
                .map_err(pg_err("completing a pre-0.1.0 ledger"))?;
        }
        if let Some((table, missing)) = baseline_gap(tx).await? {
            return Err(MigrationError::UnrecognizedBaseline { table, missing });
        }
    }
    tx.batch_execute(CREATE_SCHEMA_MIGRATIONS)
        .await
        .map_err(pg_err("creating schema_migrations"))?;
    for m in MIGRATIONS.iter().filter(|m| m.version <= BASELINE) {
        record(tx, m).await?;
    }
    Ok(())
}

async fn read_applied(client: &impl GenericClient) -> Result<Vec<Applied>, MigrationError> {
    let context = "reading schema_migrations";
    let rows = client
        .query(
            "SELECT version, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_err(context))?;
    rows.iter()
        .map(|r| {
            Ok(Applied {
                version: i64::from(r.try_get::<_, i32>(0).map_err(pg_err(context))?),
                checksum: r.try_get(1).map_err(pg_err(context))?,
            })
        })
        .collect()
}

async fn record(client: &impl GenericClient, m: &Migration) -> Result<(), MigrationError> {
    let version = i32::try_from(m.version).map_err(|_| MigrationError::Inconsistent {
        detail: format!(
            "version {} does not fit schema_migrations.version",
            m.version
        ),
    })?;
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at)
             VALUES ($1, $2, $3, $4)",
            &[
                &version,
                &m.name,
                &m.checksum(Backend::Postgres),
                &unix_now(),
            ],
        )
        .await
        .map(|_| ())
        .map_err(pg_err(format!("recording version {}", m.version)))
}
