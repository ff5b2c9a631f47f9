//! `tollgate bench`'s discovery section: the Bazaar catalogue's `GET /discovery/resources` and
//! `GET /discovery/search` on a large catalogue, measured over HTTP in the same run as the
//! rest of the bench.
//!
//! 1. A fresh SQLite ledger (schema from [`Ledger::open`], so the migrations' tables, indexes
//!    and full-text index are the ones measured) is filled with `--discovery-resources`
//!    synthetic catalogue entries in one transaction, the way the facilitator writes them:
//!    a `discovery_resources` row (its FTS5 triggers index it), its `discovery_accepts` rows
//!    and its extension key. One in ten is an MCP tool; one in four can be paid two ways; the
//!    descriptions are drawn from a fixed vocabulary, so some words match a tenth of the
//!    catalogue and one matches a thousandth.
//! 2. Each scenario's answer is read once through the buyer's own client
//!    ([`DiscoveryClient`]) and checked (page size, totals the fill implies) before timing: a
//!    bench of wrong answers measures nothing.
//! 3. Each scenario is then timed over HTTP against the facilitator's router on loopback:
//!    requests/s and p50/p99 latency.
//!
//! Nothing here asserts a speed: a failed request stops the bench, a slow one does not.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tollgate::evm::{ExactEvmFacilitator, FacilitatorConfig};
use tollgate::facilitator::{http as fhttp, Facilitator, Ledger};
use tollgate_client::discovery::{
    DiscoveryClient, ResourceType, ResourcesQuery, SearchQuery, RESOURCES_PATH, SEARCH_PATH,
};

use super::timed::timed;
use super::{err, expect_status, serve, BenchError};
use crate::bench_rig::{signer, BenchChain};

/// The fewest resources the section accepts: below it the filters' selectivities (one MCP
/// tool in 10, one rare network in 100, one rare word in 1,000) leave nothing to find.
pub const MIN_RESOURCES: usize = 1_000;

/// Recipients the synthetic resources pay (so one `payTo` owns resources/PAYEES of them).
const PAYEES: usize = 5_000;

/// The common networks the synthetic resources are paid on, and the rare one (1 in 100).
const NETWORKS: [&str; 4] = ["eip155:8453", "eip155:84532", "eip155:137", "eip155:42161"];
const RARE_NETWORK: &str = "eip155:43114";

/// Words descriptions are made of. The first is in every tenth description; `RARE_WORD` in
/// every thousandth.
const VOCABULARY: [&str; 40] = [
    "weather",
    "forecast",
    "stock",
    "price",
    "quote",
    "translate",
    "summarize",
    "image",
    "render",
    "search",
    "news",
    "headline",
    "market",
    "crypto",
    "exchange",
    "rate",
    "geocode",
    "address",
    "route",
    "traffic",
    "flight",
    "hotel",
    "booking",
    "sentiment",
    "analysis",
    "transcribe",
    "audio",
    "video",
    "thumbnail",
    "ocr",
    "document",
    "invoice",
    "email",
    "verify",
    "identity",
    "score",
    "sports",
    "result",
    "recipe",
    "nutrition",
];
const RARE_WORD: &str = "zeppelin";

/// What the section needs from `tollgate bench`'s options.
pub struct DiscoveryArgs {
    /// Catalogue entries to fill.
    pub resources: usize,
    /// Requests per scenario.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// What the fill wrote.
struct Filled {
    http: u64,
    mcp: u64,
    accepts: u64,
    took: Duration,
}

/// A small deterministic generator (xorshift64*), so every run fills the same catalogue.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A synthetic EVM address (lower-case hex, as the catalogue stores `payTo`).
fn payee(n: usize) -> String {
    format!("0xd0{n:038x}")
}

/// The description of entry `i`: 6–10 vocabulary words (never the first or the rare one),
/// then the first word in one entry of 10 and the rare word in one of 1,000.
fn description(i: usize, rng: &mut Rng) -> String {
    let mut words: Vec<&str> = (0..6 + rng.below(5))
        .map(|_| VOCABULARY[1 + rng.below(VOCABULARY.len() - 1)])
        .collect();
    if i.is_multiple_of(10) {
        words.push(VOCABULARY[0]);
    }
    if i.is_multiple_of(1000) {
        words.push(RARE_WORD);
    }
    let mut text = words.join(" ");
    text.push_str(" API");
    text
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Fills the catalogue of the ledger at `path` (already created by [`Ledger::open`]) with
/// `count` entries in one transaction through prepared statements.
fn fill(path: &Path, count: usize, asset: &str) -> Result<Filled, rusqlite::Error> {
    let started = Instant::now();
    let mut c = rusqlite::Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(30))?;
    // A throwaway file: durability of the fill is not what is measured.
    c.pragma_update(None, "synchronous", "OFF")?;
    c.pragma_update(None, "cache_size", -262_144)?;
    let tx = c.transaction()?;
    let (mut http, mut mcp, mut accepts) = (0u64, 0u64, 0u64);
    {
        let mut put_resource = tx.prepare(
            "INSERT INTO discovery_resources
               (resource, tool_name, kind, x402_version, accepts_json, extensions_json,
                description, mime_type, service_name, tags, icon_url, last_tx, settle_count,
                created_at, last_updated)
             VALUES (?1, ?2, ?3, 2, ?4, ?5, ?6, 'application/json', ?7, ?8, NULL, ?9, ?10, ?11, ?12)",
        )?;
        let mut put_accept = tx.prepare(
            "INSERT INTO discovery_accepts (resource_id, position, scheme, network, pay_to)
             VALUES (?1, ?2, 'exact', ?3, ?4)",
        )?;
        let mut put_key = tx.prepare(
            "INSERT INTO discovery_extension_keys (resource_id, key) VALUES (?1, 'bazaar')",
        )?;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let now = unix_millis();
        for i in 0..count {
            let word = VOCABULARY[1 + rng.below(VOCABULARY.len() - 1)];
            let is_mcp = i.is_multiple_of(10);
            let (resource, tool_name, kind) = if is_mcp {
                mcp += 1;
                (
                    format!("https://mcp{}.example.com/mcp", i % 500),
                    format!("{word}_{i}"),
                    "mcp",
                )
            } else {
                http += 1;
                (
                    format!("https://api{}.example.com/{word}/{i}", i % 2_000),
                    String::new(),
                    "http",
                )
            };
            let network = if i.is_multiple_of(100) {
                RARE_NETWORK
            } else {
                NETWORKS[i % NETWORKS.len()]
            };
            let pay_to = payee(i % PAYEES);
            let mut ways = vec![(network, pay_to.clone())];
            if i % 4 == 1 {
                ways.push((NETWORKS[(i + 1) % NETWORKS.len()], pay_to.clone()));
            }
            let accepts_json = serde_json::Value::Array(
                ways.iter()
                    .map(|(network, pay_to)| {
                        json!({ "scheme": "exact", "network": network,
                                "amount": (1_000 * (1 + i % 500)).to_string(), "asset": asset,
                                "payTo": pay_to, "maxTimeoutSeconds": 60,
                                "extra": { "name": "USD Coin", "version": "2" } })
                    })
                    .collect(),
            )
            .to_string();
            let input = if is_mcp {
                json!({ "type": "mcp", "toolName": tool_name,
                        "inputSchema": { "type": "object",
                            "properties": { "query": { "type": "string" } },
                            "required": ["query"] } })
            } else {
                json!({ "type": "http", "method": "GET", "queryParams": { "q": word } })
            };
            let extensions_json = json!({ "bazaar": {
                "info": { "input": input, "output": { "type": "json",
                          "example": { "result": word } } },
                "schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {
                        "input": { "type": "object",
                                   "properties": { "type": { "type": "string",
                                                             "const": kind } },
                                   "required": ["type"] },
                        "output": { "type": "object",
                                    "properties": { "type": { "type": "string" } },
                                    "required": ["type"] }
                    },
                    "required": ["input"]
                }
            }})
            .to_string();
            let tags = json!([word, VOCABULARY[1 + rng.below(VOCABULARY.len() - 1)]]).to_string();
            let updated = now - i as i64 * 1_000;
            put_resource.execute(rusqlite::params![
                resource,
                tool_name,
                kind,
                accepts_json,
                extensions_json,
                description(i, &mut rng),
                format!("Service {}", i % 3_000),
                tags,
                format!("0x{:064x}", i as u64 + 1),
                1 + (i % 7) as i64,
                updated - 86_400_000,
                updated,
            ])?;
            let id = tx.last_insert_rowid();
            for (position, (network, pay_to)) in ways.iter().enumerate() {
                put_accept.execute(rusqlite::params![id, position as i64, network, pay_to])?;
                accepts += 1;
            }
            put_key.execute([id])?;
        }
    }
    tx.commit()?;
    // The planner's statistics, as a long-running ledger would have them.
    c.execute_batch("ANALYZE")?;
    Ok(Filled {
        http,
        mcp,
        accepts,
        took: started.elapsed(),
    })
}

/// One timed request shape: its label and its endpoint path with query.
struct Scenario {
    name: &'static str,
    path_and_query: String,
}

/// Runs the discovery section and prints its table.
pub async fn run(chain: &BenchChain, dir: &Path, args: &DiscoveryArgs) -> Result<(), BenchError> {
    if args.resources < MIN_RESOURCES {
        return Err(err(format!(
            "--discovery-resources: {} is too few (0 skips the section; otherwise at least \
             {MIN_RESOURCES})",
            args.resources
        )));
    }
    let n = args.resources;
    let asset = chain.usdc.to_string();
    let path = dir.join("bench-discovery-ledger.db");
    let ledger = Ledger::open(&path).map_err(err)?;
    let filled = {
        let (path, asset) = (path.clone(), asset.clone());
        tokio::task::spawn_blocking(move || fill(&path, n, &asset))
            .await
            .map_err(err)?
            .map_err(|e| err(format!("filling the discovery catalogue: {e}")))?
    };
    let file_mb = std::fs::metadata(&path).map_or(0, |m| m.len()) / 1_000_000;
    let scheme =
        ExactEvmFacilitator::connect(chain.endpoint(), signer(0), FacilitatorConfig::default())
            .await
            .map_err(err)?;
    let facilitator = Facilitator::new(vec![scheme], ledger);
    let url = serve(fhttp::router(facilitator, fhttp::HttpLimits::default())).await?;

    println!(
        "\ndiscovery: catalogue of {n} resources ({} http, {} mcp; {} ways to pay) filled in \
         {:.1} s ({file_mb} MB)",
        filled.http,
        filled.mcp,
        filled.accepts,
        filled.took.as_secs_f64(),
    );

    // The answers are checked once before timing, through the buyer's own client.
    let client = DiscoveryClient::new(&url).map_err(err)?;
    let check = |what: &str, got: u64, want: u64| -> Result<(), BenchError> {
        if got == want {
            Ok(())
        } else {
            Err(err(format!(
                "discovery {what}: the facilitator answered {got}, the fill implies {want}"
            )))
        }
    };
    let first = client
        .resources(&ResourcesQuery::default())
        .await
        .map_err(err)?;
    check("total", first.pagination.total, n as u64)?;
    check("page size", first.items.len() as u64, 20)?;
    let mut mcp_only = ResourcesQuery::default();
    mcp_only.filter.kind = Some(ResourceType::Mcp);
    let page = client.resources(&mcp_only).await.map_err(err)?;
    check("MCP tools", page.pagination.total, filled.mcp)?;
    let mut rare_network = ResourcesQuery::default();
    rare_network.filter.network = Some(RARE_NETWORK.parse().map_err(err)?);
    let page = client.resources(&rare_network).await.map_err(err)?;
    check(
        "resources on the rare network",
        page.pagination.total,
        n.div_ceil(100) as u64,
    )?;
    let mut one_payee = ResourcesQuery::default();
    one_payee.filter.pay_to = Some(payee(7));
    let page = client.resources(&one_payee).await.map_err(err)?;
    check(
        "resources of one payee",
        page.pagination.total,
        (0..n).filter(|i| i % PAYEES == 7).count() as u64,
    )?;
    let deep = (n / 2) as u64;
    let page = client
        .resources(&ResourcesQuery {
            offset: deep,
            ..ResourcesQuery::default()
        })
        .await
        .map_err(err)?;
    check("deep page size", page.items.len() as u64, 20)?;
    let found = client
        .search(&SearchQuery::new(RARE_WORD))
        .await
        .map_err(err)?;
    let rare_total = found.pagination.as_ref().and_then(|p| p.total);
    check(
        "matches of the rare word",
        rare_total.unwrap_or(found.resources.len() as u64),
        n.div_ceil(1000) as u64,
    )?;
    let found = client
        .search(&SearchQuery::new(VOCABULARY[0]))
        .await
        .map_err(err)?;
    if found.resources.is_empty() {
        return Err(err("discovery search for a common word found nothing"));
    }

    let scenarios = [
        Scenario {
            name: "list: first page (limit 20)",
            path_and_query: RESOURCES_PATH.to_owned(),
        },
        Scenario {
            name: "list: first page (limit 100)",
            path_and_query: format!("{RESOURCES_PATH}?limit=100"),
        },
        Scenario {
            name: "list: page at offset n/2",
            path_and_query: format!("{RESOURCES_PATH}?offset={deep}"),
        },
        Scenario {
            name: "list: type=mcp (1 in 10)",
            path_and_query: format!("{RESOURCES_PATH}?type=mcp"),
        },
        Scenario {
            name: "list: network filter (1 in 100)",
            path_and_query: format!("{RESOURCES_PATH}?network={RARE_NETWORK}"),
        },
        Scenario {
            name: "list: payTo filter",
            path_and_query: format!("{RESOURCES_PATH}?payTo={}", payee(7)),
        },
        Scenario {
            name: "search: common word (1 in 10)",
            path_and_query: format!("{SEARCH_PATH}?query={}", VOCABULARY[0]),
        },
        Scenario {
            name: "search: rare word (1 in 1,000)",
            path_and_query: format!("{SEARCH_PATH}?query={RARE_WORD}"),
        },
        Scenario {
            name: "search: two words, type=http",
            path_and_query: format!(
                "{SEARCH_PATH}?query={}+{}&type=http",
                VOCABULARY[1], VOCABULARY[2]
            ),
        },
    ];
    let http = reqwest::Client::new();
    let mut results = Vec::with_capacity(scenarios.len());
    for s in &scenarios {
        let target = format!("{url}{}", s.path_and_query);
        // Connections warmed, and a 200 required, before timing.
        expect_status(http.get(&target).send().await, 200)
            .await
            .map_err(|e| err(format!("{}: {e}", s.name)))?;
        let t = timed(s.name, args.requests, args.concurrency, |_| {
            let (http, target) = (http.clone(), target.clone());
            async move { expect_status(http.get(&target).send().await, 200).await }
        })
        .await?;
        results.push(t);
    }

    println!(
        "{:<58} {:>8} {:>9} {:>8} {:>8}",
        "scenario (discovery, GET over HTTP)", "count", "req/s", "p50 ms", "p99 ms"
    );
    for m in &results {
        println!(
            "{:<58} {:>8} {:>9.0} {:>8.2} {:>8.2}",
            m.name,
            m.count,
            m.per_sec(),
            m.latency_ms(50),
            m.latency_ms(99),
        );
    }
    Ok(())
}
