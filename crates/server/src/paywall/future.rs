//! The paywall's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;

/// The future returned by [`Paywall`](super::Paywall).
///
/// An unpaid request for a statically priced route is answered from the challenge cache
/// without awaiting anything, so that answer is ready at once: no allocation, no clone of the
/// inner service. Everything else awaits the facilitator and the inner service in sequence,
/// which is boxed.
pub struct ResponseFuture<E> {
    kind: Kind<E>,
}

enum Kind<E> {
    Ready(Option<Response>),
    Boxed(Pin<Box<dyn Future<Output = Result<Response, E>> + Send + 'static>>),
}

impl<E> ResponseFuture<E> {
    pub(crate) fn ready(response: Response) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    pub(crate) fn boxed(
        future: impl Future<Output = Result<Response, E>> + Send + 'static,
    ) -> Self {
        Self {
            kind: Kind::Boxed(Box::pin(future)),
        }
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are `Unpin` (an `Option` and a `Pin<Box<_>>`).
        match &mut self.get_mut().kind {
            Kind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.kind {
            Kind::Ready(Some(_)) => "ready",
            Kind::Ready(None) => "done",
            Kind::Boxed(_) => "pending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
