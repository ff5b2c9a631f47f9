//! OpenTelemetry traces of one paid request through the real binaries: `tollgate proxy` (the
//! paywall, with a remote facilitator) and `tollgate facilitator` on anvil, both exporting
//! spans over OTLP/HTTP to a receiver in this test, which decodes them with the
//! `opentelemetry-proto` types. The paywall's and the facilitator's spans must form ONE trace:
//! the facilitator's request spans are children of the paywall's facilitator calls (W3C
//! `traceparent` over HTTP), and its verify and settle spans carry the network, the scheme,
//! the payer and the settlement's transaction hash.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;
use tollgate_testkit::{TestChain, DEV_KEYS};

mod support;

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

/// One exported span, flattened with its service's name.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn flatten(requests: &[ExportTraceServiceRequest]) -> Vec<Span> {
    let mut out = Vec::new();
    for request in requests {
        for resource_spans in &request.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| text(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    out.push(Span {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: span.trace_id.clone(),
                        span_id: span.span_id.clone(),
                        parent_span_id: span.parent_span_id.clone(),
                        attributes: text(&span.attributes),
                    });
                }
            }
        }
    }
    out
}

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered with an empty protobuf response.
async fn start_receiver() -> (String, Arc<Mutex<Vec<ExportTraceServiceRequest>>>) {
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.lock().unwrap().push(request);
                        (
                            axum::http::StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(_) => (
                        axum::http::StatusCode::BAD_REQUEST,
                        [("content-type", "application/x-protobuf")],
                        Vec::new(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_paid_request_is_one_trace_across_paywall_and_facilitator() {
    let (otlp, received) = start_receiver().await;
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payee = TestChain::address(9);
    let payer = TestChain::address(1);

    // The facilitator, exporting to the receiver.
    let facilitator_toml = dir.path().join("facilitator.toml");
    std::fs::write(
        &facilitator_toml,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n\n[telemetry]\notlp_endpoint = \"{otlp}\"\nservice_name = \"test-facilitator\"\n",
            dir.path().join("ledger.db").display(),
            chain.caip2(),
            chain.endpoint()
        ),
    )
    .unwrap();
    let (mut facilitator, facilitator_url) = support::start_facilitator(
        &facilitator_toml,
        &[
            ("TOLLGATE_TEST_SIGNER", DEV_KEYS[0]),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ],
    );

    // The API behind the paywall.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/weather",
        axum::routing::get(|| async { "sunny, 24 degrees" }),
    );
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    // The paywall (`tollgate proxy`), exporting to the same receiver.
    let gateway_toml = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream_url}\"\n\n[facilitator]\nurl = \"{facilitator_url}\"\n\n[payment]\nnetwork = \"{}\"\npay_to = \"{payee}\"\nmax_timeout_seconds = 60\n\n[[routes]]\nroute = \"GET /weather\"\namount = \"1000\"\nasset = \"{}\"\nextra = {{ name = \"USD Coin\", version = \"2\", decimals = 6 }}\n\n[telemetry]\notlp_endpoint = \"{otlp}\"\nservice_name = \"test-proxy\"\n",
            chain.caip2(),
            chain.usdc,
        ),
    )
    .unwrap();
    let mut proxy = support::Running::spawn(
        tollgate()
            .args(["proxy", "--config"])
            .arg(&gateway_toml)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
    );
    let proxy_url = proxy
        .wait_for_line("tollgate proxy listening on ")
        .split(',')
        .next()
        .unwrap()
        .to_owned();

    // One paid request (`tollgate pay` exports nothing: no `[telemetry]` there).
    let key_file = dir.path().join("payer.key");
    std::fs::write(&key_file, DEV_KEYS[1]).unwrap();
    let mut pay = tollgate();
    pay.arg("pay")
        .arg("--key-file")
        .arg(&key_file)
        .args([
            "--asset",
            &format!("{}/{}/USDC/6", chain.caip2(), chain.usdc),
            "--max",
            "0.01 USDC",
            "-y",
            "--json",
        ])
        .arg("--ledger")
        .arg(dir.path().join("spend.db"))
        .arg(format!("{proxy_url}/weather"))
        .stdin(Stdio::null());
    let paid = tokio::task::spawn_blocking(move || pay.output().unwrap())
        .await
        .unwrap();
    assert!(
        paid.status.success(),
        "{}",
        String::from_utf8_lossy(&paid.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&paid.stdout).unwrap();
    assert_eq!(summary["body"], "sunny, 24 degrees", "{summary}");
    let tx = summary["paid"]["transaction"]
        .as_str()
        .expect("a settlement transaction")
        .to_owned();

    // A graceful stop flushes each process's buffered spans before it exits.
    proxy.terminate();
    assert!(
        proxy.wait_exit(Duration::from_secs(30)),
        "proxy did not stop"
    );
    facilitator.terminate();
    assert!(
        facilitator.wait_exit(Duration::from_secs(30)),
        "facilitator did not stop"
    );

    let spans = flatten(&received.lock().unwrap());
    let find = |service: &str, name: &str| -> Span {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| {
                let seen: Vec<_> = spans.iter().map(|s| (&s.service, &s.name)).collect();
                panic!("no {name:?} span from {service}; received {seen:?}")
            })
            .clone()
    };

    // The paywall's side: the paid request (the buyer's second; its first got the 402, a
    // trace of its own), and its calls to the facilitator.
    let verify_call = find("test-proxy", "POST /verify");
    let settle_call = find("test-proxy", "POST /settle");
    let trace = verify_call.trace_id.clone();
    assert_eq!(trace.len(), 16);
    assert_eq!(settle_call.trace_id, trace, "{settle_call:?}");
    let requests: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == "test-proxy" && s.name == "GET /weather")
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "the 402 and the paid retry: {requests:?}"
    );
    let request = requests
        .iter()
        .find(|s| s.trace_id == trace)
        .expect("the paid request's span is in the trace");
    assert!(
        request.parent_span_id.is_empty(),
        "the edge starts the trace"
    );
    assert_eq!(
        request
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );
    // Both calls descend from the request span (through the paywall's own spans, if any).
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (&s.span_id[..], s)).collect();
    for call in [&verify_call, &settle_call] {
        let mut at: &Span = call;
        while at.span_id != request.span_id {
            at = *by_id
                .get(&at.parent_span_id[..])
                .unwrap_or_else(|| panic!("{} is not under the request span", call.name));
        }
    }

    // The facilitator's side: its request spans are children of those calls.
    let verify_request = spans
        .iter()
        .find(|s| {
            s.service == "test-facilitator"
                && s.name == "POST /verify"
                && s.parent_span_id == verify_call.span_id
        })
        .expect("the facilitator's /verify span is a child of the paywall's call");
    let settle_request = spans
        .iter()
        .find(|s| {
            s.service == "test-facilitator"
                && s.name == "POST /settle"
                && s.parent_span_id == settle_call.span_id
        })
        .expect("the facilitator's /settle span is a child of the paywall's call");
    assert_eq!(verify_request.trace_id, trace);
    assert_eq!(settle_request.trace_id, trace);
    assert_eq!(
        settle_request.attributes.get("http.response.status_code"),
        Some(&"200".to_string())
    );

    // Verify and settle, with what happened to whom.
    let verify = find("test-facilitator", "facilitator.verify");
    let settle = find("test-facilitator", "facilitator.settle");
    assert_eq!(verify.parent_span_id, verify_request.span_id);
    assert_eq!(settle.parent_span_id, settle_request.span_id);
    for span in [&verify, &settle] {
        assert_eq!(span.trace_id, trace, "{span:?}");
        let a = &span.attributes;
        assert_eq!(a.get("network"), Some(&chain.caip2()), "{span:?}");
        assert_eq!(
            a.get("scheme").map(String::as_str),
            Some("exact"),
            "{span:?}"
        );
        assert_eq!(
            a.get("payer").map(|p| p.to_ascii_lowercase()),
            Some(payer.to_string().to_ascii_lowercase()),
            "{span:?}"
        );
    }
    assert_eq!(
        verify.attributes.get("outcome").map(String::as_str),
        Some("valid")
    );
    assert_eq!(
        settle.attributes.get("outcome").map(String::as_str),
        Some("success")
    );
    assert_eq!(settle.attributes.get("tx_hash"), Some(&tx), "{settle:?}");
    // The transaction the span names is the one that moved the money.
    let receipt = chain
        .rpc("eth_getTransactionReceipt", serde_json::json!([tx]))
        .await
        .unwrap();
    assert_eq!(receipt["status"], "0x1", "{receipt}");

    // Every span of both services that belongs to this request is in this one trace; the
    // chain work of the facilitator (the EVM scheme's spans) is nested in it too.
    assert!(
        spans.iter().any(|s| s.service == "test-facilitator"
            && s.name.starts_with("exact_evm.")
            && s.trace_id == trace),
        "the scheme's spans are in the trace"
    );
    let traces: std::collections::HashSet<_> = spans
        .iter()
        .filter(|s| s.name.contains("verify") || s.name.contains("settle"))
        .map(|s| s.trace_id.clone())
        .collect();
    assert_eq!(
        traces.len(),
        1,
        "verify/settle spans in more than one trace"
    );
}

/// A collector URL that cannot be used stops the service at start, naming where it came from:
/// a typo must not silently lose every span.
#[test]
fn a_malformed_endpoint_stops_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let write = |telemetry: &str| {
        let path = dir.path().join("facilitator.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\npath = \"{}\"\n[[networks]]\nnetwork = \"eip155:31337\"\nrpc_urls = [\"http://127.0.0.1:9\"]\nsigner_key_env = \"TOLLGATE_TEST_SIGNER\"\n\n[telemetry]\n{telemetry}\n",
                dir.path().join("ledger.db").display(),
            ),
        )
        .unwrap();
        path
    };
    let run = |config: &std::path::Path, env: Option<&str>| {
        let mut command = tollgate();
        command
            .args(["facilitator", "--config"])
            .arg(config)
            .env("TOLLGATE_TEST_SIGNER", DEV_KEYS[0])
            .stdin(Stdio::null());
        match env {
            Some(value) => command.env("OTEL_EXPORTER_OTLP_ENDPOINT", value),
            None => command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
        };
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stderr) = run(&write("otlp_endpoint = \"localhost:4318\""), None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("telemetry.otlp_endpoint"), "{stderr}");

    let (code, stderr) = run(&write("otlp_endpoint = \"grpc://127.0.0.1:4317\""), None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not http or https"), "{stderr}");

    // The standard variable overrides a good file, and is checked as strictly.
    let good = write("otlp_endpoint = \"http://127.0.0.1:4318\"");
    let (code, stderr) = run(&good, Some("collector:4318/v1/traces"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}
