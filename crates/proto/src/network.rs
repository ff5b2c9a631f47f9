//! Networks: CAIP-2 identifiers (v2) and the legacy v1 names.

use std::fmt;
use std::str::FromStr;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// Solana mainnet as CAIP-2 (the genesis-hash prefix).
pub const SOLANA_MAINNET: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// Solana devnet as CAIP-2.
pub const SOLANA_DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

/// v1 network names and the CAIP-2 ids they stand for: every name the official SDK knows.
const V1_NAMES: &[(&str, &str)] = &[
    ("ethereum", "eip155:1"),
    ("sepolia", "eip155:11155111"),
    ("abstract", "eip155:2741"),
    ("abstract-testnet", "eip155:11124"),
    ("base", "eip155:8453"),
    ("base-sepolia", "eip155:84532"),
    ("avalanche", "eip155:43114"),
    ("avalanche-fuji", "eip155:43113"),
    ("iotex", "eip155:4689"),
    ("sei", "eip155:1329"),
    ("sei-testnet", "eip155:1328"),
    ("polygon", "eip155:137"),
    ("polygon-amoy", "eip155:80002"),
    ("peaq", "eip155:3338"),
    ("story", "eip155:1514"),
    ("educhain", "eip155:41923"),
    ("skale-base-sepolia", "eip155:324705682"),
    ("megaeth", "eip155:4326"),
    ("monad", "eip155:143"),
    ("stable", "eip155:988"),
    ("stable-testnet", "eip155:2201"),
    ("celo", "eip155:42220"),
    ("flare", "eip155:14"),
    ("solana", SOLANA_MAINNET),
    ("solana-devnet", SOLANA_DEVNET),
];

/// A blockchain network as a CAIP-2 id, `namespace:reference` (e.g. `eip155:8453`).
///
/// Validated on construction: namespace `[-a-z0-9]{3,8}`, reference `[-_a-zA-Z0-9]{1,32}`.
///
/// ```
/// use tollgate_proto::Network;
/// let base: Network = "eip155:8453".parse().unwrap();
/// assert_eq!(base.eip155_chain_id(), Some(8453));
/// assert_eq!(base.v1_name(), Some("base"));
/// assert_eq!(Network::from_v1_name("base"), Some(base));
/// assert!("eip155".parse::<Network>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network {
    id: String,
    colon: usize,
}

/// Why a string is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Not `namespace:reference`.
    #[error("network {0:?} is not a CAIP-2 id (expected namespace:reference, e.g. eip155:8453)")]
    NotCaip2(String),
    /// Neither CAIP-2 nor a known v1 name.
    #[error("unknown network {0:?}: not a CAIP-2 id and not a known v1 network name")]
    Unknown(String),
}

impl Network {
    /// The EVM chain `chain_id`, as `eip155:<chain_id>`.
    pub fn eip155(chain_id: u64) -> Self {
        let id = format!("eip155:{chain_id}");
        Self { id, colon: 6 }
    }

    /// The CAIP-2 namespace, e.g. `eip155` or `solana`.
    pub fn namespace(&self) -> &str {
        &self.id[..self.colon]
    }

    /// The CAIP-2 reference, e.g. `8453`.
    pub fn reference(&self) -> &str {
        &self.id[self.colon + 1..]
    }

    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The EVM chain id, for `eip155` networks.
    pub fn eip155_chain_id(&self) -> Option<u64> {
        if self.namespace() != "eip155" {
            return None;
        }
        let r = self.reference();
        // CAIP-2 references are canonical decimals: no leading zeros.
        if r.len() > 1 && r.starts_with('0') {
            return None;
        }
        r.parse().ok()
    }

    /// Whether this is an EVM chain.
    pub fn is_evm(&self) -> bool {
        self.eip155_chain_id().is_some()
    }

    /// The network a v1 name stands for.
    pub fn from_v1_name(name: &str) -> Option<Self> {
        V1_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, id)| id.parse().ok())
    }

    /// The v1 name of this network, where v1 has one.
    pub fn v1_name(&self) -> Option<&'static str> {
        V1_NAMES
            .iter()
            .find(|(_, id)| *id == self.id)
            .map(|(n, _)| *n)
    }

    /// Parses a CAIP-2 id or a v1 name (for human input and lenient v1 decoding).
    pub fn parse_any(s: &str) -> Result<Self, NetworkError> {
        if let Some(n) = Self::from_v1_name(s) {
            return Ok(n);
        }
        s.parse().map_err(|_| NetworkError::Unknown(s.to_owned()))
    }

    /// Every v1 name with its network.
    pub fn v1_names() -> impl Iterator<Item = (&'static str, Network)> {
        V1_NAMES
            .iter()
            .filter_map(|(n, id)| id.parse().ok().map(|net| (*n, net)))
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetworkError::NotCaip2(s.to_owned());
        let colon = s.find(':').ok_or_else(bad)?;
        let (ns, reference) = (&s[..colon], &s[colon + 1..]);
        let ns_ok = (3..=8).contains(&ns.len())
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ref_ok = (1..=32).contains(&reference.len())
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ns_ok || !ref_ok {
            return Err(bad());
        }
        Ok(Self {
            id: s.to_owned(),
            colon,
        })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// A network on the v1 wire: written as its v1 name (CAIP-2 when it has none), read from a v1
/// name or a CAIP-2 id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkV1(pub Network);

impl Serialize for NetworkV1 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.v1_name() {
            Some(name) => s.serialize_str(name),
            None => self.0.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for NetworkV1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Network::parse_any(&s)
            .map(NetworkV1)
            .map_err(D::Error::custom)
    }
}

impl From<Network> for NetworkV1 {
    fn from(n: Network) -> Self {
        Self(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caip2_validation() {
        for ok in [
            "eip155:1",
            "eip155:31337",
            SOLANA_MAINNET,
            "cosmos:cosmoshub-3",
            "ach:us",
        ] {
            let _: Network = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "eip155",
            ":1",
            "eip155:",
            "EIP155:1",
            "ei:1",
            "toolongns:1",
            "eip155:1:2",
            "eip155: 1",
            "eip155:123456789012345678901234567890123",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(Network::eip155(8453).to_string(), "eip155:8453");
        assert_eq!(
            "eip155:0010".parse::<Network>().unwrap().eip155_chain_id(),
            None
        );
        assert_eq!(
            SOLANA_DEVNET.parse::<Network>().unwrap().eip155_chain_id(),
            None
        );
    }

    #[test]
    fn v1_names_map_both_ways() {
        assert_eq!(Network::v1_names().count(), V1_NAMES.len());
        for (name, net) in Network::v1_names() {
            assert_eq!(net.v1_name(), Some(name));
            assert_eq!(Network::from_v1_name(name), Some(net.clone()));
            let v1 = serde_json::to_string(&NetworkV1(net.clone())).unwrap();
            assert_eq!(v1, format!("\"{name}\""));
            let back: NetworkV1 = serde_json::from_str(&v1).unwrap();
            assert_eq!(back.0, net);
        }
        // A chain without a v1 name is written as CAIP-2 on the v1 wire.
        let local = NetworkV1(Network::eip155(31337));
        assert_eq!(serde_json::to_string(&local).unwrap(), "\"eip155:31337\"");
        assert!(serde_json::from_str::<NetworkV1>("\"nowhere\"").is_err());
        // The v2 wire is strict: no v1 names.
        assert!(serde_json::from_str::<Network>("\"base\"").is_err());
    }
}
