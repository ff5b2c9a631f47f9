//! The buyer's side: an `rmcp` client that pays for tool calls.
//!
//! [`McpPayer`] is `tollgate-client`'s [`PayFlow`] — the wallets, the [`SpendingPolicy`], the
//! [`SpendLedger`] and its reconciliation, exactly as the HTTP middleware uses them — adapted
//! to the MCP transport: a tool result that is a payment-required result is read into a
//! [`Challenge`], the flow chooses, reserves and signs once, and the call is sent again with
//! the payment in `_meta["x402/payment"]`; the receipt in `_meta["x402/payment-response"]`
//! marks the ledger row paid. [`PayingClient`] binds a payer to one connection's
//! [`Peer`].

use std::borrow::Cow;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{Peer, ServiceError};
use rmcp::RoleClient;
use serde_json::Value;
use tollgate_client::ledger::{Attempt, LedgerError};
use tollgate_client::{
    AnswerStatus, Challenge, IdentityCheck, IdentityRefusal, PayFlow, PaymentError, PaymentOutcome,
    PaymentReceipt, PaymentSigner, PendingPayment, PendingRetries, PreparedPayment, Refusal,
    SellerAnswer, SpendLedger, SpendingPolicy, DEFAULT_MAX_RETRY_WAIT, DEFAULT_PENDING_RETRIES,
};
use tollgate_proto::v1::PaymentPayloadV1;
use tollgate_proto::X402Version;

use crate::wire;

/// The ledger's "method" for a paid tool call (its "URL" is the tool's resource URL).
pub const LEDGER_METHOD: &str = "tools/call";

/// A tool call's result, and what was paid for it.
#[derive(Debug, Clone)]
pub struct PaidToolResult {
    /// The tool's result (its `_meta` still holds the receipt as the seller sent it).
    pub result: CallToolResult,
    /// The settlement, when the call was paid and settled; `None` for a free tool.
    pub receipt: Option<PaymentReceipt>,
    /// A payment whose outcome is unknown (the seller answered without a receipt, e.g. the
    /// tool failed after the payment was verified): its amount stays reserved until
    /// [`PayFlow::reconcile`] asks the chain.
    pub pending: Option<PendingPayment>,
}

/// Why a tool call could not be paid for.
#[derive(Debug, thiserror::Error)]
pub enum McpPaymentError {
    /// The spending policy refused (over a budget, over the per-request maximum, a network,
    /// asset or payee not allowed, declined by the approval hook). Nothing was signed.
    #[error("payment refused by policy: {0}")]
    Refused(Refusal),
    /// None of the seller's requirements can be paid by these wallets (scheme or network).
    /// Nothing was signed.
    #[error("no acceptable payment requirements for tool {tool:?}: {detail}")]
    NoAcceptableRequirements {
        /// The tool.
        tool: String,
        /// The wallets' refusal.
        detail: String,
    },
    /// The payment-required result could not be read.
    #[error("tool {tool:?}: {source}")]
    BadChallenge {
        /// The tool.
        tool: String,
        /// Why.
        #[source]
        source: wire::BadChallenge,
    },
    /// The seller refused the payment before running the tool (verification failed, a copy
    /// of it is in use…).
    #[error("tool {tool:?}: payment rejected by the seller: {error}")]
    PaymentRejected {
        /// The tool.
        tool: String,
        /// The seller's reason.
        error: String,
        /// Whether the amount stays reserved (`pending`): only a reason proving the signed
        /// authorization unusable releases it.
        held: bool,
    },
    /// The tool ran but its payment did not settle: its output was withheld by the seller.
    #[error("tool {tool:?}: settlement failed: {error}")]
    SettlementFailed {
        /// The tool.
        tool: String,
        /// The seller's reason.
        error: String,
        /// Whether the amount stays reserved (`pending`).
        held: bool,
    },
    /// The seller still reports the settlement pending after the retries: the amount stays
    /// reserved (`pending`) until [`PayFlow::reconcile`] learns from the chain whether the
    /// transfer landed. The seller keeps the tool's result for a retry of the same payment.
    #[error("tool {tool:?}: settlement still pending: {}", .pending.reason)]
    SettlementPending {
        /// The tool.
        tool: String,
        /// The held payment.
        pending: PendingPayment,
    },
    /// The seller's identity gate refused the verified payer; nothing was settled.
    #[error("tool {tool:?}: the seller's identity gate refused payer {}: {}", .payer.as_deref().unwrap_or("?"), failed_rules(.checks))]
    IdentityRefused {
        /// The tool.
        tool: String,
        /// The payer the gate checked.
        payer: Option<String>,
        /// The rules it evaluated.
        checks: Vec<IdentityCheck>,
    },
    /// The MCP call itself failed (transport closed, a JSON-RPC error). When it was the paid
    /// call, the amount stays reserved: the seller may have received the payment.
    #[error("MCP call of tool {tool:?} failed: {source}")]
    Service {
        /// The tool.
        tool: String,
        /// The `rmcp` error.
        #[source]
        source: ServiceError,
    },
    /// Signing, or the spend ledger, failed before anything was sent.
    #[error(transparent)]
    Payment(PaymentError),
    /// The spend ledger failed while recording the seller's answer.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl McpPaymentError {
    /// Whether a budget or the per-request maximum refused the payment.
    pub fn is_over_budget(&self) -> bool {
        matches!(
            self,
            Self::Refused(
                Refusal::OverBudget { .. }
                    | Refusal::OverMaxPerRequest { .. }
                    | Refusal::OverMaxDeposit { .. }
            )
        )
    }

    fn from_payment(tool: &str, e: PaymentError) -> Self {
        match e {
            PaymentError::Refused(Refusal::Unsupported(detail)) => Self::NoAcceptableRequirements {
                tool: tool.to_owned(),
                detail,
            },
            PaymentError::Refused(r) => Self::Refused(r),
            PaymentError::BadChallenge(detail) => Self::BadChallenge {
                tool: tool.to_owned(),
                source: wire::BadChallenge(detail),
            },
            other => Self::Payment(other),
        }
    }
}

fn failed_rules(checks: &[IdentityCheck]) -> String {
    let failed: Vec<_> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.rule.as_str())
        .collect();
    if failed.is_empty() {
        "no rule given".into()
    } else {
        failed.join(", ")
    }
}

/// Pays for MCP tool calls: a [`PayFlow`] (wallets, spending policy, spend ledger) and how
/// long to wait for a settlement the seller reports pending. Cheap to clone.
#[derive(Debug, Clone)]
pub struct McpPayer {
    flow: PayFlow,
    pending_retries: u32,
    max_retry_wait: Duration,
}

impl McpPayer {
    /// Pays with `wallet` (one wallet, or several as `tollgate_client::Wallets`) under
    /// `policy`, recording every attempt in `ledger`.
    pub fn new(wallet: impl PaymentSigner, policy: SpendingPolicy, ledger: SpendLedger) -> Self {
        Self::from_flow(PayFlow::new(wallet, policy, ledger))
    }

    /// Pays through `flow` — e.g. the one an HTTP `X402Middleware` uses
    /// (`X402Middleware::flow`), so that HTTP and MCP payments share budgets and ledger.
    pub fn from_flow(flow: PayFlow) -> Self {
        Self {
            flow,
            pending_retries: DEFAULT_PENDING_RETRIES,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
        }
    }

    /// How many times a payment whose settlement the seller reports pending is sent again,
    /// and the longest wait before each (defaults: `DEFAULT_PENDING_RETRIES`,
    /// `DEFAULT_MAX_RETRY_WAIT`).
    pub fn pending_retries(mut self, retries: u32, max_wait: Duration) -> Self {
        self.pending_retries = retries;
        self.max_retry_wait = max_wait;
        self
    }

    /// The pay-flow (its ledger, policy, reconciliation).
    pub fn flow(&self) -> &PayFlow {
        &self.flow
    }

    /// Calls a tool on `peer`, paying if it answers with a payment-required result.
    ///
    /// The call is first sent as given. A result that is not a payment-required result is
    /// returned as it is (a free tool, or a tool's own error). Otherwise one of the seller's
    /// requirements is chosen, reserved and signed — once — and the call is sent again with
    /// the payment in `_meta["x402/payment"]`; while the seller answers `settlement_pending`
    /// the *same* payment is resent. A settled result comes back with its receipt, recorded
    /// as paid in the ledger.
    pub async fn call_tool(
        &self,
        peer: &Peer<RoleClient>,
        params: CallToolRequestParams,
    ) -> Result<PaidToolResult, McpPaymentError> {
        let tool = params.name.to_string();
        let service = |source| McpPaymentError::Service {
            tool: tool.clone(),
            source,
        };
        let first = peer.call_tool(params.clone()).await.map_err(service)?;
        let required = match wire::read_payment_required(&first) {
            None => {
                return Ok(PaidToolResult {
                    result: first,
                    receipt: None,
                    pending: None,
                })
            }
            Some(Err(source)) => return Err(McpPaymentError::BadChallenge { tool, source }),
            Some(Ok(required)) => required,
        };
        let challenge = Challenge::from(required);
        let url = challenge
            .resource
            .as_ref()
            .map(|r| r.url.clone())
            .unwrap_or_else(|| wire::tool_resource_url(&tool));
        let attempt = Attempt {
            method: LEDGER_METHOD,
            url: &url,
        };
        let payment = self
            .flow
            .pay(challenge, &attempt)
            .await
            .map_err(|e| McpPaymentError::from_payment(&tool, e))?;
        let mut paid_params = params;
        let value = match encode_payment(&payment) {
            Ok(v) => v,
            Err(e) => {
                // Never sent: nothing can move.
                self.flow
                    .record_not_sent(&payment, "payment not encodable as JSON")?;
                return Err(McpPaymentError::BadChallenge {
                    tool,
                    source: wire::BadChallenge(e.to_string()),
                });
            }
        };
        wire::attach_payment(&mut paid_params.meta, value);
        let mut resends = PendingRetries::new(self.pending_retries, self.max_retry_wait);
        let (result, answer) = loop {
            // The same call with the same payment: a retry of this attempt, never a second
            // payment.
            let result = match peer.call_tool(paid_params.clone()).await {
                Ok(result) => result,
                Err(source) => {
                    // The payment may have reached the seller before the call failed.
                    self.flow.record_no_answer(
                        &payment,
                        &format!("no answer to the payment: {source}"),
                    )?;
                    return Err(McpPaymentError::Service { tool, source });
                }
            };
            let answer = read_answer(&result);
            let wait = retry_after(&result);
            if let Some(wait) = resends.next(&payment, &answer, wait, unix_now()) {
                tracing::info!(%tool, wait_s = wait.as_secs(), "settlement pending: retrying the same payment");
                tokio::time::sleep(wait).await;
                continue;
            }
            break (result, answer);
        };
        let outcome = self.flow.record(&payment, &answer)?;
        let held = !matches!(outcome, PaymentOutcome::Refused { .. });
        match (answer.status, outcome) {
            (AnswerStatus::IdentityRefused(refusal), _) => Err(McpPaymentError::IdentityRefused {
                tool,
                payer: refusal.payer,
                checks: refusal.checks,
            }),
            (_, PaymentOutcome::Paid(receipt)) => Ok(PaidToolResult {
                result,
                receipt: Some(receipt),
                pending: None,
            }),
            (AnswerStatus::PaymentRequired { .. }, PaymentOutcome::Pending(pending))
                if pending_settlement(&result) =>
            {
                Err(McpPaymentError::SettlementPending { tool, pending })
            }
            (AnswerStatus::PaymentRequired { error }, _) => {
                let error = error.unwrap_or_default();
                if is_settlement_failure(&error) {
                    Err(McpPaymentError::SettlementFailed { tool, error, held })
                } else {
                    Err(McpPaymentError::PaymentRejected { tool, error, held })
                }
            }
            (_, PaymentOutcome::Pending(pending)) => Ok(PaidToolResult {
                result,
                receipt: None,
                pending: Some(pending),
            }),
            (_, PaymentOutcome::Refused { reason, .. }) => Err(McpPaymentError::PaymentRejected {
                tool,
                error: reason,
                held: false,
            }),
        }
    }
}

/// The payment as it goes in `_meta`: the v2 `PaymentPayload`, or the v1 form for a v1
/// challenge.
fn encode_payment(payment: &PreparedPayment) -> Result<Value, serde_json::Error> {
    match payment.version() {
        X402Version::V2 => serde_json::to_value(payment.payload()),
        X402Version::V1 => serde_json::to_value(PaymentPayloadV1::from_v2(payment.payload())),
    }
}

/// The seller's answer to a paid call, as the flow reads answers.
fn read_answer(result: &CallToolResult) -> SellerAnswer {
    let status = if result.is_error != Some(true) {
        AnswerStatus::Served
    } else if let Some(required) = wire::read_payment_required(result) {
        AnswerStatus::PaymentRequired {
            error: required.ok().and_then(|r| Challenge::from(r).error),
        }
    } else if let Some(refusal) = wire::error_object(result, "identity_check_failed")
        .and_then(|body| IdentityRefusal::from_body(body.to_string().as_bytes()))
    {
        AnswerStatus::IdentityRefused(refusal)
    } else if matches!(wire::read_settlement(result), Some(Ok(ref s)) if s.success) {
        // A tool that failed after its payment settled (a seller settling before the tool
        // runs): the seller's receipt says it was paid, like any served result's.
        AnswerStatus::Served
    } else {
        AnswerStatus::Other("tool error result".into())
    };
    SellerAnswer {
        status,
        receipt: wire::read_settlement(result),
    }
}

/// Whether a payment-required answer is a `settlement_pending` one.
fn pending_settlement(result: &CallToolResult) -> bool {
    read_answer(result).settlement_pending()
}

/// Whether the seller's error says settlement failed (Tollgate: `settlement failed: …`; the
/// official SDKs: `Payment settlement failed: …`, `Settlement failed`).
fn is_settlement_failure(error: &str) -> bool {
    error.to_ascii_lowercase().contains("settlement failed")
}

/// The seller's wait before resending a pending payment (`_meta["tollgate/retry-after"]`), one
/// second when it does not say.
fn retry_after(result: &CallToolResult) -> Duration {
    result
        .meta
        .as_ref()
        .and_then(|m| m.0.get(wire::RETRY_AFTER_META_KEY))
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1))
}

/// An MCP client connection that pays for tool calls: a [`Peer`] and an [`McpPayer`].
#[derive(Debug, Clone)]
pub struct PayingClient {
    peer: Peer<RoleClient>,
    payer: McpPayer,
}

impl PayingClient {
    /// Pays for the tools called through `peer` (from `RunningService::peer`) with `payer`.
    pub fn new(peer: Peer<RoleClient>, payer: McpPayer) -> Self {
        Self { peer, payer }
    }

    /// Calls tool `name` with `arguments`, paying if asked: see [`McpPayer::call_tool`].
    pub async fn call_tool(
        &self,
        name: impl Into<Cow<'static, str>>,
        arguments: Option<JsonObject>,
    ) -> Result<PaidToolResult, McpPaymentError> {
        let mut params = CallToolRequestParams::new(name);
        params.arguments = arguments;
        self.payer.call_tool(&self.peer, params).await
    }

    /// Calls a tool with full request parameters (its own `_meta`, e.g. a progress token).
    pub async fn call(
        &self,
        params: CallToolRequestParams,
    ) -> Result<PaidToolResult, McpPaymentError> {
        self.payer.call_tool(&self.peer, params).await
    }

    /// The connection.
    pub fn peer(&self) -> &Peer<RoleClient> {
        &self.peer
    }

    /// The payer.
    pub fn payer(&self) -> &McpPayer {
        &self.payer
    }
}

/// This machine's Unix time, for [`PendingRetries::next`].
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
