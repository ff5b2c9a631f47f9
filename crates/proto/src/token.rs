//! [`Token`]: an owned description of a token a price can be given in.
//!
//! [`KnownAsset`](crate::asset::KnownAsset) covers the tokens the protocol knows at compile
//! time; a token deployed elsewhere — a local devnet's test USDC, a project's own stablecoin —
//! is described at run time with this type. The seller prices in it (the paywall derives the
//! atomic amount from `decimals` and the signing domain for `extra` from `eip712_*`) and the
//! buyer's spending policy learns its symbol and decimals from it, so neither side hand-writes
//! EIP-712 metadata or decimals. It lives in the protocol crate because the crate that knows a
//! token (a devnet, a config loader) and the crates that price and pay in it do not depend on
//! each other.

use serde_json::{Map, Value};

use crate::asset::KnownAsset;
use crate::Network;

/// A token on one network: address, symbol, decimals and, for tokens paid by signed typed
/// data (EIP-3009), the EIP-712 domain buyers sign over.
///
/// ```
/// use tollgate_proto::token::Token;
/// let usdc = Token::new("eip155:31337".parse().unwrap(), "0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6)
///     .eip712("USD Coin", "2");
/// assert_eq!(usdc.requirements_extra()["name"], "USD Coin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token {
    /// The network the token lives on.
    pub network: Network,
    /// The token's address, as it appears in requirements' `asset`.
    pub address: String,
    /// Ticker, e.g. `"USDC"`; spending limits are written per symbol.
    pub symbol: String,
    /// Decimals of the atomic unit.
    pub decimals: u8,
    /// The EIP-712 domain `(name, version)` of the token contract, when payments are signed
    /// typed data. A wrong value makes every signature valid for nothing, so it comes from
    /// whoever deployed or inspected the token, never from a guess.
    pub eip712: Option<(String, String)>,
}

impl Token {
    /// A token without a signing domain; add one with [`eip712`](Self::eip712).
    pub fn new(network: Network, address: &str, symbol: &str, decimals: u8) -> Self {
        Self {
            network,
            address: address.to_owned(),
            symbol: symbol.to_owned(),
            decimals,
            eip712: None,
        }
    }

    /// Sets the EIP-712 domain name and version buyers sign over.
    pub fn eip712(mut self, name: &str, version: &str) -> Self {
        self.eip712 = Some((name.to_owned(), version.to_owned()));
        self
    }

    /// What a requirement's `extra` carries for this token: `{"name": …, "version": …}` when
    /// it has a signing domain, otherwise nothing.
    pub fn requirements_extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        if let Some((name, version)) = &self.eip712 {
            extra.insert("name".into(), name.clone().into());
            extra.insert("version".into(), version.clone().into());
        }
        extra
    }

    /// The same description for a token of the known-asset table. `None` when the table's
    /// network id does not parse, or the token moves by a non-default transfer method (whose
    /// `extra` this type does not describe).
    pub fn from_known(asset: &KnownAsset) -> Option<Self> {
        if asset.transfer_method.is_some() {
            return None;
        }
        let mut token = Self::new(
            asset.network()?,
            asset.address,
            asset.symbol,
            asset.decimals,
        );
        token.eip712 = asset
            .eip712
            .map(|d| (d.name.to_owned(), d.version.to_owned()));
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_is_empty_without_a_signing_domain() {
        let t = Token::new("eip155:1".parse().unwrap(), "0xabc", "TKN", 18);
        assert!(t.requirements_extra().is_empty());
    }

    #[test]
    fn known_usdc_converts_with_its_domain() {
        let base: Network = "eip155:8453".parse().unwrap();
        let known = crate::asset::default_asset(&base).unwrap();
        let token = Token::from_known(known).unwrap();
        assert_eq!(token.decimals, 6);
        assert_eq!(token.symbol, "USDC");
        assert_eq!(token.requirements_extra(), known.requirements_extra());
    }
}
