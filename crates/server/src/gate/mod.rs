//! The paywall's payment flow without HTTP: the **gate**.
//!
//! Everything the paywall decides about one paid request — which of the route's requirements
//! the payment answers, whether it is already in flight, verification, settlement before or
//! after the handler, the receipt, and what to do when settlement outlives the exchange — lives
//! here, over plain values: a [`Presented`] payment, an [`Offer`] (the resource, its
//! requirements and the request's target), and whatever the transport delivers (a
//! [`Delivery`]). The tower [`Paywall`](crate::Paywall) is a thin adapter that reads headers,
//! calls the gate, runs the inner service and writes headers; another transport — MCP, with
//! the payment in a JSON-RPC `_meta` — reuses the same gate, and with it every guarantee of
//! `docs/security.md`:
//!
//! - **one attempt per exchange**: each verified payment gets a fresh random attempt key
//!   (`Idempotency-Key`) used for its `/verify` and `/settle` and their retries, never another
//!   exchange's;
//! - **one exchange per payment in this process**: a claim on the payment's canonical form
//!   (every spelling of one authorization is one key) refuses a copy while the first is in
//!   flight (`payment_in_use`);
//! - **paid means served**: a settlement whose outcome is not known by the end of the exchange
//!   is never treated as "not paid" — the delivery is kept with its attempt key, the buyer is
//!   told `settlement_pending` and to retry, and the retry settles under the same key and gets
//!   the kept delivery once; settlement runs in a task of its own, so a buyer who hangs up does
//!   not abandon it half-way;
//! - **nothing unpaid**: a delivery leaves the gate only inside a [`Paid`], with the
//!   facilitator's successful settlement as its receipt;
//! - **nothing held for an attempt that will not settle**: a verified attempt that ends
//!   unsettled (its handler failed, the identity policy refused the payer, the request was
//!   dropped) is abandoned with the facilitator
//!   ([`Facilitator::abandon`](tollgate_core::Facilitator::abandon)), which lets go of what it
//!   holds for it — a seller's payment channel — so the buyer's retry is not refused as busy.
//!
//! The flow of one request:
//!
//! ```text
//! Gate::accepts(price)            → the requirements (payees checked, enriched from /supported)
//! Gate::admit(offer, presented)   → Admission::Challenge      402: no payment, or refused
//!                                   Admission::Unavailable    503: nothing decided, nothing delivered
//!                                   Admission::Deliver        paid earlier: deliver the kept response
//!                                   Admission::RunPaid        paid earlier (before-handler): run, deliver
//!                                   Admission::Refused        403: verified, but the payer fails the
//!                                                             identity policy; nothing settled
//!                                   Admission::Operation(p)   a payment operation (a refund,
//!                                                             SchemeServer::operation): verified
//!                                                             and settled; answer 200 with its
//!                                                             body, never run the handler
//!                                   Admission::Verified(h)    verified and claimed:
//!   SettlementMode::BeforeHandler:  h.settle()                → Settlement::Paid(()) → run the handler
//!   SettlementMode::AfterHandler:   run the handler, then h.settle_delivery(response)
//!                                                             → Settlement::Paid(response)
//!                                   (or h.handler_failed(): nothing is settled, and the
//!                                   facilitator is told the attempt is abandoned)
//! ```

mod canonical;
mod flow;
mod identity;
mod meter;
mod pending;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate_core::identity::{IdentityPolicy, IdentityProvider};
use tollgate_core::server::PaymentOperation;
use tollgate_core::{BoxFuture, Registry, SchemeServer};
use tollgate_proto::header::{self, HeaderError};
use tollgate_proto::{
    AnyPaymentPayload, AtomicAmount, Network, PaymentRequired, PaymentRequirements, ResourceInfo,
    Scheme, SettleResponse, SupportedKind, X402Version, V2,
};

use crate::paywall::PaywallOutcome;
use crate::price::{PriceError, RoutePrice};
use crate::FacilitatorClient;

pub use flow::VerifiedPayment;
pub(crate) use identity::IdentityGate;
pub use identity::{
    Decision, DecisionResult, DecisionSink, IdentityRefusal, DEFAULT_IDENTITY_CACHE_TTL,
    IDENTITY_CHECK_FAILED, OPERATOR_TOKEN,
};
pub use meter::{ChargeError, Meter};
pub use pending::{PendingConfig, PendingConfigError};
pub(crate) use pending::{PendingEntry, PendingStore};

/// When the payment is settled relative to the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SettlementMode {
    /// Verify, run the handler, settle, then respond (the default). Nothing is settled when the
    /// handler answers an error; if settlement fails, the handler's body is not delivered. If
    /// settlement outlives the exchange (pending, or no answer from the facilitator), the
    /// response is kept and delivered on the buyer's retry with the same payment once the
    /// payment settles (see [`PaywallLayer::pending_responses`](crate::PaywallLayer::pending_responses)).
    #[default]
    AfterHandler,
    /// Settle before running the handler, for handlers with side effects that must only ever
    /// run for money already received. The handler sees the transaction hash.
    BeforeHandler,
}

/// Default number of retries of a `/verify` or `/settle` that got no answer.
pub const DEFAULT_RETRIES: u32 = 3;

/// The challenge's `error` when the request carried no payment.
pub const NO_PAYMENT: &str = "PAYMENT-SIGNATURE header is required";

/// How long the facilitator's `/supported` kinds are reused before they are asked again.
const SUPPORTED_TTL: Duration = Duration::from_secs(300);

/// What a request carried as payment, as the transport read it.
#[derive(Debug, Clone)]
pub enum Presented {
    /// No payment at all: the buyer gets the challenge.
    Nothing,
    /// Something that should have been a payment and cannot be read (not base64, not JSON, two
    /// payments…): why.
    Unreadable(String),
    /// A decoded payment, v2 or v1.
    Payment(AnyPaymentPayload),
}

impl Presented {
    /// A payment in its header encoding (base64 JSON, as in `PAYMENT-SIGNATURE` or
    /// `X-PAYMENT`; a JSON-RPC transport may carry the same string).
    pub fn from_encoded(value: &str) -> Self {
        match header::decode::<AnyPaymentPayload>(value) {
            Ok(payment) => Self::Payment(payment),
            Err(e) => Self::Unreadable(e.to_string()),
        }
    }
}

impl From<Option<Result<AnyPaymentPayload, HeaderError>>> for Presented {
    /// From [`header::payment_from_headers`].
    fn from(read: Option<Result<AnyPaymentPayload, HeaderError>>) -> Self {
        match read {
            None => Self::Nothing,
            Some(Err(e)) => Self::Unreadable(e.to_string()),
            Some(Ok(payment)) => Self::Payment(payment),
        }
    }
}

impl From<AnyPaymentPayload> for Presented {
    fn from(payment: AnyPaymentPayload) -> Self {
        Self::Payment(payment)
    }
}

/// What one request is offered: the resource, the requirements a payment must answer (from
/// [`Gate::accepts`]), and the request's target.
#[derive(Debug, Clone)]
pub struct Offer {
    /// What is sold, as the challenge describes it.
    pub resource: ResourceInfo,
    /// The accepted requirements, in order of preference.
    pub accepts: Vec<PaymentRequirements>,
    /// The exchange's identity (`"GET /weather?city=x"`, `"tools/call weather"`): a payment
    /// whose delivery is kept for a retry is delivered only to a retry of the same target.
    pub target: String,
    /// The route's own extensions, offered in its 402 beside the gate's (e.g. its Bazaar
    /// description, [`RoutePrice::offered_extensions`]); empty for none.
    pub extensions: tollgate_proto::Extensions,
}

/// A `402`: the v2 challenge, its `error` saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The challenge (`error` set).
    pub required: PaymentRequired,
    /// For `settlement_pending`: when to retry with the same payment, in seconds.
    pub retry_after: Option<u64>,
}

impl Challenge {
    /// Why the payment is asked for (or refused).
    pub fn error(&self) -> &str {
        self.required.error.as_deref().unwrap_or_default()
    }

    /// Whether the payment may still settle: the buyer retries the same payment after
    /// [`retry_after`](Self::retry_after) seconds to receive what it paid for.
    pub fn is_pending(&self) -> bool {
        self.retry_after.is_some()
    }

    /// The outcome label for metrics.
    pub fn outcome(&self) -> PaywallOutcome {
        PaywallOutcome::of_challenge(self.error(), NO_PAYMENT)
    }
}

/// Why nothing could be decided: the transport answers `503`, and nothing is delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The facilitator could not be asked (verification, or its `/supported` kinds).
    #[error("payment facilitator unavailable: {0}")]
    Facilitator(String),
    /// The identity provider could not answer and the gate fails closed: the verified payment
    /// is released unsettled.
    #[error("identity provider unavailable: {0}")]
    Identity(String),
    /// The settlement is pending and what was paid for cannot be kept for the retry (the store
    /// is full, the response is over its size cap, the settlement task failed).
    #[error("settlement pending and the response could not be kept: {0}")]
    NotKept(String),
    /// A payment operation was sent and its outcome is not known by the end of the exchange;
    /// there is nothing to keep for a retry (the buyer checks the channel's state instead).
    #[error("payment operation sent, outcome not known yet: {0}")]
    Unsettled(String),
}

impl Unavailable {
    /// A stable, short description (the `error` of a 503 body).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Facilitator(_) => "payment facilitator unavailable",
            Self::Identity(_) => "identity provider unavailable",
            Self::NotKept(_) => "settlement pending and the response could not be kept",
            Self::Unsettled(_) => "payment operation sent, outcome not known yet",
        }
    }

    /// What happened.
    pub fn detail(&self) -> &str {
        match self {
            Self::Facilitator(d) | Self::Identity(d) | Self::NotKept(d) | Self::Unsettled(d) => d,
        }
    }
}

/// The settlement receipt of a delivery, in the protocol version the buyer paid with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The buyer's protocol version (the receipt's header: `PAYMENT-RESPONSE` for v2,
    /// `X-PAYMENT-RESPONSE` for v1).
    pub version: X402Version,
    /// The facilitator's successful settlement.
    pub settlement: SettleResponse,
}

impl Receipt {
    /// The receipt in its header encoding (base64 JSON, v1 form for v1 buyers).
    pub fn encoded(&self) -> String {
        match self.version {
            X402Version::V2 => header::encode(&self.settlement),
            X402Version::V1 => header::encode(&tollgate_proto::SettleResponseV1::from(
                self.settlement.clone(),
            )),
        }
    }
}

/// What the handler learns about the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    /// Protocol version the client used.
    pub version: X402Version,
    /// Payment scheme.
    pub scheme: Scheme,
    /// Network.
    pub network: Network,
    /// Asset.
    pub asset: String,
    /// Amount in atomic units: the price; for a metered payment the authorised maximum until
    /// it is settled, and then the amount charged (see [`Meter`]).
    pub amount: AtomicAmount,
    /// The payer, as the facilitator reported it.
    pub payer: Option<String>,
    /// The settlement transaction (only in [`SettlementMode::BeforeHandler`]).
    pub transaction: Option<String>,
}

/// A settled payment and what it buys: `T` is the delivery (the handler's response), or `()`
/// when the handler is still to run. It holds the payment's claim, so no copy of the payment
/// is processed in this process until it is taken apart with [`into_parts`](Self::into_parts)
/// — after the handler ran.
pub struct Paid<T> {
    delivery: T,
    receipt: Receipt,
    info: PaymentInfo,
    _claim: flow::Claim,
}

impl<T> std::fmt::Debug for Paid<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paid")
            .field("receipt", &self.receipt)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<T> Paid<T> {
    /// What the handler is told about the payment (with the transaction once settled).
    pub fn info(&self) -> &PaymentInfo {
        &self.info
    }

    /// The receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The delivery, its receipt and the payment's facts; releases the payment's claim.
    pub fn into_parts(self) -> (T, Receipt, PaymentInfo) {
        (self.delivery, self.receipt, self.info)
    }
}

/// What [`Gate::admit`] decided about a request.
#[derive(Debug)]
pub enum Admission<F, D: Delivery> {
    /// `402`: no payment, or the payment is refused (with the reason in
    /// [`Challenge::error`]), or its settlement is still pending ([`Challenge::is_pending`]).
    /// Nothing is delivered and the handler does not run.
    Challenge(Challenge),
    /// `503`: nothing could be decided; nothing is delivered.
    Unavailable(Unavailable),
    /// The payment was made on an earlier exchange whose settlement outlived it, and it has
    /// now settled: deliver the kept response with the receipt. The handler does not run again.
    Deliver(Paid<D>),
    /// The same in [`SettlementMode::BeforeHandler`]: the handler never ran; run it now, once,
    /// with [`Paid::info`], and deliver its response with the receipt.
    RunPaid(Paid<()>),
    /// A payment operation ([`SchemeServer::operation`]: a `batch-settlement` refund),
    /// verified and settled: answer `200` with [`PaymentOperation::body`] and the receipt. The
    /// handler does not run — the payer bought nothing.
    Operation(Paid<PaymentOperation>),
    /// Verified and claimed for this exchange: settle with the handle.
    Verified(VerifiedPayment<F, D>),
    /// `403`: the payment is valid but its verified payer does not meet the seller's identity
    /// policy. Nothing is settled (the verified payment is released) and the handler does not
    /// run.
    Refused(IdentityRefusal),
}

/// How the settlement of a verified payment ended.
#[derive(Debug)]
pub enum Settlement<T> {
    /// Settled: deliver with the receipt.
    Paid(Paid<T>),
    /// Refused for good (the payment is at fault, used, or not this attempt's): `402` with the
    /// reason; the delivery is dropped.
    Refused(Challenge),
    /// Not known yet: the delivery is kept, and the buyer gets `402 settlement_pending` and
    /// retries with the same payment.
    Pending(Challenge),
    /// The settlement is pending and the delivery could not be kept: `503`.
    Unavailable(Unavailable),
}

/// What a transport delivers for a payment, and how the gate keeps it when the payment's
/// settlement outlives the exchange (paid means served).
pub trait Delivery: Send + 'static {
    /// The delivery held in memory for the buyer's retry.
    type Kept: Clone + std::fmt::Debug + Send + Sync + 'static;

    /// Reads the delivery into memory, refusing one larger than `limit` bytes.
    fn keep(self, limit: usize) -> BoxFuture<'static, Result<Self::Kept, String>>;

    /// The memory a kept delivery is charged in the store.
    fn kept_size(kept: &Self::Kept) -> usize;

    /// The delivery again, to send on the retry.
    fn restore(kept: Self::Kept) -> Self;
}

/// A delivery that is already text (a JSON-RPC result, a test's body).
impl Delivery for String {
    type Kept = String;

    fn keep(self, limit: usize) -> BoxFuture<'static, Result<String, String>> {
        Box::pin(async move {
            if self.len() > limit {
                return Err(format!("the response is larger than {limit} bytes"));
            }
            Ok(self)
        })
    }

    fn kept_size(kept: &String) -> usize {
        kept.len()
    }

    fn restore(kept: String) -> Self {
        kept
    }
}

/// The gate: the paywall's decisions for one transport whose deliveries are `D`, settling
/// through facilitator `F`. Cheap to clone; clones share claims, kept deliveries and the
/// facilitator. Built with [`Gate::builder`].
pub struct Gate<F, D: Delivery> {
    pub(crate) inner: Arc<Inner<F, D>>,
}

impl<F, D: Delivery> Clone for Gate<F, D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<F, D: Delivery> std::fmt::Debug for Gate<F, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.inner.mode)
            .field("retries", &self.inner.retries)
            .field("schemes", &self.inner.schemes)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<F, D: Delivery> {
    pub(crate) facilitator: F,
    pub(crate) mode: SettlementMode,
    /// How many times a `/verify` or `/settle` that got no answer is repeated (same attempt
    /// key), within the payment's `maxTimeoutSeconds`.
    pub(crate) retries: u32,
    /// The `payment-identifier` extension as offered in every 402 (`None`: not offered), and
    /// whether a payment must carry an id.
    pub(crate) payment_identifier: Option<bool>,
    /// Scheme servers: payee checks and requirements enriched from `/supported`.
    pub(crate) schemes: Registry<dyn SchemeServer>,
    /// Payments currently being processed, by their canonical form (see `canonical`: one key
    /// for every spelling of a payment). A second request carrying the same payment while the
    /// first is in flight is refused, so one process runs its handler once per payment. Across
    /// processes the facilitator's reservation of the payment for the first attempt key (for a
    /// `batch-settlement` voucher, the channel held for that attempt) is the authoritative
    /// guard; after settlement the chain itself refuses the reuse.
    pub(crate) claims: Arc<Mutex<HashSet<String>>>,
    /// Deliveries whose settlement outlived their exchange, delivered on the buyer's retry.
    pub(crate) pending: PendingStore<D>,
    /// Whom the seller serves: checked on the verified payer before anything is settled.
    pub(crate) identity: IdentityGate,
    /// The facilitator's `/supported` kinds, when scheme servers need them.
    supported: Mutex<Option<Snapshot>>,
    /// One `/supported` fetch at a time.
    refresh: tokio::sync::Mutex<()>,
}

/// The facilitator's `/supported` kinds as last read.
struct Snapshot {
    read_at: Instant,
    kinds: Arc<Vec<SupportedKind>>,
    /// Counts the reads whose kinds changed, so cached challenges built from older kinds are
    /// not served.
    generation: u64,
}

/// Configures a [`Gate`].
pub struct GateBuilder<F> {
    facilitator: F,
    mode: SettlementMode,
    retries: u32,
    pending: PendingConfig,
    payment_identifier: Option<bool>,
    schemes: Registry<dyn SchemeServer>,
    identity: IdentityGate,
}

impl<F: FacilitatorClient> GateBuilder<F> {
    /// Configures a gate settling through `facilitator`, with the defaults: settlement after
    /// the handler, [`DEFAULT_RETRIES`], the default [`PendingConfig`], no
    /// `payment-identifier` offer, no scheme servers.
    pub fn new(facilitator: F) -> Self {
        Self {
            facilitator,
            mode: SettlementMode::default(),
            retries: DEFAULT_RETRIES,
            pending: PendingConfig::default(),
            payment_identifier: None,
            schemes: Registry::new(),
            identity: IdentityGate::default(),
        }
    }

    /// When payments are settled (default: after the handler).
    pub fn settlement_mode(mut self, mode: SettlementMode) -> Self {
        self.mode = mode;
        self
    }

    /// How many times a `/verify` or `/settle` without an answer is repeated with the same
    /// attempt key (default [`DEFAULT_RETRIES`]).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Limits of the store of deliveries awaiting settlement.
    pub fn pending_responses(mut self, config: PendingConfig) -> Result<Self, PendingConfigError> {
        config.validate()?;
        self.pending = config;
        Ok(self)
    }

    /// Offers the `payment-identifier` extension; with `required`, a payment without a valid
    /// id is refused.
    pub fn payment_identifier(mut self, required: bool) -> Self {
        self.payment_identifier = Some(required);
        self
    }

    /// Scheme servers that check payees ([`Gate::check_price`]) and complete requirements
    /// from the facilitator's `/supported` ([`Gate::accepts`]).
    pub fn schemes(mut self, schemes: Registry<dyn SchemeServer>) -> Self {
        self.schemes = schemes;
        self
    }

    /// Checks the verified payer of every valid payment against `policy` with `provider`,
    /// after `/verify` and before the handler runs or anything is settled: a payer who fails
    /// is refused ([`Admission::Refused`], `403`) and never charged. Requests without a
    /// payment never reach the provider.
    pub fn identity(mut self, provider: Arc<dyn IdentityProvider>, policy: IdentityPolicy) -> Self {
        self.identity.provider = Some((provider, policy));
        self
    }

    /// What happens when the identity provider cannot answer: by default (`false`) the
    /// request is answered `503` with nothing settled and nothing served; with `true` it is
    /// served without the check, and the decision is logged as `failed_open`.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.identity.fail_open = fail_open;
        self
    }

    /// How long a provider's verdict on a payer (per payer, network and operator token) is
    /// reused (default [`DEFAULT_IDENTITY_CACHE_TTL`]; zero: never cached). Failures to answer
    /// are never cached.
    pub fn identity_cache_ttl(mut self, ttl: Duration) -> Self {
        self.identity.ttl = ttl;
        self
    }

    /// Hands every identity decision to `sink` as well as to the log.
    pub fn decision_sink(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.identity.sink = Some(sink);
        self
    }

    /// The gate, for a transport delivering `D`.
    pub fn build<D: Delivery>(self) -> Gate<F, D> {
        Gate {
            inner: Arc::new(Inner {
                facilitator: self.facilitator,
                mode: self.mode,
                retries: self.retries,
                payment_identifier: self.payment_identifier,
                schemes: self.schemes,
                claims: Arc::default(),
                pending: PendingStore::new(self.pending),
                identity: self.identity,
                supported: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl<F: FacilitatorClient, D: Delivery> Gate<F, D> {
    /// The settlement mode.
    pub fn mode(&self) -> SettlementMode {
        self.inner.mode
    }

    /// The facilitator.
    pub fn facilitator(&self) -> &F {
        &self.inner.facilitator
    }

    /// The settings, for the layer's builder methods, before the gate is shared. `None` once
    /// cloned.
    pub(crate) fn inner_mut(&mut self) -> Option<&mut Inner<F, D>> {
        Arc::get_mut(&mut self.inner)
    }

    /// Checks (and makes canonical) the payees of `price` with the gate's scheme servers
    /// ([`RoutePrice::check`]). Static prices are checked once when the route is priced; a
    /// price computed per request is checked by the transport before it is offered.
    pub fn check_price(&self, price: &mut RoutePrice) -> Result<(), PriceError> {
        price.check(&self.inner.schemes)
    }

    /// The requirements `price` offers, one per option, each completed by its scheme server
    /// from what the facilitator announced for that scheme and network in `/supported` (e.g.
    /// Solana's `feePayer`). Without scheme servers the facilitator is not asked.
    pub async fn accepts(
        &self,
        price: &RoutePrice,
    ) -> Result<Vec<PaymentRequirements>, Unavailable> {
        if let Some((accepts, _)) = self.accepts_now(price) {
            return Ok(accepts);
        }
        let kinds = self.supported_kinds().await?;
        Ok(self.enriched(price, &kinds))
    }

    /// [`accepts`](Self::accepts) without waiting, when no `/supported` read is due, with the
    /// generation of the kinds it used (a key for caching what is built from it).
    pub(crate) fn accepts_now(
        &self,
        price: &RoutePrice,
    ) -> Option<(Vec<PaymentRequirements>, u64)> {
        if self.inner.schemes.is_empty() {
            return Some((price.options.iter().map(|o| o.requirements()).collect(), 0));
        }
        let snapshot = self
            .inner
            .supported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let snapshot = snapshot.as_ref()?;
        if snapshot.read_at.elapsed() >= SUPPORTED_TTL {
            return None;
        }
        let (kinds, generation) = (snapshot.kinds.clone(), snapshot.generation);
        Some((self.enriched(price, &kinds), generation))
    }

    fn enriched(&self, price: &RoutePrice, kinds: &[SupportedKind]) -> Vec<PaymentRequirements> {
        price
            .options
            .iter()
            .map(|option| {
                let mut requirements = option.requirements();
                let server = self
                    .inner
                    .schemes
                    .get(&requirements.scheme, &requirements.network);
                let kind = kinds.iter().find(|k| {
                    k.x402_version == X402Version::V2
                        && k.scheme == requirements.scheme
                        && k.network == requirements.network
                });
                if let (Some(server), Some(kind)) = (server, kind) {
                    server.enrich(&mut requirements, kind);
                }
                requirements
            })
            .collect()
    }

    /// The facilitator's `/supported` kinds: the last read if fresh, else read again. A failed
    /// read falls back to the last one (and is not repeated for a while); with none, nothing
    /// can be offered that the facilitator may need to complete.
    async fn supported_kinds(&self) -> Result<Arc<Vec<SupportedKind>>, Unavailable> {
        let _one_at_a_time = self.inner.refresh.lock().await;
        let last = {
            let snapshot = self
                .inner
                .supported
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match snapshot.as_ref() {
                Some(s) if s.read_at.elapsed() < SUPPORTED_TTL => return Ok(s.kinds.clone()),
                Some(s) => Some((s.kinds.clone(), s.generation)),
                None => None,
            }
        };
        let read = self.inner.facilitator.supported().await;
        let mut snapshot = self
            .inner
            .supported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (read, last) {
            (Ok(answer), last) => {
                let generation = match last {
                    Some((kinds, generation)) if *kinds == answer.kinds => generation,
                    Some((_, generation)) => generation + 1,
                    None => 1,
                };
                let kinds = Arc::new(answer.kinds);
                *snapshot = Some(Snapshot {
                    read_at: Instant::now(),
                    kinds: kinds.clone(),
                    generation,
                });
                Ok(kinds)
            }
            (Err(e), Some((kinds, generation))) => {
                tracing::warn!(error = %e, "the facilitator's /supported could not be read; using the last answer");
                *snapshot = Some(Snapshot {
                    read_at: Instant::now(),
                    kinds: kinds.clone(),
                    generation,
                });
                Ok(kinds)
            }
            (Err(e), None) => Err(Unavailable::Facilitator(format!(
                "its supported payment kinds could not be read: {e}"
            ))),
        }
    }

    /// The 402 of `offer` with `error`, offering the paywall's extensions.
    pub fn challenge(&self, offer: &Offer, error: impl Into<String>) -> Challenge {
        Challenge {
            required: PaymentRequired {
                x402_version: V2,
                error: Some(error.into()),
                resource: offer.resource.clone(),
                accepts: offer.accepts.clone(),
                extensions: self.offered_extensions(offer),
            },
            retry_after: None,
        }
    }

    /// The 402's `extensions`: what the paywall offers beyond the requirements, and the
    /// route's own (its Bazaar description). `None` when there are none.
    fn offered_extensions(&self, offer: &Offer) -> Option<tollgate_proto::Extensions> {
        let mut extensions = offer.extensions.clone();
        if let Some(required) = self.inner.payment_identifier {
            extensions.insert(
                tollgate_proto::idempotency::PAYMENT_IDENTIFIER.to_owned(),
                tollgate_proto::PaymentIdentifier::offer(required),
            );
        }
        (!extensions.is_empty()).then_some(extensions)
    }
}
