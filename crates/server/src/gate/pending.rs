//! Paid means served: responses whose settlement outlived the exchange.
//!
//! With [`SettlementMode::AfterHandler`](super::SettlementMode::AfterHandler) the handler runs
//! before the payment is settled. Usually settlement finishes within the same exchange; when it
//! does not — the facilitator answers "pending" (the transfer is sent, the receipt is late),
//! times out, or cannot be reached after the paywall's retries — the transfer may still land.
//! Answering "not paid" and dropping the handler's body would then charge the buyer for nothing,
//! and every later retry would find the payment used. Running the handler again on the retry
//! would deliver twice for one payment.
//!
//! So the handler's response (the transport's [`Delivery`], read into memory) is kept here, keyed by the payment's canonical form and holding
//! the attempt key the paywall used with the facilitator. The buyer gets `402` with reason
//! `settlement_pending` and a `Retry-After`; a retry with the same payment settles again **with
//! the stored key** (the facilitator answers the same attempt with its outcome) and, once
//! settled, gets the stored response with its receipt — once; the entry is then removed. The
//! handler never runs a second time for the payment.
//!
//! With [`SettlementMode::BeforeHandler`](super::SettlementMode::BeforeHandler) an entry holds
//! no response (the handler has not run): the retry that finds the payment settled runs it.
//!
//! The store is bounded (entries, total bytes, bytes per response) and every entry lives at
//! most the configured TTL and never longer than the requirement's `maxTimeoutSeconds`: by then
//! the authorization has expired, so its settlement is decided one way or the other.
//!
//! The store is in memory, per process. Behind a load balancer the buyer's retry must reach
//! the replica that kept the response (sticky routing); another replica cannot deliver it and
//! answers `402 payment_in_use` (the facilitator has the payment reserved for the first
//! replica's attempt key), and a restart loses what was kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tollgate_proto::{FacilitatorRequest, IdempotencyKey};

use super::{Delivery, PaymentInfo};

/// Limits of the store of responses awaiting settlement; see
/// [`PaywallLayer::pending_responses`](crate::PaywallLayer::pending_responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingConfig {
    /// Most payments awaiting settlement at once (default 1024).
    pub max_entries: usize,
    /// Most bytes of kept responses at once (default 64 MiB).
    pub max_total_bytes: usize,
    /// Largest single response that can be kept (default 4 MiB). A larger one whose settlement
    /// is still pending cannot be delivered later; the buyer gets a `503`.
    pub max_response_bytes: usize,
    /// Longest an entry is kept (default 10 minutes); each entry is also capped at its
    /// requirement's `maxTimeoutSeconds`.
    pub ttl: Duration,
    /// The `Retry-After` given to buyers while their settlement is pending (default 5 s).
    pub retry_after: Duration,
}

impl Default for PendingConfig {
    fn default() -> Self {
        Self {
            max_entries: 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            ttl: Duration::from_secs(600),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Why a [`PendingConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingConfigError {
    /// A limit is zero.
    #[error("pending responses: `{0}` must be positive")]
    Zero(&'static str),
    /// One response may be larger than the whole store.
    #[error(
        "pending responses: `max_response_bytes` ({response}) exceeds `max_total_bytes` ({total})"
    )]
    ResponseOverTotal {
        /// `max_response_bytes`.
        response: usize,
        /// `max_total_bytes`.
        total: usize,
    },
}

impl PendingConfig {
    /// Checks that every limit is positive and that one response fits the store.
    pub fn validate(&self) -> Result<(), PendingConfigError> {
        if self.max_entries == 0 {
            return Err(PendingConfigError::Zero("max_entries"));
        }
        if self.max_total_bytes == 0 {
            return Err(PendingConfigError::Zero("max_total_bytes"));
        }
        if self.max_response_bytes == 0 {
            return Err(PendingConfigError::Zero("max_response_bytes"));
        }
        if self.ttl.is_zero() {
            return Err(PendingConfigError::Zero("ttl"));
        }
        if self.retry_after.is_zero() {
            return Err(PendingConfigError::Zero("retry_after"));
        }
        if self.max_response_bytes > self.max_total_bytes {
            return Err(PendingConfigError::ResponseOverTotal {
                response: self.max_response_bytes,
                total: self.max_total_bytes,
            });
        }
        Ok(())
    }

    /// `Retry-After` in whole seconds (at least 1).
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs().max(1)
    }
}

/// One payment awaiting settlement; `K` is the transport's kept response.
#[derive(Debug, Clone)]
pub(crate) struct PendingEntry<K> {
    /// The attempt key used with the facilitator; retries must reuse it.
    pub(crate) attempt: IdempotencyKey,
    /// The request sent to the facilitator (the payment as first presented), shared with the
    /// exchange and its settlement task rather than copied for each.
    pub(crate) request: std::sync::Arc<FacilitatorRequest>,
    /// `METHOD path?query` of the request that was served.
    pub(crate) target: String,
    /// What the handler was (or will be) told about the payment.
    pub(crate) info: PaymentInfo,
    /// The handler's response; `None` when the handler runs only after settlement.
    pub(crate) response: Option<K>,
    /// The requirement's `maxTimeoutSeconds`, bounding the entry's life and the retries.
    pub(crate) max_timeout: Duration,
}

/// Why an entry was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    /// `max_entries` reached.
    #[error("{0} payments are already awaiting settlement")]
    Full(usize),
    /// `max_total_bytes` would be exceeded.
    #[error("the responses awaiting settlement already use {used} of {max} bytes")]
    Bytes {
        /// In use.
        used: usize,
        /// The cap.
        max: usize,
    },
}

struct Slot<K> {
    entry: PendingEntry<K>,
    bytes: usize,
    expires: Instant,
}

struct Inner<K> {
    slots: HashMap<String, Slot<K>>,
    bytes: usize,
}

impl<K> Inner<K> {
    fn remove(&mut self, key: &str) -> Option<Slot<K>> {
        let slot = self.slots.remove(key)?;
        self.bytes -= slot.bytes;
        Some(slot)
    }

    fn purge(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }
}

/// The bounded store of a transport whose deliveries are `D`; keys are canonical payment keys
/// (see `canonical`).
pub(crate) struct PendingStore<D: Delivery> {
    pub(crate) config: PendingConfig,
    inner: Mutex<Inner<D::Kept>>,
}

impl<D: Delivery> PendingStore<D> {
    pub(crate) fn new(config: PendingConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<D::Kept>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live entry for `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<PendingEntry<D::Kept>> {
        let mut inner = self.lock();
        let expired = inner.slots.get(key)?.expires <= Instant::now();
        if expired {
            inner.remove(key);
            return None;
        }
        inner.slots.get(key).map(|s| s.entry.clone())
    }

    /// Whether a live entry exists for `key`.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.lock()
            .slots
            .get(key)
            .is_some_and(|s| s.expires > Instant::now())
    }

    /// Keeps `entry` until it is removed or expires (TTL capped by its `max_timeout`).
    pub(crate) fn insert(
        &self,
        key: String,
        entry: PendingEntry<D::Kept>,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let ttl = self
            .config
            .ttl
            .min(entry.max_timeout.max(Duration::from_secs(1)));
        let bytes = entry.response.as_ref().map_or(0, D::kept_size) + entry.target.len() + 1024;
        let mut inner = self.lock();
        inner.purge(now);
        inner.remove(&key);
        if inner.slots.len() >= self.config.max_entries {
            return Err(StoreError::Full(inner.slots.len()));
        }
        if inner.bytes + bytes > self.config.max_total_bytes {
            return Err(StoreError::Bytes {
                used: inner.bytes,
                max: self.config.max_total_bytes,
            });
        }
        inner.bytes += bytes;
        inner.slots.insert(
            key,
            Slot {
                entry,
                bytes,
                expires: now + ttl,
            },
        );
        Ok(())
    }

    /// Forgets `key` (delivered, or refused for good).
    pub(crate) fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Entries held now (expired ones included until purged).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_proto::{
        AtomicAmount, Network, PaymentPayload, PaymentRequirements, Scheme, X402Version,
    };

    fn entry(body: usize, max_timeout: Duration) -> PendingEntry<String> {
        let network: Network = "eip155:8453".parse().unwrap();
        let requirements = PaymentRequirements {
            scheme: Scheme::Exact,
            network: network.clone(),
            amount: AtomicAmount::from(1u64),
            asset: "0x0000000000000000000000000000000000000001".into(),
            pay_to: "0x0000000000000000000000000000000000000002".into(),
            max_timeout_seconds: 60,
            extra: None,
        };
        let payment: PaymentPayload = serde_json::from_value(serde_json::json!({
            "x402Version": 2,
            "accepted": requirements,
            "payload": {"n": 1},
        }))
        .unwrap();
        PendingEntry {
            attempt: IdempotencyKey::from_random_bytes([7; 16]),
            request: std::sync::Arc::new(FacilitatorRequest::V2 {
                payment_payload: payment,
                payment_requirements: requirements,
            }),
            target: "GET /x".into(),
            info: PaymentInfo {
                version: X402Version::V2,
                scheme: Scheme::Exact,
                network,
                asset: String::new(),
                amount: AtomicAmount::from(1u64),
                payer: None,
                transaction: None,
            },
            response: Some("x".repeat(body)),
            max_timeout,
        }
    }

    fn config() -> PendingConfig {
        PendingConfig {
            max_entries: 2,
            max_total_bytes: 10_000,
            max_response_bytes: 5_000,
            ttl: Duration::from_secs(600),
            retry_after: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_store_is_bounded_by_entries_and_bytes() {
        let store = PendingStore::<String>::new(config());
        store
            .insert("a".into(), entry(10, Duration::from_secs(60)))
            .unwrap();
        store
            .insert("b".into(), entry(10, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(
            store.insert("c".into(), entry(10, Duration::from_secs(60))),
            Err(StoreError::Full(2))
        );
        store.remove("a");
        assert!(matches!(
            store.insert("c".into(), entry(9_000, Duration::from_secs(60))),
            Err(StoreError::Bytes { .. })
        ));
        store
            .insert("c".into(), entry(10, Duration::from_secs(60)))
            .unwrap();
        assert!(store.contains("b") && store.contains("c") && !store.contains("a"));
        // Replacing an entry does not count it twice.
        store
            .insert("c".into(), entry(10, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn entries_expire_with_the_payment() {
        let store = PendingStore::<String>::new(config());
        // `maxTimeoutSeconds` caps the TTL (at least one second).
        store.insert("a".into(), entry(10, Duration::ZERO)).unwrap();
        assert!(store.get("a").is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(store.get("a").is_none());
        assert!(!store.contains("a"));
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn limits_are_validated() {
        assert_eq!(PendingConfig::default().validate(), Ok(()));
        let mut c = config();
        c.max_entries = 0;
        assert_eq!(c.validate(), Err(PendingConfigError::Zero("max_entries")));
        let mut c = config();
        c.max_response_bytes = 20_000;
        assert!(matches!(
            c.validate(),
            Err(PendingConfigError::ResponseOverTotal { .. })
        ));
    }
}
