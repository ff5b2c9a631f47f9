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
