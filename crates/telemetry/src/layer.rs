//! One server span per HTTP request, optionally continuing the caller's trace.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tracing::instrument::Instrumented;
use tracing::Instrument;

/// A tower layer that runs each request inside an `http.request` span (OpenTelemetry kind
/// `server`, named `"{METHOD} {path}"`, with the response status recorded), so everything the
/// handler logs or spans nests under one span per request.
///
/// Whether the caller's `traceparent` is honoured is the one decision per deployment:
/// [`continue_incoming`](Self::continue_incoming) for the facilitator, whose callers are the
/// operator's paywalls, and [`new_trace`](Self::new_trace) for an edge like the gateway, where a
/// buyer's header must not be able to join the operator's traces or force them to be sampled.
#[derive(Debug, Clone, Copy)]
pub struct HttpTraceLayer {
    continue_incoming: bool,
}

impl HttpTraceLayer {
    /// Requests carrying a valid `traceparent` become part of the caller's trace.
    pub fn continue_incoming() -> Self {
        Self {
            continue_incoming: true,
        }
    }

    /// Every request starts a trace of its own; incoming trace headers are ignored.
    pub fn new_trace() -> Self {
        Self {
            continue_incoming: false,
        }
    }
}

impl<S> tower_layer::Layer<S> for HttpTraceLayer {
    type Service = HttpTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTraceService {
            inner,
            continue_incoming: self.continue_incoming,
        }
    }
}

/// The service [`HttpTraceLayer`] wraps around its inner service.
#[derive(Debug, Clone)]
pub struct HttpTraceService<S> {
    inner: S,
    continue_incoming: bool,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for HttpTraceService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TracedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method();
        // The path only: query strings may carry tokens.
        let path = request.uri().path();
        let span = tracing::info_span!(
            "http.request",
            otel.name = %format_args!("{method} {path}"),
            otel.kind = "server",
            http.request.method = %method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if self.continue_incoming {
            crate::propagation::continue_trace(&span, request.headers());
        }
        let future = span.in_scope(|| self.inner.call(request));
        TracedResponse {
            inner: future.instrument(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpTraceService`]: records the status on the span.
    pub struct TracedResponse<F> {
        #[pin]
        inner: Instrumented<F>,
    }
}

impl<F, RB, E> Future for TracedResponse<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let output = ready!(this.inner.as_mut().poll(cx));
        let span = this.inner.as_ref().get_ref().span();
        match &output {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "error");
                }
            }
            Err(_) => {
                span.record("otel.status_code", "error");
            }
        }
        Poll::Ready(output)
    }
}
