//! The HTTP side: JSON-RPC over `POST /` on a loopback listener, and interval mining.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::Address;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::chain::Chain;
use crate::{rpc, DevnetError};

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The chain, behind one lock.
    pub chain: Mutex<Chain>,
    /// The addresses `eth_accounts` lists.
    pub accounts: Vec<Address>,
}

/// Binds `127.0.0.1:port` (0: a free port). Only loopback, ever.
pub async fn bind(port: u16) -> Result<tokio::net::TcpListener, DevnetError> {
    tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| DevnetError::Bind { port, source })
}

/// Serves `shared` on `listener` until `stop` turns true; mines a block every `block_time`
/// when given.
pub fn spawn(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    block_time: Option<Duration>,
    stop: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(Arc::clone(&shared));
    let mut on_stop = stop.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = on_stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "devnet server stopped with an error");
        }
        tracing::debug!("devnet server stopped");
    });
    if let Some(every) = block_time {
        let mut stop = stop;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut chain = shared.chain.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = chain.mine(None) {
                            tracing::warn!(error = %e, "interval mining failed");
                        }
                    }
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
            }
        });
    }
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match rpc::handle_body(&shared.chain, &shared.accounts, &body) {
        Some(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
