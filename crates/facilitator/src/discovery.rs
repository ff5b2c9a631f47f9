//! Bazaar discovery, facilitator side: the catalogue of paid resources and the endpoints that
//! serve it (`GET /discovery/resources`, `GET /discovery/search`).
//!
//! **What gets in.** Only a resource whose payment this facilitator *settled*: on each
//! successful settlement of a v2 payment carrying `extensions.bazaar`, the extension is
//! validated — `info` against its `schema` with a real JSON Schema validator (no remote
//! `$ref`), then against the typed shape of `tollgate_proto::bazaar` — and the resource is
//! upserted. Spam costs a real payment per entry, and a resource nobody paid is never listed.
//! A rejected description is not catalogued, and the settle response's `EXTENSION-RESPONSES`
//! header says why (`{"bazaar":{"status":"rejected","rejectedReason":"…"}}`); the settlement
//! itself is unaffected.
//!
//! **Keys.** One row per (catalogue URL, MCP tool name): the URL's origin and path without
//! query, or the origin and the extension's `routeTemplate` when valid (so `/users/1` and
//! `/users/2` are one entry), as the official SDKs key it. Each settlement updates the row
//! (description, metadata, bazaar extension, the way it was paid merged into `accepts`), so a
//! resource is never listed twice; the settle count grows once per distinct transaction.
//!
//! **What a buyer echoes is not trusted blindly.** The `resource` block comes from the payment,
//! so its service metadata goes through the spec's soft-drop rules
//! ([`ServiceMetadata::sanitize`]) and long descriptions are cut.
//!
//! **Storage.** Tables of the ledger database (migration 4 of `tollgate-migrations`):
//! `discovery_resources`, `discovery_accepts` (the `payTo`/`scheme`/`network` filters),
//! `discovery_extension_keys` (the `extensions` filter), and full-text search with the
//! database's own engine — SQLite FTS5 (`porter unicode61`, kept in step by triggers),
//! PostgreSQL a generated `tsvector` (`english`) with a GIN index. Search text is cut into
//! words (letters and digits only, so no query syntax reaches the engine), any of which may
//! match, as prefixes; results are ranked by relevance (BM25 / `ts_rank`), then recency.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tollgate_proto::bazaar::{self, BazaarResponse, DiscoveryInput, ServiceMetadata};
use tollgate_proto::discovery::{
    search_cursor, DiscoveredAccept, DiscoveryFilter, DiscoveryResource, LastUpdated, Pagination,
    ResourceType, ResourcesQuery, ResourcesResponse, SearchPagination, SearchQuery, SearchResponse,
};
use tollgate_proto::{PaymentPayload, PaymentRequirements, SettleResponse, X402Version, V2};

use crate::ledger::{Database, Ledger};

/// Longest description kept, in characters: a catalogue shows a line, not a document.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most payment options kept per resource (the newest win).
pub const MAX_ACCEPTS: usize = 16;
/// Most words of a search used.
const MAX_SEARCH_WORDS: usize = 16;
/// Longest search word used, in characters.
const MAX_WORD_CHARS: usize = 64;

/// Why the catalogue could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The database failed.
    #[error("discovery catalogue: {0}")]
    Database(String),
    /// A stored row could not be read back (a bug or a hand-edited row).
    #[error("discovery catalogue row {id} is unreadable: {detail}")]
    Corrupt {
        /// The row.
        id: i64,
        /// What is wrong.
        detail: String,
    },
}

impl From<rusqlite::Error> for CatalogueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for CatalogueError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::Database(format!("{}: {}", db.code().code(), db.message())),
            None => Self::Database(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for CatalogueError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Database(format!("PostgreSQL pool: {e}"))
    }
}

/// What one settlement contributes to the catalogue: a validated entry, ready to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueEntry {
    /// The catalogue URL (origin + path or route template).
    pub resource: String,
    /// The MCP tool name; empty for HTTP.
    pub tool_name: String,
    /// `http` or `mcp`.
    pub kind: &'static str,
    /// The way it was paid.
    pub accepted: PaymentRequirements,
    /// The validated bazaar extension, as received.
    pub bazaar: Value,
    /// The keys of every extension the payment carried.
    pub extension_keys: Vec<String>,
    /// Description (cut to [`MAX_DESCRIPTION_CHARS`]).
    pub description: Option<String>,
    /// MIME type.
    pub mime_type: Option<String>,
    /// Sanitized service metadata.
    pub service: ServiceMetadata,
    /// The settlement's transaction.
    pub transaction: String,
}

impl CatalogueEntry {
    /// The entry a settled `payment` makes: `None` when it carries no bazaar extension,
    /// `Some(Err(reason))` when the extension (or the resource it names) is rejected.
    pub fn from_settlement(
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        settled: &SettleResponse,
    ) -> Option<Result<Self, String>> {
        let extensions = payment.extensions.as_ref()?;
        let raw = extensions.get(bazaar::BAZAAR)?;
        Some(Self::build(payment, extensions, raw, requirements, settled))
    }

    fn build(
        payment: &PaymentPayload,
        extensions: &Map<String, Value>,
        raw: &Value,
        requirements: &PaymentRequirements,
        settled: &SettleResponse,
    ) -> Result<Self, String> {
        let extension = bazaar::validate_extension(raw)?;
        let resource = payment
            .resource
            .as_ref()
            .ok_or("the payment names no resource (`resource.url`), so there is nothing to list")?;
        let key = bazaar::catalogue_url(&resource.url, extension.route_template.as_deref())
            .ok_or_else(|| {
                format!(
                    "resource.url {:?} is not an absolute URL",
                    resource.url.chars().take(200).collect::<String>()
                )
            })?;
        if key.len() > 2048 {
            return Err("resource.url is longer than 2048 characters".into());
        }
        let (kind, tool_name) = match &extension.info.input {
            DiscoveryInput::Http(_) => ("http", String::new()),
            DiscoveryInput::Mcp(mcp) => {
                if mcp.tool_name.is_empty() || mcp.tool_name.len() > 128 {
                    return Err("info.input.toolName must be 1 to 128 characters".into());
                }
                ("mcp", mcp.tool_name.clone())
            }
        };
        let description = resource
            .description
            .as_deref()
            .map(|d| d.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>())
            .filter(|d| !d.trim().is_empty());
        let mime_type = resource
            .mime_type
            .clone()
            .filter(|m| m.len() <= 255 && !m.chars().any(char::is_control));
        Ok(Self {
            resource: key,
            tool_name,
            kind,
            accepted: requirements.clone(),
            bazaar: raw.clone(),
            // Extension keys are short identifiers; anything else a buyer added is not listed.
            extension_keys: extensions
                .keys()
                .filter(|k| {
                    (1..=64).contains(&k.len())
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                })
                .take(16)
                .cloned()
                .collect(),
            description,
            mime_type,
            service: ServiceMetadata::sanitize(resource),
            transaction: settled.transaction.clone(),
        })
    }
}

/// The spelling of a payee used for filtering: EVM-style hex in lower case.
fn canonical_pay_to(pay_to: &str) -> String {
    let pay_to = pay_to.trim();
    if pay_to.starts_with("0x") || pay_to.starts_with("0X") {
        pay_to.to_ascii_lowercase()
    } else {
        pay_to.to_owned()
    }
}

/// Whether two requirements are the same way to pay (price aside, which may change).
fn same_option(a: &PaymentRequirements, b: &PaymentRequirements) -> bool {
    a.scheme == b.scheme
        && a.network == b.network
        && a.asset.eq_ignore_ascii_case(&b.asset)
        && canonical_pay_to(&a.pay_to) == canonical_pay_to(&b.pay_to)
}

/// `accepts` after a settlement paid with `accepted`: that option replaced or added first,
/// the others kept, at most [`MAX_ACCEPTS`].
fn merge_accepts(stored: &str, accepted: &PaymentRequirements) -> Vec<PaymentRequirements> {
    let old: Vec<PaymentRequirements> = serde_json::from_str(stored).unwrap_or_default();
    let mut merged = vec![accepted.clone()];
    merged.extend(old.into_iter().filter(|o| !same_option(o, accepted)));
    merged.truncate(MAX_ACCEPTS);
    merged
}

/// The words of a search: runs of letters and digits, lower case, at most
/// [`MAX_SEARCH_WORDS`] of at most [`MAX_WORD_CHARS`]. Nothing else reaches the engine, so
/// no input can be read as query syntax.
fn search_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word: String = word
            .chars()
            .take(MAX_WORD_CHARS)
            .collect::<String>()
            .to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_SEARCH_WORDS {
            break;
        }
    }
    words
}

/// One stored row, as read back.
struct Row {
    id: i64,
    resource: String,
    kind: String,
    x402_version: i64,
    accepts_json: String,
    extensions_json: String,
    description: Option<String>,
    mime_type: Option<String>,
    service_name: Option<String>,
    tags: String,
    icon_url: Option<String>,
    last_updated: i64,
}

/// The columns [`Row`] reads, prefixed by the resources table's alias `r`.
const ROW_COLUMNS: &str = "r.id, r.resource, r.kind, r.x402_version, r.accepts_json, \
     r.extensions_json, r.description, r.mime_type, r.service_name, r.tags, r.icon_url, \
     r.last_updated";

impl Row {
    fn into_resource(self) -> Result<DiscoveryResource, CatalogueError> {
        let corrupt = |detail: String| CatalogueError::Corrupt {
            id: self.id,
            detail,
        };
        let accepts: Vec<DiscoveredAccept> = serde_json::from_str(&self.accepts_json)
            .map_err(|e| corrupt(format!("accepts: {e}")))?;
        let extensions: Map<String, Value> = serde_json::from_str(&self.extensions_json)
            .map_err(|e| corrupt(format!("extensions: {e}")))?;
        let tags: Vec<String> = if self.tags.is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&self.tags).map_err(|e| corrupt(format!("tags: {e}")))?
        };
        let kind = self
            .kind
            .parse::<ResourceType>()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(DiscoveryResource {
            resource: self.resource,
            kind,
            x402_version: if self.x402_version == 1 {
                X402Version::V1
            } else {
                X402Version::V2
            },
            accepts,
            last_updated: LastUpdated::from_unix_millis(
                u64::try_from(self.last_updated).unwrap_or(0),
            ),
            description: self.description,
            mime_type: self.mime_type,
            service_name: self.service_name,
            tags: (!tags.is_empty()).then_some(tags),
            icon_url: self.icon_url,
            metadata: None,
            extensions: (!extensions.is_empty()).then_some(extensions),
        })
    }
}

/// The SQL dialect's placeholders: `?N` (SQLite) or `$N` (PostgreSQL).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A `WHERE` clause under construction, with its parameters (all text).
struct Where {
    dialect: Dialect,
    clauses: Vec<String>,
    params: Vec<String>,
}

impl Where {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            clauses: Vec::new(),
            params: Vec::new(),
        }
    }

    /// A placeholder bound to `value`.
    fn bind(&mut self, value: String) -> String {
        self.params.push(value);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    fn filter(&mut self, filter: &DiscoveryFilter) {
        if let Some(kind) = &filter.kind {
            let p = self.bind(kind.as_str().to_owned());
            self.clauses.push(format!("r.kind = {p}"));
        }
        // One payment option must match every accepts filter given: "payable to X on N".
        let mut accept = Vec::new();
        if let Some(pay_to) = &filter.pay_to {
            let p = self.bind(canonical_pay_to(pay_to));
            accept.push(format!("a.pay_to = {p}"));
        }
        if let Some(scheme) = &filter.scheme {
            let p = self.bind(scheme.to_string());
            accept.push(format!("a.scheme = {p}"));
        }
        if let Some(network) = &filter.network {
            let p = self.bind(network.to_string());
            accept.push(format!("a.network = {p}"));
        }
        // `IN (uncorrelated subquery)` rather than a correlated `EXISTS`: the planner then
        // drives from the (indexed) matching options instead of walking every resource — on
        // 100,000 entries a `payTo` count went from ~77 ms to ~0.1 ms (`tollgate bench`).
        if !accept.is_empty() {
            self.clauses.push(format!(
                "r.id IN (SELECT a.resource_id FROM discovery_accepts a WHERE {})",
                accept.join(" AND ")
            ));
        }
        if let Some(key) = &filter.extensions {
            let p = self.bind(key.clone());
            self.clauses.push(format!(
                "r.id IN (SELECT k.resource_id FROM discovery_extension_keys k WHERE k.key = {p})"
            ));
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// The catalogue, over the ledger's database. Cheap to clone.
#[derive(Clone)]
pub struct Catalogue {
    db: Database,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.db {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        };
        f.debug_struct("Catalogue")
            .field("backend", &backend)
            .finish()
    }
}

impl Catalogue {
    /// The catalogue kept in `ledger`'s database (its tables are created by the ledger's
    /// migrations).
    pub fn new(ledger: &Ledger) -> Self {
        Self {
            db: ledger.database(),
        }
    }

    /// Catalogues what a successful settlement of `payment` describes, and says what became
    /// of it — for the `EXTENSION-RESPONSES` header. `None` when the payment carries no bazaar
    /// extension or did not settle (a failed settlement lists nothing). A database failure is
    /// logged and answered `rejected`: the payment is settled either way, and discovery never
    /// fails it.
    pub async fn record_settlement(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        settled: &SettleResponse,
    ) -> Option<BazaarResponse> {
        if !settled.success {
            return None;
        }
        let entry = match CatalogueEntry::from_settlement(payment, requirements, settled)? {
            Ok(entry) => entry,
            Err(reason) => {
                tracing::info!(resource = ?payment.resource.as_ref().map(|r| &r.url), %reason, "bazaar discovery data rejected");
                return Some(BazaarResponse::rejected(reason));
            }
        };
        match self.upsert(&entry).await {
            Ok(()) => Some(BazaarResponse::success()),
            Err(e) => {
                tracing::warn!(error = %e, resource = %entry.resource, "the discovery catalogue could not be updated");
                Some(BazaarResponse::rejected(
                    "the facilitator could not store the discovery data; it will be catalogued on a later settlement",
                ))
            }
        }
    }

    /// Inserts or updates `entry`'s resource.
    pub async fn upsert(&self, entry: &CatalogueEntry) -> Result<(), CatalogueError> {
        let now = LastUpdated::now().unix_millis() as i64;
        match &self.db {
            Database::Sqlite(conn) => {
                let conn = conn.clone();
                let entry = entry.clone();
                tokio::task::spawn_blocking(move || sqlite_upsert(&conn, &entry, now))
                    .await
                    .map_err(|e| CatalogueError::Database(format!("catalogue task failed: {e}")))?
            }
            Database::Postgres(pool) => postgres_upsert(pool, entry, now).await,
        }
    }

    /// `GET /discovery/resources`: a page of the catalogue, newest first.
    pub async fn list(&self, query: &ResourcesQuery) -> Result<ResourcesResponse, CatalogueError> {
        let (items, total) = self
            .page(None, &query.filter, query.limit, query.offset)
            .await?;
        Ok(ResourcesResponse {
            x402_version: V2,
            items,
            pagination: Pagination {
                limit: query.limit,
                offset: query.offset,
                total,
            },
        })
    }

    /// `GET /discovery/search`: resources matching any word of the query, best first.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResponse, CatalogueError> {
        let words = search_words(&query.text);
        let (resources, total) = if words.is_empty() {
            (Vec::new(), 0)
        } else {
            self.page(Some(&words), &query.filter, query.limit, query.offset)
                .await?
        };
        let next = query.offset.saturating_add(resources.len() as u64);
        let more = next < total;
        Ok(SearchResponse {
            x402_version: V2,
            resources,
            partial_results: Some(more),
            pagination: Some(SearchPagination {
                limit: query.limit,
                cursor: more.then(|| search_cursor(next)),
                offset: Some(query.offset),
                total: Some(total),
            }),
        })
    }

    /// One page and the total, of everything matching the filter (and the words, if any).
    async fn page(
        &self,
        words: Option<&[String]>,
        filter: &DiscoveryFilter,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<DiscoveryResource>, u64), CatalogueError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = match &self.db {
            Database::Sqlite(conn) => {
                let conn = conn.clone();
                let words = words.map(<[String]>::to_vec);
                let filter = filter.clone();
                tokio::task::spawn_blocking(move || {
                    sqlite_page(&conn, words.as_deref(), &filter, limit, offset)
                })
                .await
                .map_err(|e| CatalogueError::Database(format!("catalogue task failed: {e}")))??
            }
            Database::Postgres(pool) => postgres_page(pool, words, filter, limit, offset).await?,
        };
        let (rows, total) = rows;
        let items = rows
            .into_iter()
            .map(Row::into_resource)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, total))
    }
}

/// The values written for an entry, in the order of the `UPDATE` below (`?1`–`?12`, then the
/// row id).
struct Written {
    kind: String,
    accepts_json: String,
    extensions_json: String,
    description: Option<String>,
    mime_type: Option<String>,
    service_name: Option<String>,
    tags: String,
    icon_url: Option<String>,
    transaction: String,
    now: i64,
    accepts: Vec<PaymentRequirements>,
}

fn written(entry: &CatalogueEntry, stored_accepts: &str, now: i64) -> Written {
    let accepts = merge_accepts(stored_accepts, &entry.accepted);
    let mut extensions = Map::new();
    extensions.insert(bazaar::BAZAAR.to_owned(), entry.bazaar.clone());
    Written {
        kind: entry.kind.to_owned(),
        accepts_json: serde_json::to_string(&accepts).unwrap_or_else(|_| "[]".into()),
        extensions_json: Value::Object(extensions).to_string(),
        description: entry.description.clone(),
        mime_type: entry.mime_type.clone(),
        service_name: entry.service.service_name.clone(),
        tags: if entry.service.tags.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&entry.service.tags).unwrap_or_default()
        },
        icon_url: entry.service.icon_url.clone(),
        transaction: entry.transaction.clone(),
        now,
        accepts,
    }
}

fn sqlite_upsert(
    conn: &Arc<Mutex<rusqlite::Connection>>,
    entry: &CatalogueEntry,
    now: i64,
) -> Result<(), CatalogueError> {
    use rusqlite::{params, OptionalExtension};
    let mut guard = conn
        .lock()
        .map_err(|_| CatalogueError::Database("ledger lock poisoned".into()))?;
    let tx = guard.transaction()?;
    tx.execute(
        "INSERT INTO discovery_resources
           (resource, tool_name, kind, x402_version, accepts_json, extensions_json, created_at, last_updated)
         VALUES (?1, ?2, ?3, 2, '[]', '{}', ?4, ?4)
         ON CONFLICT (resource, tool_name) DO NOTHING",
        params![entry.resource, entry.tool_name, entry.kind, now],
    )?;
    let (id, stored, last_tx): (i64, String, Option<String>) = tx
        .query_row(
            "SELECT id, accepts_json, last_tx FROM discovery_resources
             WHERE resource = ?1 AND tool_name = ?2",
            params![entry.resource, entry.tool_name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| CatalogueError::Database("the catalogue row vanished".into()))?;
    let w = written(entry, &stored, now);
    let counted = i64::from(last_tx.as_deref() != Some(w.transaction.as_str()));
    tx.execute(
        "UPDATE discovery_resources SET kind = ?1, accepts_json = ?2, extensions_json = ?3,
           description = ?4, mime_type = ?5, service_name = ?6, tags = ?7, icon_url = ?8,
           last_tx = ?9, last_updated = ?10, settle_count = settle_count + ?11, x402_version = 2
         WHERE id = ?12",
        params![
            w.kind,
            w.accepts_json,
            w.extensions_json,
            w.description,
            w.mime_type,
            w.service_name,
            w.tags,
            w.icon_url,
            w.transaction,
            w.now,
            counted,
            id
        ],
    )?;
    tx.execute("DELETE FROM discovery_accepts WHERE resource_id = ?1", [id])?;
    for (position, a) in w.accepts.iter().enumerate() {
        tx.execute(
            "INSERT INTO discovery_accepts (resource_id, position, scheme, network, pay_to)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                position as i64,
                a.scheme.to_string(),
                a.network.to_string(),
                canonical_pay_to(&a.pay_to)
            ],
        )?;
    }
    tx.execute(
        "DELETE FROM discovery_extension_keys WHERE resource_id = ?1",
        [id],
    )?;
    for key in &entry.extension_keys {
        tx.execute(
            "INSERT OR IGNORE INTO discovery_extension_keys (resource_id, key) VALUES (?1, ?2)",
            params![id, key],
        )?;
    }
    tx.commit()?;
    Ok(())
}

async fn postgres_upsert(
    pool: &deadpool_postgres::Pool,
    entry: &CatalogueEntry,
    now: i64,
) -> Result<(), CatalogueError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO discovery_resources
           (resource, tool_name, kind, x402_version, accepts_json, extensions_json, created_at, last_updated)
         VALUES ($1, $2, $3, 2, '[]', '{}', $4, $4)
         ON CONFLICT (resource, tool_name) DO NOTHING",
        &[&entry.resource, &entry.tool_name, &entry.kind, &now],
    )
    .await?;
    // Locks the row: concurrent settlements of one resource merge their accepts in turn.
    let row = tx
        .query_one(
            "SELECT id, accepts_json, last_tx FROM discovery_resources
             WHERE resource = $1 AND tool_name = $2 FOR UPDATE",
            &[&entry.resource, &entry.tool_name],
        )
        .await?;
    let (id, stored, last_tx): (i64, String, Option<String>) = (row.get(0), row.get(1), row.get(2));
    let w = written(entry, &stored, now);
    let counted = i64::from(last_tx.as_deref() != Some(w.transaction.as_str()));
    tx.execute(
        "UPDATE discovery_resources SET kind = $1, accepts_json = $2, extensions_json = $3,
           description = $4, mime_type = $5, service_name = $6, tags = $7, icon_url = $8,
           last_tx = $9, last_updated = $10, settle_count = settle_count + $11, x402_version = 2
         WHERE id = $12",
        &[
            &w.kind,
            &w.accepts_json,
            &w.extensions_json,
            &w.description,
            &w.mime_type,
            &w.service_name,
            &w.tags,
            &w.icon_url,
            &w.transaction,
            &w.now,
            &counted,
            &id,
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM discovery_accepts WHERE resource_id = $1",
        &[&id],
    )
    .await?;
    for (position, a) in w.accepts.iter().enumerate() {
        let position = position as i32;
        tx.execute(
            "INSERT INTO discovery_accepts (resource_id, position, scheme, network, pay_to)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &id,
                &position,
                &a.scheme.to_string(),
                &a.network.to_string(),
                &canonical_pay_to(&a.pay_to),
            ],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM discovery_extension_keys WHERE resource_id = $1",
        &[&id],
    )
    .await?;
    for key in &entry.extension_keys {
        tx.execute(
            "INSERT INTO discovery_extension_keys (resource_id, key) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&id, key],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

type Page = (Vec<Row>, u64);

fn sqlite_page(
    conn: &Arc<Mutex<rusqlite::Connection>>,
    words: Option<&[String]>,
    filter: &DiscoveryFilter,
    limit: u32,
    offset: i64,
) -> Result<Page, CatalogueError> {
    let guard = conn
        .lock()
        .map_err(|_| CatalogueError::Database("ledger lock poisoned".into()))?;
    let mut w = Where::new(Dialect::Sqlite);
    let (from, order) = match words {
        Some(words) => {
            // Each word a quoted prefix term (letters and digits only: no syntax), any may match.
            let expression = words
                .iter()
                .map(|word| format!("\"{word}\"*"))
                .collect::<Vec<_>>()
                .join(" OR ");
            let p = w.bind(expression);
            w.clauses.push(format!("discovery_fts MATCH {p}"));
            (
                "discovery_fts JOIN discovery_resources r ON r.id = discovery_fts.rowid",
                "bm25(discovery_fts), r.last_updated DESC, r.id DESC",
            )
        }
        None => ("discovery_resources r", "r.last_updated DESC, r.id DESC"),
    };
    w.filter(filter);
    let where_sql = w.sql();
    let total: i64 = guard.query_row(
        &format!("SELECT COUNT(*) FROM {from} {where_sql}"),
        rusqlite::params_from_iter(w.params.iter()),
        |r| r.get(0),
    )?;
    let limit_p = w.bind(limit.to_string());
    let offset_p = w.bind(offset.to_string());
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM {from} {where_sql} ORDER BY {order} \
         LIMIT CAST({limit_p} AS INTEGER) OFFSET CAST({offset_p} AS INTEGER)"
    );
    let mut statement = guard.prepare(&sql)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(w.params.iter()), |r| {
            Ok(Row {
                id: r.get(0)?,
                resource: r.get(1)?,
                kind: r.get(2)?,
                x402_version: r.get(3)?,
                accepts_json: r.get(4)?,
                extensions_json: r.get(5)?,
                description: r.get(6)?,
                mime_type: r.get(7)?,
                service_name: r.get(8)?,
                tags: r.get(9)?,
                icon_url: r.get(10)?,
                last_updated: r.get(11)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

async fn postgres_page(
    pool: &deadpool_postgres::Pool,
    words: Option<&[String]>,
    filter: &DiscoveryFilter,
    limit: u32,
    offset: i64,
) -> Result<Page, CatalogueError> {
    let client = pool.get().await?;
    let mut w = Where::new(Dialect::Postgres);
    let order = match words {
        Some(words) => {
            // Each word a prefix lexeme (letters and digits only: no syntax), any may match.
            let expression = words
                .iter()
                .map(|word| format!("{word}:*"))
                .collect::<Vec<_>>()
                .join(" | ");
            let p = w.bind(expression);
            w.clauses
                .push(format!("r.search @@ to_tsquery('english'::regconfig, {p})"));
            format!(
                "ts_rank(r.search, to_tsquery('english'::regconfig, {p})) DESC, r.last_updated DESC, r.id DESC"
            )
        }
        None => "r.last_updated DESC, r.id DESC".to_owned(),
    };
    w.filter(filter);
    let where_sql = w.sql();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = w
        .params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let total: i64 = client
        .query_one(
            &format!("SELECT COUNT(*) FROM discovery_resources r {where_sql}"),
            &params,
        )
        .await?
        .get(0);
    let limit = i64::from(limit);
    let n = params.len();
    let mut params = params;
    params.push(&limit);
    params.push(&offset);
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM discovery_resources r {where_sql} ORDER BY {order} LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let rows = client
        .query(&sql, &params)
        .await?
        .into_iter()
        .map(|r| Row {
            id: r.get(0),
            resource: r.get(1),
            kind: r.get(2),
            x402_version: i64::from(r.get::<_, i32>(3)),
            accepts_json: r.get(4),
            extensions_json: r.get(5),
            description: r.get(6),
            mime_type: r.get(7),
            service_name: r.get(8),
            tags: r.get(9),
            icon_url: r.get(10),
            last_updated: r.get(11),
        })
        .collect();
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_carry_no_syntax() {
        assert_eq!(search_words("Weather APIs"), vec!["weather", "apis"]);
        assert_eq!(
            search_words("\"x\" OR y* NEAR(a b) -- ; DROP TABLE"),
            vec!["x", "or", "y", "near", "a", "b", "drop", "table"]
        );
        assert!(search_words("!!! ??? ***").is_empty());
        assert_eq!(search_words(&"w ".repeat(100)), vec!["w"]);
        assert_eq!(
            search_words(&(0..40).map(|i| format!("w{i} ")).collect::<String>()).len(),
            MAX_SEARCH_WORDS
        );
    }

    #[test]
    fn accepts_merge_by_way_of_paying() {
        let r = |network: &str, amount: &str, pay_to: &str| -> PaymentRequirements {
            serde_json::from_value(serde_json::json!({
                "scheme": "exact", "network": network, "amount": amount,
                "asset": "0xA0", "payTo": pay_to, "maxTimeoutSeconds": 60
            }))
            .unwrap()
        };
        let first = r("eip155:1", "10", "0xAB");
        let stored = serde_json::to_string(&vec![first.clone()]).unwrap();
        // Same way to pay (payee spelled differently), new price: replaced.
        let merged = merge_accepts(&stored, &r("eip155:1", "20", "0xab"));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].amount.to_string(), "20");
        // Another network: added first.
        let merged = merge_accepts(&stored, &r("eip155:8453", "10", "0xAB"));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1], first);
    }
}
