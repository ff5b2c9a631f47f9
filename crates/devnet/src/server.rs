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
pub fn bind(port: u16) -> Result<std::net::TcpListener, DevnetError> {
    let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(|source| DevnetError::Bind { port, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DevnetError::Bind { port, source })?;
    Ok(listener)
}

/// The server's own thread and runtime; [`Server::stop`] returns once the port is closed.
#[derive(Debug)]
pub struct Server {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and waits (briefly) for the thread: the port is closed on return.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `shared` on `listener` from a thread of its own (so the devnet keeps answering while
/// the caller's runtime is busy, and stops synchronously, like a killed node); mines a block
/// every `block_time` when given.
pub fn spawn(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    block_time: Option<Duration>,
) -> Result<Server, DevnetError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tollgate-devnet")
        .enable_all()
        .build()
        .map_err(|source| DevnetError::Bind { port, source })?;
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("tollgate-devnet".into())
        .spawn(move || {
            runtime.block_on(serve(listener, shared, block_time, stopped));
            // Connections still open after the grace period are cut.
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .map_err(|source| DevnetError::Bind { port, source })?;
    Ok(Server {
        stop,
        thread: Some(thread),
    })
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    block_time: Option<Duration>,
    stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "devnet cannot serve its listener");
            return;
        }
    };
    if let Some(every) = block_time {
        let mut stop = stop.clone();
        let shared = Arc::clone(&shared);
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
    let app = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(shared);
    let mut on_stop = stop.clone();
    let shutdown = async move {
        let _ = on_stop.wait_for(|stopped| *stopped).await;
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let mut stop = stop;
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "devnet server stopped with an error");
            }
        }
        // Graceful shutdown waits for open connections; give them a moment, not forever.
        _ = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        } => {}
    }
    tracing::debug!("devnet server stopped");
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
