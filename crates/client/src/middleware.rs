//! The paying middleware for `reqwest-middleware`.

use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::{
    header, AnyPaymentRequired, PaymentRequirements, ResourceInfo, SettleResponse, X402Version,
};

use crate::ledger::{Attempt, SpendLedger};
use crate::policy::{Priced, Refusal, SpendingPolicy};
use crate::signer::PaymentSigner;

/// A settled payment, attached to the response's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// Protocol version used.
    pub version: X402Version,
    /// The settlement as the server reported it (transaction, network, payer).
    pub settlement: SettleResponse,
    /// What was paid.
    pub requirements: PaymentRequirements,
    /// The ledger row.
    pub ledger_id: i64,
}

/// Why a request could not be paid for. Returned inside `reqwest_middleware::Error::Middleware`;
/// downcast with `err.downcast_ref::<PaymentError>()`.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The spending policy refused.
    #[error("payment refused by policy: {0}")]
    Refused(#[from] Refusal),
    /// The 402 could not be understood.
    #[error("unreadable 402 challenge: {0}")]
    BadChallenge(String),
    /// The request body is a stream and cannot be sent a second time with the payment.
    #[error("the request body cannot be replayed with a payment (use a buffered body)")]
    BodyNotReplayable,
    /// Signing failed.
    #[error(transparent)]
    Signer(#[from] crate::signer::SignerError),
    /// The ledger failed; nothing was signed.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Pays 402 responses: reads the challenge, lets the policy choose and reserve, signs, and
/// retries once with the payment.
pub struct X402Middleware<W> {
    wallet: Arc<W>,
    policy: Arc<SpendingPolicy>,
    ledger: SpendLedger,
    approve: Option<ApproveHook>,
}

/// Asked before each payment is signed, after the policy accepted it; `false` declines (for
/// interactive confirmation). Runs on a blocking thread, so it may read a terminal.
pub type ApproveHook = Arc<dyn Fn(&Priced) -> bool + Send + Sync>;

impl<W> std::fmt::Debug for X402Middleware<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Middleware")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<W: PaymentSigner> X402Middleware<W> {
    /// A middleware paying with `wallet` under `policy`, recording in `ledger`.
    pub fn new(wallet: W, policy: SpendingPolicy, ledger: SpendLedger) -> Self {
        Self {
            wallet: Arc::new(wallet),
            policy: Arc::new(policy),
            ledger,
            approve: None,
        }
    }

    /// Asks `hook` before signing each payment.
    pub fn with_approval(mut self, hook: ApproveHook) -> Self {
        self.approve = Some(hook);
        self
    }
}

/// The requirements of a 402, as v2 types, and the version to answer in.
fn read_challenge(
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(X402Version, Vec<PaymentRequirements>, Option<ResourceInfo>), PaymentError> {
    if let Some(v2) = header::payment_required_from_headers(headers) {
        let v2 = v2.map_err(|e| PaymentError::BadChallenge(e.to_string()))?;
        return Ok((X402Version::V2, v2.accepts, Some(v2.resource)));
    }
    match header::decode_json::<AnyPaymentRequired>(body)
        .map_err(|e| PaymentError::BadChallenge(e.to_string()))?
    {
        AnyPaymentRequired::V2(v2) => Ok((X402Version::V2, v2.accepts, Some(v2.resource))),
        AnyPaymentRequired::V1(v1) => {
            let mut resource = None;
            let accepts = v1
                .accepts
                .iter()
                .map(|r| {
                    let (req, res) = r.to_v2();
                    resource.get_or_insert(res);
                    req
                })
                .collect();
            Ok((X402Version::V1, accepts, resource))
        }
    }
}

#[async_trait::async_trait]
impl<W: PaymentSigner> Middleware for X402Middleware<W> {
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
        let pay = || async {
            let (version, accepts, resource) = read_challenge(&headers, &body)?;
            let attempt = Attempt {
                method: &method,
                url: &url,
            };
            let payable: Vec<_> = accepts
                .into_iter()
                .filter(|r| self.wallet.supports(r))
                .collect();
            if payable.is_empty() {
                let refusal = Refusal::Unsupported(url.clone());
                self.ledger.record_refusal(&attempt, &refusal)?;
                return Err(PaymentError::Refused(refusal));
            }
            let ranked = match self.policy.rank(payable) {
                Ok(r) => r,
                Err(refusal) => {
                    self.ledger.record_refusal(&attempt, &refusal)?;
                    return Err(PaymentError::Refused(refusal));
                }
            };
            let Some(chosen) = ranked.into_iter().next() else {
                return Err(PaymentError::Refused(Refusal::Unsupported(url.clone())));
            };
            if let Some(hook) = &self.approve {
                let (hook, c) = (hook.clone(), chosen.clone());
                let approved = tokio::task::spawn_blocking(move || hook(&c))
                    .await
                    .unwrap_or(false);
                if !approved {
                    let refusal = Refusal::Declined;
                    self.ledger.record_refusal(&attempt, &refusal)?;
                    return Err(PaymentError::Refused(refusal));
                }
            }
            let ledger = self.ledger.clone();
            let policy = self.policy.clone();
            let (m, u, c) = (method.clone(), url.clone(), chosen.clone());
            let reservation = tokio::task::spawn_blocking(move || {
                ledger.reserve(
                    &policy,
                    &c,
                    &Attempt {
                        method: &m,
                        url: &u,
                    },
                )
            })
            .await
            .map_err(|e| PaymentError::BadChallenge(format!("ledger task failed: {e}")))??;
            let id = reservation?;
            tracing::info!(%url, network = %chosen.requirements.network,
                amount = %chosen.requirements.amount, "paying");
            let payment = match self.wallet.sign(&chosen.requirements, resource).await {
                Ok(p) => p,
                Err(e) => {
                    self.ledger.release(id, &e.to_string())?;
                    return Err(e.into());
                }
            };
            let (name, value) = match version {
                X402Version::V2 => (header::PAYMENT_SIGNATURE, header::encode(&payment)),
                X402Version::V1 => (
                    header::X_PAYMENT,
                    header::encode(&PaymentPayloadV1::from_v2(&payment)),
                ),
            };
            Ok::<_, PaymentError>((id, version, chosen.requirements, name, value))
        };
        let (id, version, requirements, name, value) =
            pay().await.map_err(reqwest_middleware::Error::middleware)?;
        let value = http::HeaderValue::from_str(&value).map_err(|e| {
            reqwest_middleware::Error::middleware(PaymentError::BadChallenge(e.to_string()))
        })?;
        retry.headers_mut().insert(name, value);
        let mut paid = match next.run(retry, extensions).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.ledger.release(id, &format!("retry failed: {e}"));
                return Err(e);
            }
        };
        let settlement = header::settle_response_from_headers(paid.headers()).and_then(Result::ok);
        match settlement {
            Some(s) if s.success && paid.status().is_success() => {
                self.ledger
                    .mark_paid(id, &s.transaction)
                    .map_err(reqwest_middleware::Error::middleware)?;
                paid.extensions_mut().insert(PaymentReceipt {
                    version,
                    settlement: s,
                    requirements,
                    ledger_id: id,
                });
            }
            other => {
                let reason = match other {
                    Some(s) => format!(
                        "settlement failed: {}",
                        s.error_reason.map(|r| r.to_string()).unwrap_or_default()
                    ),
                    None => format!("server answered {} without a receipt", paid.status()),
                };
                self.ledger
                    .release(id, &reason)
                    .map_err(reqwest_middleware::Error::middleware)?;
            }
        }
        Ok(paid)
    }
}
