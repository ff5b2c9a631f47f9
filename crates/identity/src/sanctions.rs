//! A local sanctions list: addresses from a file, reloaded when the file changes.
//!
//! # File format
//!
//! UTF-8 text, one address per line. Everything after a `#` is a comment; blank lines are
//! ignored; surrounding whitespace is trimmed.
//!
//! - A line starting with `0x` is an **EVM address**: exactly 40 hex digits, compared as its
//!   20-byte value (so checksummed, lower- and upper-case spellings are one address). A
//!   malformed one makes the whole file invalid — a typo must not silently unlist someone.
//! - Any other line is an address of another chain, compared **verbatim** (case-sensitive:
//!   base58 and bech32 spellings are not case-insensitive in general).
//!
//! ```text
//! # OFAC SDN digital-currency addresses, ETH (exported 2026-01-05)
//! 0x8589427373D6D84E98730D7795D8f6f8731FDA16
//! 0x722122dF12D4e14e13Ac3b6895a86e84145b6967   # Tornado Cash router
//! bc1qsanctionedexampleaddress000000000000      # a bitcoin address, verbatim
//! ```
//!
//! # Reloading
//!
//! The file's modification time and length are checked on use, at most once per
//! [`SanctionsList::with_recheck_interval`] (1 s by default), and the file is re-read when
//! either changed. A file that cannot be read or parsed fails closed: the lookup is a
//! [`ProviderError`] (the gate answers 503) until the file is fixed, rather than serving on a
//! stale or empty list. Size is bounded ([`MAX_FILE_BYTES`], [`MAX_ENTRIES`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use alloy_primitives::Address;
use tokio::sync::Mutex;
use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, Subject,
};
use tollgate_core::BoxFuture;

use crate::evaluate::{evaluate, Facts};

/// The largest sanctions file read (OFAC's full digital-currency list is a few hundred KiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most addresses a sanctions file may hold.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Why a sanctions file could not be (re)loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanctionsError {
    /// Reading the file (or its metadata) failed.
    #[error("sanctions list {path}: cannot read: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("sanctions list {path}: {bytes} bytes, more than the {MAX_FILE_BYTES} allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The file holds more than [`MAX_ENTRIES`] addresses.
    #[error("sanctions list {path}: more than {MAX_ENTRIES} addresses")]
    TooMany {
        /// The file.
        path: PathBuf,
    },
    /// A line is not an address.
    #[error("sanctions list {path}, line {line}: {reason}")]
    InvalidLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The parsed addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Entries {
    evm: HashSet<Address>,
    other: HashSet<String>,
}

impl Entries {
    fn len(&self) -> usize {
        self.evm.len() + self.other.len()
    }

    fn contains(&self, address: &str) -> bool {
        let address = address.trim();
        match parse_evm(address) {
            Some(Ok(a)) => self.evm.contains(&a),
            // Not a well-formed EVM address: only a verbatim entry can match it.
            _ => self.other.contains(address),
        }
    }
}

/// `Some(Ok)` for a well-formed `0x` address, `Some(Err)` for a malformed one, `None` when the
/// text does not claim to be an EVM address.
fn parse_evm(text: &str) -> Option<Result<Address, String>> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Err(format!(
            "{text:?} starts with 0x but is not 40 hex digits"
        )));
    }
    let mut bytes = [0u8; 20];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        bytes[i] = digit(chunk[0]) << 4 | digit(chunk[1]);
    }
    Some(Ok(Address::from(bytes)))
}

fn parse(path: &Path, text: &str) -> Result<Entries, SanctionsError> {
    let mut entries = Entries::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_evm(line) {
            Some(Ok(a)) => {
                entries.evm.insert(a);
            }
            Some(Err(reason)) => {
                return Err(SanctionsError::InvalidLine {
                    path: path.to_owned(),
                    line: i + 1,
                    reason,
                })
            }
            None => {
                if line.chars().any(char::is_whitespace) {
                    return Err(SanctionsError::InvalidLine {
                        path: path.to_owned(),
                        line: i + 1,
                        reason: "an address cannot contain whitespace".into(),
                    });
                }
                entries.other.insert(line.to_owned());
            }
        }
        if entries.len() > MAX_ENTRIES {
            return Err(SanctionsError::TooMany {
                path: path.to_owned(),
            });
        }
    }
    Ok(entries)
}

/// What identifies a version of the file.
type Stamp = (Option<SystemTime>, u64);

struct State {
    entries: Entries,
    stamp: Stamp,
    checked_at: Instant,
}

/// A sanctions list loaded from a file (one address per line, `#` comments; EVM addresses
/// compared as 20-byte values, others verbatim; the format in full is in the crate README), and an
/// [`IdentityProvider`] that evaluates `require_sanctions_clear` from it. It knows nothing
/// else, so every other rule a policy sets fails closed ("this provider does not know …");
/// combine it with other providers with [`All`](crate::All).
pub struct SanctionsList {
    path: PathBuf,
    recheck: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for SanctionsList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SanctionsList")
            .field("path", &self.path)
            .field("recheck", &self.recheck)
            .finish_non_exhaustive()
    }
}

async fn stamp(path: &Path) -> Result<Stamp, SanctionsError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| SanctionsError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(SanctionsError::TooLarge {
            path: path.to_owned(),
            bytes: meta.len(),
        });
    }
    Ok((meta.modified().ok(), meta.len()))
}

async fn read(path: &Path) -> Result<Entries, SanctionsError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| SanctionsError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(SanctionsError::TooLarge {
            path: path.to_owned(),
            bytes: bytes.len() as u64,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SanctionsError::Io {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })?;
    parse(path, &text)
}

impl SanctionsList {
    /// Loads the list at `path`; an unreadable or malformed file is an error (refuse to start
    /// rather than serve without the list).
    pub async fn load(path: impl Into<PathBuf>) -> Result<Self, SanctionsError> {
        let path = path.into();
        let stamp = stamp(&path).await?;
        let entries = read(&path).await?;
        tracing::info!(path = %path.display(), addresses = entries.len(), "sanctions list loaded");
        Ok(Self {
            path,
            recheck: Duration::from_secs(1),
            state: Mutex::new(State {
                entries,
                stamp,
                checked_at: Instant::now(),
            }),
        })
    }

    /// Checks the file for changes at most once per `interval` (0: on every lookup).
    pub fn with_recheck_interval(mut self, interval: Duration) -> Self {
        self.recheck = interval;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Addresses in the list as last loaded.
    pub async fn len(&self) -> usize {
        self.state.lock().await.entries.len()
    }

    /// Whether the list as last loaded is empty.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Whether `address` is listed, after reloading the file if it changed. An error when the
    /// changed file cannot be read or parsed (fail closed).
    pub async fn is_sanctioned(&self, address: &str) -> Result<bool, SanctionsError> {
        let mut state = self.state.lock().await;
        if state.checked_at.elapsed() >= self.recheck {
            let now = stamp(&self.path).await?;
            if now != state.stamp {
                let entries = read(&self.path).await.inspect_err(|e| {
                    tracing::error!(error = %e, "sanctions list changed but cannot be loaded; refusing lookups until fixed");
                })?;
                tracing::info!(path = %self.path.display(), addresses = entries.len(), "sanctions list reloaded");
                state.entries = entries;
                state.stamp = now;
            }
            state.checked_at = Instant::now();
        }
        Ok(state.entries.contains(address))
    }
}

impl IdentityProvider for SanctionsList {
    fn name(&self) -> &str {
        "sanctions-list"
    }

    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a IdentityPolicy,
    ) -> BoxFuture<'a, Result<Assessment, ProviderError>> {
        Box::pin(async move {
            let sanctioned = if policy.require_sanctions_clear {
                Some(
                    self.is_sanctioned(&subject.payer)
                        .await
                        .map_err(|e| ProviderError {
                            provider: self.name().into(),
                            reason: e.to_string(),
                        })?,
                )
            } else {
                None
            };
            Ok(evaluate(
                policy,
                &Facts {
                    sanctioned,
                    ..Facts::default()
                },
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTED: &str = "0x8589427373D6D84E98730D7795D8f6f8731FDA16";

    #[test]
    fn parses_comments_case_and_other_chains() {
        let text = format!(
            "# header\n\n  {LISTED}  # trailing comment\nbc1qExample\n0X722122DF12D4E14E13AC3B6895A86E84145B6967\n"
        );
        let e = parse(Path::new("f"), &text).unwrap();
        assert_eq!(e.len(), 3);
        assert!(e.contains(&LISTED.to_ascii_lowercase()));
        assert!(e.contains(&LISTED.to_ascii_uppercase().replacen("0X", "0x", 1)));
        assert!(e.contains("0x722122df12d4e14e13ac3b6895a86e84145b6967"));
        assert!(e.contains("bc1qExample"));
        assert!(!e.contains("bc1qexample"), "non-EVM addresses are verbatim");
        assert!(!e.contains("0x0000000000000000000000000000000000000001"));
        assert!(!e.contains(""));
    }

    #[test]
    fn a_malformed_evm_line_is_refused_with_its_line_number() {
        let err = parse(Path::new("f"), "# ok\n0x1234\n").unwrap_err();
        assert!(
            matches!(err, SanctionsError::InvalidLine { line: 2, .. }),
            "{err}"
        );
        let err = parse(Path::new("f"), "two words\n").unwrap_err();
        assert!(matches!(err, SanctionsError::InvalidLine { line: 1, .. }));
    }

    #[tokio::test]
    async fn reloads_when_the_file_changes_and_fails_closed_when_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sdn.txt");
        std::fs::write(&path, format!("{LISTED}\n")).unwrap();
        let list = SanctionsList::load(&path)
            .await
            .unwrap()
            .with_recheck_interval(Duration::ZERO);
        let other = "0x0000000000000000000000000000000000000bad";
        assert!(list.is_sanctioned(LISTED).await.unwrap());
        assert!(!list.is_sanctioned(other).await.unwrap());

        // A longer file: the length differs even if the clock's granularity hides the mtime.
        std::fs::write(&path, format!("# updated\n{other}\n")).unwrap();
        assert!(list.is_sanctioned(other).await.unwrap());
        assert!(!list.is_sanctioned(LISTED).await.unwrap());

        std::fs::write(&path, "0xnot-an-address\n").unwrap();
        assert!(matches!(
            list.is_sanctioned(other).await,
            Err(SanctionsError::InvalidLine { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            list.is_sanctioned(other).await,
            Err(SanctionsError::Io { .. })
        ));
    }

    #[tokio::test]
    async fn recheck_interval_bounds_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sdn.txt");
        std::fs::write(&path, "").unwrap();
        let list = SanctionsList::load(&path)
            .await
            .unwrap()
            .with_recheck_interval(Duration::from_secs(3600));
        std::fs::write(&path, format!("{LISTED}\n")).unwrap();
        // Within the interval the file is not looked at again.
        assert!(!list.is_sanctioned(LISTED).await.unwrap());
    }

    #[tokio::test]
    async fn as_a_provider_it_fails_closed_on_rules_it_cannot_evaluate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sdn.txt");
        std::fs::write(&path, format!("{LISTED}\n")).unwrap();
        let list = SanctionsList::load(&path).await.unwrap();
        let subject = |payer: &str| Subject {
            payer: payer.into(),
            network: tollgate_proto::Network::eip155(8453),
            operator_token: None,
        };
        let policy = IdentityPolicy {
            require_sanctions_clear: true,
            ..Default::default()
        };
        let a = list.assess(&subject(LISTED), &policy).await.unwrap();
        assert!(!a.allowed);
        let clean = "0x0000000000000000000000000000000000000001";
        assert!(list.assess(&subject(clean), &policy).await.unwrap().allowed);
        let kyc = IdentityPolicy {
            require_kyc: true,
            ..policy
        };
        let a = list.assess(&subject(clean), &kyc).await.unwrap();
        assert!(!a.allowed);
        let failed = a.checks.iter().find(|c| !c.passed).unwrap();
        assert_eq!(failed.rule, "require_kyc");
        assert!(failed.reason.as_deref().unwrap().contains("does not know"));
    }
}
