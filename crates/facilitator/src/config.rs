//! The facilitator's configuration: one typed TOML file, a few environment overrides, and
//! validation that fails loudly at start-up.
//!
//! Unknown keys are errors (a mistyped `recipt_timeout_secs` must not silently fall back to a
//! default). Signer keys are never in the file: the file names an environment variable or a
//! key file, and the key is read only when the facilitator starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize;
use tollgate_evm::{BatchConfig, FacilitatorConfig, Replacement, SignerSelection};
use tollgate_proto::Network;

/// Environment variable overriding `server.listen`.
pub const ENV_LISTEN: &str = "TOLLGATE_LISTEN";
/// Environment variable overriding `ledger.path`.
pub const ENV_LEDGER_PATH: &str = "TOLLGATE_LEDGER_PATH";
/// Environment variable setting `ledger.url` (a PostgreSQL URL, which often carries a
/// password and so is better kept out of the file).
pub const ENV_LEDGER_URL: &str = "TOLLGATE_LEDGER_URL";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where the settlement ledger lives.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// The networks this facilitator settles on (at least one).
    pub networks: Vec<NetworkConfig>,
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

/// One `[[networks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// CAIP-2 id, e.g. `eip155:8453`.
    pub network: Network,
    /// JSON-RPC endpoints of this network: the first is used while it answers, the others take
    /// over when it fails (each request moves to the next endpoint on a transport error). All
    /// that answer at start-up must serve the configured chain.
    pub rpc_urls: Vec<String>,
    /// Name of the environment variable holding the settlement signer's private key.
    #[serde(default)]
    pub signer_key_env: Option<String>,
    /// Path of a file holding the settlement signer's private key (hex, one line).
    #[serde(default)]
    pub signer_key_file: Option<PathBuf>,
    /// A pool of settlement signers instead of the single `signer_key_env`/`signer_key_file`:
    /// each key has its own nonce sequence, so settlements proceed in parallel.
    #[serde(default)]
    pub signers: Vec<SignerSource>,
    /// How a settlement picks its signer: `round-robin` or `least-busy`.
    #[serde(default)]
    pub signer_selection: SignerSelection,
    /// A settlement transaction unmined after this many seconds is re-sent with a higher fee
    /// (same nonce). 0 never replaces.
    #[serde(default = "default_replace_after")]
    pub replace_after_secs: u64,
    /// Fee increase of each replacement, in percent (nodes require at least 10).
    #[serde(default = "default_fee_bump")]
    pub fee_bump_percent: u64,
    /// A signer whose native balance is below this (in wei) is reported as low on gas in
    /// `/health` (status `degraded`) and `/metrics`.
    #[serde(default = "default_min_signer_balance")]
    pub min_signer_balance_wei: U256,
    /// Batch settlement (opt-in): payments arriving together share one Multicall3 transaction.
    #[serde(default)]
    pub batch: Option<BatchSettings>,
    /// How long settlement waits for a receipt before answering "pending".
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_secs: u64,
    /// Authorizations expiring sooner than this are refused.
    #[serde(default = "default_valid_before_margin")]
    pub valid_before_margin_secs: u64,
    /// EIP-6492 wallet factories allowed to deploy payers' wallets (none by default).
    #[serde(default)]
    pub eip6492_factories: Vec<Address>,
}

/// Where one pool signer's key comes from: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSource {
    /// Environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// File holding the key (hex, one line).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[networks.batch]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// How long the first settlement of a batch waits for others, in milliseconds.
    #[serde(default = "default_batch_window")]
    pub window_ms: u64,
    /// Most settlements in one transaction.
    #[serde(default = "default_batch_size")]
    pub max_size: usize,
    /// The chain's Multicall3 contract.
    #[serde(default = "default_multicall3")]
    pub multicall3: Address,
}

impl NetworkConfig {
    /// The scheme settings this entry describes.
    pub fn evm_config(&self) -> FacilitatorConfig {
        FacilitatorConfig {
            valid_before_margin: Duration::from_secs(self.valid_before_margin_secs),
            allowed_factories: self.eip6492_factories.clone(),
            receipt_timeout: Duration::from_secs(self.receipt_timeout_secs),
            selection: self.signer_selection,
            replacement: (self.replace_after_secs > 0).then(|| Replacement {
                after: Duration::from_secs(self.replace_after_secs),
                fee_bump_percent: self.fee_bump_percent,
            }),
            batch: self.batch.as_ref().map(|b| BatchConfig {
                window: Duration::from_millis(b.window_ms),
                max_size: b.max_size,
                multicall3: b.multicall3,
            }),
        }
    }
}

fn default_replace_after() -> u64 {
    30
}
fn default_fee_bump() -> u64 {
    20
}
fn default_min_signer_balance() -> U256 {
    // 0.001 ETH: a few hundred settlements on an L2, a handful on mainnet.
    U256::from(1_000_000_000_000_000u64)
}
fn default_batch_window() -> u64 {
    50
}
fn default_batch_size() -> usize {
    50
}
fn default_multicall3() -> Address {
    alloy::primitives::address!("cA11bde05977b3631167028862bE2a173976CA11")
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
fn default_receipt_timeout() -> u64 {
    60
}
fn default_valid_before_margin() -> u64 {
    6
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
        /// The key, e.g. `networks[0].rpc_urls`.
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
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
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
        if self.networks.is_empty() {
            return Err(invalid(
                "networks",
                "configure at least one [[networks]] entry",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, n) in self.networks.iter().enumerate() {
            let key = |field: &str| format!("networks[{i}].{field}");
            if n.network.eip155_chain_id().is_none() {
                return Err(invalid(
                    key("network"),
                    format!(
                        "{} is not an EVM (eip155) network; only EVM is supported",
                        n.network
                    ),
                ));
            }
            if !seen.insert(n.network.clone()) {
                return Err(invalid(
                    key("network"),
                    format!("{} is configured twice", n.network),
                ));
            }
            if n.rpc_urls.is_empty() {
                return Err(invalid(key("rpc_urls"), "give at least one RPC URL"));
            }
            for url in &n.rpc_urls {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && url.len() > "http://".len();
                if !ok {
                    return Err(invalid(
                        key("rpc_urls"),
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
            }
            match (&n.signer_key_env, &n.signer_key_file, n.signers.is_empty()) {
                (Some(_), Some(_), _) => {
                    return Err(invalid(
                        key("signer_key_env"),
                        "set signer_key_env or signer_key_file, not both",
                    ))
                }
                (Some(_), None, false) | (None, Some(_), false) => {
                    return Err(invalid(
                        key("signers"),
                        "set either a signer pool (signers) or one signer_key_env/signer_key_file, not both",
                    ))
                }
                (None, None, true) => {
                    return Err(invalid(
                        key("signer_key_env"),
                        "set signer_key_env (an environment variable name), signer_key_file, or a signers pool",
                    ))
                }
                _ => {}
            }
            for (j, source) in n.signers.iter().enumerate() {
                if source.key_env.is_some() == source.key_file.is_some() {
                    return Err(invalid(
                        key(&format!("signers[{j}]")),
                        "set exactly one of key_env and key_file",
                    ));
                }
            }
            if n.replace_after_secs > 0 && n.fee_bump_percent < 10 {
                return Err(invalid(
                    key("fee_bump_percent"),
                    "nodes refuse replacements that raise the fee by less than 10 percent",
                ));
            }
            if let Some(batch) = &n.batch {
                if batch.max_size < 2 || batch.max_size > 500 {
                    return Err(invalid(key("batch.max_size"), "must be between 2 and 500"));
                }
                if batch.window_ms == 0 || batch.window_ms > 10_000 {
                    return Err(invalid(
                        key("batch.window_ms"),
                        "must be between 1 and 10000 milliseconds",
                    ));
                }
            }
            if n.receipt_timeout_secs == 0 {
                return Err(invalid(key("receipt_timeout_secs"), "must be positive"));
            }
            if self.server.request_timeout_secs <= n.receipt_timeout_secs {
                return Err(invalid(
                    "server.request_timeout_secs",
                    format!(
                        "{} s is not longer than {} ({} s): a settlement waiting for its receipt \
                         would be cut off and the caller never told its outcome",
                        self.server.request_timeout_secs,
                        key("receipt_timeout_secs"),
                        n.receipt_timeout_secs
                    ),
                ));
            }
        }
        Ok(())
    }
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

impl NetworkConfig {
    /// Reads every signer key (the single one, or the pool) from the environment or key files.
    /// A key never appears in an error: only where it was looked for.
    pub fn load_signers(&self) -> Result<Vec<PrivateKeySigner>, ConfigError> {
        if self.signers.is_empty() {
            let source = SignerSource {
                key_env: self.signer_key_env.clone(),
                key_file: self.signer_key_file.clone(),
            };
            return Ok(vec![self.load_key(
                &source,
                "signer_key_env",
                "signer_key_file",
            )?]);
        }
        self.signers
            .iter()
            .enumerate()
            .map(|(i, source)| {
                self.load_key(
                    source,
                    &format!("signers[{i}].key_env"),
                    &format!("signers[{i}].key_file"),
                )
            })
            .collect()
    }

    fn load_key(
        &self,
        source: &SignerSource,
        env_key: &str,
        file_key: &str,
    ) -> Result<PrivateKeySigner, ConfigError> {
        let (from, raw) = match (&source.key_env, &source.key_file) {
            (Some(var), _) => (
                format!("environment variable {var}"),
                std::env::var(var).map_err(|_| {
                    invalid(env_key, format!("environment variable {var} is not set"))
                })?,
            ),
            (None, Some(path)) => (
                format!("key file {}", path.display()),
                std::fs::read_to_string(path).map_err(|e| {
                    invalid(file_key, format!("cannot read {}: {e}", path.display()))
                })?,
            ),
            (None, None) => return Err(invalid(env_key, "no signer configured")),
        };
        raw.trim().parse::<PrivateKeySigner>().map_err(|_| {
            invalid(
                format!("signer for {}", self.network),
                format!("{from} does not hold a valid 32-byte hex private key"),
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_and_validates() {
        let c = Config::parse(EXAMPLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.networks[0].network, Network::eip155(84532));
        assert_eq!(c.server.listen.port(), 4020);
    }

    #[test]
    fn unknown_and_mistyped_keys_fail_naming_the_key() {
        let text = EXAMPLE.replace("receipt_timeout_secs", "recipt_timeout_secs");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("recipt_timeout_secs"), "{err}");

        let text = EXAMPLE.replace("body_limit_bytes = 65536", "body_limit_bytes = \"big\"");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("body_limit_bytes"), "{err}");

        let text = EXAMPLE.replace("eip155:84532", "base-sepolia");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("CAIP-2"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::parse(EXAMPLE).unwrap();
        c.networks[0].rpc_urls = vec!["ftp://x".into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("networks[0].rpc_urls"), "{err}");

        let mut c = Config::parse(EXAMPLE).unwrap();
        c.networks[0].signer_key_file = Some("k".into());
        assert!(c.validate().unwrap_err().to_string().contains("not both"));

        let mut c = Config::parse(EXAMPLE).unwrap();
        c.networks.push(c.networks[0].clone());
        assert!(c.validate().unwrap_err().to_string().contains("twice"));

        let mut c = Config::parse(EXAMPLE).unwrap();
        c.networks[0].network = tollgate_proto::network::SOLANA_DEVNET.parse().unwrap();
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
        let pool = EXAMPLE.replace(
            "signer_key_env = \"TOLLGATE_SIGNER_KEY\"",
            "signers = [{ key_env = \"A\" }, { key_file = \"/k\" }]\nsigner_selection = \"least-busy\"",
        );
        let c = Config::parse(&pool).unwrap();
        c.validate().unwrap();
        assert_eq!(c.networks[0].signers.len(), 2);
        assert_eq!(
            c.networks[0].evm_config().selection,
            SignerSelection::LeastBusy
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

        let low_bump = EXAMPLE.replace("fee_bump_percent = 20", "fee_bump_percent = 5");
        let err = Config::parse(&low_bump)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("networks[0].fee_bump_percent"), "{err}");

        let batch = EXAMPLE
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
        let mut c = Config::parse(EXAMPLE).unwrap();
        c.networks[0].signer_key_env = None;
        c.networks[0].signer_key_file = Some(path.clone());
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
}
