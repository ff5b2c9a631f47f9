//! A real anvil node on a free loopback port, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// Environment variable naming an anvil binary to use instead of the one `npm ci` installs.
pub const ANVIL_ENV: &str = "TOLLGATE_ANVIL";

/// How long anvil may take to answer its first request before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running anvil process.
///
/// The node listens on `127.0.0.1` only and is killed (and reaped) when this value is dropped,
/// so a panicking test never leaks a node.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    chain_id: u64,
}

impl Anvil {
    /// Starts anvil with chain id 31337 on a free loopback port.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with_chain_id(31337)
    }

    /// Starts anvil with the given chain id on a free loopback port.
    ///
    /// Picking a free port and binding it are two steps, so another process can win the race;
    /// the start is retried on a new port a few times before giving up.
    pub fn start_with_chain_id(chain_id: u64) -> Result<Self, TestkitError> {
        let binary = find_anvil()?;
        let mut last_error = None;
        for _ in 0..4 {
            let port = free_port()?;
            match spawn(&binary, port, chain_id) {
                Ok(child) => {
                    return Ok(Self {
                        child,
                        port,
                        chain_id,
                    })
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::AnvilStart("no attempt made".into())))
    }

    /// The HTTP JSON-RPC endpoint, e.g. `http://127.0.0.1:38211`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port the node listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id the node was started with.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, port: u16, chain_id: u64) -> Result<Child, TestkitError> {
    let mut child = Command::new(binary)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--chain-id",
            &chain_id.to_string(),
            "--accounts",
            "10",
            "--balance",
            "10000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TestkitError::AnvilStart(format!("cannot run {}: {e}", binary.display())))?;

    // anvil prints "Listening on 127.0.0.1:PORT" once it serves; wait for it on stdout, and keep
    // draining the pipe afterwards so a chatty node never blocks on a full pipe.
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(Err("anvil exited before listening".into()));
        }
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let (etx, erx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = etx.send(all.clone());
        }
    });

    let deadline = Instant::now() + START_TIMEOUT;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(())) => Ok(child),
        Ok(Err(msg)) => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = erx.try_iter().last().unwrap_or_default();
            Err(TestkitError::AnvilStart(format!("{msg}: {stderr}")))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(TestkitError::AnvilStart(format!(
                "anvil did not listen within {START_TIMEOUT:?}"
            )))
        }
    }
}

pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| TestkitError::AnvilStart(format!("no free loopback port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::AnvilStart(e.to_string()))?
        .port();
    Ok(port)
}

/// Finds the anvil binary: `$TOLLGATE_ANVIL`, else the platform binary that `npm ci` put under
/// the workspace's `node_modules/@foundry-rs/`, else `anvil` on `PATH`.
///
/// The npm package's own `bin` entry is a Node wrapper; we run the native binary it wraps so that
/// killing our child really stops the node.
pub fn find_anvil() -> Result<PathBuf, TestkitError> {
    if let Some(path) = std::env::var_os(ANVIL_ENV) {
        return Ok(PathBuf::from(path));
    }
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let scope = d.join("node_modules").join("@foundry-rs");
        if let Ok(entries) = std::fs::read_dir(&scope) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("anvil-") {
                    let candidate = entry.path().join("bin").join("anvil");
                    if candidate.is_file() {
                        return Ok(candidate);
                    }
                }
            }
        }
        dir = d.parent();
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for p in std::env::split_paths(&paths) {
            let candidate = p.join("anvil");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(TestkitError::AnvilNotFound)
}
