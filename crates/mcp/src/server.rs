//! The seller's side: paid tools on an `rmcp` server.
//!
//! [`McpPaywall`] prices tools by name; [`McpPaywall::wrap`] puts it in front of any `rmcp`
//! [`ServerHandler`] (a `#[tool_router]` server, a hand-written one) as a [`PaidServer`],
//! itself a `ServerHandler` served over any transport (streamable HTTP, stdio). Only `tools/call` requests for priced tools
//! are touched; everything else — `initialize`, `tools/list`, free tools, resources, prompts —
//! goes to the inner server unchanged.
//!
//! A priced call goes through `tollgate-server`'s [`Gate`], the same decisions the HTTP
//! paywall makes, with every guarantee of `docs/security.md`: a fresh attempt key per
//! exchange, one exchange per payment in this process (a copy of a payment in flight is
//! refused `payment_in_use`), verification before the tool runs, settlement after it (or
//! before, with [`SettlementMode::BeforeHandler`](tollgate_server::SettlementMode)), nothing
//! delivered unpaid, and a result whose settlement outlives the call kept for the buyer's
//! retry with the same payment.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, JsonObject};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use tollgate_core::BoxFuture;
use tollgate_proto::{AnyPaymentPayload, ResourceInfo, SettleResponseV1, X402Version};
use tollgate_server::gate::{Challenge, Delivery, Paid, Receipt, Unavailable};
use tollgate_server::{
    Admission, Facilitator, Gate, GateBuilder, IdentityRefusal, Offer, Presented, PriceError,
    RoutePrice, Settlement, SettlementMode,
};

use crate::wire;

/// The challenge's `error` when a paid tool is called without a payment.
pub const NO_PAYMENT: &str = "Payment required to access this resource";

/// A call of a priced tool, as a dynamic price sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The call's arguments.
    pub arguments: Option<JsonObject>,
}

/// Computes a tool's price from the call's arguments; `None` makes this call free. Called for
/// the unpaid call and again for the paid retry, so it must give the same price for the same
/// arguments (a payment answers one exact set of requirements).
pub type DynamicToolPrice =
    Arc<dyn Fn(&ToolCall) -> BoxFuture<'static, Option<RoutePrice>> + Send + Sync>;

/// How a tool is priced.
#[derive(Clone)]
pub enum ToolPricing {
    /// The same price for every call (payees checked once, when priced). Boxed: a price is
    /// large next to a closure.
    Static(Box<RoutePrice>),
    /// A price per call (payees checked on each call before it is offered).
    Dynamic(DynamicToolPrice),
}

impl std::fmt::Debug for ToolPricing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(p) => f.debug_tuple("Static").field(p).finish(),
            Self::Dynamic(_) => f.write_str("Dynamic(..)"),
        }
    }
}

/// Why a tool cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpPriceError {
    /// The price is not usable (no option, a payee the scheme server refuses…).
    #[error("tool {tool:?}: {source}")]
    Price {
        /// The tool.
        tool: String,
        /// Why.
        #[source]
        source: PriceError,
    },
    /// The tool has a price already: one of the two could never apply.
    #[error("tool {0:?} is priced twice")]
    AlreadyPriced(String),
    /// A tool name is not empty.
    #[error("a priced tool needs a name")]
    EmptyName,
}

/// What a paid tool delivers: its result, kept in memory for the buyer's retry when the
/// payment's settlement outlives the call.
#[derive(Debug, Clone)]
pub struct ToolOutput(pub CallToolResult);

impl Delivery for ToolOutput {
    type Kept = CallToolResult;

    fn keep(self, limit: usize) -> BoxFuture<'static, Result<CallToolResult, String>> {
        Box::pin(async move {
            let size = Self::kept_size(&self.0);
            if size > limit {
                return Err(format!("the tool result is larger than {limit} bytes"));
            }
            Ok(self.0)
        })
    }

    fn kept_size(kept: &CallToolResult) -> usize {
        serde_json::to_vec(kept)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }

    fn restore(kept: CallToolResult) -> Self {
        Self(kept)
    }
}

/// Prices for tools, and the [`Gate`] that takes payments for them. Cheap to clone (clones
/// share the gate: its claims on payments in flight and its kept results), so one paywall
/// serves every session of a streamable HTTP server.
pub struct McpPaywall<F> {
    gate: Gate<F, ToolOutput>,
    tools: Arc<HashMap<String, ToolPricing>>,
}

impl<F> Clone for McpPaywall<F> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            tools: self.tools.clone(),
        }
    }
}

impl<F> std::fmt::Debug for McpPaywall<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpPaywall")
            .field("gate", &self.gate)
            .field("tools", &self.tools)
            .finish()
    }
}

impl<F: Facilitator> McpPaywall<F> {
    /// A paywall settling through `facilitator` (an in-process
    /// `tollgate_facilitator::Facilitator`, a `RemoteFacilitator`, any
    /// [`Facilitator`]) with the gate's defaults: settlement after the tool, the default
    /// retries and store of pending results.
    pub fn new(facilitator: F) -> Self {
        Self::with_gate(GateBuilder::new(facilitator))
    }

    /// A paywall with a configured gate: settlement mode, retries, the store of results
    /// awaiting settlement, `payment-identifier`, scheme servers, identity policy.
    pub fn with_gate(gate: GateBuilder<F>) -> Self {
        Self {
            gate: gate.build(),
            tools: Arc::default(),
        }
    }

    /// Prices tool `tool` with `price` (checked now: its payees, by the gate's scheme
    /// servers). The challenge describes the tool with the price's `description` (default
    /// `Tool: <name>`) and `mime_type` (default `application/json`).
    pub fn price(
        self,
        tool: impl Into<String>,
        mut price: RoutePrice,
    ) -> Result<Self, McpPriceError> {
        let tool = tool.into();
        if price.options.is_empty() {
            return Err(McpPriceError::Price {
                tool,
                source: PriceError::NoOptions,
            });
        }
        if let Err(source) = self.gate.check_price(&mut price) {
            return Err(McpPriceError::Price { tool, source });
        }
        self.insert(tool, ToolPricing::Static(Box::new(price)))
    }

    /// Prices tool `tool` per call with `price`, a function of the call's arguments (`None`:
    /// this call is free). Each price is checked before it is offered.
    pub fn price_dynamic<P, Fut>(
        self,
        tool: impl Into<String>,
        price: P,
    ) -> Result<Self, McpPriceError>
    where
        P: Fn(&ToolCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<RoutePrice>> + Send + 'static,
    {
        let price: DynamicToolPrice = Arc::new(move |call| Box::pin(price(call)));
        self.insert(tool.into(), ToolPricing::Dynamic(price))
    }

    fn insert(mut self, tool: String, pricing: ToolPricing) -> Result<Self, McpPriceError> {
        if tool.is_empty() {
            return Err(McpPriceError::EmptyName);
        }
        let tools = Arc::make_mut(&mut self.tools);
        if tools.contains_key(&tool) {
            return Err(McpPriceError::AlreadyPriced(tool));
        }
        tools.insert(tool, pricing);
        Ok(self)
    }

    /// Whether `tool` is priced.
    pub fn is_priced(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// The gate (its facilitator, settlement mode).
    pub fn gate(&self) -> &Gate<F, ToolOutput> {
        &self.gate
    }

    /// `inner` behind this paywall: serve the result instead of `inner`.
    pub fn wrap<S: ServerHandler>(&self, inner: S) -> PaidServer<S, F> {
        PaidServer {
            inner,
            paywall: self.clone(),
        }
    }

    /// The price of `call`, if its tool is priced and this call is not free; a dynamic price
    /// is checked first.
    async fn price_of(&self, call: &ToolCall) -> Result<Option<RoutePrice>, McpError> {
        let Some(pricing) = self.tools.get(&call.name) else {
            return Ok(None);
        };
        match pricing {
            ToolPricing::Static(price) => Ok(Some((**price).clone())),
            ToolPricing::Dynamic(price) => {
                let Some(mut price) = price(call).await else {
                    return Ok(None);
                };
                let checked = if price.options.is_empty() {
                    Err(PriceError::NoOptions)
                } else {
                    self.gate.check_price(&mut price)
                };
                match checked {
                    Ok(()) => Ok(Some(price)),
                    Err(e) => {
                        tracing::error!(tool = %call.name, error = %e, "the tool's dynamic price is unusable");
                        Err(McpError::internal_error(
                            "this tool's price is misconfigured",
                            None,
                        ))
                    }
                }
            }
        }
    }
}

/// An `rmcp` server whose priced tools are paid for: see [`McpPaywall::wrap`].
pub struct PaidServer<S, F> {
    pub(crate) inner: S,
    paywall: McpPaywall<F>,
}

impl<S: std::fmt::Debug, F> std::fmt::Debug for PaidServer<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaidServer")
            .field("inner", &self.inner)
            .field("paywall", &self.paywall)
            .finish()
    }
}

impl<S, F> PaidServer<S, F> {
    /// The wrapped server.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: ServerHandler, F: Facilitator> PaidServer<S, F> {
    /// A `tools/call`: a free tool's goes to the inner server as it is.
    pub(crate) async fn call(
        &self,
        mut call: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if !self.paywall.is_priced(call.name.as_ref()) {
            return self.inner.call_tool(call, context).await;
        }
        // The payment leaves the request here: the tool never sees the buyer's authorization.
        let payment = wire::take_payment(&mut context.meta)
            .or_else(|| call.meta.as_mut().and_then(wire::take_payment));
        let tool = ToolCall {
            name: call.name.to_string(),
            arguments: call.arguments.clone(),
        };
        let Some(price) = self.paywall.price_of(&tool).await? else {
            return self.run(call, context).await;
        };
        let gate = &self.paywall.gate;
        let accepts = gate.accepts(&price).await.map_err(unavailable)?;
        let offer = Offer {
            resource: ResourceInfo {
                description: Some(
                    price
                        .description
                        .clone()
                        .unwrap_or_else(|| format!("Tool: {}", tool.name)),
                ),
                mime_type: Some(
                    price
                        .mime_type
                        .clone()
                        .unwrap_or_else(|| "application/json".into()),
                ),
                ..ResourceInfo::new(wire::tool_resource_url(&tool.name))
            },
            accepts,
            target: format!(
                "tools/call {} (arguments {:016x})",
                tool.name,
                wire::arguments_digest(tool.arguments.as_ref())
            ),
            extensions: price.offered_extensions(),
        };
        let presented = match payment {
            None => Presented::Nothing,
            // Some SDKs put the payment in as a JSON string.
            Some(Value::String(s)) => read_payment(serde_json::from_str(&s)),
            Some(v) => read_payment(serde_json::from_value(v)),
        };
        match gate.admit(offer, presented).await {
            Admission::Challenge(challenge) => Ok(challenge_result(&challenge)),
            Admission::Unavailable(e) => Err(unavailable(e)),
            Admission::Refused(refusal) => Ok(refusal_result(&refusal)),
            Admission::Deliver(paid) => Ok(deliver(paid)),
            // A payment operation (a refund): settled, answered with its body; the tool does
            // not run.
            Admission::Operation(paid) => {
                let (operation, receipt, _) = paid.into_parts();
                let result = CallToolResult::success(vec![rmcp::model::ContentBlock::text(
                    operation.body.to_string(),
                )]);
                Ok(with_receipt(
                    Ok(CallToolResponse::Complete(result)),
                    &receipt,
                ))
            }
            Admission::RunPaid(paid) => {
                // Settled on an earlier call before the tool ran: it runs now, once.
                let ran = self.run(call, context).await;
                let (_, receipt, _) = paid.into_parts();
                Ok(with_receipt(ran, &receipt))
            }
            Admission::Verified(payment) => match payment.mode() {
                SettlementMode::AfterHandler => {
                    let ran = self.run(call, context).await;
                    let result = match ran {
                        Ok(CallToolResponse::Complete(result)) if result.is_error != Some(true) => {
                            result
                        }
                        // A tool error, a protocol error, an input request: nothing delivered,
                        // nothing charged. The verified payment lapses unsettled.
                        Ok(CallToolResponse::Task(_)) => {
                            payment.handler_failed().await;
                            return Err(McpError::internal_error(
                                "a paid tool cannot answer with a task: its result could not be paid for",
                                None,
                            ));
                        }
                        other => {
                            payment.handler_failed().await;
                            return other;
                        }
                    };
                    Ok(match payment.settle_delivery(ToolOutput(result)).await {
                        Settlement::Paid(paid) => deliver(paid),
                        // The tool's output is withheld: nothing is delivered unpaid.
                        Settlement::Refused(challenge) | Settlement::Pending(challenge) => {
                            challenge_result(&challenge)
                        }
                        Settlement::Unavailable(e) => return Err(unavailable(e)),
                    })
                }
                SettlementMode::BeforeHandler => match payment.settle().await {
                    Settlement::Paid(paid) => {
                        let ran = self.run(call, context).await;
                        let (_, receipt, _) = paid.into_parts();
                        Ok(with_receipt(ran, &receipt))
                    }
                    Settlement::Refused(challenge) | Settlement::Pending(challenge) => {
                        Ok(challenge_result(&challenge))
                    }
                    Settlement::Unavailable(e) => Err(unavailable(e)),
                },
            },
        }
    }

    /// Runs the call on the inner server.
    async fn run(
        &self,
        call: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.inner.call_tool(call, context).await
    }
}

/// A payment read from `_meta`, or why it could not be.
fn read_payment(read: Result<AnyPaymentPayload, serde_json::Error>) -> Presented {
    match read {
        Ok(payment) => Presented::Payment(payment),
        Err(e) => Presented::Unreadable(format!("`_meta[\"{}\"]`: {e}", wire::PAYMENT_META_KEY)),
    }
}

/// A challenge as a tool result; a pending settlement also says when to retry.
fn challenge_result(challenge: &Challenge) -> CallToolResponse {
    let mut required = challenge.required.clone();
    if required.error.as_deref() == Some(tollgate_server::gate::NO_PAYMENT) {
        required.error = Some(NO_PAYMENT.into());
    }
    let mut result = wire::payment_required_result(&required);
    if let Some(seconds) = challenge.retry_after {
        wire::set_result_meta(&mut result, wire::RETRY_AFTER_META_KEY, seconds.into());
    }
    CallToolResponse::Complete(result)
}

/// An identity refusal as a tool result: `isError`, the gate's JSON body as structured content
/// and as text. Nothing was settled.
fn refusal_result(refusal: &IdentityRefusal) -> CallToolResponse {
    let body = refusal.body();
    let mut result = CallToolResult::error(vec![rmcp::model::ContentBlock::text(body.to_string())]);
    result.structured_content = Some(body);
    CallToolResponse::Complete(result)
}

/// A paid result with its receipt.
fn deliver(paid: Paid<ToolOutput>) -> CallToolResponse {
    let (ToolOutput(result), receipt, _) = paid.into_parts();
    with_receipt(Ok(CallToolResponse::Complete(result)), &receipt)
}

/// `ran` with the receipt in `_meta["x402/payment-response"]` (in the payer's protocol
/// version). With before-handler settlement the payment is final whatever the tool did, so a
/// failure still carries the receipt: a protocol error becomes an error result.
fn with_receipt(ran: Result<CallToolResponse, McpError>, receipt: &Receipt) -> CallToolResponse {
    let mut result = match ran {
        Ok(CallToolResponse::Complete(result)) => result,
        // Something other than a tool result (an input request, a task): passed on as it is.
        Ok(other) => return other,
        Err(e) => CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!(
            "the tool failed after the payment settled: {}",
            e.message
        ))]),
    };
    let value = match receipt.version {
        X402Version::V2 => serde_json::to_value(&receipt.settlement),
        X402Version::V1 => serde_json::to_value(SettleResponseV1::from(receipt.settlement.clone())),
    }
    .unwrap_or(Value::Null);
    wire::set_result_meta(&mut result, wire::PAYMENT_RESPONSE_META_KEY, value);
    CallToolResponse::Complete(result)
}

/// Nothing could be decided: a JSON-RPC internal error, nothing delivered (HTTP's `503`).
fn unavailable(e: Unavailable) -> McpError {
    tracing::warn!(error = %e, "paid tool call not decided");
    McpError::internal_error(
        e.label(),
        Some(serde_json::json!({ "x402": "unavailable" })),
    )
}
