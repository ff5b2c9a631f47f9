//! The identity decision log: decisions written to SQLite and a real (throwaway) PostgreSQL
//! and read back, a full queue dropping with a count instead of blocking, and a newer schema
//! refused.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tollgate_identity::{
    DecisionLog, DecisionStore, DecisionStoreError, RuleCheck, StoredDecision,
};
use tollgate_server::{Decision, DecisionResult, DecisionSink};

/// A decision with millisecond-precision time (what the store keeps).
fn decision(payer: &str, result: DecisionResult) -> Decision {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Decision {
        at: UNIX_EPOCH + Duration::from_millis(ms),
        payer: payer.into(),
        network: "eip155:84532".parse().unwrap(),
        provider: "agentscore".into(),
        target: "GET /weather".into(),
        result,
        checks: vec![
            RuleCheck {
                rule: "require_sanctions_clear".into(),
                passed: false,
                reason: Some("the address is on a sanctions list".into()),
                remedy: None,
            },
            RuleCheck {
                rule: "min_age".into(),
                passed: true,
                reason: None,
                remedy: None,
            },
        ],
        cached: false,
        error: None,
    }
}

fn samples() -> Vec<Decision> {
    let mut unavailable = decision(
        "0x00000000000000000000000000000000000000b2",
        DecisionResult::Unavailable,
    );
    unavailable.checks.clear();
    unavailable.error = Some("assess: connection refused".into());
    let mut open = unavailable.clone();
    open.result = DecisionResult::FailedOpen;
    let mut cached = decision(
        "0x00000000000000000000000000000000000000c3",
        DecisionResult::Allowed,
    );
    cached.cached = true;
    vec![
        decision(
            "0x00000000000000000000000000000000000000a1",
            DecisionResult::Refused,
        ),
        unavailable,
        open,
        cached,
    ]
}

/// Waits (up to 10 s) until the writer has stored `n` decisions.
async fn written(log: &DecisionLog, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.stats().written < n {
        assert!(
            Instant::now() < deadline,
            "writer stored {:?} of {n}",
            log.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn round_trip(store: DecisionStore) {
    let log = DecisionLog::spawn(store.clone(), 16);
    let sent = samples();
    for d in &sent {
        log.record(d);
    }
    written(&log, sent.len() as u64).await;
    assert_eq!(log.stats().dropped, 0);
    assert_eq!(log.stats().failed, 0);
    let back: Vec<StoredDecision> = store.recent(100).await.unwrap();
    let back: Vec<Decision> = back.into_iter().rev().map(|s| s.decision).collect();
    assert_eq!(back.len(), sent.len());
    // Newest first from the store: reversed, they are in the order recorded.
    assert_eq!(back, sent);
    assert_eq!(store.recent(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_store_writes_and_reads_back_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.sqlite");
    round_trip(DecisionStore::sqlite(&path).await.unwrap()).await;
    // Reopening keeps the rows and the schema version (no second version row, no error).
    let again = DecisionStore::sqlite(&path).await.unwrap();
    assert_eq!(again.recent(100).await.unwrap().len(), samples().len());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM identity_decisions_schema", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(versions, 1);
}

#[tokio::test]
async fn postgres_store_writes_and_reads_back_decisions() {
    let pg = tollgate_testkit::Postgres::start().unwrap();
    round_trip(DecisionStore::postgres(&pg.url()).await.unwrap()).await;
    let again = DecisionStore::postgres(&pg.url()).await.unwrap();
    assert_eq!(again.recent(100).await.unwrap().len(), samples().len());
}

/// On a current-thread runtime the writer cannot run until the test yields, so the queue
/// fills deterministically: `record` must return at once and count what it dropped.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_with_a_count_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = DecisionStore::sqlite(dir.path().join("d.sqlite"))
        .await
        .unwrap();
    let log = DecisionLog::spawn(store.clone(), 2);
    let d = decision(
        "0x00000000000000000000000000000000000000a1",
        DecisionResult::Refused,
    );
    for _ in 0..5 {
        log.record(&d);
    }
    assert_eq!(log.stats().dropped, 3);
    written(&log, 2).await;
    assert_eq!(store.recent(100).await.unwrap().len(), 2);
    // Once drained, the queue takes decisions again.
    log.record(&d);
    written(&log, 3).await;
    assert_eq!(log.stats().dropped, 3);
}

#[tokio::test]
async fn a_store_with_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sqlite");
    DecisionStore::sqlite(&path).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE identity_decisions_schema SET version = 99", [])
        .unwrap();
    let err = DecisionStore::sqlite(&path).await.unwrap_err();
    assert!(
        matches!(err, DecisionStoreError::NewerSchema { found: 99 }),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_an_error_naming_the_store() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = DecisionStore::postgres(&format!("postgres://tollgate@127.0.0.1:{port}/postgres"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("decision store (PostgreSQL) connect"),
        "{err}"
    );
}
