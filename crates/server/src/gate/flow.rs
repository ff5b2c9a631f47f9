//! The gate's flow: match, claim, verify, settle, keep.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate_proto::v1::PaymentRequirementsV1;
use tollgate_proto::{
    AnyPaymentPayload, ErrorReason, FacilitatorRequest, IdempotencyKey, PaymentRequirements,
    SettleResponse, VerifyResponse,
};

use tollgate_core::server::PaymentOperation;

use super::identity::Verdict;
use super::{
    canonical, Admission, Challenge, Delivery, Gate, Meter, Offer, Paid, PaymentInfo, PendingEntry,
    Presented, Receipt, Settlement, SettlementMode, Unavailable, NO_PAYMENT,
};
use crate::facilitator::FacilitatorError;
use crate::FacilitatorClient;

/// A payment's claim in this process; released when dropped, however the request — or the
/// settlement it handed to a task of its own — ends.
pub(crate) struct Claim {
    claims: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// A verified attempt not settled yet: unless [`disarm`](Self::disarm)ed — its settlement
/// begun — it tells the facilitator that the attempt will not settle
/// ([`Facilitator::abandon`](tollgate_core::Facilitator::abandon)), awaited by
/// [`now`](Self::now) on the paths that end it deliberately and in a task of its own when it is
/// dropped (the buyer hung up, the handler's future was dropped), so whatever the facilitator
/// holds for the attempt (a payment channel) is let go at once rather than when a lease ends.
pub(crate) struct Unsettled(
    Option<Box<dyn FnOnce() -> tollgate_core::BoxFuture<'static, ()> + Send + Sync>>,
);

impl Unsettled {
    fn new<F: FacilitatorClient, D: Delivery>(
        gate: &Gate<F, D>,
        request: &Arc<FacilitatorRequest>,
        attempt: &IdempotencyKey,
    ) -> Self {
        let (gate, request, attempt) = (gate.clone(), request.clone(), attempt.clone());
        Self(Some(Box::new(move || {
            Box::pin(async move {
                gate.inner
                    .facilitator
                    .abandon(&request, Some(&attempt))
                    .await
            })
        })))
    }

    /// The attempt is being settled: the facilitator's settlement decides what it holds.
    fn disarm(mut self) {
        self.0 = None;
    }

    /// Tells the facilitator now, and waits for it (so the buyer's retry finds nothing held).
    async fn now(mut self) {
        if let Some(abandon) = self.0.take() {
            abandon().await;
        }
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        let Some(abandon) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(abandon());
            }
            Err(_) => tracing::warn!(
                "a verified payment was dropped outside a runtime; what the facilitator holds for it lapses with its lease"
            ),
        }
    }
}

/// How a settlement ended, as far as this exchange can tell.
enum Settled {
    /// Settled: deliver with this receipt.
    Yes(SettleResponse),
    /// Refused for good (the payment is at fault, used, or not this attempt's): answer 402
    /// with the reason.
    No(String),
    /// Not known yet: sent but unconfirmed, or no answer after the retries. The transfer may
    /// still land, so this is never treated as "not paid": the outcome is asked again, with
    /// the same attempt key, when the buyer retries.
    Unknown(String),
}

/// A payment verified for this exchange and claimed in this process: settle it with
/// [`settle`](Self::settle) (before the handler) or [`settle_delivery`](Self::settle_delivery)
/// (after it), or drop it — [`handler_failed`](Self::handler_failed) — to settle nothing.
pub struct VerifiedPayment<F, D: Delivery> {
    /// Boxed: the handle travels in [`Admission`], whose other variants are small.
    state: Box<State<F, D>>,
}

struct State<F, D: Delivery> {
    gate: Gate<F, D>,
    claim: Claim,
    offer: Offer,
    attempt: IdempotencyKey,
    request: Arc<FacilitatorRequest>,
    info: PaymentInfo,
    max_timeout: Duration,
    deadline: Instant,
    /// For a payment in a metered scheme settled after the handler: the charge the handler
    /// records, settled in place of the maximum.
    meter: Option<Meter>,
    /// Tells the facilitator if the attempt ends without settling.
    unsettled: Unsettled,
}

impl<F, D: Delivery> std::fmt::Debug for VerifiedPayment<F, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedPayment")
            .field("target", &self.state.offer.target)
            .field("info", &self.state.info)
            .finish_non_exhaustive()
    }
}

impl<F: FacilitatorClient, D: Delivery> Gate<F, D> {
    /// Decides what a request that `presented` a payment for `offer` gets: a challenge, a
    /// refusal, a delivery kept from an earlier exchange, or a verified payment to settle.
    pub async fn admit(&self, offer: Offer, presented: Presented) -> Admission<F, D> {
        self.admit_as(offer, presented, None).await
    }

    /// [`admit`](Self::admit) with the operator credential the request carried
    /// (`X-Operator-Token`), passed to the identity provider — never logged, never used to
    /// choose whose identity is checked (that is always the verified payer).
    pub async fn admit_as(
        &self,
        offer: Offer,
        presented: Presented,
        operator_token: Option<&str>,
    ) -> Admission<F, D> {
        let payment = match self.read(&offer, presented) {
            Ok(payment) => payment,
            Err(challenge) => return Admission::Challenge(*challenge),
        };
        let (request, chosen, key) = match self.choose(&offer, payment) {
            Ok(chosen) => chosen,
            Err(challenge) => return Admission::Challenge(*challenge),
        };
        let claim = match self.claim(&offer, key) {
            Ok(claim) => claim,
            Err(challenge) => return Admission::Challenge(*challenge),
        };
        // A payment whose settlement outlived an earlier exchange: settle again with that
        // exchange's attempt key and deliver what it produced; never run the handler again.
        if let Some(entry) = self.inner.pending.get(&claim.key) {
            return self.resume(offer, claim, entry).await;
        }
        self.verify(offer, claim, request, chosen, operator_token)
            .await
    }

    /// A challenge as the error of a step of [`admit`](Self::admit) (boxed: it is large).
    fn refuse(&self, offer: &Offer, error: impl Into<String>) -> Box<Challenge> {
        Box::new(self.challenge(offer, error))
    }

    /// A `settlement_pending` challenge as the error of a step.
    fn refuse_pending(&self, offer: &Offer, detail: &str) -> Box<Challenge> {
        Box::new(self.pending_challenge(offer, detail))
    }

    /// The payment presented, if there is one and it meets the extensions the seller requires.
    fn read(
        &self,
        offer: &Offer,
        presented: Presented,
    ) -> Result<AnyPaymentPayload, Box<Challenge>> {
        let payment = match presented {
            Presented::Nothing => return Err(self.refuse(offer, NO_PAYMENT)),
            Presented::Unreadable(e) => {
                return Err(self.refuse(offer, format!("invalid payment header: {e}")))
            }
            Presented::Payment(p) => p,
        };
        if let Some(key) = self.echo_mismatch(offer, &payment) {
            return Err(self.refuse(
                offer,
                format!(
                    "{}: the payment's `{key}` extension is not the one this resource offered",
                    ErrorReason::ExtensionEchoMismatch
                ),
            ));
        }
        if self.inner.payment_identifier == Some(true) {
            // Required: a payment without a well-formed id could not be told apart from its
            // own retry, which is what the seller asked the extension for. (v1 payments carry
            // no extensions, so they cannot comply.)
            let extensions = match &payment {
                AnyPaymentPayload::V2(p) => p.extensions.as_ref(),
                AnyPaymentPayload::V1(_) => None,
            };
            if !matches!(
                tollgate_proto::PaymentIdentifier::from_extensions(extensions),
                Ok(Some(_))
            ) {
                return Err(self.refuse(
                    offer,
                    format!(
                        "{}: this resource requires the payment-identifier extension with a valid id",
                        ErrorReason::InvalidPaymentIdentifier
                    ),
                ));
            }
        }
        Ok(payment)
    }

    /// The first extension the payment must echo verbatim and does not: for the keys of
    /// [`ECHOED_VERBATIM`], a payment carrying one must carry exactly the value this
    /// resource offered (compared as JSON values, so key order and spacing do not matter) and
    /// may not carry one the resource did not offer. The facilitator acts on these echoes
    /// after settlement — it catalogues a paid resource from its `bazaar` description — so a
    /// buyer who could edit them (or add one to an undescribed route) would rewrite the
    /// seller's catalogue entry with one payment. A payment that leaves them out is fine: it
    /// is merely not catalogued. (The official SDK accepts an echo that adds fields to the
    /// offered `info`; this gate accepts only the offer itself, which its clients — and the
    /// official client, which copies the offer — send.)
    fn echo_mismatch(&self, offer: &Offer, payment: &AnyPaymentPayload) -> Option<&'static str> {
        let AnyPaymentPayload::V2(payment) = payment else {
            return None;
        };
        let echoed = payment.extensions.as_ref()?;
        let offered = self.offered_extensions(offer).unwrap_or_default();
        ECHOED_VERBATIM
            .iter()
            .copied()
            .find(|key| match echoed.get(*key) {
                None => false,
                Some(value) => offered.get(*key) != Some(value),
            })
    }

    /// The requirement the payment answers, the facilitator request for it, and the payment's
    /// canonical key.
    fn choose(
        &self,
        offer: &Offer,
        payment: AnyPaymentPayload,
    ) -> Result<(FacilitatorRequest, PaymentRequirements, String), Box<Challenge>> {
        match payment {
            AnyPaymentPayload::V2(p) => {
                let Some(chosen) = offer.accepts.iter().find(|r| **r == p.accepted).cloned() else {
                    return Err(self.refuse(
                        offer,
                        "the payment's `accepted` matches none of this resource's requirements",
                    ));
                };
                let key = canonical::payment_key(&chosen.scheme, &chosen.network, &p.payload);
                let request = FacilitatorRequest::V2 {
                    payment_payload: *p,
                    payment_requirements: chosen.clone(),
                };
                Ok((request, chosen, key))
            }
            AnyPaymentPayload::V1(p) => {
                let Some(chosen) = offer
                    .accepts
                    .iter()
                    .find(|r| r.scheme == p.scheme && r.network == p.network.0)
                    .cloned()
                else {
                    return Err(self.refuse(
                        offer,
                        format!(
                            "no {} payment on {} is accepted for this resource",
                            p.scheme, p.network.0
                        ),
                    ));
                };
                let key = canonical::payment_key(&chosen.scheme, &chosen.network, &p.payload);
                let request = FacilitatorRequest::V1 {
                    payment_requirements: PaymentRequirementsV1::from_v2(&chosen, &offer.resource),
                    payment_payload: p,
                };
                Ok((request, chosen, key))
            }
        }
    }

    /// Claims the payment for this exchange, or says why another exchange holds it.
    fn claim(&self, offer: &Offer, key: String) -> Result<Claim, Box<Challenge>> {
        let inner = &self.inner;
        let mut claims = inner.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.insert(key.clone()) {
            return Ok(Claim {
                claims: inner.claims.clone(),
                key,
            });
        }
        drop(claims);
        if inner.pending.contains(&key) {
            return Err(self.refuse_pending(
                offer,
                "the settlement of this payment is being checked by another request",
            ));
        }
        Err(self.refuse(
            offer,
            format!(
                "{}: this payment is already being used by another request",
                ErrorReason::PaymentInUse
            ),
        ))
    }

    /// Settles a kept payment again under its own attempt key, for the buyer's retry.
    async fn resume(
        &self,
        offer: Offer,
        claim: Claim,
        entry: PendingEntry<D::Kept>,
    ) -> Admission<F, D> {
        let pending = &self.inner.pending;
        if entry.target != offer.target {
            return Admission::Challenge(self.challenge(
                &offer,
                format!(
                    "{}: this payment was made for `{}` and awaits settlement there; retry that request",
                    ErrorReason::PaymentInUse,
                    entry.target
                ),
            ));
        }
        let deadline = Instant::now() + entry.max_timeout;
        match self
            .settle_with_retries(&entry.request, &entry.attempt, deadline)
            .await
        {
            Settled::Yes(settlement) => {
                pending.remove(&claim.key);
                let receipt = Receipt {
                    version: entry.request.version(),
                    settlement,
                };
                let mut info = entry.info;
                match entry.response {
                    Some(kept) => Admission::Deliver(Paid {
                        delivery: D::restore(kept),
                        receipt,
                        info,
                        _claim: claim,
                    }),
                    None => {
                        // Settled before the handler: it runs now, once.
                        info.transaction = Some(receipt.settlement.transaction.clone());
                        Admission::RunPaid(Paid {
                            delivery: (),
                            receipt,
                            info,
                            _claim: claim,
                        })
                    }
                }
            }
            Settled::No(reason) => {
                pending.remove(&claim.key);
                Admission::Challenge(self.challenge(&offer, reason))
            }
            Settled::Unknown(detail) => {
                Admission::Challenge(self.pending_challenge(&offer, &detail))
            }
        }
    }

    /// Verifies the payment under a fresh attempt key.
    async fn verify(
        &self,
        offer: Offer,
        claim: Claim,
        request: FacilitatorRequest,
        chosen: PaymentRequirements,
        operator_token: Option<&str>,
    ) -> Admission<F, D> {
        // This exchange's name with the facilitator, reused for its own retries.
        let attempt = IdempotencyKey::from_random_bytes(rand::random());
        let max_timeout = Duration::from_secs(chosen.max_timeout_seconds.max(1));
        let deadline = Instant::now() + max_timeout;
        let verified = match self.verify_with_retries(&request, &attempt, deadline).await {
            Ok(v) if v.is_valid => v,
            Ok(v) => {
                let reason = v.invalid_reason.map(|r| r.to_string()).unwrap_or_default();
                let detail = v.invalid_message.unwrap_or_default();
                let mut challenge =
                    self.challenge(&offer, format!("payment rejected: {reason}: {detail}"));
                // A refusal that says how to pay instead (a `batch-settlement` corrective 402:
                // the seller's channel state and last voucher) completes the requirement the
                // payment answered, so the buyer can resynchronise and retry.
                if let Some(extra) = v.extra {
                    if let Some(r) = challenge
                        .required
                        .accepts
                        .iter_mut()
                        .find(|r| **r == chosen)
                    {
                        r.extra.get_or_insert_with(Default::default).extend(extra);
                    }
                }
                return Admission::Challenge(challenge);
            }
            Err(e) => return Admission::Unavailable(Unavailable::Facilitator(e.to_string())),
        };
        // Shared from here by the exchange, its abandonment and its settlement task.
        let request = Arc::new(request);
        // From here until its settlement begins, an attempt that ends — refused by the identity
        // policy, its handler failed, its request dropped — is abandoned with the facilitator.
        let unsettled = Unsettled::new(self, &request, &attempt);
        let info = PaymentInfo {
            version: request.version(),
            scheme: chosen.scheme,
            network: chosen.network,
            asset: chosen.asset,
            amount: chosen.amount,
            payer: verified.payer,
            transaction: None,
        };
        // Whom the seller serves, decided on the payer the facilitator verified, before the
        // handler and before anything is settled. On refusal or outage the claim is dropped
        // and nothing is settled: the facilitator's verification lapses, as when a handler
        // fails.
        if self.inner.identity.is_on() {
            let verdict = self
                .inner
                .identity
                .check(
                    info.payer.as_deref(),
                    &info.network,
                    operator_token,
                    &offer.target,
                )
                .await;
            match verdict {
                Verdict::Pass => {}
                Verdict::Refuse(refusal) => {
                    unsettled.now().await;
                    return Admission::Refused(refusal);
                }
                Verdict::Unavailable(detail) => {
                    unsettled.now().await;
                    return Admission::Unavailable(Unavailable::Identity(detail));
                }
            }
        }
        // A payment operation (a refund) is settled now and answered; the handler never runs.
        if let FacilitatorRequest::V2 {
            payment_payload, ..
        } = &*request
        {
            let operation = self
                .inner
                .schemes
                .get(&info.scheme, &info.network)
                .and_then(|s| s.operation(payment_payload));
            if let Some(operation) = operation {
                unsettled.disarm();
                return self
                    .operate(offer, claim, request, attempt, info, deadline, operation)
                    .await;
            }
        }
        // Metered only where the scheme says the settle-time amount is the charge, only in v2
        // (whose requirements carry `amount`), and only when settlement follows the handler:
        // settled first, the charge cannot be known, and the maximum is charged.
        let metered = matches!(*request, FacilitatorRequest::V2 { .. })
            && self.inner.mode == SettlementMode::AfterHandler
            && self
                .inner
                .schemes
                .get(&info.scheme, &info.network)
                .is_some_and(|s| s.metered());
        let meter = metered.then(|| Meter::new(info.amount));
        Admission::Verified(VerifiedPayment {
            state: Box::new(State {
                gate: self.clone(),
                claim,
                offer,
                attempt,
                request,
                info,
                max_timeout,
                deadline,
                meter,
                unsettled,
            }),
        })
    }

    /// Settles a verified payment operation under this exchange's attempt key, in a task of
    /// its own (a buyer who hangs up does not abandon it half-way), and answers its body with
    /// the receipt.
    #[allow(clippy::too_many_arguments)]
    async fn operate(
        &self,
        offer: Offer,
        claim: Claim,
        request: Arc<FacilitatorRequest>,
        attempt: IdempotencyKey,
        mut info: PaymentInfo,
        deadline: Instant,
        operation: PaymentOperation,
    ) -> Admission<F, D> {
        let gate = self.clone();
        let version = request.version();
        let settled = tokio::spawn(tracing::Instrument::in_current_span(async move {
            gate.settle_with_retries(&request, &attempt, deadline).await
        }))
        .await;
        match settled {
            Ok(Settled::Yes(settlement)) => {
                tracing::info!(kind = operation.kind, transaction = %settlement.transaction, "payment operation settled");
                info.transaction = Some(settlement.transaction.clone());
                Admission::Operation(Paid {
                    delivery: operation,
                    receipt: Receipt {
                        version,
                        settlement,
                    },
                    info,
                    _claim: claim,
                })
            }
            Ok(Settled::No(reason)) => Admission::Challenge(self.challenge(&offer, reason)),
            Ok(Settled::Unknown(detail)) => Admission::Unavailable(Unavailable::Unsettled(detail)),
            Err(e) => Admission::Unavailable(Unavailable::Unsettled(format!(
                "the settlement task failed: {e}"
            ))),
        }
    }

    /// A `402 settlement_pending` with `Retry-After`.
    fn pending_challenge(&self, offer: &Offer, detail: &str) -> Challenge {
        let retry_after = self.inner.pending.config.retry_after_secs();
        let mut challenge = self.challenge(
            offer,
            format!(
                "{}: {detail}; retry with the same payment in {retry_after} s to receive the response",
                ErrorReason::SettlementPending
            ),
        );
        challenge.retry_after = Some(retry_after);
        challenge
    }

    /// Waits before try number `tries` (counting from 1) if the retry budget and `deadline`
    /// allow it; `false` when the caller must give up.
    async fn back_off(&self, tries: u32, deadline: Instant) -> bool {
        if tries > self.inner.retries {
            return false;
        }
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (tries - 1).min(10))
            .min(MAX_BACKOFF);
        if Instant::now() + delay >= deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        true
    }

    /// `/verify`, repeated with the same key while the facilitator gives no answer.
    async fn verify_with_retries(
        &self,
        request: &FacilitatorRequest,
        attempt: &IdempotencyKey,
        deadline: Instant,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let mut tries = 0;
        loop {
            match self.inner.facilitator.verify(request, Some(attempt)).await {
                Err(e) => {
                    tries += 1;
                    if !self.back_off(tries, deadline).await {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, tries, "verify got no answer; retrying");
                }
                answer => return answer,
            }
        }
    }

    /// `/settle`, repeated with the same key while the facilitator gives no answer
    /// (unreachable, timed out, the response lost): a repeated settle of the same attempt is
    /// answered with the original outcome, never with a second transfer.
    async fn settle_with_retries(
        &self,
        request: &FacilitatorRequest,
        attempt: &IdempotencyKey,
        deadline: Instant,
    ) -> Settled {
        let mut tries = 0;
        loop {
            match self.inner.facilitator.settle(request, Some(attempt)).await {
                Ok(s) if s.success => return Settled::Yes(s),
                Ok(s) => {
                    let detail = s.error_message.unwrap_or_default();
                    return match s.error_reason {
                        Some(ErrorReason::SettlementPending) => Settled::Unknown(format!(
                            "the transfer was sent and is not confirmed yet ({detail})"
                        )),
                        // The facilitator's own failure, not a verdict on the payment.
                        Some(ErrorReason::UnexpectedSettleError) => Settled::Unknown(format!(
                            "the facilitator could not finish the settlement ({detail})"
                        )),
                        reason => Settled::No(format!(
                            "settlement failed: {}: {detail}",
                            reason.map(|r| r.to_string()).unwrap_or_default()
                        )),
                    };
                }
                Err(e) => {
                    tries += 1;
                    if !self.back_off(tries, deadline).await {
                        tracing::warn!(error = %e, tries, "settlement outcome unknown after retries");
                        return Settled::Unknown(format!("no answer from the facilitator ({e})"));
                    }
                    tracing::debug!(error = %e, tries, "settle got no answer; retrying");
                }
            }
        }
    }

    /// Keeps `entry` — with the `delivery`, read into memory, if the handler ran — for the
    /// buyer's retry after the exchange that paid for it is gone.
    async fn keep_for_retry(
        &self,
        key: &str,
        mut entry: PendingEntry<D::Kept>,
        delivery: Option<D>,
    ) {
        if let Some(delivery) = delivery {
            let limit = self.inner.pending.config.max_response_bytes;
            match delivery.keep(limit).await {
                Ok(kept) => entry.response = Some(kept),
                Err(e) => {
                    tracing::error!(error = %e, target = %entry.target, "the buyer hung up during settlement and the response cannot be kept");
                    return;
                }
            }
        }
        let target = entry.target.clone();
        if let Err(e) = self.inner.pending.insert(key.to_owned(), entry) {
            tracing::error!(error = %e, %target, "the buyer hung up during settlement and the payment cannot be remembered");
        }
    }
}

/// Extensions a payment echoes from the offer and the facilitator acts on, so the echo must
/// be the offer itself (see `Gate::echo_mismatch`).
const ECHOED_VERBATIM: &[&str] = &[tollgate_proto::bazaar::BAZAAR];

/// The first delay between two tries; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest delay between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a settlement handed to a task of its own gives back: the outcome, the delivery (when
/// the handler ran first) and the payment's claim, still held.
type HandedBack<D> = (Settled, Option<D>, Claim);

impl<F: FacilitatorClient, D: Delivery> VerifiedPayment<F, D> {
    /// What the handler is told about the payment.
    pub fn info(&self) -> &PaymentInfo {
        &self.state.info
    }

    /// The gate's settlement mode: whether to [`settle`](Self::settle) before the handler or
    /// [`settle_delivery`](Self::settle_delivery) after it.
    pub fn mode(&self) -> SettlementMode {
        self.state.gate.inner.mode
    }

    /// This exchange's attempt key with the facilitator.
    pub fn attempt(&self) -> &IdempotencyKey {
        &self.state.attempt
    }

    /// For a payment in a metered scheme (settled after the handler), the meter on which the
    /// handler records what it charges, at most the authorised maximum; `None` for every other
    /// payment, whose charge is the price.
    pub fn meter(&self) -> Option<&Meter> {
        self.state.meter.as_ref()
    }

    /// The handler failed (or will not run): nothing is settled, the buyer is not charged, and
    /// the payment's claim is released. The facilitator is told the attempt is abandoned
    /// ([`Facilitator::abandon`](tollgate_core::Facilitator::abandon)) before this returns, so
    /// the buyer's retry with the same payment finds nothing held for this attempt (dropping
    /// the handle does the same, in the background).
    pub async fn handler_failed(self) {
        let State {
            claim, unsettled, ..
        } = *self.state;
        unsettled.now().await;
        drop(claim);
    }

    /// What a retry needs if settlement outlives this exchange.
    fn entry(&self, response: Option<D::Kept>) -> PendingEntry<D::Kept> {
        let state = &self.state;
        PendingEntry {
            attempt: state.attempt.clone(),
            request: state.request.clone(),
            target: state.offer.target.clone(),
            info: state.info.clone(),
            response,
            max_timeout: state.max_timeout,
        }
    }

    /// Settles before the handler ([`SettlementMode::BeforeHandler`]): on
    /// [`Settlement::Paid`], run the handler with [`Paid::info`] (which names the transaction)
    /// and deliver its response with the receipt. If the outcome is not known yet, the right
    /// to run the handler is kept for the buyer's retry.
    pub async fn settle(self) -> Settlement<()> {
        let entry = self.entry(None);
        let State {
            gate,
            claim,
            offer,
            mut info,
            deadline,
            unsettled,
            ..
        } = *self.state;
        unsettled.disarm();
        let key = claim.key.clone();
        let Some((settled, _, claim)) =
            settle_detached(&gate, claim, entry.clone(), None, deadline).await
        else {
            return Settlement::Unavailable(Unavailable::NotKept(
                "the settlement task failed".into(),
            ));
        };
        match settled {
            Settled::Yes(settlement) => {
                info.transaction = Some(settlement.transaction.clone());
                Settlement::Paid(Paid {
                    delivery: (),
                    receipt: Receipt {
                        version: entry.request.version(),
                        settlement,
                    },
                    info,
                    _claim: claim,
                })
            }
            Settled::No(reason) => Settlement::Refused(gate.challenge(&offer, reason)),
            Settled::Unknown(detail) => {
                // The transfer may land: remember the attempt so that the buyer's retry learns
                // the outcome with this key and then gets the handler's response.
                let target = entry.target.clone();
                match gate.inner.pending.insert(key, entry) {
                    Ok(()) => Settlement::Pending(gate.pending_challenge(&offer, &detail)),
                    Err(e) => {
                        tracing::error!(error = %e, %target, "settlement pending and the payment cannot be remembered");
                        Settlement::Unavailable(Unavailable::NotKept(format!(
                            "this server cannot keep track of the payment: {e}"
                        )))
                    }
                }
            }
        }
    }

    /// Settles after the handler ([`SettlementMode::AfterHandler`]) for its `delivery` (call
    /// it only for a successful one; see [`handler_failed`](Self::handler_failed)): on
    /// [`Settlement::Paid`], deliver it with the receipt. A refused settlement drops it —
    /// nothing is delivered unpaid; one whose outcome is not known yet keeps it for the buyer's
    /// retry.
    pub async fn settle_delivery(mut self, delivery: D) -> Settlement<D> {
        if let Some(amount) = self.state.meter.as_ref().map(Meter::settled_amount) {
            // Copied only here, for a metered payment: the request is shared otherwise.
            if let FacilitatorRequest::V2 {
                payment_requirements,
                ..
            } = Arc::make_mut(&mut self.state.request)
            {
                // The settle-time amount of a metered scheme is the charge (never above the
                // maximum: the meter refuses that, and the facilitator checks it against the
                // signed maximum again).
                payment_requirements.amount = amount;
                self.state.info.amount = amount;
            }
        }
        let entry = self.entry(None);
        let State {
            gate,
            claim,
            offer,
            info,
            deadline,
            unsettled,
            ..
        } = *self.state;
        unsettled.disarm();
        let key = claim.key.clone();
        let handed_back =
            settle_detached(&gate, claim, entry.clone(), Some(delivery), deadline).await;
        let Some((settled, Some(delivery), claim)) = handed_back else {
            return Settlement::Unavailable(Unavailable::NotKept(
                "the settlement task failed".into(),
            ));
        };
        match settled {
            Settled::Yes(settlement) => Settlement::Paid(Paid {
                delivery,
                receipt: Receipt {
                    version: entry.request.version(),
                    settlement,
                },
                info,
                _claim: claim,
            }),
            // The delivery is dropped: nothing is delivered unpaid.
            Settled::No(reason) => Settlement::Refused(gate.challenge(&offer, reason)),
            Settled::Unknown(detail) => {
                // Paid means served: the transfer may land, so keep the delivery for the
                // buyer's retry instead of dropping it.
                let target = entry.target.clone();
                let limit = gate.inner.pending.config.max_response_bytes;
                let kept = match delivery.keep(limit).await {
                    Ok(kept) => kept,
                    Err(e) => {
                        tracing::error!(error = %e, %target, "settlement pending and the response cannot be kept");
                        return Settlement::Unavailable(Unavailable::NotKept(format!(
                            "the response cannot be kept: {e}"
                        )));
                    }
                };
                let mut entry = entry;
                entry.response = Some(kept);
                let outcome = match gate.inner.pending.insert(key, entry) {
                    Ok(()) => Settlement::Pending(gate.pending_challenge(&offer, &detail)),
                    Err(e) => {
                        tracing::error!(error = %e, %target, "settlement pending and the response cannot be kept");
                        Settlement::Unavailable(Unavailable::NotKept(format!(
                            "the response cannot be kept: {e}"
                        )))
                    }
                };
                drop(claim);
                outcome
            }
        }
    }
}

/// Settles `entry`'s payment in a task of its own, holding `claim` throughout.
///
/// A buyer who hangs up while the settlement is in flight — a client timeout shorter than a
/// slow chain, a dropped connection — drops this exchange's future; settling inside it would
/// abandon the settlement half-way, after the transfer may have been sent, and the buyer's
/// retry would then find the payment used and nothing to deliver: charged, never served. In
/// its own task the settlement goes on. If the exchange is gone before the outcome is known,
/// what was paid for (the handler's delivery, or with [`SettlementMode::BeforeHandler`] the
/// right to run the handler) is put in the store of deliveries awaiting settlement at once, so
/// the retry waits for this outcome (`settlement_pending`, the claim is still held) and then
/// gets it; a refused settlement removes it again. `None` only if the task panicked.
async fn settle_detached<F: FacilitatorClient, D: Delivery>(
    gate: &Gate<F, D>,
    claim: Claim,
    entry: PendingEntry<D::Kept>,
    delivery: Option<D>,
    deadline: Instant,
) -> Option<HandedBack<D>> {
    let (mut tx, rx) = tokio::sync::oneshot::channel::<HandedBack<D>>();
    let gate = gate.clone();
    let task = async move {
        let (request, attempt) = (entry.request.clone(), entry.attempt.clone());
        let settle = gate.settle_with_retries(&request, &attempt, deadline);
        tokio::pin!(settle);
        let mut delivery = delivery;
        let outcome = tokio::select! {
            outcome = &mut settle => outcome,
            () = tx.closed() => {
                // Kept while the settlement goes on (reading the delivery may take a while).
                let keep = gate.keep_for_retry(&claim.key, entry, delivery.take());
                let ((), outcome) = tokio::join!(keep, &mut settle);
                if let Settled::No(_) = outcome {
                    gate.inner.pending.remove(&claim.key);
                }
                return;
            }
        };
        if let Err((outcome, delivery, claim)) = tx.send((outcome, delivery, claim)) {
            // Gone just as the outcome arrived.
            if !matches!(outcome, Settled::No(_)) {
                gate.keep_for_retry(&claim.key, entry, delivery).await;
            }
        }
    };
    // In the request's span: its logs, and the facilitator call's trace context, stay with
    // the paid request although the settlement runs in a task of its own.
    tokio::spawn(tracing::Instrument::in_current_span(task));
    rx.await.ok()
}
