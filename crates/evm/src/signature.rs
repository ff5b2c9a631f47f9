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

#[cfg(test)]
mod tests {
    use super::*;

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
