//! A throwaway PostgreSQL server for tests that need several processes on one database.
//!
//! [`Postgres::start`] runs Debian's PostgreSQL (`initdb` + `postgres` from
//! `/usr/lib/postgresql/<version>/bin`, or `$TOLLGATE_PG_BIN`) on a fresh data directory and a
//! free loopback port, with trust authentication, and stops it and deletes the directory on
//! drop. PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user
//! the Debian package creates.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::anvil::free_port;
use crate::TestkitError;

/// Overrides where `initdb` and `postgres` are looked for.
pub const PG_BIN_ENV: &str = "TOLLGATE_PG_BIN";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PostgreSQL server; stopped and its data deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Postgres {
    /// Initializes a new cluster in a temporary directory and starts it on a free loopback
    /// port.
    pub fn start() -> Result<Self, TestkitError> {
        let bin = find_bin()?;
        let user = run_as();
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("tollgate-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| pg_error(format!("mkdir: {e}")))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| pg_error(format!("chown data dir: {e}")))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "tollgate", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .map_err(|e| pg_error(format!("cannot run initdb: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(pg_error(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut server = Command::new(bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir)
            // A test database: durability is the chain's job here, speed is ours.
            .args(["-F", "-c", "max_connections=100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            server.uid(uid).gid(gid);
        }
        let child = server
            .spawn()
            .map_err(|e| pg_error(format!("cannot run postgres: {e}")))?;
        let mut pg = Self { child, dir, port };
        pg.wait_ready()?;
        Ok(pg)
    }

    /// The connection URL (user `tollgate`, database `postgres`, no password).
    pub fn url(&self) -> String {
        format!("postgres://tollgate@127.0.0.1:{}/postgres", self.port)
    }

    fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(pg_error(format!("postgres exited ({status}): {stderr}")));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Listening is not accepting queries yet; the log line says when it is.
                std::thread::sleep(Duration::from_millis(300));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(pg_error("postgres did not start listening in time".into()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pg_error(reason: String) -> TestkitError {
    TestkitError::Postgres(reason)
}

/// The directory holding `initdb` and `postgres`: `$TOLLGATE_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin() -> Result<PathBuf, TestkitError> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| not_installed())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(not_installed)
}

fn not_installed() -> TestkitError {
    pg_error(format!(
        "PostgreSQL is not installed: `apt-get install postgresql` (Debian), or set {PG_BIN_ENV} \
         to the directory holding initdb and postgres"
    ))
}

/// The `postgres` system user's ids when running as root (PostgreSQL refuses root).
fn run_as() -> Option<(u32, u32)> {
    // Root is uid 0, read from /proc (no libc dependency for one number).
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    if uid != 0 {
        return None;
    }
    passwd_ids(Path::new("/etc/passwd"), "postgres")
}

fn passwd_ids(passwd: &Path, user: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == user).then_some(())?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}
