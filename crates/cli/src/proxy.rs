//! `tollgate proxy`: the paying gateway in front of an existing HTTP API, and `tollgate init`,
//! which writes its starter configuration.

use std::io::Write;
use std::path::PathBuf;

use tollgate::gateway::{self, GatewayConfig, GatewayError};
use tollgate::proto::Network;

/// Options of `tollgate proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The TOML configuration file (`tollgate init` writes a starter).
    #[arg(long, short)]
    config: PathBuf,
}

/// Options of `tollgate init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// CAIP-2 network to be paid on, e.g. `eip155:8453` (Base) or `eip155:84532` (Base Sepolia).
    #[arg(long)]
    network: Network,
    /// The address that receives payments.
    #[arg(long)]
    pay_to: String,
    /// Base URL of the API to sell.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    upstream: String,
    /// The facilitator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4020")]
    facilitator: String,
    /// Where to write the file; standard output when absent. An existing file is never
    /// overwritten.
    #[arg(long, short)]
    output: Option<PathBuf>,
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
    #[error("{path} already exists; not overwriting it")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
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
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(crate::shutdown::signal())
    .await
    .map_err(ProxyError::Serve)
}

/// Writes the starter configuration, checked to parse and validate before it is written.
pub fn init(args: InitArgs) -> Result<(), ProxyError> {
    let text = gateway::starter(
        &args.network,
        &args.pay_to,
        &args.upstream,
        &args.facilitator,
    );
    let config = GatewayConfig::parse(&text)?;
    config.validate()?;
    match args.output {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|source| {
                    if source.kind() == std::io::ErrorKind::AlreadyExists {
                        ProxyError::Exists { path: path.clone() }
                    } else {
                        ProxyError::Write {
                            path: path.clone(),
                            source,
                        }
                    }
                })?;
            file.write_all(text.as_bytes())
                .map_err(|source| ProxyError::Write {
                    path: path.clone(),
                    source,
                })?;
            eprintln!(
                "wrote {}; edit the routes, then: tollgate proxy --config {}",
                path.display(),
                path.display()
            );
            Ok(())
        }
    }
}
