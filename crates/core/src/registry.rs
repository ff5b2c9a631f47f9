//! Values registered per (scheme, network pattern), found again by (scheme, network).

use std::sync::Arc;

use tollgate_proto::{Network, Scheme};

use crate::network::NetworkPattern;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The scheme is already registered for an overlapping pattern of the same specificity,
    /// so which of the two serves a payment would be arbitrary.
    #[error("scheme {scheme} is already registered for {existing}, which overlaps {pattern}")]
    Overlap {
        /// The scheme.
        scheme: Scheme,
        /// The pattern being registered.
        pattern: NetworkPattern,
        /// The pattern already there.
        existing: NetworkPattern,
    },
}

/// Values keyed by (scheme, network pattern): the facilitator's verifiers, the paywall's
/// pricers, the client's wallets. A lookup of (scheme, network) returns the value of the
/// **most specific** matching pattern — one network, then a list, then a namespace — so
/// `exact` on `eip155:*` can be overridden for `eip155:8453` alone, and `exact` and `upto`
/// live side by side on one network.
///
/// ```
/// use tollgate_core::Registry;
/// use tollgate_proto::Scheme;
/// let mut verifiers: Registry<&str> = Registry::new();
/// verifiers.register("eip155:*".parse()?, Scheme::Exact, "every EVM chain")?;
/// verifiers.register("eip155:8453".parse()?, Scheme::Exact, "Base")?;
/// verifiers.register("eip155:8453".parse()?, Scheme::Upto, "metered on Base")?;
/// assert_eq!(verifiers.get(&Scheme::Exact, &"eip155:8453".parse()?).map(|v| **v), Some("Base"));
/// assert_eq!(verifiers.get(&Scheme::Exact, &"eip155:137".parse()?).map(|v| **v), Some("every EVM chain"));
/// assert_eq!(verifiers.get(&Scheme::Upto, &"eip155:137".parse()?), None);
/// // The same scheme twice on overlapping patterns of one specificity is a mistake:
/// assert!(verifiers.register("eip155:*".parse()?, Scheme::Exact, "again").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry<T: ?Sized> {
    entries: Vec<Entry<T>>,
}

struct Entry<T: ?Sized> {
    scheme: Scheme,
    pattern: NetworkPattern,
    value: Arc<T>,
}

impl<T: ?Sized> Clone for Registry<T> {
    fn clone(&self) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    scheme: e.scheme.clone(),
                    pattern: e.pattern.clone(),
                    value: Arc::clone(&e.value),
                })
                .collect(),
        }
    }
}

impl<T: ?Sized> Default for Registry<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{} on {}", e.scheme, e.pattern)),
            )
            .finish()
    }
}

impl<T> Registry<T> {
    /// Registers `value` for `scheme` on the networks of `pattern`.
    pub fn register(
        &mut self,
        pattern: NetworkPattern,
        scheme: Scheme,
        value: T,
    ) -> Result<&mut Self, RegisterError> {
        self.register_arc(pattern, scheme, Arc::new(value))
    }
}

impl<T: ?Sized> Registry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a shared `value` (e.g. an `Arc<dyn SchemeFacilitator>`) for `scheme` on the
    /// networks of `pattern`.
    pub fn register_arc(
        &mut self,
        pattern: NetworkPattern,
        scheme: Scheme,
        value: Arc<T>,
    ) -> Result<&mut Self, RegisterError> {
        if let Some(existing) = self.entries.iter().find(|e| {
            e.scheme == scheme
                && e.pattern.specificity() == pattern.specificity()
                && e.pattern.overlaps(&pattern)
        }) {
            return Err(RegisterError::Overlap {
                scheme,
                pattern,
                existing: existing.pattern.clone(),
            });
        }
        self.entries.push(Entry {
            scheme,
            pattern,
            value,
        });
        Ok(self)
    }

    /// The value registered for `scheme` on `network` under the most specific pattern.
    pub fn get(&self, scheme: &Scheme, network: &Network) -> Option<&Arc<T>> {
        self.entries
            .iter()
            .filter(|e| &e.scheme == scheme && e.pattern.matches(network))
            .max_by_key(|e| e.pattern.specificity())
            .map(|e| &e.value)
    }

    /// Whether anything is registered on `network`, whatever the scheme.
    pub fn serves_network(&self, network: &Network) -> bool {
        self.entries.iter().any(|e| e.pattern.matches(network))
    }

    /// Every registration, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&Scheme, &NetworkPattern, &Arc<T>)> {
        self.entries
            .iter()
            .map(|e| (&e.scheme, &e.pattern, &e.value))
    }

    /// Every distinct registered value (one value registered under several keys once), in
    /// registration order.
    pub fn values(&self) -> Vec<&Arc<T>> {
        let mut out: Vec<&Arc<T>> = Vec::new();
        for e in &self.entries {
            if !out.iter().any(|v| Arc::ptr_eq(v, &e.value)) {
                out.push(&e.value);
            }
        }
        out
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many registrations there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_beat_namespaces_and_networks_beat_lists() {
        let mut r: Registry<u8> = Registry::new();
        r.register("eip155:*".parse().unwrap(), Scheme::Exact, 0)
            .unwrap();
        r.register("eip155:1,eip155:2".parse().unwrap(), Scheme::Exact, 1)
            .unwrap();
        r.register("eip155:2".parse().unwrap(), Scheme::Exact, 2)
            .unwrap();
        let at = |n: &str| **r.get(&Scheme::Exact, &n.parse().unwrap()).unwrap();
        assert_eq!((at("eip155:9"), at("eip155:1"), at("eip155:2")), (0, 1, 2));
        assert!(r
            .get(&Scheme::Exact, &"solana:abc".parse().unwrap())
            .is_none());
        assert!(r
            .register("eip155:2,eip155:3".parse().unwrap(), Scheme::Exact, 3)
            .is_err());
        assert!(r
            .register("eip155:3,eip155:4".parse().unwrap(), Scheme::Exact, 3)
            .is_ok());
        assert!(r.serves_network(&"eip155:77".parse().unwrap()));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn one_value_under_several_keys_is_listed_once() {
        let mut r: Registry<str> = Registry::default();
        let shared: Arc<str> = Arc::from("evm");
        r.register_arc("eip155:*".parse().unwrap(), Scheme::Exact, shared.clone())
            .unwrap();
        r.register_arc("eip155:*".parse().unwrap(), Scheme::Upto, shared)
            .unwrap();
        assert_eq!(r.values().len(), 1);
    }
}
