//! The facilitator embedded in a resource server: [`Facilitator`] as a `tollgate_core`
//! facilitator, so `PaywallLayer::new(facilitator)` verifies and settles without an HTTP hop.
//!
//! The impl lives here rather than in `tollgate-server` so that the paywall depends only on the
//! trait: a seller who uses a remote facilitator does not compile this crate, its ledger
//! databases or its chain client.

use tollgate_core::{BoxFuture, FacilitatorError};
use tollgate_proto::{
    FacilitatorRequest, IdempotencyKey, SettleResponse, SupportedResponse, VerifyResponse,
};

use crate::{Facilitator, Outcome};

/// The answers map as over HTTP: valid, invalid, pending, refused and conflicting payments are
/// answers (the body says which); only "could not decide" (`Outcome::Unavailable`, a 503 over
/// HTTP) is an error, so the paywall answers 503 instead of blaming the payer.
impl tollgate_core::Facilitator for Facilitator {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            match Facilitator::verify_attempt(self, request, attempt).await {
                Outcome::Unavailable(body) => Err(FacilitatorError::Unavailable(
                    body.invalid_message.unwrap_or_default(),
                )),
                other => Ok(other.into_body()),
            }
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        attempt: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let outcome = Facilitator::settle_attempt(self, request, attempt).await;
            // Settled payments' bazaar descriptions are catalogued as over HTTP (there is no
            // header to answer in; a rejection is logged by the catalogue).
            if let (FacilitatorRequest::V2 { .. }, Outcome::Ok(settled)) = (request, &outcome) {
                let (payment, requirements) = request.to_v2();
                crate::discovery::Catalogue::new(self.ledger())
                    .record_settlement(&payment, &requirements, settled)
                    .await;
            }
            match outcome {
                Outcome::Unavailable(body) => Err(FacilitatorError::Unavailable(
                    body.error_message.unwrap_or_default(),
                )),
                other => Ok(other.into_body()),
            }
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        // The inherent `supported` (what this facilitator serves) never fails.
        Box::pin(async move { Ok(Facilitator::supported(self)) })
    }
}
