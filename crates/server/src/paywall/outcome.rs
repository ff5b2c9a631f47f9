//! [`PaywallOutcome`]: what the paywall did with a request, left in the response's extensions
//! for metrics and logs.
//!
//! The paywall is where outcomes are known (a challenge, a refusal and its reason, a paid
//! delivery), but it should not pick a metrics library for its users. So it only labels its
//! responses; a layer outside the paywall reads the label and counts it however it likes
//! (`tollgate proxy` feeds its Prometheus registry). Extensions never reach the wire.
//!
//! A refusal's label is its reason code, so that a dashboard tells a bad signature from a
//! replay. Reason codes are open-ended (a scheme's own codes, `invalid_exact_evm_*` and the
//! like, are not variants of the protocol crate's [`ErrorReason`], and a facilitator may send
//! new ones), while a metrics label set must stay bounded: a code is taken only when it is
//! shaped like one (`[a-z0-9_]`, at most 64 characters), and each paywall takes at most
//! [`ReasonLabelSet::MAX`] distinct codes besides the generic ones; any further code is
//! labelled `other`.
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
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use tollgate_proto::ErrorReason;

/// Longest string taken as a reason code label (the official SDK's longest is 52).
const MAX_CODE_LEN: usize = 64;

/// The label of a refusal whose code would grow the label set past its bound.
pub const OTHER_REASON: &str = "other";

/// What the paywall did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaywallOutcome {
    /// 402 to a request that carried no payment. (Challenges served from the paywall's cache
    /// or as the browser page carry no label: a 402 without one is a challenge.)
    Challenged,
    /// The payment was refused; 402 with the reason. `reason` is the x402 reason code when
    /// there is one (e.g. `invalid_exact_evm_signature`, `payment_in_use`), else one of
    /// `invalid_payment_header`, `no_matching_requirements`, `refused`; `other` when the
    /// paywall already labels [`ReasonLabelSet::MAX`] scheme-specific or unknown codes.
    Refused {
        /// Why, as a stable label.
        reason: Cow<'static, str>,
    },
    /// The settlement was sent and is not confirmed yet: 402 `settlement_pending`, the
    /// response kept for the buyer's retry.
    Pending,
    /// Delivered and settled; the response carries the receipt.
    Paid,
    /// A payment operation (a `batch-settlement` refund) settled and answered with its
    /// receipt; the handler did not run.
    Operation,
    /// Served without payment to a wallet that signed in (`sign-in-with-x`): it paid for the
    /// resource before, or the route is auth-only.
    SignedIn,
    /// The handler (or upstream) failed after verification; the buyer was not charged.
    HandlerFailed,
    /// 503: the facilitator could not be reached, or a pending response could not be kept.
    Unavailable,
}

impl PaywallOutcome {
    /// The label for metrics: `challenged`, `refused`, `pending`, `paid`, `operation`,
    /// `signed_in`, `handler_failed`, `unavailable`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Challenged => "challenged",
            Self::Refused { .. } => "refused",
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Operation => "operation",
            Self::SignedIn => "signed_in",
            Self::HandlerFailed => "handler_failed",
            Self::Unavailable => "unavailable",
        }
    }

    /// Reads the outcome of a 402 from the `error` text the paywall put in its challenge.
    ///
    /// The paywall words its refusals as `payment rejected: <reason>: …`, `settlement failed:
    /// <reason>: …` or `<reason>: …`; the leading reason code is taken when it is shaped like
    /// one ([`is_reason_code`]), so no message text becomes a label. The codes taken here are
    /// bounded in shape, not in number: a transport bounds them with a [`ReasonLabelSet`] (the
    /// paywall keeps one per instance).
    pub(crate) fn of_challenge(error: &str, no_payment: &str) -> Self {
        if error == no_payment {
            return Self::Challenged;
        }
        let rest = error
            .strip_prefix("payment rejected: ")
            .or_else(|| error.strip_prefix("settlement failed: "))
            .unwrap_or(error);
        let code = rest.split(':').next().unwrap_or_default();
        if code == ErrorReason::SettlementPending.as_str() {
            return Self::Pending;
        }
        let reason = if is_reason_code(code) {
            Cow::Owned(code.to_owned())
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

/// Whether `s` is shaped like an x402 reason code: `snake_case` of `[a-z0-9_]`, at most 64
/// characters, with an inner underscore (every code of the specs and the official SDK has one,
/// and a single word such as `timeout` is more likely prose than a code).
pub fn is_reason_code(s: &str) -> bool {
    s.len() <= MAX_CODE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.contains('_')
        && !s.starts_with('_')
        && !s.ends_with('_')
}

/// The reason labels one paywall has handed out, bounded.
///
/// The protocol crate's generic codes ([`ErrorReason::ALL`]) and the paywall's own labels are
/// a fixed set and always pass. Every other code — a scheme's own (`invalid_exact_evm_*`), or
/// whatever a facilitator sends — is new to the set the first time it is seen; once
/// [`Self::MAX`] of them are in, any further one is labelled [`OTHER_REASON`], so a facilitator
/// (or an attacker choosing what it answers) cannot grow a metrics registry without limit.
/// Codes seen before the bound was reached keep their label. A label the program spells itself
/// (`Cow::Borrowed`, a `'static` string: `refused`, `invalid_payment_header`, …) is one of a
/// fixed set and passes too.
#[derive(Debug, Default)]
pub struct ReasonLabelSet {
    seen: Mutex<HashSet<Box<str>>>,
}

impl ReasonLabelSet {
    /// Most distinct non-generic reason codes labelled by one set.
    pub const MAX: usize = 64;

    /// A set with no codes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `outcome`, with a refusal's reason replaced by [`OTHER_REASON`] when it is neither
    /// generic nor already in the set and the set is full.
    pub fn bound(&self, outcome: PaywallOutcome) -> PaywallOutcome {
        match outcome {
            PaywallOutcome::Refused {
                reason: Cow::Owned(code),
            } => PaywallOutcome::Refused {
                reason: self.label(code),
            },
            other => other,
        }
    }

    /// Bounds the [`PaywallOutcome`] in a response's extensions, if any (see [`Self::bound`]).
    pub fn bound_response<B>(&self, response: &mut http::Response<B>) {
        if let Some(outcome) = response.extensions_mut().remove::<PaywallOutcome>() {
            response.extensions_mut().insert(self.bound(outcome));
        }
    }

    /// How many non-generic codes the set holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the set holds no non-generic code yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn label(&self, code: String) -> Cow<'static, str> {
        if ErrorReason::from(code.as_str()).is_known() {
            return Cow::Owned(code);
        }
        let mut seen = self.lock();
        if seen.contains(code.as_str()) {
            Cow::Owned(code)
        } else if seen.len() < Self::MAX {
            seen.insert(code.as_str().into());
            Cow::Owned(code)
        } else {
            Cow::Borrowed(OTHER_REASON)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Box<str>>> {
        // The set stays consistent whatever panicked while holding it: an insert is atomic.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
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
        // A leading word not shaped like a reason code is not taken as one.
        assert_eq!(reason("payment rejected: : nothing"), "refused");
        assert_eq!(reason("something new: detail"), "refused");
        assert_eq!(reason("payment rejected: timeout: x"), "refused");
        assert_eq!(reason("payment rejected: Invalid_Code: x"), "refused");
        assert_eq!(reason("payment rejected: _code: x"), "refused");
        let long = format!("payment rejected: {}a: x", "a_".repeat(32));
        assert_eq!(reason(&long), "refused");
        // A code the protocol crate has no variant for (a facilitator's newer one) is a code.
        assert_eq!(
            reason("payment rejected: brand_new_code: x"),
            "brand_new_code"
        );
        let longest = "a_".repeat(31) + "ab";
        assert_eq!(reason(&format!("settlement failed: {longest}: x")), longest);
    }

    #[test]
    fn recognises_reason_codes() {
        for code in [
            "payment_in_use",
            "invalid_exact_evm_payload_authorization_value_mismatch",
            "invalid_upto_evm_payload_settlement_exceeds_amount",
            "permit2_2612_amount_mismatch",
            "eip6492_factory_not_allowed",
        ] {
            assert!(is_reason_code(code), "{code}");
        }
        for not_code in [
            "",
            "refused",
            "_",
            "a_",
            "_a",
            "a b_c",
            "a-b_c",
            "ünï_code",
            "A_B",
            &("a_".repeat(32) + "a"),
        ] {
            assert!(!is_reason_code(not_code), "{not_code:?}");
        }
    }

    fn refused(reason: &str) -> PaywallOutcome {
        PaywallOutcome::Refused {
            reason: Cow::Owned(reason.to_owned()),
        }
    }

    /// At most `MAX` distinct scheme-specific or unknown codes per set, then `other`; generic
    /// codes, codes already seen and the paywall's own labels always keep theirs; two sets
    /// (two paywalls) count apart.
    #[test]
    fn the_label_set_is_bounded_per_paywall() {
        let set = ReasonLabelSet::new();
        assert!(set.is_empty());
        assert_eq!(
            set.bound(refused("invalid_exact_evm_signature")),
            refused("invalid_exact_evm_signature")
        );
        for i in 1..ReasonLabelSet::MAX {
            let code = format!("code_{i}");
            assert_eq!(set.bound(refused(&code)), refused(&code));
        }
        assert_eq!(set.len(), ReasonLabelSet::MAX);
        // Full: a new code is `other`, and is not remembered.
        for code in ["code_64", "invalid_exact_svm_transaction", "code_65"] {
            assert_eq!(
                set.bound(refused(code)),
                PaywallOutcome::Refused {
                    reason: Cow::Borrowed(OTHER_REASON)
                }
            );
        }
        assert_eq!(set.len(), ReasonLabelSet::MAX);
        // Seen before the bound: still labelled.
        assert_eq!(
            set.bound(refused("invalid_exact_evm_signature")),
            refused("invalid_exact_evm_signature")
        );
        assert_eq!(set.bound(refused("code_63")), refused("code_63"));
        // Every generic code passes and takes no room.
        for generic in ErrorReason::ALL {
            assert_eq!(
                set.bound(refused(generic.as_str())),
                refused(generic.as_str())
            );
        }
        assert_eq!(set.len(), ReasonLabelSet::MAX);
        // The paywall's own labels and the other outcomes pass untouched.
        let own = PaywallOutcome::Refused {
            reason: Cow::Borrowed("invalid_payment_header"),
        };
        assert_eq!(set.bound(own.clone()), own);
        for outcome in [
            PaywallOutcome::Challenged,
            PaywallOutcome::Pending,
            PaywallOutcome::Paid,
            PaywallOutcome::SignedIn,
            PaywallOutcome::HandlerFailed,
            PaywallOutcome::Unavailable,
        ] {
            assert_eq!(set.bound(outcome.clone()), outcome);
        }
        // Another paywall has a set of its own.
        let other = ReasonLabelSet::new();
        assert_eq!(other.bound(refused("code_64")), refused("code_64"));
        // In a response's extensions.
        let mut response = http::Response::new(());
        response.extensions_mut().insert(refused("code_99"));
        set.bound_response(&mut response);
        assert_eq!(
            response.extensions().get::<PaywallOutcome>(),
            Some(&PaywallOutcome::Refused {
                reason: Cow::Borrowed(OTHER_REASON)
            })
        );
        let mut unlabelled = http::Response::new(());
        set.bound_response(&mut unlabelled);
        assert!(unlabelled.extensions().get::<PaywallOutcome>().is_none());
    }
}
