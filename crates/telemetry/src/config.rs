//! `[telemetry]`: where spans go, under which service name, and how many traces are kept.

use serde::{Deserialize, Deserializer};
use url::Url;

/// The standard OpenTelemetry variable naming the collector's base URL; when set (and not
/// empty) it overrides `otlp_endpoint` from the file, so an operator can point a deployed
/// configuration at another collector without editing it.
pub const ENV_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The path OTLP/HTTP collectors receive spans on, under their base URL.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
const TRACES_PATH: &str = "v1/traces";

/// `[telemetry]` in the facilitator's and the gateway's TOML files.
///
/// ```toml
/// [telemetry]
/// otlp_endpoint = "http://127.0.0.1:4318"   # an OTel collector or Jaeger (OTLP/HTTP)
/// service_name = "tollgate-facilitator"     # default: the role's name
/// sample_ratio = 0.25                       # of new traces; a caller's decision is kept
/// ```
///
/// Nothing is exported unless an endpoint is set here or in `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`http://host:4318`); spans are POSTed to
    /// `<base>/v1/traces` (a URL already ending in `/v1/traces` is used as it is). `None`:
    /// spans are not exported.
    #[serde(default, deserialize_with = "endpoint")]
    pub otlp_endpoint: Option<Url>,
    /// The `service.name` resource attribute; the binary's role name when unset.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The share of new traces recorded, from 0 to 1 (default 1). A request that arrives
    /// with a `traceparent` follows its caller's decision instead, so a trace is never cut in
    /// half between the paywall and the facilitator.
    #[serde(default)]
    pub sample_ratio: SampleRatio,
}

/// Why a collector endpoint was refused. Refusing loudly at start-up is the point: a
/// misspelt endpoint would otherwise lose every span silently.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The value is not an absolute URL.
    #[error("{origin}: {value:?} is not a URL: {reason}")]
    Malformed {
        /// Where the value came from (the variable or `telemetry.otlp_endpoint`).
        origin: &'static str,
        /// The value as given.
        value: String,
        /// The parser's complaint.
        reason: url::ParseError,
    },
    /// A scheme other than `http` or `https`, a URL without a host, or one with a password.
    #[error("{origin}: {reason}")]
    Unusable {
        /// Where the value came from.
        origin: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl TelemetryConfig {
    /// The collector's base URL after the `OTEL_EXPORTER_OTLP_ENDPOINT` override; `None` when
    /// spans are not to be exported.
    pub fn resolve_endpoint(&self) -> Result<Option<Url>, EndpointError> {
        self.resolve_endpoint_with(std::env::var(ENV_OTLP_ENDPOINT).ok().as_deref())
    }

    /// [`resolve_endpoint`](Self::resolve_endpoint) with the variable's value given (tests,
    /// and programs that read their environment elsewhere). An empty value counts as unset,
    /// as the OpenTelemetry specification asks.
    pub fn resolve_endpoint_with(&self, env: Option<&str>) -> Result<Option<Url>, EndpointError> {
        match env.map(str::trim).filter(|v| !v.is_empty()) {
            Some(value) => {
                let url = Url::parse(value).map_err(|reason| EndpointError::Malformed {
                    origin: ENV_OTLP_ENDPOINT,
                    value: value.to_owned(),
                    reason,
                })?;
                check_endpoint(&url, ENV_OTLP_ENDPOINT)?;
                Ok(Some(url))
            }
            None => Ok(self.otlp_endpoint.clone()),
        }
    }

    /// The service name: the configured one, or `default`.
    pub fn service_name_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.service_name.as_deref().unwrap_or(default)
    }
}

/// Where a collector with base URL `base` receives spans.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn traces_url(base: &Url) -> String {
    let mut url = base.clone();
    if !url.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        let path = format!("{}/{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    url.to_string()
}

fn check_endpoint(url: &Url, origin: &'static str) -> Result<(), EndpointError> {
    let unusable = |reason: String| Err(EndpointError::Unusable { origin, reason });
    if !matches!(url.scheme(), "http" | "https") {
        return unusable(format!(
            "scheme {:?} is not http or https (OTLP over HTTP)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return unusable("the URL has no host".into());
    }
    if url.password().is_some() {
        // A password in the URL would end up in logs and `Debug` output.
        return unusable(
            "credentials in the URL; pass them as headers in OTEL_EXPORTER_OTLP_HEADERS".into(),
        );
    }
    Ok(())
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let Some(value) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let origin = "telemetry.otlp_endpoint";
    let url = Url::parse(value.trim())
        .map_err(|reason| EndpointError::Malformed {
            origin,
            value: value.clone(),
            reason,
        })
        .and_then(|url| check_endpoint(&url, origin).map(|()| url))
        .map_err(serde::de::Error::custom)?;
    Ok(Some(url))
}

/// A sampling ratio, `0.0..=1.0`: the share of new traces that are recorded.
#[derive(Debug, Clone, Copy)]
pub struct SampleRatio(f64);

impl SampleRatio {
    /// Every trace.
    pub const ALWAYS: Self = Self(1.0);

    /// `ratio` if it lies in `0.0..=1.0` (NaN does not).
    pub fn new(ratio: f64) -> Option<Self> {
        (0.0..=1.0).contains(&ratio).then_some(Self(ratio))
    }

    /// The ratio.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for SampleRatio {
    fn default() -> Self {
        Self::ALWAYS
    }
}

// Never NaN (refused by `new` and by deserialization), so equality is an equivalence.
impl PartialEq for SampleRatio {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for SampleRatio {}

impl<'de> Deserialize<'de> for SampleRatio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ratio = f64::deserialize(d)?;
        Self::new(ratio).ok_or_else(|| {
            serde::de::Error::custom(format!("sample_ratio {ratio} is not between 0 and 1"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelemetryConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_export_nothing_and_sample_everything() {
        let c = parse("").unwrap();
        assert_eq!(c.resolve_endpoint_with(None).unwrap(), None);
        assert_eq!(c.sample_ratio.get(), 1.0);
        assert_eq!(c.service_name_or("tollgate-proxy"), "tollgate-proxy");
    }

    #[test]
    fn full_table_parses() {
        let c = parse(
            "otlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"edge\"\nsample_ratio = 0.25\n",
        )
        .unwrap();
        assert_eq!(
            c.otlp_endpoint.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:4318/")
        );
        assert_eq!(c.service_name_or("x"), "edge");
        assert_eq!(c.sample_ratio.get(), 0.25);
    }

    #[test]
    fn malformed_endpoints_are_refused() {
        for bad in [
            "otlp_endpoint = \"127.0.0.1:4318\"",
            "otlp_endpoint = \"not a url\"",
            "otlp_endpoint = \"grpc://127.0.0.1:4317\"",
            "otlp_endpoint = \"http://user:secret@collector:4318\"",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("telemetry.otlp_endpoint"), "{bad}: {err}");
        }
        assert!(parse("sample_ratio = 1.5").is_err());
        assert!(parse("sample_ratio = -0.1").is_err());
        assert!(parse("sample_ratio = nan").is_err());
        assert!(parse("otlp_endpoints = \"http://x\"").is_err());
    }

    #[test]
    fn the_environment_overrides_the_file_and_is_checked() {
        let c = parse("otlp_endpoint = \"http://file:4318\"").unwrap();
        let env = c
            .resolve_endpoint_with(Some("https://collector.example:4318"))
            .unwrap()
            .unwrap();
        assert_eq!(env.host_str(), Some("collector.example"));
        // Empty means unset.
        let file = c.resolve_endpoint_with(Some("  ")).unwrap().unwrap();
        assert_eq!(file.host_str(), Some("file"));
        let err = c.resolve_endpoint_with(Some("localhost:4318")).unwrap_err();
        assert!(err.to_string().contains(ENV_OTLP_ENDPOINT), "{err}");
        assert!(c.resolve_endpoint_with(Some("::")).is_err());
    }

    #[test]
    fn traces_path_is_appended_once() {
        let url = |s: &str| traces_url(&Url::parse(s).unwrap());
        assert_eq!(
            url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(url("http://c:4318/otlp/"), "http://c:4318/otlp/v1/traces");
        assert_eq!(url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
