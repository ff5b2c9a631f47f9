//! The facilitator's configuration: one typed TOML file, a few environment overrides, and
//! validation that fails loudly at start-up.
//!
//! What the facilitator settles on is said in two parts: **chains**, one table per network
//! under its family (`[[chains.eip155]]`, whose type [`EvmChainSettings`] belongs to the EVM
//! crate), and **schemes**, each `[[schemes]]` entry naming a scheme, the networks it serves
//! as a [`NetworkPattern`] (`eip155:8453`, `eip155:*`, or a comma list) and its settings. Every
//! scheme on a network settles through that network's one chain, so they share its signer
//! pool. Without `[[schemes]]`, `exact` is served on every chain. [`Config::layout`] resolves
//! the two into the chains to connect, each with the schemes to register on it.
//!
//! The earlier layout — one `[[networks]]` table per EVM network holding both the chain's and
//! `exact`'s keys — still loads, as one chain with `exact` on it per entry.
//!
//! Unknown keys are errors (a mistyped `recipt_timeout_secs` must not silently fall back to a
//! default). Signer keys are never in the file: the file names an environment variable or a
//! key file, and the key is read only when the facilitator starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize;
use tollgate_core::NetworkPattern;
use tollgate_evm::config::SettingsError;
use tollgate_evm::FacilitatorConfig;
use tollgate_proto::{Network, Scheme};

pub use tollgate_evm::config::{
    BatchSettings, EvmChainSettings, EvmSchemeSettings, ExactEvmSettings, SignerSource,
};

/// Environment variable overriding `server.listen`.
pub const ENV_LISTEN: &str = "TOLLGATE_LISTEN";
/// Environment variable overriding `ledger.path`.
pub const ENV_LEDGER_PATH: &str = "TOLLGATE_LEDGER_PATH";
/// Environment variable setting `ledger.url` (a PostgreSQL URL, which often carries a
/// password and so is better kept out of the file).
pub const ENV_LEDGER_URL: &str = "TOLLGATE_LEDGER_URL";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// Where the settlement ledger lives.
    pub ledger: LedgerConfig,
    /// `[[chains.<family>]]`: the networks settled on, one table each.
    pub chains: ChainsConfig,
    /// `[[schemes]]`: which scheme runs on which networks, with its settings. Empty: `exact`
    /// on every chain.
    pub schemes: Vec<SchemeConfig>,
    /// `[[networks]]`, the earlier layout: each entry is one EVM chain with `exact` on it.
    /// Cannot be combined with `chains` or `schemes`.
    pub networks: Vec<NetworkConfig>,
    /// `[identity]`: what `POST /assess` knows besides the ledger.
    pub identity: IdentityConfig,
    /// `[telemetry]`: OpenTelemetry spans of every request, verify and settle, exported over
    /// OTLP/HTTP when an endpoint is set (see `tollgate_telemetry::TelemetryConfig`).
    pub telemetry: tollgate_telemetry::TelemetryConfig,
}

/// `[identity]`: the reputation service's sources besides the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// A sanctions list (one address per line, `#` comments; see
    /// `tollgate_identity::SanctionsList`) that `POST /assess` checks
    /// `require_sanctions_clear` against; reloaded when it changes. Without one, a policy
    /// requiring sanctions clearance is refused (fail closed).
    #[serde(default)]
    pub sanctions_file: Option<std::path::PathBuf>,
}

/// The file as TOML sees it; `[[schemes]]` tables are typed once their `scheme` is known.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    ledger: LedgerConfig,
    #[serde(default)]
    chains: ChainsConfig,
    #[serde(default)]
    schemes: Vec<toml::Table>,
    #[serde(default)]
    networks: Vec<NetworkConfig>,
    #[serde(default)]
    identity: IdentityConfig,
    #[serde(default)]
    telemetry: tollgate_telemetry::TelemetryConfig,
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let schemes = raw
            .schemes
            .into_iter()
            .enumerate()
            .map(|(i, table)| SchemeConfig::from_table(i, table))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            server: raw.server,
            ledger: raw.ledger,
            chains: raw.chains,
            schemes,
            networks: raw.networks,
            identity: raw.identity,
            telemetry: raw.telemetry,
        })
    }
}

/// `[chains]`: the networks, grouped by chain family. A family this build does not know
/// (`[[chains.solana]]`) is an unknown key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainsConfig {
    /// `[[chains.eip155]]`: EVM networks.
    #[serde(default)]
    pub eip155: Vec<EvmChainSettings>,
    /// `[[chains.solana]]`: Solana clusters, each serving `exact` (SPL Token and Token-2022)
    /// with its fee payers. Typed by the Solana crate; in builds with the `solana` feature.
    #[cfg(feature = "solana")]
    #[serde(default)]
    pub solana: Vec<tollgate_svm::config::SvmChainSettings>,
}

/// One `[[schemes]]` entry: a scheme, the networks it serves, and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeConfig {
    /// `networks`: the configured chains this entry serves.
    pub networks: NetworkPattern,
    /// `scheme` and the scheme's own keys.
    pub settings: SchemeSettings,
}

/// A scheme's settings, typed by the scheme (and its chain family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeSettings {
    /// `exact` on EVM chains.
    ExactEvm(ExactEvmSettings),
    /// Any other scheme the EVM chain crate serves, typed by that crate from the table's
    /// `scheme` key ([`EvmSchemeSettings::SCHEMES`]); built on the network's one chain.
    Evm(EvmSchemeSettings),
}

impl SchemeSettings {
    /// The scheme these settings configure.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::ExactEvm(_) => Scheme::Exact,
            Self::Evm(s) => s.scheme(),
        }
    }

    fn validate(&self) -> Result<(), SettingsError> {
        match self {
            Self::ExactEvm(s) => s.validate(),
            Self::Evm(s) => s.validate(),
        }
    }
}

/// The schemes a `[[schemes]]` entry may name, for error messages.
fn served_schemes() -> String {
    std::iter::once("exact")
        .chain(EvmSchemeSettings::SCHEMES.iter().copied())
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SchemeConfig {
    /// Types the `i`-th `[[schemes]]` table: `scheme` picks the settings type, which then
    /// reads the table's other keys (`networks` aside) and refuses unknown ones.
    fn from_table(i: usize, mut table: toml::Table) -> Result<Self, ConfigError> {
        let key = |field: &str| format!("schemes[{i}].{field}");
        let mut string = |field: &str, example: &str| match table.remove(field) {
            Some(toml::Value::String(s)) => Ok(s),
            Some(other) => Err(invalid(
                key(field),
                format!(
                    "expected a string such as {example}, found a {}",
                    other.type_str()
                ),
            )),
            None => Err(invalid(
                key(field),
                format!("missing; every [[schemes]] entry names one, e.g. {field} = {example}"),
            )),
        };
        let scheme = string("scheme", "\"exact\"")?;
        let networks = string("networks", "\"eip155:*\"")?;
        let scheme: Scheme = scheme
            .parse()
            .map_err(|e| invalid(key("scheme"), format!("{e}")))?;
        let networks: NetworkPattern = networks
            .parse()
            .map_err(|e| invalid(key("networks"), format!("{e}")))?;
        let settings = match scheme {
            Scheme::Exact => SchemeSettings::ExactEvm(table.try_into().map_err(|e| {
                ConfigError::Parse(format!(
                    "schemes[{i}] (scheme exact): {}",
                    e.to_string().trim()
                ))
            })?),
            other if EvmSchemeSettings::SCHEMES.contains(&other.as_str()) => {
                table.insert("scheme".into(), toml::Value::String(other.to_string()));
                SchemeSettings::Evm(table.try_into().map_err(|e| {
                    ConfigError::Parse(format!(
                        "schemes[{i}] (scheme {other}): {}",
                        e.to_string().trim()
                    ))
                })?)
            }
            other => {
                return Err(invalid(
                    key("scheme"),
                    format!(
                        "unknown scheme `{other}`: this facilitator serves {}",
                        served_schemes()
                    ),
                ))
            }
        };
        Ok(Self { networks, settings })
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:4020`: loopback unless you say otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest accepted request body. Real payments are a few KiB.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Longest a request may take, settlement included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Name of an environment variable holding an API key; when set, `/verify` and `/settle`
    /// require `Authorization: Bearer <key>`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests per client IP to `/verify`, `/settle` and `/supported`; none when absent.
    #[serde(default)]
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
    /// `[server.limits]`: connection cap, header-read and idle timeouts of the listener (the
    /// request timeout is `request_timeout_secs`).
    #[serde(default)]
    pub limits: tollgate_listen::Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit_bytes: default_body_limit(),
            request_timeout_secs: default_request_timeout(),
            api_key_env: None,
            rate_limit: None,
            limits: tollgate_listen::Limits::default(),
        }
    }
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// SQLite file of the settlement ledger (created if missing).
    #[serde(default = "default_ledger_path")]
    pub path: PathBuf,
    /// A PostgreSQL URL instead of the SQLite file, so several instances share one ledger.
    #[serde(default)]
    pub url: Option<DatabaseUrl>,
    /// Audit events older than this many days are deleted.
    #[serde(default = "default_events_max_age_days")]
    pub events_max_age_days: u64,
    /// At most this many audit events are kept; the oldest go first. Unauthenticated
    /// `/verify` calls each add one, so this bounds what anyone can make the ledger store.
    #[serde(default = "default_events_max_rows")]
    pub events_max_rows: u64,
    /// Seconds after an authorization's `validBefore` — or after its last verification, if
    /// sooner — at which a verified but never settled payment is deleted (once no
    /// reservation holds it).
    #[serde(default = "default_unsettled_grace_secs")]
    pub unsettled_grace_secs: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            path: default_ledger_path(),
            url: None,
            events_max_age_days: default_events_max_age_days(),
            events_max_rows: default_events_max_rows(),
            unsettled_grace_secs: default_unsettled_grace_secs(),
        }
    }
}

impl LedgerConfig {
    /// The retention limits these settings name.
    pub fn retention(&self) -> crate::ledger::Retention {
        crate::ledger::Retention {
            events_max_age: std::time::Duration::from_secs(
                self.events_max_age_days.saturating_mul(24 * 3600),
            ),
            events_max_rows: self.events_max_rows,
            unsettled_grace: std::time::Duration::from_secs(self.unsettled_grace_secs),
        }
    }
}

fn default_events_max_age_days() -> u64 {
    30
}

fn default_events_max_rows() -> u64 {
    1_000_000
}

fn default_unsettled_grace_secs() -> u64 {
    3600
}

/// A `postgres://` URL. It may hold a password, so `Debug` shows only the scheme.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included: pass it to the driver, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(postgres://…)")
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("a ledger URL must start with postgres:// or postgresql://".into());
        }
        Ok(Self(url))
    }
}

/// One `[[networks]]` entry (the earlier layout): an EVM chain's keys and `exact`'s keys in
/// one table, read as the two current types — `chain` (what `[[chains.eip155]]` says) and
/// `exact` (what an `exact` `[[schemes]]` entry says) — so the two layouts cannot drift apart.
/// Unknown keys are still errors, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The chain's keys.
    pub chain: EvmChainSettings,
    /// `exact`'s keys (`valid_before_margin_secs`, `eip6492_factories`, `batch`).
    pub exact: ExactEvmSettings,
}

/// The keys of a `[[networks]]` entry that belong to `exact` rather than to the chain.
const EXACT_KEYS: [&str; 4] = [
    "valid_before_margin_secs",
    "eip6492_factories",
    "batch",
    "coalesce",
];

impl<'de> Deserialize<'de> for NetworkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut chain = toml::Table::deserialize(d)?;
        let mut exact = toml::Table::new();
        for key in EXACT_KEYS {
            if let Some(value) = chain.remove(key) {
                exact.insert(key.to_owned(), value);
            }
        }
        Ok(Self {
            chain: EvmChainSettings::deserialize(toml::Value::Table(chain))
                .map_err(D::Error::custom)?,
            exact: ExactEvmSettings::deserialize(toml::Value::Table(exact))
                .map_err(D::Error::custom)?,
        })
    }
}

impl NetworkConfig {
    /// The chain this entry describes (what `[[chains.eip155]]` says today).
    pub fn chain_settings(&self) -> EvmChainSettings {
        self.chain.clone()
    }

    /// The `exact` settings this entry describes (what an `exact` `[[schemes]]` entry says
    /// today).
    pub fn exact_settings(&self) -> ExactEvmSettings {
        self.exact.clone()
    }

    /// The scheme settings this entry describes, with the chain's sending policy filled in.
    pub fn evm_config(&self) -> FacilitatorConfig {
        let chain = self.chain_settings().chain_config();
        FacilitatorConfig {
            receipt_timeout: chain.receipt_timeout,
            selection: chain.selection,
            replacement: chain.replacement,
            ..self.exact_settings().facilitator_config()
        }
    }

    /// Reads every signer key (the single one, or the pool) from the environment or key files.
    /// A key never appears in an error: only where it was looked for.
    pub fn load_signers(&self) -> Result<Vec<PrivateKeySigner>, ConfigError> {
        self.chain_settings()
            .load_signers()
            .map_err(|e| ConfigError::setting(&format!("networks ({})", self.chain.network), e))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4020))
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_request_timeout() -> u64 {
    120
}
fn default_ledger_path() -> PathBuf {
    PathBuf::from("tollgate-ledger.db")
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
        /// The key, e.g. `chains.eip155[0].rpc_urls` or `schemes[1].networks`.
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

impl ConfigError {
    /// A chain crate's settings error, its key placed under the table it was read from
    /// (`chains.eip155[0]` + `rpc_urls`).
    pub fn setting(table: &str, e: SettingsError) -> Self {
        invalid(format!("{table}.{}", e.key), e.reason)
    }
}

impl Config {
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Self::try_from(raw)
    }

    /// Applies `TOLLGATE_LISTEN`, `TOLLGATE_LEDGER_PATH` and `TOLLGATE_LEDGER_URL` from `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = env(ENV_LISTEN) {
            self.server.listen = listen.parse().map_err(|e| {
                invalid(
                    format!("server.listen (from {ENV_LISTEN})"),
                    format!("{listen:?}: {e}"),
                )
            })?;
        }
        if let Some(path) = env(ENV_LEDGER_PATH) {
            if path.is_empty() {
                return Err(invalid(
                    format!("ledger.path (from {ENV_LEDGER_PATH})"),
                    "empty path",
                ));
            }
            self.ledger.path = PathBuf::from(path);
        }
        if let Some(url) = env(ENV_LEDGER_URL) {
            self.ledger.url = Some(DatabaseUrl::try_from(url).map_err(|reason| {
                invalid(format!("ledger.url (from {ENV_LEDGER_URL})"), reason)
            })?);
        }
        Ok(())
    }

    /// Checks every value that the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.body_limit_bytes < 1024 {
            return Err(invalid(
                "server.body_limit_bytes",
                "must be at least 1024 (a payment is a few KiB)",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be positive"));
        }
        self.server
            .limits
            .validate()
            .map_err(|e| invalid(format!("server.limits.{}", e.key), e.reason))?;
        if let Some(rate) = self.server.rate_limit {
            if rate.per_second == 0 || rate.burst == 0 {
                return Err(invalid(
                    "server.rate_limit",
                    "per_second and burst must both be positive",
                ));
            }
        }
        if self.ledger.events_max_age_days == 0 {
            return Err(invalid("ledger.events_max_age_days", "must be at least 1"));
        }
        if self.ledger.events_max_rows < 100 {
            return Err(invalid(
                "ledger.events_max_rows",
                "must be at least 100 (the audit log needs some history)",
            ));
        }
        let layout = self.layout()?;
        for chain in &layout.evm {
            if self.server.request_timeout_secs <= chain.settings.receipt_timeout_secs {
                return Err(invalid(
                    "server.request_timeout_secs",
                    format!(
                        "{} s is not longer than {}.receipt_timeout_secs ({} s): a settlement \
                         waiting for its receipt would be cut off and the caller never told its \
                         outcome",
                        self.server.request_timeout_secs,
                        chain.key,
                        chain.settings.receipt_timeout_secs
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The chains to connect, each with the schemes to register on it, from either layout —
    /// checking every chain's and scheme's settings and how the two fit together:
    ///
    /// - `[[networks]]` cannot be mixed with `[[chains.*]]` or `[[schemes]]`;
    /// - at least one chain, and no network twice;
    /// - each `[[schemes]]` entry serves every configured chain its `networks` pattern
    ///   matches, and must match at least one; where several entries of one scheme match a
    ///   chain, the most specific pattern (one network, then a list, then a namespace) wins,
    ///   and two equally specific ones are an error;
    /// - with `[[schemes]]` present, every chain must be served by some scheme; without it,
    ///   every chain serves `exact` with its defaults.
    ///
    /// Every error names the key or entry at fault.
    pub fn layout(&self) -> Result<Layout, ConfigError> {
        if !self.networks.is_empty() {
            let newer = [
                (!self.chains.eip155.is_empty()).then_some("[[chains.eip155]]"),
                (!self.schemes.is_empty()).then_some("[[schemes]]"),
            ];
            let newer: Vec<&str> = newer.into_iter().flatten().collect();
            if !newer.is_empty() {
                return Err(invalid(
                    "networks",
                    format!(
                        "[[networks]] (the earlier layout) cannot be combined with {}: move each \
                         [[networks]] entry's chain keys into a [[chains.eip155]] entry, and \
                         valid_before_margin_secs, eip6492_factories and batch into an exact \
                         [[schemes]] entry",
                        newer.join(" and ")
                    ),
                ));
            }
            return self.legacy_layout();
        }
        let chains = &self.chains.eip155;
        #[cfg(feature = "solana")]
        let solana = self.solana_layout()?;
        #[cfg(not(feature = "solana"))]
        let solana: Vec<()> = Vec::new();
        if chains.is_empty() && solana.is_empty() {
            return Err(invalid(
                "chains",
                "configure at least one chain: a [[chains.eip155]] entry (network, rpc_urls, \
                 signer) or, in builds with Solana, a [[chains.solana]] entry",
            ));
        }
        let chain_key = |i: usize| format!("chains.eip155[{i}]");
        check_chains(chains.iter().enumerate().map(|(i, c)| (chain_key(i), c)))?;
        for (j, entry) in self.schemes.iter().enumerate() {
            entry
                .settings
                .validate()
                .map_err(|e| ConfigError::setting(&format!("schemes[{j}]"), e))?;
            // A facilitator that signs refunds for channels naming it must know who asks: a
            // refund returns value the seller served but has not claimed yet.
            if let SchemeSettings::Evm(tollgate_evm::config::EvmSchemeSettings::BatchSettlement(
                b,
            )) = &entry.settings
            {
                if b.sign_refunds && self.server.api_key_env.is_none() {
                    return Err(invalid(
                        format!("schemes[{j}].sign_refunds"),
                        "signing refunds needs server.api_key_env: otherwise anyone could have \
                         this facilitator refund a channel before its seller claims",
                    ));
                }
            }
            if !chains.iter().any(|c| entry.networks.matches(&c.network)) {
                let configured: Vec<String> =
                    chains.iter().map(|c| c.network.to_string()).collect();
                return Err(invalid(
                    format!("schemes[{j}].networks"),
                    format!(
                        "{} matches no configured chain (configured: {})",
                        entry.networks,
                        configured.join(", ")
                    ),
                ));
            }
        }
        let mut evm = Vec::with_capacity(chains.len());
        for (i, chain) in chains.iter().enumerate() {
            let schemes = if self.schemes.is_empty() {
                vec![PlannedScheme {
                    key: chain_key(i),
                    settings: SchemeSettings::ExactEvm(ExactEvmSettings::default()),
                }]
            } else {
                self.schemes_on(&chain.network)?
            };
            if schemes.is_empty() {
                return Err(invalid(
                    chain_key(i),
                    format!(
                        "no [[schemes]] entry serves {}: add one, widen a `networks` pattern, \
                         or remove the chain",
                        chain.network
                    ),
                ));
            }
            evm.push(ChainPlan {
                key: chain_key(i),
                settings: chain.clone(),
                schemes,
            });
        }
        Ok(Layout {
            evm,
            #[cfg(feature = "solana")]
            solana,
        })
    }

    /// `[[chains.solana]]`: each cluster checked, no network twice.
    #[cfg(feature = "solana")]
    fn solana_layout(
        &self,
    ) -> Result<Vec<(String, tollgate_svm::config::SvmChainSettings)>, ConfigError> {
        let mut out: Vec<(String, tollgate_svm::config::SvmChainSettings)> = Vec::new();
        for (i, chain) in self.chains.solana.iter().enumerate() {
            let key = format!("chains.solana[{i}]");
            chain.validate().map_err(|e| invalid(&key, e))?;
            if let Some((first, _)) = out.iter().find(|(_, c)| c.network == chain.network) {
                return Err(invalid(
                    &key,
                    format!("network {} is already configured by {first}", chain.network),
                ));
            }
            out.push((key, chain.clone()));
        }
        Ok(out)
    }

    /// `[[networks]]`: one EVM chain with `exact` on it per entry.
    fn legacy_layout(&self) -> Result<Layout, ConfigError> {
        let key = |i: usize| format!("networks[{i}]");
        let split: Vec<_> = self
            .networks
            .iter()
            .map(|n| (n.chain_settings(), n.exact_settings()))
            .collect();
        check_chains(split.iter().enumerate().map(|(i, (c, _))| (key(i), c)))?;
        let mut evm = Vec::with_capacity(split.len());
        for (i, (chain, exact)) in split.into_iter().enumerate() {
            exact
                .validate()
                .map_err(|e| ConfigError::setting(&key(i), e))?;
            evm.push(ChainPlan {
                key: key(i),
                settings: chain,
                schemes: vec![PlannedScheme {
                    key: key(i),
                    settings: SchemeSettings::ExactEvm(exact),
                }],
            });
        }
        Ok(Layout {
            evm,
            #[cfg(feature = "solana")]
            solana: self.solana_layout()?,
        })
    }

    /// The `[[schemes]]` entries serving `network`: per scheme, the one of the most specific
    /// matching pattern.
    fn schemes_on(&self, network: &Network) -> Result<Vec<PlannedScheme>, ConfigError> {
        let mut chosen: Vec<(usize, &SchemeConfig)> = Vec::new();
        for (j, entry) in self.schemes.iter().enumerate() {
            if !entry.networks.matches(network) {
                continue;
            }
            let scheme = entry.settings.scheme();
            match chosen
                .iter_mut()
                .find(|(_, c)| c.settings.scheme() == scheme)
            {
                None => chosen.push((j, entry)),
                Some(slot) => {
                    let (mine, theirs) =
                        (entry.networks.specificity(), slot.1.networks.specificity());
                    if mine == theirs {
                        return Err(invalid(
                            format!("schemes[{j}].networks"),
                            format!(
                                "{scheme} on {network} is also configured by schemes[{}] \
                                 ({}), with an equally specific pattern: narrow one of them",
                                slot.0, slot.1.networks
                            ),
                        ));
                    }
                    if mine > theirs {
                        *slot = (j, entry);
                    }
                }
            }
        }
        Ok(chosen
            .into_iter()
            .map(|(j, entry)| PlannedScheme {
                key: format!("schemes[{j}]"),
                settings: entry.settings.clone(),
            })
            .collect())
    }
}

/// Validates each chain under its key and refuses a network configured twice.
fn check_chains<'a>(
    chains: impl Iterator<Item = (String, &'a EvmChainSettings)>,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (key, chain) in chains {
        chain
            .validate()
            .map_err(|e| ConfigError::setting(&key, e))?;
        if !seen.insert(chain.network.clone()) {
            return Err(invalid(
                format!("{key}.network"),
                format!("{} is configured twice", chain.network),
            ));
        }
    }
    Ok(())
}

/// The configuration resolved ([`Config::layout`]): every chain to connect, with the schemes
/// to register on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// EVM chains, in file order.
    pub evm: Vec<ChainPlan<EvmChainSettings>>,
    /// Solana clusters, in file order, each with `exact` (keyed `chains.solana[i]`).
    #[cfg(feature = "solana")]
    pub solana: Vec<(String, tollgate_svm::config::SvmChainSettings)>,
}

/// One chain to connect and the schemes to serve on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan<C> {
    /// Where it is configured: `chains.eip155[0]`, or `networks[0]` in the earlier layout.
    pub key: String,
    /// The chain family's settings.
    pub settings: C,
    /// The schemes to register on this chain's network (one per scheme).
    pub schemes: Vec<PlannedScheme>,
}

/// A scheme to register on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedScheme {
    /// Where it is configured: `schemes[1]`, the chain's own key when `exact` is served by
    /// default, or `networks[0]` in the earlier layout.
    pub key: String,
    /// Its settings.
    pub settings: SchemeSettings,
}

impl ServerConfig {
    /// Reads the API key named by `api_key_env`, if any. A named but unset or empty variable is
    /// an error: silently running without auth would be worse than not starting.
    pub fn load_api_key(&self) -> Result<Option<String>, ConfigError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(key) if key.len() >= 16 => Ok(Some(key)),
            Ok(_) => Err(invalid(
                "server.api_key_env",
                format!("the key in {var} is shorter than 16 characters"),
            )),
            Err(_) => Err(invalid(
                "server.api_key_env",
                format!("environment variable {var} is not set"),
            )),
        }
    }
}

/// A commented example configuration (`tollgate facilitator --print-config-example`).
pub const EXAMPLE: &str = r#"# Tollgate facilitator configuration.
# Unknown keys are errors. Environment overrides: TOLLGATE_LISTEN, TOLLGATE_LEDGER_PATH,
# TOLLGATE_LEDGER_URL.

[server]
# Where to listen. Loopback by default; put a reverse proxy with TLS in front for the internet.
listen = "127.0.0.1:4020"
# Largest request body accepted, in bytes.
body_limit_bytes = 65536
# Longest a request may take, settlement included.
request_timeout_secs = 120
# Require `Authorization: Bearer <key>` on /verify and /settle, the key read from this
# environment variable (leave out for no auth):
# api_key_env = "TOLLGATE_API_KEY"
# Per-client-IP limit on /verify, /settle and /supported (429 beyond it; leave out for none):
rate_limit = { per_second = 50, burst = 100 }

[server.limits]
# Most connections at once. When full, the connection idle the longest (or still sending its
# request head) is closed for the new one; when all are busy with requests, new ones get 503.
max_connections = 1024
# Seconds to send a whole request head (stops clients trickling half a header: slowloris);
# also the longest a request body may stall while the server waits for it.
header_read_timeout_secs = 10
# Seconds a keep-alive connection may wait for its next request.
idle_timeout_secs = 60

[ledger]
# SQLite file recording every verification and settlement (created if missing).
path = "tollgate-ledger.db"
# Or PostgreSQL, so several facilitator instances share one ledger and settle each payment
# once between them (better set through TOLLGATE_LEDGER_URL, since it holds a password):
# url = "postgres://tollgate:secret@127.0.0.1:5432/tollgate"
# Retention of the audit event log (every /verify and /settle adds one event): by age and by
# count, so unauthenticated traffic cannot grow the database without bound.
events_max_age_days = 30
events_max_rows = 1000000
# A verified payment nobody settled is deleted this many seconds after it expired.
unsettled_grace_secs = 3600

# The reputation service (GET /reputation/{address}, POST /assess) reads the ledger. A sanctions
# list lets POST /assess answer `require_sanctions_clear`: one address per line, `#` comments,
# EVM addresses compared case-insensitively; reloaded when the file changes.
# [identity]
# sanctions_file = "/etc/tollgate/sanctioned-addresses.txt"

# Chains: one table per network, under its family ([[chains.eip155]] for EVM networks). Every
# scheme served on a network settles through its chain and shares its signers.
[[chains.eip155]]
# CAIP-2 id of the chain.
network = "eip155:84532"
# JSON-RPC endpoints: the first while it answers, the others take over when it fails.
rpc_urls = ["https://sepolia.base.org"]
# The settlement signer pays gas. Its private key comes from an environment variable...
signer_key_env = "TOLLGATE_SIGNER_KEY"
# ...or from a file (one line of hex): signer_key_file = "/run/secrets/tollgate-signer"
# Seconds to wait for a receipt before answering "pending" (the ledger finishes it later).
receipt_timeout_secs = 60
# A settlement unmined after this many seconds is re-sent with the same nonce and a fee raised
# by fee_bump_percent (at least 10). 0 never replaces.
replace_after_secs = 30
fee_bump_percent = 20
# /health reports "degraded" and /metrics flags a signer whose gas balance falls below this (wei).
min_signer_balance_wei = "1000000000000000"
# Instead of one signer, a pool: each key has its own nonce sequence, so settlements run in
# parallel. Replace signer_key_env above with:
# signer_selection = "least-busy"        # or "round-robin" (default)
# signers = [{ key_env = "TOLLGATE_SIGNER_KEY_1" }, { key_file = "/run/secrets/signer-2" }]

# More networks: another [[chains.eip155]] table each.

# Schemes: what is served where. Leave every [[schemes]] table out to serve `exact` with its
# defaults on every chain.
[[schemes]]
scheme = "exact"
# The chains it is served on: one network ("eip155:8453"), a namespace ("eip155:*") or a comma
# list ("eip155:8453,eip155:84532"). Where two entries of one scheme match a chain, the more
# specific pattern wins.
networks = "eip155:*"
# Authorizations that expire sooner than this are refused.
valid_before_margin_secs = 6
# EIP-6492 wallet factories allowed to deploy payers' smart wallets (none: fail closed).
eip6492_factories = []
# Batch settlement (opt-in): settlements arriving within window_ms share one Multicall3
# aggregate3 transaction (each payment still gets its own result).
# [schemes.batch]
# window_ms = 50
# max_size = 50
# multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"

# Files of the earlier layout, one [[networks]] table per network holding both its chain's keys
# and exact's (valid_before_margin_secs, eip6492_factories, [networks.batch]), still load: each
# entry is one chain with exact on it. The two layouts cannot be mixed in one file.

# Tracing (OpenTelemetry): a span per request, verify and settle (network, scheme, payer, tx
# hash), joined to the paywall's trace, exported over OTLP/HTTP to a collector (an OTel
# collector or Jaeger, port 4318). Off unless an endpoint is set here or in
# OTEL_EXPORTER_OTLP_ENDPOINT (which wins). See docs/operations.md.
# [telemetry]
# otlp_endpoint = "http://127.0.0.1:4318"
# service_name = "tollgate-facilitator"
# sample_ratio = 1.0     # share of traces started here; a paywall's decision is followed
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The example configuration of the earlier layout (`[[networks]]`), as releases before
    /// chains and schemes printed it: such files must keep loading.
    const LEGACY_EXAMPLE: &str = r#"# Tollgate facilitator configuration.
# Unknown keys are errors. Environment overrides: TOLLGATE_LISTEN, TOLLGATE_LEDGER_PATH,
# TOLLGATE_LEDGER_URL.

[server]
# Where to listen. Loopback by default; put a reverse proxy with TLS in front for the internet.
listen = "127.0.0.1:4020"
# Largest request body accepted, in bytes.
body_limit_bytes = 65536
# Longest a request may take, settlement included.
request_timeout_secs = 120
# Require `Authorization: Bearer <key>` on /verify and /settle, the key read from this
# environment variable (leave out for no auth):
# api_key_env = "TOLLGATE_API_KEY"
# Per-client-IP limit on /verify, /settle and /supported (429 beyond it; leave out for none):
rate_limit = { per_second = 50, burst = 100 }

[server.limits]
# Most connections at once. When full, the connection idle the longest (or still sending its
# request head) is closed for the new one; when all are busy with requests, new ones get 503.
max_connections = 1024
# Seconds to send a whole request head (stops clients trickling half a header: slowloris);
# also the longest a request body may stall while the server waits for it.
header_read_timeout_secs = 10
# Seconds a keep-alive connection may wait for its next request.
idle_timeout_secs = 60

[ledger]
# SQLite file recording every verification and settlement (created if missing).
path = "tollgate-ledger.db"
# Or PostgreSQL, so several facilitator instances share one ledger and settle each payment
# once between them (better set through TOLLGATE_LEDGER_URL, since it holds a password):
# url = "postgres://tollgate:secret@127.0.0.1:5432/tollgate"
# Retention of the audit event log (every /verify and /settle adds one event): by age and by
# count, so unauthenticated traffic cannot grow the database without bound.
events_max_age_days = 30
events_max_rows = 1000000
# A verified payment nobody settled is deleted this many seconds after it expired.
unsettled_grace_secs = 3600

[[networks]]
# CAIP-2 id of the chain.
network = "eip155:84532"
# JSON-RPC endpoints: the first while it answers, the others take over when it fails.
rpc_urls = ["https://sepolia.base.org"]
# The settlement signer pays gas. Its private key comes from an environment variable...
signer_key_env = "TOLLGATE_SIGNER_KEY"
# ...or from a file (one line of hex): signer_key_file = "/run/secrets/tollgate-signer"
# Seconds to wait for a receipt before answering "pending" (the ledger finishes it later).
receipt_timeout_secs = 60
# Authorizations that expire sooner than this are refused.
valid_before_margin_secs = 6
# EIP-6492 wallet factories allowed to deploy payers' smart wallets (none: fail closed).
eip6492_factories = []
# A settlement unmined after this many seconds is re-sent with the same nonce and a fee raised
# by fee_bump_percent (at least 10). 0 never replaces.
replace_after_secs = 30
fee_bump_percent = 20
# /health reports "degraded" and /metrics flags a signer whose gas balance falls below this (wei).
min_signer_balance_wei = "1000000000000000"
# Instead of one signer, a pool: each key has its own nonce sequence, so settlements run in
# parallel. Replace signer_key_env above with:
# signer_selection = "least-busy"        # or "round-robin" (default)
# signers = [{ key_env = "TOLLGATE_SIGNER_KEY_1" }, { key_file = "/run/secrets/signer-2" }]

# Batch settlement (opt-in): settlements arriving within window_ms share one Multicall3
# aggregate3 transaction (each payment still gets its own result).
# [networks.batch]
# window_ms = 50
# max_size = 50
# multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
"#;

    #[test]
    fn example_parses_and_validates() {
        let c = Config::parse(LEGACY_EXAMPLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.networks[0].chain.network, Network::eip155(84532));
        assert_eq!(c.server.listen.port(), 4020);
    }

    #[test]
    fn unknown_and_mistyped_keys_fail_naming_the_key() {
        for example in [EXAMPLE, LEGACY_EXAMPLE] {
            let text = example.replace("receipt_timeout_secs", "recipt_timeout_secs");
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("recipt_timeout_secs"), "{err}");

            let text = example.replace("body_limit_bytes = 65536", "body_limit_bytes = \"big\"");
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("body_limit_bytes"), "{err}");

            let text = example.replace("eip155:84532", "base-sepolia");
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("CAIP-2"), "{err}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::parse(LEGACY_EXAMPLE).unwrap();
        c.networks[0].chain.rpc_urls = vec!["ftp://x".into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("networks[0].rpc_urls"), "{err}");

        let mut c = Config::parse(LEGACY_EXAMPLE).unwrap();
        c.networks[0].chain.signer_key_file = Some("k".into());
        assert!(c.validate().unwrap_err().to_string().contains("not both"));

        let mut c = Config::parse(LEGACY_EXAMPLE).unwrap();
        c.networks.push(c.networks[0].clone());
        assert!(c.validate().unwrap_err().to_string().contains("twice"));

        let mut c = Config::parse(LEGACY_EXAMPLE).unwrap();
        c.networks[0].chain.network = tollgate_proto::network::SOLANA_DEVNET.parse().unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("networks[0].network"));
    }

    #[test]
    fn env_overrides_apply_and_are_checked() {
        let mut c = Config::parse(EXAMPLE).unwrap();
        c.apply_env(|k| match k {
            ENV_LISTEN => Some("127.0.0.1:9999".into()),
            ENV_LEDGER_PATH => Some("/tmp/x.db".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.ledger.path, PathBuf::from("/tmp/x.db"));
        let err = c
            .apply_env(|k| (k == ENV_LISTEN).then(|| "nope".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOLLGATE_LISTEN"), "{err}");
    }

    #[test]
    fn ledger_url_is_checked_and_never_printed() {
        let text = EXAMPLE.replace(
            "# url = \"postgres://tollgate:secret@127.0.0.1:5432/tollgate\"",
            "url = \"postgres://tollgate:s3cret@127.0.0.1:5432/tollgate\"",
        );
        let c = Config::parse(&text).unwrap();
        let url = c.ledger.url.as_ref().unwrap();
        assert!(url.expose().contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let err = Config::parse(&EXAMPLE.replace(
            "# url = \"postgres://tollgate:secret@127.0.0.1:5432/tollgate\"",
            "url = \"mysql://x\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("postgres://"), "{err}");
        let mut c = Config::parse(EXAMPLE).unwrap();
        let err = c
            .apply_env(|k| (k == ENV_LEDGER_URL).then(|| "http://nope".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOLLGATE_LEDGER_URL"), "{err}");
    }

    #[test]
    fn pool_and_batch_settings_are_validated() {
        let pool = LEGACY_EXAMPLE.replace(
            "signer_key_env = \"TOLLGATE_SIGNER_KEY\"",
            "signers = [{ key_env = \"A\" }, { key_file = \"/k\" }]\nsigner_selection = \"least-busy\"",
        );
        let c = Config::parse(&pool).unwrap();
        c.validate().unwrap();
        assert_eq!(c.networks[0].chain.signers.len(), 2);
        assert_eq!(
            c.networks[0].evm_config().selection,
            tollgate_evm::SignerSelection::LeastBusy
        );

        let err = Config::parse(&pool.replace("least-busy", "busiest"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("busiest"), "{err}");

        let both = pool.replace(
            "{ key_env = \"A\" }",
            "{ key_env = \"A\", key_file = \"/x\" }",
        );
        let err = Config::parse(&both)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("networks[0].signers[0]"), "{err}");

        let low_bump = LEGACY_EXAMPLE.replace("fee_bump_percent = 20", "fee_bump_percent = 5");
        let err = Config::parse(&low_bump)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("networks[0].fee_bump_percent"), "{err}");

        let batch = LEGACY_EXAMPLE
            .replace("# [networks.batch]", "[networks.batch]")
            .replace("# window_ms = 50", "window_ms = 50")
            .replace("# max_size = 50", "max_size = 1");
        let err = Config::parse(&batch)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("networks[0].batch.max_size"), "{err}");
        let c = Config::parse(&batch.replace("max_size = 1", "max_size = 20")).unwrap();
        c.validate().unwrap();
        let evm = c.networks[0].evm_config();
        assert_eq!(evm.batch.unwrap().max_size, 20);
        assert_eq!(evm.replacement.unwrap().fee_bump_percent, 20);
    }

    #[test]
    fn signer_key_errors_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0xnot-a-key-but-secret-ish").unwrap();
        let mut c = Config::parse(LEGACY_EXAMPLE).unwrap();
        c.networks[0].chain.signer_key_env = None;
        c.networks[0].chain.signer_key_file = Some(path.clone());
        let err = c.networks[0].load_signers().unwrap_err().to_string();
        assert!(!err.contains("secret-ish"), "{err}");
        std::fs::write(
            &path,
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
        )
        .unwrap();
        let signer = c.networks[0].load_signers().unwrap().remove(0);
        assert_eq!(
            signer.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn listener_limits_default_and_are_validated_naming_the_key() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.server.limits, tollgate_listen::Limits::default());
        let text = EXAMPLE.replace("max_connections = 1024", "max_connections = 0");
        let err = Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.limits.max_connections"), "{err}");
        let text = EXAMPLE.replace("idle_timeout_secs = 60", "idle_timeout_secs = 0");
        let err = Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.limits.idle_timeout_secs"), "{err}");
        let text = EXAMPLE.replace("idle_timeout_secs", "idle_secs");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("idle_secs"), "{err}");
        // The listener's request timeout must outlast the receipt wait.
        let text = EXAMPLE.replace("request_timeout_secs = 120", "request_timeout_secs = 60");
        let err = Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.request_timeout_secs"), "{err}");
    }

    /// A file of the current layout: `[server]` and `[ledger]` defaults, then `body`.
    fn parse(body: &str) -> Result<Config, ConfigError> {
        Config::parse(body)
    }

    /// `[[chains.eip155]]` for `network`, signer from `K`.
    fn chain(network: &str) -> String {
        format!(
            "[[chains.eip155]]\nnetwork = \"{network}\"\nrpc_urls = [\"http://127.0.0.1:8545\"]\nsigner_key_env = \"K\"\n"
        )
    }

    #[test]
    fn batch_settlement_signs_refunds_only_behind_an_api_key() {
        let one = chain("eip155:8453");
        let entry = "[[schemes]]\nscheme = \"batch-settlement\"\nnetworks = \"eip155:*\"\n\
                     sign_refunds = true\nreceiver_authorizer = { key_env = \"AUTH\" }\n";
        let err = layout_err(&format!("{one}{entry}"));
        assert!(
            err.contains("schemes[0].sign_refunds") && err.contains("api_key_env"),
            "{err}"
        );
        let keyed = parse(&format!("[server]\napi_key_env = \"API\"\n{one}{entry}")).unwrap();
        keyed.validate().unwrap();
        // Claims only: no API key needed. A refund signer without a key to sign with is refused.
        let claims_only = entry.replace("sign_refunds = true\n", "");
        parse(&format!("{one}{claims_only}"))
            .unwrap()
            .validate()
            .unwrap();
        let keyless = "[[schemes]]\nscheme = \"batch-settlement\"\nnetworks = \"eip155:*\"\n\
                       sign_refunds = true\n";
        let err = parse(&format!("[server]\napi_key_env = \"API\"\n{one}{keyless}"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("receiver_authorizer"), "{err}");
        // A mistyped key is an error, as for every scheme.
        let typo = entry.replace("sign_refunds", "sign_refund");
        assert!(parse(&format!("{one}{typo}")).is_err());
    }

    /// The validation error of `text`, which is also the layout's own when the layout is at
    /// fault (what `Facilitator::from_config` reports).
    fn layout_err(text: &str) -> String {
        let c = parse(text).unwrap();
        let err = c.validate().unwrap_err().to_string();
        if let Err(e) = c.layout() {
            assert_eq!(e.to_string(), err);
        }
        err
    }

    fn exact(settings: &SchemeSettings) -> &ExactEvmSettings {
        match settings {
            SchemeSettings::ExactEvm(s) => s,
            other => panic!("not exact: {other:?}"),
        }
    }

    #[test]
    fn current_example_parses_and_validates() {
        let c = Config::parse(EXAMPLE).unwrap();
        c.validate().unwrap();
        assert!(c.networks.is_empty());
        assert_eq!(c.chains.eip155[0].network, Network::eip155(84532));
        assert_eq!(c.schemes[0].networks, "eip155:*".parse().unwrap());
        assert_eq!(c.schemes[0].settings.scheme(), Scheme::Exact);
        let layout = c.layout().unwrap();
        assert_eq!(layout.evm.len(), 1);
        let chain = &layout.evm[0];
        assert_eq!(chain.key, "chains.eip155[0]");
        assert_eq!(chain.settings, c.chains.eip155[0]);
        assert_eq!(chain.schemes.len(), 1);
        assert_eq!(chain.schemes[0].key, "schemes[0]");
        assert_eq!(
            exact(&chain.schemes[0].settings).valid_before_margin_secs,
            6
        );
        // The batch sub-table belongs to the scheme entry above it.
        let batch = EXAMPLE
            .replace("# [schemes.batch]", "[schemes.batch]")
            .replace("# max_size = 50", "max_size = 20");
        let c = Config::parse(&batch).unwrap();
        c.validate().unwrap();
        let layout = c.layout().unwrap();
        let s = exact(&layout.evm[0].schemes[0].settings);
        assert_eq!(s.batch.as_ref().unwrap().max_size, 20);
        // Config also deserializes directly, with the same checks.
        let direct: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(direct, Config::parse(EXAMPLE).unwrap());
        assert!(toml::from_str::<Config>(&EXAMPLE.replace("\"exact\"", "\"upto\"")).is_err());
    }

    #[test]
    fn earlier_layout_maps_to_the_same_chains_and_schemes() {
        let legacy = parse(
            r#"
[[networks]]
network = "eip155:8453"
rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
signers = [{ key_env = "A" }, { key_file = "/run/b" }]
signer_selection = "least-busy"
replace_after_secs = 0
receipt_timeout_secs = 30
min_signer_balance_wei = "5"
valid_before_margin_secs = 9
eip6492_factories = ["0x0000000000000000000000000000000000000001"]
[networks.batch]
max_size = 20

[[networks]]
network = "eip155:84532"
rpc_urls = ["http://127.0.0.1:9545"]
signer_key_file = "/run/k"
"#,
        )
        .unwrap();
        let current = parse(
            r#"
[[chains.eip155]]
network = "eip155:8453"
rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
signers = [{ key_env = "A" }, { key_file = "/run/b" }]
signer_selection = "least-busy"
replace_after_secs = 0
receipt_timeout_secs = 30
min_signer_balance_wei = "5"

[[chains.eip155]]
network = "eip155:84532"
rpc_urls = ["http://127.0.0.1:9545"]
signer_key_file = "/run/k"

[[schemes]]
scheme = "exact"
networks = "eip155:8453"
valid_before_margin_secs = 9
eip6492_factories = ["0x0000000000000000000000000000000000000001"]
batch = { max_size = 20 }

[[schemes]]
scheme = "exact"
networks = "eip155:84532"
"#,
        )
        .unwrap();
        legacy.validate().unwrap();
        current.validate().unwrap();
        let (old, new) = (legacy.layout().unwrap(), current.layout().unwrap());
        assert_eq!(old.evm.len(), 2);
        assert_eq!(new.evm.len(), 2);
        for (i, (o, n)) in old.evm.iter().zip(&new.evm).enumerate() {
            assert_eq!(o.key, format!("networks[{i}]"));
            assert_eq!(n.key, format!("chains.eip155[{i}]"));
            assert_eq!(o.settings, n.settings);
            let settings = |c: &ChainPlan<EvmChainSettings>| {
                c.schemes
                    .iter()
                    .map(|s| s.settings.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(settings(o), settings(n));
            assert_eq!(o.schemes[0].key, format!("networks[{i}]"));
            assert_eq!(n.schemes[0].key, format!("schemes[{i}]"));
            // What the facilitator hands the chain and the scheme is what today's entry said.
            assert_eq!(o.settings, legacy.networks[i].chain_settings());
            let evm = legacy.networks[i].evm_config();
            let scheme = exact(&n.schemes[0].settings).facilitator_config();
            assert_eq!(
                (
                    scheme.valid_before_margin,
                    &scheme.allowed_factories,
                    &scheme.batch
                ),
                (evm.valid_before_margin, &evm.allowed_factories, &evm.batch)
            );
            let chain = n.settings.chain_config();
            assert_eq!(
                (chain.selection, chain.replacement, chain.receipt_timeout),
                (evm.selection, evm.replacement, evm.receipt_timeout)
            );
            assert_eq!(
                chain.min_signer_balance,
                legacy.networks[i].chain.min_signer_balance_wei
            );
        }
        assert_eq!(
            exact(&new.evm[0].schemes[0].settings)
                .batch
                .as_ref()
                .unwrap()
                .max_size,
            20
        );
        assert_eq!(
            new.evm[1].schemes[0].settings,
            SchemeSettings::ExactEvm(Default::default())
        );
    }

    #[test]
    fn one_exact_entry_serves_every_chain_its_pattern_matches() {
        let two = format!("{}{}", chain("eip155:8453"), chain("eip155:84532"));
        // No [[schemes]]: exact with its defaults on every chain.
        let layout = parse(&two).unwrap().layout().unwrap();
        for (i, c) in layout.evm.iter().enumerate() {
            assert_eq!(c.schemes.len(), 1);
            assert_eq!(c.schemes[0].key, format!("chains.eip155[{i}]"));
            assert_eq!(
                c.schemes[0].settings,
                SchemeSettings::ExactEvm(Default::default())
            );
        }
        // `eip155:*` once: exact, with these settings, on both.
        let star = format!(
            "{two}[[schemes]]\nscheme = \"exact\"\nnetworks = \"eip155:*\"\nvalid_before_margin_secs = 9\n"
        );
        let c = parse(&star).unwrap();
        c.validate().unwrap();
        let layout = c.layout().unwrap();
        let networks: Vec<String> = layout
            .evm
            .iter()
            .map(|c| c.settings.network.to_string())
            .collect();
        assert_eq!(networks, ["eip155:8453", "eip155:84532"]);
        for c in &layout.evm {
            assert_eq!(c.schemes.len(), 1);
            assert_eq!(c.schemes[0].key, "schemes[0]");
            assert_eq!(c.schemes[0].settings.scheme(), Scheme::Exact);
            assert_eq!(exact(&c.schemes[0].settings).valid_before_margin_secs, 9);
        }
        // A more specific entry overrides the namespace on its network only.
        let override_one = format!(
            "{star}[[schemes]]\nscheme = \"exact\"\nnetworks = \"eip155:8453\"\nvalid_before_margin_secs = 12\n"
        );
        let layout = parse(&override_one).unwrap().layout().unwrap();
        let margins: Vec<(String, u64)> = layout
            .evm
            .iter()
            .map(|c| {
                assert_eq!(c.schemes.len(), 1);
                (
                    c.schemes[0].key.clone(),
                    exact(&c.schemes[0].settings).valid_before_margin_secs,
                )
            })
            .collect();
        assert_eq!(
            margins,
            [
                ("schemes[1]".to_string(), 12),
                ("schemes[0]".to_string(), 9)
            ]
        );
        // A comma list works like two single networks.
        let list = format!(
            "{two}[[schemes]]\nscheme = \"exact\"\nnetworks = \"eip155:84532, eip155:8453\"\n"
        );
        let layout = parse(&list).unwrap().layout().unwrap();
        assert!(layout.evm.iter().all(|c| c.schemes[0].key == "schemes[0]"));
    }

    #[test]
    fn scheme_and_chain_errors_name_the_entry() {
        let one = chain("eip155:8453");
        let two = format!("{one}{}", chain("eip155:84532"));
        let scheme = |lines: &str| format!("[[schemes]]\nscheme = \"exact\"\n{lines}\n");

        // Parse errors: unknown or malformed scheme, missing or malformed pattern, unknown keys.
        let scheme_after = |text: &str| format!("{one}{text}");
        let cases = [
            (
                "[[schemes]]\nscheme = \"auth-capture\"\nnetworks = \"eip155:*\"\n".to_string(),
                vec!["schemes[0].scheme", "auth-capture", "exact"],
            ),
            (
                "[[schemes]]\nscheme = \"Exact!\"\nnetworks = \"eip155:*\"\n".to_string(),
                vec!["schemes[0].scheme"],
            ),
            (
                "[[schemes]]\nnetworks = \"eip155:*\"\n".to_string(),
                vec!["schemes[0].scheme", "missing"],
            ),
            (scheme(""), vec!["schemes[0].networks", "missing"]),
            (
                scheme("networks = \"eip155\""),
                vec!["schemes[0].networks", "eip155"],
            ),
            (
                scheme("networks = [\"eip155:1\"]"),
                vec!["schemes[0].networks", "string"],
            ),
            (
                scheme("networks = \"eip155:*\"\nrpc_urls = []"),
                vec!["schemes[0]", "rpc_urls"],
            ),
            (
                scheme("networks = \"eip155:*\"\nvalid_before_margin_secs = \"6\""),
                vec!["schemes[0]", "valid_before_margin_secs"],
            ),
            (
                "[[chains.solana]]\nnetwork = \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"\n"
                    .to_string(),
                vec!["solana"],
            ),
            (
                one.replace(
                    "signer_key_env",
                    "valid_before_margin_secs = 6\nsigner_key_env",
                ),
                vec!["valid_before_margin_secs"],
            ),
        ];
        for (text, needles) in cases {
            // Scheme entries come after a valid chain; chain tables stand alone.
            let text = if text.starts_with("[[chains") {
                text
            } else {
                scheme_after(&text)
            };
            let err = parse(&text).unwrap_err().to_string();
            for needle in needles {
                assert!(err.contains(needle), "{needle:?} not in {err}\n--\n{text}");
            }
        }

        match parse(&format!(
            "{one}[[schemes]]\nscheme = \"auth-capture\"\nnetworks = \"eip155:*\"\n"
        )) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "schemes[0].scheme"),
            other => panic!("{other:?}"),
        }

        // Validation errors.
        let cases = [
            (String::new(), vec!["`chains`", "[[chains.eip155]]"]),
            (
                format!("{one}{}", scheme("networks = \"eip155:1\"")),
                vec!["schemes[0].networks", "eip155:1", "eip155:8453"],
            ),
            (
                format!("{one}{}", scheme("networks = \"solana:*\"")),
                vec!["schemes[0].networks"],
            ),
            (
                format!("{two}{}", scheme("networks = \"eip155:8453\"")),
                vec!["`chains.eip155[1]`", "eip155:84532"],
            ),
            (
                format!(
                    "{two}{}{}",
                    scheme("networks = \"eip155:*\""),
                    scheme("networks = \"eip155:*\"")
                ),
                vec!["schemes[1].networks", "schemes[0]"],
            ),
            (
                format!(
                    "{two}{}{}",
                    scheme("networks = \"eip155:8453,eip155:84532\""),
                    scheme("networks = \"eip155:84532,eip155:1\"")
                ),
                vec!["schemes[1].networks", "eip155:84532"],
            ),
            (
                format!(
                    "{one}{}",
                    scheme("networks = \"eip155:*\"\nbatch = { max_size = 1 }")
                ),
                vec!["schemes[0].batch.max_size"],
            ),
            (
                format!("{two}{one}"),
                vec!["chains.eip155[2].network", "twice"],
            ),
            (
                one.replace("http://127.0.0.1:8545", "ftp://x"),
                vec!["chains.eip155[0].rpc_urls"],
            ),
            (
                one.replace("signer_key_env = \"K\"", ""),
                vec!["chains.eip155[0].signer_key_env"],
            ),
            (
                format!("{one}receipt_timeout_secs = 0\n"),
                vec!["chains.eip155[0].receipt_timeout_secs"],
            ),
            (
                format!("[server]\nrequest_timeout_secs = 60\n{one}"),
                vec![
                    "server.request_timeout_secs",
                    "chains.eip155[0].receipt_timeout_secs",
                ],
            ),
        ];
        for (text, needles) in cases {
            let err = layout_err(&text);
            for needle in needles {
                assert!(err.contains(needle), "{needle:?} not in {err}\n--\n{text}");
            }
        }
        // The request-timeout check is the server's, not the layout's.
        parse(&format!("[server]\nrequest_timeout_secs = 60\n{one}"))
            .unwrap()
            .layout()
            .unwrap();
    }

    #[test]
    fn layouts_cannot_be_mixed() {
        let legacy = "[[networks]]\nnetwork = \"eip155:8453\"\nrpc_urls = [\"http://127.0.0.1:8545\"]\nsigner_key_env = \"K\"\n";
        let c = parse(legacy).unwrap();
        c.validate().unwrap();
        let with_chain = format!("{legacy}{}", chain("eip155:84532"));
        let err = layout_err(&with_chain);
        assert!(
            err.contains("`networks`") && err.contains("[[chains.eip155]]"),
            "{err}"
        );
        let with_scheme =
            format!("{legacy}[[schemes]]\nscheme = \"exact\"\nnetworks = \"eip155:*\"\n");
        let err = layout_err(&with_scheme);
        assert!(
            err.contains("`networks`") && err.contains("[[schemes]]"),
            "{err}"
        );
        assert!(!err.contains("[[chains.eip155]] and"), "{err}");
        // A key of one layout in a table of the other is an unknown key.
        let err = parse(&format!("{legacy}[[networks.schemes]]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schemes"), "{err}");
    }

    #[test]
    fn signer_errors_name_the_entry_and_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0xnot-a-key-but-secret-ish").unwrap();
        let text = chain("eip155:8453").replace(
            "signer_key_env = \"K\"",
            &format!("signer_key_file = {:?}", path.display().to_string()),
        );
        let c = parse(&text).unwrap();
        c.validate().unwrap();
        let plan = &c.layout().unwrap().evm[0];
        let err =
            ConfigError::setting(&plan.key, plan.settings.load_signers().unwrap_err()).to_string();
        assert!(err.contains("chains.eip155[0].signer_key_file"), "{err}");
        assert!(!err.contains("secret-ish"), "{err}");
    }

    #[cfg(feature = "solana")]
    #[test]
    fn solana_clusters_load_alone_or_beside_evm_chains_and_fail_loudly() {
        let sol = |network: &str, extra: &str| {
            format!(
                "[[chains.solana]]\nnetwork = \"{network}\"\nrpc_url = \"http://127.0.0.1:8899\"\n{extra}"
            )
        };
        let devnet = tollgate_proto::network::SOLANA_DEVNET;
        let key = "fee_payer_key_env = [\"FEE\"]\n";
        // Alone: a facilitator for Solana only.
        let c = parse(&sol(devnet, key)).unwrap();
        c.validate().unwrap();
        let layout = c.layout().unwrap();
        assert!(layout.evm.is_empty());
        assert_eq!(layout.solana.len(), 1);
        assert_eq!(layout.solana[0].0, "chains.solana[0]");
        // Beside an EVM chain.
        let both = format!("{}{}", chain("eip155:8453"), sol(devnet, key));
        let layout = parse(&both).unwrap().layout().unwrap();
        assert_eq!((layout.evm.len(), layout.solana.len()), (1, 1));
        // No fee payer, the same cluster twice, an EVM network, an unknown key: each named.
        let err = layout_err(&sol(devnet, ""));
        assert!(
            err.contains("chains.solana[0]") && err.contains("fee payer"),
            "{err}"
        );
        let twice = format!("{}{}", sol(devnet, key), sol(devnet, key));
        let err = layout_err(&twice);
        assert!(
            err.contains("chains.solana[1]") && err.contains("already configured"),
            "{err}"
        );
        let err = layout_err(&sol("eip155:8453", key));
        assert!(err.contains("not a solana: network"), "{err}");
        assert!(parse(&sol(devnet, "fee_payer_key = \"secret\"\n")).is_err());
    }
}
