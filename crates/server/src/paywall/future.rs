//! The paywall's response future.

use std::future::Future;
use std::pin::Pin;

use axum::response::Response;

/// The future returned by [`Paywall`](super::Paywall): boxed, because it awaits the
/// facilitator and the inner service in sequence.
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send + 'static>>;
