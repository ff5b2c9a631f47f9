//! Solana keys from the environment or a file, in the two forms Solana tools write: the
//! Solana CLI's JSON array of 64 bytes (`id.json`), or base58 of those 64 bytes (what wallets
//! export). The key text never appears in an error, a log or `Debug`.

use std::path::Path;

use solana_keypair::Keypair;
use solana_signer::Signer;

/// Why a key could not be loaded. Says where it looked and what shape it expected, never the
/// key text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file cannot be read.
    #[error("key file {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The text is neither form.
    #[error("{source_name} does not hold a Solana keypair: expected a JSON array of 64 bytes (solana-keygen's file) or base58 of 64 bytes")]
    Malformed {
        /// The variable or file named.
        source_name: String,
    },
    /// The 64 bytes' public half does not belong to their secret half.
    #[error("{source_name}: the keypair's public key does not match its secret key")]
    Inconsistent {
        /// The variable or file named.
        source_name: String,
    },
}

/// Reads a keypair from the environment variable `name`.
pub fn keypair_from_env(name: &str) -> Result<Keypair, KeyError> {
    let text = std::env::var(name).map_err(|_| KeyError::MissingEnv(name.to_owned()))?;
    parse_keypair(&text, name)
}

/// Reads a keypair from the file at `path`.
pub fn keypair_from_file(path: &Path) -> Result<Keypair, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_keypair(&text, &path.display().to_string())
}

/// Parses a keypair's text; `source_name` says where it came from in errors.
pub fn parse_keypair(text: &str, source_name: &str) -> Result<Keypair, KeyError> {
    let malformed = || KeyError::Malformed {
        source_name: source_name.to_owned(),
    };
    let text = text.trim();
    let bytes: zeroize::Zeroizing<Vec<u8>> = if text.starts_with('[') {
        zeroize::Zeroizing::new(serde_json::from_str::<Vec<u8>>(text).map_err(|_| malformed())?)
    } else {
        let keypair = Keypair::try_from_base58_string(text).map_err(|_| malformed())?;
        zeroize::Zeroizing::new(keypair.to_bytes().to_vec())
    };
    if bytes.len() != 64 {
        return Err(malformed());
    }
    let keypair = Keypair::try_from(&bytes[..]).map_err(|_| KeyError::Inconsistent {
        source_name: source_name.to_owned(),
    })?;
    // `try_from` trusts the public half; check it against the secret.
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let derived = Keypair::new_from_array(seed);
    seed.fill(0);
    if derived.pubkey() != keypair.pubkey() {
        return Err(KeyError::Inconsistent {
            source_name: source_name.to_owned(),
        });
    }
    Ok(derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_load_and_errors_never_echo_the_key() {
        let keypair = Keypair::new_from_array([7; 32]);
        let json = serde_json::to_string(&keypair.to_bytes().to_vec()).unwrap();
        let b58 = keypair.to_base58_string();
        assert_eq!(
            parse_keypair(&json, "k").unwrap().pubkey(),
            keypair.pubkey()
        );
        assert_eq!(
            parse_keypair(&format!(" {b58}\n"), "k").unwrap().pubkey(),
            keypair.pubkey()
        );
        let truncated = &b58[..b58.len() - 4];
        let e = parse_keypair(truncated, "FEE_PAYER_KEY").unwrap_err();
        assert!(!e.to_string().contains(truncated), "{e}");
        assert!(e.to_string().contains("FEE_PAYER_KEY"));
        // A public half that is not the secret's.
        let mut bytes = keypair.to_bytes();
        bytes[40] ^= 1;
        let forged = serde_json::to_string(&bytes.to_vec()).unwrap();
        assert!(matches!(
            parse_keypair(&forged, "k"),
            Err(KeyError::Inconsistent { .. }) | Err(KeyError::Malformed { .. })
        ));
        assert_eq!(
            keypair_from_env("TOLLGATE_SVM_TEST_UNSET_KEY_VAR").unwrap_err(),
            KeyError::MissingEnv("TOLLGATE_SVM_TEST_UNSET_KEY_VAR".into())
        );
    }
}
