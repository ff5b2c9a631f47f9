//! The paying middleware for `reqwest-middleware`: an HTTP adapter over the [`PayFlow`].
//!
//! It reads a `402` into a [`Challenge`] (the v2 `PAYMENT-REQUIRED` header, or the v1 JSON
//! body), lets the flow choose, reserve and sign, sends the request again with the payment's
//! header (resent as is, same `payment-identifier`, while the seller answers `402
//! settlement_pending`), reads the answer into a [`SellerAnswer`] (status class and
//! `PAYMENT-RESPONSE` receipt) for the flow to record, and hands the response back with a
//! [`PaymentReceipt`] or a [`PendingPayment`] in its extensions. Every decision about money is
//! the flow's; see [`crate::flow`] for what is `paid`, released or held `pending`.
//!
//! When a `402` offers sign-in-with-x and the spend ledger shows this wallet paid for the
//! resource (or the route is auth-only), the request is sent again signed in
//! ([`crate::siwx`]); only if the seller still answers `402` is it paid.
//!
//! Identity headers ([`X402Middleware::with_identity`]) are added to the paid retry only, and
//! only for a `payTo` they were configured for (see [`crate::identity`]). A `403` to the paid
//! request is a refusal by the seller's identity gate: the middleware returns
//! [`PaymentError::IdentityRefused`] with the failed rules and their remedies.
//!
//! The inner `reqwest::Client` follows redirects on its own, below this middleware, and carries
//! custom headers — the payment and identity headers — along. If a payee may redirect a paid
//! request to another host, build the inner client with a redirect policy that stops at a
//! change of host (or `reqwest::redirect::Policy::none()`).

use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tollgate_proto::{header, AnyPaymentRequired, Network};

use crate::flow::{
    unix_now, AnswerStatus, Challenge, PayFlow, PaymentOutcome, PendingRetries, SellerAnswer,
};
use crate::identity::{
    bounded, IdentityConfigError, IdentityHeaders, IdentityRefusal, MAX_REFUSAL_BODY,
};
use crate::ledger::{Attempt, LedgerError, SpendLedger};
use crate::policy::SpendingPolicy;
use crate::signer::PaymentSigner;

pub use crate::flow::{
    ApproveHook, PaymentError, PaymentReceipt, PendingPayment, ReconcileReport,
    DEFAULT_EXPIRY_GRACE, DEFAULT_MAX_RETRY_WAIT, DEFAULT_PENDING_RETRIES,
};

/// Pays 402 responses: reads the challenge, lets the policy choose and reserve, signs, and
/// retries once with the payment.
///
/// Cheap to clone (shared state): keep a clone to call [`X402Middleware::reconcile`] after
/// handing one to the client builder.
#[derive(Clone, Debug)]
pub struct X402Middleware {
    flow: PayFlow,
    pending_retries: u32,
    max_retry_wait: Duration,
    identity: IdentityHeaders,
}

impl X402Middleware {
    /// A middleware paying with `wallet` — one wallet, or several as
    /// [`Wallets`](crate::Wallets) — under `policy`, recording in `ledger`.
    pub fn new(wallet: impl PaymentSigner, policy: SpendingPolicy, ledger: SpendLedger) -> Self {
        Self::from_flow(PayFlow::new(wallet, policy, ledger))
    }

    /// A middleware over a pay-flow built (and perhaps shared with another transport) by the
    /// caller.
    pub fn from_flow(flow: PayFlow) -> Self {
        Self {
            flow,
            pending_retries: DEFAULT_PENDING_RETRIES,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            identity: IdentityHeaders::new(),
        }
    }

    /// Sends `identity`'s headers on paid requests to the payees each was configured for
    /// (replacing any set before). Never on the first, unpaid request; never to another payee;
    /// nothing by default.
    pub fn with_identity(mut self, identity: IdentityHeaders) -> Self {
        self.identity = identity;
        self
    }

    /// Adds one identity header — `X-Operator-Token` or `X-Wallet-Address`, any other name is
    /// refused — sent with `value` on paid requests whose chosen option's `payTo` is one of
    /// `for_payees`: see [`IdentityHeaders::with`].
    ///
    /// ```
    /// # use tollgate_client::{ExactEvmClient, PrivateKeySigner, SpendLedger, SpendingPolicy, X402Middleware};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (wallet, policy) = (ExactEvmClient::new(PrivateKeySigner::random()), SpendingPolicy::new());
    /// let token = "op_123"; // e.g. from std::env::var("OPERATOR_TOKEN")
    /// let middleware = X402Middleware::new(wallet, policy, SpendLedger::in_memory()?)
    ///     .with_identity_header("X-Operator-Token", token, ["0x209693Bc6afc0C5328bA36FaF03C514EF312287C"])?;
    /// assert!(!format!("{middleware:?}").contains(token));
    /// # Ok(()) }
    /// ```
    pub fn with_identity_header<P: AsRef<str>>(
        mut self,
        name: &str,
        value: &str,
        for_payees: impl IntoIterator<Item = P>,
    ) -> Result<Self, IdentityConfigError> {
        self.identity = std::mem::take(&mut self.identity).with(name, value, for_payees)?;
        Ok(self)
    }

    /// The identity headers configured.
    pub fn identity(&self) -> &IdentityHeaders {
        &self.identity
    }

    /// Asks `hook` before signing each payment.
    pub fn with_approval(mut self, hook: ApproveHook) -> Self {
        self.flow = self.flow.with_approval(hook);
        self
    }

    /// The JSON-RPC endpoint reconciliation asks about authorizations on `network`. Without
    /// one, an ambiguous payment on that network stays reserved until its authorization has
    /// expired by this machine's clock (plus the grace), and is then released unchecked.
    pub fn with_rpc_url(mut self, network: Network, url: impl Into<String>) -> Self {
        self.flow = self.flow.with_rpc_url(network, url);
        self
    }

    /// How long past `validBefore` (by this machine's clock) a held reservation is released
    /// without a chain block proving the expiry; default [`DEFAULT_EXPIRY_GRACE`].
    pub fn with_expiry_grace(mut self, grace: Duration) -> Self {
        self.flow = self.flow.with_expiry_grace(grace);
        self
    }

    /// How many times a payment is resent — the same payment, with the same
    /// `payment-identifier` — when the seller answers `402 settlement_pending` (its transfer is
    /// being mined and it keeps the response for this retry), waiting its `Retry-After` capped
    /// at `max_wait`; default [`DEFAULT_PENDING_RETRIES`] and [`DEFAULT_MAX_RETRY_WAIT`]. `0`
    /// leaves the answer to the caller (the payment then stays reserved as pending).
    pub fn with_pending_retries(mut self, retries: u32, max_wait: Duration) -> Self {
        self.pending_retries = retries;
        self.max_retry_wait = max_wait;
        self
    }

    /// The spend ledger.
    pub fn ledger(&self) -> &SpendLedger {
        self.flow.ledger()
    }

    /// The pay-flow under the middleware.
    pub fn flow(&self) -> &PayFlow {
        &self.flow
    }

    /// Settles held reservations from the chain: see [`PayFlow::reconcile`].
    ///
    /// Runs before every payment; call it yourself to settle the books without paying.
    pub async fn reconcile(&self) -> Result<ReconcileReport, LedgerError> {
        self.flow.reconcile().await
    }
}

impl X402Middleware {
    /// Asks the seller of `request`'s resource to refund `amount` (everything unclaimed when
    /// `None`) of the payment channel this ledger pays it through: the request is sent once
    /// without payment to read the seller's terms (its `402`), then again carrying the signed
    /// refund request, which the seller answers without serving the resource. The refund goes
    /// back under the budgets the deposit counted against. `client` sends both (without this
    /// middleware).
    pub async fn refund(
        &self,
        client: &reqwest::Client,
        request: Request,
        amount: Option<u128>,
    ) -> reqwest_middleware::Result<crate::flow::RefundOutcome> {
        let method = request.method().to_string();
        let url = request.url().to_string();
        let Some(second) = request.try_clone() else {
            return Err(reqwest_middleware::Error::middleware(
                PaymentError::BodyNotReplayable,
            ));
        };
        let first = client.execute(request).await?;
        if first.status() != http::StatusCode::PAYMENT_REQUIRED {
            return Err(reqwest_middleware::Error::middleware(PaymentError::Refund(
                format!(
                    "the seller answered {} instead of its payment terms (402)",
                    first.status()
                ),
            )));
        }
        let headers = first.headers().clone();
        let body = first.bytes().await?;
        let challenge =
            read_challenge(&headers, &body).map_err(reqwest_middleware::Error::middleware)?;
        let mut refund = self
            .flow
            .refund(challenge, amount)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        // Sent once more, after a resync, when the seller's state of the channel differs from
        // ours (a response lost, another process paid on it).
        let mut resynced = false;
        let answer = loop {
            let Some(mut this_try) = second.try_clone() else {
                return Err(reqwest_middleware::Error::middleware(
                    PaymentError::BodyNotReplayable,
                ));
            };
            let (name, value) = refund.header();
            let value = http::HeaderValue::from_str(value).map_err(|e| {
                reqwest_middleware::Error::middleware(PaymentError::BadChallenge(e.to_string()))
            })?;
            this_try.headers_mut().insert(name, value);
            let response = client.execute(this_try).await?;
            let (response, status, body) = buffer_answer(response).await?;
            let body = body.unwrap_or_default();
            let answer = read_answer(status, response.headers(), &body);
            if !resynced && self.flow.refund_out_of_sync(&refund, &answer) {
                let corrective = read_challenge(response.headers(), &body)
                    .map_err(reqwest_middleware::Error::middleware)?;
                self.flow
                    .resync_refund(&mut refund, &corrective, amount)
                    .await
                    .map_err(reqwest_middleware::Error::middleware)?;
                resynced = true;
                continue;
            }
            break answer;
        };
        self.flow
            .record_refund(
                &refund,
                &answer,
                &Attempt {
                    method: &method,
                    url: &url,
                },
            )
            .map_err(reqwest_middleware::Error::middleware)
    }
}

/// The 402 challenge in `headers` (v2) or `body` (v1, or v2 from a seller that puts it there).
fn read_challenge(headers: &http::HeaderMap, body: &[u8]) -> Result<Challenge, PaymentError> {
    if let Some(found) = header::payment_required_from_headers(headers) {
        return Ok(found
            .map_err(|e| PaymentError::BadChallenge(e.to_string()))?
            .into());
    }
    header::decode_json::<AnyPaymentRequired>(body)
        .map(Challenge::from)
        .map_err(|e| PaymentError::BadChallenge(e.to_string()))
}

/// The answer to a payment as the flow reads it: status class, the `402`'s reason, receipt.
fn read_answer(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> SellerAnswer {
    let status = if status.is_success() {
        AnswerStatus::Served
    } else if status == http::StatusCode::PAYMENT_REQUIRED {
        AnswerStatus::PaymentRequired {
            error: read_challenge(headers, body).ok().and_then(|c| c.error),
        }
    } else if let Some(refusal) =
        (status == http::StatusCode::FORBIDDEN).then(|| IdentityRefusal::from_body(body))
    {
        match refusal {
            Some(r) => AnswerStatus::IdentityRefused(r),
            None => AnswerStatus::Other(status.to_string()),
        }
    } else {
        AnswerStatus::Other(status.to_string())
    };
    SellerAnswer {
        status,
        receipt: header::settle_response_from_headers(headers)
            .map(|r| r.map_err(|e| e.to_string())),
    }
}

/// A `402` with the v1 challenge only in its body, or a `403` (a gate's refusal, read up to
/// [`MAX_REFUSAL_BODY`] bytes): the body read (the rebuilt response has no URL, a small price
/// for learning the seller's reason). Anything else is passed through.
async fn buffer_answer(
    mut response: Response,
) -> Result<(Response, http::StatusCode, Option<bytes::Bytes>), reqwest::Error> {
    let status = response.status();
    let v1_challenge = status == http::StatusCode::PAYMENT_REQUIRED
        && header::payment_required_from_headers(response.headers()).is_none();
    if !v1_challenge && status != http::StatusCode::FORBIDDEN {
        return Ok((response, status, None));
    }
    let (version, headers) = (response.version(), response.headers().clone());
    let body = if v1_challenge {
        response.bytes().await?
    } else {
        let mut read = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_REFUSAL_BODY - read.len();
            read.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if read.len() >= MAX_REFUSAL_BODY {
                break;
            }
        }
        bytes::Bytes::from(read)
    };
    let mut rebuilt = http::Response::new(body.clone());
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok((Response::from(rebuilt), status, Some(body)))
}

/// The `Retry-After` delay in seconds (the HTTP-date form is not used by x402 sellers and
/// counts as absent); one second when absent.
fn retry_after(headers: &http::HeaderMap) -> Duration {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1))
}

/// The error for a `403` to a paid request: the gate's rules when its body said them, else the
/// body's text (bounded); whether the amount was released is the flow's `outcome`.
fn forbidden(
    answer: SellerAnswer,
    outcome: &PaymentOutcome,
    body: Option<bytes::Bytes>,
) -> PaymentError {
    let held = !matches!(outcome, PaymentOutcome::Refused { .. });
    match answer.status {
        AnswerStatus::IdentityRefused(r) => PaymentError::IdentityRefused {
            payer: r.payer,
            checks: r.checks,
            detail: None,
            held,
        },
        _ => {
            let text = body
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let text = text.trim();
            PaymentError::IdentityRefused {
                payer: None,
                checks: Vec::new(),
                detail: Some(if text.is_empty() {
                    "no reason given".into()
                } else {
                    bounded(text)
                }),
                held,
            }
        }
    }
}

#[async_trait::async_trait]
impl Middleware for X402Middleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let retry = req.try_clone();
        let method = req.method().to_string();
        let url = req.url().to_string();
        let response = next.clone().run(req, extensions).await?;
        if response.status().as_u16() != 402 {
            return Ok(response);
        }
        let Some(mut retry) = retry else {
            return Err(reqwest_middleware::Error::middleware(
                PaymentError::BodyNotReplayable,
            ));
        };
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(reqwest_middleware::Error::Reqwest)?;
        let attempt = Attempt {
            method: &method,
            url: &url,
        };
        let mut challenge =
            read_challenge(&headers, &body).map_err(reqwest_middleware::Error::middleware)?;
        // A wallet that already paid for this resource (or any wallet, on an auth-only route)
        // signs in when the seller offers sign-in-with-x, instead of paying again; a seller
        // that still answers 402 is paid as usual, from its fresh challenge.
        if let Some(sign_in) = crate::siwx::sign_in(
            self.flow.wallet().as_ref(),
            self.flow.ledger(),
            &challenge,
            &method,
            &url,
        )
        .await
        {
            let Some(again) = retry.try_clone() else {
                return Err(reqwest_middleware::Error::middleware(
                    PaymentError::BodyNotReplayable,
                ));
            };
            tracing::info!(%url, wallet = %sign_in.address, "signing in instead of paying");
            match crate::siwx::send_signed_in(&sign_in, again, extensions, next.clone()).await? {
                crate::siwx::SignedInAnswer::Served(response) => return Ok(response),
                crate::siwx::SignedInAnswer::Refused(fresh) => challenge = fresh,
            }
        }
        // A channel payment the seller refuses because its state of the channel differs from
        // ours is resynchronised from its proof and paid once more; nothing else is repeated.
        let mut resynced = false;
        loop {
            let payment = self
                .flow
                .pay(challenge.clone(), &attempt)
                .await
                .map_err(reqwest_middleware::Error::middleware)?;
            let (name, value) = payment.header();
            let value = match http::HeaderValue::from_str(value) {
                Ok(v) => v,
                Err(e) => {
                    // Never sent: nothing can move. (The flow only hands out encodable values.)
                    let _ = self
                        .flow
                        .record_not_sent(&payment, "payment header not encodable");
                    return Err(reqwest_middleware::Error::middleware(
                        PaymentError::BadChallenge(e.to_string()),
                    ));
                }
            };
            retry.headers_mut().insert(name, value);
            // Identity goes with the payment, to the payee that was listed for it, and nowhere
            // else: the first request went without it.
            for (name, value) in self.identity.for_payee(&payment.requirements().pay_to) {
                retry.headers_mut().insert(name.clone(), value.clone());
            }
            let mut resends = PendingRetries::new(self.pending_retries, self.max_retry_wait);
            let mut sent = false;
            let (mut paid, answer, body) = loop {
                // The same request, the same payment header, the same payment-identifier: a retry
                // of this attempt, never a second payment.
                let Some(this_try) = retry.try_clone() else {
                    // Unreachable in practice: the body was cloneable once, so it is buffered.
                    let reason = "the request could not be sent again";
                    let _ = if sent {
                        self.flow.record_no_answer(&payment, reason)
                    } else {
                        self.flow.record_not_sent(&payment, reason)
                    };
                    return Err(reqwest_middleware::Error::middleware(
                        PaymentError::BodyNotReplayable,
                    ));
                };
                sent = true;
                let response = match next.clone().run(this_try, extensions).await {
                    Ok(r) => r,
                    Err(e) => {
                        // The payment may have reached the seller before the connection failed.
                        let _ = self
                            .flow
                            .record_no_answer(&payment, &format!("no answer to the payment: {e}"));
                        return Err(e);
                    }
                };
                let (response, status, body) = match buffer_answer(response).await {
                    Ok(read) => read,
                    Err(e) => {
                        let _ = self.flow.record_no_answer(
                            &payment,
                            &format!("the answer to the payment broke off: {e}"),
                        );
                        return Err(reqwest_middleware::Error::Reqwest(e));
                    }
                };
                let answer = read_answer(
                    status,
                    response.headers(),
                    body.as_deref().unwrap_or_default(),
                );
                let wait = retry_after(response.headers());
                if let Some(wait) = resends.next(&payment, &answer, wait, unix_now()) {
                    tracing::info!(%url, wait_s = wait.as_secs(), "settlement pending: retrying the same payment");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                break (response, answer, body);
            };
            let outcome = self
                .flow
                .record(&payment, &answer)
                .map_err(reqwest_middleware::Error::middleware)?;
            if !resynced && self.flow.out_of_sync(&payment, &outcome) {
                let corrective =
                    read_challenge(paid.headers(), body.as_deref().unwrap_or_default())
                        .map_err(reqwest_middleware::Error::middleware)?;
                self.flow
                    .resync(&payment, &corrective)
                    .map_err(reqwest_middleware::Error::middleware)?;
                resynced = true;
                drop(payment);
                continue;
            }
            if paid.status() == http::StatusCode::FORBIDDEN {
                return Err(reqwest_middleware::Error::middleware(forbidden(
                    answer, &outcome, body,
                )));
            }
            match outcome {
                PaymentOutcome::Paid(receipt) => {
                    paid.extensions_mut().insert(receipt);
                }
                PaymentOutcome::Refused { .. } => {}
                PaymentOutcome::Pending(pending) => {
                    paid.extensions_mut().insert(pending);
                }
            }
            return Ok(paid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 `402` whose body carries `error`.
    fn v1(error: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"x402Version": 1, "error": error, "accepts": []}))
            .unwrap()
    }

    #[test]
    fn answers_are_read_into_status_classes() {
        let empty = http::HeaderMap::new();
        let read = |code: u16, body: &[u8]| {
            read_answer(http::StatusCode::from_u16(code).unwrap(), &empty, body).status
        };
        assert_eq!(read(200, b""), AnswerStatus::Served);
        assert_eq!(read(204, b""), AnswerStatus::Served);
        assert_eq!(
            read(503, b""),
            AnswerStatus::Other("503 Service Unavailable".into())
        );
        assert_eq!(
            read(402, &v1("settlement_pending: tx 0xab")),
            AnswerStatus::PaymentRequired {
                error: Some("settlement_pending: tx 0xab".into())
            }
        );
        // An unreadable 402 has no reason (and stays ambiguous).
        assert_eq!(
            read(402, b"not json"),
            AnswerStatus::PaymentRequired { error: None }
        );
        assert!(read_answer(http::StatusCode::OK, &empty, b"")
            .receipt
            .is_none());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::PAYMENT_RESPONSE,
            http::HeaderValue::from_static("%%%"),
        );
        assert!(matches!(
            read_answer(http::StatusCode::OK, &headers, b"").receipt,
            Some(Err(_))
        ));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), Duration::from_secs(1));
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(" 7 "),
        );
        assert_eq!(retry_after(&headers), Duration::from_secs(7));
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Duration::from_secs(1));
    }
}
