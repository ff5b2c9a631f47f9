//! An HTTP response as the gate keeps it when its settlement outlives the exchange: the
//! [`Delivery`] of the tower paywall.

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use tollgate_core::BoxFuture;

use crate::gate::Delivery;

/// A handler's response held in memory.
#[derive(Debug, Clone)]
pub struct BufferedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl BufferedResponse {
    /// Reads `response`'s body, refusing one larger than `limit` bytes.
    pub(crate) async fn read(response: Response, limit: usize) -> Result<Self, String> {
        let (parts, body) = response.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(format!("the response is larger than {limit} bytes"));
        }
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|e| format!("the response could not be read within {limit} bytes: {e}"))?;
        Ok(Self {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Memory charged to the store: body, headers, and a fixed overhead.
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers
    }

    /// The response to send.
    pub(crate) fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// The paywall's delivery: the inner service's response, read into memory (up to the store's
/// per-response cap) when it must wait for the buyer's retry.
impl Delivery for Response {
    type Kept = BufferedResponse;

    fn keep(self, limit: usize) -> BoxFuture<'static, Result<BufferedResponse, String>> {
        Box::pin(BufferedResponse::read(self, limit))
    }

    fn kept_size(kept: &BufferedResponse) -> usize {
        kept.size()
    }

    fn restore(kept: BufferedResponse) -> Self {
        kept.into_response()
    }
}
