//! The gateway's configuration: one TOML file mapping routes to prices, validated at start-up.
//!
//! Unknown keys are errors, and so is every route that cannot be priced (a dollar price on a
//! network without a known stablecoin, an atomic amount without its asset, a malformed route):
//! a gateway that silently let a route through for free would give the API away.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_proto::{AtomicAmount, Network};
use tollgate_server::{PaymentOption, RoutePrice, SettlementMode};

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
    /// When payments are settled: `after-handler` (default: only for upstream successes, and
    /// nothing is delivered if settlement fails) or `before-handler`.
    #[serde(default)]
    pub settlement: Settlement,
    /// The facilitator that verifies and settles.
    pub facilitator: FacilitatorSettings,
    /// Defaults for every route's payment.
    pub payment: PaymentDefaults,
    /// The priced routes; everything else passes through for free.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
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
    /// Per-request timeout.
    #[serde(default = "default_facilitator_timeout")]
    pub timeout_secs: u64,
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
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8402))
}
fn default_upstream_timeout() -> u64 {
    60
}
fn default_facilitator_timeout() -> u64 {
    30
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
        let mut price = RoutePrice::new(option);
        if let Some(d) = &route.description {
            price = price.description(d.clone());
        }
        if let Some(m) = &route.mime_type {
            price = price.mime_type(m.clone());
        }
        Ok(price)
    }

    /// How long the upstream may take.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }
}

/// A commented starter configuration for `network` and `pay_to` (`tollgate init`).
pub fn starter(network: &Network, pay_to: &str, upstream: &str, facilitator: &str) -> String {
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
# "after-handler": verify, forward, settle only if the upstream succeeded (< 400), and deliver
# nothing if settlement fails. "before-handler": settle first, then forward.
settlement = "after-handler"

[facilitator]
# Verifies and settles payments (`tollgate facilitator`, or any x402 facilitator).
url = "{facilitator}"
# api_key_env = "TOLLGATE_FACILITATOR_KEY"   # bearer key, if the facilitator wants one
timeout_secs = 30

[payment]
# Where the money goes, unless a route says otherwise.
network = "{network}"
pay_to = "{pay_to}"
# Seconds a buyer has to complete a payment.
max_timeout_seconds = 60

# Priced routes: "METHOD /path", or "METHOD /prefix/*" for everything below a prefix.
# Anything not listed passes through for free.
[[routes]]
route = "GET /weather"
price = "$0.001"
description = "Current weather"
mime_type = "application/json"

[[routes]]
route = "POST /v1/*"
price = "$0.01"
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

    fn starter_text() -> String {
        starter(
            &BASE.parse().unwrap(),
            PAYEE,
            "http://127.0.0.1:3000",
            "http://127.0.0.1:4020",
        )
    }

    #[test]
    fn starter_config_parses_and_validates() {
        let c = GatewayConfig::parse(&starter_text()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.settlement, Settlement::AfterHandler);
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
}
