//! Bazaar discovery, seller side: describe a priced route so that facilitators catalogue it.
//!
//! A route's description — how to call it (method, query parameters or body, or an MCP tool and
//! its arguments) and what it answers — goes into its 402 as `extensions.bazaar`
//! (`specs/extensions/bazaar.md`). The buyer echoes it in its payment; the facilitator validates
//! it against its JSON Schema and, once the payment settles, lists the route under
//! `GET /discovery/resources`. Only routes that were actually paid are listed.
//!
//! ```
//! use serde_json::json;
//! use tollgate_server::bazaar::Bazaar;
//! use tollgate_server::{PaymentOption, RoutePrice};
//! use tollgate_proto::Network;
//!
//! let price = RoutePrice::new(PaymentOption::usd(
//!     "$0.001", Network::eip155(8453), "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
//! ).unwrap())
//! .description("Current weather for a city")
//! .discoverable(
//!     Bazaar::http_get()
//!         .required_query_param("city", "San Francisco")
//!         .output_example(json!({ "city": "San Francisco", "weather": "foggy" })),
//! )
//! .unwrap()
//! .service("Example Weather", &["weather", "forecast"], None)
//! .unwrap();
//! assert!(price.bazaar.is_some());
//! ```
//!
//! With the `schemars` feature, the schemas of query parameters, body and output can be derived
//! from Rust types (`Bazaar::query_schema_for::<T>()`, `body_schema_for`, `output_schema_for`).
//!
//! Everything is checked when the description is built ([`Bazaar::build`]): the typed `info`
//! is validated against the generated schema with a real JSON Schema validator, and service
//! metadata against the spec's limits — a seller learns about a mistake at start-up, not from
//! a resource silently missing from the catalogue.

use serde_json::{Map, Value};
pub use tollgate_proto::bazaar::{
    BazaarExtension, BodyInput, BodyMethod, BodyType, DiscoveryInfo, DiscoveryInput,
    DiscoveryOutput, HttpInput, McpInput, McpTransport, MetadataError, QueryInput, QueryMethod,
    SchemaHints, ServiceMetadata,
};

/// Why a bazaar description cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BazaarError {
    /// A builder call that does not apply to this kind of input (a body on a `GET`, a query
    /// parameter on an MCP tool…).
    #[error("{0}")]
    Misuse(String),
    /// The description does not validate against its own schema (a schema given by hand or
    /// derived from a type disagrees with the examples).
    #[error("the bazaar description does not match its schema: {0}")]
    Invalid(String),
    /// Service metadata or a route template breaks the spec's rules.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A JSON Schema derived from a Rust type cannot be embedded (e.g. a recursive type).
    #[error("the JSON Schema of `{type_name}` cannot be embedded in a bazaar schema: {why}")]
    Schema {
        /// The type.
        type_name: String,
        /// Why.
        why: String,
    },
}

/// An HTTP input's query parameter and header examples.
type HttpExamples<'a> = (
    &'a mut Option<Map<String, Value>>,
    &'a mut Option<Map<String, Value>>,
);

/// A builder of a route's bazaar description ([`BazaarExtension`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct Bazaar {
    input: DiscoveryInput,
    output: Option<DiscoveryOutput>,
    hints: SchemaHints,
    required_query: Vec<String>,
    route_template: Option<String>,
    /// The first misuse of the builder, reported by [`build`](Self::build).
    error: Option<BazaarError>,
}

impl Bazaar {
    fn with_input(input: DiscoveryInput) -> Self {
        Self {
            input,
            output: None,
            hints: SchemaHints::default(),
            required_query: Vec::new(),
            route_template: None,
            error: None,
        }
    }

    /// An HTTP endpoint called with a query method.
    pub fn http_query(method: QueryMethod) -> Self {
        Self::with_input(DiscoveryInput::Http(HttpInput::Query(QueryInput::new(
            method,
        ))))
    }

    /// An HTTP `GET` endpoint.
    pub fn http_get() -> Self {
        Self::http_query(QueryMethod::Get)
    }

    /// An HTTP `HEAD` endpoint.
    pub fn http_head() -> Self {
        Self::http_query(QueryMethod::Head)
    }

    /// An HTTP `DELETE` endpoint.
    pub fn http_delete() -> Self {
        Self::http_query(QueryMethod::Delete)
    }

    /// An HTTP endpoint called with a body method; the body example starts empty (`{}`, or
    /// `""` for text) until [`body_example`](Self::body_example).
    pub fn http_body(method: BodyMethod, body_type: BodyType) -> Self {
        let empty = match body_type {
            BodyType::Text => Value::String(String::new()),
            BodyType::Json | BodyType::FormData => Value::Object(Map::new()),
        };
        Self::with_input(DiscoveryInput::Http(HttpInput::Body(BodyInput::new(
            method, body_type, empty,
        ))))
    }

    /// An HTTP `POST` endpoint with a body of `body_type`.
    pub fn http_post(body_type: BodyType) -> Self {
        Self::http_body(BodyMethod::Post, body_type)
    }

    /// An HTTP `PUT` endpoint with a body of `body_type`.
    pub fn http_put(body_type: BodyType) -> Self {
        Self::http_body(BodyMethod::Put, body_type)
    }

    /// An HTTP `PATCH` endpoint with a body of `body_type`.
    pub fn http_patch(body_type: BodyType) -> Self {
        Self::http_body(BodyMethod::Patch, body_type)
    }

    /// An MCP tool named `tool_name` whose arguments `input_schema` describes (the tool's own
    /// MCP `inputSchema`, a JSON Schema object).
    pub fn mcp(tool_name: impl Into<String>, input_schema: Value) -> Self {
        let (schema, error) = match input_schema {
            Value::Object(map) => (map, None),
            other => (
                Map::new(),
                Some(BazaarError::Misuse(format!(
                    "an MCP tool's inputSchema must be a JSON Schema object, not {other}"
                ))),
            ),
        };
        let mut this = Self::with_input(DiscoveryInput::Mcp(McpInput::new(tool_name, schema)));
        this.error = error;
        this
    }

    /// An already built description, as given (e.g. from configuration).
    pub fn from_info(info: DiscoveryInfo) -> Self {
        let mut this = Self::with_input(info.input);
        this.output = info.output;
        this
    }

    fn misuse(mut self, what: &str) -> Self {
        if self.error.is_none() {
            let kind = match &self.input {
                DiscoveryInput::Http(http) => format!("an HTTP {} endpoint", http.method()),
                DiscoveryInput::Mcp(_) => "an MCP tool".to_owned(),
            };
            self.error = Some(BazaarError::Misuse(format!(
                "{what} does not apply to {kind}"
            )));
        }
        self
    }

    /// The query parameter and header examples of an HTTP input.
    fn http_parts(&mut self) -> Option<HttpExamples<'_>> {
        match &mut self.input {
            DiscoveryInput::Http(HttpInput::Query(q)) => {
                Some((&mut q.query_params, &mut q.headers))
            }
            DiscoveryInput::Http(HttpInput::Body(b)) => Some((&mut b.query_params, &mut b.headers)),
            DiscoveryInput::Mcp(_) => None,
        }
    }

    /// An example query parameter (optional to callers).
    pub fn query_param(mut self, name: impl Into<String>, example: impl Into<Value>) -> Self {
        match self.http_parts() {
            Some((query, _)) => {
                query
                    .get_or_insert_with(Map::new)
                    .insert(name.into(), example.into());
                self
            }
            None => self.misuse("a query parameter"),
        }
    }

    /// An example query parameter that callers must send (listed as `required` in the
    /// generated schema).
    pub fn required_query_param(self, name: impl Into<String>, example: impl Into<Value>) -> Self {
        let name = name.into();
        let mut this = self.query_param(name.clone(), example);
        this.required_query.push(name);
        this
    }

    /// An example custom request header.
    pub fn header(mut self, name: impl Into<String>, example: impl Into<String>) -> Self {
        match self.http_parts() {
            Some((_, headers)) => {
                headers
                    .get_or_insert_with(Map::new)
                    .insert(name.into(), Value::String(example.into()));
                self
            }
            None => self.misuse("a request header"),
        }
    }

    /// The example request body (body methods only).
    pub fn body_example(mut self, example: impl Into<Value>) -> Self {
        match &mut self.input {
            DiscoveryInput::Http(HttpInput::Body(b)) => {
                b.body = example.into();
                self
            }
            _ => self.misuse("a request body"),
        }
    }

    /// The tool's description (MCP only).
    pub fn tool_description(mut self, text: impl Into<String>) -> Self {
        match &mut self.input {
            DiscoveryInput::Mcp(m) => {
                m.description = Some(text.into());
                self
            }
            _ => self.misuse("a tool description"),
        }
    }

    /// The tool's MCP transport (MCP only; absent means `streamable-http`).
    pub fn transport(mut self, transport: McpTransport) -> Self {
        match &mut self.input {
            DiscoveryInput::Mcp(m) => {
                m.transport = Some(transport);
                self
            }
            _ => self.misuse("an MCP transport"),
        }
    }

    /// Example `arguments` of the tool (MCP only; a JSON object).
    pub fn arguments_example(mut self, example: Value) -> Self {
        match (&mut self.input, example) {
            (DiscoveryInput::Mcp(m), Value::Object(map)) => {
                m.example = Some(map);
                self
            }
            (DiscoveryInput::Mcp(_), _) => self.misuse("an example that is not a JSON object"),
            _ => self.misuse("an arguments example"),
        }
    }

    /// An example response, as JSON (`output.type` `json`).
    pub fn output_example(mut self, example: impl Into<Value>) -> Self {
        let output = self
            .output
            .get_or_insert_with(|| DiscoveryOutput::json(Value::Null));
        output.example = Some(example.into());
        self
    }

    /// The response's content type (`json`, `text`, …) and optional format details.
    pub fn output_type(mut self, kind: impl Into<String>, format: Option<String>) -> Self {
        let output = self.output.get_or_insert_with(|| DiscoveryOutput {
            kind: String::new(),
            format: None,
            example: None,
        });
        output.kind = kind.into();
        output.format = format;
        self
    }

    /// The JSON Schema of the query parameters (an object schema), instead of the one inferred
    /// from the examples.
    pub fn query_schema(mut self, schema: Value) -> Self {
        self.hints.query_params = Some(schema);
        self
    }

    /// The JSON Schema of the request body, instead of the one inferred from the example.
    pub fn body_schema(mut self, schema: Value) -> Self {
        self.hints.body = Some(schema);
        self
    }

    /// The JSON Schema of the example response, instead of the one inferred from it.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.hints.output_example = Some(schema);
        self
    }

    /// The route's template for a parameterised path (`/users/:userId`), under which a
    /// facilitator catalogues every concrete URL of the route.
    pub fn route_template(mut self, template: impl Into<String>) -> Self {
        self.route_template = Some(template.into());
        self
    }

    /// The description: the typed `info`, its generated schema (refined by the schemas given),
    /// validated against each other (with the `bazaar-validate` feature, on by default; the
    /// facilitator validates again before cataloguing either way).
    pub fn build(self) -> Result<BazaarExtension, BazaarError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(output) = &self.output {
            if output.kind.is_empty() {
                return Err(BazaarError::Misuse(
                    "the output needs a type (`json`, `text`…): call output_type or output_example"
                        .into(),
                ));
            }
        }
        let mut hints = self.hints;
        if !self.required_query.is_empty() && hints.query_params.is_none() {
            // The inferred schema, with the required parameters listed.
            let examples = match &self.input {
                DiscoveryInput::Http(HttpInput::Query(q)) => q.query_params.clone(),
                DiscoveryInput::Http(HttpInput::Body(b)) => b.query_params.clone(),
                DiscoveryInput::Mcp(_) => None,
            }
            .unwrap_or_default();
            let properties: Map<String, Value> = examples
                .iter()
                .map(|(k, v)| (k.clone(), json_type(v)))
                .collect();
            hints.query_params = Some(serde_json::json!({
                "properties": properties,
                "required": self.required_query,
            }));
        }
        let info = DiscoveryInfo {
            input: self.input,
            output: self.output,
        };
        let mut extension = BazaarExtension::with_hints(info, &hints);
        if let Some(template) = self.route_template {
            extension = extension.route_template(template)?;
        }
        #[cfg(feature = "bazaar-validate")]
        tollgate_proto::bazaar::validate_extension(&extension.to_value())
            .map_err(BazaarError::Invalid)?;
        Ok(extension)
    }
}

/// `{"type": …}` of an example value.
fn json_type(value: &Value) -> Value {
    let t = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    serde_json::json!({ "type": t })
}

/// Validates service metadata strictly ([`ServiceMetadata::new`]).
pub fn service_metadata(
    service_name: Option<&str>,
    tags: &[&str],
    icon_url: Option<&str>,
) -> Result<ServiceMetadata, MetadataError> {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    ServiceMetadata::new(service_name, &tags, icon_url)
}

#[cfg(feature = "schemars")]
mod derive {
    use super::{Bazaar, BazaarError};
    use serde_json::Value;

    /// The JSON Schema of `T`, with every subschema inlined (a bazaar schema is embedded in
    /// another document, where `#/$defs/…` would point at the wrong root), without `$schema`.
    pub(super) fn schema_of<T: schemars::JsonSchema>() -> Result<Value, BazaarError> {
        let generator = schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        let schema = generator.into_root_schema_for::<T>();
        let mut value = schema.to_value();
        if let Some(map) = value.as_object_mut() {
            map.remove("$schema");
            if map.contains_key("$defs") || map.contains_key("definitions") {
                return Err(BazaarError::Schema {
                    type_name: std::any::type_name::<T>().to_owned(),
                    why: "it still refers to shared definitions after inlining (a recursive \
                          type?); give its schema by hand"
                        .into(),
                });
            }
        }
        Ok(value)
    }

    impl Bazaar {
        /// The query parameters' schema from the type `T` they deserialize into.
        pub fn query_schema_for<T: schemars::JsonSchema>(self) -> Self {
            match schema_of::<T>() {
                Ok(schema) => self.query_schema(schema),
                Err(e) => self.fail(e),
            }
        }

        /// The request body's schema from the type `T` it deserializes into.
        pub fn body_schema_for<T: schemars::JsonSchema>(self) -> Self {
            match schema_of::<T>() {
                Ok(schema) => self.body_schema(schema),
                Err(e) => self.fail(e),
            }
        }

        /// The response's schema from the type `T` it serializes from.
        pub fn output_schema_for<T: schemars::JsonSchema>(self) -> Self {
            match schema_of::<T>() {
                Ok(schema) => self.output_schema(schema),
                Err(e) => self.fail(e),
            }
        }

        fn fail(mut self, e: BazaarError) -> Self {
            if self.error.is_none() {
                self.error = Some(e);
            }
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_get_route_is_described_and_its_schema_accepts_it() {
        let ext = Bazaar::http_get()
            .required_query_param("city", "San Francisco")
            .query_param("units", "metric")
            .header("X-Client", "demo")
            .output_example(json!({ "city": "San Francisco", "temperature": 60 }))
            .build()
            .unwrap();
        let v = ext.to_value();
        assert_eq!(v["info"]["input"]["type"], "http");
        assert_eq!(v["info"]["input"]["method"], "GET");
        assert_eq!(v["info"]["input"]["queryParams"]["city"], "San Francisco");
        assert_eq!(v["info"]["output"]["type"], "json");
        let q = &v["schema"]["properties"]["input"]["properties"]["queryParams"];
        assert_eq!(q["required"], json!(["city"]));
        assert_eq!(q["properties"]["units"]["type"], "string");
        #[cfg(feature = "bazaar-validate")]
        assert!(tollgate_proto::bazaar::validate_extension(&v).is_ok());
    }

    #[test]
    fn body_and_mcp_routes() {
        let post = Bazaar::http_post(BodyType::Json)
            .body_example(json!({ "query": "rust" }))
            .body_schema(json!({
                "type": "object",
                "properties": { "query": { "type": "string" } },
                "required": ["query"]
            }))
            .build()
            .unwrap();
        assert_eq!(post.to_value()["info"]["input"]["bodyType"], "json");
        let tool = Bazaar::mcp(
            "financial_analysis",
            json!({ "type": "object", "properties": { "ticker": { "type": "string" } } }),
        )
        .tool_description("Analysis")
        .transport(McpTransport::Sse)
        .arguments_example(json!({ "ticker": "AAPL" }))
        .build()
        .unwrap();
        let v = tool.to_value();
        assert_eq!(v["info"]["input"]["toolName"], "financial_analysis");
        assert_eq!(v["info"]["input"]["transport"], "sse");
    }

    #[test]
    fn mistakes_fail_when_built() {
        let e = Bazaar::http_get()
            .body_example(json!({}))
            .build()
            .unwrap_err();
        assert!(
            e.to_string().contains("does not apply to an HTTP GET"),
            "{e}"
        );
        assert!(Bazaar::mcp("t", json!("no")).build().is_err());
        assert!(Bazaar::mcp("t", json!({}))
            .query_param("a", 1)
            .build()
            .is_err());
        // A schema given by hand that the example breaks.
        #[cfg(feature = "bazaar-validate")]
        {
            let e = Bazaar::http_post(BodyType::Json)
                .body_example(json!({ "query": 5 }))
                .body_schema(
                    json!({ "type": "object", "properties": { "query": { "type": "string" } } }),
                )
                .build()
                .unwrap_err();
            assert!(
                matches!(e, BazaarError::Invalid(ref m) if m.contains("/input/body/query")),
                "{e}"
            );
        }
        assert!(matches!(
            Bazaar::http_get().route_template("/../admin").build(),
            Err(BazaarError::Metadata(MetadataError::RouteTemplate(_)))
        ));
        let ok = Bazaar::http_get()
            .route_template("/users/:id")
            .build()
            .unwrap();
        assert_eq!(ok.route_template.as_deref(), Some("/users/:id"));
        assert!(service_metadata(
            Some("Weather"),
            &["a"],
            Some("https://cdn.example.com/i.png")
        )
        .is_ok());
        assert!(service_metadata(Some(&"x".repeat(33)), &[], None).is_err());
        assert!(service_metadata(None, &[], Some("http://localhost/i.png")).is_err());
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn schemas_from_rust_types() {
        #[derive(schemars::JsonSchema, serde::Deserialize)]
        #[allow(dead_code)]
        struct Query {
            /// The city.
            city: String,
            days: Option<u8>,
        }
        #[derive(schemars::JsonSchema, serde::Serialize)]
        #[allow(dead_code)]
        struct Forecast {
            city: String,
            days: Vec<Day>,
        }
        #[derive(schemars::JsonSchema, serde::Serialize)]
        #[allow(dead_code)]
        struct Day {
            high: f64,
        }
        let ext = Bazaar::http_get()
            .query_param("city", "Paris")
            .query_schema_for::<Query>()
            .output_example(json!({ "city": "Paris", "days": [{ "high": 21.5 }] }))
            .output_schema_for::<Forecast>()
            .build()
            .unwrap();
        let schema = &ext.schema["properties"]["input"]["properties"]["queryParams"];
        assert_eq!(schema["required"], json!(["city"]));
        assert_eq!(schema["type"], "object");
        // The nested type is inlined, not a dangling `#/$defs/Day`.
        let out = &ext.schema["properties"]["output"]["properties"]["example"];
        assert_eq!(
            out["properties"]["days"]["items"]["properties"]["high"]["type"],
            "number"
        );
        // The example must match the derived schema.
        #[cfg(feature = "bazaar-validate")]
        {
            let e = Bazaar::http_get()
                .query_param("city", 7)
                .query_schema_for::<Query>()
                .build()
                .unwrap_err();
            assert!(matches!(e, BazaarError::Invalid(_)), "{e}");
        }
    }
}
