//! Versioned schema migrations of the facilitator's settlement ledger, for SQLite and
//! PostgreSQL, from one ordered list.
//!
//! The ledger records money: its schema must change in known steps that every database takes
//! in the same order, exactly once, and a binary must never write to a database it does not
//! understand. So:
//!
//! - [`MIGRATIONS`] is an ordered list of versions `1..=N`, each with its SQLite and its
//!   PostgreSQL SQL. A released migration is never edited: a change is a new version.
//! - The runners ([`sqlite::migrate`], [`postgres::migrate`]) record every applied version in
//!   `schema_migrations (version, name, checksum, applied_at)` and apply what is pending, each
//!   version in its own transaction together with its record, so a crash leaves the database at
//!   a version, never between two.
//! - A database written by release 0.1.0 — the ledger tables, and no `schema_migrations` — is
//!   **adopted** as version 1 (the [`BASELINE`]): its tables are checked against version 1's
//!   columns and the version is recorded, without running version 1 again. A ledger file older
//!   than 0.1.0 (missing columns that 0.1.0 added to it at every open) is first completed the
//!   way 0.1.0 did.
//! - A database at a version newer than the binary knows ([`MigrationError::NewerThanBinary`]),
//!   or whose recorded checksum of a version differs from the binary's
//!   ([`MigrationError::ChecksumMismatch`]), is refused before anything is written.
//! - On PostgreSQL every step holds a transaction-scoped advisory lock ([`postgres::LOCK_KEY`],
//!   the lock release 0.1.0 took around its `CREATE TABLE`s), so replicas starting together
//!   migrate one at a time and the later ones find nothing to do.
//!
//! No chain and no network: this crate knows only tables. Without the `sqlite` and `postgres`
//! features (both default) it is only the list of migrations.

// The runners' shared helpers are unused when neither runner is compiled.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use sha2::{Digest, Sha256};

/// A database engine the ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The embedded file (rusqlite).
    Sqlite,
    /// A shared server (tokio-postgres).
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// One schema version: the SQL that takes a database from the previous version to this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version this migration produces (`1..=N`, in list order).
    pub version: u32,
    /// A short name, recorded beside the version.
    pub name: &'static str,
    /// The SQLite statements.
    pub sqlite: &'static str,
    /// The PostgreSQL statements.
    pub postgres: &'static str,
}

impl Migration {
    /// The statements for `backend`.
    pub fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }

    /// SHA-256 of [`sql`](Self::sql) in lower-case hex: recorded when applied, compared on
    /// every later start, so an edited released migration cannot go unnoticed.
    pub fn checksum(&self, backend: Backend) -> String {
        let digest = Sha256::digest(self.sql(backend).as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Every migration, in order. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "baseline",
        sqlite: include_str!("../sql/0001_baseline.sqlite.sql"),
        postgres: include_str!("../sql/0001_baseline.postgres.sql"),
    },
    Migration {
        version: 2,
        name: "scheme_and_payment_id",
        sqlite: include_str!("../sql/0002_scheme_and_payment_id.sqlite.sql"),
        postgres: include_str!("../sql/0002_scheme_and_payment_id.postgres.sql"),
    },
    Migration {
        version: 3,
        name: "payer_indexes",
        sqlite: include_str!("../sql/0003_payer_indexes.sqlite.sql"),
        postgres: include_str!("../sql/0003_payer_indexes.postgres.sql"),
    },
    Migration {
        version: 4,
        name: "discovery_catalogue",
        sqlite: include_str!("../sql/0004_discovery_catalogue.sqlite.sql"),
        postgres: include_str!("../sql/0004_discovery_catalogue.postgres.sql"),
    },
];

/// The version a database written by release 0.1.0 (no `schema_migrations`) is at.
pub const BASELINE: u32 = 1;

/// The newest version this binary knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The columns of each table at the [`BASELINE`], which an adopted database must have.
pub(crate) const BASELINE_TABLES: &[(&str, &[&str])] = &[
    (
        "settlements",
        &[
            "network",
            "asset",
            "payer",
            "nonce",
            "state",
            "amount",
            "pay_to",
            "tx_hash",
            "error_reason",
            "payment_json",
            "created_at",
            "updated_at",
            "attempt",
            "lease_until",
            "valid_before",
        ],
    ),
    (
        "claims",
        &["network", "asset", "payer", "nonce", "owner", "expires_at"],
    ),
    (
        "events",
        &[
            "id", "at", "kind", "network", "payer", "nonce", "outcome", "reason", "tx_hash",
        ],
    ),
    (
        "attempts",
        &[
            "attempt",
            "network",
            "asset",
            "payer",
            "nonce",
            "created_at",
        ],
    ),
];

/// What one run of a runner did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// The version the database was at (0: empty; [`BASELINE`] for an adopted 0.1.0 ledger).
    pub from: u32,
    /// The version it is at now ([`latest_version`]).
    pub to: u32,
    /// Whether a 0.1.0 ledger (no `schema_migrations`) was adopted as the baseline.
    pub adopted_baseline: bool,
    /// The versions applied by this run, in order.
    pub applied: Vec<u32>,
}

/// Why the ledger's schema could not be brought to the binary's version. Nothing was changed
/// by the step that failed (each runs in a transaction); earlier steps of the run stay applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database was migrated by a newer binary. Writing to it could lose or duplicate
    /// payments, so this binary stops.
    #[error(
        "the ledger database is at schema version {database}, newer than version {binary}, \
         the newest this binary knows: run a binary at least as new as the one that migrated it \
         (a ledger is never downgraded)"
    )]
    NewerThanBinary {
        /// The newest version recorded in the database.
        database: u32,
        /// The newest version this binary knows.
        binary: u32,
    },
    /// A version recorded as applied does not match this binary's migration of that version.
    #[error(
        "ledger schema version {version} ({name}) was applied with checksum {recorded}, but this \
         binary's {backend} migration {version} has checksum {expected}: a released migration \
         was edited, or the schema was changed by hand"
    )]
    ChecksumMismatch {
        /// The version.
        version: u32,
        /// Its name in this binary.
        name: &'static str,
        /// The backend.
        backend: Backend,
        /// The checksum in `schema_migrations`.
        recorded: String,
        /// This binary's.
        expected: String,
    },
    /// `schema_migrations` holds a row this binary cannot place (a version below 1, or one
    /// missing before a recorded one).
    #[error("ledger schema_migrations is inconsistent: {detail}")]
    Inconsistent {
        /// What is wrong.
        detail: String,
    },
    /// The database has ledger tables but no `schema_migrations`, and they are not the 0.1.0
    /// ledger: adopting them could misread its rows.
    #[error(
        "the database has ledger tables but no schema_migrations, and table {table} is not \
         release 0.1.0's (missing columns: {})",
        missing.join(", ")
    )]
    UnrecognizedBaseline {
        /// The table that does not match.
        table: &'static str,
        /// The columns version 1 has and it lacks.
        missing: Vec<&'static str>,
    },
    /// SQLite refused a statement.
    #[cfg(feature = "sqlite")]
    #[error("ledger migration on SQLite, {context}: {source}")]
    Sqlite {
        /// What the runner was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL refused a statement.
    #[cfg(feature = "postgres")]
    #[error(
        "ledger migration on PostgreSQL, {context}: {}",
        postgres::describe(source)
    )]
    Postgres {
        /// What the runner was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// What is recorded in `schema_migrations`, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) version: i64,
    pub(crate) checksum: String,
}

/// What a runner does next, decided from what is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Everything this binary knows is applied.
    Done,
    /// Apply this migration.
    Apply(&'static Migration),
}

/// Checks the recorded versions against the binary's list (newer, checksum, gaps) and returns
/// the current version and what to do next.
pub(crate) fn plan(backend: Backend, applied: &[Applied]) -> Result<(u32, Next), MigrationError> {
    let binary = latest_version();
    let mut current = 0u32;
    for row in applied {
        let version = u32::try_from(row.version).map_err(|_| MigrationError::Inconsistent {
            detail: format!("version {} is not a schema version", row.version),
        })?;
        if version > binary {
            let database = applied
                .iter()
                .filter_map(|a| u32::try_from(a.version).ok())
                .max()
                .unwrap_or(version);
            return Err(MigrationError::NewerThanBinary { database, binary });
        }
        current = current.max(version);
    }
    for row in applied {
        let Some(m) = MIGRATIONS
            .iter()
            .find(|m| i64::from(m.version) == row.version)
        else {
            return Err(MigrationError::Inconsistent {
                detail: format!("version {} is not one of this binary's", row.version),
            });
        };
        let expected = m.checksum(backend);
        if row.checksum != expected {
            return Err(MigrationError::ChecksumMismatch {
                version: m.version,
                name: m.name,
                backend,
                recorded: row.checksum.clone(),
                expected,
            });
        }
    }
    // Versions apply in order: one missing below the newest recorded means the record (or
    // the schema) was tampered with.
    if let Some(missing) = MIGRATIONS
        .iter()
        .filter(|m| m.version <= current)
        .find(|m| !applied.iter().any(|a| a.version == i64::from(m.version)))
    {
        return Err(MigrationError::Inconsistent {
            detail: format!(
                "version {current} is recorded but version {} ({}) is not",
                missing.version, missing.name
            ),
        });
    }
    let next = MIGRATIONS
        .iter()
        .find(|m| m.version > current)
        .map_or(Next::Done, Next::Apply);
    Ok((current, next))
}

/// Columns release 0.1.0 added to `settlements` at every open (`ALTER TABLE … ADD COLUMN`), so
/// that files written before it gained them: the only gap in an existing table that adoption
/// completes instead of refusing.
pub(crate) const RELEASE_ADDED_COLUMNS: &[&str] = &["attempt", "lease_until", "valid_before"];

/// Refuses an existing table (`present` its columns, empty if it does not exist) that 0.1.0
/// could not have written: a missing table, or the missing [`RELEASE_ADDED_COLUMNS`], are
/// completed by adoption; anything else is someone else's table.
pub(crate) fn check_adoptable(
    table: &'static str,
    wanted: &'static [&'static str],
    present: &[String],
) -> Result<(), MigrationError> {
    if present.is_empty() {
        return Ok(());
    }
    let missing: Vec<_> = missing_columns(wanted, present)
        .into_iter()
        .filter(|c| !(table == "settlements" && RELEASE_ADDED_COLUMNS.contains(c)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MigrationError::UnrecognizedBaseline { table, missing })
    }
}

/// The columns of `BASELINE_TABLES`' `table` missing from `present`.
pub(crate) fn missing_columns(
    columns: &'static [&'static str],
    present: &[String],
) -> Vec<&'static str> {
    columns
        .iter()
        .copied()
        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
        .collect()
}

/// Unix seconds, for `applied_at`.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(version: i64, backend: Backend) -> Applied {
        let checksum = MIGRATIONS
            .iter()
            .find(|m| i64::from(m.version) == version)
            .map_or_else(|| "0".repeat(64), |m| m.checksum(backend));
        Applied { version, checksum }
    }

    #[test]
    fn versions_are_one_to_n_in_order_with_distinct_names() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
            assert_eq!(MIGRATIONS.iter().filter(|o| o.name == m.name).count(), 1);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as u32);
        assert!(BASELINE <= latest_version());
    }

    #[test]
    fn checksums_are_per_backend_sha256_hex() {
        let m = &MIGRATIONS[0];
        let s = m.checksum(Backend::Sqlite);
        assert_eq!(s.len(), 64);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(s, m.checksum(Backend::Postgres));
        assert_eq!(s, m.checksum(Backend::Sqlite));
    }

    #[test]
    fn plan_walks_forward_and_refuses_what_it_cannot_place() {
        let b = Backend::Sqlite;
        assert_eq!(plan(b, &[]).unwrap(), (0, Next::Apply(&MIGRATIONS[0])));
        assert_eq!(
            plan(b, &[applied(1, b)]).unwrap(),
            (1, Next::Apply(&MIGRATIONS[1]))
        );
        let all: Vec<_> = (1..=i64::from(latest_version()))
            .map(|v| applied(v, b))
            .collect();
        assert_eq!(plan(b, &all).unwrap(), (latest_version(), Next::Done));

        let newer = i64::from(latest_version()) + 1;
        match plan(b, &[applied(1, b), applied(newer, b)]) {
            Err(MigrationError::NewerThanBinary { database, binary }) => {
                assert_eq!((i64::from(database), binary), (newer, latest_version()));
            }
            other => panic!("{other:?}"),
        }
        // Recorded for the other backend: the SQL differs, so does the checksum.
        assert!(matches!(
            plan(b, &[applied(1, Backend::Postgres)]),
            Err(MigrationError::ChecksumMismatch { version: 1, .. })
        ));
        assert!(matches!(
            plan(b, &[applied(2, b)]),
            Err(MigrationError::Inconsistent { .. })
        ));
        assert!(matches!(
            plan(b, &[applied(0, b)]),
            Err(MigrationError::Inconsistent { .. })
        ));
    }

    #[test]
    fn the_newer_version_refusal_names_both_versions() {
        let e = MigrationError::NewerThanBinary {
            database: 7,
            binary: 2,
        };
        let text = e.to_string();
        assert!(
            text.contains("version 7") && text.contains("version 2"),
            "{text}"
        );
    }
}
