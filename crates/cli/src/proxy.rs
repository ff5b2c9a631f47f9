//! `tollgate proxy`: the paying gateway in front of an existing HTTP API (`tollgate init`, in
//! `init.rs`, writes its starter configuration).

use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use tollgate::core::IdentityProvider;
use tollgate::gateway::{self, GatewayConfig, GatewayError, IdentityProviderSettings, Plugins};

/// Options of `tollgate proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The TOML configuration file (`tollgate init` writes a starter).
    #[arg(long, short)]
    config: PathBuf,
}

/// Why the gateway stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] gateway::ConfigError),
    #[error(transparent)]
    Start(#[from] GatewayError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("[identity.provider]: {0}")]
    Identity(String),
    #[error("[identity] decisions: {0}")]
    Decisions(#[from] tollgate_identity::DecisionStoreError),
    #[error("[channels]: {0}")]
    Channels(String),
    #[error("[telemetry]: {0}")]
    Telemetry(#[from] tollgate_telemetry::InitError),
}

/// The identity provider `[identity.provider]` names: the one place the binary turns the
/// file's settings into a provider.
async fn identity_provider(
    settings: &IdentityProviderSettings,
) -> Result<Arc<dyn IdentityProvider>, ProxyError> {
    let bad = |e: &dyn std::fmt::Display| ProxyError::Identity(e.to_string());
    if let Some(path) = &settings.sanctions_file {
        let list = tollgate_identity::SanctionsList::load(path)
            .await
            .map_err(|e| bad(&e))?;
        return Ok(Arc::new(list));
    }
    let url = settings
        .assess_url
        .as_deref()
        .ok_or_else(|| ProxyError::Identity("no provider set".into()))?;
    let mut config = tollgate_identity::AgentScoreConfig::new(url)
        .timeout(Duration::from_secs(settings.timeout_secs));
    if let Some(var) = &settings.api_key_env {
        config = config.api_key_from_env(var).map_err(|e| bad(&e))?;
    }
    Ok(Arc::new(config.build().map_err(|e| bad(&e))?))
}

/// The scheme servers of the chains the binary knows (EVM: `exact`, and the metered `upto`,
/// whose offers need the facilitator's `extra.facilitatorAddress` and whose charge the upstream
/// states; Solana, with the `solana` feature: `exact`, whose offers need the facilitator's
/// `extra.feePayer`): the one place `tollgate proxy` names them, so a route priced in either is checked
/// and completed from the facilitator's `/supported`.
/// Sign-in-with-x's verifiers for `[siwx]`: EIP-191 (EIP-4361 messages) on every EVM network,
/// and Ed25519 (SIWS) on Solana with its feature.
fn siwx_verifiers() -> tollgate::core::SiwxVerifiers {
    let mut verifiers = tollgate::core::SiwxVerifiers::new();
    verifiers
        .register(
            tollgate::core::NetworkPattern::Namespace("eip155".to_owned()),
            Arc::new(tollgate::evm::Eip191SiwxVerifier),
        )
        .expect("one EVM sign-in verifier registered once");
    #[cfg(feature = "solana")]
    verifiers
        .register(
            tollgate::core::NetworkPattern::Namespace("solana".to_owned()),
            Arc::new(tollgate::svm::Ed25519SiwxVerifier),
        )
        .expect("one Solana sign-in verifier registered once");
    verifiers
}

fn scheme_servers() -> tollgate::core::Registry<dyn tollgate::core::SchemeServer> {
    let mut schemes: tollgate::core::Registry<dyn tollgate::core::SchemeServer> =
        tollgate::core::Registry::new();
    let all_evm = || tollgate::core::NetworkPattern::Namespace("eip155".to_owned());
    schemes
        .register_arc(
            all_evm(),
            tollgate::proto::Scheme::Exact,
            Arc::new(tollgate::evm::server::ExactEvmServer::new()),
        )
        .expect("one `exact` server registered once");
    schemes
        .register_arc(
            all_evm(),
            tollgate::proto::Scheme::Upto,
            Arc::new(tollgate::evm::UptoEvmServer),
        )
        .expect("one `upto` server registered once");
    schemes
        .register_arc(
            all_evm(),
            tollgate::proto::Scheme::BatchSettlement,
            Arc::new(tollgate::evm::batch_settlement::BatchSettlementEvmServer),
        )
        .expect("one `batch-settlement` server registered once");
    #[cfg(feature = "solana")]
    schemes
        .register_arc(
            tollgate::core::NetworkPattern::Namespace("solana".to_owned()),
            tollgate::proto::Scheme::Exact,
            Arc::new(tollgate::svm::ExactSvmServer::new()),
        )
        .expect("one Solana `exact` server registered once");
    schemes
}

/// `[channels]`: `tollgate-evm`'s channel manager over the configured store, with its
/// background claimer (started when the gateway wraps its facilitator).
struct EvmChannels {
    settings: gateway::ChannelSettings,
    store: Arc<dyn bs::channels::ChannelStore>,
    authorizer: Option<tollgate::evm::PrivateKeySigner>,
    /// The manager and its claimer, once the gateway has handed over its facilitator.
    running: std::sync::Mutex<Option<Running>>,
}

use tollgate::evm::batch_settlement as bs;

type Manager = bs::channels::ChannelManager<Arc<dyn tollgate::core::Facilitator>>;

struct Running {
    manager: Manager,
    _claimer: bs::channels::Claimer,
}

impl EvmChannels {
    async fn open(settings: &gateway::ChannelSettings) -> Result<Self, ProxyError> {
        let bad = |e: &dyn std::fmt::Display| ProxyError::Channels(e.to_string());
        // `validate` (in `GatewayConfig::load`) made sure exactly one store is named.
        let store: Arc<dyn bs::channels::ChannelStore> = match (&settings.sqlite, &settings.url) {
            (Some(path), _) => {
                Arc::new(bs::channels::SqliteChannelStore::open(path).map_err(|e| bad(&e))?)
            }
            (None, Some(url)) => Arc::new(
                bs::channels::PgChannelStore::connect(url)
                    .await
                    .map_err(|e| bad(&e))?,
            ),
            (None, None) => return Err(ProxyError::Channels("set sqlite or url".into())),
        };
        let key = match (
            &settings.receiver_authorizer_key_env,
            &settings.receiver_authorizer_key_file,
        ) {
            (Some(var), _) => Some(std::env::var(var).map_err(|_| {
                ProxyError::Channels(format!("receiver_authorizer_key_env: {var} is not set"))
            })?),
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                ProxyError::Channels(format!(
                    "receiver_authorizer_key_file {}: {e}",
                    path.display()
                ))
            })?),
            (None, None) => None,
        };
        let authorizer = key
            .map(|k| {
                // Never the key itself in the error.
                k.trim()
                    .parse::<tollgate::evm::PrivateKeySigner>()
                    .map_err(|_| {
                        ProxyError::Channels(
                            "the receiver authorizer's key is not a hex private key".into(),
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            settings: settings.clone(),
            store,
            authorizer,
            running: std::sync::Mutex::new(None),
        })
    }

    fn manager(&self) -> Option<Manager> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.as_ref().map(|r| r.manager.clone())
    }
}

impl gateway::Channels for EvmChannels {
    fn wrap(
        &self,
        facilitator: Arc<dyn tollgate::core::Facilitator>,
    ) -> Arc<dyn tollgate::core::Facilitator> {
        let manager = bs::channels::ChannelManager::new(
            facilitator,
            self.store.clone(),
            bs::channels::ChannelManagerConfig {
                authorizer: self.authorizer.clone(),
                ..Default::default()
            },
        );
        let claimer = manager.spawn_claimer(bs::channels::ClaimPolicy {
            check_every: Duration::from_secs(self.settings.claim_check_secs),
            interval: Duration::from_secs(self.settings.claim_interval_secs),
            threshold: self.settings.claim_threshold.0.saturating_to(),
        });
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            manager: manager.clone(),
            _claimer: claimer,
        });
        Arc::new(manager)
    }

    fn receiver_authorizer(&self) -> Option<String> {
        self.authorizer.as_ref().map(|k| k.address().to_string())
    }

    fn gauges(&self) -> tollgate::core::BoxFuture<'_, Option<gateway::ChannelGauges>> {
        Box::pin(async move {
            let manager = self.manager()?;
            let stats = manager.stats().await.ok()?;
            Some(gateway::ChannelGauges {
                open: stats.channels as u64,
                unclaimed: stats.unclaimed,
                claim_lag_secs: stats.claim_lag_secs,
                claims: manager.claim_rounds(),
            })
        })
    }
}

pub async fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let config = GatewayConfig::load(&args.config)?;
    // Kept until the gateway stops: dropping it sends the last spans.
    let _telemetry = crate::start_telemetry(&config.telemetry, "tollgate-proxy")?;
    let mut plugins = Plugins {
        schemes: scheme_servers(),
        siwx_verifiers: siwx_verifiers(),
        ..Plugins::default()
    };
    if let Some(settings) = &config.channels {
        plugins.channels = Some(Arc::new(EvmChannels::open(settings).await?));
    }
    if let Some(settings) = config.identity.as_ref().and_then(|i| i.provider.as_ref()) {
        plugins.identity = Some(identity_provider(settings).await?);
    }
    if let Some(settings) = config.identity.as_ref().and_then(|i| i.decisions.as_ref()) {
        // `validate` (in `GatewayConfig::load`) made sure exactly one store is named.
        let store = match (&settings.sqlite, &settings.url) {
            (Some(path), _) => tollgate_identity::DecisionStore::sqlite(path).await?,
            (None, Some(url)) => tollgate_identity::DecisionStore::postgres(url).await?,
            (None, None) => {
                return Err(ProxyError::Config(gateway::ConfigError::Invalid {
                    key: "identity.decisions".into(),
                    reason: "set sqlite or url".into(),
                }))
            }
        };
        plugins.decisions = Some(Arc::new(tollgate_identity::DecisionLog::spawn(
            store,
            settings.queue,
        )));
    }
    // One span per request; the gateway is the edge, so a buyer's `traceparent` is ignored
    // (it could otherwise join the operator's traces or force them to be sampled). The
    // paywall's facilitator calls carry this trace on to the facilitator.
    let app = gateway::app_with(&config, plugins)
        .await?
        .layer(tollgate_telemetry::HttpTraceLayer::new_trace());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ProxyError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ProxyError::Serve)?;
    eprintln!(
        "tollgate proxy listening on http://{addr}, forwarding to {}",
        config.upstream
    );
    // Connection cap, header-read, idle and request timeouts; graceful shutdown lets requests
    // in flight (and their settlements) finish.
    let settings = tollgate_listen::Settings {
        limits: config.limits,
        request_timeout: std::time::Duration::from_secs(config.request_timeout_secs),
    };
    tollgate_listen::serve(listener, app, settings, crate::shutdown::signal())
        .await
        .map_err(ProxyError::Serve)
}
