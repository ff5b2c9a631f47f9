//! `tollgate discover`: what a facilitator's bazaar catalogue offers — resources that settled
//! at least one payment, with their price, network and how to call them.
//!
//! Without words it lists (`GET /discovery/resources`, filtered and paged); with words it
//! searches (`GET /discovery/search`). On a terminal it prints a table; with `--json`, or when
//! stdout is a pipe or a file, the facilitator's response as JSON (its items re-encoded
//! through Tollgate's types, so `lastUpdated` is always an ISO 8601 string).
//!
//! Everything shown comes from third parties (sellers describe their own resources), so the
//! table strips control characters: a hostile description cannot move the cursor or recolour
//! the terminal.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tollgate::proto::money::format_atomic;
use tollgate::proto::{asset, Network, Scheme};
use tollgate_client::discovery::{
    DiscoveryClient, DiscoveryError, DiscoveryFilter, DiscoveryResource, ResourceType,
    ResourcesQuery, SearchQuery, MAX_LIMIT,
};

/// An option value is wrong (clap's own syntax errors exit with 2).
pub const EXIT_USAGE: u8 = 1;
/// The facilitator could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// The facilitator answered with an HTTP error.
pub const EXIT_HTTP: u8 = 4;
/// The facilitator's answer is not a discovery response (malformed or oversized).
pub const EXIT_BAD_RESPONSE: u8 = 5;

/// The `--help` epilogue: examples and exit codes.
pub const AFTER_HELP: &str = "Examples:
  tollgate discover --facilitator https://x402.example.com
  tollgate discover weather forecast --facilitator http://127.0.0.1:8402 --type http
  tollgate discover --facilitator http://127.0.0.1:8402 --network eip155:84532 --limit 50 --json

Exit codes:
  0  success (also when nothing matches)
  1  an option's value is invalid (facilitator URL, network, scheme)
  2  command-line syntax error
  3  the facilitator could not be reached (refused, DNS, TLS, timeout)
  4  the facilitator answered an HTTP error (404: it does not serve discovery)
  5  the facilitator's answer is not a discovery response (malformed or too large)";

/// Resource types `--type` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// HTTP endpoints.
    Http,
    /// MCP tools.
    Mcp,
}

/// Options of `tollgate discover`.
#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// Words to search for (full text over descriptions, service names and tags). Without
    /// them, the catalogue is listed.
    #[arg(value_name = "QUERY")]
    query: Vec<String>,
    /// The facilitator whose catalogue to read (its base URL).
    #[arg(long, env = "TOLLGATE_FACILITATOR", value_name = "URL")]
    facilitator: String,
    /// Only resources of this type.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: Option<KindArg>,
    /// Only resources payable on this network (CAIP-2, e.g. eip155:8453, or a v1 name such as
    /// base-sepolia).
    #[arg(long)]
    network: Option<String>,
    /// Only resources accepting this payment scheme (e.g. exact).
    #[arg(long)]
    scheme: Option<String>,
    /// Only resources paying this recipient address.
    #[arg(long, value_name = "ADDRESS")]
    pay_to: Option<String>,
    /// Results per page (1-100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=MAX_LIMIT as i64))]
    limit: u32,
    /// Results to skip (for the next page: the previous offset plus the limit).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Print JSON (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "table")]
    json: bool,
    /// Print the table even when stdout is not a terminal (e.g. into `less`).
    #[arg(long)]
    table: bool,
    /// Give up on the facilitator after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
}

fn fail(json_out: bool, code: u8, message: impl std::fmt::Display) -> ExitCode {
    if json_out {
        println!(
            "{}",
            json!({ "error": message.to_string(), "exitCode": code })
        );
    }
    eprintln!("tollgate discover: {message}");
    ExitCode::from(code)
}

fn exit_code(e: &DiscoveryError) -> u8 {
    match e {
        DiscoveryError::InvalidUrl { .. } => EXIT_USAGE,
        DiscoveryError::Unreachable { .. } => EXIT_UNREACHABLE,
        DiscoveryError::Status { .. } => EXIT_HTTP,
        DiscoveryError::TooLarge { .. } | DiscoveryError::Malformed { .. } => EXIT_BAD_RESPONSE,
    }
}

/// The filters from the options, validated as the facilitator would (so a typo fails here,
/// with exit code 1, not as a 400 from the facilitator).
fn filter(args: &DiscoverArgs) -> Result<DiscoveryFilter, String> {
    let network = args
        .network
        .as_deref()
        .map(Network::parse_any)
        .transpose()
        .map_err(|e| format!("--network: {e}"))?;
    let scheme = args
        .scheme
        .as_deref()
        .map(str::parse::<Scheme>)
        .transpose()
        .map_err(|e| format!("--scheme: {e}"))?;
    let pay_to = match args.pay_to.as_deref() {
        Some(p) if p.is_empty() || p.chars().any(char::is_control) => {
            return Err(format!("--pay-to: {p:?} is not an address"));
        }
        other => other.map(str::to_owned),
    };
    Ok(DiscoveryFilter {
        kind: args.kind.map(|k| match k {
            KindArg::Http => ResourceType::Http,
            KindArg::Mcp => ResourceType::Mcp,
        }),
        pay_to,
        scheme,
        network,
        extensions: None,
    })
}

/// Runs `tollgate discover`; the exit code is in [`AFTER_HELP`].
pub async fn run(args: DiscoverArgs) -> ExitCode {
    let json_out = args.json || (!args.table && !std::io::stdout().is_terminal());
    let filter = match filter(&args) {
        Ok(f) => f,
        Err(e) => return fail(json_out, EXIT_USAGE, e),
    };
    let client = match DiscoveryClient::new(&args.facilitator) {
        Ok(c) => c.timeout(Duration::from_secs(args.timeout.max(1))),
        Err(e) => return fail(json_out, exit_code(&e), e),
    };
    let text = args.query.join(" ");
    let text = text.trim();
    if text.is_empty() {
        let query = ResourcesQuery {
            filter,
            limit: args.limit,
            offset: args.offset,
        };
        match client.resources(&query).await {
            Ok(page) if json_out => print_json(serde_json::to_string_pretty(&page)),
            Ok(page) => {
                print_table(&page.items);
                let p = page.pagination;
                let shown = page.items.len() as u64;
                if shown == 0 {
                    println!("no resources (offset {}, {} in total)", p.offset, p.total);
                } else {
                    println!("\n{}-{} of {}", p.offset + 1, p.offset + shown, p.total);
                    if p.offset + shown < p.total {
                        println!("next page: --offset {}", p.offset + shown);
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(json_out, exit_code(&e), e),
        }
    } else {
        if text.len() > tollgate::proto::discovery::MAX_SEARCH_LEN {
            return fail(
                json_out,
                EXIT_USAGE,
                format!(
                    "the search text is {} bytes; at most {} are allowed",
                    text.len(),
                    tollgate::proto::discovery::MAX_SEARCH_LEN
                ),
            );
        }
        let query = SearchQuery {
            text: text.to_owned(),
            filter,
            limit: args.limit,
            offset: args.offset,
        };
        match client.search(&query).await {
            Ok(found) if json_out => print_json(serde_json::to_string_pretty(&found)),
            Ok(found) => {
                print_table(&found.resources);
                let n = found.resources.len() as u64;
                let total = found.pagination.as_ref().and_then(|p| p.total);
                match total {
                    Some(total) => println!("{}{n} shown of {total} matching {text:?}", gap(n)),
                    None => println!("{}{n} matching {text:?}", gap(n)),
                }
                let more = found.partial_results == Some(true)
                    || total.is_some_and(|t| args.offset + n < t);
                if more && n > 0 {
                    println!("next page: --offset {}", args.offset + n);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(json_out, exit_code(&e), e),
        }
    }
}

/// A blank line between a table and its footer; none when there is no table.
fn gap(rows: u64) -> &'static str {
    if rows == 0 {
        ""
    } else {
        "\n"
    }
}

fn print_json(encoded: Result<String, serde_json::Error>) -> ExitCode {
    match encoded {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(false, EXIT_BAD_RESPONSE, e),
    }
}

/// One row of the table.
struct Row {
    resource: String,
    price: String,
    network: String,
    scheme: String,
    input: String,
}

/// Table rows for `items`: one per way to pay, the resource and its input shape on the first.
fn rows(items: &[DiscoveryResource]) -> Vec<Row> {
    let mut out = Vec::new();
    for item in items {
        let input = input_shape(item);
        let resource = match item.kind {
            ResourceType::Http => item.resource.clone(),
            ref other => format!("{} ({other})", item.resource),
        };
        if item.accepts.is_empty() {
            out.push(Row {
                resource,
                price: "-".into(),
                network: "-".into(),
                scheme: "-".into(),
                input,
            });
            continue;
        }
        for (i, accept) in item.accepts.iter().enumerate() {
            let r = accept.to_v2();
            let first = i == 0;
            out.push(Row {
                resource: if first {
                    resource.clone()
                } else {
                    String::new()
                },
                price: price(&r.network, r.amount.get(), &r.asset),
                network: r.network.to_string(),
                scheme: r.scheme.to_string(),
                input: if first { input.clone() } else { String::new() },
            });
        }
    }
    out
}

/// The price in whole tokens when the asset is known (`0.01 USDC`), else in atomic units with
/// the asset's address (`10000 of 0x5FbD…0aa3`).
fn price(network: &Network, amount: tollgate::proto::U256, asset_address: &str) -> String {
    match asset::find_asset(network, asset_address) {
        Some(known) => format!("{} {}", format_atomic(amount, known.decimals), known.symbol),
        None => format!("{amount} of {}", short_address(asset_address)),
    }
}

fn short_address(a: &str) -> String {
    if a.len() > 14 && a.is_ascii() {
        format!("{}…{}", &a[..6], &a[a.len() - 4..])
    } else {
        a.to_owned()
    }
}

/// How to call the resource, from its bazaar info: `GET ?city,units`, `POST json {query}`,
/// `tool forecast(city, days)`; `-` without one.
fn input_shape(item: &DiscoveryResource) -> String {
    let Some(input) = item.bazaar_input() else {
        return "-".into();
    };
    let keys = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    match input.get("type").and_then(Value::as_str) {
        Some("mcp") => {
            let tool = input.get("toolName").and_then(Value::as_str).unwrap_or("?");
            let params = keys(input.get("inputSchema").and_then(|s| s.get("properties")));
            format!("tool {tool}({})", params.join(", "))
        }
        Some("http") => {
            let method = input.get("method").and_then(Value::as_str).unwrap_or("?");
            let mut shape = method.to_owned();
            let query = keys(input.get("queryParams"));
            if !query.is_empty() {
                shape.push_str(&format!(" ?{}", query.join(",")));
            }
            if let Some(body_type) = input.get("bodyType").and_then(Value::as_str) {
                shape.push_str(&format!(" {body_type}"));
                let body = keys(input.get("body"));
                if !body.is_empty() {
                    shape.push_str(&format!(" {{{}}}", body.join(",")));
                }
            }
            shape
        }
        _ => described(input),
    }
}

fn described(input: &Map<String, Value>) -> String {
    input
        .get("type")
        .and_then(Value::as_str)
        .map_or_else(|| "-".into(), |t| format!("({t})"))
}

/// Removes control characters (escape sequences included) from third-party text.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Cuts `s` to `max` characters with an ellipsis.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn print_table(items: &[DiscoveryResource]) {
    if items.is_empty() {
        return;
    }
    let table: Vec<[String; 5]> = rows(items)
        .into_iter()
        .map(|r| {
            [
                cut(&clean(&r.resource), 80),
                cut(&clean(&r.price), 40),
                cut(&clean(&r.network), 24),
                cut(&clean(&r.scheme), 12),
                cut(&clean(&r.input), 60),
            ]
        })
        .collect();
    print!("{}", render(&table));
}

fn render(table: &[[String; 5]]) -> String {
    let header = ["RESOURCE", "PRICE", "NETWORK", "SCHEME", "INPUT"];
    let mut widths = header.map(|h| h.chars().count());
    for row in table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                s.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header);
    for row in table {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: Value) -> DiscoveryResource {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn table_rows_show_price_network_and_input() {
        let items = vec![
            item(json!({
                "resource": "https://api.example.com/weather", "type": "http", "x402Version": 2,
                "accepts": [
                  {"scheme":"exact","network":"eip155:84532","amount":"10000",
                   "asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                   "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60},
                  {"scheme":"exact","network":"eip155:31337","amount":"2500",
                   "asset":"0x5FbDB2315678afecb367f032d93F642f64180aa3",
                   "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60}],
                "lastUpdated": "2026-01-01T00:00:00.000Z",
                "extensions": {"bazaar": {"info": {"input": {"type": "http", "method": "GET",
                  "queryParams": {"city": "Paris"}}}}}
            })),
            item(json!({
                "resource": "https://api.example.com/mcp", "type": "mcp", "x402Version": 2,
                "accepts": [{"scheme":"exact","network":"eip155:8453","amount":"1500000",
                   "asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                   "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60}],
                "lastUpdated": 1_700_000_000,
                "extensions": {"bazaar": {"info": {"input": {"type": "mcp",
                  "toolName": "analyse", "inputSchema": {"type": "object",
                  "properties": {"ticker": {"type": "string"}}}}}}}
            })),
            item(json!({
                "resource": "https://api.example.com/search", "type": "http", "x402Version": 2,
                "accepts": [], "lastUpdated": 0,
                "extensions": {"bazaar": {"info": {"input": {"type": "http", "method": "POST",
                  "bodyType": "json", "body": {"query": "x"}}}}}
            })),
        ];
        let rows = rows(&items);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].price, "0.01 USDC");
        assert_eq!(rows[0].network, "eip155:84532");
        assert_eq!(rows[0].input, "GET ?city");
        assert_eq!(
            rows[1].resource, "",
            "a further way to pay continues the row"
        );
        assert_eq!(rows[1].price, "2500 of 0x5FbD…0aa3");
        assert_eq!(rows[2].resource, "https://api.example.com/mcp (mcp)");
        assert_eq!(rows[2].price, "1.5 USDC");
        assert_eq!(rows[2].input, "tool analyse(ticker)");
        assert_eq!(rows[3].price, "-");
        assert_eq!(rows[3].input, "POST json {query}");
    }

    #[test]
    fn third_party_text_cannot_drive_the_terminal() {
        assert_eq!(clean("evil\u{1b}[2Jtext\r\n"), "evil[2Jtext");
        assert_eq!(cut("abcdef", 4), "abc…");
        let out = render(&[["r".into(), "p".into(), "n".into(), "s".into(), "i".into()]]);
        assert_eq!(
            out,
            "RESOURCE  PRICE  NETWORK  SCHEME  INPUT\nr         p      n        s       i\n"
        );
    }
}
