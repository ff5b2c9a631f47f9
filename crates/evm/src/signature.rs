//! How a payer signed: EOA, EIP-1271 contract wallet, or EIP-6492 counterfactual wallet.

use alloy::primitives::{Address, Bytes, Signature};
use alloy::sol_types::SolValue;

use crate::contracts::EIP6492_MAGIC_SUFFIX;

/// The payer's signature, classified by the kind of account that made it.
///
/// The class decides both verification (ECDSA recovery, `isValidSignature`, or a deployless
/// EIP-6492 check) and settlement (the `(v, r, s)` overload, the `bytes` overload, or a wallet
/// deployment first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayerSignature {
    /// A 65-byte ECDSA signature from an account without code.
    Eoa(Signature),
    /// Signature bytes for an EIP-1271 contract wallet that is deployed.
    Contract(Bytes),
    /// An EIP-6492 signature of a wallet that is not deployed yet.
    Counterfactual {
        /// The factory that deploys the wallet.
        factory: Address,
        /// The call that makes the factory deploy it.
        factory_calldata: Bytes,
        /// The signature the wallet validates once deployed.
        inner: Bytes,
        /// The whole wrapped signature, as the payer sent it.
        wrapped: Bytes,
    },
}

impl PayerSignature {
    /// Whether settling needs the payer's wallet deployed first (such payments are never
    /// batched: the deployment must land before the transfer).
    pub fn is_counterfactual(&self) -> bool {
        matches!(self, Self::Counterfactual { .. })
    }
}

/// The parts of an EIP-6492 wrapped signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip6492Parts {
    /// The factory.
    pub factory: Address,
    /// The factory calldata.
    pub factory_calldata: Bytes,
    /// The inner signature.
    pub inner: Bytes,
}

/// Splits an EIP-6492 wrapped signature, or returns `Ok(None)` when `sig` does not end in the
/// magic suffix.
pub fn unwrap_eip6492(sig: &[u8]) -> Result<Option<Eip6492Parts>, String> {
    let Some(body) = sig.strip_suffix(&EIP6492_MAGIC_SUFFIX) else {
        return Ok(None);
    };
    let (factory, factory_calldata, inner) = <(Address, Bytes, Bytes)>::abi_decode_params(body)
        .map_err(|e| format!("EIP-6492 wrapper does not decode as (address, bytes, bytes): {e}"))?;
    Ok(Some(Eip6492Parts {
        factory,
        factory_calldata,
        inner,
    }))
}

/// Wraps `inner` for a wallet that `factory` deploys with `factory_calldata` (EIP-6492).
pub fn wrap_eip6492(factory: Address, factory_calldata: Bytes, inner: Bytes) -> Bytes {
    let mut out = (factory, factory_calldata, inner).abi_encode_params();
    out.extend_from_slice(&EIP6492_MAGIC_SUFFIX);
    out.into()
}

/// Parses 65 bytes `r ‖ s ‖ v` (v = 27/28 or 0/1) into an ECDSA signature.
pub fn parse_ecdsa(sig: &[u8]) -> Result<Signature, String> {
    if sig.len() != 65 {
        return Err(format!(
            "an EOA signature is 65 bytes, got {} bytes",
            sig.len()
        ));
    }
    Signature::from_raw(sig).map_err(|e| e.to_string())
}

/// The address that signed `prehash` with `sig`, recovered with libsecp256k1.
///
/// The same answer as alloy's `Signature::recover_address_from_prehash` (which the unit test
/// below checks), a few times faster: verification recovers the payer of every payment, and
/// with coalesced chain reads this is the largest part of its CPU time.
pub fn recover_signer(sig: &Signature, prehash: &alloy::primitives::B256) -> Option<Address> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    static CONTEXT: std::sync::LazyLock<secp256k1::Secp256k1<secp256k1::VerifyOnly>> =
        std::sync::LazyLock::new(secp256k1::Secp256k1::verification_only);
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
    compact[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
    let id = RecoveryId::try_from(i32::from(sig.v())).ok()?;
    let recoverable = RecoverableSignature::from_compact(&compact, id).ok()?;
    let key = CONTEXT
        .recover_ecdsa(secp256k1::Message::from_digest(prehash.0), &recoverable)
        .ok()?;
    let uncompressed = key.serialize_uncompressed();
    Some(Address::from_raw_public_key(&uncompressed[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libsecp256k1_recovers_what_alloy_recovers() {
        use alloy::signers::SignerSync;
        for i in 0..64u8 {
            let key = alloy::signers::local::PrivateKeySigner::random();
            let digest = alloy::primitives::keccak256([i]);
            let sig = key.sign_hash_sync(&digest).unwrap();
            assert_eq!(recover_signer(&sig, &digest), Some(key.address()));
            assert_eq!(
                recover_signer(&sig, &digest),
                sig.recover_address_from_prehash(&digest).ok()
            );
            // Another digest recovers someone else (or nobody), never the signer.
            let other = alloy::primitives::keccak256([i, 1]);
            assert_ne!(recover_signer(&sig, &other), Some(key.address()));
            assert_eq!(
                recover_signer(&sig, &other),
                sig.recover_address_from_prehash(&other).ok()
            );
        }
        // r = 0 is no signature.
        let zero = Signature::new(
            alloy::primitives::U256::ZERO,
            alloy::primitives::U256::from(1),
            false,
        );
        assert_eq!(recover_signer(&zero, &alloy::primitives::B256::ZERO), None);
    }

    #[test]
    fn eip6492_round_trip() {
        let factory = Address::repeat_byte(0x11);
        let wrapped = wrap_eip6492(
            factory,
            Bytes::from(vec![1, 2, 3]),
            Bytes::from(vec![9; 65]),
        );
        let parts = unwrap_eip6492(&wrapped).unwrap().unwrap();
        assert_eq!(parts.factory, factory);
        assert_eq!(parts.factory_calldata.as_ref(), &[1, 2, 3]);
        assert_eq!(parts.inner.len(), 65);
        assert_eq!(unwrap_eip6492(&[0u8; 65]).unwrap(), None);
    }

    #[test]
    fn garbage_with_magic_suffix_is_an_error_not_a_panic() {
        let mut junk = vec![0xff; 7];
        junk.extend_from_slice(&EIP6492_MAGIC_SUFFIX);
        assert!(unwrap_eip6492(&junk).is_err());
        assert!(unwrap_eip6492(&EIP6492_MAGIC_SUFFIX).is_err());
    }

    #[test]
    fn ecdsa_length_is_checked() {
        assert!(parse_ecdsa(&[0u8; 64]).is_err());
        assert!(parse_ecdsa(&[]).is_err());
    }
}
