//! The SQLite runner on real SQLite files and in-memory databases: fresh databases, the
//! release 0.1.0 ledger (the committed fixture and a pre-0.1.0 file), refusals, atomicity and
//! two processes' connections migrating one file at once.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};
use tollgate_migrations::sqlite::{current_version, migrate};
use tollgate_migrations::{latest_version, Backend, MigrationError, MIGRATIONS};

/// The ledger file written by release 0.1.0 (see its README).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../facilitator/tests/fixtures/ledger-0.1.0.sqlite"
);

/// network, asset, payer, nonce, state, tx_hash
type RowV1 = (String, String, String, String, String, Option<String>);
/// network, scheme, asset, payer, payment_id, state, tx_hash
type RowV2 = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

fn columns(c: &Connection, table: &str) -> Vec<String> {
    let mut stmt = c
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .unwrap();
    stmt.query_map(params![table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn primary_key(c: &Connection, table: &str) -> Vec<String> {
    let mut stmt = c
        .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
        .unwrap();
    stmt.query_map(params![table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn recorded(c: &Connection) -> Vec<(u32, String, String)> {
    let mut stmt = c
        .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn expected_records() -> Vec<(u32, String, String)> {
    MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned(), m.checksum(Backend::Sqlite)))
        .collect()
}

fn copy_fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ledger.sqlite");
    std::fs::copy(FIXTURE, &path).unwrap();
    path
}

#[test]
fn a_fresh_database_gets_every_version_once() {
    let mut c = Connection::open_in_memory().unwrap();
    assert_eq!(current_version(&c).unwrap(), None);
    let report = migrate(&mut c).unwrap();
    assert_eq!(report.from, 0);
    assert_eq!(report.to, latest_version());
    assert!(!report.adopted_baseline);
    assert_eq!(
        report.applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    assert_eq!(recorded(&c), expected_records());
    assert_eq!(
        primary_key(&c, "settlements"),
        ["network", "scheme", "asset", "payer", "payment_id"]
    );
    assert_eq!(
        primary_key(&c, "claims"),
        ["network", "scheme", "asset", "payer", "payment_id"]
    );
    assert!(columns(&c, "events").contains(&"payment_id".to_owned()));
    assert!(!columns(&c, "events").contains(&"nonce".to_owned()));

    let again = migrate(&mut c).unwrap();
    assert_eq!(
        (again.from, again.to, again.applied.len()),
        (latest_version(), latest_version(), 0)
    );
    assert_eq!(recorded(&c), expected_records());
    assert_eq!(current_version(&c).unwrap(), Some(latest_version()));
}

#[test]
fn the_release_ledger_is_adopted_as_version_one_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());
    let mut c = Connection::open(&path).unwrap();
    let before: Vec<RowV1> = c
        .prepare(
            "SELECT network, asset, payer, nonce, state, tx_hash FROM settlements ORDER BY nonce",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        before.len(),
        2,
        "the fixture has a confirmed and a verified row"
    );
    let events_before: i64 = c
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(current_version(&c).unwrap(), None);

    let report = migrate(&mut c).unwrap();
    assert!(report.adopted_baseline);
    assert_eq!(report.from, 1);
    assert_eq!(report.applied, (2..=latest_version()).collect::<Vec<_>>());
    assert_eq!(recorded(&c), expected_records());

    let after: Vec<RowV2> = c
        .prepare(
            "SELECT network, scheme, asset, payer, payment_id, state, tx_hash
             FROM settlements ORDER BY payment_id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.1, "exact");
        assert_eq!(
            (&a.0, &a.2, &a.3, &a.4, &a.5, &a.6),
            (&b.0, &b.1, &b.2, &b.3, &b.4, &b.5)
        );
    }
    let attempts: Vec<(String, String)> = c
        .prepare("SELECT attempt, scheme FROM attempts ORDER BY attempt")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|(_, s)| s == "exact"));
    let (events_after, max_id): (i64, i64) = c
        .query_row("SELECT COUNT(*), MAX(id) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(events_after, events_before);
    // AUTOINCREMENT keeps counting from where 0.1.0 stopped.
    c.execute(
        "INSERT INTO events (at, kind, network, scheme, payer, payment_id, outcome)
         VALUES (1, 'verify', 'eip155:1', 'exact', NULL, NULL, 'valid')",
        [],
    )
    .unwrap();
    assert_eq!(c.last_insert_rowid(), max_id + 1);

    // One payment id may now exist under two schemes, but not twice under one.
    let (network, _, asset, payer, id, ..) = after[0].clone();
    let insert = "INSERT INTO settlements (network, scheme, asset, payer, payment_id, state,
                    amount, pay_to, payment_json, created_at, updated_at)
                  VALUES (?1, ?2, ?3, ?4, ?5, 'verified', '1', '0x', '{}', 1, 1)";
    c.execute(insert, params![network, "upto", asset, payer, id])
        .unwrap();
    assert!(c
        .execute(insert, params![network, "exact", asset, payer, id])
        .is_err());

    drop(c);
    let mut c = Connection::open(&path).unwrap();
    let again = migrate(&mut c).unwrap();
    assert!(!again.adopted_baseline);
    assert!(again.applied.is_empty());
}

/// A file written before attempts existed: 0.1.0 added its missing columns and tables at every
/// open, and so does adoption.
#[test]
fn a_pre_release_file_is_completed_then_migrated() {
    let mut c = Connection::open_in_memory().unwrap();
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
    let report = migrate(&mut c).unwrap();
    assert!(report.adopted_baseline);
    assert_eq!(report.applied, (2..=latest_version()).collect::<Vec<_>>());
    let row: (String, String, String, Option<String>) = c
        .query_row(
            "SELECT scheme, payment_id, state, attempt FROM settlements",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        ("exact".into(), "0xcc".into(), "confirmed".into(), None)
    );
    assert!(columns(&c, "attempts").contains(&"payment_id".to_owned()));
}

#[test]
fn foreign_tables_without_a_history_are_refused_untouched() {
    let mut c = Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT);")
        .unwrap();
    let err = migrate(&mut c).unwrap_err();
    match &err {
        MigrationError::UnrecognizedBaseline { table, missing } => {
            assert_eq!(*table, "events");
            assert!(missing.contains(&"kind"), "{missing:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("events"), "{err}");
    assert_eq!(current_version(&c).unwrap(), None, "nothing was recorded");
    assert_eq!(columns(&c, "events"), ["id", "body"]);
}

#[test]
fn a_database_from_a_newer_binary_is_refused_naming_both_versions() {
    let mut c = Connection::open_in_memory().unwrap();
    migrate(&mut c).unwrap();
    let future = latest_version() + 1;
    c.execute(
        "INSERT INTO schema_migrations VALUES (?1, 'from_the_future', 'x', 0)",
        params![future],
    )
    .unwrap();
    let err = migrate(&mut c).unwrap_err();
    assert!(
        matches!(err, MigrationError::NewerThanBinary { database, binary }
            if database == future && binary == latest_version()),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {future}"))
            && text.contains(&format!("version {}", latest_version())),
        "{text}"
    );
}

#[test]
fn an_altered_history_is_refused() {
    let mut c = Connection::open_in_memory().unwrap();
    migrate(&mut c).unwrap();
    c.execute(
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2",
        [],
    )
    .unwrap();
    let err = migrate(&mut c).unwrap_err();
    assert!(
        matches!(&err, MigrationError::ChecksumMismatch { version: 2, recorded, .. } if recorded == "edited"),
        "{err:?}"
    );
    assert!(err.to_string().contains("scheme_and_payment_id"), "{err}");

    c.execute("DELETE FROM schema_migrations WHERE version = 1", [])
        .unwrap();
    c.execute(
        "UPDATE schema_migrations SET checksum = ?1 WHERE version = 2",
        params![MIGRATIONS[1].checksum(Backend::Sqlite)],
    )
    .unwrap();
    assert!(matches!(
        migrate(&mut c),
        Err(MigrationError::Inconsistent { .. })
    ));
}

/// A step that fails leaves the database at the version before it, data included.
#[test]
fn a_failing_step_changes_nothing() {
    let mut c = Connection::open_in_memory().unwrap();
    c.execute_batch(MIGRATIONS[0].sqlite).unwrap();
    c.execute_batch(
        "INSERT INTO settlements (network, asset, payer, nonce, state, amount, pay_to,
            payment_json, created_at, updated_at)
         VALUES ('eip155:1', '0xaa', '0xbb', '0xcc', 'verified', '1', '0xdd', '{}', 1, 1);
         -- In the way of version 2's rebuild of `claims`.
         CREATE TABLE claims_v2 (x INTEGER);",
    )
    .unwrap();
    let err = migrate(&mut c).unwrap_err();
    assert!(
        matches!(&err, MigrationError::Sqlite { context, .. } if context.contains("migration 2")),
        "{err:?}"
    );
    assert_eq!(
        current_version(&c).unwrap(),
        Some(1),
        "adoption committed alone"
    );
    assert!(columns(&c, "settlements").contains(&"nonce".to_owned()));
    assert!(!columns(&c, "settlements").contains(&"scheme".to_owned()));
    let rows: i64 = c
        .query_row("SELECT COUNT(*) FROM settlements", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);

    c.execute_batch("DROP TABLE claims_v2").unwrap();
    let report = migrate(&mut c).unwrap();
    assert_eq!(
        (report.from, report.applied.clone()),
        (1, (2..=latest_version()).collect::<Vec<_>>())
    );
}

/// Two connections (as two processes would have) migrating one file at once: both succeed,
/// and each version is applied exactly once.
#[test]
fn concurrent_openers_apply_each_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = Connection::open(&path).unwrap();
                c.busy_timeout(Duration::from_secs(30)).unwrap();
                barrier.wait();
                migrate(&mut c).unwrap()
            })
        })
        .collect();
    let reports: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(reports.iter().filter(|r| r.adopted_baseline).count(), 1);
    let mut applied: Vec<u32> = reports.iter().flat_map(|r| r.applied.clone()).collect();
    applied.sort();
    assert_eq!(applied, (2..=latest_version()).collect::<Vec<_>>());
    let c = Connection::open(&path).unwrap();
    assert_eq!(recorded(&c), expected_records());
}
