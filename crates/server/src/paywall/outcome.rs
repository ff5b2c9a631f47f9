//! [`PaywallOutcome`]: what the paywall did with a request, left in the response's extensions
//! for metrics and logs.
//!
//! The paywall is where outcomes are known (a challenge, a refusal and its reason, a paid
//! delivery), but it should not pick a metrics library for its users. So it only labels its
//! responses; a layer outside the paywall reads the label and counts it however it likes
//! (`tollgate proxy` feeds its Prometheus registry). Extensions never reach the wire.
//!
//! ```
//! # use tollgate_server::paywall::PaywallOutcome;
//! # fn count(response: &http::Response<axum::body::Body>) {
//! match response.extensions().get::<PaywallOutcome>() {
//!     Some(PaywallOutcome::Paid) => { /* delivered and settled */ }
//!     Some(PaywallOutcome::Refused { reason }) => { /* 402 with `reason` */ }
//!     Some(_) => {}
//!     // A 402 without a label is a plain challenge; anything else was not priced.
//!     None => {}
//! }
//! # }
//! ```

use std::borrow::Cow;

use tollgate_proto::ErrorReason;

/// What the paywall did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaywallOutcome {
    /// 402 to a request that carried no payment. (Challenges served from the paywall's cache
    /// or as the browser page carry no label: a 402 without one is a challenge.)
    Challenged,
    /// The payment was refused; 402 with the reason. `reason` is the x402 reason code when
    /// there is one (e.g. `invalid_exact_evm_signature`, `payment_in_use`), else one of
    /// `invalid_payment_header`, `no_matching_requirements`, `refused`.
    Refused {
        /// Why, as a stable label.
        reason: Cow<'static, str>,
    },
    /// The settlement was sent and is not confirmed yet: 402 `settlement_pending`, the
    /// response kept for the buyer's retry.
    Pending,
    /// Delivered and settled; the response carries the receipt.
    Paid,
    /// The handler (or upstream) failed after verification; the buyer was not charged.
    HandlerFailed,
    /// 503: the facilitator could not be reached, or a pending response could not be kept.
    Unavailable,
}

impl PaywallOutcome {
    /// The label for metrics: `challenged`, `refused`, `pending`, `paid`, `handler_failed`,
    /// `unavailable`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Challenged => "challenged",
            Self::Refused { .. } => "refused",
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::HandlerFailed => "handler_failed",
            Self::Unavailable => "unavailable",
        }
    }

    /// Reads the outcome of a 402 from the `error` text the paywall put in its challenge.
    ///
    /// The paywall words its refusals as `payment rejected: <reason>: …`, `settlement failed:
    /// <reason>: …` or `<reason>: …`; the leading reason code is taken when it is one of
    /// x402's, so neither a new message nor a facilitator's unknown code invents a label.
    pub(crate) fn of_challenge(error: &str, no_payment: &str) -> Self {
        if error == no_payment {
            return Self::Challenged;
        }
        let rest = error
            .strip_prefix("payment rejected: ")
            .or_else(|| error.strip_prefix("settlement failed: "))
            .unwrap_or(error);
        let code = rest.split(':').next().unwrap_or_default();
        if code == ErrorReason::SettlementPending.to_string() {
            return Self::Pending;
        }
        let known = ErrorReason::from(code);
        // Only x402's own codes become labels: the set stays bounded whatever a message says.
        let reason = if known.is_known() {
            Cow::Owned(known.as_str().to_owned())
        } else if error.starts_with("invalid payment header") {
            Cow::Borrowed("invalid_payment_header")
        } else if error.starts_with("the payment's `accepted`")
            || (error.starts_with("no ") && error.ends_with("is accepted for this resource"))
        {
            Cow::Borrowed("no_matching_requirements")
        } else {
            Cow::Borrowed("refused")
        };
        Self::Refused { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_PAYMENT: &str = "PAYMENT-SIGNATURE header is required";

    fn reason(error: &str) -> String {
        match PaywallOutcome::of_challenge(error, NO_PAYMENT) {
            PaywallOutcome::Refused { reason } => reason.into_owned(),
            other => panic!("{error}: {other:?}"),
        }
    }

    #[test]
    fn reads_the_paywalls_own_wording() {
        assert_eq!(
            PaywallOutcome::of_challenge(NO_PAYMENT, NO_PAYMENT),
            PaywallOutcome::Challenged
        );
        assert_eq!(
            PaywallOutcome::of_challenge(
                "settlement_pending: the transfer was sent; retry with the same payment in 5 s",
                NO_PAYMENT
            ),
            PaywallOutcome::Pending
        );
        assert_eq!(
            reason("payment rejected: invalid_exact_evm_signature: bad v"),
            "invalid_exact_evm_signature"
        );
        assert_eq!(
            reason("settlement failed: invalid_exact_evm_insufficient_balance: "),
            "invalid_exact_evm_insufficient_balance"
        );
        assert_eq!(
            reason("payment_in_use: this payment is already being used by another request"),
            "payment_in_use"
        );
        assert_eq!(
            reason("invalid payment header: not base64"),
            "invalid_payment_header"
        );
        assert_eq!(
            reason("the payment's `accepted` matches none of this resource's requirements"),
            "no_matching_requirements"
        );
        assert_eq!(
            reason("no exact payment on eip155:1 is accepted for this resource"),
            "no_matching_requirements"
        );
        // An unknown leading word is not taken as a reason code.
        assert_eq!(reason("payment rejected: : nothing"), "refused");
        assert_eq!(reason("something new: detail"), "refused");
        assert_eq!(reason("payment rejected: brand_new_code: x"), "refused");
    }
}
