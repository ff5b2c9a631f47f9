//! Sign-in-with-x on EVM chains: the EIP-4361 (Sign-In With Ethereum) message, EIP-191
//! signatures, the seller's [`Eip191SiwxVerifier`] and the buyer's signer (implemented by
//! [`ExactEvmClient`]).
//!
//! The message is the official SDK's byte for byte (`formatSIWEMessage`, i.e.
//! `@signinwithethereum/siwe`'s `prepareMessage`): the address in EIP-55 form, the numeric
//! chain id, a statement line only when there is one (an absent statement leaves two blank
//! lines, as the library writes it), and the optional lines in the library's order. The unit
//! tests check it, and a signature, against vectors the official package produced.
//!
//! Verification recovers the EIP-191 signer, as the official server does by default (viem's
//! `verifyMessage`, without a contract-wallet verifier): contract wallets (EIP-1271/6492) are
//! not signed in.

use alloy::primitives::{eip191_hash_message, Address};
use alloy::signers::Signer;
use tollgate_core::{BoxFuture, SiwxFault, SiwxSigner, SiwxVerifier};
use tollgate_proto::siwx::{reason, SignatureType, SiwxPayload};
use tollgate_proto::Network;

use crate::ExactEvmClient;

/// The address's EIP-55 form, accepting an all-lower or all-upper spelling (EIP-4361 reads
/// those as unchecksummed) and refusing a mixed-case one whose checksum is wrong.
pub fn checksummed(address: &str) -> Result<Address, String> {
    let parsed: Address = address
        .parse()
        .map_err(|e| format!("{address:?} is not an EVM address: {e}"))?;
    let hex = address.strip_prefix("0x").unwrap_or(address);
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && parsed.to_checksum(None) != address {
        return Err(format!("{address:?} has an invalid EIP-55 checksum"));
    }
    Ok(parsed)
}

/// The EIP-4361 message the wallet signs for `payload`, as the official SDK writes it.
pub fn siwe_message(payload: &SiwxPayload) -> Result<String, SiwxFault> {
    let chain_id = payload.chain_id.eip155_chain_id().ok_or_else(|| {
        SiwxFault::new(
            reason::CHAIN_ID,
            format!("{} is not eip155:<number>", payload.chain_id),
        )
    })?;
    let address = checksummed(&payload.address)
        .map_err(|e| SiwxFault::new(reason::MALFORMED_SIGNATURE, e))?;
    let mut head = format!(
        "{} wants you to sign in with your Ethereum account:\n{}",
        payload.domain,
        address.to_checksum(None)
    );
    match &payload.statement {
        None => head.push_str("\n\n"),
        Some(statement) => {
            head.push_str("\n\n");
            head.push_str(statement);
            head.push('\n');
        }
    }
    let mut body = vec![
        format!("URI: {}", payload.uri),
        format!("Version: {}", payload.version),
        format!("Chain ID: {chain_id}"),
        format!("Nonce: {}", payload.nonce),
    ];
    if !payload.issued_at.is_empty() {
        body.push(format!("Issued At: {}", payload.issued_at));
    }
    if let Some(t) = payload.expiration_time.as_deref().filter(|t| !t.is_empty()) {
        body.push(format!("Expiration Time: {t}"));
    }
    if let Some(t) = payload.not_before.as_deref().filter(|t| !t.is_empty()) {
        body.push(format!("Not Before: {t}"));
    }
    if let Some(id) = &payload.request_id {
        body.push(format!("Request ID: {id}"));
    }
    if let Some(resources) = &payload.resources {
        let mut lines = vec!["Resources:".to_owned()];
        lines.extend(resources.iter().map(|r| format!("- {r}")));
        body.push(lines.join("\n"));
    }
    Ok(format!("{head}\n{}", body.join("\n")))
}

/// Verifies EIP-191 sign-ins of externally owned accounts on EVM chains. Register it on
/// `eip155:*` (or some EVM networks) in the seller's `SiwxVerifiers`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Eip191SiwxVerifier;

impl SiwxVerifier for Eip191SiwxVerifier {
    fn signature_type(&self) -> SignatureType {
        SignatureType::Eip191
    }

    /// Lower-case `0x` hex: one key for every spelling of an address.
    fn canonical_address(&self, address: &str) -> Result<String, String> {
        let parsed: Address = address
            .parse()
            .map_err(|e| format!("{address:?} is not an EVM address: {e}"))?;
        Ok(format!("{parsed:#x}"))
    }

    fn message(&self, payload: &SiwxPayload) -> Result<String, SiwxFault> {
        siwe_message(payload)
    }

    fn verify<'a>(&'a self, payload: &'a SiwxPayload) -> BoxFuture<'a, Result<String, SiwxFault>> {
        let outcome = (|| {
            let message = siwe_message(payload)?;
            let claimed = checksummed(&payload.address)
                .map_err(|e| SiwxFault::new(reason::MALFORMED_SIGNATURE, e))?;
            let hex = payload.signature.strip_prefix("0x").ok_or_else(|| {
                SiwxFault::new(reason::MALFORMED_SIGNATURE, "the signature is not 0x hex")
            })?;
            let bytes = alloy::primitives::hex::decode(hex)
                .map_err(|e| SiwxFault::new(reason::MALFORMED_SIGNATURE, e.to_string()))?;
            let signature = crate::signature::parse_ecdsa(&bytes)
                .map_err(|e| SiwxFault::new(reason::MALFORMED_SIGNATURE, e))?;
            let digest = eip191_hash_message(message.as_bytes());
            match crate::signature::recover_signer(&signature, &digest) {
                Some(signer) if signer == claimed => Ok(format!("{claimed:#x}")),
                _ => Err(SiwxFault::new(
                    reason::SIGNATURE,
                    format!("the signature is not {claimed}'s over the sign-in message"),
                )),
            }
        })();
        Box::pin(async move { outcome })
    }
}

/// The buyer's EVM wallet signs in with EIP-191 over the EIP-4361 message.
impl<S> SiwxSigner for ExactEvmClient<S>
where
    S: Signer + Send + Sync + 'static,
{
    fn signature_type(&self) -> SignatureType {
        SignatureType::Eip191
    }

    fn supports(&self, network: &Network) -> bool {
        network.eip155_chain_id().is_some()
    }

    fn address(&self) -> String {
        ExactEvmClient::address(self).to_checksum(None)
    }

    fn sign<'a>(&'a self, unsigned: SiwxPayload) -> BoxFuture<'a, Result<SiwxPayload, SiwxFault>> {
        Box::pin(async move {
            let mut payload = unsigned;
            payload.address = SiwxSigner::address(self);
            let message = siwe_message(&payload)?;
            let signature = self
                .alloy_signer()
                .sign_message(message.as_bytes())
                .await
                .map_err(|e| {
                    SiwxFault::new(reason::SIGNATURE, format!("the wallet did not sign: {e}"))
                })?;
            payload.signature =
                format!("0x{}", alloy::primitives::hex::encode(signature.as_bytes()));
            Ok(payload)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;

    /// Anvil's first key, which signed the official vectors below.
    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    /// `createSIWxPayload` of `@x402/extensions` 2.27.0 for the spec's example challenge.
    const FULL: &str = r#"{"domain":"api.example.com","address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","statement":"Sign in to access premium data","uri":"https://api.example.com/premium-data","version":"1","chainId":"eip155:8453","type":"eip191","nonce":"a1b2c3d4e5f67890a1b2c3d4e5f67890","issuedAt":"2024-01-15T10:30:00.000Z","expirationTime":"2024-01-15T10:35:00.000Z","resources":["https://api.example.com/premium-data"],"signature":"0x4c261c7acf140d1a136a34d486f56f787ce8c5a25624809f0aa6382aa842b8b65dab28ceb6f8b1f92c2738e0d5e8c09a09c09b6432d1c8fd904bac587a0b35d11c"}"#;
    /// `formatSIWEMessage` of the same.
    const FULL_MESSAGE: &str = "api.example.com wants you to sign in with your Ethereum account:\n0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nSign in to access premium data\n\nURI: https://api.example.com/premium-data\nVersion: 1\nChain ID: 8453\nNonce: a1b2c3d4e5f67890a1b2c3d4e5f67890\nIssued At: 2024-01-15T10:30:00.000Z\nExpiration Time: 2024-01-15T10:35:00.000Z\nResources:\n- https://api.example.com/premium-data";
    /// No statement, no resources, a port, a query, `notBefore` and `requestId`.
    const BARE: &str = r#"{"domain":"127.0.0.1:8080","address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","uri":"http://127.0.0.1:8080/x?a=1","version":"1","chainId":"eip155:31337","type":"eip191","nonce":"0123456789abcdef0123456789abcdef","issuedAt":"2024-01-15T10:30:00.000Z","notBefore":"2024-01-15T10:30:00.000Z","requestId":"r1","signature":"0x2902a1eac83b2ae16581cfd24d4af285d509597a53fc5cf55c5904e6355545515f53cac4b00aad2557a33c74ffffcafa62ae616f5045d98008b83cb6bbb80fb61c"}"#;
    const BARE_MESSAGE: &str = "127.0.0.1:8080 wants you to sign in with your Ethereum account:\n0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\n\nURI: http://127.0.0.1:8080/x?a=1\nVersion: 1\nChain ID: 31337\nNonce: 0123456789abcdef0123456789abcdef\nIssued At: 2024-01-15T10:30:00.000Z\nNot Before: 2024-01-15T10:30:00.000Z\nRequest ID: r1";

    fn payload(json: &str) -> SiwxPayload {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn messages_match_the_official_sdk_byte_for_byte() {
        assert_eq!(siwe_message(&payload(FULL)).unwrap(), FULL_MESSAGE);
        assert_eq!(siwe_message(&payload(BARE)).unwrap(), BARE_MESSAGE);
        // A lower-case address is written checksummed, as the SIWE library does.
        let mut lower = payload(FULL);
        lower.address = lower.address.to_lowercase();
        assert_eq!(siwe_message(&lower).unwrap(), FULL_MESSAGE);
    }

    #[tokio::test]
    async fn official_signatures_verify_and_tampering_does_not() {
        let v = Eip191SiwxVerifier;
        let signer = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
        assert_eq!(v.verify(&payload(FULL)).await.unwrap(), signer);
        assert_eq!(v.verify(&payload(BARE)).await.unwrap(), signer);
        let mut other_uri = payload(FULL);
        other_uri.uri = "https://api.example.com/other".into();
        assert_eq!(
            v.verify(&other_uri).await.unwrap_err().reason,
            reason::SIGNATURE
        );
        let mut other_address = payload(FULL);
        other_address.address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into();
        assert_eq!(
            v.verify(&other_address).await.unwrap_err().reason,
            reason::SIGNATURE
        );
        let mut bad_checksum = payload(FULL);
        bad_checksum.address = "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into();
        assert_eq!(
            v.verify(&bad_checksum).await.unwrap_err().reason,
            reason::MALFORMED_SIGNATURE
        );
        let mut not_hex = payload(FULL);
        not_hex.signature = "zz".into();
        assert_eq!(
            v.verify(&not_hex).await.unwrap_err().reason,
            reason::MALFORMED_SIGNATURE
        );
        let mut wrong_chain = payload(FULL);
        wrong_chain.chain_id = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".parse().unwrap();
        assert_eq!(
            v.verify(&wrong_chain).await.unwrap_err().reason,
            reason::CHAIN_ID
        );
    }

    #[tokio::test]
    async fn tollgate_signs_what_the_official_client_signs() {
        let client = ExactEvmClient::new(KEY.parse::<PrivateKeySigner>().unwrap());
        let mut unsigned = payload(FULL);
        unsigned.signature.clear();
        unsigned.address.clear();
        let signed = SiwxSigner::sign(&client, unsigned).await.unwrap();
        // EIP-191 with RFC 6979 nonces is deterministic: the same bytes, the same header.
        assert_eq!(signed, payload(FULL));
        // The official client's header for it (`tollgate_proto::siwx`'s vector).
        assert!(signed
            .encode()
            .starts_with("eyJkb21haW4iOiJhcGkuZXhhbXBsZS5jb20iLCJhZGRyZXNzIjoiMHhmMzlG"));
    }

    #[test]
    fn addresses_are_canonical_in_lower_case() {
        let v = Eip191SiwxVerifier;
        assert_eq!(
            v.canonical_address("0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266")
                .unwrap(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        assert!(v.canonical_address("nope").is_err());
    }
}
