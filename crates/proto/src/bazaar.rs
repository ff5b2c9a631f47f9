//! The `bazaar` extension (`specs/extensions/bazaar.md`): a seller describes how to call a paid
//! resource — an HTTP endpoint or an MCP tool — in its 402, the buyer echoes it in its payment,
//! and a facilitator catalogues what actually settled for `GET /discovery/resources`.
//!
//! The extension is `extensions.bazaar = { info: { input, output? }, schema, routeTemplate? }`:
//!
//! - [`DiscoveryInfo`] is `info`. Its [`DiscoveryInput`] is tagged by `type` (`http` or `mcp`),
//!   so a wrong tag fails to deserialize; an HTTP input is either a query method
//!   ([`QueryInput`]: `GET`/`HEAD`/`DELETE`) or a body method ([`BodyInput`]:
//!   `POST`/`PUT`/`PATCH` with a `bodyType` and a `body`), told apart by `bodyType` as the spec
//!   says, and a method of the wrong family is refused.
//! - `schema` is a JSON Schema (draft 2020-12) of `info`. A facilitator must validate `info`
//!   against it before cataloguing (with the `jsonschema` feature: `validate_extension`).
//!   [`BazaarExtension::new`] generates one from the typed `info`, declaring every field present
//!   (the spec's schemas forbid additional input properties), optionally refined with
//!   [`SchemaHints`] (e.g. schemas generated from Rust types).
//! - Service metadata ([`ServiceMetadata`]: `serviceName`, `tags`, `iconUrl`) lives on the
//!   402's `resource`. Sellers are held to the spec's limits strictly ([`ServiceMetadata::new`]
//!   fails); what arrives from a buyer is soft-dropped field by field
//!   ([`ServiceMetadata::sanitize`]), since a client echoes the resource and could poison a
//!   catalogue.
//! - [`BazaarResponse`] is the facilitator's answer in the `EXTENSION-RESPONSES` header of its
//!   `/verify` and `/settle` responses (base64 JSON keyed by extension name).
//!
//! No I/O here; the validator (feature `jsonschema`) never fetches remote schemas.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::v2::{Extensions, ResourceInfo};

/// The extension's key in `extensions`.
pub const BAZAAR: &str = "bazaar";

/// The header a facilitator may add to its `/verify` and `/settle` responses: base64 of a JSON
/// object keyed by extension name (`{"bazaar":{"status":"rejected","rejectedReason":"…"}}`).
pub const EXTENSION_RESPONSES: http::HeaderName =
    http::HeaderName::from_static("extension-responses");

/// The JSON Schema dialect the spec requires for `schema`.
pub const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Longest `serviceName`, in characters (printable ASCII, so also bytes).
pub const MAX_SERVICE_NAME_LEN: usize = 32;
/// Most `tags` kept.
pub const MAX_TAGS: usize = 5;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 32;
/// Longest `iconUrl`.
pub const MAX_ICON_URL_LEN: usize = 2048;

/// `extensions.bazaar`: the discovery data, its schema, and for parameterised routes the
/// catalogue key template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BazaarExtension {
    /// How to call the resource and what it answers.
    pub info: DiscoveryInfo,
    /// JSON Schema (draft 2020-12) validating `info`.
    pub schema: Value,
    /// For a route with path parameters, its template with `:param` segments
    /// (`/users/:userId`): the facilitator catalogues every concrete URL under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_template: Option<String>,
}

impl BazaarExtension {
    /// The extension for `info`, with a schema generated from it (every field present is
    /// declared; example values give the types).
    pub fn new(info: DiscoveryInfo) -> Self {
        Self::with_hints(info, &SchemaHints::default())
    }

    /// The extension for `info`, with a schema generated from it and refined with `hints`.
    pub fn with_hints(info: DiscoveryInfo, hints: &SchemaHints) -> Self {
        let schema = info.schema(hints);
        Self {
            info,
            schema,
            route_template: None,
        }
    }

    /// Sets the route template (`/users/:userId`), refusing one the spec's rules reject.
    pub fn route_template(mut self, template: impl Into<String>) -> Result<Self, MetadataError> {
        let template = template.into();
        if !is_valid_route_template(&template) {
            return Err(MetadataError::RouteTemplate(template));
        }
        self.route_template = Some(template);
        Ok(self)
    }

    /// The extension as the JSON value that goes under `extensions.bazaar`.
    pub fn to_value(&self) -> Value {
        // Only strings, maps and JSON values: serializing cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Adds the extension to `extensions` under [`BAZAAR`].
    pub fn insert_into(&self, extensions: &mut Extensions) {
        extensions.insert(BAZAAR.to_owned(), self.to_value());
    }

    /// The typed extension in `extensions`, if present: `None` when absent, an error when
    /// present but not a bazaar extension.
    pub fn from_extensions(extensions: &Extensions) -> Option<Result<Self, serde_json::Error>> {
        extensions
            .get(BAZAAR)
            .map(|v| serde_json::from_value(v.clone()))
    }
}

/// `info`: the input (how to call) and, optionally, the output (what comes back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryInfo {
    /// How to call the resource.
    pub input: DiscoveryInput,
    /// What it answers. For MCP tools, absent means arbitrary text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<DiscoveryOutput>,
}

/// `info.input`, discriminated by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DiscoveryInput {
    /// `"http"`: an HTTP endpoint.
    Http(HttpInput),
    /// `"mcp"`: an MCP tool.
    Mcp(McpInput),
}

impl DiscoveryInput {
    /// The `type` tag: `http` or `mcp`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Mcp(_) => "mcp",
        }
    }
}

/// An HTTP input: a query method or a body method, told apart by the presence of `bodyType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpInput {
    /// `GET`, `HEAD`, `DELETE`: parameters in the query string.
    Query(QueryInput),
    /// `POST`, `PUT`, `PATCH`: a body of `bodyType`.
    Body(BodyInput),
}

impl HttpInput {
    /// The method, upper case.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Query(q) => q.method.as_str(),
            Self::Body(b) => b.method.as_str(),
        }
    }
}

/// `GET`, `HEAD` or `DELETE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QueryMethod {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `DELETE`.
    Delete,
}

impl QueryMethod {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "GET" => Some(Self::Get),
            "HEAD" => Some(Self::Head),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// `POST`, `PUT` or `PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BodyMethod {
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
}

impl BodyMethod {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "PATCH" => Some(Self::Patch),
            _ => None,
        }
    }
}

/// `bodyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BodyType {
    /// `json`.
    #[serde(rename = "json")]
    Json,
    /// `form-data`.
    #[serde(rename = "form-data")]
    FormData,
    /// `text`.
    #[serde(rename = "text")]
    Text,
}

impl BodyType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::FormData => "form-data",
            Self::Text => "text",
        }
    }
}

/// A query-method input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryInput {
    /// The method.
    pub method: QueryMethod,
    /// Example query parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Map<String, Value>>,
    /// Example custom headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    /// The path parameters of this request, for a parameterised route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_params: Option<Map<String, Value>>,
}

impl QueryInput {
    /// An input of `method` with nothing else described.
    pub fn new(method: QueryMethod) -> Self {
        Self {
            method,
            query_params: None,
            headers: None,
            path_params: None,
        }
    }
}

/// A body-method input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyInput {
    /// The method.
    pub method: BodyMethod,
    /// How the body is encoded.
    pub body_type: BodyType,
    /// Example body (an object, or a string for `text`).
    pub body: Value,
    /// Example query parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Map<String, Value>>,
    /// Example custom headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    /// The path parameters of this request, for a parameterised route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_params: Option<Map<String, Value>>,
}

impl BodyInput {
    /// An input of `method` with a body of `body_type`, `body` its example.
    pub fn new(method: BodyMethod, body_type: BodyType, body: Value) -> Self {
        Self {
            method,
            body_type,
            body,
            query_params: None,
            headers: None,
            path_params: None,
        }
    }
}

impl Serialize for HttpInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Query(q) => q.serialize(serializer),
            Self::Body(b) => b.serialize(serializer),
        }
    }
}

/// Every field an HTTP input may have, read before deciding which kind it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHttpInput {
    method: String,
    #[serde(default)]
    body_type: Option<BodyType>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    query_params: Option<Map<String, Value>>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    path_params: Option<Map<String, Value>>,
}

impl<'de> Deserialize<'de> for HttpInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawHttpInput::deserialize(deserializer)?;
        match raw.body_type {
            Some(body_type) => {
                let method = BodyMethod::parse(&raw.method).ok_or_else(|| {
                    D::Error::custom(format!(
                        "method `{}` is not a body method (POST, PUT, PATCH), but bodyType is set",
                        raw.method
                    ))
                })?;
                let body = raw
                    .body
                    .ok_or_else(|| D::Error::custom("a body method's input needs `body`"))?;
                Ok(Self::Body(BodyInput {
                    method,
                    body_type,
                    body,
                    query_params: raw.query_params,
                    headers: raw.headers,
                    path_params: raw.path_params,
                }))
            }
            None => {
                if BodyMethod::parse(&raw.method).is_some() {
                    return Err(D::Error::custom(format!(
                        "method `{}` is a body method: its input needs `bodyType` and `body`",
                        raw.method
                    )));
                }
                let method = QueryMethod::parse(&raw.method).ok_or_else(|| {
                    D::Error::custom(format!(
                        "unknown method `{}`: expected GET, HEAD, DELETE, POST, PUT or PATCH",
                        raw.method
                    ))
                })?;
                if raw.body.is_some() {
                    return Err(D::Error::custom(format!(
                        "a {} input has no body (query methods carry parameters in the query)",
                        raw.method
                    )));
                }
                Ok(Self::Query(QueryInput {
                    method,
                    query_params: raw.query_params,
                    headers: raw.headers,
                    path_params: raw.path_params,
                }))
            }
        }
    }
}

/// The MCP transport of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpTransport {
    /// `streamable-http` (the default when absent).
    StreamableHttp,
    /// `sse`.
    Sse,
}

/// An MCP tool input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpInput {
    /// The tool's name, as passed to `tools/call`.
    pub tool_name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the tool's `arguments` (the tool's own MCP `inputSchema`).
    pub input_schema: Map<String, Value>,
    /// The transport (absent: `streamable-http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<McpTransport>,
    /// Example `arguments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Map<String, Value>>,
}

impl McpInput {
    /// The tool `tool_name` taking arguments described by `input_schema`.
    pub fn new(tool_name: impl Into<String>, input_schema: Map<String, Value>) -> Self {
        Self {
            tool_name: tool_name.into(),
            description: None,
            input_schema,
            transport: None,
            example: None,
        }
    }
}

/// `info.output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryOutput {
    /// The content type, e.g. `json` or `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// More format information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// An example response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
}

impl DiscoveryOutput {
    /// A `json` output with `example`.
    pub fn json(example: Value) -> Self {
        Self {
            kind: "json".into(),
            format: None,
            example: Some(example),
        }
    }
}

/// Schemas that refine the generated one: each replaces what would otherwise be inferred from
/// the example values (only their JSON types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaHints {
    /// Schema of `input.queryParams` (an object schema: `properties`, `required`).
    pub query_params: Option<Value>,
    /// Schema of `input.body`.
    pub body: Option<Value>,
    /// Schema of `input.pathParams`.
    pub path_params: Option<Value>,
    /// Schema of `output.example`.
    pub output_example: Option<Value>,
}

/// The JSON Schema type of a value (`{"type": "string"}` …), what an example says about its
/// field when no better schema is given.
fn type_of(value: &Value) -> Value {
    let t = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    json!({ "type": t })
}

/// An object schema whose properties are typed from `example`'s values, or `hint`.
fn object_schema(example: &Map<String, Value>, hint: Option<&Value>) -> Value {
    if let Some(hint) = hint {
        let mut schema = json!({ "type": "object" });
        if let (Some(out), Some(hint)) = (schema.as_object_mut(), hint.as_object()) {
            for (k, v) in hint {
                out.insert(k.clone(), v.clone());
            }
        }
        return schema;
    }
    let properties: Map<String, Value> = example
        .iter()
        .map(|(k, v)| (k.clone(), type_of(v)))
        .collect();
    json!({ "type": "object", "properties": properties })
}

fn string_map_schema() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

impl DiscoveryInfo {
    /// A JSON Schema (draft 2020-12) of this `info`, declaring every field present — the
    /// input forbids additional properties as the spec's examples do — typed from the example
    /// values or from `hints`.
    pub fn schema(&self, hints: &SchemaHints) -> Value {
        let mut input = Map::new();
        let mut required = vec![json!("type")];
        match &self.input {
            DiscoveryInput::Http(http) => {
                input.insert("type".into(), json!({ "type": "string", "const": "http" }));
                required.push(json!("method"));
                let (query, headers, path) = match http {
                    HttpInput::Query(q) => {
                        input.insert(
                            "method".into(),
                            json!({ "type": "string", "enum": ["GET", "HEAD", "DELETE"] }),
                        );
                        (&q.query_params, &q.headers, &q.path_params)
                    }
                    HttpInput::Body(b) => {
                        input.insert(
                            "method".into(),
                            json!({ "type": "string", "enum": ["POST", "PUT", "PATCH"] }),
                        );
                        input.insert(
                            "bodyType".into(),
                            json!({ "type": "string", "enum": ["json", "form-data", "text"] }),
                        );
                        let body = hints.body.clone().unwrap_or_else(|| type_of(&b.body));
                        input.insert("body".into(), body);
                        required.push(json!("bodyType"));
                        required.push(json!("body"));
                        (&b.query_params, &b.headers, &b.path_params)
                    }
                };
                if let Some(query) = query {
                    input.insert(
                        "queryParams".into(),
                        object_schema(query, hints.query_params.as_ref()),
                    );
                }
                if headers.is_some() {
                    input.insert("headers".into(), string_map_schema());
                }
                if let Some(path) = path {
                    input.insert(
                        "pathParams".into(),
                        object_schema(path, hints.path_params.as_ref()),
                    );
                }
            }
            DiscoveryInput::Mcp(mcp) => {
                input.insert("type".into(), json!({ "type": "string", "const": "mcp" }));
                input.insert("toolName".into(), json!({ "type": "string" }));
                if mcp.description.is_some() {
                    input.insert("description".into(), json!({ "type": "string" }));
                }
                if mcp.transport.is_some() {
                    input.insert(
                        "transport".into(),
                        json!({ "type": "string", "enum": ["streamable-http", "sse"] }),
                    );
                }
                input.insert("inputSchema".into(), json!({ "type": "object" }));
                if mcp.example.is_some() {
                    input.insert("example".into(), json!({ "type": "object" }));
                }
                required.push(json!("toolName"));
                required.push(json!("inputSchema"));
            }
        }
        let mut properties = Map::new();
        properties.insert(
            "input".into(),
            json!({
                "type": "object",
                "properties": input,
                "required": required,
                "additionalProperties": false
            }),
        );
        if let Some(output) = &self.output {
            let mut out = Map::new();
            out.insert("type".into(), json!({ "type": "string" }));
            if output.format.is_some() {
                out.insert("format".into(), json!({ "type": "string" }));
            }
            if let Some(example) = &output.example {
                let schema = hints
                    .output_example
                    .clone()
                    .unwrap_or_else(|| type_of(example));
                out.insert("example".into(), schema);
            }
            properties.insert(
                "output".into(),
                json!({ "type": "object", "properties": out, "required": ["type"] }),
            );
        }
        json!({
            "$schema": JSON_SCHEMA_2020_12,
            "type": "object",
            "properties": properties,
            "required": ["input"]
        })
    }
}

/// Why service metadata or a route template is refused (seller side, where a mistake should
/// stop the start-up rather than silently vanish from the catalogue).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// `serviceName` breaks its rule.
    #[error("serviceName {0:?} must be 1 to {MAX_SERVICE_NAME_LEN} printable ASCII characters")]
    ServiceName(String),
    /// A tag breaks its rule.
    #[error("tag {0:?} must be 1 to {MAX_TAG_LEN} printable ASCII characters")]
    Tag(String),
    /// More tags than allowed.
    #[error("{0} tags given; at most {MAX_TAGS} are allowed")]
    TooManyTags(usize),
    /// The same tag twice (compared without case).
    #[error("tag {0:?} is given twice (tags are compared case-insensitively)")]
    DuplicateTag(String),
    /// `iconUrl` breaks its rule.
    #[error("iconUrl {url:?} is refused: {why}")]
    IconUrl {
        /// The URL.
        url: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A route template breaks its rule.
    #[error("routeTemplate {0:?} must start with `/`, use only URL path characters and `:param` segments, and contain no `..` or `://` (even percent-encoded)")]
    RouteTemplate(String),
}

/// Provider-level metadata on the 402's `resource`: `serviceName`, `tags`, `iconUrl`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceMetadata {
    /// Human-readable name of the service.
    pub service_name: Option<String>,
    /// Topical tags (deduplicated, at most [`MAX_TAGS`]).
    pub tags: Vec<String>,
    /// Absolute `http(s)` URL of an icon.
    pub icon_url: Option<String>,
}

impl ServiceMetadata {
    /// Metadata checked strictly against the spec's rules: a field that the facilitator would
    /// drop is an error here, so a seller learns at start-up rather than from a missing
    /// catalogue entry.
    pub fn new(
        service_name: Option<&str>,
        tags: &[String],
        icon_url: Option<&str>,
    ) -> Result<Self, MetadataError> {
        if let Some(name) = service_name {
            if !is_valid_service_name(name) {
                return Err(MetadataError::ServiceName(name.to_owned()));
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(MetadataError::TooManyTags(tags.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for tag in tags {
            if !is_valid_label(tag, MAX_TAG_LEN) {
                return Err(MetadataError::Tag(tag.clone()));
            }
            if !seen.insert(tag.to_ascii_lowercase()) {
                return Err(MetadataError::DuplicateTag(tag.clone()));
            }
        }
        if let Some(url) = icon_url {
            check_icon_url(url).map_err(|why| MetadataError::IconUrl {
                url: url.to_owned(),
                why,
            })?;
        }
        Ok(Self {
            service_name: service_name.map(str::to_owned),
            tags: tags.to_vec(),
            icon_url: icon_url.map(str::to_owned),
        })
    }

    /// What survives the spec's soft-drop rules of `resource` (as the official SDKs'
    /// `sanitizeResourceServiceMetadata`): an invalid field is dropped, invalid tags are
    /// dropped one by one, tags are deduplicated case-insensitively and cut to [`MAX_TAGS`].
    pub fn sanitize(resource: &ResourceInfo) -> Self {
        Self {
            service_name: resource
                .service_name
                .clone()
                .filter(|n| is_valid_service_name(n)),
            tags: resource
                .tags
                .as_deref()
                .map(sanitize_tags)
                .unwrap_or_default(),
            icon_url: resource.icon_url.clone().filter(|u| is_valid_icon_url(u)),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.service_name.is_none() && self.tags.is_empty() && self.icon_url.is_none()
    }

    /// Writes the metadata onto `resource` (leaving fields it does not set untouched).
    pub fn apply_to(&self, resource: &mut ResourceInfo) {
        if let Some(name) = &self.service_name {
            resource.service_name = Some(name.clone());
        }
        if !self.tags.is_empty() {
            resource.tags = Some(self.tags.clone());
        }
        if let Some(icon) = &self.icon_url {
            resource.icon_url = Some(icon.clone());
        }
    }
}

/// Non-empty printable ASCII (U+0020–U+007E, which has no control characters) of at most
/// `max` characters.
fn is_valid_label(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The spec's `serviceName` rule.
pub fn is_valid_service_name(value: &str) -> bool {
    is_valid_label(value, MAX_SERVICE_NAME_LEN)
}

/// The spec's `tags` rule: invalid entries dropped, duplicates (case-insensitive) dropped
/// keeping the first, at most [`MAX_TAGS`] kept.
pub fn sanitize_tags(tags: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.iter()
        .filter(|t| is_valid_label(t, MAX_TAG_LEN))
        .filter(|t| seen.insert(t.to_ascii_lowercase()))
        .take(MAX_TAGS)
        .cloned()
        .collect()
}

/// The spec's `iconUrl` rule.
pub fn is_valid_icon_url(value: &str) -> bool {
    check_icon_url(value).is_ok()
}

/// Host names that mean this machine.
const LOOPBACK_HOSTNAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// The `iconUrl` rule, saying which part fails. The URL is parsed as the WHATWG standard
/// says (as the SDKs do): the host is percent-decoded and IDN-normalized (UTS #46) before the
/// checks, and numeric hosts (`2130706433`, `0x7f000001`) parse as IPv4 literals.
fn check_icon_url(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > MAX_ICON_URL_LEN {
        return Err("it must be 1 to 2048 characters");
    }
    if value.chars().any(char::is_control) {
        return Err("it contains control characters");
    }
    let url = url::Url::parse(value).map_err(|_| "it is not an absolute URL")?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("only http and https URLs are allowed");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it must not carry user information");
    }
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host.to_ascii_lowercase(),
        Some(_) => return Err("the host must be a name, not an IP literal"),
        None => return Err("it has no host"),
    };
    if LOOPBACK_HOSTNAMES.contains(&host.as_str()) {
        return Err("the host is a loopback name");
    }
    if host.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the host is all digits (an encoded IP address)");
    }
    if let Some(hex) = host.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the host is a hex literal (an encoded IP address)");
        }
    }
    Ok(())
}

/// One pass of percent-decoding as JavaScript's `decodeURIComponent`: `None` on a malformed
/// escape or bytes that are not UTF-8.
fn percent_decode_once(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The spec's `routeTemplate` rule (the SDKs' `isValidRouteTemplate`): starts with `/`, only
/// `[a-zA-Z0-9_/:.\-~%]`, and — after percent-decoding to a fixed point in at most five
/// passes — no `..` and no `://`.
pub fn is_valid_route_template(value: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_/:.-~%".contains(&b);
    if value.len() < 2 || !value.starts_with('/') || !value.bytes().all(allowed) {
        return false;
    }
    let mut decoded = value.to_owned();
    for _ in 0..5 {
        let Some(next) = percent_decode_once(&decoded) else {
            return false;
        };
        if next == decoded {
            return !decoded.contains("..") && !decoded.contains("://");
        }
        decoded = next;
    }
    false
}

/// The catalogue key of a resource URL: its origin and path — or, when a valid route template
/// is given, its origin and the template — without query or fragment (as the SDKs'
/// `extractDiscoveryInfo`). `None` when `url` is not an absolute URL with a host.
pub fn catalogue_url(url: &str, route_template: Option<&str>) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let origin = parsed.origin();
    let path = route_template
        .filter(|t| is_valid_route_template(t))
        .unwrap_or(parsed.path());
    if !origin.is_tuple() {
        // `mcp://tool/<name>` and other non-special schemes: scheme, host and path as given.
        parsed.host_str()?;
        let mut key = format!("{}://{}", parsed.scheme(), parsed.host_str()?);
        if let Some(port) = parsed.port() {
            key.push_str(&format!(":{port}"));
        }
        key.push_str(path);
        return Some(key);
    }
    Some(format!("{}{}", origin.ascii_serialization(), path))
}

/// The bazaar key's value in `EXTENSION-RESPONSES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BazaarResponse {
    /// What became of the discovery data.
    pub status: BazaarStatus,
    /// Why it was rejected (only with [`BazaarStatus::Rejected`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
}

/// `bazaar.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BazaarStatus {
    /// Validated and catalogued.
    Success,
    /// Accepted; being catalogued asynchronously.
    Processing,
    /// Rejected (see `rejectedReason`).
    Rejected,
}

impl BazaarResponse {
    /// Catalogued.
    pub fn success() -> Self {
        Self {
            status: BazaarStatus::Success,
            rejected_reason: None,
        }
    }

    /// Rejected because of `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self {
            status: BazaarStatus::Rejected,
            rejected_reason: Some(reason.into()),
        }
    }

    /// The `EXTENSION-RESPONSES` object carrying this answer under `bazaar`.
    pub fn to_extension_responses(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert(
            BAZAAR.to_owned(),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        map
    }

    /// The `EXTENSION-RESPONSES` header value carrying this answer under `bazaar` (base64 of
    /// compact JSON, fields in the spec's order).
    pub fn header_value(&self) -> http::HeaderValue {
        #[derive(Serialize)]
        struct Responses<'a> {
            bazaar: &'a BazaarResponse,
        }
        crate::header::to_header_value(&Responses { bazaar: self })
    }

    /// The bazaar answer in a decoded `EXTENSION-RESPONSES` object, if there is a readable one.
    pub fn from_extension_responses(responses: &Map<String, Value>) -> Option<Self> {
        serde_json::from_value(responses.get(BAZAAR)?.clone()).ok()
    }

    /// The bazaar answer in a response's `EXTENSION-RESPONSES` header, if any is readable.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let value = headers.get(EXTENSION_RESPONSES)?.to_str().ok()?;
        let responses: Map<String, Value> = crate::header::decode(value).ok()?;
        Self::from_extension_responses(&responses)
    }
}

/// Validates `extension` (the raw value of `extensions.bazaar`) as a facilitator must before
/// cataloguing: `info` against `schema` with a JSON Schema validator (draft 2020-12 unless the
/// schema names another dialect), refusing schemas that reference anything outside
/// themselves (no remote `$ref` is ever fetched), and then `info` against the typed shape of
/// this module. The error lists what failed, readable by the seller.
#[cfg(feature = "jsonschema")]
pub fn validate_extension(extension: &Value) -> Result<BazaarExtension, String> {
    let Some(object) = extension.as_object() else {
        return Err("the bazaar extension is not an object".into());
    };
    let info = object
        .get("info")
        .ok_or("the bazaar extension has no `info`")?;
    let schema = object
        .get("schema")
        .ok_or("the bazaar extension has no `schema`")?;
    if !schema.is_object() {
        return Err("`schema` is not a JSON Schema object".into());
    }
    if has_external_reference(schema) {
        return Err("schema must not contain external $ref/$id references".into());
    }
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| format!("schema is not a valid JSON Schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(info)
        .take(10)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "(root)".to_owned()
            } else {
                path
            };
            format!("{path}: {e}")
        })
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "info failed schema validation: {}",
            errors.join("; ")
        ));
    }
    serde_json::from_value::<BazaarExtension>(extension.clone())
        .map_err(|e| format!("info is not a bazaar discovery description: {e}"))
}

/// Whether `node` has a `$ref` or `$id` that is not a local fragment (`#…`): such a schema
/// could make a validator fetch or trust something from elsewhere.
#[cfg(feature = "jsonschema")]
fn has_external_reference(node: &Value) -> bool {
    match node {
        Value::Array(items) => items.iter().any(has_external_reference),
        Value::Object(map) => map.iter().any(|(k, v)| {
            ((k == "$ref" || k == "$id") && !v.as_str().is_some_and(|s| s.starts_with('#')))
                || has_external_reference(v)
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PaymentRequired;

    /// The spec's three examples (`specs/extensions/bazaar.md`), `accepts` filled in.
    fn spec_example(which: &str) -> Value {
        let accepts = json!([{
            "scheme": "exact", "network": "eip155:84532", "amount": "10000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60
        }]);
        let output_schema = json!({
            "type": "object",
            "properties": { "type": { "type": "string" }, "example": { "type": "object" } },
            "required": ["type"]
        });
        let headers = json!({ "type": "object", "additionalProperties": { "type": "string" } });
        match which {
            "get" => json!({
              "x402Version": 2, "error": "Payment required",
              "resource": {
                "url": "https://api.example.com/weather", "description": "Weather data endpoint",
                "mimeType": "application/json", "serviceName": "Example Weather",
                "tags": ["weather", "forecast"], "iconUrl": "https://api.example.com/icon.png"
              },
              "accepts": accepts,
              "extensions": { "bazaar": {
                "info": {
                  "input": { "type": "http", "method": "GET", "queryParams": { "city": "San Francisco" } },
                  "output": { "type": "json", "example": { "city": "San Francisco", "weather": "foggy", "temperature": 60 } }
                },
                "schema": {
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "properties": {
                    "input": {
                      "type": "object",
                      "properties": {
                        "type": { "type": "string", "const": "http" },
                        "method": { "type": "string", "enum": ["GET", "HEAD", "DELETE"] },
                        "queryParams": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
                        "headers": headers
                      },
                      "required": ["type", "method"],
                      "additionalProperties": false
                    },
                    "output": output_schema
                  },
                  "required": ["input"]
                }
              } }
            }),
            "post" => json!({
              "x402Version": 2, "error": "Payment required",
              "resource": { "url": "https://api.example.com/search", "description": "Search endpoint", "mimeType": "application/json" },
              "accepts": accepts,
              "extensions": { "bazaar": {
                "info": {
                  "input": { "type": "http", "method": "POST", "bodyType": "json", "body": { "query": "example" } },
                  "output": { "type": "json", "example": { "results": [] } }
                },
                "schema": {
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "properties": {
                    "input": {
                      "type": "object",
                      "properties": {
                        "type": { "type": "string", "const": "http" },
                        "method": { "type": "string", "enum": ["POST", "PUT", "PATCH"] },
                        "bodyType": { "type": "string", "enum": ["json", "form-data", "text"] },
                        "body": { "type": "object" },
                        "queryParams": { "type": "object", "additionalProperties": { "type": "string" } },
                        "headers": headers
                      },
                      "required": ["type", "method", "bodyType", "body"],
                      "additionalProperties": false
                    },
                    "output": output_schema
                  },
                  "required": ["input"]
                }
              } }
            }),
            _ => json!({
              "x402Version": 2, "error": "Payment required",
              "resource": { "url": "https://api.example.com/mcp", "description": "Advanced AI-powered financial tools", "mimeType": "application/json" },
              "accepts": accepts,
              "extensions": { "bazaar": {
                "info": {
                  "input": {
                    "type": "mcp", "toolName": "financial_analysis",
                    "description": "Advanced AI-powered financial analysis",
                    "inputSchema": {
                      "type": "object",
                      "properties": { "ticker": { "type": "string" }, "analysis_type": { "type": "string", "enum": ["quick", "deep"] } },
                      "required": ["ticker"]
                    },
                    "example": { "ticker": "AAPL", "analysis_type": "deep" }
                  },
                  "output": { "type": "json", "example": { "summary": "Strong fundamentals...", "score": 8.5 } }
                },
                "schema": {
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "properties": {
                    "input": {
                      "type": "object",
                      "properties": {
                        "type": { "type": "string", "const": "mcp" },
                        "toolName": { "type": "string" },
                        "description": { "type": "string" },
                        "transport": { "type": "string", "enum": ["streamable-http", "sse"] },
                        "inputSchema": { "type": "object" },
                        "example": { "type": "object" }
                      },
                      "required": ["type", "toolName", "inputSchema"],
                      "additionalProperties": false
                    },
                    "output": output_schema
                  },
                  "required": ["input"]
                }
              } }
            }),
        }
    }

    #[test]
    fn the_spec_examples_round_trip_exactly() {
        for which in ["get", "post", "mcp"] {
            let example = spec_example(which);
            let required: PaymentRequired = serde_json::from_value(example.clone()).unwrap();
            assert_eq!(serde_json::to_value(&required).unwrap(), example, "{which}");
            let extensions = required.extensions.as_ref().unwrap();
            let bazaar = BazaarExtension::from_extensions(extensions)
                .unwrap()
                .unwrap();
            assert_eq!(
                bazaar.to_value(),
                example["extensions"]["bazaar"],
                "{which}"
            );
            let kind = match which {
                "mcp" => "mcp",
                _ => "http",
            };
            assert_eq!(bazaar.info.input.kind(), kind);
        }
        let get: BazaarExtension =
            serde_json::from_value(spec_example("get")["extensions"]["bazaar"].clone()).unwrap();
        match get.info.input {
            DiscoveryInput::Http(HttpInput::Query(q)) => {
                assert_eq!(q.method, QueryMethod::Get);
                assert_eq!(q.query_params.unwrap()["city"], "San Francisco");
            }
            other => panic!("{other:?}"),
        }
        let post: BazaarExtension =
            serde_json::from_value(spec_example("post")["extensions"]["bazaar"].clone()).unwrap();
        match post.info.input {
            DiscoveryInput::Http(HttpInput::Body(b)) => {
                assert_eq!((b.method, b.body_type), (BodyMethod::Post, BodyType::Json));
            }
            other => panic!("{other:?}"),
        }
        let mcp: BazaarExtension =
            serde_json::from_value(spec_example("mcp")["extensions"]["bazaar"].clone()).unwrap();
        match mcp.info.input {
            DiscoveryInput::Mcp(m) => {
                assert_eq!(m.tool_name, "financial_analysis");
                assert_eq!(m.transport, None);
            }
            other => panic!("{other:?}"),
        }
        // The spec's header examples.
        let success: Map<String, Value> =
            crate::header::decode("eyJiYXphYXIiOnsic3RhdHVzIjoic3VjY2VzcyJ9fQ==").unwrap();
        assert_eq!(
            BazaarResponse::from_extension_responses(&success),
            Some(BazaarResponse::success())
        );
        let rejected = "eyJiYXphYXIiOnsic3RhdHVzIjoicmVqZWN0ZWQiLCJyZWplY3RlZFJlYXNvbiI6ImluZm8gZmFpbGVkIHNjaGVtYSB2YWxpZGF0aW9uIn19";
        let answer = BazaarResponse::rejected("info failed schema validation");
        assert_eq!(answer.header_value(), rejected);
        let mut headers = http::HeaderMap::new();
        headers.insert(EXTENSION_RESPONSES, answer.header_value());
        assert_eq!(BazaarResponse::from_headers(&headers), Some(answer));
    }

    fn input(v: Value) -> Result<DiscoveryInput, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn wrong_tags_and_methods_fail_to_deserialize() {
        assert!(input(json!({ "type": "grpc", "method": "GET" })).is_err());
        assert!(input(json!({ "method": "GET" })).is_err());
        let e = input(json!({ "type": "http", "method": "POST", "body": {} })).unwrap_err();
        assert!(e.to_string().contains("bodyType"), "{e}");
        let e = input(json!({ "type": "http", "method": "GET", "bodyType": "json", "body": {} }))
            .unwrap_err();
        assert!(e.to_string().contains("not a body method"), "{e}");
        assert!(input(json!({ "type": "http", "method": "TRACE" })).is_err());
        assert!(
            input(json!({ "type": "http", "method": "POST", "bodyType": "xml", "body": {} }))
                .is_err()
        );
        assert!(input(json!({ "type": "http", "method": "PUT", "bodyType": "json" })).is_err());
        assert!(input(json!({ "type": "mcp", "toolName": "x" })).is_err());
        assert!(input(
            json!({ "type": "mcp", "toolName": "x", "inputSchema": {}, "transport": "ws" })
        )
        .is_err());
        assert!(input(
            json!({ "type": "mcp", "toolName": "x", "inputSchema": {}, "transport": "sse" })
        )
        .is_ok());
        let text = input(
            json!({ "type": "http", "method": "PATCH", "bodyType": "text", "body": "hello" }),
        )
        .unwrap();
        assert!(matches!(text, DiscoveryInput::Http(HttpInput::Body(ref b)) if b.body == "hello"));
    }

    #[cfg(feature = "jsonschema")]
    #[test]
    fn the_spec_examples_validate_and_generated_schemas_accept_their_info() {
        for which in ["get", "post", "mcp"] {
            let ext = spec_example(which)["extensions"]["bazaar"].clone();
            validate_extension(&ext).unwrap_or_else(|e| panic!("{which}: {e}"));
            let typed: BazaarExtension = serde_json::from_value(ext).unwrap();
            let regenerated = BazaarExtension::new(typed.info.clone());
            validate_extension(&regenerated.to_value()).unwrap_or_else(|e| panic!("{which}: {e}"));
        }
        // info not matching its schema: the city must be a string.
        let mut bad = spec_example("get")["extensions"]["bazaar"].clone();
        bad["info"]["input"]["queryParams"]["city"] = json!(7);
        let e = validate_extension(&bad).unwrap_err();
        assert!(e.starts_with("info failed schema validation"), "{e}");
        assert!(e.contains("/input/queryParams/city"), "{e}");
        // A field the schema does not declare.
        let mut extra = spec_example("mcp")["extensions"]["bazaar"].clone();
        extra["info"]["input"]["secret"] = json!("x");
        assert!(validate_extension(&extra).is_err());
        // Remote references are refused before any validator is built.
        let mut remote = spec_example("get")["extensions"]["bazaar"].clone();
        remote["schema"]["properties"]["input"] = json!({ "$ref": "https://evil.example/s.json" });
        assert!(validate_extension(&remote)
            .unwrap_err()
            .contains("external"));
        // Valid against its own (permissive) schema, but not a discovery description.
        let loose =
            json!({ "info": { "input": { "type": "http", "method": "FETCH" } }, "schema": {} });
        assert!(validate_extension(&loose)
            .unwrap_err()
            .contains("not a bazaar"));
        assert!(validate_extension(&json!({ "info": {} })).is_err());
        assert!(validate_extension(&json!({ "info": {}, "schema": { "type": 5 } })).is_err());
    }

    #[test]
    fn service_metadata_follows_the_spec_limits() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(ServiceMetadata::new(
            Some("Example Weather"),
            &tags(&["a", "b"]),
            Some("https://api.example.com/icon.png")
        )
        .is_ok());
        assert!(matches!(
            ServiceMetadata::new(Some(&"x".repeat(33)), &[], None),
            Err(MetadataError::ServiceName(_))
        ));
        assert!(ServiceMetadata::new(Some(&"x".repeat(32)), &[], None).is_ok());
        assert!(ServiceMetadata::new(Some(""), &[], None).is_err());
        assert!(ServiceMetadata::new(Some("Café"), &[], None).is_err());
        assert!(ServiceMetadata::new(Some("a\u{7}b"), &[], None).is_err());
        assert!(matches!(
            ServiceMetadata::new(None, &tags(&["a", "b", "c", "d", "e", "f"]), None),
            Err(MetadataError::TooManyTags(6))
        ));
        assert!(matches!(
            ServiceMetadata::new(None, &tags(&["Weather", "weather"]), None),
            Err(MetadataError::DuplicateTag(_))
        ));
        for bad in [
            "ftp://example.com/i.png",
            "data:image/png;base64,AAAA",
            "https://user@example.com/i.png",
            "https://127.0.0.1/i.png",
            "https://[::1]/i.png",
            "https://localhost/i.png",
            "https://%6c%6fcalhost/i.png",
            "https://2130706433/i.png",
            "https://0x7f000001/i.png",
            "/relative.png",
        ] {
            assert!(!is_valid_icon_url(bad), "{bad}");
        }
        assert!(!is_valid_icon_url(&format!(
            "https://example.com/{}",
            "a".repeat(2048)
        )));
        assert!(is_valid_icon_url("http://cdn.example.com/x.svg"));
        // Soft drop on what a buyer echoes.
        let resource = ResourceInfo {
            service_name: Some("x".repeat(40)),
            tags: Some(tags(&["ok", "OK", "", "é", "b", "c", "d", "e", "f"])),
            icon_url: Some("https://localhost/x.png".into()),
            ..ResourceInfo::new("https://api.example.com/x")
        };
        let clean = ServiceMetadata::sanitize(&resource);
        assert_eq!(clean.service_name, None);
        assert_eq!(clean.tags, tags(&["ok", "b", "c", "d", "e"]));
        assert_eq!(clean.icon_url, None);
    }

    #[test]
    fn route_templates_and_catalogue_keys() {
        for good in ["/users/:userId", "/weather/:country/:city", "/a.b/~c-d_e"] {
            assert!(is_valid_route_template(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "users/:id",
            "/users/../admin",
            "/x/%2e%2e/y",
            "/x/%252e%252e",
            "/http://evil",
            "/a b",
            "/%zz",
            "/x?y",
        ] {
            assert!(!is_valid_route_template(bad), "{bad}");
        }
        assert_eq!(
            catalogue_url(
                "https://API.example.com:443/users/123?x=1#f",
                Some("/users/:id")
            )
            .as_deref(),
            Some("https://api.example.com/users/:id")
        );
        assert_eq!(
            catalogue_url("https://api.example.com/users/123?x=1", Some("/../bad")).as_deref(),
            Some("https://api.example.com/users/123")
        );
        assert_eq!(
            catalogue_url("http://127.0.0.1:8080/weather?city=x", None).as_deref(),
            Some("http://127.0.0.1:8080/weather")
        );
        assert_eq!(
            catalogue_url("mcp://tool/weather", None).as_deref(),
            Some("mcp://tool/weather")
        );
        assert_eq!(catalogue_url("not a url", None), None);
    }

    #[test]
    fn generated_schemas_declare_every_field() {
        let mut q = QueryInput::new(QueryMethod::Get);
        q.query_params = Some(
            json!({ "city": "Paris", "days": 3 })
                .as_object()
                .unwrap()
                .clone(),
        );
        q.headers = Some(json!({ "X-Api": "v" }).as_object().unwrap().clone());
        let info = DiscoveryInfo {
            input: DiscoveryInput::Http(HttpInput::Query(q)),
            output: Some(DiscoveryOutput::json(json!({ "t": 1 }))),
        };
        let ext = BazaarExtension::new(info);
        let input = &ext.schema["properties"]["input"];
        assert_eq!(input["additionalProperties"], false);
        assert_eq!(
            input["properties"]["queryParams"]["properties"]["days"]["type"],
            "integer"
        );
        assert_eq!(
            input["properties"]["headers"]["additionalProperties"]["type"],
            "string"
        );
        assert_eq!(
            ext.schema["properties"]["output"]["properties"]["example"]["type"],
            "object"
        );
        assert_eq!(ext.schema["$schema"], JSON_SCHEMA_2020_12);
        let hinted = BazaarExtension::with_hints(
            ext.info.clone(),
            &SchemaHints {
                query_params: Some(
                    json!({ "properties": { "city": { "type": "string", "minLength": 1 } }, "required": ["city"] }),
                ),
                ..SchemaHints::default()
            },
        );
        assert_eq!(
            hinted.schema["properties"]["input"]["properties"]["queryParams"]["required"],
            json!(["city"])
        );
        assert!(ext.clone().route_template("/../x").is_err());
        assert_eq!(
            ext.route_template("/w/:id").unwrap().to_value()["routeTemplate"],
            "/w/:id"
        );
    }
}
