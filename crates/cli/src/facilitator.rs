//! `tollgate facilitator`: the verify/settle service.

use std::path::PathBuf;

use tollgate_facilitator::{config, http, Config, Facilitator};

/// Options of `tollgate facilitator`.
#[derive(Debug, clap::Args)]
pub struct FacilitatorArgs {
    /// The TOML configuration file.
    #[arg(long, short, required_unless_present = "print_config_example")]
    config: Option<PathBuf>,
    /// Prints a commented example configuration and exits.
    #[arg(long)]
    print_config_example: bool,
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    #[error("--config FILE is required (see --print-config-example)")]
    NoConfig,
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Start(#[from] tollgate_facilitator::service::StartError),
    #[error(transparent)]
    Identity(#[from] tollgate_facilitator::reputation::ReputationError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("[telemetry]: {0}")]
    Telemetry(#[from] tollgate_telemetry::InitError),
}

pub async fn run(args: FacilitatorArgs) -> Result<(), FacilitatorError> {
    if args.print_config_example {
        print!("{}", config::EXAMPLE);
        return Ok(());
    }
    let path = args.config.ok_or(FacilitatorError::NoConfig)?;
    let config = Config::load(&path)?;
    // Kept until the service stops: dropping it sends the last spans.
    let _telemetry = crate::start_telemetry(&config.telemetry, "tollgate-facilitator")?;
    // Fail on a missing API key before touching the chain or the ledger.
    config.server.load_api_key()?;
    let (facilitator, report) = Facilitator::from_config(&config).await?;
    tracing::info!(?report, "ledger reconciled");
    let limits = http::HttpLimits {
        body_limit_bytes: config.server.body_limit_bytes,
        request_timeout: std::time::Duration::from_secs(config.server.request_timeout_secs),
        api_key: config.server.load_api_key()?,
        rate_limit: config.server.rate_limit,
    };
    // `[identity] sanctions_file` is loaded before listening: a broken list stops the start.
    let reputation = tollgate_facilitator::reputation::ReputationService::from_config(
        facilitator.ledger().clone(),
        &config.identity,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| FacilitatorError::Listen {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(FacilitatorError::Serve)?;
    eprintln!("tollgate facilitator listening on http://{addr}");
    // The handlers bound verify and settle by `request_timeout_secs` and answer in x402's
    // terms; the listener's own request timeout (which also covers a slow request body) comes
    // a little later so that their answer wins.
    let settings = tollgate_listen::Settings {
        limits: config.server.limits,
        request_timeout: limits.request_timeout + LISTENER_TIMEOUT_MARGIN,
    };
    // Graceful shutdown: stop accepting, let in-flight requests (settlements included) finish.
    tollgate_listen::serve(
        listener,
        http::router_with_reputation(facilitator, limits, reputation),
        settings,
        crate::shutdown::signal(),
    )
    .await
    .map_err(FacilitatorError::Serve)
}

/// How much later than the handlers' request timeout the listener gives up on a request.
const LISTENER_TIMEOUT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);
