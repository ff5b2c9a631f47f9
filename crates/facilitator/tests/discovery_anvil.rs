//! Bazaar discovery against a real anvil node, on a SQLite ledger and on a PostgreSQL one:
//! settled payments carrying `extensions.bazaar` are catalogued (after schema validation) and
//! served by `GET /discovery/resources` and `GET /discovery/search`; invalid descriptions are
//! rejected with the reason in `EXTENSION-RESPONSES`; what was never paid is absent; repeated
//! settlements update the entry instead of duplicating it.

use serde_json::{json, Value};
use tollgate_facilitator::{Config, Facilitator};
use tollgate_proto::bazaar::{
    BazaarExtension, BazaarResponse, BazaarStatus, DiscoveryInfo, DiscoveryInput, DiscoveryOutput,
    HttpInput, McpInput, QueryInput, QueryMethod, EXTENSION_RESPONSES,
};
use tollgate_proto::discovery::{ResourceType, ResourcesResponse, SearchResponse};
use tollgate_proto::{Extensions, PaymentPayload, PaymentRequirements, ResourceInfo};
use tollgate_testkit::{Postgres, TestChain, DEV_KEYS};

mod support;

use support::{body, requirements_for, serve};

/// A facilitator on `chain` whose `[ledger]` section is `ledger`.
fn config(chain: &TestChain, dir: &std::path::Path, ledger: &str) -> Config {
    let key = dir.join("signer.key");
    std::fs::write(&key, format!("{}\n", DEV_KEYS[0])).unwrap();
    let text = format!(
        r#"
[ledger]
{ledger}

[[networks]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_key_file = "{key}"
"#,
        network = chain.caip2(),
        rpc = chain.endpoint(),
        key = key.display(),
    );
    let config = Config::parse(&text).unwrap();
    config.validate().unwrap();
    config
}

/// The bazaar extension of a `GET` endpoint taking a `city` (a string, required).
fn weather_extension() -> Value {
    let mut query = QueryInput::new(QueryMethod::Get);
    query.query_params = Some(json!({ "city": "Paris" }).as_object().unwrap().clone());
    let info = DiscoveryInfo {
        input: DiscoveryInput::Http(HttpInput::Query(query)),
        output: Some(DiscoveryOutput::json(
            json!({ "city": "Paris", "temperature": 21 }),
        )),
    };
    let mut extension = BazaarExtension::new(info).to_value();
    extension["schema"]["properties"]["input"]["properties"]["queryParams"]["required"] =
        json!(["city"]);
    extension
}

/// The bazaar extension of an MCP tool.
fn tool_extension() -> Value {
    let mut tool = McpInput::new(
        "financial_analysis",
        json!({ "type": "object", "properties": { "ticker": { "type": "string" } } })
            .as_object()
            .unwrap()
            .clone(),
    );
    tool.description = Some("Ratios and trends of a listed company".into());
    BazaarExtension::new(DiscoveryInfo {
        input: DiscoveryInput::Mcp(tool),
        output: None,
    })
    .to_value()
}

struct Rig {
    chain: TestChain,
    /// Where the catalogue is: a SQLite file or a PostgreSQL URL.
    ledger: Ledger,
    url: String,
    http: reqwest::Client,
    requirements: PaymentRequirements,
    _facilitator: Facilitator,
    _server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(ledger: Ledger) -> Rig {
        let chain = TestChain::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let section = match &ledger {
            Ledger::Sqlite(name) => format!("path = \"{}\"", dir.path().join(name).display()),
            Ledger::Postgres(url) => format!("url = \"{url}\""),
        };
        let config = config(&chain, dir.path(), &section);
        let (facilitator, _) = Facilitator::from_config(&config).await.unwrap();
        let (url, server) = serve(facilitator.clone()).await;
        let requirements = requirements_for(&chain, TestChain::address(9), chain.usdc);
        let ledger = match ledger {
            Ledger::Sqlite(name) => Ledger::Sqlite(dir.path().join(name).display().to_string()),
            other => other,
        };
        Rig {
            chain,
            ledger,
            url,
            http: reqwest::Client::new(),
            requirements,
            _facilitator: facilitator,
            _server: server,
            _dir: dir,
        }
    }

    /// A payment by `payer` for `resource`, echoing `extensions` as a buyer does.
    async fn payment(
        &self,
        payer: usize,
        resource: ResourceInfo,
        extensions: Extensions,
    ) -> PaymentPayload {
        let mut payment = support::sign(&self.requirements, payer).await;
        payment.resource = Some(resource);
        payment.extensions = Some(extensions);
        payment
    }

    /// POSTs to `/settle` (or `/verify`): status, body, and the bazaar answer of
    /// `EXTENSION-RESPONSES` if any.
    async fn send(
        &self,
        path: &str,
        payment: &PaymentPayload,
        key: Option<&str>,
    ) -> (u16, Value, Option<BazaarResponse>) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body(payment, &self.requirements));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let answer = BazaarResponse::from_headers(response.headers());
        if let Some(raw) = response.headers().get(EXTENSION_RESPONSES) {
            // The header is the spec's: base64 of `{"bazaar":{...}}`.
            let decoded: Value = tollgate_proto::header::decode(raw.to_str().unwrap()).unwrap();
            assert!(decoded.get("bazaar").is_some(), "{decoded}");
        }
        (status, response.json().await.unwrap(), answer)
    }

    /// Every catalogue row's (resource, settle count), read from the database itself.
    async fn settle_counts(&self) -> Vec<(String, i64)> {
        let sql = "SELECT resource, settle_count FROM discovery_resources ORDER BY resource";
        match &self.ledger {
            Ledger::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap();
                let mut statement = c.prepare(sql).unwrap();
                statement
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Ledger::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    .query(sql, &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            }
        }
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn list(&self, query: &str) -> ResourcesResponse {
        let (status, body) = self.get(&format!("/discovery/resources{query}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn search(&self, query: &str) -> SearchResponse {
        let (status, body) = self.get(&format!("/discovery/search{query}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

/// The ledger a rig runs on.
enum Ledger {
    /// A SQLite file of this name in the rig's directory (then its full path).
    Sqlite(String),
    /// A PostgreSQL URL.
    Postgres(String),
}

fn extensions(bazaar: Value) -> Extensions {
    let mut e = Extensions::new();
    e.insert("bazaar".into(), bazaar);
    e
}

/// The whole story on one ledger.
async fn catalogue_story(rig: Rig) {
    let payee = TestChain::address(9).to_string();
    // `/supported` announces the extension.
    let (status, supported) = rig.get("/supported").await;
    assert_eq!(status, 200);
    assert!(supported["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("bazaar")));

    // Nothing is listed before anything is paid.
    let empty = rig.list("").await;
    assert_eq!((empty.items.len(), empty.pagination.total), (0, 0));
    assert_eq!(empty.pagination.limit, 20);

    // A weather endpoint, paid: catalogued, with its schema, under its URL without the query.
    let weather = ResourceInfo {
        description: Some("Current weather forecasts for any city".into()),
        mime_type: Some("application/json".into()),
        service_name: Some("Example Weather".into()),
        tags: Some(vec!["weather".into(), "Weather".into(), "forecast".into()]),
        icon_url: Some("https://localhost/icon.png".into()),
        ..ResourceInfo::new("https://api.example.com/weather?city=Paris")
    };
    let paid = rig
        .payment(1, weather.clone(), extensions(weather_extension()))
        .await;
    let (status, settle, answer) = rig.send("/settle", &paid, None).await;
    assert_eq!(status, 200, "{settle}");
    assert_eq!(answer, Some(BazaarResponse::success()));

    let page = rig.list("").await;
    assert_eq!(page.pagination.total, 1);
    let item = &page.items[0];
    assert_eq!(item.resource, "https://api.example.com/weather");
    assert_eq!(item.kind, ResourceType::Http);
    assert_eq!(
        item.description.as_deref(),
        Some("Current weather forecasts for any city")
    );
    assert_eq!(item.service_name.as_deref(), Some("Example Weather"));
    // Soft-dropped: the duplicate tag and the loopback icon.
    assert_eq!(
        item.tags.as_deref(),
        Some(&["weather".to_owned(), "forecast".to_owned()][..])
    );
    assert_eq!(item.icon_url, None);
    assert_eq!(item.accepts[0].to_v2(), rig.requirements);
    let stored = &item.extensions.as_ref().unwrap()["bazaar"];
    assert_eq!(stored, &weather_extension());
    assert_eq!(
        stored["schema"]["properties"]["input"]["properties"]["queryParams"]["required"],
        json!(["city"])
    );
    let first_update = item.last_updated;

    // An MCP tool, paid: catalogued as `mcp`, keyed by its URL and tool name.
    let tools = ResourceInfo {
        description: Some("Advanced financial tools".into()),
        ..ResourceInfo::new("mcp://tool/financial_analysis")
    };
    let paid_tool = rig.payment(2, tools, extensions(tool_extension())).await;
    let (status, _, answer) = rig.send("/settle", &paid_tool, None).await;
    assert_eq!(status, 200);
    assert_eq!(answer, Some(BazaarResponse::success()));

    // A description whose info breaks its own schema: settled, not catalogued, and told why.
    let mut broken = weather_extension();
    broken["info"]["input"]["queryParams"]["city"] = json!(7);
    let bad = rig
        .payment(
            3,
            ResourceInfo::new("https://api.example.com/broken"),
            extensions(broken),
        )
        .await;
    let (status, settle, answer) = rig.send("/settle", &bad, None).await;
    assert_eq!(status, 200, "the payment itself settles: {settle}");
    let answer = answer.expect("a rejected description is answered");
    assert_eq!(answer.status, BazaarStatus::Rejected);
    let reason = answer.rejected_reason.unwrap();
    assert!(
        reason.contains("info failed schema validation")
            && reason.contains("/input/queryParams/city"),
        "{reason}"
    );

    // Verified but never settled: absent.
    let unpaid = rig
        .payment(
            4,
            ResourceInfo {
                description: Some("Never paid for".into()),
                ..ResourceInfo::new("https://api.example.com/unpaid")
            },
            extensions(weather_extension()),
        )
        .await;
    let (status, _, answer) = rig.send("/verify", &unpaid, None).await;
    assert_eq!(status, 200);
    assert_eq!(answer, None, "verification catalogues nothing");

    // A payment without the extension: nothing to say, nothing listed.
    let plain = support::sign(&rig.requirements, 5).await;
    let (status, _, answer) = rig.send("/settle", &plain, None).await;
    assert_eq!(status, 200);
    assert_eq!(answer, None);

    let all = rig.list("").await;
    assert_eq!(all.pagination.total, 2, "{:?}", all.items);
    let urls: Vec<_> = all.items.iter().map(|i| i.resource.as_str()).collect();
    assert!(
        !urls
            .iter()
            .any(|u| u.contains("broken") || u.contains("unpaid")),
        "{urls:?}"
    );
    // Newest first.
    assert_eq!(all.items[0].resource, "mcp://tool/financial_analysis");
    assert_eq!(all.items[0].tool_name(), Some("financial_analysis"));

    // Filters.
    let count = |page: ResourcesResponse| (page.items.len() as u64, page.pagination.total);
    assert_eq!(count(rig.list("?type=mcp").await), (1, 1));
    assert_eq!(
        rig.list("?type=http").await.items[0].resource,
        "https://api.example.com/weather"
    );
    assert_eq!(
        count(rig.list(&format!("?payTo={}", payee.to_lowercase())).await),
        (2, 2)
    );
    assert_eq!(count(rig.list(&format!("?payTo={payee}")).await), (2, 2));
    assert_eq!(
        count(
            rig.list("?payTo=0x0000000000000000000000000000000000000001")
                .await
        ),
        (0, 0)
    );
    assert_eq!(
        count(rig.list(&format!("?network={}", rig.chain.caip2())).await),
        (2, 2)
    );
    assert_eq!(count(rig.list("?network=eip155:1").await), (0, 0));
    assert_eq!(count(rig.list("?scheme=exact").await), (2, 2));
    assert_eq!(count(rig.list("?scheme=upto").await), (0, 0));
    assert_eq!(count(rig.list("?extensions=bazaar").await), (2, 2));
    assert_eq!(
        count(rig.list("?extensions=payment-identifier").await),
        (0, 0)
    );
    assert_eq!(count(rig.list("?type=mcp&network=eip155:1").await), (0, 0));

    // Pagination.
    let first = rig.list("?limit=1").await;
    assert_eq!(
        (
            first.items.len(),
            first.pagination.total,
            first.pagination.limit
        ),
        (1, 2, 1)
    );
    let second = rig.list("?limit=1&offset=1").await;
    assert_eq!((second.items.len(), second.pagination.offset), (1, 1));
    assert_ne!(first.items[0].resource, second.items[0].resource);
    assert_eq!(rig.list("?offset=2").await.items.len(), 0);
    for (query, parameter) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?offset=-1", "offset"),
        ("?type=HTTP", "type"),
        ("?network=nowhere", "network"),
    ] {
        let (status, body) = rig.get(&format!("/discovery/resources{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }

    // Search by a word of the description, of the service name, of a tag; ranked, paged.
    let found = rig.search("?query=forecasts").await;
    assert_eq!(found.resources.len(), 1);
    assert_eq!(
        found.resources[0].resource,
        "https://api.example.com/weather"
    );
    assert_eq!(rig.search("?query=current").await.resources.len(), 1);
    assert_eq!(
        rig.search("?query=financial").await.resources[0].resource,
        "mcp://tool/financial_analysis"
    );
    assert_eq!(
        rig.search("?query=Example%20Weather").await.resources.len(),
        1
    );
    assert_eq!(
        rig.search("?query=forecast%20financial")
            .await
            .resources
            .len(),
        2
    );
    let paged = rig.search("?query=forecast%20financial&limit=1").await;
    let pagination = paged.pagination.unwrap();
    assert_eq!((paged.resources.len(), pagination.total), (1, Some(2)));
    assert_eq!(paged.partial_results, Some(true));
    let cursor = pagination.cursor.expect("a next page");
    let next = rig
        .search(&format!(
            "?query=forecast%20financial&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.resources.len(), 1);
    assert_ne!(next.resources[0].resource, paged.resources[0].resource);
    assert_eq!(next.pagination.unwrap().cursor, None);
    assert_eq!(
        rig.search("?query=forecast%20financial&type=mcp")
            .await
            .resources
            .len(),
        1
    );
    assert!(rig.search("?query=zzzqqq").await.resources.is_empty());
    assert!(rig
        .search("?query=%22%29%20OR%20*")
        .await
        .resources
        .is_empty());
    let (status, body) = rig.get("/discovery/search").await;
    assert_eq!((status, body["parameter"].clone()), (400, json!("query")));

    // The same settlement asked again (same attempt): still one entry.
    let keyed = rig
        .payment(6, weather.clone(), extensions(weather_extension()))
        .await;
    for _ in 0..2 {
        let (status, settle, answer) = rig.send("/settle", &keyed, Some("attempt-weather-6")).await;
        assert_eq!(status, 200, "{settle}");
        assert_eq!(answer, Some(BazaarResponse::success()));
    }
    // Another settlement of the same resource, with a new description: updated, not duplicated.
    let again = ResourceInfo {
        description: Some("Hourly weather for any city on Earth".into()),
        ..weather.clone()
    };
    let paid_again = rig.payment(7, again, extensions(weather_extension())).await;
    let (status, _, answer) = rig.send("/settle", &paid_again, None).await;
    assert_eq!(status, 200);
    assert_eq!(answer, Some(BazaarResponse::success()));
    let all = rig.list("?type=http").await;
    assert_eq!(all.pagination.total, 1, "{:?}", all.items);
    let item = &all.items[0];
    assert_eq!(
        item.description.as_deref(),
        Some("Hourly weather for any city on Earth")
    );
    assert!(item.last_updated >= first_update);
    assert_eq!(item.accepts.len(), 1, "one way to pay, merged");
    assert_eq!(rig.search("?query=hourly").await.resources.len(), 1);
    assert!(
        rig.search("?query=current").await.resources.is_empty(),
        "the old text is gone from the index"
    );
    assert_eq!(rig.list("").await.pagination.total, 2);
    // One row per resource; the weather's counts its three distinct settlements (the
    // repeated answer to one attempt counted once), the tool's its one.
    assert_eq!(
        rig.settle_counts().await,
        vec![
            ("https://api.example.com/weather".to_owned(), 3),
            ("mcp://tool/financial_analysis".to_owned(), 1),
        ]
    );
}

#[tokio::test]
async fn settled_resources_are_catalogued_on_sqlite() {
    let rig = Rig::start(Ledger::Sqlite("ledger.db".into())).await;
    catalogue_story(rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_resources_are_catalogued_on_postgres() {
    let pg = Postgres::start().unwrap();
    let rig = Rig::start(Ledger::Postgres(pg.url())).await;
    catalogue_story(rig).await;
    drop(pg);
}
