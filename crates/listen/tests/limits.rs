//! The listener on real loopback sockets: a raw client speaks HTTP/1.1 so that it can stop
//! half-way through a request head, hold connections idle, and see exactly when the server
//! closes them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tollgate_listen::{serve, Limits, Settings};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/second",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "done"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
}

async fn start(max_connections: usize, header: u64, idle: u64, request: Duration) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = Settings {
        limits: Limits {
            max_connections,
            header_read_timeout_secs: header,
            idle_timeout_secs: idle,
        },
        request_timeout: request,
    };
    let task = tokio::spawn(serve(listener, app(), settings, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A parsed response: status line, headers (lower-cased names) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (with a `Content-Length`) from `stream`.
async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(buf[head_end..head_end + length].to_vec()).unwrap(),
    }
}

async fn get_on(stream: &mut TcpStream, path: &str) -> Reply {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    timeout(Duration::from_secs(10), read_reply(stream))
        .await
        .expect("a response within 10 s")
}

/// Whether the server has closed `stream`, waiting at most `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data from the server"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn half_sent_and_silent_connections_are_closed_at_the_header_timeout() {
    let server = start(100, 1, 30, Duration::from_secs(30)).await;
    let started = Instant::now();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Still open well inside the timeout...
    assert!(!closed_within(&mut half, Duration::from_millis(500)).await);
    // ...and a complete request on another connection is served meanwhile.
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut good, "/ok").await.status, 200);
    // Closed once the header timeout (1 s from the accept) has passed.
    assert!(closed_within(&mut half, Duration::from_secs(3)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_keep_alive_connection_closes_at_the_idle_timeout_not_the_header_timeout() {
    let server = start(100, 1, 3, Duration::from_secs(30)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut conn, "/ok").await.status, 200);
    // Idle for twice the header timeout: still usable.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get_on(&mut conn, "/ok").await.body, "ok");
    let idle_since = Instant::now();
    assert!(closed_within(&mut conn, Duration::from_secs(6)).await);
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(2500) && idle < Duration::from_millis(5000),
        "closed after {idle:?}"
    );
}

#[tokio::test]
async fn a_partial_head_after_an_idle_wait_gets_the_header_timeout() {
    let server = start(100, 1, 30, Duration::from_secs(30)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut conn, "/ok").await.status, 200);
    conn.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
    let sent = Instant::now();
    assert!(closed_within(&mut conn, Duration::from_secs(4)).await);
    assert!(sent.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_full_listener_closes_its_longest_idle_connection_for_a_new_one() {
    let server = start(3, 30, 30, Duration::from_secs(30)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(get_on(&mut conn, "/ok").await.status, 200);
        idle.push(conn);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut newcomer = TcpStream::connect(server.addr).await.unwrap();
    let asked = Instant::now();
    assert_eq!(get_on(&mut newcomer, "/ok").await.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await);
    assert!(!closed_within(&mut idle[1], Duration::from_millis(200)).await);
    assert!(!closed_within(&mut idle[2], Duration::from_millis(200)).await);
}

#[tokio::test]
async fn half_open_connections_never_keep_a_real_request_waiting() {
    let server = start(5, 30, 30, Duration::from_secs(30)).await;
    let mut half_open = Vec::new();
    for _ in 0..20 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        half_open.push(conn);
    }
    let asked = Instant::now();
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut conn, "/ok").await.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1));
    // The oldest half-open ones were closed to make room.
    assert!(closed_within(&mut half_open[0], Duration::from_secs(2)).await);
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_gets_a_503_at_once() {
    let server = start(2, 30, 30, Duration::from_secs(60)).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        busy.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    let reply = get_on(&mut refused, "/ok").await;
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON body");
    assert_eq!(body["error"], "server_busy", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
    // The busy connections were not touched.
    assert!(!closed_within(&mut busy[0], Duration::from_millis(100)).await);
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let server = start(10, 10, 10, Duration::from_secs(10)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let local = conn.local_addr().unwrap();
    assert_eq!(get_on(&mut conn, "/peer").await.body, local.to_string());
}

#[tokio::test]
async fn a_request_past_the_request_timeout_gets_503_and_the_connection_closes() {
    let server = start(10, 10, 10, Duration::from_secs(1)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let asked = Instant::now();
    let reply = get_on(&mut conn, "/slow").await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("request_timeout"), "{reply:?}");
    assert!(asked.elapsed() < Duration::from_secs(3));
    assert!(closed_within(&mut conn, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_slow_request_body_is_bounded_by_the_request_timeout() {
    let server = start(10, 10, 10, Duration::from_secs(1)).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let reply = timeout(Duration::from_secs(4), read_reply(&mut conn))
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_is_cut_at_the_header_timeout() {
    let server = start(10, 1, 30, Duration::from_secs(30)).await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let sent = Instant::now();
    // A slow upload that keeps coming is not a stalled one: one byte every 300 ms for 2 s.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n")
        .await
        .unwrap();
    for byte in b"trickled" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        slow.write_all(&[*byte]).await.unwrap();
    }
    let reply = timeout(Duration::from_secs(5), read_reply(&mut slow))
        .await
        .unwrap();
    assert_eq!(reply.body, "trickled");
    assert!(closed_within(&mut stalled, Duration::from_secs(2)).await);
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(4), "cut after {took:?}");
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_stops_accepting() {
    let mut server = start(10, 10, 10, Duration::from_secs(10)).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut idle, "/ok").await.status, 200);
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop.take().unwrap().send(()).unwrap();
    // The idle connection closes at once; the one in flight gets its answer.
    assert!(closed_within(&mut idle, Duration::from_millis(500)).await);
    let reply = timeout(Duration::from_secs(5), read_reply(&mut conn))
        .await
        .unwrap();
    assert_eq!(reply.body, "done");
    let served = timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve returns after the last request")
        .unwrap();
    served.unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn settings_that_would_disable_a_protection_are_refused() {
    for (limits, request) in [
        (
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
            Duration::from_secs(10),
        ),
        (
            Limits {
                header_read_timeout_secs: 0,
                ..Limits::default()
            },
            Duration::from_secs(10),
        ),
        (Limits::default(), Duration::ZERO),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = Settings {
            limits,
            request_timeout: request,
        };
        let err = timeout(
            Duration::from_secs(2),
            serve(listener, app(), settings, std::future::pending()),
        )
        .await
        .expect("refused at once")
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}
