//! A hostile caller of the facilitator's (unauthenticated) HTTP API, against a real token on
//! anvil (or the devnet): variants of one payment that must never earn a second "success",
//! strangers racing or squatting an honest seller's attempt, hostile bodies and headers that
//! must never cause a 5xx or leak a secret, and valid traffic that must not grow the ledger
//! without bound.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use serde_json::{json, Value};
use tollgate_evm::{AuthorizationWindow, ExactEvmClient};
use tollgate_facilitator::ledger::{LedgerEntry, PaymentKey};
use tollgate_facilitator::{Config, Facilitator};
use tollgate_proto::idempotency::PaymentIdentifier;
use tollgate_proto::{IdempotencyKey, PaymentPayload};
use tollgate_testkit::{Postgres, TestChain, DEV_KEYS};

mod support;

use support::{now, Rig, PRICE};

async fn rig_with(extra_ledger_lines: &str) -> Rig {
    rig_at(extra_ledger_lines, "").await
}

/// A rig whose RPC URL is the node's with `rpc_suffix` appended (e.g. an API key).
async fn rig_at(extra_ledger_lines: &str, rpc_suffix: &str) -> Rig {
    Rig::start(|chain, dir| {
        let key_file = dir.join("signer.key");
        std::fs::write(&key_file, format!("{}\n", DEV_KEYS[0])).unwrap();
        let rpc_url = format!("{}{rpc_suffix}", chain.endpoint());
        let text = format!(
            r#"
[ledger]
path = "{ledger}"
{extra_ledger_lines}

[[networks]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_key_file = "{key}"
receipt_timeout_secs = 30
"#,
            ledger = dir.join("ledger.db").display(),
            network = chain.caip2(),
            rpc = rpc_url,
            key = key_file.display(),
        );
        let config = Config::parse(&text).unwrap();
        config.validate().unwrap();
        config
    })
    .await
}

async fn rig() -> Rig {
    rig_with("").await
}

fn key(n: usize) -> IdempotencyKey {
    format!("hostile-{n:016}").parse().unwrap()
}

impl Rig {
    /// A payment valid for ten years.
    async fn pay_long_lived(&self, payer: usize) -> PaymentPayload {
        let window = AuthorizationWindow {
            valid_after: now() - 60,
            valid_before: now() + 10 * 365 * 24 * 3600,
            nonce: B256::random(),
        };
        ExactEvmClient::new(TestChain::signer(payer))
            .sign_with_window(&self.requirements, None, window)
            .await
            .unwrap()
    }

    /// POSTs raw JSON `bytes` to `path`: the status and the answer's text.
    async fn post_raw(&self, path: &str, bytes: impl Into<reqwest::Body>) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Verifies `n` long-lived payments of payer 5 without a key: their ledger keys.
    async fn verify_long_lived_keyless(&self, n: usize) -> Vec<PaymentKey> {
        let mut keys = Vec::new();
        for _ in 0..n {
            let payment = self.pay_long_lived(5).await;
            let (status, v) = self.post("/verify", &self.body(&payment), None).await;
            assert_eq!(status, 200, "{v}");
            keys.push(self.payment_key(&payment));
        }
        keys
    }

    /// The ledger's row for `payment`, which must exist.
    async fn row(&self, payment: &PaymentPayload) -> LedgerEntry {
        self.facilitator
            .ledger()
            .get(&self.payment_key(payment))
            .await
            .unwrap()
            .unwrap()
    }

    fn payment_key(&self, payment: &PaymentPayload) -> PaymentKey {
        let auth = &payment.payload["authorization"];
        let from: Address = auth["from"].as_str().unwrap().parse().unwrap();
        let nonce: B256 = auth["nonce"].as_str().unwrap().parse().unwrap();
        PaymentKey::new(
            &self.chain.caip2(),
            "exact",
            &self.chain.usdc.to_string(),
            &from.to_string(),
            &nonce.to_string(),
        )
    }
}

/// Sets `field` of the requirements and of the payment's `accepted` copy alike.
fn with_terms(body: &Value, field: &str, value: Value) -> Value {
    let mut b = body.clone();
    b["paymentRequirements"][field] = value.clone();
    b["paymentPayload"]["accepted"][field] = value;
    b
}

/// The same signature with its recovery byte written as 0/1 instead of 27/28: other bytes,
/// the same ECDSA signature of the same authorization.
fn with_raw_v(body: &Value) -> Value {
    let mut b = body.clone();
    let sig = b["paymentPayload"]["payload"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = u8::from_str_radix(&sig[sig.len() - 2..], 16).unwrap();
    assert!(v == 27 || v == 28, "{sig}");
    b["paymentPayload"]["payload"]["signature"] =
        Value::String(format!("{}{:02x}", &sig[..sig.len() - 2], v - 27));
    b
}

/// The same authorization with the signature's `s` replaced by `n - s` (and `v` flipped): the
/// malleated twin, valid for `ecrecover` but refused by EIP-2 tokens.
fn with_high_s(body: &Value) -> Value {
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    with_signature(body, |r, s, v| {
        let flipped = if v == 27 { 28 } else { 27 };
        format!("{r}{:064x}{:02x}", n - s, flipped)
    })
}

/// The same signature in EIP-2098 compact form (64 bytes: `r ‖ yParity·2²⁵⁵ + s`).
fn with_compact_signature(body: &Value) -> Value {
    with_signature(body, |r, s, v| {
        let vs = s | (U256::from(v - 27) << 255);
        format!("{r}{vs:064x}")
    })
}

/// `body` with its 65-byte signature rewritten by `rewrite` from its parts: `0x‖r` (hex),
/// `s` and `v`.
fn with_signature(body: &Value, rewrite: impl FnOnce(&str, U256, u8) -> String) -> Value {
    let mut b = body.clone();
    let sig = b["paymentPayload"]["payload"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = U256::from_str_radix(&sig[66..130], 16).unwrap();
    let v = u8::from_str_radix(&sig[130..132], 16).unwrap();
    b["paymentPayload"]["payload"]["signature"] = Value::String(rewrite(&sig[..66], s, v));
    b
}

/// The same payment as an x402 v1 request.
fn as_v1(body: &Value) -> Value {
    let r = &body["paymentRequirements"];
    json!({
        "x402Version": 1,
        "paymentPayload": {
            "x402Version": 1,
            "scheme": "exact",
            "network": r["network"],
            "payload": body["paymentPayload"]["payload"],
        },
        "paymentRequirements": {
            "scheme": "exact",
            "network": r["network"],
            "maxAmountRequired": r["amount"],
            "resource": "http://example.test/weather",
            "description": "",
            "mimeType": "",
            "payTo": r["payTo"],
            "maxTimeoutSeconds": r["maxTimeoutSeconds"],
            "asset": r["asset"],
            "extra": r["extra"],
        }
    })
}

fn lower(v: &Value) -> Value {
    Value::String(v.as_str().unwrap().to_ascii_lowercase())
}

/// Once a payment is settled, no spelling of it — v1, another case of the asset or payee, a
/// zero-padded chain id, another encoding or a malleated twin of the signature, lower terms —
/// earns "success" for anyone but its own attempt presenting the very same payment, and the
/// token moves once.
#[tokio::test]
async fn variants_of_a_settled_payment_never_get_a_second_success() {
    let r = rig().await;
    let payment = r.pay(1).await;
    let body = r.body(&payment);
    let before = r.balance(r.payee).await;
    let owner = key(1);
    let (status, v) = r.post("/verify", &body, Some(owner.as_str())).await;
    assert_eq!(status, 200, "{v}");
    let (status, first) = r.post("/settle", &body, Some(owner.as_str())).await;
    assert_eq!(status, 200, "{first}");
    let tx = first["transaction"].clone();
    let sent = r.sent().await;

    let chain_id = r.chain.chain_id();
    let variants: Vec<(&str, Value)> = vec![
        ("same bytes", body.clone()),
        ("x402 v1", as_v1(&body)),
        (
            "asset lower case",
            with_terms(&body, "asset", lower(&body["paymentRequirements"]["asset"])),
        ),
        (
            "payTo lower case",
            with_terms(&body, "payTo", lower(&body["paymentRequirements"]["payTo"])),
        ),
        (
            "zero-padded chain id",
            with_terms(&body, "network", json!(format!("eip155:0{chain_id}"))),
        ),
        ("v as 0/1", with_raw_v(&body)),
        ("high-s twin", with_high_s(&body)),
        ("EIP-2098 compact", with_compact_signature(&body)),
        (
            "maxTimeoutSeconds changed",
            with_terms(&body, "maxTimeoutSeconds", json!(5)),
        ),
    ];
    let mut answers = Vec::new();
    for (label, variant) in &variants {
        for attempt in [None, Some(key(2))] {
            let name = attempt.as_ref().map(|k| k.as_str());
            let (status, s) = r.post("/settle", variant, name).await;
            assert_ne!(s["success"], true, "{label} under {name:?}: {s}");
            assert!((400..500).contains(&status), "{label}: {status} {s}");
            let (status, v) = r.post("/verify", variant, name).await;
            assert_ne!(v["isValid"], true, "{label} under {name:?}: {v}");
            assert!((400..500).contains(&status), "{label}: {status} {v}");
            answers.push(s["errorReason"].clone());
        }
    }
    // The owner itself gets nothing for other terms, or for other signature bytes.
    for (label, variant) in [
        (
            "lower amount",
            with_terms(&body, "amount", json!((PRICE - 1).to_string())),
        ),
        (
            "other payTo",
            with_terms(&body, "payTo", json!(TestChain::address(8).to_string())),
        ),
        ("v as 0/1", with_raw_v(&body)),
        ("high-s twin", with_high_s(&body)),
    ] {
        let (status, s) = r.post("/settle", &variant, Some(owner.as_str())).await;
        assert_ne!(s["success"], true, "owner, {label}: {s}");
        assert!((400..500).contains(&status), "owner, {label}: {status} {s}");
    }
    // ...while the very same payment under its own attempt (v1 or v2) is answered again.
    for same in [body.clone(), as_v1(&body)] {
        let (status, s) = r.post("/settle", &same, Some(owner.as_str())).await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["transaction"], tx);
    }
    assert_eq!(r.sent().await, sent, "nothing else was sent: {answers:?}");
    assert_eq!(r.balance(r.payee).await, before + U256::from(PRICE));
}

/// A stranger holding a copy of the buyer's header who verifies it first, under its own key
/// and with a huge `maxTimeoutSeconds`, holds the payment for at most an hour; it can settle
/// it — the money still goes to `payTo`, once — but the honest seller is then told the nonce
/// is used, never "success". A `maxTimeoutSeconds` of 0 still reserves for 30 s.
#[tokio::test]
async fn a_stranger_who_reserves_first_only_delays_and_nothing_is_paid_twice() {
    let r = rig().await;
    let payment = r.pay(2).await;
    let body = r.body(&payment);
    let before = r.balance(r.payee).await;
    let sent = r.sent().await;
    let (stranger, honest) = (key(10), key(11));

    let greedy = with_terms(&body, "maxTimeoutSeconds", json!(u64::MAX));
    let (status, v) = r.post("/verify", &greedy, Some(stranger.as_str())).await;
    assert_eq!(status, 200, "{v}");
    let row = r.row(&payment).await;
    let lease_ms = row.lease_until.unwrap() - now() as i64 * 1000;
    assert!(
        lease_ms <= 3_600_000 + 5_000,
        "lease capped at an hour, got {lease_ms} ms"
    );

    for path in ["/verify", "/settle"] {
        let (status, v) = r.post(path, &body, Some(honest.as_str())).await;
        assert_eq!(status, 400, "{v}");
        let reason = v.get("invalidReason").or(v.get("errorReason")).unwrap();
        assert_eq!(reason, "payment_in_use", "{v}");
    }
    let (status, s) = r.post("/settle", &body, Some(stranger.as_str())).await;
    assert_eq!(status, 200, "{s}");
    for attempt in [Some(honest.as_str()), None] {
        let (status, s) = r.post("/settle", &body, attempt).await;
        assert_eq!(status, 400, "{s}");
        assert_eq!(s["errorReason"], "invalid_exact_evm_nonce_already_used");
    }
    assert_eq!(r.balance(r.payee).await, before + U256::from(PRICE));
    assert_eq!(r.sent().await, sent + 1);

    // maxTimeoutSeconds 0: still a real reservation.
    let quick = r.pay(2).await;
    let zero = with_terms(&r.body(&quick), "maxTimeoutSeconds", json!(0));
    let (status, v) = r.post("/verify", &zero, Some(key(12).as_str())).await;
    assert_eq!(status, 200, "{v}");
    let row = r.row(&quick).await;
    assert!(row.lease_until.unwrap() >= (now() as i64 + 29) * 1000);
    let (status, v) = r.post("/verify", &zero, Some(key(13).as_str())).await;
    assert_eq!(
        (status, v["invalidReason"].clone()),
        (400, json!("payment_in_use"))
    );
}

/// `/verify` and `/settle` racing under many keys (and none), on one payment that was never
/// verified: one settlement succeeds, one transfer. Keys that lost never get bound to the
/// payment, so a flood of keys leaves no rows behind.
#[tokio::test]
async fn verify_and_settle_racing_under_many_keys_settle_once_and_bind_nothing_else() {
    let r = rig().await;
    let payment = r.pay(3).await;
    let body = r.body(&payment);
    let before = r.balance(r.payee).await;
    let sent = r.sent().await;
    let verify_keys: Vec<IdempotencyKey> = (100..110).map(key).collect();
    let settle_keys: Vec<IdempotencyKey> = (200..210).map(key).collect();
    let verifies = futures::future::join_all(
        verify_keys
            .iter()
            .map(|k| r.post("/verify", &body, Some(k.as_str()))),
    );
    let settles = futures::future::join_all(
        settle_keys
            .iter()
            .map(|k| Some(k.as_str()))
            .chain([None, None, None])
            .map(|k| r.post("/settle", &body, k)),
    );
    let (verified, settled) = tokio::join!(verifies, settles);
    let successes = settled.iter().filter(|(_, s)| s["success"] == true).count();
    let owners: Vec<&IdempotencyKey> = verify_keys
        .iter()
        .zip(&verified)
        .filter(|(_, (status, _))| *status == 200)
        .map(|(k, _)| k)
        .collect();
    for (status, s) in settled.iter().chain(&verified) {
        assert!(*status == 200 || *status == 400, "{status} {s}");
    }
    // Either a settlement won the race, or one verification reserved the payment first (and
    // every settlement was told it is in use): then its owner, and only it, settles.
    match (successes, owners.as_slice()) {
        (1, _) => {}
        (0, [owner]) => {
            let (status, s) = r.post("/settle", &body, Some(owner.as_str())).await;
            assert_eq!(status, 200, "{s}");
        }
        _ => panic!("{successes} settlements, owners {owners:?}: {settled:?} {verified:?}"),
    }
    assert_eq!(r.balance(r.payee).await, before + U256::from(PRICE));
    assert_eq!(r.sent().await, sent + 1);

    // Fifty more keys, each refused, none bound.
    let ledger = r.facilitator.ledger();
    for n in 300..350 {
        let k = key(n);
        let (status, v) = r.post("/verify", &body, Some(k.as_str())).await;
        assert_eq!(status, 400, "{v}");
        let (status, s) = r.post("/settle", &body, Some(k.as_str())).await;
        assert_eq!(status, 400, "{s}");
        assert_eq!(ledger.attempt_binding(k.as_str()).await.unwrap(), None);
    }
}

/// Bodies and headers a hostile caller may send: each is a 4xx with a JSON reason — never a
/// 5xx, never the signer's key — and the facilitator still serves an honest request after.
#[tokio::test]
async fn hostile_bodies_and_headers_are_4xx_and_leak_nothing() {
    let r = rig().await;
    let payment = r.pay(4).await;
    let body = r.body(&payment);
    let text = body.to_string();

    let mut numbers = body.clone();
    numbers["paymentRequirements"]["amount"] = json!(PRICE);
    numbers["paymentPayload"]["payload"]["authorization"]["value"] = json!(PRICE);
    let mut big_ints = body.clone();
    big_ints["paymentRequirements"]["maxTimeoutSeconds"] = json!(1e300);
    // The parser keeps the last of duplicated keys (as `JSON.parse` does): a forged nonce
    // written after the signed one is what gets checked, and refused.
    let nonce = body["paymentPayload"]["payload"]["authorization"]["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let duplicate_nonce = text.replacen(
        &format!("\"nonce\":\"{nonce}\""),
        &format!("\"nonce\":\"{nonce}\",\"nonce\":\"0x{}\"", "11".repeat(32)),
        1,
    );
    assert_ne!(duplicate_nonce, text);
    let raw: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not json", b"x402 please".to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("deep nesting", "[".repeat(100_000).into_bytes()),
        ("deep object", "{\"a\":".repeat(50_000).into_bytes()),
        (
            "huge body",
            format!("{{\"x\":\"{}\"}}", "a".repeat(1 << 20)).into_bytes(),
        ),
        ("invalid utf-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("numbers as numbers", numbers.to_string().into_bytes()),
        ("float timeout", big_ints.to_string().into_bytes()),
        (
            "x402Version 3",
            text.replace("\"x402Version\":2", "\"x402Version\":3")
                .into_bytes(),
        ),
    ];
    let secret = DEV_KEYS[0].trim_start_matches("0x").to_ascii_lowercase();
    let check = |label: &str, status: u16, answer: &str| {
        assert!((400..500).contains(&status), "{label}: {status} {answer}");
        assert!(
            !answer.to_ascii_lowercase().contains(&secret),
            "{label} leaks the signer key"
        );
    };
    for path in ["/verify", "/settle"] {
        for (label, bytes) in &raw {
            let (status, answer) = r.post_raw(path, bytes.clone()).await;
            check(label, status, &answer);
        }
        // Headers: not visible ASCII, twice, too short, too long.
        let bad_headers: Vec<(&str, Vec<reqwest::header::HeaderValue>)> = vec![
            (
                "non-utf8 key",
                vec![
                    reqwest::header::HeaderValue::from_bytes(b"abc\xff\xfedefghijklmnopq").unwrap(),
                ],
            ),
            (
                "two keys",
                vec![
                    key(1).as_str().parse().unwrap(),
                    key(2).as_str().parse().unwrap(),
                ],
            ),
            ("empty key", vec!["".parse().unwrap()]),
            ("long key", vec!["k".repeat(129).parse().unwrap()]),
        ];
        for (label, values) in bad_headers {
            let mut request = r.http.post(format!("{}{path}", r.url)).json(&body);
            for v in values {
                request = request.header("Idempotency-Key", v);
            }
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            let answer = resp.text().await.unwrap();
            check(label, status, &answer);
            assert!(
                answer.contains("invalid_payment_identifier"),
                "{label}: {answer}"
            );
        }
        // A duplicated key inside the authorization: whatever the parser keeps, it is never
        // a valid payment (the signature covers the original nonce).
        let (status, answer) = r.post_raw(path, duplicate_nonce.clone()).await;
        check("duplicate nonce", status, &answer);
    }
    let (status, v) = r.post("/verify", &body, None).await;
    assert_eq!(status, 200, "the facilitator still serves: {v}");
}

/// A payer can sign authorizations valid for years and have each verified: those rows,
/// reserved by nobody (or by a lapsed lease), must still go once they sat untouched for the
/// grace period — not only after their `validBefore`, which may never come.
#[tokio::test]
async fn valid_verifications_nobody_settles_are_pruned_even_when_they_never_expire() {
    unsettled_verifications_are_pruned(rig_with("unsettled_grace_secs = 1").await).await;
}

/// The same on a PostgreSQL ledger.
#[tokio::test]
async fn valid_verifications_nobody_settles_are_pruned_on_postgres_too() {
    let pg = Postgres::start().unwrap();
    let lines = format!("url = \"{}\"\nunsettled_grace_secs = 1", pg.url());
    unsettled_verifications_are_pruned(rig_with(&lines).await).await;
}

async fn unsettled_verifications_are_pruned(r: Rig) {
    let ledger = r.facilitator.ledger();
    let keyless = r.verify_long_lived_keyless(5).await;
    let reserved = r.pay_long_lived(5).await;
    let (status, v) = r
        .post("/verify", &r.body(&reserved), Some(key(40).as_str()))
        .await;
    assert_eq!(status, 200, "{v}");
    for k in &keyless {
        assert!(ledger.get(k).await.unwrap().is_some());
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let report = ledger.prune().await.unwrap();
    assert_eq!(report.unsettled, 5, "{report:?}");
    for k in &keyless {
        assert!(ledger.get(k).await.unwrap().is_none());
    }
    // A live reservation is kept, and its owner still settles.
    assert!(ledger
        .get(&r.payment_key(&reserved))
        .await
        .unwrap()
        .is_some());
    let (status, s) = r
        .post("/settle", &r.body(&reserved), Some(key(40).as_str()))
        .await;
    assert_eq!(status, 200, "{s}");
}

fn with_identifier(body: &Value, id: &IdempotencyKey) -> Value {
    let mut b = body.clone();
    b["paymentPayload"]["extensions"] =
        json!({ "payment-identifier": PaymentIdentifier::echo(id, false) });
    b
}

/// A `payment-identifier` id travels in the buyer's header, unsigned. A stranger who sees it
/// can put it into a payment of its own and verify that first. Where the seller names its
/// attempt with an `Idempotency-Key`, the id names nothing and must not lock the buyer's real
/// payment out (409 forever); where the id *is* the attempt name (no header), the conflict is
/// the extension's rule.
#[tokio::test]
async fn a_squatted_payment_identifier_does_not_block_a_keyed_attempt() {
    let r = rig().await;
    let id: IdempotencyKey = "pay_buyer_0123456789abcdef".parse().unwrap();
    let buyer = with_identifier(&r.body(&r.pay(6).await), &id);
    let squatter = with_identifier(&r.body(&r.pay(7).await), &id);
    let (status, v) = r.post("/verify", &squatter, None).await;
    assert_eq!(status, 200, "{v}");

    let seller = key(50);
    let (status, v) = r.post("/verify", &buyer, Some(seller.as_str())).await;
    assert_eq!(status, 200, "the seller's own attempt: {v}");
    let (status, s) = r.post("/settle", &buyer, Some(seller.as_str())).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["success"], true);
    // Copies of the buyer's header, under its id or no name at all, get nothing.
    // (Keyless, the id is the attempt name, still bound to the squatter's payment: 409.)
    for attempt in [None, Some(id.as_str())] {
        let (status, s) = r.post("/settle", &buyer, attempt).await;
        assert!(status == 400 || status == 409, "{status} {s}");
        assert_ne!(s["success"], true);
    }
}

/// RPC providers put the API key in the URL (`…/v2/<key>`, `?apikey=`). When the node is
/// unreachable, the 503 that any caller can provoke must say so without quoting that URL.
#[tokio::test]
async fn an_rpc_outage_does_not_reveal_the_rpc_url() {
    const SECRET: &str = "tollgate-rpc-api-key-0123456789";
    let r = rig_at("", &format!("/?apikey={SECRET}")).await;
    let payment = r.pay(8).await;
    let body = r.body(&payment);
    let (status, v) = r.post("/verify", &body, None).await;
    assert_eq!(status, 200, "the node answers on that URL: {v}");
    let Rig {
        chain, url, http, ..
    } = r;
    drop(chain); // the node is gone
    for path in ["/verify", "/settle"] {
        let resp = http
            .post(format!("{url}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        let answer = resp.text().await.unwrap();
        assert!(
            !answer.contains(SECRET),
            "{path} leaks the RPC URL: {answer}"
        );
        assert!(
            answer.contains("127.0.0.1"),
            "still names the node: {answer}"
        );
    }
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert!(!health.text().await.unwrap().contains(SECRET));
}

/// An authorization of value 0 moves nothing, yet settling it costs the facilitator gas — and
/// anyone can sign one with a fresh, unfunded key, as many as they like. It is not a payment:
/// refused at `/verify` and `/settle`, with nothing sent.
#[tokio::test]
async fn a_zero_value_authorization_is_refused_before_any_gas_is_spent() {
    let r = rig().await;
    let mut requirements = r.requirements.clone();
    requirements.amount = 0u64.into();
    let stranger = alloy::signers::local::PrivateKeySigner::random();
    let payment = ExactEvmClient::new(stranger)
        .sign(&requirements, None)
        .await
        .unwrap();
    let body =
        json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements });
    let sent = r.sent().await;
    for attempt in [None, Some(key(60))] {
        let name = attempt.as_ref().map(|k| k.as_str());
        let (status, v) = r.post("/verify", &body, name).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["isValid"], false);
        let (status, s) = r.post("/settle", &body, name).await;
        assert_eq!(status, 400, "{s}");
        assert_eq!(s["success"], false);
        let (status, s) = r.post("/settle", &as_v1(&body), name).await;
        assert_eq!(status, 400, "v1: {s}");
    }
    assert_eq!(r.sent().await, sent, "no gas spent");
}

/// A restart reconciles every `verified` row: one that was never sent becomes `failed`
/// (nothing moved). Those rows — a stranger's pile of long-lived verifications among them —
/// must still go after the grace period, or each restart would make them permanent.
#[tokio::test]
async fn verifications_a_restart_marked_failed_are_pruned_too() {
    let r = rig_with("unsettled_grace_secs = 1").await;
    let keys = r.verify_long_lived_keyless(3).await;
    // A paid one stays: its row is the record of a settlement.
    let paid = r.pay_long_lived(5).await;
    let (status, s) = r.post("/settle", &r.body(&paid), None).await;
    assert_eq!(status, 200, "{s}");

    // Restart on the same ledger file.
    let config = Config::parse(&format!(
        r#"
[ledger]
path = "{ledger}"
unsettled_grace_secs = 1

[[networks]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_key_file = "{key}"
"#,
        ledger = r._dir.path().join("ledger.db").display(),
        network = r.chain.caip2(),
        rpc = r.chain.endpoint(),
        key = r._dir.path().join("signer.key").display(),
    ))
    .unwrap();
    let (restarted, report) = Facilitator::from_config(&config).await.unwrap();
    assert_eq!(report.failed, 3, "{report:?}");
    let ledger = restarted.ledger();
    for k in &keys {
        let row = ledger.get(k).await.unwrap().unwrap();
        assert_eq!(
            row.state,
            tollgate_facilitator::ledger::SettlementState::Failed
        );
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let pruned = ledger.prune().await.unwrap();
    assert_eq!(pruned.unsettled, 3, "{pruned:?}");
    for k in &keys {
        assert!(ledger.get(k).await.unwrap().is_none());
    }
    assert!(ledger.get(&r.payment_key(&paid)).await.unwrap().is_some());
}

/// One attempt key used for two payments at once: one of them gets it, the other is a `409`,
/// and at most one settlement succeeds under it.
#[tokio::test]
async fn one_key_on_two_payments_at_once_binds_one() {
    let r = rig().await;
    let (a, b) = (r.body(&r.pay(6).await), r.body(&r.pay(7).await));
    let k = key(70);
    let ((sa, va), (sb, vb)) = tokio::join!(
        r.post("/verify", &a, Some(k.as_str())),
        r.post("/verify", &b, Some(k.as_str()))
    );
    let mut statuses = [sa, sb];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{va} {vb}");
    let (winner, loser) = if sa == 200 { (&a, &b) } else { (&b, &a) };
    let ((s1, x1), (s2, x2)) = tokio::join!(
        r.post("/settle", winner, Some(k.as_str())),
        r.post("/settle", loser, Some(k.as_str()))
    );
    assert_eq!((s1, s2), (200, 409), "{x1} {x2}");
    assert_eq!(x2["errorReason"], "payment_identifier_conflict");
}
