//! The facilitator as the paywall and the gateway see it.

use std::sync::Arc;

use tollgate_proto::{
    FacilitatorRequest, IdempotencyKey, SettleResponse, SupportedResponse, VerifyResponse,
};

use crate::BoxFuture;

/// Why the facilitator could not give an answer (as opposed to answering "invalid").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// Not reachable, timed out, or reported itself unavailable.
    #[error("facilitator unavailable: {0}")]
    Unavailable(String),
    /// Answered something that is not a spec response.
    #[error("facilitator answered an unexpected response: {0}")]
    BadResponse(String),
}

/// A facilitator: verify, settle, and say what it supports. The in-process facilitator
/// (`tollgate-facilitator`) and the HTTP client of a remote one (`tollgate-server`'s
/// `RemoteFacilitator`) both implement it, so the paywall depends on neither.
///
/// Both calls carry the **attempt key** (`Idempotency-Key`): the paywall names each paid
/// request it serves with a fresh random key and uses it for that request's `/verify` and
/// `/settle`, and again for its own retries. The facilitator records the first key that
/// verified a payment as its owner, and only that key gets the original settlement back from a
/// repeated `/settle`; anyone else presenting a copy of the payment is refused. So a retry
/// after a lost answer recovers the outcome, while a replica or a replayed header cannot be
/// told "settled" for a payment it did not settle.
///
/// Object-safe: `Arc<dyn Facilitator>` is a facilitator.
pub trait Facilitator: Send + Sync + 'static {
    /// `POST /verify`, as part of the attempt `attempt`.
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>>;

    /// `POST /settle`, as part of the attempt `attempt`. Repeating it with the same key after
    /// an error is safe: the facilitator settles a payment at most once and answers the same
    /// attempt with the original outcome.
    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>>;

    /// `GET /supported`: what the facilitator can verify and settle. Sellers check their
    /// prices against it at start-up instead of finding out at the first payment.
    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>>;

    /// The attempt `attempt` verified `request` and will not settle it: its handler failed,
    /// the payer was refused, or the request ended before settling. A facilitator that holds
    /// something for the attempt (a seller's channel manager holds the payment channel from
    /// `/verify` to `/settle`, so that one request at a time pays on it, across replicas) lets
    /// go of it now, so the buyer's retry is not refused as busy until a lease runs out. Best
    /// effort: nothing is settled either way, and a failure only delays that retry. The
    /// default holds nothing and does nothing.
    fn abandon<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, ()> {
        let _ = (request, attempt);
        Box::pin(std::future::ready(()))
    }
}

impl<F: Facilitator + ?Sized> Facilitator for Arc<F> {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        (**self).verify(request, attempt)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        (**self).settle(request, attempt)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        (**self).supported()
    }

    fn abandon<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, ()> {
        (**self).abandon(request, attempt)
    }
}
