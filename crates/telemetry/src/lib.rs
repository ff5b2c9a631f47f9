//! Tracing for Tollgate's services, on the OpenTelemetry ecosystem's crates.
//!
//! Three parts, so each user links only what it needs:
//!
//! - [`TelemetryConfig`] — the `[telemetry]` table of `tollgate facilitator` and
//!   `tollgate proxy` (collector URL, service name, sampling ratio), with the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` override.
//! - [`propagation`] and [`HttpTraceLayer`] — W3C `traceparent` carried from the paywall's
//!   facilitator client to the facilitator's router, so one paid request is one trace. These
//!   need only the `opentelemetry` API crate and `tracing-opentelemetry`: a library embedding
//!   them exports nothing and costs nothing until a binary installs an exporter.
//! - [`init`] (feature `otlp`) — the one place a binary installs its subscriber: the log
//!   output on stderr, plus, when an endpoint is configured, spans exported over OTLP/HTTP
//!   (protobuf). The returned [`TelemetryGuard`] flushes what is still buffered when dropped.

mod config;
mod layer;
pub mod propagation;

#[cfg(feature = "otlp")]
mod init;

pub use config::{EndpointError, SampleRatio, TelemetryConfig, ENV_OTLP_ENDPOINT};
pub use layer::{HttpTraceLayer, HttpTraceService, TracedResponse};

#[cfg(feature = "otlp")]
pub use init::{init, init_logs, InitError, InitOptions, TelemetryGuard};
