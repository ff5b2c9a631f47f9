//! Bazaar discovery: the wire types of a facilitator's catalogue endpoints
//! (`x402-specification-v2.md` §8, `extensions/bazaar.md` "Optional Discovery Endpoints").
//!
//! - `GET /discovery/resources` → [`ResourcesResponse`]
//!   `{x402Version, items[], pagination{limit, offset, total}}`, asked with a [`ResourcesQuery`];
//! - `GET /discovery/search?query=…` → [`SearchResponse`]
//!   `{x402Version, resources[], partialResults?, pagination?}`, asked with a [`SearchQuery`].
//!
//! Both list [`DiscoveryResource`]s. The query parameters arrive as strings
//! ([`RawDiscoveryParams`], what an HTTP framework's query extractor fills) and become a typed
//! query only through validation ([`ResourcesQuery::from_raw`], [`SearchQuery::from_raw`]), so a
//! facilitator answers a bad `limit` with a 400 that names the parameter
//! ([`DiscoveryQueryError::parameter`]) instead of silently clamping it.
//!
//! ## Where the spec and the official SDK differ
//!
//! - **`lastUpdated`.** The spec's table and example say a unix timestamp (a number); the
//!   official TypeScript client (`@x402/extensions` 2.27.0, `DiscoveryResource.lastUpdated`)
//!   types it as an ISO 8601 string, which is what its facilitators send. [`LastUpdated`] reads
//!   either and always writes the SDK's form, JavaScript's `Date.prototype.toISOString()`
//!   (`2026-12-03T18:29:22.000Z`), so a TypeScript consumer that does `new Date(x)` or compares
//!   strings works unchanged.
//! - **Search pagination.** The bazaar spec gives search a cursor page (`{limit, cursor}`, or
//!   `null`); the list endpoint has an offset page. [`SearchPagination`] carries both: `limit`
//!   and `cursor` (always written, `null` at the end) as the SDK reads them, plus `offset` and
//!   `total` when the facilitator knows them. Tollgate's cursor is the next offset in decimal
//!   ([`SearchQuery::start`] reads it), opaque to clients.
//! - **Service metadata.** The SDK's item carries `description`, `mimeType`, `serviceName`,
//!   `tags` and `iconUrl` at its top level; the spec's example has a free-form `metadata`
//!   object. Both are modelled, all optional.
//! - **`accepts` of a v1 resource.** Catalogues that also list x402 v1 resources (the spec's
//!   example has `"x402Version": 1`) send v1 requirements (`maxAmountRequired`, v1 network
//!   names) or v2 ones; [`DiscoveredAccept`] reads either by its amount field.
//!
//! ```
//! use tollgate_proto::discovery::{ResourcesResponse, ResourceType};
//! let body = r#"{"x402Version":2,"items":[{"resource":"https://api.example.com/premium-data",
//!   "type":"http","x402Version":1,"accepts":[{"scheme":"exact","network":"eip155:84532",
//!   "amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e",
//!   "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,
//!   "extra":{"name":"USDC","version":"2"}}],"lastUpdated":1703123456,
//!   "metadata":{"category":"finance","provider":"Example Corp"}}],
//!   "pagination":{"limit":10,"offset":0,"total":1}}"#;
//! let page: ResourcesResponse = serde_json::from_str(body).unwrap();
//! assert_eq!(page.items[0].kind, ResourceType::Http);
//! assert_eq!(page.items[0].last_updated.unix_seconds(), 1703123456);
//! // Written back in the official SDK's form.
//! let json = serde_json::to_value(&page).unwrap();
//! assert_eq!(json["items"][0]["lastUpdated"], "2023-12-21T01:50:56.000Z");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{
    Extensions, Network, NetworkError, PaymentRequirements, PaymentRequirementsV1, Scheme,
    SchemeError, X402Version, V2,
};

/// Path of the list endpoint.
pub const RESOURCES_PATH: &str = "/discovery/resources";
/// Path of the search endpoint.
pub const SEARCH_PATH: &str = "/discovery/search";
/// Page size when a query names none (spec §8.1).
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page size (spec §8.1: `limit` is 1–100).
pub const MAX_LIMIT: u32 = 100;
/// Largest `offset` accepted: it must fit a signed 64-bit SQL integer.
pub const MAX_OFFSET: u64 = i64::MAX as u64;
/// Longest search text, in bytes. A search is a full-text match, not a document upload; the
/// cap keeps a hostile query from costing the database more than a page of results is worth.
pub const MAX_SEARCH_LEN: usize = 256;
/// Longest value of a filter parameter (`payTo`, `extensions`, `type`), in bytes.
pub const MAX_FILTER_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// Items
// ---------------------------------------------------------------------------------------------

/// What kind of resource a catalogue entry is (`type`): an HTTP endpoint or an MCP tool.
///
/// Other well-formed values (`[a-z0-9_-]`, at most 32 characters) are kept as
/// [`ResourceType::Other`], so a listing that adds a transport still decodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// An HTTP endpoint (`"http"`).
    Http,
    /// An MCP tool (`"mcp"`).
    Mcp,
    /// Another resource type, kept verbatim.
    Other(String),
}

impl ResourceType {
    /// The wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Http => "http",
            Self::Mcp => "mcp",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a resource type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resource type {0:?}: expected \"http\", \"mcp\" or another lower-case token of [a-z0-9_-], at most 32 characters")]
pub struct ResourceTypeError(pub String);

impl FromStr for ResourceType {
    type Err = ResourceTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Self::Http),
            "mcp" => Ok(Self::Mcp),
            _ => {
                let ok = (1..=32).contains(&s.len())
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if ok {
                    Ok(Self::Other(s.to_owned()))
                } else {
                    Err(ResourceTypeError(s.to_owned()))
                }
            }
        }
    }
}

impl Serialize for ResourceType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// When a catalogue entry last changed (`lastUpdated`), to the millisecond.
///
/// Read from a unix timestamp in seconds (an integer or a fraction; the spec's form), a unix
/// timestamp in milliseconds (a number ≥ 10¹¹, which as seconds would be past the year 5000 —
/// JavaScript's `Date.now()` form), or an RFC 3339 / ISO 8601 date-time string with `Z` or a
/// numeric offset (the official SDK's form). Always written as the SDK writes it:
/// `YYYY-MM-DDTHH:MM:SS.sssZ`. Times before 1970 are refused.
///
/// ```
/// use tollgate_proto::discovery::LastUpdated;
/// let a: LastUpdated = serde_json::from_str("1703123456").unwrap();
/// let b: LastUpdated = serde_json::from_str("\"2023-12-21T01:50:56Z\"").unwrap();
/// let c: LastUpdated = serde_json::from_str("\"2023-12-21T03:50:56.000+02:00\"").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(b, c);
/// assert_eq!(a.to_string(), "2023-12-21T01:50:56.000Z");
/// assert!(serde_json::from_str::<LastUpdated>("\"yesterday\"").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LastUpdated {
    unix_millis: u64,
}

/// Numbers at or above this are milliseconds, not seconds (10¹¹ s is in the year 5138).
const MILLIS_THRESHOLD: u64 = 100_000_000_000;
/// The latest time representable: 9999-12-31T23:59:59.999Z, so the ISO form stays 4-digit.
const MAX_MILLIS: u64 = 253_402_300_799_999;

/// Why a `lastUpdated` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LastUpdatedError {
    /// Not an RFC 3339 date-time.
    #[error("invalid lastUpdated {0:?}: expected an ISO 8601 date-time such as \"2026-01-31T12:00:00Z\" or a unix timestamp")]
    Format(String),
    /// Before 1970 or after 9999.
    #[error("lastUpdated {0:?} is out of range (1970-01-01 to 9999-12-31)")]
    OutOfRange(String),
}

impl LastUpdated {
    /// From unix seconds.
    pub fn from_unix_seconds(seconds: u64) -> Self {
        Self::from_unix_millis(seconds.saturating_mul(1000))
    }

    /// From unix milliseconds (clamped to the year 9999).
    pub fn from_unix_millis(millis: u64) -> Self {
        Self {
            unix_millis: millis.min(MAX_MILLIS),
        }
    }

    /// Unix seconds (rounded down).
    pub fn unix_seconds(&self) -> u64 {
        self.unix_millis / 1000
    }

    /// Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        self.unix_millis
    }

    /// The current time.
    pub fn now() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::from_unix_millis(millis)
    }

    fn from_number(n: f64, text: &str) -> Result<Self, LastUpdatedError> {
        if !n.is_finite() || n < 0.0 {
            return Err(LastUpdatedError::OutOfRange(text.to_owned()));
        }
        let millis = if n >= MILLIS_THRESHOLD as f64 {
            n
        } else {
            n * 1000.0
        };
        if millis > MAX_MILLIS as f64 {
            return Err(LastUpdatedError::OutOfRange(text.to_owned()));
        }
        // In range and non-negative: the cast is exact for whole milliseconds.
        Ok(Self::from_unix_millis(millis.floor() as u64))
    }
}

impl fmt::Display for LastUpdated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_millis / 1000;
        let ms = self.unix_millis % 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl FromStr for LastUpdated {
    type Err = LastUpdatedError;

    /// An RFC 3339 date-time, or a unix timestamp written as a decimal string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let n: f64 = t
                .parse()
                .map_err(|_| LastUpdatedError::Format(s.to_owned()))?;
            return Self::from_number(n, s);
        }
        parse_rfc3339(t).ok_or_else(|| LastUpdatedError::Format(s.to_owned()))?
    }
}

/// Parses `YYYY-MM-DD[Tt ]HH:MM:SS[.frac](Z|z|±HH:MM|±HHMM)`. `None` means malformed; an
/// `Err` inside means well-formed but out of range.
fn parse_rfc3339(s: &str) -> Option<Result<LastUpdated, LastUpdatedError>> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        // Milliseconds: the first three digits, padded; finer digits are dropped.
        let digits = &s[start..end.min(start + 3)];
        millis = format!("{digits:0<3}").parse().ok()?;
        i = end;
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') => {
            let rest = &s[i + 1..];
            let (oh, om) = match rest.len() {
                5 if rest.as_bytes()[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // A leap second (:60) is read as the last millisecond of its minute's :59.
    let (second, millis) = if second == 60 {
        (59, 999)
    } else {
        (second, millis)
    };
    let days = days_from_civil(year, month, day);
    let total = ((days * 86_400 + hour * 3600 + minute * 60 + second) - offset_minutes * 60) * 1000
        + millis;
    if total < 0 || total as u64 > MAX_MILLIS {
        return Some(Err(LastUpdatedError::OutOfRange(s.to_owned())));
    }
    Some(Ok(LastUpdated::from_unix_millis(total as u64)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Serialize for LastUpdated {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LastUpdated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => s.parse().map_err(D::Error::custom),
            Value::Number(n) => {
                let text = n.to_string();
                let f = n
                    .as_f64()
                    .ok_or_else(|| D::Error::custom(LastUpdatedError::Format(text.clone())))?;
                LastUpdated::from_number(f, &text).map_err(D::Error::custom)
            }
            other => Err(D::Error::custom(format_args!(
                "invalid lastUpdated: expected an ISO 8601 string or a unix timestamp, got {other}"
            ))),
        }
    }
}

/// One way to pay for a discovered resource: v2 requirements, or v1 ones from a catalogue
/// that lists v1 resources too.
///
/// Told apart by the amount field (`amount` in v2, `maxAmountRequired` in v1), not by trial,
/// so a malformed entry fails with the error of the version it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DiscoveredAccept {
    /// v2 requirements (CAIP-2 network, `amount`).
    V2(PaymentRequirements),
    /// v1 requirements (v1 network name, `maxAmountRequired`, the resource inside).
    V1(PaymentRequirementsV1),
}

impl DiscoveredAccept {
    /// The requirements in v2 form (a v1 entry converted; its `outputSchema` is dropped).
    pub fn to_v2(&self) -> PaymentRequirements {
        match self {
            Self::V2(r) => r.clone(),
            Self::V1(r) => r.to_v2().0,
        }
    }
}

impl From<PaymentRequirements> for DiscoveredAccept {
    fn from(r: PaymentRequirements) -> Self {
        Self::V2(r)
    }
}

impl<'de> Deserialize<'de> for DiscoveredAccept {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let is_v1 = v
            .as_object()
            .is_some_and(|o| o.contains_key("maxAmountRequired") && !o.contains_key("amount"));
        if is_v1 {
            serde_json::from_value(v).map(Self::V1)
        } else {
            serde_json::from_value(v).map(Self::V2)
        }
        .map_err(D::Error::custom)
    }
}

/// One catalogued resource: an item of `/discovery/resources`, a result of `/discovery/search`.
///
/// For an MCP tool the identity is (`resource`, the bazaar info's `toolName`), since one MCP
/// server URL multiplexes many tools; the tool name is inside `extensions.bazaar.info.input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryResource {
    /// The resource's URL (HTTP) or server URL / identifier (MCP).
    pub resource: String,
    /// `http` or `mcp`.
    #[serde(rename = "type")]
    pub kind: ResourceType,
    /// The x402 version the resource speaks.
    pub x402_version: X402Version,
    /// The ways to pay, as the resource offers them.
    pub accepts: Vec<DiscoveredAccept>,
    /// When the catalogue entry last changed (e.g. its last settlement).
    pub last_updated: LastUpdated,
    /// Human-readable description (SDK field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the response (SDK field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Name of the service (SDK field; at most 32 printable ASCII characters at the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Topical tags (SDK field; at most 5 at the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Icon URL (SDK field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// Free-form metadata (the spec's example: `category`, `provider`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Extension payloads echoed from the resource's payment (e.g. `bazaar`: `info`, `schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

impl DiscoveryResource {
    /// The `bazaar` extension's `info`, if present.
    pub fn bazaar_info(&self) -> Option<&Map<String, Value>> {
        self.extensions
            .as_ref()?
            .get("bazaar")?
            .get("info")?
            .as_object()
    }

    /// The `bazaar` info's `input`, if present.
    pub fn bazaar_input(&self) -> Option<&Map<String, Value>> {
        self.bazaar_info()?.get("input")?.as_object()
    }

    /// The MCP tool name (`extensions.bazaar.info.input.toolName`), if this is an MCP tool.
    pub fn tool_name(&self) -> Option<&str> {
        self.bazaar_input()?.get("toolName")?.as_str()
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// The offset page of `/discovery/resources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Page size asked for (not the number of items returned).
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
    /// Items matching the filters, over all pages.
    pub total: u64,
}

/// The body of `GET /discovery/resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesResponse {
    /// The protocol version of the response (2).
    pub x402_version: V2,
    /// This page of resources.
    pub items: Vec<DiscoveryResource>,
    /// Where the page is.
    pub pagination: Pagination,
}

/// The page of `/discovery/search`.
///
/// `limit` and `cursor` are the bazaar spec's (a cursor `null` when there is no next page;
/// always written because the spec requires it when `pagination` is an object). `offset` and
/// `total` are Tollgate's additions for clients that page by offset; other facilitators may
/// omit them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPagination {
    /// Page size.
    pub limit: u32,
    /// Continuation cursor for the next page; `None` (`null`) when there is none.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Results skipped before this page, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Matching results over all pages, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The body of `GET /discovery/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    /// The protocol version of the response (2).
    pub x402_version: V2,
    /// Matching resources, best first.
    pub resources: Vec<DiscoveryResource>,
    /// `true` when more matches exist than were returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_results: Option<bool>,
    /// Paging details; absent or `null` when the facilitator does not page searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<SearchPagination>,
}

/// Tollgate's search cursor: the offset of the next page, in decimal. Opaque to clients.
pub fn search_cursor(next_offset: u64) -> String {
    next_offset.to_string()
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

/// The query parameters of either endpoint as they arrive: strings, unvalidated. Deserialize
/// it with the HTTP framework's query extractor (e.g. axum's `Query`), then validate with
/// [`ResourcesQuery::from_raw`] or [`SearchQuery::from_raw`]. Unknown parameters are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawDiscoveryParams {
    /// Search text (search only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Resource type filter.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Recipient filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// Scheme filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Network filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Extension-key filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<String>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Items to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// Search continuation cursor (search only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A discovery query parameter that failed validation. A facilitator answers it with 400 and
/// [`DiscoveryQueryError::parameter`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryQueryError {
    /// `limit` is not a whole number.
    #[error("invalid limit {0:?}: expected a whole number from 1 to {MAX_LIMIT}")]
    LimitNotANumber(String),
    /// `limit` is 0 or above [`MAX_LIMIT`].
    #[error("limit {0} is out of range: expected 1 to {MAX_LIMIT}")]
    LimitOutOfRange(u64),
    /// `offset` is not a whole number or is above [`MAX_OFFSET`].
    #[error("invalid offset {0:?}: expected a whole number from 0 to {MAX_OFFSET}")]
    Offset(String),
    /// `type` is malformed.
    #[error(transparent)]
    Type(#[from] ResourceTypeError),
    /// `scheme` is malformed.
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    /// `network` is neither CAIP-2 nor a v1 name.
    #[error("invalid network filter: {0}")]
    Network(#[from] NetworkError),
    /// A filter (`payTo`, `extensions`) is empty, too long or holds control characters.
    #[error("invalid {parameter} {value:?}: expected 1 to {MAX_FILTER_LEN} bytes without control characters")]
    Filter {
        /// The parameter's name.
        parameter: &'static str,
        /// The value as given (cut to [`MAX_FILTER_LEN`] bytes).
        value: String,
    },
    /// Search without a `query` (or only whitespace).
    #[error("missing search text: pass ?query=<words>")]
    MissingQuery,
    /// Search text longer than [`MAX_SEARCH_LEN`] bytes.
    #[error("search text is {0} bytes; at most {MAX_SEARCH_LEN} are allowed")]
    QueryTooLong(usize),
    /// A cursor this facilitator did not issue.
    #[error("invalid cursor {0:?}: pass the cursor of a previous search response unchanged")]
    Cursor(String),
}

impl DiscoveryQueryError {
    /// The name of the offending query parameter, as on the wire.
    pub fn parameter(&self) -> &'static str {
        match self {
            Self::LimitNotANumber(_) | Self::LimitOutOfRange(_) => "limit",
            Self::Offset(_) => "offset",
            Self::Type(_) => "type",
            Self::Scheme(_) => "scheme",
            Self::Network(_) => "network",
            Self::Filter { parameter, .. } => parameter,
            Self::MissingQuery | Self::QueryTooLong(_) => "query",
            Self::Cursor(_) => "cursor",
        }
    }
}

/// The filters both endpoints share. `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryFilter {
    /// Only resources of this type.
    pub kind: Option<ResourceType>,
    /// Only resources paying this recipient (compared as the facilitator stores it; EVM
    /// addresses should be compared case-insensitively).
    pub pay_to: Option<String>,
    /// Only resources accepting this scheme.
    pub scheme: Option<Scheme>,
    /// Only resources accepting payment on this network.
    pub network: Option<Network>,
    /// Only resources carrying this extension key (e.g. `bazaar`).
    pub extensions: Option<String>,
}

impl DiscoveryFilter {
    fn from_raw(raw: &RawDiscoveryParams) -> Result<Self, DiscoveryQueryError> {
        fn nonblank(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        Ok(Self {
            kind: nonblank(&raw.kind).map(str::parse).transpose()?,
            pay_to: nonblank(&raw.pay_to)
                .map(|s| check_filter("payTo", s))
                .transpose()?,
            scheme: nonblank(&raw.scheme).map(str::parse).transpose()?,
            network: nonblank(&raw.network).map(Network::parse_any).transpose()?,
            extensions: nonblank(&raw.extensions)
                .map(|s| check_filter("extensions", s))
                .transpose()?,
        })
    }

    fn push_pairs(&self, out: &mut Vec<(&'static str, String)>) {
        if let Some(k) = &self.kind {
            out.push(("type", k.as_str().to_owned()));
        }
        if let Some(p) = &self.pay_to {
            out.push(("payTo", p.clone()));
        }
        if let Some(s) = &self.scheme {
            out.push(("scheme", s.as_str().to_owned()));
        }
        if let Some(n) = &self.network {
            out.push(("network", n.as_str().to_owned()));
        }
        if let Some(e) = &self.extensions {
            out.push(("extensions", e.clone()));
        }
    }
}

fn check_filter(parameter: &'static str, value: &str) -> Result<String, DiscoveryQueryError> {
    if value.len() > MAX_FILTER_LEN || value.chars().any(char::is_control) {
        let mut cut = value.len().min(MAX_FILTER_LEN);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(DiscoveryQueryError::Filter {
            parameter,
            value: value[..cut].to_owned(),
        });
    }
    Ok(value.to_owned())
}

fn parse_limit(raw: Option<&str>) -> Result<Option<u64>, DiscoveryQueryError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| DiscoveryQueryError::LimitNotANumber(s.to_owned())),
    }
}

fn parse_offset(raw: Option<&str>) -> Result<u64, DiscoveryQueryError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(0),
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|o| *o <= MAX_OFFSET)
            .ok_or_else(|| DiscoveryQueryError::Offset(s.to_owned())),
    }
}

/// A validated `GET /discovery/resources` query.
///
/// ```
/// use tollgate_proto::discovery::{RawDiscoveryParams, ResourcesQuery, ResourceType};
/// let raw = RawDiscoveryParams { kind: Some("http".into()), limit: Some("10".into()), ..Default::default() };
/// let q = ResourcesQuery::from_raw(&raw).unwrap();
/// assert_eq!((q.filter.kind, q.limit, q.offset), (Some(ResourceType::Http), 10, 0));
/// let bad = RawDiscoveryParams { limit: Some("0".into()), ..Default::default() };
/// assert_eq!(ResourcesQuery::from_raw(&bad).unwrap_err().parameter(), "limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcesQuery {
    /// What to list.
    pub filter: DiscoveryFilter,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Items to skip, at most [`MAX_OFFSET`].
    pub offset: u64,
}

impl Default for ResourcesQuery {
    fn default() -> Self {
        Self {
            filter: DiscoveryFilter::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl ResourcesQuery {
    /// Validates raw parameters. `limit` must be 1–100 (missing: 20); `offset` a whole number
    /// (missing: 0). Empty parameters count as missing. `query` and `cursor` are ignored.
    pub fn from_raw(raw: &RawDiscoveryParams) -> Result<Self, DiscoveryQueryError> {
        let limit = match parse_limit(raw.limit.as_deref())? {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=u64::from(MAX_LIMIT)).contains(&l) => l as u32,
            Some(l) => return Err(DiscoveryQueryError::LimitOutOfRange(l)),
        };
        Ok(Self {
            filter: DiscoveryFilter::from_raw(raw)?,
            limit,
            offset: parse_offset(raw.offset.as_deref())?,
        })
    }

    /// The query string pairs, for an HTTP client (`reqwest::RequestBuilder::query`).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        self.filter.push_pairs(&mut out);
        out.push(("limit", self.limit.to_string()));
        if self.offset > 0 {
            out.push(("offset", self.offset.to_string()));
        }
        out
    }
}

/// A validated `GET /discovery/search` query.
///
/// `limit` is advisory in the bazaar spec, so a value above [`MAX_LIMIT`] is lowered to it
/// rather than refused (0 and non-numbers are still errors). The page start is the `cursor`
/// when given (Tollgate's cursors are decimal offsets), else `offset`, else 0.
///
/// ```
/// use tollgate_proto::discovery::{RawDiscoveryParams, SearchQuery};
/// let raw = RawDiscoveryParams { query: Some("  weather  ".into()), limit: Some("500".into()), ..Default::default() };
/// let q = SearchQuery::from_raw(&raw).unwrap();
/// assert_eq!((q.text.as_str(), q.limit, q.start()), ("weather", 100, 0));
/// assert!(SearchQuery::from_raw(&RawDiscoveryParams::default()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The search text, trimmed, non-empty, at most [`MAX_SEARCH_LEN`] bytes.
    pub text: String,
    /// What to search among.
    pub filter: DiscoveryFilter,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Results to skip (from `cursor` or `offset`).
    pub offset: u64,
}

impl SearchQuery {
    /// A search for `text` with no filters and the default page.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            filter: DiscoveryFilter::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }

    /// Validates raw parameters (see the type's documentation).
    pub fn from_raw(raw: &RawDiscoveryParams) -> Result<Self, DiscoveryQueryError> {
        let text = raw.query.as_deref().map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Err(DiscoveryQueryError::MissingQuery);
        }
        if text.len() > MAX_SEARCH_LEN {
            return Err(DiscoveryQueryError::QueryTooLong(text.len()));
        }
        let limit = match parse_limit(raw.limit.as_deref())? {
            None => DEFAULT_LIMIT,
            Some(0) => return Err(DiscoveryQueryError::LimitOutOfRange(0)),
            Some(l) => l.min(u64::from(MAX_LIMIT)) as u32,
        };
        let offset = match raw.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => c
                .parse::<u64>()
                .ok()
                .filter(|o| *o <= MAX_OFFSET)
                .ok_or_else(|| DiscoveryQueryError::Cursor(c.chars().take(64).collect()))?,
            None => parse_offset(raw.offset.as_deref())?,
        };
        Ok(Self {
            text: text.to_owned(),
            filter: DiscoveryFilter::from_raw(raw)?,
            limit,
            offset,
        })
    }

    /// Where the page starts.
    pub fn start(&self) -> u64 {
        self.offset
    }

    /// The query string pairs, for an HTTP client. The start goes as `offset` (Tollgate reads
    /// it; the official SDK's facilitators page by `cursor`, which a caller passes itself).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("query", self.text.clone())];
        self.filter.push_pairs(&mut out);
        out.push(("limit", self.limit.to_string()));
        if self.offset > 0 {
            out.push(("offset", self.offset.to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's §8.1 response example, verbatim.
    const SPEC_LIST: &str = r#"{
      "x402Version": 2,
      "items": [
        {
          "resource": "https://api.example.com/premium-data",
          "type": "http",
          "x402Version": 1,
          "accepts": [
            {
              "scheme": "exact",
              "network": "eip155:84532",
              "amount": "10000",
              "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
              "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
              "maxTimeoutSeconds": 60,
              "extra": {
                "name": "USDC",
                "version": "2"
              }
            }
          ],
          "lastUpdated": 1703123456,
          "metadata": {
            "category": "finance",
            "provider": "Example Corp"
          }
        }
      ],
      "pagination": {
        "limit": 10,
        "offset": 0,
        "total": 1
      }
    }"#;

    #[test]
    fn spec_list_example_round_trips() {
        let page: ResourcesResponse = serde_json::from_str(SPEC_LIST).unwrap();
        assert_eq!(page.items.len(), 1);
        let item = &page.items[0];
        assert_eq!(item.resource, "https://api.example.com/premium-data");
        assert_eq!(item.kind, ResourceType::Http);
        assert_eq!(item.x402_version, X402Version::V1);
        let DiscoveredAccept::V2(req) = &item.accepts[0] else {
            panic!("v2 requirements expected: {:?}", item.accepts[0]);
        };
        assert_eq!(req.amount.to_string(), "10000");
        assert_eq!(req.network, Network::eip155(84532));
        assert_eq!(item.last_updated.unix_seconds(), 1_703_123_456);
        assert_eq!(item.metadata.as_ref().unwrap()["category"], "finance");
        assert_eq!(
            page.pagination,
            Pagination {
                limit: 10,
                offset: 0,
                total: 1
            }
        );
        // Written in canonical form; everything else as read.
        let mut expected: Value = serde_json::from_str(SPEC_LIST).unwrap();
        expected["items"][0]["lastUpdated"] = Value::from("2023-12-21T01:50:56.000Z");
        assert_eq!(serde_json::to_value(&page).unwrap(), expected);
        let again: ResourcesResponse =
            serde_json::from_value(serde_json::to_value(&page).unwrap()).unwrap();
        assert_eq!(again, page);
    }

    /// What the official TypeScript SDK's types describe: ISO `lastUpdated`, service metadata
    /// at the top level, the bazaar extension echoed, a cursor page on search.
    #[test]
    fn sdk_shaped_search_response() {
        let body = r#"{
          "x402Version": 2,
          "resources": [{
            "resource": "https://api.example.com/mcp",
            "type": "mcp",
            "x402Version": 2,
            "accepts": [{"scheme":"exact","network":"eip155:8453","amount":"1000",
              "asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
              "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60}],
            "lastUpdated": "2026-01-31T12:34:56.789Z",
            "description": "Advanced AI-powered financial tools",
            "mimeType": "application/json",
            "serviceName": "Example Finance",
            "tags": ["finance"],
            "iconUrl": "https://api.example.com/icon.png",
            "extensions": {"bazaar": {"info": {"input": {"type": "mcp",
              "toolName": "financial_analysis", "inputSchema": {"type": "object"}}}}}
          }],
          "partialResults": false,
          "pagination": {"limit": 5, "cursor": null}
        }"#;
        let page: SearchResponse = serde_json::from_str(body).unwrap();
        let r = &page.resources[0];
        assert_eq!(r.kind, ResourceType::Mcp);
        assert_eq!(r.tool_name(), Some("financial_analysis"));
        assert_eq!(r.service_name.as_deref(), Some("Example Finance"));
        assert_eq!(r.last_updated.unix_millis(), 1_769_862_896_789);
        assert_eq!(r.last_updated.to_string(), "2026-01-31T12:34:56.789Z");
        let p = page.pagination.clone().unwrap();
        assert_eq!((p.limit, p.cursor, p.offset), (5, None, None));
        // cursor is written even when null (the spec requires the field in an object).
        let v = serde_json::to_value(&page).unwrap();
        assert_eq!(
            v["pagination"],
            serde_json::json!({"limit": 5, "cursor": null})
        );
        assert_eq!(v["resources"][0]["lastUpdated"], "2026-01-31T12:34:56.789Z");
        // pagination may be null or absent.
        let bare: SearchResponse =
            serde_json::from_str(r#"{"x402Version":2,"resources":[],"pagination":null}"#).unwrap();
        assert!(bare.pagination.is_none());
    }

    #[test]
    fn v1_accepts_are_read_as_v1() {
        let body = r#"{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000",
          "resource":"https://api.example.com/x","description":"","mimeType":"",
          "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,
          "asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e"}"#;
        let a: DiscoveredAccept = serde_json::from_str(body).unwrap();
        assert!(matches!(a, DiscoveredAccept::V1(_)));
        let v2 = a.to_v2();
        assert_eq!(v2.network, Network::eip155(84532));
        assert_eq!(v2.amount.to_string(), "10000");
        // A v2 entry with a bad amount fails as v2, naming the field.
        let bad = r#"{"scheme":"exact","network":"eip155:1","amount":"-1","asset":"a","payTo":"b","maxTimeoutSeconds":1}"#;
        let err = serde_json::from_str::<DiscoveredAccept>(bad).unwrap_err();
        assert!(
            err.to_string().contains("amount") || err.to_string().contains("-1"),
            "{err}"
        );
    }

    #[test]
    fn last_updated_forms() {
        let parse = |s: &str| serde_json::from_str::<LastUpdated>(s);
        let base = LastUpdated::from_unix_seconds(1_703_123_456);
        for same in [
            "1703123456",
            "1703123456.0",
            "1703123456000",
            "\"1703123456\"",
            "\"2023-12-21T01:50:56Z\"",
            "\"2023-12-21t01:50:56z\"",
            "\"2023-12-21 01:50:56Z\"",
            "\"2023-12-21T01:50:56.000Z\"",
            "\"2023-12-21T01:50:56.0001234Z\"",
            "\"2023-12-20T20:50:56-05:00\"",
            "\"2023-12-21T03:20:56+0130\"",
        ] {
            assert_eq!(parse(same).unwrap(), base, "{same}");
        }
        assert_eq!(
            parse("1703123456.5").unwrap().unix_millis(),
            1_703_123_456_500
        );
        assert_eq!(
            parse("\"2023-12-21T01:50:56.5Z\"").unwrap().unix_millis() % 1000,
            500
        );
        assert_eq!(parse("0").unwrap().to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse("\"2024-02-29T23:59:59Z\"").unwrap().to_string(),
            "2024-02-29T23:59:59.000Z"
        );
        assert_eq!(
            parse("\"2016-12-31T23:59:60Z\"").unwrap().to_string(),
            "2016-12-31T23:59:59.999Z"
        );
        for bad in [
            "-1",
            "true",
            "null",
            "\"\"",
            "\"yesterday\"",
            "\"2023-02-29T00:00:00Z\"",
            "\"2023-13-01T00:00:00Z\"",
            "\"2023-12-21T24:00:00Z\"",
            "\"2023-12-21T01:50:56\"",
            "\"2023-12-21T01:50:56+25:00\"",
            "\"2023-12-21T01:50:56Zjunk\"",
            "\"2023-12-21T01:50:56.Z\"",
            "\"1969-12-31T23:59:59Z\"",
            "\"1970-01-01T00:30:00+01:00\"",
            "1e300",
            "\"2023-12-21T01:50:５6Z\"",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
        // Every day of several years survives a round trip through the calendar.
        for day in (0..200_000i64).step_by(37) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn resources_query_validation() {
        let raw = |pairs: &[(&str, &str)]| -> RawDiscoveryParams {
            let obj: Map<String, Value> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            serde_json::from_value(Value::Object(obj)).unwrap()
        };
        let q = ResourcesQuery::from_raw(&raw(&[])).unwrap();
        assert_eq!(q, ResourcesQuery::default());
        assert_eq!(q.limit, 20);
        let q = ResourcesQuery::from_raw(&raw(&[
            ("type", "mcp"),
            ("payTo", "0xabc"),
            ("scheme", "exact"),
            ("network", "base-sepolia"),
            ("extensions", "bazaar"),
            ("limit", "100"),
            ("offset", "40"),
            ("unknown", "ignored"),
        ]))
        .unwrap();
        assert_eq!(q.filter.kind, Some(ResourceType::Mcp));
        assert_eq!(q.filter.network, Some(Network::eip155(84532)));
        assert_eq!(q.filter.scheme, Some(Scheme::Exact));
        assert_eq!((q.limit, q.offset), (100, 40));
        assert_eq!(
            q.to_pairs(),
            vec![
                ("type", "mcp".to_owned()),
                ("payTo", "0xabc".to_owned()),
                ("scheme", "exact".to_owned()),
                ("network", "eip155:84532".to_owned()),
                ("extensions", "bazaar".to_owned()),
                ("limit", "100".to_owned()),
                ("offset", "40".to_owned()),
            ]
        );
        // Empty values count as absent.
        assert_eq!(
            ResourcesQuery::from_raw(&raw(&[("type", ""), ("limit", "")])).unwrap(),
            ResourcesQuery::default()
        );
        let err = |pairs: &[(&str, &str)]| ResourcesQuery::from_raw(&raw(pairs)).unwrap_err();
        assert_eq!(
            err(&[("limit", "0")]),
            DiscoveryQueryError::LimitOutOfRange(0)
        );
        assert_eq!(
            err(&[("limit", "101")]),
            DiscoveryQueryError::LimitOutOfRange(101)
        );
        assert_eq!(err(&[("limit", "ten")]).parameter(), "limit");
        assert_eq!(err(&[("limit", "-1")]).parameter(), "limit");
        assert_eq!(err(&[("offset", "-5")]).parameter(), "offset");
        assert_eq!(
            err(&[("offset", "9223372036854775808")]).parameter(),
            "offset"
        );
        assert_eq!(err(&[("type", "HTTP")]).parameter(), "type");
        assert_eq!(err(&[("scheme", "Exact")]).parameter(), "scheme");
        assert_eq!(err(&[("network", "nowhere")]).parameter(), "network");
        assert_eq!(err(&[("payTo", "a\u{0}b")]).parameter(), "payTo");
        let long = "x".repeat(MAX_FILTER_LEN + 1);
        assert_eq!(err(&[("extensions", &long)]).parameter(), "extensions");
        assert!(err(&[("limit", "0")]).to_string().contains("1 to 100"));
    }

    #[test]
    fn search_query_validation() {
        let raw =
            |q: Option<&str>, limit: Option<&str>, offset: Option<&str>, cursor: Option<&str>| {
                RawDiscoveryParams {
                    query: q.map(Into::into),
                    limit: limit.map(Into::into),
                    offset: offset.map(Into::into),
                    cursor: cursor.map(Into::into),
                    ..Default::default()
                }
            };
        let q = SearchQuery::from_raw(&raw(Some("weather APIs"), None, None, None)).unwrap();
        assert_eq!(
            (q.text.as_str(), q.limit, q.start()),
            ("weather APIs", 20, 0)
        );
        assert_eq!(
            q.to_pairs(),
            vec![
                ("query", "weather APIs".to_owned()),
                ("limit", "20".to_owned())
            ]
        );
        let q = SearchQuery::from_raw(&raw(Some("w"), Some("5"), Some("10"), Some("30"))).unwrap();
        assert_eq!((q.limit, q.start()), (5, 30), "the cursor wins over offset");
        let q = SearchQuery::from_raw(&raw(Some("w"), None, Some("10"), None)).unwrap();
        assert_eq!(q.start(), 10);
        assert_eq!(search_cursor(30).parse::<u64>().unwrap(), 30);
        let err = |r: RawDiscoveryParams| SearchQuery::from_raw(&r).unwrap_err();
        assert_eq!(
            err(raw(None, None, None, None)),
            DiscoveryQueryError::MissingQuery
        );
        assert_eq!(
            err(raw(Some("   "), None, None, None)),
            DiscoveryQueryError::MissingQuery
        );
        let long = "w".repeat(MAX_SEARCH_LEN + 1);
        assert_eq!(err(raw(Some(&long), None, None, None)).parameter(), "query");
        assert_eq!(
            err(raw(Some("w"), Some("0"), None, None)).parameter(),
            "limit"
        );
        assert_eq!(
            err(raw(Some("w"), None, None, Some("eyJwYWdlIjoyfQ=="))).parameter(),
            "cursor"
        );
    }

    #[test]
    fn resource_type_tokens() {
        assert_eq!("http".parse::<ResourceType>().unwrap(), ResourceType::Http);
        assert_eq!(
            serde_json::from_str::<ResourceType>("\"a2a\"").unwrap(),
            ResourceType::Other("a2a".into())
        );
        assert!("".parse::<ResourceType>().is_err());
        assert!("Http".parse::<ResourceType>().is_err());
        assert_eq!(
            serde_json::to_string(&ResourceType::Mcp).unwrap(),
            "\"mcp\""
        );
    }
}
