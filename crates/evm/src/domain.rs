//! The EIP-712 domain a payment is signed under.

use alloy::primitives::Address;
use alloy::sol_types::Eip712Domain;
use tollgate_proto::{asset, PaymentRequirements};

/// The token's EIP-712 signing domain for one set of payment requirements.
///
/// Name and version come from the requirements' `extra.name` / `extra.version` (that is how a
/// seller names a token nobody else knows about), else from the table of known assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomain {
    /// The token's EIP-712 `name` (e.g. "USD Coin").
    pub name: String,
    /// The token's EIP-712 `version` (e.g. "2").
    pub version: String,
    /// The chain id from the requirements' CAIP-2 network.
    pub chain_id: u64,
    /// The token contract.
    pub verifying_contract: Address,
}

/// Why no signing domain can be derived from the requirements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The network is not `eip155:<chain id>`.
    #[error("network {0} is not an EVM (eip155) network")]
    NotEvm(String),
    /// `asset` is not a 20-byte hex address.
    #[error("asset {asset:?} is not an EVM address: {reason}")]
    BadAsset {
        /// The offending value.
        asset: String,
        /// Parser message.
        reason: String,
    },
    /// Neither `extra` nor the known-asset table names the token's domain.
    #[error(
        "no EIP-712 name/version for asset {asset} on {network}: set extra.name and extra.version"
    )]
    Missing {
        /// The asset.
        asset: String,
        /// The network.
        network: String,
    },
}

impl TokenDomain {
    /// Derives the domain for `requirements`.
    pub fn resolve(requirements: &PaymentRequirements) -> Result<Self, DomainError> {
        let network = &requirements.network;
        let chain_id = network
            .eip155_chain_id()
            .ok_or_else(|| DomainError::NotEvm(network.to_string()))?;
        let verifying_contract =
            parse_address(&requirements.asset).map_err(|reason| DomainError::BadAsset {
                asset: requirements.asset.clone(),
                reason,
            })?;
        let from_extra = requirements.extra.as_ref().and_then(|extra| {
            let name = extra.get("name")?.as_str()?;
            let version = extra.get("version")?.as_str()?;
            Some((name.to_owned(), version.to_owned()))
        });
        let (name, version) = match from_extra {
            Some(pair) => pair,
            None => {
                let known = asset::find_asset(network, &requirements.asset)
                    .and_then(|a| a.eip712.as_ref())
                    .ok_or_else(|| DomainError::Missing {
                        asset: requirements.asset.clone(),
                        network: network.to_string(),
                    })?;
                (known.name.to_owned(), known.version.to_owned())
            }
        };
        Ok(Self {
            name,
            version,
            chain_id,
            verifying_contract,
        })
    }

    /// As alloy's EIP-712 domain.
    pub fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(self.name.clone().into()),
            Some(self.version.clone().into()),
            Some(alloy::primitives::U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }
}

/// Parses a 0x address in any letter case (checksums are not enforced on input: peers send
/// lowercase addresses too).
pub fn parse_address(s: &str) -> Result<Address, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| "missing 0x prefix".to_string())?;
    if hex.len() != 40 {
        return Err(format!("expected 40 hex digits, got {}", hex.len()));
    }
    let mut out = [0u8; 20];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).map_err(|_| "not ASCII".to_string())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| format!("bad hex digit in {pair:?}"))?;
    }
    Ok(Address::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_in_any_case() {
        let a = parse_address("0x209693bc6afc0c5328ba36faf03c514ef312287c").unwrap();
        let b = parse_address("0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap();
        assert_eq!(a, b);
        assert!(parse_address("209693bc6afc0c5328ba36faf03c514ef312287c").is_err());
        assert!(parse_address("0x209693bc6afc0c5328ba36faf03c514ef31228").is_err());
        assert!(parse_address("0x209693bc6afc0c5328ba36faf03c514ef31228zz").is_err());
        assert!(parse_address("0xé09693bc6afc0c5328ba36faf03c514ef312287").is_err());
    }
}
