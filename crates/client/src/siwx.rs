//! Sign-in-with-x for the paying client: when a 402 offers `sign-in-with-x` and this wallet
//! already paid for the resource (the spend ledger says so) — or the route is auth-only (the
//! 402 offers no payment at all) — sign in instead of paying again.
//!
//! [`sign_in`] decides and signs; the transport (the middleware, `tollgate pay`) sends the
//! request again with [`SignIn::header`] instead of a payment header, and pays as usual if the
//! seller still answers 402 (its record of the payment may be gone). Nothing here spends:
//! a sign-in is never recorded in the ledger as a payment.
//!
//! As the official client (`createSIWxPayload`) does, a challenge is signed only when it is
//! bound to the origin that answered: its `domain` is the answering URL's host and its `uri`
//! is on the answering origin — a 402 cannot make the wallet sign in to another site. The
//! chain is the first of the seller's `supportedChains` this wallet can sign for.

use http::{HeaderName, HeaderValue};
use tollgate_core::{PaymentSigner, SiwxFault};
use tollgate_proto::siwx::{SiwxExtension, SIGN_IN_WITH_X};
use tollgate_proto::Network;

use crate::flow::Challenge;
use crate::ledger::{LedgerError, SpendLedger};

/// Why a sign-in was not made (the client then pays as usual).
#[derive(Debug, thiserror::Error)]
pub enum SiwxClientError {
    /// The 402's `sign-in-with-x` extension is malformed.
    #[error("malformed sign-in-with-x offer: {0}")]
    Malformed(String),
    /// The challenge names another site than the one that answered.
    #[error("the sign-in challenge is not bound to {origin}: {why}")]
    NotBound {
        /// The origin that answered.
        origin: String,
        /// What differs.
        why: String,
    },
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The wallet did not sign.
    #[error("the wallet did not sign in: {0}")]
    Sign(#[from] SiwxFault),
}

/// A signed sign-in, to send instead of a payment.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The wallet that signed (its display form).
    pub address: String,
    /// The chain it signed for.
    pub network: Network,
    /// Whether the route is auth-only (no payment was offered).
    pub auth_only: bool,
    value: HeaderValue,
}

impl SignIn {
    /// The `SIGN-IN-WITH-X` header to send with the request again.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        (SIGN_IN_WITH_X, self.value.clone())
    }
}

/// Whether `payer` has a settled payment for `method url` in `ledger` (a refund is not a
/// payment).
pub fn paid_before(
    ledger: &SpendLedger,
    method: &str,
    url: &str,
    payer: &str,
) -> Result<bool, LedgerError> {
    ledger.paid_for(method, url, payer)
}

/// The sign-in to send for `challenge` (the 402 that answered `method url`), or `None` when
/// the client should pay: no sign-in offered, no wallet for its chains, or this wallet never
/// paid for the resource and the route offers payment.
pub async fn try_sign_in(
    wallet: &dyn PaymentSigner,
    ledger: &SpendLedger,
    challenge: &Challenge,
    method: &str,
    url: &str,
) -> Result<Option<SignIn>, SiwxClientError> {
    let Some(extension) = SiwxExtension::from_extensions(challenge.extensions.as_ref()) else {
        return Ok(None);
    };
    let extension = extension.map_err(|e| SiwxClientError::Malformed(e.to_string()))?;
    check_bound(&extension, url)?;
    let Some((chain, signer)) = extension.supported_chains.iter().find_map(|chain| {
        wallet
            .sign_in(&chain.chain_id)
            .filter(|s| s.signature_type() == chain.signature_type && s.supports(&chain.chain_id))
            .map(|s| (chain, s))
    }) else {
        return Ok(None);
    };
    let auth_only = challenge.accepts.is_empty();
    let address = signer.address();
    if !auth_only && !paid_before(ledger, method, url, &address)? {
        return Ok(None);
    }
    let signed = signer
        .sign(extension.unsigned(chain, address.clone()))
        .await?;
    let value = HeaderValue::from_str(&signed.encode())
        .map_err(|e| SiwxClientError::Malformed(e.to_string()))?;
    Ok(Some(SignIn {
        address,
        network: chain.chain_id.clone(),
        auth_only,
        value,
    }))
}

/// [`try_sign_in`], logging why no sign-in was made: `None` means pay as usual.
pub async fn sign_in(
    wallet: &dyn PaymentSigner,
    ledger: &SpendLedger,
    challenge: &Challenge,
    method: &str,
    url: &str,
) -> Option<SignIn> {
    match try_sign_in(wallet, ledger, challenge, method, url).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, %url, "not signing in; paying instead");
            None
        }
    }
}

/// How the seller answered a request sent again signed in ([`send_signed_in`]).
#[derive(Debug)]
pub enum SignedInAnswer {
    /// Not a 402: the answer (served, or an error that is not about payment), carrying the
    /// [`SignIn`] in its extensions.
    Served(reqwest::Response),
    /// A 402 again (the seller refused the sign-in, e.g. it has no record of the payment): its
    /// challenge, to pay as usual.
    Refused(Challenge),
}

/// For the `reqwest-middleware` adapter: sends `request` (the original request again) with
/// the sign-in header through `next`. A 402 answer is read back into a [`Challenge`] — the
/// `PAYMENT-REQUIRED` header, or the v1 JSON body — so the caller pays with the seller's fresh
/// options; any other answer is returned, marked with the [`SignIn`] in its extensions.
pub async fn send_signed_in(
    sign_in: &SignIn,
    mut request: reqwest::Request,
    extensions: &mut http::Extensions,
    next: reqwest_middleware::Next<'_>,
) -> reqwest_middleware::Result<SignedInAnswer> {
    let (name, value) = sign_in.header();
    request.headers_mut().insert(name, value);
    let mut response = next.run(request, extensions).await?;
    if response.status() != http::StatusCode::PAYMENT_REQUIRED {
        response.extensions_mut().insert(sign_in.clone());
        return Ok(SignedInAnswer::Served(response));
    }
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(reqwest_middleware::Error::Reqwest)?;
    let challenge = match tollgate_proto::header::payment_required_from_headers(&headers) {
        Some(found) => found.map(Challenge::from),
        None => tollgate_proto::header::decode_json::<tollgate_proto::AnyPaymentRequired>(&body)
            .map(Challenge::from),
    }
    .map_err(|e| {
        reqwest_middleware::Error::middleware(crate::PaymentError::BadChallenge(e.to_string()))
    })?;
    Ok(SignedInAnswer::Refused(challenge))
}

/// The official `assertSIWxChallengeBoundToOrigin`: `domain` is the answering URL's host and
/// `uri` is on its origin.
fn check_bound(extension: &SiwxExtension, url: &str) -> Result<(), SiwxClientError> {
    let answered =
        reqwest::Url::parse(url).map_err(|e| SiwxClientError::Malformed(e.to_string()))?;
    let origin = answered.origin().ascii_serialization();
    let not_bound = |why: String| SiwxClientError::NotBound {
        origin: origin.clone(),
        why,
    };
    let host = match (answered.host_str(), answered.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(not_bound("the answering URL has no host".into())),
    };
    if extension.info.domain != host {
        return Err(not_bound(format!(
            "domain {:?} is not {host:?}",
            extension.info.domain
        )));
    }
    let uri = reqwest::Url::parse(&extension.info.uri)
        .map_err(|_| not_bound(format!("uri {:?} is not a URL", extension.info.uri)))?;
    if uri.origin() != answered.origin() {
        return Err(not_bound(format!(
            "uri {:?} is on another origin",
            extension.info.uri
        )));
    }
    Ok(())
}
