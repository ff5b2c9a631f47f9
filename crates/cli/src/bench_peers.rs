//! The verification section: Tollgate's `POST /verify` against the node's own `eth_call` rate
//! and against other x402 facilitators (`--peer NAME=URL`), on the same node, with the same
//! signed payments, in the same run.
//!
//! A peer is any running facilitator speaking x402 v2's `/verify` and `/settle` (x402-rs, the
//! official TypeScript facilitator, …) pointed at the node the benchmark uses: start an anvil,
//! start the peers against it, then `tollgate bench --rpc-url <anvil> --peer name=<url>`.
//! `scripts/bench-peers` does all of that in one command.

use std::str::FromStr;
use std::sync::Arc;

use alloy::providers::Provider;
use serde_json::{json, Value};
use tollgate::proto::{PaymentPayload, PaymentRequirements};

use super::timed::{timed, Timed};
use super::{err, BenchError};
use crate::bench_rig::BenchChain;

/// One `--peer NAME=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// How the report names it.
    pub name: String,
    /// Its base URL (`/verify` and `/settle` are appended).
    pub url: String,
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=URL"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{s:?}: the name is empty"));
        }
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?}: not an http(s) URL"));
        }
        Ok(Self {
            name: name.to_owned(),
            url: url.trim().trim_end_matches('/').to_owned(),
        })
    }
}

/// What the section measures.
pub(super) struct PeersArgs<'a> {
    pub(super) requests: usize,
    pub(super) concurrency: usize,
    /// Payments settled through each facilitator (fresh ones for each); 0 skips `/settle`.
    pub(super) settle_payments: usize,
    pub(super) peers: &'a [Peer],
    /// Tollgate's facilitator (HTTP, one transaction per payment).
    pub(super) tollgate_url: &'a str,
}

pub(super) async fn run(
    chain: &BenchChain,
    requirements: &PaymentRequirements,
    args: &PeersArgs<'_>,
) -> Result<(), BenchError> {
    let http = reqwest::Client::new();
    // Payments valid for an hour: a slow peer (the official facilitator verifies ~100/s) must
    // not see them expire half-way through its run.
    let mut requirements = requirements.clone();
    requirements.max_timeout_seconds = 3600;
    let requirements = &requirements;
    let to_verify = super::sign_many(requirements, args.requests.clamp(1, 500)).await?;
    let c = args.concurrency;

    // The node's ceiling: a trivial `eth_call` (a token balance), straight to the node.
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "eth_call",
        "params": [{
            "to": chain.usdc.to_string(),
            // balanceOf(address(0))
            "data": format!("0x70a08231{}", "0".repeat(64)),
        }, "latest"]
    });
    let node = timed(
        "node eth_call (balanceOf, direct)",
        args.requests,
        c,
        |_| {
            let (http, url, body) = (http.clone(), chain.endpoint().to_owned(), call.clone());
            async move {
                let response = http.post(url).json(&body).send().await;
                let value = json_of(response).await?;
                if value.get("result").is_some() {
                    Ok(())
                } else {
                    Err(format!("eth_call failed: {value}"))
                }
            }
        },
    )
    .await?;

    // The node's ceiling for a facilitator that dry-runs its payments (all three do): the same
    // payments dry-run in probe calls of `DRY_RUN_BATCH`, straight to the node, nothing else
    // running. A facilitator on the same machine shares its cores with the node, so this is
    // above what any of them can reach.
    let provider = alloy::providers::ProviderBuilder::new()
        .connect_http(chain.endpoint().parse().map_err(err)?)
        .erased();
    let calls: Arc<Vec<_>> = Arc::new(
        to_verify
            .chunks(DRY_RUN_BATCH)
            .filter(|chunk| chunk.len() == DRY_RUN_BATCH)
            .map(|chunk| tollgate::evm::facilitator::dry_run_call(chain.usdc, chunk))
            .collect::<Result<_, _>>()
            .map_err(err)?,
    );
    let dry_runs = if calls.is_empty() {
        None
    } else {
        let rounds = (args.requests / DRY_RUN_BATCH).max(1);
        let measured = timed(
            format!("node eth_calls of {DRY_RUN_BATCH} dry runs (direct)"),
            rounds,
            DRY_RUN_CONCURRENCY,
            |i| {
                let (provider, calls) = (provider.clone(), Arc::clone(&calls));
                async move {
                    let (tx, overrides) = calls[i % calls.len()].clone();
                    let output = provider
                        .call(tx)
                        .overrides(overrides)
                        .await
                        .map_err(|e| format!("probe eth_call failed: {e}"))?;
                    match tollgate::evm::facilitator::dry_runs_succeeded(&output)? {
                        DRY_RUN_BATCH => Ok(()),
                        n => Err(format!("{n} of {DRY_RUN_BATCH} dry runs succeeded")),
                    }
                }
            },
        )
        .await?;
        Some(measured)
    };

    // Bodies serialized once: the load generator's own work is the same small constant for
    // every facilitator, and small.
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        to_verify
            .iter()
            .map(|p| bytes::Bytes::from(verify_body(p, requirements).to_string()))
            .collect(),
    );
    // The HTTP share of the limit: a bare axum route taking the same bodies from the same load
    // generator and answering a fixed valid verdict, verifying nothing.
    let verdict = json!({ "isValid": true, "payer": to_verify[0].payload.get("authorization")
        .and_then(|a| a.get("from")).cloned().unwrap_or(Value::Null) })
    .to_string();
    let bare_url = super::serve(axum::Router::new().route(
        "/verify",
        axum::routing::post(move |_body: bytes::Bytes| {
            let verdict = verdict.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    verdict,
                )
            }
        }),
    ))
    .await?;
    let bare = post_verify(&http, BARE, &bare_url, &bodies, args.requests, c).await?;
    let mut facilitators = vec![("tollgate".to_owned(), args.tollgate_url.to_owned())];
    facilitators.extend(args.peers.iter().map(|p| (p.name.clone(), p.url.clone())));
    let mut verify = Vec::new();
    // A peer failing requests is reported and the run goes on; Tollgate failing ends it.
    let mut refused: Vec<String> = Vec::new();
    for (name, url) in &facilitators {
        // One request first: a peer that refuses the payment is named with its answer, not
        // measured at failing.
        let body = verify_body(&to_verify[0], requirements);
        let first = json_of(http.post(format!("{url}/verify")).json(&body).send().await)
            .await
            .map_err(|e| err(format!("{name} /verify: {e}")))?;
        if first.get("isValid") != Some(&Value::Bool(true)) {
            return Err(err(format!(
                "{name} /verify refused the benchmark's payment: {first}"
            )));
        }
        let measured = post_verify(&http, name, url, &bodies, args.requests, c).await;
        keep(name, measured, &mut verify, &mut refused)?;
    }

    let mut settle = Vec::new();
    if args.settle_payments > 0 {
        for (name, url) in &facilitators {
            let payments = Arc::new(super::sign_many(requirements, args.settle_payments).await?);
            let measured = timed(format!("{name} POST /settle"), payments.len(), c, |i| {
                let (http, url) = (http.clone(), url.clone());
                let body = verify_body(&payments[i], requirements);
                async move {
                    let value =
                        json_of(http.post(format!("{url}/settle")).json(&body).send().await)
                            .await?;
                    if value.get("success") == Some(&Value::Bool(true)) {
                        Ok(())
                    } else {
                        Err(format!("not settled: {value}"))
                    }
                }
            })
            .await;
            keep(name, measured, &mut settle, &mut refused)?;
        }
    }

    print(&node, &bare, dry_runs.as_ref(), &verify, &settle, c);
    for line in &refused {
        println!("{line}");
    }
    Ok(())
}

/// Keeps a measurement; a peer's failure becomes a line of the report instead of the end of
/// the run (the official facilitator's `/settle`, for one, sends concurrent settlements with
/// one nonce and fails most of them).
fn keep(
    name: &str,
    measured: Result<Timed, BenchError>,
    into: &mut Vec<Timed>,
    refused: &mut Vec<String>,
) -> Result<(), BenchError> {
    match measured {
        Ok(m) => into.push(m),
        Err(e) if name != "tollgate" => {
            let e = e.to_string();
            let cut = e.char_indices().nth(300).map_or(e.len(), |(i, _)| i);
            refused.push(format!("{name}: not measured: {}", &e[..cut]));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// `requests` `POST {url}/verify` of `bodies` (in turn), `c` at a time, each answered valid.
async fn post_verify(
    http: &reqwest::Client,
    name: &str,
    url: &str,
    bodies: &Arc<Vec<bytes::Bytes>>,
    requests: usize,
    c: usize,
) -> Result<Timed, BenchError> {
    // Parsed once: a URL parse (IDNA mapping included) per request is load-generator work
    // that would be charged to every facilitator measured.
    let verify_url = reqwest::Url::parse(&format!("{url}/verify"))
        .map_err(|e| err(format!("{name} /verify URL: {e}")))?;
    timed(format!("{name} POST /verify"), requests, c, |i| {
        let (http, url) = (http.clone(), verify_url.clone());
        let body = bodies[i % bodies.len()].clone();
        async move {
            let request = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let value = json_of(request.send().await).await?;
            if value.get("isValid") == Some(&Value::Bool(true)) {
                Ok(())
            } else {
                Err(format!("not valid: {value}"))
            }
        }
    })
    .await
}

fn verify_body(payment: &PaymentPayload, requirements: &PaymentRequirements) -> Value {
    json!({
        "x402Version": 2,
        "paymentPayload": payment,
        "paymentRequirements": requirements,
    })
}

async fn json_of(response: Result<reqwest::Response, reqwest::Error>) -> Result<Value, String> {
    let response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|_| {
        format!(
            "HTTP {status}, not JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

fn print(
    node: &Timed,
    bare: &Timed,
    dry_runs: Option<&Timed>,
    verify: &[Timed],
    settle: &[Timed],
    c: usize,
) {
    println!("\nverification against the node and other facilitators (concurrency {c}, same payments, same node)");
    println!(
        "{:<44} {:>8} {:>10} {:>9} {:>9} {:>16}",
        "scenario", "count", "req/s", "p50 ms", "p99 ms", "tollgate is"
    );
    let row = |m: &Timed, ours: Option<&Timed>| {
        let ratio = ours
            .map(|o| format!("{:.2}x", o.per_sec() / m.per_sec()))
            .unwrap_or_default();
        println!(
            "{:<44} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>16}",
            m.name,
            m.count,
            m.per_sec(),
            m.latency_ms(50),
            m.latency_ms(99),
            ratio
        );
    };
    row(node, None);
    if let Some(dry) = dry_runs {
        row(dry, None);
    }
    row(bare, None);
    for (i, m) in verify.iter().enumerate() {
        row(m, (i > 0).then(|| &verify[0]));
    }
    for (i, m) in settle.iter().enumerate() {
        row(m, (i > 0).then(|| &settle[0]));
    }
    if let Some(ours) = verify.first() {
        println!(
            "tollgate /verify = {:.2} verifications per node eth_call/s (the node answers {:.0} trivial calls/s)",
            ours.per_sec() / node.per_sec(),
            node.per_sec()
        );
        if let Some(dry) = dry_runs {
            // Calls of DRY_RUN_BATCH payments each: the node's dry runs per second.
            let ceiling = dry.per_sec() * DRY_RUN_BATCH as f64;
            // Each rate was measured with the whole machine; a verification needs both the
            // node's dry run and an HTTP exchange of its body on the same cores, so their
            // costs per verification add up.
            let limit = 1.0 / (1.0 / ceiling + 1.0 / bare.per_sec());
            println!(
                "the node alone dry-runs {ceiling:.0} payments/s ({DRY_RUN_BATCH} per call, {DRY_RUN_CONCURRENCY} calls in flight); with the bare HTTP exchange of the same bodies ({:.0}/s) on the same cores, no facilitator that dry-runs verifies more than {limit:.0}/s here: tollgate /verify is {:.0}% of that",
                bare.per_sec(),
                100.0 * ours.per_sec() / limit
            );
            for peer in &verify[1..] {
                println!(
                    "  5x {} would be {:.0}/s: {:.2}x that limit",
                    peer.name,
                    5.0 * peer.per_sec(),
                    5.0 * peer.per_sec() / limit
                );
            }
        }
    }
}

/// The limit's bare route, in the rows.
const BARE: &str = "bare axum route (same bodies)";

/// Payments per direct probe call when measuring the node's dry-run ceiling: the prober's
/// largest batches under load reach about this size.
const DRY_RUN_BATCH: usize = 32;

/// Probe calls in flight when measuring the node's ceiling: enough to keep its cores busy.
const DRY_RUN_CONCURRENCY: usize = 4;

#[cfg(test)]
mod tests {
    use super::Peer;

    #[test]
    fn a_peer_is_a_name_and_an_http_url() {
        let peer: Peer = "x402-rs=http://127.0.0.1:8090/".parse().unwrap();
        assert_eq!(peer.name, "x402-rs");
        assert_eq!(peer.url, "http://127.0.0.1:8090");
        for bad in [
            "http://127.0.0.1:8090",
            "=http://127.0.0.1:8090",
            "x=not a url",
            "x=ftp://127.0.0.1/",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }
}
