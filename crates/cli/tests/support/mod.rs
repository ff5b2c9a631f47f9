//! Shared by the CLI's integration tests: running `tollgate` roles as child processes.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

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
