//! `AgentScoreClient` against real HTTP servers that misbehave: every way a service can fail
//! to answer is a `ProviderError` (the gate's 503), never a verdict and never the key.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tollgate_identity::{AgentScoreConfig, IdentityPolicy, IdentityProvider, Subject};

const SECRET: &str = "sk-live-never-shown";

async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

fn subject() -> Subject {
    Subject {
        payer: "0x0000000000000000000000000000000000000001".into(),
        network: tollgate_proto::Network::eip155(8453),
        operator_token: Some("operator-token".into()),
    }
}

async fn assess_err(url: &str, timeout: Duration) -> String {
    let client = AgentScoreConfig::new(url)
        .api_key(SECRET)
        .timeout(timeout)
        .build()
        .unwrap();
    let err = client
        .assess(&subject(), &IdentityPolicy::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains(SECRET), "{text}");
    assert_eq!(err.provider, "agentscore");
    text
}

#[tokio::test]
async fn server_errors_client_errors_timeouts_and_garbage_are_provider_errors() {
    let app = Router::new().route(
        "/v1/assess",
        post(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
    );
    let (url, _t) = serve(app).await;
    let e = assess_err(&url, Duration::from_secs(5)).await;
    assert!(e.contains("service error") && e.contains("502"), "{e}");

    let app = Router::new().route(
        "/v1/assess",
        post(|| async {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "unknown chain" })),
            )
        }),
    );
    let (url, _t) = serve(app).await;
    let e = assess_err(&url, Duration::from_secs(5)).await;
    assert!(e.contains("422") && e.contains("unknown chain"), "{e}");

    let app = Router::new().route(
        "/v1/assess",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let (url, _t) = serve(app).await;
    let e = assess_err(&url, Duration::from_millis(300)).await;
    assert!(e.contains("timed out"), "{e}");

    let app = Router::new().route("/v1/assess", post(|| async { "not json" }));
    let (url, _t) = serve(app).await;
    let e = assess_err(&url, Duration::from_secs(5)).await;
    assert!(e.contains("malformed answer"), "{e}");

    let app = Router::new().route(
        "/v1/assess",
        post(|| async {
            Json(json!({ "decision": "maybe", "policy_result": { "all_passed": true } }))
        }),
    );
    let (url, _t) = serve(app).await;
    let e = assess_err(&url, Duration::from_secs(5)).await;
    assert!(e.contains("malformed answer"), "{e}");
}

#[tokio::test]
async fn the_request_carries_the_key_the_operator_token_and_agentscores_shape() {
    let app = Router::new().route(
        "/v1/assess",
        post(
            |headers: axum::http::HeaderMap, Json(body): Json<serde_json::Value>| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                let operator = headers
                    .get("x-operator-token")
                    .and_then(|v| v.to_str().ok());
                let ok = auth == Some(&format!("Bearer {SECRET}")[..])
                    && operator == Some("operator-token")
                    && body["address"] == "0x0000000000000000000000000000000000000001"
                    && body["chain"] == "eip155:8453"
                    && body["policy"]["require_sanctions_clear"] == true
                    && body["signer"]["network"] == "eip155:8453";
                Json(json!({
                    "decision": if ok { "allow" } else { "deny" },
                    "decision_reasons": if ok { json!([]) } else { json!(["unexpected request"]) },
                    "policy_result": { "all_passed": ok, "checks": [
                        { "rule": "require_sanctions_clear", "passed": ok }
                    ]},
                    "signer_sanctions": { "address": body["address"], "sanctioned": false }
                }))
            },
        ),
    );
    let (url, _t) = serve(app).await;
    let client = AgentScoreConfig::new(url).api_key(SECRET).build().unwrap();
    let policy = IdentityPolicy {
        require_sanctions_clear: true,
        ..Default::default()
    };
    let a = client.assess(&subject(), &policy).await.unwrap();
    assert!(a.allowed, "{a:?}");
    assert_eq!(a.checks.len(), 1);
}
