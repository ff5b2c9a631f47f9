//! Shared by the CLI's integration tests: running `tollgate facilitator` as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running facilitator process, killed (SIGKILL) and reaped when dropped.
pub struct Running(Child);

impl Running {
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

/// Starts `tollgate facilitator --config <config>` with `env`, and waits until it listens;
/// returns the process and its base URL.
pub fn start_facilitator(config: &std::path::Path, env: &[(&str, &str)]) -> (Running, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .args(["facilitator", "--config"])
        .arg(config)
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut running = Running(command.spawn().unwrap());
    let mut stderr = BufReader::new(running.0.stderr.take().expect("stderr is piped"));
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("facilitator exited before listening");
        }
        if let Some(addr) = line
            .trim()
            .strip_prefix("tollgate facilitator listening on ")
        {
            let addr = addr.to_owned();
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in stderr.lines() {});
            return (running, addr);
        }
    }
}
