//! Shared by the CLI's integration tests: running `tollgate` roles as child processes.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running facilitator process, killed (SIGKILL) and reaped when dropped.
pub struct Running(Child);

impl Running {
    /// Sends SIGTERM (a graceful stop request).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
    }

    /// Whether the process has not exited yet.
    pub fn still_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit on its own; true when it exited with 0.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    pub fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_9();
    }
}

impl Running {
    /// Spawns `command` with stderr piped.
    pub fn spawn(command: &mut Command) -> Self {
        Running(command.stderr(Stdio::piped()).spawn().unwrap())
    }

    /// Reads stderr until a line starting with `prefix`; returns the rest of that line. Keeps
    /// draining stderr afterwards so the child never blocks on a full pipe.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        let mut stderr = BufReader::new(self.0.stderr.take().expect("stderr is piped"));
        let mut line = String::new();
        loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("process exited before printing {prefix:?}");
            }
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                let rest = rest.to_owned();
                std::thread::spawn(move || for _ in stderr.lines() {});
                return rest;
            }
        }
    }
}

/// Starts `tollgate facilitator --config <config>` with `env`, and waits until it listens;
/// returns the process and its base URL.
pub fn start_facilitator(config: &std::path::Path, env: &[(&str, &str)]) -> (Running, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.args(["facilitator", "--config"]).arg(config);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut running = Running::spawn(&mut command);
    let addr = running.wait_for_line("tollgate facilitator listening on ");
    (running, addr)
}

// The interoperability rigs: the official SDK's scripts in `tests/interop` and the roles they
// talk to, run as child processes whose output is kept in a log.

/// `tests/interop`, where the official SDK is installed (`npm ci`) and its scripts live.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// A child process killed and reaped on drop, its output in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        text[text.floor_char_boundary(start)..].to_owned()
    }
}

/// Spawns `command` with stdout piped and stderr to `log` (or stderr piped, `on_stderr`); waits
/// for a line starting with `prefix` on the piped stream and returns the rest of it. The piped
/// stream keeps being copied into the log.
pub fn spawn_until(
    mut command: Command,
    log: PathBuf,
    prefix: &str,
    on_stderr: bool,
) -> (Proc, String) {
    let file = std::fs::File::create(&log).unwrap();
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    if on_stderr {
        command.stderr(Stdio::piped());
    } else {
        command.stderr(file.try_clone().unwrap());
    }
    let mut child = command.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stream: Box<dyn std::io::Read + Send> = if on_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let prefix_owned = prefix.to_owned();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = file;
        let mut tx = Some(tx);
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(rest) = line.trim().strip_prefix(&prefix_owned) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.to_owned());
                }
            }
        }
    });
    let proc = Proc { child, log };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => (proc, rest),
        Err(_) => panic!("{prefix:?} never printed; log:\n{}", proc.log_tail()),
    }
}

pub fn node(script: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("node");
    command.current_dir(interop_dir()).arg(script);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// The `tollgate` binary under test.
pub fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

/// Runs `command` to completion with no standard input.
pub fn run_output(mut command: Command) -> std::process::Output {
    command.stdin(Stdio::null());
    command.output().unwrap()
}

/// Whose implementation plays a role in an interop row: the official SDK's or Tollgate's.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Side {
    Official,
    Tollgate,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Side::Official => "official",
            Side::Tollgate => "tollgate",
        })
    }
}

/// Both sides, official first.
pub const SIDES: [Side; 2] = [Side::Official, Side::Tollgate];

/// What a client printed: the HTTP status, the body, the decoded payment-response header (the
/// official client scripts' `paymentResponse`), and their raw output for failure messages.
#[derive(Debug)]
pub struct Shown {
    pub status: u16,
    pub body: String,
    pub receipt: Option<serde_json::Value>,
    /// The response headers (`tollgate pay -i` only), in order.
    pub headers: Vec<(String, String)>,
    /// What the official client signed and sent (`paymentPayload`, official scripts only).
    pub payload: Option<serde_json::Value>,
    pub raw: String,
}

impl Shown {
    /// An official client script's one JSON line: `{status, body, paymentResponse,
    /// paymentPayload}`.
    pub fn official(out: &std::process::Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let raw = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
        let present = |key: &str| v.get(key).filter(|r| !r.is_null()).cloned();
        Self {
            status: v["status"].as_u64().unwrap_or(0) as u16,
            body: v["body"].as_str().unwrap_or_default().to_owned(),
            receipt: present("paymentResponse"),
            headers: Vec::new(),
            payload: present("paymentPayload"),
            raw,
        }
    }

    /// `tollgate pay -i`: "HTTP 200 OK", the headers, an empty line, the body.
    pub fn tollgate_pay(out: &std::process::Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let raw = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let (head, body) = stdout.split_once("\n\n").unwrap_or((&stdout, ""));
        let status = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("HTTP "))
            .and_then(|l| l.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (name, value) = l.split_once(": ")?;
                Some((name.to_owned(), value.trim().to_owned()))
            })
            .collect();
        let find = |wanted: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
                .map(|(_, v)| v.clone())
        };
        let receipt = find("payment-response")
            .or_else(|| find("x-payment-response"))
            .and_then(|v| tollgate::proto::header::decode::<serde_json::Value>(&v).ok());
        Self {
            status,
            body: body.to_owned(),
            receipt,
            headers,
            payload: None,
            raw,
        }
    }

    /// The receipt from the v2 `PAYMENT-RESPONSE` header alone (for rows where a v1
    /// `X-PAYMENT-RESPONSE` must not stand in for it).
    pub fn v2_receipt_only(mut self) -> Self {
        self.receipt = self
            .header("payment-response")
            .and_then(|v| tollgate::proto::header::decode::<serde_json::Value>(v).ok());
        self
    }

    /// A response header `tollgate pay -i` printed, by name in any case.
    pub fn header(&self, wanted: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.as_str())
    }
}
