//! Identity headers and a seller's identity gate, over real HTTP on loopback: a small axum
//! seller that asks for payment, records every request's headers, and answers a paid request
//! as a gate would (`403 identity_check_failed`), as a plain `403`, or by serving it. The payer
//! is the real `exact` EVM client with a random key; the seller never settles, so no chain is
//! needed.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tollgate_client::{
    reqwest, reqwest_middleware, ExactEvmClient, IdentityHeaders, PaymentError, PendingPayment,
    PrivateKeySigner, SpendLedger, SpendStatus, SpendingPolicy, X402Middleware,
};
use tollgate_proto::{header, PaymentRequired};

const LISTED: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const UNLISTED: &str = "0x1111111111111111111111111111111111111111";
const TOKEN: &str = "op_secret_7f3a";
const WALLET: &str = "0x2222222222222222222222222222222222222222";

/// What the seller saw of one request: was it paid, and its identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    paid: bool,
    operator_token: Option<String>,
    wallet_address: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// `GET /{mode}/{payee}`: `402` (v2, Base Sepolia USDC, 0.001 to `payee`) without a payment;
/// with one, `mode` says how to answer: `served`, `gate` (a gate's JSON refusal) or `plain`
/// (`403` with a text body).
async fn seller(
    State(log): State<Log>,
    Path((mode, payee)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    let paid = headers.contains_key(header::PAYMENT_SIGNATURE);
    log.lock().unwrap().push(Seen {
        paid,
        operator_token: get("x-operator-token"),
        wallet_address: get("x-wallet-address"),
    });
    if !paid {
        let challenge: PaymentRequired = serde_json::from_value(json!({
            "x402Version": 2,
            "resource": {"url": format!("http://seller.test/{mode}/{payee}")},
            "accepts": [{
                "scheme": "exact", "network": "eip155:84532", "amount": "1000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "payTo": payee,
                "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2"},
            }],
        }))
        .unwrap();
        return (
            StatusCode::PAYMENT_REQUIRED,
            [(
                header::PAYMENT_REQUIRED,
                header::to_header_value(&challenge),
            )],
            "",
        )
            .into_response();
    }
    match mode.as_str() {
        "served" => "the data".into_response(),
        "gate" => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "error": "identity_check_failed",
                "payer": "0xpayer",
                "checks": [
                    {"rule": "require_sanctions_clear", "passed": false,
                     "reason": "the payer is on a sanctions list",
                     "remedy": "pay from a wallet that is not sanctioned"},
                    {"rule": "min_age", "passed": true},
                    {"rule": "require_kyc", "passed": false, "reason": "no KYC on record",
                     "remedy": "complete KYC with the identity provider"},
                ],
            })),
        )
            .into_response(),
        _ => (StatusCode::FORBIDDEN, "x".repeat(100_000)).into_response(),
    }
}

struct Seller {
    url: String,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Seller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_seller() -> Seller {
    let log = Log::default();
    let app = axum::Router::new()
        .route("/{mode}/{payee}", get(seller))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Seller { url, log, task }
}

impl Seller {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn middleware(budget: &str) -> X402Middleware {
    let policy = SpendingPolicy::new().budget(budget, None).unwrap();
    X402Middleware::new(
        ExactEvmClient::new(PrivateKeySigner::random()),
        policy,
        SpendLedger::in_memory().unwrap(),
    )
}

fn client(m: X402Middleware) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(m)
        .build()
}

fn unpaid() -> Seen {
    Seen {
        paid: false,
        operator_token: None,
        wallet_address: None,
    }
}

#[tokio::test]
async fn identity_headers_go_only_on_the_paid_request_to_a_listed_payee() {
    let seller = start_seller().await;

    // Not configured: never sent.
    let agent = client(middleware("1 USDC"));
    let r = agent
        .get(format!("{}/served/{LISTED}", seller.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let paid_plain = Seen {
        paid: true,
        ..unpaid()
    };
    assert_eq!(seller.take(), [unpaid(), paid_plain.clone()]);

    // Configured for LISTED (given in lowercase: payTo matches regardless of case).
    let identity = IdentityHeaders::new()
        .with("X-Operator-Token", TOKEN, [LISTED.to_lowercase()])
        .unwrap()
        .with("x-wallet-address", WALLET, [LISTED.to_lowercase()])
        .unwrap();
    let configured = middleware("1 USDC").with_identity(identity);
    assert!(!format!("{configured:?}").contains(TOKEN));
    let agent = client(configured);

    // An unlisted payee gets nothing, paid or not.
    let r = agent
        .get(format!("{}/served/{UNLISTED}", seller.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seller.take(), [unpaid(), paid_plain]);

    // The listed payee gets both headers on the paid request, and only on it.
    let r = agent
        .get(format!("{}/served/{LISTED}", seller.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        seller.take(),
        [
            unpaid(),
            Seen {
                paid: true,
                operator_token: Some(TOKEN.into()),
                wallet_address: Some(WALLET.into()),
            }
        ]
    );

    // with_identity_header refuses other names, naming the allowed ones.
    let err = middleware("1 USDC")
        .with_identity_header("Authorization", TOKEN, [LISTED])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("X-Operator-Token, X-Wallet-Address"),
        "{err}"
    );
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

#[tokio::test]
async fn a_gate_refusal_is_a_typed_error_and_the_budget_is_not_spent() {
    let seller = start_seller().await;
    // 0.0015 USDC in total: a held 0.001 would leave no room for a second payment.
    let m = middleware("0.0015 USDC")
        .with_identity_header("X-Operator-Token", TOKEN, [LISTED])
        .unwrap();
    let ledger = m.ledger().clone();
    let agent = client(m);
    for attempt in 1..=3 {
        let err = agent
            .get(format!("{}/gate/{LISTED}", seller.url))
            .send()
            .await
            .unwrap_err();
        let Some(PaymentError::IdentityRefused {
            payer,
            checks,
            detail,
            held,
        }) = PaymentError::from_middleware_error(&err)
        else {
            panic!("expected an identity refusal, got {err:?}");
        };
        assert_eq!(payer.as_deref(), Some("0xpayer"));
        assert_eq!(checks.len(), 3);
        assert!(detail.is_none());
        assert!(!held, "a gate's refusal releases the reservation");
        let message = format!("{err:#}");
        assert!(
            message.contains(
                "require_sanctions_clear failed (the payer is on a sanctions list), remedy: pay \
                 from a wallet that is not sanctioned"
            ),
            "{message}"
        );
        assert!(
            message.contains("require_kyc failed (no KYC on record), remedy: complete KYC"),
            "{message}"
        );
        assert!(!message.contains("min_age"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
        // The token went with the payment, as configured.
        let seen = seller.take();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1].operator_token.as_deref(), Some(TOKEN));
        assert_eq!(ledger.count(SpendStatus::Failed).unwrap(), attempt);
        assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 0);
    }

    // A 403 that is not a gate's JSON: still a refusal, with the body's text bounded — but the
    // amount stays reserved, so the budget now has no room for another 0.001.
    let err = agent
        .get(format!("{}/plain/{LISTED}", seller.url))
        .send()
        .await
        .unwrap_err();
    let Some(PaymentError::IdentityRefused {
        checks,
        detail,
        held,
        ..
    }) = PaymentError::from_middleware_error(&err)
    else {
        panic!("expected an identity refusal, got {err:?}");
    };
    assert!(checks.is_empty());
    assert!(*held);
    let detail = detail.as_deref().unwrap();
    assert!(
        detail.starts_with("xxx") && detail.chars().count() <= 501,
        "{detail}"
    );
    assert!(err.to_string().len() < 1_000);
    assert_eq!(ledger.count(SpendStatus::Pending).unwrap(), 1);
    let err = agent
        .get(format!("{}/served/{LISTED}", seller.url))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            PaymentError::from_middleware_error(&err),
            Some(PaymentError::Refused(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unpaid_403_is_passed_through() {
    // A 403 to the first request is not a gate's (a gate runs only on paid requests): the
    // response is the caller's, nothing is reserved.
    let app = axum::Router::new().route(
        "/",
        get(|| async { (StatusCode::FORBIDDEN, "no entry").into_response() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let m = middleware("1 USDC");
    let ledger = m.ledger().clone();
    let r = client(m).get(url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.extensions().get::<PendingPayment>().is_none());
    assert!(ledger.history(10).unwrap().is_empty());
    task.abort();
}
