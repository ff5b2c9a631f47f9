//! `tollgate proxy`: the paying gateway in front of an existing HTTP API (`tollgate init`, in
//! `init.rs`, writes its starter configuration).

use std::path::PathBuf;

use tollgate::gateway::{self, GatewayConfig, GatewayError};

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
}

pub async fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let config = GatewayConfig::load(&args.config)?;
    let app = gateway::app(&config).await?;
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
