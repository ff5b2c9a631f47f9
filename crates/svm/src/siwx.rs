//! Sign-in-with-x on Solana: the Sign-In With Solana message, Ed25519 signatures, the seller's
//! [`Ed25519SiwxVerifier`] and the buyer's signer (implemented by [`ExactSvmClient`]).
//!
//! The message is the official SDK's byte for byte (`formatSIWSMessage`): the base58 address,
//! `Chain ID:` the CAIP-2 reference (the genesis hash prefix), and each optional line only when
//! its field is non-empty (unlike the EIP-4361 text, an empty `resources` list writes nothing).
//! The signature is base58 of the 64 Ed25519 bytes over the message's UTF-8; it is verified
//! strictly (a small-order public key is refused, as the official verifier refuses it).

use std::str::FromStr;

use solana_address::Address;
use solana_signature::Signature;
use solana_signer::Signer;
use tollgate_core::{BoxFuture, SiwxFault, SiwxSigner, SiwxVerifier};
use tollgate_proto::siwx::{reason, SignatureType, SiwxPayload};
use tollgate_proto::Network;

use crate::ExactSvmClient;

/// The Sign-In With Solana message the wallet signs for `payload`, as the official SDK writes
/// it.
pub fn siws_message(payload: &SiwxPayload) -> Result<String, SiwxFault> {
    if payload.chain_id.namespace() != "solana" {
        return Err(SiwxFault::new(
            reason::CHAIN_ID,
            format!("{} is not a solana chain", payload.chain_id),
        ));
    }
    let present = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let mut lines = vec![
        format!(
            "{} wants you to sign in with your Solana account:",
            payload.domain
        ),
        payload.address.clone(),
        String::new(),
    ];
    if let Some(statement) = present(&payload.statement) {
        lines.push(statement);
        lines.push(String::new());
    }
    lines.push(format!("URI: {}", payload.uri));
    lines.push(format!("Version: {}", payload.version));
    lines.push(format!("Chain ID: {}", payload.chain_id.reference()));
    lines.push(format!("Nonce: {}", payload.nonce));
    lines.push(format!("Issued At: {}", payload.issued_at));
    if let Some(t) = present(&payload.expiration_time) {
        lines.push(format!("Expiration Time: {t}"));
    }
    if let Some(t) = present(&payload.not_before) {
        lines.push(format!("Not Before: {t}"));
    }
    if let Some(id) = present(&payload.request_id) {
        lines.push(format!("Request ID: {id}"));
    }
    if let Some(resources) = payload.resources.as_ref().filter(|r| !r.is_empty()) {
        lines.push("Resources:".to_owned());
        lines.extend(resources.iter().map(|r| format!("- {r}")));
    }
    Ok(lines.join("\n"))
}

/// Verifies Ed25519 sign-ins on Solana. Register it on `solana:*` (or some Solana networks)
/// in the seller's `SiwxVerifiers`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519SiwxVerifier;

impl SiwxVerifier for Ed25519SiwxVerifier {
    fn signature_type(&self) -> SignatureType {
        SignatureType::Ed25519
    }

    /// Base58 of the 32-byte key: the only spelling of a Solana address.
    fn canonical_address(&self, address: &str) -> Result<String, String> {
        Address::from_str(address)
            .map(|a| a.to_string())
            .map_err(|e| format!("{address:?} is not a Solana address: {e}"))
    }

    fn message(&self, payload: &SiwxPayload) -> Result<String, SiwxFault> {
        siws_message(payload)
    }

    fn verify<'a>(&'a self, payload: &'a SiwxPayload) -> BoxFuture<'a, Result<String, SiwxFault>> {
        let outcome = (|| {
            let message = siws_message(payload)?;
            let malformed = |what: &str, e: &dyn std::fmt::Display| {
                SiwxFault::new(reason::MALFORMED_SIGNATURE, format!("{what}: {e}"))
            };
            let address = Address::from_str(&payload.address)
                .map_err(|e| malformed("the address is not 32 base58 bytes", &e))?;
            let signature = Signature::from_str(&payload.signature)
                .map_err(|e| malformed("the signature is not 64 base58 bytes", &e))?;
            if !signature.verify(address.as_ref(), message.as_bytes()) {
                return Err(SiwxFault::new(
                    reason::SIGNATURE,
                    format!("the signature is not {address}'s over the sign-in message"),
                ));
            }
            Ok(address.to_string())
        })();
        Box::pin(async move { outcome })
    }
}

/// The buyer's Solana wallet signs in with Ed25519 over the Sign-In With Solana message.
impl SiwxSigner for ExactSvmClient {
    fn signature_type(&self) -> SignatureType {
        SignatureType::Ed25519
    }

    fn supports(&self, network: &Network) -> bool {
        network.namespace() == "solana"
    }

    fn address(&self) -> String {
        self.keypair().pubkey().to_string()
    }

    fn sign<'a>(&'a self, unsigned: SiwxPayload) -> BoxFuture<'a, Result<SiwxPayload, SiwxFault>> {
        let outcome = (|| {
            let mut payload = unsigned;
            payload.address = SiwxSigner::address(self);
            let message = siws_message(&payload)?;
            payload.signature = self.keypair().sign_message(message.as_bytes()).to_string();
            Ok(payload)
        })();
        Box::pin(async move { outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_keypair::Keypair;

    /// `createSIWxPayload` of `@x402/extensions` 2.27.0 with a tweetnacl key from the seed
    /// `[7; 32]`, for the spec's example challenge on Solana devnet.
    const OFFICIAL: &str = r#"{"domain":"api.example.com","address":"GmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB","statement":"Sign in to access premium data","uri":"https://api.example.com/premium-data","version":"1","chainId":"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1","type":"ed25519","nonce":"a1b2c3d4e5f67890a1b2c3d4e5f67890","issuedAt":"2024-01-15T10:30:00.000Z","expirationTime":"2024-01-15T10:35:00.000Z","resources":["https://api.example.com/premium-data"],"signature":"1KhUhYr8WpVQKHGpaUvGJhbajxhPPDdYqbEGZmQGFiKbPxKDrdVGagBbKnMt9Ana2XeoiarCjNkM7mHs3aFyMis"}"#;
    /// `formatSIWSMessage` of the same.
    const OFFICIAL_MESSAGE: &str = "api.example.com wants you to sign in with your Solana account:\nGmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB\n\nSign in to access premium data\n\nURI: https://api.example.com/premium-data\nVersion: 1\nChain ID: EtWTRABZaYq6iMfeYKouRu166VU2xqa1\nNonce: a1b2c3d4e5f67890a1b2c3d4e5f67890\nIssued At: 2024-01-15T10:30:00.000Z\nExpiration Time: 2024-01-15T10:35:00.000Z\nResources:\n- https://api.example.com/premium-data";

    fn payload() -> SiwxPayload {
        serde_json::from_str(OFFICIAL).unwrap()
    }

    #[test]
    fn the_message_matches_the_official_sdk_byte_for_byte() {
        assert_eq!(siws_message(&payload()).unwrap(), OFFICIAL_MESSAGE);
        let mut bare = payload();
        bare.statement = Some(String::new());
        bare.resources = Some(Vec::new());
        bare.expiration_time = None;
        assert_eq!(
            siws_message(&bare).unwrap(),
            "api.example.com wants you to sign in with your Solana account:\nGmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB\n\nURI: https://api.example.com/premium-data\nVersion: 1\nChain ID: EtWTRABZaYq6iMfeYKouRu166VU2xqa1\nNonce: a1b2c3d4e5f67890a1b2c3d4e5f67890\nIssued At: 2024-01-15T10:30:00.000Z"
        );
    }

    #[tokio::test]
    async fn official_signatures_verify_and_tollgate_signs_the_same() {
        let v = Ed25519SiwxVerifier;
        assert_eq!(
            v.verify(&payload()).await.unwrap(),
            "GmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB"
        );
        let mut tampered = payload();
        tampered.nonce = "b1b2c3d4e5f67890a1b2c3d4e5f67890".into();
        assert_eq!(
            v.verify(&tampered).await.unwrap_err().reason,
            reason::SIGNATURE
        );
        let mut garbled = payload();
        garbled.signature = "0xdeadbeef".into();
        assert_eq!(
            v.verify(&garbled).await.unwrap_err().reason,
            reason::MALFORMED_SIGNATURE
        );
        // A small-order public key (the identity point) never verifies.
        let mut weak = payload();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        weak.address = Address::from(identity).to_string();
        assert!(v.verify(&weak).await.is_err());

        // Ed25519 is deterministic: the same key signs the same bytes.
        let client = ExactSvmClient::new(Keypair::new_from_array([7; 32]), "http://127.0.0.1:1");
        let mut unsigned = payload();
        unsigned.signature.clear();
        unsigned.address.clear();
        assert_eq!(
            SiwxSigner::sign(&client, unsigned).await.unwrap(),
            payload()
        );
    }
}
