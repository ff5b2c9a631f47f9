//! The paywall's side of sign-in-with-x ([`crate::siwx`]): the extension in each 402, the
//! `SIGN-IN-WITH-X` header checked before any payment, and the payer of each settled payment
//! recorded for the resource.

use tollgate_proto::siwx::SIGN_IN_WITH_X;

use crate::gate::{Offer, PaymentInfo};
use crate::price::RoutePrice;
use crate::siwx::{SignInWithX, SignedIn, SiwxRefusal};

/// What the paywall does about a request's sign-in.
pub(super) enum SignIn {
    /// No sign-in, or a refused one on a request that carries a payment: go on to the payment.
    Pay,
    /// Signed in: serve without payment.
    Granted(SignedIn),
    /// Refused: `402` with this `error`.
    Refused(String),
    /// The store could not answer: `503`.
    Unavailable(String),
}

/// Adds the sign-in offer to `offer` and checks the request's `SIGN-IN-WITH-X` header, if any.
pub(super) async fn check(
    siwx: &SignInWithX,
    offer: &mut Offer,
    price: &RoutePrice,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    has_payment: bool,
) -> SignIn {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let networks: Vec<_> = offer
        .accepts
        .iter()
        .map(|r| r.network.clone())
        .chain(price.auth_only.iter().cloned())
        .collect();
    if let Some(extension) = siwx.extension(path, &networks) {
        offer
            .extensions
            .insert(tollgate_proto::siwx::EXTENSION.to_owned(), extension);
    }
    let Some(header) = headers.get(SIGN_IN_WITH_X) else {
        return SignIn::Pay;
    };
    let Ok(header) = header.to_str() else {
        return SignIn::Refused(format!(
            "{}: the header is not ASCII",
            tollgate_proto::siwx::reason::INVALID_HEADER
        ));
    };
    let auth_only = offer.accepts.is_empty() && !price.auth_only.is_empty();
    match siwx
        .sign_in(header, &offer.target, path, &networks, auth_only)
        .await
    {
        Ok(signed_in) => {
            tracing::info!(wallet = %signed_in.address, target = %offer.target, auth_only, "signed in with x");
            SignIn::Granted(signed_in)
        }
        Err(SiwxRefusal::Store(e)) => SignIn::Unavailable(e.to_string()),
        Err(refusal) if has_payment => {
            tracing::debug!(%refusal, "sign-in refused; the request pays instead");
            SignIn::Pay
        }
        Err(refusal) => SignIn::Refused(refusal.to_string()),
    }
}

/// Records the payer of a settled payment for `target` (the gate's target of the request), so
/// the wallet can sign in to it later. A failure is logged: the buyer paid and is served, and
/// at worst pays again instead of signing in.
pub(super) async fn record(siwx: Option<&SignInWithX>, target: Option<&str>, info: &PaymentInfo) {
    let (Some(siwx), Some(target), Some(payer)) = (siwx, target, info.payer.as_deref()) else {
        return;
    };
    if let Err(e) = siwx.record_payment(target, &info.network, payer).await {
        tracing::warn!(error = %e, %target, "the payer could not be recorded for sign-in-with-x");
    }
}
