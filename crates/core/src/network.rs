//! Which networks a registration covers.

use std::fmt;
use std::str::FromStr;

use tollgate_proto::Network;

/// A set of CAIP-2 networks: one network (`eip155:8453`), every network of a namespace
/// (`eip155:*`), or a list (`eip155:8453,eip155:137`).
///
/// ```
/// use tollgate_core::NetworkPattern;
/// use tollgate_proto::Network;
/// let base: Network = "eip155:8453".parse().unwrap();
/// let evm: NetworkPattern = "eip155:*".parse().unwrap();
/// assert!(evm.matches(&base));
/// assert!(!evm.matches(&"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".parse().unwrap()));
/// let two: NetworkPattern = "eip155:8453, eip155:137".parse().unwrap();
/// assert!(two.matches(&base));
/// assert!("eip155".parse::<NetworkPattern>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkPattern {
    /// Exactly this network.
    One(Network),
    /// Every network of this CAIP-2 namespace (`eip155`, `solana`).
    Namespace(String),
    /// Any of these networks (at least two, sorted, no repeats).
    List(Vec<Network>),
}

/// Why a string is not a network pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network pattern {input:?}: {reason} (expected `eip155:8453`, `eip155:*` or a comma-separated list of networks)")]
pub struct NetworkPatternError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl NetworkPattern {
    /// Whether `network` is in the set.
    pub fn matches(&self, network: &Network) -> bool {
        match self {
            Self::One(n) => n == network,
            Self::Namespace(ns) => network.namespace() == ns,
            Self::List(list) => list.contains(network),
        }
    }

    /// How narrow the pattern is, for picking the most specific of several matches: one
    /// network (2) beats a list (1) beats a namespace (0).
    pub fn specificity(&self) -> u8 {
        match self {
            Self::One(_) => 2,
            Self::List(_) => 1,
            Self::Namespace(_) => 0,
        }
    }

    /// Whether some network is in both sets. Two registrations of one scheme with overlapping
    /// patterns of equal specificity would make the choice between them arbitrary.
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Namespace(a), Self::Namespace(b)) => a == b,
            (Self::Namespace(ns), Self::One(n)) | (Self::One(n), Self::Namespace(ns)) => {
                n.namespace() == ns
            }
            (Self::Namespace(ns), Self::List(l)) | (Self::List(l), Self::Namespace(ns)) => {
                l.iter().any(|n| n.namespace() == ns)
            }
            (a, b) => a.networks().iter().any(|n| b.matches(n)),
        }
    }

    /// The networks named one by one (empty for a namespace).
    pub fn networks(&self) -> &[Network] {
        match self {
            Self::One(n) => std::slice::from_ref(n),
            Self::List(l) => l,
            Self::Namespace(_) => &[],
        }
    }
}

impl From<Network> for NetworkPattern {
    fn from(n: Network) -> Self {
        Self::One(n)
    }
}

impl FromStr for NetworkPattern {
    type Err = NetworkPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| NetworkPatternError {
            input: s.to_owned(),
            reason,
        };
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() == 1 {
            let part = parts[0];
            if let Some(ns) = part.strip_suffix(":*") {
                let valid = (3..=8).contains(&ns.len())
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                return if valid {
                    Ok(Self::Namespace(ns.to_owned()))
                } else {
                    Err(err(format!("{ns:?} is not a CAIP-2 namespace")))
                };
            }
            return part
                .parse::<Network>()
                .map(Self::One)
                .map_err(|e| err(e.to_string()));
        }
        let mut list = Vec::with_capacity(parts.len());
        for part in parts {
            if part.ends_with(":*") {
                return Err(err("a list names networks, not namespaces".into()));
            }
            list.push(part.parse::<Network>().map_err(|e| err(e.to_string()))?);
        }
        list.sort();
        list.dedup();
        Ok(match list.len() {
            1 => Self::One(list.remove(0)),
            _ => Self::List(list),
        })
    }
}

impl fmt::Display for NetworkPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(n) => write!(f, "{n}"),
            Self::Namespace(ns) => write!(f, "{ns}:*"),
            Self::List(l) => {
                for (i, n) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
        }
    }
}

impl serde::Serialize for NetworkPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NetworkPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NetworkPattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_round_trip_and_reject_garbage() {
        for s in ["eip155:8453", "eip155:*", "eip155:137,eip155:8453"] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(
            p("eip155:8453, eip155:137").to_string(),
            "eip155:137,eip155:8453"
        );
        assert_eq!(p("eip155:1,eip155:1"), p("eip155:1"));
        for bad in [
            "",
            "*",
            "eip155",
            "EIP155:*",
            "eip155:*,eip155:1",
            "eip155:1,",
            ":*",
        ] {
            assert!(bad.parse::<NetworkPattern>().is_err(), "{bad:?}");
        }
        let json: NetworkPattern = serde_json::from_str("\"eip155:*\"").unwrap();
        assert_eq!(json, p("eip155:*"));
        assert!(serde_json::from_str::<NetworkPattern>("\"nope\"").is_err());
    }

    #[test]
    fn overlap_is_symmetric() {
        let cases = [
            ("eip155:*", "eip155:1", true),
            ("eip155:*", "solana:*", false),
            ("eip155:1,eip155:2", "eip155:2", true),
            ("eip155:1,eip155:2", "eip155:3,eip155:4", false),
            ("solana:*", "eip155:1,eip155:2", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(p(a).overlaps(&p(b)), want, "{a} {b}");
            assert_eq!(p(b).overlaps(&p(a)), want, "{b} {a}");
        }
    }
}
