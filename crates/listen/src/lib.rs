//! The listener of every Tollgate server (`tollgate proxy`, `tollgate facilitator`).
//!
//! `axum::serve` accepts every connection and keeps it for as long as the client likes: a
//! thousand connections holding half a request header stay open forever, and enough idle ones
//! use up the process's file descriptors until legitimate requests time out in the kernel's
//! backlog. [`serve`] runs the same application (HTTP/1.1, `ConnectInfo<SocketAddr>` in every
//! request) with bounds on all of that:
//!
//! - **a connection cap** ([`Limits::max_connections`]). When full, a new connection takes the
//!   slot of the connection that has had no request in flight for the longest (idle between
//!   requests, or still sending its request head), which is closed; only when every connection
//!   is busy with a request is the new one refused, at once, with `503`, `Retry-After` and a
//!   short JSON body — never left waiting in the backlog.
//! - **a header-read timeout** ([`Limits::header_read_timeout_secs`]): a request head must be
//!   complete this long after the connection was accepted (first request) or after its first
//!   byte arrived (later requests); slowloris connections are closed. The same bound applies
//!   to a request body that stops arriving while the application waits for it (a slow upload
//!   that keeps coming is fine; one that stalls does not hold its slot until the request
//!   timeout).
//! - **an idle timeout** ([`Limits::idle_timeout_secs`]): a keep-alive connection with no
//!   request in flight is closed after this long. hyper's own `header_read_timeout` also runs
//!   while a keep-alive connection waits for its next request, which would make the idle
//!   timeout no longer than the header timeout; this crate keeps the two apart and times both
//!   itself.
//! - **a request timeout** (`request_timeout`, given by the server: the facilitator's waits for
//!   settlement receipts): a handler that has not answered by then is answered `503` and the
//!   connection closed; a response still being written [`RESPONSE_GRACE`] later is cut.
//! - **graceful shutdown**: when `shutdown` resolves, the listener stops accepting, idle
//!   connections close, and requests in flight finish (each within its request timeout).
//!
//! The body size limit stays in the application (per route), where it is today.

#![deny(unsafe_code)]

mod conn;
mod limits;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

pub use conn::RESPONSE_GRACE;
pub use limits::{
    InvalidLimit, Limits, DEFAULT_HEADER_READ_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_SECS,
    DEFAULT_MAX_CONNECTIONS,
};

use conn::{Conn, ConnService, Phase, Timeouts, Watched};

/// How [`serve`] runs: the connection limits and the server's request timeout.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Connection cap and header-read and idle timeouts.
    pub limits: Limits,
    /// Longest a request may take from its head being read to its response being ready (then
    /// `503`); its response must be written out within [`RESPONSE_GRACE`] more.
    pub request_timeout: Duration,
}

/// The body of the `503` written to a connection refused because every slot is busy.
const BUSY_BODY: &str =
    r#"{"error":"server_busy","message":"too many connections in use; retry in a moment"}"#;

/// The whole `503` for a refused connection: small, fixed, and closing, so that refusing costs
/// nearly nothing.
static BUSY_RESPONSE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    )
    .into_bytes()
});

/// How long a refused connection is kept to deliver the `503` (reading what the client sent, so
/// that closing does not reset the connection before the client has read the answer).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refused connections being answered at once; beyond this they are closed without an answer.
const MAX_LINGERING: usize = 64;

/// Serves `app` on `listener` under `settings` until `shutdown` resolves, then lets requests in
/// flight finish and returns.
///
/// `app` is typically an `axum::Router`; every request carries
/// `axum::extract::ConnectInfo<SocketAddr>` (the peer's address), as with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
///
/// Fails (`InvalidInput`) only on settings that would disable a protection: limits that
/// [`Limits::validate`] refuses or a zero request timeout. Failures of single connections are
/// logged, never returned.
pub async fn serve<S, F>(
    listener: TcpListener,
    app: S,
    settings: Settings,
    shutdown: F,
) -> std::io::Result<()>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()> + Send,
{
    settings
        .limits
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if settings.request_timeout.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the request timeout must be positive",
        ));
    }
    let lingering = MAX_LINGERING.min(settings.limits.max_connections);
    let max_connections = limits::fit_fd_limit(settings.limits.max_connections, lingering);
    let shared = Arc::new(Shared {
        max_connections,
        timeouts: Timeouts {
            header_read: settings.limits.header_read_timeout(),
            idle: settings.limits.idle_timeout(),
            request: settings.request_timeout,
        },
        registry: Mutex::new(Registry::default()),
        lingering: Arc::new(Semaphore::new(lingering)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut last_accept_warning: Option<std::time::Instant> = None;
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors or buffers: the cap should prevent it, but other
                    // parts of the process use descriptors too. Back off briefly rather than
                    // spin; the connection waits in the backlog meanwhile. Logged at most once
                    // a second, since it repeats for as long as the shortage lasts.
                    if last_accept_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed");
                        last_accept_warning = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match shared.admit() {
            Some(conn) => {
                let task = ConnTask {
                    shared: Arc::clone(&shared),
                    conn,
                    stop: stop_rx.clone(),
                    _alive: alive_tx.clone(),
                };
                tokio::spawn(task.run(stream, remote, app.clone()));
            }
            None => shared.refuse(stream),
        }
    }
    drop(listener);
    let in_flight = shared.len();
    tracing::info!(
        connections = in_flight,
        "stopped accepting; finishing requests in flight"
    );
    let _ = stop_tx.send(true);
    drop(alive_tx);
    // Each connection ends by itself within its request timeout (plus the grace to write it);
    // this bound only guards against a bug keeping one open.
    let bound = settings.request_timeout + RESPONSE_GRACE + Duration::from_secs(1);
    if tokio::time::timeout(bound, alive_rx.recv()).await.is_err() {
        tracing::warn!("connections still open after the shutdown bound; closing them");
    }
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before we took it).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

struct Shared {
    max_connections: usize,
    timeouts: Timeouts,
    registry: Mutex<Registry>,
    lingering: Arc<Semaphore>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    /// Whether the last admission found the listener full (so "full" is logged once per
    /// episode, not once per connection).
    full: bool,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.registry().conns.len()
    }

    /// A slot for a new connection: a free one, or the one of the connection that has gone
    /// longest without a request in flight (closed now). `None` when every connection is busy.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut registry = self.registry();
        if registry.conns.len() >= self.max_connections {
            let victim = registry
                .conns
                .values()
                .filter_map(|conn| {
                    let s = conn.state();
                    (s.phase != Phase::Busy && !s.evicted).then_some((s.since, conn.id))
                })
                .min();
            let Some((_, id)) = victim else {
                if !registry.full {
                    registry.full = true;
                    tracing::warn!(
                        max_connections = self.max_connections,
                        "every connection is busy with a request; refusing new ones with 503"
                    );
                }
                return None;
            };
            if let Some(victim) = registry.conns.remove(&id) {
                let mut s = victim.state();
                s.evicted = true;
                drop(s);
                victim.wake.notify_one();
                tracing::debug!(
                    connection = id,
                    "connection cap reached; closed the longest-idle connection"
                );
            }
        } else {
            registry.full = false;
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let conn = Arc::new(Conn::new(id));
        registry.conns.insert(id, Arc::clone(&conn));
        Some(conn)
    }

    fn remove(&self, id: u64) {
        self.registry().conns.remove(&id);
    }

    /// Answers a connection that found every slot busy with `503` and closes it.
    fn refuse(&self, stream: TcpStream) {
        let Ok(permit) = Arc::clone(&self.lingering).try_acquire_owned() else {
            // Too many refusals under way already: try a non-blocking write, then close.
            let _ = stream.try_write(&BUSY_RESPONSE);
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                stream.write_all(&BUSY_RESPONSE).await?;
                stream.shutdown().await?;
                // Drain what the client sent until it closes, so our close is a clean FIN
                // and the client reads the 503 instead of a reset.
                let mut sink = [0u8; 4096];
                let mut total = 0usize;
                while total < 64 * 1024 {
                    let n = stream.read(&mut sink).await?;
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                std::io::Result::Ok(())
            })
            .await;
        });
    }
}

/// One admitted connection's task.
struct ConnTask {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    stop: watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl ConnTask {
    async fn run<S>(mut self, stream: TcpStream, remote: SocketAddr, app: S)
    where
        S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let timeouts = self.shared.timeouts;
        let io = TokioIo::new(Watched {
            stream,
            conn: Arc::clone(&self.conn),
        });
        let service = ConnService {
            inner: app,
            conn: Arc::clone(&self.conn),
            remote,
            request_timeout: timeouts.request,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // hyper's header timer would also close idle keep-alive connections at the header
        // timeout; ours keeps the two timeouts apart (see the crate's documentation).
        builder.header_read_timeout(None).keep_alive(true);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        // `deadline` is `None` once the connection was evicted: then it closes at once.
        while let Some(deadline) = self.conn.deadline(&timeouts) {
            let woken = self.conn.wake.notified();
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if self.conn.deadline(&timeouts).is_none_or(|d| d <= tokio::time::Instant::now()) {
                        let phase = self.conn.state().phase;
                        tracing::debug!(%remote, ?phase, "connection timed out; closing it");
                        break;
                    }
                }
                () = woken => {}
                _ = self.stop.changed(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        self.shared.remove(self.conn.id);
    }
}
