//! x402 in front of any HTTP API, with no code change: a reverse proxy that prices routes.
//!
//! A TOML file ([`GatewayConfig`]) maps routes (method + path pattern) to prices and names the
//! upstream API and the facilitator. Requests to priced routes must pay (the paywall of
//! `tollgate-server`, talking to the facilitator over HTTP); everything else passes through.
//! Bodies stream in both directions. `tollgate proxy --config FILE` runs it; `tollgate init`
//! writes a [starter] file.
//!
//! - [`config`] — the file, validated at start-up.
//! - [`proxy`] — forwarding, header hygiene, streaming.
//! - [`metrics`] — Prometheus metrics at `[metrics] path`, when configured.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tollgate_gateway::GatewayConfig::load("gateway.toml".as_ref())?;
//! let app = tollgate_gateway::app(&config).await?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod metrics;
pub mod proxy;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{Registry, SchemeServer};
use tollgate_proto::{Network, Scheme, X402Version};
use tollgate_server::{
    DecisionSink, Facilitator as _, IdentityProvider, PaywallLayer, RemoteFacilitator,
};

pub use config::{
    starter, ChannelSettings, ConfigError, GatewayConfig, IdentityProviderSettings,
    IdentitySettings,
};
pub use proxy::Upstream;

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The facilitator did not answer `/supported`.
    #[error("facilitator {url} is not usable: {reason}")]
    Facilitator {
        /// Its URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A route is priced on a network the facilitator cannot settle.
    #[error("facilitator {url} does not settle `{scheme}` payments on {network} (needed by route {route:?})")]
    Unsupported {
        /// The facilitator.
        url: String,
        /// The scheme.
        scheme: Scheme,
        /// The network.
        network: Network,
        /// The route that needs it.
        route: String,
    },
    /// The facilitator's API key is not in the environment.
    #[error("facilitator.api_key_env: environment variable {0} is not set")]
    MissingApiKey(String),
    /// The HTTP client for the upstream could not be built.
    #[error("upstream client: {0}")]
    Upstream(String),
    /// `[identity]` is configured and the embedding program gave no provider to check payers
    /// with: starting would serve everyone unchecked.
    #[error("[identity] is configured but no identity provider was given (see tollgate_gateway::app_with)")]
    NoIdentityProvider,
    /// `[siwx]` is configured and the embedding program gave no signature verifier.
    #[error("[siwx] is configured but no sign-in verifier was given (see tollgate_gateway::Plugins::siwx_verifiers)")]
    NoSiwxVerifiers,
    /// The `[siwx]` store could not be opened, or its origin is not usable.
    #[error("[siwx]: {0}")]
    Siwx(String),
    /// `[channels]` is configured and the embedding program gave no channel manager.
    #[error("[channels] is configured but no channel manager was given (see tollgate_gateway::Plugins::channels)")]
    NoChannels,
}

/// What the embedding program plugs into the gateway beyond its file.
#[derive(Clone, Default)]
pub struct Plugins {
    /// Assesses payers for `[identity]` (required when the table is present).
    pub identity: Option<Arc<dyn IdentityProvider>>,
    /// Receives every identity decision (a durable store), beside the log.
    pub decisions: Option<Arc<dyn DecisionSink>>,
    /// Scheme servers (payee checks, requirements completed from the facilitator's
    /// `/supported`, whether a scheme is metered), by scheme and network. Empty: prices are
    /// offered as configured, and no route is metered.
    pub schemes: Registry<dyn SchemeServer>,
    /// The seller's `batch-settlement` channel manager for `[channels]` (required when the
    /// table is present): it wraps the gateway's facilitator, answering vouchers locally.
    pub channels: Option<Arc<dyn Channels>>,
    /// Sign-in-with-x's signature verifiers for `[siwx]`, by chain (required when the table
    /// is present; `tollgate proxy`: EIP-191 on `eip155:*`, and Solana with its feature).
    pub siwx_verifiers: tollgate_core::SiwxVerifiers,
}

/// The channels at a glance, for the gateway's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelGauges {
    /// Channels the seller knows.
    pub open: u64,
    /// Value charged and not claimed, in atomic units.
    pub unclaimed: u128,
    /// Seconds since the oldest unclaimed paid request (0 when nothing is unclaimed).
    pub claim_lag_secs: u64,
    /// Claim rounds that moved value since start.
    pub claims: u64,
}

/// A seller's payment channels, as the gateway uses them: chain-specific, so the embedding
/// program supplies them (`tollgate proxy`: `tollgate-evm`'s channel manager over the
/// `[channels]` store, with its background claimer).
pub trait Channels: Send + Sync + 'static {
    /// The facilitator the paywall talks to: `facilitator` behind the channel manager. Called
    /// once, at start-up; the claimer starts here.
    fn wrap(
        &self,
        facilitator: Arc<dyn tollgate_core::Facilitator>,
    ) -> Arc<dyn tollgate_core::Facilitator>;

    /// The receiver authorizer offered in `batch-settlement` routes when the seller holds its
    /// key (`None`: the facilitator's, from `/supported`).
    fn receiver_authorizer(&self) -> Option<String>;

    /// The channels' figures now (`None` when the store cannot be read).
    fn gauges(&self) -> tollgate_core::BoxFuture<'_, Option<ChannelGauges>>;
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field(
                "identity",
                &self.identity.as_ref().map(|p| p.name().to_owned()),
            )
            .field("decisions", &self.decisions.is_some())
            .field("schemes", &self.schemes)
            .field("channels", &self.channels.is_some())
            .field("siwx_verifiers", &self.siwx_verifiers)
            .finish()
    }
}

/// Builds the gateway's router from a validated configuration: checks with the facilitator
/// that every priced network is settled there, then puts the paywall in front of the proxy.
pub async fn app(config: &GatewayConfig) -> Result<axum::Router, GatewayError> {
    app_with(config, Plugins::default()).await
}

/// [`app`], with the providers the file cannot name: the identity provider that `[identity]`
/// checks payers with, and where its decisions are recorded.
pub async fn app_with(
    config: &GatewayConfig,
    plugins: Plugins,
) -> Result<axum::Router, GatewayError> {
    config.validate()?;
    if config.identity.is_some() && plugins.identity.is_none() {
        return Err(GatewayError::NoIdentityProvider);
    }
    if config.channels.is_some() && plugins.channels.is_none() {
        return Err(GatewayError::NoChannels);
    }
    let mut facilitator = RemoteFacilitator::new(&config.facilitator.url)
        .with_timeout(Duration::from_secs(config.facilitator.timeout_secs));
    if let Some(var) = &config.facilitator.api_key_env {
        let key = std::env::var(var).map_err(|_| GatewayError::MissingApiKey(var.clone()))?;
        let value = http::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| GatewayError::MissingApiKey(var.clone()))?;
        facilitator = facilitator.with_auth(std::sync::Arc::new(move |_| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value.clone());
            headers
        }));
    }
    let supported = facilitator
        .supported()
        .await
        .map_err(|e| GatewayError::Facilitator {
            url: config.facilitator.url.clone(),
            reason: e.to_string(),
        })?;
    let settled: BTreeSet<(&Scheme, &Network)> = supported
        .kinds
        .iter()
        .filter(|k| k.x402_version == X402Version::V2)
        .map(|k| (&k.scheme, &k.network))
        .collect();

    let facilitator: Arc<dyn tollgate_core::Facilitator> = match &plugins.channels {
        Some(channels) => channels.wrap(Arc::new(facilitator)),
        None => Arc::new(facilitator),
    };
    let authorizer = plugins
        .channels
        .as_ref()
        .and_then(|c| c.receiver_authorizer());
    let mut layer = PaywallLayer::new(facilitator)
        .schemes(plugins.schemes)
        .map_err(|e| ConfigError::Invalid {
            key: "routes".into(),
            reason: e.to_string(),
        })?
        .settlement_mode(config.settlement.mode.into())
        .settle_retries(config.settlement.retries)
        .pending_responses(config.settlement.pending())
        .map_err(|e| ConfigError::Invalid {
            key: "settlement".into(),
            reason: e.to_string(),
        })?;
    if let (Some(settings), Some(provider)) = (&config.identity, plugins.identity) {
        layer = layer
            .identity(provider, settings.policy.clone())
            .fail_open(settings.fail_open)
            .identity_cache_ttl(settings.cache_ttl());
    }
    if let Some(sink) = plugins.decisions {
        layer = layer.decision_sink(sink);
    }
    if let Some(settings) = &config.siwx {
        if plugins.siwx_verifiers.is_empty() {
            return Err(GatewayError::NoSiwxVerifiers);
        }
        let store: Arc<dyn tollgate_server::siwx::SiwxStore> =
            match (&settings.sqlite, &settings.url) {
                (Some(path), _) => Arc::new(
                    tollgate_server::siwx::SqliteSiwxStore::open(path)
                        .map_err(|e| GatewayError::Siwx(e.to_string()))?,
                ),
                (None, Some(url)) => Arc::new(
                    tollgate_server::siwx::PgSiwxStore::connect(url)
                        .await
                        .map_err(|e| GatewayError::Siwx(e.to_string()))?,
                ),
                (None, None) => Arc::new(tollgate_server::siwx::MemorySiwxStore::new()),
            };
        let mut siwx = tollgate_server::siwx::SignInWithX::new(
            &settings.origin,
            plugins.siwx_verifiers,
            store,
        )
        .map_err(|e| GatewayError::Siwx(e.to_string()))?;
        if let Some(statement) = &settings.statement {
            siwx = siwx.statement(statement.clone());
        }
        layer = layer.sign_in_with_x(siwx);
    }
    for (i, route) in config.routes.iter().enumerate() {
        let mut price = config.route_price(i)?;
        if let Some(authorizer) = &authorizer {
            // The seller's own receiver authorizer, unless the route names one.
            for option in price
                .options
                .iter_mut()
                .filter(|o| o.scheme == Scheme::BatchSettlement)
            {
                option
                    .extra
                    .get_or_insert_with(Default::default)
                    .entry("receiverAuthorizer")
                    .or_insert_with(|| authorizer.clone().into());
            }
        }
        if let Some(missing) = price
            .options
            .iter()
            .find(|o| !settled.contains(&(&o.scheme, &o.network)))
        {
            return Err(GatewayError::Unsupported {
                url: config.facilitator.url.clone(),
                scheme: missing.scheme.clone(),
                network: missing.network.clone(),
                route: route.route.clone(),
            });
        }
        layer = layer
            .route(&route.route, price)
            .map_err(|e| ConfigError::Invalid {
                key: format!("routes[{i}].route"),
                reason: e.to_string(),
            })?;
    }
    let upstream = Upstream::new(&config.upstream, config.upstream_timeout())
        .map_err(|e| GatewayError::Upstream(e.to_string()))?;
    let proxied = axum::Router::new()
        .fallback(proxy::forward)
        .with_state(upstream);
    let Some(path) = &config.metrics.path else {
        return Ok(proxied.layer(layer));
    };
    // Upstream time inside the paywall, outcomes outside it; the scrape endpoint beside the
    // paywall, so it is neither priced nor forwarded (`validate` keeps it off priced routes).
    let metrics = std::sync::Arc::new(metrics::GatewayMetrics::new(plugins.channels.clone()));
    let paywalled = proxied
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            metrics::time_upstream,
        ))
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            metrics::count,
        ));
    Ok(axum::Router::new()
        .route(path, axum::routing::get(metrics::scrape))
        .with_state(metrics)
        .fallback_service(paywalled))
}
