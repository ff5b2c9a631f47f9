//! The HTTP side: JSON-RPC over `POST /` on a loopback listener, and the slot ticker.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::chain::Chain;
use crate::{rpc, SvmDevnetError};

/// The largest request body served (a transaction is at most 1,232 bytes; a batch of a few
/// hundred requests fits). Larger bodies get `413 Payload Too Large`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the HTTP handlers and the ticker share.
#[derive(Debug)]
pub struct Shared {
    /// The chain, behind one lock (litesvm is not `Sync`; the lock is never held across an
    /// `.await`).
    pub chain: Mutex<Chain>,
}

impl Shared {
    /// Locks the chain (a panic elsewhere does not make it unusable).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Binds `127.0.0.1:port` (0: a free port). Only loopback, ever.
pub fn bind(port: u16) -> Result<std::net::TcpListener, SvmDevnetError> {
    let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(|source| SvmDevnetError::Bind { port, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| SvmDevnetError::Bind { port, source })?;
    Ok(listener)
}

/// The server's own thread and runtime; [`Server::stop`] returns once the port is closed and
/// the ticker stopped.
#[derive(Debug)]
pub struct Server {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and ticking, and waits (briefly) for the thread: the port is closed on
    /// return.
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

/// Serves `shared` on `listener` from a thread of its own (so the devnet keeps answering and
/// ticking while the caller's runtime is busy or blocked, and stops synchronously, like a
/// killed node), advancing one slot every `slot_interval`.
pub fn spawn(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    slot_interval: Duration,
) -> Result<Server, SvmDevnetError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tollgate-svm-devnet")
        .enable_all()
        .build()
        .map_err(SvmDevnetError::Runtime)?;
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("tollgate-svm-devnet".into())
        .spawn(move || {
            runtime.block_on(serve(listener, shared, slot_interval, stopped));
            // Connections still open after the grace period are cut.
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .map_err(SvmDevnetError::Runtime)?;
    Ok(Server {
        stop,
        thread: Some(thread),
    })
}

async fn tick(shared: Arc<Shared>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => shared.lock().advance(1),
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    slot_interval: Duration,
    stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "svm devnet cannot serve its listener");
            return;
        }
    };
    tokio::spawn(tick(Arc::clone(&shared), slot_interval, stop.clone()));
    let app = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
                tracing::warn!(error = %e, "svm devnet server stopped with an error");
            }
        }
        // Graceful shutdown waits for open connections; give them a moment, not forever.
        _ = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        } => {}
    }
    tracing::debug!("svm devnet server stopped");
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match rpc::handle_body(&shared.chain, &body) {
        Some(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
