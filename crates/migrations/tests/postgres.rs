//! The PostgreSQL runner against a throwaway PostgreSQL server: a fresh database, release
//! 0.1.0's ledger (its own `CREATE` statements, with rows), replicas migrating at once under
//! the advisory lock, and refusals.

use tokio_postgres::{Client, NoTls};
use tollgate_migrations::postgres::{current_version, migrate};
use tollgate_migrations::{latest_version, Backend, MigrationError, MIGRATIONS};
use tollgate_testkit::Postgres;

/// scheme, payment_id, state, tx_hash, valid_before
type SettlementRow = (String, String, String, Option<String>, Option<i64>);

async fn connect(pg: &Postgres) -> Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn recorded(c: &Client) -> Vec<(i32, String, String)> {
    c.query(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn expected_records() -> Vec<(i32, String, String)> {
    MIGRATIONS
        .iter()
        .map(|m| {
            (
                m.version as i32,
                m.name.to_owned(),
                m.checksum(Backend::Postgres),
            )
        })
        .collect()
}

async fn primary_key(c: &Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = $1::text::regclass AND i.indisprimary
         ORDER BY array_position(i.indkey, a.attnum)",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn a_fresh_database_gets_every_version_once_and_a_second_run_is_a_no_op() {
    let pg = Postgres::start().unwrap();
    let mut c = connect(&pg).await;
    assert_eq!(current_version(&c).await.unwrap(), None);
    let report = migrate(&mut c).await.unwrap();
    assert_eq!((report.from, report.to), (0, latest_version()));
    assert!(!report.adopted_baseline);
    assert_eq!(report.applied, (1..=latest_version()).collect::<Vec<_>>());
    assert_eq!(recorded(&c).await, expected_records());
    for table in ["settlements", "claims"] {
        assert_eq!(
            primary_key(&c, table).await,
            ["network", "scheme", "asset", "payer", "payment_id"]
        );
    }
    let again = migrate(&mut c).await.unwrap();
    assert_eq!((again.from, again.applied.len()), (latest_version(), 0));
    assert_eq!(current_version(&c).await.unwrap(), Some(latest_version()));
}

/// The schema as release 0.1.0 created it (its own statements, which version 1 keeps
/// verbatim), with rows, and no `schema_migrations`.
#[tokio::test]
async fn the_release_ledger_is_adopted_and_its_rows_keyed_by_scheme() {
    let pg = Postgres::start().unwrap();
    let mut c = connect(&pg).await;
    c.batch_execute(MIGRATIONS[0].postgres).await.unwrap();
    c.batch_execute(
        "INSERT INTO settlements (network, asset, payer, nonce, state, amount, pay_to, tx_hash,
            payment_json, created_at, updated_at, attempt, lease_until, valid_before)
         VALUES ('eip155:1', '0xaa', '0xbb', '0x01', 'confirmed', '10', '0xdd', '0xf1', '{}', 1, 1,
                 'k1', 5, 9),
                ('eip155:1', '0xaa', '0xbc', '0x02', 'verified', '10', '0xdd', NULL, '{}', 1, 1,
                 'k2', 5, 4102444800);
         INSERT INTO attempts VALUES ('k1', 'eip155:1', '0xaa', '0xbb', '0x01', 1),
                                     ('k2', 'eip155:1', '0xaa', '0xbc', '0x02', 1);
         INSERT INTO claims VALUES ('eip155:1', '0xaa', '0xbb', '0x01', 'me', 7);
         INSERT INTO events (at, kind, network, payer, nonce, outcome)
         VALUES (1, 'verify', 'eip155:1', '0xbb', '0x01', 'valid');",
    )
    .await
    .unwrap();

    let report = migrate(&mut c).await.unwrap();
    assert!(report.adopted_baseline);
    assert_eq!(
        (report.from, report.applied.clone()),
        (1, (2..=latest_version()).collect::<Vec<_>>())
    );
    assert_eq!(recorded(&c).await, expected_records());

    let rows: Vec<SettlementRow> = c
        .query(
            "SELECT scheme, payment_id, state, tx_hash, valid_before FROM settlements
             ORDER BY payment_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "exact".into(),
                "0x01".into(),
                "confirmed".into(),
                Some("0xf1".into()),
                Some(9)
            ),
            (
                "exact".into(),
                "0x02".into(),
                "verified".into(),
                None,
                Some(4_102_444_800)
            ),
        ]
    );
    let claim: (String, String) = c
        .query_one("SELECT scheme, payment_id FROM claims", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(claim, ("exact".into(), "0x01".into()));
    let event: (Option<String>, Option<String>) = c
        .query_one("SELECT scheme, payment_id FROM events", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(event, (None, Some("0x01".into())));
    // `scheme` has no default left: a writer that forgets it fails instead of guessing.
    assert!(c
        .execute(
            "INSERT INTO attempts (attempt, network, asset, payer, payment_id, created_at)
             VALUES ('k3', 'eip155:1', '0xaa', '0xbb', '0x03', 1)",
            &[],
        )
        .await
        .is_err());
    assert!(migrate(&mut c).await.unwrap().applied.is_empty());
}

/// Replicas starting together: every one succeeds, each version is applied once.
#[tokio::test]
async fn replicas_migrating_at_once_apply_each_version_once() {
    let pg = Postgres::start().unwrap();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(connect(&pg).await);
    }
    let runs = clients.into_iter().map(|mut c| {
        tokio::spawn(async move {
            let report = migrate(&mut c).await;
            (report, c)
        })
    });
    let results = futures_join(runs.collect()).await;
    let mut applied = Vec::new();
    let mut last = None;
    for (report, client) in results {
        let report = report.unwrap();
        assert_eq!(report.to, latest_version());
        applied.extend(report.applied);
        last = Some(client);
    }
    applied.sort();
    assert_eq!(applied, (1..=latest_version()).collect::<Vec<_>>());
    assert_eq!(recorded(&last.unwrap()).await, expected_records());
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn newer_or_altered_histories_are_refused() {
    let pg = Postgres::start().unwrap();
    let mut c = connect(&pg).await;
    migrate(&mut c).await.unwrap();
    let future = latest_version() as i32 + 1;
    c.execute(
        "INSERT INTO schema_migrations VALUES ($1, 'from_the_future', 'x', 0)",
        &[&future],
    )
    .await
    .unwrap();
    let err = migrate(&mut c).await.unwrap_err();
    assert!(
        matches!(err, MigrationError::NewerThanBinary { database, binary }
            if database as i32 == future && binary == latest_version()),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {future}"))
            && text.contains(&format!("version {}", latest_version())),
        "{text}"
    );

    c.execute(
        "DELETE FROM schema_migrations WHERE version = $1",
        &[&future],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
        &[],
    )
    .await
    .unwrap();
    let err = migrate(&mut c).await.unwrap_err();
    assert!(
        matches!(
            &err,
            MigrationError::ChecksumMismatch {
                version: 1,
                backend: Backend::Postgres,
                ..
            }
        ),
        "{err:?}"
    );
}

/// A failing step rolls back whole (PostgreSQL's DDL is transactional), and the server's own
/// message reaches the error.
#[tokio::test]
async fn a_failing_step_changes_nothing_and_says_why() {
    let pg = Postgres::start().unwrap();
    let mut c = connect(&pg).await;
    c.batch_execute(MIGRATIONS[0].postgres).await.unwrap();
    // In the way of version 2: a column named like one it adds, after its first statements.
    c.batch_execute("ALTER TABLE claims ADD COLUMN scheme TEXT")
        .await
        .unwrap();
    let err = migrate(&mut c).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, MigrationError::Postgres { context, .. } if context.contains("migration 2")),
        "{err:?}"
    );
    assert!(
        text.contains("42701"),
        "the server's code and message: {text}"
    );
    assert_eq!(current_version(&c).await.unwrap(), Some(1));
    let settlement_columns: Vec<String> = c
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_name = 'settlements'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(settlement_columns.contains(&"nonce".to_owned()));
    assert!(!settlement_columns.contains(&"scheme".to_owned()));
}
