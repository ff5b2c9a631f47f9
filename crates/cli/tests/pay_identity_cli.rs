//! `tollgate pay` and a seller's identity gate, through the binary: identity headers from
//! `@file` and `env:VAR`, sent only with the payment to a payee named by `--identity-for`; a
//! `403 identity_check_failed` printed with its rules and remedies, exit code 5. The seller is a
//! small axum server on loopback that asks for payment and never settles (no chain needed).

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tollgate::proto::{header, PaymentRequired};
use tollgate_testkit::DEV_KEYS;

const LISTED: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const UNLISTED: &str = "0x1111111111111111111111111111111111111111";
const TOKEN: &str = "op_secret_from_env_91c2";
const WALLET: &str = "0x2222222222222222222222222222222222222222";

/// Per request: was it paid, its `X-Operator-Token`, its `X-Wallet-Address`.
type Log = Arc<Mutex<Vec<(bool, Option<String>, Option<String>)>>>;

/// `GET /{mode}/{payee}`: `402` (v2, Base Sepolia USDC, 0.001 to `payee`) unpaid; paid, `gate`
/// answers a gate's `403`, `redirect` a `307` to `?to=URL`, and anything else serves.
async fn seller(
    State(log): State<Log>,
    Path((mode, payee)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    let paid = headers.contains_key(header::PAYMENT_SIGNATURE);
    log.lock()
        .unwrap()
        .push((paid, get("x-operator-token"), get("x-wallet-address")));
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
    if mode == "redirect" {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                "location",
                uri.query().unwrap().strip_prefix("to=").unwrap().to_owned(),
            )],
        )
            .into_response();
    }
    if mode != "gate" {
        return "the data".into_response();
    }
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({
            "error": "identity_check_failed",
            "payer": "0x209693bc6afc0c5328ba36faf03c514ef312287c",
            "checks": [
                {"rule": "require_sanctions_clear", "passed": false,
                 "reason": "the payer is on a sanctions list",
                 "remedy": "pay from a wallet that is not sanctioned"},
                {"rule": "min_age", "passed": true},
            ],
        })),
    )
        .into_response()
}

struct Seller {
    url: String,
    log: Log,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Seller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Seller {
    let log = Log::default();
    let app = axum::Router::new()
        .route("/{mode}/{payee}", get(seller))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Seller {
        url,
        log,
        dir: tempfile::tempdir().unwrap(),
        task,
    }
}

impl Seller {
    async fn pay(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("pay")
            .args(args)
            .arg("--ledger")
            .arg(self.dir.path().join("spend.db"))
            .env("TOLLGATE_PAY_KEY", DEV_KEYS[2])
            .env("TEST_OPERATOR_TOKEN", TOKEN)
            .stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    fn take(&self) -> Vec<(bool, Option<String>, Option<String>)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_go_to_listed_payees_and_a_gate_refusal_exits_5() {
    let s = start().await;
    let wallet_file = s.dir.path().join("wallet.txt");
    std::fs::write(&wallet_file, format!("{WALLET}\n")).unwrap();
    let wallet_arg = format!("X-Wallet-Address=@{}", wallet_file.display());
    let identity = [
        "--identity-header",
        "X-Operator-Token=env:TEST_OPERATOR_TOKEN",
        "--identity-header",
        &wallet_arg,
        "--identity-for",
        LISTED,
    ];

    // Without --identity-header: nothing identifying is sent, even to the listed payee.
    let out = s.pay(&[&format!("{}/served/{LISTED}", s.url)]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(s.take(), [(false, None, None), (true, None, None)]);

    // To an unlisted payee: nothing either.
    let url = format!("{}/served/{UNLISTED}", s.url);
    let out = s.pay(&[&[url.as_str()][..], &identity].concat()).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(s.take(), [(false, None, None), (true, None, None)]);

    // To the listed payee: both, on the paid request only; the gate refuses → exit 5, the
    // failed rule and its remedy on stderr, the secret nowhere.
    let url = format!("{}/gate/{LISTED}", s.url);
    let out = s.pay(&[&[url.as_str()][..], &identity].concat()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert_eq!(
        s.take(),
        [
            (false, None, None),
            (true, Some(TOKEN.into()), Some(WALLET.into()))
        ]
    );
    assert!(
        stderr.contains(&format!(
            "the seller's identity gate refused {LISTED} (403)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed: require_sanctions_clear: the payer is on a sanctions list"),
        "{stderr}"
    );
    assert!(
        stderr.contains("remedy: pay from a wallet that is not sanctioned"),
        "{stderr}"
    );
    assert!(!stderr.contains("min_age"), "{stderr}");
    assert!(stderr.contains("reserved amount was released"), "{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));

    // --json: the summary on stdout.
    let out = s
        .pay(&[&[url.as_str(), "--json"][..], &identity].concat())
        .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], 403);
    assert_eq!(summary["exitCode"], 5);
    let refused = &summary["identityRefused"];
    assert_eq!(refused["payer"], LISTED);
    assert_eq!(refused["held"], false);
    assert_eq!(refused["checks"][0]["rule"], "require_sanctions_clear");
    assert_eq!(refused["checks"][0]["passed"], false);
    assert_eq!(
        refused["checks"][0]["remedy"],
        "pay from a wallet that is not sanctioned"
    );

    // Both refused payments were released, not held against a budget (the served ones, which
    // came without a receipt, are held).
    let out = s.pay(&["--history", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses = |part: &str| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["url"].as_str().unwrap().contains(part))
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(statuses("/gate/"), ["failed", "failed"], "{rows}");
    assert_eq!(statuses("/served/"), ["pending", "pending"], "{rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_flags_are_checked_before_anything_is_sent() {
    let s = start().await;
    let url = format!("{}/gate/{LISTED}", s.url);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--identity-header", "X-Operator-Token=t"],
            "needs --identity-for",
        ),
        (&["--identity-for", LISTED], "no --identity-header"),
        (
            &[
                "--identity-header",
                "Authorization=env:TEST_OPERATOR_TOKEN",
                "--identity-for",
                LISTED,
            ],
            "allowed: X-Operator-Token, X-Wallet-Address",
        ),
        (
            &[
                "--identity-header",
                "X-Operator-Token=env:TEST_NO_SUCH_VAR",
                "--identity-for",
                LISTED,
            ],
            "TEST_NO_SUCH_VAR is not set",
        ),
        (
            &[
                "--identity-header",
                "X-Operator-Token",
                "--identity-for",
                LISTED,
            ],
            "NAME=VALUE",
        ),
    ];
    for (flags, expected) in cases {
        let out = s.pay(&[&[url.as_str()][..], flags].concat()).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
    assert!(s.take().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_cannot_redirect_identity_headers_to_another_origin() {
    let s = start().await;
    let elsewhere = start().await;
    let url = format!(
        "{}/redirect/{LISTED}?to={}/served/{LISTED}",
        s.url, elsewhere.url
    );
    let out = s
        .pay(&[
            &url,
            "--identity-header",
            "X-Operator-Token=env:TEST_OPERATOR_TOKEN",
            "--identity-for",
            LISTED,
        ])
        .await;
    let (stdout, stderr) = text(&out);
    // The redirect is not followed: the 307 is the answer (an HTTP error, exit 4).
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stderr.contains("307"), "{stderr}");
    assert_eq!(
        s.take(),
        [(false, None, None), (true, Some(TOKEN.into()), None)]
    );
    assert!(elsewhere.take().is_empty(), "the other origin got nothing");
}
