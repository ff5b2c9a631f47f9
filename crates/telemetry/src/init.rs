//! Installing the process's subscriber: logs to stderr, and spans to a collector when one is
//! configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{traces_url, EndpointError, TelemetryConfig};

/// What the binary decides rather than its configuration file.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions<'a> {
    /// `service.name` when `[telemetry] service_name` is unset (e.g. `tollgate-facilitator`).
    pub default_service_name: &'a str,
    /// The log filter for stderr, in `EnvFilter` syntax (e.g. the value of `TOLLGATE_LOG`);
    /// `None` or an unparsable value: `warn`. It does not limit which spans are exported.
    pub log_filter: Option<&'a str>,
}

/// Why telemetry could not be set up. The binary stops on it: running without the tracing an
/// operator configured would hide exactly the failures they meant to see.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The collector URL (file or environment) is unusable.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// Where spans were to go.
        endpoint: String,
        /// The exporter's complaint.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A subscriber was already installed in this process.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter alive; when dropped, sends the spans still buffered and stops it, so the
/// last requests before a graceful shutdown are not lost.
#[must_use = "dropping the guard stops the span exporter"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every finished span now (blocking until the exporter answered or timed out).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "could not flush spans to the OTLP collector");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Shutdown flushes the batch first. The subscriber may still hold the tracer, so
            // later spans are simply dropped by the stopped processor.
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: could not flush spans to the OTLP collector: {e}");
            }
        }
    }
}

/// Installs the global subscriber: formatted logs on stderr filtered by
/// `options.log_filter`, and — when `config` or `OTEL_EXPORTER_OTLP_ENDPOINT` names a
/// collector — every INFO-or-higher span exported over OTLP/HTTP (protobuf, batched on a
/// thread of the SDK's own), with W3C trace context as the global propagator.
///
/// Call it once, early, and keep the guard until the program ends.
pub fn init(
    config: &TelemetryConfig,
    options: InitOptions<'_>,
) -> Result<TelemetryGuard, InitError> {
    let endpoint = config.resolve_endpoint()?;
    let provider = match &endpoint {
        Some(base) => Some(provider(config, base, options.default_service_name)?),
        None => None,
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tollgate"))
            .with_filter(span_filter())
    });
    tracing_subscriber::registry()
        .with(log_layer(options.log_filter))
        .with(spans)
        .try_init()?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    if let Some(base) = &endpoint {
        tracing::info!(endpoint = %traces_url(base), "exporting spans over OTLP/HTTP");
    }
    Ok(TelemetryGuard { provider })
}

/// Installs only the stderr log subscriber (for the CLI's one-shot commands, which export
/// nothing whatever the environment says).
pub fn init_logs(log_filter: Option<&str>) -> Result<(), InitError> {
    tracing_subscriber::registry()
        .with(log_layer(log_filter))
        .try_init()?;
    Ok(())
}

fn log_layer<S>(filter: Option<&str>) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter)
}

/// INFO spans of every crate, except those of the exporter's own HTTP stack: exporting the
/// spans of an export would feed itself.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        .with_target("opentelemetry_http", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
}

fn provider(
    config: &TelemetryConfig,
    base: &url::Url,
    default_service_name: &str,
) -> Result<SdkTracerProvider, InitError> {
    let endpoint = traces_url(base);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|source| InitError::Exporter { endpoint, source })?;
    let resource = Resource::builder()
        .with_service_name(config.service_name_or(default_service_name).to_owned())
        .build();
    // A caller's sampling decision (from `traceparent`) wins, so a trace is kept or dropped
    // whole; the ratio applies to the traces this service starts.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        config.sample_ratio.get(),
    )));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}
