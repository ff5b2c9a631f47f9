//! The gateway's configuration: one TOML file mapping routes to prices, validated at start-up.
//!
//! Unknown keys are errors, and so is every route that cannot be priced (a dollar price on a
//! network without a known stablecoin, an atomic amount without its asset, a malformed route):
//! a gateway that silently let a route through for free would give the API away.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tollgate_proto::{AtomicAmount, Network, Scheme};
use tollgate_server::{IdentityPolicy, PaymentOption, PendingConfig, RoutePrice, SettlementMode};

/// Environment variable overriding `listen`.
pub const ENV_LISTEN: &str = "TOLLGATE_LISTEN";
/// Environment variable overriding `upstream`.
pub const ENV_UPSTREAM: &str = "TOLLGATE_UPSTREAM";

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens (loopback by default).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Base URL of the API behind the gateway, e.g. `http://127.0.0.1:3000`.
    pub upstream: String,
    /// Longest an upstream response may take to start.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_secs: u64,
    /// When payments are settled — `settlement = "after-handler"` (default: only for upstream
    /// successes, and nothing is delivered if settlement fails) or `"before-handler"` — or a
    /// `[settlement]` table with `mode` and the retry and pending-response limits.
    #[serde(default, deserialize_with = "settlement_settings")]
    pub settlement: SettlementSettings,
    /// The facilitator that verifies and settles.
    pub facilitator: FacilitatorSettings,
    /// Defaults for every route's payment.
    pub payment: PaymentDefaults,
    /// The priced routes; everything else passes through for free.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Longest one exchange may take, from the request head to the response being ready
    /// (payment checks, upstream and settlement included); then `503` and the connection is
    /// closed. A response still being written 2 s after it is cut too. Must outlast everything
    /// the gateway itself may wait for (see `validate`).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// `[limits]`: connection cap, header-read and idle timeouts of the listener.
    #[serde(default)]
    pub limits: tollgate_listen::Limits,
    /// `[metrics]`: the Prometheus scrape endpoint, off unless `path` is set.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// `[identity]`: serve only payers who meet a policy (checked on the verified payer, after
    /// verification and before the upstream is called or anything is settled). Off unless the
    /// table is present; then the embedding program must supply the provider
    /// ([`app_with`](crate::app_with)), or the gateway refuses to start.
    #[serde(default)]
    pub identity: Option<IdentitySettings>,
    /// `[telemetry]`: OpenTelemetry spans of each request (the paywall's facilitator calls
    /// carry its trace to the facilitator), exported over OTLP/HTTP when an endpoint is set
    /// (see `tollgate_telemetry::TelemetryConfig`).
    #[serde(default)]
    pub telemetry: tollgate_telemetry::TelemetryConfig,
    /// `[channels]`: where the seller keeps its `batch-settlement` payment channels and when it
    /// claims them. Required by any route with `scheme = "batch-settlement"`; the embedding
    /// program supplies the channel manager ([`Plugins::channels`](crate::Plugins)).
    #[serde(default)]
    pub channels: Option<ChannelSettings>,
    /// `[siwx]`: sign-in-with-x — a wallet that paid for a route gets back in by signing a
    /// challenge bound to `origin`; routes with `auth_only = true` need a sign-in and no
    /// payment. The embedding program supplies the signature verifiers
    /// ([`Plugins::siwx_verifiers`](crate::Plugins)).
    #[serde(default)]
    pub siwx: Option<SiwxSettings>,
}

/// `[siwx]`: where sign-in-with-x is bound and where its payments and nonces are kept.
///
/// ```
/// # use tollgate_gateway::config::SiwxSettings;
/// let s: SiwxSettings = toml::from_str(r#"
/// origin = "https://api.example.com"   # the public origin buyers reach the gateway at
/// sqlite = "siwx.db"                   # or url = "postgres://…" (shared by instances); absent: memory
/// "#).unwrap();
/// s.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiwxSettings {
    /// The gateway's public origin (`https://host[:port]`): challenges name it, sign-ins for
    /// any other are refused.
    pub origin: String,
    /// The SQLite file of who paid for what and which nonces were used.
    pub sqlite: Option<std::path::PathBuf>,
    /// A PostgreSQL URL instead: shared by every instance (a nonce is accepted once by all).
    pub url: Option<String>,
    /// The statement shown in the wallet, if any.
    pub statement: Option<String>,
}

impl SiwxSettings {
    /// Checks what the types cannot: at most one store, a PostgreSQL URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.sqlite, &self.url) {
            (Some(_), Some(_)) => Err(invalid("siwx", "set sqlite or url, not both")),
            (None, Some(url))
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                Err(invalid(
                    "siwx.url",
                    "must start with postgres:// or postgresql://",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// `[channels]`: the seller's `batch-settlement` channels — a durable store (exactly one of a
/// SQLite file, or a PostgreSQL URL shared by several gateway instances), the background
/// claimer, and the receiver authorizer's key when the seller holds it (else the facilitator's
/// receiver authorizer signs claims, and refunds only if it signs them for this seller).
///
/// ```toml
/// [channels]
/// sqlite = "channels.db"           # or: url = "postgres://user@localhost/tollgate"
/// claim_interval_secs = 300        # claim at least this often while anything is unclaimed
/// claim_threshold = "1000000"      # ...or as soon as this much is unclaimed (atomic units)
/// claim_check_secs = 5             # how often the unclaimed value is looked at
/// receiver_authorizer_key_env = "SELLER_AUTHORIZER_KEY"  # or receiver_authorizer_key_file
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// The SQLite file (written with `synchronous = FULL`: what was served survives `kill -9`).
    pub sqlite: Option<std::path::PathBuf>,
    /// A PostgreSQL URL (`postgres://…`): channels shared by every instance using it.
    pub url: Option<String>,
    /// Claim at least this often while anything is unclaimed (default 300).
    #[serde(default = "default_claim_interval")]
    pub claim_interval_secs: u64,
    /// Claim as soon as this much is charged and unclaimed, in atomic units (default 1000000).
    #[serde(default = "default_claim_threshold")]
    pub claim_threshold: AtomicAmount,
    /// How often the claimer looks at the unclaimed value (default 5).
    #[serde(default = "default_claim_check")]
    pub claim_check_secs: u64,
    /// An environment variable holding the receiver authorizer's private key (hex).
    pub receiver_authorizer_key_env: Option<String>,
    /// A file holding the receiver authorizer's private key (hex).
    pub receiver_authorizer_key_file: Option<std::path::PathBuf>,
}

fn default_claim_interval() -> u64 {
    300
}

fn default_claim_threshold() -> AtomicAmount {
    AtomicAmount(tollgate_proto::U256::from(1_000_000u64))
}

fn default_claim_check() -> u64 {
    5
}

impl ChannelSettings {
    /// Checks what the types cannot: one store, one key source, positive intervals.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.sqlite, &self.url) {
            (Some(_), Some(_)) => return Err(invalid("channels", "set sqlite or url, not both")),
            (None, None) => {
                return Err(invalid(
                    "channels",
                    "set sqlite (a file) or url (postgres://…)",
                ))
            }
            (None, Some(url))
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                return Err(invalid(
                    "channels.url",
                    "must start with postgres:// or postgresql://",
                ))
            }
            _ => {}
        }
        if self.receiver_authorizer_key_env.is_some() && self.receiver_authorizer_key_file.is_some()
        {
            return Err(invalid(
                "channels.receiver_authorizer_key_env",
                "set receiver_authorizer_key_env or receiver_authorizer_key_file, not both",
            ));
        }
        if self.claim_interval_secs == 0 {
            return Err(invalid("channels.claim_interval_secs", "must be positive"));
        }
        if self.claim_check_secs == 0 {
            return Err(invalid("channels.claim_check_secs", "must be positive"));
        }
        Ok(())
    }
}

/// `[identity]`: the identity gate of every priced route.
///
/// ```toml
/// [identity]
/// fail_open = false      # provider outage: 503 (default), or serve unchecked
/// cache_ttl_secs = 300   # how long a verdict on a payer is reused
/// [identity.policy]
/// require_sanctions_clear = true
/// blocked_jurisdictions = ["KP", "IR"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// What a payer must meet (the AgentScore `policy` object).
    pub policy: IdentityPolicy,
    /// When the provider cannot answer: `false` (the default) answers `503` and settles
    /// nothing; `true` serves the request unchecked (logged).
    #[serde(default)]
    pub fail_open: bool,
    /// How long a provider's verdict on a payer is reused; `0`: never.
    #[serde(default = "default_identity_cache_ttl")]
    pub cache_ttl_secs: u64,
    /// `[identity.provider]`: who assesses payers, for programs (like `tollgate proxy`) that
    /// build the provider from the file. A program passing its own provider to
    /// [`app_with`](crate::app_with) may leave it out.
    #[serde(default)]
    pub provider: Option<IdentityProviderSettings>,
    /// `decisions = { sqlite = "…" }` or `{ url = "postgres://…" }`: a durable log of every
    /// identity decision, for programs (like `tollgate proxy`) that build the store from the
    /// file. Without it, decisions are only logged.
    #[serde(default)]
    pub decisions: Option<DecisionLogSettings>,
}

/// `[identity] decisions = …`: where every identity decision is written, beside the log —
/// exactly one of a SQLite file or a PostgreSQL URL. A background writer takes them from a
/// bounded queue (`queue` decisions), so a slow store never holds a request up; when the
/// queue is full a decision is dropped with a counted warning.
///
/// ```toml
/// [identity]
/// decisions = { sqlite = "identity-decisions.db" }
/// # or: decisions = { url = "postgres://tollgate@127.0.0.1/tollgate", queue = 4096 }
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogSettings {
    /// A SQLite file (created if missing).
    #[serde(default)]
    pub sqlite: Option<std::path::PathBuf>,
    /// A PostgreSQL URL (`postgres://` or `postgresql://`). It may hold a password, so
    /// `Debug` never shows it.
    #[serde(default)]
    pub url: Option<String>,
    /// Decisions queued for the writer before new ones are dropped.
    #[serde(default = "default_decision_queue")]
    pub queue: usize,
}

/// Most decisions a log may queue: each is a few hundred bytes held in memory.
pub const MAX_DECISION_QUEUE: usize = 1_000_000;

fn default_decision_queue() -> usize {
    1024
}

impl std::fmt::Debug for DecisionLogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLogSettings")
            .field("sqlite", &self.sqlite)
            .field("url", &self.url.as_ref().map(|_| "postgres://…"))
            .field("queue", &self.queue)
            .finish()
    }
}

impl DecisionLogSettings {
    /// Exactly one store, a PostgreSQL URL, a sane queue. Errors never quote the URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.sqlite, &self.url) {
            (Some(_), Some(_)) => Err(invalid("identity.decisions", "set sqlite or url, not both")),
            (None, None) => Err(invalid(
                "identity.decisions",
                "set sqlite (a file) or url (postgres://…)",
            )),
            (None, Some(url))
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                Err(invalid(
                    "identity.decisions.url",
                    "must start with postgres:// or postgresql://",
                ))
            }
            _ if self.queue == 0 || self.queue > MAX_DECISION_QUEUE => Err(invalid(
                "identity.decisions.queue",
                format!("between 1 and {MAX_DECISION_QUEUE}"),
            )),
            _ => Ok(()),
        }
    }
}

/// `[identity.provider]`: exactly one of an AgentScore-compatible assessment service (a
/// Tollgate facilitator's `POST /assess` is one: it evaluates sanctions and the payer's
/// settlement record) or a local sanctions file (which can only answer
/// `require_sanctions_clear`).
///
/// ```toml
/// [identity.provider]
/// assess_url = "http://127.0.0.1:4020/"   # AgentScore: https://api.agentscore.sh/v1/
/// api_key_env = "TOLLGATE_ASSESS_KEY"     # optional bearer key, from the environment
/// timeout_secs = 5
/// # or: sanctions_file = "sanctioned-addresses.txt"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderSettings {
    /// Base URL of an AgentScore-compatible service (`{base}assess`, `{base}reputation/…`).
    #[serde(default)]
    pub assess_url: Option<String>,
    /// Environment variable holding its bearer key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Per-request timeout of the service.
    #[serde(default = "default_assess_timeout")]
    pub timeout_secs: u64,
    /// A sanctions list file (one address per line, `#` comments), reloaded when it changes.
    #[serde(default)]
    pub sanctions_file: Option<std::path::PathBuf>,
}

fn default_assess_timeout() -> u64 {
    5
}

impl IdentityProviderSettings {
    /// Exactly one source, and a sane timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.assess_url, &self.sanctions_file) {
            (Some(_), Some(_)) => Err(invalid(
                "identity.provider",
                "set assess_url or sanctions_file, not both (a facilitator's /assess already checks its own sanctions list)",
            )),
            (None, None) => Err(invalid(
                "identity.provider",
                "set assess_url (an AgentScore-compatible service) or sanctions_file",
            )),
            (Some(url), None) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                Err(invalid(
                    "identity.provider.assess_url",
                    format!("{url:?} is not an http(s) URL"),
                ))
            }
            (None, Some(_)) if self.api_key_env.is_some() => Err(invalid(
                "identity.provider.api_key_env",
                "only used with assess_url",
            )),
            _ if self.timeout_secs == 0 || self.timeout_secs > 120 => Err(invalid(
                "identity.provider.timeout_secs",
                "between 1 and 120 seconds",
            )),
            _ => Ok(()),
        }
    }
}

/// Longest `identity.cache_ttl_secs`: a verdict (a sanctions listing, a KYC status) older than
/// a day is too stale to serve on.
pub const MAX_IDENTITY_CACHE_TTL_SECS: u64 = 86_400;

fn default_identity_cache_ttl() -> u64 {
    tollgate_server::gate::DEFAULT_IDENTITY_CACHE_TTL.as_secs()
}

impl IdentitySettings {
    /// How long a verdict is reused.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_ttl_secs > MAX_IDENTITY_CACHE_TTL_SECS {
            return Err(invalid(
                "identity.cache_ttl_secs",
                format!("at most {MAX_IDENTITY_CACHE_TTL_SECS} s"),
            ));
        }
        let policy = &self.policy;
        for (key, codes) in [
            ("allowed_jurisdictions", &policy.allowed_jurisdictions),
            ("blocked_jurisdictions", &policy.blocked_jurisdictions),
        ] {
            if let Some(bad) = codes
                .iter()
                .find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(invalid(
                    format!("identity.policy.{key}"),
                    format!("{bad:?} is not an ISO 3166-1 alpha-2 code (two capital letters)"),
                ));
            }
        }
        if let Some(both) = policy
            .allowed_jurisdictions
            .iter()
            .find(|c| policy.blocked_jurisdictions.contains(c))
        {
            return Err(invalid(
                "identity.policy.allowed_jurisdictions",
                format!("{both:?} is both allowed and blocked"),
            ));
        }
        let no_rule = !policy.require_kyc
            && !policy.require_sanctions_clear
            && policy.min_age.is_none()
            && policy.allowed_jurisdictions.is_empty()
            && policy.blocked_jurisdictions.is_empty()
            && policy.min_reputation.is_none();
        if no_rule {
            return Err(invalid(
                "identity.policy",
                "sets no rule; remove [identity] or require something of payers",
            ));
        }
        if let Some(provider) = &self.provider {
            provider.validate()?;
        }
        if let Some(decisions) = &self.decisions {
            decisions.validate()?;
        }
        Ok(())
    }
}

/// `[metrics]`: Prometheus metrics of the gateway (402s, paid requests, refusals by reason,
/// upstream latency), served on the gateway's own listener.
///
/// Off by default because the gateway forwards every path to the upstream: the metrics path is
/// answered by the gateway itself and would hide an upstream path of the same name. Choose one
/// the upstream does not serve (e.g. `/_tollgate/metrics`); a path a priced route matches is
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// The scrape endpoint's exact path (`GET`), e.g. `/_tollgate/metrics`.
    pub path: Option<String>,
}

/// `settlement = "after-handler" | "before-handler"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Settlement {
    /// Verify, forward, settle, respond.
    #[default]
    AfterHandler,
    /// Settle, then forward.
    BeforeHandler,
}

/// `[settlement]`: the mode, and what happens when settlement outlives the exchange.
///
/// A payment whose settlement is still pending when the exchange ends (the transfer is sent
/// but not confirmed, or the facilitator did not answer after the retries) keeps the upstream's
/// response in memory; the buyer gets `402 settlement_pending` with `Retry-After`, and retrying
/// with the same payment delivers the kept response once the payment has settled. The upstream
/// is never called twice for one payment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettlementSettings {
    /// `after-handler` or `before-handler`.
    pub mode: Settlement,
    /// Repeats of a `/verify` or `/settle` that got no answer, with the same attempt key
    /// (within the payment's `max_timeout_seconds`).
    pub retries: u32,
    /// Most payments awaiting settlement at once.
    pub pending_max_entries: usize,
    /// Most bytes of kept responses at once.
    pub pending_max_bytes: usize,
    /// Largest single response that can be kept.
    pub pending_max_response_bytes: usize,
    /// Longest a response is kept (also capped by the payment's `max_timeout_seconds`).
    pub pending_ttl_secs: u64,
    /// `Retry-After` given to buyers while their settlement is pending.
    pub retry_after_secs: u64,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        let pending = PendingConfig::default();
        Self {
            mode: Settlement::default(),
            retries: tollgate_server::paywall::DEFAULT_RETRIES,
            pending_max_entries: pending.max_entries,
            pending_max_bytes: pending.max_total_bytes,
            pending_max_response_bytes: pending.max_response_bytes,
            pending_ttl_secs: pending.ttl.as_secs(),
            retry_after_secs: pending.retry_after.as_secs(),
        }
    }
}

impl SettlementSettings {
    /// The paywall's limits of the pending-response store.
    pub fn pending(&self) -> PendingConfig {
        PendingConfig {
            max_entries: self.pending_max_entries,
            max_total_bytes: self.pending_max_bytes,
            max_response_bytes: self.pending_max_response_bytes,
            ttl: Duration::from_secs(self.pending_ttl_secs),
            retry_after: Duration::from_secs(self.retry_after_secs),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use tollgate_server::PendingConfigError as E;
        let key = |field: &str| format!("settlement.{field}");
        match self.pending().validate() {
            Ok(()) => Ok(()),
            Err(E::Zero(field)) => Err(invalid(
                key(match field {
                    "max_entries" => "pending_max_entries",
                    "max_total_bytes" => "pending_max_bytes",
                    "max_response_bytes" => "pending_max_response_bytes",
                    "ttl" => "pending_ttl_secs",
                    _ => "retry_after_secs",
                }),
                "must be positive",
            )),
            Err(E::ResponseOverTotal { response, total }) => Err(invalid(
                key("pending_max_response_bytes"),
                format!("{response} is more than settlement.pending_max_bytes ({total})"),
            )),
        }
    }
}

/// `settlement` is either the mode alone (`settlement = "after-handler"`) or a table.
fn settlement_settings<'de, D: Deserializer<'de>>(d: D) -> Result<SettlementSettings, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = SettlementSettings;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("\"after-handler\", \"before-handler\", or a [settlement] table")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            use serde::de::IntoDeserializer;
            Ok(SettlementSettings {
                mode: Settlement::deserialize(v.into_deserializer())?,
                ..SettlementSettings::default()
            })
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            SettlementSettings::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Visitor)
}

impl From<Settlement> for SettlementMode {
    fn from(s: Settlement) -> Self {
        match s {
            Settlement::AfterHandler => SettlementMode::AfterHandler,
            Settlement::BeforeHandler => SettlementMode::BeforeHandler,
        }
    }
}

/// `[facilitator]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorSettings {
    /// Base URL, e.g. `http://127.0.0.1:4020`.
    pub url: String,
    /// Environment variable holding a bearer API key for the facilitator, if it wants one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Per-request timeout. Must be longer than `receipt_timeout_secs`: a settle cut short
    /// by the gateway has an unknown outcome, which only a later retry can resolve.
    #[serde(default = "default_facilitator_timeout")]
    pub timeout_secs: u64,
    /// How long the facilitator waits for a settlement's receipt before answering "pending"
    /// (its own `receipt_timeout_secs`; 60 s by default in `tollgate facilitator`). Only used
    /// to check that `timeout_secs` is longer.
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_secs: u64,
}

/// `[payment]`: where money goes unless a route says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentDefaults {
    /// CAIP-2 network, e.g. `eip155:8453`.
    pub network: Network,
    /// Recipient address.
    pub pay_to: String,
    /// Seconds a buyer has to complete a payment.
    #[serde(default = "default_max_timeout")]
    pub max_timeout_seconds: u64,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `"METHOD /path"`, or `"METHOD /prefix/*"` for everything under a prefix.
    pub route: String,
    /// The payment scheme (default `exact`). A metered scheme (`upto`) makes `amount`/`price`
    /// the maximum a buyer authorises; the upstream states the charge in `X-Tollgate-Charge`.
    #[serde(default)]
    pub scheme: Option<Scheme>,
    /// A dollar price (`"$0.001"`) in the network's known stablecoin...
    #[serde(default)]
    pub price: Option<String>,
    /// ...or an amount in atomic units of `asset`.
    #[serde(default)]
    pub amount: Option<AtomicAmount>,
    /// Token address, with `amount`.
    #[serde(default)]
    pub asset: Option<String>,
    /// What buyers need to sign for `asset` (EIP-3009 tokens: `{ name = "...", version = "..." }`).
    #[serde(default)]
    pub extra: Option<Map<String, Value>>,
    /// Overrides `payment.network`.
    #[serde(default)]
    pub network: Option<Network>,
    /// Overrides `payment.pay_to`.
    #[serde(default)]
    pub pay_to: Option<String>,
    /// Shown to buyers in the requirements' resource info.
    #[serde(default)]
    pub description: Option<String>,
    /// MIME type of the response, shown to buyers.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// `[routes.discovery]`: describe the route for Bazaar discovery (see
    /// [`DiscoverySettings`]); facilitators list it once it is paid.
    #[serde(default)]
    pub discovery: Option<DiscoverySettings>,
    /// Sign-in only (needs `[siwx]`): any wallet that signs in on the route's network gets
    /// through, and nothing is paid; no price.
    #[serde(default)]
    pub auth_only: bool,
}

/// `[routes.discovery]`: a route's Bazaar description (`extensions.bazaar` of its 402) and the
/// service metadata on its `resource`. Checked at start-up: a description that does not
/// validate against its schema, or metadata beyond the spec's limits, stops the gateway.
///
/// ```toml
/// [[routes]]
/// route = "GET /weather"
/// price = "$0.001"
/// description = "Current weather for a city"
/// [routes.discovery]
/// service_name = "Example Weather"
/// tags = ["weather", "forecast"]
/// icon_url = "https://example.com/icon.png"
/// input = { type = "http", method = "GET", queryParams = { city = "Paris" } }
/// output = { type = "json", example = { city = "Paris", temperature = 21 } }
/// query_schema = { properties = { city = { type = "string" } }, required = ["city"] }
/// ```
///
/// `input` is the spec's `info.input` as written in JSON (`type` `http` with `method`,
/// `queryParams`, `headers`, or `bodyType` and `body`; or `type` `mcp`). Without it, a `GET`,
/// `HEAD` or `DELETE` route is described by its method alone. The schema is generated from the
/// description; `query_schema`, `body_schema` and `output_schema` refine it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// `resource.serviceName` (1–32 printable ASCII characters).
    #[serde(default)]
    pub service_name: Option<String>,
    /// `resource.tags` (at most 5 distinct, each 1–32 printable ASCII characters).
    #[serde(default)]
    pub tags: Vec<String>,
    /// `resource.iconUrl` (an `http(s)` URL on a public host name).
    #[serde(default)]
    pub icon_url: Option<String>,
    /// `info.input`.
    #[serde(default)]
    pub input: Option<tollgate_server::bazaar::DiscoveryInput>,
    /// `info.output`.
    #[serde(default)]
    pub output: Option<tollgate_server::bazaar::DiscoveryOutput>,
    /// JSON Schema of the query parameters.
    #[serde(default)]
    pub query_schema: Option<Value>,
    /// JSON Schema of the request body.
    #[serde(default)]
    pub body_schema: Option<Value>,
    /// JSON Schema of the example response.
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// `routeTemplate` for a parameterised path (`/users/:id`).
    #[serde(default)]
    pub route_template: Option<String>,
}

impl DiscoverySettings {
    /// The route's bazaar description and service metadata, for the route `route`
    /// (`"METHOD /path"`); `key` names the table in errors.
    fn build(
        &self,
        route: &str,
        key: &str,
    ) -> Result<
        (
            tollgate_server::bazaar::BazaarExtension,
            tollgate_server::bazaar::ServiceMetadata,
        ),
        ConfigError,
    > {
        use tollgate_server::bazaar::{
            Bazaar, DiscoveryInfo, DiscoveryInput, HttpInput, QueryInput, QueryMethod,
            ServiceMetadata,
        };
        let query = |m| DiscoveryInput::Http(HttpInput::Query(QueryInput::new(m)));
        let method = route.split_whitespace().next().unwrap_or("");
        let input = match (&self.input, method) {
            (Some(input), _) => input.clone(),
            (None, "GET") => query(QueryMethod::Get),
            (None, "HEAD") => query(QueryMethod::Head),
            (None, "DELETE") => query(QueryMethod::Delete),
            (None, _) => {
                return Err(invalid(
                    format!("{key}.input"),
                    format!(
                    "route {route:?} needs its input described: give `input = {{ type = \"http\", \
                         method = ..., bodyType = ..., body = ... }}`"
                ),
                ))
            }
        };
        if let DiscoveryInput::Http(http) = &input {
            if method != "*" && !method.eq_ignore_ascii_case(http.method()) {
                return Err(invalid(
                    format!("{key}.input.method"),
                    format!(
                        "{} does not match the route's method {method}",
                        http.method()
                    ),
                ));
            }
        }
        let mut bazaar = Bazaar::from_info(DiscoveryInfo {
            input,
            output: self.output.clone(),
        });
        if let Some(schema) = &self.query_schema {
            bazaar = bazaar.query_schema(schema.clone());
        }
        if let Some(schema) = &self.body_schema {
            bazaar = bazaar.body_schema(schema.clone());
        }
        if let Some(schema) = &self.output_schema {
            bazaar = bazaar.output_schema(schema.clone());
        }
        if let Some(template) = &self.route_template {
            bazaar = bazaar.route_template(template.clone());
        }
        let extension = bazaar
            .build()
            .map_err(|e| invalid(key.to_owned(), e.to_string()))?;
        let service = ServiceMetadata::new(
            self.service_name.as_deref(),
            &self.tags,
            self.icon_url.as_deref(),
        )
        .map_err(|e| invalid(key.to_owned(), e.to_string()))?;
        Ok((extension, service))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8402))
}
fn default_upstream_timeout() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    600
}
/// Default of `facilitator.timeout_secs`: longer than the facilitator's default receipt wait,
/// so a slow settlement is answered ("pending" at worst) rather than cut off.
pub const DEFAULT_FACILITATOR_TIMEOUT_SECS: u64 = 90;
/// Default of `facilitator.receipt_timeout_secs`: `tollgate facilitator`'s default
/// `receipt_timeout_secs`.
pub const DEFAULT_RECEIPT_TIMEOUT_SECS: u64 = 60;

fn default_facilitator_timeout() -> u64 {
    DEFAULT_FACILITATOR_TIMEOUT_SECS
}
fn default_receipt_timeout() -> u64 {
    DEFAULT_RECEIPT_TIMEOUT_SECS
}
fn default_max_timeout() -> u64 {
    60
}

/// Why the configuration is unusable. Every variant names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is well-typed but not acceptable.
    #[error("invalid config value for `{key}`: {reason}")]
    Invalid {
        /// The key, e.g. `routes[2].price`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok =
        (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "https://".len();
    if ok {
        Ok(())
    } else {
        Err(invalid(key, format!("{url:?} is not an http(s) URL")))
    }
}

impl GatewayConfig {
    /// Reads, parses, applies environment overrides and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text)?;
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no environment overrides, no validation).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Applies `TOLLGATE_LISTEN` and `TOLLGATE_UPSTREAM` from `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = env(ENV_LISTEN) {
            self.listen = listen.parse().map_err(|e| {
                invalid(
                    format!("listen (from {ENV_LISTEN})"),
                    format!("{listen:?}: {e}"),
                )
            })?;
        }
        if let Some(upstream) = env(ENV_UPSTREAM) {
            self.upstream = upstream;
        }
        Ok(())
    }

    /// Checks every value the types alone cannot, by building every route's price.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("upstream", &self.upstream)?;
        check_http_url("facilitator.url", &self.facilitator.url)?;
        if self.upstream_timeout_secs == 0 {
            return Err(invalid("upstream_timeout_secs", "must be positive"));
        }
        if self.facilitator.timeout_secs == 0 {
            return Err(invalid("facilitator.timeout_secs", "must be positive"));
        }
        if self.facilitator.receipt_timeout_secs == 0 {
            return Err(invalid(
                "facilitator.receipt_timeout_secs",
                "must be positive",
            ));
        }
        if self.facilitator.timeout_secs <= self.facilitator.receipt_timeout_secs {
            return Err(invalid(
                "facilitator.timeout_secs",
                format!(
                    "{} s is not longer than facilitator.receipt_timeout_secs ({} s): the gateway \
                     would give up on a settlement while the facilitator still waits for its \
                     receipt, leaving its outcome unknown",
                    self.facilitator.timeout_secs, self.facilitator.receipt_timeout_secs
                ),
            ));
        }
        self.settlement.validate()?;
        if let Some(identity) = &self.identity {
            identity.validate()?;
        }
        if let Some(channels) = &self.channels {
            channels.validate()?;
        }
        if let Some(siwx) = &self.siwx {
            siwx.validate()?;
        }
        if let Some(i) = self
            .routes
            .iter()
            .position(|r| r.scheme == Some(Scheme::BatchSettlement))
        {
            if self.channels.is_none() {
                return Err(invalid(
                    format!("routes[{i}].scheme"),
                    "batch-settlement needs a [channels] table (where the channels are kept)",
                ));
            }
        }
        self.limits
            .validate()
            .map_err(|e| invalid(format!("limits.{}", e.key), e.reason))?;
        // Worst case of one exchange: verify retried until the payment's deadline plus one
        // last try, the upstream, then settlement's first try. The listener must not cut it
        // short: a settlement abandoned half-way is a buyer charged and never served.
        let longest = self
            .payment
            .max_timeout_seconds
            .saturating_add(self.upstream_timeout_secs)
            .saturating_add(self.facilitator.timeout_secs.saturating_mul(2));
        if self.request_timeout_secs <= longest {
            return Err(invalid(
                "request_timeout_secs",
                format!(
                    "{} s is not longer than one exchange may take: payment.max_timeout_seconds \
                     + upstream_timeout_secs + 2 × facilitator.timeout_secs = {longest} s",
                    self.request_timeout_secs
                ),
            ));
        }
        if self.routes.is_empty() {
            return Err(invalid(
                "routes",
                "price at least one route ([[routes]]); a gateway with none charges nothing",
            ));
        }
        let mut table = tollgate_server::RouteTable::default();
        for (i, route) in self.routes.iter().enumerate() {
            let price = self.route_price(i)?;
            table
                .insert(&route.route, price)
                .map_err(|e| invalid(format!("routes[{i}].route"), e.to_string()))?;
        }
        if let Some(path) = &self.metrics.path {
            let canonical = path.starts_with('/')
                && !path.contains("//")
                && path
                    .split('/')
                    .all(|segment| segment != "." && segment != "..")
                && path.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b'~')
                });
            if !canonical {
                return Err(invalid(
                    "metrics.path",
                    format!(
                        "{path:?} is not a plain absolute path (letters, digits, `/`, `_`, `-`, \
                         `.`, `~`; no empty, `.` or `..` segments)"
                    ),
                ));
            }
            // Served outside the paywall: it must not take a priced path off the price list.
            if [http::Method::GET, http::Method::HEAD]
                .iter()
                .any(|method| table.find(method, path).is_some())
            {
                return Err(invalid(
                    "metrics.path",
                    format!("{path:?} is a priced route; the scrape endpoint would make it free"),
                ));
            }
        }
        Ok(())
    }

    /// The price of route `i`.
    pub fn route_price(&self, i: usize) -> Result<RoutePrice, ConfigError> {
        let route = &self.routes[i];
        let key = |field: &str| format!("routes[{i}].{field}");
        let network = route
            .network
            .clone()
            .unwrap_or_else(|| self.payment.network.clone());
        let pay_to = route.pay_to.as_deref().unwrap_or(&self.payment.pay_to);
        if route.auth_only {
            if route.price.is_some() || route.amount.is_some() || route.scheme.is_some() {
                return Err(invalid(
                    key("auth_only"),
                    "an auth-only route takes no price, amount or scheme",
                ));
            }
            if self.siwx.is_none() {
                return Err(invalid(
                    key("auth_only"),
                    "auth-only routes need a [siwx] table (the sign-in they ask for)",
                ));
            }
            return Ok(RoutePrice::auth_only(vec![network]));
        }
        let mut option = match (&route.price, &route.amount, &route.asset) {
            (Some(price), None, None) => PaymentOption::usd(price, network, pay_to)
                .map_err(|e| invalid(key("price"), e.to_string()))?,
            (None, Some(amount), Some(asset)) => {
                PaymentOption::atomic(amount.0, asset, network, pay_to, route.extra.clone())
            }
            (None, Some(_), None) => {
                return Err(invalid(
                    key("asset"),
                    "an atomic `amount` needs its `asset`",
                ))
            }
            (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
                return Err(invalid(
                    key("price"),
                    "give either a dollar `price` or an atomic `amount` with `asset`, not both",
                ))
            }
            (None, None, _) => {
                return Err(invalid(
                    key("price"),
                    "missing: give `price = \"$0.01\"` or `amount` + `asset`",
                ))
            }
        };
        option.max_timeout_seconds = self.payment.max_timeout_seconds;
        if let Some(scheme) = &route.scheme {
            option.scheme = scheme.clone();
        }
        let mut price = RoutePrice::new(option);
        if let Some(d) = &route.description {
            price = price.description(d.clone());
        }
        if let Some(m) = &route.mime_type {
            price = price.mime_type(m.clone());
        }
        if let Some(discovery) = &route.discovery {
            let (bazaar, service) = discovery.build(&route.route, &key("discovery"))?;
            price.bazaar = Some(Box::new(bazaar));
            price.service = service;
        }
        Ok(price)
    }

    /// How long the upstream may take.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }
}

/// A commented starter configuration for `network` and `pay_to` (`tollgate init`), priced in
/// dollars of the network's known stablecoin.
pub fn starter(network: &Network, pay_to: &str, upstream: &str, facilitator: &str) -> String {
    starter_with_asset(network, pay_to, upstream, facilitator, None)
}

/// The token a starter prices its routes in when the network has no known stablecoin (a local
/// chain, a custom token): what a payer needs to sign for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterAsset {
    /// The token's address.
    pub address: String,
    /// Ticker shown in comments, e.g. `"USDC"`.
    pub symbol: String,
    /// Decimals of the atomic unit.
    pub decimals: u8,
    /// The token's EIP-712 domain name (`extra.name`).
    pub eip712_name: String,
    /// The token's EIP-712 domain version (`extra.version`).
    pub eip712_version: String,
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// [`starter`], or with `asset`: the same routes priced in atomic units of that token (0.001
/// and 0.01 of it, or one atomic unit where the token is coarser), with its signing domain in
/// `extra`, so a network without a known stablecoin gets a working file too.
pub fn starter_with_asset(
    network: &Network,
    pay_to: &str,
    upstream: &str,
    facilitator: &str,
    asset: Option<&StarterAsset>,
) -> String {
    let (weather, v1) = match asset {
        None => (
            "price = \"$0.001\"".to_owned(),
            "price = \"$0.01\"".to_owned(),
        ),
        Some(a) => {
            let price = |decimal: &str| {
                let atomic = decimal
                    .parse::<tollgate_proto::DecimalAmount>()
                    .and_then(|d| d.to_atomic(a.decimals))
                    .unwrap_or(tollgate_proto::U256::from(1u8));
                // `decimals` in `extra` only feeds the 402's informational X-Payment-Amount
                // hint; payers never trust an offer's decimals.
                format!(
                    "# {} {} ({} decimals)\namount = \"{atomic}\"\nasset = {}\n\
                     extra = {{ name = {}, version = {}, decimals = {} }}",
                    tollgate_proto::money::format_atomic(atomic, a.decimals),
                    a.symbol.replace(['\n', '\r'], " "),
                    a.decimals,
                    toml_string(&a.address),
                    toml_string(&a.eip712_name),
                    toml_string(&a.eip712_version),
                    a.decimals,
                )
            };
            (price("0.001"), price("0.01"))
        }
    };
    format!(
        r#"# Tollgate gateway: x402 payments in front of an existing HTTP API, no code change.
# Run it with `tollgate proxy --config <this file>`. Unknown keys are errors.
# Environment overrides: TOLLGATE_LISTEN, TOLLGATE_UPSTREAM.

# Where buyers connect (loopback by default; put TLS in front for the internet).
listen = "127.0.0.1:8402"
# The API being sold. Request and response bodies stream through; hop-by-hop headers are
# dropped; the upstream sees X-Forwarded-For/-Host/-Proto and, for paid requests,
# X-Tollgate-Payer, -Network, -Asset and -Amount.
upstream = "{upstream}"
upstream_timeout_secs = 60
# Longest one exchange may take (payment checks, upstream, settlement); then 503. Must be longer
# than payment.max_timeout_seconds + upstream_timeout_secs + 2 × facilitator.timeout_secs.
request_timeout_secs = 600
# "after-handler": verify, forward, settle only if the upstream succeeded (< 400), and deliver
# nothing if settlement fails. "before-handler": settle first, then forward.
# A settlement still pending when the exchange ends keeps the response in memory: the buyer
# gets 402 settlement_pending + Retry-After, and the retry with the same payment gets it once
# settled (the upstream is never called twice). To tune that, replace this line with a table
# at the end of the file:
#   [settlement]
#   mode = "after-handler"
#   retries = 3                        # repeats of a /settle that got no answer
#   pending_max_entries = 1024
#   pending_max_bytes = 67108864       # all kept responses together
#   pending_max_response_bytes = 4194304
#   pending_ttl_secs = 600             # also capped by max_timeout_seconds
#   retry_after_secs = 5
settlement = "after-handler"

[facilitator]
# Verifies and settles payments (`tollgate facilitator`, or any x402 facilitator).
url = "{facilitator}"
# api_key_env = "TOLLGATE_FACILITATOR_KEY"   # bearer key, if the facilitator wants one
# Must be longer than the facilitator's receipt wait (its receipt_timeout_secs), or a slow
# settlement is cut off with an unknown outcome; the gateway refuses to start otherwise.
timeout_secs = 90
receipt_timeout_secs = 60

[payment]
# Where the money goes, unless a route says otherwise.
network = "{network}"
pay_to = "{pay_to}"
# Seconds a buyer has to complete a payment.
max_timeout_seconds = 60

[limits]
# Most buyer connections at once. When full, the connection idle the longest (or still sending
# its request head) is closed for the new one; when all are busy with requests, new ones get 503.
max_connections = 1024
# Seconds to send a whole request head (stops clients trickling half a header: slowloris);
# also the longest a request body may stall while the server waits for it.
header_read_timeout_secs = 10
# Seconds a keep-alive connection may wait for its next request.
idle_timeout_secs = 60

# Prometheus metrics (402s, paid requests, refusals by reason, upstream latency) on this
# listener. Off by default: the path is answered here and never reaches the upstream, so pick
# one the upstream does not serve.
# [metrics]
# path = "/_tollgate/metrics"

# Priced routes: "METHOD /path", or "METHOD /prefix/*" for everything below a prefix.
# Anything not listed passes through for free.
[[routes]]
route = "GET /weather"
{weather}
description = "Current weather"
mime_type = "application/json"

[[routes]]
route = "POST /v1/*"
{v1}
description = "Every call under /v1"

# An amount in atomic units of an explicit token instead of dollars:
# [[routes]]
# route = "GET /report"
# amount = "250000"
# asset = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
# extra = {{ name = "USDC", version = "2" }}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "eip155:8453";
    const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

    /// `[channels]` as documented (the doc example on [`ChannelSettings`]), and its refusals:
    /// a `batch-settlement` route without it, two stores, no store, two key sources.
    #[test]
    fn siwx_table_and_auth_only_routes_are_checked() {
        let checked = |text: &str| {
            GatewayConfig::parse(text).and_then(|c| {
                c.validate()?;
                for i in 0..c.routes.len() {
                    c.route_price(i)?;
                }
                Ok(c)
            })
        };
        let auth_only = "\n[[routes]]\nroute = \"GET /members\"\nauth_only = true\n";
        let siwx = "\n[siwx]\norigin = \"https://api.example.com\"\nsqlite = \"siwx.db\"\n";
        let config = checked(&format!("{}{siwx}{auth_only}", starter_text())).unwrap();
        assert_eq!(
            config.siwx.unwrap().origin,
            "https://api.example.com".to_owned()
        );
        for (text, why) in [
            (format!("{}{auth_only}", starter_text()), "[siwx]"),
            (
                format!(
                    "{}{siwx}\n[[routes]]\nroute = \"GET /m\"\nauth_only = true\nprice = \"$0.01\"\n",
                    starter_text()
                ),
                "no price",
            ),
            (
                format!(
                    "{}\n[siwx]\norigin = \"https://a.example\"\nsqlite = \"a\"\nurl = \"postgres://x\"\n",
                    starter_text()
                ),
                "not both",
            ),
            (
                format!("{}\n[siwx]\norigin = \"https://a.example\"\nurl = \"mysql://x\"\n", starter_text()),
                "postgres://",
            ),
            (
                format!("{}\n[siwx]\norigin = \"https://a.example\"\norign = \"x\"\n", starter_text()),
                "orign",
            ),
        ] {
            let err = checked(&text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn channels_table_is_parsed_and_checked() {
        let checked =
            |text: &str| GatewayConfig::parse(text).and_then(|c| c.validate().map(|()| c));
        let route = "\n[[routes]]\nroute = \"GET /api\"\nprice = \"$0.001\"\nscheme = \"batch-settlement\"\n";
        let without = format!("{}{route}", starter_text());
        let err = checked(&without).unwrap_err().to_string();
        assert!(err.contains("[channels]"), "{err}");
        let with = |table: &str| format!("{}{route}\n[channels]\n{table}", starter_text());
        let documented = with(
            "sqlite = \"channels.db\"\nclaim_interval_secs = 300\nclaim_threshold = \"1000000\"\n\
             claim_check_secs = 5\nreceiver_authorizer_key_env = \"SELLER_AUTHORIZER_KEY\"\n",
        );
        let config = checked(&documented).unwrap();
        let channels = config.channels.unwrap();
        assert_eq!(channels.sqlite, Some(PathBuf::from("channels.db")));
        assert_eq!(
            channels.claim_threshold.0,
            tollgate_proto::U256::from(1_000_000u64)
        );
        for (table, why) in [
            ("sqlite = \"a.db\"\nurl = \"postgres://x@localhost/db\"\n", "not both"),
            ("claim_interval_secs = 5\n", "set sqlite"),
            ("url = \"mysql://x\"\n", "postgres://"),
            (
                "sqlite = \"a.db\"\nreceiver_authorizer_key_env = \"K\"\nreceiver_authorizer_key_file = \"k\"\n",
                "not both",
            ),
            ("sqlite = \"a.db\"\nclaim_interval_secs = 0\n", "positive"),
        ] {
            let err = checked(&with(table)).unwrap_err().to_string();
            assert!(err.contains(why), "{table}: {err}");
        }
    }

    fn starter_text() -> String {
        starter(
            &BASE.parse().unwrap(),
            PAYEE,
            "http://127.0.0.1:3000",
            "http://127.0.0.1:4020",
        )
    }

    #[test]
    fn the_identity_provider_is_one_source_and_errors_name_the_key() {
        let with = |provider: &str| {
            format!(
                "{}\n[identity]\n[identity.policy]\nrequire_sanctions_clear = true\n[identity.provider]\n{provider}\n",
                starter_text()
            )
        };
        let ok = GatewayConfig::parse(&with(
            "assess_url = \"http://127.0.0.1:4020/\"\napi_key_env = \"K\"",
        ))
        .unwrap();
        ok.validate().unwrap();
        let provider = ok.identity.unwrap().provider.unwrap();
        assert_eq!(
            provider.assess_url.as_deref(),
            Some("http://127.0.0.1:4020/")
        );
        assert_eq!(provider.timeout_secs, 5);
        GatewayConfig::parse(&with("sanctions_file = \"list.txt\""))
            .unwrap()
            .validate()
            .unwrap();
        for (provider, key) in [
            (
                "assess_url = \"http://a/\"\nsanctions_file = \"l\"",
                "identity.provider",
            ),
            ("timeout_secs = 3", "identity.provider"),
            ("assess_url = \"ftp://a/\"", "identity.provider.assess_url"),
            (
                "sanctions_file = \"l\"\napi_key_env = \"K\"",
                "identity.provider.api_key_env",
            ),
            (
                "assess_url = \"http://a/\"\ntimeout_secs = 0",
                "identity.provider.timeout_secs",
            ),
        ] {
            let err = GatewayConfig::parse(&with(provider))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{provider}: {err}");
        }
        let typo = GatewayConfig::parse(&with("asess_url = \"http://a/\"")).unwrap_err();
        assert!(typo.to_string().contains("asess_url"), "{typo}");
    }

    #[test]
    fn the_decision_log_is_one_store_and_its_url_is_never_printed() {
        let with = |decisions: &str| {
            format!(
                "{}\n[identity]\ndecisions = {decisions}\n[identity.policy]\nrequire_sanctions_clear = true\n",
                starter_text()
            )
        };
        let sqlite = GatewayConfig::parse(&with("{ sqlite = \"d.db\" }")).unwrap();
        sqlite.validate().unwrap();
        let decisions = sqlite.identity.unwrap().decisions.unwrap();
        assert_eq!(
            decisions.sqlite.as_deref(),
            Some(std::path::Path::new("d.db"))
        );
        assert_eq!(decisions.queue, 1024);
        let secret = "postgres://u:hunter2@127.0.0.1/db";
        let pg =
            GatewayConfig::parse(&with(&format!("{{ url = \"{secret}\", queue = 8 }}"))).unwrap();
        pg.validate().unwrap();
        let printed = format!("{pg:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(pg.identity.unwrap().decisions.unwrap().queue, 8);
        for (decisions, key) in [
            (
                "{ sqlite = \"d\", url = \"postgres://a/b\" }",
                "identity.decisions",
            ),
            ("{ queue = 5 }", "identity.decisions"),
            (
                "{ url = \"mysql://u:hunter2@h/db\" }",
                "identity.decisions.url",
            ),
            ("{ sqlite = \"d\", queue = 0 }", "identity.decisions.queue"),
        ] {
            let err = GatewayConfig::parse(&with(decisions))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{decisions}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let typo = GatewayConfig::parse(&with("{ sqlit = \"d\" }")).unwrap_err();
        assert!(typo.to_string().contains("sqlit"), "{typo}");
    }

    #[test]
    fn starter_config_parses_and_validates() {
        let c = GatewayConfig::parse(&starter_text()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.settlement, SettlementSettings::default());
        assert_eq!(c.settlement.mode, Settlement::AfterHandler);
        assert!(c.facilitator.timeout_secs > c.facilitator.receipt_timeout_secs);
        let price = c.route_price(0).unwrap();
        assert_eq!(price.options[0].amount.to::<u64>(), 1_000);
    }

    #[test]
    fn mistakes_name_the_key() {
        let text = starter_text().replace("mime_type", "mimetype");
        let err = GatewayConfig::parse(&text).unwrap_err().to_string();
        assert!(err.contains("mimetype"), "{err}");

        let text = starter_text().replace("price = \"$0.001\"", "price = \"cheap\"");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].price"), "{err}");

        let text = starter_text().replace("price = \"$0.001\"", "amount = \"5\"");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].asset"), "{err}");

        let text = starter_text().replace("route = \"GET /weather\"", "route = \"/weather\"");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].route"), "{err}");

        // A dollar price where no stablecoin is known cannot be charged.
        let text = starter_text().replace(BASE, "eip155:31337");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].price"), "{err}");

        let text =
            starter_text().replace("settlement = \"after-handler\"", "settlement = \"later\"");
        assert!(GatewayConfig::parse(&text).is_err());

        let text = starter_text().replace("http://127.0.0.1:3000", "127.0.0.1:3000");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream"), "{err}");
    }

    #[test]
    fn defaults_wait_longer_than_the_facilitator_and_an_inverted_order_is_refused() {
        let text = starter_text()
            .replace("timeout_secs = 90\n", "")
            .replace("receipt_timeout_secs = 60\n", "");
        let c = GatewayConfig::parse(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.facilitator.timeout_secs, 90);
        assert_eq!(c.facilitator.receipt_timeout_secs, 60);

        for (timeout, receipt) in [(30, 60), (60, 60), (90, 120)] {
            let text = starter_text()
                .replace("timeout_secs = 90", &format!("timeout_secs = {timeout}"))
                .replace(
                    "receipt_timeout_secs = 60",
                    &format!("receipt_timeout_secs = {receipt}"),
                );
            let err = GatewayConfig::parse(&text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("facilitator.timeout_secs")
                    && err.contains("facilitator.receipt_timeout_secs"),
                "{err}"
            );
        }
        let text = starter_text().replace("receipt_timeout_secs = 60", "receipt_timeout_secs = 0");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("facilitator.receipt_timeout_secs"), "{err}");
    }

    #[test]
    fn settlement_is_a_mode_or_a_table() {
        let c = GatewayConfig::parse(&starter_text().replace(
            "settlement = \"after-handler\"",
            "settlement = \"before-handler\"",
        ))
        .unwrap();
        assert_eq!(c.settlement.mode, Settlement::BeforeHandler);
        assert_eq!(
            c.settlement.retries,
            tollgate_server::paywall::DEFAULT_RETRIES
        );

        let table =
            "\n[settlement]\nmode = \"before-handler\"\nretries = 1\npending_max_entries = 8\n\
                     pending_max_bytes = 4096\npending_max_response_bytes = 1024\n\
                     pending_ttl_secs = 30\nretry_after_secs = 2\n";
        let text = starter_text().replace("settlement = \"after-handler\"\n", "") + table;
        let c = GatewayConfig::parse(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.settlement.mode, Settlement::BeforeHandler);
        assert_eq!(c.settlement.retries, 1);
        let pending = c.settlement.pending();
        assert_eq!(pending.max_entries, 8);
        assert_eq!(pending.max_total_bytes, 4096);
        assert_eq!(pending.max_response_bytes, 1024);
        assert_eq!(pending.ttl, Duration::from_secs(30));
        assert_eq!(pending.retry_after, Duration::from_secs(2));

        // Omitted keys keep their defaults.
        let text = starter_text().replace("settlement = \"after-handler\"\n", "")
            + "\n[settlement]\nretries = 0\n";
        let c = GatewayConfig::parse(&text).unwrap();
        assert_eq!(c.settlement.mode, Settlement::AfterHandler);
        assert_eq!(c.settlement.retries, 0);
        assert_eq!(c.settlement.pending(), PendingConfig::default());

        // Unknown keys and unusable limits name the key.
        let text = starter_text().replace("settlement = \"after-handler\"\n", "")
            + "\n[settlement]\npending_max_entrys = 3\n";
        let err = GatewayConfig::parse(&text).unwrap_err().to_string();
        assert!(err.contains("pending_max_entrys"), "{err}");
        for (line, key) in [
            ("pending_max_entries = 0", "settlement.pending_max_entries"),
            ("pending_ttl_secs = 0", "settlement.pending_ttl_secs"),
            ("retry_after_secs = 0", "settlement.retry_after_secs"),
            (
                "pending_max_bytes = 10\npending_max_response_bytes = 11",
                "settlement.pending_max_response_bytes",
            ),
        ] {
            let text = starter_text().replace("settlement = \"after-handler\"\n", "")
                + "\n[settlement]\n"
                + line
                + "\n";
            let err = GatewayConfig::parse(&text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
    }

    #[test]
    fn env_overrides_apply() {
        let mut c = GatewayConfig::parse(&starter_text()).unwrap();
        c.apply_env(|k| match k {
            ENV_LISTEN => Some("127.0.0.1:9000".into()),
            ENV_UPSTREAM => Some("http://127.0.0.1:9001".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.upstream, "http://127.0.0.1:9001");
        assert!(c
            .apply_env(|k| (k == ENV_LISTEN).then(|| "x".into()))
            .unwrap_err()
            .to_string()
            .contains("TOLLGATE_LISTEN"));
    }

    #[test]
    fn listener_limits_and_request_timeout_are_validated_naming_the_key() {
        let c = GatewayConfig::parse(&starter_text()).unwrap();
        assert_eq!(c.limits, tollgate_listen::Limits::default());
        assert_eq!(c.request_timeout_secs, 600);
        let text = starter_text().replace(
            "header_read_timeout_secs = 10",
            "header_read_timeout_secs = 0",
        );
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.header_read_timeout_secs"), "{err}");
        // Shorter than what one exchange may take: refused.
        let text =
            starter_text().replace("request_timeout_secs = 600", "request_timeout_secs = 120");
        let err = GatewayConfig::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("request_timeout_secs"), "{err}");
        let text = starter_text().replace("[limits]", "[limits]\nmax_conns = 5");
        let err = GatewayConfig::parse(&text).unwrap_err().to_string();
        assert!(err.contains("max_conns"), "{err}");
    }

    /// A minimal gateway whose one route ends with `route_tail` (e.g. a `[routes.discovery]`
    /// table).
    fn with_route(route: &str, route_tail: &str) -> Result<GatewayConfig, ConfigError> {
        let text = format!(
            r#"
upstream = "http://127.0.0.1:3000"
[facilitator]
url = "http://127.0.0.1:4020"
[payment]
network = "{BASE}"
pay_to = "{PAYEE}"
[[routes]]
route = "{route}"
price = "$0.001"
{route_tail}
"#
        );
        let config = GatewayConfig::parse(&text)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_route_is_described_for_discovery_or_the_gateway_refuses_to_start() {
        let config = with_route(
            "GET /weather",
            r#"
[routes.discovery]
service_name = "Example Weather"
tags = ["weather", "forecast"]
icon_url = "https://cdn.example.com/icon.png"
input = { type = "http", method = "GET", queryParams = { city = "Paris" } }
output = { type = "json", example = { city = "Paris", temperature = 21 } }
query_schema = { properties = { city = { type = "string" } }, required = ["city"] }
"#,
        )
        .unwrap();
        let price = config.route_price(0).unwrap();
        let bazaar = price.bazaar.as_ref().expect("described").to_value();
        assert_eq!(bazaar["info"]["input"]["queryParams"]["city"], "Paris");
        assert_eq!(
            bazaar["schema"]["properties"]["input"]["properties"]["queryParams"]["required"],
            serde_json::json!(["city"])
        );
        assert_eq!(
            price.service.service_name.as_deref(),
            Some("Example Weather")
        );
        assert_eq!(price.service.tags, ["weather", "forecast"]);
        assert!(price.offered_extensions().contains_key("bazaar"));

        // Without `input`, a GET route is described by its method.
        let bare = with_route("GET /weather", "[routes.discovery]\ntags = [\"weather\"]").unwrap();
        assert_eq!(
            bare.route_price(0).unwrap().bazaar.unwrap().to_value()["info"]["input"]["method"],
            "GET"
        );

        let refused = |route: &str, tail: &str| with_route(route, tail).unwrap_err().to_string();
        // A body route must say what its body is.
        let e = refused("POST /search", "[routes.discovery]");
        assert!(e.contains("routes[0].discovery.input"), "{e}");
        // The example breaks the schema given for it.
        let e = refused(
            "GET /weather",
            "[routes.discovery]\ninput = { type = \"http\", method = \"GET\", queryParams = { city = 7 } }\nquery_schema = { properties = { city = { type = \"string\" } } }",
        );
        assert!(
            e.contains("routes[0].discovery") && e.contains("does not match its schema"),
            "{e}"
        );
        // The input's method is not the route's.
        let e = refused(
            "GET /weather",
            "[routes.discovery]\ninput = { type = \"http\", method = \"DELETE\" }",
        );
        assert!(e.contains("routes[0].discovery.input.method"), "{e}");
        // A wrong `type` tag, a body method without `bodyType`: refused when parsed.
        assert!(refused(
            "GET /w",
            "[routes.discovery]\ninput = { type = \"grpc\", method = \"GET\" }"
        )
        .contains("grpc"));
        assert!(refused(
            "POST /w",
            "[routes.discovery]\ninput = { type = \"http\", method = \"POST\" }"
        )
        .contains("bodyType"));
        // Service metadata beyond the spec's limits.
        let e = refused(
            "GET /w",
            &format!("[routes.discovery]\nservice_name = \"{}\"", "x".repeat(33)),
        );
        assert!(e.contains("serviceName"), "{e}");
        let e = refused(
            "GET /w",
            "[routes.discovery]\nicon_url = \"http://127.0.0.1/i.png\"",
        );
        assert!(e.contains("iconUrl"), "{e}");
        let e = refused(
            "GET /w",
            "[routes.discovery]\ntags = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]",
        );
        assert!(e.contains("tags"), "{e}");
        let e = refused(
            "GET /w",
            "[routes.discovery]\nroute_template = \"/../admin\"",
        );
        assert!(e.contains("routeTemplate"), "{e}");
        assert!(refused("GET /w", "[routes.discovery]\nsurprise = 1").contains("surprise"));
    }
}
