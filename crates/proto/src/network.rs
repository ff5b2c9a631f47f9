//! Networks: CAIP-2 identifiers (v2) and the legacy v1 names.
//!
//! x402 v2 names a network by its [CAIP-2] id (`eip155:8453`, `solana:5eykt4…`); v1 used short
//! names (`base`, `base-sepolia`). Inside Tollgate a network is always a [`Network`] (CAIP-2);
//! [`NetworkV1`] is the wrapper that reads and writes the v1 spelling at the edge.
//!
//! [CAIP-2]: https://github.com/ChainAgnostic/CAIPs/blob/main/CAIPs/caip-2.md

use std::fmt;
use std::str::FromStr;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// Solana mainnet as CAIP-2 (the first 32 characters of its genesis hash).
pub const SOLANA_MAINNET: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// Solana devnet as CAIP-2.
pub const SOLANA_DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

/// v1 network names and the CAIP-2 ids they stand for: every name the official SDK (2.27)
/// knows — its EVM name ↔ chain-id table plus the two Solana names. Names and ids are unique,
/// so the table reads both ways.
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

/// A blockchain (or payment rail) network as a CAIP-2 id, `namespace:reference`.
///
/// Validated on construction — namespace `[-a-z0-9]{3,8}`, reference `[-_a-zA-Z0-9]{1,32}` — so
/// code holding a `Network` never re-checks it. Serializes as the CAIP-2 string and deserializes
/// strictly (a v1 name such as `"base"` is refused with a hint; use [`NetworkV1`] for v1 fields).
///
/// ```
/// use tollgate_proto::Network;
/// let base: Network = "eip155:8453".parse().unwrap();
/// assert_eq!(base.eip155_chain_id(), Some(8453));
/// assert_eq!(base.v1_name(), Some("base"));
/// assert_eq!(Network::from_v1_name("base"), Some(base.clone()));
/// assert_eq!(Network::parse_any("base").unwrap(), base);
/// assert_eq!(Network::eip155(31337).to_string(), "eip155:31337");
/// assert!("eip155".parse::<Network>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network {
    id: String,
    /// Byte offset of the `:`; derived from `id`, so it never changes equality or order.
    colon: usize,
}

/// Why a string is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Not of the form `namespace:reference`.
    #[error("network {input:?} is not a CAIP-2 id: {problem} (expected namespace:reference, e.g. \"eip155:8453\")")]
    NotCaip2 {
        /// The input.
        input: String,
        /// Which rule it breaks.
        problem: &'static str,
    },
    /// A v1 name where a CAIP-2 id is required.
    #[error("network {name:?} is an x402 v1 name; v2 messages use CAIP-2 ids: write {caip2:?}")]
    V1Name {
        /// The v1 name given.
        name: String,
        /// The CAIP-2 id to write instead.
        caip2: String,
    },
    /// Neither CAIP-2 nor a known v1 name.
    #[error("unknown network {0:?}: neither a CAIP-2 id (e.g. \"eip155:8453\") nor a known x402 v1 network name (e.g. \"base\")")]
    Unknown(String),
}

impl Network {
    /// The EVM chain `chain_id`, as `eip155:<chain_id>`.
    pub fn eip155(chain_id: u64) -> Self {
        Self {
            id: format!("eip155:{chain_id}"),
            colon: "eip155".len(),
        }
    }

    /// The CAIP-2 namespace, e.g. `eip155` or `solana`.
    pub fn namespace(&self) -> &str {
        &self.id[..self.colon]
    }

    /// The CAIP-2 reference, e.g. `8453`.
    pub fn reference(&self) -> &str {
        &self.id[self.colon + 1..]
    }

    /// The whole CAIP-2 id.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The EVM chain id, for `eip155` networks whose reference is a canonical decimal `u64`
    /// (no leading zeros, so each chain has exactly one spelling).
    pub fn eip155_chain_id(&self) -> Option<u64> {
        if self.namespace() != "eip155" {
            return None;
        }
        let r = self.reference();
        if (r.len() > 1 && r.starts_with('0')) || !r.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        r.parse().ok()
    }

    /// Whether this is an EVM chain (an `eip155` network with a numeric chain id).
    pub fn is_evm(&self) -> bool {
        self.eip155_chain_id().is_some()
    }

    /// The network a v1 name stands for (`"base"` → `eip155:8453`), if the name is known.
    pub fn from_v1_name(name: &str) -> Option<Self> {
        V1_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, id)| id.parse().ok())
    }

    /// The v1 name of this network, where v1 has one (`eip155:31337` has none).
    pub fn v1_name(&self) -> Option<&'static str> {
        V1_NAMES
            .iter()
            .find(|(_, id)| *id == self.id)
            .map(|(n, _)| *n)
    }

    /// Parses a CAIP-2 id or a v1 name — for human input and for lenient v1 decoding.
    pub fn parse_any(s: &str) -> Result<Self, NetworkError> {
        if let Some(n) = Self::from_v1_name(s) {
            return Ok(n);
        }
        s.parse().map_err(|e| match e {
            NetworkError::NotCaip2 { .. } => NetworkError::Unknown(s.to_owned()),
            other => other,
        })
    }

    /// Every v1 name with its network, in the SDK's order.
    pub fn v1_names() -> impl Iterator<Item = (&'static str, Network)> {
        V1_NAMES
            .iter()
            .filter_map(|(n, id)| id.parse().ok().map(|net| (*n, net)))
    }
}

fn check_caip2(s: &str) -> Result<usize, &'static str> {
    let colon = s.find(':').ok_or("missing ':'")?;
    let (ns, reference) = (&s[..colon], &s[colon + 1..]);
    let ns_ok = (3..=8).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ns_ok {
        return Err("the namespace must be 3-8 characters of [-a-z0-9]");
    }
    let ref_ok = (1..=32).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ref_ok {
        return Err("the reference must be 1-32 characters of [-_a-zA-Z0-9]");
    }
    Ok(colon)
}

impl FromStr for Network {
    type Err = NetworkError;

    /// Strict CAIP-2. A v1 name is refused with the CAIP-2 id to write instead.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match check_caip2(s) {
            Ok(colon) => Ok(Self {
                id: s.to_owned(),
                colon,
            }),
            Err(problem) => Err(match Self::from_v1_name(s) {
                Some(net) => NetworkError::V1Name {
                    name: s.to_owned(),
                    caip2: net.id,
                },
                None => NetworkError::NotCaip2 {
                    input: s.to_owned(),
                    problem,
                },
            }),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl AsRef<str> for Network {
    fn as_ref(&self) -> &str {
        &self.id
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

/// A network on the v1 wire: written as its v1 name (CAIP-2 when it has none, e.g. a local
/// chain), read from a v1 name or a CAIP-2 id.
///
/// ```
/// use tollgate_proto::{Network, NetworkV1};
/// let v1: NetworkV1 = serde_json::from_str("\"base-sepolia\"").unwrap();
/// assert_eq!(v1.0, Network::eip155(84532));
/// assert_eq!(serde_json::to_string(&v1).unwrap(), "\"base-sepolia\"");
/// let local = NetworkV1(Network::eip155(31337));
/// assert_eq!(serde_json::to_string(&local).unwrap(), "\"eip155:31337\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkV1(pub Network);

impl NetworkV1 {
    /// The v1 spelling: the v1 name, or the CAIP-2 id when there is none.
    pub fn as_str(&self) -> &str {
        self.0.v1_name().unwrap_or(self.0.as_str())
    }
}

impl fmt::Display for NetworkV1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NetworkV1 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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

impl From<NetworkV1> for Network {
    fn from(n: NetworkV1) -> Self {
        n.0
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
            "eip155:8453",
            SOLANA_MAINNET,
            SOLANA_DEVNET,
            "cosmos:cosmoshub-3",
            "ach:us",
            "sepa:eu",
            "bip122:000000000019d6689c085ae165831e93",
            "abc-def1:A_b-9",
        ] {
            let n: Network = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(n.to_string(), ok);
            assert_eq!(format!("{}:{}", n.namespace(), n.reference()), ok);
        }
        for bad in [
            "",
            ":",
            "eip155",
            ":1",
            "eip155:",
            "EIP155:1",
            "ei:1",
            "toolongns:1",
            "eip155:1:2",
            "eip155: 1",
            " eip155:1",
            "eip155:1 ",
            "eip_155:1",
            "eip155:1.0",
            "eip155:１",
            "eip155:123456789012345678901234567890123",
        ] {
            assert!(
                matches!(bad.parse::<Network>(), Err(NetworkError::NotCaip2 { .. })),
                "{bad:?} accepted"
            );
        }
        let err = "base".parse::<Network>().unwrap_err();
        assert_eq!(
            err,
            NetworkError::V1Name {
                name: "base".into(),
                caip2: "eip155:8453".into()
            }
        );
        assert!(err.to_string().contains("eip155:8453"), "{err}");
    }

    #[test]
    fn chain_ids() {
        assert_eq!(Network::eip155(8453).to_string(), "eip155:8453");
        assert_eq!(Network::eip155(8453), "eip155:8453".parse().unwrap());
        let local: Network = "eip155:31337".parse().unwrap();
        assert_eq!(local.eip155_chain_id(), Some(31337));
        assert!(local.is_evm());
        assert_eq!(local.v1_name(), None);
        assert_eq!(
            "eip155:0010".parse::<Network>().unwrap().eip155_chain_id(),
            None
        );
        assert_eq!(
            "eip155:abc".parse::<Network>().unwrap().eip155_chain_id(),
            None
        );
        assert_eq!(
            "eip155:99999999999999999999"
                .parse::<Network>()
                .unwrap()
                .eip155_chain_id(),
            None
        );
        let devnet: Network = SOLANA_DEVNET.parse().unwrap();
        assert_eq!(devnet.eip155_chain_id(), None);
        assert!(!devnet.is_evm());
        assert_eq!(devnet.namespace(), "solana");
    }

    #[test]
    fn v1_names_map_both_ways() {
        assert_eq!(Network::v1_names().count(), V1_NAMES.len());
        let mut ids = std::collections::HashSet::new();
        for (name, net) in Network::v1_names() {
            assert!(ids.insert(net.clone()), "{net} listed twice");
            assert_eq!(net.v1_name(), Some(name));
            assert_eq!(Network::from_v1_name(name), Some(net.clone()));
            assert_eq!(Network::parse_any(name).unwrap(), net);
            assert_eq!(Network::parse_any(net.as_str()).unwrap(), net);
            let v1 = serde_json::to_string(&NetworkV1(net.clone())).unwrap();
            assert_eq!(v1, format!("\"{name}\""));
            let back: NetworkV1 = serde_json::from_str(&v1).unwrap();
            assert_eq!(back.0, net);
            let from_caip2: NetworkV1 = serde_json::from_str(&format!("\"{net}\"")).unwrap();
            assert_eq!(from_caip2.0, net);
        }
        assert_eq!(
            Network::from_v1_name("solana").unwrap().as_str(),
            SOLANA_MAINNET
        );
        assert_eq!(
            Network::from_v1_name("solana-devnet").unwrap().as_str(),
            SOLANA_DEVNET
        );
        assert_eq!(
            Network::from_v1_name("polygon-amoy"),
            Some(Network::eip155(80002))
        );
        assert_eq!(Network::from_v1_name("Base"), None);
        assert_eq!(
            Network::parse_any("nowhere"),
            Err(NetworkError::Unknown("nowhere".into()))
        );
        // A chain without a v1 name is written as CAIP-2 on the v1 wire.
        let local = NetworkV1(Network::eip155(31337));
        assert_eq!(serde_json::to_string(&local).unwrap(), "\"eip155:31337\"");
        assert!(serde_json::from_str::<NetworkV1>("\"nowhere\"").is_err());
        // The v2 wire is strict: no v1 names.
        assert!(serde_json::from_str::<Network>("\"base\"").is_err());
        assert_eq!(
            serde_json::from_str::<Network>("\"eip155:8453\"").unwrap(),
            Network::eip155(8453)
        );
    }
}
