//! `batch-settlement` as a seller prices with it ([`SchemeServer`]).

use tollgate_core::server::PaymentOperation;
use tollgate_core::SchemeServer;
use tollgate_proto::{Network, PaymentPayload, PaymentRequirements, Scheme, SupportedKind};

use super::MIN_WITHDRAW_DELAY;
use crate::server::parse_payee;

/// `batch-settlement` on EVM networks, as a seller offers it: payees checked like `exact`'s;
/// the offer completed with the facilitator's receiver authorizer (from `/supported`) when the
/// route names none, and with the shortest withdraw delay when it names none; and **metered**:
/// the seller settles each request for its actual charge, at most the price (the voucher covers
/// the price; the charge is what the channel manager commits). A `refund` payload is a
/// [`PaymentOperation`]: verified and settled (by the seller's
/// [`ChannelManager`](super::channels::ChannelManager)) and answered without the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSettlementEvmServer;

impl SchemeServer for BatchSettlementEvmServer {
    fn scheme(&self) -> Scheme {
        Scheme::BatchSettlement
    }

    fn parse_pay_to(&self, network: &Network, pay_to: &str) -> Result<String, String> {
        if network.namespace() != "eip155" {
            return Err(format!(
                "{network} is not an EVM network: the batch-settlement EVM scheme cannot be paid there"
            ));
        }
        parse_payee(pay_to).map(|a| a.to_checksum(None))
    }

    fn enrich(&self, requirements: &mut PaymentRequirements, kind: &SupportedKind) {
        let extra = requirements.extra.get_or_insert_with(Default::default);
        if !extra.contains_key("receiverAuthorizer") {
            if let Some(authorizer) = kind
                .extra
                .as_ref()
                .and_then(|e| e.get("receiverAuthorizer"))
            {
                extra.insert("receiverAuthorizer".into(), authorizer.clone());
            }
        }
        extra
            .entry("withdrawDelay")
            .or_insert_with(|| MIN_WITHDRAW_DELAY.into());
    }

    fn metered(&self) -> bool {
        true
    }

    /// A `refund` payload (whatever else it holds: a malformed one is refused by the
    /// verification, never served); the body is the official server's.
    fn operation(&self, payment: &PaymentPayload) -> Option<PaymentOperation> {
        if payment.payload.get("type").and_then(|t| t.as_str()) != Some("refund") {
            return None;
        }
        let channel = payment
            .payload
            .get("voucher")
            .and_then(|v| v.get("channelId"))
            .cloned()
            .unwrap_or_default();
        Some(PaymentOperation {
            kind: "refund",
            body: serde_json::json!({"message": "Refund acknowledged", "channelId": channel}),
        })
    }
}
