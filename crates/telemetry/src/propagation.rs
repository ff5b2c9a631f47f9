//! W3C trace context (`traceparent`, `tracestate`) in HTTP headers.
//!
//! Both directions go through OpenTelemetry's *global* propagator, which [`crate::init`] sets
//! to the W3C `TraceContextPropagator` when spans are exported. Until then it is the no-op
//! propagator: a library calling these functions in a program that exports nothing writes and
//! reads no header, so nothing is leaked and no trace id is invented.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace-context headers naming `span` as the parent of the callee's work: what an HTTP
/// client adds to a request it makes inside `span`. Empty when nothing is exported.
pub fn headers_for(span: &tracing::Span) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(&mut headers))
        });
    }
    headers
}

/// The caller's span context from `headers`, if they carry a valid one.
pub fn extract(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the caller's span named in `headers` (when there is one). Call it
/// right after creating the span, before it is entered.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if let Some(parent) = extract(headers) {
        // Fails only when no OpenTelemetry layer is installed — then there is nothing to join.
        let _ = span.set_parent(parent);
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn headers_are_read_only_when_well_formed() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        let cx = extract(&headers).expect("a valid traceparent");
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(sc.is_remote() && sc.is_sampled());

        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        ] {
            headers.insert("traceparent", HeaderValue::from_static(bad));
            assert!(extract(&headers).is_none(), "{bad}");
        }
        assert!(extract(&HeaderMap::new()).is_none());
    }

    #[test]
    fn nothing_is_injected_without_an_exporting_subscriber() {
        // No OpenTelemetry layer is installed in this test binary: no context, no header.
        let span = tracing::info_span!("call");
        assert!(headers_for(&span).is_empty());
        assert!(headers_for(&tracing::Span::none()).is_empty());
    }
}
