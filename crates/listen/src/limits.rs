//! The listener's configuration: one small TOML table, the same for every Tollgate server.

use serde::Deserialize;

/// Connection limits of a listener (`[limits]` in `tollgate proxy`'s file, `[server.limits]` in
/// `tollgate facilitator`'s).
///
/// Every field has a default that is safe on the open internet, so the table can be left out.
/// Unknown keys are errors, like everywhere else in Tollgate's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most connections served at once. A new connection beyond it closes the connection that
    /// has been idle (or stuck sending its request head) the longest; when every connection is
    /// busy with a request, the new one gets `503` at once instead of waiting in the kernel's
    /// backlog. Default 1024: each proxied connection can hold two file descriptors (the
    /// client's and one to the upstream), so 1024 connections stay far below the usual hard
    /// limit and within a soft limit the listener raises at start-up when it can (it lowers the
    /// cap, with a warning, when it cannot).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a complete request head (request line and headers), counted
    /// from the connection's accept for its first request and from the first byte for later
    /// ones. Stops slowloris: connections holding half a header are closed. Also the longest a
    /// request body may stop arriving while the server waits for it. Default 10.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait, with no request in flight, for its next
    /// request before it is closed. Default 60.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`Limits::header_read_timeout_secs`].
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default [`Limits::idle_timeout_secs`].
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_header_read_timeout() -> u64 {
    DEFAULT_HEADER_READ_TIMEOUT_SECS
}
fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT_SECS
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
        }
    }
}

/// A limit that cannot work. `key` is the field's name inside the table; the caller prefixes it
/// with the table's place in its file (e.g. `server.limits.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{key}`: {reason}")]
pub struct InvalidLimit {
    /// The field, e.g. `max_connections`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Largest accepted timeout: a day. Anything longer is a typo (milliseconds given as seconds),
/// and would hold resources as if there were no timeout.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

impl Limits {
    /// Refuses values that would disable a protection: zero (a cap of nothing, a timeout that
    /// closes every connection at once) or absurdly large ones.
    pub fn validate(&self) -> Result<(), InvalidLimit> {
        if self.max_connections == 0 {
            return Err(InvalidLimit {
                key: "max_connections",
                reason: "must be at least 1",
            });
        }
        if self.max_connections > 1_000_000 {
            return Err(InvalidLimit {
                key: "max_connections",
                reason: "must be at most 1000000",
            });
        }
        for (key, value) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if value == 0 {
                return Err(InvalidLimit {
                    key,
                    reason: "must be positive (it is a number of seconds)",
                });
            }
            if value > MAX_TIMEOUT_SECS {
                return Err(InvalidLimit {
                    key,
                    reason: "must be at most 86400 seconds (one day)",
                });
            }
        }
        Ok(())
    }

    /// [`header_read_timeout_secs`](Self::header_read_timeout_secs) as a duration.
    pub fn header_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_read_timeout_secs)
    }

    /// [`idle_timeout_secs`](Self::idle_timeout_secs) as a duration.
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idle_timeout_secs)
    }
}

/// Descriptors kept free for everything that is not a client connection (the ledger, RPC and
/// upstream pools, the runtime's own).
const FD_RESERVE: u64 = 64;

/// Makes room for `wanted` connections (plus `lingering` refused ones being answered) in the
/// process's file-descriptor limit: raises the soft limit towards the hard one when needed, and
/// when even that is not enough, returns a lower cap so the listener refuses connections with a
/// `503` instead of failing `accept` with `EMFILE` (which leaves every client hanging).
pub(crate) fn fit_fd_limit(wanted: usize, lingering: usize) -> usize {
    let need = |conns: u64| conns * 2 + lingering as u64 + FD_RESERVE;
    let Some((soft, hard)) = nofile_limit() else {
        return wanted;
    };
    let wanted_fds = need(wanted as u64);
    if soft >= wanted_fds {
        return wanted;
    }
    let target = wanted_fds.min(hard);
    let soft = if target > soft && raise_nofile(target, hard) {
        tracing::info!(from = soft, to = target, "raised the open-file soft limit");
        target
    } else {
        soft
    };
    if soft >= wanted_fds {
        return wanted;
    }
    let fitting = (soft.saturating_sub(lingering as u64 + FD_RESERVE) / 2).max(1);
    let fitting = usize::try_from(fitting).unwrap_or(wanted).min(wanted);
    tracing::warn!(
        max_connections = wanted,
        open_file_limit = soft,
        serving_at_most = fitting,
        "the open-file limit is too low for max_connections; raise it (ulimit -n) or lower max_connections"
    );
    fitting
}

/// The process's `RLIMIT_NOFILE` (soft, hard).
#[allow(unsafe_code)]
fn nofile_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and pass by pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some((limit.rlim_cur, limit.rlim_max))
}

#[allow(unsafe_code)]
fn raise_nofile(soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own and pass by pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        limits: Limits,
    }

    #[test]
    fn defaults_apply_to_a_missing_table_and_to_missing_keys() {
        let file: File = toml::from_str("").unwrap();
        assert_eq!(file.limits, Limits::default());
        assert_eq!(file.limits.max_connections, 1024);
        assert_eq!(file.limits.header_read_timeout_secs, 10);
        assert_eq!(file.limits.idle_timeout_secs, 60);
        let file: File = toml::from_str("[limits]\nmax_connections = 50\n").unwrap();
        assert_eq!(file.limits.max_connections, 50);
        assert_eq!(file.limits.idle_timeout_secs, 60);
        file.limits.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_zero_values_are_refused_naming_the_key() {
        let err = toml::from_str::<File>("[limits]\nmax_conections = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
        for key in [
            "max_connections",
            "header_read_timeout_secs",
            "idle_timeout_secs",
        ] {
            let file: File = toml::from_str(&format!("[limits]\n{key} = 0\n")).unwrap();
            let err = file.limits.validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().contains(key), "{err}");
        }
        let file: File = toml::from_str("[limits]\nidle_timeout_secs = 600000\n").unwrap();
        assert_eq!(file.limits.validate().unwrap_err().key, "idle_timeout_secs");
    }

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        let (soft, _) = nofile_limit().unwrap();
        // A cap the current limit allows is kept as it is.
        assert_eq!(fit_fd_limit(1, 1), 1);
        // One that no limit on this machine allows is lowered so that accept never hits EMFILE.
        let huge = usize::try_from(soft).unwrap() * 1000;
        let fitted = fit_fd_limit(huge, 8);
        assert!(fitted < huge);
        let (soft_after, _) = nofile_limit().unwrap();
        assert!(fitted as u64 * 2 + 8 + FD_RESERVE <= soft_after);
    }
}
