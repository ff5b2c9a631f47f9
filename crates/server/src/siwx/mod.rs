//! Sign-in-with-x on the seller's side: a wallet that paid for a resource gets it again by
//! signing in, without paying again; on an "auth-only" route any wallet that signs in gets in.
//!
//! [`SignInWithX`] does the three things the official `createSIWxResourceServerExtension`
//! does, over plain values so any transport can use it:
//!
//! - **offer** ([`SignInWithX::extension`]): every 402 carries `extensions["sign-in-with-x"]`
//!   with a challenge bound to the configured public origin — `domain` its host, `uri` the
//!   origin plus the requested path and query — a fresh 128-bit nonce, `issuedAt` now and
//!   `expirationTime` after the maximum age, and one supported chain per offered network that
//!   has a verifier;
//! - **record** ([`SignInWithX::record_payment`]): after each settled payment, the payer (in
//!   its chain's canonical form) is recorded as having paid for the resource (the gate's
//!   target of the request: method, canonical path and query);
//! - **sign in** ([`SignInWithX::sign_in`]): a `SIGN-IN-WITH-X` header is accepted only when
//!   every check passes — the payload decodes, no field could spell another message, `domain`
//!   is the origin's host, `uri` is the origin's URI of *this* resource, `issuedAt` is at most
//!   the maximum age old and not in the future (beyond the clock skew), `expirationTime` has
//!   not passed, `notBefore` has come, the chain is one offered for the resource and its
//!   verifier accepts the signature, the wallet paid for the resource (or the route is
//!   auth-only), and the nonce was never used (its use is recorded in the store, so with a
//!   shared store a replay is refused by every instance). Each refusal has its official
//!   reason code (`tollgate_proto::siwx::reason`) and the transport answers it with a 402.
//!
//! Stricter than the official hook, on purpose: the official server accepts a `uri` anywhere
//! on the origin and ignores which chain signed; here the `uri` must name the requested
//! resource and the chain must be one the 402 offered. The official server answers a failed
//! sign-in with the plain 402; here the 402's `error` says why.

mod store;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tollgate_core::{SiwxVerifier, SiwxVerifiers};
use tollgate_proto::siwx::{self, reason, SiwxExtension, SiwxInfo, SiwxPayload, SupportedChain};
use tollgate_proto::Network;

#[cfg(feature = "siwx-postgres")]
pub use store::PgSiwxStore;
#[cfg(feature = "siwx-sqlite")]
pub use store::SqliteSiwxStore;
pub use store::{MemorySiwxStore, SiwxStore, SiwxStoreError};

/// How long a challenge is valid by default (the official default maximum age: 5 minutes).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// How far in the future `issuedAt` or `notBefore` may be by default: instances behind one
/// origin issue challenges by their own clocks.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Why a sign-in configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiwxConfigError {
    /// The public origin is not `http(s)://host[:port]` without credentials, path, query or
    /// fragment (the official `normalizeConfiguredOrigin` rules).
    #[error("invalid sign-in-with-x origin {origin:?}: {why}")]
    Origin {
        /// What was given.
        origin: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No chain can verify a sign-in.
    #[error("sign-in-with-x needs at least one signature verifier (e.g. tollgate_evm::Eip191SiwxVerifier on eip155:*)")]
    NoVerifiers,
}

/// Why a sign-in was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiwxRefusal {
    /// A check failed: answer the 402 with `"{reason}: {detail}"`; nothing is served.
    #[error("{reason}: {detail}")]
    Refused {
        /// The official code (`tollgate_proto::siwx::reason`).
        reason: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The store could not answer: nothing can be decided (`503`), nothing is served.
    #[error(transparent)]
    Store(#[from] SiwxStoreError),
}

impl SiwxRefusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Refused {
            reason,
            detail: detail.into(),
        }
    }

    /// The reason code (`None` for a store failure).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused { reason, .. } => Some(reason),
            Self::Store(_) => None,
        }
    }
}

/// A wallet that signed in: the handler finds it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The wallet, in its chain's canonical form.
    pub address: String,
    /// The chain it signed for.
    pub network: Network,
    /// Whether it got in on an auth-only route (without having paid).
    pub auth_only: bool,
}

/// The seller's sign-in-with-x: see the [module documentation](self).
#[derive(Clone)]
pub struct SignInWithX {
    origin: url::Url,
    host: String,
    statement: Option<String>,
    max_age: Duration,
    clock_skew: Duration,
    verifiers: SiwxVerifiers,
    store: Arc<dyn SiwxStore>,
}

impl std::fmt::Debug for SignInWithX {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInWithX")
            .field("origin", &self.origin.as_str())
            .field("max_age", &self.max_age)
            .field("verifiers", &self.verifiers)
            .finish_non_exhaustive()
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SignInWithX {
    /// Sign-in bound to the seller's public `origin` (`https://api.example.com`, the origin
    /// buyers reach it at, whatever the `Host` header a proxy forwards), verifying with
    /// `verifiers` and remembering payments and nonces in `store`.
    pub fn new(
        origin: &str,
        verifiers: SiwxVerifiers,
        store: Arc<dyn SiwxStore>,
    ) -> Result<Self, SiwxConfigError> {
        let bad = |why| SiwxConfigError::Origin {
            origin: origin.to_owned(),
            why,
        };
        let url = url::Url::parse(origin).map_err(|_| bad("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must use http: or https:"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not include credentials"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not include a path, query, or fragment"));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(bad("has no host")),
        };
        if verifiers.is_empty() {
            return Err(SiwxConfigError::NoVerifiers);
        }
        Ok(Self {
            origin: url,
            host,
            statement: None,
            max_age: DEFAULT_MAX_AGE,
            clock_skew: DEFAULT_CLOCK_SKEW,
            verifiers,
            store,
        })
    }

    /// The statement wallets show their owner (`"Sign in to access premium data"`).
    pub fn statement(mut self, text: impl Into<String>) -> Self {
        self.statement = Some(text.into());
        self
    }

    /// How long a challenge is valid (default [`DEFAULT_MAX_AGE`]); also how long a used
    /// nonce is remembered.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Tolerance for `issuedAt`/`notBefore` ahead of this clock (default
    /// [`DEFAULT_CLOCK_SKEW`]).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The configured public origin's host (`api.example.com`, with a non-default port).
    pub fn domain(&self) -> &str {
        &self.host
    }

    /// The URI of the resource at `path_and_query` on the public origin.
    fn uri_of(&self, path_and_query: &str) -> String {
        let origin = self.origin.as_str().trim_end_matches('/');
        format!("{origin}{path_and_query}")
    }

    /// The chains a 402 for `networks` offers: one per distinct network with a verifier, in
    /// order.
    fn chains(&self, networks: &[Network]) -> Vec<SupportedChain> {
        let mut chains: Vec<SupportedChain> = Vec::new();
        for network in networks {
            if chains.iter().any(|c| &c.chain_id == network) {
                continue;
            }
            if let Some(signature_type) = self.verifiers.type_on(network) {
                chains.push(SupportedChain {
                    chain_id: network.clone(),
                    signature_type,
                    signature_scheme: None,
                });
            }
        }
        chains
    }

    /// The `sign-in-with-x` extension for a 402 of the resource at `path_and_query` offered on
    /// `networks` (its requirements' networks, or an auth-only route's); `None` when no
    /// network has a verifier.
    pub fn extension(&self, path_and_query: &str, networks: &[Network]) -> Option<Value> {
        let supported_chains = self.chains(networks);
        if supported_chains.is_empty() {
            return None;
        }
        let now = unix_millis();
        let uri = self.uri_of(path_and_query);
        let extension = SiwxExtension {
            info: SiwxInfo {
                domain: self.host.clone(),
                uri: uri.clone(),
                version: siwx::VERSION.to_owned(),
                nonce: nonce_hex(rand::random::<[u8; 16]>()),
                issued_at: siwx::format_time(now),
                expiration_time: Some(siwx::format_time(now.saturating_add(millis(self.max_age)))),
                not_before: None,
                request_id: None,
                resources: Some(vec![uri]),
                statement: self.statement.clone(),
            },
            supported_chains,
            schema: siwx::schema(),
        };
        serde_json::to_value(extension).ok()
    }

    /// Records that the settled payment's `payer` on `network` paid for `resource` (the
    /// gate's target of the request). A payer no verifier can read is not recorded (it could
    /// never sign in).
    pub async fn record_payment(
        &self,
        resource: &str,
        network: &Network,
        payer: &str,
    ) -> Result<(), SiwxStoreError> {
        let Some(verifier) = self
            .verifiers
            .type_on(network)
            .and_then(|t| self.verifiers.get(t, network))
        else {
            return Ok(());
        };
        let Ok(payer) = verifier.canonical_address(payer) else {
            return Ok(());
        };
        self.store.record_payment(resource, &payer).await
    }

    /// Checks the `SIGN-IN-WITH-X` header `header` of a request for `resource` (the gate's
    /// target) at `path_and_query`, offered on `networks`; `auth_only` routes let any wallet
    /// that signs in through. The nonce is used up only when the sign-in is granted.
    pub async fn sign_in(
        &self,
        header: &str,
        resource: &str,
        path_and_query: &str,
        networks: &[Network],
        auth_only: bool,
    ) -> Result<SignedIn, SiwxRefusal> {
        let payload = SiwxPayload::decode(header)
            .map_err(|e| SiwxRefusal::new(reason::INVALID_HEADER, e.to_string()))?;
        payload
            .check_fields()
            .map_err(|e| SiwxRefusal::new(reason::INVALID_FIELDS, e))?;
        if payload.version != siwx::VERSION {
            return Err(SiwxRefusal::new(
                reason::INVALID_FIELDS,
                format!("version {:?} is not \"1\"", payload.version),
            ));
        }
        self.check_binding(&payload, path_and_query)?;
        let issued_at = self.check_times(&payload, unix_millis())?;
        let verifier = self.verifier(&payload, networks)?;
        let address = verifier
            .verify(&payload)
            .await
            .map_err(|f| SiwxRefusal::Refused {
                reason: f.reason,
                detail: f.detail,
            })?;
        if !auth_only && !self.store.has_paid(resource, &address).await? {
            return Err(SiwxRefusal::new(
                reason::NOT_PAID,
                format!("{address} has not paid for this resource: pay instead"),
            ));
        }
        let keep_until =
            (issued_at.saturating_add(millis(self.max_age + self.clock_skew))).div_ceil(1000);
        if !self.store.use_nonce(&payload.nonce, keep_until).await? {
            return Err(SiwxRefusal::new(
                reason::NONCE,
                "this sign-in's nonce was used before (a replay): sign the new challenge",
            ));
        }
        Ok(SignedIn {
            address,
            network: payload.chain_id,
            auth_only,
        })
    }

    /// `domain` and `uri` name this origin and this resource.
    fn check_binding(
        &self,
        payload: &SiwxPayload,
        path_and_query: &str,
    ) -> Result<(), SiwxRefusal> {
        if payload.domain != self.host {
            return Err(SiwxRefusal::new(
                reason::DOMAIN_MISMATCH,
                format!("expected {:?}, got {:?}", self.host, payload.domain),
            ));
        }
        let signed = url::Url::parse(&payload.uri).map_err(|_| {
            SiwxRefusal::new(
                reason::URI_MISMATCH,
                format!("{:?} is not a URL", payload.uri),
            )
        })?;
        if signed.origin() != self.origin.origin() {
            return Err(SiwxRefusal::new(
                reason::URI_MISMATCH,
                format!(
                    "expected origin {:?}, got {:?}",
                    self.origin.origin().ascii_serialization(),
                    signed.origin().ascii_serialization()
                ),
            ));
        }
        let expected = url::Url::parse(&self.uri_of(path_and_query)).ok();
        let same_resource = expected.is_some_and(|e| {
            e.path() == signed.path() && e.query() == signed.query() && signed.fragment().is_none()
        });
        if !same_resource {
            return Err(SiwxRefusal::new(
                reason::URI_MISMATCH,
                format!("{:?} is not the requested resource", payload.uri),
            ));
        }
        Ok(())
    }

    /// The challenge's times against `now` (Unix milliseconds); `issuedAt` in milliseconds.
    fn check_times(&self, payload: &SiwxPayload, now: u64) -> Result<u64, SiwxRefusal> {
        let skew = millis(self.clock_skew);
        let issued_at = siwx::parse_time(&payload.issued_at).ok_or_else(|| {
            SiwxRefusal::new(
                reason::ISSUED_AT,
                format!("{:?} is not a date-time", payload.issued_at),
            )
        })?;
        if issued_at > now.saturating_add(skew) {
            return Err(SiwxRefusal::new(
                reason::ISSUED_AT_IN_FUTURE,
                "issuedAt is in the future",
            ));
        }
        if now.saturating_sub(issued_at) > millis(self.max_age) {
            return Err(SiwxRefusal::new(
                reason::ISSUED_AT_TOO_OLD,
                format!(
                    "issued {} s ago, more than {} s",
                    now.saturating_sub(issued_at) / 1000,
                    self.max_age.as_secs()
                ),
            ));
        }
        if let Some(text) = &payload.expiration_time {
            let expires = siwx::parse_time(text).ok_or_else(|| {
                SiwxRefusal::new(
                    reason::EXPIRATION_TIME,
                    format!("{text:?} is not a date-time"),
                )
            })?;
            if expires <= now {
                return Err(SiwxRefusal::new(
                    reason::EXPIRED,
                    format!("expired at {text}"),
                ));
            }
        }
        if let Some(text) = &payload.not_before {
            let not_before = siwx::parse_time(text).ok_or_else(|| {
                SiwxRefusal::new(reason::NOT_BEFORE, format!("{text:?} is not a date-time"))
            })?;
            if not_before > now.saturating_add(skew) {
                return Err(SiwxRefusal::new(
                    reason::NOT_YET_VALID,
                    format!("not valid before {text}"),
                ));
            }
        }
        Ok(issued_at)
    }

    /// The verifier of the payload's chain, if that chain is offered for the resource.
    fn verifier(
        &self,
        payload: &SiwxPayload,
        networks: &[Network],
    ) -> Result<&Arc<dyn SiwxVerifier>, SiwxRefusal> {
        if !networks.contains(&payload.chain_id) {
            return Err(SiwxRefusal::new(
                reason::UNSUPPORTED_CHAIN,
                format!("{} is not offered for this resource", payload.chain_id),
            ));
        }
        self.verifiers
            .get(payload.signature_type, &payload.chain_id)
            .ok_or_else(|| {
                SiwxRefusal::new(
                    reason::UNSUPPORTED_CHAIN,
                    format!(
                        "no {} verifier for {}",
                        payload.signature_type.as_str(),
                        payload.chain_id
                    ),
                )
            })
    }
}

/// Lower-case hex of `bytes` (the official nonce: 16 random bytes, 32 hex characters).
fn nonce_hex(bytes: [u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
