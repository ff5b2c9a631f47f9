//! The `sign-in-with-x` (SIWX) extension: wallet sign-in for x402 resources (CAIP-122).
//!
//! A seller offers it in a 402 (`extensions["sign-in-with-x"]`, [`SiwxExtension`]): a
//! challenge ([`SiwxInfo`]: domain, URI, nonce, times) and the chains whose wallets may sign it
//! ([`SupportedChain`]). A buyer whose wallet already paid for the resource — or any wallet, on
//! an "auth-only" route — signs the challenge's CAIP-122 message (EIP-4361 on EVM chains,
//! Sign-In With Solana on Solana) and sends the proof ([`SiwxPayload`]) as base64 JSON in the
//! [`SIGN_IN_WITH_X`] header instead of paying.
//!
//! The shapes and the header follow the official `@x402/extensions` 2.27.0 byte for byte: the
//! payload's keys in its order (so one payload encodes to the same header in both), the
//! signature types `eip191` / `ed25519`, the hint `signatureScheme`, and the refusal codes
//! ([`reason`]). Decoding is strict: a payload with a missing required field, an unknown
//! signature type or a malformed network does not decode. The message text itself is
//! chain-specific and lives with each chain's verifier (`tollgate-evm`, `tollgate-svm`).

use http::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::discovery::LastUpdated;
use crate::Network;

/// The extension's key in `extensions`.
pub const EXTENSION: &str = "sign-in-with-x";

/// The request header carrying a [`SiwxPayload`] as base64 JSON (`SIGN-IN-WITH-X`).
pub const SIGN_IN_WITH_X: HeaderName = HeaderName::from_static("sign-in-with-x");

/// The CAIP-122 version every message carries.
pub const VERSION: &str = "1";

/// A wallet's signature algorithm, as `supportedChains[].type` and the payload's `type` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureType {
    /// EIP-191 `personal_sign` over an EIP-4361 message (EVM chains).
    #[serde(rename = "eip191")]
    Eip191,
    /// Ed25519 over a Sign-In With Solana message.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl SignatureType {
    /// The wire token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eip191 => "eip191",
            Self::Ed25519 => "ed25519",
        }
    }
}

/// A hint for the client's signing UX (`signatureScheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureScheme {
    /// An externally owned account.
    #[serde(rename = "eip191")]
    Eip191,
    /// A smart-contract wallet (EIP-1271).
    #[serde(rename = "eip1271")]
    Eip1271,
    /// A counterfactual smart-contract wallet (EIP-6492).
    #[serde(rename = "eip6492")]
    Eip6492,
    /// Sign-In With Solana.
    #[serde(rename = "siws")]
    Siws,
}

/// The challenge a seller declares (`extensions["sign-in-with-x"].info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxInfo {
    /// The seller's host (with its port when not the scheme's default), as a URL's `host`.
    pub domain: String,
    /// The full URI of the resource.
    pub uri: String,
    /// Always [`VERSION`].
    pub version: String,
    /// A fresh random nonce (32 hex characters).
    pub nonce: String,
    /// When the challenge was made (ISO 8601, `2024-01-15T10:30:00.000Z`).
    pub issued_at: String,
    /// When the challenge expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// Before when a signature is not valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// A correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// URIs the sign-in is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// Why the wallet is asked to sign, shown to its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// A chain whose wallets may sign the challenge (`supportedChains[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedChain {
    /// The CAIP-2 chain.
    pub chain_id: Network,
    /// The signature algorithm.
    #[serde(rename = "type")]
    pub signature_type: SignatureType,
    /// A hint for the client's signing UX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<SignatureScheme>,
}

/// The extension as a seller offers it in a 402.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxExtension {
    /// The challenge.
    pub info: SiwxInfo,
    /// The chains that may sign it, in the seller's order of preference.
    pub supported_chains: Vec<SupportedChain>,
    /// The JSON Schema of the payload ([`schema`]).
    #[serde(default)]
    pub schema: Value,
}

impl SiwxExtension {
    /// The extension in a 402's `extensions`, if offered; `Err` when offered but malformed.
    pub fn from_extensions(
        extensions: Option<&crate::Extensions>,
    ) -> Option<Result<Self, serde_json::Error>> {
        let value = extensions?.get(EXTENSION)?;
        Some(serde_json::from_value(value.clone()))
    }

    /// The first supported chain that is `network` signed with `signature_type` (the official
    /// client, too, takes the first entry its wallet matches).
    pub fn chain(
        &self,
        network: &Network,
        signature_type: SignatureType,
    ) -> Option<&SupportedChain> {
        self.supported_chains
            .iter()
            .find(|c| &c.chain_id == network && c.signature_type == signature_type)
    }

    /// The unsigned proof for `chain`: every challenge field echoed, `address` set, the
    /// signature still empty.
    pub fn unsigned(&self, chain: &SupportedChain, address: impl Into<String>) -> SiwxPayload {
        let info = &self.info;
        SiwxPayload {
            domain: info.domain.clone(),
            address: address.into(),
            statement: info.statement.clone(),
            uri: info.uri.clone(),
            version: info.version.clone(),
            chain_id: chain.chain_id.clone(),
            signature_type: chain.signature_type,
            nonce: info.nonce.clone(),
            issued_at: info.issued_at.clone(),
            expiration_time: info.expiration_time.clone(),
            not_before: info.not_before.clone(),
            request_id: info.request_id.clone(),
            resources: info.resources.clone(),
            signature_scheme: chain.signature_scheme,
            signature: String::new(),
        }
    }
}

/// The signed proof a client sends in the [`SIGN_IN_WITH_X`] header. Fields in the official
/// client's order, so that one payload encodes to one header in both implementations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxPayload {
    /// The challenge's domain.
    pub domain: String,
    /// The signing wallet (EIP-55 on EVM, base58 on Solana).
    pub address: String,
    /// The challenge's statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The challenge's URI.
    pub uri: String,
    /// The challenge's version.
    pub version: String,
    /// The chain the wallet signs for.
    pub chain_id: Network,
    /// The signature algorithm.
    #[serde(rename = "type")]
    pub signature_type: SignatureType,
    /// The challenge's nonce.
    pub nonce: String,
    /// The challenge's issue time.
    pub issued_at: String,
    /// The challenge's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// The challenge's not-before time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// The challenge's request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The challenge's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// The signing UX hint, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<SignatureScheme>,
    /// The signature: `0x` hex on EVM, base58 on Solana.
    pub signature: String,
}

impl SiwxPayload {
    /// The payload in its header encoding (base64 of its JSON, as the official client sends).
    pub fn encode(&self) -> String {
        crate::header::encode(self)
    }

    /// Decodes a [`SIGN_IN_WITH_X`] header value.
    pub fn decode(value: &str) -> Result<Self, crate::HeaderError> {
        crate::header::decode(value)
    }

    /// Refuses fields a signed message could be forged from: a line break (or any control
    /// character) in a field would let one set of fields spell another's message, and a nonce
    /// must be 8 to 64 ASCII letters and digits (EIP-4361).
    pub fn check_fields(&self) -> Result<(), String> {
        let mut text: Vec<(&str, &str)> = vec![
            ("domain", &self.domain),
            ("address", &self.address),
            ("uri", &self.uri),
            ("version", &self.version),
            ("nonce", &self.nonce),
            ("issuedAt", &self.issued_at),
        ];
        for (name, value) in [
            ("statement", &self.statement),
            ("expirationTime", &self.expiration_time),
            ("notBefore", &self.not_before),
            ("requestId", &self.request_id),
        ] {
            if let Some(value) = value {
                text.push((name, value));
            }
        }
        for r in self.resources.iter().flatten() {
            text.push(("resources", r));
        }
        if let Some((name, _)) = text.iter().find(|(_, v)| v.chars().any(char::is_control)) {
            return Err(format!("`{name}` contains a control character"));
        }
        if self.domain.is_empty() || self.uri.is_empty() || self.address.is_empty() {
            return Err("`domain`, `uri` and `address` must not be empty".into());
        }
        let n = self.nonce.len();
        if !(8..=64).contains(&n) || !self.nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("`nonce` must be 8 to 64 ASCII letters and digits".into());
        }
        Ok(())
    }
}

/// An ISO 8601 / RFC 3339 time of the challenge, in Unix milliseconds; `None` when malformed.
pub fn parse_time(text: &str) -> Option<u64> {
    // `LastUpdated` also reads bare Unix timestamps; a challenge's times are date-times only.
    if !text.contains('T') && !text.contains('t') {
        return None;
    }
    text.parse::<LastUpdated>().ok().map(|t| t.unix_millis())
}

/// Unix milliseconds as the official SDK writes times (`Date.toISOString()`:
/// `2024-01-15T10:30:00.000Z`).
pub fn format_time(unix_millis: u64) -> String {
    LastUpdated::from_unix_millis(unix_millis).to_string()
}

/// The payload's JSON Schema, as the official `buildSIWxSchema()` returns it.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "domain": { "type": "string" },
            "address": { "type": "string" },
            "statement": { "type": "string" },
            "uri": { "type": "string", "format": "uri" },
            "version": { "type": "string" },
            "chainId": { "type": "string" },
            "type": { "type": "string" },
            "nonce": { "type": "string" },
            "issuedAt": { "type": "string", "format": "date-time" },
            "expirationTime": { "type": "string", "format": "date-time" },
            "notBefore": { "type": "string", "format": "date-time" },
            "requestId": { "type": "string" },
            "resources": { "type": "array", "items": { "type": "string", "format": "uri" } },
            "signature": { "type": "string" }
        },
        "required": [
            "domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt",
            "signature"
        ]
    })
}

/// Why a sign-in is refused: the official codes (`SIWxValidationCode`, `SIWxVerifyCode`), and
/// Tollgate's for what the official hook leaves to the application.
pub mod reason {
    /// The header is not base64 JSON of a valid payload (Tollgate's).
    pub const INVALID_HEADER: &str = "invalid_siwx_header";
    /// A field could spell another message (a control character, a malformed nonce)
    /// (Tollgate's).
    pub const INVALID_FIELDS: &str = "invalid_siwx_fields";
    /// `domain` is not the seller's host.
    pub const DOMAIN_MISMATCH: &str = "invalid_siwx_domain_mismatch";
    /// `uri` is not on the seller's origin, or (Tollgate) not the requested resource.
    pub const URI_MISMATCH: &str = "invalid_siwx_uri_mismatch";
    /// `issuedAt` is not a date-time.
    pub const ISSUED_AT: &str = "invalid_siwx_issued_at";
    /// `issuedAt` is older than the maximum age.
    pub const ISSUED_AT_TOO_OLD: &str = "invalid_siwx_issued_at_too_old";
    /// `issuedAt` is in the future.
    pub const ISSUED_AT_IN_FUTURE: &str = "invalid_siwx_issued_at_in_future";
    /// `expirationTime` is not a date-time.
    pub const EXPIRATION_TIME: &str = "invalid_siwx_expiration_time";
    /// `expirationTime` has passed.
    pub const EXPIRED: &str = "invalid_siwx_expired";
    /// `notBefore` is not a date-time.
    pub const NOT_BEFORE: &str = "invalid_siwx_not_before";
    /// `notBefore` has not come yet.
    pub const NOT_YET_VALID: &str = "invalid_siwx_not_yet_valid";
    /// The nonce was used before (a replay).
    pub const NONCE: &str = "invalid_siwx_nonce";
    /// The signature does not verify for `address`.
    pub const SIGNATURE: &str = "invalid_siwx_signature";
    /// No verifier for the chain's namespace, or (Tollgate) a chain the seller did not offer.
    pub const UNSUPPORTED_CHAIN: &str = "invalid_siwx_unsupported_chain";
    /// `chainId` is not a valid id of its namespace.
    pub const CHAIN_ID: &str = "invalid_siwx_chain_id";
    /// The signature or address is not in the chain's encoding.
    pub const MALFORMED_SIGNATURE: &str = "invalid_siwx_malformed_signature";
    /// The verifier failed (e.g. an RPC read of a contract wallet).
    pub const VERIFIER_ERROR: &str = "invalid_siwx_verifier_error";
    /// Signed in, but this wallet has not paid for this resource (Tollgate's): pay instead.
    pub const NOT_PAID: &str = "invalid_siwx_not_paid";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload the official `createSIWxPayload` made for the spec's example challenge,
    /// signed by anvil's first key (`tests/interop`, `@x402/extensions` 2.27.0).
    const OFFICIAL_HEADER: &str = "eyJkb21haW4iOiJhcGkuZXhhbXBsZS5jb20iLCJhZGRyZXNzIjoiMHhmMzlGZDZlNTFhYWQ4OEY2RjRjZTZhQjg4MjcyNzljZmZGYjkyMjY2Iiwic3RhdGVtZW50IjoiU2lnbiBpbiB0byBhY2Nlc3MgcHJlbWl1bSBkYXRhIiwidXJpIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwidmVyc2lvbiI6IjEiLCJjaGFpbklkIjoiZWlwMTU1Ojg0NTMiLCJ0eXBlIjoiZWlwMTkxIiwibm9uY2UiOiJhMWIyYzNkNGU1ZjY3ODkwYTFiMmMzZDRlNWY2Nzg5MCIsImlzc3VlZEF0IjoiMjAyNC0wMS0xNVQxMDozMDowMC4wMDBaIiwiZXhwaXJhdGlvblRpbWUiOiIyMDI0LTAxLTE1VDEwOjM1OjAwLjAwMFoiLCJyZXNvdXJjZXMiOlsiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIl0sInNpZ25hdHVyZSI6IjB4NGMyNjFjN2FjZjE0MGQxYTEzNmEzNGQ0ODZmNTZmNzg3Y2U4YzVhMjU2MjQ4MDlmMGFhNjM4MmFhODQyYjhiNjVkYWIyOGNlYjZmOGIxZjkyYzI3MzhlMGQ1ZThjMDlhMDljMDliNjQzMmQxYzhmZDkwNGJhYzU4N2EwYjM1ZDExYyJ9";

    #[test]
    fn the_official_header_decodes_and_encodes_to_the_same_bytes() {
        let payload = SiwxPayload::decode(OFFICIAL_HEADER).unwrap();
        assert_eq!(payload.signature_type, SignatureType::Eip191);
        assert_eq!(payload.chain_id, Network::eip155(8453));
        assert_eq!(payload.encode(), OFFICIAL_HEADER);
        payload.check_fields().unwrap();
    }

    #[test]
    fn wrong_payloads_do_not_decode() {
        let mut v: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, OFFICIAL_HEADER)
                .unwrap(),
        )
        .unwrap();
        v["type"] = json!("rsa");
        assert!(SiwxPayload::decode(&crate::header::encode(&v)).is_err());
        v["type"] = json!("eip191");
        v.as_object_mut().unwrap().remove("signature");
        assert!(SiwxPayload::decode(&crate::header::encode(&v)).is_err());
        v["signature"] = json!("0x00");
        v["chainId"] = json!("8453");
        assert!(SiwxPayload::decode(&crate::header::encode(&v)).is_err());
    }

    #[test]
    fn forged_line_breaks_and_bad_nonces_are_refused() {
        let mut p = SiwxPayload::decode(OFFICIAL_HEADER).unwrap();
        p.statement = Some("hi\n\nURI: https://evil.example".into());
        assert!(p.check_fields().is_err());
        let mut p = SiwxPayload::decode(OFFICIAL_HEADER).unwrap();
        p.nonce = "short".into();
        assert!(p.check_fields().is_err());
        p.nonce = "abc-defgh".into();
        assert!(p.check_fields().is_err());
    }

    #[test]
    fn times_read_and_write_as_the_official_sdk_does() {
        let t = parse_time("2024-01-15T10:30:00.000Z").unwrap();
        assert_eq!(format_time(t), "2024-01-15T10:30:00.000Z");
        assert_eq!(parse_time("2024-01-15T12:30:00+02:00"), Some(t));
        assert_eq!(parse_time("1705314600"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn an_offer_reads_back_and_yields_the_unsigned_proof() {
        let ext = SiwxExtension {
            info: SiwxInfo {
                domain: "api.example.com".into(),
                uri: "https://api.example.com/x".into(),
                version: VERSION.into(),
                nonce: "a1b2c3d4e5f67890a1b2c3d4e5f67890".into(),
                issued_at: "2024-01-15T10:30:00.000Z".into(),
                expiration_time: None,
                not_before: None,
                request_id: None,
                resources: Some(vec!["https://api.example.com/x".into()]),
                statement: None,
            },
            supported_chains: vec![SupportedChain {
                chain_id: Network::eip155(8453),
                signature_type: SignatureType::Eip191,
                signature_scheme: None,
            }],
            schema: schema(),
        };
        let mut extensions = crate::Extensions::new();
        extensions.insert(EXTENSION.into(), serde_json::to_value(&ext).unwrap());
        let back = SiwxExtension::from_extensions(Some(&extensions))
            .unwrap()
            .unwrap();
        assert_eq!(back, ext);
        let chain = back
            .chain(&Network::eip155(8453), SignatureType::Eip191)
            .unwrap();
        let unsigned = back.unsigned(chain, "0xabc");
        assert_eq!(unsigned.nonce, ext.info.nonce);
        assert!(back
            .chain(&Network::eip155(1), SignatureType::Eip191)
            .is_none());
    }
}
