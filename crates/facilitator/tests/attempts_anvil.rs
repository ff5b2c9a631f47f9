//! One payment is settled for one attempt, and nobody else is told "success": the
//! `Idempotency-Key` header and the `payment-identifier` extension against a real token on
//! anvil (or the devnet), over the HTTP API; the same across two instances sharing one
//! PostgreSQL ledger; plus the smaller checks of issue 13 (assets without code, canonical
//! decimals, a bounded event log).

use std::collections::HashSet;

use alloy::primitives::{Address, U256};
use serde_json::{json, Value};
use tollgate_facilitator::ledger::{PaymentKey, SettlementState};
use tollgate_facilitator::{Config, Facilitator, Ledger, Outcome};
use tollgate_proto::idempotency::PaymentIdentifier;
use tollgate_proto::{FacilitatorRequest, IdempotencyKey};
use tollgate_testkit::{Postgres, TestChain, DEV_KEYS};

mod support;

use support::{requirements_for, Rig, PRICE};

fn config_text(chain: &TestChain, dir: &std::path::Path, key: &str, ledger: &str) -> Config {
    let key_file = dir.join(format!("signer-{}.key", &key[2..10]));
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let text = format!(
        r#"
[ledger]
{ledger}

[[networks]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_key_file = "{key}"
receipt_timeout_secs = 30
"#,
        network = chain.caip2(),
        rpc = chain.endpoint(),
        key = key_file.display(),
    );
    let config = Config::parse(&text).unwrap();
    config.validate().unwrap();
    config
}

async fn rig_with(ledger_lines: impl FnOnce(&std::path::Path) -> String) -> Rig {
    Rig::start(|chain, dir| config_text(chain, dir, DEV_KEYS[0], &ledger_lines(dir))).await
}

async fn rig() -> Rig {
    rig_with(|dir| format!("path = \"{}\"", dir.join("ledger.db").display())).await
}

fn key(n: usize) -> IdempotencyKey {
    format!("attempt-{n:016}").parse().unwrap()
}

impl Rig {
    /// Each body in `bodies` posted at once, under its own key from `keys`.
    async fn post_each(
        &self,
        path: &str,
        bodies: &[Value],
        keys: &[IdempotencyKey],
    ) -> Vec<(u16, Value)> {
        futures::future::join_all(
            bodies
                .iter()
                .zip(keys)
                .map(|(b, k)| self.post(path, b, Some(k.as_str()))),
        )
        .await
    }
}

async fn tx_count(chain: &TestChain, who: Address) -> u64 {
    support::tx_count_at(chain, who, "latest").await
}

/// `n` copies of `body`, every other one [`reencoded`].
fn alternating_copies(body: &Value, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                body.clone()
            } else {
                reencoded(body)
            }
        })
        .collect()
}

/// The same authorization written differently: hex digits upper-case in every hex field.
fn reencoded(body: &Value) -> Value {
    let mut copy = body.clone();
    let payload = &mut copy["paymentPayload"]["payload"];
    let upper = |v: &Value| {
        let s = v.as_str().unwrap();
        Value::String(format!("0x{}", s[2..].to_ascii_uppercase()))
    };
    payload["signature"] = upper(&payload["signature"]);
    for field in ["from", "to", "nonce"] {
        payload["authorization"][field] = upper(&payload["authorization"][field]);
    }
    assert_ne!(&copy, body);
    copy
}

#[tokio::test]
async fn a_settled_payment_is_answered_again_only_to_its_own_attempt() {
    let r = rig().await;
    let payment = r.pay(1).await;
    let body = r.body(&payment);
    let before = r.balance(r.payee).await;
    let k1 = key(1);

    let (status, v) = r.post("/verify", &body, Some(k1.as_str())).await;
    assert_eq!(status, 200, "{v}");
    let (status, first) = r.post("/settle", &body, Some(k1.as_str())).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["success"], true);
    let tx = first["transaction"].as_str().unwrap().to_owned();
    let sent = r.sent().await;

    // The same attempt with the same payment, in either encoding, gets the original answer.
    for again in [body.clone(), reencoded(&body)] {
        let (status, s) = r.post("/settle", &again, Some(k1.as_str())).await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["success"], true);
        assert_eq!(s["transaction"], tx.as_str());
    }

    // Another attempt, or none: the nonce is used.
    for other in [Some(key(2)), None] {
        let (status, s) = r
            .post("/settle", &body, other.as_ref().map(|k| k.as_str()))
            .await;
        assert_eq!(status, 400, "{s}");
        assert_eq!(s["success"], false);
        assert_eq!(s["errorReason"], "invalid_exact_evm_nonce_already_used");
        assert_eq!(s["transaction"], "");
    }

    // The same attempt with a forged signature or other terms is not the same payment.
    let mut forged = body.clone();
    let sig = forged["paymentPayload"]["payload"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    forged["paymentPayload"]["payload"]["signature"] = json!(format!(
        "{}{}",
        &sig[..10],
        "ab".repeat((sig.len() - 10) / 2)
    ));
    let mut later = body.clone();
    let vb: u64 = later["paymentPayload"]["payload"]["authorization"]["validBefore"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    later["paymentPayload"]["payload"]["authorization"]["validBefore"] =
        json!((vb + 1).to_string());
    let mut cheaper = body.clone();
    cheaper["paymentRequirements"]["payTo"] = json!(TestChain::address(7).to_string());
    for bad in [&forged, &later, &cheaper] {
        let (status, s) = r.post("/settle", bad, Some(k1.as_str())).await;
        assert_eq!(status, 400, "{s}");
        assert_eq!(s["success"], false, "{s}");
        assert_ne!(s["transaction"], tx.as_str());
    }

    // Verification after settlement is invalid for everyone.
    for k in [Some(k1.clone()), Some(key(3)), None] {
        let (status, v) = r
            .post("/verify", &body, k.as_ref().map(|k| k.as_str()))
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["isValid"], false);
        assert_eq!(v["invalidReason"], "invalid_exact_evm_nonce_already_used");
    }
    assert_eq!(r.balance(r.payee).await, before + U256::from(PRICE));
    assert_eq!(r.sent().await, sent, "no transaction after the first");

    // One ledger row for every encoding, owned by the attempt that settled it.
    let evm = tollgate_evm::ExactEvmPayload::from_payment(&payment).unwrap();
    let key = PaymentKey::new(
        &r.chain.caip2(),
        "exact",
        &r.chain.usdc.to_string(),
        &evm.authorization.from.to_string(),
        &evm.authorization.nonce.to_string(),
    );
    let row = r.facilitator.ledger().get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, SettlementState::Confirmed);
    assert_eq!(row.attempt.as_deref(), Some(k1.as_str()));
    assert_eq!(row.tx_hash.as_deref(), Some(tx.as_str()));
    assert_eq!(
        r.facilitator.ledger().count_by_state().await.unwrap(),
        vec![("confirmed".to_string(), 1)]
    );
}

#[tokio::test]
async fn keyless_settlement_happens_once_and_is_never_repeated() {
    let r = rig().await;
    let payment = r.pay(2).await;
    let body = r.body(&payment);
    let (status, v) = r.post("/verify", &body, None).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = r.post("/verify", &body, None).await;
    assert_eq!(status, 200, "keyless verify reserves nothing: {v}");
    let (status, s) = r.post("/settle", &body, None).await;
    assert_eq!(status, 200, "{s}");
    let (status, s) = r.post("/settle", &body, None).await;
    assert_eq!(status, 400, "{s}");
    assert_eq!(s["errorReason"], "invalid_exact_evm_nonce_already_used");
    let (status, s) = r.post("/settle", &body, Some(key(1).as_str())).await;
    assert_eq!(status, 400, "{s}");
    assert_eq!(s["errorReason"], "invalid_exact_evm_nonce_already_used");
}

#[tokio::test]
async fn concurrent_verifications_under_different_keys_reserve_for_one() {
    let r = rig().await;
    let payment = r.pay(3).await;
    let body = r.body(&payment);
    let copies = alternating_copies(&body, 20);
    let keys: Vec<IdempotencyKey> = (0..20).map(key).collect();
    let results = r.post_each("/verify", &copies, &keys).await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (status, v) in &results {
        if *status != 200 {
            assert_eq!(*status, 400);
            assert_eq!(v["invalidReason"], "payment_in_use", "{v}");
        }
    }
    let owner = &keys[winners[0]];

    // Without a key, or with another, the reserved payment is in use; its owner re-verifies.
    let (status, v) = r.post("/verify", &body, None).await;
    assert_eq!(
        (status, v["invalidReason"].clone()),
        (400, json!("payment_in_use"))
    );
    let (status, s) = r.post("/settle", &body, None).await;
    assert_eq!(
        (status, s["errorReason"].clone()),
        (400, json!("payment_in_use"))
    );
    let (status, s) = r.post("/settle", &body, Some(key(99).as_str())).await;
    assert_eq!(
        (status, s["errorReason"].clone()),
        (400, json!("payment_in_use"))
    );
    let (status, _) = r.post("/verify", &body, Some(owner.as_str())).await;
    assert_eq!(status, 200);
    let (status, s) = r.post("/settle", &body, Some(owner.as_str())).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["success"], true);
}

#[tokio::test]
async fn fifty_attempts_with_re_encoded_copies_settle_one_payment_once() {
    let r = rig().await;
    let payment = r.pay(4).await;
    let body = r.body(&payment);
    let before = r.balance(r.payee).await;
    let sent_before = r.sent().await;
    let copies = alternating_copies(&body, 50);
    let keys: Vec<IdempotencyKey> = (100..150).map(key).collect();
    let results = r.post_each("/settle", &copies, &keys).await;
    let successes: Vec<&Value> = results
        .iter()
        .filter(|(_, s)| s["success"] == true)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(successes.len(), 1, "{results:?}");
    for (status, s) in &results {
        if s["success"] != true {
            assert_eq!(*status, 400, "{s}");
            let reason = s["errorReason"].as_str().unwrap();
            assert!(
                reason == "payment_in_use" || reason == "invalid_exact_evm_nonce_already_used",
                "{s}"
            );
        }
    }
    assert_eq!(r.balance(r.payee).await, before + U256::from(PRICE));
    assert_eq!(r.sent().await, sent_before + 1, "one transfer on chain");
}

fn with_identifier(body: &Value, extension: Value) -> Value {
    let mut b = body.clone();
    b["paymentPayload"]["extensions"] = json!({ "payment-identifier": extension });
    b
}

#[tokio::test]
async fn payment_identifier_replays_the_same_payment_and_conflicts_on_another() {
    let r = rig().await;
    let id: IdempotencyKey = "pay_7d5d747be160e280504c099d984bcfe0".parse().unwrap();
    let first = with_identifier(&r.body(&r.pay(5).await), PaymentIdentifier::echo(&id, true));
    let (status, s) = r.post("/settle", &first, None).await;
    assert_eq!(status, 200, "{s}");
    let tx = s["transaction"].clone();
    let (status, again) = r.post("/settle", &first, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["transaction"], tx);

    // The same id with another payment: 409 at /verify and /settle, and nothing moves.
    let sent = r.sent().await;
    let other = with_identifier(
        &r.body(&r.pay(5).await),
        PaymentIdentifier::echo(&id, false),
    );
    let (status, v) = r.post("/verify", &other, None).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["invalidReason"], "payment_identifier_conflict");
    let (status, s) = r.post("/settle", &other, None).await;
    assert_eq!(status, 409, "{s}");
    assert_eq!(s["errorReason"], "payment_identifier_conflict");
    // ...and the same when the id is the Idempotency-Key header.
    let plain = r.body(&r.pay(5).await);
    let (status, _) = r.post("/settle", &plain, Some(id.as_str())).await;
    assert_eq!(status, 409);
    assert_eq!(r.sent().await, sent);

    // Malformed ids, and a required id that is missing: 400.
    for bad in [
        json!({"info": {"required": false, "id": "short"}}),
        json!({"info": {"required": false, "id": "has spaces in it, long enough"}}),
        json!({"info": "nope"}),
        json!({"info": {"required": true}}),
    ] {
        let b = with_identifier(&plain, bad.clone());
        for path in ["/verify", "/settle"] {
            let (status, v) = r.post(path, &b, None).await;
            assert_eq!(status, 400, "{path} {bad}: {v}");
            let reason = v.get("invalidReason").or(v.get("errorReason")).unwrap();
            assert_eq!(reason, "invalid_payment_identifier", "{v}");
        }
    }
    for header in ["short", "has spaces in it, long enough"] {
        for path in ["/verify", "/settle"] {
            let (status, v) = r.post(path, &plain, Some(header)).await;
            assert_eq!(status, 400, "{v}");
        }
    }
    assert_eq!(r.sent().await, sent);
}

#[tokio::test]
async fn an_asset_without_code_is_refused_before_any_gas_is_spent() {
    let r = rig().await;
    let nowhere = Address::repeat_byte(0x42);
    let requirements = requirements_for(&r.chain, r.payee, nowhere);
    let payment = support::sign(&requirements, 6).await;
    let body = support::body(&payment, &requirements);
    let sent = r.sent().await;
    let (status, v) = r.post("/verify", &body, None).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["invalidReason"], "asset_not_deployed_contract");
    let (status, s) = r.post("/settle", &body, None).await;
    assert_eq!(status, 400, "{s}");
    assert_eq!(s["errorReason"], "asset_not_deployed_contract");
    assert_eq!(r.sent().await, sent);
}

#[tokio::test]
async fn a_value_with_a_leading_zero_is_refused() {
    let r = rig().await;
    let body = r.body(&r.pay(7).await);
    for bad in [
        format!("0{PRICE}"),
        format!("+{PRICE}"),
        format!(" {PRICE}"),
        "1e4".into(),
    ] {
        let mut b = body.clone();
        b["paymentPayload"]["payload"]["authorization"]["value"] = json!(bad);
        let (status, v) = r.post("/verify", &b, None).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["invalidReason"], "invalid_payload", "{v}");
        let (status, s) = r.post("/settle", &b, None).await;
        assert_eq!(status, 400, "{bad}: {s}");
    }
    let (status, _) = r.post("/verify", &body, None).await;
    assert_eq!(status, 200);
}

/// A settle that does not verify writes no payment row and binds no key: unauthenticated
/// garbage cannot grow the settlement table.
#[tokio::test]
async fn refused_settlements_leave_no_ledger_rows() {
    let r = rig().await;
    for i in 0..5 {
        let mut body = r.body(&r.pay(6).await);
        let sig = body["paymentPayload"]["payload"]["signature"]
            .as_str()
            .unwrap()
            .to_owned();
        body["paymentPayload"]["payload"]["signature"] = json!(format!(
            "{}{}",
            &sig[..10],
            "cd".repeat((sig.len() - 10) / 2)
        ));
        let k = key(500 + i);
        let (status, s) = r.post("/settle", &body, Some(k.as_str())).await;
        assert_eq!(status, 400, "{s}");
        let (status, v) = r.post("/verify", &body, Some(k.as_str())).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(
            r.facilitator
                .ledger()
                .attempt_binding(k.as_str())
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        r.facilitator.ledger().count_by_state().await.unwrap(),
        vec![]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_invalid_verifications_leave_the_event_log_bounded() {
    let r = rig().await;
    // The bound as an operator configures it; the ledger in memory only so that 100,000
    // inserts do not each wait for a disk flush (the SQL is the same as on a file).
    let config = config_text(
        &r.chain,
        r._dir.path(),
        DEV_KEYS[0],
        "path = \"unused.db\"\nevents_max_rows = 1000",
    );
    let scheme = tollgate_evm::ExactEvmFacilitator::connect(
        &r.chain.endpoint(),
        TestChain::signer(0),
        Default::default(),
    )
    .await
    .unwrap();
    let ledger = Ledger::in_memory()
        .unwrap()
        .with_retention(config.ledger.retention());
    let facilitator = Facilitator::new(vec![scheme], ledger);
    let mut body = r.body(&r.pay(8).await);
    body["paymentPayload"]["payload"]["authorization"]["value"] = json!("oops");
    let request: FacilitatorRequest = serde_json::from_value(body).unwrap();
    let ledger = facilitator.ledger();
    for round in 0..100 {
        let calls = (0..1000).map(|_| facilitator.verify(&request));
        for outcome in futures::future::join_all(calls).await {
            assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
        }
        let rows = ledger.count_all_events().await.unwrap();
        assert!(rows <= 1000, "round {round}: {rows} events");
    }
    assert_eq!(ledger.count_all_events().await.unwrap(), 1000);
    assert_eq!(
        ledger.count_events("verify", "invalid").await.unwrap(),
        1000
    );
}

/// Two facilitator instances on one PostgreSQL ledger: attempts racing for one payment across
/// them get one reservation and one settlement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_ledger_settle_for_one_attempt() {
    let pg = Postgres::start().unwrap();
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("url = \"{}\"", pg.url());
    let a = config_text(&chain, dir.path(), DEV_KEYS[0], &ledger);
    let b = config_text(&chain, dir.path(), DEV_KEYS[9], &ledger);
    let (fa, _) = Facilitator::from_config(&a).await.unwrap();
    let (fb, _) = Facilitator::from_config(&b).await.unwrap();
    let payee = TestChain::address(8);
    let requirements = requirements_for(&chain, payee, chain.usdc);
    let sign = |payer: usize| {
        let requirements = requirements.clone();
        async move {
            let p = support::sign(&requirements, payer).await;
            FacilitatorRequest::V2 {
                payment_payload: p,
                payment_requirements: requirements,
            }
        }
    };
    let signers = [TestChain::address(0), TestChain::address(9)];
    let sent = || async { tx_count(&chain, signers[0]).await + tx_count(&chain, signers[1]).await };
    let before = chain.usdc_balance(payee).await.unwrap();
    let sent_before = sent().await;

    // Verification: keys racing on both instances, one reservation.
    let request = sign(1).await;
    let keys: Vec<IdempotencyKey> = (0..16).map(key).collect();
    let verdicts = futures::future::join_all(keys.iter().enumerate().map(|(i, k)| {
        let f = if i % 2 == 0 { &fa } else { &fb };
        f.verify_attempt(&request, Some(k))
    }))
    .await;
    let valid: Vec<usize> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Outcome::Ok(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(valid.len(), 1, "{verdicts:?}");
    let owner = &keys[valid[0]];
    let settles = futures::future::join_all(keys.iter().enumerate().map(|(i, k)| {
        let f = if i % 2 == 0 { &fb } else { &fa };
        f.settle_attempt(&request, Some(k))
    }))
    .await;
    let ok: Vec<usize> = settles
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Outcome::Ok(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ok, vec![valid[0]], "{settles:?}");
    // The owner's retry on the other instance gets the same transaction.
    let tx = settles[valid[0]].body().transaction.clone();
    for f in [&fa, &fb] {
        let again = f.settle_attempt(&request, Some(owner)).await;
        assert!(
            matches!(&again, Outcome::Ok(b) if b.transaction == tx),
            "{again:?}"
        );
    }

    // Settlement without a prior verification: two keys race, one settles.
    let request = sign(2).await;
    let racers: Vec<IdempotencyKey> = (200..220).map(key).collect();
    let settles = futures::future::join_all(racers.iter().enumerate().map(|(i, k)| {
        let f = if i % 2 == 0 { &fa } else { &fb };
        f.settle_attempt(&request, Some(k))
    }))
    .await;
    let wins = settles
        .iter()
        .filter(|o| matches!(o, Outcome::Ok(_)))
        .count();
    assert_eq!(wins, 1, "{settles:?}");
    for o in &settles {
        if !matches!(o, Outcome::Ok(_)) {
            assert!(matches!(o, Outcome::Rejected(_)), "{o:?}");
        }
    }
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        before + U256::from(2 * PRICE)
    );
    assert_eq!(sent().await - sent_before, 2, "one transaction per payment");
}

/// Unique names for this file's keys, checked once so a typo cannot make two "different"
/// attempts equal.
#[test]
fn test_keys_are_distinct() {
    let keys: HashSet<_> = (0..300).map(key).collect();
    assert_eq!(keys.len(), 300);
}

/// A PostgreSQL ledger created before attempts existed gains the new columns and tables when
/// an instance connects, keeps its rows, and bounds its event log like SQLite does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_postgres_ledger_is_migrated_in_place() {
    let pg = Postgres::start().unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE settlements (
                network TEXT NOT NULL, asset TEXT NOT NULL, payer TEXT NOT NULL,
                nonce TEXT NOT NULL, state TEXT NOT NULL, amount TEXT NOT NULL,
                pay_to TEXT NOT NULL, tx_hash TEXT, error_reason TEXT,
                payment_json TEXT NOT NULL, created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL, PRIMARY KEY (network, asset, payer, nonce));
             CREATE TABLE events (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, kind TEXT NOT NULL,
                network TEXT NOT NULL, payer TEXT, nonce TEXT, outcome TEXT NOT NULL,
                reason TEXT, tx_hash TEXT);
             INSERT INTO settlements VALUES ('eip155:1', '0xaa', '0xbb', '0xcc', 'confirmed',
                '10', '0xdd', '0x01', NULL, '{}', 1, 1);",
        )
        .await
        .unwrap();
    drop(client);
    conn.await.unwrap().unwrap();

    let ledger = Ledger::connect_postgres(&pg.url())
        .await
        .unwrap()
        .with_retention(tollgate_facilitator::ledger::Retention {
            events_max_rows: 100,
            ..Default::default()
        });
    let key = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0xcc");
    let row = ledger.get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, SettlementState::Confirmed);
    assert_eq!(row.attempt, None);
    assert!(!ledger
        .reserve(
            &row,
            "k-0123456789abcdef",
            std::time::Duration::from_secs(30)
        )
        .await
        .unwrap());
    let fresh = PaymentKey::new("eip155:1", "exact", "0xaa", "0xbb", "0xdd");
    let entry = tollgate_facilitator::ledger::LedgerEntry {
        key: fresh.clone(),
        state: SettlementState::Verified,
        valid_before: Some(i64::MAX),
        ..row.clone()
    };
    assert!(ledger
        .reserve(
            &entry,
            "k-0123456789abcdef",
            std::time::Duration::from_secs(30)
        )
        .await
        .unwrap());
    assert!(!ledger
        .reserve(
            &entry,
            "k-fedcba9876543210",
            std::time::Duration::from_secs(30)
        )
        .await
        .unwrap());
    assert_eq!(
        ledger
            .bind_attempt("k-0123456789abcdef", &fresh)
            .await
            .unwrap(),
        fresh
    );
    assert_eq!(
        ledger
            .bind_attempt("k-0123456789abcdef", &key)
            .await
            .unwrap(),
        fresh
    );
    for _ in 0..250 {
        ledger
            .record(tollgate_facilitator::ledger::Event {
                kind: "verify",
                network: "eip155:1",
                outcome: "invalid",
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(ledger.count_all_events().await.unwrap(), 100);
    // A second instance connecting to the migrated database changes nothing.
    let again = Ledger::connect_postgres(&pg.url()).await.unwrap();
    assert_eq!(
        again.get(&fresh).await.unwrap().unwrap().attempt.as_deref(),
        Some("k-0123456789abcdef")
    );
}
