//! A payer lookup of the reputation service is an index range scan (schema version 3's
//! `settlements_payer` and `events_payer`), on SQLite and PostgreSQL, on a ledger of 100,000
//! synthetic settlements and 100,000 events. The plans are asserted; timings are printed for
//! the record, never asserted.

use std::time::Instant;

use tollgate_facilitator::ledger::Ledger;
use tollgate_facilitator::reputation::report;

const ROWS: u64 = 100_000;
const PAYERS: u64 = 10_000;

fn payer(i: u64) -> String {
    format!("0x{:040x}", i % PAYERS + 1)
}

/// The ledger's two payer queries (as `ledger/sqlite.rs` and `ledger/postgres.rs` run them).
const SETTLED: &str = "SELECT network, asset, pay_to, amount, created_at, updated_at
     FROM settlements WHERE payer = {p} AND state = 'confirmed'";
const EVENTS: &str = "SELECT COUNT(*) FROM events WHERE payer = {p}";

#[tokio::test]
async fn sqlite_payer_lookup_uses_the_payer_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(&path).unwrap();
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        let tx = c.transaction().unwrap();
        {
            let mut s = tx
                .prepare(
                    "INSERT INTO settlements (network, scheme, asset, payer, payment_id, state,
                       amount, pay_to, payment_json, created_at, updated_at)
                     VALUES ('eip155:8453', 'exact', '0xusdc', ?1, ?2, ?3, '10000', ?4, '{}', ?5, ?5)",
                )
                .unwrap();
            let mut e = tx
                .prepare(
                    "INSERT INTO events (at, kind, network, scheme, payer, payment_id, outcome, reason)
                     VALUES (?1, 'settle', 'eip155:8453', 'exact', ?2, ?3, ?4, ?5)",
                )
                .unwrap();
            for i in 0..ROWS {
                let state = if i / PAYERS == 0 {
                    "failed"
                } else {
                    "confirmed"
                };
                let id = format!("0x{i:064x}");
                let payee = format!("0x{:040x}", i % 7);
                s.execute(rusqlite::params![
                    payer(i),
                    id,
                    state,
                    payee,
                    1_700_000_000 + i as i64
                ])
                .unwrap();
                // Each payer: one replayed attempt, one failed one, the rest settled.
                let (outcome, reason) = match i / PAYERS {
                    0 => ("failure", Some("invalid_exact_evm_nonce_already_used")),
                    1 => ("invalid", Some("invalid_exact_evm_payload_signature")),
                    _ => ("success", None),
                };
                e.execute(rusqlite::params![
                    1_700_000_000 + i as i64,
                    payer(i),
                    id,
                    outcome,
                    reason
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
        c.execute_batch("ANALYZE").unwrap();
        for (query, index) in [(SETTLED, "settlements_payer"), (EVENTS, "events_payer")] {
            let sql = format!("EXPLAIN QUERY PLAN {}", query.replace("{p}", "'0x01'"));
            let plan: Vec<String> = c
                .prepare(&sql)
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            println!("sqlite plan: {plan}");
            assert!(plan.contains(&format!("INDEX {index}")), "{plan}");
        }
        // For comparison: the same lookups with the indexes bypassed.
        let target = payer(42);
        let started = Instant::now();
        for _ in 0..20 {
            let n: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM settlements NOT INDEXED WHERE payer = ?1 AND state = 'confirmed'",
                    [&target],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 9);
        }
        println!(
            "sqlite full scan of {ROWS} settlements: {:?} per lookup",
            started.elapsed() / 20
        );
    }

    let target = payer(42);
    let history = ledger.payer_history(&target).await.unwrap();
    assert_eq!(history.settled.len(), 9, "10 rows, one failed");
    assert_eq!((history.failed, history.replayed), (1, 1), "{history:?}");
    let r = report(&target, &history, 1_800_000_000);
    assert_eq!(r.assets[0].settled_volume, "90000");

    let lookups = 200;
    let started = Instant::now();
    for i in 0..lookups {
        ledger.payer_history(&payer(i * 37)).await.unwrap();
    }
    println!(
        "sqlite Ledger::payer_history on {ROWS} settlements + {ROWS} events: {:?} per lookup",
        started.elapsed() / lookups as u32
    );
}

#[tokio::test]
async fn postgres_payer_lookup_uses_the_payer_indexes() {
    let pg = tollgate_testkit::Postgres::start().unwrap();
    let ledger = Ledger::connect_postgres(&pg.url()).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "INSERT INTO settlements (network, scheme, asset, payer, payment_id, state, amount,
               pay_to, payment_json, created_at, updated_at)
             SELECT 'eip155:8453', 'exact', '0xusdc', '0x' || lpad(to_hex(i % {PAYERS} + 1), 40, '0'),
                    '0x' || lpad(to_hex(i), 64, '0'),
                    CASE WHEN i / {PAYERS} = 0 THEN 'failed' ELSE 'confirmed' END, '10000',
                    '0x' || lpad(to_hex(i % 7), 40, '0'), '{{}}', 1700000000 + i, 1700000000 + i
             FROM generate_series(0, {ROWS} - 1) AS i;
             INSERT INTO events (at, kind, network, scheme, payer, payment_id, outcome, reason)
             SELECT 1700000000 + i, 'settle', 'eip155:8453', 'exact',
                    '0x' || lpad(to_hex(i % {PAYERS} + 1), 40, '0'), '0x' || lpad(to_hex(i), 64, '0'),
                    CASE i / {PAYERS} WHEN 0 THEN 'failure' WHEN 1 THEN 'invalid' ELSE 'success' END,
                    CASE i / {PAYERS} WHEN 0 THEN 'invalid_exact_evm_nonce_already_used'
                                WHEN 1 THEN 'invalid_exact_evm_payload_signature' END
             FROM generate_series(0, {ROWS} - 1) AS i;
             ANALYZE;"
        ))
        .await
        .unwrap();
    for (query, index) in [(SETTLED, "settlements_payer"), (EVENTS, "events_payer")] {
        let sql = format!(
            "EXPLAIN {}",
            query.replace("{p}", &format!("'{}'", payer(42)))
        );
        let plan: Vec<String> = client
            .query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join(" | ");
        println!("postgres plan: {plan}");
        assert!(plan.contains(index) && !plan.contains("Seq Scan"), "{plan}");
    }
    let target = payer(42);
    let history = ledger.payer_history(&target).await.unwrap();
    assert_eq!(history.settled.len(), 9);
    assert_eq!((history.failed, history.replayed), (1, 1), "{history:?}");
    let lookups = 200;
    let started = Instant::now();
    for i in 0..lookups {
        ledger.payer_history(&payer(i * 37)).await.unwrap();
    }
    println!(
        "postgres Ledger::payer_history on {ROWS} settlements + {ROWS} events: {:?} per lookup",
        started.elapsed() / lookups as u32
    );
}
