//! Identity for sellers that gate on it: the identity headers an agent may send, and how a
//! seller's refusal (`403 identity_check_failed`) is read.
//!
//! A seller's identity gate runs only on a paid request and checks the payer its facilitator
//! verified; it may also read an operator credential (`X-Operator-Token`) and a claimed wallet
//! (`X-Wallet-Address`). Those are the agent's secrets and its linkability: they are sent
//! **only** when configured, **only** on the paid retry (never on the first, unpaid request,
//! which any URL can trigger), and **only** to a payee — the chosen option's `payTo` — on the
//! allow-list given with the header. The `payTo` is what decides, not the URL's host: it is
//! whom the money and the identity go to, and one host may front many payees.
//!
//! A gate refuses with `403` and a JSON body naming each failed rule and its remedy, *before*
//! anything is settled: [`IdentityRefusal::from_body`] reads it, and the pay-flow releases the
//! reservation (see [`crate::flow`]).

use std::fmt;

use http::{HeaderName, HeaderValue};

/// `X-Operator-Token`: an operator credential a gate can check with its identity provider.
pub const OPERATOR_TOKEN: HeaderName = HeaderName::from_static("x-operator-token");
/// `X-Wallet-Address`: the wallet the agent says it pays from (a gate checks the verified payer,
/// whatever this claims).
pub const WALLET_ADDRESS: HeaderName = HeaderName::from_static("x-wallet-address");

/// The identity headers this client knows how to send, for error messages.
const ALLOWED: &str = "X-Operator-Token, X-Wallet-Address";

/// Why an identity header could not be configured. Never carries the header's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityConfigError {
    /// Not one of the identity headers gates read.
    #[error("{0:?} is not an identity header (allowed: {ALLOWED})")]
    NotAllowed(String),
    /// The value cannot be sent in an HTTP header (control characters, non-ASCII…).
    #[error("the value of {0} is not a valid HTTP header value")]
    BadValue(&'static str),
    /// No payee named: the header would never be sent, which is surely not what was meant.
    #[error("{0} is configured for no payee: name the payTo addresses that may receive it")]
    NoPayee(&'static str),
}

/// One configured header: its name, its value (a secret), and the payees it may go to.
#[derive(Clone)]
struct Entry {
    name: HeaderName,
    value: HeaderValue,
    payees: Vec<String>,
}

/// The identity headers an agent sends to the payees it names, and to no one else.
///
/// Empty by default (nothing is sent). Debug output names the headers and payees, never the
/// values; the values are marked sensitive, so `http`'s own Debug and HTTP/2 header
/// compression treat them as secrets too.
///
/// ```
/// use tollgate_client::IdentityHeaders;
/// let payee = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// let ids = IdentityHeaders::new()
///     .with("X-Operator-Token", "op_secret", [payee])?
///     .with("X-Wallet-Address", "0x1111111111111111111111111111111111111111", [payee])?;
/// // payTo is compared case-insensitively for 0x addresses.
/// assert_eq!(ids.for_payee(&payee.to_lowercase()).len(), 2);
/// assert_eq!(ids.for_payee("0x0000000000000000000000000000000000000001").len(), 0);
/// assert!(!format!("{ids:?}").contains("op_secret"));
/// assert!(IdentityHeaders::new().with("Authorization", "x", [payee]).is_err());
/// # Ok::<(), tollgate_client::IdentityConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct IdentityHeaders {
    entries: Vec<Entry>,
}

impl fmt::Debug for IdentityHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for e in &self.entries {
            list.entry(&format_args!(
                "{}: <redacted> for {:?}",
                e.name.as_str(),
                e.payees
            ));
        }
        list.finish()
    }
}

impl IdentityHeaders {
    /// No identity headers: nothing is sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds header `name` (`X-Operator-Token` or `X-Wallet-Address`, any case) with `value`,
    /// sent on paid requests to the payees in `for_payees` (the `payTo` of the option paid)
    /// only. Several entries of one name for different payees may coexist; for one payee the
    /// last added wins.
    pub fn with<P: AsRef<str>>(
        mut self,
        name: &str,
        value: &str,
        for_payees: impl IntoIterator<Item = P>,
    ) -> Result<Self, IdentityConfigError> {
        let name = identity_header(name)?;
        let label = display_name(&name);
        let mut value =
            HeaderValue::from_str(value).map_err(|_| IdentityConfigError::BadValue(label))?;
        value.set_sensitive(true);
        let payees: Vec<String> = for_payees
            .into_iter()
            .map(|p| p.as_ref().trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if payees.is_empty() {
            return Err(IdentityConfigError::NoPayee(label));
        }
        self.entries.push(Entry {
            name,
            value,
            payees,
        });
        Ok(self)
    }

    /// Whether no header is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The headers to send to `pay_to`: those configured for it, each name once (the last
    /// entry for it wins).
    pub fn for_payee(&self, pay_to: &str) -> Vec<(&HeaderName, &HeaderValue)> {
        let mut out: Vec<(&HeaderName, &HeaderValue)> = Vec::new();
        let listed = |e: &&Entry| e.payees.iter().any(|p| same_payee(p, pay_to));
        for e in self.entries.iter().rev().filter(listed) {
            if !out.iter().any(|(name, _)| **name == e.name) {
                out.push((&e.name, &e.value));
            }
        }
        out
    }
}

/// `name` as one of the identity headers, or why not.
fn identity_header(name: &str) -> Result<HeaderName, IdentityConfigError> {
    let trimmed = name.trim();
    [OPERATOR_TOKEN, WALLET_ADDRESS]
        .into_iter()
        .find(|h| h.as_str().eq_ignore_ascii_case(trimmed))
        .ok_or_else(|| IdentityConfigError::NotAllowed(trimmed.to_owned()))
}

fn display_name(name: &HeaderName) -> &'static str {
    if *name == OPERATOR_TOKEN {
        "X-Operator-Token"
    } else {
        "X-Wallet-Address"
    }
}

/// Whether two payee addresses are the same: `0x` hex addresses regardless of case (EIP-55
/// checksums only change case), anything else (a base58 Solana address) exactly.
fn same_payee(a: &str, b: &str) -> bool {
    let hex = |s: &str| s.starts_with("0x") || s.starts_with("0X");
    if hex(a) && hex(b) {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// The most of a refusal body that is read; a gate's JSON is far smaller.
pub(crate) const MAX_REFUSAL_BODY: usize = 16 * 1024;
/// The most checks kept from one refusal.
const MAX_CHECKS: usize = 32;
/// The most characters kept of any one text a seller sent (a reason, a remedy, the raw body).
pub(crate) const MAX_TEXT: usize = 500;

/// One rule a seller's identity gate evaluated, as it reported it. Texts are the seller's,
/// bounded in length and stripped of control characters (they end up on a terminal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCheck {
    /// The rule (`require_sanctions_clear`, `require_kyc`, `min_age`, …).
    pub rule: String,
    /// Whether it passed (a check without the field counts as failed: it came with a refusal).
    pub passed: bool,
    /// Why it failed.
    pub reason: Option<String>,
    /// What the payer can do about it.
    pub remedy: Option<String>,
}

/// A seller's identity gate's refusal, read from its `403` body: `{"error":
/// "identity_check_failed", "payer": "0x…", "checks": [{"rule", "passed", "reason",
/// "remedy"}, …]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRefusal {
    /// The payer the gate checked (the one its facilitator verified).
    pub payer: Option<String>,
    /// The rules it evaluated.
    pub checks: Vec<IdentityCheck>,
}

impl IdentityRefusal {
    /// The refusal in a `403` body, if the body is a gate's `identity_check_failed` JSON;
    /// `None` for anything else. Never panics; keeps at most a bounded amount of it.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value.get("error")?.as_str()? != "identity_check_failed" {
            return None;
        }
        let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(bounded);
        let checks = value
            .get("checks")
            .and_then(|c| c.as_array())
            .map(|checks| {
                checks
                    .iter()
                    .filter(|c| c.is_object())
                    .take(MAX_CHECKS)
                    .map(|c| IdentityCheck {
                        rule: text(c.get("rule")).unwrap_or_else(|| "unnamed rule".into()),
                        passed: c.get("passed").and_then(|p| p.as_bool()).unwrap_or(false),
                        reason: text(c.get("reason")),
                        remedy: text(c.get("remedy")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            payer: text(value.get("payer")),
            checks,
        })
    }

    /// The failed rules' names, comma-separated (for the ledger's reason).
    pub(crate) fn failed_rules(&self) -> String {
        let failed: Vec<&str> = failed(&self.checks).map(|c| c.rule.as_str()).collect();
        if failed.is_empty() {
            "no rule named".into()
        } else {
            failed.join(", ")
        }
    }
}

/// The checks that failed.
pub(crate) fn failed(checks: &[IdentityCheck]) -> impl Iterator<Item = &IdentityCheck> {
    checks.iter().filter(|c| !c.passed)
}

/// `text` without control characters, cut at [`MAX_TEXT`] characters.
pub(crate) fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// The message of [`PaymentError::IdentityRefused`](crate::PaymentError::IdentityRefused):
/// each failed rule with its reason and remedy, and what became of the reservation.
pub(crate) fn refusal_message(
    payer: &Option<String>,
    checks: &[IdentityCheck],
    detail: &Option<String>,
    held: &bool,
) -> String {
    let mut out = format!(
        "the seller's identity gate refused {} (403)",
        payer.as_deref().unwrap_or("the payer")
    );
    let mut any = false;
    for c in failed(checks) {
        out.push_str(if any { "; " } else { ": " });
        any = true;
        out.push_str(&c.rule);
        if let Some(reason) = &c.reason {
            out.push_str(&format!(" failed ({reason})"));
        } else {
            out.push_str(" failed");
        }
        if let Some(remedy) = &c.remedy {
            out.push_str(&format!(", remedy: {remedy}"));
        }
    }
    if let Some(detail) = detail {
        out.push_str(&format!(": {detail}"));
    }
    out.push_str(if *held {
        " (not a gate's identity_check_failed answer, so the amount stays reserved until \
         reconciliation)"
    } else {
        " (nothing was settled: the reservation was released)"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identity_headers_with_payees_and_valid_values_are_accepted() {
        let p = ["0xab"];
        assert!(IdentityHeaders::new()
            .with("x-operator-token", "t", p)
            .is_ok());
        assert!(IdentityHeaders::new()
            .with(" X-Wallet-Address ", "0x1", p)
            .is_ok());
        let err = IdentityHeaders::new()
            .with("Authorization", "t", p)
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("X-Operator-Token, X-Wallet-Address"));
        let err = IdentityHeaders::new()
            .with("X-Operator-Token", "se\ncret", p)
            .unwrap_err();
        assert_eq!(err, IdentityConfigError::BadValue("X-Operator-Token"));
        assert!(!err.to_string().contains("se"), "{err}");
        let none: [&str; 0] = [];
        assert_eq!(
            IdentityHeaders::new()
                .with("X-Operator-Token", "t", none)
                .unwrap_err(),
            IdentityConfigError::NoPayee("X-Operator-Token")
        );
        assert!(IdentityHeaders::new()
            .with("X-Operator-Token", "t", [" "])
            .is_err());
    }

    #[test]
    fn headers_go_to_listed_payees_only_and_the_last_entry_wins() {
        let ids = IdentityHeaders::new()
            .with("X-Operator-Token", "old", ["0xAB", "SoLaNa1"])
            .unwrap()
            .with("X-Operator-Token", "new", ["0xab"])
            .unwrap()
            .with("X-Wallet-Address", "0x1", ["0xCD"])
            .unwrap();
        let sent = |payee: &str| -> Vec<(String, String)> {
            ids.for_payee(payee)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect()
        };
        assert_eq!(sent("0xaB"), [("x-operator-token".into(), "new".into())]);
        assert_eq!(sent("SoLaNa1"), [("x-operator-token".into(), "old".into())]);
        assert!(sent("solana1").is_empty());
        assert_eq!(sent("0xcd"), [("x-wallet-address".into(), "0x1".into())]);
        assert!(sent("0xef").is_empty());
        assert!(IdentityHeaders::new().for_payee("0xab").is_empty());
        let debug = format!("{ids:?}");
        assert!(!debug.contains("old") && !debug.contains("new"), "{debug}");
        assert!(debug.contains("x-operator-token: <redacted>"), "{debug}");
    }

    #[test]
    fn a_gate_refusal_is_read_bounded_and_anything_else_is_not_one() {
        let body = serde_json::json!({
            "error": "identity_check_failed",
            "payer": "0xabc",
            "checks": [
                {"rule": "require_sanctions_clear", "passed": false,
                 "reason": "listed\u{1b}[31m", "remedy": "contact support"},
                {"rule": "min_age", "passed": true},
                {"rule": "require_kyc", "reason": "x".repeat(2000)},
                "not an object",
            ]
        });
        let r = IdentityRefusal::from_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(r.payer.as_deref(), Some("0xabc"));
        assert_eq!(r.checks.len(), 3);
        assert_eq!(r.checks[0].reason.as_deref(), Some("listed [31m"));
        assert!(!r.checks[2].passed);
        assert_eq!(
            r.checks[2].reason.as_ref().unwrap().chars().count(),
            MAX_TEXT + 1
        );
        assert_eq!(r.failed_rules(), "require_sanctions_clear, require_kyc");
        let message = refusal_message(&r.payer, &r.checks, &None, &false);
        assert!(message
            .contains("require_sanctions_clear failed (listed [31m), remedy: contact support"));
        assert!(!message.contains("min_age"), "{message}");
        assert!(message.contains("reservation was released"), "{message}");

        assert!(IdentityRefusal::from_body(b"forbidden").is_none());
        assert!(IdentityRefusal::from_body(br#"{"error":"forbidden"}"#).is_none());
        assert!(IdentityRefusal::from_body(br#"{"error":7}"#).is_none());
        let bare = IdentityRefusal::from_body(br#"{"error":"identity_check_failed"}"#).unwrap();
        assert!(bare.checks.is_empty() && bare.payer.is_none());
        let many: Vec<_> = (0..100)
            .map(|i| serde_json::json!({"rule": format!("r{i}"), "passed": false}))
            .collect();
        let body = serde_json::json!({"error": "identity_check_failed", "checks": many});
        assert_eq!(
            IdentityRefusal::from_body(body.to_string().as_bytes())
                .unwrap()
                .checks
                .len(),
            MAX_CHECKS
        );
    }
}
