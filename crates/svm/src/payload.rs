//! The `exact` SVM payload: `{"transaction": base64 of a partially signed versioned
//! transaction}`, and its decoding into one canonical form.
//!
//! Every guard downstream (the ledger's payment identity, the duplicate check, the paywall's
//! one-delivery rule) keys on the *message* the client signed, never on the base64 text: the
//! decoder accepts only standard padded base64 whose bytes are exactly the canonical
//! serialization of the transaction it decodes to, so two strings never decode to one
//! transaction and trailing bytes never ride along.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use solana_transaction::versioned::VersionedTransaction;

use crate::reason::SvmReason;

/// The largest serialized transaction Solana accepts (its packet data size).
pub const MAX_TRANSACTION_BYTES: usize = 1232;

/// The `payload` of an `exact` payment on Solana.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactSvmPayload {
    /// Base64 of the serialized, partially signed `VersionedTransaction` (the fee payer's
    /// signature slot is left empty for the facilitator).
    pub transaction: String,
}

/// Why a payload's transaction could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not `{"transaction": "…"}`.
    #[error("payload is not {{\"transaction\": base64}}: {0}")]
    Payload(String),
    /// Not standard padded base64.
    #[error("transaction is not standard base64: {0}")]
    Base64(String),
    /// Larger than a Solana packet.
    #[error("transaction is {0} bytes, more than Solana's {MAX_TRANSACTION_BYTES}")]
    TooLarge(usize),
    /// The bytes are not a versioned transaction.
    #[error("transaction bytes do not decode: {0}")]
    Malformed(String),
    /// The bytes decode, but are not the canonical encoding of what they decode to
    /// (trailing bytes, or a non-minimal length prefix).
    #[error("transaction bytes are not the canonical encoding of the transaction")]
    NotCanonical,
    /// The transaction is structurally invalid (indices out of range, counts inconsistent).
    #[error("transaction is malformed: {0}")]
    Sanitize(String),
}

impl DecodeError {
    /// The reason code a verifier answers with.
    pub fn reason(&self) -> SvmReason {
        match self {
            Self::Payload(_) => SvmReason::InvalidPayloadTransaction,
            _ => SvmReason::TransactionCouldNotBeDecoded,
        }
    }
}

/// A decoded transaction with the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTransaction {
    /// The transaction.
    pub transaction: VersionedTransaction,
    /// Its serialized message: what every signature signs.
    pub message: Vec<u8>,
}

impl PaymentTransaction {
    /// Decodes and sanitizes the base64 of a transaction.
    pub fn from_base64(text: &str) -> Result<Self, DecodeError> {
        // Base64 of 1232 bytes is 1644 characters: refuse anything larger before decoding.
        if text.len() > MAX_TRANSACTION_BYTES.div_ceil(3) * 4 {
            return Err(DecodeError::TooLarge(text.len() / 4 * 3));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| DecodeError::Base64(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// Decodes and sanitizes a serialized transaction.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TRANSACTION_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let transaction: VersionedTransaction =
            wincode::deserialize(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let canonical =
            wincode::serialize(&transaction).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if canonical != bytes {
            return Err(DecodeError::NotCanonical);
        }
        transaction
            .sanitize()
            .map_err(|e| DecodeError::Sanitize(e.to_string()))?;
        let message = transaction.message.serialize();
        Ok(Self {
            transaction,
            message,
        })
    }

    /// Reads the transaction of a payment's `payload` object.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self, DecodeError> {
        let payload: ExactSvmPayload = serde_json::from_value(payload.clone())
            .map_err(|e| DecodeError::Payload(e.to_string()))?;
        Self::from_base64(&payload.transaction)
    }

    /// The payment's identity: SHA-256 of the signed message, hex. One message is one
    /// payment, however it was encoded or re-signed.
    pub fn message_id(&self) -> String {
        let digest = Sha256::digest(&self.message);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Base64 of the canonical serialization.
    pub fn to_base64(&self) -> String {
        let bytes = wincode::serialize(&self.transaction).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
