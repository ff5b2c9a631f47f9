//! One connection's life: what it is doing now (so the listener knows when to close it and
//! whether it may be evicted), and the wrappers that report it — around the socket (the first
//! byte of a request head), the service (a request starts) and the response body (it ends).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a connection is doing, and so which deadline applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted, nothing received yet: the header-read timeout runs from the accept.
    Fresh,
    /// Between requests on a keep-alive connection: the idle timeout runs.
    Idle,
    /// Part of a request head has arrived: the header-read timeout runs from its first byte.
    Head,
    /// A request is in flight (its head parsed, its response not yet fully written): the
    /// request timeout runs.
    Busy,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) phase: Phase,
    /// When the current phase began.
    pub(crate) since: Instant,
    in_flight: usize,
    /// Set when the listener took this connection's slot for a newer one.
    pub(crate) evicted: bool,
    /// Since when the application has been waiting for request-body bytes that do not come.
    body_wait: Option<Instant>,
}

/// Timeouts of one connection, copied from the listener's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
    pub(crate) request: Duration,
}

/// A response still being written this long after the request timeout (which has already
/// answered `503` if the handler was not done) is cut: the client is not reading it.
pub const RESPONSE_GRACE: Duration = Duration::from_secs(2);

/// The state shared by a connection's task, its socket wrapper and its in-flight requests.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    state: Mutex<State>,
    /// Wakes the connection's task when its deadline moves earlier or it was evicted.
    pub(crate) wake: Notify,
}

impl Conn {
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            state: Mutex::new(State {
                phase: Phase::Fresh,
                since: Instant::now(),
                in_flight: 0,
                evicted: false,
                body_wait: None,
            }),
            wake: Notify::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is
        // a few field writes), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When this connection must be closed unless its phase changes, or `None` when it was
    /// evicted and must close now.
    pub(crate) fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        let s = self.state();
        if s.evicted {
            return None;
        }
        Some(match s.phase {
            Phase::Fresh | Phase::Head => s.since + t.header_read,
            Phase::Idle => s.since + t.idle,
            Phase::Busy => {
                let whole = s.since + t.request + RESPONSE_GRACE;
                // A request body that stops arriving while the application waits for it is
                // cut like a stalled head, not held until the request timeout.
                match s.body_wait {
                    Some(waiting) => whole.min(waiting + t.header_read),
                    None => whole,
                }
            }
        })
    }

    /// The application waits for request-body bytes.
    fn body_waiting(&self) {
        let mut s = self.state();
        if s.body_wait.is_none() && s.phase == Phase::Busy {
            s.body_wait = Some(Instant::now());
            drop(s);
            // This deadline may come before the request timeout's.
            self.wake.notify_one();
        }
    }

    /// Request-body bytes arrived, or the application stopped waiting for them.
    fn body_progress(&self) {
        self.state().body_wait = None;
    }

    /// Bytes arrived: a request head has begun, unless one is already under way.
    fn received(&self) {
        let mut s = self.state();
        match s.phase {
            // The first request's head is timed from the accept: keep `since`.
            Phase::Fresh => s.phase = Phase::Head,
            Phase::Idle => {
                s.phase = Phase::Head;
                s.since = Instant::now();
                drop(s);
                // The header deadline is usually earlier than the idle one.
                self.wake.notify_one();
            }
            Phase::Head | Phase::Busy => {}
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        if s.phase != Phase::Busy {
            s.phase = Phase::Busy;
            s.since = Instant::now();
        }
        InFlight(Arc::clone(self))
    }
}

/// A request in flight; dropping it (its response body finished or dropped) may make the
/// connection idle.
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 && s.phase == Phase::Busy {
            s.body_wait = None;
            s.phase = Phase::Idle;
            s.since = Instant::now();
            drop(s);
            self.0.wake.notify_one();
        }
    }
}

/// The socket, reporting received bytes to the connection's state.
pub(crate) struct Watched {
    pub(crate) stream: TcpStream,
    pub(crate) conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The request body, reporting to the connection's state whether the application is waiting
/// for bytes that have not arrived.
struct WatchedBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl http_body::Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            self.conn.body_waiting();
        } else {
            self.conn.body_progress();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.conn.body_progress();
    }
}

/// A response body that keeps its request "in flight" until it has been written out.
pub(crate) struct Tracked {
    inner: Body,
    in_flight: Option<InFlight>,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A small JSON response that closes the connection after it.
pub(crate) fn closing_json(status: StatusCode, error: &str, message: &str) -> Response<Body> {
    let body = format!(r#"{{"error":"{error}","message":"{message}"}}"#);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The application, as hyper calls it on one connection: adds `ConnectInfo<SocketAddr>`,
/// tracks the request in flight and bounds it by the request timeout.
pub(crate) struct ConnService<S> {
    pub(crate) inner: S,
    pub(crate) conn: Arc<Conn>,
    pub(crate) remote: SocketAddr,
    pub(crate) request_timeout: Duration,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.conn.request_started();
        let conn = Arc::clone(&self.conn);
        let mut request = request.map(|inner| Body::new(WatchedBody { inner, conn }));
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let mut inner = self.inner.clone();
        let timeout = self.request_timeout;
        Box::pin(async move {
            let work = async {
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                inner.call(request).await
            };
            let response = match tokio::time::timeout(timeout, work).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    tracing::warn!(
                        timeout_secs = timeout.as_secs(),
                        "request timed out; answering 503"
                    );
                    let mut response = closing_json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "request_timeout",
                        "the request took longer than the server allows",
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    response
                }
            };
            Ok(response.map(|inner| Tracked {
                inner,
                in_flight: Some(in_flight),
            }))
        })
    }
}
