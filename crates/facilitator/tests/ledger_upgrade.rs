//! Upgrading a ledger written by release 0.1.0 (commit bff7228; the fixtures and how they were
//! made are in `tests/fixtures/`): it opens after migration with every row keyed by scheme
//! `exact`, and the payment it left pending — verified under an `Idempotency-Key`, never
//! settled — reconciles once it is used on chain. On SQLite and on PostgreSQL; opening a
//! migrated ledger again changes nothing, and a ledger from a newer binary is refused.
//!
//! The fixtures were signed on the embedded devnet, whose accounts, token address and chain id
//! are the same at every start, so their payments are valid on the fresh devnet started here.

use std::path::{Path, PathBuf};

use tokio_postgres::NoTls;
use tollgate_evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::ledger::{LedgerEntry, PaymentKey, SettlementState};
use tollgate_facilitator::{Facilitator, Ledger};
use tollgate_proto::PaymentPayload;
use tollgate_testkit::{Postgres, TestChain};

const SQLITE_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ledger-0.1.0.sqlite"
);
const POSTGRES_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ledger-0.1.0.postgres.sql"
);

/// The attempt names the fixtures' payments were verified (and, for the first, settled) under.
const CONFIRMED_ATTEMPT: &str = "fixture-confirmed-0001";
const PENDING_ATTEMPT: &str = "fixture-pending-0002";
/// The pending payment: test account 2's authorization with nonce 0x42…42, valid until 2100.
const PENDING_PAYER: &str = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";
const PENDING_ID: &str = "0x4242424242424242424242424242424242424242424242424242424242424242";

/// A copy of the SQLite fixture in a temporary directory (the committed file stays 0.1.0's).
fn sqlite_copy(dir: &Path) -> PathBuf {
    let path = dir.join("ledger.sqlite");
    std::fs::copy(SQLITE_FIXTURE, &path).unwrap();
    path
}

/// Loads the PostgreSQL fixture (`pg_dump --inserts`) into `pg`'s database. psql's
/// meta-commands (`\restrict` …) are psql's, not SQL: they are skipped.
async fn load_postgres_fixture(pg: &Postgres) {
    let dump = std::fs::read_to_string(POSTGRES_FIXTURE).unwrap();
    let sql: String = dump
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    // A connection of its own: the dump empties its session's search_path.
    let (client, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
    let conn = tokio::spawn(connection);
    client.batch_execute(&sql).await.unwrap();
    drop(client);
    let _ = conn.await;
}

/// What the fixture holds, read through the new code: a confirmed and a verified payment,
/// both `exact`, with their attempts. Returns the pending row.
async fn check_migrated_rows(ledger: &Ledger, chain: &TestChain) -> LedgerEntry {
    assert_eq!(
        ledger.count_by_state().await.unwrap(),
        vec![("confirmed".to_owned(), 1), ("verified".to_owned(), 1)]
    );
    let confirmed_key = ledger
        .attempt_binding(CONFIRMED_ATTEMPT)
        .await
        .unwrap()
        .expect("the settled attempt is still bound");
    assert_eq!(confirmed_key.scheme, "exact");
    let confirmed = ledger.get(&confirmed_key).await.unwrap().unwrap();
    assert_eq!(confirmed.state, SettlementState::Confirmed);
    assert!(confirmed.tx_hash.is_some());
    assert_eq!(confirmed.attempt.as_deref(), Some(CONFIRMED_ATTEMPT));

    let pending_key = PaymentKey::new(
        &chain.caip2(),
        "exact",
        &chain.usdc.to_string(),
        PENDING_PAYER,
        PENDING_ID,
    );
    assert_eq!(
        ledger.attempt_binding(PENDING_ATTEMPT).await.unwrap(),
        Some(pending_key.clone()),
        "the fixture was written on this devnet's chain id and token address"
    );
    let unfinished = ledger.unfinished().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    let pending = unfinished.into_iter().next().unwrap();
    assert_eq!(pending.key, pending_key);
    assert_eq!(pending.state, SettlementState::Verified);
    assert_eq!(pending.tx_hash, None);
    assert_eq!(pending.attempt.as_deref(), Some(PENDING_ATTEMPT));
    assert_eq!(pending.valid_before, Some(4_102_444_800));
    assert_eq!(
        ledger.get(&pending_key).await.unwrap(),
        Some(pending.clone())
    );
    // The attempt stays tied to its payment: reusing its name for another is still refused.
    let other = PaymentKey::new(
        &chain.caip2(),
        "exact",
        &chain.usdc.to_string(),
        PENDING_PAYER,
        "0x01",
    );
    assert_eq!(
        ledger.bind_attempt(PENDING_ATTEMPT, &other).await.unwrap(),
        pending_key
    );
    pending
}

/// Uses the pending payment on chain, as a crashed 0.1.0 facilitator might have before
/// recording it: its stored JSON, settled directly by the `exact` scheme. Returns the
/// transaction hash.
async fn settle_on_chain(chain: &TestChain, pending: &LedgerEntry) -> String {
    let payment: PaymentPayload = serde_json::from_str(&pending.payment_json).unwrap();
    let requirements = payment.accepted.clone();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(7),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let settlement = scheme.settle(&payment, &requirements).await.unwrap();
    assert!(chain
        .authorization_used(PENDING_PAYER.parse().unwrap(), PENDING_ID.parse().unwrap())
        .await
        .unwrap());
    settlement.tx_hash.to_string()
}

#[tokio::test]
async fn a_release_sqlite_ledger_migrates_and_its_pending_payment_reconciles() {
    let chain = TestChain::start_devnet().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_copy(dir.path());

    let ledger = Ledger::open(&path).unwrap();
    let pending = check_migrated_rows(&ledger, &chain).await;
    let tx_hash = settle_on_chain(&chain, &pending).await;

    // A facilitator over the migrated ledger, built without reconciling, then reconciled.
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], ledger.clone());
    let report = facilitator.reconcile().await.unwrap();
    assert_eq!(
        (report.confirmed, report.failed, report.still_pending),
        (1, 0, 0),
        "{report:?}"
    );
    let row = ledger.get(&pending.key).await.unwrap().unwrap();
    assert_eq!(row.state, SettlementState::Confirmed);
    assert_eq!(row.tx_hash.as_deref(), Some(tx_hash.as_str()));
    assert_eq!(
        ledger.count_events("reconcile", "success").await.unwrap(),
        1
    );
    assert!(ledger.unfinished().await.unwrap().is_empty());
    drop(facilitator);
    drop(ledger);

    // Opening the migrated file again changes nothing.
    let history = schema_history_sqlite(&path);
    assert_eq!(history.len() as u32, tollgate_migrations::latest_version());
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(schema_history_sqlite(&path), history);
    assert_eq!(
        ledger.get(&pending.key).await.unwrap().unwrap().tx_hash,
        Some(tx_hash)
    );
}

/// The builder's own start-up reconciliation finishes the fixture's pending payment too.
#[tokio::test]
async fn a_built_facilitator_reconciles_a_release_sqlite_ledger_at_start() {
    let chain = TestChain::start_devnet().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_copy(dir.path());
    let pending = {
        let ledger = Ledger::open(&path).unwrap();
        check_migrated_rows(&ledger, &chain).await
    };
    let tx_hash = settle_on_chain(&chain, &pending).await;

    let facilitator = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .ledger_path(&path)
        .build()
        .await
        .unwrap();
    let ledger = facilitator.ledger();
    let row = ledger.get(&pending.key).await.unwrap().unwrap();
    assert_eq!(row.state, SettlementState::Confirmed);
    assert_eq!(row.tx_hash.as_deref(), Some(tx_hash.as_str()));
    assert_eq!(
        ledger.count_events("reconcile", "success").await.unwrap(),
        1
    );
    let again = facilitator.reconcile().await.unwrap();
    assert_eq!(
        (again.confirmed, again.failed, again.still_pending),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_release_postgres_ledger_migrates_and_its_pending_payment_reconciles() {
    let chain = TestChain::start_devnet().await.unwrap();
    let pg = Postgres::start().unwrap();
    load_postgres_fixture(&pg).await;

    let ledger = Ledger::connect_postgres(&pg.url()).await.unwrap();
    let pending = check_migrated_rows(&ledger, &chain).await;
    let tx_hash = settle_on_chain(&chain, &pending).await;

    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], ledger.clone());
    let report = facilitator.reconcile().await.unwrap();
    assert_eq!(
        (report.confirmed, report.failed, report.still_pending),
        (1, 0, 0),
        "{report:?}"
    );
    let row = ledger.get(&pending.key).await.unwrap().unwrap();
    assert_eq!(row.state, SettlementState::Confirmed);
    assert_eq!(row.tx_hash.as_deref(), Some(tx_hash.as_str()));
    assert_eq!(
        ledger.count_events("reconcile", "success").await.unwrap(),
        1
    );

    // A second instance connecting to the migrated database changes nothing.
    let history = schema_history_postgres(&pg).await;
    assert_eq!(history.len() as u32, tollgate_migrations::latest_version());
    let second = Ledger::connect_postgres(&pg.url()).await.unwrap();
    assert_eq!(schema_history_postgres(&pg).await, history);
    assert_eq!(
        second.get(&pending.key).await.unwrap().unwrap().tx_hash,
        Some(tx_hash)
    );
    // … and a facilitator built over it finds nothing left to reconcile.
    let built = Facilitator::builder()
        .network(chain.endpoint(), TestChain::signer(0))
        .ledger(second)
        .build()
        .await
        .unwrap();
    assert!(built.ledger().unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_ledger_migrated_by_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_copy(dir.path());
    drop(Ledger::open(&path).unwrap());
    let future = tollgate_migrations::latest_version() + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations VALUES (?1, 'from_the_future', 'x', 0)",
            [future],
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

    let pg = Postgres::start().unwrap();
    load_postgres_fixture(&pg).await;
    drop(Ledger::connect_postgres(&pg.url()).await.unwrap());
    let (client, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO schema_migrations VALUES ($1, 'from_the_future', 'x', 0)",
            &[&(future as i32)],
        )
        .await
        .unwrap();
    let err = Ledger::connect_postgres(&pg.url())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("schema version {future}")), "{err}");
}

/// `schema_migrations` as (version, checksum, applied_at).
fn schema_history_sqlite(path: &Path) -> Vec<(i64, String, i64)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare("SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn schema_history_postgres(pg: &Postgres) -> Vec<(i32, String, i64)> {
    let (client, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}
