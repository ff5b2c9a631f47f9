//! `exact` on EVM as a seller prices with it: [`ExactEvmServer`], the
//! [`SchemeServer`](tollgate_core::SchemeServer) that checks a price's payee.
//!
//! A seller's `pay_to` is typed by hand into code or a config file, and nothing on the seller's
//! side ever sends money to it: a typo (`"0xSELLER"`, a truncated address, the zero address)
//! is only discovered when the first buyer's payment fails, or — worse, for a well-formed but
//! mistyped address — when money arrives somewhere else. This module refuses what can be
//! refused when the price is built: anything that is not 20 bytes of hex, the zero address
//! (tokens refuse transfers to it, so every payment would fail), and a mixed-case address
//! whose EIP-55 checksum does not match (the checksum exists to catch exactly the typo that
//! still parses). The accepted payee is returned checksummed, so the buyer sees the one
//! canonical spelling.

use alloy::primitives::Address;
use tollgate_core::SchemeServer;
use tollgate_proto::{Network, Scheme};

/// The `exact` scheme on EVM networks (`eip155:*`), as a seller's paywall uses it. Register it
/// in the paywall's scheme registry so that every `exact` price on an EVM network has its
/// payee checked and checksummed when the route is priced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactEvmServer;

impl ExactEvmServer {
    /// The scheme server.
    pub fn new() -> Self {
        Self
    }
}

/// Parses `pay_to` as an EVM payee: `0x` and 40 hex digits, not the zero address, and — when
/// written in mixed case — with a valid EIP-55 checksum. Returns the address, or why `pay_to`
/// cannot be paid (the caller names the value: the paywall's error reads `pay_to "0xSELLER"
/// cannot be paid on eip155:8453: not an EVM address: …`).
///
/// ```
/// use tollgate_evm::server::parse_payee;
/// assert_eq!(
///     parse_payee("0x209693bc6afc0c5328ba36faf03c514ef312287c").unwrap().to_checksum(None),
///     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
/// );
/// assert!(parse_payee("0xSELLER").unwrap_err().contains("40 hex digits"));
/// ```
pub fn parse_payee(pay_to: &str) -> Result<Address, String> {
    let hex = pay_to
        .strip_prefix("0x")
        .or_else(|| pay_to.strip_prefix("0X"))
        .ok_or_else(|| format!("pay_to {pay_to:?} is not an EVM address: it must start with 0x"))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not an EVM address: expected 0x and 40 hex digits (20 bytes)".to_owned());
    }
    let mut bytes = [0u8; 20];
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        bytes[i] = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    let address = Address::from(bytes);
    if address.is_zero() {
        return Err("the zero address: tokens refuse transfers to it".to_owned());
    }
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        let expected = address.to_checksum(None);
        if expected[2..] != *hex {
            return Err(format!(
                "fails its EIP-55 checksum (expected {expected}): a digit is probably mistyped"
            ));
        }
    }
    Ok(address)
}

/// The value of one hex digit (already checked to be one).
fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

impl SchemeServer for ExactEvmServer {
    fn scheme(&self) -> Scheme {
        Scheme::Exact
    }

    fn parse_pay_to(&self, network: &Network, pay_to: &str) -> Result<String, String> {
        if network.namespace() != "eip155" {
            return Err(format!(
                "{network} is not an EVM network: the exact EVM scheme cannot be paid there"
            ));
        }
        parse_payee(pay_to).map(|a| a.to_checksum(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Network {
        "eip155:8453".parse().unwrap()
    }

    #[test]
    fn payees_come_back_checksummed_in_any_case() {
        let server = ExactEvmServer::new();
        let checksummed = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
        for spelling in [
            checksummed,
            "0x209693bc6afc0c5328ba36faf03c514ef312287c",
            "0X209693BC6AFC0C5328BA36FAF03C514EF312287C",
        ] {
            assert_eq!(
                server.parse_pay_to(&base(), spelling).as_deref(),
                Ok(checksummed),
                "{spelling}"
            );
        }
    }

    #[test]
    fn malformed_zero_and_mistyped_payees_are_refused_saying_why() {
        let server = ExactEvmServer::new();
        for (bad, why) in [
            ("0xSELLER", "40 hex digits"),
            ("", "must start with 0x"),
            ("0x", "40 hex digits"),
            (
                "209693bc6afc0c5328ba36faf03c514ef312287c",
                "must start with 0x",
            ),
            ("0x209693bc6afc0c5328ba36faf03c514ef31228", "40 hex digits"),
            (
                "0x209693bc6afc0c5328ba36faf03c514ef312287c00",
                "40 hex digits",
            ),
            (
                "0x+09693bc6afc0c5328ba36faf03c514ef312287c",
                "40 hex digits",
            ),
            (
                "0x 09693bc6afc0c5328ba36faf03c514ef312287c",
                "40 hex digits",
            ),
            ("0x0000000000000000000000000000000000000000", "zero address"),
            // One letter's case flipped: the checksum catches it.
            (
                "0x209693Bc6afc0C5328bA36FaF03C514EF312287c",
                "EIP-55 checksum",
            ),
        ] {
            let err = server.parse_pay_to(&base(), bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let solana: Network = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".parse().unwrap();
        assert!(server
            .parse_pay_to(&solana, "0x209693bc6afc0c5328ba36faf03c514ef312287c")
            .is_err());
        assert_eq!(server.scheme(), Scheme::Exact);
    }
}
